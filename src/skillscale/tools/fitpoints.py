"""`skillscale fit`: Approach 2 or 3 on any CSV of (N, D, loss) points.

    skillscale fit POINTS.csv --approach isoflop|parametric [--group COL ...] [--n-boot K]
                   [--seed S] [--ci 0.9] [--window W] [--drop-highest K] [--json]

Columns: n_params, tokens, loss (names can be changed with --n-col/--tokens-col/--loss-col).
`tokens` may be absent when a `flops` column is there: D = flops / (6 N).
The IsoFLOP budget of a point is, in order of preference: the `budget` column; else the
`flops` column; else 6 * n_params * tokens. The last two are real, scattered compute
values, so they are clustered into nominal budgets: sorted by log10 C, a budget spans at
most --budget-width decades (default 0.1, i.e. 26%) from its smallest point, and is
labelled by the geometric mean of its points (3 significant digits).
Exit status: 0 fitted, 1 some group could not be fitted (its status says why), 2 bad input.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from skillscale.analysis import fit


class InputError(Exception):
    pass


def cluster_budgets(flops, width_decades: float = 0.1) -> np.ndarray:
    """Nominal budget per point. Sorted by log10 C, a budget collects points until one lies
    more than `width_decades` above the budget's smallest point (a bounded width, so dense
    scatter cannot chain into one huge budget); each budget is labelled by the geometric
    mean of its points, rounded to 3 significant digits."""
    lc = np.log10(np.asarray(flops, float))
    order = np.argsort(lc, kind="stable")
    srt = lc[order]
    labels = np.empty_like(lc)
    start = 0
    for i in range(1, len(srt) + 1):
        if i == len(srt) or srt[i] - srt[start] > width_decades:
            labels[order[start:i]] = float(f"{10 ** srt[start:i].mean():.3g}")
            start = i
    return labels


def load_points(a) -> pd.DataFrame:
    path = Path(a.points)
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Exception as e:  # unreadable / not CSV: say which file and why, no traceback
        raise InputError(f"{path}: cannot read as CSV ({type(e).__name__}: {e})") from None
    expected = f"expected columns {a.n_col}, {a.tokens_col} (or {a.flops_col}), {a.loss_col}"
    for col in [a.n_col, a.loss_col, *a.group]:
        if col not in df.columns:
            raise InputError(f"{path}: no column '{col}' ({expected}; found {', '.join(map(str, df.columns))})")
    if a.tokens_col not in df.columns and a.flops_col not in df.columns:
        raise InputError(
            f"{path}: no column '{a.tokens_col}' and no '{a.flops_col}' to derive it from"
            f" ({expected}; found {', '.join(map(str, df.columns))})"
        )
    out = df[a.group].copy()
    for src, dst in [(a.n_col, "n_params"), (a.loss_col, "loss")]:
        out[dst] = pd.to_numeric(df[src], errors="coerce")
        if out[dst].isna().all():
            raise InputError(f"{path}: column '{src}' has no numeric values")
    if a.tokens_col in df.columns:
        out["tokens"] = pd.to_numeric(df[a.tokens_col], errors="coerce")
    else:
        out["tokens"] = pd.to_numeric(df[a.flops_col], errors="coerce") / (6 * out["n_params"])
    if a.budget_col in df.columns:
        out["budget"], out["budget_from"] = pd.to_numeric(df[a.budget_col], errors="coerce"), a.budget_col
    else:
        flops = (
            pd.to_numeric(df[a.flops_col], errors="coerce")
            if a.flops_col in df.columns
            else 6 * out["n_params"] * out["tokens"]
        )
        out["budget"] = np.nan
        ok = np.isfinite(flops) & (flops > 0)
        out.loc[ok, "budget"] = cluster_budgets(flops[ok], a.budget_width)
        out["budget_from"] = f"{a.flops_col} (clustered)" if a.flops_col in df.columns else "6*N*D (clustered)"
    if a.drop_highest > 0:

        def drop(g):
            return g.drop(g["loss"].nlargest(a.drop_highest).index)

        parts = [drop(g) for _, g in (out.groupby(a.group, sort=False) if a.group else [((), out)])]
        out = pd.concat(parts) if parts else out
    return out


def _clean(v):
    """JSON-safe scalars: NaN/inf -> null, numpy -> python."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return v


def _records(df: pd.DataFrame) -> list[dict]:
    return [_clean(r) for r in df.to_dict(orient="records")]


def fit_isoflop(pts: pd.DataFrame, a) -> tuple[dict, int]:
    res = fit.isoflop_scaling(
        pts,
        a.group,
        n_col="n_params",
        budget_col="budget",
        loss_col="loss",
        n_boot=a.n_boot,
        seed=a.seed,
        ci=a.ci,
        window=a.window,
        exclude_edge=not a.include_edge,
    )
    out = {
        "approach": "isoflop",
        "file": str(a.points),
        "budget_from": str(pts["budget_from"].iloc[0]),
        "n_points": int(len(pts)),
        "ci": a.ci,
        "n_boot": a.n_boot,
        "window": a.window,
        "groups": [],
    }
    for _, srow in res.scaling.iterrows():
        g = res.optima
        for c in a.group:
            g = g[g[c] == srow[c]]
        entry = _clean(srow.to_dict())
        entry["optima"] = _records(g.drop(columns=list(a.group)))
        out["groups"].append(entry)
    failed = any(str(s).startswith("failed") for s in res.scaling["status"])
    return out, int(failed)


def fit_parametric(pts: pd.DataFrame, a) -> tuple[dict, int]:
    out = {
        "approach": "parametric",
        "file": str(a.points),
        "n_points": int(len(pts)),
        "ci": a.ci,
        "n_boot": a.n_boot,
        "groups": [],
    }
    failed = 0
    for key, g in pts.groupby(a.group, sort=True) if a.group else [((), pts)]:
        key = key if isinstance(key, tuple) else (key,)
        kd = dict(zip(a.group, key))
        entry = _clean(kd)
        try:
            f = fit.fit_parametric(
                g["n_params"], g["tokens"], g["loss"], n_boot=a.n_boot, seed=a.seed, ci=a.ci, label=fit.group_label(kd)
            )
            entry.update(_clean(f.to_dict()), status="ok")
        except fit.FitError as e:
            entry.update(status=f"failed: {e}")
            failed = 1
        out["groups"].append(entry)
    return out, failed


def _print_tables(out: dict) -> None:
    print(
        f"{out['file']}: {out['n_points']} points, approach {out['approach']}"
        + (f", budgets from {out['budget_from']}" if "budget_from" in out else "")
    )
    fmt = lambda x: f"{x:.4g}"
    if out["approach"] == "isoflop":
        for g in out["groups"]:
            head = {k: v for k, v in g.items() if k != "optima"}
            print()
            print(pd.Series(head).to_string())
            print(pd.DataFrame(g["optima"]).to_string(index=False, float_format=fmt))
    else:
        print(pd.DataFrame(out["groups"]).T.to_string(header=False, float_format=fmt))


def run(args) -> int:
    """`skillscale fit` (its arguments: skillscale.cli)."""
    try:
        pts = load_points(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if pts.empty:
        print(f"error: {args.points}: no rows", file=sys.stderr)
        return 2
    out, rc = (fit_isoflop if args.approach == "isoflop" else fit_parametric)(pts, args)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        _print_tables(out)
    return rc
