"""`skillscale mixture-recovery`: does the mixture law recover a known N*(C, s), and are its intervals honest?

    skillscale mixture-recovery [--cells results/default/cells.csv] [--draws 40] [--noise 0.012]
                                [--budget-factor 10] [--code-fraction 0.35] [--n-boot 100]
                                [--form share|deff_add] [--json]

Draws synthetic cells from a known law (--form, default share; parameters in TRUTHS) at a study's
grid (the code fractions, sizes, tokens and seeds of its cells.csv; a default-study-shaped
grid without --cells), adds Gaussian noise of --noise bits/byte per cell (one value, or a
comma-separated list to run each), fits the same form with a bootstrap over cells, and
asks `skillscale optimum`'s question at --budget-factor times the largest trained budget
and an untrained --code-fraction. Reports per noise level the median and largest |N*
error| over draws and the share of draws whose interval covers the true N* (coverage).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd

from skillscale.analysis import fit, mixlaw
from skillscale.analysis.fit import mixture as mx

__all__ = ["TRUTHS", "FORM", "default_grid", "synthetic_cells", "true_law", "recover", "run"]

FORM = mixlaw.DEFAULT_FORM
# Laws in the range the default study's fits take (bits/byte; N ~ 1e4-1e5, D ~ 1e5-1e7).
# deff_add: the mix moves N* (tau < 1) and shifts the loss (K > 0); share: near the default
# study's code_text law (its chosen form), the mix raises the loss and moves N* a little.
TRUTHS = {
    "deff_add": dict(E=0.8, A=220.0, B=150.0, alpha=0.5, beta=0.35, mix=0.3, K=0.4),
    "share": dict(E=1.2, A=45.0, B=95.0, alpha=0.4, beta=0.35, mix=0.28, K=0.0),
}


def true_law(form: str = FORM) -> mx.MixtureLaw:
    if form not in TRUTHS:
        raise ValueError(f"no known law of form {form!r} to draw from; one of {sorted(TRUTHS)}")
    return mx.MixtureLaw(form, **TRUTHS[form], objective=0.0, rms=0.0, n_points=0, converged=True)


def default_grid() -> pd.DataFrame:
    """The default study's design: 3 code fractions x 5 budgets x 6 sizes around 20 tokens/param x 2 seeds."""
    ladder = np.array([14928, 27384, 41632, 60360, 82416, 105112, 133440], float)
    rows = []
    for b in (2e11, 3e11, 4.5e11, 6.8e11, 1e12):
        ne = np.sqrt(b / (6 * 20))
        sizes = ladder[np.argsort(np.abs(np.log(ladder / ne)))[:6]]
        for cf in (0.2, 0.5, 0.8):
            for n in sizes:
                for seed in (0, 1):
                    rows.append(dict(code_frac=cf, budget=b, n_params=n, tokens=b / (6 * n), seed=seed))
    return pd.DataFrame(rows)


def synthetic_cells(grid: pd.DataFrame, noise: float, rng, law: mx.MixtureLaw | None = None) -> pd.DataFrame:
    """A cells table (one metric, code_text) from `law` on `grid` with N(0, noise) per cell."""
    law = law or true_law()
    g = grid.copy().reset_index(drop=True)
    g["cell"] = [f"c{i}" for i in range(len(g))]
    g["metric"], g["skill"], g["diverged"] = "code_text", "code", False
    g["value"] = law.predict(g["n_params"].to_numpy(), g["tokens"].to_numpy(), g["code_frac"].to_numpy())
    g["value"] += rng.normal(0, noise, len(g))
    return g


def recover(
    grid: pd.DataFrame, noise: float, draws: int, n_boot: int, budget: float, code_frac: float, seed=0, form=FORM
):
    """Per draw: (true N*, fitted N*, interval lo, hi) at `budget` and `code_frac`; cells drawn
    from the known law of `form` and fitted with the same form."""
    law0 = true_law(form)
    truth = mx.optimum([("m", law0, 1.0, code_frac)], budget)
    n_true = float(np.exp(truth.log_n))
    rng = np.random.default_rng(seed)
    out = []
    for k in range(draws):
        cells = synthetic_cells(grid, noise, rng, law0)
        inp = mixlaw.law_inputs(cells)
        try:
            law = mixlaw.fit_laws(inp, n_boot, (form,), seed=k)["code_text"][form]
            if isinstance(law, str):
                raise fit.FitError(law)
            o = mx.optimum([("m", law, 1.0, code_frac)], budget)
            lo, hi = fit.interval(o.log_n_draws, 0.9, o.log_n)
            out.append((n_true, float(np.exp(o.log_n)), float(np.exp(lo)), float(np.exp(hi))))
        except fit.FitError:
            out.append((n_true, np.nan, np.nan, np.nan))
    return np.array(out)


def summarise(res: np.ndarray) -> dict:
    err = np.abs(res[:, 1] / res[:, 0] - 1)
    cov = (res[:, 2] <= res[:, 0]) & (res[:, 0] <= res[:, 3])
    ok = np.isfinite(err)
    return dict(
        draws=len(res),
        failed=int((~ok).sum()),
        n_true=float(res[0, 0]),
        median_abs_err=float(np.median(err[ok])) if ok.any() else np.nan,
        max_abs_err=float(np.max(err[ok])) if ok.any() else np.nan,
        coverage=float(cov[ok].mean()) if ok.any() else np.nan,
    )


def run(a) -> int:
    grid = default_grid()
    if a.cells:
        c = pd.read_csv(a.cells).drop_duplicates("cell")
        grid = c[["code_frac", "budget", "n_params", "tokens", "seed"]].reset_index(drop=True)
    budget = a.budget_factor * float(grid["budget"].max())
    form = a.form or FORM
    if form not in TRUTHS:
        print(f"error: --form {form}: no known law of that form to draw from; one of {sorted(TRUTHS)}", file=sys.stderr)
        return 2
    report = []
    for noise in (float(x) for x in str(a.noise).split(",")):
        t = time.time()
        res = recover(grid, noise, a.draws, a.n_boot, budget, a.code_fraction, a.seed, form)
        s = dict(form=form, noise=noise, budget=budget, code_fraction=a.code_fraction, **summarise(res))
        s["seconds"] = round(time.time() - t, 1)
        report.append(s)
        if not a.json:
            print(
                f"{form}, noise {noise:g}: N* true {s['n_true']:.4g} at C = {budget:.3g},"
                f" code fraction {a.code_fraction:g};"
                f" |error| median {s['median_abs_err']:.1%}, max {s['max_abs_err']:.1%} over {s['draws']} draws"
                f" ({s['failed']} failed); 90% interval covers the truth in {s['coverage']:.0%} ({s['seconds']} s)",
                flush=True,
            )
    if a.json:
        print(json.dumps(report, indent=1))
    return 0
