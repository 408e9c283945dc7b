"""Prepare a study whose corpora are configured (`data.sources`): streamed, parallel, resumable.

For every source, in one pass over its rows: documents are split train / held-out by the
hash of their id (or come from a named held-out split), training documents are tokenized
in chunks with the tokenizer's encode_batch (a Rust thread pool over the job's threads) and
appended to fixed-size shard files (datastore.ShardWriter), held-out ones are kept up to
data.eval.text_bytes for the validation sets. Memory holds one chunk and one shard file,
whatever the corpus size. Writes into the data folder:

  tokenizer.json                 trained on a fixed seeded sample of training documents, or pretrained
  shards/<source>/{NNNNN.bin, index.json}
  eval/text_<source>.jsonl       held-out text of each source (bits per byte)
  eval/{knowledge,code}_text.jsonl  the role's sources' held-out text by weight (the validation mix)
  eval/code_fn.jsonl             held-out Python functions of the code sources (where any parse)
  manifest.json                  written last: settings, every shard file's sha256, provenance
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from skillscale import common, plan
from skillscale.config import digest
from skillscale.data import badrows, checks, sources
from skillscale.data.badrows import Bad
from skillscale.data.corpora import DataError, Doc, code_fn_items
from skillscale.data.datastore import ShardWriter, dtype_for, sha256_file
from skillscale.data.tokenizer import BPETokenizer

log = logging.getLogger("skillscale.data.streamed")

# per-source keys added after configured-source studies had results: left out of the data hash
# and of the prepare rule's params while at their defaults, so that adding them retrains nothing
ADDED_SOURCE_KEYS = {"on_bad": None, "encoding": "utf-8", "max_row_bytes": 16 << 20, "aggregate": True}


def hashed_view(dc: dict) -> dict:
    """The data section as hashed (and as the prepare rule's params): added keys at their defaults left out."""
    view = {k: v for k, v in dc.items() if not (k == "on_bad" and v == "error")}
    view["sources"] = {
        name: {k: v for k, v in s.items() if not (k in ADDED_SOURCE_KEYS and v == ADDED_SOURCE_KEYS[k])}
        for name, s in dc["sources"].items()
    }
    return view


CHUNK_BYTES = 4 << 20  # text per encode_batch call: enough to keep every thread busy
CHUNK_DOCS = 4096
HELD_CUT = 4000  # held-out documents are cut so one cannot fill a validation set
FN_POOL_BYTES = 2 << 20


SAMPLE_SCAN = 8  # a source's tokenizer sample is drawn from its first SAMPLE_SCAN x quota bytes


def sample_key(doc_id: str, seed: int) -> int:
    """A document's place in the tokenizer sample's order (its own hash, not the held-out one)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:tokenizer:{doc_id}".encode()).digest()[:8], "big")


def tokenizer_sample(name: str, spec: dict, quota: int, fraction: float, seed: int) -> tuple[list[str], dict]:
    """A fixed, seeded sample of one source's training documents, at most `quota` bytes.

    Over a bounded scan (the training documents in the first SAMPLE_SCAN * quota bytes of
    training text, or the whole source where it is smaller: no full pass over a big corpus)
    every document gets a key, the seeded hash of its id; the sample is the documents of
    smallest key, in key order, as far as they fit in the quota (each cut to quota / 32
    characters, so that one huge file cannot end it early). That is a uniform sample without
    replacement of the window, the same for the same data, config and seed, and memory holds
    at most the quota: a heap by key whose largest entries are dropped while it is over;
    once one is dropped, no later document of larger key can be in the sample."""
    cut = max(16384, quota // 32)
    heap, held, scanned, n_rows, over, whole = [], 0, 0, 0, None, True  # heap: (-key, bytes, text)
    for n_rows, row in sources.rows(name, spec, fraction, seed):  # noqa: B007 (the count, read after the loop)
        if not isinstance(row, sources.Row) or row.heldout:  # filtered, bad (counted by the training pass) or held out
            continue
        if scanned >= SAMPLE_SCAN * quota:
            whole = False
            break
        text = row.text[:cut]
        size = len(text.encode())
        scanned += len(row.text.encode())
        k = sample_key(row.id, seed)
        if over is not None and k >= over:
            continue  # a document of smaller key was already left out: this one cannot be in
        heapq.heappush(heap, (-k, size, text))
        held += size
        while held > quota:  # drop the largest keys until the sample fits again
            neg, sz, _ = heapq.heappop(heap)
            held, over = held - sz, -neg
    chosen = sorted(heap, reverse=True)  # smallest key first
    info = {
        "rows_scanned": n_rows,
        "bytes_scanned": scanned,
        "docs": len(chosen),
        "bytes": held,
        "window": "whole source" if whole else f"first {SAMPLE_SCAN * quota:,} bytes of training text",
    }
    return [t for _, _, t in chosen], info


def tokenizer_for(cfg: dict, out: Path) -> tuple[BPETokenizer, dict]:
    tc, dc = cfg["data"]["tokenizer"], cfg["data"]
    if tc["pretrained"]:  # checked at validation (checks.pretrained_problems); copied as is
        path = checks.pretrained_path(tc)
        tok = BPETokenizer.load(path)
        with common.atomic_path(out / "tokenizer.json") as tmp:
            shutil.copyfile(path, tmp)
        return tok, {"pretrained": str(path.resolve()), "pretrained_sha256": sha256_file(path)}
    # a fixed sample: sample_bytes / n of every source's training documents (tokenizer_sample)
    srcs, texts, per_source = dc["sources"], [], {}
    quota = tc["sample_bytes"] // len(srcs)
    for name, spec in srcs.items():
        got, per_source[name] = tokenizer_sample(name, spec, quota, dc["heldout_fraction"], dc["seed"])
        texts += got
    tok = BPETokenizer.train(texts, tc["vocab_size"])
    with common.atomic_path(out / "tokenizer.json") as tmp:
        tok.save(tmp)
    sample = {
        "method": f"per source, the training documents of smallest sha256('<seed>:tokenizer:<id>') in its"
        f" first {SAMPLE_SCAN} x {quota:,} bytes of training text, as far as {quota:,} bytes"
        " hold them (prepare.tokenizer_sample)",
        "seed": dc["seed"],
        "quota_bytes": quota,
        "scan_bytes": SAMPLE_SCAN * quota,
        "sources": per_source,
    }
    return tok, {"trained_on_bytes": sum(len(t.encode()) for t in texts), "sample": sample}


def _fingerprint(spec: dict, dc: dict, tok_sha: str) -> str:
    """What a source's shard files depend on: a resume is taken only where it matches.

    Not on_bad: the files written before a preparation stopped at a bad item under `error`
    are what `skip` writes too (nothing bad came before), so switching to skip resumes; nor
    aggregate, which decides only which validation set a source's held-out text joins."""
    return digest(
        {
            "spec": {k: v for k, v in spec.items() if k not in ("on_bad", "aggregate")},
            "seed": dc["seed"],
            "heldout_fraction": dc["heldout_fraction"],
            "tokenizer": tok_sha,
            "shard_tokens": dc["shard_tokens"],
            "text_bytes": dc["eval"]["text_bytes"],
        }
    )


def _open_writer(
    name: str, spec: dict, dc: dict, tok: BPETokenizer, tok_sha: str, out: Path
) -> tuple[ShardWriter, dict, bool]:
    """The source's shard writer and held-out state, resumed from a killed run where the fingerprint matches."""
    fp = _fingerprint(spec, dc, tok_sha)
    w = ShardWriter(out / "shards" / name, dtype_for(tok.vocab_size), tok.eos_id, dc["shard_tokens"], fp)
    extra = w.state["extra"] or {"held": [], "held_bytes": 0, "fn_pool": [], "fn_bytes": 0, "rows_filtered": 0}
    extra.setdefault("bad", badrows.empty_report())
    badrows.refuse_recorded(name, spec, extra["bad"])
    train_done = bool(extra.get("train_done"))
    if w.resumed_rows:
        log.info(
            "%s: resuming after %d rows, %d shard files%s",
            name,
            w.resumed_rows,
            len(w.state["files"]),
            " (training pass done: only the held-out pass is read again)" if train_done else "",
        )
    return w, extra, train_done


def _snapshot(extra: dict) -> dict:
    """The held-out state with its lists copied, for a progress record that later rows must not change."""
    return {
        k: list(v) if isinstance(v, list) else copy.deepcopy(v) if isinstance(v, dict) else v for k, v in extra.items()
    }


def _keep_heldout(extra: dict, row, text_bytes: int, want_fn: bool) -> None:
    """One held-out row into the validation text (up to text_bytes) and, for a code source, the function pool."""
    if extra["held_bytes"] < text_bytes:
        text = row.text[:HELD_CUT]
        extra["held"].append({"id": row.id, "text": text})
        extra["held_bytes"] += len(text.encode())
    if want_fn and extra["fn_bytes"] < FN_POOL_BYTES:
        extra["fn_pool"].append({"id": row.id, "text": row.text})
        extra["fn_bytes"] += len(row.text.encode())


class _ChunkEncoder:
    """The training pass's chunks into the shard writer, whole documents up to max_tokens.

    encode_batch runs in a worker thread (it releases the GIL and fans out over the
    tokenizer's thread pool) while the reader reads and splits the next chunk's rows."""

    def __init__(self, w: ShardWriter, tok: BPETokenizer, extra: dict, max_tok: int | None):
        self.w, self.tok, self.extra, self.max_tok = w, tok, extra, max_tok
        self.texts, self.pending, self.done = [], 0, False  # the chunk being read; done: a cap was reached
        self.pool = ThreadPoolExecutor(1)
        self.inflight = []  # at most one chunk: (future ids, texts, their bytes, rows consumed, held-out so far)

    def add(self, text: str) -> None:
        """One training document into the chunk being read."""
        self.texts.append(text)
        self.pending += len(text.encode())

    def complete(self) -> None:
        """The chunk in flight, once encoded, into the writer (cut at max_tokens)."""
        if not self.inflight:
            return
        fut, chunk, nbytes, rows_done, snapshot = self.inflight.pop()
        ids = fut.result()
        w, max_tok = self.w, self.max_tok
        if self.done and max_tok is not None and w.n_tokens >= max_tok:
            return  # the cap was reached by the chunk before
        if max_tok is not None:  # whole documents up to the cap
            room, keep = max_tok - w.n_tokens, 0
            for x in ids:
                if room <= 0:
                    self.done = True
                    break
                room -= len(x) + 1
                keep += 1
            ids = ids[:keep]
        if len(ids) < len(chunk):
            chunk = chunk[: len(ids)]
            nbytes = sum(len(t.encode()) for t in chunk)
        w.add(ids, nbytes, rows_done, snapshot)

    def flush(self, rows_done: int) -> None:
        """The chunk read so far off to the worker thread; the one before it into the writer."""
        fut = self.pool.submit(self.tok.encode_batch, self.texts)
        self.complete()
        # what a resume from after this chunk must know: the held-out rows read so far
        self.inflight.append((fut, self.texts, self.pending, rows_done, _snapshot(self.extra)))
        self.texts, self.pending = [], 0


def _training_pass(
    name: str, spec: dict, dc: dict, tok: BPETokenizer, w: ShardWriter, extra: dict, want_fn: bool
) -> int:
    """The rows after the resume point: training documents into shard files, held-out ones kept; the rows read."""
    max_docs = spec.get("max_documents")
    # a chunk holds fewer tokens than a shard file (a byte-level token is >= 1 byte), so files
    # close at chunk ends (where progress can be recorded) with between 1x and 2x shard_tokens
    chunk_bytes = min(CHUNK_BYTES, dc["shard_tokens"])
    n_rows = w.resumed_rows
    n_taken = w.n_docs  # training documents read so far (the writer lags by the chunk in flight)
    enc = _ChunkEncoder(w, tok, extra, spec.get("max_tokens"))
    for n_rows, row in sources.rows(name, spec, dc["heldout_fraction"], dc["seed"], skip=w.resumed_rows):
        if row is None:
            extra["rows_filtered"] += 1
            continue
        if isinstance(row, Bad):
            badrows.record(extra["bad"], row, name)
            continue
        if row.heldout:
            _keep_heldout(extra, row, dc["eval"]["text_bytes"], want_fn)
            continue
        enc.add(row.text)
        n_taken += 1
        if max_docs is not None and n_taken >= max_docs:
            enc.done = True
        if enc.pending >= chunk_bytes or len(enc.texts) >= CHUNK_DOCS or enc.done:
            enc.flush(n_rows)
        if enc.done:
            break
    if enc.texts:
        enc.flush(n_rows)
    enc.complete()
    enc.pool.shutdown()
    return n_rows


def _heldout_pass(
    name: str, spec: dict, dc: dict, w: ShardWriter, extra: dict, n_rows: int, train_done: bool, want_fn: bool
) -> None:
    """A separate held-out split or files: read after the training pass, as far as the validation sets need."""
    # the training pass is recorded as finished (its last shard file closed), so that a run
    # killed in the held-out pass resumes here and reads only that pass again: it stops
    # once data.eval.text_bytes of held-out text (and a code source's functions) are kept
    if not train_done:
        w.checkpoint(n_rows, _snapshot(extra) | {"train_done": True})
    for _, row in sources.rows(name, spec, dc["heldout_fraction"], dc["seed"], heldout_part=True):
        if isinstance(row, Bad):
            badrows.record(extra["bad"], row, name)
        elif row is not None:
            _keep_heldout(extra, row, dc["eval"]["text_bytes"], want_fn)
        if extra["held_bytes"] >= dc["eval"]["text_bytes"] and (not want_fn or extra["fn_bytes"] >= FN_POOL_BYTES):
            break


def prepare_source(name: str, spec: dict, cfg: dict, tok: BPETokenizer, tok_sha: str, out: Path) -> dict:
    """One source's shard files (resumable) and held-out rows, in one pass (two with a separate held-out split)."""
    dc = cfg["data"]
    frac = dc["heldout_fraction"]
    w, extra, train_done = _open_writer(name, spec, dc, tok, tok_sha, out)
    want_fn = spec["role"] == "code"
    n_rows = w.resumed_rows
    if not train_done:  # (a run killed in the held-out pass resumes after the training pass)
        n_rows = _training_pass(name, spec, dc, tok, w, extra, want_fn)
    if w.n_docs == 0:
        raise DataError(
            f"{sources.key(name)}: no training document after {n_rows:,} rows"
            f" ({extra['rows_filtered']:,} filtered out by filters/min_chars/empty text,"
            f" {extra['bad']['skipped']:,} bad items skipped); tried " + describe(spec)
        )
    if spec.get("heldout_split") or spec.get("heldout_files"):
        _heldout_pass(name, spec, dc, w, extra, n_rows, train_done, want_fn)
    if not extra["held"]:
        raise DataError(
            f"{sources.key(name)}: no document was held out of {w.n_docs:,} training ones"
            f" (data.heldout_fraction={frac}); raise it, add documents or set heldout_split/heldout_files"
        )
    index = w.finish(n_rows, extra, {"source": name, "role": spec["role"]})
    return {
        "index": index,
        "held": extra["held"],
        "fn_pool": extra["fn_pool"],
        "rows_read": n_rows,
        "rows_filtered": extra["rows_filtered"],
        "bad": {"on_bad": badrows.policy(spec), **extra["bad"]},
    }


def describe(spec: dict) -> str:
    keys = ("kind", "path", "name", "split", "files", "corpus", "text_field", "template", "filters", "min_chars")
    return ", ".join(f"{k}={spec[k]!r}" for k in keys if spec.get(k) not in (None, "", 0))


def pooled(held: dict[str, list], weights: dict[str, float], n_bytes: int) -> list[dict]:
    """Held-out rows of several sources, each giving its weight's share of n_bytes."""
    total, out = sum(weights.values()), []
    for name, wgt in weights.items():
        got, quota = 0, n_bytes * wgt / total
        for r in held[name]:
            if got >= quota:
                break
            out.append(r)
            got += len(r["text"].encode())
    return out


def _prepare_each(cfg: dict, tok: BPETokenizer, tok_sha: str, out: Path) -> tuple[dict, dict, dict, dict]:
    """Every source in turn (prepare_source): its shards' manifest entry, held-out rows, function pool, rows read."""
    shards, held, fn_pool, read = {}, {}, {}, {}
    for name, spec in cfg["data"]["sources"].items():
        t = time.time()
        r = prepare_source(name, spec, cfg, tok, tok_sha, out)
        idx = r["index"]
        shards[name] = {
            "role": spec["role"],
            "dir": f"shards/{name}",
            "dtype": idx["dtype"],
            "n_tokens": idx["n_tokens"],
            "n_docs": idx["n_docs"],
            "n_bytes": idx["n_bytes"],
            "files": idx["files"],
            "sha256": digest([f["sha256"] for f in idx["files"]]),
        }
        held[name], fn_pool[name] = r["held"], r["fn_pool"]
        read[name] = {"rows_read": r["rows_read"], "rows_filtered": r["rows_filtered"], "bad": r["bad"]}
        if r["bad"]["skipped"]:
            log.info("%s: %s (on_bad: skip; examples in the manifest)", name, badrows.summary(r["bad"]))
        log.info(
            "%s: %d docs, %d tokens in %d files, %.0f tokens/s",
            name,
            idx["n_docs"],
            idx["n_tokens"],
            len(idx["files"]),
            idx["n_tokens"] / max(1e-9, time.time() - t),
        )
    return shards, held, fn_pool, read


def _refuse_repeats(cfg: dict, shards: dict) -> None:
    """A cell that would repeat a source past max_epochs is refused now, before any training."""
    width = cfg["model"]["seq_len"] + 1
    n_seqs = {k: sum(f["n_tokens"] // width for f in v["files"]) for k, v in shards.items()}
    cells, _ = plan.build(cfg)
    problems = checks.epoch_problems(cfg, cells, n_seqs, cfg["train"]["batch_size"])
    if problems:
        raise DataError(
            "data.max_epochs: refused before training:\n  "
            + "\n  ".join(problems[:20])
            + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        )


def _eval_sets(dc: dict, held: dict, fn_pool: dict) -> tuple[dict, dict]:
    """The validation sets (rows by name) and their metric entries: per source, per role's mix, code functions."""
    srcs, ev = dc["sources"], dc["eval"]
    eval_sets, metrics = {}, {}
    for name in srcs:
        eval_sets[f"text_{name}"] = held[name]
        metrics[f"text_{name}"] = {"file": f"text_{name}.jsonl", "skill": srcs[name]["role"], "kind": "text"}
    for role in ("knowledge", "code"):  # the APE's parts: every source of the role but those with aggregate: false
        weights = {k: s["weight"] for k, s in srcs.items() if s["role"] == role and s.get("aggregate", True)}
        if weights:
            eval_sets[f"{role}_text"] = pooled(held, weights, ev["text_bytes"])
            metrics[f"{role}_text"] = {"file": f"{role}_text.jsonl", "skill": role, "kind": "text"}
    fn_docs = [Doc(r["id"], r["text"]) for k in srcs if srcs[k]["role"] == "code" for r in fn_pool[k]]
    fns = code_fn_items(fn_docs, ev["code_fn_items"], dc["seed"]) if fn_docs else []
    if fns:
        eval_sets["code_fn"] = fns
        metrics["code_fn"] = {"file": "code_fn.jsonl", "skill": "code", "kind": "code_fn"}
    return eval_sets, metrics


def prepare_sources(cfg: dict, out: Path, threads: int = 1) -> dict:
    """The configured sources' data folder: tokenizer, every source's shards, validation sets, manifest last."""
    t0 = time.time()
    dc, srcs = cfg["data"], cfg["data"]["sources"]
    # every source's rule for bad input: its own on_bad, else data.on_bad (the manifest keeps the config as given)
    ruled = {k: s | {"on_bad": s.get("on_bad") or dc["on_bad"]} for k, s in srcs.items()}
    cfg = cfg | {"data": dc | {"sources": ruled}}
    tok, tok_info = tokenizer_for(cfg, out)
    tok_sha = sha256_file(out / "tokenizer.json")
    log.info("tokenizer: vocab %d (%s)", tok.vocab_size, tok_info)
    shards, held, fn_pool, read = _prepare_each(cfg, tok, tok_sha, out)
    _refuse_repeats(cfg, shards)
    eval_sets, metrics = _eval_sets(dc, held, fn_pool)
    evals = {k: common.write_jsonl(out / "eval" / f"{k}.jsonl", v) for k, v in eval_sets.items()}

    manifest = {
        "layout": "sources",
        "data_config": dc,
        "data_config_hash": digest(hashed_view(dc)),
        "tokenizer": {
            "vocab_size": tok.vocab_size,
            "sha256": tok_sha,
            "eos_id": tok.eos_id,
            "dtype": dtype_for(tok.vocab_size),
            **tok_info,
        },
        "shards": shards,
        "eval": evals,
        "metrics": metrics,
        "sources": {k: sources.provenance(k, s) | read[k] for k, s in srcs.items()},
        "provenance": common.provenance(threads=threads),
        "seconds": round(time.time() - t0, 1),
    }
    common.write_json(out / "manifest.json", manifest)
    return manifest
