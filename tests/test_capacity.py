"""Facts mentioned by population (data.knowledge.frequency) and the storage they are scored by."""

import json
import math
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import copy_workflow, run_snakemake
from skillscale import common, plan, study
from skillscale.analysis import storage
from skillscale.data import corpora, longtail
from skillscale.data.prepare import prepare
from skillscale.data.tokenizer import BPETokenizer
from skillscale.evaluate import harness
from skillscale.model.decoder import Decoder, ModelShape


def _facts():
    pops = [8_000_000, 2_000_000, 600_000, 300_000, 90_000, 40_000, 20_000, 15_000]
    countries = ["China", "India", "China", "Brazil", "France", "India", "Peru", "Chad"]
    return [corpora.Fact(f"City{i}", a, i % 2 == 0, p) for i, (p, a) in enumerate(zip(pops, countries))]


def test_mentions_follow_population_with_a_floor_and_bins_split_the_facts_evenly():
    facts = _facts()
    m = longtail.mention_counts(facts, 1.0, 1000)
    assert m[0] == round(1000 * 8_000_000 / sum(f.population for f in facts))
    assert min(m) == 1 and m == sorted(m, reverse=True)  # the tail is stated at least once per pass
    assert longtail.mention_counts(facts, 0.5, 1000)[0] < m[0]  # a smaller exponent, a lighter head
    assert Counter(longtail.frequency_bins(m)) == dict.fromkeys(range(longtail.N_BINS), 2)
    prior = longtail.prior_bits(facts, m)
    per_country = {f.answer: p for f, p in zip(facts, prior)}
    assert sum(2**-p for p in per_country.values()) == pytest.approx(1)  # a distribution over answers
    docs = longtail.training_docs(facts, m)
    assert len(docs) == sum(m)
    assert len({d.text for d in docs if d.id.startswith("fact:City0:")}) == 8  # 6 statements + 2 questions


def test_control_questions_ask_about_a_city_in_another_country():
    facts = _facts()
    items = longtail.qa_items(facts, longtail.mention_counts(facts, 1.0, 100))
    ctrl = longtail.control_items(items, seed=3)
    by_id = {r["id"]: r for r in items}
    for q, c in zip(items, ctrl):
        other = by_id[c["control_of"]]
        assert c["target"] == q["target"] and c["prior_bits"] == q["prior_bits"] and c["bin"] == q["bin"]
        assert c["context"] == other["context"] and other["target"] != q["target"]


def _population_cfg(**knowledge):
    return study.validate(
        {
            "data": {
                "knowledge": {
                    "wiki_max_docs": 60,
                    "n_facts": 80,
                    "min_population": 15000,
                    "frequency": "population",
                    "facts_share": 0.5,
                    **knowledge,
                },
                "code": {"max_bytes": 300000},
                "tokenizer": {"vocab_size": 300, "sample_bytes": 20000},
                "heldout_fraction": 0.2,
            }
        }
    )


@pytest.fixture(scope="module")
def population_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("pop") / "data"
    return prepare(_population_cfg(), out), out


def test_prepare_command_says_how_population_facts_are_mentioned(tmp_path, caplog):
    """The log names mention counts, not the uniform 'facts repeated 1x' of fact_repeats."""
    import yaml  # deferred: only this test writes a config file

    from skillscale.data import prepare as prepare_cmd

    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(_population_cfg()))
    with caplog.at_level("INFO"):
        assert prepare_cmd.main(["--config", str(cfg), "--out", str(tmp_path / "data")]) == 0
    done = [r.getMessage() for r in caplog.records if "done in" in r.getMessage()]
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    want = f"{manifest['sources']['facts']['mentions_per_pass']:,} mentions of 80 facts by population"
    assert len(done) == 1 and want in done[0] and "repeated" not in done[0]


def test_population_facts_are_all_asked_once_in_a_wording_training_never_uses(population_data):
    manifest, out = population_data
    facts = manifest["sources"]["facts"]
    assert facts["frequency"] == "population" and facts["n"] == 80
    assert [b["facts"] for b in facts["bins"]] == [20] * 4
    assert facts["bins"][0]["mentions_total"] > facts["bins"][3]["mentions_total"]
    qa = [json.loads(x) for x in (out / "eval" / "knowledge_qa.jsonl").read_text().splitlines()]
    ctrl = [json.loads(x) for x in (out / "eval" / "knowledge_control.jsonl").read_text().splitlines()]
    assert len(qa) == len(ctrl) == 80 and sum(r["mentions"] for r in qa) == facts["mentions_per_pass"]
    ids = np.fromfile(out / "shards" / "knowledge.bin", dtype=np.uint16)
    text = BPETokenizer.load(out / "tokenizer.json").decode(ids.tolist())
    assert "Which country is" not in text  # the held-out wording
    assert text.count("Question: In which country is") > 0  # the frame it is asked in was taught


def test_storage_through_lm_eval_is_the_sum_over_facts_of_prior_minus_model_bits(population_data):
    _, out = population_data
    torch.manual_seed(0)
    model = Decoder(ModelShape(d_model=16, n_layers=1, n_heads=2, vocab_size=300, seq_len=64)).eval()
    tok = BPETokenizer.load(out / "tokenizer.json")
    lm = harness.SkillscaleLM(model, tok, 64, 32)
    got = harness.storage_scores(lm, out / "eval")
    for name, file in (("stored", "knowledge_qa"), ("control", "knowledge_control")):
        rows = [json.loads(x) for x in (out / "eval" / f"{file}.jsonl").read_text().splitlines()]
        seqs = [(tok.encode(r["context"]) + tok.encode(r["target"]), len(tok.encode(r["context"]))) for r in rows]
        delta = [r["prior_bits"] + ll / math.log(2) for r, (ll, _) in zip(rows, lm._score(seqs))]
        assert got[f"{name}_bits"] == pytest.approx(sum(delta), rel=1e-6)
        per_bin = [got[f"{name}_bits_b{b}"] for b in range(longtail.N_BINS)]
        assert sum(per_bin) == pytest.approx(got[f"{name}_bits"], rel=1e-9)
    # an untrained model knows no fact: asked about the right city or another, the same bits (to noise)
    assert abs(got["stored_bits"] - got["control_bits"]) < 0.05 * abs(got["control_bits"])


def test_frequency_exponent_without_population_is_refused():
    with pytest.raises(study.ConfigError, match="data.knowledge.frequency_exponent: set, but data.knowledge.freq"):
        study.validate({"data": {"knowledge": {"frequency_exponent": 0.5}}})


def _cells(stored):
    n = np.array([15e3, 27e3, 42e3, 60e3, 80e3, 133e3])
    e = np.array([0.5, 1.0, 2.0, 4.0])
    rng = np.random.default_rng(1)
    rows = [
        {"n_params": a, "passes": b, "stored_bits": stored(a, b) * math.exp(rng.normal(0, 0.05))} for a in n for b in e
    ]
    return pd.DataFrame(rows)


def test_storage_fit_tells_capacity_from_exposure():
    cap = storage.fit_elasticities(_cells(lambda n, e: 1.5 * n))  # full at every exposure: capacity binds
    assert storage.verdict(cap) == "capacity" and cap["coef"][1] == pytest.approx(1, abs=0.05)
    exp = storage.fit_elasticities(_cells(lambda n, e: 2e4 * e))  # only exposures count
    assert storage.verdict(exp) == "exposure" and exp["coef"][2] == pytest.approx(1, abs=0.05)
    both = storage.fit_elasticities(_cells(lambda n, e: 0.3 * n**0.6 * e**0.6))  # compute alone decides
    assert storage.verdict(both) == "both, about equally (b - c interval contains 0)"
    assert (
        storage.verdict(storage.fit_elasticities(_cells(lambda n, e: 0.3 * n**0.9 * e**0.3))) == "both (capacity more)"
    )
    flat = storage.fit_elasticities(_cells(lambda n, e: 5e3))
    assert storage.verdict(flat).startswith("neither")
    with pytest.raises(ValueError, match="storage fit needs >= 4 cells that store bits"):
        storage.fit_elasticities(_cells(lambda n, e: -1.0))


def test_the_workflow_runs_the_storage_rule_only_for_a_study_of_population_facts(tmp_path):
    wd = copy_workflow(tmp_path)
    capacity = run_snakemake(wd, "-n", "--configfile", "config/studies/capacity.yaml").stdout
    assert "rule storage:" in capacity and "results/capacity/tables/storage_fit.csv" in capacity
    assert "rule storage:" not in run_snakemake(wd, "-n").stdout  # the default study: no such rule, no new output


def test_storage_tables_from_recorded_evaluations(tmp_path, population_data):
    """The storage command over a study folder: what cells recorded in eval.json -> tables and figure;
    a cell without a storage score (diverged, or not yet evaluated) is left out, not read as 0."""
    manifest, data = population_data
    cfg = _population_cfg()
    root = tmp_path / "results" / "pop"
    shutil.copytree(data, root / "data")
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    cells, _ = plan.build(cfg)
    shard = manifest["shards"]["knowledge"]["n_tokens"]
    for c in cells[:-1]:
        passes = c.tokens * (1 - c.code_frac) / shard
        s = 40 * c.n_params**0.2 * passes**0.6  # storage grows with exposures much more than with N
        rec = {
            f"{k}_bits{b}": v
            for k, v in (("stored", s + 100), ("control", 100.0))
            for b in ("", *[f"_b{i}" for i in range(4)])
        }
        common.write_json(root / "cells" / c.cell / "eval.json", {"storage": rec, "diverged": False})
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "skillscale.analysis.storage",
            "--config",
            str(root / "config.yaml"),
            "--study-dir",
            str(root),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    table = pd.read_csv(root / "tables" / "storage.csv")
    assert len(table) == len(cells) - 1 and (table["stored_bits"] > 0).all()
    fit = pd.read_csv(root / "tables" / "storage_fit.csv")
    c = fit.set_index(fit["term"].str[:2])
    assert c.loc["c:", "estimate"] == pytest.approx(0.6, abs=0.01) and c.loc["b:", "estimate"] == pytest.approx(
        0.2, abs=0.01
    )
    assert (root / "figures" / "storage.png").stat().st_size > 10_000
