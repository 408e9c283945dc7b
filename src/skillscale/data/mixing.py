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

from skillscale.data.datastore import ShardedStore


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


def nested_counts(first: int, count: int, ratios: list[float]) -> list[tuple[int, np.ndarray]]:
    """Which of sequences first..first+count-1 go to each of several streams.

    Stream k takes a Bresenham share ratios[k] of the sequences the streams before it left
    (ratios[k] = share_k / (1 - shares of streams 0..k-1), the last one 1). Returns, per
    stream, (how many it took before `first`, mask over the count sequences). With two
    streams this is exactly code_mask; with L streams each one's count over any prefix is
    within L sequences of its share (within one per level), and it depends on the index
    only, so any step's batch is computed without replaying the run."""
    out = []
    rest = np.ones(count, dtype=bool)
    for r in ratios:
        m = np.zeros(count, dtype=bool)
        k_first, k_count = first, int(rest.sum())
        took = code_mask(k_first, k_count, r) if k_count else np.zeros(0, dtype=bool)
        m[np.flatnonzero(rest)[took]] = True
        before = n_code(k_first, r)
        out.append((before, m))
        rest &= ~m
        first -= before  # sequences left for later streams among the first `first`
    return out


def ratios_of(shares: list[float]) -> list[float]:
    out, left = [], 1.0
    for i, s in enumerate(shares):
        out.append(1.0 if i == len(shares) - 1 or left <= 1e-12 else min(1.0, s / left))
        left -= s
    return out


def taken(n: int, shares: list[float]) -> list[int]:
    """Sequences each stream takes among the first n (consistent with nested_counts)."""
    out = []
    for r in ratios_of(shares):
        c = n_code(n, r)
        out.append(c)
        n -= c
    return out


def shares(srcs: dict, code_frac: float) -> dict[str, float]:
    """Each source's share of a cell's training sequences, in stream order: code sources
    first (the ablation axis; exact code_mask spread for a single code source), then the
    fixed-share ones, then knowledge. Sources of one role split its share by weight."""
    fixed = {k: s["share"] for k, s in srcs.items() if s.get("share")}
    rest = 1.0 - sum(fixed.values())
    role_share = {"code": code_frac, "knowledge": rest - code_frac}
    out = {}
    for role in ("code", None, "knowledge"):
        if role is None:
            out |= fixed
            continue
        members = {k: s["weight"] for k, s in srcs.items() if s["role"] == role and not s.get("share")}
        total = sum(members.values())
        for k, w in members.items():
            out[k] = role_share[role] * w / total
    return {k: v for k, v in out.items() if v > 1e-12}


class Mixture:
    """Training batches drawn from several stores at fixed shares of sequences.

    `Mixture(code, knowledge, p, ...)` is the two-source mix of the embedded study;
    `Mixture.of({name: (store, share)}, ...)` any number of sources (shares summing to 1),
    the first stream getting the exact code_mask spread."""

    def __init__(self, code, knowledge, p: float, batch_size: int, seed: int):
        self._setup({"code": (code, p), "knowledge": (knowledge, 1.0 - p)}, batch_size, seed)
        self.code, self.know, self.p = code, knowledge, p

    @classmethod
    def of(cls, sources: dict, batch_size: int, seed: int) -> Mixture:
        self = cls.__new__(cls)
        self._setup(sources, batch_size, seed)
        return self

    def _setup(self, sources: dict, batch_size: int, seed: int) -> None:
        total = sum(sh for _, sh in sources.values())
        if abs(total - 1) > 1e-6:
            shares = {k: sh for k, (_, sh) in sources.items()}
            raise ValueError(f"mixture shares sum to {total}, not 1: {shares}")
        self.names = list(sources)
        self.stores = {k: st for k, (st, _) in sources.items()}
        self.shares = [sh for _, sh in sources.values()]
        self.ratios = ratios_of(self.shares)
        self.batch_size = batch_size
        self.width = next(iter(self.stores.values())).width
        self.streams = {k: ShuffledStream(st, seed, k) for k, st in self.stores.items()}

    def batch(self, step: int) -> np.ndarray:
        first = step * self.batch_size
        out = np.empty((self.batch_size, self.width), dtype=np.int64)
        for name, (before, mask) in zip(self.names, nested_counts(first, self.batch_size, self.ratios)):
            nk = int(mask.sum())
            if nk:
                out[mask] = self.streams[name].sequences(before, nk)
        return out

    def summary(self, steps: int) -> dict:
        n = steps * self.batch_size
        counts = dict(zip(self.names, taken(n, self.shares)))
        roles = getattr(self, "roles", None) or {k: k for k in self.names}
        n_code_seqs = sum(c for k, c in counts.items() if roles[k] == "code")
        return {
            "sequences": n,
            "code_sequences": n_code_seqs,
            "code_token_fraction": n_code_seqs / n if n else 0.0,
            "sequences_by_source": counts,
            "share_by_source": {k: (c / n if n else 0.0) for k, c in counts.items()},
            "epochs": {k: c / self.stores[k].n_seqs for k, c in counts.items()},
            "roles": roles,
        }


def for_cell(
    data_dir: Path, manifest: dict, cfg: dict, code_frac: float, seq_len: int, batch_size: int, seed: int
) -> Mixture:
    """A cell's mixture from a prepared data folder: the embedded two-shard layout, or the
    configured sources' sharded stores at their shares (`shares`)."""
    data_dir = Path(data_dir)
    if manifest.get("layout") != "sources":
        return Mixture(
            Shard(data_dir / "shards" / "code.bin", seq_len),
            Shard(data_dir / "shards" / "knowledge.bin", seq_len),
            code_frac,
            batch_size,
            seed,
        )
    sh = shares(cfg["data"]["sources"], code_frac)
    mix = Mixture.of(
        {k: (ShardedStore(data_dir / manifest["shards"][k]["dir"], seq_len), v) for k, v in sh.items()},
        batch_size,
        seed,
    )
    mix.roles = {k: cfg["data"]["sources"][k]["role"] for k in sh}
    return mix
