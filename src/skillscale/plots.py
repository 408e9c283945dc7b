"""Figures of a study (seaborn/matplotlib, written headless, atomically).

Every curve drawn is the fit that produced the tables: the IsoFLOP parabolas are rebuilt
from the optima table (vertex, curvature and the size range the fit used), so a star always
sits on its curve; bands are percentiles of the same bootstrap replicates as the intervals.
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import io  # noqa: E402

STYLE = "whitegrid"


def _save(fig, path: Path) -> None:
    with io.atomic_path(path) as tmp:
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
    """1e4 -> '1e4', 20000 -> '2e4': short labels for log axes."""
    if v <= 0:
        return ""
    m, e = f"{v:.0e}".split("e")
    return f"{m}e{int(e)}"


def _log_axis(ax, which: str = "x") -> None:
    """Log scale labelled at 1, 2, 5 x 10^k, without the crowded minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(_compact))
    axis.set_minor_formatter(NullFormatter())


def _metric_colors(metrics) -> dict:
    return dict(zip(sorted(metrics), sns.color_palette("tab10", len(metrics))))


def _finite(*vals) -> bool:
    return all(v is not None and np.isfinite(float(v)) for v in vals)


def isoflop(cells: pd.DataFrame, optima: pd.DataFrame, path: Path) -> None:
    """Loss vs N per budget, faceted metric x code fraction, with the fitted parabolas
    (over the sizes each fit used) and the optima with their bootstrap intervals."""
    if cells.empty:
        return placeholder(path, "IsoFLOP curves", "no cells")
    metrics = sorted(cells["metric"].unique())
    fracs = sorted(cells["code_frac"].unique())
    budgets = sorted(cells["budget"].unique())
    colors = dict(zip(budgets, sns.color_palette("viridis", len(budgets))))
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(len(metrics), len(fracs), figsize=(3.2 * len(fracs), 2.6 * len(metrics)),
                                 squeeze=False, sharex=True)
    n_all = cells["n_params"][np.isfinite(cells["n_params"]) & (cells["n_params"] > 0)]
    xlim = (n_all.min() / 1.25, n_all.max() * 1.25) if len(n_all) else None
    for i, m in enumerate(metrics):
        for j, f in enumerate(fracs):
            ax = axes[i][j]
            sub = cells[(cells.metric == m) & (cells.code_frac == f)]
            for b, g in sub.groupby("budget"):
                ax.scatter(g.n_params, g.value, s=14, color=colors[b], label=f"{b:.1e}")
            opt = optima[(optima.metric == m) & (optima.code_frac == f)]
            failed = []
            for _, o in opt.iterrows():
                col = colors.get(o.budget, "k")
                if not _finite(o.n_opt, o.loss_opt, o.curvature, o.n_fit_min, o.n_fit_max):
                    failed.append(f"{o.budget:.1e}")
                    continue
                x0, lo, hi = np.log(o.n_opt), np.log(o.n_fit_min), np.log(o.n_fit_max)
                xs = np.linspace(lo, hi, 60)
                ax.plot(np.exp(xs), o.loss_opt + o.curvature / 2 * (xs - x0) ** 2, color=col, lw=1)
                if o.edge and not lo <= x0 <= hi:  # the extrapolated stretch up to an edge vertex
                    xe = np.linspace(x0, lo if x0 < lo else hi, 30)
                    ax.plot(np.exp(xe), o.loss_opt + o.curvature / 2 * (xe - x0) ** 2, color=col, lw=0.8, ls=":")
                if _finite(o.n_opt_lo, o.n_opt_hi):
                    ax.plot([o.n_opt_lo, o.n_opt_hi], [o.loss_opt] * 2, color=col, lw=1.2, alpha=0.8)
                ax.scatter([o.n_opt], [o.loss_opt], marker="*", s=90, zorder=5,
                           color="white" if o.edge else col, edgecolor="k", linewidth=0.6)
            if failed:
                ax.text(0.02, 0.02, "no fit at C=" + ", ".join(failed), transform=ax.transAxes, fontsize=6,
                        color="firebrick")
            _log_axis(ax, "x")
            if xlim:
                ax.set_xlim(*xlim)  # far-off edge vertices stay off the plot instead of rescaling it
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
    axes[0][-1].legend(title="budget (FLOPs)", fontsize=7, title_fontsize=7, loc="upper right")
    fig.suptitle("IsoFLOP curves per skill and datamix: fitted parabolas (dotted: extrapolated to an edge"
                 " optimum),\noptima (stars, hollow = edge) with bootstrap intervals (bars)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    _save(fig, path)


def scaling(optima: pd.DataFrame, scaling_df: pd.DataFrame, line_draws: dict, path: Path,
            ci: float = 0.9) -> None:
    """N*(C) per skill metric, one panel per code fraction: optima with intervals, the power
    law and a band from its bootstrap replicates."""
    if optima.empty:
        return placeholder(path, "N*(C)", "no optima")
    fracs = sorted(optima["code_frac"].unique())
    colors = _metric_colors(optima["metric"].unique())
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(1, len(fracs), figsize=(3.8 * len(fracs), 3.4), squeeze=False, sharey=True)
    for ax, f in zip(axes[0], fracs):
        for m in sorted(colors):
            col = colors[m]
            o = optima[(optima.code_frac == f) & (optima.metric == m) & np.isfinite(optima.n_opt)]
            inner = o[o.status == "ok"]
            if len(inner):
                err = np.vstack([inner.n_opt - inner.n_opt_lo, inner.n_opt_hi - inner.n_opt]).clip(min=0)
                ax.errorbar(inner.budget, inner.n_opt, yerr=np.nan_to_num(err), fmt="o", ms=4, capsize=2,
                            color=col, lw=0.8)
            s = scaling_df[(scaling_df.code_frac == f) & (scaling_df.metric == m)]
            if len(s) and s.status.iloc[0] == "ok" and len(inner) >= 2:
                r = s.iloc[0]
                cs = np.geomspace(inner.budget.min(), inner.budget.max(), 50)  # no drawing beyond the fitted budgets
                ax.plot(cs, np.exp(r.b + r.a * np.log(cs)), color=col, lw=1.2,
                        label=f"{m}: a={r.a:.2f}")
                key = (r.code_frac, r.metric, r.skill)
                if key in line_draws and len(line_draws[key][0]) > 1:
                    A, B = line_draws[key]
                    ln = A[:, None] * np.log(cs)[None, :] + B[:, None]
                    lo, hi = np.quantile(ln, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
                    ax.fill_between(cs, np.exp(lo), np.exp(hi), color=col, alpha=0.15, lw=0)
            elif len(inner):
                ax.plot([], [], color=col, label=f"{m}: no power law")
        _log_axis(ax, "x")
        _log_axis(ax, "y")
        ax.set_title(f"code fraction {f:.2f}", fontsize=9)
        ax.set_xlabel("compute C (FLOPs)")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("compute-optimal N*")
    if len(optima):
        ok = optima.n_opt[(optima.status == "ok") & np.isfinite(optima.n_opt)]
        if len(ok):
            axes[0][0].set_ylim(ok.min() / 3, ok.max() * 3)
    fig.suptitle(f"N*(C) per skill: interior optima with {ci:.0%} intervals, power law with bootstrap band",
                 fontsize=10, y=1.03)
    _save(fig, path)


def optimum_vs_mix(optima: pd.DataFrame, path: Path, at_reference: pd.DataFrame | None = None,
                   c_ref: float | None = None) -> None:
    """N* per skill metric against code fraction, one panel per budget (interior optima,
    with intervals) and, when given, one at the reference compute from the power laws."""
    if optima.empty:
        return placeholder(path, "N* vs code fraction", "no optima")
    budgets = sorted(optima["budget"].unique())
    metrics = sorted(optima["metric"].unique())
    colors = _metric_colors(metrics)
    panels = [("budget", b) for b in budgets]
    if at_reference is not None and len(at_reference):
        panels.append(("ref", c_ref))
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2), squeeze=False, sharey=True,
                                 sharex=True)
    for ax, (kind, b) in zip(axes[0], panels):
        src = optima[(optima.budget == b) & (optima.status == "ok")] if kind == "budget" else at_reference
        for m in metrics:
            o = src[(src.metric == m) & np.isfinite(src.n_opt)].sort_values("code_frac")
            if o.empty:
                continue
            err = np.vstack([o.n_opt - o.n_opt_lo, o.n_opt_hi - o.n_opt]).clip(min=0)
            ax.errorbar(o.code_frac, o.n_opt, yerr=np.nan_to_num(err), marker="o", ms=4, capsize=2,
                        color=colors[m], label=m, lw=1)
        _log_axis(ax, "y")
        title = f"C = {b:.2g}" if kind == "budget" else f"C_ref = {b:.2g} (power laws)"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("code fraction")
    axes[0][0].set_ylabel("compute-optimal N*")
    axes[0][-1].legend(fontsize=7)
    fracs = sorted(optima["code_frac"].unique())
    if len(fracs) > 1:
        pad = 0.08 * (fracs[-1] - fracs[0])
        axes[0][0].set_xlim(fracs[0] - pad, fracs[-1] + pad)
    fig.suptitle("N* per skill against the code share of training (interior optima only; bars: intervals)",
                 fontsize=10, y=1.03)
    _save(fig, path)


def validation_composition(curve: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    """N* picked by a validation mix w * knowledge_text + (1 - w) * code_text, against w."""
    if "w" not in curve.columns or curve.empty:
        msg = str(curve["status"].iloc[0]) if "status" in curve.columns and len(curve) else "no rows"
        return placeholder(path, "Validation composition", msg)
    fracs = sorted(curve["code_frac"].unique())
    budgets = sorted(curve["budget"].unique())
    colors = dict(zip(budgets, sns.color_palette("viridis", len(budgets))))
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(1, len(fracs), figsize=(3.6 * len(fracs), 3.2), squeeze=False, sharey=True)
    for ax, f in zip(axes[0], fracs):
        for b in budgets:
            g = curve[(curve.code_frac == f) & (curve.budget == b)].sort_values("w")
            ok = g[g.status == "ok"]
            if ok.empty:
                continue
            ax.plot(ok.w, ok.n_opt, marker="o", ms=3, color=colors[b], lw=1, label=f"{b:.1e}")
            band = ok[np.isfinite(ok.n_opt_lo) & np.isfinite(ok.n_opt_hi)]
            if len(band):
                ax.fill_between(band.w, band.n_opt_lo, band.n_opt_hi, color=colors[b], alpha=0.12, lw=0)
        s = summary[(summary.code_frac == f)] if "rel_change" in summary.columns else summary.iloc[0:0]
        s = s[np.isfinite(s.rel_change)] if len(s) else s
        extra = f"\nmax change {s.rel_change.max():.0%}" if len(s) else ""
        ax.set_title(f"code fraction {f:.2f}{extra}", fontsize=9)
        _log_axis(ax, "y")
        ax.set_xlabel("knowledge share w of the validation set")
    axes[0][0].set_ylabel("N* of the validation mix")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[b], marker="o", ms=3, lw=1, label=f"{b:.1e}") for b in budgets]
    axes[0][-1].legend(handles=handles, title="budget", fontsize=7, title_fontsize=7)
    fig.suptitle("How the validation set's composition moves N* (interior optima; bands: intervals)", fontsize=10,
                 y=1.06)
    _save(fig, path)


def ape_residuals(ape: pd.DataFrame, path: Path) -> None:
    """Distribution of ln N*(skill) - ln N*(validation mix) per metric over (code fraction,
    budget): box per metric, each group's residual with its interval, colour = code fraction."""
    if "residual" not in ape.columns:
        msg = str(ape["status"].iloc[0]) if "status" in ape.columns and len(ape) else "no rows"
        return placeholder(path, "APE residuals", msg)
    d = ape[np.isfinite(ape.residual) & ape.status.astype(str).str.match(r"^(ok|edge)")].copy()
    if d.empty:
        return placeholder(path, "APE residuals", "no group has both a skill and an aggregate optimum")
    metrics = sorted(d.metric.unique())
    fracs = sorted(d.code_frac.unique())
    fcol = dict(zip(fracs, sns.color_palette("crest", len(fracs))))
    budgets = sorted(d.budget.unique())
    with sns.axes_style(STYLE):
        fig, ax = plt.subplots(figsize=(1.9 * len(metrics) + 2, 3.6))
    inner = d[d.status == "ok"]
    if len(inner):
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated vert=
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            sns.boxplot(data=inner, x="metric", y="residual", order=metrics, ax=ax, color="0.92", width=0.55,
                        fliersize=0, linewidth=0.8)
    for k, m in enumerate(metrics):
        g = d[d.metric == m]
        for _, r in g.iterrows():
            dx = (fracs.index(r.code_frac) - (len(fracs) - 1) / 2) * 0.14 \
                + (budgets.index(r.budget) - (len(budgets) - 1) / 2) * 0.02
            col = fcol[r.code_frac]
            if _finite(r.residual_lo, r.residual_hi):
                ax.plot([k + dx] * 2, [r.residual_lo, r.residual_hi], color=col, lw=0.8, alpha=0.7)
            ax.scatter([k + dx], [r.residual], s=16, zorder=4, color="white" if r.status != "ok" else col,
                       edgecolor=col)
    for f in fracs:
        ax.scatter([], [], color=fcol[f], s=16, label=f"code fraction {f:g}")
    ax.scatter([], [], color="white", edgecolor="k", s=16, label="edge optimum")
    ax.axhline(0, color="k", lw=0.8)
    ref = inner if len(inner) else d
    span = np.concatenate([ref.residual, ref.residual_lo, ref.residual_hi, [0.0]])
    span = span[np.isfinite(span)]
    pad = 0.1 * max(np.ptp(span), 0.05)
    ax.set_ylim(span.min() - pad, span.max() + pad)  # far-off edge extrapolations stay off the plot
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_xlabel("")
    ax.set_ylabel("ln N*(skill) - ln N*(validation mix)")
    ax.text(1.01, 0.98, "capacity-hungry", transform=ax.transAxes, fontsize=7, va="top")
    ax.text(1.01, 0.02, "data-hungry", transform=ax.transAxes, fontsize=7, va="bottom")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.9), frameon=False)
    ax.set_title("APE residuals per skill over code fractions and budgets (bars: intervals)", fontsize=10)
    _save(fig, path)
