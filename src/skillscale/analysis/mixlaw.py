"""The mixture-aware law of a study: fitted on all its cells, validated by leaving out a code fraction.

`fit_study(cells, cfg)` fits every form of fit.mixture per metric on every usable cell (all
code fractions, budgets and seeds), with a bootstrap over cells shared by all metrics, and
compares the forms by leave-one-code-fraction-out prediction of each held-out budget's
IsoFLOP optimum (the optima table). The chosen form is the one with the smallest median
|N* error| over the held-out interior optima (ties: the simpler form), decided by that rule
alone. Also compared: the Approach-2 surface ln N*(C, s) = b + a ln C + c s + d s ln C
through the per-budget optima (no loss surface, so it cannot answer a weighted objective).

The study's laws are cached as tables/mixture_law.json for `skillscale optimum`
(skillscale.analysis.optimum), which reads them back with `load`.
"""

from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from skillscale import common
from skillscale.analysis import fit, skills
from skillscale.analysis.fit import mixture as mx

__all__ = [
    "MAX_BOOT",
    "StudyLaws",
    "fit_study",
    "law_inputs",
    "exact_flops_per_token",
    "fpt_function",
    "fit_laws",
    "choose",
    "loo_table",
    "law_table",
    "save",
    "load",
    "SURFACE",
    "DEFAULT_FORM",
    "calibrate",
    "law_status",
    "held_out_error",
    "widen",
]

MAX_BOOT = 100  # refits per metric and form: ~10 ms each, like the parametric table's cap
SURFACE = "surface"  # the Approach-2 surface baseline's name in the comparison
CACHE_VERSION = 1


@dataclass
class StudyLaws:
    """Every metric's law per form, what they were fitted on, and the chosen form."""

    laws: dict  # metric -> form -> MixtureLaw (or the FitError message)
    skills: dict  # metric -> skill
    sources: dict | None  # data.sources (own shares of configured corpora), None for embedded
    chosen: str
    ranges: dict  # budgets, code_fracs, n_params, tokens trained
    fpt: list  # [[n_params, exact flops per token], ...] over the ladder
    ci: float
    comparison: list = field(default_factory=list)  # per candidate: LOO scores
    flops: str = "6nd"  # how the study's budgets count compute (grid.flops)
    # per metric, the chosen form's ci-quantile |ln error| of N* and loss* at a held-out
    # code fraction: {metric: {"n": q, "loss": q}}
    held_out: dict = field(default_factory=dict)

    def per_token(self):
        """The study's FLOPs per token as a function of N (None: 6 N, what mixture.optimum assumes)."""
        return fpt_function(self.fpt) if self.flops == "exact" else None

    def share(self, metric: str, code_frac: float) -> float:
        return float(skills.own_share(self.skills[metric], code_frac, self.sources))

    def law(self, metric: str, form: str | None = None) -> mx.MixtureLaw:
        v = self.laws[metric][form or self.chosen]
        if isinstance(v, str):
            raise fit.FitError(v)
        return v


def law_inputs(cells: pd.DataFrame, sources=None) -> pd.DataFrame:
    """Usable cells (not diverged, finite loss) as metric, skill, cell, code_frac, budget,
    n_params, tokens, s (own share), loss."""
    c = cells[~cells["diverged"].astype(bool)] if "diverged" in cells.columns else cells
    c = c[np.isfinite(c["value"].astype(float))]
    out = c[["metric", "skill", "cell", "code_frac", "budget", "n_params", "tokens"]].copy()
    out["loss"] = c["value"].astype(float)
    out["s"] = np.nan
    for sk, idx in out.groupby("skill").groups.items():
        out.loc[idx, "s"] = skills.own_share(sk, out.loc[idx, "code_frac"].to_numpy(float), sources)
    return out.reset_index(drop=True)


def exact_flops_per_token(cells: pd.DataFrame) -> list:
    """[[N, exact FLOPs per token]] per size of the ladder (attention included)."""
    if "flops_exact" not in cells.columns:
        return []
    u = cells.drop_duplicates("cell")
    u = u[np.isfinite(u["flops_exact"].astype(float)) & (u["tokens"] > 0)]
    per = (u["flops_exact"] / u["tokens"]).groupby(u["n_params"]).median()
    return [[float(n), float(f)] for n, f in per.items()]


def fpt_function(fpt: list):
    """flops_per_token(N) interpolated in log-log over the ladder; None for C = 6 N D."""
    if len(fpt) < 2:
        return None
    ln_n, ln_r = np.log([p[0] for p in fpt]), np.log([p[1] / (6 * p[0]) for p in fpt])

    def f(n):
        x = np.log(np.asarray(n, float))
        # beyond the ladder the attention share keeps its trend, then stops at 6N's floor
        slope_lo = (ln_r[1] - ln_r[0]) / (ln_n[1] - ln_n[0])
        slope_hi = (ln_r[-1] - ln_r[-2]) / (ln_n[-1] - ln_n[-2])
        r = np.interp(x, ln_n, ln_r)
        r = np.where(x < ln_n[0], ln_r[0] + slope_lo * (x - ln_n[0]), r)
        r = np.where(x > ln_n[-1], ln_r[-1] + slope_hi * (x - ln_n[-1]), r)
        return 6 * np.asarray(n, float) * np.exp(np.maximum(r, 0.0))

    return f


def _fit_one(task) -> mx.MixtureLaw | str:
    """One metric x form fit, or its FitError's message (a worker process's task)."""
    n, d, s, loss, cc, form, label = task
    try:
        return mx.fit_mixture(n, d, s, loss, form, counts=cc, label=f"{label}, form={form}")
    except fit.FitError as e:
        return str(e)


def _counts(cells_ids, n_boot: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    ids = sorted(set(cells_ids))
    rng = np.random.default_rng(seed)
    return fit.boot_counts(len(ids), n_boot, rng), {c: i for i, c in enumerate(ids)}


def fit_laws(inputs: pd.DataFrame, n_boot: int, forms=mx.FORMS, seed: int = 0, mapper=map) -> dict:
    """metric -> form -> law, every metric bootstrapped on the same resamples of cells.

    `mapper` runs the metric x form fits (builtin map, or a process pool's map: each fit is
    seeded by its counts alone, so the result does not depend on it)."""
    counts, index = _counts(inputs["cell"], n_boot, seed)
    tasks, keys = [], []
    for m, g in inputs.groupby("metric", sort=True):
        cc = counts[:, g["cell"].map(index).to_numpy()] if n_boot else None
        arrays = tuple(g[c].to_numpy(float) for c in ("n_params", "tokens", "s", "loss"))
        for form in forms:
            tasks.append((*arrays, cc, form, fit.group_label({"metric": m})))
            keys.append((m, form))
    out: dict = {}
    for (m, form), law in zip(keys, mapper(_fit_one, tasks)):
        out.setdefault(m, {})[form] = law
    return out


@contextlib.contextmanager
def _mapper():
    """A process pool's map over the cores this process may use, or builtin map on one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores < 2:
        yield map
        return
    with ProcessPoolExecutor(cores) as pool:
        yield pool.map


def _interior(optima: pd.DataFrame) -> pd.DataFrame:
    o = optima[(optima["status"] == "ok")] if "status" in optima.columns else optima.iloc[:0]
    return o[np.isfinite(o["n_opt"].astype(float))]


def _surface_predict(train: pd.DataFrame, held: pd.DataFrame, col: str) -> np.ndarray:
    """ln col = b + a ln C + c s + d s ln C through the training optima, at the held-out rows."""

    def X(df):
        lc = np.log(df["budget"].to_numpy(float)) - lc0
        s = df["s"].to_numpy(float)
        return np.column_stack([np.ones_like(lc), lc, s, s * lc])

    lc0 = float(np.log(train["budget"]).mean()) if len(train) else 0.0
    if len(train) < 4 or train["s"].nunique() < 2 or train["budget"].nunique() < 2:
        return np.full(len(held), np.nan)
    k, *_ = np.linalg.lstsq(X(train), np.log(train[col].to_numpy(float)), rcond=None)
    return np.exp(X(held) @ k)


def _law_prediction(law, budget: float, s: float, ci: float, fpt=None) -> dict:
    o = mx.optimum([("m", law, 1.0, s)], budget, fpt)
    lo, hi = fit.interval(o.log_n_draws, ci, o.log_n)
    pl, dl = o.losses["m"]
    llo, lhi = fit.interval(dl, ci, pl)
    return dict(n=np.exp(o.log_n), n_lo=np.exp(lo), n_hi=np.exp(hi), loss=pl, loss_lo=llo, loss_hi=lhi)


def loo_predictions(inputs: pd.DataFrame, optima: pd.DataFrame, forms, n_boot: int, ci: float, fpt=None, mapper=map):
    """Leave one code fraction out: fit on the others, predict the held-out fraction's optima.

    One row per candidate x metric x held-out fraction x budget with an interior observed
    optimum; n_boot > 0 adds the prediction's interval (refits on resampled training cells)."""
    obs = _interior(optima).copy()
    share = inputs.drop_duplicates(["metric", "code_frac"]).set_index(["metric", "code_frac"])["s"]
    obs["s"] = [share.get((m, cf), np.nan) for m, cf in zip(obs["metric"], obs["code_frac"])]
    rows = []
    for cf in sorted(inputs["code_frac"].unique()):
        train = inputs[inputs["code_frac"] != cf]
        if train["code_frac"].nunique() < 2:
            continue
        laws = fit_laws(train, n_boot, forms, mapper=mapper)
        tr_opt, held = obs[obs["code_frac"] != cf], obs[obs["code_frac"] == cf]
        for m, h in held.groupby("metric"):
            base = h[["code_frac", "metric", "budget", "n_opt", "n_opt_lo", "n_opt_hi", "loss_opt"]]
            for form in forms:
                law = laws.get(m, {}).get(form, "no cells")
                for (_, r), b in zip(base.iterrows(), h["budget"]):
                    row = dict(candidate=form, **r.to_dict())
                    if isinstance(law, str):
                        row["status"] = f"failed: {law}"
                    else:
                        p = _law_prediction(law, float(b), float(h["s"].iloc[0]), ci, fpt)
                        row.update({f"pred_{k}": v for k, v in p.items()}, status="ok")
                    rows.append(row)
            trm = tr_opt[tr_opt["metric"] == m]
            pn, pl = _surface_predict(trm, h, "n_opt"), _surface_predict(trm, h, "loss_opt")
            for (_, r), n, lo in zip(base.iterrows(), pn, pl):
                rows.append(dict(candidate=SURFACE, **r.to_dict(), pred_n=n, pred_loss=lo, status="ok"))
    return _scored(pd.DataFrame(rows))


def held_out_error(rows: pd.DataFrame, ci: float) -> tuple[float, float]:
    """The `ci` quantile of |ln(predicted / observed)| of N* and of loss* over held-out rows
    (NaN with fewer than 5)."""
    ok = rows[np.isfinite(rows["pred_n"].astype(float)) & np.isfinite(rows["n_opt"].astype(float))]
    if len(ok) < 5:
        return np.nan, np.nan
    en = np.abs(np.log(ok["pred_n"].astype(float) / ok["n_opt"].astype(float)))
    el = np.abs(np.log(ok["pred_loss"].astype(float) / ok["loss_opt"].astype(float)))
    return float(np.quantile(en, ci)), float(np.nanquantile(el, ci))


def widen(v, lo, hi, q):
    """An interval [lo, hi] around v stretched to at least v exp(-q) .. v exp(q)."""
    if not np.isfinite(q):
        return lo, hi
    return np.fmin(lo, v * np.exp(-q)), np.fmax(hi, v * np.exp(q))


def calibrate(loo: pd.DataFrame, chosen: str, ci: float) -> pd.DataFrame:
    """Prediction intervals for each held-out fraction: the bootstrap interval (the cells'
    noise) widened by the law's own held-out error, measured on the OTHER folds only.

    A bootstrap over cells says how well the cells pin the law down, not how wrong the form
    is at a mix it never saw; the other folds' errors measure that, and never the fold
    being judged (cross-validated, so the coverage reported is not fitted to itself)."""
    if loo.empty:
        return loo
    df = loo.copy()
    rows = df["candidate"] == chosen
    df["pred_n_boot_lo"], df["pred_n_boot_hi"] = df.get("pred_n_lo", np.nan), df.get("pred_n_hi", np.nan)
    # per metric: the metrics' errors differ in scale (a knowledge QA loss moves 2x with the mix)
    for cf, m in df.loc[rows, ["code_frac", "metric"]].drop_duplicates().itertuples(index=False):
        here = rows & (df["code_frac"] == cf) & (df["metric"] == m)
        qn, ql = held_out_error(df[rows & (df["code_frac"] != cf) & (df["metric"] == m)], ci)
        df.loc[here, "pred_n_lo"], df.loc[here, "pred_n_hi"] = widen(
            df.loc[here, "pred_n"], df.loc[here, "pred_n_lo"], df.loc[here, "pred_n_hi"], qn
        )
        df.loc[here, "pred_loss_lo"], df.loc[here, "pred_loss_hi"] = widen(
            df.loc[here, "pred_loss"], df.loc[here, "pred_loss_lo"], df.loc[here, "pred_loss_hi"], ql
        )
    return _scored(df)


def _scored(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    for c in ("pred_n", "pred_n_lo", "pred_n_hi", "pred_loss"):
        if c not in df.columns:
            df[c] = np.nan
    df["n_rel_err"] = df["pred_n"] / df["n_opt"] - 1
    df["loss_rel_err"] = df["pred_loss"] / df["loss_opt"] - 1
    has = np.isfinite(df["pred_n_lo"]) & np.isfinite(df["pred_n_hi"])
    df["covered"] = np.where(has, (df["n_opt"] >= df["pred_n_lo"]) & (df["n_opt"] <= df["pred_n_hi"]), np.nan).astype(
        object
    )
    return df


def compare(loo: pd.DataFrame) -> list[dict]:
    """Per candidate: median |N* error|, median |loss* error|, coverage of the observed N*."""
    out = []
    for cand, g in loo.groupby("candidate", sort=False):
        ok = g[np.isfinite(g["n_rel_err"].astype(float))]
        cov = ok["covered"].dropna().astype(bool)
        boot = ok.get("pred_n_boot_lo")
        boot_cov = np.nan
        if boot is not None and np.isfinite(boot.astype(float)).any():
            has = np.isfinite(ok["pred_n_boot_lo"].astype(float))
            inside = (ok["n_opt"] >= ok["pred_n_boot_lo"]) & (ok["n_opt"] <= ok["pred_n_boot_hi"])
            boot_cov = float(inside[has].mean())
        out.append(
            dict(
                candidate=cand,
                n_groups=len(ok),
                median_abs_n_err=float(np.median(np.abs(ok["n_rel_err"]))) if len(ok) else np.nan,
                max_abs_n_err=float(np.max(np.abs(ok["n_rel_err"]))) if len(ok) else np.nan,
                median_abs_loss_err=float(np.median(np.abs(ok["loss_rel_err"]))) if len(ok) else np.nan,
                coverage=float(cov.mean()) if len(cov) else np.nan,
                coverage_bootstrap_only=boot_cov,
                n_covered=int(cov.sum()),
                n_with_interval=len(cov),
            )
        )
    return out


# The held-out rule follows the order of issue 25's targets: a form must first predict where
# the optimum is (median |N* error| within N_TOL), then how good it is. Among the forms
# within N_TOL the lowest median |loss* error| wins; if none is within, the lowest N* error.
N_TOL = 0.15


# Without a held-out fraction to judge by (fewer than 3 code fractions) the most general form,
# which contains the others, is fitted.
DEFAULT_FORM = "deff_add"


def choose(comparison: list[dict], forms) -> str:
    """The loss-surface form the held-out rule picks (ties: the simpler, earlier in FORMS)."""
    sc = {c["candidate"]: c for c in comparison if c["candidate"] in forms}
    ok = [f for f in forms if f in sc and np.isfinite(sc[f]["median_abs_n_err"])]
    if not ok:
        return DEFAULT_FORM if DEFAULT_FORM in forms else forms[0]
    within = [f for f in ok if sc[f]["median_abs_n_err"] <= N_TOL]
    if within:
        return min(within, key=lambda f: (sc[f]["median_abs_loss_err"], forms.index(f)))
    return min(ok, key=lambda f: (sc[f]["median_abs_n_err"], forms.index(f)))


def fit_study(cells: pd.DataFrame, cfg: dict, optima: pd.DataFrame) -> tuple[StudyLaws, pd.DataFrame]:
    """Fit every form on all usable cells, compare them by leave-one-code-fraction-out, choose.

    Returns the laws and the leave-one-out rows (the chosen form's with intervals)."""
    fc = cfg["fit"]
    n_boot, ci = min(int(fc["n_boot"]), MAX_BOOT), float(fc["ci"])
    sources = cfg["data"].get("sources")
    inputs = law_inputs(cells, sources)
    flops = cfg.get("grid", {}).get("flops", "6nd")
    fpt = fpt_function(exact_flops_per_token(cells)) if flops == "exact" else None
    with _mapper() as mapper:
        # Point predictions choose the form; only the chosen one is then refitted with a
        # bootstrap, on all cells and per fold (the intervals the held-out test reports).
        loo_pts = loo_predictions(inputs, optima, mx.FORMS, 0, ci, fpt, mapper)
        comparison = compare(loo_pts) if not loo_pts.empty else []
        chosen = choose(comparison, mx.FORMS)
        # with no held-out comparison the other forms would be numbers nothing ranks: not fitted
        others = tuple(f for f in mx.FORMS if f != chosen) if comparison else ()
        laws = fit_laws(inputs, 0, others, mapper=mapper) if others else {}
        for m, fs in fit_laws(inputs, n_boot, (chosen,), mapper=mapper).items():
            laws.setdefault(m, {}).update(fs)
        loo = loo_pts
        if not loo_pts.empty:
            loo_ci = calibrate(loo_predictions(inputs, optima, (chosen,), n_boot, ci, fpt, mapper), chosen, ci)
            loo = pd.concat([loo_ci[loo_ci["candidate"] == chosen], loo_pts[loo_pts["candidate"] != chosen]])
            comparison = compare(loo)
    ranges = dict(
        budgets=sorted(float(b) for b in inputs["budget"].unique()),
        code_fracs=sorted(float(c) for c in inputs["code_frac"].unique()),
        n_params=[float(inputs["n_params"].min()), float(inputs["n_params"].max())],
        tokens=[float(inputs["tokens"].min()), float(inputs["tokens"].max())],
    )
    sk = inputs.drop_duplicates("metric").set_index("metric")["skill"].to_dict()
    sl = StudyLaws(laws, sk, sources, chosen, ranges, exact_flops_per_token(cells), ci, comparison, flops)
    if not loo.empty:
        mine = loo[loo["candidate"] == chosen]
        sl.held_out = {m: dict(zip(("n", "loss"), held_out_error(g, ci))) for m, g in mine.groupby("metric")}
    return sl, loo.reset_index(drop=True)


LOO_COLUMNS = [
    "candidate",
    "metric",
    "code_frac",
    "budget",
    "n_opt",
    "n_opt_lo",
    "n_opt_hi",
    "pred_n",
    "pred_n_lo",
    "pred_n_hi",
    "pred_n_boot_lo",
    "pred_n_boot_hi",
    "n_rel_err",
    "covered",
    "loss_opt",
    "pred_loss",
    "pred_loss_lo",
    "pred_loss_hi",
    "loss_rel_err",
    "status",
]


def loo_table(loo: pd.DataFrame, chosen: str) -> pd.DataFrame:
    """The leave-one-out rows, the chosen form first."""
    if loo.empty:
        why = "failed: leaving a code fraction out needs >= 3 code fractions with interior optima"
        return pd.DataFrame([{"candidate": chosen, "status": why}], columns=LOO_COLUMNS)
    for c in LOO_COLUMNS:
        if c not in loo.columns:
            loo[c] = np.nan
    order = loo["candidate"].map(lambda c: (c != chosen, c))
    return loo.assign(_o=order).sort_values(["_o", "metric", "code_frac", "budget"])[LOO_COLUMNS].reset_index(drop=True)


def law_table(sl: StudyLaws) -> pd.DataFrame:
    """Per metric x form: parameters with intervals, fit quality, LOO score, chosen or not."""
    score = {c["candidate"]: c for c in sl.comparison}
    rows = []
    for m, forms in sl.laws.items():
        for form, law in forms.items():
            sc = score.get(form, {})
            row = dict(metric=m, skill=sl.skills[m], form=form, chosen=form == sl.chosen)
            if isinstance(law, str):
                rows.append(dict(row, status=f"failed: {law}"))
                continue
            ivs = law.intervals(sl.ci)
            for k, v in zip(mx.LAW_PARAMS, law.params):
                row[k], (row[f"{k}_lo"], row[f"{k}_hi"]) = v, ivs[k]
            row.update(
                rms_log=law.rms,
                n_points=law.n_points,
                converged=law.converged,
                boot_converged=law.boot_converged,
                loo_median_abs_n_err=sc.get("median_abs_n_err", np.nan),
                loo_median_abs_loss_err=sc.get("median_abs_loss_err", np.nan),
                loo_coverage=sc.get("coverage", np.nan),
                loo_coverage_bootstrap_only=sc.get("coverage_bootstrap_only", np.nan),
                status=law_status(law),
            )
            rows.append(row)
    for c in sl.comparison:
        if c["candidate"] == SURFACE:
            rows.append(
                dict(
                    metric="(all)",
                    skill="",
                    form=SURFACE,
                    chosen=False,
                    loo_median_abs_n_err=c["median_abs_n_err"],
                    loo_median_abs_loss_err=c["median_abs_loss_err"],
                    status="ok",
                )
            )
    return pd.DataFrame(rows)


def law_status(law: mx.MixtureLaw) -> str:
    """'ok', 'failed: ...' (not converged: `optimum` refuses it) or 'flagged: ...' (a bound hit)."""
    if not law.converged:
        return "failed: L-BFGS-B did not report convergence"
    lo, hi = mx.mix_bounds(law.form)
    if lo < hi and (law.mix <= lo * (1 + 1e-6) + 1e-9 or law.mix >= hi * (1 - 1e-6)):
        return f"flagged: mix parameter at its bound {law.mix:g}: the cells do not pin the mix effect down"
    return "ok"


def save(sl: StudyLaws, path: Path, study: str) -> None:
    """The cache `skillscale optimum` answers from (JSON: every law with its bootstrap draws)."""
    laws = {m: {f: (v if isinstance(v, str) else v.to_dict()) for f, v in fs.items()} for m, fs in sl.laws.items()}
    doc = dict(
        version=CACHE_VERSION,
        study=study,
        chosen=sl.chosen,
        skills=sl.skills,
        sources=sl.sources,
        ranges=sl.ranges,
        fpt=sl.fpt,
        ci=sl.ci,
        comparison=sl.comparison,
        flops=sl.flops,
        held_out=sl.held_out,
        laws=laws,
    )
    common.write_text(Path(path), json.dumps(doc, default=float) + "\n")


def load(path: Path) -> StudyLaws:
    doc = json.loads(Path(path).read_text())
    if doc.get("version") != CACHE_VERSION:
        raise ValueError(
            f"{path}: cache version {doc.get('version')}, expected {CACHE_VERSION}; rerun `snakemake tables`"
        )
    laws = {
        m: {f: (v if isinstance(v, str) else mx.MixtureLaw.from_dict(v)) for f, v in fs.items()}
        for m, fs in doc["laws"].items()
    }
    return StudyLaws(
        laws,
        doc["skills"],
        doc["sources"],
        doc["chosen"],
        doc["ranges"],
        doc["fpt"],
        doc["ci"],
        doc["comparison"],
        doc.get("flops", "6nd"),
        doc.get("held_out", {}),
    )
