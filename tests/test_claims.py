"""The claims' verdicts can fail: synthetic cells built so a claim is false are not judged
"supported", cells built so it holds are (rules: docs/claims.md, skillscale/claims.py)."""

import numpy as np
import pandas as pd
import pytest

from skillscale.analysis import claims, fit, skills, tables

ALPHA = BETA = 0.35
A_OPT = BETA / (ALPHA + BETA)
LN_G0 = -2.5
CODE_FRACS = (0.2, 0.5, 0.8)
BUDGETS = (1e12, 4e12, 1.6e13, 6.4e13)

# The paper's world: knowledge QA capacity-hungry (N* above the aggregate's), code
# functions data-hungry; every skill's N* grows with its own data share, knowledge faster;
# knowledge text wants bigger models than code text, so the validation mix moves N*.
TRUE = {
    "knowledge_qa": dict(skill="knowledge", E=1.0, offset=0.6, kappa=1.0),
    "knowledge_text": dict(skill="knowledge", E=1.3, offset=0.2, kappa=0.6),
    "code_fn": dict(skill="code", E=0.6, offset=-0.6, kappa=0.3),
    "code_text": dict(skill="code", E=0.8, offset=-0.2, kappa=0.2),
}


def world(**changes):
    return {m: dict(spec, **changes.get(m, {})) for m, spec in TRUE.items()}


def make_cells(metrics, sizes=7, spread=1.6, noise=0.002, seed=0):
    """Cells in the cells.csv schema whose losses follow L = E + A/N^a + B/D^b per metric,
    with ln N*(C) = LN_G0 + offset + kappa (own share - 0.5) + A_OPT ln(C/6)."""
    rng = np.random.default_rng(seed)
    rows = []
    for cf in CODE_FRACS:
        for c in BUDGETS:
            centre = np.exp(LN_G0) * (c / 6) ** A_OPT
            for k in range(sizes):
                n = centre * spread ** (k - (sizes - 1) / 2)
                d = c / (6 * n)
                cell = f"code{cf:.2f}_C{c:.1e}_s{k}_seed0"
                for m, p in metrics.items():
                    own = cf if p["skill"] == "code" else 1 - cf
                    ln_g = LN_G0 + p["offset"] + p["kappa"] * (own - 0.5)
                    B = 60.0
                    A = np.exp((ALPHA + BETA) * ln_g) * BETA * B / ALPHA
                    value = (p["E"] + A / n**ALPHA + B / d**BETA) * (1 + noise * rng.standard_normal())
                    rows.append(
                        dict(
                            cell=cell,
                            code_frac=cf,
                            budget=c,
                            size=f"s{k}",
                            seed=0,
                            n_params=int(round(n)),
                            tokens=int(round(d)),
                            flops=6 * n * d,
                            metric=m,
                            skill=p["skill"],
                            value=value,
                            diverged=False,
                        )
                    )
    return pd.DataFrame(rows)


def judge(cells, n_boot=60, sources=None, ape=None):
    """The three tables the claims read, built as `skillscale analyze` builds them."""
    kw = dict(n_boot=n_boot, seed=0, ci=0.9)
    usable = cells.rename(columns={"value": "loss"})
    sc = fit.isoflop_scaling(usable, tables.GROUP, n_boot=n_boot, seed=0, ci=0.9)
    c_ref = float(np.exp(np.mean(np.log(BUDGETS))))
    per = skills.datamix_slopes(cells, **kw)
    per.insert(2, "basis", "budget")
    ref, _ = tables.datamix_at_reference(sc.scaling, c_ref, n_boot, 0.9)
    t = dict(
        ape_residuals=skills.ape_residuals(cells, w=tables.APE_W, sources=sources, **kw) if ape is None else ape,
        datamix_slopes=pd.concat([per, ref], ignore_index=True),
        validation_composition_summary=skills.validation_composition(cells, ws=(0, 0.5, 1), **kw).summary,
    )
    v = claims.verdicts(t)
    return {(r.claim[0], r.part): r.verdict for r in v.itertuples()}


@pytest.fixture(scope="module")
def true_world():
    return judge(make_cells(world()))


def test_claims_hold_where_the_cells_say_so(true_world):
    assert true_world[("1", "all")] == claims.SUPPORTED
    assert true_world[("2", "all")] == claims.SUPPORTED
    assert true_world[("3", "all")] == claims.SUPPORTED


def test_claim1_reversed_skills_are_contradicted():
    v = judge(make_cells(world(knowledge_qa=dict(offset=-0.6), code_fn=dict(offset=0.6))))
    assert v[("1", "knowledge")] == v[("1", "code")] == v[("1", "all")] == claims.CONTRADICTED


def test_claim1_ignores_the_aggregate_components():
    # Benchmarks sitting on the aggregate's optimum: only the text metrics (the APE's own
    # components, opposite by construction) would "support" the claim, and they do not count.
    v = judge(make_cells(world(knowledge_qa=dict(offset=0.0), code_fn=dict(offset=0.0))))
    assert v[("1", "all")] != claims.SUPPORTED


def test_claim1_counts_no_pooled_source_text_and_no_metric_twice():
    # Configured sources: knowledge_text pools text_wiki and text_news, code_text is the one
    # code source's text (text_stdlib, the same values under another name); text_manual has
    # aggregate: false. The benchmarks sit on the APE's optimum, so only the pooled text
    # would "support" the claim; bench:copy repeats code_fn in every cell.
    w = world(knowledge_qa=dict(offset=0.0), code_fn=dict(offset=0.0))
    w |= {"text_wiki": TRUE["knowledge_text"], "text_news": TRUE["knowledge_text"], "text_manual": w["knowledge_qa"]}
    cells = make_cells(w)
    twin = {"text_stdlib": "code_text", "bench:copy": "code_fn"}
    cells = pd.concat([cells] + [cells[cells.metric == m].assign(metric=t) for t, m in twin.items()])
    srcs = {
        "wiki": {"role": "knowledge"},
        "news": {"role": "knowledge", "aggregate": True},
        "manual": {"role": "knowledge", "aggregate": False},
        "stdlib": {"role": "code"},
    }
    ape = skills.ape_residuals(cells, w=tables.APE_W, sources=srcs, n_boot=60, seed=0, ci=0.9)
    use = ape.groupby("metric")[["in_aggregate", "claim1_counts", "claim1_note"]].first()
    # of two metrics equal in every cell, the first by name counts
    assert sorted(use.index[use.claim1_counts]) == ["bench:copy", "knowledge_qa", "text_manual"]
    assert use.in_aggregate[["knowledge_text", "code_text", "text_wiki", "text_news", "text_stdlib"]].all()
    assert "pooled into knowledge_text" in use.claim1_note["text_wiki"]
    assert "identical to bench:copy" in use.claim1_note["code_fn"] and not use.in_aggregate["code_fn"]
    know, code = claims.claim1(ape)
    assert know.rule.endswith("(knowledge_qa, text_manual)") and code.rule.endswith("(bench:copy)")
    assert (know.n_groups, code.n_groups) == (24, 12)  # 12 code fraction x budget groups per metric
    # the pooled texts, counted as before, would have carried the knowledge part
    old = claims.claim1(ape.assign(claim1_counts=~ape.metric.isin(["knowledge_text", "code_text"])))[0]
    assert old.n_for > 3 * know.n_for and know.verdict != claims.SUPPORTED
    # without the config, a metric equal to an APE part in every cell is still that part
    bare = skills.ape_residuals(cells, w=tables.APE_W, n_boot=10, seed=0, ci=0.9).groupby("metric").first()
    assert bare.in_aggregate["text_stdlib"] and "identical to code_text" in bare.claim1_note["text_stdlib"]


def test_claim2_shrinking_optima_are_contradicted():
    v = judge(
        make_cells(
            world(
                knowledge_qa=dict(kappa=-1.0),
                knowledge_text=dict(kappa=-0.6),
                code_fn=dict(kappa=-0.3),
                code_text=dict(kappa=-0.2),
            )
        )
    )
    assert v[("2", "knowledge slope")] == v[("2", "code slope")] == claims.CONTRADICTED
    assert v[("2", "all")] == claims.CONTRADICTED


def test_claim2_code_faster_than_knowledge_is_not_supported():
    v = judge(
        make_cells(
            world(
                knowledge_qa=dict(kappa=0.2),
                knowledge_text=dict(kappa=0.2),
                code_fn=dict(kappa=1.0),
                code_text=dict(kappa=1.0),
            )
        )
    )
    assert v[("2", "knowledge - code")] == claims.CONTRADICTED
    assert v[("2", "all")] == claims.CONTRADICTED


def test_claim3_composition_that_does_not_matter_is_contradicted():
    # knowledge and code text want the same N*: every mix picks it
    v = judge(
        make_cells(
            world(knowledge_text=dict(offset=0.0, kappa=0.0), code_text=dict(offset=0.0, kappa=0.0)), noise=0.0005
        )
    )
    assert v[("3", "all")] == claims.CONTRADICTED


def test_rules_on_intervals():
    up = claims.sign_test("c", "p", "r", [1, 1, 1], [0.5, 0.2, -0.1], [1.5, 1.4, 2.0], side=1)
    assert (up.n_for, up.n_against, up.verdict) == (2, 0, claims.SUPPORTED)
    mixed = claims.sign_test("c", "p", "r", [1, -1], [0.5, -2], [1.5, -0.5], side=1)
    assert mixed.verdict == claims.UNDECIDED
    one = claims.sign_test("c", "p", "r", [1], [0.5], [1.5], side=1)
    assert one.verdict == claims.UNDECIDED  # one group is not enough
    assert claims.sign_test("c", "p", "r", [1, 1], [np.nan, np.nan], [np.nan, np.nan], 1).n_groups == 0
    both = claims.change_test("c", "p", "r", [1, -1], [0.5, -2], [1.5, -0.5])
    assert both.n_for == 2 and both.verdict == claims.UNDECIDED  # no consistent change
    small = claims.change_test("c", "p", "r", [0.01, 0.0], [-0.05, -0.02], [0.06, 0.03])
    assert small.verdict == claims.CONTRADICTED
    assert claims.combine([up, small]) == claims.CONTRADICTED and claims.combine([up, up]) == claims.SUPPORTED


def test_claim3_old_statistic_could_not_fail_the_contrast_can():
    """In a world where the composition does not matter, max/min - 1 still has its whole
    interval above 0 (it is >= 0 by construction); the signed contrast says 'no change'."""
    cells = make_cells(
        world(knowledge_text=dict(offset=0.0, kappa=0.0), code_text=dict(offset=0.0, kappa=0.0)), noise=0.0005
    )
    s = skills.validation_composition(cells, ws=(0, 0.5, 1), n_boot=60).summary
    assert (s.rel_change_lo >= 0).all()
    part = claims.claim3(s)[0]
    assert part.verdict == claims.CONTRADICTED and part.n_for + part.n_against + part.n_neither == part.n_groups
