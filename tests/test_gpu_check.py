"""tools/gpu-check.sh on a machine without CUDA (this one, and CI's), and its summary.

The script's GPU phases need a GPU; what runs here is every branch before them: the
dependency check (a bare interpreter is told what it lacks), and the CUDA check (no
device: it says so, writes a summary saying so, exits 3, runs nothing). The summary's
gathering is checked on files in the shapes the phases write. The wheelhouse install into
a fresh venv and a --cpu rehearsal of every phase are run by hand (docs/cluster.md): they
take minutes."""

import json
import os
import subprocess
import sys

import torch

from conftest import REPO
from skillscale import study
from skillscale.model.decoder import param_counts
from skillscale.tools import gpu_check, speed_gpu

SCRIPT = REPO / "tools" / "gpu-check.sh"


def test_without_cuda_the_check_says_so_writes_why_and_runs_nothing(tmp_path):
    out = tmp_path / "gc"
    env = os.environ | {"CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}  # no GPU, even on a GPU machine
    p = subprocess.run(["bash", str(SCRIPT), "--out", str(out)], env=env, capture_output=True, text=True)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "dependencies: all present" in p.stdout
    assert "no CUDA device is visible to torch here" in p.stderr and "nothing was run" in p.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["ok"] is False and s["cuda"] is False and s["environment"]["torch"] == torch.__version__
    assert not (out / "phases.tsv").exists() and not (out / "study-cuda").exists()


def test_an_interpreter_lacking_dependencies_is_told_which_and_how_to_get_them(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    env = os.environ | {"PYTHON": str(tmp_path / "bare" / "bin" / "python")}
    p = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path / "gc")], env=env, capture_output=True, text=True)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "lacks: torch>=2.3,snakemake>=8,lm-eval>=0.4.5" in p.stderr
    assert "tools/wheelhouse.sh" in p.stderr and "--wheelhouse" in p.stderr


def test_the_summary_gathers_every_phases_figures(tmp_path):
    (tmp_path / "phases.tsv").write_text("bench\t0\t61.2\nstudy-cpu\t0\t70.0\nstudy-cuda\t0\t95.5\nparity\t0\t9.1\n")
    sweep = [{"shape": {"d_model": 256}, "n_params": 2e7, "tokens_per_s": 3e6, "mfu": 0.2}]
    pack = {"members": 8, "alone_tokens_per_s": 1e5, "packed_tokens_per_s": 5e5, "speedup": 5.0, "steps": 300}
    bench = {"device": {"name": "GPU"}, "peak_bf16_flops": 7.9e14, "sweep": sweep, "pack": pack}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    for name, bpb in (("study-cuda", 2.02), ("study-cpu", 2.0)):
        root = tmp_path / name / "results" / "test"
        for cell in ("a", "b"):
            (root / "cells" / cell).mkdir(parents=True)
            (root / "cells" / cell / "eval.json").write_text(json.dumps({"bits_per_byte": {"code": bpb}}))
        (root / "tables").mkdir()
        (root / "tables" / "same.csv").write_text("x\n1\n")
        (root / "tables" / "optima.csv").write_text(f"n\n{bpb}\n")
    parity = {"device": "cuda", "fp32": {"max_abs_diff": 1e-6}, "ok": True}
    parity["bf16"] = {"max_abs_diff": 0.01, "relative": 0.002, "top1_agreement": 0.99}
    (tmp_path / "parity.json").write_text(json.dumps(parity))
    s = gpu_check.summary(tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(s))
    assert s["ok"] and s["phases"]["study-cuda"] == {"exit": 0, "seconds": 95.5}
    assert s["bench"]["peak_bf16_tflops"] == 790 and s["bench"]["mfu"][0]["mfu"] == 0.2
    assert s["bench"]["pack"]["speedup"] == 5.0
    st = s["study"]
    assert st["cuda_seconds"] == 95.5 and st["cells"] == 2 and st["tables"] == 2
    assert st["bits_per_byte_rel_diff"]["max"] == (2.02 - 2.0) / 2.0 and st["tables_identical"] == ["same.csv"]
    table = gpu_check.table(s)
    assert "MFU  20.0%" in table and "= 5.00x" in table and "-> ok" in table
    (tmp_path / "phases.tsv").write_text("bench\t137\t210.0\n")  # a phase killed at its time limit
    assert not gpu_check.summary(tmp_path)["ok"]


def test_the_bench_can_time_fewer_sizes_spread_over_the_sweep():
    cfg = study.load(REPO / "config" / "studies" / "gpu-paper.yaml")
    n = lambda shapes: [param_counts(s)["standard"] for s in shapes]
    every = n(speed_gpu.sweep_shapes(cfg))
    assert every == sorted(every) and every[-1] >= 1e8 > every[-2]
    assert n(speed_gpu.sweep_shapes(cfg, sizes=3)) == [every[0], every[len(every) // 2 - 1], every[-1]]
    assert n(speed_gpu.sweep_shapes(cfg, sizes=len(every) + 3)) == every
