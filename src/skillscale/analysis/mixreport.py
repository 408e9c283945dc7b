"""The mixture law's tables in a study's analysis: the law, its held-out test, claim 2 and FLOP counting.

`mixture_tables(cells, cfg, t, extra)` adds to the tables `t` (tables.build_tables'):
- mixture_law: per metric x form, parameters with intervals, fit quality, held-out score;
- mixture_loo: leave one code fraction out, per candidate x metric x fraction x budget;
- mixture_slopes: claim 2 from the law, d ln N*/d own share at each budget and at C_ref
  beside the per-budget slopes of datamix_slopes, and whether the two agree;
- mixture_accounting: the law's N* with C = 6ND and with exact FLOPs (attention included),
  side by side per metric, code fraction and budget, and the exponent of N*(C) under each,
  from the law and from the observed optima;
and the fitted laws to extra["mixture_laws"] (report.py caches them for `skillscale optimum`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skillscale.analysis import fit, mixlaw, mixselect, skills
from skillscale.analysis.fit import mixture as mx

__all__ = ["mixture_tables", "law_slopes", "accounting_table", "law_curve"]


def law_curve(sl: mixlaw.StudyLaws, metric: str, budgets, share: float, fpt=None) -> tuple[np.ndarray, np.ndarray]:
    """ln N* of the chosen law at each budget (rows: point, then every draw)."""
    law = sl.law(metric)
    out = []
    for b in budgets:
        o = mx.optimum([(metric, law, 1.0, share)], float(b), fpt)
        out.append(np.concatenate([[o.log_n], o.log_n_draws]))
    return np.array(out).T


def _ls_slope(x, Y):
    """Least-squares slope of each row of Y on x (the per-budget statistic's definition)."""
    x = np.asarray(x, float)
    xc = x - x.mean()
    return (Y - Y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)


def law_slopes(sl: mixlaw.StudyLaws, datamix: pd.DataFrame, c_ref: float) -> pd.DataFrame:
    """d ln N*/d own share from the law at the trained shares, per budget and at C_ref.

    The law's slope is the same least-squares slope over the trained code fractions that
    datamix_slopes fits to the observed optima, so the two read the same quantity; they
    agree when their intervals overlap. At C_ref, knowledge-minus-code differences use
    paired draws (the laws share their resamples of cells)."""
    budgets = list(sl.ranges["budgets"]) + [c_ref]
    fracs = sl.ranges["code_fracs"]
    per = datamix.set_index(["metric", "basis", "budget"]) if "basis" in datamix.columns else None
    rows, at_ref = [], {}
    for m in sorted(sl.laws):
        sk = sl.skills[m]
        if sk not in skills.SLOPE_SKILLS or len(fracs) < 2:
            continue
        try:
            sl.law(m)
        except fit.FitError as e:
            rows.append(dict(metric=m, skill=sk, status=f"failed: {e}"))
            continue
        shares = [sl.share(m, f) for f in fracs]
        # draws x budgets x fractions
        curves = np.stack([law_curve(sl, m, budgets, s, sl.per_token()) for s in shares], axis=-1)
        for j, b in enumerate(budgets):
            sd = _ls_slope(shares, curves[:, j, :])
            lo, hi = fit.interval(sd[1:], sl.ci, sd[0])
            basis = "power law at C_ref" if j == len(budgets) - 1 else "budget"
            row = dict(metric=m, skill=sk, basis=basis, budget=b, law_slope=sd[0], law_slope_lo=lo, law_slope_hi=hi)
            row.update(_beside(per, row))
            rows.append(row)
            if basis != "budget":
                at_ref[(m, sk)] = sd
    rows += _differences(at_ref, c_ref, sl.ci, per)
    if not rows:  # one code fraction (a study of one mix): no slope over shares to read
        return pd.DataFrame([{"status": f"{len(fracs)} code fraction(s) trained; a slope needs >= 2"}])
    return pd.DataFrame(rows)


def _beside(per, row: dict) -> dict:
    """The per-budget (or C_ref) slope of datamix_slopes for the row's metric, and agreement."""
    out = dict(table_slope=np.nan, table_slope_lo=np.nan, table_slope_hi=np.nan, agree="", status="ok")
    if per is None:
        return out
    m, basis, b = row["metric"], row["basis"], row["budget"]
    hit = per.loc[[k for k in per.index if k[0] == m and k[1] == basis and np.isclose(k[2], b, rtol=1e-6)]]
    if not len(hit) or str(hit["status"].iloc[0]) != "ok":
        out["agree"] = "no table slope"
        return out
    r = hit.iloc[0]
    out.update(table_slope=r["slope"], table_slope_lo=r["slope_lo"], table_slope_hi=r["slope_hi"])
    return out | dict(agree=_agree(row, r))


def _agree(row: dict, r) -> str:
    lo, hi = r["slope_lo"], r["slope_hi"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no table interval"
    llo, lhi = row.get("law_slope_lo", np.nan), row.get("law_slope_hi", np.nan)
    if np.isfinite(llo) and np.isfinite(lhi):
        return "yes" if llo <= hi and lo <= lhi else "no"
    return "yes" if lo <= row.get("law_slope", np.nan) <= hi else "no"


def _differences(at_ref: dict, c_ref: float, ci: float, per) -> list[dict]:
    rows = []
    for (mk, sk), dk in at_ref.items():
        if sk != "knowledge":
            continue
        for (mc, sc), dc in at_ref.items():
            if sc != "code":
                continue
            d = dk - dc
            lo, hi = fit.interval(d[1:], ci, d[0])
            row = dict(metric=f"{mk} - {mc}", skill="knowledge - code", basis="difference at C_ref", budget=c_ref)
            row.update(law_slope=d[0], law_slope_lo=lo, law_slope_hi=hi)
            row.update(_beside(per, row))
            rows.append(row)
    return rows


def accounting_table(sl: mixlaw.StudyLaws, budgets, optima: pd.DataFrame) -> pd.DataFrame:
    """The law's N* per metric x code fraction x budget with C = 6ND and with exact FLOPs,
    plus rows with the exponent a of N* = e^b C^a under each: the law's over the budgets and
    the observed optima's."""
    fpt = mixlaw.fpt_function(sl.fpt)
    if fpt is None:
        return pd.DataFrame([{"status": "failed: the cells record no flops_exact to count with"}])
    rows = []
    lc = np.log(np.asarray(budgets, float))
    for m in sorted(sl.laws):
        try:
            sl.law(m)
        except fit.FitError as e:
            rows.append(dict(metric=m, status=f"failed: {e}"))
            continue
        for cf in sl.ranges["code_fracs"]:
            s = sl.share(m, cf)
            six, ex = law_curve(sl, m, budgets, s), law_curve(sl, m, budgets, s, fpt)
            for j, b in enumerate(budgets):
                r = dict(metric=m, code_frac=cf, basis="budget", budget=b)
                for tag, c in (("6nd", six[:, j]), ("exact", ex[:, j])):
                    lo, hi = fit.interval(c[1:], sl.ci, c[0])
                    r.update(
                        {f"n_opt_{tag}": np.exp(c[0]), f"n_opt_{tag}_lo": np.exp(lo), f"n_opt_{tag}_hi": np.exp(hi)}
                    )
                r["exact_over_6nd"] = r["n_opt_exact"] / r["n_opt_6nd"]
                rows.append(dict(r, status="ok"))
            a6, ae = (float(np.polyfit(lc, c[0], 1)[0]) for c in (six, ex))
            rows.append(dict(metric=m, code_frac=cf, basis="power law exponent a", a_6nd=a6, a_exact=ae, status="ok"))
            rows.append(_observed_exponents(sl, optima, m, cf, fpt))
    return pd.DataFrame(rows)


def _observed_exponents(sl: mixlaw.StudyLaws, optima: pd.DataFrame, m: str, cf: float, fpt) -> dict:
    """The observed interior optima's power law with each optimum's compute counted both ways.

    The models are the same; only the compute charged for them differs (a budget's cells are
    at one compute under the study's count only, so the optima are not re-cut per count)."""
    row = dict(metric=m, code_frac=cf, basis="observed optima, exponent a", status="ok")
    ok = optima[(optima["status"] == "ok") & (optima["metric"] == m) & np.isclose(optima["code_frac"], cf)]
    if len(ok) < 2:
        return dict(row, status=f"failed: {len(ok)} interior optima; a power law needs >= 2")
    n, c = ok["n_opt"].to_numpy(float), ok["budget"].to_numpy(float)
    # the study's count is what its budgets mean; the other count charges the same (N*, D*)
    d = c / (6 * n) if sl.flops == "6nd" else c / fpt(n)
    c6, ce = 6 * n * d, fpt(n) * d
    a6, ae = (float(np.polyfit(np.log(cc), np.log(n), 1)[0]) for cc in (c6, ce))
    return dict(row, a_6nd=a6, a_exact=ae)


def mixture_tables(cells: pd.DataFrame, cfg: dict, t: dict, extra: dict) -> None:
    """Fit the study's laws and add the four mixture tables to `t` (see the module docstring)."""
    sl, loo = mixselect.fit_study(cells, cfg, t["optima"])
    extra["mixture_laws"] = sl
    t["mixture_law"] = mixselect.law_table(sl)
    t["mixture_loo"] = mixselect.loo_table(loo, sl.chosen)
    t["mixture_slopes"] = law_slopes(sl, t["datamix_slopes"], extra["c_ref"])
    t["mixture_accounting"] = accounting_table(sl, sl.ranges["budgets"], t["optima"])
