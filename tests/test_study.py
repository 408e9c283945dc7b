"""The Study: one grid for the Snakefile and the jobs, and results folders made before the
renames (stable/ trunks, the precision table) read without rerunning anything."""

import os

from skillscale import plan, study

TEST = "config/studies/test.yaml"


def test_study_is_the_plans_grid_and_one_job_flops(repo):
    s = study.Study.load(repo / TEST, {"train": {"schedule": "wsd"}})
    cells, _ = plan.build(s.cfg)
    assert [c.cell for c in s.cells] == [c.cell for c in cells]
    assert set(s.trunk) == {plan.trunk_id(c) for c in cells} == set(s.trunk_of.values())
    tokens_per_step = s.cfg["train"]["batch_size"] * s.cfg["model"]["seq_len"]
    for t in s.trunk.values():  # a trunk job: the trunk, then each cell's steps past its branch (6ND)
        cooldowns = sum(s.cell[c].flops - 6.0 * t.n_params * b * tokens_per_step for c, b in t.branches)
        assert s.job_flops(t.run) == t.flops + cooldowns
    assert sum(s.job_flops(r) for r in s.trunk) == plan.sweep_cost(s.cfg, s.cells)["wsd_flops"]


def test_trunks_live_in_trunks_and_a_study_trained_before_keeps_stable(repo, tmp_path):
    cfg = study.load(repo / TEST)
    assert study.Study(cfg, tmp_path).trunks_dir == "trunks"
    (tmp_path / "stable").mkdir()
    legacy = study.Study(cfg, tmp_path)
    assert legacy.trunks_dir == "stable" and study.trunk_record_name(legacy.trunks_dir) == "stable.json"
    assert study.trunk_record(tmp_path / "stable" / "x") == tmp_path / "stable" / "x" / "stable.json"
    assert study.trunk_record(tmp_path / "trunks" / "x") == tmp_path / "trunks" / "x" / "trunk.json"


def test_a_renamed_table_is_moved_once_keeping_its_time(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    for ext in ("csv", "md", "tex"):
        (tables / f"precision.{ext}").write_text(ext)
        os.utime(tables / f"precision.{ext}", (1e9, 1e9))
    moved = study.move_renamed_tables(tmp_path)
    assert len(moved) == 3 and not list(tables.glob("precision.*"))
    assert (tables / "certainty.md").read_text() == "md" and (tables / "certainty.csv").stat().st_mtime == 1e9
    assert study.move_renamed_tables(tmp_path) == []  # once
    (tables / "precision.csv").write_text("old")
    assert study.move_renamed_tables(tmp_path) == [] and (tables / "certainty.csv").read_text() == "csv"
