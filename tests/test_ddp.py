"""Data-parallel training on CPU (gloo): two processes give the single-process run, and a
run killed mid-way resumes under DDP to the uninterrupted result."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import one_cell_study, wait_for_checkpoint
from skillscale import config as cfgmod
from skillscale import study


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    return d, min(one_cell_study(d), key=lambda c: c.n_params * c.steps)


def train(d, cell, out, procs: int, popen=False):
    launcher = (
        [sys.executable, "-m", "skillscale.train"]
        if procs == 1
        else [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={procs}",
            "-m",
            "skillscale.train",
        ]
    )
    cmd = launcher + [
        "--config",
        str(d / "config.yaml"),
        "--cell",
        cell.cell,
        "--data",
        str(d / "data"),
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout


def curve(out):
    return [p["loss"] for p in json.loads((out / "train.json").read_text())["curve"]]


def test_two_processes_train_the_single_process_run(tiny):
    """Same global batch (8 rows: 4 per rank), same steps: the runs differ only in float
    summation order (DDP averages two half-batch gradients instead of one full-batch one).
    Measured: loss curves within 4e-7 relative, weights within 8e-5 absolute (Adam divides
    tiny gradient differences by their running RMS); asserted at 1e-5 and 2e-4."""
    d, cell = tiny
    train(d, cell, d / "one", 1)
    log = train(d, cell, d / "two", 2)
    assert "x 2 data-parallel processes" in log
    a, b = curve(d / "one"), curve(d / "two")
    assert len(a) == len(b) and a != b  # really two processes: not bit-identical
    assert b == pytest.approx(a, rel=1e-5)
    wa, wb = (load_file(d / k / "model.safetensors") for k in ("one", "two"))
    assert all(torch.allclose(wa[k], wb[k], rtol=0, atol=2e-4) for k in wa)
    rec = json.loads((d / "two" / "train.json").read_text())
    assert rec["provenance"]["data_parallel"] == 2 and rec["mixture"]["sequences"] == cell.steps * 8


def test_two_nodes_meet_by_rendezvous_and_train_the_two_process_run(tiny):
    """What a multi-node job (resources.ddp_nodes: 2) runs on each node: torchrun with
    --nnodes 2 meeting by c10d rendezvous (here two agents on this machine, one process
    each, where Slurm's srun would start one per node). Ranks and the order of the sums
    are those of the one-node 2-process run: bit-identical to it."""
    import socket

    d, cell = tiny
    if not (d / "two" / "train.json").exists():
        train(d, cell, d / "two", 2)
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc_per_node",
        "1",
        "--rdzv_backend",
        "c10d",
        "--rdzv_id",
        "test",
        "--rdzv_endpoint",
        f"127.0.0.1:{port}",
        "-m",
        "skillscale.train",
        "--config",
        str(d / "config.yaml"),
        "--cell",
        cell.cell,
        "--data",
        str(d / "data"),
        "--out",
        str(d / "nodes"),
        "--threads",
        "1",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    agents = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)
    ]
    logs = [a.communicate(timeout=300)[0] for a in agents]
    assert all(a.returncode == 0 for a in agents), "\n".join(logs)
    assert curve(d / "nodes") == curve(d / "two")
    wa, wb = (load_file(d / k / "model.safetensors") for k in ("two", "nodes"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.loads((d / "nodes" / "train.json").read_text())["hardware"]["data_parallel"] == 2


def test_a_killed_ddp_run_resumes_to_the_uninterrupted_result(tiny):
    d, cell = tiny
    train(d, cell, d / "whole", 2)
    proc = train(d, cell, d / "killed", 2, popen=True)
    ckpt = d / "killed" / "resume.pt"
    wait_for_checkpoint(ckpt, cell.steps // 3)
    # SIGKILL the launcher and its workers (torchrun starts them in sessions of their own)
    subprocess.run(["pkill", "-KILL", "-f", f"out {d / 'killed'}"], check=True)
    proc.wait()
    assert not (d / "killed" / "train.json").exists()
    log = train(d, cell, d / "killed", 2)
    assert f"resumed from {ckpt} at step" in log and log.count("resumed from") == 1  # rank 0 speaks
    assert curve(d / "killed") == curve(d / "whole")  # same ranks, same order of sums: bit-identical
    wa, wb = (load_file(d / k / "model.safetensors") for k in ("whole", "killed"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_world_size_that_does_not_divide_the_batch_is_refused():
    with pytest.raises(cfgmod.ConfigError, match="resources.ddp_processes"):
        study.validate({"train": {"batch_size": 16}, "resources": {"ddp_processes": 3}})
    with pytest.raises(cfgmod.ConfigError, match=r"6 data-parallel processes \(2 per node x resources.ddp_nodes=3\)"):
        study.validate({"train": {"batch_size": 16}, "resources": {"ddp_processes": 2, "ddp_nodes": 3}})
    study.validate({"train": {"batch_size": 16}, "resources": {"ddp_processes": 4, "ddp_nodes": 4}})


def test_a_multi_node_job_asks_slurm_for_nodes_and_their_gpus(tmp_path):
    """resources.ddp_nodes: 2 with 2 processes per node: the trunk job's resources are 2 nodes
    with gpu:2 each, one task per node, an mpi job (the plugin then leaves the command's own
    srun to start the tasks), and its command is srun + torchrun meeting at the first node."""
    from conftest import copy_workflow, run_snakemake

    wd = copy_workflow(tmp_path)
    out = run_snakemake(
        wd,
        "-n",
        "-p",
        "--configfile",
        "config/studies/test.yaml",
        "--config",
        "resources={ddp_processes: 2, ddp_nodes: 2, ddp_min_params: 1.0e+4}",
    ).stdout
    jobs = out.split("rule train_trunk:")[1:]
    multi = [j for j in jobs if "_d16L2h2_" in j.split("wildcards:")[1].split("\n")[0]]
    assert len(multi) == 2 and len(jobs) == 6
    for j in multi:
        assert "gres=gpu:2, nodes=2, tasks=2, mpi=srun" in j and "srun torchrun --nnodes 2 --nproc_per_node 2" in j
        assert "--rdzv_backend c10d" in j and "gpu=" not in j.split("resources:")[1].split("\n")[0]
    for j in jobs:
        if j not in multi:
            assert "gpu=1" in j.split("resources:")[1].split("\n")[0] and "nodes=" not in j


# The workflow side (torchrun trunk jobs beside packed ones, a SIGKILL of it all, Slurm):
# tests/test_workflow.py::test_hard_kill_of_the_whole_workflow_resumes_after_unlock and
# tests/test_slurm.py run the test study in that layout.
