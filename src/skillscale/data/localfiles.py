"""The rows of a `kind: files` source, read here rather than by `datasets`' builders, so that
a bad file or row is found where it is (file, line, byte) and costs a line in a report
under `on_bad: skip`, not a library traceback mid-stream.

Every file is read once, in order, and nothing is held but one row (or one document for
`format: text`): JSON lines come off a buffered binary reader with `readline(limit)`, so a
line over `max_row_bytes` is read away in chunks and never held whole or read twice; a text
file's size is checked before it is read; parquet files are read in record batches of the
fields the documents need. The stream's unit (what a resume counts) is the *item*: a
non-blank JSON line, a parquet row, a text file, or a file that is bad as a whole (empty,
unreadable, wrong column type), whether the item is good or bad, so a resumed run counts
exactly as a fresh one did.

Items: `(row, file, where)` for a row, with row a dict of fields and where e.g. "line 3
(byte 120)", or `badrows.Bad`.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterator

from skillscale.data.badrows import Bad

READ_AWAY = 1 << 20  # bytes per read when an over-long line is read past
BATCH_ROWS = 128  # rows per batch read (parquet, datasets): a batch of large documents stays small
MAX_ROW_BYTES = 16 << 20  # the schema's default max_row_bytes


def _ascii_compatible(enc: str) -> bool:
    """NUL and ASCII bytes mean themselves in this encoding (utf-8, latin-1, cp1252...), so a
    NUL can be found in the raw bytes, before decoding."""
    try:
        return "\x00a\n".encode(enc) == b"\x00a\n"
    except LookupError:
        return False


def _decode(data: bytes, enc: str, file: str, where: str, base: int) -> str | Bad:
    """The text of `data` (starting at byte `base` of the file), or why it is bad."""
    ascii_nul = _ascii_compatible(enc)
    if ascii_nul and (i := data.find(b"\x00")) >= 0:
        return Bad("nul_byte", file, where or f"byte {base + i}", "a NUL byte (a binary file?)")
    try:
        text = data.decode(enc)
    except UnicodeDecodeError as e:
        at = base + e.start
        return Bad(
            "undecodable",
            file,
            where or f"byte {at}",
            f"byte 0x{data[e.start]:02x} does not decode as {enc} (set {{key}}.encoding if the files have another)",
        )
    if not ascii_nul and (i := text.find("\x00")) >= 0:
        at = base + len(text[:i].encode(enc))
        return Bad("nul_byte", file, where or f"byte {at}", "a NUL character (a binary file?)")
    return text


def _too_long(file: str, where: str, n: int, limit: int) -> Bad:
    why = f"{n:,} bytes, over {{key}}.max_row_bytes={limit:,} (a data dump or minified file?)"
    return Bad("too_long", file, where, why)


def _lines(f, limit: int) -> Iterator[tuple[int, int, bytes | int]]:
    """(line number, byte offset, bytes) of every non-blank line; for a line over `limit`
    its length instead: its rest is read away in chunks (never held whole, never read twice)."""
    offset, no = 0, 0
    while line := f.readline(limit + 1):
        no, start = no + 1, offset
        offset += len(line)
        if len(line) > limit and not line.endswith(b"\n"):
            while not line.endswith(b"\n") and (line := f.readline(READ_AWAY)):
                offset += len(line)
            yield no, start, offset - start
        elif line.strip():
            yield no, start, line


def _json_rows(file: str, enc: str, limit: int, skip: int):
    """A JSON-lines file's items past `skip` (or a JSON file holding one array of objects);
    returns how many items the file holds."""
    with open(file, "rb") as f:
        head = f.read(64).lstrip()
        f.seek(0)
        if head.startswith((b"[", codecs.BOM_UTF8 + b"[")):
            return (yield from _past(_json_array(file, f.read(), enc), skip))
        n = 0
        for no, start, line in _lines(f, limit):
            n += 1
            if n <= skip:
                continue
            where = f"line {no} (byte {start})"
            if isinstance(line, int):
                yield _too_long(file, where, line, limit)
                continue
            if no == 1 and line.startswith(codecs.BOM_UTF8) and enc.replace("-", "").lower() == "utf8":
                line, start = line[3:], start + 3
            text = _decode(line, enc, file, "", start)
            if isinstance(text, Bad):
                text.where = f"line {no} ({text.where})"
                yield text
                continue
            try:
                row = json.loads(text)
            except ValueError as e:
                yield Bad("unparsable", file, where, f"not valid JSON: {e}")
                continue
            if not isinstance(row, dict):
                yield Bad("not_an_object", file, where, f"a JSON {type(row).__name__}, not an object of fields")
                continue
            yield row, file, where
    if n == 0:
        return (yield from _past([Bad("empty_file", file, "", "an empty file (no JSON line)")], skip))
    return n


def _json_array(file: str, data: bytes, enc: str) -> Iterator:
    """A .json file holding one array: its objects, or the file as one bad item."""
    text = _decode(data, enc, file, "", 0)
    if isinstance(text, Bad):
        yield text
        return
    try:
        rows = json.loads(text.lstrip("\ufeff"))
    except ValueError as e:
        yield Bad("unparsable", file, "", f"not valid JSON: {e}")
        return
    if not rows:
        yield Bad("empty_file", file, "", "an empty JSON array")
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            yield row, file, f"element {i}"
        else:
            yield Bad("not_an_object", file, f"element {i}", f"a JSON {type(row).__name__}, not an object of fields")


def _text_file(file: str, enc: str, limit: int) -> Iterator:
    """A one-document text file, as `datasets`' text builder reads it (universal newlines)."""
    size = os.path.getsize(file)
    if size == 0:
        yield Bad("empty_file", file, "", "an empty file")
        return
    if size > limit:  # known from its size: never read
        yield _too_long(file, "", size, limit)
        return
    with open(file, "rb") as f:
        text = _decode(f.read(), enc, file, "", 0)
    if isinstance(text, Bad):
        yield text
        return
    yield {"text": text.replace("\r\n", "\n").replace("\r", "\n")}, file, ""


def _parquet_rows(file: str, spec: dict, fields: list[str] | None, skip: int):
    """A parquet file's rows (only `fields`) past `skip`, or the file as one bad item;
    returns how many items the file holds."""
    # deferred: pyarrow takes a second to import: only when a source is read
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(file)
    except Exception as e:
        return (yield from _past([Bad("unreadable", file, "", f"not parquet: {type(e).__name__}: {e}")], skip))
    if pf.metadata.num_rows == 0:
        return (yield from _past([Bad("empty_file", file, "", "a parquet file without rows")], skip))
    schema = pf.schema_arrow
    tf = spec.get("text_field", "text")
    if not spec.get("template") and tf in schema.names:
        t = schema.field(tf).type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view"):
            bad = Bad("column_type", file, "", f"column {tf!r} ({{key}}.text_field) is {t}, not a string")
            return (yield from _past([bad], skip))
    cols = [c for c in fields if c in schema.names] if fields is not None else None
    n = 0
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=cols):
            if n + batch.num_rows <= skip:
                n += batch.num_rows
                continue
            first = max(0, skip - n)
            data = batch.slice(first).to_pydict()
            keys = list(data)
            for i, vals in enumerate(zip(*data.values())):
                yield dict(zip(keys, vals)), file, f"row index {n + first + i}"
            n += batch.num_rows
    except Exception as e:  # a torn page: the rest of the file is one bad item
        bad = Bad("unreadable", file, f"row index {n}", f"stops reading: {type(e).__name__}: {e}")
        return n + (yield from _past([bad], max(0, skip - n)))
    return n


def _past(its, skip: int):
    """Yield the items past `skip`; returns how many there were in all."""
    n = 0
    for it in its:
        n += 1
        if n > skip:
            yield it
    return n


def items(spec: dict, files: list[str], fmt: str, fields: list[str] | None, skip: int = 0) -> Iterator:
    """Every item of `files` in order, from item `skip` on (earlier ones are counted, not parsed
    where the format allows: a text file is one item without being read)."""
    enc, limit = spec.get("encoding") or "utf-8", spec.get("max_row_bytes") or MAX_ROW_BYTES
    for file in files:
        try:
            if fmt == "text":
                if skip:
                    skip -= 1
                    continue
                yield from _text_file(file, enc, limit)
            elif fmt == "parquet":
                skip = max(0, skip - (yield from _parquet_rows(file, spec, fields, skip)))
            else:
                skip = max(0, skip - (yield from _json_rows(file, enc, limit, skip)))
        except OSError as e:  # gone or unreadable since the glob (permissions, a broken disk): one bad item
            if skip:
                skip -= 1
                continue
            yield Bad("unreadable", file, "", f"cannot be read: {type(e).__name__}: {e}")
