"""Per-cell sampling of training sequences so that a fraction p of tokens is code.

Each optimizer step takes `batch_size` sequences of `seq_len + 1` tokens. Sequence i of
the run is code exactly when floor((i+1)p) > floor(ip) (a Bresenham spread), so after any
prefix of the run the code share is within one sequence of p, and over the whole run it is
floor(n p) / n.

Within a source, the k-th sequence the run takes is sequence perm_e[k mod n] of its shard,
where n is the shard's sequence count and perm_e a seeded permutation drawn afresh for
every epoch e = k // n. So a batch mixes sequences from all over the corpus (reading them
in shard order put one or two documents in each step, and a trunk's loss swung by up to
0.9 nats between adjacent 25-step windows), every epoch sees every sequence once, and two
seeds differ in the whole data order. Which sequences a step gets depends only on
(step, seed), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np


class Shard:
    def __init__(self, path: Path, seq_len: int, vocab_size: int | None = None):
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.exists() or not meta_path.exists():
            raise FileNotFoundError(f"{path}: token shard (or its .json metadata) missing; rerun the prepare_data rule")
        self.meta = json.loads(meta_path.read_text())
        self.tokens = np.memmap(path, dtype=np.uint16, mode="r")
        if self.tokens.size != self.meta["n_tokens"]:
            raise ValueError(
                f"{path}: holds {self.tokens.size} tokens but its metadata says {self.meta['n_tokens']}"
                " (truncated or rewritten); rerun the prepare_data rule"
            )
        self.width = seq_len + 1
        self.n_seqs = self.tokens.size // self.width
        if self.n_seqs < 1:
            raise ValueError(f"{path}: {self.tokens.size} tokens, fewer than one sequence of {self.width}")

    def sequences_at(self, j: np.ndarray) -> np.ndarray:
        """Sequences number j (each < n_seqs) of the shard, as rows of seq_len + 1 tokens."""
        idx = j[:, None] * self.width + np.arange(self.width)[None, :]
        return np.asarray(self.tokens[idx], dtype=np.int64)


class ShuffledStream:
    """The endless stream of a shard's sequences in seeded order, one fresh permutation per epoch."""

    def __init__(self, shard: Shard, seed: int, source: str):
        self.shard, self.n = shard, shard.n_seqs
        # a source's stream depends on the run's seed and the source's name only
        self.key = (seed, zlib.crc32(source.encode()))
        self._perms: dict[int, np.ndarray] = {}

    def perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) >= 2:  # a step spans at most two epochs
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng((*self.key, epoch)).permutation(self.n)
        return self._perms[epoch]

    def sequences(self, first: int, count: int) -> np.ndarray:
        """Items first .. first+count-1 of the stream."""
        k = first + np.arange(count)
        epoch, pos = np.divmod(k, self.n)
        j = np.empty(count, dtype=np.int64)
        for e in np.unique(epoch):
            sel = epoch == e
            j[sel] = self.perm(int(e))[pos[sel]]
        return self.shard.sequences_at(j)


def code_mask(first: int, count: int, p: float) -> np.ndarray:
    i = np.arange(first, first + count, dtype=np.float64)
    return np.floor((i + 1) * p + 1e-9) > np.floor(i * p + 1e-9)


def n_code(n: int, p: float) -> int:
    """Code sequences among the first n (consistent with code_mask)."""
    return int(np.floor(n * p + 1e-9))


class Mixture:
    def __init__(self, code: Shard, knowledge: Shard, p: float, batch_size: int, seed: int):
        self.code, self.know, self.p, self.batch_size = code, knowledge, p, batch_size
        self.streams = {"code": ShuffledStream(code, seed, "code"), "know": ShuffledStream(knowledge, seed, "knowledge")}

    def batch(self, step: int) -> np.ndarray:
        first = step * self.batch_size
        mask = code_mask(first, self.batch_size, self.p)
        c_before = n_code(first, self.p)
        k_before = first - c_before
        out = np.empty((self.batch_size, self.code.width), dtype=np.int64)
        nc = int(mask.sum())
        if nc:
            out[mask] = self.streams["code"].sequences(c_before, nc)
        if nc < self.batch_size:
            out[~mask] = self.streams["know"].sequences(k_before, self.batch_size - nc)
        return out

    def summary(self, steps: int) -> dict:
        n = steps * self.batch_size
        nc = n_code(n, self.p)
        return {
            "sequences": n,
            "code_sequences": nc,
            "code_token_fraction": nc / n if n else 0.0,
            "epochs": {"code": nc / self.code.n_seqs, "knowledge": (n - nc) / self.know.n_seqs},
        }
