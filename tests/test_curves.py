"""The training-curve figures: what they plot is what the trunk and cell records hold."""

import json
import shutil

import pandas as pd
import pytest

from skillscale import study
from skillscale.analysis import curveplots, curves, outputs

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def test_root(test_study):
    return test_study["dir"] / "results" / "test"


def test_the_curves_are_the_records_and_cooldowns_leave_their_trunk_at_the_branch(test_root):
    s = study.Study.load(test_root / "config.yaml", root=test_root)
    got, ends = curves.collect(s)
    for run, t in s.trunk.items():
        rec = json.loads((test_root / "trunks" / run / "trunk.json").read_text())
        mine = got[(got.kind == "trunk") & (got.trunk == run)]
        assert mine.loss.tolist() == [p["loss"] for p in rec["curve"]] and len(mine) > 5
        trunk_at = dict(zip(mine.step, mine.loss))
        for cell, branch in t.branches:
            line = got[got.cell == cell].sort_values("step")
            # the cooldown starts on its trunk's own point at the branch step, then falls below it
            assert line.step.iloc[0] == branch and line.loss.iloc[0] == trunk_at[branch]
            train = json.loads((test_root / "cells" / cell / "train.json").read_text())
            assert line.loss.iloc[-1] == train["final_loss"] and line.step.iloc[-1] == train["cell"]["steps"]
    assert sorted(ends.cell) == sorted(s.cell) and ends.diverged_step.isna().all()
    for name in outputs.CURVE_FIGURES.values():  # the workflow's curves rule drew both
        assert (test_root / "figures" / name).read_bytes()[:4] == b"\x89PNG"


def test_edge_cells_are_the_cells_at_the_bound_an_optimum_passed(test_root):
    s = study.Study.load(test_root / "config.yaml", root=test_root)
    _, ends = curves.collect(s)
    c = s.cells[0]
    optima = pd.DataFrame(
        [
            dict(code_frac=c.code_frac, budget=c.budget, metric="code_fn", status="edge", n_opt_bound=c.n_params),
            dict(code_frac=c.code_frac, budget=c.budget, metric="code_text", status="ok", n_opt_bound=float("nan")),
        ]
    )
    assert curves.edge_cells(optima, ends) == {c.cell: ["code_fn"]}


def test_a_diverged_trunk_and_a_missing_record_still_draw(test_root, tmp_path):
    """Mid-study (a trunk not finished) and with a divergence, the figures are drawn, not refused."""
    root = tmp_path / "results" / "test"
    shutil.copytree(test_root, root, ignore=shutil.ignore_patterns("*.safetensors", "*.pt", "data"))
    runs = sorted(p.name for p in (root / "trunks").iterdir())
    (root / "trunks" / runs[0] / "trunk.json").unlink()
    rec_path = root / "trunks" / runs[1] / "trunk.json"
    rec = json.loads(rec_path.read_text())
    rec["diverged_step"] = rec["curve"][3]["step"]
    rec_path.write_text(json.dumps(rec))
    s = study.Study.load(root / "config.yaml", root=root)
    got, ends = curves.collect(s)
    assert runs[0] not in set(got.trunk[got.kind == "trunk"])
    assert ends[ends.trunk == runs[1]].diverged_step.notna().any()
    edges = curves.edge_cells(pd.read_csv(root / "tables" / "optima.csv"), ends)
    curveplots.training_curves(got, ends, edges, root / "figures" / "drawn.png")  # raises if it cannot draw
    assert (root / "figures" / "drawn.png").stat().st_size > 20_000  # a figure, not a placeholder's text
    for path in curves.draw(s.cfg, root).values():
        assert path.read_bytes()[:4] == b"\x89PNG"
