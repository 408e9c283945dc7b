"""Compare two sweeps of the same grid: the WSD sweep against the cell-by-cell cosine sweep.

    skillscale sweepcompare results/default results/default-cosine [--out FILE.md]

Reads each study's tables/optima.csv and the FLOPs its jobs actually trained (train.json
`flops_spent`, plus trunk.json for WSD trunks), and reports the compute ratio and, per
(code fraction, metric, budget), both N* and whether the first sweep's N* lies inside the
second sweep's bootstrap interval.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from skillscale import common

KEY = ["code_frac", "metric", "budget"]


def compute_spent(study: Path, code_fracs=None) -> float:
    """FLOPs the study's finished jobs trained, those of `code_fracs` only if given."""
    total = 0.0
    # trunk records: trunks/<run>/trunk.json (stable/<run>/stable.json before the rename)
    jobs = ["cells/*/train.json", "trunks/*/trunk.json", "stable/*/stable.json"]
    for p in [p for pattern in jobs for p in study.glob(pattern)]:
        if code_fracs is not None and not any(p.parent.name.startswith(f"code{f:.2f}_") for f in code_fracs):
            continue
        rec = json.loads(p.read_text())
        total += rec.get("flops_spent", rec.get("flops", 0.0))
    return total


def compare(a: Path, b: Path) -> tuple[pd.DataFrame, dict]:
    oa = pd.read_csv(a / "tables" / "optima.csv")
    ob = pd.read_csv(b / "tables" / "optima.csv")
    m = oa[KEY + ["n_opt", "status"]].merge(
        ob[KEY + ["n_opt", "n_opt_lo", "n_opt_hi", "status"]], on=KEY, suffixes=("_a", "_b")
    )
    m["ratio"] = m.n_opt_a / m.n_opt_b
    m["inside_b_ci"] = (m.n_opt_a >= m.n_opt_lo) & (m.n_opt_a <= m.n_opt_hi)
    both = m[(m.status_a == "ok") & (m.status_b == "ok")]
    # compute over the code fractions both sweeps analysed: a sweep of a subset compares fairly
    shared = sorted(set(oa.code_frac) & set(ob.code_frac))
    ca, cb = compute_spent(a, shared), compute_spent(b, shared)
    summary = {
        "code_fracs": shared,
        "compute_a": ca,
        "compute_b": cb,
        "compute_ratio": ca / cb if cb else np.nan,
        "groups": len(m),
        "both_interior": len(both),
        "inside_ci": int(both.inside_b_ci.sum()),
        "median_abs_log_ratio": float(np.median(np.abs(np.log(both.ratio)))) if len(both) else np.nan,
    }
    return m, summary


def run(args) -> int:
    """`skillscale sweepcompare` (its arguments: skillscale.cli)."""
    m, s = compare(args.a, args.b)
    text = (
        f"# {args.a.name} vs {args.b.name}\n\n"
        f"- training FLOPs actually spent on code fraction(s) {', '.join(f'{f:g}' for f in s['code_fracs'])}:"
        f" {s['compute_a']:.3g} vs {s['compute_b']:.3g} = {s['compute_ratio']:.0%}\n"
        f"- groups (code fraction x metric x budget) interior in both: {s['both_interior']} of {s['groups']};"
        f" {args.a.name} N* inside {args.b.name}'s bootstrap interval in {s['inside_ci']} of them\n"
        f"- median |ln(N*_a / N*_b)| = {s['median_abs_log_ratio']:.3f}\n\n"
        + m.to_markdown(index=False, floatfmt=".4g")
        + "\n"
    )
    if args.out:
        common.write_text(args.out, text)
    print(text)
    return 0
