"""The training loop, read top to bottom: a Job (what to train, its LR schedule, where to
save), checkpoints that make a killed run resume bit-identically, and `run`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from skillscale import common
from skillscale.data import mixing
from skillscale.model.decoder import Decoder, param_counts
from skillscale.model.shapes import flops_per_token
from skillscale.train import devices, distributed, tracking
from skillscale.train.step import build_optimizer, loss_fn, train_step, use_compile

pick_device = devices.pick


def print0(*args) -> None:
    """Progress from rank 0 only: a data-parallel job's log reads like a single process's."""
    if distributed.world().main:
        print(*args, flush=True)


def fmt_time(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"


# -- the loop -----------------------------------------------------------------------------------
@dataclass
class Job:
    """A stretch of training: steps [start, end) of one (code fraction, size, seed) stream."""

    name: str
    shape: object
    code_frac: float
    seed: int
    end: int
    lr: Callable[[int], float]
    fingerprint: dict
    peak: float
    branches: dict[int, Path] = field(default_factory=dict)  # step -> where to save state
    track: tracking.Tracker = tracking.OFF  # where its curve goes live (logging.*; off by default)


def save_state(path: Path, step, model, opt, curve, wall, fingerprint, diverged_at=None) -> None:
    with common.atomic_path(path) as tmp:
        torch.save(
            {
                "step": step,
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "curve": curve,
                "wall": wall,
                "fingerprint": fingerprint,
                "diverged_at": diverged_at,
            },
            tmp,
        )


def resume_from(state: dict, resume: Path, **changes) -> None:
    """Make a saved state (a WSD branch state) the job's resume checkpoint, with `changes`
    (its fingerprint, at least), so that `run` continues from it."""
    with common.atomic_path(resume) as tmp:
        torch.save(state | changes, tmp)


def load_state(path: Path, what: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a torn or foreign file: say which and what to do
        raise ValueError(f"{path}: {what} cannot be read ({e}); delete it and rerun") from None


def run(job: Job, cfg: dict, data_dir: Path, resume: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(job.seed)
    device = pick_device(cfg["train"]["device"])
    # precision: auto is bf16 autocast on CUDA (fp32 master weights, optimizer and loss), fp32 on CPU
    tc = cfg["train"] | {"precision": devices.precision(cfg["train"], device)}
    math_settings = devices.configure(device)
    world = distributed.world(device)
    seq_len, bs = job.shape.seq_len, tc["batch_size"]
    mix = mixing.for_cell(
        data_dir,
        common.read_json(data_dir / "manifest.json", "data manifest"),
        cfg,
        job.code_frac,
        seq_len,
        bs,
        job.seed,
    )
    compiled = use_compile(tc, device)
    model, fwd, loss_of = model_for(job.shape, device, world, compiled)
    opt = build_optimizer(model, tc, job.lr(0), device)
    micro, no_sync = cfg["resources"]["micro_batch_rows"], getattr(fwd, "no_sync", None)

    step, curve, wall, diverged_at = _resume(job, resume, model, opt)
    print0(
        f"[{job.name}] N={param_counts(job.shape)['standard']:,} steps {step}..{job.end} "
        f"peak lr={job.peak:.2e} device={device} threads={threads}"
        + (f" x {world.size} data-parallel processes" if world.size > 1 else "")
    )
    for p in curve:  # a resumed job's run shows the history it continues from
        job.track.point(p)
    window, t0, t_ckpt, first = [], time.time() - wall, time.time(), step
    while step < job.end and diverged_at is None:
        batch = world.rows(torch.from_numpy(mix.batch(step))).to(device, non_blocking=True)
        window.append(train_step(loss_of, model, opt, batch, tc, job.lr(step), micro, no_sync))
        step += 1
        if step % tc["log_every"] and step != job.end and step not in job.branches:
            continue
        mean = world.mean(torch.stack(window).float().mean()).item()
        window, elapsed = [], time.time() - t0
        curve.append(
            {
                "step": step,
                "tokens": step * bs * seq_len,
                "loss": mean,
                "lr": job.lr(step - 1),
                "seconds": round(elapsed, 2),
            }
        )
        rate = (step - first) * bs * seq_len / max(1e-9, elapsed - wall)
        if not math.isfinite(mean) or mean > 2 * math.log(job.shape.vocab_size):
            diverged_at = step
            print0(f"[{job.name}] diverged at step {step}: loss {mean}")
        else:
            eta = (job.end - step) * bs * seq_len / rate
            print0(f"[{job.name}] step {step}/{job.end} loss {mean:.4f} {rate:,.0f} tok/s eta {fmt_time(eta)}")
        job.track.point(curve[-1], rate)
        if not world.main:  # rank 0 writes every state (the ranks' models are identical)
            continue
        for b in [b for b in job.branches if b == step or (diverged_at and b > step)]:
            save_state(job.branches[b], step, model, opt, curve, elapsed, job.fingerprint | {"branch": b}, diverged_at)
        if step < job.end and time.time() - t_ckpt >= tc["checkpoint_seconds"]:
            save_state(resume, step, model, opt, curve, elapsed, job.fingerprint)
            t_ckpt = time.time()
    world.barrier()  # the states rank 0 wrote are complete before any rank reads them
    wall_here = time.time() - t0 - wall
    return {
        "model": model,
        "curve": curve,
        "wall": time.time() - t0,
        "diverged_at": diverged_at,
        "device": device,
        "steps_here": step - first,
        "mix": mix,
        "hardware": hardware(job, tc, device, world, math_settings | {"compiled": compiled}, step - first, wall_here),
    }


def _resume(job: Job, resume: Path, model, opt) -> tuple[int, list, float, int | None]:
    """Load the job's resume checkpoint into model and optimizer: its step, curve, wall time and
    divergence step (step 0 and an empty curve without one, or with one of another job)."""
    if resume.exists():
        state = load_state(resume, "resume checkpoint")
        if state["fingerprint"] != job.fingerprint:  # stale: left by a job of another config
            print0(f"[{job.name}] ignoring {resume}: written for another config or job")
        else:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            print0(f"[{job.name}] resumed from {resume} at step {state['step']}")
            return state["step"], state["curve"], state["wall"], state["diverged_at"]
    return 0, [], 0.0, None


_COMPILED: dict = {}  # (shape, device, world size) -> (model, its DDP wrapper or itself, compiled loss)


def model_for(shape, device: str, world, compiled: bool):
    """A freshly initialised model (from the seed set before), the module that runs it (DDP's
    wrapper under torchrun: each rank trains on its rows of the global batch and DDP averages
    the gradients) and batch -> loss. Compiled, a process compiles once per shape: a trunk
    job's cooldowns reuse the trunk's model object with fresh weights loaded, where a new
    object would be traced again (and past torch._dynamo's recompile limit, run eager)."""
    fresh, key = Decoder(shape), (shape, device, world.size)
    if compiled and key in _COMPILED:
        with torch.no_grad():
            _COMPILED[key][0].load_state_dict(fresh.state_dict())
        return _COMPILED[key]
    model = fresh.to(device)
    fwd = distributed.wrap(model, world)
    built = (model, fwd, loss_fn(fwd, compiled))
    if compiled:
        _COMPILED[key] = built
    return built


def hardware(job: Job, tc: dict, device: str, world, settings: dict, steps: int, seconds: float) -> dict:
    """What a record says of how it was computed: the device, the precision (autocast dtype,
    fp32 master weights and optimizer state, TF32, compile) and, on CUDA, the model FLOPs
    utilisation of this job's steps against the device's measured matmul peak (per process)."""
    out = {
        "device": devices.describe(device),
        "data_parallel": world.size,
        "precision": {
            "autocast": None if tc["precision"] == "fp32" else tc["precision"],
            "master_weights": "fp32",
            **settings,
        },
    }
    peak = devices.peak_flops(device, tc["precision"])
    if peak and steps and seconds > 0:
        flops = steps * tc["batch_size"] * job.shape.seq_len * flops_per_token(job.shape)["exact"]
        out |= {
            "peak_flops": peak,
            "model_flops_per_second": flops / seconds,
            "mfu": flops / seconds / world.size / peak,
        }
    return out
