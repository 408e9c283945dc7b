"""Where a study stands while it runs: which cells are done, running, failed or waiting, and
how long the rest will take at the rates this study has measured.

    skillscale status results/<study>            # a one-line summary, then the jobs
    skillscale status results/<study> --json     # the same, for scripts
    skillscale status results/<study> --against SNAPSHOT.json   # a finished study: predicted vs real end

Read-only: it takes no Snakemake lock and writes nothing, so it runs beside a live
`snakemake` (locally, or on a Slurm login node). What it reads:

- the study's config.yaml (the grid, each trunk job's FLOPs: plan.job_flops);
- what a job leaves when it finishes: a trunk's trunks/<run>/trunk.json, a pack's
  packs/<pack>.json, a cell's train.json and eval.json;
- each job's log (logs/trunk/, logs/pack/, logs/train/): its last `step S/E ... tok/s` line,
  and the line that says why it failed (`error: ...`, a traceback's last line, `[cell] failed: ...`);
- Snakemake's bookkeeping in .snakemake/ beside results/: the start and end time of each
  finished job (metadata/) and the jobs started and not finished (incomplete/), with their
  Slurm job id when submitted to Slurm.

A job is running if its process is alive on this machine (a local run: /proc), or, on Slurm,
if `squeue` lists its job id as running (without squeue: if its log was written in the last
`STALE_SECONDS`). A started job that is neither done nor running failed: with the line of its
log that says why, or "stopped without an error" (killed: snakemake interrupted, out of time
or memory). Waiting jobs have not started.

The remaining time is the cost plan of the jobs not done (a trunk job: its trunk, its cells'
cooldowns and evaluations; see plan.job_flops and tools/costplan.py) at the rates measured in
this study: training tokens/s per model size from finished records and running jobs' logs
(sizes not measured yet: FLOP/s interpolated in ln N between measured ones), evaluation
seconds per cell, and the start-up each finished job paid beyond its training and
evaluation (Snakemake's start and end times). Running jobs count what they have left;
waiting jobs are then given, longest first, to the first free slot of as many slots as jobs
have run at once so far (`--jobs` to say otherwise). Before anything is measured it uses
resources.flops_per_second and says so.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from skillscale import plan, study
from skillscale.config import ConfigError

# Without a way to ask whether a Slurm job runs (no squeue here), a log written this recently counts as running.
STALE_SECONDS = 900
STEP_LINE = re.compile(
    r"^\[(?P<name>[^\]]+)\] step (?P<step>\d+)/(?P<end>\d+) loss (?P<loss>\S+) (?P<rate>[\d,.]+) tok/s"
)
FAILED_CELL = re.compile(r"^\[(?P<cell>[^\]]+)\] failed: ")


class StatusError(ValueError):
    """The folder is not a study's results folder (or a snapshot does not fit it)."""


@dataclass
class Job:
    """One Snakemake training job: a WSD trunk (its cells' cooldowns and evaluations too), a pack
    of trunks, or a cosine cell."""

    name: str
    kind: str  # trunk | pack | cell
    trunks: list  # plan.Trunk members (empty for a cosine cell)
    cells: list  # the cell ids it makes
    log: Path
    done_file: Path
    state: str = "waiting"  # done | running | failed | waiting
    why: str = ""  # failed: the log line that says why
    where: str = ""  # running: pid N / Slurm job N / log written N s ago
    phase: str = ""  # running: what it does now (trunk step S/E, cooldown of a cell, ...)
    tok_per_s: float | None = None
    started: float | None = None
    ended: float | None = None
    left_seconds: float | None = None
    cell_state: dict = field(default_factory=dict)


def load(root: Path) -> study.Study:
    """The study whose results folder is `root`, or a StatusError saying what is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise StatusError(f"{root}: no such folder (expected a study's results folder, e.g. results/default)")
    cfg_file = root / "config.yaml"
    if not cfg_file.is_file():
        raise StatusError(
            f"{root}: not a study's results folder (no config.yaml; snakemake writes results/<study>/config.yaml"
            " when it starts a study)"
        )
    try:
        return study.Study.load(cfg_file, root=root)
    except ConfigError as e:
        raise StatusError(f"{cfg_file}: {e}") from None


def jobs_of(s: study.Study) -> list[Job]:
    """The study's training jobs, as the workflow defines them (train_trunk, train_pack, train_cell)."""
    root, jobs = Path(s.root), []
    if not s.wsd:
        for c in s.cells:
            jobs.append(
                Job(
                    c.cell,
                    "cell",
                    [],
                    [c.cell],
                    root / "logs/train" / f"{c.cell}.log",
                    root / "cells" / c.cell / "eval.json",
                )
            )
        return jobs
    for p in s.pack.values():
        members = [s.trunk[r] for r in p.runs]
        cells = [cid for t in members for cid, _ in t.branches]
        jobs.append(
            Job(p.name, "pack", members, cells, root / "logs/pack" / f"{p.name}.log", root / "packs" / f"{p.name}.json")
        )
    for t in s.trunk.values():
        if t.run not in s.pack_of:
            trunk_dir = root / s.trunks_dir / t.run
            cells = [cid for cid, _ in t.branches]
            jobs.append(
                Job(t.run, "trunk", [t], cells, root / "logs/trunk" / f"{t.run}.log", study.trunk_record(trunk_dir))
            )
    return jobs


# -- what the files say ---------------------------------------------------------------------------
def cell_done(s: study.Study, cell: str) -> bool:
    """A cell is done once its evaluation is written (where collect_cell copies it, or still in its trunk's folder)."""
    root = Path(s.root)
    if (root / "cells" / cell / "eval.json").is_file():
        return True
    return s.wsd and (root / s.trunks_dir / s.trunk_of[cell] / "cells" / cell / "eval.json").is_file()


def _record_path(folder: Path, key: str) -> Path:
    """Where Snakemake's file persistence keeps the record of output `key` (its path as the
    workflow names it): urlsafe base64, cut into parts of at most 254 characters."""
    b64 = base64.urlsafe_b64encode(key.encode()).decode()
    parts = [b64[i : i + 254] for i in range(0, len(b64), 254)]
    return folder.joinpath(*["@" + p for p in parts[:-1]], parts[-1])


def snakemake_times(workdir: Path, output: Path) -> tuple[float | None, float | None, str | None]:
    """(started, ended, external job id) of the job writing `output`, from .snakemake/: a
    finished job's metadata record (while its output exists), or the incomplete marker a
    started job leaves (its mtime is the start). Nones where Snakemake has no record (another
    working directory, a run interrupted before it wrote one)."""
    meta = workdir / ".snakemake"
    try:
        key = output.resolve().relative_to(workdir.resolve()).as_posix()
    except ValueError:
        return None, None, None
    marker = _record_path(meta / "incomplete", key)
    if marker.is_file():
        try:
            ext = json.loads(marker.read_text() or "{}").get("external_jobid")
            return marker.stat().st_mtime, None, ext
        except (OSError, ValueError):
            return None, None, None
    record = _record_path(meta / "metadata", key)
    if not output.is_file():  # a record of an earlier run whose output was deleted since: not this run's
        return None, None, None
    try:
        m = json.loads(record.read_text())
        return m.get("starttime"), m.get("endtime"), None
    except (OSError, ValueError):
        return None, None, None


def local_processes() -> dict[Path, int]:
    """The training processes alive on this machine: the folder (or pack record) each writes
    (its --out / --record, resolved against its working directory) -> pid."""
    found = {}
    proc = Path("/proc")
    for d in proc.iterdir() if proc.is_dir() else []:
        if not d.name.isdigit():
            continue
        try:
            args = [a.decode(errors="replace") for a in (d / "cmdline").read_bytes().split(b"\0") if a]
            if "skillscale.train" not in args:
                continue
            cwd = Path(os.readlink(d / "cwd"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
        for flag in ("--out", "--record"):
            if flag in args[:-1]:
                target = (cwd / args[args.index(flag) + 1]).resolve()
                found.setdefault(target, int(d.name))
    return found


def slurm_states(job_ids) -> dict[str, str] | None:
    """Slurm job id -> state (RUNNING, PENDING, ...) from squeue; None where squeue cannot answer."""
    job_ids = sorted({j for j in job_ids if j})
    if not job_ids or not shutil.which("squeue"):
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:  # squeue refuses ids that have left the queue: ask again one by one
        states = {}
        for j in job_ids:
            r = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", j], capture_output=True, text=True, timeout=30)
            states |= dict(line.split()[:2] for line in r.stdout.splitlines() if len(line.split()) >= 2)
        return states
    return dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)


def read_log(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def failure_line(lines: list[str]) -> str:
    """The line of a job's log that says why it failed, or ''."""
    errors = [ln for ln in lines if ln.startswith("error:")]
    if errors:
        return errors[-1]
    if any(ln.startswith("Traceback") for ln in lines):
        return next((ln for ln in reversed(lines) if ln.strip() and not ln.startswith(" ")), "")
    return next((ln for ln in lines if FAILED_CELL.match(ln)), "")


def last_step(lines: list[str]) -> dict | None:
    """The last progress line of a log: the trunk or cell it trains, step, end, loss, tokens/s."""
    for ln in reversed(lines):
        m = STEP_LINE.match(ln)
        if m:
            return {
                "name": m["name"],
                "step": int(m["step"]),
                "end": int(m["end"]),
                "loss": float(m["loss"]),
                "tok_per_s": float(m["rate"].replace(",", "")),
            }
    return None


# -- each job's state -------------------------------------------------------------------------------
def _out_paths(s: study.Study, j: Job) -> list[Path]:
    """The --out / --record paths of the processes that run job `j` (a pack: its record and its members' folders)."""
    root = Path(s.root)
    if j.kind == "cell":
        return [(root / "cells" / j.name).resolve()]
    trunks = [(root / s.trunks_dir / t.run).resolve() for t in j.trunks]
    return [j.done_file.resolve(), *trunks] if j.kind == "pack" else trunks


def classify(s: study.Study, jobs: list[Job], now: float) -> None:
    """Set each job's state (and its cells'): done, running, failed or waiting."""
    workdir = Path(s.root).resolve().parent.parent  # results/<study> sits in the workflow's directory
    procs = local_processes()
    external = {}
    for j in jobs:
        j.started, j.ended, external[j.name] = snakemake_times(workdir, j.done_file)
    slurm = slurm_states(external.values())
    for j in jobs:
        lines = read_log(j.log)
        j.cell_state = {c: ("done", "") for c in j.cells if cell_done(s, c)}
        pid = next((procs[p] for p in _out_paths(s, j) if p in procs), None)
        ext = external[j.name]
        log_age = now - j.log.stat().st_mtime if j.log.is_file() else None
        if j.done_file.is_file():
            j.state = "done"
        elif pid:
            j.state, j.where = "running", f"pid {pid}"
        elif ext and slurm is not None:
            st = slurm.get(ext, "")
            if st in ("RUNNING", "COMPLETING"):
                j.state, j.where = "running", f"Slurm job {ext}"
            elif st:  # PENDING, CONFIGURING, ...
                j.state, j.where = "waiting", f"Slurm job {ext} {st.lower()}"
        elif ext and log_age is not None and log_age < STALE_SECONDS:
            j.state, j.where = "running", f"Slurm job {ext}, log written {log_age:.0f} s ago (no squeue here)"
        elif j.started and not lines and now - j.started < 30:
            j.state, j.where = "running", "starting"
        if j.state == "waiting" and not j.where and (j.log.is_file() or j.started):  # it started, and stopped
            last = next((ln for ln in reversed(lines) if ln.strip()), "(empty log)")
            j.state = "failed"
            j.why = (
                failure_line(lines)
                or f"stopped without an error (killed? snakemake interrupted, out of time or memory); last line: {last}"
            )
        _cells_of(s, j, lines)
        if j.state == "running":
            _progress(s, j, lines)


def _cells_of(s: study.Study, j: Job, lines: list[str]) -> None:
    failed = {m["cell"]: ln for ln in lines if (m := FAILED_CELL.match(ln))}
    for c in j.cells:
        if c in j.cell_state:
            continue
        if c in failed:
            j.cell_state[c] = ("failed", failed[c])
        elif j.state == "failed":
            j.cell_state[c] = ("failed", j.why)
        else:
            j.cell_state[c] = ("done" if j.state == "done" else j.state, "")


def _progress(s: study.Study, j: Job, lines: list[str]) -> None:
    """What a running job does now, from its log's last progress line."""
    names = {t.run for t in j.trunks} | set(j.cells)
    last = last_step([ln for ln in lines if ln.startswith("[") and ln[1 : ln.find("]")] in names])
    if last is None:
        j.phase = "starting (no progress line yet)"
        return
    j.tok_per_s = last["tok_per_s"]
    what = "trunk" if last["name"] in s.trunk else ("cooldown" if s.wsd else "training")
    j.phase = f"{what} {last['name']} step {last['step']}/{last['end']} loss {last['loss']:.3f}"
    if what != "trunk" and last["step"] == last["end"] and j.cell_state.get(last["name"], ("",))[0] != "done":
        j.phase = f"evaluating {last['name']}"


# -- rates measured in this study -----------------------------------------------------------------
def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not there yet, or being replaced
        return None


@dataclass
class Rates:
    """Training tokens/s and evaluation seconds per cell by model size, measured in this study,
    and a job's fixed cost (start-up; Snakemake's job time beyond training and evaluation)."""

    train: dict  # size -> tokens/s
    evaluation: dict  # size -> seconds per cell
    overhead: float
    samples: dict  # what each figure rests on, for the report
    stated: float | None = None  # resources.flops_per_second, used where nothing is measured

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


def measure(s: study.Study, jobs: list[Job]) -> Rates:
    """Rates from the finished records of this study and the running jobs' logs."""
    root, tps = Path(s.root), s.cfg["train"]["batch_size"] * s.cfg["model"]["seq_len"]
    train, evaluation, overhead = {}, {}, []
    size_of = {c.cell: c.size for c in s.cells}
    for j in jobs:
        chain = 0.0
        for t in j.trunks:
            rec = _read(study.trunk_record(root / s.trunks_dir / t.run)) if j.state == "done" else None
            if rec and rec.get("wall_seconds") and not rec.get("diverged_step"):
                train.setdefault(t.size, []).append(t.steps * tps / rec["wall_seconds"])
                chain += rec["wall_seconds"]
        for c in j.cells:
            folder = root / s.trunks_dir / s.trunk_of[c] / "cells" / c if s.wsd else root / "cells" / c
            tr, ev = _read(folder / "train.json"), _read(folder / "eval.json")
            if tr and tr.get("tokens_per_second"):
                train.setdefault(size_of[c], []).append(tr["tokens_per_second"])
            if ev and ev.get("wall_seconds") is not None:
                evaluation.setdefault(size_of[c], []).append(ev["wall_seconds"])
            chain += (tr or {}).get("wall_seconds", 0.0) + (ev or {}).get("wall_seconds", 0.0)
        if j.state == "done" and j.kind != "pack" and j.started and j.ended:
            overhead.append(max(0.0, j.ended - j.started - chain))
        if j.state == "running" and j.tok_per_s:
            size = j.trunks[0].size if j.trunks else size_of[j.name]
            train.setdefault(size, []).append(j.tok_per_s)
    samples = {
        "train": {k: len(v) for k, v in train.items()},
        "evaluation": sum(map(len, evaluation.values())),
        "jobs": len(overhead),
    }
    return Rates(
        {k: _median(v) for k, v in train.items()},
        {k: _median(v) for k, v in evaluation.items()},
        _median(overhead) if overhead else 0.0,
        samples,
        s.cfg["resources"]["flops_per_second"],
    )


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


# The jobs after training, one after the other, and the output that says each is done. Their
# seconds where the study has no record of its own: measured on this project's 2-core VMs
# (analyze: 14.5 s on the default study, 11 s on the test study; curves: 7-10 s).
FINAL_JOBS = {"analyze": ("tables/summary.md", 15.0), "curves": ("figures/training_curves.png", 10.0)}


def final_jobs_left(root: Path, training_left: bool, now: float) -> float:
    """Seconds the analysis jobs after training still need: all of them while anything trains;
    after that, those whose output is missing or older than the newest cell."""
    root, total = Path(root), 0.0
    workdir = root.resolve().parent.parent
    newest = max((p.stat().st_mtime for p in root.glob("cells/*/eval.json")), default=0.0)
    for rel, default in FINAL_JOBS.values():
        out = root / rel
        started, ended, _ = snakemake_times(workdir, out)
        seconds = ended - started if started and ended else default
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
    left = (max(free) if running or waiting else 0.0) + final_jobs_left(s.root, bool(running or waiting), now)
    failed = [j for j in jobs if j.state == "failed"]
    return {
        "seconds": left,
        "finish": now + left,
        "slots": n,
        "failed_job_seconds": sum(_job_left(s, j, rates, None, now) for j in failed),
    }


# -- the report -------------------------------------------------------------------------------------
def _job_flops(s: study.Study, j: Job) -> float:
    return sum(s.job_flops(t.run) for t in j.trunks) if j.trunks else s.cell[j.name].flops


def fmt_seconds(x: float) -> str:
    x = int(round(x))
    return f"{x // 3600}h{x % 3600 // 60:02d}m" if x >= 3600 else (f"{x // 60}m{x % 60:02d}s" if x >= 60 else f"{x}s")


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def status(root: Path, slots: int | None = None, now: float | None = None) -> dict:
    """Everything `skillscale status` reports, as one JSON-able dict."""
    now = time.time() if now is None else now
    s = load(root)
    jobs = jobs_of(s)
    classify(s, jobs, now)
    rates = measure(s, jobs)
    left = remaining(s, jobs, rates, now, slots)
    cells = {c: st for j in jobs for c, st in j.cell_state.items()}
    count = {k: sum(1 for st, _ in cells.values() if st == k) for k in ("done", "running", "failed", "waiting")}
    jcount = {k: sum(1 for j in jobs if j.state == k) for k in ("done", "running", "failed", "waiting")}
    flops = sum(_job_flops(s, j) for j in jobs)
    flops_done = sum(_job_flops(s, j) for j in jobs if j.state == "done")
    basis = (
        "measured in this study"
        if rates.train
        else f"resources.flops_per_second={rates.stated:.3g} (nothing measured yet)"
    )
    if not rates.samples["jobs"]:  # start-up and evaluation are measured from finished jobs only
        basis += "; no job finished yet, so start-up and evaluation are not counted"
    left_text = (
        f"about {fmt_seconds(left['seconds'])} left, finish ~{time.strftime('%H:%M', time.gmtime(left['finish']))} UTC"
        if jcount["running"] + jcount["waiting"]
        else (f"training done, analysis about {fmt_seconds(left['seconds'])} left" if left["seconds"] else "finished")
    )
    summary = (
        f"{s.cfg['study']}: {count['done']}/{len(cells)} cells done, {count['running']} running,"
        f" {count['failed']} failed, {count['waiting']} waiting; {flops_done / flops:.0%} of training FLOPs done;"
        f" {left_text}"
    )
    if not (Path(s.root) / "data" / "manifest.json").is_file():
        summary += "; data not prepared yet (not counted)"
    return {
        "summary": summary,
        "study": s.cfg["study"],
        "root": str(root),
        "now": now,
        "now_utc": _utc(now),
        "remaining_seconds": round(left["seconds"], 1),
        "finish_epoch": round(left["finish"], 1),
        "finish_utc": _utc(left["finish"]),
        "slots": left["slots"],
        "job_kind": "trunk jobs" if s.wsd else "cell jobs",
        "job_counts": jcount,
        "failed_jobs_rerun_seconds": round(left["failed_job_seconds"], 1),
        "flops_done_fraction": flops_done / flops,
        "cells": {k: sorted(c for c, (st, _) in cells.items() if st == k) for k in count},
        "jobs": [
            {
                "job": j.name,
                "kind": j.kind,
                "state": j.state,
                "cells": j.cells,
                "log": str(j.log),
                **({"why": j.why} if j.why else {}),
                **({"where": j.where} if j.where else {}),
                **({"phase": j.phase, "tok_per_s": j.tok_per_s} if j.state == "running" else {}),
                **({"left_seconds": round(j.left_seconds, 1)} if j.left_seconds is not None else {}),
                **({"started": j.started, "ended": j.ended} if j.started else {}),
            }
            for j in jobs
        ],
        "failed_cells": {c: why for c, (st, why) in cells.items() if st == "failed"},
        "rates": {
            "basis": basis,
            "train_tok_per_s": {k: round(v) for k, v in sorted(rates.train.items())},
            "eval_seconds_per_cell": {k: round(v, 2) for k, v in sorted(rates.evaluation.items())},
            "job_overhead_seconds": round(rates.overhead, 2),
            "samples": rates.samples,
        },
    }


def text(r: dict) -> str:
    """The report for a terminal: the summary line first, then running, failed and waiting jobs."""
    j = r["job_counts"]
    out = [
        r["summary"],
        f"  as of {r['now_utc']}: {r['job_kind']} {j['done']} done, {j['running']} running, {j['failed']} failed,"
        f" {j['waiting']} waiting; finish {r['finish_utc']} with {r['slots']} jobs side by side, at rates"
        f" {r['rates']['basis']}",
    ]
    for j in r["jobs"]:
        if j["state"] == "running":
            rate = f"{j['tok_per_s']:,.0f} tok/s" if j.get("tok_per_s") else "rate n/a"
            out.append(
                f"  running  {j['job']}: {j['phase']}, {rate}, {fmt_seconds(j['left_seconds'])} left ({j['where']})"
            )
    for j in r["jobs"]:
        if j["state"] == "failed":
            out.append(f"  failed   {j['job']}: {j['why']}  [{j['log']}]")
    for c, why in r["failed_cells"].items():
        if not any(j["state"] == "failed" and why == j.get("why") for j in r["jobs"]):
            out.append(f"  failed   cell {c}: {why}")
    waiting = [j for j in r["jobs"] if j["state"] == "waiting"]
    if waiting:
        names = ", ".join(j["job"] + (f" ({j['where']})" if j.get("where") else "") for j in waiting[:6])
        out.append(f"  waiting  {len(waiting)} jobs: {names}" + (", ..." if len(waiting) > 6 else ""))
    done = [j for j in r["jobs"] if j["state"] == "done"]
    out.append(f"  done     {len(done)} jobs, {len(r['cells']['done'])} cells")
    ra = r["rates"]
    if ra["train_tok_per_s"]:
        out.append(
            "  rates    "
            + ", ".join(f"{k} {v:,} tok/s" for k, v in ra["train_tok_per_s"].items())
            + "; evaluation "
            + (", ".join(f"{k} {v:g} s" for k, v in ra["eval_seconds_per_cell"].items()) or "n/a")
            + " per cell;"
            f" {ra['job_overhead_seconds']:g} s start-up per job"
        )
    return "\n".join(out)


def finished_at(root: Path) -> float:
    """When a finished study wrote its last output (the jobs after training: Snakemake's record
    of their end, or the output's mtime)."""
    ends = []
    for rel, _ in FINAL_JOBS.values():
        out = Path(root) / rel
        if not out.is_file():
            raise StatusError(f"{root}: not finished (no {rel} yet); compare once snakemake is done")
        _, ended, _ = snakemake_times(Path(root).resolve().parent.parent, out)
        ends.append(ended or out.stat().st_mtime)
    return max(ends)


def against(root: Path, snapshot: Path) -> dict:
    """An earlier `status --json` of this study against when it really finished."""
    snap = _read(Path(snapshot))
    if not snap or "finish_epoch" not in snap:
        raise StatusError(f"{snapshot}: not a `skillscale status --json` snapshot")
    end = finished_at(root)
    predicted, measured = snap["remaining_seconds"], end - snap["now"]
    return {
        "snapshot_taken_utc": snap["now_utc"],
        "predicted_remaining_seconds": predicted,
        "measured_remaining_seconds": round(measured, 1),
        "predicted_finish_utc": snap["finish_utc"],
        "finished_utc": _utc(end),
        "relative_error": round((predicted - measured) / measured, 4) if measured > 0 else None,
    }


def run(a) -> int:
    """`skillscale status` (cli.py)."""
    try:
        if a.against:
            r = against(a.study, a.against)
            print(
                json.dumps(r, indent=1)
                if a.json
                else f"snapshot of {r['snapshot_taken_utc']}: predicted {fmt_seconds(r['predicted_remaining_seconds'])}"
                f" left (finish {r['predicted_finish_utc']}); measured {fmt_seconds(r['measured_remaining_seconds'])}"
                f" (finished {r['finished_utc']}): {r['relative_error']:+.1%}"
            )
            return 0
        r = status(a.study, a.jobs)
    except StatusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        print(json.dumps(r, indent=1) if a.json else text(r), flush=True)
    except BrokenPipeError:  # the reader stopped early (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
