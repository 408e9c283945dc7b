import json
import subprocess
import sys

import pytest
import torch

from skillscale import cli, study
from skillscale.tools import speed


def test_bench_train_json_on_a_tiny_shape(repo, capsys):
    # the HF side is left out here: importing transformers alone takes ~6 s
    argv = [
        "train",
        "--json",
        "--config",
        str(repo / "config" / "config.yaml"),
        "--d-model",
        "32",
        "--n-layers",
        "1",
        "--n-heads",
        "2",
        "--batch-size",
        "2",
        "--steps",
        "3",
        "--warmup-steps",
        "1",
        "--repeats",
        "1",
        "--peak-size",
        "128",
        "--precision",
        "both",
        "--no-hf",
        "--threads",
        str(torch.get_num_threads()),
    ]
    assert cli.main(["speed", *argv]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["shape"]["d_model"] == 32 and r["shape"]["n_layers"] == 1
    assert r["params"]["ours"] > 0 and r["hf_skipped"].startswith("skipped")
    assert set(r["results"]) == {"fp32", "bf16"}
    assert r["tokens_per_step"] == 2 * r["shape"]["seq_len"]
    for prec, res in r["results"].items():
        assert r["peak_flops"][prec] > 0
        ours = res["trainers"]["ours"]
        assert ours["tokens_per_s"] > 0 and ours["step_ms"] > 0 and ours["mfu"] > 0
        split = res["kernel_split"]["ours"]  # where the eager step goes, from the profiler
        assert split["matmul_ms"] > 0 and split["other_ms"] > 0
        assert abs(split["matmul_ms"] + split["attention_ms"] + split["other_ms"] - split["step_ms"]) < 1e-6
    # no hf: the only ratio is ours against the loss before HeadCrossEntropy, timed in fp32 (eager, CPU)
    assert set(r["results"]["fp32"]["trainers"]) == {"ours", "ours old loss"}
    assert set(r["results"]["fp32"]["ratios"]) == {"ours/ours old loss"} and not r["results"]["bf16"]["ratios"]
    assert r["results"]["fp32"]["ratios"]["ours/ours old loss"] > 0


def test_dag_benchmark_grid_is_valid_and_has_the_asked_size(repo):
    from skillscale import plan

    cfg = study.validate(speed.dag_config(fractions=10, budgets=20, seeds=5), "dag bench")
    cells, dropped = plan.build(cfg)
    assert len(cells) == 5000 and not dropped


def test_the_cuda_benchmark_says_it_is_skipped_on_a_cpu_only_machine(capsys):
    if torch.cuda.is_available():
        pytest.skip("this node has a GPU: the benchmark would run")
    p = subprocess.run(
        [sys.executable, "-m", "skillscale", "speed", "gpu"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0 and "CUDA part skipped" in p.stdout, p.stdout + p.stderr
    assert cli.main(["speed", "train", "--device", "cuda"]) == 0  # the same benchmark, as it was first asked for
    assert "CUDA part skipped" in capsys.readouterr().out


def test_packed_throughput_is_measured_against_one_process_per_cell():
    """The benchmark's packed-vs-one-per-GPU part, on CPU at a toy size: k processes side by
    side and one alone, each a fresh interpreter training the same steps."""
    from skillscale.tools import speed_gpu

    r = speed_gpu.packed_vs_alone(
        "cpu",
        {"d_model": 16, "n_layers": 1, "n_heads": 2, "vocab_size": 256, "seq_len": 16, "batch_size": 4},
        k=2,
        steps=3,
    )
    assert r["members"] == 2 and r["packed_tokens"] == 2 * r["alone_tokens"] == 2 * 3 * 4 * 16
    assert r["alone_tokens_per_s"] > 0 and r["packed_tokens_per_s"] > 0
    assert r["speedup"] == pytest.approx(r["packed_tokens_per_s"] / r["alone_tokens_per_s"])
