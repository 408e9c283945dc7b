"""The mixture law (fit.mixture, analysis.mixlaw), `skillscale optimum` and its synthetic check.

Synthetic cells come from a known deff_add law (tools.mixrecovery.TRUTHS) on small grids, so every
test knows the answer it checks; bootstraps are small to keep the file at a few seconds.
"""

import json

import numpy as np
import pandas as pd
import pytest

from skillscale import cli
from skillscale.analysis import fit, mixlaw, mixselect, optimum, skills
from skillscale.analysis.fit import mixture as mx
from skillscale.tools import mixrecovery as mr

TRUE = mr.true_law("deff_add")  # the mix moves N* and shifts the loss: every effect to find


def small_grid(fracs=(0.2, 0.5, 0.8), budgets=(2e11, 4.5e11, 1e12), seeds=(0,)) -> pd.DataFrame:
    ladder = np.array([14928, 27384, 41632, 60360, 82416, 105112, 133440], float)
    rows = []
    for b in budgets:
        ne = np.sqrt(b / 120)
        for n in ladder[np.argsort(np.abs(np.log(ladder / ne)))[:5]]:
            for cf in fracs:
                for s in seeds:
                    rows.append(dict(code_frac=cf, budget=b, n_params=n, tokens=b / (6 * n), seed=s))
    return pd.DataFrame(rows)


def two_metric_cells(noise: float, seed: int = 0) -> pd.DataFrame:
    """knowledge_text and code_text cells from two known laws, on the same cells."""
    rng = np.random.default_rng(seed)
    grid = small_grid(seeds=(0, 1))
    code = mr.synthetic_cells(grid, noise, rng, TRUE)
    know_law = mx.MixtureLaw("deff_add", 0.9, 180.0, 200.0, 0.45, 0.4, 0.2, 0.5, 0.0, 0.0, 0, True)
    know = code.copy()
    know["metric"], know["skill"] = "knowledge_text", "knowledge"
    s = 1 - know["code_frac"].to_numpy()
    know["value"] = know_law.predict(know["n_params"].to_numpy(), know["tokens"].to_numpy(), s)
    know["value"] += rng.normal(0, noise, len(know))
    return pd.concat([code, know], ignore_index=True)


@pytest.fixture(scope="module")
def laws():
    """Both metrics' deff_add laws, bootstrapped on shared resamples, as a StudyLaws."""
    cells = two_metric_cells(0.012)
    inp = mixlaw.law_inputs(cells)
    fitted = mixlaw.fit_laws(inp, 30, ("deff_add",))
    ranges = dict(
        budgets=[2e11, 4.5e11, 1e12], code_fracs=[0.2, 0.5, 0.8], n_params=[14928.0, 133440.0], tokens=[1e5, 1e7]
    )
    fpt = [[1.5e4, 6 * 1.5e4 * 1.5], [1.3e5, 6 * 1.3e5 * 1.2]]
    sk = {"code_text": "code", "knowledge_text": "knowledge"}
    return cells, mixlaw.StudyLaws(fitted, sk, None, "deff_add", ranges, fpt, 0.9, [])


def test_fit_recovers_a_known_law_beyond_the_grid():
    """0.012 bits/byte of noise per cell: N* at 10x the largest budget and an untrained mix within 15%."""
    rng = np.random.default_rng(3)
    cells = mr.synthetic_cells(small_grid(), 0.012, rng, TRUE)
    inp = mixlaw.law_inputs(cells)
    law = mx.fit_mixture(inp["n_params"], inp["tokens"], inp["s"], inp["loss"], "deff_add")
    assert law.converged
    truth = mx.optimum([("m", TRUE, 1.0, 0.35)], 1e13)
    got = mx.optimum([("m", law, 1.0, 0.35)], 1e13)
    assert abs(np.exp(got.log_n - truth.log_n) - 1) < 0.15
    # the mix-blind null cannot see that the mix moves N*: its N* is the same at every share
    null = mx.fit_mixture(inp["n_params"], inp["tokens"], inp["s"], inp["loss"], "nomix")
    assert mx.optimum([("m", null, 1.0, 0.2)], 1e13).log_n == pytest.approx(
        mx.optimum([("m", null, 1.0, 0.8)], 1e13).log_n
    )


def test_a_fit_started_at_its_optimum_is_converged():
    """Refitting from the law itself (a fold's or a bootstrap's start) stops at once, often
    with L-BFGS-B's ABNORMAL_TERMINATION_IN_LNSRCH: convergence, not a failure `optimum`
    would refuse. A point away from the optimum is not converged."""
    from scipy.optimize import OptimizeResult

    cells = small_grid(seeds=(0, 1))
    n, d, s = cells["n_params"].to_numpy(), cells["tokens"].to_numpy(), cells["code_frac"].to_numpy()
    loss = TRUE.predict(n, d, s) + np.random.default_rng(2).normal(0, 0.012, len(cells))
    args = (np.log(n), np.log(d), s, np.log(loss), mx.HUBER_DELTA, np.ones(len(n)))
    for form in ("share", "deff_add"):
        law = mx.fit_mixture(n, d, s, loss, form)
        x = mx._to_x(law)
        x = mx._minimize(x, form, *args).x
        # what L-BFGS-B returns from a start it cannot improve on (seen on the default study)
        stuck = OptimizeResult(success=False, x=x, jac=mx._objective(x, form, *args)[1])
        assert law.converged and mx._converged(stuck, form)
        away = x + np.array([0.3, 0.3, 0.0, 0.05, 0.05, 0.0, 0.0])
        r = OptimizeResult(success=False, x=away, jac=mx._objective(away, form, *args)[1])
        assert not mx._converged(r, form)


@pytest.mark.parametrize("form", mx.FORMS)
def test_objective_gradient_matches_finite_differences(form):
    """L-BFGS-B trusts the analytic gradient; every form's, the mix parameter's included."""
    from scipy.optimize import approx_fprime

    rng = np.random.default_rng(0)
    lnN, lnD = np.log(rng.uniform(1e4, 1e5, 30)), np.log(rng.uniform(1e6, 1e7, 30))
    s, lnL = rng.choice([0.2, 0.5, 0.8], 30), np.log(rng.uniform(1.5, 3.0, 30))
    args = (form, lnN, lnD, s, lnL, mx.HUBER_DELTA, np.ones(30))
    theta = np.array([3.0, 4.0, 0.2, 0.3, 0.35, 0.4, -1.0 if mx._kind(form)[1] else mx._NO_K])
    grad = mx._objective(theta, *args)[1]
    numeric = approx_fprime(theta, lambda t: mx._objective(t, *args)[0], 1e-7)
    assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-5)


def test_share_form_recovers_the_capacity_share_of_a_known_law():
    """Cells from an L = E + A/(gN)^alpha + B/(gD)^beta law, g = s + tau (1 - s): the fit finds
    tau, and predicts the loss at an untrained mix (0.35) 10x beyond the grid within 1%."""
    truth = mx.MixtureLaw("share", 1.6, 120.0, 400.0, 0.5, 0.45, 0.3, 0.0, 0.0, 0.0, 0, True)
    cells = small_grid(seeds=(0, 1))
    n, d, s = cells["n_params"].to_numpy(), cells["tokens"].to_numpy(), cells["code_frac"].to_numpy()
    loss = truth.predict(n, d, s) + np.random.default_rng(5).normal(0, 0.012, len(cells))
    law = mx.fit_mixture(n, d, s, loss, "share")
    assert law.converged and law.mix == pytest.approx(0.3, abs=0.1)
    want, got = (mx.optimum([("m", x, 1.0, 0.35)], 1e13) for x in (truth, law))
    assert abs(np.exp(got.log_n - want.log_n) - 1) < 0.15
    assert got.losses["m"][0] == pytest.approx(want.losses["m"][0], rel=0.01)
    # less own data raises the loss at every size: the model and its data both serve the mix
    assert truth.predict(5e4, 1e7, 0.2) > truth.predict(5e4, 1e7, 0.8)


def test_weighted_optimum_is_the_minimum_of_the_weighted_surface(laws):
    _, sl = laws
    w = {"knowledge_text": 0.7, "code_text": 0.3}
    res = optimum.answer(sl, 1e12, 0.35, w)
    n = np.exp(np.linspace(np.log(1e4), np.log(1e6), 20001))
    d = 1e12 / (6 * n)
    surf = sum(wt * sl.law(m).predict(n, d, sl.share(m, 0.35)) for m, wt in w.items())
    assert res["optimum"]["n_opt"] == pytest.approx(n[np.argmin(surf)], rel=2e-3)
    o = res["optimum"]
    assert o["n_opt_lo"] <= o["n_opt"] <= o["n_opt_hi"]
    # a weight on one metric alone gives that metric's own optimum
    alone = optimum.answer(sl, 1e12, 0.35, {"code_text": 1.0})["optimum"]["n_opt"]
    assert alone == pytest.approx(optimum.answer(sl, 1e12, 0.35)["per_metric"]["code_text"]["n_opt"], rel=1e-9)


def test_weighted_law_agrees_with_validation_composition(laws):
    """The validation-composition analysis is the law's weighted objective over knowledge_text
    and code_text: where it has an interior optimum, the two N* intervals overlap."""
    cells, sl = laws
    vc = skills.validation_composition(cells, ws=(0.0, 0.5, 1.0), n_boot=40)
    ok = vc.curve[(vc.curve["status"] == "ok") & np.isfinite(vc.curve["n_opt_lo"])]
    assert len(ok) >= 15
    overlap = []
    for r in ok.itertuples():
        wts = {k: v for k, v in {"knowledge_text": r.w, "code_text": 1 - r.w}.items() if v > 0}
        o = optimum.answer(sl, r.budget, r.code_frac, wts)["optimum"]
        overlap.append(o["n_opt_lo"] <= r.n_opt_hi and r.n_opt_lo <= o["n_opt_hi"])
    # Two 90% intervals from noisy cells: an occasional miss is chance (here the parabola's
    # interval at code 0.5, C = 2e11, w = 1 misses the true N*, which the law's contains).
    assert np.mean(overlap) >= 0.9, overlap


def test_optimum_cli_answers_from_the_cache_and_refuses_bad_input(laws, tmp_path, capsys):
    _, sl = laws
    (tmp_path / "tables").mkdir()
    mixlaw.save(sl, tmp_path / "tables" / "mixture_law.json", "syn")
    base = ["optimum", str(tmp_path), "--budget", "1e13", "--code-fraction", "0.35"]
    assert cli.main(base + ["--weights", "knowledge_text=0.7,code_text=0.3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["optimum"]["n_opt"] > 0 and set(res["optimum"]["losses"]) == {"knowledge_text", "code_text"}
    assert any("10x the largest trained" in w for w in res["optimum"]["warnings"])
    assert cli.main(base) == 0
    text = capsys.readouterr().out
    per = optimum.answer(sl, 1e13, 0.35)["per_metric"]["code_text"]
    assert f"N* = {per['n_opt']:.3g}" in text and "warning: extrapolating" in text
    for args, msg in [
        (["--weights", "knowledge_qa=1"], "unknown metric 'knowledge_qa'"),
        (["--weights", "code_text:0.3"], "cannot parse"),
        (["--weights", "code_text=x"], "not a number"),
    ]:
        assert cli.main(base + args) == 2
        assert msg in capsys.readouterr().err
    assert cli.main(base[:-1] + ["1.5"]) == 2
    assert "[0, 1]" in capsys.readouterr().err
    assert cli.main(["optimum", str(tmp_path / "none"), "--budget", "1e12", "--code-fraction", "0.3"]) == 2
    assert "no such study folder or CSV" in capsys.readouterr().err


def test_optimum_refuses_a_law_that_did_not_converge(laws):
    _, sl = laws
    unconverged = {
        m: {f: mx.MixtureLaw.from_dict({**law.to_dict(), "converged": False}) for f, law in fs.items()}
        for m, fs in sl.laws.items()
    }
    bad = mixlaw.StudyLaws(unconverged, sl.skills, None, sl.chosen, sl.ranges, sl.fpt, sl.ci)
    with pytest.raises(optimum.OptimumError, match="did not converge"):
        optimum.answer(bad, 1e12, 0.35)


def test_exact_flops_count_moves_n_star_down(laws):
    """Exact FLOPs charge small models more per token (attention), so at one budget D is
    smaller and N* moves; the answer says which accounting it used."""
    _, sl = laws
    six = optimum.answer(sl, 1e12, 0.5)["per_metric"]["code_text"]["n_opt"]
    ex = optimum.answer(sl, 1e12, 0.5, flops="exact")["per_metric"]["code_text"]["n_opt"]
    assert ex != pytest.approx(six, rel=1e-3)


def test_optimum_fits_a_points_csv(tmp_path, capsys):
    rng = np.random.default_rng(5)
    c = mr.synthetic_cells(small_grid(), 0.01, rng, TRUE)
    c.rename(columns={"value": "loss"})[["metric", "code_frac", "n_params", "tokens", "loss"]].to_csv(
        tmp_path / "p.csv", index=False
    )
    args = ["optimum", str(tmp_path / "p.csv"), "--budget", "1e12", "--code-fraction", "0.35", "--n-boot", "10"]
    args += ["--form", "deff_add"]  # the CSV has no budgets to choose a form by: the true one
    assert cli.main(args + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    truth = np.exp(mx.optimum([("m", TRUE, 1.0, 0.35)], 1e12).log_n)
    assert res["per_metric"]["code_text"]["n_opt"] == pytest.approx(truth, rel=0.15)
    c[["metric", "n_params"]].to_csv(tmp_path / "bad.csv", index=False)
    assert cli.main(["optimum", str(tmp_path / "bad.csv"), "--budget", "1e12", "--code-fraction", "0.3"]) == 2
    assert "needs columns metric, code_frac" in capsys.readouterr().err


def test_leave_one_fraction_out_and_the_choice_rule():
    cells = mr.synthetic_cells(small_grid(), 0.004, np.random.default_rng(1), TRUE)
    inp = mixlaw.law_inputs(cells)
    optima = fit.isoflop_optima(cells.rename(columns={"value": "loss"}), ["code_frac", "metric", "skill"], n_boot=0)
    loo = mixselect.loo_predictions(inp, optima, ("nomix", "deff_add"), 0, 0.9)
    assert set(loo["code_frac"]) <= {0.2, 0.5, 0.8} and set(loo["candidate"]) == {"nomix", "deff_add", "surface"}
    comp = {c["candidate"]: c for c in mixselect.compare(loo)}
    # the true form predicts the held-out loss* far better than the mix-blind null
    assert comp["deff_add"]["median_abs_loss_err"] < comp["nomix"]["median_abs_loss_err"] / 3
    assert mixselect.choose(list(comp.values()), ("nomix", "deff_add")) == "deff_add"
    # held out, 0.5 is interpolated between the other two fractions, 0.2 and 0.8 extrapolated
    mine = loo[loo["candidate"] == "deff_add"]
    split = {w: mine[(mine["code_frac"] == 0.5) == (w == "interp")] for w in ("interp", "extrap")}
    for w, rows in split.items():
        assert comp["deff_add"][f"median_abs_loss_err_{w}"] == pytest.approx(np.median(np.abs(rows["loss_rel_err"])))
    # fitted on every fraction, the true form meets the optima it was fitted through more
    # closely than it predicts a fraction it never saw, and the mix-blind null does not
    full = mixlaw.fit_laws(inp, 0, ("nomix", "deff_add"))
    fitted = mixselect.in_sample(full, inp, optima)
    assert fitted["deff_add"]["loss"] < 0.005 < fitted["nomix"]["loss"]
    assert fitted["deff_add"]["loss"] <= comp["deff_add"]["median_abs_loss_err"]
    rule = [
        dict(candidate="nomix", median_abs_n_err=0.05, median_abs_loss_err=0.10),
        dict(candidate="deff", median_abs_n_err=0.30, median_abs_loss_err=0.01),
        dict(candidate="add", median_abs_n_err=0.10, median_abs_loss_err=0.03),
    ]
    assert mixselect.choose(rule, mx.FORMS) == "add"  # within 15% on N*, then the better loss*


def test_grid_flops_exact_plans_tokens_from_the_exact_count(repo):
    from skillscale import config, plan, study

    cfg = study.load(repo / "config" / "studies" / "test.yaml")
    assert "flops" not in cfg["grid"]  # no default filled in: existing configs hash as before
    six, _ = plan.build(cfg)
    exact, _ = plan.build({**cfg, "grid": {**cfg["grid"], "flops": "exact"}})
    assert [c.cell for c in six] == [c.cell for c in exact]
    for a, b in zip(six, exact):
        # each budget now buys what the exact count says (to within one optimizer step), so
        # a small model, whose attention is a larger share of its cost, gets fewer tokens
        assert b.flops_exact <= b.budget and b.flops_exact > 0.97 * b.budget
        assert b.tokens < a.tokens and a.flops <= a.budget
    with pytest.raises(config.ConfigError, match="grid.flops"):
        study.validate({"grid": {"flops": "7nd"}})


def test_held_out_calibration_uses_only_the_other_folds():
    """A fold's prediction interval is widened by the errors of the OTHER held-out fractions:
    a fold with a huge error of its own cannot widen its own interval to cover itself."""
    rows = []
    for cf, err in ((0.2, 0.05), (0.5, 0.05), (0.8, 1.0)):
        for b in (1e11, 2e11, 4e11):
            rows.append(
                dict(candidate="x", metric="m", code_frac=cf, budget=b, n_opt=1e4, loss_opt=2.0,
                     pred_n=1e4 * np.exp(err), pred_n_lo=1e4 * np.exp(err) * 0.99,
                     pred_n_hi=1e4 * np.exp(err) * 1.01, pred_loss=2.0, pred_loss_lo=1.99, pred_loss_hi=2.01)
            )  # fmt: skip
    cal = mixselect.calibrate(pd.DataFrame(rows), "x", 0.9).set_index("code_frac")
    assert not cal.loc[0.8, "covered"].astype(bool).any()  # widened by the other folds' 5%
    assert cal.loc[0.2, "covered"].astype(bool).all()  # the 0.8 fold's error widens the others
    assert (cal["pred_n_boot_lo"] == cal["pred_n_lo"]).sum() < len(cal)
