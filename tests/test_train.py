"""The trainer: schedules, the WSD sweep's cost, and kill-and-resume giving the same run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, one_cell_study, wait_for_checkpoint
from skillscale import config as cfgmod
from skillscale import plan, study
from skillscale.evaluate.harness import evaluate_cell
from skillscale.train.step import lr_cosine, lr_wsd


def test_wsd_schedule_shape():
    peak, warm, branch, end = 1.0, 10, 80, 100
    lrs = [lr_wsd(s, warm, branch, end, peak, 0.1) for s in range(end)]
    assert lrs[0] == pytest.approx(0.1) and lrs[warm - 1] == peak
    assert set(lrs[warm:branch]) == {peak}  # stable
    cool = lrs[branch:]
    assert all(a > b for a, b in zip(cool, cool[1:]))  # strictly decaying
    assert cool[-1] == pytest.approx(0.1)  # reaches min_lr_ratio at the last step
    # 1-sqrt shape: half way through the cooldown the LR has lost 1-sqrt(.5) of its range
    assert lrs[branch + 9] == pytest.approx(0.1 + 0.9 * (1 - 0.5**0.5))
    assert lr_wsd(500, warm, None, end, peak, 0.1) == peak  # a trunk never decays
    assert lr_cosine(99, 100, 10, 1.0, 0.1) == pytest.approx(0.1, abs=1e-3)


def test_wsd_trunks_branch_at_each_cells_cooldown_start():
    cfg = study.load(REPO / "config" / "studies" / "test.yaml", {"train": {"schedule": "wsd"}})
    cells, _ = plan.build(cfg)
    runs = plan.trunks(cfg, cells)
    assert sum(len(r.branches) for r in runs) == len(cells)
    by_id = {c.cell: c for c in cells}
    for r in runs:
        for cid, step in r.branches:
            c = by_id[cid]
            assert plan.trunk_id(c) == r.run
            assert step == c.steps - round(0.2 * c.steps)
        assert r.steps == max(s for _, s in r.branches)
    cost = plan.sweep_cost(cfg, cells)
    assert cost["wsd_flops"] == pytest.approx(cost["wsd_trunk_flops"] + cost["wsd_cooldown_flops"])
    # every size that appears at both budgets saves its smaller budget's first 80%
    assert 0.5 < cost["wsd_over_per_cell"] < 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Prepared data and a config file for a one-cell study."""
    d = tmp_path_factory.mktemp("train")
    cells = one_cell_study(d)
    return d, max(cells, key=lambda c: c.steps * c.n_params)  # the longest run of the grid


def train_cmd(d, cell, out, *extra):
    return [
        sys.executable,
        "-m",
        "skillscale.train",
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
        *extra,
    ]


def test_killed_run_resumes_to_the_identical_result(tiny):
    d, cell = tiny
    subprocess.run(train_cmd(d, cell, d / "whole"), check=True, capture_output=True)

    # SIGKILL once a checkpoint from well into the run exists, then start the same command again
    proc = subprocess.Popen(train_cmd(d, cell, d / "killed"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpt = d / "killed" / "resume.pt"
    wait_for_checkpoint(ckpt, cell.steps // 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < killed_at < cell.steps, "the run must be killed mid-way"
    assert not (d / "killed" / "train.json").exists()

    log = subprocess.run(train_cmd(d, cell, d / "killed"), check=True, capture_output=True, text=True).stdout
    assert f"resumed from {ckpt} at step" in log
    assert not ckpt.exists()  # a finished job leaves no checkpoint behind

    a, b = (json.loads((d / k / "train.json").read_text()) for k in ("whole", "killed"))
    assert b["final_loss"] == a["final_loss"]  # bit-identical: same batches, same ops, same thread count
    assert [p["loss"] for p in b["curve"]] == [p["loss"] for p in a["curve"]]
    wa, wb = (load_file(d / k / "model.safetensors") for k in ("whole", "killed"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # and so the skill metrics through lm-eval are identical too
    ea, eb = (evaluate_cell(d / k, d / "data", batch_size=16) for k in ("whole", "killed"))
    assert ea["bits_per_byte"] == eb["bits_per_byte"]


def test_checkpoint_from_another_config_is_not_resumed(tiny):
    d, cell = tiny
    out = d / "stale"
    out.mkdir()
    other = study.load(d / "config.yaml", {"train": {"lr": 0.001}})
    (d / "other.yaml").write_text(cfgmod.dump(other))
    cmd = train_cmd(d, cell, out)
    proc = subprocess.Popen(cmd[:4] + [str(d / "other.yaml")] + cmd[5:])
    while not (out / "resume.pt").exists():
        assert proc.poll() is None, "the other-config run ended before its first checkpoint"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    log = subprocess.run(train_cmd(d, cell, out), check=True, capture_output=True, text=True).stdout
    assert "ignoring" in log and "another config" in log
    assert "resumed" not in log


def test_wsd_cells_cool_down_from_their_trunk(tiny):
    from skillscale.train.jobs import train_cell, train_trunk

    d, _ = tiny
    cfg = study.load(d / "config.yaml", {"train": {"schedule": "wsd"}})
    cells, _ = plan.build(cfg)
    trunk = min((r for r in plan.trunks(cfg, cells) if len(r.branches) > 1), key=lambda r: r.flops)
    info = train_trunk(cfg, trunk, d / "data", d / "trunks" / trunk.run)
    assert info["curve"][-1]["step"] == trunk.steps
    assert all(p["lr"] == info["peak_lr"] for p in info["curve"] if p["step"] > trunk.warmup)
    for cid, branch in trunk.branches:
        cell = next(c for c in cells if c.cell == cid)
        rec = train_cell(cfg, cell, d / "data", d / "cells" / cid, trunk_dir=d / "trunks" / trunk.run)
        steps = [p["step"] for p in rec["curve"]]
        assert steps[-1] == cell.steps and branch in steps
        trunk_part = [p for p in info["curve"] if p["step"] <= branch]
        assert rec["curve"][: len(trunk_part)] == trunk_part  # the trunk's history, then its own cooldown
        assert rec["curve"][-1]["lr"] == pytest.approx(info["peak_lr"] * cfg["train"]["min_lr_ratio"])
        assert rec["flops_spent"] == pytest.approx(rec["flops"] * (cell.steps - branch) / cell.steps)


def test_divergence_is_recorded_with_its_step_not_hidden(tiny):
    from skillscale.train.jobs import train_cell

    d, cell = tiny
    cfg = study.load(d / "config.yaml", {"train": {"lr": 50.0, "grad_clip": 0.0}})
    rec = train_cell(cfg, cell, d / "data", d / "diverged")
    assert rec["diverged"] and 0 < rec["diverged_step"] < cell.steps
    assert rec["curve"][-1]["step"] == rec["diverged_step"]
    ev = evaluate_cell(d / "diverged", d / "data", batch_size=16)
    assert ev["diverged"] and all(v != v for v in ev["bits_per_byte"].values())  # NaN: listed, never scored


def loss_and_grads(model, loss_of, batch):
    """One batch's loss through `loss_of` and every parameter's gradient, from zero."""
    model.zero_grad()
    loss = loss_of(batch)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_compiled_loss_is_the_eager_loss():
    """train.compile: the compiled graph (model and loss as one) computes the same loss and
    gradients as the eager model; only float rounding differs."""
    from skillscale.model.decoder import Decoder, ModelShape
    from skillscale.train.step import loss_fn, use_compile

    assert use_compile({"compile": "auto"}, "cuda") and not use_compile({"compile": "auto"}, "cpu")
    assert use_compile({"compile": "always"}, "cpu") and not use_compile({"compile": "never"}, "cuda")
    torch.manual_seed(0)
    model = Decoder(ModelShape(d_model=16, n_layers=1, n_heads=2, vocab_size=64, seq_len=16))
    batch = torch.randint(0, 64, (4, 17))
    (l0, g0), (l1, g1) = (loss_and_grads(model, loss_fn(model, compiled), batch) for compiled in (False, True))
    assert torch.allclose(l0, l1, rtol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(g0, g1))


def test_the_fused_head_loss_is_cross_entropy_over_the_logits():
    """HeadCrossEntropy (the eager trainer's head and loss in one function) gives torch's
    cross_entropy over the logits, its loss and every parameter's gradient, up to float
    rounding; under autocast, or for a model that is not a plain Decoder, the plain loss runs."""
    from skillscale.model.decoder import Decoder, ModelShape
    from skillscale.train.step import HeadCrossEntropy, loss_fn, next_token_loss

    torch.manual_seed(0)
    model = Decoder(ModelShape(d_model=16, n_layers=2, n_heads=2, vocab_size=128, seq_len=32))
    batch = torch.randint(0, 128, (4, 33))
    (l0, g0), (l1, g1) = (loss_and_grads(model, loss_fn(model, False, fused), batch) for fused in (False, True))
    assert torch.allclose(l0, l1, rtol=1e-6) and l0 != 0
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-8) for a, b in zip(g0, g1))
    calls = []
    apply = HeadCrossEntropy.apply
    HeadCrossEntropy.apply = lambda *a: calls.append(1) or apply(*a)
    try:
        next_token_loss(model, batch, fused=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            next_token_loss(model, batch, fused=True)
        loss_fn(lambda x: model(x), False)(batch)
    finally:
        HeadCrossEntropy.apply = apply
    assert calls == [1]


def test_a_grown_wsd_trunk_continues_from_its_saved_states(tiny, capsys):
    """Adding a budget lengthens a trunk or puts a branch inside it. The rerun trunk starts
    from its latest branch state before the first branch it lacks, not from scratch, and ends
    with the same states as a trunk trained in one go."""
    from skillscale.train.jobs import train_trunk

    d, _ = tiny
    base = study.load(d / "config.yaml", {"train": {"schedule": "wsd"}})

    def trunk_of(budgets, run="code0.25_d16L1h2_seed0"):
        cfg = study.validate(base | {"grid": base["grid"] | {"budgets": budgets}})
        cells, _ = plan.build(cfg)
        return cfg, next(r for r in plan.trunks(cfg, cells) if r.run == run)

    b1, b2 = base["grid"]["budgets"]
    cfg, small = trunk_of([b1, b2])
    train_trunk(cfg, small, d / "data", d / "grown" / small.run)
    capsys.readouterr()
    for budgets in ([b1, b2, 2 * b2], [b1, (b1 * b2) ** 0.5, b2, 2 * b2]):  # longer; then a branch inside
        cfg, grown = trunk_of(budgets)
        first_new = min(s for _, s in grown.branches if s not in {s for _, s in small.branches})
        info = train_trunk(cfg, grown, d / "data", d / "grown" / grown.run)
        start = max(s for _, s in small.branches if s <= first_new)
        assert f"continuing from its branch state at step {start}" in capsys.readouterr().out
        small = grown
    whole = train_trunk(cfg, grown, d / "data", d / "whole" / grown.run)
    assert [(p["step"], p["loss"]) for p in info["curve"]] == [(p["step"], p["loss"]) for p in whole["curve"]]
    for cid, _ in grown.branches:
        a, b = (torch.load(d / k / grown.run / f"branch_{cid}.pt", weights_only=False) for k in ("grown", "whole"))
        assert a["step"] == b["step"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_our_adamw_is_torchs_fused_adamw_bit_for_bit_and_skips_dynamo():
    import subprocess
    import sys

    from skillscale.model.decoder import Decoder, ModelShape
    from skillscale.train.step import build_optimizer, loss_fn, train_step

    tc = dict(weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0, precision="fp32")
    shape = ModelShape(d_model=16, n_layers=2, n_heads=2, vocab_size=300, seq_len=32, ffn_mult=2.6667)
    torch.manual_seed(0)
    ours, ref = Decoder(shape), Decoder(shape)
    ref.load_state_dict(ours.state_dict())
    opt = build_optimizer(ours, tc, 1e-3, "cpu")
    groups = [
        [p for n, p in ref.named_parameters() if (p.dim() >= 2 and "embed" not in n) == decay] for decay in (1, 0)
    ]
    ref_opt = torch.optim.AdamW(
        [{"params": groups[0], "weight_decay": 0.1}, {"params": groups[1], "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.95),
        fused=True,
    )
    for i in range(5):
        x = torch.randint(0, 300, (4, 33))
        train_step(loss_fn(ours, False), ours, opt, x, tc, 1e-3 * (i + 1))
        train_step(loss_fn(ref, False), ref, ref_opt, x, tc, 1e-3 * (i + 1))
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), ref.parameters()))
    # the point of it: a job's trainer never imports torch._dynamo (~1 s of start-up)
    code = (
        "import sys, torch; from skillscale.train import step as train; "
        "from skillscale.model.decoder import Decoder, ModelShape; "
        "m = Decoder(ModelShape(16, 1, 2, 300, 16, 2.0)); o = train.build_optimizer(m, dict(weight_decay=0.1, "
        "beta1=0.9, beta2=0.95, grad_clip=1.0, precision='fp32'), 1e-3, 'cpu'); "
        "train.train_step(train.loss_fn(m, False), m, o, torch.randint(0, 300, (2, 17)), "
        "dict(grad_clip=1.0, precision='fp32'), 1e-3); print('torch._dynamo' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_a_compiled_process_reuses_one_model_per_shape_with_fresh_weights():
    """Under train.compile a trunk job's cooldowns get the trunk's model object (compiled
    once), re-initialised exactly as a new model from the same seed would be."""
    from skillscale.model.decoder import Decoder, ModelShape
    from skillscale.train import distributed
    from skillscale.train.loop import model_for

    shape = ModelShape(d_model=16, n_layers=1, n_heads=2, vocab_size=64, seq_len=8, ffn_mult=2.0)
    torch.manual_seed(1)
    first = model_for(shape, "cpu", distributed.World(), compiled=True)
    with torch.no_grad():
        next(first[0].parameters()).add_(1.0)  # trained
    torch.manual_seed(2)
    again = model_for(shape, "cpu", distributed.World(), compiled=True)
    torch.manual_seed(2)
    ref = Decoder(shape)
    assert again[0] is first[0] and again[2] is first[2]
    assert all(torch.equal(a, b) for a, b in zip(again[0].state_dict().values(), ref.state_dict().values()))
    torch.manual_seed(2)
    eager = model_for(shape, "cpu", distributed.World(), compiled=False)
    assert eager[0] is not first[0]
