"""Evaluate one trained cell per skill through lm-evaluation-harness.

`SkillscaleLM` is an `lm_eval.api.model.LM` for our checkpoints (or any callable mapping
token ids to logits). Every request — a (context, continuation) pair or a whole document
— becomes token windows of at most `seq_len` inputs that predict each scored token with
as much preceding context as fits; windows from all requests are batched together, sorted
by length to keep padding small. The task YAMLs in `evaluate/tasks/` turn summed
log-likelihoods into bits per byte of the scored text, so the numbers do not depend on
the tokenizer.

Benchmarks (see skillscale.benchmarks) are scored in the same lm-eval run and reported as
metrics bench:<name>, plus bench:<skill> pooling a skill's benchmarks by gold bytes.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

# per-task progress bars of lm-eval only clutter job logs (tqdm reads this at import)
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
import torch.nn.functional as F

from skillscale import benchmarks as eval_benchmarks
from skillscale import common
from skillscale.data.tokenizer import BPETokenizer
from skillscale.model.decoder import Decoder, ModelShape

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
                ll[r] += lp.gather(-1, tgt[:, None]).double().sum().item()  # float64 sum: long texts keep their digits
                greedy[r] &= bool((lp.argmax(-1) == tgt).all())
        return list(zip(ll, greedy))


def load_cell(cell_dir: Path, data_dir: Path, device: str = "cpu"):
    """Model, tokenizer and train record of a finished cell, checked against the data."""
    # deferred: safetensors: only where weights are written or read
    from safetensors.torch import load_file

    rec = common.read_json(cell_dir / "train.json", "training record")
    manifest = common.read_json(data_dir / "manifest.json", "data manifest")
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


def harness_evaluate(lm, tasks: list[str], task_manager, limit=None) -> dict:
    """lm-eval's simple_evaluate without its bookkeeping: the same task loading, few-shot
    defaults (0 shots unless a task sets them, seed 1234) and `evaluator.evaluate`, but not
    the environment report it appends, which runs `pip list` and git in subprocesses
    (1-4 s per call, more than scoring a default-study cell takes)."""
    # deferred: lm-eval takes seconds to import: only when scoring
    from lm_eval.evaluator import evaluate

    loaded = task_manager.load(tasks)
    for task in loaded["tasks"].values():
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=1234)
    return evaluate(lm=lm, task_dict=loaded, limit=limit, bootstrap_iters=0, log_samples=False, verbosity="WARNING")


def metrics_of(manifest: dict) -> dict[str, tuple[str, str]]:
    """metric -> (lm-eval task, skill): the embedded study's four, or what a study with
    configured sources prepared (manifest["metrics"]: each source's held-out text, the
    knowledge/code validation text pooled over the role's sources, code_fn where any)."""
    if "metrics" not in manifest:
        return dict(METRICS)
    return {
        m: (METRICS[m][0] if m in METRICS else f"skillscale_{m}", v["skill"]) for m, v in manifest["metrics"].items()
    }


def source_text_tasks(folder: Path, tasks: dict[str, tuple[str, str]]) -> None:
    """One lm-eval task YAML per source's held-out text: the skill tasks' template (raw text in
    bits per byte), included by absolute path, on that source's file. lm-eval resolves a
    template's !function helpers next to the template, so they resolve from any folder."""
    for m, (task, _) in tasks.items():
        if m not in METRICS:
            (folder / f"{task}.yaml").write_text(
                f"include: {TASKS_DIR / '_default_template_yaml'}\ntask: {task}\ndataset_kwargs:\n  file: {m}.jsonl\n"
            )


def run_tasks(
    lm,
    eval_dir: Path,
    metrics=tuple(METRICS),
    limit=None,
    tasks=None,
    benchmarks=(),
    benchmarks_dir: Path | None = None,
) -> dict:
    """Run the study's skill tasks through lm-eval; return bits per byte per metric.

    `tasks` maps metric -> (lm-eval task, skill) (default: the embedded study's four; see
    `metrics_of`). With `benchmarks` (names prepared in `benchmarks_dir`), also
    "benchmarks": name -> {bits_per_byte, gold_bytes[, acc, acc_norm]} from the same run.
    """
    import tempfile

    # deferred: lm-eval takes seconds to import: only when scoring
    from lm_eval.tasks import TaskManager

    # lm-eval warns once per task that custom_dataset takes metadata (that is how we pass
    # the eval folder); it does not help in a job log
    logging.getLogger("lm_eval.api.task").setLevel(logging.ERROR)
    tasks = tasks or METRICS
    meta = {"eval_dir": str(Path(eval_dir).resolve())}
    if benchmarks:
        meta["benchmarks_dir"] = str(Path(benchmarks_dir).resolve())
    specs = eval_benchmarks.shipped()
    names = [tasks[m][0] for m in metrics] + [specs[b]["task"] for b in benchmarks]
    with tempfile.TemporaryDirectory(prefix="skillscale-tasks-") as tmp:
        source_text_tasks(Path(tmp), {m: tasks[m] for m in metrics})
        # one TaskManager over tasks/ (benchmarks/ included): each task's loader takes its own key
        tm = TaskManager(include_path=[str(TASKS_DIR), tmp], include_defaults=False, metadata=meta)
        res = harness_evaluate(lm, names, tm, limit=limit)["results"]
    scores = {m: res[tasks[m][0]]["bits_per_byte,none"] for m in metrics}
    if benchmarks:
        scores["benchmarks"] = {
            b: {
                k.split(",")[0]: v
                for k, v in res[specs[b]["task"]].items()
                if k.endswith(",none") and not k.endswith("_stderr,none")
            }
            for b in benchmarks
        }
    return scores


def stores_facts(manifest: dict) -> bool:
    """A study whose facts are mentioned by population (data.knowledge.frequency) scores storage."""
    return manifest.get("sources", {}).get("facts", {}).get("frequency") == "population"


STORAGE_TASKS = {"stored": "skillscale_knowledge_storage", "control": "skillscale_knowledge_control"}


def storage_scores(lm, eval_dir: Path) -> dict:
    """Bits beyond the frequency prior, over all facts and per frequency bin, of the held-out
    questions (stored_*) and of the same answers asked about other cities (control_*), in one
    lm-eval run of the two storage tasks; stored - control is what the model knows of the facts."""
    # deferred: lm-eval takes seconds to import: only when scoring
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval.api.task").setLevel(logging.ERROR)  # as in run_tasks
    meta = {"eval_dir": str(Path(eval_dir).resolve())}
    tm = TaskManager(include_path=[str(TASKS_DIR)], include_defaults=False, metadata=meta)
    res = harness_evaluate(lm, list(STORAGE_TASKS.values()), tm)["results"]
    return {
        k.split(",")[0].replace("stored_bits", f"{name}_bits"): v
        for name, task in STORAGE_TASKS.items()
        for k, v in res[task].items()
        if k.startswith("stored_bits") and not k.endswith("_stderr,none")
    }


def run_tasks_once(lm, eval_dir: Path, tasks: dict, manifest: dict, **bench) -> dict:
    """run_tasks, scoring a file once where two metrics share it (a role with one source:
    its pooled validation text is that source's held-out text)."""

    def key(m):  # raw-text tasks all score the same way
        kind = "text" if m.startswith("text_") or m.endswith("_text") else tasks[m][0]
        return kind, manifest.get("eval", {}).get(m, {}).get("sha256", m)

    first = {}
    for m in tasks:
        first.setdefault(key(m), m)
    got = run_tasks(lm, eval_dir, tuple(first.values()), tasks=tasks, **bench)
    return {m: got[first[key(m)]] for m in tasks} | ({"benchmarks": got["benchmarks"]} if "benchmarks" in got else {})


def benchmark_metrics(details: dict, manifest: dict) -> tuple[dict, dict]:
    """cells.csv metrics from benchmark results: bench:<name> per benchmark and bench:<skill>
    per skill, the latter byte-weighted: total bits over total gold bytes of its benchmarks."""
    bpb, skills, pool = {}, {}, {}
    for name, r in details.items():
        skill = manifest[name]["skill"]
        bpb[eval_benchmarks.metric(name)], skills[eval_benchmarks.metric(name)] = r["bits_per_byte"], skill
        bits, nbytes = pool.get(skill, (0.0, 0))
        pool[skill] = (bits + r["bits_per_byte"] * r["gold_bytes"], nbytes + r["gold_bytes"])
    for skill, (bits, nbytes) in sorted(pool.items()):
        bpb[eval_benchmarks.skill_metric(skill)], skills[eval_benchmarks.skill_metric(skill)] = bits / nbytes, skill
    return bpb, skills


def read_benchmark_manifest(data_dir: Path, names) -> dict:
    """The prepared benchmarks' manifest, checked to hold every benchmark asked for."""
    if not names:
        return {}
    path = Path(data_dir) / "benchmarks" / "manifest.json"
    manifest = common.read_json(path, "benchmark manifest")
    lacking = [n for n in names if n not in manifest]
    if lacking:
        raise ValueError(f"{path}: benchmark(s) {lacking} not prepared; run the prepare_benchmarks rule")
    return manifest


def score(lm, data_dir: Path, benchmarks=()) -> dict:
    """Every skill metric and benchmark of a study's data folder, for one model."""
    data_dir = Path(data_dir)
    manifest = read_benchmark_manifest(data_dir, benchmarks)
    data_manifest = common.read_json(data_dir / "manifest.json", "data manifest")
    tasks = metrics_of(data_manifest)
    r = run_tasks_once(
        lm,
        data_dir / "eval",
        tasks,
        data_manifest,
        benchmarks=tuple(benchmarks),
        benchmarks_dir=data_dir / "benchmarks",
    )
    details = r.pop("benchmarks", {})
    bpb, skills = dict(r), {m: tasks[m][1] for m in tasks}
    b_bpb, b_skills = benchmark_metrics(details, manifest)
    bpb.update(b_bpb)
    skills.update(b_skills)
    for name, d in details.items():
        d.update(skill=manifest[name]["skill"], n_docs=manifest[name]["n_docs"], sha256=manifest[name]["sha256"])
    out = {"bits_per_byte": bpb, "skills": skills, "benchmarks": details}
    if stores_facts(data_manifest):
        out["storage"] = storage_scores(lm, data_dir / "eval")
    return out


def evaluate_cell(
    cell_dir: Path, data_dir: Path, batch_size: int, threads: int = 1, benchmarks=(), fingerprint: dict | None = None
) -> dict:
    """Score a trained cell and write its eval.json; `fingerprint` (what the scores depend on)
    is recorded so that a rerun trunk job can tell a still-valid eval.json from a stale one."""
    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tok, rec = load_cell(cell_dir, data_dir, device)
    manifest = common.read_json(data_dir / "manifest.json", "data manifest")
    tasks = metrics_of(manifest)
    t0 = time.time()
    if rec["diverged"]:  # a diverged model is listed, never scored
        bench_manifest = read_benchmark_manifest(data_dir, benchmarks)
        nan_details = {b: {"bits_per_byte": math.nan, "gold_bytes": 1} for b in benchmarks}
        b_bpb, b_skills = benchmark_metrics(nan_details, bench_manifest)
        scores = {
            "bits_per_byte": {**dict.fromkeys(tasks, math.nan), **b_bpb},
            "skills": {**{m: tasks[m][1] for m in tasks}, **b_skills},
            "benchmarks": {},
        }
    else:
        lm = SkillscaleLM(model, tok, rec["cell"]["shape"]["seq_len"], batch_size, device)
        scores = score(lm, data_dir, benchmarks)
    result = {
        "cell": rec["cell"]["cell"],
        **scores,
        "diverged": rec["diverged"],
        "wall_seconds": round(time.time() - t0, 2),
        "provenance": common.provenance(train_provenance=rec["provenance"], device=device),
        **({"fingerprint": fingerprint} if fingerprint else {}),
    }
    common.write_json(cell_dir / "eval.json", result)
    return result
