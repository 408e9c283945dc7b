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
15 minutes). A started job that is neither done nor running failed: with the line of its
log that says why, or "stopped without an error" (killed: snakemake interrupted, out of time
or memory). Waiting jobs have not started.

The remaining time is the cost plan of the jobs not done (a trunk job: its trunk, its cells'
cooldowns and evaluations; see plan.job_flops and tools/costplan.py) at the rates measured in
this study: training tokens/s per model size from finished records and running jobs' logs
(sizes not measured yet: FLOP/s interpolated in ln N between measured ones), evaluation
seconds per cell, and the start-up each finished job paid beyond its training and
evaluation (Snakemake's start and end times); each size's median is scaled by how fast the
latest measurements ran against theirs (a shared machine's pace changes with its load).
Running jobs count what they have left; waiting jobs are then given, longest first, to the
first free slot of as many slots as jobs have run at once so far (`--jobs` to say otherwise);
then analyze and curves run, one after the other (their recorded durations, or 8 s and
5 s). Before anything is measured it uses resources.flops_per_second and says so.

tools/jobstate.py reads each job's state, tools/timeleft.py the rates and the time left; this
module reports them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from skillscale import study
from skillscale.tools import jobstate, timeleft
from skillscale.tools.jobstate import StatusError


# -- the report -------------------------------------------------------------------------------------
def _job_flops(s: study.Study, j: jobstate.Job) -> float:
    return sum(s.job_flops(t.run) for t in j.trunks) if j.trunks else s.cell[j.name].flops


def fmt_seconds(x: float) -> str:
    x = int(round(x))
    return f"{x // 3600}h{x % 3600 // 60:02d}m" if x >= 3600 else (f"{x // 60}m{x % 60:02d}s" if x >= 60 else f"{x}s")


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def status(root: Path, slots: int | None = None, now: float | None = None) -> dict:
    """Everything `skillscale status` reports, as one JSON-able dict."""
    now = time.time() if now is None else now
    s = jobstate.load(root)
    jobs = jobstate.jobs_of(s)
    jobstate.classify(s, jobs, now)
    rates = timeleft.measure(s, jobs)
    left = timeleft.remaining(s, jobs, rates, now, slots)
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
            "speed_now": round(rates.speed_now, 3),
            "samples": rates.samples,
        },
    }


def text(r: dict) -> str:
    """The report for a terminal: the summary line first, then running, failed and waiting jobs."""
    j, slots = r["job_counts"], f"{r['slots']} job" + ("s" if r["slots"] != 1 else "")
    out = [
        r["summary"],
        f"  as of {r['now_utc']}: {r['job_kind']} {j['done']} done, {j['running']} running, {j['failed']} failed,"
        f" {j['waiting']} waiting; finish {r['finish_utc']} with {slots} side by side, at rates {r['rates']['basis']}",
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
            f" {ra['job_overhead_seconds']:g} s start-up per job; the latest jobs ran at {ra['speed_now']:.2f}x"
            " the study's median pace (applied)"
        )
    return "\n".join(out)


def finished_at(root: Path) -> float:
    """When a finished study wrote its last output (the jobs after training: Snakemake's record
    of their end, or the output's mtime)."""
    ends = []
    for rel, *_ in timeleft.FINAL_JOBS.values():
        out = Path(root) / rel
        if not out.is_file():
            raise StatusError(f"{root}: not finished (no {rel} yet); compare once snakemake is done")
        _, ended, _ = jobstate.snakemake_times(Path(root).resolve().parent.parent, out)
        ends.append(ended or out.stat().st_mtime)
    return max(ends)


def against(root: Path, snapshot: Path) -> dict:
    """An earlier `status --json` of this study against when it really finished."""
    snap = jobstate.read_json(Path(snapshot))
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
