"""The documents of one configured source (`data.sources.<name>`), streamed.

A source is one of
  kind: hf        a Hugging Face dataset: datasets.load_dataset(path, name, split=..., revision=...,
                  data_files=..., streaming=...)
  kind: files     local jsonl / parquet / text globs, read by localfiles (not datasets' builders,
                  so that a bad file or row is found where it is); text files are one document
                  per file
  kind: embedded  one of the packaged corpora (corpus: wiki | stdlib), as plain documents

Rows become documents by `text_field` or `template` (str.format over the row's fields), are
kept by `filters` (field -> allowed values) and `min_chars`, and are held out by a hash of
their id (`id_field`, or the text itself) exactly as the embedded corpora are, or taken
from `heldout_split` / `heldout_files`. Nothing is read into a list: the rows stream.

A row whose text field is missing, null or not a string, holds a NUL or is over
max_row_bytes, and a file that is bad as a whole (localfiles), is bad input: under the
source's `on_bad` rule it stops the preparation with one message or is skipped and counted
(badrows).
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

from skillscale.data import badrows, corpora, localfiles
from skillscale.data.badrows import Bad
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
    """The datasets IterableDataset (or Dataset) of a hub source's training or held-out split."""
    # deferred: datasets (and pyarrow) take seconds to import: only when a source is read
    import datasets

    datasets.disable_progress_bars()
    args = _hub_args(spec, heldout)
    tried = _tried(args)
    try:
        with _without_torch():
            return datasets.load_dataset(**{k: v for k, v in args.items() if v is not None})
    except Exception as e:
        why = f"{type(e).__name__}: {e}"
        off = offline()
        hint = f" ({off} is set: only datasets already in the cache load offline)" if off else ""
        raise DataError(f"{key(name)}: {tried} failed{hint}: {why}") from None


def _tried(args: dict) -> str:
    return "datasets.load_dataset(" + ", ".join(f"{k}={v!r}" for k, v in args.items() if v is not None) + ")"


def _hub_args(spec: dict, heldout: bool) -> dict:
    return dict(
        path=spec["path"],
        name=spec.get("name"),
        split=spec["heldout_split"] if heldout else spec["split"],
        revision=spec.get("revision"),
        data_files=spec.get("data_files"),
        streaming=spec["streaming"],
    )


def _embedded_docs(name: str, spec: dict):
    if spec.get("corpus") == "wiki":
        return corpora.wiki_summaries()
    if spec.get("corpus") == "stdlib":
        return corpora.stdlib_files()
    raise DataError(f"{key(name)}.corpus: {spec.get('corpus')!r}; an embedded source is corpus: wiki or stdlib")


# rows per Arrow batch read from datasets: few enough that a batch of large documents (code
# files, one-file-per-document text) stays small; the per-batch cost is negligible at 128
BATCH_ROWS = localfiles.BATCH_ROWS
MAX_ROW_BYTES = localfiles.MAX_ROW_BYTES


def _text_fields(spec: dict) -> list[str] | None:
    """The fields a document's text is made of (text_field, or the template's); None: a
    template with positional fields, which str.format reports on the whole row."""
    if not spec.get("template"):
        return [spec.get("text_field", "text")]
    roots = [
        re.match(r"[^.\[!:]*", f).group() for _, f, _, _ in string.Formatter().parse(spec["template"]) if f is not None
    ]
    return None if any(r == "" or r.isdigit() for r in roots) else list(dict.fromkeys(roots))


def _fields(spec: dict) -> list[str] | None:
    """The row fields a source's documents need (text or template, id, filters); None: all."""
    text = _text_fields(spec)
    if text is None:
        return None
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


def _hub_items(name: str, spec: dict, heldout: bool, fields: list[str] | None, skip: int) -> Iterator:
    """A hub source's rows from row `skip` on, as (row, the datasets call, "row N"): read as Arrow
    batches, only the fields the documents need become Python objects (a real corpus has
    many more: url, date, scores...); rows before `skip` are sliced off unconverted. A
    failure inside `datasets` (a file it cannot read) stops here, naming the source, the
    call and the rows read: on_bad cannot skip what `datasets` does not hand over."""
    ds, where = _load(name, spec, heldout), _tried(_hub_args(spec, heldout))
    with _without_torch():
        batches = iter(ds.with_format("arrow").iter(batch_size=BATCH_ROWS))
    n = 0
    while True:
        try:
            table = next(batches)
        except StopIteration:
            return
        except Exception as e:
            raise DataError(
                f"{key(name)}: {where} stopped after {n:,} rows: {type(e).__name__}: {e}"
                " (on_bad cannot skip a file datasets fails to read; local files read as kind: files"
                " name the file and line, and on_bad: skip passes them)"
            ) from None
        if skip >= table.num_rows:
            skip, n = skip - table.num_rows, n + table.num_rows
            continue
        if skip:
            table, n, skip = table.slice(skip), n + skip, 0
        names = table.column_names if fields is None else [f for f in fields if f in table.column_names]
        cols = {f: table.column(f).to_pylist() for f in names}
        for vals in zip(*cols.values()) if cols else [()] * table.num_rows:
            n += 1
            yield dict(zip(names, vals)), where, f"row {n}"


def _first_checked(name: str, spec: dict, its: Iterator) -> Iterator:
    """The items, once the fields of the first BATCH_ROWS rows have been checked against the
    settings (a field no row has is a wrong setting, refused; one some rows lack is a bad row)."""
    head, seen, n = [], set(), 0
    for it in its:
        head.append(it)
        if not isinstance(it, Bad):
            seen.update(it[0])
            n += 1
            if n >= BATCH_ROWS:
                break
    if n:
        _check_fields(name, spec, list(seen))
    yield from head
    yield from its


MISSING = object()


def _row_text(row: dict, spec: dict, roots: list[str] | None) -> str | tuple[str, str]:
    """A row's document text, or (reason, what is wrong) for a bad row."""
    tmpl = spec.get("template")
    if tmpl:
        for f in roots or []:
            if f not in row:
                return "text_missing", f"no field {f!r} ({{key}}.template)"
            if row[f] is None:
                return "text_null", f"field {f!r} ({{key}}.template) is null"
        try:
            return tmpl.format_map(row)
        except (KeyError, IndexError, AttributeError, ValueError, TypeError) as e:
            return "template", f"{{key}}.template does not format this row: {type(e).__name__}: {e}"
    tf = spec.get("text_field", "text")
    v = row.get(tf, MISSING)
    if isinstance(v, str):
        return v
    if v is MISSING:
        return "text_missing", f"no field {tf!r} ({{key}}.text_field)"
    if v is None:
        return "text_null", f"field {tf!r} ({{key}}.text_field) is null"
    what = f"{str(v)[:40]!r} of type {type(v).__name__}"
    return "text_not_string", f"field {tf!r} ({{key}}.text_field) is {what}, not a string"


def _documents(name: str, spec: dict, its: Iterator) -> Iterator[tuple[str, str] | Bad | None]:
    """(id, text) of every item, None for a row filtered out, Bad for a bad one under
    on_bad: skip (under error the first bad one stops here, badrows.Bad.message)."""
    roots = _text_fields(spec)
    id_field, limit = spec.get("id_field"), spec.get("max_row_bytes") or MAX_ROW_BYTES
    filters, min_chars = _filters(spec), spec.get("min_chars") or 0
    stop = badrows.policy(spec) == "error"
    for it in _first_checked(name, spec, its):
        if not isinstance(it, Bad):
            row, file, where = it
            text = _row_text(row, spec, roots)
            if not isinstance(text, str):
                it = Bad(text[0], file, where, text[1])
            elif (i := text.find("\x00")) >= 0:
                it = Bad("nul_byte", file, where, f"a NUL character at character {i} of the text (a binary file?)")
            elif len(text) * 4 > limit and (n := len(text.encode())) > limit:
                it = Bad("too_long", file, where, f"a text of {n:,} bytes, over {{key}}.max_row_bytes={limit:,}")
        if isinstance(it, Bad):
            if stop:
                raise DataError(it.message(name))
            yield it
            continue
        if not text or len(text) < min_chars or any(row.get(f) not in ok for f, ok in filters.items()):
            yield None
        elif id_field:
            yield f"{name}:{row.get(id_field)}", text
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


def _items(name: str, spec: dict, heldout: bool, skip: int) -> Iterator:
    if spec["kind"] == "hf":
        return _hub_items(name, spec, heldout, _fields(spec), skip)
    part = "heldout_files" if heldout else "files"
    files = resolve_files(name, spec[part], part)
    return localfiles.items(spec, files, file_format(name, spec, files), _fields(spec), skip)


def rows(
    name: str, spec: dict, fraction: float, seed: int, skip: int = 0, heldout_part: bool = False
) -> Iterator[tuple[int, Row | Bad | None]]:
    """(items consumed so far, document, None when filtered out, or Bad under on_bad: skip),
    from item `skip` on (an item: a row, or a file that is bad as a whole; localfiles).

    With a named held-out split, `heldout_part` streams that split (every row held out);
    otherwise held-out documents are interleaved with training ones by their id's hash."""
    separate = bool(spec.get("heldout_split") or spec.get("heldout_files"))
    if spec["kind"] == "embedded":
        docs = _embedded_documents(name, spec, skip)
    else:
        docs = _documents(name, spec, _items(name, spec, heldout_part, skip))
    n = skip
    for doc in docs:
        n += 1
        if doc is None or isinstance(doc, Bad):
            yield n, doc
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
