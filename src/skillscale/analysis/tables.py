"""Every table of a study, computed in one place from its tidy cells table.

report.py writes them, plots.py draws them, summary.py reads them.

`build_tables(cells, cfg)` returns the tables by name (see outputs.TABLES) and the extra
data figures and the summary need (line draws, the reference compute, points at it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from skillscale.analysis import claims, fit, mixreport, skills

log = logging.getLogger("skillscale.analysis.tables")
GROUP = ["code_frac", "metric", "skill"]
APE_W = 0.5  # knowledge byte share of the aggregate validation set (APE)
VALIDATION_WS = tuple(np.round(np.linspace(0, 1, 11), 10))
PARAMETRIC_MAX_BOOT = 100  # Approach-3 refits are ~10 ms each; 100 keeps analyze under a minute


def datamix_at_reference(
    scaling: pd.DataFrame, c_ref: float, n_boot: int, ci: float, seed: int = 0, sources: dict | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """d ln N*/d own-data fraction at one compute C_ref, from each code fraction's power law.

    N*(C_ref) = exp(b) C_ref^a per code fraction pools every interior budget of that code
    fraction; its draws come from the power law's cell-level bootstrap replicates, and the
    slope's interval takes one draw per code fraction per replicate. Also returns the
    points (code fraction, metric, N*(C_ref) with interval) for the figure, and adds rows
    'knowledge - code' with the difference of slopes (replicates paired independently: the
    two metrics' bootstraps are separate resamples of the same cells, so this interval is,
    if anything, too wide).
    """
    line_draws = scaling.attrs.get("line_draws", {})
    rng = np.random.default_rng(seed)
    rows, points, slope_draws = [], [], {}
    for (m, skill), g in scaling.groupby(["metric", "skill"], sort=True):
        if skill not in skills.SLOPE_SKILLS:  # a fixed-share role's data does not move with the mix
            continue
        label = fit.group_label({"metric": m, "C_ref": c_ref})
        ok = g[g["status"] == "ok"].sort_values("code_frac")
        xs, ys, ds, spread, pts = _optima_at_reference(ok, m, skill, c_ref, line_draws, sources, ci)
        points += pts
        row = dict(
            metric=m,
            skill=skill,
            basis="power law at C_ref",
            budget=c_ref,
            n_fractions=len(set(xs)),
            n_edge=0,
            n_failed=int((g["status"] != "ok").sum()),
            fractions=",".join(f"{x:g}" for x in xs),
            n_opt_by_fraction=",".join(f"{x:g}:{np.exp(y):.4g}" for x, y in zip(xs, ys)),
            edge_excluded=True,
            excluded_cells="",
        )
        if len(set(xs)) < 2:
            why = "; ".join(str(s) for s in g.loc[g["status"] != "ok", "status"]) or "only one data fraction"
            row.update(
                slope=np.nan,
                slope_lo=np.nan,
                slope_hi=np.nan,
                intercept=np.nan,
                status=f"failed: {label}: {len(set(xs))} data fraction(s) with a fitted power law;"
                f" a slope needs >= 2 ({why})",
            )
        else:
            s, i, lo, hi, A = _slope_at_reference(xs, ys, ds, spread, n_boot, rng, ci)
            slope_draws[(m, skill)] = (s, A)
            row.update(slope=s, slope_lo=lo, slope_hi=hi, intercept=i, status="ok")
        rows.append(row)
    rows += _slope_differences(slope_draws, c_ref, ci)
    return pd.DataFrame(rows), pd.DataFrame(points)


def _optima_at_reference(ok: pd.DataFrame, m, skill, c_ref: float, line_draws: dict, sources, ci: float):
    """ln N*(C_ref) per code fraction from its power law: own shares, values, finite draws, any spread, points."""
    lc = float(np.log(c_ref))
    xs, ys, ds, spread, points = [], [], [], False, []
    for _, r in ok.iterrows():
        y = r["a"] * lc + r["b"]
        A, B = line_draws.get((r["code_frac"], r["metric"], r["skill"]), (None, None))
        spread |= A is not None and len(A) > 1
        d = A * lc + B if A is not None and len(A) else np.array([y])
        xs.append(float(skills.own_share(skill, r["code_frac"], sources)))
        ys.append(y)
        ds.append(d[np.isfinite(d)] if np.isfinite(d).any() else np.array([y]))
        lo, hi = fit.interval(d, ci, y)
        points.append(
            dict(
                code_frac=r["code_frac"],
                metric=m,
                skill=skill,
                budget=c_ref,
                n_opt=np.exp(y),
                n_opt_lo=np.exp(lo),
                n_opt_hi=np.exp(hi),
            )
        )
    return xs, ys, ds, spread, points


def _slope_at_reference(xs, ys, ds, spread: bool, n_boot: int, rng, ci: float):
    """Slope, intercept, slope interval and slope draws (None without spread) of ln N*(C_ref) on the fraction."""
    s, i = fit.fit_line(np.array(xs), np.array(ys))
    lo = hi = np.nan
    A = None
    if n_boot > 0 and spread:  # else no code fraction has bootstrap draws: no interval
        A, _ = fit.line_draws(np.array(xs), ds, n_boot, rng)
        lo, hi = fit.interval(A, ci, s)
    return s, i, lo, hi, A


def _slope_differences(slope_draws: dict, c_ref: float, ci: float) -> list[dict]:
    """Rows 'knowledge - code': every knowledge metric's slope at C_ref minus every code metric's."""
    rows = []
    for (mk, sk), (s_k, A_k) in slope_draws.items():
        if sk != "knowledge":
            continue
        for (mc, sc), (s_c, A_c) in slope_draws.items():
            if sc != "code":
                continue
            lo, hi = fit.interval(A_k - A_c, ci, s_k - s_c) if A_k is not None and A_c is not None else (np.nan, np.nan)
            rows.append(
                dict(
                    metric=f"{mk} - {mc}",
                    skill="knowledge - code",
                    basis="difference at C_ref",
                    budget=c_ref,
                    slope=s_k - s_c,
                    slope_lo=lo,
                    slope_hi=hi,
                    status="ok",
                )
            )
    return rows


def _parametric_fit(args):
    """One group's fit_parametric, or its FitError's message (a worker process's task)."""
    n, tokens, loss, n_boot, ci, label = args
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return fit.fit_parametric(n, tokens, loss, n_boot=n_boot, seed=0, ci=ci, label=label)
    except fit.FitError as e:
        return str(e)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parametric_table(usable: pd.DataFrame, n_boot: int, ci: float, c_top: float) -> pd.DataFrame:
    """Approach 3 per group. Each fit's n_boot refits dominate the analysis (~70% of it), so
    the groups are fitted in parallel over the cores this process may use (a Slurm job's
    own); each fit is seeded by itself, so the table is the same whatever the parallelism."""
    groups = [(dict(zip(GROUP, key)), g) for key, g in usable.groupby(GROUP, sort=True)]
    n_budgets = [g.loc[np.isfinite(g["loss"]), "budget"].nunique() for _, g in groups]
    # On an IsoFLOP grid D is tied to N within a budget: two budgets cannot separate
    # A/N^alpha from B/D^beta (the fit runs off to degenerate exponents).
    tasks = [
        (g["n_params"].to_numpy(), g["tokens"].to_numpy(), g["loss"].to_numpy(), n_boot, ci, fit.group_label(kd))
        for (kd, g), nb in zip(groups, n_budgets)
        if nb >= 3
    ]
    fits = _fit_all(tasks)
    rows = []
    for (kd, g), nb in zip(groups, n_budgets):
        label = fit.group_label(kd)
        row = dict(kd, n_points=int(np.isfinite(g["loss"]).sum()), budget_top=c_top)
        try:
            if nb < 3:
                raise fit.FitError(f"{label}: {nb} budget(s) with finite losses; L(N, D) needs >= 3 on an IsoFLOP grid")
            f = next(fits)
            if isinstance(f, str):
                raise fit.FitError(f)
            row.update(_parametric_columns(f, c_top))
        except fit.FitError as e:
            row.update(status=f"failed: {e}", note="")
        rows.append(row)
    return pd.DataFrame(rows, columns=_PARAMETRIC_COLUMNS)


def _fit_all(tasks: list) -> Iterator:
    """_parametric_fit of every task, in order: in a process pool when more than one core is ours."""
    workers = min(_cores(), len(tasks))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return iter(list(pool.map(_parametric_fit, tasks)))
    return iter([_parametric_fit(t) for t in tasks])


_FITTED = tuple(f"{p}{x}" for p in ("E", "alpha", "beta", "a_opt") for x in ("", "_lo", "_hi"))
# the fit's values a row of the parametric table reports, and the table's columns in order
_PARAMETRIC_FIELDS = (*_FITTED, "objective", "converged")
_TOP = ("budget_top", "n_opt_top")  # the largest budget's optimum the fit predicts
_PARAMETRIC_COLUMNS = [*GROUP, "n_points", *_FITTED, *_TOP, "objective", "converged", "note", "status"]


def _parametric_columns(f, c_top: float) -> dict:
    """One fitted group's columns: the fit's values, N* at c_top, and notes flagging a fit not to trust."""
    d = f.to_dict()
    row = {k: d.get(k, np.nan) for k in _PARAMETRIC_FIELDS}
    row["n_opt_top"] = float(f.n_opt(c_top))
    notes = []
    if not f.converged:
        notes.append("L-BFGS-B did not report convergence")
    if f.E < 1e-3:
        # E -> 0 is the boundary of E >= 0: the fit found no irreducible loss, and
        # the bootstrap of a parameter pinned at its bound has no width to report.
        notes.append("E at its lower bound 0: no irreducible loss identified; exponents absorb it")
        row["E_lo"] = row["E_hi"] = np.nan
    if max(f.alpha, f.beta) > 1.5 or min(f.alpha, f.beta) < 0.05:
        notes.append("an exponent at an implausible value: the grid does not pin the surface down")
    row.update(note="; ".join(notes), status="ok" if not notes else "flagged: " + "; ".join(notes))
    return row


def _failed_table(name: str, e: Exception) -> pd.DataFrame:
    log.exception("analysis %s failed", name)
    return pd.DataFrame([{"status": f"failed: {name}: {type(e).__name__}: {e}"}])


def certainty_table(t: dict) -> pd.DataFrame:
    """How sure the study's answers are, one row per statistic, read from the other tables:
    the N* interval ratio hi/lo of every interior optimum, the interval width a_hi - a_lo of
    every power-law exponent, and the knowledge-minus-code slope differences at the
    reference compute (claim 2), with how many of their intervals exclude 0."""

    def row(stat, values, what, excluding_0=np.nan):
        v = np.asarray(values, float)
        v = v[np.isfinite(v)]
        stats = dict(median=np.median(v), min=v.min(), max=v.max()) if v.size else {}
        return {
            "statistic": stat,
            "n": int(v.size),
            "median": np.nan,
            "min": np.nan,
            "max": np.nan,
            **stats,
            "excluding_0": excluding_0,
            "what": what,
            "status": "ok" if v.size else "no rows with an interval",
        }

    def usable(df, cols):
        ok = df[df["status"] == "ok"] if "status" in df.columns else df.iloc[:0]
        return (
            ok[np.isfinite(ok[list(cols)].astype(float)).all(axis=1)] if set(cols) <= set(ok.columns) else ok.iloc[:0]
        )

    o = usable(t["optima"], ("n_opt_lo", "n_opt_hi"))
    s = usable(t["scaling"], ("a_lo", "a_hi"))
    d = t["datamix_slopes"]
    d = usable(d[d["basis"] == "difference at C_ref"] if "basis" in d.columns else d.iloc[:0], ("slope_lo", "slope_hi"))
    return pd.DataFrame(
        [
            row("n_opt_interval_ratio", o["n_opt_hi"] / o["n_opt_lo"], "hi/lo of the N* interval, interior optima"),
            row("exponent_interval_width", s["a_hi"] - s["a_lo"], "a_hi - a_lo of the exponent of N* = e^b C^a"),
            row(
                "claim2_difference",
                d["slope"],
                "knowledge-minus-code slope at C_ref; excluding_0 = how many of their intervals exclude 0",
                excluding_0=int(((d["slope_lo"] > 0) | (d["slope_hi"] < 0)).sum()),
            ),
        ]
    )


def reference_compute(budgets) -> float:
    """C_ref: the geometric mean of the budgets, where the datamix slopes are compared."""
    budgets = np.asarray(budgets, float)
    return float(np.exp(np.mean(np.log(budgets)))) if budgets.size else np.nan


def isoflop_tables(usable: pd.DataFrame, fc: dict):
    """Approach 2 on the usable cells (loss column 'loss'): optima per budget and power laws,
    with the fit settings `fc` (config's fit)."""
    sc = fit.isoflop_scaling(
        usable,
        GROUP,
        n_col="n_params",
        budget_col="budget",
        loss_col="loss",
        n_boot=int(fc["n_boot"]),
        seed=0,
        ci=float(fc["ci"]),
        window=fc.get("window"),
    )
    if "n_budgets" in sc.scaling.columns:
        sc.scaling["note"] = np.where(
            (sc.scaling["n_budgets"] == 2) & (sc.scaling["status"] == "ok"),
            "2 budgets: the line passes through both optima; its interval comes only from their cell bootstraps",
            "",
        )
    return sc


def datamix_table(cells: pd.DataFrame, scaling: pd.DataFrame, cfg: dict, c_ref: float):
    """Claim 2's table: slopes per budget, then at C_ref from the power laws (and their
    difference); plus the N*(C_ref) points the figure draws."""
    fc, srcs = cfg["fit"], cfg["data"].get("sources")
    n_boot, ci = int(fc["n_boot"]), float(fc["ci"])
    per = skills.datamix_slopes(cells, sources=srcs, n_boot=n_boot, seed=0, ci=ci, window=fc.get("window"))
    per.insert(2, "basis", "budget")
    ref, pts = datamix_at_reference(scaling, c_ref, n_boot, ci, sources=srcs)
    return pd.concat([per, ref], ignore_index=True)[per.columns], pts


def build_tables(cells: pd.DataFrame, cfg: dict) -> dict:
    """Every table (name -> DataFrame) plus 'extra' data the figures and summary need."""
    fc = cfg["fit"]
    n_boot, ci = int(fc["n_boot"]), float(fc["ci"])
    window = fc.get("window")  # not in the schema today: every size of a budget is fitted
    div = cells["diverged"].astype(bool)
    usable = cells[~div].rename(columns={"value": "loss"})  # NaN losses stay: the fits say so
    metrics = sorted(cells["metric"].dropna().unique())
    budgets = np.array(sorted(cells["budget"].dropna().unique()), float)
    c_ref = reference_compute(budgets)
    c_top = float(budgets.max()) if budgets.size else np.nan
    t, extra = {}, dict(c_ref=c_ref, c_top=c_top, n_boot=n_boot, ci=ci, window=window)
    sc = isoflop_tables(usable, fc)
    t["optima"], t["scaling"] = sc.optima, sc.scaling
    extra["line_draws"] = sc.scaling.attrs.get("line_draws", {})
    kw = dict(n_boot=n_boot, seed=0, ci=ci, window=window)

    def section(name, f):
        try:
            return f()
        except Exception as e:  # one analysis failing must not lose the others
            return _failed_table(name, e)

    srcs = cfg["data"].get("sources")
    t["ape_residuals"] = section("ape_residuals", lambda: skills.ape_residuals(cells, w=APE_W, sources=srcs, **kw))

    def slopes():
        table, extra["optimum_at_reference"] = datamix_table(cells, sc.scaling, cfg, c_ref)
        return table

    t["datamix_slopes"] = section("datamix_slopes", slopes)

    def composition():
        vc = skills.validation_composition(cells, ws=VALIDATION_WS, **kw)
        return vc.curve, vc.summary

    vc = section("validation_composition", composition)
    t["validation_composition"], t["validation_composition_summary"] = vc if isinstance(vc, tuple) else (vc, vc)

    def heldout():
        parts = [skills.heldout_budget_prediction(cells, m, mix_w=APE_W, **kw) for m in metrics + [skills.MIX]]
        return pd.concat(parts, ignore_index=True)

    t["heldout_prediction"] = section("heldout_prediction", heldout)
    t["parametric"] = section(
        "parametric", lambda: parametric_table(usable, min(n_boot, PARAMETRIC_MAX_BOOT), ci, c_top)
    )
    t["claims"] = section("claims", lambda: claims.verdicts(t))
    t["certainty"] = section("certainty", lambda: certainty_table(t))
    mixture_section(cells, cfg, t, extra)
    return {"tables": t, "extra": extra}


MIXTURE_TABLES = ("mixture_law", "mixture_loo", "mixture_slopes", "mixture_accounting")


def mixture_section(cells: pd.DataFrame, cfg: dict, t: dict, extra: dict) -> None:
    """The mixture law's tables (mixreport); if the fit fails as a whole, each says why."""
    try:
        mixreport.mixture_tables(cells, cfg, t, extra)
    except Exception as e:  # one analysis failing must not lose the others
        for name in MIXTURE_TABLES:
            t[name] = _failed_table(name, e)
        extra["mixture_laws"] = None
