"""report.analyze on synthetic cells with known optima: every table, its formats, and the
statuses of groups that cannot be fitted."""

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import estimates_outside_intervals
from skillscale import config, study
from skillscale.analysis import aggregate, report, tables

ALPHA = BETA = 0.35
A_OPT = BETA / (ALPHA + BETA)
LN_G0 = -2.5
# metric -> (skill, E, ln G offset): knowledge QA capacity-hungry, code functions data-hungry
METRICS = {
    "knowledge_qa": ("knowledge", 1.0, 0.6),
    "knowledge_text": ("knowledge", 1.3, 0.2),
    "code_fn": ("code", 0.6, -0.6),
    "code_text": ("code", 0.8, -0.2),
}
KAPPA = 0.8  # d ln N* / d own-data fraction, every metric
CODE_FRACS = (0.25, 0.75)
BUDGETS = (1e12, 4e12, 1.6e13)
B = 60.0


def true_ln_n_opt(metric, code_frac, c):
    skill, _, off = METRICS[metric]
    own = code_frac if skill == "code" else 1 - code_frac
    return LN_G0 + off + KAPPA * (own - 0.5) + A_OPT * np.log(c / 6)


def make_cells(sizes=5, spread=1.7, noise=0.001, seed=0):
    """Tidy cells like cells.csv, losses from L = E + A/N^a + B/D^b with a known N*."""
    rng = np.random.default_rng(seed)
    rows = []
    for cf in CODE_FRACS:
        for c in BUDGETS:
            centre = np.exp(LN_G0 + A_OPT * np.log(c / 6))
            for k in range(sizes):
                n = centre * spread ** (k - (sizes - 1) / 2)
                d = c / (6 * n)
                cell = f"code{cf:.2f}_C{c:.1e}_s{k}_seed0"
                for m, (skill, E, _) in METRICS.items():
                    ln_g = true_ln_n_opt(m, cf, c) - A_OPT * np.log(c / 6)
                    A = np.exp((ALPHA + BETA) * ln_g) * BETA * B / ALPHA
                    loss = (E + A / n**ALPHA + B / d**BETA) * (1 + noise * rng.standard_normal())
                    rows.append(
                        dict(
                            cell=cell,
                            code_frac=cf,
                            budget=c,
                            size=f"s{k}",
                            seed=0,
                            n_params=int(n),
                            n_params_nonembed=int(0.8 * n),
                            n_params_total=int(1.2 * n),
                            tokens=int(d),
                            flops=6 * n * d,
                            flops_exact=6.3 * n * d,
                            metric=m,
                            skill=skill,
                            value=loss,
                            diverged=False,
                            train_seconds=1.0,
                            eval_seconds=1.0,
                            final_train_loss=loss,
                        )
                    )
    return pd.DataFrame(rows, columns=aggregate.COLUMNS)


@pytest.fixture(scope="module")
def cfg(repo):
    return study.load(repo / "config" / "studies" / "test.yaml")  # n_boot 20: fast


@pytest.fixture(scope="module")
def clean(cfg, tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    return d, report.analyze(cfg, d, cells=make_cells())


EXPECTED_COLUMNS = {
    "optima": {
        "code_frac",
        "metric",
        "skill",
        "budget",
        "n_opt",
        "n_opt_lo",
        "n_opt_hi",
        "d_opt",
        "loss_opt",
        "boot_frac",
        "edge",
        "n_fit_min",
        "n_fit_max",
        "curvature",
        "status",
        "note",
    },
    "scaling": {"code_frac", "metric", "a", "a_lo", "a_hi", "b", "b_lo", "b_hi", "n_budgets", "ci_method", "status"},
    "ape_residuals": {
        "code_frac",
        "budget",
        "metric",
        "skill",
        "residual",
        "residual_lo",
        "residual_hi",
        "hungry",
        "status",
    },
    "datamix_slopes": {"metric", "skill", "basis", "budget", "slope", "slope_lo", "slope_hi", "status"},
    "validation_composition": {"code_frac", "budget", "w", "n_opt", "n_opt_lo", "n_opt_hi", "status"},
    "validation_composition_summary": {
        "code_frac",
        "budget",
        "contrast",
        "contrast_lo",
        "contrast_hi",
        "contrast_z",
        "rel_change",
        "rel_change_lo",
        "rel_change_hi",
        "w_at_min",
        "w_at_max",
        "status",
    },
    "heldout_prediction": {
        "code_frac",
        "metric",
        "heldout_budget",
        "n_opt_pred",
        "n_opt_obs",
        "n_opt_rel_err",
        "loss_pred",
        "loss_obs",
        "loss_rel_err",
        "status",
    },
    "parametric": {"code_frac", "metric", "E", "alpha", "beta", "a_opt", "a_opt_lo", "a_opt_hi", "n_opt_top", "status"},
    "claims": {"claim", "part", "rule", "n_groups", "n_for", "n_against", "verdict"},
    "certainty": {"statistic", "n", "median", "min", "max", "excluding_0", "status"},
    "mixture_law": {"metric", "form", "chosen", "E", "alpha", "beta", "mix", "K", "rms_log", "converged", "status"},
    "mixture_loo": {"candidate", "metric", "code_frac", "budget", "n_opt", "pred_n", "n_rel_err", "status"},
    "mixture_slopes": {"metric", "basis", "budget", "law_slope", "law_slope_lo", "table_slope", "agree", "status"},
    "mixture_accounting": {"metric", "code_frac", "budget", "n_opt_6nd", "n_opt_exact", "exact_over_6nd", "status"},
}


def check_tex(text):
    assert r"\toprule" in text and r"\midrule" in text and r"\bottomrule" in text
    spec = re.search(r"\\begin\{tabular\}\{([lr]+)\}", text).group(1)
    body = text.split(r"\midrule")[1].split(r"\bottomrule")[0]
    head = text.split(r"\toprule")[1].split(r"\midrule")[0]
    for line in [head, *body.strip().splitlines()]:
        # every row has one cell per column: & separators that are not escaped
        assert len(re.findall(r"(?<!\\)&", line)) == len(spec) - 1, line


def test_every_table_in_three_formats_with_expected_columns(clean):
    d, res = clean
    assert set(report.TABLES) == set(EXPECTED_COLUMNS)
    for name, cols in EXPECTED_COLUMNS.items():
        csv = d / "tables" / f"{name}.csv"
        df = pd.read_csv(csv)
        assert cols <= set(df.columns), (name, cols - set(df.columns))
        assert len(df) > 0
        md = csv.with_suffix(".md").read_text()
        assert md.startswith(f"# {report.TABLES[name]}") and md.count("\n|") >= len(df)
        check_tex(csv.with_suffix(".tex").read_text())
    for fn in report.FIGURES.values():
        assert (d / "figures" / fn).read_bytes()[:4] == b"\x89PNG"
    # analyze writes exactly what the workflow declares (workflow/rules/analysis.smk reads output_paths)
    written = {p for p in d.rglob("*") if p.is_file()}
    assert written == set(report.output_paths(d).values())


def test_numbers_recover_the_synthetic_truth(clean):
    _, r = clean
    o = r["optima"]
    assert (o.status == "ok").all(), o.status.unique()
    truth = np.array([true_ln_n_opt(m, cf, c) for m, cf, c in zip(o.metric, o.code_frac, o.budget)])
    assert np.abs(np.log(o.n_opt) - truth).max() < 0.15
    assert (o.n_opt_lo <= o.n_opt).all() and (o.n_opt <= o.n_opt_hi).all() and (o.n_opt_lo > 0).all()
    s = r["scaling"]
    assert (s.status == "ok").all() and (s.ci_method == "cells").all()
    assert np.allclose(s.a, A_OPT, atol=0.06)
    ape = r["ape_residuals"]
    assert (ape[ape.metric == "knowledge_qa"].residual > 0).all()
    assert (ape[ape.metric == "code_fn"].residual < 0).all()
    sl = r["datamix_slopes"]
    ref = sl[sl.basis == "power law at C_ref"].set_index("metric")
    assert set(ref.index) == set(METRICS) and (ref.status == "ok").all()
    assert np.allclose(ref.slope, KAPPA, atol=0.2), ref.slope.to_dict()
    assert (sl.basis == "difference at C_ref").sum() == 4
    per = sl[sl.basis == "budget"]
    assert len(per) == len(METRICS) * len(BUDGETS) and np.allclose(per.slope, KAPPA, atol=0.3)
    h = r["heldout_prediction"]
    assert set(h.metric) == set(METRICS) | {"val_mix"} and (h.heldout_budget == max(BUDGETS)).all()
    assert (h.status == "ok").all() and h.n_opt_rel_err.abs().max() < 0.2
    vcs = r["validation_composition_summary"]
    assert (vcs.status == "ok").all()
    # at code fraction 0.25 knowledge text wants N* e^0.8 times code text's; at 0.75 the same
    lo = vcs[vcs.code_frac == 0.25]
    assert (lo.rel_change > 0.8).all() and (lo.w_at_max == 1).all() and (lo.w_at_min == 0).all()
    assert (lo.contrast_lo > 0).all()  # the signed contrast: all-knowledge validation picks larger N*
    assert (vcs[vcs.code_frac == 0.75].rel_change < 0.1).all()
    p = r["parametric"]
    assert len(p) == len(CODE_FRACS) * len(METRICS) and p.status.str.match(r"^(ok|flagged)").all()


def test_summary_is_generated_from_the_numbers(clean):
    d, r = clean
    text = (d / "tables" / "summary.md").read_text()
    ape = r["ape_residuals"]
    qa = ape[(ape.metric == "knowledge_qa") & (ape.status == "ok")]
    assert (
        f"knowledge_qa (knowledge): {len(qa)} interior groups, interval above 0 in {(qa.residual_lo > 0).sum()}"
    ) in text
    ref = r["datamix_slopes"].set_index(["basis", "metric"]).loc[("power law at C_ref", "knowledge_qa")]
    assert f"at C_ref, knowledge_qa (knowledge): {ref.slope:.3g} [{ref.slope_lo:.3g}, {ref.slope_hi:.3g}]" in text
    c = r["claims"].set_index(["claim", "part"])
    # the synthetic truth has clear signs: claim 1 holds (KAPPA is the same for both skills,
    # so claim 2's "knowledge faster" does not)
    assert c.loc[(c.index[0][0], "all"), "verdict"] == "supported"
    assert "**Verdict: supported**" in text
    for term in ("**Approach 2**", "**Approach 3**", "**edge**", "**partial**", "**APE**"):
        assert term in text  # defined where the summary first uses them
    for section in (
        "N* per skill metric at the largest budget",
        "Claim 1",
        "Claim 2",
        "Claim 3",
        "Held-out budget prediction",
        "Approach 3",
    ):
        assert section in text
    assert estimates_outside_intervals(d / "tables") == []


def test_bad_groups_get_a_status_naming_them(cfg, tmp_path, monkeypatch):
    cells = make_cells()
    # 1) NaN losses: knowledge_qa at code fraction 0.25, every budget
    nan = (cells.code_frac == 0.25) & (cells.metric == "knowledge_qa")
    cells.loc[nan, "value"] = np.nan
    # 2) too few points: code fraction 0.75 at the middle budget keeps 2 sizes
    few = (cells.code_frac == 0.75) & (cells.budget == BUDGETS[1]) & ~cells["size"].isin(["s1", "s3"])
    cells = cells[~few]
    # 3) flat curve: code_text at code fraction 0.25, largest budget
    flat = (cells.code_frac == 0.25) & (cells.metric == "code_text") & (cells.budget == BUDGETS[2])
    cells.loc[flat, "value"] = 2.0
    # 4) a diverged cell, excluded and listed
    bad = cells.cell.iloc[0]
    cells.loc[cells.cell == bad, ["diverged", "value"]] = [True, np.nan]
    # 5) one analysis blowing up as a whole must not lose the others
    monkeypatch.setattr(
        tables.skills, "validation_composition", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
    )

    r = report.analyze(cfg, tmp_path, cells=cells)
    o = r["optima"]
    nan_rows = o[(o.code_frac == 0.25) & (o.metric == "knowledge_qa")]
    assert len(nan_rows) == len(BUDGETS)
    for _, row in nan_rows.iterrows():
        assert row.status.startswith(
            f"failed: code_frac=0.25, metric=knowledge_qa, skill=knowledge,"
            f" budget={row.budget:g}: only 0 distinct sizes"
        )
    few_rows = o[(o.code_frac == 0.75) & (o.budget == BUDGETS[1])]
    assert few_rows.status.str.contains("code_frac=0.75, .*budget=4e\\+12: only 2 distinct sizes").all()
    flat_row = o[(o.code_frac == 0.25) & (o.metric == "code_text") & (o.budget == BUDGETS[2])]
    assert (
        flat_row.status.iloc[0].startswith("failed: code_frac=0.25, metric=code_text")
        and "flat" in flat_row.status.iloc[0]
    )
    assert (o[~o.status.str.startswith("failed")].status.isin(["ok", "edge"])).all()

    sc = r["scaling"].set_index(["code_frac", "metric"])
    assert sc.loc[(0.25, "knowledge_qa"), "status"].startswith("failed: code_frac=0.25, metric=knowledge_qa")
    ape = r["ape_residuals"]
    a = ape[(ape.code_frac == 0.75) & (ape.budget == BUDGETS[1])]
    assert a.status.str.startswith("failed: code_frac=0.75, budget=4e+12").all()
    p = r["parametric"].set_index(["code_frac", "metric"])
    assert p.loc[(0.25, "knowledge_qa"), "status"].startswith("failed: code_frac=0.25, metric=knowledge_qa")
    assert "0 budget(s) with finite losses" in p.loc[(0.25, "knowledge_qa"), "status"]
    sl = r["datamix_slopes"]
    assert sl[sl.metric == "knowledge_qa"].status.str.startswith("failed: metric=knowledge_qa").any()

    for name in ("validation_composition", "validation_composition_summary"):
        t = pd.read_csv(tmp_path / "tables" / f"{name}.csv")
        assert t.status.tolist() == ["failed: validation_composition: RuntimeError: boom"]
    assert (tmp_path / "figures" / "validation_composition.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "tables" / "optima.md").read_text()
    assert f"diverged cells, excluded from fits (1): {bad}" in md
    assert f"- diverged: {bad}" in (tmp_path / "tables" / "summary.md").read_text()
    assert f"% diverged cells, excluded from fits (1): {bad}" in (tmp_path / "tables" / "optima.tex").read_text()
    assert f"provenance: study config {config.study_digest(cfg)}" in md
    assert "Not available (1 failed)" in (tmp_path / "tables" / "summary.md").read_text()
    for name in report.TABLES:
        check_tex((tmp_path / "tables" / f"{name}.tex").read_text())


def test_latex_escapes_and_merges_intervals():
    df = pd.DataFrame(
        dict(
            metric=["code_fn", "a&b%"],
            n_opt=[1.5e4, np.nan],
            n_opt_lo=[1e4, np.nan],
            n_opt_hi=[2e4, np.nan],
            edge=[False, True],
            note=["long text", ""],
            status=["ok", "failed: metric=a&b%: only 2 distinct sizes"],
        )
    )
    tex = report.to_latex(df, "N* per metric_x", "tab:x")
    check_tex(tex)
    assert r"code\_fn" in tex and r"a\&b\%" in tex and r"\caption{N* per metric\_x}" in tex
    assert r"$1.5\times10^{4}$ [$1\times10^{4}$, $2\times10^{4}$]" in tex
    assert "n\\_opt [CI]" in tex and "n\\_opt\\_lo" not in tex and "long text" not in tex
    assert "& failed \\\\" in tex and "only 2 distinct" not in tex  # reason stays in the CSV
    assert "-- & yes" in tex


@pytest.mark.skipif(
    not shutil.which("pdflatex"), reason="pdflatex not installed (apt install texlive-latex-recommended)"
)
def test_every_latex_table_compiles_with_booktabs(clean, tmp_path):
    """The .tex tables are meant to be \\input into a paper: each must compile as it is."""
    d, _ = clean
    for name in report.TABLES:
        doc = tmp_path / f"{name}_doc.tex"
        doc.write_text(
            "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n"
            + (d / "tables" / f"{name}.tex").read_text()
            + "\n\\end{document}\n"
        )
        p = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, f"{name}.tex:\n{p.stdout[-2000:]}"
