"""`skillscale status` on the test study while the real snakemake CLI runs it, and once it is killed."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skillscale.tools import jobstate, status


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "skillscale", "status", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_a_folder_that_is_not_a_study_is_refused_with_a_reason(tmp_path):
    p = cli(tmp_path)
    assert p.returncode == 2 and "not a study's results folder (no config.yaml" in p.stderr
    assert "Traceback" not in p.stderr
    p = cli(tmp_path / "missing")
    assert p.returncode == 2 and "no such folder" in p.stderr


def test_the_line_that_says_why_a_job_failed():
    assert jobstate.failure_line(["[x] step 10/20 loss 3.0 1,000 tok/s eta 1s", "error: bad.pt: cannot be read"]) == (
        "error: bad.pt: cannot be read"
    )
    tb = ["Traceback (most recent call last):", '  File "a.py", line 1', "MemoryError: out of memory"]
    assert jobstate.failure_line(tb) == "MemoryError: out of memory"
    assert jobstate.failure_line(["[code0.25_C4.0e+09_d8L1h2_seed0] failed: no branch"]).endswith("no branch")
    assert jobstate.failure_line(["[x] step 10/20 loss 3.0 1,000 tok/s eta 1s"]) == ""


def wait_for(root, want, proc, timeout=120):
    """Status reports, polled, until `want(report)` holds; the report."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = status.status(root)
        if want(r):
            return r
        assert proc.poll() is None, f"snakemake ended before the state was seen: {r['summary']}"
        time.sleep(0.1)
    raise AssertionError(f"not seen in {timeout} s: {r['summary']}")


@pytest.mark.workflow
def test_status_of_a_study_mid_run_and_after_snakemake_is_killed(test_study, tmp_path):
    """Two trunk jobs kept from the finished test study (done), one whose branch state is corrupt
    (fails first: --prioritize), the rest retrained one at a time (--cores 1): status sees the
    done, failed, running and waiting jobs and cells as they are; once snakemake is killed,
    nothing runs and the interrupted job is failed with a reason."""
    wd = tmp_path / "wf"
    shutil.copytree(test_study["dir"], wd, symlinks=True, ignore=shutil.ignore_patterns("report.html"))
    root = wd / "results/test"
    trunks = sorted(p.name for p in (root / "trunks").iterdir())
    kept, bad, redo = trunks[:2], trunks[2], trunks[2:]
    for run in redo:  # as if they never ran: no record, no cells, no log
        for cell in (root / "trunks" / run / "cells").iterdir():
            shutil.rmtree(root / "cells" / cell.name)
        shutil.rmtree(root / "trunks" / run)
        (root / "logs/trunk" / f"{run}.log").unlink()
    bad_cell = jobstate.load(root).trunk[bad].branches[-1][0]  # its last cell's branch state: read first
    (root / "trunks" / bad).mkdir()
    (root / "trunks" / bad / f"branch_{bad_cell}.pt").write_bytes(b"not a checkpoint")

    t0 = time.time()
    proc = subprocess.Popen(
        ["snakemake", "--cores", "1", "--configfile", "config/studies/test.yaml", "--keep-going"]
        + ["--prioritize", f"results/test/trunks/{bad}/trunk.json"],
        cwd=wd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        r = wait_for(root, lambda r: r["job_counts"]["failed"] == 1 and r["job_counts"]["running"] == 1, proc)
        jobs = {j["job"]: j for j in r["jobs"]}
        assert {k for k, j in jobs.items() if j["state"] == "done"} == set(kept)
        assert [k for k, j in jobs.items() if j["state"] == "failed"] == [bad]
        assert "cannot be read" in jobs[bad]["why"] and f"branch_{bad_cell}.pt" in jobs[bad]["why"]
        (run,) = [k for k, j in jobs.items() if j["state"] == "running"]
        pid = int(jobs[run]["where"].removeprefix("pid "))
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()  # the job's own process
        assert f"--trunk\0{run}\0" in cmdline
        assert jobs[run]["left_seconds"] > 0
        waiting = {k for k, j in jobs.items() if j["state"] == "waiting"}
        assert waiting == set(redo) - {bad, run} and waiting
        assert not any((root / "logs/trunk" / f"{w}.log").exists() for w in waiting)
        cells = r["cells"]
        assert set(cells["done"]) == {c for k in kept for c in jobs[k]["cells"]} | done_cells_of(root, run)
        assert set(cells["failed"]) == set(jobs[bad]["cells"])
        assert set(cells["waiting"]) == {c for w in waiting for c in jobs[w]["cells"]}
        assert r["remaining_seconds"] > 0 and r["finish_epoch"] > r["now"]
        p = cli(root)  # the command itself, beside the live snakemake: the one-line summary first
        assert p.returncode == 0 and p.stdout.startswith("test: ") and "cells done" in p.stdout.splitlines()[0]
        assert f"running  {run}" in p.stdout and f"failed   {bad}: error:" in p.stdout
        assert json.loads(cli(root, "--json").stdout)["cells"].keys() == {"done", "running", "failed", "waiting"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # snakemake stops its jobs
        proc.wait(timeout=60)
    deadline = time.time() + 30
    while jobstate.local_processes() and any(str(wd) in str(p) for p in jobstate.local_processes()):
        assert time.time() < deadline, "the jobs outlived snakemake"
        time.sleep(0.2)
    after = {j["job"]: j for j in status.status(root)["jobs"]}
    assert not [k for k, j in after.items() if j["state"] == "running"]
    assert after[bad]["state"] == "failed" and after[run]["state"] in ("failed", "done")
    if after[run]["state"] == "failed":  # killed mid-job: said so, with its log's last line
        assert after[run]["why"].startswith("stopped without an error")
    assert {k for k, j in after.items() if j["state"] == "waiting"} == waiting
    assert time.time() - t0 < 60


def done_cells_of(root, run):
    """Cells the running trunk job has already trained and scored."""
    return {p.parent.name for p in (root / "trunks" / run / "cells").glob("*/eval.json")}
