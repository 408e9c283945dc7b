"""The test study through a real one-node Slurm cluster (tests/slurm/local-slurm.sh) with
profiles/slurm, against the same study run locally: same metrics, cell by cell, and every
job really went through sbatch. Needs root and apt-get (CI has both); skips otherwise."""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import REPO, copy_workflow, run_snakemake, study_metrics

pytestmark = pytest.mark.workflow
SCRIPT = REPO / "tests" / "slurm" / "local-slurm.sh"
TEST = ["--configfile", "config/studies/test.yaml"]
TIMEOUT = 900  # seconds; snakemake under the slurm executor ignores SIGTERM, so KILL


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("local Slurm needs root (it starts slurmctld, slurmd and munged)")
    if not shutil.which("sbatch") and not shutil.which("apt-get"):
        pytest.skip("Slurm is not installed and there is no apt-get to install it")
    env = dict(os.environ, SLURM_LOCAL_DIR=str(tmp_path_factory.mktemp("slurm")))
    start = subprocess.run(["bash", SCRIPT, "start"], env=env, capture_output=True, text=True, timeout=900)
    try:
        if start.returncode == 3:
            pytest.skip(f"local Slurm cannot run here: {start.stderr.strip()}")
        assert start.returncode == 0, f"local-slurm.sh start failed:\n{start.stdout}\n{start.stderr}"
        yield env
    finally:  # always: the daemons must not outlive the test session
        subprocess.run(["bash", SCRIPT, "stop"], env=env, timeout=120)


def run(cwd, args, env=None):
    return run_snakemake(cwd, *args, env=env, timeout=TIMEOUT)


# the largest size's trunks train data-parallel (2 processes: torchrun, gloo on CPU), the two
# smaller sizes' trunks two to a job (resources.pack)
GPU_LAYOUT = "resources={ddp_processes: 2, ddp_min_params: 1.0e+4, pack: [{max_params: 1.0e+4, per_job: 2}]}"


def test_test_study_on_slurm_matches_local_run(slurm, test_study, tmp_path):
    """Every packed cell's scores equal the local run's (each trunk still trains in its own
    one-thread process); the data-parallel cells' are within 1e-4 relative (gradients
    averaged over 2 ranks sum in another order; tests/test_ddp.py bounds the loss curves)."""
    wd = copy_workflow(tmp_path)  # the local run is the session's test study (conftest)
    t0 = time.monotonic()
    run(
        wd,
        [
            "--profile",
            "profiles/slurm",
            *TEST,
            "--config",
            "study=onslurm",
            GPU_LAYOUT,
            "--slurm-status-command",
            "squeue",  # no accounting (slurmdbd) here
            "--slurm-init-seconds-before-status-checks",
            "2",
            "--slurm-keep-successful-logs",
            "--retries",
            "0",
        ],
        env=slurm,
    )
    wall = time.monotonic() - t0
    print(f"slurm run of the test study: {wall:.0f} s")

    local, onslurm = test_study["metrics"], study_metrics(wd / "results/onslurm")
    assert len(local) == 12 and local.keys() == onslurm.keys()
    ddp_cells = [c for c in local if "_d16L2h2_" in c]  # the largest size: 11,856 parameters
    assert len(ddp_cells) == 4
    for cell in local:
        if cell in ddp_cells:
            assert onslurm[cell] == pytest.approx(local[cell], rel=1e-4), cell
        else:  # one thread, same seed, its own process: bit-identical training, identical scores
            assert onslurm[cell] == local[cell], cell
    for cell in ddp_cells:
        rec = json.loads((wd / "results/onslurm/cells" / cell / "train.json").read_text())
        assert rec["hardware"]["data_parallel"] == 2
    packs = sorted(json.loads(p.read_text())["runs"] for p in (wd / "results/onslurm/packs").glob("*.json"))
    assert packs == [[f"code{f}_{s}_seed0" for f in ("0.25", "0.75")] for s in ("d16L1h2", "d8L1h2")]
    assert (wd / "results/onslurm/tables/optima.csv").exists()

    # every job went through sbatch: one Slurm log per submission, and slurmctld knows them
    logs = wd / ".snakemake" / "slurm_logs"
    assert len(list(logs.glob("rule_prepare_data/*.log"))) == 1
    assert len(list(logs.glob("rule_analyze/*.log"))) == 1
    jobs = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=True).stdout
    comments = re.findall(r"Comment=(\S+)", jobs)
    # (the plugin names a job's comment rule_<rule>_wildcards_<wildcards>)
    assert {c.split("_wildcards_")[0] for c in comments} == {
        "rule_analyze",
        "rule_prepare_data",
        "rule_train_trunk",
        "rule_train_pack",
    }
    lines = lambda rule: [ln for ln in jobs.splitlines() if f"Comment=rule_{rule}_" in ln]
    # two data-parallel trunk jobs with 2 GPUs each, two packs of two trunks on one GPU each
    assert len(lines("train_trunk")) == 2 and all("gpu:2" in ln for ln in lines("train_trunk"))
    assert len(lines("train_pack")) == 2 and all("gpu:1" in ln for ln in lines("train_pack"))
    assert not any(
        "gpu" in ln for ln in jobs.splitlines() if "Comment=rule_prepare_data" in ln or "Comment=rule_analyze" in ln
    )
    assert all("JobState=COMPLETED" in ln for ln in jobs.splitlines() if "Comment=rule_" in ln)
    assert (
        "Nothing to be done"
        in run(
            wd, ["-n", "--profile", "profiles/slurm", *TEST, "--config", "study=onslurm", GPU_LAYOUT], env=slurm
        ).stdout
    )
