"""Approach 2, one budget at a time: the IsoFLOP parabola of loss in ln N and its vertex N*.

`fit_parabola` fits one set of points; `isoflop_optimum` adds the fit window and the
bootstrap draws of the vertex; `isoflop_optima` does it per group x budget of a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from skillscale.analysis.fit.common import FitError, _fail, boot_counts, group_label, interval


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
        raise _fail(
            label,
            f"only {n_sizes} distinct size{'' if n_sizes == 1 else 's'} with finite loss"
            f"{dropped}; a parabola needs >= 3",
        )

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
        raise _fail(
            label,
            f"loss vs ln N is {shape} (d2loss/dlnN2 = {curv:.3g}): no minimum to locate;"
            " the sampled sizes may all lie on one side of the optimum, or the loss may not"
            " depend on N at this budget",
        )
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


def isoflop_optimum(log_n, loss, weights=None, *, counts=None, window: float | None = None, label: str = "") -> Optimum:
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
        bx, bl = batch_vertices(
            x, np.where(keep, y, np.nan), counts * np.where(keep, w, 0.0)[None, :], max_extrapolation=None
        )
        vlo, vhi = vertex_limits(x[keep])
        runaway = np.isfinite(bx) & ~((bx >= vlo) & (bx <= vhi))
        n_runaway = int(runaway.sum())
        bx, bl = np.where(runaway, np.nan, bx), np.where(runaway, np.nan, bl)
    return Optimum(p, keep, bx, bl, n_runaway, "edge" if p.edge else "ok")


OPTIMA_COLUMNS = [
    "budget",
    "n_opt",
    "n_opt_lo",
    "n_opt_hi",
    "n_opt_bound",
    "edge_side",
    "d_opt",
    "tokens_per_param",
    "loss_opt",
    "loss_opt_lo",
    "loss_opt_hi",
    "n_points",
    "n_sizes",
    "residual_rms",
    "curvature",
    "n_fit_min",
    "n_fit_max",
    "boot_frac",
    "edge",
    "status",
    "note",
]


def _note(row: dict, text: str) -> None:
    row["note"] = "; ".join(filter(None, [row["note"], text]))


def _optima(df, group_cols, n_col, budget_col, loss_col, tokens_col, weight_col, n_boot, seed, ci, window, strict):
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
        row = _blank_row(kd, group_cols, budget_col, len(g))
        d, vertex = np.array([], float), np.nan
        try:
            d, vertex = _budget_row(
                row, g, group_label(kd), n_col, loss_col, tokens_col, weight_col, n_boot, rng, ci, window
            )
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


def _blank_row(kd: dict, group_cols: list, budget_col: str, n_points: int) -> dict:
    """The optima row of one group x budget before its fit: every number NaN, no note."""
    row = {c: kd[c] for c in group_cols}
    row["budget"] = float(kd[budget_col])
    row.update({c: np.nan for c in OPTIMA_COLUMNS if c not in ("budget", "edge", "status", "note")})
    row.update(edge=False, edge_side="", note="", n_points=n_points)
    return row


def _budget_row(row, g, label, n_col, loss_col, tokens_col, weight_col, n_boot, rng, ci, window):
    """Fill `row` from the IsoFLOP optimum of one budget's points `g`.

    Returns the usable bootstrap draws of ln N* and the parabola's vertex N (edge or not);
    raises FitError when there is no parabola to report.
    """
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
    _record_fit(row, o, x, y, w, window, n_col, loss_col)
    if o.edge:
        # An edge vertex is an extrapolation, not a measured optimum: report the bound.
        row.update(n_opt_bound=o.bound, edge_side=o.side)
        _note(row, f"optimum {o.describe_edge()}: no estimate of N*, D* or loss*")
    else:
        _record_interior(row, o, g, y, w, tokens_col, label)
    return _record_bootstrap(row, o, n_boot, ci), o.parabola.n_opt


def _record_fit(row: dict, o: Optimum, x, y, w, window, n_col: str, loss_col: str) -> None:
    """The parabola's diagnostics and status, and a note on the points it did not use."""
    p, keep = o.parabola, o.keep
    fin = np.isfinite(x) & np.isfinite(y) & (np.ones_like(x, bool) if w is None else np.isfinite(w))
    if (~fin).any():
        # Enough remained (the fit failed otherwise): keep the number, say so.
        _note(row, f"dropped {int((~fin).sum())} point(s) with non-finite {loss_col} or {n_col}")
    if window is not None and (fin & ~keep).any():
        _note(row, f"{int((fin & ~keep).sum())} point(s) outside the fit window")
    row.update(
        n_points=p.n_points,
        n_sizes=p.n_sizes,
        residual_rms=p.residual_rms,
        curvature=p.curvature,
        edge=p.edge,
        n_fit_min=float(np.exp(p.log_n_range[0])),
        n_fit_max=float(np.exp(p.log_n_range[1])),
        status=o.status,
    )


def _record_interior(row: dict, o: Optimum, g, y, w, tokens_col: str | None, label: str) -> None:
    """N*, loss*, D* and tokens per parameter of an interior optimum."""
    p, keep = o.parabola, o.keep
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


def _record_bootstrap(row: dict, o: Optimum, n_boot: int, ci: float) -> np.ndarray:
    """The intervals and bootstrap notes of one row; returns its usable draws of ln N*."""
    p = o.parabola
    d = np.array([], float)
    if n_boot > 0 and p.n_points <= 3:
        _note(row, "3 points: no residual to resample, no interval")
    elif n_boot > 0:
        good = np.isfinite(o.draws)
        row["boot_frac"] = o.boot_frac  # share of resamples kept for the interval
        if o.n_runaway:
            _note(
                row,
                f"{o.n_runaway} of {n_boot} bootstrap vertices beyond the fitted ln N range"
                f" +- {MAX_EXTRAPOLATION:g} of it dropped",
            )
        if good.mean() < 0.5:
            _note(row, f"only {good.mean():.0%} of bootstrap resamples usable: interval unreliable")
        if not o.edge:
            lo, hi = interval(o.draws, ci, p.log_n_opt)
            row["n_opt_lo"], row["n_opt_hi"] = np.exp(lo), np.exp(hi)
            row["loss_opt_lo"], row["loss_opt_hi"] = interval(o.loss_draws, ci, p.loss_opt)
        d = o.draws[good]
    return d


def isoflop_optima(
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
    strict: bool = False,
) -> pd.DataFrame:
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
    out, _ = _optima(
        df, group_cols, n_col, budget_col, loss_col, tokens_col, weight_col, n_boot, seed, ci, window, strict
    )
    return out
