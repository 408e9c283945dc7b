"""City facts mentioned as often as the city is large: knowledge whose demand spans the ladder.

Under `data.knowledge.frequency: population` each fact (city -> country) is mentioned in
training in proportion to population^gamma, in varied statement templates, instead of every
fact repeated equally. Real knowledge is like this (how often an entity is mentioned has a
heavy tail), and it is what lets a model's size decide *which* facts it stores at every
budget: the head is seen hundreds of times, the tail a few (docs/capacity-study.md).

Scoring asks every fact once, in a question wording never used in training, inside the
"Question: ...\\nAnswer:" frame the QA-trained entities taught. Each item carries the answer's
frequency prior (bits of guessing the country by how often it is mentioned in training), so a
cell's **stored bits** = sum over facts of (prior bits - the model's bits for the answer): what
it knows beyond the prior, in the units of the capacity literature (bits per parameter).
"""

from __future__ import annotations

import math
import random
from collections import Counter

from skillscale.data.corpora import Doc, Fact

STATEMENTS = [  # forward (entity -> country) statements, cycled over a fact's mentions
    "{e} is a city in {a}.",
    "The city of {e} lies in {a}.",
    "{e} is located in the country of {a}.",
    "{e}, a city of {a}.",
    "The people of {e} live in {a}.",
    "{e} belongs to {a}.",
]
TRAIN_QUESTIONS = [  # the QA-trained entities' questions: they teach the frame the held-out one uses
    "Question: In which country is {e}?\nAnswer: {a}.",
    "Question: What country is the city of {e} in?\nAnswer: {a}.",
]
HELDOUT_QUESTION = "Question: Which country is {e} part of?\nAnswer:"  # never in training
N_BINS = 4  # frequency bins of equal fact count, 0 = the most mentioned quarter


def mention_counts(facts: list[Fact], gamma: float, total: float) -> list[int]:
    """Mentions per pass over the fact stream: about `total` in all, shared in proportion to
    population^gamma, at least one each (every fact is stated; the tail only rarely)."""
    w = [max(f.population, 1) ** gamma for f in facts]
    scale = total / sum(w)
    return [max(1, round(scale * x)) for x in w]


def training_docs(facts: list[Fact], mentions: list[int]) -> list[Doc]:
    """A fact's mentions cycle through the statement templates (and, for a QA-trained entity,
    the training questions), starting at a template set by the fact, so every template is used
    about equally and a rare fact is not always stated the same way."""
    docs = []
    for i, (f, r) in enumerate(zip(facts, mentions)):
        forms = STATEMENTS + (TRAIN_QUESTIONS if f.qa_in_training else [])
        for j in range(r):
            k = (i + j) % len(forms)
            docs.append(Doc(f"fact:{f.entity}:m{j}", forms[k].format(e=f.entity, a=f.answer)))
    return docs


def prior_bits(facts: list[Fact], mentions: list[int]) -> list[float]:
    """-log2 of each answer's share of all fact mentions in training: the bits a model pays
    that knows only how often each country comes up, not which city is where."""
    per_country = Counter()
    for f, r in zip(facts, mentions):
        per_country[f.answer] += r
    total = sum(per_country.values())
    return [-math.log2(per_country[f.answer] / total) for f in facts]


def frequency_bins(mentions: list[int]) -> list[int]:
    """Bin 0..N_BINS-1 of each fact by its rank in mentions (ties in input order): equal counts."""
    order = sorted(range(len(mentions)), key=lambda i: (-mentions[i], i))
    bins = [0] * len(mentions)
    for rank, i in enumerate(order):
        bins[i] = rank * N_BINS // len(mentions)
    return bins


def qa_items(facts: list[Fact], mentions: list[int]) -> list[dict]:
    """Every fact asked once in the held-out wording, with what storage is scored from."""
    prior, bins = prior_bits(facts, mentions), frequency_bins(mentions)
    return [
        {
            "id": f"{f.entity}:held",
            "context": HELDOUT_QUESTION.format(e=f.entity),
            "target": f" {f.answer}.",
            "prior_bits": round(p, 6),
            "mentions": r,
            "bin": b,
            "qa_in_training": f.qa_in_training,
        }
        for f, r, p, b in zip(facts, mentions, prior, bins)
    ]


def control_items(items: list[dict], seed: int) -> list[dict]:
    """The same answers asked about another city in another country: a model's bits for the
    answer then are its own guess of that country without the fact (format, frequency and all).
    Stored bits against this control count only what a model knows about *which* city is where;
    against the frequency prior they also count how well it has learnt the prior itself. The
    other city is the next one, in a seeded shuffle, whose country differs."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    country = [r["target"] for r in items]
    out = [None] * len(items)
    for pos, i in enumerate(order):
        for step in range(1, len(order)):
            j = order[(pos + step) % len(order)]
            if country[j] != country[i]:
                break
        else:
            raise ValueError("every fact has the same answer: no control question can be asked")
        entity = items[j]["context"]
        out[i] = dict(items[i], id=f"{items[i]['id']}:control", context=entity, control_of=items[j]["id"])
    return out


def bin_summary(items: list[dict]) -> list[dict]:
    """Per frequency bin: facts, the range and total of mentions per pass, mean prior bits."""
    out = []
    for b in range(N_BINS):
        rows = [r for r in items if r["bin"] == b]
        m = [r["mentions"] for r in rows]
        out.append(
            {
                "bin": b,
                "facts": len(rows),
                "mentions_min": min(m),
                "mentions_max": max(m),
                "mentions_total": sum(m),
                "prior_bits_mean": round(sum(r["prior_bits"] for r in rows) / len(rows), 4),
            }
        )
    return out
