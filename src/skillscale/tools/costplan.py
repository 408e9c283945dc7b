"""What a grid will cost before it runs: FLOPs and wall time per job, from a measured calibration.

    skillscale plan --config config/config.yaml [config/studies/X.yaml] --estimate [--threads 1] [--jobs 2]

The calibration times, on this machine with the job's thread count, a few optimizer steps
of the real trainer (train.train_step) and a few batches of evaluation forward passes at
every shape the plan uses, so the estimate carries the real per-shape throughput (small
models are far from matmul peak), and the fixed costs a job and an evaluation pay: a fresh
interpreter importing the trainer and lm-eval, and one pass of lm-eval over tiny tasks.
With several jobs side by side on one machine it also measures how much they slow each
other (one calibration process alone, then `jobs` at once) and divides every rate by that.
Run it on the kind of node the jobs will run on (a GPU node for a GPU cluster).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import torch

from skillscale import plan
from skillscale.model.decoder import Decoder
from skillscale.train import devices
from skillscale.train.step import build_optimizer, loss_fn, train_step, use_compile


def tokens_per_second(cfg: dict, shape, threads: int, steps: int = 6, warmup: int = 2) -> float:
    torch.set_num_threads(threads)
    device = devices.pick(cfg["train"]["device"])
    tc = cfg["train"] | {"precision": devices.precision(cfg["train"], device)}
    devices.configure(device)
    model = Decoder(shape).to(device)
    opt = build_optimizer(model, tc, 1e-3, device)
    loss_of = loss_fn(model, use_compile(tc, device))  # warmup pays any compile
    batch = torch.randint(0, shape.vocab_size, (cfg["train"]["batch_size"], shape.seq_len + 1), device=device)
    for _ in range(warmup):
        train_step(loss_of, model, opt, batch, tc, 1e-3)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(loss_of, model, opt, batch, tc, 1e-3)
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch.numel() / (time.perf_counter() - t0)


@torch.inference_mode()
def eval_tokens_per_second(cfg: dict, shape, threads: int, batches: int = 4) -> float:
    """Forward passes at the evaluation batch size: what scoring a cell costs per token."""
    torch.set_num_threads(threads)
    model = Decoder(shape).eval()
    x = torch.randint(0, shape.vocab_size, (cfg["eval"]["batch_size"], shape.seq_len))
    model(x)
    t0 = time.perf_counter()
    for _ in range(batches):
        model(x)
    return batches * x.numel() / (time.perf_counter() - t0)


# Bytes per evaluation item and per token of the default study's data (measured on its
# eval files and shards); the estimate needs them before the data exists.
QA_ITEM_BYTES, CODE_FN_ITEM_BYTES, BYTES_PER_TOKEN = 53, 300, 2.0


def eval_tokens(cfg: dict) -> float:
    e = cfg["data"]["eval"]
    n_bytes = 2 * e["text_bytes"] + e["knowledge_qa_items"] * QA_ITEM_BYTES + e["code_fn_items"] * CODE_FN_ITEM_BYTES
    return n_bytes / BYTES_PER_TOKEN


def job_startup_seconds() -> float:
    """A job's fixed cost: a fresh interpreter importing the trainer and the lm-eval adapter."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import skillscale.train.jobs, lm_eval.evaluator"], check=True)
    return time.perf_counter() - t0


SIDE_BY_SIDE = """
import json, sys
from skillscale import plan, study
from skillscale.tools import costplan
cfg = study.validate(json.loads(sys.argv[1]))
shape = plan.shape_of(cfg, *json.loads(sys.argv[2]))
print(costplan.tokens_per_second(cfg, shape, int(sys.argv[3]), steps=12))
"""


def side_by_side_slowdown(cfg: dict, shape, threads: int, jobs: int) -> float:
    """How much slower a training process runs when `jobs` of them share the machine (memory
    bandwidth, caches, turbo: on 2 cores two 1-thread jobs run ~1.4x slower each than one
    alone), from `jobs` calibration processes started together against one alone; >= 1."""
    import json

    args = [json.dumps(cfg, default=str), json.dumps([shape.d_model, shape.n_layers, shape.n_heads]), str(threads)]
    cmd = [sys.executable, "-c", SIDE_BY_SIDE, *args]
    alone = float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[-1])
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(jobs)]
    together = [float(p.communicate()[0].split()[-1]) for p in procs]
    return max(1.0, alone / (sum(together) / len(together)))


def stated_rates(cfg: dict, cells, flops_per_second: float) -> dict:
    """Tokens/s per size at a stated throughput (no calibration): the exact FLOPs per token
    (attention and the output head included) at `flops_per_second`."""
    return {c.size: flops_per_second * c.tokens / c.flops_exact for c in cells}


def harness_seconds() -> float:
    """One evaluation's fixed cost: lm-eval building the four tasks and scoring a handful of
    items each with a byte-level model (scoring itself is counted per token, apart)."""
    import json
    import tempfile
    from pathlib import Path

    # deferred: the calibration's imports (torch, lm-eval) only when it measures
    from skillscale.data.tokenizer import ByteTokenizer
    from skillscale.evaluate.harness import SkillscaleLM, run_tasks

    rows = {
        "knowledge_qa": [{"id": "q", "context": "Q: where?\nA:", "target": " Peru."}],
        "code_fn": [{"id": "f", "context": "def f():\n", "target": "    return 1\n"}],
        "knowledge_text": [{"id": "w", "text": "Lima is in Peru."}],
        "code_text": [{"id": "c", "text": "x = 1\n"}],
    }
    with tempfile.TemporaryDirectory() as d:
        for name, rs in rows.items():
            (Path(d) / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
        lm = SkillscaleLM(lambda x: torch.zeros(*x.shape, 256), ByteTokenizer(), seq_len=16)
        run_tasks(lm, Path(d))  # the first call pays lm-eval's lazy imports, a job's start-up
        t0 = time.perf_counter()
        run_tasks(lm, Path(d))
        return time.perf_counter() - t0


def _rates(cfg: dict, cells, threads: int, jobs: int, flops_per_second: float | None) -> tuple[dict, dict, float]:
    """Training and evaluation tokens/s per size, stated or measured here, and the side-by-side slowdown applied."""
    rates = stated_rates(cfg, cells, flops_per_second) if flops_per_second else {}
    eval_rates = {k: 3 * v for k, v in rates.items()}
    slowdown = 1.0
    if not flops_per_second:
        for c in cells:
            if c.size not in rates:
                rates[c.size] = tokens_per_second(cfg, c.shape(cfg), threads)
                eval_rates[c.size] = eval_tokens_per_second(cfg, c.shape(cfg), threads)
        if jobs > 1 and jobs * threads <= (os.cpu_count() or 1):  # jobs on one machine slow each other
            mid = sorted(cells, key=lambda c: c.n_params)[len(cells) // 2]
            slowdown = side_by_side_slowdown(cfg, mid.shape(cfg), threads, jobs)
            rates = {k: v / slowdown for k, v in rates.items()}
            eval_rates = {k: v / slowdown for k, v in eval_rates.items()}
    return rates, eval_rates, slowdown


def _work_rows(cfg: dict, cells, rates: dict, eval_rates: dict, harness: float, n_eval_tokens: float) -> list[dict]:
    """The plan's pieces of work with their FLOPs and seconds: each cell's training and evaluation, then the trunks."""
    tokens_per_step = cfg["train"]["batch_size"] * cfg["model"]["seq_len"]
    wsd = cfg["train"]["schedule"] == "wsd"
    rows = []
    for c in cells:
        steps = plan.cooldown_steps(cfg, c.steps) if wsd else c.steps
        process = plan.trunk_id(c) if wsd else c.cell  # the job it runs in
        rows.append(
            {
                "job": c.cell,
                "process": process,
                "kind": "cooldown" if wsd else "cell",
                "size": c.size,
                "n_params": c.n_params,
                "budget": c.budget,
                "steps": steps,
                "flops": 6.0 * c.n_params * steps * tokens_per_step,
                "tok_per_s": rates[c.size],
                "seconds": steps * tokens_per_step / rates[c.size],
            }
        )
        rows.append(
            {
                "job": c.cell,
                "process": process,
                "kind": "evaluation",
                "size": c.size,
                "n_params": c.n_params,
                "budget": c.budget,
                "steps": 0,
                "flops": 2.0 * c.n_params * n_eval_tokens,
                "tok_per_s": eval_rates[c.size],
                "seconds": harness + n_eval_tokens / eval_rates[c.size],
            }
        )
    if wsd:
        for r in plan.trunks(cfg, cells):
            rows.append(
                {
                    "job": r.run,
                    "process": r.run,
                    "kind": "trunk",
                    "size": r.size,
                    "n_params": r.n_params,
                    "budget": None,
                    "steps": r.steps,
                    "flops": r.flops,
                    "tok_per_s": rates[r.size],
                    "seconds": r.steps * tokens_per_step / rates[r.size],
                }
            )
    return rows


def estimate(
    cfg: dict, threads: int, jobs: int | None = None, flops_per_second: float | None = None
) -> tuple[pd.DataFrame, dict]:
    """One row per piece of work of the plan (each cell's training, a cooldown under WSD, and
    its evaluation; the trunks under WSD) with estimated seconds: calibrated on this
    machine, or at a stated throughput (flops_per_second; a forward pass is a third of a
    training step's FLOPs)."""
    cells, _ = plan.build(cfg)
    jobs = jobs or max(1, (os.cpu_count() or 1) // threads)
    rates, eval_rates, slowdown = _rates(cfg, cells, threads, jobs, flops_per_second)
    harness, n_eval_tokens = harness_seconds(), eval_tokens(cfg)
    df = pd.DataFrame(_work_rows(cfg, cells, rates, eval_rates, harness, n_eval_tokens))
    startup = job_startup_seconds()
    units = job_units(cfg, cells, df.groupby("process").seconds.sum() + startup, on_gpu=bool(flops_per_second))
    summary = {
        "jobs": len(units),
        "flops": float(df.flops.sum()),
        "cpu_seconds": float(units.device_seconds.sum()),
        "parallel_jobs": jobs,
        # parallel devices share the work; no schedule finishes before its longest job
        "wall_seconds": max(float(units.device_seconds.sum()) / jobs, float(units.wall_seconds.max())),
        "longest_job_seconds": float(units.wall_seconds.max()),
        "threads": threads,
        "startup_seconds": startup,
        "harness_seconds": harness,
        "eval_tokens": n_eval_tokens,
        "eval_seconds": float(df[df.kind == "evaluation"].seconds.sum()),
        "cells": len(cells),
        "packs": int((units.members > 1).sum()),
        "data_parallel_jobs": int((units.ddp > 1).sum()),
        "side_by_side_slowdown": slowdown,
    }
    return df, summary


def job_units(cfg: dict, cells, chain_seconds, on_gpu: bool) -> pd.DataFrame:
    """One row per training job the workflow submits, from each process's chain of work
    (a trunk, its cooldowns and evaluations, in order; or a cosine cell): its wall time and
    the device-seconds it holds. A data-parallel job splits its chain over its processes
    (communication not counted) and holds that many devices. A pack runs its members side
    by side: as long as the longest, on one GPU (assumed not to slow them: the reason to
    pack small models is that each leaves the GPU mostly idle; `skillscale speed gpu`
    measures it), or on CPU with train_threads cores each."""
    wsd = cfg["train"]["schedule"] == "wsd"
    n_params = {r.run: r.n_params for r in plan.trunks(cfg, cells)} if wsd else {c.cell: c.n_params for c in cells}
    packed = {r: p.name for p in plan.packs(cfg, plan.trunks(cfg, cells)) for r in p.runs} if wsd else {}
    rows = {}
    for process, secs in chain_seconds.items():
        unit = packed.get(process, process)
        p = plan.ddp_world(cfg, n_params[process])
        u = rows.setdefault(unit, {"job": unit, "members": 0, "ddp": p, "wall_seconds": 0.0, "cpu_members": 0})
        u["members"] += 1
        u["wall_seconds"] = max(u["wall_seconds"], float(secs) / p)
    for u in rows.values():
        u["devices"] = u["ddp"] if u["members"] == 1 else (1 if on_gpu else u["members"])
        u["device_seconds"] = u["wall_seconds"] * u["devices"]
    return pd.DataFrame(list(rows.values()))
