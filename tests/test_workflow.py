"""The whole workflow on config/studies/test.yaml, through the real snakemake CLI."""

import re

import numpy as np
import pandas as pd
import pytest

from conftest import estimates_outside_intervals, run_snakemake
from skillscale.analysis import outputs, report

pytestmark = pytest.mark.workflow
TEST = ["--configfile", "config/studies/test.yaml"]


def smk(cwd, *args, check=True):
    return run_snakemake(cwd, "--cores", "2", *args, check=check)


@pytest.fixture(scope="module")
def study(test_study):
    return test_study["dir"]


def test_outputs_have_the_right_content(study):
    r = study / "results" / "test"
    # nothing is written outside results/ (and snakemake's own .snakemake/)
    assert {p.name for p in study.iterdir()} == {
        "Snakefile",
        "workflow",
        "config",
        "profiles",
        "envs",
        "results",
        ".snakemake",
    }
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
    # every table says which config, data and code made it
    assert cells.config_hash.nunique() == 1 and cells.code_version.notna().all()
    for name in ("optima.md", "summary.md", "optima.tex"):
        text = (r / "tables" / name).read_text()
        assert f"train/model config {cells.config_hash.iloc[0]}" in text and "unrecorded" not in text, name
    for fig in report.FIGURES.values():
        assert (r / "figures" / fig).read_bytes()[:4] == b"\x89PNG"


def test_training_records_mix_and_provenance(study):
    import json

    recs = [json.loads(p.read_text()) for p in (study / "results/test/cells").glob("*/train.json")]
    assert len(recs) == 12
    for rec in recs:
        assert rec["mixture"]["code_token_fraction"] == pytest.approx(
            rec["cell"]["code_frac"], abs=1 / rec["mixture"]["sequences"]
        )
        assert rec["curve"][-1]["step"] == rec["cell"]["steps"]
        assert rec["curve"][-1]["loss"] < rec["curve"][0]["loss"]
        assert set(rec["params"]) == {"standard", "nonembed", "total"}
        assert {"code_version", "packages", "config_hash", "tokenizer_sha256", "seed", "device"} <= set(
            rec["provenance"]
        )


def test_tables_target_retrains_nothing(study):
    models = sorted((study / "results/test/cells").glob("*/model.safetensors"))
    before = {p: p.stat().st_mtime_ns for p in models}
    (study / "results/test/tables/optima.csv").unlink()
    p = smk(study, "tables", *TEST)
    assert "train_trunk" not in p.stdout + p.stderr
    assert (study / "results/test/tables/optima.csv").exists()
    assert {p: p.stat().st_mtime_ns for p in models} == before
    assert "Nothing to be done" in smk(study, "-n", *TEST).stdout


def test_adding_a_code_fraction_trains_only_new_cells(study):
    p = smk(study, "-n", *TEST, "--config", "mix={code_fractions: [0.25, 0.5, 0.75]}")
    out = p.stdout
    assert planned_jobs(out, "train_trunk") == 3 and planned_jobs(out, "collect_cell") == 6
    assert "code0.25_" not in "".join(ln for ln in out.splitlines() if "trunk.json" in ln and "output" in ln)


def test_html_report_holds_figures_and_tables(study):
    smk(study, *TEST, "--report", "report.html")
    html = (study / "report.html").read_text()
    assert len(html) > 200_000  # self-contained: the figures are embedded
    figures = [*report.FIGURES.values(), *outputs.CURVE_FIGURES.values()]
    for name in [*figures, "summary.md", "optima.csv", "datamix_slopes.csv"]:
        assert name in html, name
    assert "capacity-hungry" in html  # a caption (workflow/report/ape_residuals.rst)


# --- partial ablations: the recipes in the README, each run through the real CLI -----------
def planned_jobs(stdout: str, rule: str) -> int:
    """The count snakemake -n prints for `rule` in its job table (0 if absent)."""
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == rule and parts[1].isdigit():
            return int(parts[1])
    return 0


def test_one_code_fraction_only_plans_only_its_cells(tmp_path):
    from conftest import copy_workflow

    wd = copy_workflow(tmp_path)  # nothing trained yet
    out = smk(wd, "-n", *TEST, "--config", "study=code0.25", "mix={code_fractions: [0.25]}").stdout
    assert planned_jobs(out, "train_trunk") == 3 and planned_jobs(out, "collect_cell") == 6
    assert "code0.75_" not in out
    assert "results/code0.25/tables/summary.md" in out and "results/test/" not in out  # its own study folder


def test_adding_a_budget_trains_and_scores_only_the_new_cells(study, tmp_path):
    """Under WSD (the test study's schedule) a new budget reruns the trunks that must reach
    it; they continue from their saved states and keep every existing cell's cooldown and
    evaluation, so only the new cells are trained and scored, and old results stay identical."""
    import json
    import shutil

    grown = tmp_path / "grown"
    shutil.copytree(study, grown, symlinks=True)
    before = {p.parent.name: p.read_text() for p in (grown / "results/test/cells").glob("*/eval.json")}
    budgets = ["--config", "grid={budgets: [4.0e+9, 1.2e+10, 1.6e+10]}"]
    out = smk(grown, "-n", *TEST, *budgets).stdout
    new = {
        ln.split("cells/")[1].split("/")[0]
        for ln in out.splitlines()
        if ln.strip().startswith("output:") and "/eval.json" in ln and "_C1.6e10_" in ln
    }
    assert len(new) == 6, out[-2000:]  # the new budget: 3 sizes x 2 code fractions
    new_sizes = {c.split("_")[2] for c in new}
    assert planned_jobs(out, "train_trunk") == len(new_sizes) * 2  # only the trunks that reach it
    smk(grown, *TEST, *budgets)
    logs = "".join(p.read_text() for p in (grown / "results/test/logs/trunk").glob("*.log"))
    kept = set(re.findall(r"\[(\S+)\] cooldown kept from an earlier run", logs))
    assert kept and kept == set(re.findall(r"\[(\S+)\] evaluation kept from an earlier run", logs))
    assert not kept & new and all(c.split("_")[2] in new_sizes for c in kept)
    assert {c for c in re.findall(r"\[(\S+)\] cooldown from the trunk", logs) if "_C1.6e10_" in c} == new
    after = {p.parent.name: p.read_text() for p in (grown / "results/test/cells").glob("*/eval.json")}
    assert set(after) == set(before) | new
    assert all(json.loads(after[c])["bits_per_byte"] == json.loads(before[c])["bits_per_byte"] for c in before)


def test_adding_a_seed_plans_only_the_new_seeds_trunks(study, tmp_path):
    """The README's "add a seed": seed 0 trained, seeds [0, 1] asked for; only seed 1's
    trunk jobs would run (and its cells be collected), no seed-0 job reruns. The same with
    Snakemake's metadata gone (.snakemake/ deleted, or results copied to another checkout):
    grid.txt, an input of analyze, is what makes it look below the finished analysis."""
    import shutil

    seeded = tmp_path / "seeded"  # a copy: even a dry run rewrites results/test/config.yaml
    shutil.copytree(study, seeded, symlinks=True)
    trunks = sorted(p.name for p in (seeded / "results/test/trunks").iterdir())
    assert trunks and all(t.endswith("_seed0") for t in trunks)
    for metadata in (True, False):
        if not metadata:
            shutil.rmtree(seeded / ".snakemake")
        out = smk(seeded, "-n", *TEST, "--config", "seeds=[0,1]").stdout
        assert planned_jobs(out, "train_trunk") == len(trunks), (metadata, out[-1500:])
        planned = {
            ln.split("trunks/")[1].split("/")[0]
            for ln in out.splitlines()
            if ln.strip().startswith("output:") and "/trunk.json" in ln
        }
        assert planned == {t.replace("_seed0", "_seed1") for t in trunks}


def test_failed_job_keep_going_then_rerun_fills_the_gap(study):
    """A trunk job whose branch state is corrupt fails, naming the file; --keep-going still
    finishes the other trunk job; once the bad state is deleted, a rerun recomputes it from
    the trunk's earlier state and the study completes with the same numbers."""
    import json

    trunks = sorted((study / "results/test/trunks").iterdir())
    bad, healthy = trunks[0], trunks[1]
    bad_cell = sorted((bad / "cells").iterdir())[-1].name
    good = {c.name: json.loads((c / "eval.json").read_text()) for c in (healthy / "cells").iterdir()}
    want = json.loads((bad / "cells" / bad_cell / "eval.json").read_text())["bits_per_byte"]
    for t in (bad, healthy):  # both trunk jobs must run again (as after a crash mid-study)
        (t / "trunk.json").unlink()
        for c in (t / "cells").iterdir():
            shutil_rm(study / "results/test/cells" / c.name)
    (study / "results/test/cells.csv").unlink()  # (the analysis never ran)
    shutil_rm(bad / "cells" / bad_cell)
    (bad / f"branch_{bad_cell}.pt").write_bytes(b"not a checkpoint")
    shutil_rm(healthy / "cells" / sorted(good)[0])  # a gap next to the fault
    p = smk(study, *TEST, "--keep-going", check=False)
    assert p.returncode != 0
    assert "train_trunk" in p.stderr and f"branch_{bad_cell}.pt" in p.stderr + log_of(study, bad.name)
    assert (healthy / "trunk.json").exists()  # the gap next to the fault was filled
    assert (
        json.loads((healthy / "cells" / sorted(good)[0] / "eval.json").read_text())["bits_per_byte"]
        == good[sorted(good)[0]]["bits_per_byte"]
    )
    assert not (bad / "trunk.json").exists()  # nothing half-written for analyze to trust
    (bad / f"branch_{bad_cell}.pt").unlink()
    smk(study, *TEST)
    assert json.loads((study / "results/test/cells" / bad_cell / "eval.json").read_text())["bits_per_byte"] == want
    assert "Nothing to be done" in smk(study, "-n", *TEST).stdout

    # the README's "rerun one cell": forget its cached result, force its trunk job
    shutil_rm(bad / "cells" / bad_cell)
    smk(study, *TEST, "--forcerun", f"results/test/trunks/{bad.name}/trunk.json")
    log = log_of(study, bad.name)
    assert f"[{bad_cell}] cooldown from the trunk" in log and f"[{bad_cell}] cooldown kept" not in log
    assert all(f"[{c.name}] cooldown kept" in log for c in (bad / "cells").iterdir() if c.name != bad_cell)
    assert json.loads((study / "results/test/cells" / bad_cell / "eval.json").read_text())["bits_per_byte"] == want
    assert "Nothing to be done" in smk(study, "-n", *TEST).stdout


def shutil_rm(path):
    import shutil

    shutil.rmtree(path)


def log_of(study, run):
    return (study / "results/test/logs/trunk" / f"{run}.log").read_text()


def test_tables_on_a_grid_with_a_missing_cell_name_it_and_still_fit(study):
    cell = sorted((study / "results/test/cells").iterdir())[-1]
    aside = cell / "eval.json.aside"
    (cell / "eval.json").rename(aside)
    try:
        p = smk(study, "tables", *TEST)
        summary = (study / "results/test/tables/summary.md").read_text()
        assert "1 missing" in summary and f"- missing: {cell.name}" in summary
        assert f"missing cells (1): {cell.name}" in (study / "results/test/tables/optima.md").read_text()
        optima = pd.read_csv(study / "results/test/tables/optima.csv")
        assert (optima.status == "ok").any()  # the groups with enough points are still fitted
        assert "train_trunk" not in p.stdout + p.stderr
    finally:
        aside.rename(cell / "eval.json")


# the GPU layout on CPU: the largest size's trunks data-parallel (torchrun, 2 gloo processes),
# the two smaller sizes' trunks packed two to a job (tests/test_slurm.py runs it on Slurm)
GPU_LAYOUT = [
    "--config",
    "resources={ddp_processes: 2, ddp_min_params: 1.0e+4, pack: [{max_params: 1.0e+4, per_job: 2}]}",
]


def test_hard_kill_of_the_whole_workflow_resumes_after_unlock(test_study, tmp_path):
    """SIGKILL to snakemake and all its jobs (power loss, the OOM killer) mid-study: the next
    run stops on snakemake's lock, `--unlock` clears it, and the rerun finishes with the
    metrics of an uninterrupted run (the README's recipe). The study runs in the GPU layout,
    so the kill also hits torchrun and pack jobs: packed cells come out identical to the
    plain local run's (each trunk trains in its own process), data-parallel ones within 1e-4
    relative (gradients summed over 2 ranks in another order)."""
    import json
    import os
    import signal
    import subprocess
    import time

    from conftest import copy_workflow, study_metrics

    wd = copy_workflow(tmp_path)
    out = smk(wd, "-n", "-p", *TEST, *GPU_LAYOUT).stdout
    assert out.count("torchrun --standalone --nproc_per_node 2") == 2
    assert out.count("--pack code0.25_") == 2  # d8L1h2 and d16L1h2: both code fractions in one job
    proc = subprocess.Popen(
        ["snakemake", "--cores", "2", *TEST, *GPU_LAYOUT],
        cwd=wd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trunks = wd / "results/test/trunks"
    deadline = time.time() + 300
    while time.time() < deadline and not list(trunks.glob("*/trunk.json")):  # one trunk job done
        assert proc.poll() is None, "the study ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    # torchrun starts its workers in sessions of their own: power loss takes them too
    subprocess.run(["pkill", "-KILL", "-f", "skillscale.train --config results/test/config.yaml"])
    proc.wait()
    assert not (wd / "results/test/tables/summary.md").exists()
    p = smk(wd, *TEST, *GPU_LAYOUT, check=False)
    assert p.returncode != 0 and "--unlock" in p.stdout + p.stderr  # snakemake says what to do
    smk(wd, "--unlock", *TEST, *GPU_LAYOUT)
    smk(wd, *TEST, *GPU_LAYOUT)
    local, got = test_study["metrics"], study_metrics(wd / "results/test")
    assert got.keys() == local.keys()
    for cell, metrics in got.items():
        rec = json.loads((wd / "results/test/cells" / cell / "train.json").read_text())
        if "_d16L2h2_" in cell:  # 11,856 parameters: data-parallel
            assert metrics == pytest.approx(local[cell], rel=1e-4), cell
            assert rec["provenance"]["data_parallel"] == 2 == rec["hardware"]["data_parallel"]
        else:
            assert metrics == local[cell], cell
            assert rec["hardware"]["data_parallel"] == 1
    assert sorted(p.name for p in (wd / "results/test/packs").iterdir()) == ["d16L1h2_pack0.json", "d8L1h2_pack0.json"]


def test_plan_command_plans_what_snakemake_runs(tmp_path, repo):
    """`skillscale plan --config config/studies/test.yaml` (no config.yaml named) lists the
    cells a dry run of `snakemake --configfile config/studies/test.yaml` would evaluate."""
    import subprocess
    import sys

    from conftest import copy_workflow

    wd = copy_workflow(tmp_path)
    out = smk(wd, "-n", *TEST).stdout
    snake = {
        ln.split("cells/")[1].split("/")[0]
        for ln in out.splitlines()
        if ln.strip().startswith("output:") and "/eval.json" in ln
    }
    csv = tmp_path / "plan.csv"
    subprocess.run(
        [sys.executable, "-m", "skillscale", "plan", "--config", str(repo / TEST[1]), "--out", str(csv)],
        check=True,
        capture_output=True,
    )
    assert snake and set(pd.read_csv(csv)["cell"]) == snake


def test_no_estimate_outside_its_interval(study):
    """Every table and the summary of the test study agree with themselves."""
    assert estimates_outside_intervals(study / "results" / "test" / "tables") == []
