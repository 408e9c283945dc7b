"""Compute-optimal scaling fits: arrays (or a tidy table) in, results with their uncertainty out.

- `isoflop`: Approach 2 per budget (Hoffmann et al. 2022; Porian et al. 2024). A weighted
  least-squares parabola of loss in ln N; its vertex is the IsoFLOP optimum N*(C), with a
  bootstrap over the budget's points (`fit_parabola`, `isoflop_optimum`, `isoflop_optima`).
- `powerlaw`: Approach 2 across budgets. The power law ln N* = a ln C + b through the
  optima, with intervals on a and b (`power_law_fit`; `isoflop_scaling` end to end).
- `parametric`: Approach 3 (Besiroglu et al. 2024's replication of Hoffmann).
  L(N, D) = E + A/N^alpha + B/D^beta, Huber loss (delta = 1e-3) on log loss, summed over
  points, L-BFGS-B from a grid of starts (`fit_parametric`).
- `common`: `FitError`, `group_label`, and the bootstrap's `boot_counts` and `interval`.

Every fit either returns a number with its uncertainty or raises `FitError` with a message
naming the group it was fitting; table builders turn that into a `status` column. Callers
use the names below as `fit.X` after `from skillscale.analysis import fit`.
"""

from skillscale.analysis.fit.common import FitError, boot_counts, group_label, interval
from skillscale.analysis.fit.isoflop import (
    MAX_EXTRAPOLATION,
    OPTIMA_COLUMNS,
    Optimum,
    ParabolaFit,
    batch_vertices,
    fit_parabola,
    isoflop_optima,
    isoflop_optimum,
    vertex_limits,
    window_mask,
)
from skillscale.analysis.fit.parametric import PARAM_NAMES, ParametricFit, fit_parametric
from skillscale.analysis.fit.powerlaw import (
    IsoflopScaling,
    PowerLaw,
    fit_line,
    isoflop_scaling,
    line_draws,
    power_law_fit,
)

__all__ = [
    # common
    "FitError",
    "group_label",
    "interval",
    "boot_counts",
    # Approach 2, per budget
    "ParabolaFit",
    "fit_parabola",
    "window_mask",
    "MAX_EXTRAPOLATION",
    "vertex_limits",
    "batch_vertices",
    "Optimum",
    "isoflop_optimum",
    "OPTIMA_COLUMNS",
    "isoflop_optima",
    # Approach 2, across budgets
    "PowerLaw",
    "fit_line",
    "line_draws",
    "power_law_fit",
    "IsoflopScaling",
    "isoflop_scaling",
    # Approach 3
    "PARAM_NAMES",
    "ParametricFit",
    "fit_parametric",
]
