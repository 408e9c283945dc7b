"""The paper's analyses on a study's tidy `cells` table (Roberts et al. 2025).

- `validation_mix`: bits/byte of a validation set mixing held-out knowledge and code text.
- `ape_residuals`: ln N*(skill) - ln N*(validation mix); > 0 capacity-hungry, < 0 data-hungry.
- `datamix_slopes`: d ln N* / d (share of the skill's own data) per skill metric and budget.
- `validation_composition`: how far N* moves as the validation mix goes from code to knowledge.
- `heldout_budget_prediction`: fit on all budgets but the largest, predict the largest.

Conventions: N is `n_params` (Porian "standard"); ln is natural; every N* is the vertex of a
parabola of bits/byte in ln N over the cells of one (code_frac, budget), from
fit.isoflop_optimum (the same routine as the optima table); an edge vertex is no estimate
and gives NaN. Intervals are fit.interval: percentile bootstraps over cells widened to
contain their point estimate; when two optima are compared (skill vs mix,
or one mix weight vs another) they are computed on the same resample of cells, so the
noise they share cancels. Diverged cells are excluded from every fit and listed in an
`excluded_cells` column (and in `DataFrame.attrs["excluded_cells"]`). A group that cannot be
fitted gets a `status` of "failed: <why>", never an exception that loses the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from skillscale.analysis import apeparts, fit
from skillscale.data.mixing import shares

CELL_COLUMNS = (
    "cell",
    "code_frac",
    "budget",
    "size",
    "seed",
    "n_params",
    "n_params_total",
    "n_params_nonembed",
    "tokens",
    "flops",
    "diverged",
)
MIX = "val_mix"


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _as_bool(s: pd.Series) -> pd.Series:
    if s.dtype == bool:
        return s
    return s.map(lambda v: str(v).strip().lower() in ("true", "1", "yes")).astype(bool)


def _split(cells: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Usable rows and the ids of diverged cells (excluded from all fits)."""
    need = ["cell", "code_frac", "budget", "n_params", "metric", "value"]
    missing = [c for c in need if c not in cells.columns]
    if missing:
        raise ValueError(f"cells table lacks column(s) {missing}; have {list(cells.columns)}")
    div = _as_bool(cells["diverged"]) if "diverged" in cells.columns else pd.Series(False, index=cells.index)
    excluded = sorted(cells.loc[div, "cell"].astype(str).unique())
    return cells.loc[~div], excluded


def _excluded_by_group(cells: pd.DataFrame, keys: Sequence[str]) -> dict:
    if "diverged" not in cells.columns:
        return {}
    d = cells[_as_bool(cells["diverged"])]
    return {
        k if isinstance(k, tuple) else (k,): sorted(g["cell"].astype(str).unique()) for k, g in d.groupby(list(keys))
    }


def _wide(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: its cell-level columns and one column per metric."""
    per_cell = [c for c in CELL_COLUMNS if c in cells.columns and c != "cell"]
    meta = cells.groupby("cell", sort=False)[per_cell].first()
    vals = cells.pivot_table(index="cell", columns="metric", values="value", aggfunc="mean", dropna=False)
    return meta.join(vals).reset_index()


def _skills(cells: pd.DataFrame) -> dict:
    if "skill" not in cells.columns:
        return {}
    return cells.groupby("metric")["skill"].first().to_dict()


def _skill_of(metric: str, skills: dict) -> str:
    if metric in skills:
        return skills[metric]
    return "code" if metric.startswith("code") else "knowledge" if metric.startswith("knowledge") else "mix"


def _optimum(x, y, counts, label: str, window: float | None = None) -> fit.Optimum:
    """fit.isoflop_optimum on one set of cells; `counts` (n_boot x n_cells) is shared between
    the optima being compared, so their draws are paired replicate by replicate."""
    y = np.asarray(y, float)
    if not (np.isfinite(x) & np.isfinite(y)).any():
        return _no_values(len(counts), label)
    return fit.isoflop_optimum(x, y, counts=counts, window=window, label=label)


def _no_values(n_boot: int, label: str) -> fit.Optimum:
    nan = np.full(n_boot, np.nan)
    return fit.Optimum(None, np.zeros(0, bool), nan, nan.copy(), 0, f"failed: {label}: no values in these cells")


def _counts(n: int, n_boot: int, rng) -> np.ndarray:
    return fit.boot_counts(n, n_boot, rng) if n_boot > 0 and n > 0 else np.zeros((0, n))


def _frac(draws) -> float:
    d = np.asarray(draws, float)
    return float(np.isfinite(d).mean()) if d.size else np.nan


def _finish(rows: list[dict], columns: list[str], excluded: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=columns)
    out.attrs["excluded_cells"] = excluded
    return out


# --------------------------------------------------------------------------------------
# validation mix
# --------------------------------------------------------------------------------------


def validation_mix(
    cells: pd.DataFrame, w: float, knowledge_metric: str = "knowledge_text", code_metric: str = "code_text"
) -> pd.DataFrame:
    """Per-cell bits/byte of a validation set that is a share w knowledge text, 1 - w code.

    Bits per byte of a concatenated set = total bits / total bytes, which is exactly
    w * bpb_knowledge + (1 - w) * bpb_code when w is the share of *bytes* that are
    knowledge text; so w is a byte share. Returns rows shaped like `cells` (metric
    "val_mix", skill "mix", plus the column w) so they can be concatenated to it; a cell
    lacking either metric gets NaN. Diverged cells pass through with their flag.
    """
    if not 0 <= w <= 1:
        raise ValueError(f"validation_mix: weight w={w} is outside [0, 1]")
    if "cell" not in cells.columns or "metric" not in cells.columns:
        raise ValueError("validation_mix: cells table needs 'cell' and 'metric' columns")
    wide = _wide(cells)
    for m in (knowledge_metric, code_metric):
        if m not in wide.columns:
            wide[m] = np.nan
    out = wide[[c for c in CELL_COLUMNS if c in wide.columns]].copy()
    out["metric"], out["skill"], out["w"] = MIX, "mix", float(w)
    out["value"] = w * wide[knowledge_metric].to_numpy(float) + (1 - w) * wide[code_metric].to_numpy(float)
    return out


# --------------------------------------------------------------------------------------
# skill vs aggregate optimum
# --------------------------------------------------------------------------------------


def ape_residuals(
    cells: pd.DataFrame,
    w: float = 0.5,
    metrics: Sequence[str] | None = None,
    knowledge_metric: str = "knowledge_text",
    code_metric: str = "code_text",
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.9,
    window: float | None = None,
    sources: dict | None = None,
) -> pd.DataFrame:
    """ln N*(skill metric) - ln N*(validation mix w), per code_frac x budget x metric.

    APE, the aggregate performance estimator: the validation loss of a knowledge/code text
    mix, the quantity a practitioner would pick N* by. Positive residual: the skill wants a
    bigger model than the aggregate picks (capacity-hungry); negative: data-hungry. The
    interval is a paired bootstrap over cells (both optima refitted on the same resample).
    `in_aggregate` marks the metrics the mix is built from (the two text metrics, and on
    configured `sources` every source's text pooled into them, or any metric equal to one of
    them in every cell): their residuals oppose each other by construction (the mix's
    optimum lies between theirs), so they are no evidence about the skills and claim 1
    leaves them out; `claim1_counts` and `claim1_note` say which metrics it counts and why
    (apeparts.claim1_use: metrics identical in every cell count once). `hungry` is "capacity" / "data"
    when the interval excludes 0, else "undetermined". A row with an edge optimum (either
    side) has status "edge: ..." and no residual (an edge vertex is no estimate).
    `metrics` defaults to every metric of the cells.
    """
    usable, excluded = _split(cells)
    metrics = sorted(usable["metric"].dropna().unique()) if metrics is None else list(metrics)
    exg = _excluded_by_group(cells, ["code_frac", "budget"])
    skills = _skills(cells)
    mix = validation_mix(usable, w, knowledge_metric, code_metric)
    wide = _wide(usable)
    wide = wide.merge(mix[["cell", "value"]].rename(columns={"value": MIX}), on="cell", how="left")
    parts = apeparts.components(sources, knowledge_metric, code_metric)
    use = apeparts.claim1_use(wide, metrics, parts, {m: _skill_of(m, skills) for m in metrics})
    rng = np.random.default_rng(seed)
    rows = []
    for (cf, b), g in wide.groupby(["code_frac", "budget"], sort=True):
        base = fit.group_label({"code_frac": cf, "budget": b})
        x = np.log(g["n_params"].to_numpy(float))
        counts = _counts(len(g), n_boot, rng)
        ape = _optimum(x, g[MIX], counts, f"{base}, validation mix w={w:g}", window)
        for m in metrics:
            row = dict(
                code_frac=cf,
                budget=b,
                metric=m,
                skill=_skill_of(m, skills),
                w=w,
                in_aggregate=use[m][0],
                claim1_counts=use[m][1],
                claim1_note=use[m][2],
                n_cells=len(g),
                excluded_cells=",".join(exg.get((cf, b), [])),
            )
            if m not in g.columns:
                sk = _no_values(len(counts), f"{base}, metric={m}")
            else:
                sk = _optimum(x, g[m], counts, f"{base}, metric={m}", window)
            row.update(_residual(sk, ape, ci))
            rows.append(row)
    return _finish(rows, _APE_COLUMNS, excluded)


_APE_COLUMNS = [  # ape_residuals' columns, in order
    "code_frac",
    "budget",
    "metric",
    "skill",
    "w",
    "in_aggregate",
    "claim1_counts",
    "claim1_note",
    "n_opt_skill",
    "n_opt_ape",
    "residual",
    "residual_lo",
    "residual_hi",
    "boot_frac",
    "edge_skill",
    "edge_ape",
    "hungry",
    "n_cells",
    "excluded_cells",
    "status",
]


def _pair_status(sk: fit.Optimum, ape: fit.Optimum) -> str:
    """'ok' when both optima are interior, else the first failure or the edge(s) named."""
    if sk.status.startswith("failed"):
        return sk.status
    if ape.status.startswith("failed"):
        return ape.status
    if sk.edge or ape.edge:
        which = [f"{n} optimum {o.describe_edge()}" for n, o in (("skill", sk), ("validation mix", ape)) if o.edge]
        return f"edge: {' and '.join(which)}"
    return "ok"


def _residual(sk: fit.Optimum, ape: fit.Optimum, ci: float) -> dict:
    """The residual columns of one row: ln N*(skill) - ln N*(mix), its paired interval and verdict."""
    status = _pair_status(sk, ape)
    r = sk.log_n - ape.log_n  # NaN unless both are interior
    dr = sk.draws - ape.draws
    lo, hi = fit.interval(dr, ci, r) if status == "ok" else (np.nan, np.nan)
    hungry = ("capacity" if lo > 0 else "data" if hi < 0 else "undetermined") if status == "ok" else ""
    return dict(
        n_opt_skill=np.exp(sk.log_n),
        n_opt_ape=np.exp(ape.log_n),
        residual=r,
        residual_lo=lo,
        residual_hi=hi,
        boot_frac=_frac(dr),
        edge_skill=sk.edge,
        edge_ape=ape.edge,
        hungry=hungry,
        status=status,
    )


# --------------------------------------------------------------------------------------
# per-metric optima over the grid (shared by slopes and held-out prediction)
# --------------------------------------------------------------------------------------


def _metric_optima(usable: pd.DataFrame, metric: str, n_boot: int, rng, window) -> list[dict]:
    """One entry per (code_frac, budget) for one metric, with its own cell resamples."""
    g_all = usable[usable["metric"] == metric]
    out = []
    for (cf, b), g in g_all.groupby(["code_frac", "budget"], sort=True):
        x = np.log(g["n_params"].to_numpy(float))
        o = _optimum(
            x,
            g["value"].to_numpy(float),
            _counts(len(g), n_boot, rng),
            fit.group_label({"code_frac": cf, "budget": b, "metric": metric}),
            window,
        )
        out.append(dict(code_frac=cf, budget=b, opt=o))
    return out


def _n_opt_text(frac: float, o: fit.Optimum) -> str:
    """'0.8:2.1e+04' for an interior optimum, '0.8:<1.5e+04' / '0.8:>9e+04' for an edge one."""
    if o.edge:
        return f"{frac:g}:{'<' if o.side == 'below' else '>'}{o.bound:.4g}"
    return f"{frac:g}:{np.exp(o.log_n):.4g}"


def _line_with_draws(xs, ys, draws, n_boot, rng, ci):
    """Least-squares slope/intercept and their intervals, propagating per-point draws."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    slope, icpt = fit.fit_line(xs, ys)
    if n_boot <= 0 or not any(np.isfinite(d).any() for d in draws):  # no spread to propagate
        return slope, icpt, (np.nan, np.nan), (np.nan, np.nan), None, None
    dr = [d[np.isfinite(d)] if np.isfinite(d).any() else np.array([y]) for d, y in zip(draws, ys)]
    A, B = fit.line_draws(xs, dr, n_boot, rng)
    return slope, icpt, fit.interval(A, ci, slope), fit.interval(B, ci, icpt), A, B


SLOPE_SKILLS = ("knowledge", "code")  # the skills whose own share the mix moves


def own_share(skill: str, code_frac, sources: dict | None = None):
    """The share of a cell's training tokens that is `skill`'s own data, per code fraction.

    Embedded corpora (`sources` None): code_frac for code, 1 - code_frac for knowledge.
    Configured sources (data.sources): the shares of the sources of that role
    (skillscale.data.mixing.shares), so with a fixed-share background (say 20% web) knowledge has
    1 - 0.2 - code_frac, not 1 - code_frac."""
    cf = np.asarray(code_frac, float)
    if sources is None:
        return cf if skill == "code" else 1 - cf
    flat = [sum(v for k, v in shares(sources, float(c)).items() if sources[k]["role"] == skill) for c in cf.ravel()]
    return np.asarray(flat, float).reshape(cf.shape)


def datamix_slopes(
    cells: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.9,
    window: float | None = None,
    exclude_edge: bool = True,
    sources: dict | None = None,
) -> pd.DataFrame:
    """d ln N* / d fraction of the skill's own data, per metric x budget.

    The fraction is `own_share` (the `skill` column of cells decides): code_frac for code
    metrics, for knowledge metrics what the code fraction and any fixed-share sources of
    data.sources (`sources`) leave. Only knowledge and code metrics get a slope: another
    role (a fixed-share background) does not move with the mix. Least squares of ln N* on the fraction over the
    code fractions whose optimum is interior (edge optima are left out unless
    exclude_edge=False); the interval propagates each optimum's bootstrap over its cells.
    Positive: giving the skill more of its data moves its optimum to bigger models.
    `metrics` defaults to every metric of the cells with a knowledge or code skill.
    """
    usable, excluded = _split(cells)
    skills = _skills(cells)
    if metrics is None:
        metrics = sorted(usable["metric"].dropna().unique())
    metrics = [m for m in metrics if _skill_of(m, skills) in SLOPE_SKILLS]
    exg = _excluded_by_group(cells, ["budget"])
    rng = np.random.default_rng(seed)
    rows = []
    for m in metrics:
        skill = _skill_of(m, skills)
        per = _metric_optima(usable, m, n_boot, rng, window)
        budgets = sorted({p["budget"] for p in per})
        if not per:
            rows.append(dict(metric=m, skill=skill, budget=np.nan, status=f"failed: metric={m}: no cells"))
        for b in budgets:
            ps = [p for p in per if p["budget"] == b]
            label = fit.group_label({"metric": m, "budget": b})
            frac = [float(own_share(skill, p["code_frac"], sources)) for p in ps]
            use = [p["opt"].status == "ok" or (p["opt"].status == "edge" and not exclude_edge) for p in ps]
            row = dict(
                metric=m,
                skill=skill,
                budget=b,
                n_fractions=int(sum(use)),
                n_edge=sum(p["opt"].edge for p in ps),
                n_failed=sum(p["opt"].status.startswith("failed") for p in ps),
                fractions=",".join(f"{f:g}" for f, u in zip(frac, use) if u),
                n_opt_by_fraction=",".join(
                    _n_opt_text(f, p["opt"]) for f, p in zip(frac, ps) if p["opt"].parabola is not None
                ),
                edge_excluded=exclude_edge,
                excluded_cells=",".join(exg.get((b,), [])),
            )
            row.update(_slope_over_fractions(label, ps, frac, use, n_boot, rng, ci))
            rows.append(row)
    return _finish(rows, _SLOPE_COLUMNS, excluded)


_SLOPE_COLUMNS = [  # datamix_slopes' columns, in order
    "metric",
    "skill",
    "budget",
    "slope",
    "slope_lo",
    "slope_hi",
    "intercept",
    "n_fractions",
    "n_edge",
    "n_failed",
    "fractions",
    "n_opt_by_fraction",
    "edge_excluded",
    "excluded_cells",
    "status",
]


def _slope_over_fractions(label: str, ps: list[dict], frac: list[float], use: list[bool], n_boot, rng, ci) -> dict:
    """The slope columns of one budget's row: ln N* on the own-data fraction over the `use`d optima."""
    xs = np.array([f for f, u in zip(frac, use) if u])
    if len(np.unique(xs)) < 2:
        why = "; ".join(p["opt"].status for p in ps if p["opt"].status != "ok") or "only one data fraction"
        return dict(
            slope=np.nan,
            slope_lo=np.nan,
            slope_hi=np.nan,
            intercept=np.nan,
            status=f"failed: {label}: {len(np.unique(xs))} data fraction(s) with an interior"
            f" optimum; a slope needs >= 2 ({why})",
        )
    sel = [p["opt"] for p, u in zip(ps, use) if u]
    s, i, (lo, hi), _, _, _ = _line_with_draws(xs, [o.log_n for o in sel], [o.draws for o in sel], n_boot, rng, ci)
    return dict(slope=s, slope_lo=lo, slope_hi=hi, intercept=i, status="ok")


# --------------------------------------------------------------------------------------
# validation-set composition
# --------------------------------------------------------------------------------------


class ValidationComposition(NamedTuple):
    curve: pd.DataFrame  # one row per code_frac x budget x w: N* picked by that validation mix
    summary: pd.DataFrame  # one row per code_frac x budget: signed contrast w=1 vs w=0, max/min - 1


def validation_composition(
    cells: pd.DataFrame,
    ws: Sequence[float] = tuple(np.linspace(0, 1, 11)),
    knowledge_metric: str = "knowledge_text",
    code_metric: str = "code_text",
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.9,
    window: float | None = None,
) -> ValidationComposition:
    """N* picked by the validation mix as its knowledge weight w goes over `ws`.

    Summary per code_frac x budget:
    - contrast = ln N*(w = max ws) - ln N*(w = min ws), the signed change of N* from an
      all-code to an all-knowledge validation set, with a paired bootstrap interval (every
      weight refitted on the same resample of cells) and contrast_z = contrast / its
      bootstrap standard deviation (the change against the noise of the same statistic).
      Only when both end weights give an interior optimum.
    - rel_change = max_w N* / min_w N* - 1 over the weights with an interior optimum, a
      description of the spread: it is >= 0 for any data, so it is no test.
    Status "ok" when every weight gave an interior optimum, "partial: ..." when some did
    not (left out of max/min; no contrast if an end weight is among them), "failed: ..."
    when fewer than 2 did.
    """
    usable, excluded = _split(cells)
    exg = _excluded_by_group(cells, ["code_frac", "budget"])
    wide = _wide(usable)
    for m in (knowledge_metric, code_metric):
        if m not in wide.columns:
            wide[m] = np.nan
    ws = sorted(float(w) for w in ws)
    rng = np.random.default_rng(seed)
    curve, summary = [], []
    for (cf, b), g in wide.groupby(["code_frac", "budget"], sort=True):
        base = fit.group_label({"code_frac": cf, "budget": b})
        ex = ",".join(exg.get((cf, b), []))
        x = np.log(g["n_params"].to_numpy(float))
        k, c = g[knowledge_metric].to_numpy(float), g[code_metric].to_numpy(float)
        counts = _counts(len(g), n_boot, rng)
        opts = [_optimum(x, w * k + (1 - w) * c, counts, f"{base}, validation mix w={w:g}", window) for w in ws]
        curve += [_curve_row(cf, b, w, o, ci, ex) for w, o in zip(ws, opts)]
        summary.append(_composition_row(cf, b, ws, opts, len(counts), ci, base, ex))
    return ValidationComposition(_finish(curve, _CURVE_COLUMNS, excluded), _finish(summary, _SUMMARY_COLUMNS, excluded))


_CURVE_COLUMNS = [  # ValidationComposition.curve's columns, in order
    "code_frac",
    "budget",
    "w",
    "n_opt",
    "n_opt_lo",
    "n_opt_hi",
    "n_opt_bound",
    "edge_side",
    "loss_opt",
    "edge",
    "excluded_cells",
    "status",
]
_SUMMARY_COLUMNS = [  # ValidationComposition.summary's columns, in order
    "code_frac",
    "budget",
    "w_lo",
    "w_hi",
    "contrast",
    "contrast_lo",
    "contrast_hi",
    "contrast_z",
    "n_opt_min",
    "n_opt_max",
    "w_at_min",
    "w_at_max",
    "rel_change",
    "rel_change_lo",
    "rel_change_hi",
    "n_w",
    "n_w_ok",
    "excluded_cells",
    "status",
]


def _curve_row(cf, b, w: float, o: fit.Optimum, ci: float, ex: str) -> dict:
    """One curve row: the N* (with interval, or edge bound) that the mix with weight w picks."""
    lo, hi = fit.interval(o.draws, ci, o.log_n) if o.status == "ok" else (np.nan, np.nan)
    return dict(
        code_frac=cf,
        budget=b,
        w=w,
        n_opt=np.exp(o.log_n),
        n_opt_lo=np.exp(lo),
        n_opt_hi=np.exp(hi),
        n_opt_bound=o.bound,
        edge_side=o.side,
        loss_opt=o.loss,
        edge=o.edge,
        excluded_cells=ex,
        status=o.status,
    )


def _composition_row(cf, b, ws, opts, n_boot, ci, base, ex) -> dict:
    """One summary row: the contrast between the end weights and the spread of N* over all weights."""
    good = [i for i, o in enumerate(opts) if o.status == "ok"]
    row = dict(
        code_frac=cf,
        budget=b,
        w_lo=ws[0],
        w_hi=ws[-1],
        n_w=len(ws),
        n_w_ok=len(good),
        excluded_cells=ex,
        contrast=np.nan,
        contrast_lo=np.nan,
        contrast_hi=np.nan,
        contrast_z=np.nan,
        n_opt_min=np.nan,
        n_opt_max=np.nan,
        w_at_min=np.nan,
        w_at_max=np.nan,
        rel_change=np.nan,
        rel_change_lo=np.nan,
        rel_change_hi=np.nan,
    )
    if len(good) < 2:
        why = next((o.status for o in opts if o.status != "ok"), "")
        row["status"] = f"failed: {base}: {len(good)} of {len(ws)} weights gave an interior optimum ({why})"
        return row
    o0, o1 = opts[0], opts[-1]
    if o0.status == "ok" and o1.status == "ok":
        con, dc = o1.log_n - o0.log_n, o1.draws - o0.draws
        lo, hi = fit.interval(dc, ci, con)
        sd = float(np.nanstd(dc)) if np.isfinite(dc).sum() >= 2 else np.nan
        row.update(contrast=con, contrast_lo=lo, contrast_hi=hi, contrast_z=con / sd if sd > 0 else np.nan)
    ln = np.array([opts[i].log_n for i in good])
    i_min, i_max = int(np.argmin(ln)), int(np.argmax(ln))
    rel = float(np.exp(ln.max() - ln.min()) - 1)
    D = np.column_stack([opts[i].draws for i in good]) if n_boot else np.zeros((0, len(good)))
    full = np.isfinite(D).all(axis=1)
    rd = np.exp(D[full].max(axis=1) - D[full].min(axis=1)) - 1 if full.any() else np.array([])
    lo, hi = fit.interval(rd, ci, rel)
    bad = [f"{ws[i]:g}" for i, o in enumerate(opts) if o.status != "ok"]
    row.update(
        n_opt_min=float(np.exp(ln.min())),
        n_opt_max=float(np.exp(ln.max())),
        w_at_min=ws[good[i_min]],
        w_at_max=ws[good[i_max]],
        rel_change=rel,
        rel_change_lo=lo,
        rel_change_hi=hi,
        status="ok"
        if not bad
        else f"partial: no interior optimum at w={','.join(bad)}"
        " (left out of max/min" + ("" if np.isfinite(row["contrast"]) else "; no contrast") + ")",
    )
    return row


# --------------------------------------------------------------------------------------
# extrapolation check
# --------------------------------------------------------------------------------------


def heldout_budget_prediction(
    cells: pd.DataFrame,
    metric: str,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.9,
    window: float | None = None,
    mix_w: float = 0.5,
    knowledge_metric: str = "knowledge_text",
    code_metric: str = "code_text",
    fit_max_budget: float | None = None,
) -> pd.DataFrame:
    """Fit on every budget but the largest, predict the largest; one row per code_frac.
    With `fit_max_budget`: fit on the budgets <= it, predict each budget above it (one row per
    code_frac and held-out budget), e.g. a small study's fits against a 10x longer one.

    N*: ln N* = a ln C + b over the fit budgets with an interior optimum (>= 2 needed).
    Optimal loss: ln loss* = p ln C + q, a pure power law (with 2-4 budgets a saturating
    E + A C^-alpha is not identifiable). Reports predicted vs observed at the held-out
    budget and the relative error pred/obs - 1; the predicted interval propagates the
    fit budgets' cell bootstraps. metric="val_mix" uses validation_mix(cells, mix_w).
    """
    usable, excluded = _split(cells)
    if metric == MIX and MIX not in set(usable["metric"]):
        usable = pd.concat([usable, validation_mix(usable, mix_w, knowledge_metric, code_metric)], ignore_index=True)
    exg = _excluded_by_group(cells, ["code_frac"])
    rng = np.random.default_rng(seed)
    per = _metric_optima(usable, metric, n_boot, rng, window)
    rows = []
    if not per:
        rows.append(dict(metric=metric, status=f"failed: metric={metric}: no cells with this metric"))
    for cf in sorted({p["code_frac"] for p in per}):
        ps = sorted((p for p in per if p["code_frac"] == cf), key=lambda p: p["budget"])
        label = fit.group_label({"code_frac": cf, "metric": metric})
        if fit_max_budget is None:
            fitted, helds = ps[:-1], ps[-1:]
        else:
            fitted = [p for p in ps if p["budget"] <= fit_max_budget * (1 + 1e-9)]
            helds = [p for p in ps if p["budget"] > fit_max_budget * (1 + 1e-9)]
        train = [p for p in fitted if p["opt"].status == "ok"]
        lines = None  # the power laws are fitted once and predict every held-out budget
        if len(ps) >= 3 and len(train) >= 2:
            lc = np.log([p["budget"] for p in train])
            lines = (
                _line_with_draws(lc, [p["opt"].log_n for p in train], [p["opt"].draws for p in train], n_boot, rng, ci),
                _line_with_draws(
                    lc,
                    np.log([p["opt"].loss for p in train]),
                    [np.log(p["opt"].loss_draws) for p in train],
                    n_boot,
                    rng,
                    ci,
                ),
            )
        for held in helds:
            rows.append(_predict_budget(cf, metric, label, held, train, len(ps), lines, exg, ci))
    cols = [
        "code_frac",
        "metric",
        "heldout_budget",
        "fit_budgets",
        "a",
        "n_opt_pred",
        "n_opt_pred_lo",
        "n_opt_pred_hi",
        "n_opt_obs",
        "n_opt_obs_lo",
        "n_opt_obs_hi",
        "n_opt_rel_err",
        "loss_pred",
        "loss_pred_lo",
        "loss_pred_hi",
        "loss_obs",
        "loss_rel_err",
        "excluded_cells",
        "status",
    ]
    return _finish(rows, cols, excluded)


def _predict_budget(cf, metric, label, held, train, n_budgets, lines, exg, ci) -> dict:
    """One held-out budget against the power laws (`lines`: N* and loss* lines with their
    bootstrap draws, or None when too few budgets) fitted on the `train` budgets' optima."""
    ho = held["opt"]
    row = dict(
        code_frac=cf,
        metric=metric,
        heldout_budget=held["budget"],
        fit_budgets=",".join(f"{p['budget']:g}" for p in train),
        excluded_cells=",".join(exg.get((cf,), [])),
        a=np.nan,
        n_opt_pred=np.nan,
        n_opt_pred_lo=np.nan,
        n_opt_pred_hi=np.nan,
        loss_pred=np.nan,
        loss_pred_lo=np.nan,
        loss_pred_hi=np.nan,
    )
    lo, hi = fit.interval(ho.draws, ci, ho.log_n) if ho.status == "ok" else (np.nan, np.nan)
    row.update(n_opt_obs=np.exp(ho.log_n), n_opt_obs_lo=np.exp(lo), n_opt_obs_hi=np.exp(hi), loss_obs=ho.loss)
    if lines is None:
        row.update(
            status=f"failed: {label}: {len(train)} budget(s) below the held-out {held['budget']:g} with an"
            f" interior optimum ({n_budgets} budgets in all); need >= 2 to fit and 1 to hold out"
        )
    else:
        (a, b_, _, _, A, B), (pl, ql, _, _, PL, QL) = lines
        lch = np.log(held["budget"])
        row.update(a=a, n_opt_pred=np.exp(a * lch + b_), loss_pred=np.exp(pl * lch + ql))
        if A is not None:
            row["n_opt_pred_lo"], row["n_opt_pred_hi"] = np.exp(fit.interval(A * lch + B, ci, a * lch + b_))
            row["loss_pred_lo"], row["loss_pred_hi"] = np.exp(fit.interval(PL * lch + QL, ci, pl * lch + ql))
        row["status"] = (
            "ok"
            if ho.status == "ok"
            else f"edge: {label}: held-out optimum at {held['budget']:g} {ho.describe_edge()}"
            if ho.edge
            else ho.status
        )
    row["n_opt_rel_err"] = row["n_opt_pred"] / row["n_opt_obs"] - 1
    row["loss_rel_err"] = row["loss_pred"] / row["loss_obs"] - 1
    return row
