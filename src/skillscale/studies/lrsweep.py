"""Does the width rule for the learning rate transfer across the size ladder?

    skillscale lrsweep --config results/default/config.yaml \
        --data results/default/data --out results/default/lr_sweep

Trains the smallest and the largest size of one budget's window (real cells of the study)
at several base learning rates `train.lr` (peak = lr * (lr_ref_width / d_model) **
lr_width_exponent), evaluates
each on the held-out text through lm-eval, and writes lr_sweep.{csv,md}: held-out
bits/byte per (size, lr) and the best lr per size. The rule transfers when the best base
lr is the same (within 2x) at both ends of the ladder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from skillscale import common, plan, study
from skillscale import config as cfgmod
from skillscale.evaluate import harness
from skillscale.train.jobs import train_cell


def sweep(
    cfg: dict, data: Path, out: Path, lrs: list[float], budget: float, code_frac: float, threads: int = 1
) -> pd.DataFrame:
    cfg = cfgmod.deep_merge(cfg, {"train": {"schedule": "cosine"}})
    cells, _ = plan.build(cfg)
    window = [c for c in cells if c.budget == budget and c.code_frac == code_frac and c.seed == cfg["seeds"][0]]
    if not window:
        raise ValueError(f"no cells at budget {budget:g} and code fraction {code_frac} in this config")
    ends = [min(window, key=lambda c: c.n_params), max(window, key=lambda c: c.n_params)]
    rows = []
    for cell in ends:
        for lr in lrs:
            run_cfg = cfgmod.deep_merge(cfg, {"train": {"lr": lr}})
            cell_dir = out / f"{cell.cell}_lr{lr:g}"
            if not (cell_dir / "eval.json").exists():
                rec = train_cell(run_cfg, cell, data, cell_dir, threads)
                if not rec["diverged"]:
                    harness.evaluate_cell(cell_dir, data, cfg["eval"]["batch_size"], threads)
            rec = common.read_json(cell_dir / "train.json", "train record")
            ev = common.read_json(cell_dir / "eval.json", "eval record") if (cell_dir / "eval.json").exists() else None
            bpb = ev["bits_per_byte"] if ev else {}
            rows.append(
                {
                    "size": cell.size,
                    "d_model": cell.d_model,
                    "n_params": cell.n_params,
                    "steps": cell.steps,
                    "lr": lr,
                    "peak_lr": rec["hyper"]["peak_lr"],
                    "train_loss": rec["final_loss"],
                    "diverged": rec["diverged"],
                    "heldout_bpb": np.mean([bpb.get("knowledge_text", np.nan), bpb.get("code_text", np.nan)]),
                    **{f"{k}_bpb": v for k, v in bpb.items()},
                }
            )
    return pd.DataFrame(rows)


def best_lrs(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[~df.diverged & np.isfinite(df.heldout_bpb)]
    return ok.loc[
        ok.groupby("size").heldout_bpb.idxmin(), ["size", "d_model", "n_params", "lr", "peak_lr", "heldout_bpb"]
    ]


def run(a) -> int:
    """`skillscale lrsweep` (its arguments: skillscale.cli)."""
    logging.getLogger().setLevel(logging.WARNING)  # warnings only, as when this was its own command
    logging.getLogger("lm_eval.api.task").setLevel(logging.ERROR)
    cfg = study.load(a.config)
    budgets, fracs = cfg["grid"]["budgets"], cfg["mix"]["code_fractions"]
    budget = a.budget if a.budget is not None else budgets[len(budgets) // 2]
    frac = a.code_frac if a.code_frac is not None else fracs[len(fracs) // 2]
    df = sweep(cfg, a.data, a.out, [float(x) for x in a.lrs.split(",")], budget, frac, a.threads)
    best = best_lrs(df)
    ratio = best.lr.max() / best.lr.min() if len(best) == 2 else float("nan")
    with common.atomic_path(a.out / "lr_sweep.csv") as tmp:
        df.to_csv(tmp, index=False)
    text = (
        f"# LR sweep at C = {budget:.2g}, code fraction {frac}\n\n"
        f"held-out bits/byte (mean of knowledge_text and code_text) per base lr; peak = lr x "
        f"({cfg['train']['lr_ref_width']} / d_model) ** {cfg['train']['lr_width_exponent']:g}\n\n"
        + df.pivot_table(index="lr", columns="size", values="heldout_bpb").to_markdown(floatfmt=".4f")
        + "\n\nbest base lr per size:\n\n"
        + best.to_markdown(index=False, floatfmt=".4g")
        + f"\n\nratio of best base lrs across the ladder: {ratio:.2g}x "
        + ("(transfers: within 2x)" if ratio <= 2 else "(does NOT transfer within 2x)")
        + "\n"
    )
    common.write_text(a.out / "lr_sweep.md", text)
    print(text)
    return 0
