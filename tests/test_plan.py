import math

import pytest

from skillscale import plan, study


def test_default_plan_has_six_sizes_per_budget_spanning_the_guess():
    cfg = study.load("config/config.yaml")
    cells, dropped = plan.build(cfg)
    df = plan.to_frame(cells)
    assert not dropped
    assert df.code_frac.nunique() >= 3 and df.budget.nunique() >= 3
    for b, g in df.groupby("budget"):
        assert g["size"].nunique() == 6
        n_e = math.sqrt(b / (6 * cfg["grid"]["tokens_per_param"]))
        assert g.n_params.min() < n_e < g.n_params.max()
    # D = C / (6N), rounded down to whole steps: within one step of the budget
    step_tokens = cfg["train"]["batch_size"] * cfg["model"]["seq_len"]
    assert ((df.budget - df.flops) <= 6 * df.n_params * step_tokens).all()
    assert (df.flops <= df.budget).all()
    assert (df.tokens == df.steps * step_tokens).all()
    assert df.cell.is_unique


def test_window_is_clamped_to_the_ladder():
    ns = [10, 20, 40, 80, 160, 320]
    assert list(plan.window(ns, budget=6 * 20 * 1e6, k=3, tokens_per_param=20)) == [3, 4, 5]
    assert list(plan.window(ns, budget=6 * 20 * 1.0, k=3, tokens_per_param=20)) == [0, 1, 2]
    assert list(plan.window(ns, budget=6 * 20 * 40**2, k=3, tokens_per_param=20)) == [1, 2, 3]


def test_cells_with_too_few_steps_are_dropped_with_a_reason():
    cfg = study.validate({})
    cfg["train"]["min_steps"] = 10**6  # (validate itself refuses a grid with nothing to train)
    cells, dropped = plan.build(cfg)
    assert not cells and dropped
    assert "min_steps" in dropped[0]["reason"]


def test_adding_a_fraction_keeps_existing_cell_ids():
    a, _ = plan.build(study.validate({"mix": {"code_fractions": [0.2, 0.5]}}))
    b, _ = plan.build(study.validate({"mix": {"code_fractions": [0.2, 0.5, 0.9]}}))
    ids_a = {c.cell: c for c in a}
    ids_b = {c.cell: c for c in b}
    assert set(ids_a) < set(ids_b)
    assert all(ids_a[k] == ids_b[k] for k in ids_a)


def test_cost_plan_covers_every_training_and_evaluation_job():
    from skillscale.tools import costplan

    cfg = study.load("config/studies/test.yaml", {"train": {"schedule": "wsd"}})
    cells, _ = plan.build(cfg)
    jobs, s = costplan.estimate(cfg, threads=1, jobs=2)
    assert set(jobs[jobs.kind == "cooldown"].job) == {c.cell for c in cells}
    assert set(jobs[jobs.kind == "trunk"].job) == {r.run for r in plan.trunks(cfg, cells)}
    assert set(jobs[jobs.kind == "evaluation"].job) == {c.cell for c in cells}  # every cell is scored too
    assert (jobs.seconds > 0).all() and (jobs.tok_per_s > 0).all()
    assert s["jobs"] == len(plan.trunks(cfg, cells))  # one process per trunk
    train = jobs[jobs.kind != "evaluation"]
    assert train.flops.sum() == pytest.approx(plan.sweep_cost(cfg, cells)["wsd_flops"])
    assert s["wall_seconds"] >= s["cpu_seconds"] / 2
