"""Compute-optimal scaling fits: IsoFLOP parabolas (Approach 2) and L(N, D) (Approach 3).

Approach 2 (Hoffmann et al. 2022; Porian et al. 2024): per compute budget, a weighted
least-squares parabola of loss in ln N gives N*(C); then ln N* = a ln C + b. Approach 3
(Besiroglu et al. 2024's replication of Hoffmann): L(N, D) = E + A/N^alpha + B/D^beta,
Huber loss (delta = 1e-3) on log loss, summed over points, L-BFGS-B from a grid of starts.

Every fit either returns a number with its uncertainty or raises `FitError` with a message
naming the group it was fitting; table builders turn that into a `status` column.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import asdict, dataclass, field
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import logsumexp


class FitError(ValueError):
    """A fit that cannot give a trustworthy number; the message names the group."""


def group_label(keys: dict) -> str:
    """'code_frac=0.5, metric=knowledge_qa, budget=1e+12' for error messages and logs."""
    parts = []
    for k, v in keys.items():
        if isinstance(v, (float, np.floating)):
            parts.append(f"{k}={float(v):g}")
        else:
            parts.append(f"{k}={v}")
    return ", ".join(parts)


def _fail(label: str, msg: str) -> FitError:
    return FitError(f"{label}: {msg}" if label else msg)


def interval(draws: np.ndarray, ci: float, point: float | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of the finite `draws`, widened to contain `point`.

    A point estimate outside its own percentile interval (a skewed or biased bootstrap:
    the full-data fit is not the centre of its resamples) would make a table contradict
    itself, so the interval is stretched to reach the point. An interval of zero width
    (every usable draw identical, e.g. an exact fit) says nothing and is returned as NaN,
    as are fewer than 2 usable draws.
    """
    draws = np.asarray(draws, float)
    draws = draws[np.isfinite(draws)]
    if draws.size < 2:
        return np.nan, np.nan
    lo, hi = (float(v) for v in np.quantile(draws, [(1 - ci) / 2, (1 + ci) / 2]))
    if point is not None and np.isfinite(point):
        lo, hi = min(lo, float(point)), max(hi, float(point))
    if hi - lo <= 1e-12 * max(1.0, abs(lo), abs(hi)):
        return np.nan, np.nan
    return lo, hi


# --------------------------------------------------------------------------------------
# Approach 2: one parabola per budget
# --------------------------------------------------------------------------------------

@dataclass
class ParabolaFit:
    """loss(x) = loss_opt + curvature/2 * (x - log_n_opt)^2 with x = ln N."""

    log_n_opt: float
    loss_opt: float
    curvature: float  # d^2 loss / d(ln N)^2 at the vertex; > 0 for a usable fit
    residual_rms: float  # weighted RMS of loss residuals
    edge: bool  # vertex at or beyond the smallest / largest sampled size
    n_points: int  # finite points used
    n_sizes: int  # distinct sizes among them
    n_dropped: int  # non-finite points dropped
    log_n_range: tuple[float, float]

    @property
    def n_opt(self) -> float:
        return float(np.exp(self.log_n_opt))


def _scale(x: np.ndarray) -> tuple[float, float]:
    """Centre and half-width that map the sampled sizes onto [-1, 1] (conditioning)."""
    lo, hi = float(x.min()), float(x.max())
    return (lo + hi) / 2, max((hi - lo) / 2, 1e-12)


def fit_parabola(log_n, loss, weights=None, *, label: str = "") -> ParabolaFit:
    """Weighted least-squares parabola of loss in ln N; the vertex is the IsoFLOP optimum.

    Non-finite points are dropped (counted in `n_dropped`). Raises FitError when fewer
    than 3 distinct sizes remain, or when the curve is flat or concave (no minimum). A
    vertex at or outside the sampled range is still returned, with edge=True: it is an
    extrapolation, not a measured optimum.
    """
    x = np.asarray(log_n, float).ravel()
    y = np.asarray(loss, float).ravel()
    if x.shape != y.shape:
        raise _fail(label, f"log_n has {x.size} values but loss has {y.size}")
    w = np.ones_like(x) if weights is None else np.asarray(weights, float).ravel()
    if w.shape != x.shape:
        raise _fail(label, f"weights has {w.size} values, expected {x.size}")
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & (w > 0)
    n_dropped = int((~ok).sum())
    x, y, w = x[ok], y[ok], w[ok]
    n_sizes = len(np.unique(x))
    if n_sizes < 3:
        dropped = f" ({n_dropped} non-finite or zero-weight points dropped)" if n_dropped else ""
        raise _fail(label, f"only {n_sizes} distinct size{'' if n_sizes == 1 else 's'} with finite loss"
                    f"{dropped}; a parabola needs >= 3")

    mid, half = _scale(x)
    z = (x - mid) / half
    Z = np.column_stack([np.ones_like(z), z, z * z])
    sw = np.sqrt(w)
    k, *_ = np.linalg.lstsq(Z * sw[:, None], y * sw, rcond=None)
    k0, k1, k2 = k
    # Flatness is judged against the spread of the losses themselves: a quadratic term
    # that moves the loss by less than 1e-9 of that spread over the sampled range is zero
    # (and identical losses are flat whatever rounding leaves in k2).
    spread = float(np.ptp(y))
    flat = spread <= 1e-12 * max(1.0, float(np.abs(y).max())) or abs(k2) <= 1e-9 * spread
    if flat or k2 < 0:
        curv = 0.0 if spread == 0 else 2 * k2 / half**2
        shape = "flat" if flat else "concave"
        raise _fail(label, f"loss vs ln N is {shape} (d2loss/dlnN2 = {curv:.3g}): no minimum to locate;"
                    " the sampled sizes may all lie on one side of the optimum, or the loss may not"
                    " depend on N at this budget")
    z0 = -k1 / (2 * k2)
    x0 = mid + half * z0
    resid = y - Z @ k
    return ParabolaFit(
        log_n_opt=float(x0),
        loss_opt=float(k0 - k1 * k1 / (4 * k2)),
        curvature=float(2 * k2 / half**2),
        residual_rms=float(np.sqrt(np.sum(w * resid**2) / np.sum(w))),
        edge=bool(x0 <= x.min() or x0 >= x.max()),
        n_points=int(x.size),
        n_sizes=n_sizes,
        n_dropped=n_dropped,
        log_n_range=(float(x.min()), float(x.max())),
    )


def window_mask(x: np.ndarray, y: np.ndarray, window: float | None, min_sizes: int = 5) -> np.ndarray:
    """Mask of points within `window` (in ln N) of the size with the lowest observed loss.

    IsoFLOP curves are asymmetric far from the optimum (loss explodes for models trained on
    too few tokens), so a parabola over a wide sweep is pulled toward the gentle side. A
    window keeps the fit local, like Porian et al.'s interpolation does. The window widens
    to keep at least `min_sizes` sizes (5: a 3-parameter fit through 3 points has no
    residual to bootstrap).
    """
    if window is None:
        return np.ones_like(x, bool)
    x_best = x[np.nanargmin(y)]
    d = np.abs(x - x_best)
    ud = np.unique(np.round(d, 12))
    w = max(window, ud[min(min_sizes, len(ud)) - 1])
    return d <= w + 1e-9


# A bootstrap vertex further than this share of the sampled ln N range beyond the smallest
# or largest size is not an estimate of an optimum but a nearly flat resample's runaway
# extrapolation (vertices of 1e-15 parameters came out of such draws); it is dropped.
MAX_EXTRAPOLATION = 0.5


def vertex_limits(x, max_extrapolation: float | None = MAX_EXTRAPOLATION) -> tuple[float, float]:
    """(lo, hi) in ln N outside which a vertex counts as a runaway extrapolation."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if max_extrapolation is None or not x.size:
        return -np.inf, np.inf
    pad = max_extrapolation * float(np.ptp(x))
    return float(x.min()) - pad, float(x.max()) + pad


def batch_vertices(x, y, W, max_extrapolation: float | None = MAX_EXTRAPOLATION):
    """Parabola vertices (ln N*, loss*) for many weightings of the same points at once.

    W is (n_rep, n_points): e.g. bootstrap counts, since resampling with replacement is a
    multinomial count per point, i.e. a weight. Every replicate is then a weighted
    least-squares fit, and all of them solve as one batch of 3x3 normal equations.
    Points with non-finite y get weight 0. Replicates with < 3 distinct sizes of positive
    weight, a parabola that is not convex, or a vertex more than `max_extrapolation` times
    the sampled ln N range beyond the sampled sizes (see `vertex_limits`; None keeps every
    vertex) give NaN.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    W = np.atleast_2d(np.asarray(W, float))
    fin = np.isfinite(x) & np.isfinite(y)
    W = W * fin[None, :]
    x, y = np.where(fin, x, 0.0), np.where(fin, y, 0.0)
    n_rep = W.shape[0]
    out = np.full(n_rep, np.nan), np.full(n_rep, np.nan)
    if not fin.any():
        return out
    mid, half = _scale(x[fin])
    z = (x - mid) / half
    Z = np.column_stack([np.ones_like(z), z, z * z])
    _, size_id = np.unique(x, return_inverse=True)
    present = np.zeros((size_id.max() + 1, n_rep))
    np.add.at(present, size_id, (W > 0).T)
    usable = (present > 0).sum(axis=0) >= 3
    if not usable.any():
        return out
    A = np.einsum("bi,ij,ik->bjk", W[usable], Z, Z)
    r = np.einsum("bi,ij,i->bj", W[usable], Z, y)
    k = np.linalg.solve(A, r[..., None])[..., 0]
    yr = y[fin]
    convex = k[:, 2] > 1e-9 * max(float(np.ptp(yr)), 1e-12)
    k2 = np.where(convex, k[:, 2], 1.0)
    x0 = np.where(convex, mid + half * (-k[:, 1] / (2 * k2)), np.nan)
    l0 = np.where(convex, k[:, 0] - k[:, 1] ** 2 / (4 * k2), np.nan)
    lo, hi = vertex_limits(x[fin], max_extrapolation)
    runaway = ~((x0 >= lo) & (x0 <= hi))
    x0, l0 = np.where(runaway, np.nan, x0), np.where(runaway, np.nan, l0)
    out[0][usable], out[1][usable] = x0, l0
    return out


def boot_counts(n_points: int, n_boot: int, rng) -> np.ndarray:
    """(n_boot, n_points) multinomial counts: one resample with replacement per row."""
    return rng.multinomial(n_points, np.full(n_points, 1.0 / n_points), size=n_boot).astype(float)


@dataclass
class Optimum:
    """One IsoFLOP optimum: the parabola through the (windowed) points and its bootstrap.

    `draws` / `loss_draws` hold ln N* and loss* per resample (row of the `counts` passed
    in, NaN where the resample gave no usable vertex), aligned across optima fitted on the
    same counts, so two optima can be compared replicate by replicate.
    """

    parabola: ParabolaFit | None
    keep: np.ndarray  # points the parabola used (finite and inside the window)
    draws: np.ndarray
    loss_draws: np.ndarray
    n_runaway: int  # bootstrap vertices dropped as runaway extrapolations
    status: str  # "ok", "edge" or "failed: <why>"

    @property
    def edge(self) -> bool:
        return self.parabola is not None and self.parabola.edge

    @property
    def log_n(self) -> float:
        """ln N* of an interior optimum; NaN for an edge or failed one (no estimate there)."""
        return self.parabola.log_n_opt if self.status == "ok" else np.nan

    @property
    def loss(self) -> float:
        return self.parabola.loss_opt if self.status == "ok" else np.nan

    @property
    def bound(self) -> float:
        """For an edge optimum, the sampled size it lies beyond (N, not ln N); else NaN."""
        if not self.edge:
            return np.nan
        lo, hi = self.parabola.log_n_range
        return float(np.exp(lo if self.parabola.log_n_opt <= lo else hi))

    @property
    def side(self) -> str:
        """'below' / 'above' the sampled sizes for an edge optimum, '' otherwise."""
        if not self.edge:
            return ""
        return "below" if self.parabola.log_n_opt <= self.parabola.log_n_range[0] else "above"

    def describe_edge(self) -> str:
        if not self.edge:
            return ""
        which = "smallest" if self.side == "below" else "largest"
        return f"{self.side} the {which} sampled size, {self.bound:.2g}"

    @property
    def boot_frac(self) -> float:
        return float(np.isfinite(self.draws).mean()) if self.draws.size else np.nan


def isoflop_optimum(log_n, loss, weights=None, *, counts=None, window: float | None = None,
                    label: str = "") -> Optimum:
    """The IsoFLOP optimum of one set of points, with bootstrap draws (the one routine).

    Fits `fit_parabola` to the finite points within `window` (in ln N) of the best observed
    size (`window_mask`; None keeps all). `counts` (n_boot x n_points, e.g. `boot_counts`)
    are resample weights over ALL the points given: points outside the window or with
    non-finite loss get weight 0 in every resample, so optima of several metrics over the
    same cells can share one `counts` and pair their draws. No draws when the parabola
    goes through 3 points (an exact fit: every resample repeats it, so an interval would
    have zero width and mean nothing). Never raises: a failure is in `status`.
    """
    x = np.asarray(log_n, float).ravel()
    y = np.asarray(loss, float).ravel()
    w = np.ones_like(x) if weights is None else np.asarray(weights, float).ravel()
    counts = np.zeros((0, x.size)) if counts is None else np.atleast_2d(np.asarray(counts, float))
    nan = np.full(len(counts), np.nan)
    fin = np.isfinite(x) & np.isfinite(y) & np.isfinite(w)
    keep = fin.copy()
    if window is not None and len(np.unique(x[fin])) >= 3:
        keep[fin] = window_mask(x[fin], y[fin], window)
    try:
        p = fit_parabola(x[keep], y[keep], w[keep], label=label)
    except FitError as e:
        return Optimum(None, keep, nan, nan.copy(), 0, f"failed: {e}")
    bx, bl, n_runaway = nan, nan.copy(), 0
    if len(counts) and p.n_points > 3:
        bx, bl = batch_vertices(x, np.where(keep, y, np.nan), counts * np.where(keep, w, 0.0)[None, :],
                                max_extrapolation=None)
        vlo, vhi = vertex_limits(x[keep])
        runaway = np.isfinite(bx) & ~((bx >= vlo) & (bx <= vhi))
        n_runaway = int(runaway.sum())
        bx, bl = np.where(runaway, np.nan, bx), np.where(runaway, np.nan, bl)
    return Optimum(p, keep, bx, bl, n_runaway, "edge" if p.edge else "ok")


OPTIMA_COLUMNS = ["budget", "n_opt", "n_opt_lo", "n_opt_hi", "n_opt_bound", "edge_side", "d_opt", "tokens_per_param",
                  "loss_opt", "loss_opt_lo", "loss_opt_hi", "n_points", "n_sizes", "residual_rms", "curvature",
                  "n_fit_min", "n_fit_max", "boot_frac", "edge", "status", "note"]


def _note(row: dict, text: str) -> None:
    row["note"] = "; ".join(filter(None, [row["note"], text]))


def _optima(df, group_cols, n_col, budget_col, loss_col, tokens_col, weight_col, n_boot, seed, ci,
            window, strict):
    """isoflop_optima plus, per row, the usable bootstrap draws of ln N* (for power laws)."""
    group_cols = list(group_cols)
    need = group_cols + [n_col, budget_col, loss_col] + [c for c in (tokens_col, weight_col) if c]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise FitError(f"isoflop_optima: column(s) {missing} not in the data (have {list(df.columns)})")
    rows, draws, vertices = [], [], []
    rng = np.random.default_rng(seed)
    keys = group_cols + [budget_col]
    for key, g in df.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        kd = dict(zip(keys, key))
        label = group_label(kd)
        row = {c: kd[c] for c in group_cols}
        row["budget"] = float(kd[budget_col])
        row.update({c: np.nan for c in OPTIMA_COLUMNS if c not in ("budget", "edge", "status", "note")})
        row.update(edge=False, edge_side="", note="", n_points=len(g))
        d, vertex = np.array([], float), np.nan
        try:
            n = g[n_col].to_numpy(float)
            if np.any(n[np.isfinite(n)] <= 0):
                raise _fail(label, f"{n_col} has non-positive values; ln N is undefined")
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.log(n)
            y = g[loss_col].to_numpy(float)
            w = None if weight_col is None else g[weight_col].to_numpy(float)
            counts = boot_counts(len(g), n_boot, rng) if n_boot > 0 else None
            o = isoflop_optimum(x, y, w, counts=counts, window=window, label=label)
            if o.parabola is None:
                raise FitError(o.status.removeprefix("failed: "))
            p, keep = o.parabola, o.keep
            vertex = p.n_opt
            fin = np.isfinite(x) & np.isfinite(y) & (np.ones_like(x, bool) if w is None else np.isfinite(w))
            if (~fin).any():
                # Enough remained (the fit failed otherwise): keep the number, say so.
                _note(row, f"dropped {int((~fin).sum())} point(s) with non-finite {loss_col} or {n_col}")
            if window is not None and (fin & ~keep).any():
                _note(row, f"{int((fin & ~keep).sum())} point(s) outside the fit window")
            row.update(n_points=p.n_points, n_sizes=p.n_sizes, residual_rms=p.residual_rms, curvature=p.curvature,
                       edge=p.edge, n_fit_min=float(np.exp(p.log_n_range[0])),
                       n_fit_max=float(np.exp(p.log_n_range[1])), status=o.status)
            if o.edge:
                # An edge vertex is an extrapolation, not a measured optimum: report the bound.
                row.update(n_opt_bound=o.bound, edge_side=o.side)
                _note(row, f"optimum {o.describe_edge()}: no estimate of N*, D* or loss*")
            else:
                row.update(n_opt=p.n_opt, loss_opt=p.loss_opt)
                if tokens_col is not None:
                    # Tokens optimum from its own parabola in ln D (Porian's t*): equals
                    # C/(6 N*) only when every point sits exactly on C = 6 N D.
                    t = g[tokens_col].to_numpy(float)[keep]
                    try:
                        pt = fit_parabola(np.log(t), y[keep], None if w is None else w[keep], label=label)
                        row["d_opt"] = float(np.exp(pt.log_n_opt))
                    except FitError as e:
                        _note(row, f"tokens fit: {e}")
                else:
                    row["d_opt"] = row["budget"] / (6 * p.n_opt)
                row["tokens_per_param"] = row["d_opt"] / p.n_opt
            if n_boot > 0 and p.n_points <= 3:
                _note(row, "3 points: no residual to resample, no interval")
            elif n_boot > 0:
                good = np.isfinite(o.draws)
                row["boot_frac"] = o.boot_frac  # share of resamples kept for the interval
                if o.n_runaway:
                    _note(row, f"{o.n_runaway} of {n_boot} bootstrap vertices beyond the fitted ln N range"
                               f" +- {MAX_EXTRAPOLATION:g} of it dropped")
                if good.mean() < 0.5:
                    _note(row, f"only {good.mean():.0%} of bootstrap resamples usable: interval unreliable")
                if not o.edge:
                    lo, hi = interval(o.draws, ci, p.log_n_opt)
                    row["n_opt_lo"], row["n_opt_hi"] = np.exp(lo), np.exp(hi)
                    row["loss_opt_lo"], row["loss_opt_hi"] = interval(o.loss_draws, ci, p.loss_opt)
                d = o.draws[good]
        except FitError as e:
            if strict:
                raise
            row["status"] = f"failed: {e}"
        rows.append(row)
        draws.append(d)
        vertices.append(vertex)
    cols = group_cols + OPTIMA_COLUMNS
    out = pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame(columns=cols)
    # the parabola's vertex of every row, edge ones included, for exclude_edge=False only
    out.attrs["vertex"] = vertices
    return out, draws


def isoflop_optima(df: pd.DataFrame, group_cols: Sequence[str] = (), n_col: str = "n_params",
                   budget_col: str = "budget", loss_col: str = "loss", tokens_col: str | None = None,
                   n_boot: int = 200, seed: int = 0, ci: float = 0.9, *, weight_col: str | None = None,
                   window: float | None = None, strict: bool = False) -> pd.DataFrame:
    """Compute-optimal N* per group x budget from a parabola of loss in ln N.

    One row per group x budget: n_opt with a `ci` bootstrap interval (n_opt_lo, n_opt_hi)
    from resampling that budget's points with replacement (resamples with < 3 distinct
    sizes, a non-convex parabola, or a vertex beyond the fitted ln N range +- half that
    range are dropped, the last counted in `note`; `boot_frac` is the share kept), d_opt
    (C/(6 N*), or the vertex of a parabola in ln D when `tokens_col` is given),
    loss_opt with its interval, n_points, residual_rms, curvature (so loss = loss_opt +
    curvature/2 (ln N - ln n_opt)^2), n_fit_min/n_fit_max (sizes the parabola was fitted
    over, after the window), edge, status ("ok", "edge" or
    "failed: <why>") and a note (dropped points). Failed rows hold NaN; strict=True raises
    the FitError instead. `window` (in ln N) restricts each fit to sizes near the lowest
    observed loss (see `window_mask`); None fits every point.

    An edge row (vertex at or beyond the sampled sizes) has no n_opt, d_opt, loss_opt or
    interval: an extrapolated vertex is not a measured optimum. It gives n_opt_bound (the
    smallest or largest fitted size) and edge_side ("below" / "above") instead.
    """
    out, _ = _optima(df, group_cols, n_col, budget_col, loss_col, tokens_col, weight_col, n_boot, seed, ci,
                     window, strict)
    return out


# --------------------------------------------------------------------------------------
# Power law of the optima over budgets
# --------------------------------------------------------------------------------------

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


def power_law_fit(budgets, n_opts, n_boot: int = 1000, seed: int = 0, ci: float = 0.9, *,
                  log_draws: Sequence[np.ndarray] | None = None, weights=None,
                  label: str = "") -> PowerLaw:
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
    good = np.isfinite(A)
    a_lo, a_hi = interval(A[good], ci, a)
    b_lo, b_hi = interval(B[good], ci, b)
    return PowerLaw(a=a, a_lo=a_lo, a_hi=a_hi, b=b, b_lo=b_lo, b_hi=b_hi, n_budgets=n_b, ci=ci,
                    ci_method=method, boot_frac=float(good.mean()) if n_boot > 0 else np.nan,
                    residual_rms=rms, draws=(A[good], B[good]) if n_boot > 0 and good.any() else None)


class IsoflopScaling(NamedTuple):
    optima: pd.DataFrame  # one row per group x budget (isoflop_optima)
    scaling: pd.DataFrame  # one row per group: the power law N*(C) = exp(b) C^a


def isoflop_scaling(df: pd.DataFrame, group_cols: Sequence[str] = (), n_col: str = "n_params",
                    budget_col: str = "budget", loss_col: str = "loss", tokens_col: str | None = None,
                    n_boot: int = 200, seed: int = 0, ci: float = 0.9, *, weight_col: str | None = None,
                    window: float | None = None, exclude_edge: bool = True,
                    weighted: bool = False) -> IsoflopScaling:
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
    optima, draws = _optima(df, group_cols, n_col, budget_col, loss_col, tokens_col, weight_col,
                            n_boot, seed, ci, window, strict=False)
    rows, line_draws = [], {}
    vertex = np.asarray(optima.attrs.get("vertex", optima["n_opt"]), float)  # = n_opt on interior rows
    grouped = optima.groupby(group_cols, sort=True, dropna=False) if group_cols else [((), optima)]
    for key, g in grouped:
        key = key if isinstance(key, tuple) else (key,)
        kd = dict(zip(group_cols, key))
        row = dict(kd)
        status = g["status"]
        use = status.eq("ok") | (status.eq("edge") & (not exclude_edge))
        row.update(n_budgets=int(use.sum()), n_edge=int(status.eq("edge").sum()),
                   n_failed=int(status.str.startswith("failed").sum()), edge_excluded=exclude_edge,
                   budgets=",".join(f"{b:g}" for b in g.loc[use, "budget"]))
        try:
            idx = list(g.index[use])
            dr = [draws[i] for i in idx] if n_boot > 0 else None
            w = None
            if weighted and dr is not None:
                sd = np.array([np.std(d) if d.size > 1 else np.nan for d in dr])
                w = 1.0 / np.maximum(sd, 1e-6) ** 2
            pl = power_law_fit(g.loc[use, "budget"].to_numpy(), vertex[idx],
                               n_boot=n_boot, seed=seed, ci=ci, log_draws=dr, weights=w,
                               label=group_label(kd) or "all points")
            row.update(a=pl.a, a_lo=pl.a_lo, a_hi=pl.a_hi, b=pl.b, b_lo=pl.b_lo, b_hi=pl.b_hi,
                       residual_rms=pl.residual_rms, ci_method=pl.ci_method, status="ok")
            if pl.draws is not None:
                line_draws[key] = pl.draws
        except FitError as e:
            row.update(a=np.nan, a_lo=np.nan, a_hi=np.nan, b=np.nan, b_lo=np.nan, b_hi=np.nan,
                       residual_rms=np.nan, ci_method="", status=f"failed: {e}")
        rows.append(row)
    scaling = pd.DataFrame(rows)
    # Bootstrap replicates (a, b) per fitted group (key: tuple of group values), for bands
    # and for predictions at a reference compute with intervals.
    scaling.attrs["line_draws"] = line_draws
    return IsoflopScaling(optima, scaling)


# --------------------------------------------------------------------------------------
# Approach 3: parametric L(N, D)
# --------------------------------------------------------------------------------------

# Besiroglu et al. (2024) grid of starting points, (a, b, e, alpha, beta).
_GRID = dict(alpha=np.arange(0, 2.01, 0.5), beta=np.arange(0, 2.01, 0.5), e=np.arange(-1, 1.01, 0.5),
             a=np.arange(0, 25.1, 5), b=np.arange(0, 25.1, 5))
PARAM_NAMES = ("E", "A", "B", "alpha", "beta")


def _huber(r, delta):
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _objective(theta, lnN, lnD, lnL, delta, weights=None):
    """Summed Huber loss on ln L_hat - ln L and its gradient; theta = (a, b, e, alpha, beta)."""
    a, b, e, al, be = theta
    u = np.stack([a - al * lnN, b - be * lnD, np.full_like(lnN, e)])
    m = u.max(axis=0)
    ex = np.exp(u - m)
    s = ex.sum(axis=0)
    r = m + np.log(s) - lnL
    p = ex / s
    hp = np.clip(r, -delta, delta)  # Huber derivative
    if weights is not None:
        hp = hp * weights
        f = float(np.sum(weights * _huber(r, delta)))
    else:
        f = float(np.sum(_huber(r, delta)))
    g = np.array([np.sum(hp * p[0]), np.sum(hp * p[1]), np.sum(hp * p[2]),
                  -np.sum(hp * p[0] * lnN), -np.sum(hp * p[1] * lnD)])
    return f, g


def _grid_objective(starts, lnN, lnD, lnL, delta):
    """Objective at every grid start at once (starts: k x 5)."""
    a, b, e, al, be = (starts[:, i:i + 1] for i in range(5))
    u = np.stack([a - al * lnN[None], b - be * lnD[None], np.broadcast_to(e, (len(starts), lnN.size))])
    r = logsumexp(u, axis=0) - lnL[None]
    return _huber(r, delta).sum(axis=1)


def _one_blas_thread():
    """L-BFGS-B calls BLAS on 5x5 matrices; OpenBLAS's thread pool then spin-waits and on a
    busy 2-core machine made each fit 10-30x slower. One thread is always enough here."""
    try:
        # deferred: optional: without it the fit runs with the default BLAS threads
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the fit is only slower on a loaded machine
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _minimize(theta0, lnN, lnD, lnL, delta, weights=None):
    # Tight tolerances: the summed Huber objective with delta = 1e-3 is tiny (~1e-2), and
    # scipy's default gtol stops L-BFGS-B well short of the optimum (the point Besiroglu
    # et al. make about Hoffmann's fit).
    res = optimize.minimize(_objective, theta0, args=(lnN, lnD, lnL, delta, weights), jac=True,
                            method="L-BFGS-B", options=dict(maxiter=5000, ftol=1e-15, gtol=1e-12, maxcor=20))
    return res


@dataclass
class ParametricFit:
    """L(N, D) = E + A/N^alpha + B/D^beta with optional bootstrap intervals."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float  # summed Huber loss at the optimum
    n_points: int
    delta: float
    converged: bool
    a_opt: float  # beta/(alpha+beta): N* ∝ C^a_opt
    b_opt: float  # alpha/(alpha+beta): D* ∝ C^b_opt
    G: float  # N*(C) = G (C/6)^a_opt
    ci: float = np.nan
    n_boot: int = 0
    boot_frac: float = np.nan
    intervals: dict = field(default_factory=dict)  # name -> (lo, hi) for E, A, B, alpha, beta, a_opt

    def predict(self, n, d):
        n, d = np.asarray(n, float), np.asarray(d, float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    def n_opt(self, compute):
        """Compute-optimal N for C = 6 N D."""
        return self.G * (np.asarray(compute, float) / 6) ** self.a_opt

    def d_opt(self, compute):
        return (np.asarray(compute, float) / 6) / self.n_opt(compute)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "intervals"}
        for k, (lo, hi) in self.intervals.items():
            out[f"{k}_lo"], out[f"{k}_hi"] = lo, hi
        return out


def _derived(al, be, A, B):
    s = al + be
    a_opt = be / s if s > 0 else np.nan
    with np.errstate(all="ignore"):
        G = (al * A / (be * B)) ** (1 / s) if (s > 0 and be > 0 and B > 0) else np.nan
    return a_opt, (al / s if s > 0 else np.nan), G


def fit_parametric(n, d, loss, delta: float = 1e-3, n_boot: int = 0, seed: int = 0, ci: float = 0.9, *,
                   n_starts: int = 32, label: str = "") -> ParametricFit:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta in log space (Besiroglu et al. 2024).

    ln L_hat = LSE(a - alpha ln N, b - beta ln D, e) with A = e^a, B = e^b, E = e^e; the
    Huber loss (delta) on ln L_hat - ln L is SUMMED over points and minimised by L-BFGS-B.
    Starts: the Besiroglu grid (4,500 points) is scored in one vectorised pass and the
    `n_starts` best are refined; the lowest final objective wins. On the Chinchilla data
    the best 16 already reach Besiroglu et al.'s all-grid optimum (alpha 0.3473, beta
    0.3672, E 1.817); the default 32 keeps a margin at 1/140 of the cost of all 4,500.
    n_boot > 0 adds percentile intervals from refitting resampled points, each refit
    started from the full-data optimum (as Besiroglu et al. do from Hoffmann's values).
    """
    lab = label or "parametric fit"
    N = np.asarray(n, float).ravel()
    D = np.asarray(d, float).ravel()
    L = np.asarray(loss, float).ravel()
    if not (N.size == D.size == L.size):
        raise _fail(lab, f"n, d, loss have {N.size}, {D.size}, {L.size} values")
    ok = np.isfinite(N) & np.isfinite(D) & np.isfinite(L) & (N > 0) & (D > 0) & (L > 0)
    N, D, L = N[ok], D[ok], L[ok]
    if N.size < 6:
        raise _fail(lab, f"{N.size} usable points (finite, positive N, D, loss); 5 parameters need >= 6")
    if len(np.unique(N)) < 2 or len(np.unique(D)) < 2:
        raise _fail(lab, "N or D takes a single value; alpha or beta is not identifiable")
    lnN, lnD, lnL = np.log(N), np.log(D), np.log(L)

    with _one_blas_thread():
        return _fit_parametric(lnN, lnD, lnL, delta, n_boot, seed, ci, n_starts, lab)


def _fit_parametric(lnN, lnD, lnL, delta, n_boot, seed, ci, n_starts, lab):
    n_pts = lnN.size
    starts = np.array(list(itertools.product(_GRID["a"], _GRID["b"], _GRID["e"], _GRID["alpha"], _GRID["beta"])))
    init = _grid_objective(starts, lnN, lnD, lnL, delta)
    best = None
    for i in np.argsort(init, kind="stable")[:n_starts]:
        res = _minimize(starts[i], lnN, lnD, lnL, delta)
        if np.all(np.isfinite(res.x)) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise _fail(lab, "L-BFGS-B found no finite optimum from any start")
    a, b, e, al, be = best.x
    A, B, E = np.exp(a), np.exp(b), np.exp(e)
    a_opt, b_opt, G = _derived(al, be, A, B)
    fit = ParametricFit(E=float(E), A=float(A), B=float(B), alpha=float(al), beta=float(be),
                        objective=float(best.fun), n_points=int(n_pts), delta=delta,
                        converged=bool(best.success), a_opt=float(a_opt), b_opt=float(b_opt), G=float(G))
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(n_boot):
            # Multinomial counts as weights == refit on a resample with replacement.
            wts = rng.multinomial(n_pts, np.full(n_pts, 1.0 / n_pts)).astype(float)
            r = _minimize(best.x, lnN, lnD, lnL, delta, wts)
            if not np.all(np.isfinite(r.x)):
                continue
            ra, rb, re, ral, rbe = r.x
            draws.append([np.exp(re), np.exp(ra), np.exp(rb), ral, rbe, _derived(ral, rbe, 1, 1)[0]])
        draws = np.array(draws).reshape(-1, 6)
        fit.n_boot, fit.ci, fit.boot_frac = n_boot, ci, len(draws) / n_boot
        point = dict(E=fit.E, A=fit.A, B=fit.B, alpha=fit.alpha, beta=fit.beta, a_opt=fit.a_opt)
        fit.intervals = {k: interval(draws[:, j], ci, point[k]) for j, k in enumerate(PARAM_NAMES + ("a_opt",))}
    return fit
