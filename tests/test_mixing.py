import json

import numpy as np
import pytest

from skillscale.data.mixing import Mixture, Shard, code_mask, n_code


def make_shard(path, values, n):
    arr = np.full(n, values, dtype=np.uint16)
    arr.tofile(path)
    path.with_suffix(".json").write_text(json.dumps({"n_tokens": n}))
    return path


@pytest.mark.parametrize("p", [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.8, 1.0])
def test_code_fraction_is_exact(tmp_path, p):
    code = Shard(make_shard(tmp_path / "code.bin", 1, 5000), seq_len=16)
    know = Shard(make_shard(tmp_path / "know.bin", 2, 7000), seq_len=16)
    mix = Mixture(code, know, p, batch_size=8, seed=0)
    steps = 50
    tokens = np.concatenate([mix.batch(s) for s in range(steps)])
    frac = (tokens == 1).mean()
    assert frac == pytest.approx(n_code(steps * 8, p) / (steps * 8))
    assert abs(frac - p) <= 1 / (steps * 8)
    assert mix.summary(steps)["code_token_fraction"] == pytest.approx(frac)


def test_prefix_of_any_length_stays_within_one_sequence_of_p():
    m = code_mask(0, 1000, 0.3)
    assert np.all(np.abs(np.cumsum(m) - 0.3 * np.arange(1, 1001)) <= 1)


def test_batches_are_deterministic_and_wrap_with_epochs(tmp_path):
    code = Shard(make_shard(tmp_path / "c.bin", 1, 17 * 10), seq_len=16)  # 10 sequences
    np.arange(170, dtype=np.uint16).tofile(tmp_path / "c.bin")
    code = Shard(tmp_path / "c.bin", seq_len=16)
    know = Shard(make_shard(tmp_path / "k.bin", 2, 17 * 10), seq_len=16)
    a = Mixture(code, know, 1.0, batch_size=4, seed=3)
    b = Mixture(code, know, 1.0, batch_size=4, seed=3)
    assert all(np.array_equal(a.batch(s), b.batch(s)) for s in range(6))
    assert a.summary(5)["epochs"]["code"] == pytest.approx(2.0)


def test_truncated_shard_is_detected(tmp_path):
    p = make_shard(tmp_path / "c.bin", 1, 1000)
    p.write_bytes(p.read_bytes()[:1000])  # half the tokens
    with pytest.raises(ValueError, match="truncated"):
        Shard(p, seq_len=16)


def test_missing_shard_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        Shard(tmp_path / "missing.bin", seq_len=16)


def test_each_epoch_takes_every_sequence_once_in_a_seeded_order(tmp_path):
    n = 37
    np.repeat(np.arange(n, dtype=np.uint16), 17).tofile(tmp_path / "c.bin")  # sequence j holds token j
    (tmp_path / "c.json").write_text(json.dumps({"n_tokens": n * 17}))
    know = Shard(make_shard(tmp_path / "k.bin", 999, 17 * 5), seq_len=16)
    code = Shard(tmp_path / "c.bin", seq_len=16)
    order = {
        seed: np.concatenate([Mixture(code, know, 1.0, 5, seed).batch(s)[:, 0] for s in range(3 * n // 5)])
        for seed in (0, 1)
    }
    for seed, seqs in order.items():
        for e in range(2):  # the first two whole epochs: every sequence exactly once each
            assert sorted(seqs[e * n : (e + 1) * n]) == list(range(n)), (seed, e)
        assert not np.array_equal(seqs[:n], seqs[n : 2 * n])  # a fresh order every epoch
    assert not np.array_equal(order[0][:n], order[1][:n])  # seeds differ in the whole order
    # a batch draws from all over the shard, not a run of neighbours
    assert np.abs(np.diff(order[0][:n])).mean() > 5


def test_several_sources_keep_their_shares_over_every_prefix():
    from skillscale.data.mixing import nested_counts, ratios_of, taken

    shares = [0.3, 0.2, 0.15, 0.35]
    counts = np.zeros(len(shares), dtype=int)
    for step in range(400):
        parts = nested_counts(step * 16, 16, ratios_of(shares))
        masks = np.array([m for _, m in parts])
        assert (masks.sum(0) == 1).all()  # every sequence goes to exactly one source
        assert [b for b, _ in parts] == list(counts)  # counts before a step need no replay
        counts += masks.sum(1)
        n = (step + 1) * 16
        assert np.abs(counts - np.array(shares) * n).max() <= len(shares)
        assert list(counts) == taken(n, shares)


def test_sharded_store_reads_what_was_written(tmp_path):
    from skillscale.data.datastore import ShardedStore, ShardWriter

    w = ShardWriter(tmp_path / "s", "uint16", 0, 1000, "fp")
    docs = [list(range(1 + i, 300 + i)) for i in range(20)]
    for i in range(0, 20, 4):
        w.add([list(d) for d in docs[i : i + 4]], 0, i + 4, {})
    index = w.finish(20, {}, {})
    assert len(index["files"]) >= 2 and not (tmp_path / "s" / "progress.json").exists()
    flat = np.concatenate([np.fromfile(tmp_path / "s" / f["file"], dtype=np.uint16) for f in index["files"]])
    assert flat.size == sum(len(d) + 1 for d in docs) and (flat == 0).sum() == 20
    store = ShardedStore(tmp_path / "s", 31)
    rows = store.sequences_at(np.arange(store.n_seqs))
    # sequence j is a slice of its own file: never across a file boundary
    starts = np.cumsum([0] + [f["n_tokens"] for f in index["files"]])
    per = [f["n_tokens"] // 32 for f in index["files"]]
    j = 0
    for k, n in enumerate(per):
        for i in range(n):
            assert (rows[j] == flat[starts[k] + 32 * i : starts[k] + 32 * (i + 1)]).all()
            j += 1
    assert j == store.n_seqs
