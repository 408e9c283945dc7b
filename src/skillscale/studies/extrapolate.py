"""Do a small study's fits predict a larger one? Fit on one study's budgets, predict another's.

    skillscale extrapolate results/default results/cpu-long [--out FILE.md] [--n-boot 200]

Takes the cells of the first study (all its budgets) and the cells of the second study at
budgets above the first's largest, over the code fractions both ran. Per (code fraction,
metric) - the four skill metrics and the validation mix (w = 0.5) - the power laws
ln N* = a ln C + b and ln loss* = p ln C + q fitted on the first study's IsoFLOP optima
predict N* and loss* at each larger budget, against the optima the second study measured
(`skills.heldout_budget_prediction` with `fit_max_budget`). The two studies should share
their train/model config and data (`config_hash`, `data_config_hash` in cells.csv); if they
do not, it says so, because the error then mixes extrapolation with a change of setup.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from skillscale import common
from skillscale.analysis import skills

SHOW = [
    "code_frac",
    "metric",
    "heldout_budget",
    "n_opt_pred",
    "n_opt_pred_lo",
    "n_opt_pred_hi",
    "n_opt_obs",
    "n_opt_rel_err",
    "loss_pred",
    "loss_obs",
    "loss_rel_err",
    "status",
]


def read_cells(study: Path) -> pd.DataFrame:
    path = study / "cells.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no cells.csv; run the study (or `snakemake tables`) first")
    return pd.read_csv(path)


def extrapolate(
    small: pd.DataFrame, large: pd.DataFrame, n_boot: int = 200, ci: float = 0.9
) -> tuple[pd.DataFrame, dict]:
    shared = sorted(set(small.code_frac) & set(large.code_frac))
    if not shared:
        raise ValueError("the two studies share no code fraction: nothing to compare")
    top = float(small.budget.max())
    beyond = large[large.budget > top * (1 + 1e-9)]
    if beyond.empty:
        raise ValueError(f"the second study has no budget above the first's largest ({top:g} FLOPs)")
    cells = pd.concat([small[small.code_frac.isin(shared)], beyond[beyond.code_frac.isin(shared)]], ignore_index=True)
    metrics = sorted(set(cells.metric)) + [skills.MIX]
    table = pd.concat(
        [skills.heldout_budget_prediction(cells, m, n_boot=n_boot, ci=ci, fit_max_budget=top) for m in metrics],
        ignore_index=True,
    )
    ok = table[table.status == "ok"]
    same = {
        k: set(small[k].dropna()) == set(large[k].dropna())
        for k in ("config_hash", "data_config_hash")
        if k in small and k in large
    }
    summary = {
        "code_fracs": shared,
        "fit_max_budget": top,
        "rows": len(table),
        "ok": len(ok),
        "median_abs_n_err": float(np.median(np.abs(ok.n_opt_rel_err))) if len(ok) else np.nan,
        "median_abs_loss_err": float(np.median(np.abs(ok.loss_rel_err))) if len(ok) else np.nan,
        "by_budget": ok.groupby("heldout_budget").n_opt_rel_err.apply(lambda e: float(np.median(np.abs(e)))).to_dict(),
        "same_setup": same,
    }
    return table, summary


def run(a) -> int:
    """`skillscale extrapolate` (its arguments: skillscale.cli)."""
    try:
        table, s = extrapolate(read_cells(a.small), read_cells(a.large), a.n_boot)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    differs = [k for k, same in s["same_setup"].items() if not same]
    text = (
        f"# Fits on {a.small.name} (budgets <= {s['fit_max_budget']:g}) predicting {a.large.name}\n\n"
        f"- code fraction(s): {', '.join(f'{f:g}' for f in s['code_fracs'])}; {s['ok']} of {s['rows']}"
        f" predictions have an interior observed optimum\n"
        f"- median |error| over those: N* {s['median_abs_n_err']:.1%}, loss* {s['median_abs_loss_err']:.2%}\n"
        + "".join(
            f"- at {b:g} FLOPs ({b / s['fit_max_budget']:.3g}x the largest fitted budget): median |N* error| {e:.1%}\n"
            for b, e in s["by_budget"].items()
        )
        + (
            f"- WARNING: the studies differ in {', '.join(differs)}: the error mixes extrapolation with a"
            " change of setup\n"
            if differs
            else ""
        )
        + "\n"
        + table[SHOW].to_markdown(index=False, floatfmt=".4g")
        + "\n"
    )
    if a.out:
        common.write_text(a.out, text)
    print(text)
    return 0
