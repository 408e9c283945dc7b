"""The analyze step of one study folder: aggregate -> fits -> tables -> summary -> figures.

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
- claims: the verdict per claim and part (rules: docs/claims.md, claims.py).
- summary.md: what the numbers say per claim of the paper, generated from the tables
  (summary.py).

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

from skillscale import common
from skillscale import config as cfgmod
from skillscale.analysis import aggregate, fit, mixlaw, summary
from skillscale.analysis.outputs import FIGURES, TABLE_FORMATS, TABLES, output_paths  # noqa: F401  (re-exported)
from skillscale.analysis.tables import APE_W, build_tables

log = logging.getLogger("skillscale.analysis.report")


class IncompleteStudy(RuntimeError):
    pass


# --------------------------------------------------------------------------------------
# writing tables: CSV, Markdown, LaTeX (booktabs, hand-rolled: no jinja2 needed)
# --------------------------------------------------------------------------------------

# Long free-text columns stay in the CSV and Markdown; the LaTeX table is for a paper.
TEX_DROP = {
    "note",
    "claim1_note",
    "excluded_cells",
    "n_opt_by_fraction",
    "fractions",
    "budgets",
    "fit_budgets",
    "edge_excluded",
    "ci_method",
    "n_fit_min",
    "n_fit_max",
    "curvature",
    "intercept",
    "w_at_min",
    "n_opt_min",
    "n_opt_max",
    "boot_frac",
    "rule",
}
_TEX_ESC = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


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
    with common.atomic_path(path_csv) as tmp:
        df.to_csv(tmp, index=False)
    md = [f"# {title}", ""] if title else []
    md += [f"- {n}" for n in notes] + ([""] if notes else [])
    md.append(df.to_markdown(index=False, floatfmt=".4g") if len(df.columns) else "(no rows)")
    common.write_text(path_csv.with_suffix(".md"), "\n".join(md) + "\n")
    common.write_text(
        path_csv.with_suffix(".tex"), to_latex(df, title or "", f"tab:{path_csv.stem.replace('_', '-')}", notes)
    )


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

    return (
        f"provenance: study config {cfgmod.study_digest(cfg)}; cells trained with train/model config "
        f"{kinds('config_hash')}, data {kinds('data_config_hash')}, code {kinds('code_version')} "
        f"on {kinds('device')}; analysed by code {common.code_version()}"
    )


def _notes(extra: dict, missing: list, diverged: list, provenance: str = "") -> list[str]:
    w = extra["window"]
    notes = [
        f"bits per byte; N = standard parameter count; CIs: {extra['ci']:.0%} bootstrap over cells"
        f" ({extra['n_boot']} resamples)",
        "IsoFLOP fit: parabola of bits/byte in ln N per budget, "
        + ("every sampled size" if w is None else f"sizes within {w:g} of the best in ln N")
        + f"; bootstrap vertices beyond the fitted ln N range +- {fit.MAX_EXTRAPOLATION:g} of it are dropped",
        "status 'edge': the minimum is at or beyond the smallest/largest size sampled; no N* is reported"
        " (n_opt_bound is the size it passed, edge_side which side) and it is left out of power laws",
        "intervals are percentile bootstraps widened to contain their point estimate; none when zero-width",
        f"validation mix: w * knowledge_text + (1 - w) * code_text (w = knowledge byte share); APE"
        f" (aggregate performance estimator) = the validation mix at w = {APE_W:g}",
        f"C_ref (datamix slopes at a reference compute) = {extra['c_ref']:.4g} FLOPs, geometric mean of the budgets",
    ]
    if missing:
        notes.append(f"missing cells ({len(missing)}): " + ", ".join(missing))
    if diverged:
        notes.append(f"diverged cells, excluded from fits ({len(diverged)}): " + ", ".join(diverged))
    if provenance:
        notes.append(provenance)
    return notes


def _cells_to_analyse(
    cfg: dict, study_dir: Path, allow_missing: bool, cells: pd.DataFrame | None
) -> tuple[pd.DataFrame, list]:
    """The cells to analyse (collected from the study folder, or the given table, checked) and
    the planned cells still missing."""
    if cells is None:
        cells, missing = aggregate.collect(cfg, study_dir)
        if missing and not allow_missing:
            raise IncompleteStudy(
                f"{len(missing)} planned cells have no eval.json yet (e.g. {missing[0]});"
                " run the workflow, or pass --allow-missing to analyse what exists"
            )
    else:
        missing = []
        lacking = [
            c
            for c in ("cell", "code_frac", "budget", "n_params", "tokens", "metric", "skill", "value")
            if c not in cells.columns
        ]
        if lacking:
            raise ValueError(f"cells table lacks column(s) {lacking}; expected those of aggregate.COLUMNS")
        cells = cells.copy()
        if "diverged" not in cells.columns:
            cells["diverged"] = False
    if cells.empty:
        raise IncompleteStudy(f"{study_dir}: no finished cells to analyse")
    cells["diverged"] = cells["diverged"].astype(bool)
    return cells, missing


def _write_mixture_cache(laws, path: Path, study: str) -> None:
    """The laws `skillscale optimum` answers from; a failed fit leaves a cache saying so."""
    if laws is None:
        common.write_text(path, '{"version": 0, "error": "the mixture law could not be fitted: see mixture_law.csv"}\n')
    else:
        mixlaw.save(laws, path, study)


def analyze(cfg: dict, study_dir: Path, allow_missing: bool = False, cells: pd.DataFrame | None = None) -> dict:
    """Write cells.csv, every table, summary.md and every figure; return them.

    `cells` (tidy, like cells.csv) skips collecting cells from the study folder.
    """
    study_dir = Path(study_dir)
    cells, missing = _cells_to_analyse(cfg, study_dir, allow_missing, cells)
    with common.atomic_path(study_dir / "cells.csv") as tmp:
        cells.to_csv(tmp, index=False)

    diverged = sorted(cells.loc[cells.diverged, "cell"].unique())
    built = build_tables(cells, cfg)
    tables, extra = built["tables"], built["extra"]
    provenance = provenance_note(cfg, cells)
    notes = _notes(extra, missing, diverged, provenance)
    out = output_paths(study_dir)
    for name, title in TABLES.items():
        write_table(tables[name], out[f"{name}_csv"], title, notes)
    info = dict(
        study=cfg.get("study", study_dir.name),
        n_cells=int(cells["cell"].nunique()),
        n_missing=len(missing),
        n_diverged=len(diverged),
        provenance=provenance,
        missing=missing,
        diverged=diverged,
    )
    common.write_text(out["summary"], summary.markdown(tables, extra, info))
    _write_mixture_cache(extra.get("mixture_laws"), out["mixture_cache"], info["study"])

    # matplotlib only when drawing
    from skillscale.analysis import mixplot, plots

    figs = [
        ("isoflop", lambda p: plots.isoflop(cells, tables["optima"], p)),
        ("scaling", lambda p: plots.scaling(tables["optima"], tables["scaling"], extra["line_draws"], p)),
        (
            "optimum_vs_mix",
            lambda p: plots.optimum_vs_mix(
                tables["optima"],
                p,
                extra.get("optimum_at_reference"),
                extra["c_ref"],
                tables["datamix_slopes"],
                cfg["data"].get("sources"),
            ),
        ),
        (
            "validation_composition",
            lambda p: plots.validation_composition(
                tables["validation_composition"], tables["validation_composition_summary"], p
            ),
        ),
        ("ape_residuals", lambda p: plots.ape_residuals(tables["ape_residuals"], p)),
        ("mixture_law", lambda p: mixplot.mixture_law(extra.get("mixture_laws"), tables["optima"], p)),
    ]
    for name, draw in figs:
        path = out[f"fig_{name}"]
        try:
            draw(path)
        except Exception as e:  # a figure that cannot be drawn says why, in the figure
            log.exception("figure %s failed", name)
            plots.placeholder(path, f"{name}: could not be drawn", f"{type(e).__name__}: {e}")
    return {"cells": cells, **tables, "missing": missing, "diverged": diverged, "extra": extra}
