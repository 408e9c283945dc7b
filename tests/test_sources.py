"""Studies on configured sources (data.sources): local corpora in real shapes, end to end.

The corpora (tools/samplecorpora.py): a parquet dataset with a `text` column, a jsonl code dataset
with `content` and `lang` columns (non-Python rows to be filtered out), a folder of plain
text files as a fixed 20% background. config/studies/test-sources.yaml runs on them.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skillscale import config
from skillscale import study as studymod
from skillscale.data import mixing
from skillscale.data import prepare as data
from skillscale.data.corpora import DataError
from skillscale.data.datastore import ShardedStore, sha256_file
from skillscale.data.tokenizer import BPETokenizer
from skillscale.tools import samplecorpora

STUDY = ["--configfile", "config/studies/test-sources.yaml"]


@pytest.fixture(scope="module")
def study(sources_study):
    return sources_study  # (conftest: the study runs with benchmarks too, for test_workflow_benchmarks)


def study_cfg(wd: Path) -> dict:
    import contextlib

    with contextlib.chdir(wd):  # the study's file globs are relative to the workflow folder
        return studymod.load_layers(["config/config.yaml", "config/studies/test-sources.yaml"])


@pytest.mark.workflow
def test_realised_proportions_hold_over_every_prefix(study):
    wd, r = study
    cfg = study_cfg(wd)
    manifest = json.loads((r / "data" / "manifest.json").read_text())
    seq_len, bs = cfg["model"]["seq_len"], cfg["train"]["batch_size"]
    # every sequence of every store, to tell which source a batch row came from
    owner = {}
    for name, meta in manifest["shards"].items():
        store = ShardedStore(r / "data" / meta["dir"], seq_len)
        for row in store.sequences_at(np.arange(store.n_seqs)):
            owner.setdefault(row.tobytes(), name)
    for rec in sorted(r.glob("cells/*/train.json")):
        t = json.loads(rec.read_text())
        cell = t["cell"]
        want = mixing.shares(cfg["data"]["sources"], cell["code_frac"])
        assert want == pytest.approx({"stdlib": cell["code_frac"], "web": 0.2, "wiki": 0.8 - cell["code_frac"]})
        assert t["mixture"]["share_by_source"] == pytest.approx(want, abs=3 / t["mixture"]["sequences"])
        assert t["mixture"]["code_token_fraction"] == pytest.approx(
            cell["code_frac"], abs=2 / t["mixture"]["sequences"]
        )
        assert set(t["mixture"]["epochs"]) == {"stdlib", "web", "wiki"}  # epochs of every source recorded
        mix = mixing.for_cell(r / "data", manifest, cfg, cell["code_frac"], seq_len, bs, cell["seed"])
        counts = dict.fromkeys(want, 0)
        for step in range(cell["steps"]):
            for row in mix.batch(step):
                counts[owner[row.tobytes()]] += 1
            n = (step + 1) * bs
            for k, share in want.items():  # the realised count over this prefix
                assert abs(counts[k] - share * n) <= 3, (rec.parent.name, step, k, counts)
        assert counts == t["mixture"]["sequences_by_source"]


@pytest.mark.workflow
def test_heldout_documents_never_reach_training(study):
    wd, r = study
    manifest = json.loads((r / "data" / "manifest.json").read_text())
    tok = BPETokenizer.load(r / "data" / "tokenizer.json")
    for name, meta in manifest["shards"].items():
        folder = r / "data" / meta["dir"]
        text = "".join(tok.decode(np.fromfile(folder / f["file"], dtype=meta["dtype"])) for f in meta["files"])
        held = [json.loads(line) for line in (r / "data" / "eval" / f"text_{name}.jsonl").read_text().splitlines()]
        assert held
        for row in held:  # a held-out document's opening is nowhere in the training text
            assert row["text"][:300] not in text, (name, row["id"])
        if name == "stdlib":
            assert "NOT PYTHON" not in text  # the lang filter dropped the Markdown rows
            fns = [json.loads(x) for x in (r / "data" / "eval" / "code_fn.jsonl").read_text().splitlines()]
            assert fns and all(f["context"] + f["target"] not in text for f in fns)  # functions of held-out files


@pytest.mark.workflow
def test_provenance_names_every_source_file_and_shard(study):
    wd, r = study
    m = json.loads((r / "data" / "manifest.json").read_text())
    assert set(m["sources"]) == {"wiki", "stdlib", "web"}
    for src in m["sources"].values():
        assert src["kind"] == "files" and src["files"]
        for f in src["files"]:
            assert Path(f["path"]).exists() and sha256_file(Path(f["path"])) == f["sha256"]
    assert len(m["sources"]["web"]["files"]) == len(list((wd / "corpora" / "web").glob("*.txt")))
    for sh in m["shards"].values():
        assert len(sh["files"]) >= 2  # several fixed-size shard files (data.shard_tokens)
        for f in sh["files"]:
            assert sha256_file(r / "data" / sh["dir"] / f["file"]) == f["sha256"]
    t = json.loads(next(r.glob("cells/*/train.json")).read_text())
    assert set(t["provenance"]["shard_sha256"]) == {"wiki", "stdlib", "web"}
    cells = pd.read_csv(r / "cells.csv")
    skills = {k: v for k, v in cells.groupby("metric").skill.first().items() if not k.startswith("bench:")}
    assert skills == {
        "text_wiki": "knowledge",
        "text_stdlib": "code",
        "text_web": "web",
        "knowledge_text": "knowledge",
        "code_text": "code",
        "code_fn": "code",
    }
    assert cells.value.between(0.5, 9).all()
    # the validation-mix analysis ran over the real sources' held-out text
    vc = pd.read_csv(r / "tables" / "validation_composition.csv")
    assert len(vc)
    # slopes against the real own shares: knowledge's is 1 - 0.2 (web) - code_frac; web has none
    ds = pd.read_csv(r / "tables" / "datamix_slopes.csv")
    assert not ds.metric.str.contains("text_web").any() and (ds.skill != "web").all()
    know = ds[(ds.skill == "knowledge") & ds.fractions.notna()]
    assert len(know) and all(set(str(f).split(",")) <= {"0.6", "0.2"} for f in know.fractions)


@pytest.mark.workflow
def test_claim1_counts_only_metrics_independent_of_the_ape(study):
    """knowledge_text pools text_wiki, code_text is text_stdlib (the one code source): claim 1
    counts neither, only code_fn and the benchmarks, and the summary says which and why."""
    _, r = study
    ape = pd.read_csv(r / "tables" / "ape_residuals.csv")
    use = ape.groupby("metric")[["in_aggregate", "claim1_counts", "claim1_note"]].first()
    parts = ["knowledge_text", "code_text", "text_wiki", "text_stdlib"]
    assert use.in_aggregate[parts].all() and not use.claim1_counts[parts].any()
    counted = set(use.index[use.claim1_counts])
    assert counted and all(m == "code_fn" or m.startswith("bench:") for m in counted), counted
    assert "pooled into code_text" in use.claim1_note["text_stdlib"]
    assert not use.claim1_counts["text_web"] and "neither knowledge nor code" in use.claim1_note["text_web"]
    rules = pd.read_csv(r / "tables" / "claims.csv").query("claim.str.startswith('1') and part != 'all'").rule
    listed = {m for rule in rules for m in rule.rsplit("(", 1)[1].rstrip(")").split(", ")} - {"none"}
    assert listed == counted & set(ape[ape.status == "ok"].metric)  # (the rule lists those with interior optima)
    summary = (r / "tables" / "summary.md").read_text()
    assert "Metrics claim 1 counts: " in summary and "- text_stdlib: not counted: pooled into code_text" in summary


# -- bad input: refused before any training, naming the key ----------------------------------
def base_cfg(tmp_path: Path, **sources_over) -> dict:
    samplecorpora.write(tmp_path / "corpora", wiki_docs=400, code_bytes=200_000)
    raw = config.read_yaml(Path(__file__).parents[1] / "config" / "studies" / "test-sources.yaml")
    for v in raw["data"]["sources"].values():
        v["files"] = str(tmp_path / v["files"])
    for k, v in sources_over.items():
        raw["data"]["sources"][k] = v if v is None else {**raw["data"]["sources"].get(k, {}), **v}
    raw["data"]["sources"] = {
        k: {f: x for f, x in v.items() if x is not None} for k, v in raw["data"]["sources"].items() if v is not None
    }
    return raw


def refused(tmp_path, raw, *needles):
    with pytest.raises((DataError, config.ConfigError)) as e:
        cfg = studymod.validate(raw)
        data.prepare(cfg, tmp_path / "data")
    for n in needles:
        assert n in str(e.value), str(e.value)
    assert not (tmp_path / "data" / "manifest.json").exists()
    return str(e.value)


def test_missing_text_field_is_refused(tmp_path):
    refused(
        tmp_path,
        base_cfg(tmp_path, stdlib={"text_field": "body"}),
        "data.sources.stdlib.text_field",
        "'body'",
        "content",
    )


def test_unknown_files_are_refused_at_validation(tmp_path):
    refused(
        tmp_path,
        base_cfg(tmp_path, wiki={"files": str(tmp_path / "nope" / "*.parquet")}),
        "data.sources.wiki.files",
        "matches no file",
    )


def test_empty_after_filtering_is_refused(tmp_path):
    refused(
        tmp_path,
        base_cfg(tmp_path, stdlib={"filters": {"lang": "Rust"}}),
        "data.sources.stdlib",
        "no training document",
        "filtered out",
        "filters",
    )


def test_hub_source_while_offline_is_refused(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # as in a job started with them set: the libraries read these at import, which an
    # earlier test may have done (else load_dataset retries the network for ~20 s first)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    raw = base_cfg(
        tmp_path,
        wiki=None,
        fineweb={"role": "knowledge", "kind": "hf", "path": "HuggingFaceFW/fineweb-edu", "name": "sample-10BT"},
    )
    refused(tmp_path, raw, "data.sources.fineweb", "HuggingFaceFW/fineweb-edu", "HF_HUB_OFFLINE")


def test_a_source_with_aggregate_false_is_scored_but_not_pooled(tmp_path):
    raw = base_cfg(tmp_path)
    raw["data"]["sources"]["manual"] = dict(raw["data"]["sources"]["wiki"], aggregate=False)
    m = data.prepare(studymod.validate(raw), tmp_path / "pooled")
    ev = tmp_path / "pooled" / "eval"
    assert m["metrics"]["text_manual"]["skill"] == "knowledge" and (ev / "text_manual.jsonl").read_text()
    # knowledge_text pools wiki alone (its file equals text_wiki's), not manual's held-out text
    assert (ev / "knowledge_text.jsonl").read_text() == (ev / "text_wiki.jsonl").read_text()
    refused(tmp_path, base_cfg(tmp_path, stdlib={"aggregate": False}), "every code source (stdlib) has aggregate")
    refused(tmp_path, base_cfg(tmp_path, web={"aggregate": False}), "data.sources.web.aggregate")
    refused(tmp_path, base_cfg(tmp_path, web={"encoding": "klingon"}), "data.sources.web.encoding", "'klingon'")


def test_shares_that_do_not_add_up_and_a_role_without_source_are_refused(tmp_path):
    refused(tmp_path, base_cfg(tmp_path, web={"share": 0.5}), "mix.code_fractions", "exceed 1")
    refused(tmp_path, base_cfg(tmp_path, stdlib=None), "no source has role: code")
    refused(tmp_path, base_cfg(tmp_path, web={"share": None}), "data.sources.web.share")


def test_tokenizer_file_that_does_not_load_is_refused(tmp_path):
    bad = tmp_path / "tok.json"
    bad.write_text("{not a tokenizer")
    raw = base_cfg(tmp_path)
    raw["data"]["tokenizer"] = {"pretrained": str(bad)}
    refused(tmp_path, raw, "data.tokenizer.pretrained", str(bad))


def test_a_cell_repeating_a_source_too_often_is_refused_naming_both(tmp_path):
    # size known at planning (a max_tokens cap): refused by the config check itself
    raw = base_cfg(tmp_path, web={"max_tokens": 2000})
    raw["data"]["max_epochs"] = 4
    with pytest.raises(config.ConfigError, match=r"cell code0.20_C\S+ would take at least .* of source 'web'"):
        studymod.validate(raw)
    # size known once prepared (5 documents): refused by the preparation, before training
    raw = base_cfg(tmp_path, web={"max_documents": 5})
    raw["data"]["max_epochs"] = 4
    msg = refused(tmp_path, raw, "data.max_epochs", "of source 'web'", "cell code0.20_C", "epochs")
    assert "at planning" not in msg


def test_pretrained_tokenizer_and_uint32_ids(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    # a tokenizer.json with a vocabulary past uint16 (every byte + many filler tokens)
    vocab = {c: i for i, c in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    vocab |= {f"filler{i}": len(vocab) + i for i in range(70000)}
    vocab["</s>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    (tmp_path / "hf_tok").mkdir()
    tok.save(str(tmp_path / "hf_tok" / "tokenizer.json"))
    raw = base_cfg(tmp_path)
    # a folder, as HF saves it; the models' vocabulary must be the tokenizer's
    raw["data"]["tokenizer"] = {"pretrained": str(tmp_path / "hf_tok"), "vocab_size": len(vocab)}
    raw["grid"]["budgets"] = [6e13, 2e14]  # a 70k vocabulary's embeddings make every model ~1M parameters
    m = data.prepare(studymod.validate(raw), tmp_path / "data")
    assert m["tokenizer"]["vocab_size"] > 65536 and m["tokenizer"]["dtype"] == "uint32"
    assert all(s["dtype"] == "uint32" for s in m["shards"].values())
    store = ShardedStore(tmp_path / "data" / "shards" / "wiki", 64)
    assert store.sequences_at(np.arange(3)).max() < m["tokenizer"]["vocab_size"]


def test_killed_preparation_resumes_from_its_shard_and_matches_an_uninterrupted_one(tmp_path):
    raw = base_cfg(tmp_path)
    raw["data"]["shard_tokens"] = 5000
    cfg_path = tmp_path / "study.yaml"
    cfg_path.write_text(config.dump(studymod.validate(raw)))
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", ""))

    def prep(out):
        return [sys.executable, "-m", "skillscale.data", "--config", str(cfg_path), "--out", str(out)]

    subprocess.run(prep(tmp_path / "whole"), check=True, env=env, capture_output=True)
    whole = json.loads((tmp_path / "whole" / "manifest.json").read_text())

    p = subprocess.Popen(prep(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = tmp_path / "killed" / "shards" / "stdlib" / "progress.json"
    while p.poll() is None and not (
        progress.exists() and len(json.loads(progress.read_text() or "{}").get("files", [])) >= 2
    ):
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "killed" / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="index.json"):  # nothing training would trust
        ShardedStore(tmp_path / "killed" / "shards" / "stdlib", 64)
    r = subprocess.run(prep(tmp_path / "killed"), check=True, env=env, capture_output=True, text=True)
    assert "stdlib: resuming after" in r.stderr
    again = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert {k: v["sha256"] for k, v in again["shards"].items()} == {k: v["sha256"] for k, v in whole["shards"].items()}
    assert again["eval"] == whole["eval"]


def test_an_embedded_corpus_mixes_with_local_files(tmp_path):
    raw = base_cfg(
        tmp_path,
        stdlib={
            "kind": "embedded",
            "corpus": "stdlib",
            "files": None,
            "text_field": "text",
            "id_field": None,
            "filters": None,
            "max_documents": 40,
        },
    )
    m = data.prepare(studymod.validate(raw), tmp_path / "data")
    assert m["sources"]["stdlib"] == m["sources"]["stdlib"] | {"kind": "embedded", "corpus": "stdlib"}
    assert m["shards"]["stdlib"]["n_docs"] == 40 and m["metrics"]["text_stdlib"]["skill"] == "code"


def test_heldout_documents_can_come_from_their_own_files(tmp_path):
    raw = base_cfg(tmp_path)
    parts = sorted((tmp_path / "corpora" / "knowledge").glob("*.parquet"))
    raw["data"]["sources"]["wiki"] |= {"files": str(parts[0]), "heldout_files": str(parts[1])}
    m = data.prepare(studymod.validate(raw), tmp_path / "data")
    import pyarrow.parquet as pq

    train_ids = {f"wiki:{i}" for i in pq.read_table(parts[0]).column("id").to_pylist()}
    held = [json.loads(x) for x in (tmp_path / "data" / "eval" / "text_wiki.jsonl").read_text().splitlines()]
    assert held and not {r["id"] for r in held} & train_ids
    assert m["shards"]["wiki"]["n_docs"] == len(train_ids)  # every training-file document, none held out by hash
    assert [f["path"] for f in m["sources"]["wiki"]["heldout_files"]] == [str(parts[1])]


def test_tokenizer_sample_is_seeded_spread_over_a_bounded_window_and_within_its_quota(tmp_path):
    from skillscale.data import streamed
    from skillscale.data.corpora import is_heldout

    docs = [{"id": i, "text": f"document {i} " + "word " * (20 + i % 50)} for i in range(3000)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    spec = {
        "role": "knowledge",
        "kind": "files",
        "files": str(tmp_path / "docs.jsonl"),
        "text_field": "text",
        "id_field": "id",
    }
    quota, frac, seed = 20_000, 0.1, 7
    texts, info = streamed.tokenizer_sample("s", spec, quota, frac, seed)
    # what it must be: the window's training documents by key, as far as the quota holds them
    window, got = [], 0
    for d in docs:
        if not is_heldout(f"s:{d['id']}", frac, seed) and got < streamed.SAMPLE_SCAN * quota:
            window.append(d)
            got += len(d["text"].encode())
    want, size = [], 0
    for d in sorted(window, key=lambda d: streamed.sample_key(f"s:{d['id']}", seed)):
        if size + len(d["text"]) > quota:
            break
        want.append(d["text"])
        size += len(d["text"])
    assert texts == want and info["bytes"] == size <= quota and info["docs"] == len(want) > 20
    assert info["window"].startswith("first") and window[-1]["id"] < len(docs) - 1  # bounded: not the whole stream
    ids = sorted(int(t.split()[1]) for t in texts)  # spread over the window, not its first documents
    assert ids[0] < 0.2 * window[-1]["id"] and ids[-1] > 0.8 * window[-1]["id"]
    assert streamed.tokenizer_sample("s", spec, quota, frac, seed)[0] == texts  # fixed
    assert streamed.tokenizer_sample("s", spec, quota, frac, seed + 1)[0] != texts  # seeded
    # a source smaller than the window: all of it is scanned, and all of it fits a larger quota
    texts, info = streamed.tokenizer_sample("s", spec, 10**7, frac, seed)
    assert info["window"] == "whole source" and len(texts) == sum(
        not is_heldout(f"s:{d['id']}", frac, seed) for d in docs
    )


def test_a_preparation_failing_in_the_heldout_pass_resumes_there_and_matches_an_uninterrupted_one(tmp_path, caplog):
    import logging

    import pyarrow.parquet as pq

    raw = base_cfg(tmp_path)
    raw["data"]["shard_tokens"] = 5000
    parts = sorted((tmp_path / "corpora" / "knowledge").glob("*.parquet"))
    held = tmp_path / "held" / "wiki.jsonl"
    held.parent.mkdir()
    good = "".join(json.dumps(r) + "\n" for r in pq.read_table(parts[1]).to_pylist())
    held.write_text(good)
    raw["data"]["sources"]["wiki"] |= {"files": str(parts[0]), "heldout_files": str(held)}
    cfg = studymod.validate(raw)
    whole = data.prepare(cfg, tmp_path / "whole")
    # the held-out file breaks after the training pass has been read: the preparation fails there
    held.write_text('{"id": 1, "text": "fine"}\n{not json\n' + good)
    with pytest.raises(DataError, match=r"data.sources.wiki: \S+wiki.jsonl, line 2 \(byte 26\): not valid JSON"):
        data.prepare(cfg, tmp_path / "failed")
    assert not (tmp_path / "failed" / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="index.json"):  # nothing training would trust
        ShardedStore(tmp_path / "failed" / "shards" / "wiki", 64)
    held.write_text(good)
    with caplog.at_level(logging.INFO, logger="skillscale.data.streamed"):
        again = data.prepare(cfg, tmp_path / "failed")
    assert "wiki: resuming after" in caplog.text and "only the held-out pass is read again" in caplog.text
    assert {k: v["sha256"] for k, v in again["shards"].items()} == {k: v["sha256"] for k, v in whole["shards"].items()}
    assert again["eval"] == whole["eval"]


def test_a_hub_source_records_the_files_datasets_read_with_their_hashes(tmp_path):
    # a Hugging Face dataset folder (what a hub repo of parquet files is once local), loaded
    # by datasets.load_dataset(path=folder) as a hub id would be
    raw = base_cfg(
        tmp_path,
        wiki=None,
        fineweb={"role": "knowledge", "kind": "hf", "path": str(tmp_path / "corpora" / "knowledge"), "id_field": "id"},
    )
    m = data.prepare(studymod.validate(raw), tmp_path / "data")
    src = m["sources"]["fineweb"]
    parts = sorted((tmp_path / "corpora" / "knowledge").glob("*.parquet"))
    assert src["kind"] == "hf" and src["path"] == str(tmp_path / "corpora" / "knowledge")
    assert [(f["split"], f["path"], f["bytes"], f["sha256"]) for f in src["files"]] == [
        ("train", str(p), p.stat().st_size, sha256_file(p)) for p in parts
    ]
    assert m["shards"]["fineweb"]["n_docs"] > 0


def test_the_preparation_benchmark_times_both_contenders_on_a_small_corpus(tmp_path, capsys):
    from skillscale import cli

    assert (
        cli.main(["speed", "prepare", "--sizes", "300K", "--threads", "1", "--workdir", str(tmp_path), "--json"]) == 0
    )
    run = json.loads(capsys.readouterr().out)["runs"][0]
    ours, naive = run["ours"], run["naive"]
    # the naive one keeps every document, ours holds out data.heldout_fraction of them
    assert 0.95 * naive["tokens"] < ours["tokens"] < naive["tokens"] and ours["files"] == 1
    for r in (ours, naive):
        assert r["startup_seconds"] > 0 and r["work_seconds"] > 0 and r["seconds"] >= r["work_seconds"]
        assert r["tokens_per_s"] == pytest.approx(r["tokens"] / r["work_seconds"], rel=0.05) and r["peak_rss_mb"] > 0


def test_keys_added_at_their_defaults_leave_the_data_hash_and_rule_params_unchanged(tmp_path):
    """A configured-source study trained before on_bad/encoding/max_row_bytes/aggregate existed
    keeps its data hash, so adding the keys reruns none of its jobs; setting one does change it."""
    spelled = {"on_bad": None, "encoding": "utf-8", "max_row_bytes": 16 << 20, "aggregate": True}
    plain = studymod.validate(base_cfg(tmp_path))["data"]
    explicit = studymod.validate(base_cfg(tmp_path, wiki=spelled))["data"]
    assert config.digest(data.rule_params(plain)) == config.digest(data.rule_params(explicit))
    # the view is the data section as given before these keys: none of them appears at its default
    assert not any(k in s for s in data.rule_params(plain)["sources"].values() for k in spelled)
    assert "on_bad" not in data.rule_params(plain)
    skipping = studymod.validate(base_cfg(tmp_path, wiki={"on_bad": "skip"}))["data"]
    assert config.digest(data.rule_params(skipping)) != config.digest(data.rule_params(plain))
