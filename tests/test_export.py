"""Export to transformers' LlamaForCausalLM and back: logits, lm-eval's hf backend, evaluate-hf.

One real cell of the test study (cosine schedule, so it trains alone) with its benchmarks
from the fixtures, trained and evaluated once for the module.
"""

import json
import subprocess
import sys
import time
from dataclasses import asdict

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from skillscale import benchmarks, plan
from skillscale import config as cfgmod
from skillscale import study as studymod
from skillscale.data.prepare import prepare
from skillscale.evaluate.harness import evaluate_cell
from skillscale.model.decoder import Decoder, ModelShape
from skillscale.tools import export
from test_benchmarks import FIXTURES

transformers = pytest.importorskip("transformers")  # '.[test]' installs it
BENCH = ["arc_easy", "humaneval", "mbpp", "triviaqa"]
TIMES = {}


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    t0 = time.time()
    study = tmp_path_factory.mktemp("export") / "study"
    over = {
        "train": {"schedule": "cosine"},
        "eval": {"benchmarks": {b: {"mirror": str(FIXTURES / f"{b}.jsonl")} for b in BENCH}},
    }
    cfg = studymod.load(REPO / "config" / "studies" / "test.yaml", over)
    study.mkdir(parents=True)
    (study / "config.yaml").write_text(cfgmod.dump(cfg))
    prepare(cfg, study / "data")
    benchmarks.copy_documents(cfg, study / "data" / "benchmarks")
    cells, _ = plan.build(cfg)
    c = next(c for c in cells if c.size.startswith("d16L2"))  # two layers: the block loop is mapped
    out = study / "cells" / c.cell
    subprocess.run(
        [
            sys.executable,
            "-m",
            "skillscale.train",
            "--config",
            str(study / "config.yaml"),
            "--cell",
            c.cell,
            "--data",
            str(study / "data"),
            "--out",
            str(out),
            "--threads",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    ev = evaluate_cell(out, study / "data", batch_size=16, benchmarks=BENCH)
    TIMES["train+evaluate cell"] = time.time() - t0
    return {"study": study, "dir": out, "eval": ev, "data": study / "data"}


@pytest.fixture(scope="module")
def exported(cell, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "model"
    export.export_cell(cell["dir"], out)
    return out


def test_mapping_covers_every_weight_with_its_shape():
    shape = ModelShape(d_model=16, n_layers=3, n_heads=2, vocab_size=300, seq_len=32)
    ours = Decoder(shape).state_dict()
    hf = export.to_hf_state(dict(ours), asdict(shape))
    ref = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            **{k: v for k, v in export.hf_config(asdict(shape), 0).items() if k not in ("architectures", "model_type")}
        )
    )
    assert {k: tuple(v.shape) for k, v in hf.items()} == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    bad = dict(ours, **{"blocks.0.qkv.weight": torch.zeros(3, 3)})
    with pytest.raises(AssertionError, match=r"blocks\.0\.qkv\.weight: shape \(3, 3\), expected \(48, 16\)"):
        export.to_hf_state(bad, asdict(shape))


def test_exported_logits_equal_ours_in_fp32(cell, exported):
    model = Decoder(ModelShape(**json.loads((cell["dir"] / "train.json").read_text())["cell"]["shape"]))
    model.load_state_dict(load_file(str(cell["dir"] / "model.safetensors")))
    model.eval()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(exported), dtype=torch.float32).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    torch.manual_seed(0)
    ids = torch.randint(0, model.shape.vocab_size, (4, model.shape.seq_len))
    with torch.no_grad():
        ours, theirs = model(ids), hf(input_ids=ids).logits
    diff = (ours - theirs).abs().max().item()
    TIMES["max abs logit diff"] = diff
    assert diff < 1e-5, diff
    files = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files


def test_exported_tokenizer_encodes_as_ours(cell, exported):
    from skillscale.data.tokenizer import BPETokenizer

    ours = BPETokenizer.load(cell["data"] / "tokenizer.json")
    theirs = transformers.AutoTokenizer.from_pretrained(str(exported))
    for text in ["Question: Which city is the capital of Peru?\nAnswer: Lima", "def f(x):\n    return {'x': x}\n"]:
        assert theirs(text, add_special_tokens=False)["input_ids"] == ours.encode(text)
    assert theirs.eos_token_id == ours.eos_id


def test_lm_eval_hf_backend_scores_the_export_like_skillscale(cell, exported):
    """lm-eval's own `hf` model on the exported folder, on likelihood tasks whose prompt and
    answer fit the 64-token context: the same bits per byte as SkillscaleLM to float noise.
    (Where a text exceeds the context the two differ by design: hf cuts the context on the
    left and cannot score a continuation longer than the window; SkillscaleLM scores every
    token in windows. humaneval/mbpp gold code exceeds 64 tokens, so they are not compared.)"""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    tm = TaskManager(
        include_path=str(benchmarks.TASKS_DIR),
        include_defaults=False,
        metadata={"benchmarks_dir": str(cell["data"] / "benchmarks")},
    )
    names = ["triviaqa", "arc_easy"]
    t0 = time.time()
    out = simple_evaluate(
        model="hf",
        model_args=f"pretrained={exported},dtype=float32,device=cpu",
        tasks=[benchmarks.shipped()[n]["task"] for n in names],
        task_manager=tm,
        bootstrap_iters=0,
        verbosity="WARNING",
        batch_size=8,
    )
    TIMES["lm-eval hf backend"] = time.time() - t0
    for n in names:
        got = out["results"][benchmarks.shipped()[n]["task"]]["bits_per_byte,none"]
        want = cell["eval"]["benchmarks"][n]["bits_per_byte"]
        TIMES[f"hf vs ours {n}"] = (got, want)
        assert got == pytest.approx(want, rel=1e-5), n
    assert out["results"]["skillscale_bench_arc_easy"]["acc,none"] == cell["eval"]["benchmarks"]["arc_easy"]["acc"]


def test_evaluate_hf_on_the_export_gives_the_cells_own_numbers(cell, exported, tmp_path):
    from skillscale import cli

    rec = tmp_path / "ext.json"
    t0 = time.time()
    assert cli.main(["evaluate-hf", str(exported), "--data", str(cell["data"]), "--out", str(rec)]) == 0
    TIMES["evaluate-hf"] = time.time() - t0
    r = json.loads(rec.read_text())
    assert set(r["bits_per_byte"]) == set(cell["eval"]["bits_per_byte"])
    for m, v in cell["eval"]["bits_per_byte"].items():
        assert r["bits_per_byte"][m] == pytest.approx(v, rel=1e-5), m
    train = json.loads((cell["dir"] / "train.json").read_text())
    assert r["n_params"] == train["cell"]["n_params"]


def test_export_refuses_a_folder_holding_something_else(cell, exported, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(export.ExportError, match=r"taken: exists and holds other files \(notes\.txt\)"):
        export.export_cell(cell["dir"], taken)
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written folder left
    (tmp_path / "file").write_text("x")
    with pytest.raises(export.ExportError, match="is not a folder"):
        export.export_cell(cell["dir"], tmp_path / "file")
    # an empty folder or an earlier export is replaced whole
    (tmp_path / "empty").mkdir()
    export.export_cell(cell["dir"], tmp_path / "empty")
    export.export_cell(cell["dir"], tmp_path / "empty")
    assert (tmp_path / "empty" / "model.safetensors").exists()
    p = subprocess.run(
        [sys.executable, "-m", "skillscale", "export", str(cell["dir"]), str(taken)], capture_output=True, text=True
    )
    assert p.returncode == 2 and "holds other files" in p.stderr


def test_study_export_writes_one_folder_per_cell(cell, tmp_path):
    done = export.export_study(cell["study"], tmp_path / "all")
    assert done == [cell["dir"].name]
    assert (tmp_path / "all" / cell["dir"].name / "config.json").exists()


def test_report_times():
    print(json.dumps(TIMES, indent=1, default=str))
