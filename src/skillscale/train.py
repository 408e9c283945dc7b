"""Train one cell of the grid: read top to bottom.

    python -m skillscale.train --config config/config.yaml --cell <id> \
        --data results/<study>/data --out results/<study>/cells/<id>

The learning rate warms up over a number of tokens proportional to N, then decays by a
cosine to `min_lr_ratio` exactly at the end of *this cell's* token budget (a schedule fixed
to a longer horizon is the known Kaplan error). Peak LR follows a width rule
lr * lr_ref_width / d_model (Adam's muP scaling for hidden matrices). Writes
model.safetensors and train.json (loss curve, tokens, FLOPs, wall time, every parameter
convention, provenance); train.json is written last, so its presence means "finished".
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import config as cfgmod
from . import io, plan
from .mixing import Mixture, Shard
from .model import Decoder, param_counts


def lr_at(step: int, steps: int, warmup: int, peak: float, min_ratio: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def pick_device(want: str) -> str:
    if want == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is visible")
    return "cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available()) else "cpu"


def find_cell(cfg: dict, cell_id: str) -> plan.Cell:
    cells, dropped = plan.build(cfg)
    for c in cells:
        if c.cell == cell_id:
            return c
    why = next((d["reason"] for d in dropped if d["cell"] == cell_id), "not in this config's grid")
    raise KeyError(f"cell {cell_id!r}: {why}")


def fmt_time(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"


def train(cfg: dict, cell: plan.Cell, data_dir: Path, out: Path, threads: int = 1) -> dict:
    tc = cfg["train"]
    torch.set_num_threads(threads)
    torch.manual_seed(cell.seed)
    device = pick_device(tc["device"])
    shape = cell.shape(cfg)
    manifest = io.read_json(data_dir / "manifest.json", "data manifest")

    seq_len, bs = shape.seq_len, tc["batch_size"]
    mix = Mixture(
        Shard(data_dir / "shards" / "code.bin", seq_len),
        Shard(data_dir / "shards" / "knowledge.bin", seq_len),
        cell.code_frac, bs, cell.seed,
    )
    model = Decoder(shape).to(device)
    n_real = sum(p.numel() for p in model.parameters())
    assert n_real == cell.n_params_total, (n_real, cell.n_params_total)
    fwd = torch.compile(model) if device == "cuda" else model

    peak = tc["lr"] * tc["lr_ref_width"] / shape.d_model
    warmup = min(int(0.2 * cell.steps), max(1, round(tc["warmup_tokens_per_param"] * cell.n_params / (bs * seq_len))))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embed" not in name else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=peak, betas=(tc["beta1"], tc["beta2"]), fused=device == "cuda",
    )
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=tc["precision"] == "bf16")

    print(f"[{cell.cell}] N={cell.n_params:,} D={cell.tokens:,} steps={cell.steps} "
          f"lr={peak:.2e} warmup={warmup} device={device} threads={threads}", flush=True)
    curve, window, diverged_at = [], [], None
    t0 = time.time()
    for step in range(cell.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cell.steps, warmup, peak, tc["min_lr_ratio"])
        batch = torch.from_numpy(mix.batch(step)).to(device, non_blocking=True)
        with autocast:
            loss = next_token_loss(fwd, batch)
        loss.backward()
        if tc["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        window.append(loss.detach())
        if (step + 1) % tc["log_every"] == 0 or step + 1 == cell.steps:
            mean = torch.stack(window).float().mean().item()
            window = []
            elapsed = time.time() - t0
            curve.append({"step": step + 1, "tokens": (step + 1) * bs * seq_len, "loss": mean,
                          "lr": opt.param_groups[0]["lr"], "seconds": round(elapsed, 2)})
            if not math.isfinite(mean) or mean > 2 * math.log(shape.vocab_size):
                diverged_at = step + 1
                print(f"[{cell.cell}] diverged at step {step + 1}: loss {mean}", flush=True)
                break
            rate = (step + 1) * bs * seq_len / elapsed
            eta = (cell.steps - step - 1) * elapsed / (step + 1)
            print(f"[{cell.cell}] step {step + 1}/{cell.steps} loss {mean:.4f} "
                  f"{rate:,.0f} tok/s eta {fmt_time(eta)}", flush=True)
    wall = time.time() - t0

    from safetensors.torch import save_file

    with io.atomic_path(out / "model.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    result = {
        "cell": cell.__dict__ | {"shape": shape.to_dict()},
        "params": param_counts(shape),
        "tokens": cell.tokens,
        "flops": cell.flops,
        "flops_exact": cell.flops_exact,
        "final_loss": curve[-1]["loss"] if curve else float("nan"),
        "diverged": diverged_at is not None,
        "diverged_step": diverged_at,
        "wall_seconds": round(wall, 2),
        "tokens_per_second": round(cell.tokens / wall, 1) if diverged_at is None else None,
        "hyper": {"peak_lr": peak, "warmup_steps": warmup, "batch_size": bs, "seq_len": seq_len,
                  "schedule": "cosine-to-own-budget", **{k: tc[k] for k in ("min_lr_ratio", "weight_decay", "beta1", "beta2", "grad_clip", "precision")}},
        "mixture": mix.summary(cell.steps),
        "curve": curve,
        "provenance": io.provenance(
            config_hash=cfgmod.digest({k: cfg[k] for k in ("data", "model", "train")}),
            data_config_hash=manifest["data_config_hash"],
            tokenizer_sha256=manifest["tokenizer"]["sha256"],
            shard_sha256={k: v["sha256"] for k, v in manifest["shards"].items()},
            seed=cell.seed, device=device, threads=threads,
        ),
    }
    io.write_json(out / "train.json", result)
    print(f"[{cell.cell}] done in {fmt_time(wall)}: final loss {result['final_loss']:.4f}", flush=True)
    return result


def next_token_loss(fwd, batch):
    """Mean cross-entropy of each token given the ones before it (fwd: eager or compiled)."""
    logits = fwd(batch[:, :-1])
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m skillscale.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--cell", required=True)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    cfg = cfgmod.load(a.config)
    try:
        cell = find_cell(cfg, a.cell)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    train(cfg, cell, a.data, a.out, a.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
