"""Helpers for the skillscale lm-eval tasks: local JSONL data and bits-per-byte scoring."""

import json
import math
from pathlib import Path

import datasets


def load_jsonl(eval_dir: str, file: str, **_):
    """custom_dataset hook: the study's eval file, in memory (no shared HF cache to race on)."""
    path = Path(eval_dir) / file
    if not path.exists():
        raise FileNotFoundError(f"{path}: evaluation data missing; run the prepare_data rule first")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path}: evaluation data is empty")
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def continuation_bpb(doc, results):
    """NLL of the gold continuation only, in (loglikelihood, bytes) for bits_per_byte."""
    loglikelihood, _is_greedy = results[0]
    return {"bits_per_byte": (loglikelihood, len(doc["target"].encode("utf-8")))}


def text_bpb(doc, results):
    (loglikelihood,) = results
    return {"bits_per_byte": (loglikelihood, len(doc["text"].encode("utf-8")))}


# functions rather than Jinja templates: the text must reach the model byte for byte
# (indentation, trailing newlines, braces in code)
def doc_context(doc):
    return doc["context"]


def doc_target(doc):
    return doc["target"]


def doc_text(doc):
    return doc["text"]


# -- knowledge storage (data.knowledge.frequency population) ---------------------------------
STORAGE_BINS = 4  # data.longtail.N_BINS


def bits_beyond_prior(doc, results):
    """Per fact: (frequency bin, prior bits - the model's bits for the gold answer), for every
    storage metric; each metric's aggregation keeps the facts it sums."""
    loglikelihood, _is_greedy = results[0]
    item = (doc["bin"], doc["prior_bits"] + loglikelihood / math.log(2))
    return {"stored_bits": item, **{f"stored_bits_b{b}": item for b in range(STORAGE_BINS)}}


def total_bits(items):
    return float(sum(v for _, v in items))


def _bin_total(b):
    def total(items):
        return float(sum(v for k, v in items if k == b))

    return total


total_bits_b0, total_bits_b1, total_bits_b2, total_bits_b3 = (_bin_total(b) for b in range(STORAGE_BINS))
