"""The mixture-aware laws of a study: its cells as law inputs, the fits, and their cache.

`fit_laws(inputs, n_boot, forms)` fits forms of fit.mixture per metric on the given cells
(every code fraction, budget and seed), with a bootstrap over cells shared by all metrics.
`StudyLaws` holds a study's laws, the chosen form and what they were fitted on; `save` and
`load` are the cache `skillscale optimum` answers from (tables/mixture_law.json). Fitting a
whole study, with the held-out comparison that chooses the form, is mixselect.fit_study.
"""

from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from skillscale import common
from skillscale.analysis import fit, skills
from skillscale.analysis.fit import mixture as mx

__all__ = [
    "MAX_BOOT",
    "DEFAULT_FORM",
    "StudyLaws",
    "law_inputs",
    "exact_flops_per_token",
    "fpt_function",
    "fit_laws",
    "process_map",
    "law_status",
    "save",
    "load",
]

MAX_BOOT = 100  # refits per metric and form: ~10 ms each, like the parametric table's cap
CACHE_VERSION = 1

# Without a held-out fraction to judge by (fewer than 3 code fractions) the form that predicted
# a held-out code fraction best on the default study (docs/mixture-law.md) is fitted.
DEFAULT_FORM = "share"


@dataclass
class StudyLaws:
    """Every metric's law per form, what they were fitted on, and the chosen form."""

    laws: dict  # metric -> form -> MixtureLaw (or the FitError message)
    skills: dict  # metric -> skill
    sources: dict | None  # data.sources (own shares of configured corpora), None for embedded
    chosen: str
    ranges: dict  # budgets, code_fracs, n_params, tokens trained
    fpt: list  # [[n_params, exact flops per token], ...] over the ladder
    ci: float
    comparison: list = field(default_factory=list)  # per candidate: LOO scores
    flops: str = "6nd"  # how the study's budgets count compute (grid.flops)
    # per metric, the chosen form's ci-quantile |ln error| of N* and loss* at a held-out
    # code fraction: {metric: {"n": q, "loss": q}}
    held_out: dict = field(default_factory=dict)

    def per_token(self):
        """The study's FLOPs per token as a function of N (None: 6 N, what mixture.optimum assumes)."""
        return fpt_function(self.fpt) if self.flops == "exact" else None

    def share(self, metric: str, code_frac: float) -> float:
        return float(skills.own_share(self.skills[metric], code_frac, self.sources))

    def law(self, metric: str, form: str | None = None) -> mx.MixtureLaw:
        v = self.laws[metric][form or self.chosen]
        if isinstance(v, str):
            raise fit.FitError(v)
        return v


def law_inputs(cells: pd.DataFrame, sources=None) -> pd.DataFrame:
    """Usable cells (not diverged, finite loss) as metric, skill, cell, code_frac, budget,
    n_params, tokens, s (own share), loss."""
    c = cells[~cells["diverged"].astype(bool)] if "diverged" in cells.columns else cells
    c = c[np.isfinite(c["value"].astype(float))]
    out = c[["metric", "skill", "cell", "code_frac", "budget", "n_params", "tokens"]].copy()
    out["loss"] = c["value"].astype(float)
    out["s"] = np.nan
    for sk, idx in out.groupby("skill").groups.items():
        out.loc[idx, "s"] = skills.own_share(sk, out.loc[idx, "code_frac"].to_numpy(float), sources)
    return out.reset_index(drop=True)


def exact_flops_per_token(cells: pd.DataFrame) -> list:
    """[[N, exact FLOPs per token]] per size of the ladder (attention included)."""
    if "flops_exact" not in cells.columns:
        return []
    u = cells.drop_duplicates("cell")
    u = u[np.isfinite(u["flops_exact"].astype(float)) & (u["tokens"] > 0)]
    per = (u["flops_exact"] / u["tokens"]).groupby(u["n_params"]).median()
    return [[float(n), float(f)] for n, f in per.items()]


def fpt_function(fpt: list):
    """flops_per_token(N) interpolated in log-log over the ladder; None for C = 6 N D."""
    if len(fpt) < 2:
        return None
    ln_n, ln_r = np.log([p[0] for p in fpt]), np.log([p[1] / (6 * p[0]) for p in fpt])

    def f(n):
        x = np.log(np.asarray(n, float))
        # beyond the ladder the attention share keeps its trend, then stops at 6N's floor
        slope_lo = (ln_r[1] - ln_r[0]) / (ln_n[1] - ln_n[0])
        slope_hi = (ln_r[-1] - ln_r[-2]) / (ln_n[-1] - ln_n[-2])
        r = np.interp(x, ln_n, ln_r)
        r = np.where(x < ln_n[0], ln_r[0] + slope_lo * (x - ln_n[0]), r)
        r = np.where(x > ln_n[-1], ln_r[-1] + slope_hi * (x - ln_n[-1]), r)
        return 6 * np.asarray(n, float) * np.exp(np.maximum(r, 0.0))

    return f


def _fit_one(task) -> mx.MixtureLaw | str:
    """One metric x form fit, or its FitError's message (a worker process's task)."""
    n, d, s, loss, cc, form, init, label = task
    try:
        return mx.fit_mixture(n, d, s, loss, form, counts=cc, init=init, label=f"{label}, form={form}")
    except fit.FitError as e:
        return str(e)


def _counts(cells_ids, n_boot: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    ids = sorted(set(cells_ids))
    rng = np.random.default_rng(seed)
    return fit.boot_counts(len(ids), n_boot, rng), {c: i for i, c in enumerate(ids)}


def fit_laws(inputs: pd.DataFrame, n_boot: int, forms=mx.FORMS, seed: int = 0, mapper=map, init=None) -> dict:
    """metric -> form -> law, every metric bootstrapped on the same resamples of cells.

    `mapper` runs the metric x form fits (builtin map, or a process pool's map: each fit is
    seeded by its counts alone, so the result does not depend on it); `init` (metric ->
    form -> law, e.g. the fits on all cells) gives each fit its first start."""
    counts, index = _counts(inputs["cell"], n_boot, seed)
    tasks, keys = [], []
    for m, g in inputs.groupby("metric", sort=True):
        cc = counts[:, g["cell"].map(index).to_numpy()] if n_boot else None
        arrays = tuple(g[c].to_numpy(float) for c in ("n_params", "tokens", "s", "loss"))
        for form in forms:
            start = (init or {}).get(m, {}).get(form)
            start = start if isinstance(start, mx.MixtureLaw) else None
            tasks.append((*arrays, cc, form, start, fit.group_label({"metric": m})))
            keys.append((m, form))
    out: dict = {}
    for (m, form), law in zip(keys, mapper(_fit_one, tasks)):
        out.setdefault(m, {})[form] = law
    return out


@contextlib.contextmanager
def process_map():
    """A process pool's map over the cores this process may use, or builtin map on one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores < 2:
        yield map
        return
    with ProcessPoolExecutor(cores) as pool:
        yield pool.map


def law_status(law: mx.MixtureLaw) -> str:
    """'ok', 'failed: ...' (not converged: `optimum` refuses it) or 'flagged: ...' (a bound hit)."""
    if not law.converged:
        return "failed: L-BFGS-B did not report convergence"
    lo, hi = mx.mix_bounds(law.form)
    if lo < hi and (law.mix <= lo * (1 + 1e-6) + 1e-9 or law.mix >= hi * (1 - 1e-6)):
        return f"flagged: mix parameter at its bound {law.mix:g}: the cells do not pin the mix effect down"
    return "ok"


def save(sl: StudyLaws, path: Path, study: str) -> None:
    """The cache `skillscale optimum` answers from (JSON: every law with its bootstrap draws)."""
    laws = {m: {f: (v if isinstance(v, str) else v.to_dict()) for f, v in fs.items()} for m, fs in sl.laws.items()}
    doc = dict(
        version=CACHE_VERSION,
        study=study,
        chosen=sl.chosen,
        skills=sl.skills,
        sources=sl.sources,
        ranges=sl.ranges,
        fpt=sl.fpt,
        ci=sl.ci,
        comparison=sl.comparison,
        flops=sl.flops,
        held_out=sl.held_out,
        laws=laws,
    )
    common.write_text(Path(path), json.dumps(doc, default=float) + "\n")


def load(path: Path) -> StudyLaws:
    doc = json.loads(Path(path).read_text())
    if doc.get("version") != CACHE_VERSION:
        raise ValueError(
            f"{path}: cache version {doc.get('version')}, expected {CACHE_VERSION}; rerun `snakemake tables`"
        )
    laws = {
        m: {f: (v if isinstance(v, str) else mx.MixtureLaw.from_dict(v)) for f, v in fs.items()}
        for m, fs in doc["laws"].items()
    }
    return StudyLaws(
        laws,
        doc["skills"],
        doc["sources"],
        doc["chosen"],
        doc["ranges"],
        doc["fpt"],
        doc["ci"],
        doc["comparison"],
        doc.get("flops", "6nd"),
        doc.get("held_out", {}),
    )
