"""Aggregate -> fits -> tables -> figures for one study folder.

    skillscale analyze --config results/<study>/config.yaml --study-dir results/<study> [--allow-missing]

Fits per (code fraction, skill metric): an IsoFLOP parabola of bits/byte in log N per
budget (N*, D*, loss* with bootstrap CIs and edge flags), then log N* = a log C + b over the
budgets whose optimum is interior. Diverged cells are excluded from fits and listed; cells
of the plan that have not finished are listed as missing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from . import aggregate, fit, io, plots

log = logging.getLogger("skillscale.report")
GROUP = ["code_frac", "metric", "skill"]


class IncompleteStudy(RuntimeError):
    pass


def write_table(df: pd.DataFrame, path_csv: Path, title: str | None = None, notes: list[str] = ()) -> None:
    with io.atomic_path(path_csv) as tmp:
        df.to_csv(tmp, index=False)
    md = [f"# {title}", ""] if title else []
    md += [f"- {n}" for n in notes] + ([""] if notes else [])
    md.append(df.to_markdown(index=False, floatfmt=".4g"))
    io.write_text(path_csv.with_suffix(".md"), "\n".join(md) + "\n")


def scaling_table(optima: pd.DataFrame, n_boot: int, ci: float, seed: int = 0) -> pd.DataFrame:
    rows = []
    for key, g in optima.groupby(GROUP):
        row = dict(zip(GROUP, key))
        use = g[(g.status == "ok") & np.isfinite(g.n_opt)]
        row.update(n_budgets=len(g), n_interior=len(use))
        try:
            pl = fit.power_law_fit(use.budget.to_numpy(), use.n_opt.to_numpy(), n_boot=n_boot, seed=seed, ci=ci)
            pl = pl if isinstance(pl, dict) else pl.__dict__
            row.update({k: pl[k] for k in ("a", "a_lo", "a_hi", "b", "b_lo", "b_hi")}, status="ok")
        except fit.FitError as e:
            row.update(a=np.nan, status=f"failed: {e}")
        rows.append(row)
    return pd.DataFrame(rows)


def analyze(cfg: dict, study_dir: Path, allow_missing: bool = False) -> dict:
    study_dir = Path(study_dir)
    cells, missing = aggregate.collect(cfg, study_dir)
    if missing and not allow_missing:
        raise IncompleteStudy(
            f"{len(missing)} planned cells have no eval.json yet (e.g. {missing[0]});"
            " run the workflow, or pass --allow-missing to analyse what exists"
        )
    if cells.empty:
        raise IncompleteStudy(f"{study_dir}: no finished cells to analyse")
    with io.atomic_path(study_dir / "cells.csv") as tmp:
        cells.to_csv(tmp, index=False)

    diverged = sorted(cells.loc[cells.diverged, "cell"].unique())
    usable = cells[~cells.diverged & np.isfinite(cells.value)].rename(columns={"value": "loss"})
    fc = cfg["fit"]
    optima = fit.isoflop_optima(usable, group_cols=GROUP, n_col="n_params", budget_col="budget",
                                loss_col="loss", n_boot=fc["n_boot"], seed=0, ci=fc["ci"])
    scaling = scaling_table(optima, fc["n_boot"], fc["ci"])

    notes = [f"bits per byte; N = standard parameter count; CIs: {fc['ci']:.0%} bootstrap over cells ({fc['n_boot']} resamples)",
             "status 'edge': the parabola's minimum is at or beyond the smallest/largest size sampled for that budget; not used in the power law"]
    if missing:
        notes.append(f"missing cells ({len(missing)}): " + ", ".join(missing))
    if diverged:
        notes.append(f"diverged cells, excluded from fits ({len(diverged)}): " + ", ".join(diverged))
    tables = study_dir / "tables"
    write_table(optima, tables / "optima.csv", "Compute-optimal size per code fraction x skill x budget", notes)
    write_table(scaling, tables / "scaling.csv", "Power law N*(C) = exp(b) C^a per code fraction x skill", notes)

    figs = study_dir / "figures"
    plots.isoflop(cells, optima, figs / "isoflop.png")
    plots.optimum_vs_mix(optima, figs / "optimum_vs_code_fraction.png")
    return {"cells": cells, "optima": optima, "scaling": scaling, "missing": missing, "diverged": diverged}
