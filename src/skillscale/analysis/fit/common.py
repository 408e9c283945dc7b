"""What every fit shares: FitError, group labels for messages, and the bootstrap's pieces.

A resample with replacement is a multinomial count per point (`boot_counts`), used as
weights; an interval is the percentile interval of the usable draws (`interval`).
"""

from __future__ import annotations

import numpy as np


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


def boot_counts(n_points: int, n_boot: int, rng) -> np.ndarray:
    """(n_boot, n_points) multinomial counts: one resample with replacement per row."""
    return rng.multinomial(n_points, np.full(n_points, 1.0 / n_points), size=n_boot).astype(float)
