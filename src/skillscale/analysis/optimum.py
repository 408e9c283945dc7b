"""`skillscale optimum`: N*, D* and each metric's loss at a budget and code fraction, from the law.

    skillscale optimum results/<study> --budget 1e21 --code-fraction 0.35 [--json]
    skillscale optimum results/<study> --budget 1e21 --code-fraction 0.35 --weights knowledge_qa=0.7,code_fn=0.3
    skillscale optimum results/<study> --budget 1e21 --code-fraction 0.35 --flops exact
    skillscale optimum points.csv --budget 1e21 --code-fraction 0.35   # any study's cells

A study folder answers from its cached laws (tables/mixture_law.json, written by
`skillscale analyze` / `snakemake tables`) in about a second. A CSV (columns metric,
code_frac or own_share, n_params, tokens, loss; optional skill, budget, seed) is fitted on
the spot: with a budget column and >= 3 code fractions the form is chosen by the same
leave-one-code-fraction-out rule as a study's, otherwise `--form` is used.

Without --weights every metric gets its own optimum; with them, the optimum of
sum_m w_m L_m (the minimum of the weighted loss surface, not a mean of optima) and each
metric's loss there. Intervals: the law's bootstrap over cells (paired across metrics).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from skillscale.analysis import fit, mixlaw, mixselect
from skillscale.analysis.fit import mixture as mx

__all__ = ["OptimumError", "parse_weights", "answer", "format_text", "laws_from_csv", "load_laws", "run"]


class OptimumError(ValueError):
    """Bad input or an answer the law cannot give; the message names what."""


def parse_weights(text: str | None, metrics) -> dict | None:
    """'knowledge_qa=0.7,code_fn=0.3' -> {metric: weight}; errors name the bad piece."""
    if text is None or not text.strip():
        return None
    out = {}
    for part in text.split(","):
        name, sep, val = part.strip().rpartition("=")
        if not sep or not name:
            raise OptimumError(f"--weights: cannot parse {part.strip()!r}; expected METRIC=WEIGHT[,METRIC=WEIGHT...]")
        try:
            w = float(val)
        except ValueError:
            raise OptimumError(f"--weights: weight of {name!r} is {val!r}, not a number") from None
        if not math.isfinite(w) or w < 0:
            raise OptimumError(f"--weights: weight of {name!r} is {val}; weights must be finite and >= 0")
        if name not in metrics:
            raise OptimumError(f"--weights: unknown metric {name!r}; this study has {', '.join(sorted(metrics))}")
        out[name] = out.get(name, 0.0) + w
    if sum(out.values()) <= 0:
        raise OptimumError("--weights: all weights are 0")
    return out


def _check_law(sl: mixlaw.StudyLaws, metric: str) -> mx.MixtureLaw:
    try:
        law = sl.law(metric)
    except fit.FitError as e:
        raise OptimumError(f"no law for metric {metric!r}: {e}") from None
    if not law.converged:
        raise OptimumError(f"the law for metric {metric!r} did not converge; no answer (see mixture_law.csv)")
    return law


def _warnings(sl: mixlaw.StudyLaws, budget: float, code_frac: float, n_opt: float, o, terms) -> list[str]:
    r, w = sl.ranges, []
    bmin, bmax = min(r["budgets"]), max(r["budgets"])
    if budget > bmax * 1.0001:
        w.append(f"extrapolating: the budget is {budget / bmax:.3g}x the largest trained ({bmax:.3g} FLOPs)")
    elif budget < bmin / 1.0001:
        w.append(f"extrapolating: the budget is {bmin / budget:.3g}x below the smallest trained ({bmin:.3g} FLOPs)")
    fmin, fmax = min(r["code_fracs"]), max(r["code_fracs"])
    if not fmin - 1e-9 <= code_frac <= fmax + 1e-9:
        w.append(f"extrapolating: code fraction {code_frac:g} is outside the trained {fmin:g}-{fmax:g}")
    nmin, nmax = r["n_params"]
    if not nmin <= n_opt <= nmax:
        w.append(f"extrapolating: N* = {n_opt:.3g} is outside the trained sizes {nmin:.3g}-{nmax:.3g}")
    for m, law, wt, _ in terms:
        status = mixlaw.law_status(law)
        if wt > 0 and status.startswith("flagged"):
            w.append(f"{m}: {status.removeprefix('flagged: ')}")
        if wt > 0 and np.isfinite(law.boot_converged) and law.boot_converged < 0.8:
            w.append(f"only {law.boot_converged:.0%} of {m}'s bootstrap refits converged: its interval is unreliable")
    good = np.isfinite(o.log_n_draws)
    if o.log_n_draws.size and good.mean() < 0.8:
        w.append(f"only {good.mean():.0%} of bootstrap draws have an optimum: the interval is unreliable")
    return w


def _iv(point, draws, ci, log=False):
    lo, hi = fit.interval(draws, ci, point)
    return (math.exp(point), math.exp(lo), math.exp(hi)) if log else (point, lo, hi)


def _one(sl, terms, budget, code_frac, fpt, weights, ci) -> dict:
    o = mx.optimum(terms, budget, fpt)
    if o.at_grid_edge:
        raise OptimumError(f"the law has no optimum at budget {budget:g} within N in [1e2, 1e14]")
    # The bootstrap says how well the cells pin the law down; the law's error at a held-out
    # code fraction (mixture_loo) says how wrong the form can be at a mix it never saw.
    # Every interval is the wider of the two (mixselect.calibrate does the same per fold).
    q = {m: sl.held_out.get(m, {}) for m, *_ in terms}
    wsum = sum(w for _, _, w, _ in terms) or 1.0
    # the weighted objective's held-out error: its metrics' errors, weighted like their losses
    qn = sum(w * q[m].get("n", np.nan) for m, _, w, _ in terms if w > 0) / wsum
    ql = sum(w * q[m].get("loss", np.nan) for m, _, w, _ in terms if w > 0) / wsum
    n, n_lo, n_hi = _iv(o.log_n, o.log_n_draws, ci, log=True)
    n_lo, n_hi = mixselect.widen(n, n_lo, n_hi, qn)
    d, d_lo, d_hi = _iv(o.log_d, o.log_d_draws, ci, log=True)
    d_lo, d_hi = mixselect.widen(d, d_lo, d_hi, qn)
    t, t_lo, t_hi = _iv(o.log_d - o.log_n, o.log_d_draws - o.log_n_draws, ci, log=True)
    t_lo, t_hi = mixselect.widen(t, t_lo, t_hi, 2 * qn)
    losses = {}
    for name, _law, w, s in terms:
        p, dr = o.losses[name]
        _, lo, hi = _iv(p, dr, ci)
        lo, hi = mixselect.widen(p, lo, hi, q[name].get("loss", np.nan))
        losses[name] = dict(loss=p, loss_lo=lo, loss_hi=hi, own_share=s, weight=w)
    out = dict(
        held_out_error=dict(n=qn, loss=ql),
        n_opt=n, n_opt_lo=n_lo, n_opt_hi=n_hi, d_opt=d, d_opt_lo=d_lo, d_opt_hi=d_hi,
        tokens_per_param=t, tokens_per_param_lo=t_lo, tokens_per_param_hi=t_hi,
        losses=losses, n_draws=int(np.isfinite(o.log_n_draws).sum()),
        warnings=_warnings(sl, budget, code_frac, n, o, terms),
    )  # fmt: skip
    if weights:
        _, lo, hi = _iv(o.objective, o.objective_draws, ci)
        lo, hi = mixselect.widen(o.objective, lo, hi, ql)
        out.update(objective=o.objective, objective_lo=lo, objective_hi=hi)
    return out


def answer(sl: mixlaw.StudyLaws, budget: float, code_frac: float, weights: dict | None = None, flops=None) -> dict:
    """Every number `skillscale optimum` prints, as a dict (what --json writes); `flops`
    None counts compute as the study planned its budgets (grid.flops)."""
    flops = flops or sl.flops
    if not (math.isfinite(budget) and budget > 0):
        raise OptimumError(f"--budget must be a positive number of FLOPs, got {budget}")
    if not (math.isfinite(code_frac) and 0 <= code_frac <= 1):
        raise OptimumError(f"--code-fraction must lie in [0, 1], got {code_frac}")
    if flops not in ("6nd", "exact"):
        raise OptimumError(f"--flops must be 6nd or exact, got {flops!r}")
    fpt = None
    if flops == "exact":
        fpt = mixlaw.fpt_function(sl.fpt)
        if fpt is None:
            raise OptimumError("--flops exact: these cells record no flops_exact (attention included) to count with")
    metrics = sorted(sl.laws)
    res = dict(budget=budget, code_fraction=code_frac, flops=flops, study_flops=sl.flops, form=sl.chosen, ci=sl.ci)
    res["weights"] = weights
    res["trained"] = sl.ranges
    if weights:
        terms = [(m, _check_law(sl, m), w, sl.share(m, code_frac)) for m, w in weights.items()]
        # every metric's loss at the weighted optimum: weight-0 terms do not move it
        terms += [(m, _check_law(sl, m), 0.0, sl.share(m, code_frac)) for m in metrics if m not in weights]
        res["optimum"] = _one(sl, terms, budget, code_frac, fpt, weights, sl.ci)
    else:
        res["per_metric"] = {
            m: _one(sl, [(m, _check_law(sl, m), 1.0, sl.share(m, code_frac))], budget, code_frac, fpt, None, sl.ci)
            for m in metrics
        }
    return res


def _fmt(v, lo, hi, f=".3g") -> str:
    ci = f" [{lo:{f}}, {hi:{f}}]" if np.isfinite(lo) and np.isfinite(hi) else " (no interval)"
    return f"{v:{f}}{ci}"


def _block(o: dict, head: str) -> list[str]:
    L = [
        head,
        f"  N* = {_fmt(o['n_opt'], o['n_opt_lo'], o['n_opt_hi'])} parameters",
        f"  D* = {_fmt(o['d_opt'], o['d_opt_lo'], o['d_opt_hi'])} tokens",
        f"  tokens per parameter = {_fmt(o['tokens_per_param'], o['tokens_per_param_lo'], o['tokens_per_param_hi'])}",
    ]
    ho = o.get("held_out_error", {})
    if np.isfinite(ho.get("n", np.nan)):
        L.append(f"  held-out error{' (weighted)' if 'objective' in o else ''}: x{math.exp(ho['n']):.2f} on N*")
    if "objective" in o:
        L.append(f"  weighted loss = {_fmt(o['objective'], o['objective_lo'], o['objective_hi'], '.4g')}")
    for m, x in o["losses"].items():
        w = f", weight {x['weight']:g}" if "objective" in o else ""
        L.append(
            f"  {m}: loss {_fmt(x['loss'], x['loss_lo'], x['loss_hi'], '.4g')} (own share {x['own_share']:.3g}{w})"
        )
    return L + [f"  warning: {w}" for w in o["warnings"]]


def format_text(res: dict) -> str:
    ci = f"{res['ci']:.0%}"
    count = "6ND" if res["flops"] == "6nd" else "exact FLOPs, attention included"
    how = "bootstrap over cells, widened to at least the law's error at a held-out code fraction"
    L = [
        f"budget {res['budget']:.3g} FLOPs (C = {count}), code fraction {res['code_fraction']:g};"
        f" law form {res['form']}; {ci} intervals ({how})",
    ]
    if res["flops"] != res.get("study_flops", res["flops"]):
        L.append(f"note: the study planned its budgets with grid.flops = {res['study_flops']}")
    if res.get("weights"):
        wt = " + ".join(f"{w:g} {m}" for m, w in res["weights"].items())
        L += _block(res["optimum"], f"optimum of {wt}:")
    else:
        for m, o in res["per_metric"].items():
            L += _block(o, f"{m}:")
    return "\n".join(L)


def load_laws(study_dir: Path) -> mixlaw.StudyLaws:
    path = Path(study_dir) / "tables" / "mixture_law.json"
    if not path.exists():
        raise OptimumError(f"{path} not found: run `snakemake tables` (or skillscale analyze) for this study first")
    try:
        return mixlaw.load(path)
    except (ValueError, KeyError) as e:
        raise OptimumError(f"{path}: {e}") from None


_SKILL_OF = {"code": "code", "knowledge": "knowledge"}


def _csv_cells(df: pd.DataFrame, path) -> pd.DataFrame:
    """The points of a CSV as a cells table (cell ids shared across metrics for paired draws)."""
    need = ["metric", "n_params", "tokens", "loss"]
    lacking = [c for c in need if c not in df.columns]
    if lacking or not ({"code_frac", "own_share"} & set(df.columns)):
        raise OptimumError(
            f"{path}: needs columns metric, code_frac (or own_share), n_params, tokens, loss;"
            f" lacks {lacking or ['code_frac']}"
        )
    c = df.copy()
    if "code_frac" not in c.columns:  # own shares given: the query's fraction is read as the own share
        c["code_frac"], c["skill"] = c["own_share"], "code"
    elif "skill" not in c.columns:
        c["skill"] = [next((v for k, v in _SKILL_OF.items() if str(m).startswith(k)), None) for m in c["metric"]]
        unknown = sorted({m for m, s in zip(c["metric"], c["skill"]) if s is None})
        if unknown:
            raise OptimumError(
                f"{path}: no skill column and metric(s) {unknown} name neither code nor knowledge; add skill"
            )
    frac = c["code_frac"].astype(float)
    if ((frac < 0) | (frac > 1)).any():
        raise OptimumError(f"{path}: code_frac/own_share values outside [0, 1]")
    keys = ["code_frac", "n_params", "tokens"] + (["seed"] if "seed" in c.columns else [])
    c["cell"] = c[keys].astype(str).agg("/".join, axis=1)
    if "budget" not in c.columns:
        c["budget"] = 6 * c["n_params"].astype(float) * c["tokens"].astype(float)
    c["value"], c["diverged"] = c["loss"].astype(float), False
    return c


def laws_from_csv(path: Path, n_boot: int = 100, ci: float = 0.9, form: str | None = None) -> mixlaw.StudyLaws:
    """Fit the laws of a CSV's points (choosing the form held-out when the grid allows,
    otherwise `form`, by default mixlaw.DEFAULT_FORM)."""
    form = form or mixlaw.DEFAULT_FORM
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise OptimumError(f"{path}: cannot read as CSV: {e}") from None
    cells = _csv_cells(df, path)
    cfg = {"fit": {"n_boot": n_boot, "ci": ci}, "data": {}}
    if "budget" in df.columns and cells["code_frac"].nunique() >= 3:
        optima = fit.isoflop_optima(
            cells.rename(columns={"value": "loss"}), ["code_frac", "metric", "skill"], n_boot=n_boot, ci=ci
        )
        sl, _ = mixselect.fit_study(cells, cfg, optima)
        return sl
    inputs = mixlaw.law_inputs(cells, None)
    laws = mixlaw.fit_laws(inputs, min(n_boot, mixlaw.MAX_BOOT), (form,))
    ranges = dict(
        budgets=sorted(float(b) for b in inputs["budget"].unique()),
        code_fracs=sorted(float(x) for x in inputs["code_frac"].unique()),
        n_params=[float(inputs["n_params"].min()), float(inputs["n_params"].max())],
        tokens=[float(inputs["tokens"].min()), float(inputs["tokens"].max())],
    )
    sk = inputs.drop_duplicates("metric").set_index("metric")["skill"].to_dict()
    fpt = mixlaw.exact_flops_per_token(cells) if "flops_exact" in cells.columns else []
    return mixlaw.StudyLaws(laws, sk, None, form, ranges, fpt, ci, [])


def run(a) -> int:
    """The CLI entry point (arguments: cli.add_optimum)."""
    try:
        src = Path(a.source)
        if src.is_dir():
            sl = load_laws(src)
        elif src.exists():
            sl = laws_from_csv(src, a.n_boot, form=a.form)
        else:
            raise OptimumError(f"{src}: no such study folder or CSV")
        res = answer(sl, a.budget, a.code_fraction, parse_weights(a.weights, sl.laws), a.flops)
    except OptimumError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=1, default=float) if a.json else format_text(res))
    return 0
