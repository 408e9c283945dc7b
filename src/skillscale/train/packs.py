"""resources.pack: several small WSD trunks side by side in one job, one `--trunk` process
each, sharing the job's device."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from skillscale import common, plan, study
from skillscale.train import devices
from skillscale.train.loop import fmt_time, pick_device


def train_pack(
    config: str, cfg: dict, runs: list[str], data_dir: Path, out: Path, threads: int, record: Path | None
) -> dict:
    """Several small WSD trunks side by side in one job (resources.pack): one process each,
    the `--trunk` job's very command, so each result is the one that trunk gets alone. They
    share the job's device: on a GPU, small models each leave most of it idle, and one job
    instead of k saves k - 1 queue waits and CUDA start-ups. Waits for all; fails (after
    the others finished, their work kept) if any failed."""
    grid = study.Study(cfg)
    trunks = [grid.find_trunk(r) for r in runs]
    device = pick_device(cfg["train"]["device"])
    env = dict(os.environ)
    if device == "cuda":  # before any member allocates: the fit, then the peak measured alone
        plan.check_pack_fits(cfg, trunks, torch.cuda.get_device_properties(0).total_memory)
        env[devices.PEAK_ENV] = str(devices.peak_flops(device, devices.precision(cfg["train"], device)))
    t0 = time.time()
    print(f"pack: {len(trunks)} trunks side by side on {device}: {', '.join(runs)}", flush=True)
    procs = {
        r.run: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "skillscale.train",
                "--config",
                config,
                "--trunk",
                r.run,
                "--data",
                str(data_dir),
                "--out",
                str(out / r.run),
                "--threads",
                str(threads),
            ],
            env=env,
        )
        for r in trunks
    }

    def stop(signum, frame):  # a cancelled job (scancel, Ctrl-C) takes its members with it
        for p in procs.values():
            p.send_signal(signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = {run: p.wait() for run, p in procs.items()}
    failed = [r for r, c in codes.items() if c]
    if failed:
        raise RuntimeError(
            f"pack: {len(failed)} of {len(runs)} trunks failed ({', '.join(failed)}; their lines"
            " above say why); the others' results are kept for the rerun"
        )
    info = {
        "runs": runs,
        "device": device,
        "wall_seconds": round(time.time() - t0, 2),
        "members": {r: common.read_json(study.trunk_record(out / r), "trunk record")["wall_seconds"] for r in runs},
    }
    if record:
        common.write_json(record, info)
    print(f"pack: {len(runs)} trunks done in {fmt_time(info['wall_seconds'])}", flush=True)
    return info
