"""skillscale.studies.designs: what other seeds x sizes designs of a study would buy, per minute."""

import numpy as np
import pandas as pd
import pytest

from skillscale import plan, study
from skillscale.studies import designs

SD = 0.02  # the noise the synthetic study is built with


def two_seed_cells(cfg):
    """The default study's cells under 2 seeds, each metric a parabola in ln N per budget
    (vertex near the 20-tokens-per-parameter guess) plus noise of sd SD per cell."""
    cells, _ = plan.build(study.validate(cfg | {"seeds": [0, 1]}))
    rng = np.random.default_rng(0)
    rows = []
    for c in cells:
        for m, skill in (
            ("knowledge_qa", "knowledge"),
            ("code_fn", "code"),
            ("knowledge_text", "knowledge"),
            ("code_text", "code"),
        ):
            x0 = 0.5 * np.log(c.budget / 120)
            rows.append(
                dict(
                    cell=c.cell,
                    code_frac=c.code_frac,
                    budget=c.budget,
                    size=c.size,
                    seed=c.seed,
                    n_params=c.n_params,
                    n_params_total=c.n_params_total,
                    tokens=c.tokens,
                    metric=m,
                    skill=skill,
                    value=3.0
                    - 0.1 * np.log(c.budget / 2e11)
                    + 0.15 * (np.log(c.n_params) - x0) ** 2
                    + SD * rng.standard_normal(),
                    diverged=False,
                )
            )
    return pd.DataFrame(rows)


def five_sizes():
    cfg = study.load("config/config.yaml")
    return study.validate(cfg | {"grid": cfg["grid"] | {"sizes_per_budget": 5}})


def test_a_second_seed_narrows_the_intervals_and_costs_its_minutes():
    cfg = five_sizes()
    cells = two_seed_cells(cfg)
    tps, ev = {16: 65000.0, 64: 32000.0}, {16: 1.6, 64: 3.1}
    out = designs.compare(cfg, cells, tps, ev, [(5, 1)], reps=3, cores=2).set_index("design")
    assert list(out.index) == ["5 sizes x 2 seeds", "5 sizes x 1 seed"]  # the cells' own design first
    assert all(abs(v / SD - 1) < 0.15 for v in out.attrs["sd"].values())  # the noise it was built with
    one, two = out.loc["5 sizes x 1 seed"], out.loc["5 sizes x 2 seeds"]
    assert two.cells == 2 * one.cells and 1.7 < two.minutes / one.minutes < 2.0  # + the fixed jobs' time
    assert two.n_opt_ratio < one.n_opt_ratio and two.exponent_width < one.exponent_width
    assert two.fits == 60 and two.interior >= 57  # an edge optimum now and then, as in the real study


def test_cells_without_residuals_are_refused():
    cfg = five_sizes()
    cells = two_seed_cells(cfg)
    exact = cells[cells.seed == 0].copy()
    exact["value"] = 3.0 + 0.1 * (np.log(exact.n_params) - 10) ** 2  # every point on its parabola
    with pytest.raises(ValueError, match="2 or more seeds, or 4 or more sizes"):
        designs.compare(cfg, exact, {16: 1e4}, {16: 1.0}, [(5, 2)], reps=1, cores=2)


def test_rates_between_and_beyond_the_measured_widths_follow_a_power_law():
    table = {16: 64000.0, 64: 32000.0}
    assert abs(designs.at_width(table, 32) - 45254.8) < 1  # halfway in log-log
    assert abs(designs.at_width(table, 128) - 22627.4) < 1  # the same slope beyond: rate ~ d^-0.5
    assert designs.parse_designs("5x1,6x2") == [(5, 1), (6, 2)]
