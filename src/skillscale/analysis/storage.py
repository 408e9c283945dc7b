"""What each cell stores about the facts, and whether capacity or exposure binds it.

    python -m skillscale.analysis.storage --config results/<study>/config.yaml --study-dir results/<study>

Only for a study whose facts are mentioned by population (`data.knowledge.frequency`): each
cell's eval.json then holds `storage`: over all facts and per frequency bin, the answers' prior
bits minus the model's bits for them asked about the right city (stored_*) and about another
city in another country (control_*; data/longtail.py, the skillscale_knowledge_* tasks). A
cell's **stored bits** are stored - control: what it knows of which city is where, apart from
how well it has learnt the answers' frequencies and the question's format (against the prior
alone, a model at these sizes pays 0.4-2 bits per fact more than the prior even for facts it
has never learnt: docs/capacity-study.md).
The workflow's `storage` rule writes:

- tables/storage.{csv,md}: one row per cell: N, tokens, passes over the knowledge stream and
  the mean exposures per fact of each frequency bin, stored bits (all facts, per bin) and bits
  per parameter.
- tables/storage_fit.{csv,md}: ln S = a + b ln N + c ln E over the cells (S stored bits,
  E passes, so c is the same for every bin's exposures), with a 90% bootstrap over cells: b is
  how storage grows with N at fixed exposures, c how it grows with exposures at fixed N. If
  capacity binds, S tracks N (b near 1, c near 0); if exposure binds, S tracks E (c > 0,
  b near 0). The table says which, by the rule in docs/capacity-study.md.
- figures/storage.png: bits per parameter against passes, a line per size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from skillscale import common, plan, study
from skillscale.analysis import aggregate
from skillscale.analysis.outputs import storage_paths
from skillscale.data.longtail import N_BINS


def collect(cfg: dict, study_dir: Path) -> pd.DataFrame:
    """One row per finished cell with a storage score (eval.json), with its exposures."""
    study_dir = Path(study_dir)
    manifest = common.read_json(study_dir / "data" / "manifest.json", "data manifest")
    facts = manifest.get("sources", {}).get("facts", {})  # a study of configured sources has none
    if facts.get("frequency") != "population":
        raise ValueError(
            f"{study_dir}: its facts are not mentioned by population (data.knowledge.frequency);"
            " storage is scored only for such studies"
        )
    shard_tokens = manifest["shards"]["knowledge"]["n_tokens"]
    per_fact = [b["mentions_total"] / b["facts"] for b in facts["bins"]]
    cells, _ = plan.build(cfg)
    rows = []
    for c in cells:
        path = study_dir / "cells" / c.cell / "eval.json"
        if not path.is_file():
            continue
        ev = common.read_json(path, "evaluation record")
        if "storage" not in ev or ev.get("diverged"):
            continue
        s = ev["storage"]
        passes = c.tokens * (1 - c.code_frac) / shard_tokens  # knowledge tokens seen / one pass
        stored = s["stored_bits"] - s["control_bits"]
        row = {
            **aggregate.cell_fields(c, "tokens"),
            "passes": passes,
            "stored_bits": stored,
            "bits_per_param": stored / c.n_params,
            "beyond_prior_bits": s["stored_bits"],
        }
        for b in range(N_BINS):
            row[f"exposures_b{b}"] = per_fact[b] * passes
            row[f"bits_per_fact_b{b}"] = (s[f"stored_bits_b{b}"] - s[f"control_bits_b{b}"]) / facts["bins"][b]["facts"]
        rows.append(row)
    return pd.DataFrame(rows)


def fit_elasticities(df: pd.DataFrame, n_boot: int = 1000, ci: float = 0.9, seed: int = 0) -> dict:
    """ln S = a + b ln N + c ln E by least squares over cells with S > 0, and a percentile
    bootstrap over those cells. Returns estimates and intervals of (a, b, c), the interval of
    b - c (the same draws), cells used and R^2."""
    ok = df[df["stored_bits"] > 0]
    if len(ok) < 4 or ok["n_params"].nunique() < 2 or ok["passes"].nunique() < 2:
        raise ValueError(f"storage fit needs >= 4 cells that store bits, over >= 2 sizes and exposures; {len(ok)} do")
    X = np.column_stack([np.ones(len(ok)), np.log(ok["n_params"]), np.log(ok["passes"])])
    y = np.log(ok["stored_bits"].to_numpy())
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    resid = y - X @ coef
    r2 = 1 - resid.var() / y.var()
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        i = rng.integers(0, len(ok), len(ok))
        if np.linalg.matrix_rank(X[i]) < 3:
            continue
        draws.append(np.linalg.lstsq(X[i], y[i], rcond=None)[0])
    draws = np.array(draws)
    q = [50 * (1 - ci), 50 * (1 + ci)]
    lo, hi = np.percentile(draws, q, axis=0)
    d_lo, d_hi = np.percentile(draws[:, 1] - draws[:, 2], q)
    d = coef[1] - coef[2]
    return {
        "coef": coef,
        "lo": np.minimum(lo, coef),
        "hi": np.maximum(hi, coef),
        "diff": (d, min(d_lo, d), max(d_hi, d)),
        "cells": len(ok),
        "r2": r2,
    }


def verdict(f: dict) -> str:
    """Which binds, from the elasticities' intervals (docs/capacity-study.md): capacity when
    storage grows with N at fixed exposures (b's interval above 0) and not with exposures at
    fixed N; exposure the mirror image; both when both grow, naming the larger only where the
    interval of b - c excludes 0; neither when no interval excludes 0."""
    (_, b_lo, c_lo), (_, d_lo, d_hi) = f["lo"], f["diff"]
    if b_lo > 0 and c_lo > 0:
        if d_lo > 0:
            return "both (capacity more)"
        return "both (exposure more)" if d_hi < 0 else "both, about equally (b - c interval contains 0)"
    if b_lo > 0:
        return "capacity"
    if c_lo > 0:
        return "exposure"
    return "neither (intervals include 0)"


def fit_table(df: pd.DataFrame, ci: float) -> pd.DataFrame:
    f = fit_elasticities(df, ci=ci)
    names = ("intercept", "b: d ln S / d ln N at fixed exposures", "c: d ln S / d ln E at fixed N")
    rows = [
        {"term": n, "estimate": f["coef"][k], "ci_lo": f["lo"][k], "ci_hi": f["hi"][k]} for k, n in enumerate(names)
    ]
    rows.append({"term": "b - c", "estimate": f["diff"][0], "ci_lo": f["diff"][1], "ci_hi": f["diff"][2]})
    rows.append({"term": f"binds: {verdict(f)}", "estimate": f["r2"], "ci_lo": np.nan, "ci_hi": np.nan})
    out = pd.DataFrame(rows)
    out["cells"] = f["cells"]
    return out


def draw(df: pd.DataFrame, path: Path) -> None:
    # deferred: matplotlib (plots sets its Agg backend): only where a figure is drawn
    from skillscale.analysis.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (n, size), g in sorted(df.groupby(["n_params", "size"])):
        m = g.groupby("passes")["bits_per_param"].agg(["mean", "min", "max"]).reset_index()  # over seeds
        err = [m["mean"] - m["min"], m["max"] - m["mean"]]
        axes[0].errorbar(m["passes"], m["mean"], yerr=err, fmt="o-", ms=4, capsize=2, label=f"{size} ({n / 1e3:.0f}k)")
    axes[0].set(xscale="log", xlabel="passes over the knowledge stream", ylabel="stored bits / parameter")
    axes[0].set_title("Storage against exposures, a line per size (seeds: mean, range)")
    axes[0].axhline(0, color="grey", lw=0.5)
    axes[0].legend(fontsize=7)
    for b in range(N_BINS):
        axes[1].scatter(df[f"exposures_b{b}"], df[f"bits_per_fact_b{b}"], s=12, label=f"bin {b}")
    axes[1].set(xscale="log", xlabel="exposures per fact (bin mean)", ylabel="stored bits per fact")
    axes[1].set_title("Per fact, by frequency bin (0 = most mentioned)")
    axes[1].axhline(0, color="grey", lw=0.5)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    with common.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write(cfg: dict, study_dir: Path) -> dict:
    # deferred: report pulls in the whole analysis (scipy): only when tables are written
    from skillscale.analysis.report import write_table

    out = storage_paths(study_dir)
    df = collect(cfg, study_dir)
    ci = cfg["fit"]["ci"]
    write_table(
        df,
        out["storage_csv"],
        "Bits stored about the facts per cell: against the control, and beyond the frequency prior",
        [
            "stored_bits: sum over all facts of the model's bits for the answer asked about another city (the control)"
            " minus its bits for it asked about the right city, in the held-out wording: what it knows of which"
            " city is where; beyond_prior_bits: the same against the answer's frequency prior instead of the control",
            "passes: knowledge tokens seen / tokens of one pass; exposures_bK: bin K's mean mentions per fact x passes",
        ],
    )
    write_table(
        fit_table(df, ci),
        out["storage_fit_csv"],
        "ln S = a + b ln N + c ln E: does capacity or exposure bind storage?",
        [f"{ci:.0%} bootstrap over cells; the last row's estimate is R^2; rule: docs/capacity-study.md"],
    )
    draw(df, out["fig_storage"])
    for k in list(out):  # write_table also writes .tex; the workflow declares csv and md
        if k.endswith("_md"):
            out[k].with_suffix(".tex").unlink(missing_ok=True)
    return out


def main(argv=None) -> int:
    return study.step_main(argv, "python -m skillscale.analysis.storage", __doc__, write)


if __name__ == "__main__":
    raise SystemExit(main())
