"""Fits on a small study's budgets predicting a larger study's (skillscale.studies.extrapolate), on
synthetic cells whose optima follow a known power law."""

import pytest

from skillscale.analysis import skills
from skillscale.studies import extrapolate
from test_report import make_cells


def test_small_study_fits_predict_the_larger_budgets_of_another():
    cells = make_cells()  # budgets 1e12, 4e12, 1.6e13; N* = G (C/6)^0.5 exactly
    small, large = cells[cells.budget <= 4e12], cells[cells.budget >= 4e12]
    table, s = extrapolate.extrapolate(small, large, n_boot=20)
    assert s["fit_max_budget"] == 4e12 and s["code_fracs"] == [0.25, 0.75]
    assert set(table.heldout_budget) == {1.6e13}  # only the budgets above the small study's
    assert len(table) == 2 * 5 and set(table.metric) == {*cells.metric.unique(), skills.MIX}
    assert (table.status == "ok").all() and (table.fit_budgets == "1e+12,4e+12").all()
    assert s["median_abs_n_err"] < 0.05  # an exact power law extrapolates to within the parabola's bias
    assert table.n_opt_rel_err.abs().max() < 0.15


def test_studies_that_cannot_be_compared_say_why():
    cells = make_cells()
    with pytest.raises(ValueError, match="no budget above"):
        extrapolate.extrapolate(cells, cells[cells.budget < 1.6e13], n_boot=0)
    with pytest.raises(ValueError, match="share no code fraction"):
        extrapolate.extrapolate(cells[cells.code_frac == 0.25], cells[cells.code_frac == 0.75], n_boot=0)


def test_default_held_out_budget_is_the_largest_one():
    cells = make_cells()
    t = skills.heldout_budget_prediction(cells, "code_fn", n_boot=20)
    assert list(t.heldout_budget) == [1.6e13, 1.6e13] and (t.fit_budgets == "1e+12,4e+12").all()
