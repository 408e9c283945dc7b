"""Training curves of a study: loss against tokens for every trunk and its cooldown branches
(or every cosine cell), and each cell's final training loss against its held-out bits per byte.

    python -m skillscale.analysis.curves --config results/<study>/config.yaml --study-dir results/<study>

The workflow's `curves` rule runs it once every trunk job is done (figures/training_curves.png
and figures/train_vs_heldout.png, in the report); run by hand mid-study it draws what is
finished. It reads only the records jobs leave: each trunk's trunks/<run>/trunk.json (or
stable/<run>/stable.json in a study trained before the rename), each cell's train.json
(cells/<cell>/, or still in its trunk's folder) for its cooldown and final loss, and
tables/optima.csv and cells.csv (written by analyze) for the edge optima and the held-out
bits per byte. The curve points are the means over train.log_every steps that the trainer logs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from skillscale import common, plan, study
from skillscale.analysis.outputs import curve_paths

# held-out text whose bits per byte show overfitting to repeated training data
HELDOUT_METRICS = ("knowledge_text", "code_text")
CURVE_COLUMNS = ["kind", "trunk", "cell", "code_frac", "seed", "size", "n_params", "budget", "step", "tokens", "loss"]


def _train_record(s: study.Study, cell: str) -> dict | None:
    """A cell's train.json where collect_cell put it, or still in its trunk's folder (mid-study)."""
    root = Path(s.root)
    places = [root / "cells" / cell / "train.json"]
    if s.wsd:
        places.append(root / s.trunks_dir / s.trunk_of[cell] / "cells" / cell / "train.json")
    for p in places:
        if p.is_file():
            return common.read_json(p, "training record")
    return None


def collect(s: study.Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curves, ends): every logged point of every finished trunk (kind 'trunk') and cell
    (kind 'cooldown' from its branch point on, or 'cell' under cosine); and one row per
    finished cell: its branch point, final loss and divergence, and trunks' divergences."""
    root, rows, ends = Path(s.root), [], []
    for t in s.trunk.values():
        rec_path = study.trunk_record(root / s.trunks_dir / t.run)
        if not rec_path.is_file():
            continue
        rec = common.read_json(rec_path, "trunk record")
        base = dict(kind="trunk", trunk=t.run, cell="", code_frac=t.code_frac, seed=t.seed, size=t.size)
        rows += [base | dict(n_params=t.n_params, budget=np.nan, **_point(p)) for p in rec["curve"]]
        if rec.get("diverged_step"):
            ends.append(base | dict(n_params=t.n_params, budget=np.nan, diverged_step=rec["diverged_step"]))
    for c in s.cells:
        rec = _train_record(s, c.cell)
        if rec is None:
            continue
        branch = c.steps - plan.cooldown_steps(s.cfg, c.steps) if s.wsd else 0
        base = dict(
            kind="cooldown" if s.wsd else "cell",
            trunk=s.trunk_of[c.cell] if s.wsd else "",
            cell=c.cell,
            code_frac=c.code_frac,
            seed=c.seed,
            size=c.size,
            n_params=c.n_params,
            budget=c.budget,
        )
        # a cooldown's line starts at its trunk's point at the branch step, so the two join
        rows += [base | _point(p) for p in rec["curve"] if p["step"] >= branch]
        tps = rec["curve"][0]["tokens"] / rec["curve"][0]["step"] if rec["curve"] else np.nan
        ends.append(
            base
            | dict(
                branch_step=branch,
                branch_tokens=branch * tps,
                final_loss=rec["final_loss"],
                tokens_end=rec["curve"][-1]["tokens"] if rec["curve"] else np.nan,
                diverged_step=rec.get("diverged_step"),
            )
        )
    return pd.DataFrame(rows, columns=CURVE_COLUMNS), pd.DataFrame(ends)


def _point(p: dict) -> dict:
    return {"step": p["step"], "tokens": p["tokens"], "loss": p["loss"]}


def edge_cells(optima: pd.DataFrame | None, ends: pd.DataFrame) -> dict:
    """Cell id -> metrics whose IsoFLOP optimum (its code fraction and budget) sits at this cell's
    size: at the edge of the sizes sampled, so the cell bounds an extrapolation."""
    out = {}
    if optima is None or optima.empty or ends.empty or "n_opt_bound" not in optima.columns:
        return out
    for _, o in optima[optima.status.astype(str) == "edge"].iterrows():
        hit = ends[
            np.isclose(ends.code_frac, o.code_frac)
            & np.isclose(ends.budget, o.budget)
            & np.isclose(ends.n_params, o.n_opt_bound)
        ]
        for cell in hit.cell:
            out.setdefault(cell, []).append(str(o.metric))
    return out


def draw(cfg: dict, study_dir: Path) -> dict:
    """Both figures of `study_dir` from its records; returns their paths."""
    # deferred: matplotlib only when drawing (collect() is used without it)
    from skillscale.analysis import curveplots, plots

    s = study.Study(cfg, Path(study_dir))
    curves, ends = collect(s)
    sizes = {c.size: c.n_params for c in s.cells}  # every size, so each keeps its colour mid-study
    optima_csv, cells_csv = Path(study_dir) / "tables" / "optima.csv", Path(study_dir) / "cells.csv"
    optima = pd.read_csv(optima_csv) if optima_csv.is_file() else None
    cells = pd.read_csv(cells_csv) if cells_csv.is_file() else None
    out = curve_paths(study_dir)
    for name, fn in (
        ("training_curves", lambda p: curveplots.training_curves(curves, ends, edge_cells(optima, ends), p, sizes)),
        ("train_vs_heldout", lambda p: curveplots.train_vs_heldout(cells, HELDOUT_METRICS, p)),
    ):
        try:
            fn(out[name])
        except Exception as e:  # a figure that cannot be drawn says why, in the figure
            plots.placeholder(out[name], f"{name}: could not be drawn", f"{type(e).__name__}: {e}")
    return out


def main(argv=None) -> int:
    return study.step_main(argv, "python -m skillscale.analysis.curves", __doc__, draw)


if __name__ == "__main__":
    raise SystemExit(main())
