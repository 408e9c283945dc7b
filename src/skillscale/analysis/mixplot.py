"""The mixture law's figure: N*(C, s) of the chosen law through the observed IsoFLOP optima.

One panel per skill metric: the law's N*(C) at every trained code fraction (solid, with the
band of its bootstrap draws) and at fractions it never trained (dashed), over the trained
budgets and a decade beyond; the observed interior optima with their intervals as points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from skillscale.analysis import mixreport, plots
from skillscale.analysis.plots import plt

__all__ = ["mixture_law", "UNTRAINED"]

UNTRAINED = (0.35,)  # the README's example mix: a fraction between the trained ones


def mixture_law(sl, optima: pd.DataFrame, path: Path) -> None:
    if sl is None:
        plots.placeholder(path, "mixture law: no fit", "the mixture law could not be fitted: see mixture_law.csv")
        return
    metrics = sorted(sl.laws)
    fracs = list(sl.ranges["code_fracs"])
    b = np.asarray(sl.ranges["budgets"], float)
    cs = np.exp(np.linspace(np.log(b.min() / 1.5), np.log(b.max() * 10), 30))
    ncol = min(len(metrics), 2)
    nrow = int(np.ceil(len(metrics) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow), squeeze=False)
    colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.85, len(fracs) + len(UNTRAINED)))
    ok = optima[optima["status"] == "ok"] if "status" in optima.columns else optima.iloc[:0]
    for ax, m in zip(axes.ravel(), metrics):
        allf = sorted(fracs + [f for f in UNTRAINED if f not in fracs])
        for f, col in zip(allf, colors):
            try:
                cur = mixreport.law_curve(sl, m, cs, sl.share(m, f), sl.per_token())
            except Exception as e:  # one metric without a law still draws the others
                ax.set_title(f"{m}: {type(e).__name__}", fontsize=8)
                break
            trained = f in fracs
            ax.plot(cs, np.exp(cur[0]), color=col, ls="-" if trained else "--", label=f"code {f:g}")
            if trained and len(cur) > 2:
                lo, hi = np.nanpercentile(cur[1:], [5, 95], axis=0)
                ax.fill_between(cs, np.exp(lo), np.exp(hi), color=col, alpha=0.15, lw=0)
                g = ok[(ok["metric"] == m) & np.isclose(ok["code_frac"], f)]
                yerr = [g["n_opt"] - g["n_opt_lo"].fillna(g["n_opt"]), g["n_opt_hi"].fillna(g["n_opt"]) - g["n_opt"]]
                ax.errorbar(g["budget"], g["n_opt"], yerr=yerr, fmt="o", color=col, ms=4, capsize=2)
        ax.axvline(b.max(), color="grey", lw=0.6, ls=":")
        count = "6ND" if sl.flops == "6nd" else "exact, attention included"
        ax.set(xscale="log", yscale="log", xlabel=f"compute C ({count}, FLOPs)", ylabel="N*", title=m)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(metrics) :]:
        ax.axis("off")
    fig.suptitle(f"mixture law ({sl.chosen}): N*(C, code fraction), points = observed IsoFLOP optima", fontsize=10)
    fig.tight_layout()
    plots._save(fig, path)
