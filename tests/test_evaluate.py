"""The lm-eval adapter, run through the real lm-evaluation-harness."""

import json
import math

import pytest
import torch

from skillscale.data.tokenizer import ByteTokenizer
from skillscale.evaluate.harness import METRICS, SkillscaleLM, prediction_windows, run_tasks
from skillscale.model.decoder import Decoder, ModelShape


class Uniform(torch.nn.Module):
    """Equal probability for every byte: exactly 8 bits per byte on any text."""

    def forward(self, idx):
        return torch.zeros(*idx.shape, 256)


def write_eval_dir(d):
    d.mkdir(parents=True, exist_ok=True)
    rows = {
        "knowledge_qa": [
            {"id": f"q{i}", "context": f"Question: where is city {i}?\nAnswer:", "target": " Peru."} for i in range(5)
        ],
        "code_fn": [{"id": "f", "context": 'def f(x):\n    """Double."""\n', "target": "    return {'x': x * 2}\n"}],
        "knowledge_text": [{"id": "w", "text": "Lima is the capital of Peru. " * 20}],
        "code_text": [{"id": "c", "text": "import os\nprint(os.sep)\n" * 30 + "ünïcode ✓\n"}],
    }
    for name, rs in rows.items():
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    return d


def test_uniform_byte_model_scores_eight_bits_per_byte(tmp_path):
    lm = SkillscaleLM(Uniform(), ByteTokenizer(), seq_len=16, batch_size=4)
    bpb = run_tasks(lm, write_eval_dir(tmp_path / "eval"))
    assert set(bpb) == set(METRICS)
    for metric, v in bpb.items():
        assert v == pytest.approx(8.0, abs=1e-6), metric  # float32 log-softmax


def test_windows_score_every_token_once():
    for n, first, L in [(10, 1, 4), (100, 37, 16), (5, 4, 64), (64, 1, 63)]:
        scored = []
        for start, scored_from, end in prediction_windows(n, first, L):
            assert end - 1 - start <= L  # inputs fit the context
            assert start < scored_from  # every scored token has context
            scored += range(scored_from, end)
        assert scored == list(range(first, n))


def test_long_continuation_matches_a_full_forward_pass():
    """With a context long enough, windowed scoring equals one forward pass; with a short
    context it still scores every continuation token."""
    torch.manual_seed(0)
    shape = ModelShape(d_model=16, n_layers=1, n_heads=2, vocab_size=256, seq_len=256)
    model = Decoder(shape).eval()
    tok = ByteTokenizer()
    ctx, cont = "def f(x):\n", "    return x + 1\n" * 4

    class Req:
        args = (ctx, cont)

    full = SkillscaleLM(model, tok, seq_len=256).loglikelihood([Req()])[0][0]
    ids = torch.tensor([tok.encode(ctx + cont)])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[:, :-1]), -1)[0]
    k = len(ctx)
    direct = logp[k - 1 :].gather(-1, ids[0, k:, None]).sum().item()
    assert full == pytest.approx(direct, rel=1e-5)
    short = SkillscaleLM(model, tok, seq_len=8).loglikelihood([Req()])[0][0]
    assert math.isfinite(short) and short != pytest.approx(full)


def test_generation_is_refused_clearly():
    lm = SkillscaleLM(Uniform(), ByteTokenizer(), seq_len=8)
    with pytest.raises(NotImplementedError, match="likelihoods only"):
        lm.generate_until([])


def test_the_skills_group_runs_the_embedded_study_s_tasks(tmp_path):
    """_skillscale_skills.yaml, the lm-eval group, runs the four tasks of METRICS (run_tasks asks for them by name)."""
    from lm_eval.tasks import TaskManager

    from skillscale.evaluate.harness import TASKS_DIR, harness_evaluate

    tm = TaskManager(
        include_path=str(TASKS_DIR),
        include_defaults=False,
        metadata={"eval_dir": str(write_eval_dir(tmp_path / "eval"))},
    )
    out = harness_evaluate(SkillscaleLM(Uniform(), ByteTokenizer(), seq_len=16), ["skillscale_skills"], tm)
    assert out["group_subtasks"]["skillscale_skills"] == [task for task, _ in METRICS.values()]
    for task, _ in METRICS.values():
        assert out["results"][task]["bits_per_byte,none"] == pytest.approx(8.0, abs=1e-6), task
