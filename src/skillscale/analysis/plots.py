"""Figures of a study (seaborn/matplotlib, written headless, atomically).

Every curve drawn is the fit that produced the tables: the IsoFLOP parabolas are rebuilt
from the optima table (vertex, curvature and the size range the fit used), so a star always
sits on its curve; bands are percentiles of the same bootstrap replicates as the intervals.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from skillscale import common
from skillscale.analysis import skills

STYLE = "whitegrid"


def _save(fig, path: Path) -> None:
    with common.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=Path(path).suffix.lstrip("."))
    plt.close(fig)


def placeholder(path: Path, title: str, message: str) -> None:
    """A figure that says why there is nothing to show (the workflow still gets its file)."""
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.axis("off")
    ax.text(0.02, 0.9, title, fontsize=11, weight="bold", va="top", transform=ax.transAxes)
    ax.text(0.02, 0.7, textwrap.fill(message, 90), fontsize=8, va="top", transform=ax.transAxes)
    _save(fig, path)


def _compact(v, _pos=None) -> str:
    """1e4 -> '1e4', 25000 -> '2.5e4': short labels for log axes (two digits where ticks are dense)."""
    if v <= 0:
        return ""
    m, e = f"{v:.1e}".split("e")
    return f"{m.rstrip('0').rstrip('.')}e{int(e)}"


def _log_axis(ax, which: str = "x") -> None:
    """Log scale labelled at 1, 2, 5 x 10^k, without the crowded minor labels."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(_compact))
    axis.set_minor_formatter(NullFormatter())


def _metric_colors(metrics) -> dict:
    return dict(zip(sorted(metrics), sns.color_palette("tab10", len(metrics))))


def budget_colors(budgets) -> dict:
    """Budgets in increasing order, in colours whose neighbours differ in hue and lightness
    (a viridis ramp makes 1.5x-apart budgets near twins)."""
    budgets = sorted(budgets)
    base = [
        "#1b9e77",
        "#d95f02",
        "#7570b3",
        "#e7298a",
        "#66a61e",
        "#e6ab02",
        "#a6761d",
        "#1f78b4",
        "#666666",
        "#b2182b",
    ]
    cols = base if len(budgets) <= len(base) else sns.color_palette("husl", len(budgets))
    return dict(zip(budgets, cols))


BUDGET_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def _finite(*vals) -> bool:
    return all(v is not None and np.isfinite(float(v)) for v in vals)


def _legend_outside(fig, handles, title: str) -> None:
    """One legend for the whole figure, right of the panels."""
    fig.legend(
        handles=handles,
        title=title,
        fontsize=7,
        title_fontsize=7,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
    )


def _budget_handles(colors: dict, edge_note: bool = True) -> list:
    hs = [Line2D([], [], color=c, marker="o", ms=4, lw=1, label=f"{b:.2g}") for b, c in colors.items()]
    if edge_note:
        hs += [
            Line2D([], [], color="k", marker="*", ms=8, lw=0, label="optimum (bar: interval)"),
            Line2D(
                [],
                [],
                color="k",
                marker="<",
                ms=6,
                lw=0,
                mfc="white",
                label="edge optimum, at the size it\npassed (<: below the smallest,\n>: above the largest)",
            ),
        ]
    return hs


def _edge_marker(ax, side: str, x, y, color, size=36, zorder=5) -> None:
    """An edge optimum: a hollow triangle at the bound it passed, pointing off the sizes."""
    ax.scatter(
        [x],
        [y],
        marker="<" if side == "below" else ">",
        s=size,
        facecolor="white",
        edgecolor=color,
        linewidth=1.2,
        zorder=zorder,
    )


def isoflop(cells: pd.DataFrame, optima: pd.DataFrame, path: Path) -> None:
    """Loss vs N per budget, faceted metric x code fraction, with the fitted parabolas
    (over the sizes each fit used), the optima with their bootstrap intervals, and edge
    optima as triangles at the size they passed."""
    if cells.empty:
        return placeholder(path, "IsoFLOP curves", "no cells")
    metrics = sorted(cells["metric"].unique())
    fracs = sorted(cells["code_frac"].unique())
    colors = budget_colors(cells["budget"].unique())
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(
            len(metrics), len(fracs), figsize=(3.2 * len(fracs), 2.6 * len(metrics)), squeeze=False, sharex=True
        )
    n_all = cells["n_params"][np.isfinite(cells["n_params"]) & (cells["n_params"] > 0)]
    xlim = (n_all.min() / 1.25, n_all.max() * 1.25) if len(n_all) else None
    for i, m in enumerate(metrics):
        for j, f in enumerate(fracs):
            ax = axes[i][j]
            sub = cells[(cells.metric == m) & (cells.code_frac == f)]
            for b, g in sub.groupby("budget"):
                ax.scatter(g.n_params, g.value, s=12, color=colors[b], alpha=0.8)
            opt = optima[(optima.metric == m) & (optima.code_frac == f)]
            failed = []
            for _, o in opt.iterrows():
                col = colors.get(o.budget, "k")
                if str(o.status) == "edge" and _finite(o.get("n_opt_bound", np.nan)):
                    g = sub[sub.budget == o.budget]
                    y = g.value.min() if len(g) else np.nan
                    if _finite(y):
                        _edge_marker(ax, o.edge_side, o.n_opt_bound, y, col)
                    continue
                if not _finite(o.n_opt, o.loss_opt, o.curvature, o.n_fit_min, o.n_fit_max):
                    failed.append(f"{o.budget:.1e}")
                    continue
                x0, lo, hi = np.log(o.n_opt), np.log(o.n_fit_min), np.log(o.n_fit_max)
                xs = np.linspace(lo, hi, 60)
                ax.plot(np.exp(xs), o.loss_opt + o.curvature / 2 * (xs - x0) ** 2, color=col, lw=1)
                if _finite(o.n_opt_lo, o.n_opt_hi):
                    ax.plot([o.n_opt_lo, o.n_opt_hi], [o.loss_opt] * 2, color=col, lw=1.4, alpha=0.9)
                ax.scatter([o.n_opt], [o.loss_opt], marker="*", s=90, zorder=5, color=col, edgecolor="k", linewidth=0.6)
            if failed:
                ax.text(
                    0.02,
                    0.02,
                    "no fit at C=" + ", ".join(failed),
                    transform=ax.transAxes,
                    fontsize=6,
                    color="firebrick",
                )
            _log_axis(ax, "x")
            if xlim:
                ax.set_xlim(*xlim)
            finite_v = sub.value[np.isfinite(sub.value)]
            if len(finite_v):
                pad = 0.08 * max(np.ptp(finite_v), 1e-3)
                ax.set_ylim(finite_v.min() - pad, finite_v.max() + pad)
            if i == 0:
                ax.set_title(f"code fraction {f:.2f}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{m}\nbits/byte", fontsize=9)
            if i == len(metrics) - 1:
                ax.set_xlabel("N (parameters)")
    _legend_outside(fig, _budget_handles(colors), "budget C (FLOPs)")
    fig.suptitle("IsoFLOP curves per skill metric (rows) and datamix (columns): fitted parabolas, optima", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    _save(fig, path)


def scaling(optima: pd.DataFrame, scaling_df: pd.DataFrame, line_draws: dict, path: Path, ci: float = 0.9) -> None:
    """N*(C) per skill metric, one panel per code fraction: optima with intervals, the power
    law with a band from its bootstrap replicates, edge optima as triangles at their bound."""
    if optima.empty:
        return placeholder(path, "N*(C)", "no optima")
    fracs = sorted(optima["code_frac"].unique())
    colors = _metric_colors(optima["metric"].unique())
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(1, len(fracs), figsize=(3.8 * len(fracs), 3.4), squeeze=False, sharey=True)
    for ax, f in zip(axes[0], fracs):
        for m in sorted(colors):
            col = colors[m]
            o = optima[(optima.code_frac == f) & (optima.metric == m)]
            inner = o[(o.status == "ok") & np.isfinite(o.n_opt)]
            if len(inner):
                err = np.vstack([inner.n_opt - inner.n_opt_lo, inner.n_opt_hi - inner.n_opt]).clip(min=0)
                ax.errorbar(
                    inner.budget, inner.n_opt, yerr=np.nan_to_num(err), fmt="o", ms=4, capsize=2, color=col, lw=0.8
                )
            if "n_opt_bound" in o.columns:
                for _, e in o[(o.status == "edge") & np.isfinite(o.n_opt_bound)].iterrows():
                    ax.scatter(
                        [e.budget],
                        [e.n_opt_bound],
                        marker="v" if e.edge_side == "below" else "^",
                        s=30,
                        facecolor="white",
                        edgecolor=col,
                        linewidth=1.1,
                        zorder=4,
                    )
            s = scaling_df[(scaling_df.code_frac == f) & (scaling_df.metric == m)]
            if len(s) and s.status.iloc[0] == "ok" and len(inner) >= 2:
                r = s.iloc[0]
                cs = np.geomspace(inner.budget.min(), inner.budget.max(), 50)  # no drawing beyond the fitted budgets
                ax.plot(cs, np.exp(r.b + r.a * np.log(cs)), color=col, lw=1.2)
                key = (r.code_frac, r.metric, r.skill)
                if key in line_draws and len(line_draws[key][0]) > 1:
                    A, B = line_draws[key]
                    ln = A[:, None] * np.log(cs)[None, :] + B[:, None]
                    lo, hi = np.quantile(ln, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
                    line = r.b + r.a * np.log(cs)  # widened to hold the line, as fit.interval does
                    ax.fill_between(
                        cs, np.exp(np.minimum(lo, line)), np.exp(np.maximum(hi, line)), color=col, alpha=0.15, lw=0
                    )
                ax.text(
                    0.02,
                    0.98 - 0.07 * sorted(colors).index(m),
                    f"a = {r.a:.2f}",
                    color=col,
                    fontsize=7,
                    transform=ax.transAxes,
                    va="top",
                )
        _log_axis(ax, "x")
        _log_axis(ax, "y")
        ax.set_title(f"code fraction {f:.2f}", fontsize=9)
        ax.set_xlabel("compute C (FLOPs)")
    axes[0][0].set_ylabel("compute-optimal N*")
    handles = [Line2D([], [], color=c, marker="o", ms=4, lw=1.2, label=m) for m, c in colors.items()]
    handles.append(
        Line2D(
            [],
            [],
            color="k",
            marker="v",
            ms=5,
            lw=0,
            mfc="white",
            label="edge: below the smallest\nsize (v) / above the largest (^)",
        )
    )
    _legend_outside(fig, handles, "skill metric")
    fig.suptitle(
        f"N*(C) per skill: interior optima with {ci:.0%} intervals, power law with bootstrap band", fontsize=10, y=1.03
    )
    _save(fig, path)


def optimum_vs_mix(
    optima: pd.DataFrame,
    path: Path,
    at_reference: pd.DataFrame | None = None,
    c_ref: float | None = None,
    slopes: pd.DataFrame | None = None,
    sources: dict | None = None,
) -> None:
    """N* per skill metric (rows) against that skill's own-data share, one column per budget
    and one at the reference compute; each panel prints its slope d ln N*/d share with its
    interval (the datamix_slopes table), edge optima are triangles at their bound."""
    if optima.empty:
        return placeholder(path, "N* vs own-data share", "no optima")
    budgets = sorted(optima["budget"].unique())
    metrics = sorted(
        m
        for m in optima["metric"].unique()
        if (optima.loc[optima.metric == m, "skill"].iloc[0] in ("knowledge", "code"))
    )
    if not metrics:
        return placeholder(path, "N* vs own-data share", "no knowledge or code metric")
    colors = _metric_colors(metrics)
    cols = [("budget", b) for b in budgets]
    if at_reference is not None and len(at_reference):
        cols.append(("ref", c_ref))
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(
            len(metrics), len(cols), figsize=(2.6 * len(cols), 2.2 * len(metrics)), squeeze=False, sharex=True
        )
    for i, m in enumerate(metrics):
        skill = optima.loc[optima.metric == m, "skill"].iloc[0]
        for j, (kind, b) in enumerate(cols):
            ax = axes[i][j]
            src = optima[optima.budget == b] if kind == "budget" else at_reference
            o = src[src.metric == m].copy()
            o["share"] = skills.own_share(skill, o.code_frac, sources)
            _optima_by_share(ax, o, colors[m], edges=kind == "budget")
            ax.text(
                0.03,
                0.95,
                _slope_text(slopes, m, kind, b),
                transform=ax.transAxes,
                fontsize=6.5,
                va="top",
                bbox=dict(facecolor="white", alpha=0.8, lw=0, pad=1),
            )
            _log_axis(ax, "y")
            if i == 0:
                ax.set_title(f"C = {b:.2g}" if kind == "budget" else f"C_ref = {b:.2g}\n(power laws)", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{m}\nN*", fontsize=8)
            if i == len(metrics) - 1:
                ax.set_xlabel("own-data share")
    fixed = sum(s["share"] for s in (sources or {}).values() if s.get("share"))
    knowledge = f"1 - {fixed:g} (fixed shares) - code fraction" if fixed else "1 - code fraction"
    fig.suptitle(
        "N* per skill metric against the share of training data that is that skill's own\n"
        f"(code fraction for code metrics, {knowledge} for knowledge; v/^: edge optimum at its bound)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    _save(fig, path)


def _optima_by_share(ax, o: pd.DataFrame, color, edges: bool) -> None:
    """One panel's optima against share: fitted ones with their intervals, and (`edges`) edge
    optima as triangles at their bound."""
    ok = o[np.isfinite(o.n_opt)].sort_values("share")
    if "status" in ok.columns:
        ok = ok[ok.status == "ok"]
    if len(ok):
        err = np.vstack([ok.n_opt - ok.n_opt_lo, ok.n_opt_hi - ok.n_opt]).clip(min=0)
        ax.errorbar(ok.share, ok.n_opt, yerr=np.nan_to_num(err), marker="o", ms=4, capsize=2, color=color, lw=1)
    if edges and "n_opt_bound" in o.columns:
        for _, e in o[(o.status == "edge") & np.isfinite(o.n_opt_bound)].iterrows():
            ax.scatter(
                [e.share],
                [e.n_opt_bound],
                marker="v" if e.edge_side == "below" else "^",
                s=30,
                facecolor="white",
                edgecolor=color,
                linewidth=1.1,
                zorder=4,
            )


def _slope_text(slopes, metric, kind, budget) -> str:
    if slopes is None or "slope" not in slopes.columns:
        return ""
    basis = "budget" if kind == "budget" else "power law at C_ref"
    r = slopes[(slopes.metric == metric) & (slopes.basis == basis)]
    if kind == "budget":
        r = r[np.isclose(r.budget.astype(float), budget)]
    if r.empty or str(r.status.iloc[0]) != "ok":
        return "slope: n/a"
    r = r.iloc[0]
    ci = f" [{r.slope_lo:.2f}, {r.slope_hi:.2f}]" if _finite(r.slope_lo, r.slope_hi) else " (no interval)"
    return f"slope {r.slope:.2f}{ci}"


def validation_composition(curve: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    """N* picked by a validation mix w * knowledge_text + (1 - w) * code_text, against w:
    one panel per code fraction x budget, interval bars, the contrast w=1 vs w=0 printed."""
    if "w" not in curve.columns or curve.empty:
        msg = str(curve["status"].iloc[0]) if "status" in curve.columns and len(curve) else "no rows"
        return placeholder(path, "Validation composition", msg)
    fracs = sorted(curve["code_frac"].unique())
    budgets = sorted(curve["budget"].unique())
    colors = budget_colors(budgets)
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(
            len(fracs), len(budgets), figsize=(2.4 * len(budgets), 2.2 * len(fracs)), squeeze=False, sharex=True
        )
    for i, f in enumerate(fracs):
        for j, b in enumerate(budgets):
            ax = axes[i][j]
            g = curve[(curve.code_frac == f) & (curve.budget == b)].sort_values("w")
            ok = g[g.status == "ok"]
            if len(ok):
                err = np.vstack([ok.n_opt - ok.n_opt_lo, ok.n_opt_hi - ok.n_opt]).clip(min=0)
                ax.errorbar(ok.w, ok.n_opt, yerr=np.nan_to_num(err), marker="o", ms=3, capsize=2, lw=1, color=colors[b])
            if "n_opt_bound" in g.columns:
                for _, e in g[(g.status == "edge") & np.isfinite(g.n_opt_bound)].iterrows():
                    ax.scatter(
                        [e.w],
                        [e.n_opt_bound],
                        marker="v" if e.edge_side == "below" else "^",
                        s=26,
                        facecolor="white",
                        edgecolor=colors[b],
                        zorder=4,
                    )
            s = summary[(summary.code_frac == f) & (summary.budget == b)] if "contrast" in summary.columns else []
            if len(s) and _finite(s.contrast.iloc[0]):
                r = s.iloc[0]
                ci = f" [{r.contrast_lo:+.2f}, {r.contrast_hi:+.2f}]" if _finite(r.contrast_lo, r.contrast_hi) else ""
                ax.text(
                    0.03,
                    0.95,
                    f"ln ratio w=1/w=0\n{r.contrast:+.2f}{ci}",
                    transform=ax.transAxes,
                    fontsize=6.5,
                    va="top",
                    bbox=dict(facecolor="white", alpha=0.8, lw=0, pad=1),
                )
            _log_axis(ax, "y")
            if i == 0:
                ax.set_title(f"C = {b:.2g}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"code fraction {f:g}\nN* of the mix", fontsize=8)
            if i == len(fracs) - 1:
                ax.set_xlabel("knowledge share w")
    fig.suptitle(
        "N* picked by a validation set with knowledge share w (bars: intervals; v/^: edge at its bound)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    _save(fig, path)


def ape_residuals(ape: pd.DataFrame, path: Path) -> None:
    """ln N*(skill) - ln N*(APE) per metric over (code fraction, budget): each group's
    residual with its interval, colour = budget, marker = code fraction; the APE's own
    components are greyed (their signs are set by construction)."""
    if "residual" not in ape.columns:
        msg = str(ape["status"].iloc[0]) if "status" in ape.columns and len(ape) else "no rows"
        return placeholder(path, "APE residuals", msg)
    d = ape[np.isfinite(ape.residual) & (ape.status.astype(str) == "ok")].copy()
    if d.empty:
        return placeholder(path, "APE residuals", "no group has both a skill and an APE optimum in the sampled sizes")
    comp = d["in_aggregate"].astype(str).str.lower().isin(["true", "1"]) if "in_aggregate" in d.columns else False
    metrics = sorted(d.metric.unique(), key=lambda m: (bool(np.any(comp[d.metric == m])), m))
    fracs = sorted(d.code_frac.unique())
    budgets = sorted(d.budget.unique())
    colors = budget_colors(budgets)
    marks = dict(zip(fracs, BUDGET_MARKERS))
    with sns.axes_style(STYLE):
        fig, ax = plt.subplots(figsize=(1.9 * len(metrics) + 2, 3.6))
    nb, nf = len(budgets), len(fracs)
    for k, m in enumerate(metrics):
        g = d[d.metric == m]
        grey = bool(np.any(comp[d.metric == m])) if not isinstance(comp, bool) else False
        for _, r in g.iterrows():
            dx = (budgets.index(r.budget) - (nb - 1) / 2) / max(nb, 1) * 0.7 + (
                fracs.index(r.code_frac) - (nf - 1) / 2
            ) * 0.7 / max(nb, 1) / max(nf, 1)
            col = "0.65" if grey else colors[r.budget]
            if _finite(r.residual_lo, r.residual_hi):
                ax.plot([k + dx] * 2, [r.residual_lo, r.residual_hi], color=col, lw=0.9)
            ax.scatter([k + dx], [r.residual], s=18, zorder=4, marker=marks[r.code_frac], color=col)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(
        range(len(metrics)),
        [
            m + ("\n(APE component)" if not isinstance(comp, bool) and np.any(comp[d.metric == m]) else "")
            for m in metrics
        ],
        fontsize=8,
    )
    ax.set_ylabel("ln N*(skill) - ln N*(APE)")
    ax.text(0.0, 1.01, "above 0: capacity-hungry; below 0: data-hungry", transform=ax.transAxes, fontsize=7)
    handles = [Line2D([], [], color=c, marker="o", ms=4, lw=0, label=f"C = {b:.2g}") for b, c in colors.items()]
    handles += [Line2D([], [], color="k", marker=marks[f], ms=4, lw=0, label=f"code fraction {f:g}") for f in fracs]
    _legend_outside(fig, handles, "group")
    ax.set_title("APE residuals per skill metric (interior optima; bars: intervals)", fontsize=10, y=1.06)
    _save(fig, path)
