"""Two benchmarks per skill (config/studies/test-benchmarks.yaml, fixtures) scored on a
study's cells through snakemake end to end (the test-sources study: conftest.sources_study)."""

import pandas as pd
import pytest

from conftest import copy_workflow, run_snakemake

pytestmark = pytest.mark.workflow
BENCH = {
    "bench:triviaqa": "knowledge",
    "bench:arc_easy": "knowledge",
    "bench:knowledge": "knowledge",
    "bench:humaneval": "code",
    "bench:mbpp": "code",
    "bench:code": "code",
}


@pytest.fixture(scope="module")
def study(sources_study):
    """The benchmark overlay runs on the test-sources study (conftest): the benchmarks are
    scored on its cells whatever the corpora they were trained on."""
    return sources_study


def test_tables_carry_one_row_per_benchmark(study):
    _, r = study
    cells = pd.read_csv(r / "cells.csv")
    skills = cells.groupby("metric")["skill"].first()
    for m, s in BENCH.items():
        assert skills[m] == s, m
    n_cells = cells["cell"].nunique()
    assert (cells["metric"] == "bench:triviaqa").sum() == n_cells
    arc = cells[cells.metric == "bench:arc_easy"]
    assert arc["accuracy"].between(0, 1).all() and cells[cells.metric == "bench:mbpp"]["accuracy"].isna().all()
    assert cells[cells.metric.isin(BENCH)]["value"].between(0.5, 8.5).all()  # trained: below uniform's 8
    optima = pd.read_csv(r / "tables" / "optima.csv")
    ape = pd.read_csv(r / "tables" / "ape_residuals.csv")
    for m in BENCH:
        assert (optima.metric == m).sum() == optima.code_frac.nunique() * optima.budget.nunique(), m
        rows = ape[ape.metric == m]
        assert len(rows) == ape.code_frac.nunique() * ape.budget.nunique(), m
        assert {"residual", "residual_lo", "residual_hi"} <= set(rows.columns)
    assert "bench:triviaqa" in (r / "tables" / "ape_residuals.md").read_text()


def test_unknown_benchmark_stops_before_any_job(tmp_path):
    wd = copy_workflow(tmp_path)
    p = run_snakemake(
        wd,
        "--cores",
        "1",
        "--configfile",
        "config/studies/test.yaml",
        "--config",
        "eval={'benchmarks': {'trivia_qa': {}}}",
        check=False,
    )
    assert p.returncode != 0
    assert "eval.benchmarks.trivia_qa: unknown benchmark" in p.stdout + p.stderr
    assert not (wd / "results" / "test" / "data").exists()
