"""The paper's analyses on synthetic cells whose compute-optimal sizes are known."""

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar

from skillscale.analysis import skills

ALPHA = BETA = 0.35
A_OPT = BETA / (ALPHA + BETA)
LN_G0 = -2.5  # N*(C) = G (C/6)^A_OPT; the size grid is centred on G0 (C/6)^A_OPT
# Per metric: skill, E, B, and ln G = LN_G0 + offset + kappa * (own-data fraction - 0.5).
# So d ln N*/d own fraction = kappa exactly, and knowledge QA sits ~0.6 above the grid
# centre (capacity-hungry), code functions ~0.6 below (data-hungry).
METRICS = {
    "knowledge_qa": dict(skill="knowledge", E=1.0, B=60.0, offset=0.6, kappa=1.0),
    "knowledge_text": dict(skill="knowledge", E=1.3, B=60.0, offset=0.2, kappa=0.3),
    "code_fn": dict(skill="code", E=0.6, B=60.0, offset=-0.6, kappa=0.3),
    "code_text": dict(skill="code", E=0.8, B=60.0, offset=-0.2, kappa=0.1),
}
CODE_FRACS = (0.25, 0.5, 0.75)
BUDGETS = (1e12, 4e12, 1.6e13, 6.4e13)


def own_fraction(metric, code_frac):
    return code_frac if METRICS[metric]["skill"] == "code" else 1 - code_frac


def law(metric, code_frac):
    """(E, A, B) of L = E + A/N^a + B/D^b with the metric's G at this data mix."""
    m = METRICS[metric]
    ln_g = LN_G0 + m["offset"] + m["kappa"] * (own_fraction(metric, code_frac) - 0.5)
    # G = (alpha A / (beta B))^(1/(alpha+beta))  =>  A = G^(alpha+beta) beta B / alpha
    A = np.exp((ALPHA + BETA) * ln_g) * BETA * m["B"] / ALPHA
    return m["E"], A, m["B"]


def loss(metric, code_frac, n, d):
    E, A, B = law(metric, code_frac)
    return E + A / n**ALPHA + B / d**BETA


def true_log_n_opt(metric, code_frac, c):
    E, A, B = law(metric, code_frac)
    return np.log((ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))) + A_OPT * np.log(c / 6)


def true_mix_log_n_opt(w, code_frac, c):
    def f(x):
        n = np.exp(x)
        d = c / (6 * n)
        return w * loss("knowledge_text", code_frac, n, d) + (1 - w) * loss("code_text", code_frac, n, d)

    centre = LN_G0 + A_OPT * np.log(c / 6)
    return minimize_scalar(f, bounds=(centre - 3, centre + 3), method="bounded", options=dict(xatol=1e-8)).x


def make_cells(sizes=7, spread=1.6, noise=0.001, seeds=(0,), seed=0, budgets=BUDGETS, code_fracs=CODE_FRACS):
    rng = np.random.default_rng(seed)
    rows = []
    for cf in code_fracs:
        for c in budgets:
            centre = np.exp(LN_G0) * (c / 6) ** A_OPT
            for k in range(sizes):
                n = centre * spread ** (k - (sizes - 1) / 2)
                d = c / (6 * n)
                for s in seeds:
                    cell = f"code{cf:.2f}_C{c:.1e}_s{k}_seed{s}"
                    for m in METRICS:
                        rows.append(
                            dict(
                                cell=cell,
                                code_frac=cf,
                                budget=c,
                                size=f"s{k}",
                                seed=s,
                                n_params=int(round(n)),
                                n_params_total=int(round(n * 1.2)),
                                n_params_nonembed=int(round(n * 0.8)),
                                tokens=int(round(d)),
                                flops=6 * n * d,
                                metric=m,
                                skill=METRICS[m]["skill"],
                                value=loss(m, cf, n, d) * (1 + noise * rng.standard_normal()),
                                diverged=False,
                            )
                        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def cells():
    return make_cells()


def test_validation_mix_is_byte_weighted_mean(cells):
    mix = skills.validation_mix(cells, 0.3)
    wide = cells.pivot(index="cell", columns="metric", values="value")
    got = mix.set_index("cell")["value"]
    assert np.allclose(got, 0.3 * wide.loc[got.index, "knowledge_text"] + 0.7 * wide.loc[got.index, "code_text"])
    assert set(mix.metric) == {"val_mix"} and len(mix) == cells.cell.nunique()
    assert {"code_frac", "budget", "n_params", "diverged"} <= set(mix.columns)
    with pytest.raises(ValueError, match="outside"):
        skills.validation_mix(cells, 1.5)


def test_ape_residual_signs_and_values(cells):
    r = skills.ape_residuals(cells, w=0.5, n_boot=200)
    assert (r.status == "ok").all(), r.status.unique()
    qa, fn = r[r.metric == "knowledge_qa"], r[r.metric == "code_fn"]
    assert (qa.residual > 0).all() and (qa.hungry == "capacity").all()
    assert (fn.residual < 0).all() and (fn.hungry == "data").all()
    truth = np.array(
        [true_log_n_opt(m, cf, c) - true_mix_log_n_opt(0.5, cf, c) for m, cf, c in zip(r.metric, r.code_frac, r.budget)]
    )
    assert np.abs(r.residual - truth).max() < 0.12
    assert ((r.residual_lo - 0.05 <= truth) & (truth <= r.residual_hi + 0.05)).mean() >= 0.8


def test_datamix_slopes_recover_kappa(cells):
    s = skills.datamix_slopes(cells, n_boot=200)
    assert (s.status == "ok").all(), s.status.unique()
    for m, p in METRICS.items():
        got = s[s.metric == m]
        assert len(got) == len(BUDGETS)
        assert np.allclose(got.slope, p["kappa"], atol=0.12), (m, got.slope.tolist())
    kappa = s.metric.map(lambda m: METRICS[m]["kappa"])
    assert ((s.slope_lo <= kappa) & (kappa <= s.slope_hi)).mean() >= 0.8
    qa = s[s.metric == "knowledge_qa"]
    assert (qa.slope_lo > 0).all() and (qa.slope_lo <= qa.slope).all() and (qa.slope <= qa.slope_hi).all()
    # knowledge optima move faster with their data share than code optima
    assert (qa.slope.to_numpy() > s[s.metric == "code_fn"].slope.to_numpy()).all()


def test_validation_composition_range(cells):
    ws = np.linspace(0, 1, 6)
    vc = skills.validation_composition(cells, ws=ws, n_boot=100)
    assert (vc.summary.status == "ok").all() and len(vc.curve) == len(ws) * len(CODE_FRACS) * len(BUDGETS)
    for _, row in vc.summary.iterrows():
        t = [true_mix_log_n_opt(w, row.code_frac, row.budget) for w in ws]
        truth = np.exp(max(t) - min(t)) - 1
        assert row.rel_change == pytest.approx(truth, abs=0.1)
        assert row.w_at_max == 1.0 and row.w_at_min == 0.0  # knowledge text wants the bigger model
        assert row.rel_change_lo <= row.rel_change <= row.rel_change_hi


def test_heldout_budget_prediction(cells):
    h = skills.heldout_budget_prediction(cells, "knowledge_qa", n_boot=100)
    assert (h.status == "ok").all() and len(h) == len(CODE_FRACS)
    assert (h.heldout_budget == max(BUDGETS)).all()
    assert np.abs(h.n_opt_rel_err).max() < 0.15
    assert np.abs(h.loss_rel_err).max() < 0.03
    assert np.allclose(h.a, A_OPT, atol=0.05)
    mix = skills.heldout_budget_prediction(cells, "val_mix", n_boot=0)
    assert (mix.status == "ok").all()


def test_diverged_cells_excluded_and_listed():
    cells = make_cells()
    bad = cells.cell.unique()[3]
    cells.loc[cells.cell == bad, "diverged"] = True
    cells.loc[cells.cell == bad, "value"] = 50.0  # would wreck the fit if used
    clean = make_cells()
    r, r0 = skills.ape_residuals(cells, n_boot=0), skills.ape_residuals(clean, n_boot=0)
    cf, b = cells.loc[cells.cell == bad, ["code_frac", "budget"]].iloc[0]
    row = (r.code_frac == cf) & (r.budget == b)
    assert (r.loc[row, "excluded_cells"] == bad).all() and (r.loc[~row, "excluded_cells"] == "").all()
    assert r.attrs["excluded_cells"] == [bad]
    assert np.abs(r.loc[row, "residual"].to_numpy() - r0.loc[row, "residual"].to_numpy()).max() < 0.2
    s = skills.datamix_slopes(cells, n_boot=0)
    assert (s.loc[s.budget == b, "excluded_cells"] == bad).all()


def test_too_few_points_is_a_status_not_an_exception():
    cells = make_cells()
    # one (code_frac, budget) keeps only 2 sizes; one metric is missing for a whole code_frac
    small = (cells.code_frac == 0.5) & (cells.budget == 1e12) & ~cells["size"].isin(["s2", "s3"])
    cells = cells[~small]
    cells = cells[~((cells.code_frac == 0.75) & (cells.metric == "code_fn"))]
    r = skills.ape_residuals(cells, n_boot=20)
    row = r[(r.code_frac == 0.5) & (r.budget == 1e12)]
    assert row.status.str.startswith("failed: code_frac=0.5, budget=1e+12").all()
    assert "only 2 distinct sizes" in row.status.iloc[0]
    fn = r[(r.code_frac == 0.75) & (r.metric == "code_fn")]
    assert fn.status.str.contains("metric=code_fn: no values in these cells").all()
    s = skills.datamix_slopes(cells, n_boot=20)
    assert (s.status == "ok").sum() >= len(s) - 1
    one = skills.datamix_slopes(make_cells(code_fracs=(0.5,)), n_boot=0)
    assert one.status.str.contains("1 data fraction").all()
    h = skills.heldout_budget_prediction(make_cells(budgets=BUDGETS[:2]), "code_fn", n_boot=0)
    assert h.status.str.startswith("failed: code_frac=").all() and "need >= 2" in h.status.iloc[0]
    vc = skills.validation_composition(cells, ws=[0, 0.5, 1], n_boot=0)
    failed = vc.summary[(vc.summary.code_frac == 0.5) & (vc.summary.budget == 1e12)]
    assert failed.status.iloc[0].startswith("failed: code_frac=0.5, budget=1e+12: 0 of 3")


def test_datamix_slopes_take_the_own_share_from_the_sources_with_a_fixed_share_background(cells):
    from skillscale.analysis import tables

    # a study on configured sources: a 20% web background at a fixed share (its own metric)
    srcs = {
        "wiki": {"role": "knowledge", "weight": 1},
        "py": {"role": "code", "weight": 1},
        "web": {"role": "web", "weight": 1, "share": 0.2},
    }
    web = cells[cells.metric == "code_text"].assign(metric="text_web", skill="web")
    cells = pd.concat([cells, web], ignore_index=True)
    assert skills.own_share("knowledge", [0.25, 0.75], srcs) == pytest.approx([0.55, 0.05])
    assert skills.own_share("code", 0.25, srcs) == pytest.approx(0.25)
    legacy = skills.datamix_slopes(cells, n_boot=0)
    s = skills.datamix_slopes(cells, n_boot=0, sources=srcs)
    assert set(s.metric) == set(METRICS)  # the background role gets no slope row
    for m, p in METRICS.items():
        new, old = s[s.metric == m].reset_index(), legacy[legacy.metric == m].reset_index()
        if p["skill"] == "code":
            assert new.fractions.tolist() == old.fractions.tolist()
            continue
        # knowledge's own share is 1 - 0.2 - code_frac: the same slope, the line shifted by 0.2
        assert all(set(f.split(",")) <= {"0.55", "0.3", "0.05"} for f in new.fractions)
        assert np.allclose(new.slope, old.slope) and np.allclose(new.intercept, old.intercept + 0.2 * old.slope)
    t = tables.build_tables(cells.assign(diverged=False), {"fit": {"n_boot": 0, "ci": 0.9}, "data": {"sources": srcs}})[
        "tables"
    ]
    d = t["datamix_slopes"]
    assert not d.metric.str.contains("text_web").any() and d.skill.isin(["knowledge", "code", "knowledge - code"]).all()
    ref = d[(d.basis == "power law at C_ref") & (d.metric == "knowledge_qa")]
    assert set(ref.fractions.iloc[0].split(",")) == {"0.55", "0.3", "0.05"}
