"""Fitting cells to GPUs: packs of small trunks, micro-batches, the memory check, and the
errors a GPU request gets on a CPU-only node. (The packed study itself: test_ddp, test_slurm.)"""

import subprocess
import sys

import pytest
import torch

from skillscale import config as cfgmod
from skillscale import plan, study
from skillscale.train import devices


def cfg_with(seeds=(0,), **resources):
    # the default study's grid; one seed, so that a size's 3 trunks leave a remainder in packs of 2
    return study.validate({"seeds": list(seeds), "resources": resources})


def test_packs_group_each_sizes_trunks_and_leave_large_ones_alone():
    cfg = cfg_with(pack=[{"max_params": 2.0e5, "per_job": 2}, {"max_params": 4.0e4, "per_job": 3}])
    cells, _ = plan.build(cfg)
    runs = plan.trunks(cfg, cells)
    packs = plan.packs(cfg, runs)
    size = {r.run: r for r in runs}
    for p in packs:
        assert len(p.runs) == plan.per_job(cfg, p.n_params) and {size[r].size for r in p.runs} == {p.size}
        # the smallest entry a size fits under decides: 3 a job up to 40k parameters, 2 up to 200k
        assert len(p.runs) == (3 if p.n_params <= 4.0e4 else 2)
    packed = {r for p in packs for r in p.runs}
    assert len(packed) == len(set(packed))
    alone = [r for r in runs if r.run not in packed]
    assert alone and all(
        r.n_params > 2.0e5 or sum(q.size == r.size for q in runs) % plan.per_job(cfg, r.n_params) for r in alone
    )


def test_data_parallel_sizes_never_pack():
    cfg = cfg_with(pack=[{"max_params": 1.0e9, "per_job": 4}], ddp_processes=2, ddp_min_params=1.0e5)
    runs = plan.trunks(cfg, plan.build(cfg)[0])
    big = [r for r in runs if r.n_params >= 1.0e5]
    assert big and not {r.run for r in big} & {r for p in plan.packs(cfg, runs) for r in p.runs}


def test_packing_needs_wsd():
    with pytest.raises(cfgmod.ConfigError, match=r"resources.pack: packs WSD trunks"):
        study.validate({"train": {"schedule": "cosine"}, "resources": {"pack": [{"max_params": 1e9, "per_job": 2}]}})


def test_a_pack_or_a_job_that_does_not_fit_the_gpu_is_refused_at_planning():
    gpu = {"train": {"device": "cuda"}}
    with pytest.raises(cfgmod.ConfigError, match=r"resources.pack .*side by side need about .* GiB.*lower per_job"):
        study.validate(gpu | {"resources": {"pack": [{"max_params": 1.0e9, "per_job": 8}], "gpu_memory_gb": 2}})
    with pytest.raises(cfgmod.ConfigError, match=r"resources.micro_batch_rows .*a trunk of .* needs about"):
        study.validate(gpu | {"resources": {"gpu_memory_gb": 0.5}})
    study.validate(gpu | {"resources": {"pack": [{"max_params": 1.0e9, "per_job": 2}], "gpu_memory_gb": 80}})
    # micro-batches shrink what a job needs
    cfg = study.validate(gpu)
    shape = plan.build(cfg)[0][0].shape(cfg)
    small = study.validate(gpu | {"resources": {"micro_batch_rows": 2}})
    assert plan.train_memory_bytes(small, shape) < plan.train_memory_bytes(cfg, shape)


def test_micro_batches_give_the_whole_batch_step():
    from skillscale.model.decoder import Decoder, ModelShape
    from skillscale.train.step import build_optimizer, loss_fn, train_step

    tc = dict(weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0, precision="fp32")
    shape = ModelShape(d_model=16, n_layers=2, n_heads=2, vocab_size=300, seq_len=32, ffn_mult=2.6667)
    torch.manual_seed(0)
    whole, parts = Decoder(shape), Decoder(shape)
    parts.load_state_dict(whole.state_dict())
    opts = [build_optimizer(m, tc, 1e-3, "cpu") for m in (whole, parts)]
    for _ in range(4):
        x = torch.randint(0, 300, (6, 33))
        a = train_step(loss_fn(whole, False), whole, opts[0], x, tc, 1e-3)
        b = train_step(loss_fn(parts, False), parts, opts[1], x, tc, 1e-3, micro_rows=4)  # 4 + 2 rows
        assert b.item() == pytest.approx(a.item(), rel=1e-6)
    for p, q in zip(whole.parameters(), parts.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_a_gpu_request_on_a_cpu_only_node_names_the_key():
    if torch.cuda.is_available():
        pytest.skip("this node has a GPU")
    with pytest.raises(RuntimeError, match=r"train.device: cuda, but this node has no visible CUDA device"):
        devices.pick("cuda")
    assert devices.pick("auto") == "cpu" and devices.precision({"precision": "auto"}, "cpu") == "fp32"
    assert devices.precision({"precision": "auto"}, "cuda") == "bf16"


def test_a_pack_with_a_failing_member_fails_after_the_others_finish(tmp_path):
    """`train --pack`: an unknown member is refused before any starts; otherwise every member
    runs to its end, and the pack fails naming the one that did not (here: a torn resume
    checkpoint), writes no pack record, and keeps the finished member's trunk and cells."""
    from conftest import REPO
    from skillscale.data.prepare import prepare

    cfg = study.load(REPO / "config" / "studies" / "test.yaml", {"train": {"log_every": 50}})
    (tmp_path / "config.yaml").write_text(cfgmod.dump(cfg))
    prepare(cfg, tmp_path / "data")
    good, torn = sorted(plan.trunks(cfg, plan.build(cfg)[0]), key=lambda r: r.flops)[:2]
    trunks = tmp_path / "trunks"

    def pack(*runs):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "skillscale.train",
                "--config",
                str(tmp_path / "config.yaml"),
                "--pack",
                *runs,
                "--data",
                str(tmp_path / "data"),
                "--out",
                str(trunks),
                "--record",
                str(tmp_path / "pack.json"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )

    p = pack(good.run, "code0.99_d8L1h2_seed0")
    assert p.returncode == 2 and "'code0.99_d8L1h2_seed0': not in this config's grid" in p.stderr
    assert not trunks.exists()  # nothing started

    (trunks / torn.run).mkdir(parents=True)
    (trunks / torn.run / "resume.pt").write_bytes(b"torn")
    p = pack(good.run, torn.run)
    assert p.returncode == 2, p.stdout + p.stderr
    assert f"pack: 1 of 2 trunks failed ({torn.run};" in p.stderr
    assert "resume checkpoint cannot be read" in p.stderr  # the member's own error, in the job's log
    assert not (tmp_path / "pack.json").exists()
    assert (trunks / good.run / "trunk.json").exists()
    assert sorted(x.name for x in (trunks / good.run / "cells").iterdir()) == sorted(c for c, _ in good.branches)
