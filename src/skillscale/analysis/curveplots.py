"""The training figures (analysis/curves.py collects what they show): loss curves of trunks and
their cooldowns, and final training loss against held-out bits per byte.

Sizes are colours (tab10, in order of N; the same in both figures); budgets are marker shapes
(plots.BUDGET_MARKERS) at the end of each cell's training, so each marker here is one cell, one
point of the IsoFLOP figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from skillscale.analysis import plots


def size_colors(sizes: dict) -> dict:
    """size -> colour, in order of N (sizes: size -> N). Pass every size of the study, so that a
    size keeps its colour while the study fills in. Categorical (tab10), not the IsoFLOP
    figure's budget palette: a colour there means a budget, and with 7 sizes that palette
    repeats a green and a brown."""
    ordered = sorted(sizes.items(), key=lambda kv: kv[1])
    pal = sns.color_palette("tab10" if len(ordered) <= 10 else "husl", len(ordered))
    return {size: col for (size, _), col in zip(ordered, pal)}


def sizes_of(frame: pd.DataFrame) -> dict:
    return frame.drop_duplicates("size").set_index("size").n_params.to_dict()


def budget_markers(budgets) -> dict:
    bs = sorted(b for b in set(budgets) if np.isfinite(b))
    return {b: plots.BUDGET_MARKERS[i % len(plots.BUDGET_MARKERS)] for i, b in enumerate(bs)}


def _legend(
    colors: dict, n_of: dict, markers: dict, wsd: bool, any_edge: bool, any_diverged: bool, budget: str = "end of C"
) -> list:
    hs = [Line2D([], [], color=c, lw=1.6, label=f"{s} (N={n_of[s]:,})") for s, c in colors.items()]
    hs += [
        Line2D([], [], color="0.3", marker=m, lw=0, ms=5, mec="k", mew=0.5, label=f"{budget} = {b:.2g}")
        for b, m in markers.items()
    ]
    if wsd:
        hs += [
            Line2D([], [], color="0.3", lw=1.6, label="trunk (constant LR)"),
            Line2D([], [], color="0.3", lw=0.8, ls=(0, (3, 1.5)), label="cooldown branch"),
            Line2D([], [], color="0.3", marker="|", lw=0, ms=7, label="branch point"),
        ]
    if any_edge:
        hs.append(
            Line2D([], [], color="firebrick", marker="o", mfc="none", lw=0, ms=10, label="cell at an edge optimum")
        )
    if any_diverged:
        hs.append(Line2D([], [], color="red", marker="x", lw=0, ms=7, label="diverged"))
    return hs


def training_curves(
    curves: pd.DataFrame, ends: pd.DataFrame, edges: dict, path: Path, sizes: dict | None = None
) -> None:
    """Loss against tokens (log-log), one panel per code fraction (columns) and seed (rows): each
    trunk in its size's colour, its cooldowns branching off it (thin, dashed) to a marker of the
    cell's budget; cells at an edge optimum ringed, divergences crossed."""
    if curves.empty:
        return plots.placeholder(path, "Training curves", "no finished trunk or cell records yet")
    wsd = (curves.kind != "cell").any()
    fracs, seeds = sorted(curves.code_frac.unique()), sorted(curves.seed.unique())
    n_of = sizes or sizes_of(curves)
    colors = size_colors(n_of)
    markers = budget_markers(ends.budget if len(ends) else [])
    with sns.axes_style(plots.STYLE):
        fig, axes = plt.subplots(
            len(seeds),
            len(fracs),
            figsize=(4.2 * len(fracs), 3.4 * len(seeds)),
            squeeze=False,
            sharex=True,
            sharey=True,
        )
    for i, seed in enumerate(seeds):
        for j, f in enumerate(fracs):
            ax = axes[i][j]
            sub = curves[(curves.seed == seed) & np.isclose(curves.code_frac, f)]
            end = ends[(ends.seed == seed) & np.isclose(ends.code_frac, f)] if len(ends) else ends
            _panel(ax, sub, end, colors, markers, edges)
            ax.set_title(f"code fraction {f:.2f}" + (f", seed {seed}" if len(seeds) > 1 else ""), fontsize=9)
            if i == len(seeds) - 1:
                ax.set_xlabel("training tokens")
            if j == 0:
                ax.set_ylabel("training loss (nats/token)")
    for ax in axes.flat:
        _loss_axes(ax, curves)
    any_div = len(ends) and "diverged_step" in ends and ends.diverged_step.notna().any()
    plots._legend_outside(fig, _legend(colors, n_of, markers, wsd, bool(edges), bool(any_div)), "size / budget")
    kind = "trunks and their cooldown branches" if wsd else "cells (cosine, each to its own budget)"
    fig.suptitle(f"Training loss against tokens: {kind}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    plots._save(fig, path)


def _panel(ax, sub: pd.DataFrame, end: pd.DataFrame, colors: dict, markers: dict, edges: dict) -> None:
    for size, g in sub[sub.kind == "trunk"].groupby("size"):
        ax.plot(g.tokens, g.loss, color=colors[size], lw=1.4, zorder=2)
    for _, g in sub[sub.kind != "trunk"].groupby("cell"):
        size = g["size"].iloc[0]
        cooldown = (g.kind == "cooldown").any()
        style = dict(lw=0.8, ls=(0, (3, 1.5))) if cooldown else dict(lw=1.2, ls="-")
        ax.plot(g.tokens, g.loss, color=colors[size], **style)
        if cooldown:  # where it leaves the trunk: the trunk's point at the branch step
            ax.scatter(g.tokens.iloc[:1], g.loss.iloc[:1], marker="|", s=40, color=colors[size], zorder=3, lw=1)
    for _, e in end.iterrows():
        if np.isfinite(e.get("budget", np.nan)) and np.isfinite(e.get("final_loss", np.nan)):
            mark = dict(marker=markers.get(e.budget, "o"), s=22, edgecolor="k", linewidth=0.5, zorder=4)
            ax.scatter([e.tokens_end], [e.final_loss], color=colors[e["size"]], **mark)
            if e.cell in edges:
                ax.scatter(
                    [e.tokens_end], [e.final_loss], s=120, facecolor="none", edgecolor="firebrick", lw=1, zorder=5
                )
        if pd.notna(e.get("diverged_step")):
            g = sub[(sub["size"] == e["size"]) & (sub.step <= e.diverged_step)]
            g = g[g.cell == e.cell] if e.get("cell") else g[g.kind == "trunk"]
            if len(g):
                ax.scatter(g.tokens.iloc[-1:], g.loss.iloc[-1:], marker="x", color="red", s=40, zorder=6)


def _loss_axes(ax, curves: pd.DataFrame) -> None:
    """Log tokens; log loss from a little below the lowest loss to the loss after the first
    few logged points (the start, near ln V, would flatten everything that follows)."""
    plots._log_axis(ax, "x")
    finite = curves.loss[np.isfinite(curves.loss)]
    if finite.empty:
        return
    early = curves[curves.step == curves.step.min()].loss
    top = min(float(np.nanmax(finite)), float(np.nanmedian(early))) if len(early) else float(finite.max())
    ax.set_yscale("log")
    lo, hi = float(finite.min()) * 0.97, top * 1.03
    ax.set_ylim(lo, hi)
    step = next(s for s in (0.25, 0.5, 1.0, 2.0, 5.0) if (hi - lo) / s <= 7)  # at most ~7 round labels
    ticks = np.arange(np.ceil(lo / step) * step, hi, step)
    ax.set_yticks(ticks, [f"{v:g}" for v in ticks])
    ax.minorticks_off()


def train_vs_heldout(cells: pd.DataFrame | None, metrics, path: Path) -> None:
    """Each cell's final training loss against its held-out bits per byte, per held-out text
    (rows) and code fraction (columns): colour = size, marker = budget, each size's cells joined
    in order of budget. More data of one size should lower both; a line turning up (training
    loss down, held-out up) is a model fitting repeated data."""
    if cells is None or cells.empty:
        return plots.placeholder(path, "Training vs held-out loss", "no cells.csv yet (analyze writes it)")
    metrics = [m for m in metrics if m in set(cells.metric)]
    if not metrics:
        return plots.placeholder(path, "Training vs held-out loss", "no held-out text metric in cells.csv")
    fracs = sorted(cells.code_frac.unique())
    n_of = sizes_of(cells)
    colors, markers = size_colors(n_of), budget_markers(cells.budget)
    with sns.axes_style(plots.STYLE):
        fig, axes = plt.subplots(
            len(metrics), len(fracs), figsize=(3.4 * len(fracs), 2.9 * len(metrics)), squeeze=False
        )
    for i, m in enumerate(metrics):
        for j, f in enumerate(fracs):
            ax = axes[i][j]
            sub = cells[(cells.metric == m) & np.isclose(cells.code_frac, f)]
            for (size, _seed), g in sub.sort_values("budget").groupby(["size", "seed"]):
                ok = g[~g.diverged.astype(bool)]
                ax.plot(ok.final_train_loss, ok.value, color=colors[size], lw=0.7, alpha=0.7)
                for _, r in g.iterrows():
                    mk = "x" if r.diverged else markers[r.budget]
                    ax.scatter([r.final_train_loss], [r.value], marker=mk, s=20, color=colors[size],
                               edgecolor="k" if mk != "x" else None, linewidth=0.4, zorder=3)  # fmt: skip
            if i == 0:
                ax.set_title(f"code fraction {f:.2f}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{m}\nheld-out bits/byte", fontsize=8)
            if i == len(metrics) - 1:
                ax.set_xlabel("final training loss (nats/token)")
    plots._legend_outside(
        fig, _legend(colors, n_of, markers, False, False, bool(cells.diverged.any()), "C"), "size / budget"
    )
    fig.suptitle(
        "Final training loss vs held-out bits per byte (a line turning up: overfitting repeated data)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    plots._save(fig, path)
