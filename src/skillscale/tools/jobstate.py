"""Each training job of a study and what it is doing: done, running (a live process here, or
a Slurm job squeue calls running), failed (with the line of its log that says why) or waiting;
read from the records jobs leave, their logs and Snakemake's .snakemake/ bookkeeping, without
a lock and without writing anything (`skillscale status`, tools/status.py, reports it)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from skillscale import study
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


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not there yet, or being replaced
        return None
