"""What a grid will cost before it runs: FLOPs and wall time per job, from a measured calibration.

    skillscale plan --config config/config.yaml [config/studies/X.yaml] --estimate [--threads 1] [--jobs 2]

The calibration times a few optimizer steps of the real trainer (train.train_step) at every
shape the plan uses, on this machine, with the job's thread count, so the estimate carries
the real per-shape throughput (small models are far from matmul peak). Run it on the kind
of node the jobs will run on (a GPU node for a GPU cluster).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import torch

from . import plan, train
from .model import Decoder


def tokens_per_second(cfg: dict, shape, threads: int, steps: int = 6, warmup: int = 2) -> float:
    torch.set_num_threads(threads)
    device = train.pick_device(cfg["train"]["device"])
    model = Decoder(shape).to(device)
    opt = train.build_optimizer(model, cfg["train"], 1e-3, device)
    loss_of = train.loss_fn(model, train.use_compile(cfg["train"], device))  # warmup pays any compile
    batch = torch.randint(0, shape.vocab_size, (cfg["train"]["batch_size"], shape.seq_len + 1), device=device)
    for _ in range(warmup):
        train.train_step(loss_of, model, opt, batch, cfg["train"], 1e-3)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        train.train_step(loss_of, model, opt, batch, cfg["train"], 1e-3)
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch.numel() / (time.perf_counter() - t0)


def job_startup_seconds() -> float:
    """A job's fixed cost: a fresh interpreter importing the trainer and the lm-eval adapter."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import skillscale.train, skillscale.evaluate"], check=True)
    return time.perf_counter() - t0


def stated_rates(cfg: dict, cells, flops_per_second: float) -> dict:
    """Tokens/s per size at a stated throughput (no calibration): the exact FLOPs per token
    (attention and the output head included) at `flops_per_second`."""
    return {c.size: flops_per_second * c.tokens / c.flops_exact for c in cells}


def estimate(cfg: dict, threads: int, jobs: int | None = None,
             flops_per_second: float | None = None) -> tuple[pd.DataFrame, dict]:
    """One row per training job of the plan (cells, and trunks under WSD) with est. seconds:
    calibrated on this machine, or at a stated throughput (flops_per_second)."""
    cells, _ = plan.build(cfg)
    rates = stated_rates(cfg, cells, flops_per_second) if flops_per_second else {}
    for c in cells:
        if c.size not in rates:
            rates[c.size] = tokens_per_second(cfg, c.shape(cfg), threads)
    tokens_per_step = cfg["train"]["batch_size"] * cfg["model"]["seq_len"]
    wsd = cfg["train"]["schedule"] == "wsd"
    rows = []
    for c in cells:
        steps = plan.cooldown_steps(cfg, c.steps) if wsd else c.steps
        rows.append({"job": c.cell, "kind": "cooldown" if wsd else "cell", "size": c.size, "n_params": c.n_params,
                     "budget": c.budget, "steps": steps, "flops": 6.0 * c.n_params * steps * tokens_per_step,
                     "tok_per_s": rates[c.size], "seconds": steps * tokens_per_step / rates[c.size]})
    if wsd:
        for r in plan.stable_runs(cfg, cells):
            rows.append({"job": r.run, "kind": "trunk", "size": r.size, "n_params": r.n_params, "budget": None,
                         "steps": r.steps, "flops": r.flops, "tok_per_s": rates[r.size],
                         "seconds": r.steps * tokens_per_step / rates[r.size]})
    df = pd.DataFrame(rows)
    jobs = jobs or max(1, (os.cpu_count() or 1) // threads)
    startup = job_startup_seconds()
    # every training job and every cell's evaluation job pays the startup once
    total = float(df.seconds.sum()) + startup * (len(df) + len(cells))
    longest_chain = float(df[df.kind == "trunk"].seconds.max()) if wsd else float(df.seconds.max())
    summary = {"jobs": len(df), "flops": float(df.flops.sum()), "cpu_seconds": total, "parallel_jobs": jobs,
               # parallel jobs share the work; no schedule finishes before its longest job
               "wall_seconds": max(total / jobs, longest_chain), "threads": threads,
               "startup_seconds": startup, "eval_jobs": len(cells)}
    return df, summary
