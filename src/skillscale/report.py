"""Aggregate -> fits -> tables -> figures for one study folder.

    skillscale analyze --config results/<study>/config.yaml --study-dir results/<study> [--allow-missing]

Everything is computed from the tidy cells table (one row per cell x skill metric, bits per
byte) and written under results/<study>/:

tables/ (each as .csv with full precision and every failure reason, .md, and .tex with
booktabs rules; the .tex merges each value with its interval and shortens statuses):
- optima: IsoFLOP parabola per code fraction x metric x budget (N*, D*, loss* with
  bootstrap CIs over cells, edge flags, the fitted size range).
- scaling: ln N* = a ln C + b per code fraction x metric over the interior optima, with
  intervals propagated from every budget's cell bootstrap (fit.isoflop_scaling).
- ape_residuals: ln N*(skill) - ln N*(validation mix of knowledge and code text, w = 0.5)
  per code fraction x metric x budget; > 0 capacity-hungry, < 0 data-hungry.
- datamix_slopes: d ln N* / d (share of the skill's own data) per metric, at each budget
  and at a reference compute C_ref (the geometric mean of the budgets, read off each code
  fraction's power law), plus knowledge-minus-code slope differences at C_ref.
- validation_composition (+ _summary): N* picked by the validation mix as its knowledge
  weight w goes 0 -> 1, and the largest relative change of N*.
- heldout_prediction: power laws fitted on every budget but the largest predict the
  largest budget's N* and optimal loss; relative errors.
- parametric: Approach 3, L(N, D) = E + A/N^alpha + B/D^beta, per code fraction x metric.
- summary.md: what the numbers say per claim of the paper, generated from the tables.

figures/: isoflop, scaling, optimum_vs_code_fraction, validation_composition, ape_residuals.

A group that cannot be fitted (too few sizes, NaN losses, a flat or concave curve) gets a
row whose `status` says why and names the group; an analysis that fails as a whole gets a
one-row table saying so. Neither stops the other tables. Diverged cells are excluded from
fits and listed; cells of the plan that have not finished are listed as missing.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import aggregate, fit, io
from . import config as cfgmod
from .outputs import FIGURES, TABLE_FORMATS, TABLES, output_paths  # noqa: F401  (re-exported)
from .tables import APE_W, build_tables

log = logging.getLogger("skillscale.report")


class IncompleteStudy(RuntimeError):
    pass


# --------------------------------------------------------------------------------------
# writing tables: CSV, Markdown, LaTeX (booktabs, hand-rolled: no jinja2 needed)
# --------------------------------------------------------------------------------------

# Long free-text columns stay in the CSV and Markdown; the LaTeX table is for a paper.
TEX_DROP = {"note", "excluded_cells", "n_opt_by_fraction", "fractions", "budgets", "fit_budgets",
            "edge_excluded", "ci_method", "n_fit_min", "n_fit_max", "curvature", "intercept", "w_at_min",
            "n_opt_min", "n_opt_max", "boot_frac"}
_TEX_ESC = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(s) -> str:
    return "".join(_TEX_ESC.get(ch, ch) for ch in str(s))


def _tex_num(v) -> str:
    if v is None or (isinstance(v, (float, np.floating)) and not math.isfinite(float(v))):
        return "--"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        s = f"{float(v):.3g}"
        if "e" in s:
            m, e = s.split("e")
            return f"${m}\\times10^{{{int(e)}}}$"
        return s
    return tex_escape(v)


def _short_status(s) -> str:
    """'failed: code_frac=0.5, ...: why' -> 'failed' (the reason is in the CSV)."""
    return str(s).split(":", 1)[0] if isinstance(s, str) else _tex_num(s)


def to_latex(df: pd.DataFrame, caption: str = "", label: str = "", notes: list[str] = ()) -> str:
    """A booktabs table: each column X with X_lo and X_hi becomes one 'X [lo, hi]' column."""
    cols = [c for c in df.columns if c not in TEX_DROP]
    merged = {c for c in cols if f"{c}_lo" in df.columns and f"{c}_hi" in df.columns}
    shown = [c for c in cols if not (c.endswith(("_lo", "_hi")) and c[:-3] in merged)]
    head, align, body = [], [], []
    for c in shown:
        head.append(tex_escape(c) + (" [CI]" if c in merged else ""))
        numeric = pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
        align.append("r" if numeric else "l")
    for _, r in df.iterrows():
        cells = []
        for c in shown:
            if c == "status":
                cells.append(tex_escape(_short_status(r[c])))
            elif c in merged:
                v, lo, hi = r[c], r[f"{c}_lo"], r[f"{c}_hi"]
                ci = "" if all(_tex_num(x) == "--" for x in (lo, hi)) else f" [{_tex_num(lo)}, {_tex_num(hi)}]"
                cells.append(_tex_num(v) + ci)
            else:
                cells.append(_tex_num(r[c]))
        body.append(" & ".join(cells) + r" \\")
    lines = [
        "% generated by skillscale (report.py); full precision and failure reasons in the .csv",
        r"% needs \usepackage{booktabs}",
        *(f"% {n}" for n in notes if n.startswith(("provenance", "missing", "diverged"))),
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
    ]
    if caption:
        lines.append(rf"\caption{{{tex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{''.join(align)}}}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    lines += body or [rf"\multicolumn{{{max(len(shown), 1)}}}{{l}}{{(no rows)}} \\"]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def write_table(df: pd.DataFrame, path_csv: Path, title: str | None = None, notes: list[str] = ()) -> None:
    """`path_csv` and, next to it, the same table as .md (title and notes first) and .tex."""
    path_csv = Path(path_csv)
    with io.atomic_path(path_csv) as tmp:
        df.to_csv(tmp, index=False)
    md = [f"# {title}", ""] if title else []
    md += [f"- {n}" for n in notes] + ([""] if notes else [])
    md.append(df.to_markdown(index=False, floatfmt=".4g") if len(df.columns) else "(no rows)")
    io.write_text(path_csv.with_suffix(".md"), "\n".join(md) + "\n")
    io.write_text(path_csv.with_suffix(".tex"), to_latex(df, title or "", f"tab:{path_csv.stem.replace('_', '-')}",
                                                          notes))


# --------------------------------------------------------------------------------------
# summary.md: the claims, in numbers
# --------------------------------------------------------------------------------------

def _ci_str(v, lo, hi, fmt=".3g") -> str:
    if not np.isfinite(v):
        return "n/a"
    inner = f" [{lo:{fmt}}, {hi:{fmt}}]" if np.isfinite(lo) and np.isfinite(hi) else " (no interval)"
    return f"{v:{fmt}}{inner}"


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if "status" in df.columns else df.iloc[0:0]


def _status_counts(df: pd.DataFrame) -> str:
    if "status" not in df.columns or df.empty:
        return "no rows"
    kinds = df["status"].astype(str).str.split(":").str[0].value_counts()
    return ", ".join(f"{n} {k}" for k, n in kinds.items())


def summary_markdown(tables: dict, extra: dict, info: dict) -> str:
    t = tables
    ci = extra["ci"]
    L = [f"# Summary of study `{info['study']}`", "",
         "Generated from the tables in this folder; every number below is read from them.", "",
         f"- {info['n_cells']} cells analysed, {info['n_missing']} missing, {info['n_diverged']} diverged"
         " (excluded from fits)." + "".join(f"\n  - {k}: {', '.join(info.get(k) or [])}"
                                            for k in ("missing", "diverged") if info.get(k)),
         f"- {info.get('provenance', 'provenance: unrecorded')}",
         f"- Intervals: {ci:.0%} percentile bootstrap over cells ({extra['n_boot']} resamples).",
         f"- IsoFLOP fits (optima.csv): {_status_counts(t['optima'])}.", ""]

    # N* at the top budget
    o = t["optima"]
    top = o[o["budget"] == extra["c_top"]] if "budget" in o.columns else o.iloc[0:0]
    if not top.empty:
        L += [f"## N* per skill metric at the largest budget, C = {extra['c_top']:.3g} FLOPs", ""]
        ms = sorted(top["metric"].unique())
        L.append("| code fraction | " + " | ".join(ms) + " |")
        L.append("|---:|" + "---|" * len(ms))
        for cf, g in top.groupby("code_frac"):
            cells = []
            for m in ms:
                r = g[g["metric"] == m]
                if r.empty:
                    cells.append("-")
                    continue
                r = r.iloc[0]
                st = str(r["status"]).split(":")[0]
                cells.append(_ci_str(r["n_opt"], r["n_opt_lo"], r["n_opt_hi"]) + ("" if st == "ok" else f" ({st})"))
            L.append(f"| {cf:g} | " + " | ".join(cells) + " |")
        L.append("")

    # Claim 1
    a = t["ape_residuals"]
    L += [f"## Claim 1: knowledge is capacity-hungry, code data-hungry (APE residuals, w = {APE_W:g})", "",
          "Residual = ln N*(skill) - ln N*(validation mix); > 0 capacity-hungry, < 0 data-hungry."
          " Counted over (code fraction, budget) groups whose optima are all interior.", ""]
    ok = _ok(a)
    skill_sign = {}
    if ok.empty:
        L += [f"No interior residuals ({_status_counts(a)}).", ""]
    else:
        for m, g in ok.groupby("metric"):
            pos, neg = int((g.residual > 0).sum()), int((g.residual < 0).sum())
            cap, dat = int((g.hungry == "capacity").sum()), int((g.hungry == "data").sum())
            med = float(g.residual.median())
            L.append(f"- {m} ({g.skill.iloc[0]}): residual > 0 in {pos} of {len(g)}, < 0 in {neg};"
                     f" interval above 0 in {cap}, below 0 in {dat}; median {med:+.3f}"
                     f" (N* x{np.exp(med):.2f} of the aggregate optimum).")
            s = skill_sign.setdefault(g.skill.iloc[0], [0, 0, 0, 0, 0])
            s[0] += pos; s[1] += neg; s[2] += cap; s[3] += dat; s[4] += len(g)  # noqa: E702
        k, c = skill_sign.get("knowledge"), skill_sign.get("code")
        if k and c:
            if k[0] > k[1] and c[1] > c[0] and k[2] > 0 and c[3] > 0 and k[3] == 0 and c[2] == 0:
                verdict = "consistent with claim 1 (majority signs as claimed, some intervals exclude 0, none the wrong way)"
            elif k[1] > k[0] and c[0] > c[1]:
                verdict = "opposite to claim 1 (majority signs reversed)"
            else:
                verdict = "not established at this scale (signs mixed or intervals include 0)"
            L += ["", f"By skill: knowledge residuals > 0 in {k[0]} of {k[4]} (interval above 0 in {k[2]}),"
                      f" code residuals < 0 in {c[1]} of {c[4]} (interval below 0 in {c[3]}): {verdict}."]
        L.append(f"\nOther rows: {_status_counts(a[a['status'] != 'ok'])} (see ape_residuals.csv).")
    L.append("")

    # Claim 2
    s = t["datamix_slopes"]
    L += ["## Claim 2: upsampling a skill's data moves its optimum to larger N, knowledge faster than code", "",
          "Slope = d ln N* / d (fraction of training tokens that are the skill's own data).", ""]
    if "basis" in s.columns:
        ref = s[s["basis"] == "power law at C_ref"]
        if not ref.empty:
            L.append(f"At C_ref = {extra['c_ref']:.3g} FLOPs (each code fraction's power law):")
            for _, r in ref.iterrows():
                if r["status"] == "ok":
                    L.append(f"- {r['metric']} ({r['skill']}): {_ci_str(r['slope'], r['slope_lo'], r['slope_hi'])}"
                             f"; N* by own fraction {r['n_opt_by_fraction']}")
                else:
                    L.append(f"- {r['metric']}: {r['status']}")
        diff = s[s["basis"] == "difference at C_ref"]
        if not diff.empty:
            L.append("\nKnowledge minus code slope at C_ref (> 0: knowledge optima move faster):")
            for _, r in diff.iterrows():
                sig = ("" if not np.isfinite(r["slope_lo"]) else " (interval above 0)" if r["slope_lo"] > 0
                       else " (interval below 0)" if r["slope_hi"] < 0 else " (interval includes 0)")
                L.append(f"- {r['metric']}: {_ci_str(r['slope'], r['slope_lo'], r['slope_hi'])}{sig}")
        per = s[s["basis"] == "budget"]
        okp = _ok(per)
        if not okp.empty:
            L.append("\nPer budget:")
            for m, g in okp.groupby("metric"):
                L.append(f"- {m}: slope > 0 at {int((g.slope > 0).sum())} of {len(g)} budgets with a slope"
                         f" (interval above 0 at {int((g.slope_lo > 0).sum())}, below 0 at"
                         f" {int((g.slope_hi < 0).sum())}); range {g.slope.min():+.2f} to {g.slope.max():+.2f}")
        L.append(f"\nRows: {_status_counts(s)} (see datamix_slopes.csv).")
    else:
        L.append(f"Not available: {s['status'].iloc[0]}")
    L.append("")

    # Claim 3
    vs = t["validation_composition_summary"]
    L += ["## Claim 3: the validation set's skill composition changes N* (paper: up to ~50%)", "",
          "rel_change = max over w of N* / min over w of N* - 1, w = knowledge byte share from 0 to 1.", ""]
    good = vs[vs["status"].astype(str).str.match(r"^(ok|partial)")] if "rel_change" in vs.columns else vs.iloc[0:0]
    good = good[np.isfinite(good["rel_change"])] if not good.empty else good
    if good.empty:
        L.append(f"No usable group ({_status_counts(vs)}).")
    else:
        r = good.loc[good["rel_change"].idxmax()]
        iv = (f"interval {r['rel_change_lo']:.1%} to {r['rel_change_hi']:.1%}"
              if np.isfinite(r["rel_change_lo"]) and np.isfinite(r["rel_change_hi"]) else "no interval")
        L.append(f"- Largest: {r['rel_change']:.1%} ({iv})"
                 f" at code fraction {r['code_frac']:g}, C = {r['budget']:.3g}; N* from {r['n_opt_min']:.3g}"
                 f" (w = {r['w_at_min']:g}) to {r['n_opt_max']:.3g} (w = {r['w_at_max']:g}).")
        L.append(f"- Median over {len(good)} (code fraction, budget) groups: {good['rel_change'].median():.1%};"
                 f" N* largest at w = 1 (all knowledge) in {int((good['w_at_max'] == 1).sum())},"
                 f" at w = 0 (all code) in {int((good['w_at_max'] == 0).sum())}.")
        L.append(f"- Rows: {_status_counts(vs)} (see validation_composition_summary.csv).")
    L.append("")

    # held-out prediction
    h = t["heldout_prediction"]
    L += ["## Held-out budget prediction", ""]
    if "n_opt_rel_err" in h.columns:
        hk = h[np.isfinite(h["n_opt_rel_err"].astype(float))]
        for _, r in hk.iterrows():
            L.append(f"- {r['metric']}, code fraction {r['code_frac']:g}, C = {r['heldout_budget']:.3g}:"
                     f" N* predicted {_ci_str(r['n_opt_pred'], r['n_opt_pred_lo'], r['n_opt_pred_hi'])}"
                     f" vs {r['n_opt_obs']:.3g} observed ({r['n_opt_rel_err']:+.1%});"
                     f" loss* {r['loss_pred']:.4g} vs {r['loss_obs']:.4g} ({r['loss_rel_err']:+.2%})"
                     + ("" if r["status"] == "ok" else f" [{str(r['status']).split(':')[0]}]"))
        if not hk.empty:
            L.append(f"\nMedian |error|: N* {hk['n_opt_rel_err'].abs().median():.1%},"
                     f" optimal loss {hk['loss_rel_err'].abs().median():.2%} over {len(hk)} predictions.")
        L.append(f"Rows: {_status_counts(h)} (see heldout_prediction.csv).")
    else:
        L.append(f"Not available: {h['status'].iloc[0]}")
    L.append("")

    # parametric
    p = t["parametric"]
    L += ["## Approach 3 (parametric) next to Approach 2", ""]
    if "a_opt" in p.columns:
        sc = t["scaling"]
        for _, r in p.iterrows():
            if not np.isfinite(r.get("a_opt", np.nan)):
                L.append(f"- code fraction {r['code_frac']:g}, {r['metric']}: no exponent ({r['status']})")
                continue
            a2 = sc[(sc.code_frac == r["code_frac"]) & (sc.metric == r["metric"])]
            a2s = (_ci_str(a2.a.iloc[0], a2.a_lo.iloc[0], a2.a_hi.iloc[0])
                   if len(a2) and np.isfinite(a2.a.iloc[0]) else "n/a")
            L.append(f"- code fraction {r['code_frac']:g}, {r['metric']}: N* ∝ C^a with a ="
                     f" {_ci_str(r['a_opt'], r['a_opt_lo'], r['a_opt_hi'])} (Approach 2: {a2s});"
                     f" N*({extra['c_top']:.3g}) = {r['n_opt_top']:.3g}"
                     + ("" if r["status"] == "ok" else f" [{r['status']}]"))
        L.append(f"\nRows: {_status_counts(p)} (see parametric.csv).")
    else:
        L.append(f"Not available: {p['status'].iloc[0]}")
    L.append("")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------

def provenance_note(cfg: dict, cells: pd.DataFrame) -> str:
    """One line saying which config, data and code made the numbers of a table."""
    def kinds(col):
        if col not in cells.columns or cells[col].isna().all():
            return "unrecorded"
        counts = cells.drop_duplicates("cell")[col].value_counts()
        return ", ".join(f"{k} ({n} cells)" if len(counts) > 1 else str(k) for k, n in counts.items())

    return (f"provenance: study config {cfgmod.digest(cfg)}; cells trained with train/model config "
            f"{kinds('config_hash')}, data {kinds('data_config_hash')}, code {kinds('code_version')} "
            f"on {kinds('device')}; analysed by code {io.code_version()}")


def _notes(extra: dict, missing: list, diverged: list, provenance: str = "") -> list[str]:
    w = extra["window"]
    notes = [f"bits per byte; N = standard parameter count; CIs: {extra['ci']:.0%} bootstrap over cells"
             f" ({extra['n_boot']} resamples)",
             "IsoFLOP fit: parabola of bits/byte in ln N per budget, "
             + ("every sampled size" if w is None else f"sizes within {w:g} of the best in ln N")
             + f"; bootstrap vertices beyond the fitted ln N range +- {fit.MAX_EXTRAPOLATION:g} of it are dropped",
             "status 'edge': the minimum is at or beyond the smallest/largest size sampled; not used in power laws",
             f"validation mix: w * knowledge_text + (1 - w) * code_text (w = knowledge byte share); APE w = {APE_W:g}",
             f"C_ref (datamix slopes at a reference compute) = {extra['c_ref']:.4g} FLOPs, geometric mean of the budgets"]
    if missing:
        notes.append(f"missing cells ({len(missing)}): " + ", ".join(missing))
    if diverged:
        notes.append(f"diverged cells, excluded from fits ({len(diverged)}): " + ", ".join(diverged))
    if provenance:
        notes.append(provenance)
    return notes


def analyze(cfg: dict, study_dir: Path, allow_missing: bool = False, cells: pd.DataFrame | None = None) -> dict:
    """Write cells.csv, every table, summary.md and every figure; return them.

    `cells` (tidy, like cells.csv) skips collecting cells from the study folder.
    """
    study_dir = Path(study_dir)
    if cells is None:
        cells, missing = aggregate.collect(cfg, study_dir)
        if missing and not allow_missing:
            raise IncompleteStudy(
                f"{len(missing)} planned cells have no eval.json yet (e.g. {missing[0]});"
                " run the workflow, or pass --allow-missing to analyse what exists"
            )
    else:
        missing = []
        lacking = [c for c in ("cell", "code_frac", "budget", "n_params", "tokens", "metric", "skill", "value")
                   if c not in cells.columns]
        if lacking:
            raise ValueError(f"cells table lacks column(s) {lacking}; expected those of aggregate.COLUMNS")
        cells = cells.copy()
        if "diverged" not in cells.columns:
            cells["diverged"] = False
    if cells.empty:
        raise IncompleteStudy(f"{study_dir}: no finished cells to analyse")
    cells["diverged"] = cells["diverged"].astype(bool)
    with io.atomic_path(study_dir / "cells.csv") as tmp:
        cells.to_csv(tmp, index=False)

    diverged = sorted(cells.loc[cells.diverged, "cell"].unique())
    built = build_tables(cells, cfg)
    tables, extra = built["tables"], built["extra"]
    provenance = provenance_note(cfg, cells)
    notes = _notes(extra, missing, diverged, provenance)
    out = output_paths(study_dir)
    for name, title in TABLES.items():
        write_table(tables[name], out[f"{name}_csv"], title, notes)
    info = dict(study=cfg.get("study", study_dir.name), n_cells=int(cells["cell"].nunique()),
                n_missing=len(missing), n_diverged=len(diverged), provenance=provenance,
                missing=missing, diverged=diverged)
    io.write_text(out["summary"], summary_markdown(tables, extra, info))

    from . import plots  # matplotlib only when drawing

    figs = [
        ("isoflop", lambda p: plots.isoflop(cells, tables["optima"], p)),
        ("scaling", lambda p: plots.scaling(tables["optima"], tables["scaling"], extra["line_draws"], p)),
        ("optimum_vs_mix", lambda p: plots.optimum_vs_mix(tables["optima"], p, extra.get("optimum_at_reference"),
                                                          extra["c_ref"])),
        ("validation_composition", lambda p: plots.validation_composition(
            tables["validation_composition"], tables["validation_composition_summary"], p)),
        ("ape_residuals", lambda p: plots.ape_residuals(tables["ape_residuals"], p)),
    ]
    for name, draw in figs:
        path = out[f"fig_{name}"]
        try:
            draw(path)
        except Exception as e:  # a figure that cannot be drawn says why, in the figure
            log.exception("figure %s failed", name)
            plots.placeholder(path, f"{name}: could not be drawn", f"{type(e).__name__}: {e}")
    return {"cells": cells, **tables, "missing": missing, "diverged": diverged, "extra": extra}
