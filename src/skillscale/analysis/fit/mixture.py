"""A mixture-aware loss law per skill metric: L(N, D, s) over size, data and own-data share.

Every form is Approach 3 (Besiroglu et al. 2024) with the size and data terms counting only
what serves the skill: L = E + A/N_eff^alpha + B/D_eff^beta (N_eff = N but in "share"),
where s is the share of the training tokens that are the skill's own data and
- "deff": D_eff = D (s + tau (1 - s)); tau is the transfer coefficient, what a token of the
  other data is worth to this skill relative to its own (tau = 1: the mix does not matter,
  tau = 0: only own data counts);
- "dexp": D_eff = D exp(-kappa (1 - s)); the exponential mixing law of Ye et al. (2024)
  applied to the data term (kappa = 0: the mix does not matter);
- "share": N_eff = N g and D_eff = D g with g = s + tau (1 - s): the skill gets a share g of
  the model's capacity as well as of its data (the capacity competition of mixed training:
  parameters spent on the other data serve this skill only as far as it transfers); with
  alpha close to beta the mix raises the loss but hardly moves N*;
- "nomix": D_eff = D, the mix ignored: the null every mixture form must beat;
- "add", "deff_add", "share_add": nomix, deff and share plus a mix offset K (1 - s) on the
  loss, the additive domain term of Shukor et al. (2025): less own data raises the loss at
  every N and D (with "add" alone the mix cannot move N*).
Fitted in log space (ln L_hat = LSE(a - alpha ln N_eff, b - beta ln D_eff, e, ln K + ln(1 - s)))
with a Huber loss on ln L_hat - ln L summed over cells, L-BFGS-B from the best starts of a grid; the
bootstrap refits on resampled cells (counts as weights, shared across metrics so that a
weighted objective's draws are paired) start from the full-data optimum.

`optimum` minimises a weighted sum of laws over ln N at a compute C, with C = 6 N D or any
per-token cost, for the point estimate and every bootstrap draw.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

from skillscale.analysis.fit.common import _fail, interval
from skillscale.analysis.fit.parametric import _huber, _one_blas_thread

__all__ = [
    "FORMS",
    "LAW_PARAMS",
    "HUBER_DELTA",
    "MixtureLaw",
    "fit_mixture",
    "log_effective",
    "mix_bounds",
    "optimum",
    "LawOptimum",
]

FORMS = ("nomix", "add", "deff", "dexp", "share", "deff_add", "share_add")  # simplest first: a tie goes to the simpler
LAW_PARAMS = ("E", "A", "B", "alpha", "beta", "mix", "K")  # mix: tau (deff, share), kappa (dexp); K: offset
# A cell's seed-to-seed spread is 1.5-5% of its loss on the default study: residuals up to
# that size are noise to average (squared), larger ones are outliers to down-weight (linear).
HUBER_DELTA = 0.05
_MIX_BOUNDS = {"deff": (1e-4, 20.0), "share": (1e-4, 20.0), "dexp": (-10.0, 10.0), "nomix": (0.0, 0.0)}
_MIX_STARTS = {"deff": (0.05, 0.3, 1.0), "share": (0.05, 0.3, 1.0), "dexp": (0.0, 1.0, 3.0), "nomix": (0.0,)}
_NO_K = -50.0  # ln K of a form without the offset: K = 2e-22, nothing


def _kind(form: str) -> tuple[str, bool]:
    """(data-term kind, has the additive mix offset)."""
    if form not in FORMS:
        raise ValueError(f"unknown mixture-law form {form!r}; one of {FORMS}")
    if form == "add":
        return "nomix", True
    return form.removesuffix("_add"), form.endswith("_add")


_GRID = dict(
    a=np.array([0.0, 5.0, 10.0, 20.0]),
    b=np.array([0.0, 5.0, 10.0, 20.0]),
    e=np.array([-1.0, -0.3, 0.3, 1.0]),
    alpha=np.array([0.1, 0.3, 0.6, 1.0]),
    beta=np.array([0.1, 0.3, 0.6, 1.0]),
)


def mix_bounds(form: str) -> tuple[float, float]:
    """The range the form's mix parameter (tau or kappa) is fitted in; (0, 0) when it has none."""
    return _MIX_BOUNDS[_kind(form)[0]]


def log_effective(form: str, lnN, lnD, s, mix):
    """(ln N_eff, ln D_eff, d ln N_eff / d mix, d ln D_eff / d mix) for one form (arrays broadcast)."""
    kind = _kind(form)[0]
    s = np.asarray(s, float)
    zero = 0 * lnN + 0 * lnD + 0 * s
    if kind in ("deff", "share"):
        g = s + mix * (1 - s)
        lng, dg = np.log(g) + zero, (1 - s) / g + zero
        if kind == "deff":
            return lnN + zero, lnD + lng, zero, dg
        return lnN + lng, lnD + lng, dg, dg
    if kind == "dexp":
        return lnN + zero, lnD - mix * (1 - s) + zero, zero, -(1 - s) + zero
    if kind == "nomix":
        return lnN + zero, lnD + zero, zero, zero
    raise ValueError(f"unknown data term {form!r}")


def _ln_other(s):
    """ln (1 - s), the offset term's shape (-inf at s = 1 is fine inside the LSE)."""
    return np.log(np.maximum(1 - np.asarray(s, float), 1e-300))


def _objective(theta, form, lnN, lnD, s, lnL, delta, weights):
    a, b, e, al, be, mix, k = theta
    lne, lde, dn, dd = log_effective(form, lnN, lnD, s, mix)
    u = np.stack([a - al * lne, b - be * lde, np.full_like(lnN, e), k + _ln_other(s) + 0 * lnN])
    m = u.max(axis=0)
    ex = np.exp(u - m)
    tot = ex.sum(axis=0)
    r = m + np.log(tot) - lnL
    p = ex / tot
    hp = np.clip(r, -delta, delta) * weights
    f = float(np.sum(weights * _huber(r, delta)))
    g = np.array(
        [
            np.sum(hp * p[0]),
            np.sum(hp * p[1]),
            np.sum(hp * p[2]),
            -np.sum(hp * p[0] * lne),
            -np.sum(hp * p[1] * lde),
            -al * np.sum(hp * p[0] * dn) - be * np.sum(hp * p[1] * dd),
            np.sum(hp * p[3]),
        ]
    )
    return f, g


def _bounds(form: str) -> list:
    kind, add = _kind(form)
    return [(None, None)] * 3 + [(0.0, 4.0), (0.0, 4.0), _MIX_BOUNDS[kind], (-20.0, 5.0) if add else (_NO_K, _NO_K)]


def _converged(r, form: str) -> bool:
    """L-BFGS-B's own verdict, or a projected gradient of zero (to 1e-6): a fit started at its
    optimum (from the fit on all cells, or a bootstrap's parent) has nothing to improve and
    stops at iteration 0 with ABNORMAL_TERMINATION_IN_LNSRCH, which is not a failure."""
    if r.success:
        return True
    g = np.array(r.jac, float)
    for i, (lo, hi) in enumerate(_bounds(form)):
        fixed = lo is not None and lo == hi
        at_lo = lo is not None and r.x[i] <= lo + 1e-12 and g[i] > 0
        at_hi = hi is not None and r.x[i] >= hi - 1e-12 and g[i] < 0
        g[i] = 0.0 if fixed or at_lo or at_hi else g[i]
    return bool(np.all(np.isfinite(g)) and np.abs(g).max() <= 1e-6)


def _minimize(theta0, form, lnN, lnD, s, lnL, delta, weights):
    bounds = _bounds(form)
    return optimize.minimize(
        _objective,
        theta0,
        args=(form, lnN, lnD, s, lnL, delta, weights),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        # tight: the summed Huber objective is ~1e-3, and scipy's default gtol stops short
        options=dict(maxiter=5000, ftol=1e-13, gtol=1e-9, maxcor=20),
    )


def _starts(form, lnN, lnD, s, lnL, delta):
    """The grid of starts scored in one vectorised pass, best first."""
    g, (kind, add) = _GRID, _kind(form)
    ks = (-3.0, -1.0) if add else (_NO_K,)
    grid = np.array(list(itertools.product(g["a"], g["b"], g["e"], g["alpha"], g["beta"], _MIX_STARTS[kind], ks)))
    a, b, e, al, be, mix, k = (grid[:, i : i + 1] for i in range(7))
    lne, lde, _, _ = log_effective(form, lnN[None], lnD[None], s[None], mix)
    shape = (len(grid), lnN.size)
    u = np.stack([a - al * lne, b - be * lde, np.broadcast_to(e, shape), k + _ln_other(s)[None]])
    r = logsumexp(u, axis=0) - lnL[None]
    return grid[np.argsort(_huber(r, delta).sum(axis=1), kind="stable")]


@dataclass
class MixtureLaw:
    """One metric's fitted law; `draws` are bootstrap refits (rows of LAW_PARAMS values)."""

    form: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    mix: float
    K: float
    objective: float
    rms: float  # RMS of ln L_hat - ln L over the cells: the fit's relative error
    n_points: int
    converged: bool
    draws: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    boot_converged: float = np.nan  # share of bootstrap refits L-BFGS-B reported converged

    @property
    def params(self) -> np.ndarray:
        return np.array([self.E, self.A, self.B, self.alpha, self.beta, self.mix, self.K])

    def predict(self, n, d, s, params=None, paired=False):
        """Loss at (N, D, s); `params` (k x 6) gives one row of predictions per parameter set,
        or with `paired` one prediction per (params row, n, d) of equal length k."""
        p = self.params[None] if params is None else np.atleast_2d(params)
        shape = (-1,) if paired else (-1,) + (1,) * np.ndim(n)
        E, A, B, al, be, mix, K = (p[:, i].reshape(shape) for i in range(7))
        lne, lde, _, _ = log_effective(self.form, np.log(np.asarray(n, float)), np.log(np.asarray(d, float)), s, mix)
        out = E + K * (1 - np.asarray(s, float)) + A * np.exp(-al * lne) + B * np.exp(-be * lde)
        return out[0] if params is None else out

    def intervals(self, ci: float) -> dict:
        return {k: interval(self.draws[:, j], ci, self.params[j]) for j, k in enumerate(LAW_PARAMS)}

    def to_dict(self) -> dict:
        d = {k: float(v) for k, v in zip(LAW_PARAMS, self.params)}
        d.update(
            form=self.form,
            objective=self.objective,
            rms=self.rms,
            n_points=self.n_points,
            converged=self.converged,
            boot_converged=self.boot_converged,
            draws=self.draws.tolist(),
        )
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MixtureLaw:
        kw = {k: d[k] for k in LAW_PARAMS}
        return cls(
            form=d["form"],
            objective=d["objective"],
            rms=d["rms"],
            n_points=d["n_points"],
            converged=d["converged"],
            draws=np.array(d["draws"], float).reshape(-1, 7),
            boot_converged=d.get("boot_converged", np.nan),
            **kw,
        )


def _to_params(x) -> np.ndarray:
    a, b, e, al, be, mix, k = x
    return np.array([np.exp(e), np.exp(a), np.exp(b), al, be, mix, np.exp(k) if k > _NO_K else 0.0])


def _to_x(law: MixtureLaw) -> np.ndarray:
    """A fitted law as an optimizer start (log-space, the inverse of _to_params)."""
    lg = lambda v: float(np.log(v)) if v > 0 else _NO_K
    return np.array([lg(law.A), lg(law.B), lg(law.E), law.alpha, law.beta, law.mix, lg(law.K)])


def fit_mixture(
    n,
    d,
    s,
    loss,
    form: str = "deff",
    *,
    counts=None,
    delta: float = HUBER_DELTA,
    n_starts: int = 4,
    init: MixtureLaw | None = None,
    label: str = "",
) -> MixtureLaw:
    """Fit one form of the law to cells (N, D, own share s, loss); `counts` (n_boot x cells)
    are bootstrap resample weights, one refit per row; `init`, a law of the same form, is
    tried first as a start. Raises FitError when the cells cannot
    identify the law (too few, a single size or data amount) or no start gives a finite fit."""
    lab = label or "mixture law"
    if form not in FORMS:
        raise _fail(lab, f"unknown form {form!r}; one of {FORMS}")
    # 7 parameters at most (E, A, B, alpha, beta and the mix's tau/kappa and K)
    N, D, S, L = (np.asarray(v, float).ravel() for v in (n, d, s, loss))
    if not (N.size == D.size == S.size == L.size):
        raise _fail(lab, f"n, d, s, loss have {N.size}, {D.size}, {S.size}, {L.size} values")
    ok = np.isfinite(N) & np.isfinite(D) & np.isfinite(S) & np.isfinite(L) & (N > 0) & (D > 0) & (L > 0)
    if (ok & ((S < 0) | (S > 1))).any():
        raise _fail(lab, "own share s outside [0, 1]")
    C = None if counts is None else np.atleast_2d(np.asarray(counts, float))[:, ok]
    N, D, S, L = N[ok], D[ok], S[ok], L[ok]
    if N.size < 8:
        raise _fail(lab, f"{N.size} usable cells (finite, positive N, D, loss); up to 7 parameters need >= 8")
    if len(np.unique(N)) < 3 or len(np.unique(D)) < 3:
        raise _fail(lab, "fewer than 3 distinct sizes or data amounts: alpha and beta are not identifiable")
    lnN, lnD, lnL = np.log(N), np.log(D), np.log(L)
    one = np.ones_like(lnN)
    with _one_blas_thread(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        best = None
        starts = _starts(form, lnN, lnD, S, lnL, delta)
        # a fit of the same form on related cells (a held-out fold's parent) starts near the
        # answer: it and the best grid start replace the grid's best n_starts
        starts = starts[:n_starts] if init is None else np.vstack([_to_x(init)[None], starts[:1]])
        for x0 in starts:
            r = _minimize(x0, form, lnN, lnD, S, lnL, delta, one)
            if np.all(np.isfinite(r.x)) and (best is None or r.fun < best.fun):
                best = r
        if best is None:
            raise _fail(lab, "L-BFGS-B found no finite optimum from any start")
        draws, conv = [], []
        for w in [] if C is None else C:
            r = _minimize(best.x, form, lnN, lnD, S, lnL, delta, w)
            draws.append(_to_params(r.x) if np.all(np.isfinite(r.x)) else np.full(7, np.nan))
            conv.append(_converged(r, form))
    law = MixtureLaw(form, *_to_params(best.x), float(best.fun), 0.0, int(N.size), _converged(best, form))
    law.rms = float(np.sqrt(np.mean((np.log(law.predict(N, D, S)) - lnL) ** 2)))
    if draws:
        law.draws, law.boot_converged = np.array(draws), float(np.mean(conv))
    return law


# --------------------------------------------------------------------------------------
# the optimum of a weighted sum of laws at one compute
# --------------------------------------------------------------------------------------

_LN_N = np.linspace(np.log(1e2), np.log(1e14), 2401)  # grid step 0.0058 in ln N, refined below


@dataclass
class LawOptimum:
    """argmin over N of sum_m w_m L_m(N, D(N), s_m) at one compute: point and per-draw values."""

    log_n: float
    log_n_draws: np.ndarray
    log_d: float
    log_d_draws: np.ndarray
    losses: dict  # metric -> (point, draws) of its own loss at the (weighted) optimum
    objective: float
    objective_draws: np.ndarray
    at_grid_edge: bool  # the minimum hit the ends of the search grid: no optimum found


def _refine(lnn, f):
    """Sub-grid minimum per row of f (rows x grid) by a parabola through the best grid point."""
    i = np.clip(np.argmin(f, axis=1), 1, f.shape[1] - 2)
    rows = np.arange(f.shape[0])
    y0, y1, y2 = f[rows, i - 1], f[rows, i], f[rows, i + 1]
    den = y0 - 2 * y1 + y2
    step = lnn[1] - lnn[0]
    off = np.where(den > 0, 0.5 * (y0 - y2) / np.where(den > 0, den, 1), 0.0)
    edge = (np.argmin(f, axis=1) == 0) | (np.argmin(f, axis=1) == f.shape[1] - 1)
    return lnn[i] + np.clip(off, -1, 1) * step, edge


def optimum(terms, compute: float, flops_per_token=None) -> LawOptimum:
    """Minimise sum_m w_m L_m over ln N at `compute`, for the fit and for every draw.

    `terms` are (name, law, weight, share) tuples; the laws' draws must come from the same
    resamples of cells (same row = same resample) for the weighted draws to be paired.
    D(N) = compute / flops_per_token(N): 6 N by default (C = 6 N D); any callable of N
    (e.g. the exact count with attention) gives the other accounting.
    """
    fpt = (lambda n: 6.0 * n) if flops_per_token is None else flops_per_token
    n_grid = np.exp(_LN_N)
    d_grid = compute / fpt(n_grid)
    n_draws = min(len(t[1].draws) for t in terms)
    point = sum(w * law.predict(n_grid, d_grid, s) for _, law, w, s in terms)
    x, edge = _refine(_LN_N, point[None])
    xs = np.array([])
    if n_draws:
        surf = sum(w * law.predict(n_grid, d_grid, s, law.draws[:n_draws]) for _, law, w, s in terms)
        surf = np.where(np.isfinite(surf), surf, np.inf)
        xs, dedge = _refine(_LN_N, surf)
        xs = np.where(dedge | ~np.isfinite(surf).any(axis=1), np.nan, xs)
    nstar = np.exp(np.concatenate([x, xs]))
    dstar = compute / fpt(nstar)
    losses = {}
    total = 0.0
    for name, law, w, s in terms:
        pt = float(law.predict(nstar[0], dstar[0], s))
        dr = law.predict(nstar[1:], dstar[1:], s, law.draws[:n_draws], paired=True) if n_draws else np.array([])
        losses[name] = (pt, dr)
        total = total + w * np.concatenate([[pt], dr])
    return LawOptimum(
        log_n=float(x[0]),
        log_n_draws=xs,
        log_d=float(np.log(dstar[0])),
        log_d_draws=np.log(dstar[1:]),
        losses=losses,
        objective=float(total[0]),
        objective_draws=np.asarray(total[1:], float),
        at_grid_edge=bool(edge[0]),
    )
