"""A source's training tokens as many fixed-size shard files with an index, written resumably.

    shards/<source>/00000.bin ...   token ids (uint16 when the vocabulary fits, else uint32),
                                    whole documents, each followed by EOS
    shards/<source>/index.json      the files, their token counts and sha256: written last,
                                    so a store without it is never read by training
    shards/<source>/progress.json   how far a preparation got (removed when it finishes)

A shard file is closed at the first chunk boundary past `shard_tokens`, written under a
temporary name (NNNNN.bin.part) and renamed, and only then recorded in progress.json together with how many
rows of the source stream it consumed. A killed preparation restarted with the same settings
skips those rows and continues with the next shard file; a half-written file is never named
by the progress record, so nothing torn is ever trusted.

`ShardedStore` reads a finished source for training with the `Shard` contract
(`n_seqs`, `sequences_at`): a sequence never spans two files (each file loses < seq_len + 1
tokens at its end), so reading one is one slice of one memmap.
"""

from __future__ import annotations

import hashlib
import json
import os
from itertools import chain
from pathlib import Path

import numpy as np

from skillscale import common


def dtype_for(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class ShardWriter:
    """Appends tokenized documents to a source's shard folder; resumable at file boundaries.

    Tokens go straight to the open file (hashed as they are written), so memory holds one
    chunk, not one shard file; the file gets its name only when it is complete."""

    def __init__(self, folder: Path, dtype: str, eos_id: int, shard_tokens: int, fingerprint: str):
        self.folder, self.dtype, self.eos = Path(folder), np.dtype(dtype), eos_id
        self.shard_tokens, self.fingerprint = shard_tokens, fingerprint
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "index.json").unlink(missing_ok=True)  # unfinished from here on
        self.state = self._load_progress()
        self._file = None  # the open shard file: (handle, temporary path, sha256)
        self._buf_tokens = self._buf_docs = self._buf_bytes = 0

    # -- resume -----------------------------------------------------------------------------
    def _load_progress(self) -> dict:
        fresh = {
            "fingerprint": self.fingerprint,
            "rows_done": 0,
            "files": [],
            "n_docs": 0,
            "n_bytes": 0,
            "n_tokens": 0,
            "extra": {},
        }
        path = self.folder / "progress.json"
        if path.exists():
            try:
                st = json.loads(path.read_text())
            except ValueError:
                st = None
            if (
                st
                and st.get("fingerprint") == self.fingerprint
                and all(
                    (self.folder / f["file"]).exists()
                    and (self.folder / f["file"]).stat().st_size == f["n_tokens"] * self.dtype.itemsize
                    for f in st["files"]
                )
            ):
                self._remove_strays({f["file"] for f in st["files"]})
                return st
        self._remove_strays(set())  # other settings or a torn record: start over
        return fresh

    def _remove_strays(self, keep: set) -> None:
        for p in [*self.folder.glob("*.bin"), *self.folder.glob("*.bin.part")]:
            if p.name not in keep:
                p.unlink()

    @property
    def resumed_rows(self) -> int:
        return self.state["rows_done"]

    @property
    def n_tokens(self) -> int:
        return self.state["n_tokens"] + self._buf_tokens

    @property
    def n_docs(self) -> int:
        return self.state["n_docs"] + self._buf_docs

    # -- writing ----------------------------------------------------------------------------
    def add(self, ids: list[list[int]], n_bytes: int, rows_done: int, extra: dict) -> None:
        """Documents `ids` (token lists), after which `rows_done` rows of the stream are consumed;
        `extra` (small: held-out rows so far) is saved with the progress at each file boundary."""
        if ids:
            for x in ids:  # the lists are ours (fresh from the tokenizer): append EOS in place
                x.append(self.eos)
            n = sum(map(len, ids))
            arr = np.fromiter(chain.from_iterable(ids), dtype=self.dtype, count=n)
            if self._file is None:
                tmp = self.folder / f"{len(self.state['files']):05d}.bin.part"
                self._file = (open(tmp, "wb"), tmp, hashlib.sha256())  # noqa: SIM115 (open across add()s; _flush closes it)
            f, _, h = self._file
            data = arr.tobytes()
            f.write(data)
            h.update(data)
            self._buf_tokens += arr.size
            self._buf_docs += len(ids)
            self._buf_bytes += n_bytes
        if self._buf_tokens >= self.shard_tokens:
            self._flush(rows_done, extra)

    def _flush(self, rows_done: int, extra: dict) -> None:
        if self._file is not None:
            f, tmp, h = self._file
            f.flush()
            os.fsync(f.fileno())
            f.close()
            name = tmp.name[: -len(".part")]
            os.replace(tmp, self.folder / name)
            self.state["files"].append({"file": name, "n_tokens": int(self._buf_tokens), "sha256": h.hexdigest()})
            self.state["n_tokens"] += int(self._buf_tokens)
            self.state["n_docs"] += self._buf_docs
            self.state["n_bytes"] += self._buf_bytes
            self._file = None
        self._buf_tokens = self._buf_docs = self._buf_bytes = 0
        self.state["rows_done"] = rows_done
        self.state["extra"] = extra
        common.write_json(self.folder / "progress.json", self.state)

    def checkpoint(self, rows_done: int, extra: dict) -> None:
        """Close the open file (however short) and record the progress: a rerun resumes here."""
        self._flush(rows_done, extra)

    def finish(self, rows_done: int, extra: dict, meta: dict) -> dict:
        """Write the last file and the index; returns the index (without the file list's bulk)."""
        self._flush(rows_done, extra)
        index = {
            "dtype": self.dtype.name,
            "n_tokens": self.state["n_tokens"],
            "n_docs": self.state["n_docs"],
            "n_bytes": self.state["n_bytes"],
            "files": self.state["files"],
            **meta,
        }
        common.write_json(self.folder / "index.json", index)
        (self.folder / "progress.json").unlink(missing_ok=True)
        return index


class ShardedStore:
    """A finished source (index.json + shard files) as `n_seqs` sequences of seq_len + 1 tokens."""

    def __init__(self, folder: Path, seq_len: int):
        folder = Path(folder)
        index = folder / "index.json"
        if not index.exists():
            raise FileNotFoundError(
                f"{index}: shard index missing (preparation unfinished?); rerun the prepare_data rule"
            )
        self.meta = json.loads(index.read_text())
        self.width = seq_len + 1
        self.maps, counts = [], []
        for f in self.meta["files"]:
            path = folder / f["file"]
            mm = np.memmap(path, dtype=self.meta["dtype"], mode="r") if path.exists() else None
            if mm is None or mm.size != f["n_tokens"]:
                raise ValueError(
                    f"{path}: missing or not the {f['n_tokens']} tokens its index says; rerun the prepare_data rule"
                )
            self.maps.append(mm)
            counts.append(mm.size // self.width)
        self.first = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        self.n_seqs = int(self.first[-1])
        if self.n_seqs < 1:
            raise ValueError(f"{folder}: {self.meta['n_tokens']} tokens, fewer than one sequence of {self.width}")

    def sequences_at(self, j: np.ndarray) -> np.ndarray:
        j = np.asarray(j, dtype=np.int64)
        f = np.searchsorted(self.first, j, side="right") - 1
        out = np.empty((j.size, self.width), dtype=np.int64)
        ar = np.arange(self.width)
        for k in np.unique(f):
            sel = f == k
            local = j[sel] - self.first[k]
            out[sel] = self.maps[k][local[:, None] * self.width + ar[None, :]]
        return out
