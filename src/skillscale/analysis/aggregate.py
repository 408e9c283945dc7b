"""Collect every finished cell into one tidy table: results/<study>/cells.csv.

One row per cell x metric. Standard benchmarks (eval.benchmarks) are metrics too:
bench:<name> per benchmark and bench:<skill> for a skill's benchmarks pooled by gold bytes;
`accuracy` holds a multiple-choice benchmark's accuracy (NaN elsewhere: fits read `value`).
Reads only what cells left behind (train.json, eval.json), so it
runs on a partial grid: cells of the plan that have not finished are listed as missing,
never silently dropped, and diverged cells stay in the table flagged ``diverged``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from skillscale import benchmarks, common, plan

COLUMNS = [
    "cell",
    "code_frac",
    "budget",
    "size",
    "seed",
    "n_params",
    "n_params_nonembed",
    "n_params_total",
    "tokens",
    "flops",
    "flops_exact",
    "metric",
    "skill",
    "value",
    "accuracy",
    "diverged",
    "train_seconds",
    "eval_seconds",
    "final_train_loss",
    "config_hash",
    "data_config_hash",
    "code_version",
    "device",
]


def cell_fields(c, *extra: str) -> dict:
    """A planned cell's identity and size as table columns (cell, code_frac, budget, size,
    seed, n_params), then the attributes named in `extra`: every per-cell table starts so."""
    return {k: getattr(c, k) for k in ("cell", "code_frac", "budget", "size", "seed", "n_params", *extra)}


def collect(cfg: dict, study_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """Return (tidy cells table, ids of planned cells with no finished evaluation)."""
    cells, _ = plan.build(cfg)
    rows, missing = [], []
    for c in cells:
        d = Path(study_dir) / "cells" / c.cell
        if not (d / "eval.json").exists() or not (d / "train.json").exists():
            missing.append(c.cell)
            continue
        tr = common.read_json(d / "train.json", "training record")
        ev = common.read_json(d / "eval.json", "evaluation record")
        acc = {f"{benchmarks.PREFIX}{b}": r["acc"] for b, r in ev.get("benchmarks", {}).items() if "acc" in r}
        for metric, value in ev["bits_per_byte"].items():
            rows.append(
                {
                    **cell_fields(c, "n_params_nonembed", "n_params_total", "tokens", "flops", "flops_exact"),
                    "metric": metric,
                    "skill": ev["skills"][metric],
                    "value": value,
                    "accuracy": acc.get(metric, float("nan")),
                    "diverged": bool(tr["diverged"]),
                    "train_seconds": tr["wall_seconds"],
                    "eval_seconds": ev["wall_seconds"],
                    "final_train_loss": tr["final_loss"],
                    # provenance: which settings, data and code made this number
                    "config_hash": tr["provenance"]["config_hash"],
                    "data_config_hash": tr["provenance"]["data_config_hash"],
                    "code_version": tr["provenance"]["code_version"],
                    "device": tr["provenance"]["device"],
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS), missing
