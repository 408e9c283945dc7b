"""The device a job trains on: which one, in what precision, and what it can do at best.

Shared by the trainer (train.json records all of it) and the speed benchmarks (tools/speed.py,
tools/speed_gpu.py), so that an MFU in a cell's record and one in a benchmark mean the same thing:
the model FLOPs a second achieved over the best FLOP/s of large square matmuls measured on
that device in the precision trained in.
"""

from __future__ import annotations

import functools
import os
import time

import torch


def pick(want: str) -> str:
    """train.device: cpu, cuda, or auto (cuda when one is visible)."""
    if want == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "train.device: cuda, but this node has no visible CUDA device"
            f" (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')});"
            " run training jobs on a GPU node, or set train.device: auto or cpu"
        )
    return "cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available()) else "cpu"


def precision(tc: dict, device: str) -> str:
    """train.precision resolved on `device`: auto = bf16 autocast on CUDA, fp32 on CPU."""
    p = tc["precision"]
    return ("bf16" if device == "cuda" else "fp32") if p == "auto" else p


def configure(device: str) -> dict:
    """Process-wide math settings of a training process, returned for its provenance. On
    CUDA, fp32 matmuls outside autocast (and all of them in an fp32 run) use TF32 tensor
    cores: ~8x the fp32 rate at a 10-bit mantissa, the usual choice for training."""
    tf32 = device == "cuda"
    if tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return {"tf32": tf32}


def describe(device: str) -> dict:
    """What train.json records of the device."""
    if device != "cuda":
        return {"type": "cpu", "threads": torch.get_num_threads()}
    p = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "type": "cuda",
        "name": p.name,
        "memory_gb": round(p.total_memory / 2**30, 1),
        "capability": f"{p.major}.{p.minor}",
        "count_visible": torch.cuda.device_count(),
        "cuda": torch.version.cuda,
    }


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(dtype: torch.dtype, device: str, n: int, reps: int = 5, budget_s: float = 0.5) -> float:
    """Best FLOP/s of square matmuls (2 m^3 FLOPs each), m growing to n while one call takes
    under budget_s / 4, over `reps` timed runs of about `budget_s` each. (A CPU without bf16
    units runs bf16 ~100x slower than fp32: a fixed size and call count would take minutes.)"""

    def once(m):
        a, b = (torch.randn(m, m, device=device, dtype=dtype) for _ in range(2))
        torch.matmul(a, b)  # warm the kernel
        sync(device)
        t = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        return a, b, time.perf_counter() - t

    m = min(256, n)
    a, b, dt = once(m)
    while m < n and dt < budget_s / 4:
        m = min(2 * m, n)
        a, b, dt = once(m)
    calls = max(1, int(budget_s / max(dt, 1e-6)))
    best = dt
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        for _ in range(calls):
            torch.matmul(a, b)
        sync(device)
        best = min(best, (time.perf_counter() - t) / calls)
    return 2 * m**3 / best


PEAK_ENV = "SKILLSCALE_PEAK_FLOPS"  # set by a pack job for its members (see peak_flops)


@functools.cache  # once per process: a trunk job's cooldowns share its GPU and precision
def peak_flops(device: str, prec: str) -> float | None:
    """The CUDA device's measured matmul peak in the precision trained in (bf16, or TF32 for
    fp32), for the MFU in train.json; None on CPU (its jobs are too short to pay for it).
    Members of a pack share the GPU, so they take the peak their pack job measured alone
    before starting them (PEAK_ENV) instead of measuring it against each other."""
    if device != "cuda":
        return None
    if os.environ.get(PEAK_ENV):
        return float(os.environ[PEAK_ENV])
    peak = matmul_peak(torch.bfloat16 if prec == "bf16" else torch.float32, device, 8192)
    torch.cuda.empty_cache()
    return peak
