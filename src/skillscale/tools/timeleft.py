"""The time a study still needs: the cost plan of the jobs not done (a trunk job: its trunk, its
cells' cooldowns and evaluations, as plan.job_flops and tools/costplan.py count them) at the
rates measured in this study, scheduled on as many slots as jobs have run at once
(`skillscale status`, tools/status.py, reports it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from skillscale import plan, study
from skillscale.tools.jobstate import Job, last_step, read_json, read_log, snakemake_times


# -- rates measured in this study -----------------------------------------------------------------
def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


@dataclass
class Rates:
    """Training tokens/s and evaluation seconds per cell by model size, measured in this study,
    and a job's fixed cost (start-up; Snakemake's job time beyond training and evaluation)."""

    train: dict  # size -> tokens/s
    evaluation: dict  # size -> seconds per cell
    overhead: float
    samples: dict  # what each figure rests on, for the report
    stated: float | None = None  # resources.flops_per_second, used where nothing is measured
    speed_now: float = 1.0  # the latest measurements against the study's medians (already applied)

    def tok_per_s(self, s: study.Study, size: str) -> float:
        if size in self.train:
            return self.train[size]
        fpt = _flops_per_token(s)
        if not self.train:  # nothing measured: the stated throughput
            return self.stated / fpt[size]
        # another size's measured FLOP/s, interpolated in ln N: small models run further from peak
        n = _n_params(s)
        pts = sorted((math.log(n[k]), math.log(v * fpt[k])) for k, v in self.train.items())
        return math.exp(_interp(math.log(n[size]), pts)) / fpt[size]

    def eval_seconds(self, s: study.Study, size: str) -> float:
        if size in self.evaluation:
            return self.evaluation[size]
        if not self.evaluation:
            return 0.0
        n = _n_params(s)
        pts = sorted((math.log(n[k]), math.log(max(v, 1e-3))) for k, v in self.evaluation.items())
        return math.exp(_interp(math.log(n[size]), pts))


def _interp(x: float, pts: list[tuple[float, float]]) -> float:
    """Piecewise linear through pts (sorted by x), flat beyond the ends."""
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / max(x1 - x0, 1e-12)
    return pts[-1][1]


def _flops_per_token(s: study.Study) -> dict:
    return {c.size: c.flops_exact / c.tokens for c in s.cells}


def _n_params(s: study.Study) -> dict:
    return {c.size: c.n_params for c in s.cells}


# How many of the latest training measurements say how fast the machine runs now.
RECENT = 6


def speed_now(train: dict) -> float:
    """How fast training runs now against this study's medians: the median ratio of the RECENT
    latest measurements (size -> [(tokens/s, when)]) to their size's median. 1 on a machine that
    keeps its pace (a GPU node to itself); below 1 while other work slows a shared one."""
    med = {k: _median([r for r, _ in v]) for k, v in train.items()}
    latest = sorted(((when, r / med[k]) for k, v in train.items() for r, when in v), reverse=True)[:RECENT]
    return min(5.0, max(0.2, _median([x for _, x in latest]))) if latest else 1.0


def measure(s: study.Study, jobs: list[Job]) -> Rates:
    """Rates from the finished records of this study and the running jobs' logs: each size's
    median, scaled by how fast the latest measurements ran against theirs (`speed_now`)."""
    root, tps = Path(s.root), s.cfg["train"]["batch_size"] * s.cfg["model"]["seq_len"]
    train, evaluation, overhead = {}, {}, []
    size_of = {c.cell: c.size for c in s.cells}
    for j in jobs:
        chain = 0.0
        for t in j.trunks:
            path = study.trunk_record(root / s.trunks_dir / t.run)
            rec = read_json(path) if j.state == "done" else None
            if rec and rec.get("wall_seconds") and not rec.get("diverged_step"):
                train.setdefault(t.size, []).append((t.steps * tps / rec["wall_seconds"], _mtime(path)))
                chain += rec["wall_seconds"]
        for c in j.cells:
            folder = root / s.trunks_dir / s.trunk_of[c] / "cells" / c if s.wsd else root / "cells" / c
            tr, ev = read_json(folder / "train.json"), read_json(folder / "eval.json")
            if tr and tr.get("tokens_per_second"):
                train.setdefault(size_of[c], []).append((tr["tokens_per_second"], _mtime(folder / "train.json")))
            if ev and ev.get("wall_seconds") is not None:
                evaluation.setdefault(size_of[c], []).append(ev["wall_seconds"])
            chain += (tr or {}).get("wall_seconds", 0.0) + (ev or {}).get("wall_seconds", 0.0)
        if j.state == "done" and j.kind != "pack" and j.started and j.ended:
            overhead.append(max(0.0, j.ended - j.started - chain))
        if j.state == "running" and j.tok_per_s:
            size = j.trunks[0].size if j.trunks else size_of[j.name]
            train.setdefault(size, []).append((j.tok_per_s, _mtime(j.log)))
    samples = {
        "train": {k: len(v) for k, v in train.items()},
        "evaluation": sum(map(len, evaluation.values())),
        "jobs": len(overhead),
    }
    now = speed_now(train)
    return Rates(
        {k: _median([r for r, _ in v]) * now for k, v in train.items()},
        {k: _median(v) / now for k, v in evaluation.items()},  # scoring slows with training
        _median(overhead) if overhead else 0.0,
        samples,
        s.cfg["resources"]["flops_per_second"],
        now,
    )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # replaced meanwhile
        return 0.0


# -- the time left ---------------------------------------------------------------------------------
def _chain_left(s: study.Study, j: Job, rates: Rates, trunk, progress: dict | None) -> float:
    """Seconds one process of job `j` still needs: the rest of its trunk (or cosine cell), the
    cooldowns not trained yet and the evaluations not written yet."""
    root, tps = Path(s.root), s.cfg["train"]["batch_size"] * s.cfg["model"]["seq_len"]
    size = trunk.size if trunk else s.cell[j.name].size
    at = progress or {}
    # a running job's own rate (its log's, since it started) says most about its own rest
    rate = at.get("tok_per_s") or rates.tok_per_s(s, size)
    if trunk is None:  # a cosine cell: trained from step 0 to its end, then scored
        c = s.cell[j.name]
        step = at.get("step", 0) if at.get("name") == c.cell else 0
        trained = (root / "cells" / c.cell / "train.json").is_file()
        return (0 if trained else (c.steps - step) * tps / rate) + rates.eval_seconds(s, size)
    left = 0.0
    in_cooldowns = at.get("name") in dict(trunk.branches)
    if not in_cooldowns:
        step = at.get("step", 0) if at.get("name") == trunk.run else 0
        left += (trunk.steps - step) * tps / rate
    for cid, _ in trunk.branches:
        folder = root / s.trunks_dir / trunk.run / "cells" / cid
        if (folder / "eval.json").is_file():
            continue
        if not (folder / "train.json").is_file():
            steps = plan.cooldown_steps(s.cfg, s.cell[cid].steps)
            done = at["step"] - (s.cell[cid].steps - steps) if at.get("name") == cid else 0
            left += max(0, steps - done) * tps / rate
        left += rates.eval_seconds(s, size)
    return left


def _job_left(s: study.Study, j: Job, rates: Rates, lines: list[str] | None, now: float) -> float:
    """Seconds job `j` still needs: all of it (waiting) or what its progress leaves (running)."""
    chains = []
    for t in j.trunks or [None]:
        names = ({t.run} | {c for c, _ in t.branches}) if t else {j.name}
        progress = last_step([ln for ln in lines or [] if ln[1 : ln.find("]")] in names]) if lines else None
        chains.append(_chain_left(s, j, rates, t, progress))
    startup = rates.overhead
    if j.state == "running" and j.started:
        startup = max(0.0, rates.overhead - (now - j.started))
    return startup + max(chains)


# The jobs after training, one after the other, the output that says each is done, and their
# seconds (fixed + per cell) where the study has no record of its own. Measured on this
# project's 2-core VM with nothing else running: analyze 31 s on the default study's 180 cells
# (most of it the mixture law's bootstrap, which grows with the cells), curves 2.7 s on the
# test study and 5 s on the default.
FINAL_JOBS = {"analyze": ("tables/summary.md", 4.0, 0.15), "curves": ("figures/training_curves.png", 2.0, 0.02)}


def final_jobs_left(root: Path, training_left: bool, now: float, n_cells: int = 0) -> float:
    """Seconds the analysis jobs after training still need: all of them while anything trains;
    after that, those whose output is missing or older than the newest cell."""
    root, total = Path(root), 0.0
    workdir = root.resolve().parent.parent
    newest = max((p.stat().st_mtime for p in root.glob("cells/*/eval.json")), default=0.0)
    for rel, fixed, per_cell in FINAL_JOBS.values():
        out = root / rel
        started, ended, _ = snakemake_times(workdir, out)
        seconds = ended - started if started and ended else fixed + per_cell * n_cells
        if not training_left and out.is_file() and out.stat().st_mtime >= newest:
            continue
        total += max(0.0, seconds - (now - started)) if started and not ended else seconds
    return total


def most_side_by_side(jobs: list[Job], now: float) -> int:
    """The most training jobs that ran at once so far (Snakemake's start and end times): how
    many slots the study has (the jobs running at this moment may be one short, between jobs)."""
    edges = sorted(
        [(j.started, 1) for j in jobs if j.started] + [(j.ended or now, -1) for j in jobs if j.started],
        key=lambda e: (e[0], e[1]),
    )
    most = level = 0
    for _, step in edges:
        level += step
        most = max(most, level)
    return most


def remaining(s: study.Study, jobs: list[Job], rates: Rates, now: float, slots: int | None) -> dict:
    """The study's time left: running jobs finish what they have left, waiting ones are given,
    longest first, to the first free of `slots` (default: the most that have run at once)."""
    running = [j for j in jobs if j.state == "running"]
    for j in running:
        j.left_seconds = _job_left(s, j, rates, read_log(j.log), now)
    waiting = [j for j in jobs if j.state == "waiting"]
    for j in waiting:
        j.left_seconds = _job_left(s, j, rates, None, now)
    n = slots or max(1, len(running), most_side_by_side(jobs, now))
    free = sorted([j.left_seconds for j in running] + [0.0] * max(0, n - len(running)))
    for j in sorted(waiting, key=lambda j: -j.left_seconds):
        free[0] += j.left_seconds
        free.sort()
    left = (max(free) if running or waiting else 0.0) + final_jobs_left(
        s.root, bool(running or waiting), now, len(s.cells)
    )
    failed = [j for j in jobs if j.state == "failed"]
    return {
        "seconds": left,
        "finish": now + left,
        "slots": n,
        "failed_job_seconds": sum(_job_left(s, j, rates, None, now) for j in failed),
    }
