import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

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
    p = subprocess.run(["timeout", "-s", "KILL", str(timeout), "snakemake", *args], cwd=cwd, env=env,
                       capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({p.returncode}):\n"
                             f"{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    return p


def study_metrics(study_dir: Path) -> dict:
    """cell id -> bits per byte per metric, from every eval.json of a study."""
    return {p.parent.name: json.loads(p.read_text())["bits_per_byte"]
            for p in sorted((study_dir / "cells").glob("*/eval.json"))}


@pytest.fixture(scope="session")
def test_study(tmp_path_factory):
    """config/studies/test.yaml run once, locally, for the whole session: the workflow tests
    use (and modify) its folder; the Slurm test compares against `metrics`, taken before any
    test touched it."""
    wd = copy_workflow(tmp_path_factory.mktemp("wf"))
    run_snakemake(wd, "--cores", "2", "--configfile", "config/studies/test.yaml")
    return {"dir": wd, "metrics": study_metrics(wd / "results" / "test")}
