import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from skillscale import study

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo():
    return REPO


def copy_workflow(dest: Path) -> Path:
    """The workflow files in a scratch folder, so a run writes its results/ there."""
    for name in ("Snakefile", "workflow", "config", "profiles", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


def run_snakemake(cwd, *args, check=True, env=None, timeout=600):
    """The real snakemake CLI in `cwd`; on failure, the tail of its output in the assertion."""
    env = dict(env or os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.run(
        ["timeout", "-s", "KILL", str(timeout), "snakemake", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if check and p.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
        )
    return p


def study_metrics(study_dir: Path) -> dict:
    """cell id -> bits per byte per metric, from every eval.json of a study."""
    return {
        p.parent.name: json.loads(p.read_text())["bits_per_byte"]
        for p in sorted((study_dir / "cells").glob("*/eval.json"))
    }


@pytest.fixture(scope="session")
def test_study(tmp_path_factory):
    """config/studies/test.yaml run once, locally, for the whole session: the workflow tests
    use (and modify) its folder; the Slurm test compares against `metrics`, taken before any
    test touched it."""
    wd = copy_workflow(tmp_path_factory.mktemp("wf"))
    run_snakemake(wd, "--cores", "2", "--configfile", "config/studies/test.yaml")
    return {"dir": wd, "metrics": study_metrics(wd / "results" / "test")}


@pytest.fixture(scope="session")
def sources_study(tmp_path_factory):
    """config/studies/test-sources.yaml (local corpora in real shapes, tools/samplecorpora.py) with
    the benchmark fixtures of config/studies/test-benchmarks.yaml on top, run once for the
    session: test_sources checks its data, test_workflow_benchmarks its benchmark rows (one
    study instead of two, each a few minutes)."""
    import time

    from skillscale.tools import samplecorpora

    wd = copy_workflow(tmp_path_factory.mktemp("wfs"))
    samplecorpora.write(wd / "corpora")
    shutil.copytree(REPO / "tests" / "fixtures", wd / "tests" / "fixtures")
    t0 = time.time()
    run_snakemake(
        wd,
        "--cores",
        "2",
        "--configfile",
        "config/studies/test-sources.yaml",
        "config/studies/test-benchmarks.yaml",
        "--config",
        "study=test-sources",
        timeout=1800,
    )
    print(f"\ntest-sources study (with benchmarks) end to end: {time.time() - t0:.0f} s")
    return wd, wd / "results" / "test-sources"


NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"


def estimates_outside_intervals(tables_dir: Path) -> list[str]:
    """Every point estimate that lies outside its own interval, in the CSV tables (columns
    X, X_lo, X_hi) and in summary.md ('v [lo, hi]'); [] when the outputs are consistent."""
    import re

    import numpy as np
    import pandas as pd

    bad = []
    for csv in sorted(Path(tables_dir).glob("*.csv")):
        t = pd.read_csv(csv)
        for c in t.columns:
            if f"{c}_lo" not in t.columns or f"{c}_hi" not in t.columns:
                continue
            v, lo, hi = (pd.to_numeric(t[k], errors="coerce").to_numpy(float) for k in (c, f"{c}_lo", f"{c}_hi"))
            has = np.isfinite(lo) & np.isfinite(hi)
            tol = 1e-9 * np.maximum(1, np.abs(v))
            out = has & ~(np.isfinite(v) & (lo - tol <= v) & (v <= hi + tol))
            bad += [f"{csv.name} row {i} {c}={v[i]:g} [{lo[i]:g}, {hi[i]:g}]" for i in np.flatnonzero(out)]
            wide = has & (hi - lo <= 0)
            bad += [f"{csv.name} row {i} {c}: zero-width interval [{lo[i]:g}, {hi[i]:g}]" for i in np.flatnonzero(wide)]
    summary = Path(tables_dir) / "summary.md"
    pat = re.compile(rf"({NUMBER}) \[({NUMBER}), ({NUMBER})\]")
    for line in summary.read_text().splitlines():
        for m in pat.finditer(line):
            v, lo, hi = (float(x) for x in m.groups())
            if not lo <= v <= hi or lo == hi:
                bad.append(f"summary.md: {m.group(0)} in: {line[:120]}")
    return bad


def one_cell_study(d: Path):
    """Prepared test-study data and config file in `d` for training single cells (cosine:
    a WSD cell would cool down from a trunk); returns the plan's cells."""
    from skillscale import config as cfgmod
    from skillscale import plan
    from skillscale.data.prepare import prepare

    over = {"train": {"checkpoint_seconds": 0, "log_every": 5, "schedule": "cosine"}}
    cfg = study.load(REPO / "config" / "studies" / "test.yaml", over)
    (d / "config.yaml").write_text(cfgmod.dump(cfg))
    prepare(cfg, d / "data")
    return plan.build(cfg)[0]


def wait_for_checkpoint(ckpt: Path, step: int, timeout: float = 120) -> None:
    """Until a running job's resume checkpoint is at `step` or later (then a test kills it)."""
    import time

    import torch

    deadline = time.time() + timeout
    while time.time() < deadline:
        if ckpt.exists() and torch.load(ckpt, weights_only=False)["step"] >= step:
            return
        time.sleep(0.05)
