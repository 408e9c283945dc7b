"""Figures of a study (seaborn/matplotlib, written headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import io  # noqa: E402


def _save(fig, path: Path) -> None:
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=Path(path).suffix.lstrip("."))
    plt.close(fig)


def isoflop(cells: pd.DataFrame, optima: pd.DataFrame, path: Path) -> None:
    """Loss vs N per budget, faceted metric x code fraction, with parabolas and optima."""
    metrics = sorted(cells["metric"].unique())
    fracs = sorted(cells["code_frac"].unique())
    budgets = sorted(cells["budget"].unique())
    colors = dict(zip(budgets, sns.color_palette("viridis", len(budgets))))
    fig, axes = plt.subplots(len(metrics), len(fracs), figsize=(3.2 * len(fracs), 2.6 * len(metrics)),
                             squeeze=False, sharex=True)
    for i, m in enumerate(metrics):
        for j, f in enumerate(fracs):
            ax = axes[i][j]
            sub = cells[(cells.metric == m) & (cells.code_frac == f)]
            for b, g in sub.groupby("budget"):
                ax.scatter(g.n_params, g.value, s=14, color=colors[b], label=f"{b:.0e}")
                good = g[np.isfinite(g.value)]
                if good.n_params.nunique() >= 3:
                    c = np.polyfit(np.log(good.n_params), good.value, 2)
                    xs = np.linspace(np.log(good.n_params.min()), np.log(good.n_params.max()), 50)
                    ax.plot(np.exp(xs), np.polyval(c, xs), color=colors[b], lw=1)
            opt = optima[(optima.metric == m) & (optima.code_frac == f)]
            for _, o in opt.iterrows():
                if np.isfinite(o.n_opt):
                    ax.scatter([o.n_opt], [o.loss_opt], marker="*", s=90, zorder=5,
                               color="white" if o.edge else colors.get(o.budget, "k"), edgecolor="k")
            ax.set_xscale("log")
            if i == 0:
                ax.set_title(f"code fraction {f:.2f}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{m}\nbits/byte", fontsize=9)
            if i == len(metrics) - 1:
                ax.set_xlabel("N (parameters)")
    axes[0][-1].legend(title="budget (FLOPs)", fontsize=7, title_fontsize=7, loc="upper right")
    fig.suptitle("IsoFLOP curves per skill and datamix (stars: fitted optima, hollow = edge)", fontsize=10)
    _save(fig, path)


def optimum_vs_mix(optima: pd.DataFrame, path: Path) -> None:
    """N* per skill metric against code fraction, one panel per budget, with CIs."""
    budgets = sorted(optima["budget"].unique())
    metrics = sorted(optima["metric"].unique())
    colors = dict(zip(metrics, sns.color_palette("tab10", len(metrics))))
    fig, axes = plt.subplots(1, len(budgets), figsize=(3.6 * len(budgets), 3.2), squeeze=False, sharey=True)
    for ax, b in zip(axes[0], budgets):
        for m in metrics:
            o = optima[(optima.budget == b) & (optima.metric == m) & np.isfinite(optima.n_opt)].sort_values("code_frac")
            if o.empty:
                continue
            err = np.vstack([o.n_opt - o.n_opt_lo, o.n_opt_hi - o.n_opt]).clip(min=0)
            ax.errorbar(o.code_frac, o.n_opt, yerr=np.nan_to_num(err), marker="o", ms=4, capsize=2,
                        color=colors[m], label=m)
        ax.set_yscale("log")
        ax.set_title(f"C = {b:.1e} FLOPs", fontsize=9)
        ax.set_xlabel("code fraction of training tokens")
    axes[0][0].set_ylabel("compute-optimal N*")
    axes[0][-1].legend(fontsize=7)
    _save(fig, path)
