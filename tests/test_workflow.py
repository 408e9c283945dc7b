"""The whole workflow on config/studies/test.yaml, through the real snakemake CLI."""

import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from skillscale import report

pytestmark = pytest.mark.workflow
TEST = ["--configfile", "config/studies/test.yaml"]


def smk(cwd, *args, check=True):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.run(["snakemake", "--cores", "2", *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


@pytest.fixture(scope="module")
def study(tmp_path_factory, request):
    from conftest import copy_workflow

    wd = copy_workflow(tmp_path_factory.mktemp("wf"))
    smk(wd, *TEST)
    return wd


def test_outputs_have_the_right_content(study):
    r = study / "results" / "test"
    plan = pd.read_csv(r / "plan.csv")
    assert len(plan) == 2 * 2 * 3
    assert np.allclose(plan.flops, plan.budget, rtol=0.05)
    assert (plan.flops == 6 * plan.n_params * plan.tokens).all()

    cells = pd.read_csv(r / "cells.csv")
    assert set(cells.metric) == {"knowledge_qa", "code_fn", "knowledge_text", "code_text"}
    assert cells.cell.nunique() == len(plan) and len(cells) == 4 * len(plan)
    assert cells.value.between(0.5, 9).all()  # bits per byte of a barely trained model
    assert not cells.diverged.any()
    # more code in the mix -> lower code bits/byte, higher knowledge bits/byte (same size, budget)
    wide = cells.pivot_table(index=["budget", "size", "code_frac"], columns="metric", values="value")
    lo, hi = wide.xs(0.25, level="code_frac"), wide.xs(0.75, level="code_frac")
    # (on average over the 6 size x budget pairs: single tiny cells are noisy)
    assert hi.code_text.mean() < lo.code_text.mean()
    assert hi.knowledge_text.mean() > lo.knowledge_text.mean()
    assert hi.knowledge_qa.mean() > lo.knowledge_qa.mean()

    optima = pd.read_csv(r / "tables" / "optima.csv")
    assert len(optima) == 2 * 4 * 2  # code fraction x metric x budget
    assert {"n_opt", "n_opt_lo", "n_opt_hi", "d_opt", "loss_opt", "edge", "status"} <= set(optima.columns)
    assert (r / "tables" / "optima.md").read_text().count("\n|") >= len(optima)
    scaling = pd.read_csv(r / "tables" / "scaling.csv")
    assert len(scaling) == 2 * 4 and {"a", "a_lo", "a_hi", "b", "ci_method", "status"} <= set(scaling.columns)
    for name in report.TABLES:  # every table in three formats, every row with a status
        t = pd.read_csv(r / "tables" / f"{name}.csv")
        assert len(t) and t.status.notna().all(), name
        assert (r / "tables" / f"{name}.md").read_text().startswith(f"# {report.TABLES[name]}")
        assert "\\toprule" in (r / "tables" / f"{name}.tex").read_text()
    # the test grid has 2 budgets: held-out prediction and Approach 3 cannot be fitted, and say so
    held = pd.read_csv(r / "tables" / "heldout_prediction.csv")
    assert held.status.str.startswith("failed: code_frac=").all()
    assert pd.read_csv(r / "tables" / "parametric.csv").status.str.contains("needs >= 3").all()
    assert "## Claim 1" in (r / "tables" / "summary.md").read_text()
    for fig in report.FIGURES.values():
        assert (r / "figures" / fig).read_bytes()[:4] == b"\x89PNG"


def test_training_records_mix_and_provenance(study):
    import json

    recs = [json.loads(p.read_text()) for p in (study / "results/test/cells").glob("*/train.json")]
    assert len(recs) == 12
    for rec in recs:
        assert rec["mixture"]["code_token_fraction"] == pytest.approx(rec["cell"]["code_frac"], abs=1 / rec["mixture"]["sequences"])
        assert rec["curve"][-1]["step"] == rec["cell"]["steps"]
        assert rec["curve"][-1]["loss"] < rec["curve"][0]["loss"]
        assert set(rec["params"]) == {"standard", "nonembed", "total"}
        assert {"code_version", "packages", "config_hash", "tokenizer_sha256", "seed", "device"} <= set(rec["provenance"])


def test_tables_target_retrains_nothing(study):
    models = sorted((study / "results/test/cells").glob("*/model.safetensors"))
    before = {p: p.stat().st_mtime_ns for p in models}
    (study / "results/test/tables/optima.csv").unlink()
    p = smk(study, "tables", *TEST)
    assert "train_cell" not in p.stdout + p.stderr
    assert (study / "results/test/tables/optima.csv").exists()
    assert {p: p.stat().st_mtime_ns for p in models} == before
    assert "Nothing to be done" in smk(study, "-n", *TEST).stdout


def test_adding_a_code_fraction_trains_only_new_cells(study):
    p = smk(study, "-n", *TEST, "--config", "mix={code_fractions: [0.25, 0.5, 0.75]}")
    out = p.stdout
    assert "train_cell           6" in out.replace("\t", " ") or "train_cell        6" in out
    assert "code0.25_" not in "".join(l for l in out.splitlines() if "train.json" in l and "output" in l)


def test_html_report_holds_figures_and_tables(study):
    smk(study, *TEST, "--report", "report.html")
    html = (study / "report.html").read_text()
    assert len(html) > 200_000  # self-contained: the figures are embedded
    for name in [*report.FIGURES.values(), "summary.md", "optima.csv", "datamix_slopes.csv"]:
        assert name in html, name
    assert "capacity-hungry" in html  # a caption (workflow/report/ape_residuals.rst)
