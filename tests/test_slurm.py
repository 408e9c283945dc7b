"""The test study through a real one-node Slurm cluster (tests/slurm/local-slurm.sh) with
profiles/slurm, against the same study run locally: same metrics, cell by cell, and every
job really went through sbatch. Needs root and apt-get (CI has both); skips otherwise."""

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


def test_test_study_on_slurm_matches_local_run(slurm, test_study, tmp_path):
    wd = copy_workflow(tmp_path)  # the local run is the session's test study (conftest)
    t0 = time.monotonic()
    p = run(wd, ["--profile", "profiles/slurm", *TEST, "--config", "study=onslurm",
                 "--slurm-status-command", "squeue",     # no accounting (slurmdbd) here
                 "--slurm-init-seconds-before-status-checks", "2",
                 "--slurm-keep-successful-logs", "--retries", "0"], env=slurm)
    wall = time.monotonic() - t0
    print(f"slurm run of the test study: {wall:.0f} s")

    local, onslurm = test_study["metrics"], study_metrics(wd / "results/onslurm")
    assert len(local) == 12 and local.keys() == onslurm.keys()
    for cell in local:  # one thread, same seed: bit-identical training, so identical scores
        assert onslurm[cell] == local[cell], cell
    assert (wd / "results/onslurm/tables/optima.csv").exists()

    # every job went through sbatch: one Slurm log per submission, and slurmctld knows them
    logs = wd / ".snakemake" / "slurm_logs"
    n_trunks = len({c.split("_C")[0] + c[c.index("_d"):] for c in local})  # cells share a WSD trunk
    assert len(list(logs.glob("rule_prepare_data/*.log"))) == 1
    assert len(list(logs.glob("rule_analyze/*.log"))) == 1
    trunk_jobs = list(logs.glob("rule_train_trunk/*/*.log")) or list(logs.glob("rule_train_trunk/*.log"))
    assert len(trunk_jobs) == n_trunks == 6  # one job per trunk with its cooldowns and evaluations
    jobs = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=True).stdout
    comments = re.findall(r"Comment=(\S+)", jobs)
    # (the plugin names each trunk job's comment rule_train_trunk_wildcards_<run>)
    assert {c.split("_wildcards_")[0] for c in comments} == {"rule_analyze", "rule_prepare_data", "rule_train_trunk"}
    gpu_jobs = [l for l in jobs.splitlines() if "Comment=rule_train_trunk" in l]
    assert len(gpu_jobs) == 6 and all("gpu:1" in l for l in gpu_jobs)  # training asked for a GPU
    assert not any("gpu" in l for l in jobs.splitlines() if "Comment=rule_prepare_data" in l or "Comment=rule_analyze" in l)
    assert all("JobState=COMPLETED" in l for l in jobs.splitlines() if "Comment=rule_" in l)
    assert "Nothing to be done" in run(wd, ["-n", "--profile", "profiles/slurm", *TEST, "--config", "study=onslurm"],
                                       env=slurm).stdout
