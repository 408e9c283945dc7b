"""Helpers for the skillscale lm-eval tasks: local JSONL data and bits-per-byte scoring."""

import json
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
