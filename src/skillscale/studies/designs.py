"""Certainty per minute: what other seeds x sizes-per-budget designs of a finished study buy.

    skillscale designs results/default [--designs 5x1,6x1,7x1,5x2,6x2] [--reps 8]

A design is `sizes_per_budget x seeds` on the study's own budgets, code fractions and
ladder. For each one this simulates cells and runs them through the study's analysis (the
IsoFLOP optima, power laws and claim-2 slopes of `tables.build_tables`), reporting the
median over replicates of the certainty table's statistics, next to the design's wall time
on this study's machine:

- truth: per (code fraction, metric, budget), the parabola in ln N through the study's cells;
- noise: per cell, at the study's seed-to-seed standard deviation per metric (from cells
  trained under several seeds; with one seed, from the parabolas' residuals scaled by the
  degrees of freedom they lost), split into a part shared by a trunk's budgets and a part of
  its own, at the study's correlation of residuals between adjacent budgets;
- time: the plan's trunk and cooldown steps at the study's own tokens/s per width (its
  train.json records), its evaluation seconds per width, one start-up per trunk job, over
  `--cores` jobs side by side, plus the data and analysis jobs as the study logged them.

The first row, the study's own design simulated, is its check: it should read as the
study's measured tables/certainty.csv, which is printed under it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from skillscale import plan, study
from skillscale.analysis import tables

START_SECONDS = 3.0  # a trunk job's process start-up (skillscale speed train --cell-jobs)


def noise_model(cells: pd.DataFrame) -> tuple[dict, dict, dict]:
    """truth parabolas, per-metric sd and adjacent-budget residual correlation of `cells`."""
    truth, resid = {}, []
    for (cf, m, b), g in cells.groupby(["code_frac", "metric", "budget"]):
        x, y = np.log(g["n_params"].to_numpy(float)), g["value"].to_numpy(float)
        ok = np.isfinite(y)
        if len(np.unique(x[ok])) < 3:
            continue
        truth[cf, m, b] = np.polyfit(x[ok], y[ok], 2)
        for (_, row), r in zip(g[ok].iterrows(), y[ok] - np.polyval(truth[cf, m, b], x[ok])):
            resid.append((cf, m, b, row["size"], row["seed"], r, ok.sum()))
    R = pd.DataFrame(resid, columns=["code_frac", "metric", "budget", "size", "seed", "r", "n"])
    sd, rho = {}, {}
    for m, g in cells.groupby("metric"):
        if g["seed"].nunique() > 1:  # seed-to-seed: the spread of one cell over its seeds
            sd[m] = float(np.sqrt(g.groupby(["code_frac", "budget", "size"])["value"].var().mean()))
        else:  # a parabola through n points keeps (n - 3) / n of the noise's variance
            r = R[R.metric == m]
            sd[m] = float(np.sqrt((r.r**2 / ((r.n - 3) / r.n).clip(lower=1 / 3)).mean()))
        w = R[R.metric == m].pivot_table(index=["code_frac", "size", "seed"], columns="budget", values="r")
        cors = [
            w[[a, b]].dropna().corr().iloc[0, 1]
            for a, b in zip(w.columns, w.columns[1:])
            if len(w[[a, b]].dropna()) > 3
        ]
        rho[m] = float(np.clip(np.nanmean(cors), 0.0, 1.0)) if cors else 0.0
    return truth, sd, rho


def rates(study: Path) -> tuple[dict, dict]:
    """tokens/s and evaluation seconds by width, medians over the study's cell records."""
    tps, ev = {}, {}
    for p in study.glob("cells/*/train.json"):
        rec = json.loads(p.read_text())
        tps.setdefault(rec["cell"]["d_model"], []).append(rec["tokens_per_second"])
        e = p.parent / "eval.json"
        if e.exists():
            ev.setdefault(rec["cell"]["d_model"], []).append(json.loads(e.read_text())["wall_seconds"])
    if not tps:
        raise ValueError(f"{study}/cells: no train.json records; the study must have run")
    return {d: float(np.median(v)) for d, v in tps.items()}, {d: float(np.median(v)) for d, v in ev.items()}


def at_width(table: dict, d: int) -> float:
    """A per-width figure at width d, interpolated (or extrapolated) linearly in log-log."""
    ws = np.array(sorted(table), float)
    vs = np.log([table[w] for w in sorted(table)])
    if len(ws) == 1:
        return float(np.exp(vs[0]))
    i = int(np.clip(np.searchsorted(ws, d) - 1, 0, len(ws) - 2))
    t = (np.log(d) - np.log(ws[i])) / (np.log(ws[i + 1]) - np.log(ws[i]))
    return float(np.exp(vs[i] + t * (vs[i + 1] - vs[i])))


def design_config(cfg: dict, sizes: int, seeds: int) -> dict:
    return study.validate(
        cfg | {"seeds": list(range(seeds)), "grid": cfg["grid"] | {"sizes_per_budget": sizes}},
        f"design {sizes}x{seeds}",
    )


def wall_minutes(cfg: dict, cells, tps: dict, ev: dict, cores: int, fixed_s: float) -> float:
    """The design's snakemake wall time: its jobs' seconds over `cores`, plus the fixed jobs."""
    tok = cfg["train"]["batch_size"] * cfg["model"]["seq_len"]
    by_cell = {c.cell: c for c in cells}
    job_s = 0.0
    for r in plan.trunks(cfg, cells):
        d = by_cell[r.branches[0][0]].d_model
        job_s += START_SECONDS + r.steps * tok / at_width(tps, d)
        for cid, s in r.branches:
            job_s += (by_cell[cid].steps - s) * tok / at_width(tps, d) + at_width(ev, d)
    return (job_s / cores + fixed_s) / 60


def simulate(cells, truth: dict, sd: dict, rho: dict, skills: dict, rng) -> pd.DataFrame:
    """Cells of a design with values drawn from the noise model (see the module doc)."""
    rows, trunk = [], {}
    for c in cells:
        for m in sd:
            if (c.code_frac, m, c.budget) not in truth:
                continue
            k = (c.code_frac, c.size, c.seed, m)
            if k not in trunk:
                trunk[k] = rng.standard_normal()
            e = sd[m] * (np.sqrt(rho[m]) * trunk[k] + np.sqrt(1 - rho[m]) * rng.standard_normal())
            rows.append(
                dict(
                    cell=c.cell,
                    code_frac=c.code_frac,
                    budget=c.budget,
                    size=c.size,
                    seed=c.seed,
                    n_params=c.n_params,
                    n_params_total=c.n_params_total,
                    tokens=c.tokens,
                    metric=m,
                    skill=skills[m],
                    value=np.polyval(truth[c.code_frac, m, c.budget], np.log(c.n_params)) + e,
                    diverged=False,
                )
            )
    return pd.DataFrame(rows)


def certainty(cells: pd.DataFrame, cfg: dict) -> dict:
    """The certainty table's three statistics (and interior optima) of `cells`: the study's
    own IsoFLOP, power-law and datamix-slope fits, without the tables nobody reads here."""
    sc = tables.isoflop_tables(cells.rename(columns={"value": "loss"}), cfg["fit"])
    slopes, _ = tables.datamix_table(cells, sc.scaling, cfg, tables.reference_compute(cells["budget"].unique()))
    p = tables.certainty_table({"optima": sc.optima, "scaling": sc.scaling, "datamix_slopes": slopes})
    p = p.set_index("statistic")
    return {
        "n_opt_ratio": p.loc["n_opt_interval_ratio", "median"],
        "exponent_width": p.loc["exponent_interval_width", "median"],
        "claim2_excluding_0": p.loc["claim2_difference", "excluding_0"],
        "interior": int((sc.optima["status"] == "ok").sum()),
        "fits": len(sc.optima),
    }


def fixed_seconds(study: Path) -> float:
    """Seconds of the study's data and analysis jobs, from their records (0 if absent)."""
    s = 0.0
    m = study / "data" / "manifest.json"
    if m.exists():
        s += float(json.loads(m.read_text()).get("seconds", 0.0))
    return s + 30.0  # the analysis job: ~30 s on 2 cores for the default study


def compare(
    cfg: dict,
    cells: pd.DataFrame,
    tps: dict,
    ev: dict,
    designs: list[tuple[int, int]],
    reps: int,
    cores: int,
    fixed_s: float = 30.0,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per design (the cells' own first): its cells, minutes and median statistics.

    cfg: the study's config; cells: its cells.csv rows; tps / ev: tokens/s and evaluation
    seconds by width (`rates`); fixed_s: seconds of the jobs besides training (data, analysis)."""
    cells = cells[~cells["diverged"].astype(bool)]
    truth, sd, rho = noise_model(cells)
    if not all(v > 1e-9 for v in sd.values()):
        raise ValueError(
            "the cells leave no noise to measure: they need 2 or more seeds, or 4 or more sizes "
            "per budget (a parabola through 3 points has no residual)"
        )
    skills = dict(zip(cells["metric"], cells["skill"]))
    # the design the cells were trained under (the study's config.yaml is the last run's)
    own = (int(cells.groupby(["code_frac", "budget", "seed"])["size"].nunique().max()), int(cells["seed"].nunique()))
    rows = []
    for sizes, seeds in [own] + [d for d in designs if d != own]:
        dc = design_config(cfg, sizes, seeds)
        planned, _ = plan.build(dc)
        rng = np.random.default_rng(seed)
        st = pd.DataFrame([certainty(simulate(planned, truth, sd, rho, skills, rng), dc) for _ in range(reps)])
        rows.append(
            {
                "design": f"{sizes} sizes x {seeds} seed{'s' if seeds > 1 else ''}",
                "cells": len(planned),
                "minutes": wall_minutes(dc, planned, tps, ev, cores, fixed_s),
                "n_opt_ratio": st["n_opt_ratio"].median(),
                "exponent_width": st["exponent_width"].median(),
                "claim2_excluding_0": st["claim2_excluding_0"].mean(),
                "interior": st["interior"].mean(),
                "fits": st["fits"].mean(),
            }
        )
    out = pd.DataFrame(rows)
    # certainty per minute: an interval's log-width times sqrt(minutes) stays put when the only
    # change is more of the same data; lower is more certainty for the time
    out["n_opt_width_x_sqrt_min"] = np.log(out["n_opt_ratio"]) * np.sqrt(out["minutes"])
    out["exponent_width_x_sqrt_min"] = out["exponent_width"] * np.sqrt(out["minutes"])
    out.attrs.update(sd=sd, rho=rho)
    return out


def compare_study(study: Path, designs: list[tuple[int, int]], reps: int, cores: int) -> pd.DataFrame:
    """`compare` from a finished study folder: its config, cells.csv and records."""
    study = Path(study)
    for f in ("config.yaml", "cells.csv"):
        if not (study / f).exists():
            raise SystemExit(f"{study / f} missing: run the study (its analyze job writes cells.csv) first")
    tps, ev = rates(study)
    return compare(
        study.load(study / "config.yaml"),
        pd.read_csv(study / "cells.csv"),
        tps,
        ev,
        designs,
        reps,
        cores,
        fixed_seconds(study),
    )


def parse_designs(text: str) -> list[tuple[int, int]]:
    try:
        return [tuple(int(v) for v in d.split("x")) for d in text.split(",")]
    except ValueError:
        raise SystemExit(f"--designs {text!r}: expected SIZESxSEEDS,... e.g. 5x1,6x2") from None


def run(a) -> int:
    """`skillscale designs` (its arguments: skillscale.cli)."""
    out = compare_study(a.study, parse_designs(a.designs), a.reps, a.cores)
    print(
        f"noise model from {a.study}: sd "
        + ", ".join(f"{k} {v:.4f}" for k, v in out.attrs["sd"].items())
        + "; adjacent-budget correlation "
        + ", ".join(f"{k} {v:.2f}" for k, v in out.attrs["rho"].items())
    )
    print(f"{a.reps} simulated studies per design, medians; minutes on {a.cores} cores at this study's rates\n")
    print(out.round(3).to_string(index=False))
    measured = a.study / "tables" / "certainty.csv"
    if measured.exists():
        m = pd.read_csv(measured)
        print(
            f"\nmeasured ({measured}): "
            + ", ".join(f"{r.statistic} {r.median:.3g}" for r in m.itertuples())
            + "; claim-2 differences excluding 0: "
            + f"{m.set_index('statistic').loc['claim2_difference', 'excluding_0']:.0f}"
        )
    return 0
