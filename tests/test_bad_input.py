"""Bad files and rows in configured sources, under both rules (data.sources.<name>.on_bad).

A corpus of everything that goes wrong in real corpora, a folder per kind, generated here
(nothing binary or large is committed): a binary file, a Latin-1 file, a broken JSON line,
an empty file, rows whose text is null or a number, a 50 MB single line, NUL bytes, a
parquet file whose text column is a number. Under `error` each stops with one message
naming the source, the file, where in it and the key that changes the rule; under `skip`
the preparation counts them per source and reason and writes the very shards, tokenizer
and validation sets of the corpus without the bad items.
"""

import json
import logging
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skillscale import config
from skillscale import study as studymod
from skillscale.data import prepare as data
from skillscale.data import sources
from skillscale.data.corpora import DataError
from skillscale.tools import samplecorpora

REPO = Path(__file__).parents[1]
# 50 MB, as the issue asks: writing it takes ~0.1 s and reading it away ~0.05 s here (the
# reader never holds more than max_row_bytes of it), so there is no need for a smaller one
LONG_LINE_BYTES = 50 << 20


def _code_row(tag: str) -> dict:
    body = "".join(f"def {tag}_{i}(x):\n    return x + {i}\n\n\n" for i in range(12))
    return {"path": f"extra/{tag}.py", "lang": "Python", "content": body}


def _jsonl(rows: list) -> bytes:
    return b"".join(r if isinstance(r, bytes) else json.dumps(r).encode() + b"\n" for r in rows)


def kinds() -> dict:
    """kind -> (source, file name, dirty bytes, clean bytes or None, reason, where in the message)."""
    a, b = _code_row("a"), _code_row("b")
    out = {
        "binary": ("web", "blob.txt", bytes(range(256)) * 4, None, "nul_byte", "byte 0"),
        "latin1": ("web", "cafe.txt", "Un café, déjà.\n".encode("latin-1"), None, "undecodable", "byte 6"),
        "nul": ("web", "nul.txt", b"some text\x00more text\n", None, "nul_byte", "byte 9"),
        "broken_json": (
            "stdlib",
            "broken.jsonl",
            _jsonl([a, b'{"path": "c.py", "content": "def c(\n', b]),
            _jsonl([a, b]),
            "unparsable",
            "line 2 (byte",
        ),
        "empty": ("stdlib", "empty.jsonl", b"", None, "empty_file", ""),
        "null_text": ("stdlib", "null.jsonl", _jsonl([a, {"path": "n.py", "content": None}, b]), _jsonl([a, b])),
        "number_text": ("stdlib", "num.jsonl", _jsonl([a, {"path": "k.py", "content": 42}, b]), _jsonl([a, b])),
        # (the 50 MB line is written by write_kinds, not held here)
        "long_line": ("stdlib", "long.jsonl", None, _jsonl([a, b]), "too_long", "line 2 (byte"),
        "parquet_type": ("wiki", "numbers.parquet", None, None, "column_type", ""),  # (written by write_kinds)
    }
    out["null_text"] += ("text_null", "line 2")
    out["number_text"] += ("text_not_string", "line 2")
    return out


def write_kinds(root: Path, clean: bool) -> dict[str, list[str]]:
    """Each kind's folder under root (the clean variant: without its bad items); source -> files."""
    files = {"wiki": [], "stdlib": [], "web": []}
    for kind, (src, fname, dirty, cleaned, *_) in kinds().items():
        path = root / kind / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "parquet_type":  # a text column of numbers: the file is bad as a whole
            if not clean:
                pq.write_table(pa.table({"id": [1, 2], "text": [3, 4]}), path)
                files[src].append(str(path))
            continue
        if kind == "long_line" and not clean:  # good row, a 50 MB line, good row
            with open(path, "wb") as f:
                first, last = cleaned.splitlines(keepends=True)
                f.write(first + b'{"path": "big.py", "lang": "Python", "content": "')
                f.write(b"x" * LONG_LINE_BYTES)
                f.write(b'"}\n' + last)
            files[src].append(str(path))
            continue
        data_ = cleaned if clean else dirty
        if data_ is not None:
            path.write_bytes(data_)
            files[src].append(str(path))
    return files


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    samplecorpora.write(root / "corpora", wiki_docs=400, code_bytes=200_000)
    t = time.time()
    dirty = write_kinds(root / "dirty", clean=False)
    clean = write_kinds(root / "clean", clean=True)
    print(f"\nbad-input corpus written in {time.time() - t:.2f} s")
    return root, dirty, clean


def cfg_for(root: Path, extra: dict[str, list[str]], on_bad: str | None = None, small: bool = False) -> dict:
    raw = config.read_yaml(REPO / "config" / "studies" / "test-sources.yaml")
    if small:  # a tokenizer window smaller than a source and many shard files: a bad item past both
        raw["data"]["tokenizer"]["sample_bytes"], raw["data"]["shard_tokens"] = 30000, 5000
    for name, v in raw["data"]["sources"].items():
        v["files"] = [str(root / v["files"])] + extra[name]
    if on_bad:
        raw["data"]["on_bad"] = on_bad
    return studymod.validate(raw)


def rows_of(spec: dict, name: str) -> list:
    return [r for _, r in sources.rows(name, spec, 0.1, 0)]


@pytest.mark.parametrize("kind", list(kinds()))
def test_each_kind_of_bad_input_is_named_under_error_and_counted_under_skip(corpora, kind):
    root, dirty, _ = corpora
    src, fname, *_, reason, where = kinds()[kind]
    path = str(root / "dirty" / kind / fname)
    spec = cfg_for(root, dirty)["data"]["sources"][src] | {"files": [path]}
    t = time.time()
    with pytest.raises(DataError) as e:
        rows_of(spec | {"on_bad": "error"}, src)
    msg = str(e.value)
    assert msg.startswith(f"data.sources.{src}: {path}"), msg
    assert where in msg and f"set data.sources.{src}.on_bad: skip" in msg, msg
    got = rows_of(spec | {"on_bad": "skip"}, src)
    bad = [r for r in got if isinstance(r, sources.Bad)]
    assert [(b.reason, b.file) for b in bad] == [(reason, path)]
    assert len(got) - len(bad) == (2 if src == "stdlib" and kind != "empty" else 0)  # the good rows around it
    assert time.time() - t < 5, f"{kind}: {time.time() - t:.1f} s"


def test_skip_gives_the_shards_of_the_corpus_without_the_bad_items(corpora, tmp_path, caplog):
    root, dirty, clean = corpora
    # error (the default): stopped at the first bad item, before its source's index or the manifest;
    # wiki's bad parquet file comes after its tokenizer window and some shard files, so the
    # training pass stops there (the other sources' bad files, in their windows, would stop
    # the tokenizer pass first)
    with pytest.raises(DataError, match=r"data.sources.web: \S+blob.txt, byte 0: a NUL byte"):
        data.prepare(cfg_for(root, dirty, small=True), tmp_path / "dirty")
    assert not (tmp_path / "dirty" / "manifest.json").exists()
    with pytest.raises(DataError, match=r"data.sources.wiki: \S+numbers.parquet: column 'text'"):
        data.prepare(cfg_for(root, dirty | {"stdlib": [], "web": []}, small=True), tmp_path / "dirty")
    assert list((tmp_path / "dirty").glob("shards/wiki/*.bin")) and not (tmp_path / "dirty" / "manifest.json").exists()
    assert not (tmp_path / "dirty" / "shards" / "wiki" / "index.json").exists()  # (finished sources have theirs)
    # the fix, rerun in the same folder: data.on_bad: skip, resumed from the last shard file
    with caplog.at_level(logging.INFO, logger="skillscale.data.streamed"):
        m = data.prepare(cfg_for(root, dirty, on_bad="skip", small=True), tmp_path / "dirty")
    assert "wiki: resuming after" in caplog.text
    ref = data.prepare(cfg_for(root, clean, small=True), tmp_path / "clean")
    assert {k: v["sha256"] for k, v in m["shards"].items()} == {k: v["sha256"] for k, v in ref["shards"].items()}
    assert m["eval"] == ref["eval"] and m["tokenizer"]["sha256"] == ref["tokenizer"]["sha256"]
    want = {}
    for src, *_, reason, _ in kinds().values():
        want.setdefault(src, {})[reason] = want.get(src, {}).get(reason, 0) + 1
    for src, counts in want.items():
        bad = m["sources"][src]["bad"]
        assert bad["on_bad"] == "skip" and bad["counts"] == counts and bad["skipped"] == sum(counts.values())
        assert {e["file"] for e in bad["examples"]} <= set(dirty[src]) and len(bad["examples"]) == min(
            5, bad["skipped"]
        )
        assert f"{src}: {bad['skipped']} bad items skipped" in caplog.text
    assert ref["sources"]["stdlib"]["bad"] == {"on_bad": "error", "skipped": 0, "counts": {}, "examples": []}


def test_a_hub_source_names_bad_rows_and_a_file_datasets_cannot_read(tmp_path):
    folder = tmp_path / "hub"
    folder.mkdir()
    pq.write_table(pa.table({"id": [1, 2, 3], "text": ["a document", None, "another"]}), folder / "train.parquet")
    spec = {
        "role": "knowledge",
        "kind": "hf",
        "path": str(folder),
        "split": "train",
        "streaming": True,
        "id_field": None,
    }
    with pytest.raises(DataError, match=r"data.sources.h: datasets.load_dataset\(path=.*\), row 2: field 'text'"):
        rows_of(spec, "h")
    assert [r.reason for r in rows_of(spec | {"on_bad": "skip"}, "h") if isinstance(r, sources.Bad)] == ["text_null"]
    (folder / "train.parquet").unlink()
    (folder / "train.jsonl").write_text('{"text": "fine"}\n{broken\n')
    with pytest.raises(DataError, match=r"data.sources.h: datasets.load_dataset\(.*\) stopped after 0 rows"):
        rows_of(spec | {"on_bad": "skip"}, "h")


def test_a_resumed_preparation_under_error_refuses_what_an_earlier_skip_run_skipped(corpora, tmp_path):
    root, dirty, _ = corpora
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"id": i, "text": f"held-out document {i} " * 20}) + "\n" for i in range(50)))
    cfg = cfg_for(root, {"wiki": dirty["wiki"], "stdlib": [], "web": []}, on_bad="skip", small=True)
    cfg["data"]["sources"]["wiki"]["heldout_files"] = str(held)
    held.rename(tmp_path / "away.jsonl")  # gone after validation: the held-out pass fails, training pass recorded
    with pytest.raises(DataError, match="heldout_files"):
        data.prepare(cfg, tmp_path / "data")
    (tmp_path / "away.jsonl").rename(held)
    cfg["data"]["on_bad"] = "error"  # resumed after the training pass, which skipped the bad parquet file
    with pytest.raises(DataError, match=r"numbers.parquet: .*string \(an earlier run of this preparation skipped it"):
        data.prepare(cfg, tmp_path / "data")
    cfg["data"]["on_bad"] = "skip"
    assert data.prepare(cfg, tmp_path / "data")["sources"]["wiki"]["bad"]["counts"] == {"column_type": 1}
