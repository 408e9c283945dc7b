"""The GPU benchmark: MFU across model sizes, and packed small cells vs one per GPU.

    skillscale speed gpu [--config config/studies/gpu-paper.yaml] [--pack 8] [--pack-steps 300] [--steps 10] [--json]
    skillscale speed train --device cuda ...    # the same

On the first visible CUDA device, in one run:

- peak: the best bf16 FLOP/s of large square matmuls (devices.matmul_peak), measured here;
- MFU sweep: for the config's ladder from its smallest shape up to the first of at least
  100M parameters (larger reference shapes are added if the ladder stops short), tokens/s
  of the workflow's own trainer (train.build_optimizer + train.train_step, compiled, bf16
  autocast, TF32, the config's batch and resources.micro_batch_rows) and MFU = tokens/s x
  flops_per_token(shape)["exact"] / peak;
- packing: K fresh processes side by side, each a small cell's job (interpreter, CUDA
  start-up, compile, then --pack-steps steps), against one such process alone: aggregate
  tokens/s of the pack over that of one process per GPU, start-up included, since a job
  pays it. This is what resources.pack buys (per_job = K).

On a machine without CUDA it prints that the CUDA part is skipped and exits 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import torch

from skillscale import plan, study
from skillscale.model.decoder import Decoder, ModelShape, flops_per_token, param_counts
from skillscale.train import devices
from skillscale.train.step import build_optimizer, loss_fn, train_step, use_compile

GPU_CONFIG = "config/studies/gpu-paper.yaml"
REFERENCE = [(768, 12, 12), (1024, 16, 16)]  # ~100M+ shapes when the ladder stops short
SMALL_CELL = {"d_model": 128, "n_layers": 4, "n_heads": 4, "seq_len": 512, "batch_size": 32}


def sweep_shapes(cfg: dict, at_least: float = 1e8, sizes: int | None = None) -> list[ModelShape]:
    """The ladder from its smallest shape to the first with >= at_least parameters; with
    `sizes`, that many of them spread evenly, the smallest and the largest kept (each
    shape compiles afresh: a short check times fewer)."""
    shapes = sorted((s for _, s, _ in plan.ladder(cfg)), key=lambda s: param_counts(s)["standard"])
    out = []
    for s in shapes:
        out.append(s)
        if param_counts(s)["standard"] >= at_least:
            break
    else:
        for d, n_layers, h in REFERENCE:
            s = plan.shape_of(cfg, d, n_layers, h)
            out.append(s)
            if param_counts(s)["standard"] >= at_least:
                break
    if sizes and sizes < len(out):
        out = [out[round(i * (len(out) - 1) / max(1, sizes - 1))] for i in range(sizes)] if sizes > 1 else out[-1:]
    return out


def trainer_step(shape: ModelShape, tc: dict, rows: int, micro: int | None, device: str):
    """One optimizer step of the workflow's trainer, as a training job runs it on `device`."""
    tc = tc | {"precision": devices.precision(tc | {"precision": "auto"}, device)}
    devices.configure(device)
    model = Decoder(shape).to(device)
    opt = build_optimizer(model, tc, 1e-3, device)
    loss_of = loss_fn(model, use_compile(tc | {"compile": "auto"}, device))
    batch = torch.randint(0, shape.vocab_size, (rows, shape.seq_len + 1), device=device)
    return lambda: train_step(loss_of, model, opt, batch, tc, 1e-3, micro)


def tokens_per_second(step, tokens: int, steps: int, warmup: int, device: str) -> float:
    for _ in range(warmup):  # compile, autotune, allocator
        step()
    devices.sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()
    return steps * tokens / (time.perf_counter() - t)


def mfu_sweep(cfg: dict, peak: float, steps: int, warmup: int, device: str = "cuda", sizes=None) -> list[dict]:
    rows, micro = cfg["train"]["batch_size"], cfg["resources"]["micro_batch_rows"]
    out = []
    for shape in sweep_shapes(cfg, sizes=sizes):
        tps = tokens_per_second(
            trainer_step(shape, cfg["train"], rows, micro, device), rows * shape.seq_len, steps, warmup, device
        )
        fpt = flops_per_token(shape)["exact"]
        out.append(
            {
                "shape": shape.to_dict(),
                "n_params": param_counts(shape)["standard"],
                "batch_rows": rows,
                "micro_batch_rows": micro,
                "tokens_per_s": tps,
                "flops_per_token": fpt,
                "mfu": tps * fpt / peak,
            }
        )
        torch._dynamo.reset()  # each shape compiles afresh, never into dynamo's recompile limit
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def worker(s: dict, device: str = "cuda", steps: int = 300) -> None:
    """A small cell's job for the packing measurement: build, compile, train, report (run by `_jobs`, one
    fresh interpreter each, as a cell's job is)."""
    torch.set_num_threads(1)
    shape = ModelShape(s["d_model"], s["n_layers"], s["n_heads"], s["vocab_size"], s["seq_len"], 2.6667)
    tc = {"weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "grad_clip": 1.0, "precision": "auto", "compile": "auto"}
    step = trainer_step(shape, tc, s["batch_size"], None, device)
    warmup = min(3, steps - 1)  # in the job's time, not in its steady rate
    tps = tokens_per_second(step, s["batch_size"] * shape.seq_len, steps - warmup, warmup, device)
    print(json.dumps({"tokens": steps * s["batch_size"] * shape.seq_len, "loop_tokens_per_s": tps}))


def _jobs(spec: dict, device: str, k: int, steps: int) -> tuple[float, list[dict]]:
    code = f"from skillscale.tools import speed_gpu; speed_gpu.worker({spec!r}, {device!r}, {steps})"
    cmd = [sys.executable, "-c", code]
    t = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(k)]
    outs = [pr.communicate()[0] for pr in procs]
    wall = time.perf_counter() - t
    if any(pr.returncode for pr in procs):
        raise RuntimeError(f"a benchmark worker failed: {' '.join(cmd)}")
    return wall, [json.loads(o.strip().splitlines()[-1]) for o in outs]


def packed_vs_alone(device: str, spec: dict, k: int, steps: int) -> dict:
    """Aggregate tokens/s of k small-cell jobs side by side vs one alone, start-up included."""
    alone_wall, (alone,) = _jobs(spec, device, 1, steps)
    packed_wall, packed = _jobs(spec, device, k, steps)
    packed_tokens = sum(r["tokens"] for r in packed)
    out = {
        "spec": spec,
        "members": k,
        "steps": steps,
        "alone_tokens": alone["tokens"],
        "alone_seconds": alone_wall,
        "alone_tokens_per_s": alone["tokens"] / alone_wall,
        "alone_loop_tokens_per_s": alone["loop_tokens_per_s"],
        "packed_tokens": packed_tokens,
        "packed_seconds": packed_wall,
        "packed_tokens_per_s": packed_tokens / packed_wall,
    }
    out["speedup"] = out["packed_tokens_per_s"] / out["alone_tokens_per_s"]
    return out


def bench_cuda(a) -> dict:
    if not torch.cuda.is_available():
        return {
            "skipped": "CUDA part skipped: no CUDA device is visible here (torch.cuda.is_available() is"
            f" False; torch {torch.__version__}, built for CUDA {torch.version.cuda}). Run this"
            " command on a GPU node."
        }
    cfg = study.load(a.config or GPU_CONFIG)
    peak = devices.matmul_peak(torch.bfloat16, "cuda", a.peak_size or 8192)
    sweep = mfu_sweep(cfg, peak, a.steps, a.warmup_steps, sizes=getattr(a, "sizes", None))
    spec = SMALL_CELL | {"vocab_size": cfg["data"]["tokenizer"]["vocab_size"]}
    pack = packed_vs_alone("cuda", spec, a.pack, a.pack_steps)
    return {
        "device": devices.describe("cuda"),
        "torch": torch.__version__,
        "config": a.config or GPU_CONFIG,
        "peak_bf16_flops": peak,
        "sweep": sweep,
        "pack": pack,
    }


def table(r: dict) -> str:
    if "skipped" in r:
        return r["skipped"]
    d = r["device"]
    lines = [
        f"device {d['name']} ({d['memory_gb']} GiB, capability {d['capability']}), torch {r['torch']},"
        f" config {r['config']}",
        f"measured bf16 matmul peak {r['peak_bf16_flops'] / 1e12:,.0f} TFLOP/s",
        "",
        f"{'shape':<16}{'params':>14}{'rows/micro':>12}{'tokens/s':>14}{'MFU':>8}",
    ]
    for x in r["sweep"]:
        s = x["shape"]
        name, rows = (
            f"d{s['d_model']}L{s['n_layers']}h{s['n_heads']}",
            f"{x['batch_rows']}/{x['micro_batch_rows'] or '-'}",
        )
        lines.append(f"{name:<16}{x['n_params']:>14,}{rows:>12}{x['tokens_per_s']:>14,.0f}{100 * x['mfu']:>7.1f}%")
    p, s = r["pack"], r["pack"]["spec"]
    lines += [
        "",
        f"small cell d{s['d_model']}L{s['n_layers']}h{s['n_heads']}, {s['batch_size']}x{s['seq_len']} tokens"
        f" a step, {p['steps']} steps per job (start-up and compile included):",
        f"  one per GPU : {p['alone_tokens_per_s']:>12,.0f} tokens/s ({p['alone_seconds']:.1f} s a job;"
        f" {p['alone_loop_tokens_per_s']:,.0f} tokens/s in its loop)",
        f"  {p['members']} packed    : {p['packed_tokens_per_s']:>12,.0f} tokens/s ({p['packed_seconds']:.1f} s"
        f" for all)  = {p['speedup']:.2f}x",
    ]
    return "\n".join(lines)
