"""Helpers for the skillscale benchmark tasks: prepared local docs, gold texts, scoring.

Every benchmark is scored as the negative log-likelihood of its gold text given the
harness's own prompt, in bits per byte of the scored continuation (the bytes the model
actually predicts, leading space included). Multiple-choice tasks also report accuracy.
Nothing here touches the network or imports a metric at import time (lm-eval's own
humaneval/mbpp utils load `evaluate`'s code_eval when their YAML is read).
"""

import json
from pathlib import Path

import datasets


def load_prepared(benchmarks_dir: str, benchmark: str, **_):
    """custom_dataset hook: the docs `skillscale.benchmarks` prepared from the mirror."""
    path = Path(benchmarks_dir) / f"{benchmark}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: benchmark docs missing; run the prepare_benchmarks rule first")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path}: no documents")
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def total(items):
    """Aggregation: the sum (gold bytes of a benchmark, so skills can pool benchmarks by bytes)."""
    return sum(items)


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


# -- gold continuations (scored text exactly as the model predicts it) -----------------
# QA answers follow the harness's target_delimiter " "; code follows its prompt directly.


def triviaqa_gold(doc):
    return " " + doc["answer"]["value"]  # the canonical answer, not one of its aliases


def nq_open_gold(doc):
    return " " + doc["answer"][0]  # the first annotated short answer


def webqs_gold(doc):
    return " " + doc["answers"][0]  # the first Freebase answer listed


def humaneval_gold(doc):
    return doc["canonical_solution"]  # the reference body after the prompt (lm-eval's target is the test code)


def mbpp_gold(doc):
    # the reference solution; the dataset stores it with Windows line ends, which would
    # charge a model trained on Unix code for the carriage returns rather than the code
    return doc["code"].replace("\r\n", "\n")


def gold_results(gold):
    """process_results for a single gold continuation."""

    def process(doc, results):
        loglikelihood, _is_greedy = results[0]
        n = _nbytes(gold(doc))
        return {"bits_per_byte": (loglikelihood, n), "gold_bytes": n}

    return process


triviaqa_results = gold_results(triviaqa_gold)
nq_open_results = gold_results(nq_open_gold)
webqs_results = gold_results(webqs_gold)
humaneval_results = gold_results(humaneval_gold)
mbpp_results = gold_results(mbpp_gold)


# -- multiple choice: every choice scored after " ", the gold one gives bits per byte ---


def arc_choices(doc):
    return list(doc["choices"]["text"])


def arc_gold(doc):
    return list(doc["choices"]["label"]).index(doc["answerKey"])


def sciq_choices(doc):
    return [doc["distractor1"], doc["distractor2"], doc["distractor3"], doc["correct_answer"]]


def sciq_gold(doc):
    return 3


def mc_results(choices, gold, delimiter=" "):
    """process_results for multiple choice: gold NLL in bits/byte, acc, and acc_norm (per byte)."""

    def process(doc, results):
        lls = [ll for ll, _ in results]
        sizes = [_nbytes(delimiter + c) for c in choices(doc)]
        g = gold(doc)
        best = max(range(len(lls)), key=lambda i: lls[i])
        best_norm = max(range(len(lls)), key=lambda i: lls[i] / sizes[i])
        return {
            "bits_per_byte": (lls[g], sizes[g]),
            "gold_bytes": sizes[g],
            "acc": float(best == g),
            "acc_norm": float(best_norm == g),
        }

    return process


arc_results = mc_results(arc_choices, arc_gold)
sciq_results = mc_results(sciq_choices, sciq_gold)
