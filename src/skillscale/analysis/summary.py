"""summary.md: what the tables say, one small function per section (claims: docs/claims.md).

Every number is read from the tables; every verdict from the claims table, whose rules the
section states before its numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skillscale.analysis import claims as claimsmod

TERMS = [
    "**Approach 2** (IsoFLOP, Hoffmann et al. 2022): per compute budget C, a parabola of bits/byte in ln N;"
    " its vertex is the compute-optimal size N*. N*(C) = exp(b) C^a is then fitted over the budgets.",
    "**Approach 3** (parametric): L(N, D) = E + A/N^alpha + B/D^beta fitted to every cell at once;"
    " N* ∝ C^(beta/(alpha+beta)).",
    "**edge**: the parabola's minimum lies at or beyond the smallest or largest size sampled at that budget."
    " It is no estimate of N*: the tables report the bound it passed (e.g. 'below the smallest sampled size,"
    " 1.5e4') and leave it out of power laws, slopes and verdicts.",
    "**partial** (validation composition): some validation-mix weights w gave an edge or failed optimum;"
    " they are left out of that group's max/min.",
    "**APE** (aggregate performance estimator): the validation loss a practitioner would choose N* by,"
    " here bits/byte of a validation set that is a byte share w of knowledge text and 1 - w of code text."
    " An APE residual is ln N*(skill metric) - ln N*(APE).",
    "**Intervals**: percentile bootstrap over cells, widened where needed to contain their point estimate"
    " (so no estimate lies outside its interval); an interval of zero width is reported as none.",
]


def ci_str(v, lo, hi, fmt=".3g") -> str:
    if not np.isfinite(v):
        return "n/a"
    inner = f" [{lo:{fmt}}, {hi:{fmt}}]" if np.isfinite(lo) and np.isfinite(hi) else " (no interval)"
    return f"{v:{fmt}}{inner}"


def status_counts(df: pd.DataFrame) -> str:
    if "status" not in df.columns or df.empty:
        return "no rows"
    kinds = df["status"].astype(str).str.split(":").str[0].value_counts()
    return ", ".join(f"{n} {k}" for k, n in kinds.items())


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if "status" in df.columns else df.iloc[0:0]


def _verdict_lines(ct: pd.DataFrame, claim: str) -> list[str]:
    """The claim's verdict and, per part, the tally behind it."""
    if "claim" not in ct.columns:
        return [f"Verdict: not available ({ct['status'].iloc[0] if 'status' in ct.columns else 'no table'})."]
    g = ct[ct["claim"] == claim]
    allrow = g[g["part"] == "all"]
    out = [f"**Verdict: {allrow['verdict'].iloc[0] if len(allrow) else claimsmod.UNDECIDED}**", ""]
    for _, r in g[g["part"] != "all"].iterrows():
        med = f"; median {r['median']:+.3f}" if np.isfinite(r["median"]) else ""
        out.append(
            f"- {r['part']}: {r['verdict']} — {r['rule']}: {r['n_groups']} groups with an interval,"
            f" {r['n_for']} for, {r['n_against']} against, {r['n_neither']} neither{med}."
        )
    return out + [""]


def header(info: dict, extra: dict, t: dict) -> list[str]:
    return [
        f"# Summary of study `{info['study']}`",
        "",
        "Generated from the tables in this folder; every number below is read from them.",
        "",
        f"- {info['n_cells']} cells analysed, {info['n_missing']} missing, {info['n_diverged']} diverged"
        " (excluded from fits)."
        + "".join(f"\n  - {k}: {', '.join(info.get(k) or [])}" for k in ("missing", "diverged") if info.get(k)),
        f"- {info.get('provenance', 'provenance: unrecorded')}",
        f"- Intervals: {extra['ci']:.0%} percentile bootstrap over cells ({extra['n_boot']} resamples).",
        f"- IsoFLOP fits (optima.csv): {status_counts(t['optima'])}.",
        "",
        "## Terms",
        "",
        *(f"- {x}" for x in TERMS),
        "",
        "## How a claim is judged",
        "",
        "A group is one fit with an interval. It is *for* a claim when its interval excludes 0 on the claimed"
        " side, *against* when it excludes 0 on the other side. **supported**: at least"
        f" {claimsmod.MIN_GROUPS} groups, at least half for, and no more against than chance explains"
        f" (floor({claimsmod.CHANCE:g} x groups): a 90% interval misses by chance in 1 group of 10)."
        f" **contradicted**: at least {claimsmod.MIN_GROUPS} groups, at least half against, and no more for"
        " than chance explains. **undecided**: anything else."
        " A claim with parts is supported when every part is, contradicted when any part is."
        " Claim 3 claims a change of N*: a group is for it when its interval excludes 0 and reaches beyond"
        " ±ln 1.1, against it when the whole interval lies within ±ln 1.1 (a change under 10%),"
        " and changes of both signs (beyond chance)"
        " leave it undecided. Details: docs/claims.md.",
        "",
    ]


def _opt_cell(r) -> str:
    st = str(r["status"]).split(":")[0]
    if st == "edge" and np.isfinite(r.get("n_opt_bound", np.nan)):
        return f"{'<' if r['edge_side'] == 'below' else '>'}{r['n_opt_bound']:.3g} (edge)"
    return ci_str(r["n_opt"], r["n_opt_lo"], r["n_opt_hi"]) + ("" if st == "ok" else f" ({st})")


def top_budget(t: dict, extra: dict) -> list[str]:
    o = t["optima"]
    top = o[o["budget"] == extra["c_top"]] if "budget" in o.columns else o.iloc[0:0]
    if top.empty:
        return []
    ms = sorted(top["metric"].unique())
    L = [
        f"## N* per skill metric at the largest budget, C = {extra['c_top']:.3g} FLOPs",
        "",
        "'<x (edge)': the optimum lies below the smallest sampled size x; '>x (edge)': above the largest.",
        "",
        "| code fraction | " + " | ".join(ms) + " |",
        "|---:|" + "---|" * len(ms),
    ]
    for cf, g in top.groupby("code_frac"):
        row = [(_opt_cell(g[g["metric"] == m].iloc[0]) if (g["metric"] == m).any() else "-") for m in ms]
        L.append(f"| {cf:g} | " + " | ".join(row) + " |")
    return L + [""]


def claim1(t: dict, extra: dict) -> list[str]:
    a = t["ape_residuals"]
    w = a["w"].iloc[0] if "w" in a.columns and len(a) else np.nan
    L = [
        f"## Claim 1: knowledge is capacity-hungry, code data-hungry (APE residuals, w = {w:g})",
        "",
        "Residual = ln N*(skill) - ln N*(APE); > 0 capacity-hungry, < 0 data-hungry. Claimed: > 0 for knowledge"
        " metrics, < 0 for code metrics. Only metrics that are not components of the APE count: the APE is"
        " built from knowledge_text and code_text (on configured sources, the pooled held-out text of every"
        " knowledge and code source without aggregate: false), so their residuals have opposite signs by"
        " construction.",
        "",
    ]
    L += _verdict_lines(t["claims"], claimsmod.CLAIM1)
    L += _claim1_metrics(a)
    ok = _ok(a)
    if "residual" in ok.columns:
        for m, g in ok.groupby("metric"):
            agg = bool(g["in_aggregate"].iloc[0]) if "in_aggregate" in g.columns else False
            counted = _truth(g["claim1_counts"].iloc[0]) if "claim1_counts" in g.columns else not agg
            L.append(
                f"- {m} ({g.skill.iloc[0]}{'' if counted else ', not counted'}):"
                f" {len(g)} interior groups, interval above 0 in {int((g.residual_lo > 0).sum())},"
                f" below 0 in {int((g.residual_hi < 0).sum())}; median {g.residual.median():+.3f}"
                f" (N* x{np.exp(g.residual.median()):.2f} of the APE optimum)."
            )
    L.append(f"\nRows: {status_counts(a)} (see ape_residuals.csv).")
    return L + [""]


def _truth(v) -> bool:
    return str(v).strip().lower() in ("true", "1")


def _claim1_metrics(a: pd.DataFrame) -> list[str]:
    """Which metrics claim 1 counted and why, and why the others were left out."""
    if "claim1_note" not in a.columns:
        return []
    notes = a.dropna(subset=["metric"]).groupby("metric")["claim1_note"].first()
    used = [m for m, n in notes.items() if str(n).startswith("counted")]
    out = [
        f"Metrics claim 1 counts: {', '.join(used) or 'none'} (each independent of the APE, counted once;"
        " a group counts where both its optimum and the APE's are interior)."
    ]
    out += [f"- {m}: {n}" for m, n in notes.items() if m not in used]
    return out + [""]


def claim2(t: dict, extra: dict) -> list[str]:
    s = t["datamix_slopes"]
    L = [
        "## Claim 2: upsampling a skill's data moves its optimum to larger N, knowledge faster than code",
        "",
        "Slope = d ln N* / d (share of training tokens that are the skill's own data). Claimed: > 0 for both"
        " skills, and knowledge slope - code slope > 0. Judged on the per-budget slopes; the slopes at the"
        f" reference compute C_ref = {extra['c_ref']:.3g} FLOPs (each code fraction's power law, pooling its"
        " budgets) decide the difference.",
        "",
    ]
    L += _verdict_lines(t["claims"], claimsmod.CLAIM2)
    if "basis" not in s.columns:
        return L + [f"Not available: {s['status'].iloc[0]}", ""]
    for _, r in s[s["basis"] == "power law at C_ref"].iterrows():
        L.append(
            f"- at C_ref, {r['metric']} ({r['skill']}): {ci_str(r['slope'], r['slope_lo'], r['slope_hi'])}"
            f"; N* by own share {r['n_opt_by_fraction']}"
            if r["status"] == "ok"
            else f"- at C_ref, {r['metric']}: {r['status']}"
        )
    for _, r in s[s["basis"] == "difference at C_ref"].iterrows():
        L.append(f"- at C_ref, {r['metric']}: {ci_str(r['slope'], r['slope_lo'], r['slope_hi'])}")
    okp = _ok(s[s["basis"] == "budget"])
    for m, g in okp.groupby("metric"):
        L.append(
            f"- per budget, {m}: "
            + "; ".join(f"C={r.budget:.2g}: {ci_str(r.slope, r.slope_lo, r.slope_hi, '.2f')}" for r in g.itertuples())
        )
    L.append(f"\nRows: {status_counts(s)} (see datamix_slopes.csv).")
    return L + [""]


def claim3(t: dict, extra: dict) -> list[str]:
    vs = t["validation_composition_summary"]
    L = [
        "## Claim 3: the validation set's skill composition changes N* (paper: up to ~50%)",
        "",
        "Contrast = ln N*(APE at w = 1, all knowledge text) - ln N*(w = 0, all code text), with a paired"
        " bootstrap interval; z = contrast / its bootstrap standard deviation. rel_change = max/min - 1 of N*"
        " over w is shown as a description only: it is >= 0 for any data.",
        "",
    ]
    L += _verdict_lines(t["claims"], claimsmod.CLAIM3)
    if "contrast" not in vs.columns:
        return L + [f"Not available ({status_counts(vs)}).", ""]
    for r in vs.itertuples():
        if np.isfinite(r.contrast):
            L.append(
                f"- code fraction {r.code_frac:g}, C = {r.budget:.3g}: contrast"
                f" {ci_str(r.contrast, r.contrast_lo, r.contrast_hi, '+.3f')} (N* x{np.exp(r.contrast):.2f},"
                f" z = {r.contrast_z:+.1f}); rel_change {r.rel_change:.1%}"
            )
        else:
            L.append(f"- code fraction {r.code_frac:g}, C = {r.budget:.3g}: no contrast ({str(r.status)})")
    L.append(f"\nRows: {status_counts(vs)} (see validation_composition_summary.csv).")
    return L + [""]


def heldout(t: dict, extra: dict) -> list[str]:
    h = t["heldout_prediction"]
    L = ["## Held-out budget prediction", ""]
    if "n_opt_rel_err" not in h.columns:
        return L + [f"Not available: {h['status'].iloc[0]}", ""]
    hk = h[np.isfinite(h["n_opt_rel_err"].astype(float))]
    for _, r in hk.iterrows():
        L.append(
            f"- {r['metric']}, code fraction {r['code_frac']:g}, C = {r['heldout_budget']:.3g}:"
            f" N* predicted {ci_str(r['n_opt_pred'], r['n_opt_pred_lo'], r['n_opt_pred_hi'])}"
            f" vs {ci_str(r['n_opt_obs'], r['n_opt_obs_lo'], r['n_opt_obs_hi'])} observed"
            f" ({r['n_opt_rel_err']:+.1%}); loss* {r['loss_pred']:.4g} vs {r['loss_obs']:.4g}"
            f" ({r['loss_rel_err']:+.2%})"
        )
    if not hk.empty:
        L.append(
            f"\nMedian |error|: N* {hk['n_opt_rel_err'].abs().median():.1%},"
            f" optimal loss {hk['loss_rel_err'].abs().median():.2%} over {len(hk)} predictions"
            " (held-out optima at an edge have no observed N* and are not counted)."
        )
    L.append(f"Rows: {status_counts(h)} (see heldout_prediction.csv).")
    return L + [""]


def parametric(t: dict, extra: dict) -> list[str]:
    p = t["parametric"]
    L = ["## Approach 3 (parametric) next to Approach 2", ""]
    if "a_opt" not in p.columns:
        return L + [f"Not available: {p['status'].iloc[0]}", ""]
    sc = t["scaling"]
    for _, r in p.iterrows():
        if not np.isfinite(r.get("a_opt", np.nan)):
            L.append(f"- code fraction {r['code_frac']:g}, {r['metric']}: no exponent ({r['status']})")
            continue
        a2 = sc[(sc.code_frac == r["code_frac"]) & (sc.metric == r["metric"])]
        a2s = ci_str(a2.a.iloc[0], a2.a_lo.iloc[0], a2.a_hi.iloc[0]) if len(a2) and np.isfinite(a2.a.iloc[0]) else "n/a"
        L.append(
            f"- code fraction {r['code_frac']:g}, {r['metric']}: N* ∝ C^a with a ="
            f" {ci_str(r['a_opt'], r['a_opt_lo'], r['a_opt_hi'])} (Approach 2: {a2s});"
            f" E = {ci_str(r['E'], r['E_lo'], r['E_hi'])}; N*({extra['c_top']:.3g}) = {r['n_opt_top']:.3g}"
            + ("" if r["status"] == "ok" else f" [{r['status']}]")
        )
    L.append(f"\nRows: {status_counts(p)} (see parametric.csv).")
    return L + [""]


def certainty(t: dict, extra: dict) -> list[str]:
    p = t["certainty"]
    L = ["## How sure the answers are", ""]
    if "statistic" not in p.columns:
        return L + [f"Not available: {p['status'].iloc[0]}", ""]
    for r in p.itertuples():
        excl = f"; {r.excluding_0:.0f} of {r.n} intervals exclude 0" if np.isfinite(r.excluding_0) and r.n else ""
        L.append(
            f"- {r.statistic}: median {r.median:.3g} over {r.n} (range {r.min:.3g} to {r.max:.3g}){excl}."
            f" {r.what[0].upper() + r.what[1:]}."
            if r.n
            else f"- {r.statistic}: {r.status}"
        )
    return L + ["", "(see certainty.csv)", ""]


def claim2_law(t: dict, extra: dict) -> list[str]:
    """Claim 2 read off the mixture law, beside the per-budget slopes (the verdict stays theirs)."""
    s = t.get("mixture_slopes")
    L = ["### Claim 2 from the mixture law", ""]
    if s is None or "law_slope" not in s.columns:
        why = s["status"].iloc[0] if s is not None and "status" in s.columns and len(s) else "no table"
        return L + [f"Not available: {why}", ""]
    L.append(
        "The law's d ln N*/d own share is the same least-squares slope over the trained code fractions,"
        " read off the law fitted to every cell at once. It does not change the verdict above (its rules,"
        " docs/claims.md, judge the per-budget slopes); 'agree' means the two intervals overlap."
    )
    L.append("")
    for _, r in s[s["basis"] != "budget"].iterrows():
        if str(r.get("status", "ok")) != "ok":
            L.append(f"- {r['metric']}: {r['status']}")
            continue
        L.append(
            f"- {'at C_ref' if r['basis'] != 'budget' else ''} {r['metric']}: law"
            f" {ci_str(r['law_slope'], r['law_slope_lo'], r['law_slope_hi'])}, table"
            f" {ci_str(r['table_slope'], r['table_slope_lo'], r['table_slope_hi'])}; agree: {r['agree'] or 'n/a'}"
        )
    per = s[s["basis"] == "budget"]
    if len(per):
        yes = int((per["agree"] == "yes").sum())
        L.append(f"- per budget: the law and the table agree in {yes} of {len(per)} metric x budget groups")
    return L + ["", "(see mixture_slopes.csv)", ""]


def mixture(t: dict, extra: dict) -> list[str]:
    """The mixture law: chosen form, how each candidate predicted a held-out code fraction."""
    law = t.get("mixture_law")
    L = ["## Mixture law L(N, D, own share) and the held-out code fraction", ""]
    if law is None or "form" not in law.columns:
        return L + [f"Not available: {law['status'].iloc[0] if law is not None else 'no table'}", ""]
    chosen = law.loc[law["chosen"].astype(bool), "form"]
    scored = np.isfinite(law.get("loo_median_abs_n_err", pd.Series(dtype=float))).any()
    fitted = law.loc[law["chosen"].astype(bool), "status"].astype(str).str.startswith("ok").any()
    if not fitted:
        L.append("No form fitted (see the status column of mixture_law.csv).")
    elif scored:
        L.append(
            f"Chosen form: **{chosen.iloc[0]}** (rule: among the forms whose leave-one-code-fraction-out"
            " median |N* error| is within 15%, the lowest median |loss* error|)."
        )
    else:  # one code fraction: none can be held out to choose by
        L.append(f"Form: **{chosen.iloc[0]}**, the default: no code fraction could be held out to choose by.")
    L.append("")
    cand = law.drop_duplicates("form")
    for _, r in cand.iterrows():
        if not np.isfinite(r.get("loo_median_abs_n_err", np.nan)):  # failed, or no fraction to hold out
            why = r.get("status", "not fitted")
            L.append(f"- {r['form']}: no held-out score" + ("" if why == "ok" else f" ({why})"))
            continue
        cov, boot = r.get("loo_coverage", np.nan), r.get("loo_coverage_bootstrap_only", np.nan)
        cov_s = (
            f", {cov:.0%} of its intervals contain the observed N* ({boot:.0%} before widening them by the"
            " other held-out fractions' error)"
            if np.isfinite(cov) and np.isfinite(boot)
            else ""
        )
        lo_in, lo_out = r.get("loo_median_abs_loss_err_interp", np.nan), r.get("loo_median_abs_loss_err_extrap", np.nan)
        ins = r.get("in_sample_abs_loss_err", np.nan)
        split_s = f" (interpolated fractions {lo_in:.2%}, extrapolated {lo_out:.2%})"
        split_s = split_s if np.isfinite(lo_in + lo_out) else ""
        ins_s = f"; fitted on every fraction, {ins:.2%} on loss*" if np.isfinite(ins) else ""
        L.append(
            f"- {r['form']}: median |N* error| {r['loo_median_abs_n_err']:.1%},"
            f" median |loss* error| {r['loo_median_abs_loss_err']:.2%}{cov_s}{split_s}{ins_s}"
        )
    acc = t.get("mixture_accounting")
    if acc is not None and "exact_over_6nd" in acc.columns:
        ratio = acc["exact_over_6nd"].dropna()
        if len(ratio):
            L.append(
                f"- counting exact FLOPs (attention included) instead of 6ND moves the law's N* by a factor"
                f" {ratio.min():.3g}-{ratio.max():.3g} (median {ratio.median():.3g}; mixture_accounting.csv)"
            )
    return L + ["", "(see mixture_law.csv, mixture_loo.csv; `skillscale optimum` answers from this law)", ""]


SECTIONS = (top_budget, claim1, claim2, claim2_law, claim3, heldout, parametric, mixture, certainty)


def markdown(tables: dict, extra: dict, info: dict) -> str:
    L = header(info, extra, tables)
    for section in SECTIONS:
        L += section(tables, extra)
    return "\n".join(L) + "\n"
