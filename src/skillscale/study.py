"""The study: a validated config and everything derived from it once — its cells, WSD trunks,
packs, each trunk job's FLOPs and where its results live. The Snakefile and the jobs load a
Study instead of rebuilding the grid; `validate` is the whole check of a config: the
schema (skillscale.config) and then each stage's checks across keys.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from skillscale import benchmarks, common, config, plan
from skillscale.config import ConfigError
from skillscale.data import checks
from skillscale.data.corpora import QUESTIONS
from skillscale.train import tracking

# Folder of WSD trunk jobs in a results folder. Studies trained before the stage packages
# (skillscale 0.1, commit d331592 and earlier) have stable/<run>/stable.json: such a folder
# is read where it is, so that their jobs keep their outputs and nothing reruns.
TRUNKS, LEGACY_TRUNKS = "trunks", "stable"
# Tables renamed since then (old name -> new), moved once where found: analyze's other
# outputs and its inputs are unchanged, so an analysed study still plans nothing.
RENAMED_TABLES = {"precision": "certainty"}


def move_renamed_tables(root: str | Path) -> list[str]:
    """Give a results folder's tables their current names; one message per file moved."""
    tables, moved = Path(root) / "tables", []
    for old, new in RENAMED_TABLES.items():
        for ext in ("csv", "md", "tex"):
            src, dst = tables / f"{old}.{ext}", tables / f"{new}.{ext}"
            if src.exists() and not dst.exists():
                src.rename(dst)  # keeps its mtime: the table is as new as before
                moved.append(f"{src} -> {dst.name} (renamed table)")
    return moved


def validate(cfg: dict | None, source: str = "config") -> dict:
    """A validated copy of `cfg` with every default filled in, or a ConfigError naming each
    bad key and what was expected."""
    cfg = config.validate(cfg, source)
    found = problems(cfg)
    if found:
        raise ConfigError(f"{source}: invalid config\n  " + "\n  ".join(found))
    return cfg


def problems(cfg: dict) -> list[str]:
    """What the schema cannot say, each stage's checks in turn; [] for a sound config."""
    problems = []
    budgets = cfg["grid"]["budgets"]
    if any(b2 <= b1 for b1, b2 in zip(budgets, budgets[1:])):
        problems.append(f"grid.budgets: {budgets} must be strictly increasing")
    fracs = cfg["mix"]["code_fractions"]
    if len(set(fracs)) != len(fracs):
        problems.append(f"mix.code_fractions: {fracs} has duplicates")
    if len(set(cfg["seeds"])) != len(cfg["seeds"]):
        problems.append(f"seeds: {cfg['seeds']} has duplicates")
    ladder = cfg["grid"]["ladder"]
    for i, s in enumerate(ladder):
        if s["d_model"] % s["n_heads"] or (s["d_model"] // s["n_heads"]) % 2:
            problems.append(
                f"grid.ladder.{i}: d_model={s['d_model']} must split into n_heads={s['n_heads']}"
                " heads of even width (rotary embeddings rotate pairs)"
            )
    if len({(s["d_model"], s["n_layers"], s["n_heads"]) for s in ladder}) != len(ladder):
        problems.append("grid.ladder: has duplicate shapes")
    if cfg["grid"]["sizes_per_budget"] > len(ladder):
        problems.append(
            f"grid.sizes_per_budget: {cfg['grid']['sizes_per_budget']} is more than the"
            f" {len(ladder)} shapes in grid.ladder"
        )
    rc = cfg["resources"]
    if cfg["train"]["batch_size"] % (rc["ddp_processes"] * rc["ddp_nodes"]):
        n = rc["ddp_processes"] * rc["ddp_nodes"]
        problems.append(
            f"resources.ddp_processes: {n} data-parallel processes ({rc['ddp_processes']} per node x"
            f" resources.ddp_nodes={rc['ddp_nodes']}) must divide train.batch_size"
            f" ({cfg['train']['batch_size']}): each takes an equal share of a batch"
        )
    if not problems and (cfg["resources"]["pack"] or cfg["train"]["device"] == "cuda"):
        problems += plan.memory_problems(cfg)
    if cfg["data"]["sources"] is not None:
        problems += checks.config_problems(cfg)
    kc, ev = cfg["data"]["knowledge"], cfg["data"]["eval"]
    held_out_questions = (kc["n_facts"] - round(kc["qa_train_fraction"] * kc["n_facts"])) * len(QUESTIONS)
    weighted = kc.get("frequency", "uniform") == "population"
    if "frequency_exponent" in kc and not weighted:
        problems.append(
            "data.knowledge.frequency_exponent: set, but data.knowledge.frequency is not population;"
            " it weights mentions by population^exponent only there"
        )
    if not weighted and ev["knowledge_qa_items"] > held_out_questions:
        problems.append(
            f"data.eval.knowledge_qa_items: {ev['knowledge_qa_items']} asked for, but data.knowledge.n_facts="
            f"{kc['n_facts']} with qa_train_fraction={kc['qa_train_fraction']} leaves {held_out_questions}"
            " held-out questions; lower it or add facts"
        )
    problems += benchmarks.config_problems(cfg, benchmarks.SKILLS)
    problems += tracking.config_problems(cfg)
    if not problems:  # the grid itself, once the shapes are sound
        problems += _grid_problems(cfg)
    return problems


def _grid_problems(cfg: dict) -> list[str]:
    """Every budget must keep >= 3 trainable sizes and expect its optimum inside the ladder."""
    out = []
    lad = plan.ladder(cfg)
    n_lo, n_hi = lad[0][2]["standard"], lad[-1][2]["standard"]
    cells, _ = plan.build(cfg)
    tpp = cfg["grid"]["tokens_per_param"]
    for b in cfg["grid"]["budgets"]:
        n_e = math.sqrt(b / (6 * tpp))
        if not n_lo <= n_e <= n_hi:
            out.append(
                f"grid.budgets: {b:.3g} expects its optimum near N={n_e:,.0f} (sqrt(C / (6 x grid.tokens_per_param)))"
                f" but grid.ladder spans N={n_lo:,}..{n_hi:,}; the IsoFLOP minimum could not be inside the sizes"
                " sampled — extend grid.ladder or change the budget"
            )
        sizes = {c.size for c in cells if c.budget == b}
        if len(sizes) < 3:
            out.append(
                f"grid.budgets: {b:.3g} keeps {len(sizes)} sizes with >= train.min_steps="
                f"{cfg['train']['min_steps']} steps (a parabola needs 3); raise the budget, lower"
                " train.min_steps or train.batch_size"
            )
    return out


def load(path: str | Path, overrides: dict | None = None) -> dict:
    """One config file (plus overrides), validated."""
    return validate(config.deep_merge(config.read_yaml(path), overrides or {}), str(path))


def step_main(argv, prog: str, doc: str, run) -> int:
    """The command line of an analysis step on one study folder: `run(cfg, study_dir)` writes
    its outputs and returns their paths, printed one per line. A config that does not load,
    a missing folder or input the step refuses (ValueError) is one `error:` line and exit 2."""
    import argparse  # deferred: only the steps' entry points parse arguments

    p = argparse.ArgumentParser(prog=prog, description=doc)
    p.add_argument("--config", required=True, help="the study's config (results/<study>/config.yaml)")
    p.add_argument("--study-dir", required=True, type=Path)
    a = p.parse_args(argv)
    try:
        cfg = load(a.config)
        if not a.study_dir.is_dir():
            raise FileNotFoundError(f"{a.study_dir}: no such study folder")
        paths = run(cfg, a.study_dir)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths.values():
        print(path)
    return 0


def load_layers(paths) -> dict:
    """Several config files merged in order (later keys win), then validated once: what
    snakemake does with `--configfile X` over the Snakefile's config/config.yaml."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    merged = {}
    for path in paths:
        merged = config.deep_merge(merged, config.read_yaml(path))
    return validate(merged, " + ".join(map(str, paths)))


def trunk_record_name(trunks_dir: str) -> str:
    """The record a finished trunk job writes into its folder: trunk.json, or stable.json in a
    study trained before the rename (whose trunks live in stable/)."""
    return "stable.json" if trunks_dir == LEGACY_TRUNKS else "trunk.json"


def trunk_record(trunk_dir: Path) -> Path:
    """The record file of the trunk job whose folder is `trunk_dir` (<study>/<trunks dir>/<run>)."""
    trunk_dir = Path(trunk_dir)
    return trunk_dir / trunk_record_name(trunk_dir.parent.name)


@dataclass
class Study:
    """A validated config and its grid. `root` is results/<study> (None when only the grid
    is wanted)."""

    cfg: dict
    root: Path | None = None
    cells: list[plan.Cell] = field(init=False)
    dropped: list[dict] = field(init=False)

    def __post_init__(self):
        self.cells, self.dropped = plan.build(self.cfg)

    @classmethod
    def load(cls, path: str | Path, overrides: dict | None = None, root: Path | None = None) -> Study:
        return cls(load(path, overrides), root)

    @property
    def wsd(self) -> bool:
        return self.cfg["train"]["schedule"] == "wsd"

    @cached_property
    def cell(self) -> dict[str, plan.Cell]:
        return {c.cell: c for c in self.cells}

    @cached_property
    def trunk(self) -> dict[str, plan.Trunk]:
        """Trunk id -> trunk, under train.schedule=wsd (empty for cosine)."""
        return {t.run: t for t in plan.trunks(self.cfg, self.cells)} if self.wsd else {}

    @cached_property
    def trunk_of(self) -> dict[str, str]:
        """Cell id -> the id of the trunk it branches from."""
        return {c.cell: plan.trunk_id(c) for c in self.cells}

    @cached_property
    def pack(self) -> dict[str, plan.Pack]:
        return {p.name: p for p in plan.packs(self.cfg, list(self.trunk.values()))}

    @cached_property
    def pack_of(self) -> dict[str, str]:
        return {r: p.name for p in self.pack.values() for r in p.runs}

    def find_cell(self, cell_id: str) -> plan.Cell:
        if cell_id not in self.cell:
            raise KeyError(f"cell {cell_id!r}: not in this config's grid ({len(self.cell)} cells)")
        return self.cell[cell_id]

    def find_trunk(self, trunk_id: str) -> plan.Trunk:
        if trunk_id not in self.trunk:
            raise KeyError(
                f"trunk {trunk_id!r}: not in this config's grid ({len(self.trunk)} trunks under"
                f" train.schedule={self.cfg['train']['schedule']})"
            )
        return self.trunk[trunk_id]

    def job_flops(self, trunk_id: str) -> float:
        """A trunk job's training FLOPs: the trunk and its cells' cooldowns."""
        return plan.job_flops(self.cfg, self.trunk[trunk_id], self.cell)

    @cached_property
    def trunks_dir(self) -> str:
        """Folder name of the trunk jobs under root: trunks/, or stable/ in a study trained
        before the rename (read where it is: its jobs' outputs keep their paths)."""
        if (
            self.root is not None
            and (Path(self.root) / LEGACY_TRUNKS).is_dir()
            and not (Path(self.root) / TRUNKS).is_dir()
        ):
            return LEGACY_TRUNKS
        return TRUNKS

    def manifest(self) -> dict:
        """The prepared data's manifest.json (results/<study>/data/)."""
        return common.read_json(Path(self.root) / "data" / "manifest.json", "data manifest")
