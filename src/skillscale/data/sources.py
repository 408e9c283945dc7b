"""The documents of one configured source (`data.sources.<name>`), streamed.

A source is one of
  kind: hf        a Hugging Face dataset: datasets.load_dataset(path, name, split=..., revision=...,
                  data_files=..., streaming=...)
  kind: files     local jsonl / parquet / text globs through the same loaders
                  (datasets.load_dataset('json' | 'parquet' | 'text', data_files=...); text files are
                  one document per file)
  kind: embedded  one of the packaged corpora (corpus: wiki | stdlib), as plain documents

Rows become documents by `text_field` or `template` (str.format over the row's fields), are
kept by `filters` (field -> allowed values) and `min_chars`, and are held out by a hash of
their id (`id_field`, or the text itself) exactly as the embedded corpora are, or taken
from `heldout_split` / `heldout_files`. Nothing is read into a list: the rows stream.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import string
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from skillscale.data import corpora
from skillscale.data.corpora import DataError, is_heldout
from skillscale.data.datastore import sha256_file

FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text", ".md": "text", ".py": "text"}


@dataclass(slots=True)
class Row:
    id: str
    text: str
    heldout: bool


def offline() -> str | None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


def key(name: str) -> str:
    return f"data.sources.{name}"


def resolve_files(name: str, patterns, what: str = "files") -> list[str]:
    patterns = [patterns] if isinstance(patterns, str) else list(patterns or [])
    out = []
    for pat in patterns:
        hits = sorted(glob.glob(os.path.expanduser(pat), recursive=True))
        hits = [h for h in hits if os.path.isfile(h)]
        if not hits:
            raise DataError(f"{key(name)}.{what}: {pat!r} matches no file (relative paths are from {os.getcwd()})")
        out += hits
    return out


def file_format(name: str, spec: dict, files: list[str]) -> str:
    if spec.get("format"):
        return spec["format"]
    kinds = {FORMATS.get(Path(f).suffix.lower()) for f in files}
    if None in kinds or len(kinds) != 1:
        raise DataError(
            f"{key(name)}.format: cannot tell the format of {files[:3]} from their suffixes;"
            " set format: json | parquet | text"
        )
    return kinds.pop()


@contextmanager
def _without_torch():
    """datasets imports torch (~2 s and ~200 MB) for every IterableDataset it builds, only to
    share an epoch counter with torch DataLoader workers, which a preparation has none of:
    where torch is not imported yet, the datasets are built without it."""
    # deferred: datasets (and pyarrow) take seconds to import: only when a source is read
    import datasets.config

    was = datasets.config.TORCH_AVAILABLE
    if "torch" not in sys.modules:
        datasets.config.TORCH_AVAILABLE = False
    try:
        yield
    finally:
        datasets.config.TORCH_AVAILABLE = was


def _load(name: str, spec: dict, heldout: bool = False):
    """The datasets IterableDataset (or Dataset) of a source's training or held-out part."""
    # deferred: datasets (and pyarrow) take seconds to import: only when a source is read
    import datasets

    datasets.disable_progress_bars()
    if spec["kind"] == "files":
        files = resolve_files(
            name, spec["heldout_files"] if heldout else spec["files"], "heldout_files" if heldout else "files"
        )
        fmt = file_format(name, spec, files)
        kw = {"sample_by": "document"} if fmt == "text" else {}
        tried = f"datasets.load_dataset({fmt!r}, data_files={files[:3]}{'...' if len(files) > 3 else ''})"
        try:
            with _without_torch():
                return datasets.load_dataset(fmt, data_files=files, split="train", streaming=True, **kw)
        except Exception as e:
            raise DataError(f"{key(name)}: {tried} failed: {type(e).__name__}: {e}") from None
    # a Hugging Face dataset
    split = spec["heldout_split"] if heldout else spec["split"]
    args = dict(
        path=spec["path"],
        name=spec.get("name"),
        split=split,
        revision=spec.get("revision"),
        data_files=spec.get("data_files"),
        streaming=spec["streaming"],
    )
    tried = "datasets.load_dataset(" + ", ".join(f"{k}={v!r}" for k, v in args.items() if v is not None) + ")"
    try:
        with _without_torch():
            return datasets.load_dataset(**{k: v for k, v in args.items() if v is not None})
    except Exception as e:
        why = f"{type(e).__name__}: {e}"
        off = offline()
        hint = f" ({off} is set: only datasets already in the cache load offline)" if off else ""
        raise DataError(f"{key(name)}: {tried} failed{hint}: {why}") from None


def _embedded_docs(name: str, spec: dict):
    if spec.get("corpus") == "wiki":
        return corpora.wiki_summaries()
    if spec.get("corpus") == "stdlib":
        return corpora.stdlib_files()
    raise DataError(f"{key(name)}.corpus: {spec.get('corpus')!r}; an embedded source is corpus: wiki or stdlib")


# rows per Arrow batch read from datasets: few enough that a batch of large documents (code
# files, one-file-per-document text) stays small; the per-batch cost is negligible at 128
BATCH_ROWS = 128


def _fields(spec: dict) -> list[str] | None:
    """The row fields a source's documents need (text or template, id, filters); None: all."""
    if spec.get("template"):
        roots = [
            re.match(r"[^.\[!:]*", f).group()
            for _, f, _, _ in string.Formatter().parse(spec["template"])
            if f is not None
        ]
        if any(r == "" or r.isdigit() for r in roots):
            return None  # positional fields: let str.format report them on the whole row
        text = roots
    else:
        text = [spec.get("text_field", "text")]
    out = text + [spec["id_field"]] * bool(spec.get("id_field")) + list(spec.get("filters") or {})
    return list(dict.fromkeys(out))


def _check_fields(name: str, spec: dict, columns: list[str]) -> None:
    """A field the documents need and the rows lack: the key that names it, and the fields there are."""
    have, cols = set(columns), sorted(columns)
    if spec.get("template"):
        for f in _fields(spec) or []:
            if f not in have:
                raise DataError(f"{key(name)}.template: field {f!r} is not in the rows (fields: {cols})")
    else:
        f = spec.get("text_field", "text")
        if f not in have:
            raise DataError(
                f"{key(name)}.text_field: {f!r} is not a field of the rows (fields: {cols}); set text_field or template"
            )
    f = spec.get("id_field")
    if f and f not in have:
        raise DataError(f"{key(name)}.id_field: {f!r} is not a field of the rows (fields: {cols})")
    for f in spec.get("filters") or {}:
        if f not in have:
            raise DataError(f"{key(name)}.filters.{f}: not a field of the rows (fields: {cols})")


def _text(v) -> str:
    return v if isinstance(v, str) else ("" if v is None else str(v))


def _documents(name: str, spec: dict, ds, skip: int) -> Iterator[tuple[str, str] | None]:
    """(id, text) of every row from row `skip` on, or None for a row filtered out.

    The stream is read as Arrow batches and only the fields the documents need become
    Python objects (a real corpus has many more: url, date, scores...); rows before `skip`
    are sliced off their batch unconverted."""
    fields = _fields(spec)
    tmpl, text_field, id_field = spec.get("template"), spec.get("text_field", "text"), spec.get("id_field")
    filters, min_chars = _filters(spec), spec.get("min_chars") or 0
    with _without_torch():
        ds = ds.with_format("arrow")
    checked = False
    for table in ds.iter(batch_size=BATCH_ROWS):
        if skip >= table.num_rows:
            skip -= table.num_rows
            continue
        if skip:
            table, skip = table.slice(skip), 0
        if not checked:
            _check_fields(name, spec, table.column_names)
            checked = True
        cols = {f: table.column(f).to_pylist() for f in (fields if fields is not None else table.column_names)}
        if tmpl:
            keys = list(cols)
            texts = [tmpl.format_map(dict(zip(keys, vals))) for vals in zip(*cols.values())]
        else:
            texts = cols[text_field]
        ids = cols[id_field] if id_field else None
        for i, text in enumerate(texts):
            text = _text(text)
            if not text or len(text) < min_chars or any(cols[f][i] not in ok for f, ok in filters.items()):
                yield None
                continue
            if ids is not None:
                yield f"{name}:{ids[i]}", text
            else:  # no id: the text itself (duplicates then fall on the same side of the split)
                yield f"{name}:" + hashlib.sha1(text.encode("utf-8", "replace")).hexdigest(), text


def _filters(spec: dict) -> dict[str, list]:
    return {f: (v if isinstance(v, list) else [v]) for f, v in (spec.get("filters") or {}).items()}


def _embedded_documents(name: str, spec: dict, skip: int) -> Iterator[tuple[str, str] | None]:
    """A packaged corpus's documents: rows with the fields id and text."""
    filters, min_chars = _filters(spec), spec.get("min_chars") or 0
    _check_fields(name, {"filters": filters}, ["id", "text"])
    for d in _embedded_docs(name, spec)[skip:]:
        row = {"id": d.id, "text": d.text}
        ok = d.text and len(d.text) >= min_chars and all(row[f] in allowed for f, allowed in filters.items())
        yield (d.id, d.text) if ok else None


def rows(
    name: str, spec: dict, fraction: float, seed: int, skip: int = 0, heldout_part: bool = False
) -> Iterator[tuple[int, Row | None]]:
    """(rows consumed so far, document or None when filtered out), from row `skip` on.

    With a named held-out split, `heldout_part` streams that split (every row held out);
    otherwise held-out documents are interleaved with training ones by their id's hash."""
    separate = bool(spec.get("heldout_split") or spec.get("heldout_files"))
    if spec["kind"] == "embedded":
        docs = _embedded_documents(name, spec, skip)
    else:
        docs = _documents(name, spec, _load(name, spec, heldout=heldout_part), skip)
    n = skip
    for doc in docs:
        n += 1
        if doc is None:
            yield n, None
            continue
        did, text = doc
        held = True if heldout_part else (False if separate else is_heldout(did, fraction, seed))
        yield n, Row(did, text, held)


def provenance(name: str, spec: dict) -> dict:
    """What a source was: its settings and, for local files, every file's size and sha256."""
    out = {"kind": spec["kind"], "role": spec["role"]}
    if spec["kind"] == "files":
        for part in ("files", "heldout_files"):
            if spec.get(part):
                out[part] = [
                    {"path": os.path.abspath(f), "bytes": os.path.getsize(f), "sha256": sha256_file(Path(f))}
                    for f in resolve_files(name, spec[part], part)
                ]
    elif spec["kind"] == "hf":
        # deferred: datasets (and pyarrow) take seconds to import: only when a source is read
        import datasets

        out |= {k: spec.get(k) for k in ("path", "name", "split", "revision", "data_files", "heldout_split")}
        out["datasets_version"] = datasets.__version__
        out["files"] = hf_files(name, spec)
        try:  # the hub's own revision id when the load recorded it
            from huggingface_hub import HfApi

            if not offline():
                out["resolved_revision"] = HfApi().dataset_info(spec["path"], revision=spec.get("revision")).sha
        except Exception:
            pass
    else:
        out["corpus"] = spec.get("corpus")
    return out


def _file_record(path: str) -> dict:
    return {"path": os.path.abspath(path), "bytes": os.path.getsize(path), "sha256": sha256_file(Path(path))}


def hf_files(name: str, spec: dict) -> list[dict]:
    """The data files `datasets` reads for a hub (or local folder) source, per split read.

    Local files (a dataset folder, local data_files): path, bytes, sha256. Hub files: the
    resolved URL (hf://datasets/<repo>@<commit>/<file>, the commit pinned by the hub), and
    where the load left a copy in the local cache (streaming: false), that copy's bytes and
    sha256; streamed ones are known by their URL alone (nothing of them is kept)."""
    # deferred: datasets (and pyarrow) take seconds to import: only when a source is read
    import datasets

    args = dict(
        path=spec["path"], name=spec.get("name"), revision=spec.get("revision"), data_files=spec.get("data_files")
    )
    try:
        with _without_torch():
            builder = datasets.load_dataset_builder(**{k: v for k, v in args.items() if v is not None})
    except Exception as e:  # it loaded for the preparation; say why its files are not listed
        return [{"error": f"datasets.load_dataset_builder failed: {type(e).__name__}: {e}"}]
    wanted = {str(s).split("[")[0] for s in (spec.get("split"), spec.get("heldout_split")) if s}
    out = []
    for split, files in (builder.config.data_files or {}).items():
        if str(split) not in wanted:
            continue
        for f in files:
            f = str(f)
            if os.path.isfile(f):
                out.append({"split": str(split), **_file_record(f)})
                continue
            rec = {"split": str(split), "url": f}
            m = re.match(r"hf://datasets/([^@]+/[^@/]+)@([^/]+)/(.+)$", f)
            if m and not spec.get("streaming", True):
                # deferred: datasets (and pyarrow) take seconds to import: only when a source is read
                from urllib.parse import unquote

                from huggingface_hub import try_to_load_from_cache

                local = try_to_load_from_cache(m[1], m[3], revision=unquote(m[2]), repo_type="dataset")
                if isinstance(local, str) and os.path.isfile(local):
                    rec |= _file_record(local)
            out.append(rec)
    return out
