"""Approach 2 across budgets: the power law ln N* = a ln C + b through the IsoFLOP optima.

`power_law_fit` fits the line with bootstrap intervals on a and b; `isoflop_scaling` runs
Approach 2 end to end (optima per budget, then one power law per group).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from skillscale.analysis.fit.common import FitError, _fail, group_label, interval
from skillscale.analysis.fit.isoflop import _optima


@dataclass
class PowerLaw:
    """ln y = a ln C + b, i.e. y = exp(b) C^a, with `ci` intervals."""

    a: float
    a_lo: float
    a_hi: float
    b: float
    b_lo: float
    b_hi: float
    n_budgets: int
    ci: float
    ci_method: str  # "cells": per-budget bootstrap draws propagated; "budgets": budgets resampled
    boot_frac: float  # usable share of bootstrap resamples
    residual_rms: float  # of ln y about the line
    # bootstrap replicates (a, b) of the line, for bands; not part of to_dict()
    draws: tuple | None = field(default=None, repr=False, compare=False)

    def predict(self, budget):
        return np.exp(self.b + self.a * np.log(np.asarray(budget, float)))

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "draws"}


def fit_line(lx, ly, w=None):
    if w is None:
        w = np.ones_like(lx)
    X = np.column_stack([lx, np.ones_like(lx)]) * np.sqrt(w)[:, None]
    (a, b), *_ = np.linalg.lstsq(X, ly * np.sqrt(w), rcond=None)
    return float(a), float(b)


def line_draws(lx, draws, n_boot, rng, weights=None):
    """Slope and intercept of y on lx for n_boot replicates, each taking one random draw
    per x from that x's bootstrap draws (`draws[i]`: finite draws for lx[i])."""
    lx = np.asarray(lx, float)
    Y = np.column_stack([rng.choice(d, size=n_boot, replace=True) for d in draws])
    X = np.column_stack([lx, np.ones_like(lx)])
    sw = np.ones_like(lx) if weights is None else np.sqrt(np.asarray(weights, float))
    coef, *_ = np.linalg.lstsq(X * sw[:, None], (Y * sw[None, :]).T, rcond=None)
    return coef[0], coef[1]


def power_law_fit(
    budgets,
    n_opts,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.9,
    *,
    log_draws: Sequence[np.ndarray] | None = None,
    weights=None,
    label: str = "",
) -> PowerLaw:
    """Least-squares ln N* = a ln C + b, with bootstrap intervals on a and b.

    Uncertainty, two ways (the result's `ci_method` says which):
    - "cells" (when `log_draws` is given: for each budget, the bootstrap draws of ln N*
      from resampling that budget's cells, as isoflop_scaling passes them): each replicate
      takes one draw per budget and refits the line. This propagates the measurement noise
      of every N*, and works with as few as 2 budgets.
    - "budgets" (otherwise): the budgets themselves are resampled with replacement;
      replicates with < 2 distinct budgets are skipped. With few budgets this is coarse
      (it spans the pairwise slopes), so prefer passing draws.
    Non-finite or non-positive optima are dropped; fewer than 2 budgets raise FitError.
    """
    lab = label or "power law"
    c = np.asarray(budgets, float).ravel()
    y = np.asarray(n_opts, float).ravel()
    if c.shape != y.shape:
        raise _fail(lab, f"{c.size} budgets but {y.size} optima")
    w = None if weights is None else np.asarray(weights, float).ravel()
    ok = np.isfinite(c) & np.isfinite(y) & (c > 0) & (y > 0)
    if w is not None:
        ok &= np.isfinite(w) & (w > 0)
    if log_draws is not None:
        log_draws = [np.asarray(d, float) for d in log_draws]
        if len(log_draws) != c.size:
            raise _fail(lab, f"{len(log_draws)} draw arrays for {c.size} budgets")
    n_b = len(np.unique(c[ok]))
    if n_b < 2:
        raise _fail(lab, f"{n_b} budget(s) with a usable optimum; a power law needs >= 2")
    lc, ly = np.log(c[ok]), np.log(y[ok])
    wk = None if w is None else w[ok]
    a, b = fit_line(lc, ly, wk)
    resid = ly - (a * lc + b)
    rms = float(np.sqrt(np.mean(resid**2)))
    A, B, method = _line_bootstrap(lc, ly, wk, log_draws, ok, n_boot, seed)
    good = np.isfinite(A)
    a_lo, a_hi = interval(A[good], ci, a)
    b_lo, b_hi = interval(B[good], ci, b)
    return PowerLaw(
        a=a,
        a_lo=a_lo,
        a_hi=a_hi,
        b=b,
        b_lo=b_lo,
        b_hi=b_hi,
        n_budgets=n_b,
        ci=ci,
        ci_method=method,
        boot_frac=float(good.mean()) if n_boot > 0 else np.nan,
        residual_rms=rms,
        draws=(A[good], B[good]) if n_boot > 0 and good.any() else None,
    )


def _line_bootstrap(lc, ly, wk, log_draws, ok, n_boot: int, seed: int):
    """Replicates (A, B) of the line's slope and intercept (NaN where skipped) and the ci_method that made them."""
    rng = np.random.default_rng(seed)
    A = np.full(n_boot, np.nan)
    B = np.full(n_boot, np.nan)
    method = "cells" if log_draws is not None else "budgets"
    used = [d for d, k in zip(log_draws, ok) if k] if method == "cells" else []
    if n_boot > 0 and method == "cells" and not any(np.isfinite(d).any() for d in used):
        # No budget has bootstrap draws (e.g. 3 sizes each: exact parabolas): a propagated
        # interval would have zero width and mean nothing, so there is none.
        method = "none: no budget has bootstrap draws"
    elif n_boot > 0 and method == "cells":
        # A budget whose resamples were all unusable keeps its point estimate as its only
        # draw (zero spread) rather than dropping out of the fit.
        dr = [d[np.isfinite(d)] if np.isfinite(d).any() else np.array([v]) for d, v in zip(used, ly)]
        A, B = line_draws(lc, dr, n_boot, rng, wk)
    elif n_boot > 0:
        m = lc.size
        idx = rng.integers(0, m, size=(n_boot, m))
        for i in range(n_boot):
            j = idx[i]
            if len(np.unique(lc[j])) < 2:
                continue
            A[i], B[i] = fit_line(lc[j], ly[j], None if wk is None else wk[j])
    return A, B, method


class IsoflopScaling(NamedTuple):
    optima: pd.DataFrame  # one row per group x budget (isoflop_optima)
    scaling: pd.DataFrame  # one row per group: the power law N*(C) = exp(b) C^a


def isoflop_scaling(
    df: pd.DataFrame,
    group_cols: Sequence[str] = (),
    n_col: str = "n_params",
    budget_col: str = "budget",
    loss_col: str = "loss",
    tokens_col: str | None = None,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.9,
    *,
    weight_col: str | None = None,
    window: float | None = None,
    exclude_edge: bool = True,
    weighted: bool = False,
) -> IsoflopScaling:
    """Approach 2 end to end: per-budget optima, then per group ln N* = a ln C + b.

    Edge optima (vertex outside the sampled sizes) are extrapolations and are left out of
    the power law unless exclude_edge=False (which fits their extrapolated vertices, a
    diagnostic only: the optima table reports no N* for them); the `edge_excluded` column records the choice
    and `n_edge` how many there were. The intervals on a and b propagate each budget's
    cell bootstrap (ci_method "cells"). weighted=True weights each budget by 1/var of its
    bootstrap ln N* (Porian et al.'s weighted fit). Groups that cannot be fitted get a
    "failed: ..." status, not an exception.
    """
    group_cols = list(group_cols)
    optima, draws = _optima(
        df, group_cols, n_col, budget_col, loss_col, tokens_col, weight_col, n_boot, seed, ci, window, strict=False
    )
    rows, line_draws = [], {}
    vertex = np.asarray(optima.attrs.get("vertex", optima["n_opt"]), float)  # = n_opt on interior rows
    grouped = optima.groupby(group_cols, sort=True, dropna=False) if group_cols else [((), optima)]
    for key, g in grouped:
        key = key if isinstance(key, tuple) else (key,)
        kd = dict(zip(group_cols, key))
        row = dict(kd)
        status = g["status"]
        use = status.eq("ok") | (status.eq("edge") & (not exclude_edge))
        row.update(
            n_budgets=int(use.sum()),
            n_edge=int(status.eq("edge").sum()),
            n_failed=int(status.str.startswith("failed").sum()),
            edge_excluded=exclude_edge,
            budgets=",".join(f"{b:g}" for b in g.loc[use, "budget"]),
        )
        try:
            pl = _group_power_law(g, use, draws, vertex, kd, n_boot, seed, ci, weighted)
            row.update(
                a=pl.a,
                a_lo=pl.a_lo,
                a_hi=pl.a_hi,
                b=pl.b,
                b_lo=pl.b_lo,
                b_hi=pl.b_hi,
                residual_rms=pl.residual_rms,
                ci_method=pl.ci_method,
                status="ok",
            )
            if pl.draws is not None:
                line_draws[key] = pl.draws
        except FitError as e:
            row.update(
                a=np.nan,
                a_lo=np.nan,
                a_hi=np.nan,
                b=np.nan,
                b_lo=np.nan,
                b_hi=np.nan,
                residual_rms=np.nan,
                ci_method="",
                status=f"failed: {e}",
            )
        rows.append(row)
    scaling = pd.DataFrame(rows)
    # Bootstrap replicates (a, b) per fitted group (key: tuple of group values), for bands
    # and for predictions at a reference compute with intervals.
    scaling.attrs["line_draws"] = line_draws
    return IsoflopScaling(optima, scaling)


def _group_power_law(g, use, draws, vertex, kd: dict, n_boot: int, seed: int, ci: float, weighted: bool) -> PowerLaw:
    """power_law_fit through one group's `use`d optima, with their cell draws (and 1/var weights if `weighted`)."""
    idx = list(g.index[use])
    dr = [draws[i] for i in idx] if n_boot > 0 else None
    w = None
    if weighted and dr is not None:
        sd = np.array([np.std(d) if d.size > 1 else np.nan for d in dr])
        w = 1.0 / np.maximum(sd, 1e-6) ** 2
    return power_law_fit(
        g.loc[use, "budget"].to_numpy(),
        vertex[idx],
        n_boot=n_boot,
        seed=seed,
        ci=ci,
        log_draws=dr,
        weights=w,
        label=group_label(kd) or "all points",
    )
