"""Approach 3: the parametric loss L(N, D) = E + A/N^alpha + B/D^beta (Besiroglu et al. 2024).

Huber loss (delta = 1e-3) on log loss, summed over points, L-BFGS-B from the best starts
of the Besiroglu grid; optional bootstrap intervals from refits on resampled points.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # optional: without it the fit is only slower on a loaded machine
    threadpool_limits = None

from skillscale.analysis.fit.common import _fail, interval

# Besiroglu et al. (2024) grid of starting points, (a, b, e, alpha, beta).
_GRID = dict(
    alpha=np.arange(0, 2.01, 0.5),
    beta=np.arange(0, 2.01, 0.5),
    e=np.arange(-1, 1.01, 0.5),
    a=np.arange(0, 25.1, 5),
    b=np.arange(0, 25.1, 5),
)
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
    g = np.array(
        [np.sum(hp * p[0]), np.sum(hp * p[1]), np.sum(hp * p[2]), -np.sum(hp * p[0] * lnN), -np.sum(hp * p[1] * lnD)]
    )
    return f, g


def _grid_objective(starts, lnN, lnD, lnL, delta):
    """Objective at every grid start at once (starts: k x 5)."""
    a, b, e, al, be = (starts[:, i : i + 1] for i in range(5))
    u = np.stack([a - al * lnN[None], b - be * lnD[None], np.broadcast_to(e, (len(starts), lnN.size))])
    r = logsumexp(u, axis=0) - lnL[None]
    return _huber(r, delta).sum(axis=1)


def _one_blas_thread():
    """L-BFGS-B calls BLAS on 5x5 matrices; OpenBLAS's thread pool then spin-waits and on a
    busy 2-core machine made each fit 10-30x slower. One thread is always enough here."""
    if threadpool_limits is None:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _minimize(theta0, lnN, lnD, lnL, delta, weights=None):
    # Tight tolerances: the summed Huber objective with delta = 1e-3 is tiny (~1e-2), and
    # scipy's default gtol stops L-BFGS-B well short of the optimum (the point Besiroglu
    # et al. make about Hoffmann's fit).
    res = optimize.minimize(
        _objective,
        theta0,
        args=(lnN, lnD, lnL, delta, weights),
        jac=True,
        method="L-BFGS-B",
        options=dict(maxiter=5000, ftol=1e-15, gtol=1e-12, maxcor=20),
    )
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


def fit_parametric(
    n,
    d,
    loss,
    delta: float = 1e-3,
    n_boot: int = 0,
    seed: int = 0,
    ci: float = 0.9,
    *,
    n_starts: int = 32,
    label: str = "",
) -> ParametricFit:
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
    fit = ParametricFit(
        E=float(E),
        A=float(A),
        B=float(B),
        alpha=float(al),
        beta=float(be),
        objective=float(best.fun),
        n_points=int(n_pts),
        delta=delta,
        converged=bool(best.success),
        a_opt=float(a_opt),
        b_opt=float(b_opt),
        G=float(G),
    )
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
