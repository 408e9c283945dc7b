"""Evaluate one trained cell per skill through lm-evaluation-harness.

`SkillscaleLM` is an `lm_eval.api.model.LM` for our checkpoints (or any callable mapping
token ids to logits). Every request — a (context, continuation) pair or a whole document
— becomes token windows of at most `seq_len` inputs that predict each scored token with
as much preceding context as fits; windows from all requests are batched together, sorted
by length to keep padding small. The task YAMLs in `skillscale/tasks/` turn summed
log-likelihoods into bits per byte of the scored text, so the numbers do not depend on
the tokenizer.

    python -m skillscale.evaluate --cell-dir results/<study>/cells/<id> --data results/<study>/data
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

# per-task progress bars of lm-eval only clutter job logs (tqdm reads this at import)
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from . import io  # noqa: E402
from .model import Decoder, ModelShape  # noqa: E402
from .tokenizer import BPETokenizer  # noqa: E402

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
METRICS = {  # cells.csv metric -> (lm-eval task, skill it measures)
    "knowledge_qa": ("skillscale_knowledge_qa", "knowledge"),
    "code_fn": ("skillscale_code_fn", "code"),
    "knowledge_text": ("skillscale_knowledge_text", "knowledge"),
    "code_text": ("skillscale_code_text", "code"),
}

try:
    from lm_eval.api.model import LM
except ImportError:  # keep the module importable for scoring helpers without lm-eval
    LM = object


def prediction_windows(n_tokens: int, first: int, seq_len: int) -> list[tuple[int, int, int]]:
    """Windows (start, scored_from, end): the model fed tokens[start:end-1] scores
    tokens[scored_from:end]. Together they score tokens[first:] exactly once, each token
    with as much context as fits in seq_len inputs. Needs first >= 1 (token 0 has no context)."""
    assert first >= 1
    out, pos = [], first
    while pos < n_tokens:
        end = min(pos + seq_len, n_tokens)
        out.append((max(0, end - 1 - seq_len), pos, end))
        pos = end
    return out


class SkillscaleLM(LM):
    def __init__(self, model, tokenizer, seq_len: int, batch_size: int = 64, device: str = "cpu"):
        super().__init__()
        self.model, self.tok = model, tokenizer
        self.seq_len, self.batch_size, self._device = seq_len, batch_size, device

    # -- lm-eval interface --------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        seqs = []
        for req in requests:
            context, continuation = req.args
            ctx = self.tok.encode(context) if context else [self.tok.eos_id]
            seqs.append((ctx + self.tok.encode(continuation), len(ctx)))
        return self._score(seqs)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        seqs = [([self.tok.eos_id] + self.tok.encode(req.args[0]), 1) for req in requests]
        return [ll for ll, _ in self._score(seqs)]

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("skillscale scores likelihoods only; generation tasks are not supported")

    # -- scoring ------------------------------------------------------------------------
    @torch.no_grad()
    def _score(self, seqs: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        jobs = []  # (request index, tokens of window, index of first scored target in window)
        for r, (tokens, first) in enumerate(seqs):
            for start, scored_from, end in prediction_windows(len(tokens), first, self.seq_len):
                # k: position in the window's logits that predicts the first scored token
                jobs.append((r, tokens[start:end], scored_from - start - 1))
        order = sorted(range(len(jobs)), key=lambda j: -len(jobs[j][1]))
        ll = [0.0] * len(seqs)
        greedy = [True] * len(seqs)
        for b in range(0, len(order), self.batch_size):
            chunk = [jobs[j] for j in order[b : b + self.batch_size]]
            width = max(len(w) for _, w, _ in chunk) - 1
            x = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, (_, w, _) in enumerate(chunk):
                x[i, : len(w) - 1] = torch.tensor(w[:-1])
            logp = F.log_softmax(self.model(x.to(self._device)).float(), dim=-1).cpu()
            for i, (r, w, k) in enumerate(chunk):
                tgt = torch.tensor(w[k + 1 :])
                lp = logp[i, k : len(w) - 1]
                ll[r] += lp.gather(-1, tgt[:, None]).sum().item()
                greedy[r] &= bool((lp.argmax(-1) == tgt).all())
        return list(zip(ll, greedy))


def load_cell(cell_dir: Path, data_dir: Path, device: str = "cpu"):
    """Model, tokenizer and train record of a finished cell, checked against the data."""
    from safetensors.torch import load_file

    rec = io.read_json(cell_dir / "train.json", "training record")
    manifest = io.read_json(data_dir / "manifest.json", "data manifest")
    want = rec["provenance"]["tokenizer_sha256"]
    if want != manifest["tokenizer"]["sha256"]:
        raise ValueError(
            f"{cell_dir}: checkpoint was trained with tokenizer {want[:12]} but {data_dir} holds"
            f" {manifest['tokenizer']['sha256'][:12]}; the data changed since training - retrain this cell"
        )
    shape = ModelShape(**rec["cell"]["shape"])
    model = Decoder(shape)
    model.load_state_dict(load_file(str(cell_dir / "model.safetensors")))
    model.eval().to(device)
    return model, BPETokenizer.load(data_dir / "tokenizer.json"), rec


def metrics_of(manifest: dict) -> dict[str, tuple[str, str]]:
    """metric -> (lm-eval task, skill): the embedded study's four, or what a study with
    configured sources prepared (manifest["metrics"]: each source's held-out text, the
    knowledge/code validation text pooled over the role's sources, code_fn where any)."""
    if "metrics" not in manifest:
        return dict(METRICS)
    return {m: (METRICS[m][0] if m in METRICS else f"skillscale_{m}", v["skill"]) for m, v in manifest["metrics"].items()}


def source_text_tasks(folder: Path, tasks: dict[str, tuple[str, str]]) -> None:
    """One lm-eval task YAML per source's held-out text, each the packaged raw-text task
    (included by absolute path, so its !function helpers resolve) on another file."""
    for m, (task, _) in tasks.items():
        if m not in METRICS:
            (folder / f"{task}.yaml").write_text(
                f"include: {TASKS_DIR / 'skillscale_code_text.yaml'}\ntask: {task}\n"
                f"dataset_kwargs:\n  file: {m}.jsonl\n")


def run_tasks(lm, eval_dir: Path, metrics=tuple(METRICS), limit=None, tasks=None) -> dict[str, float]:
    """Run the skillscale tasks through lm-eval; return bits per byte per metric."""
    import tempfile

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    tasks = tasks or METRICS
    with tempfile.TemporaryDirectory(prefix="skillscale-tasks-") as tmp:
        source_text_tasks(Path(tmp), {m: tasks[m] for m in metrics})
        tm = TaskManager(include_path=[str(TASKS_DIR), tmp], include_defaults=False,
                         metadata={"eval_dir": str(Path(eval_dir).resolve())})
        out = simple_evaluate(
            model=lm, tasks=[tasks[m][0] for m in metrics], task_manager=tm,
            bootstrap_iters=0, log_samples=False, limit=limit, verbosity="WARNING",
        )
    return {m: out["results"][tasks[m][0]]["bits_per_byte,none"] for m in metrics}


def run_tasks_once(lm, eval_dir: Path, tasks: dict, manifest: dict) -> dict[str, float]:
    """run_tasks, scoring a file once where two metrics share it (a role with one source:
    its pooled validation text is that source's held-out text)."""
    def key(m):  # raw-text tasks all score the same way
        kind = "text" if m.startswith("text_") or m.endswith("_text") else tasks[m][0]
        return kind, manifest["eval"][m]["sha256"]

    first = {}
    for m in tasks:
        first.setdefault(key(m), m)
    got = run_tasks(lm, eval_dir, tuple(first.values()), tasks=tasks)
    return {m: got[first[key(m)]] for m in tasks}


def evaluate_cell(cell_dir: Path, data_dir: Path, batch_size: int, threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tok, rec = load_cell(cell_dir, data_dir, device)
    manifest = io.read_json(data_dir / "manifest.json", "data manifest")
    tasks = metrics_of(manifest)
    t0 = time.time()
    if rec["diverged"]:
        bpb = {m: math.nan for m in tasks}  # a diverged model is listed, never scored
    else:
        lm = SkillscaleLM(model, tok, rec["cell"]["shape"]["seq_len"], batch_size, device)
        bpb = run_tasks_once(lm, data_dir / "eval", tasks, manifest)
    result = {
        "cell": rec["cell"]["cell"],
        "bits_per_byte": bpb,
        "skills": {m: tasks[m][1] for m in tasks},
        "diverged": rec["diverged"],
        "wall_seconds": round(time.time() - t0, 2),
        "provenance": io.provenance(train_provenance=rec["provenance"], device=device),
    }
    io.write_json(cell_dir / "eval.json", result)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m skillscale.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell-dir", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # lm-eval warns once per task that custom_dataset takes metadata (that is how we pass
    # the eval folder); it does not help in a job log
    logging.getLogger("lm_eval.api.task").setLevel(logging.ERROR)
    try:
        r = evaluate_cell(a.cell_dir, a.data, a.batch_size, a.threads)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[{r['cell']}] " + " ".join(f"{m}={v:.3f}" for m, v in r["bits_per_byte"].items())
          + f" bits/byte ({r['wall_seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
