"""The jobs the train rules run: one cell (cosine, or a cooldown from its trunk), one WSD trunk
with its cells' cooldowns and evaluations (`train_trunk_job`).

    python -m skillscale.train --config results/<study>/config.yaml --cell <id> \
        --data results/<study>/data --out results/<study>/cells/<id>
    python -m skillscale.train ... --trunk <code_frac_size_seed> --out results/<study>/trunks/<run>

Schedules (`train.schedule`):
- ``cosine``: warmup over a number of tokens proportional to N, then a cosine to
  `min_lr_ratio` exactly at the end of *this cell's* budget (a schedule fixed to a longer
  horizon is the known Kaplan error).
- ``wsd``: warmup-stable-decay. A trunk (``--trunk``) trains at constant peak LR and saves a
  branch state at each of its cells' branch steps; each cell starts from its branch and
  decays with a 1-sqrt shape over its last `cooldown_fraction` of tokens. A trunk job
  (`train_trunk_job`) runs the trunk, then every cell's cooldown and evaluation.

Peak LR follows a width rule lr * (lr_ref_width / d_model) ** lr_width_exponent (exponent 1:
Adam's muP scaling for hidden matrices). Every job writes a resume checkpoint (model + optimizer + curve) atomically at
log steps at most every `checkpoint_seconds`; a killed job started again continues from it
and, on the same CPU and thread count, finishes bit-identical to an uninterrupted run
(batches depend only on the step). train.json is written last: its presence means
"finished".
"""

from __future__ import annotations

import sys
from pathlib import Path

from skillscale import common, plan, study
from skillscale.config import NOT_TRAJECTORY, digest
from skillscale.evaluate import harness
from skillscale.model.decoder import param_counts
from skillscale.train import devices, distributed, tracking
from skillscale.train.loop import Job, fmt_time, load_state, print0, resume_from, run
from skillscale.train.step import lr_cosine, lr_wsd


# -- the two kinds of job ------------------------------------------------------------------------
def fingerprint(cfg: dict, manifest: dict, name: str) -> dict:
    tc = {k: v for k, v in cfg["train"].items() if k not in NOT_TRAJECTORY}
    return {"job": name, "config": digest({"model": cfg["model"], "train": tc}), "data": manifest["data_config_hash"]}


def peak_lr(cfg: dict, shape) -> float:
    tc = cfg["train"]
    return tc["lr"] * (tc["lr_ref_width"] / shape.d_model) ** tc["lr_width_exponent"]


def train_cell(
    cfg: dict,
    cell: plan.Cell,
    data_dir: Path,
    out: Path,
    threads: int = 1,
    resume: Path | None = None,
    trunk_dir: Path | None = None,
    trunk_warmup: int | None = None,
    track: tracking.Tracker = tracking.OFF,
) -> dict:
    manifest = common.read_json(data_dir / "manifest.json", "data manifest")
    shape = cell.shape(cfg)
    peak = peak_lr(cfg, shape)
    resume = resume or out / "resume.pt"
    branch, warmup, lr = _schedule(cfg, cell, peak, trunk_dir, trunk_warmup)
    fp = fingerprint(cfg, manifest, cell.cell)
    job = Job(cell.cell, shape, cell.code_frac, cell.seed, cell.steps, lr, fp, peak, track=track)
    from_branch = branch and not _resumable(resume, job.fingerprint)  # start the cooldown at the trunk's state
    # every rank decides before rank 0 writes the resume checkpoint: a slower rank that looked
    # after the write would skip the branch (and its barrier), and the ranks would deadlock
    distributed.world().barrier()
    if from_branch:
        _start_cooldown(cfg, manifest, cell, job, trunk_dir, branch, warmup, resume)
    res = run(job, cfg, data_dir, resume, threads)
    world = distributed.world()
    if world.main:
        _save_weights(out / "model.safetensors", res["model"])
    result = _cell_record(cfg, cell, manifest, job, res, branch, warmup, threads, world.size)
    if world.main:
        common.write_json(out / "train.json", result)
        resume.unlink(missing_ok=True)
    world.barrier()
    print0(f"[{cell.cell}] done in {fmt_time(res['wall'])}: final loss {result['final_loss']:.4f}")
    return result


def _schedule(cfg: dict, cell: plan.Cell, peak: float, trunk_dir: Path | None, trunk_warmup: int | None):
    """The cell's branch step (0: cosine), warmup steps and step -> LR."""
    tc = cfg["train"]
    if tc["schedule"] == "wsd":
        if trunk_dir is None:
            raise ValueError(f"cell {cell.cell}: train.schedule=wsd needs --trunk-dir (the trunk's folder)")
        branch = cell.steps - plan.cooldown_steps(cfg, cell.steps)
        warmup = _trunk_warmup(cfg, cell) if trunk_warmup is None else trunk_warmup
        lr = lambda s: lr_wsd(s, warmup, branch, cell.steps, peak, tc["min_lr_ratio"])
    else:
        branch, warmup = 0, plan.warmup_steps(cfg, cell.n_params, cell.steps)
        lr = lambda s: lr_cosine(s, cell.steps, warmup, peak, tc["min_lr_ratio"])
    return branch, warmup, lr


def _start_cooldown(
    cfg: dict, manifest: dict, cell: plan.Cell, job: Job, trunk_dir: Path, branch: int, warmup: int, resume: Path
) -> None:
    """Make the trunk's branch state for this cell the job's resume checkpoint, after checking it."""
    start = trunk_dir / f"branch_{cell.cell}.pt"
    if not start.exists():
        raise FileNotFoundError(f"{start}: WSD branch state missing; rerun its trunk job (the train_trunk rule)")
    state = load_state(start, "WSD branch state")
    if state["fingerprint"] != trunk_fingerprint(cfg, manifest, plan.trunk_id(cell), warmup) | {"branch": branch}:
        raise ValueError(
            f"{start}: WSD branch state was written for another config or trunk; "
            "rerun its trunk job (the train_trunk rule)"
        )
    print0(f"[{cell.cell}] cooldown from the trunk's state at step {branch}")
    if distributed.world().main:
        resume_from(state, resume, fingerprint=job.fingerprint, wall=0.0)  # wall: this job's own time
    distributed.world().barrier()


def _save_weights(path: Path, model) -> None:
    """The trained weights as safetensors (on CPU, contiguous), written atomically."""
    # deferred: safetensors: only where weights are written or read
    from safetensors.torch import save_file

    with common.atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))


def _cell_record(
    cfg: dict,
    cell: plan.Cell,
    manifest: dict,
    job: Job,
    res: dict,
    branch: int,
    warmup: int,
    threads: int,
    data_parallel: int,
) -> dict:
    """The cell's train.json: what was trained, how, on what, and its loss curve."""
    tc, shape = cfg["train"], job.shape
    curve, diverged_at = res["curve"], res["diverged_at"]
    steps_here = cell.steps - branch
    return {
        "cell": cell.__dict__ | {"shape": shape.to_dict()},
        "params": param_counts(shape),
        "tokens": cell.tokens,
        "flops": cell.flops,
        "flops_exact": cell.flops_exact,
        # what this job itself trained (a WSD cooldown reuses its trunk's first steps)
        "flops_spent": cell.flops * steps_here / cell.steps,
        "final_loss": curve[-1]["loss"] if curve else float("nan"),
        "diverged": diverged_at is not None,
        "diverged_step": diverged_at,
        "wall_seconds": round(res["wall"], 2),
        "tokens_per_second": round(res["steps_here"] * tc["batch_size"] * shape.seq_len / res["wall"], 1)
        if diverged_at is None and res["steps_here"]
        else None,
        "hyper": {
            "peak_lr": job.peak,
            "warmup_steps": warmup,
            "batch_size": tc["batch_size"],
            "seq_len": shape.seq_len,
            "schedule": "cosine-to-own-budget" if tc["schedule"] == "cosine" else f"wsd branch at step {branch}",
            **{k: tc[k] for k in ("min_lr_ratio", "weight_decay", "beta1", "beta2", "grad_clip")},
            "precision": devices.precision(tc, res["device"]),
        },
        "hardware": res["hardware"],
        "mixture": res["mix"].summary(cell.steps),
        "curve": curve,
        # what the result depends on: a trunk job keeps a cell whose fingerprint still matches
        "fingerprint": job.fingerprint | ({"trunk_warmup": warmup} if tc["schedule"] == "wsd" else {}),
        "provenance": common.provenance(
            config_hash=job.fingerprint["config"],
            data_config_hash=manifest["data_config_hash"],
            tokenizer_sha256=manifest["tokenizer"]["sha256"],
            shard_sha256={k: v["sha256"] for k, v in manifest["shards"].items()},
            seed=cell.seed,
            device=res["device"],
            threads=threads,
            data_parallel=data_parallel,
        ),
    }


def _resumable(path: Path, fp: dict) -> bool:
    return path.exists() and load_state(path, "resume checkpoint")["fingerprint"] == fp


def _trunk_warmup(cfg: dict, cell: plan.Cell) -> int:
    """A trunk's warmup is shared by its cells; every cell of the grid needs the same number."""
    return study.Study(cfg).find_trunk(plan.trunk_id(cell)).warmup


def trunk_fingerprint(cfg: dict, manifest: dict, run_id: str, warmup: int) -> dict:
    """What a trunk's states depend on. Its length and branch steps are not in it: the state at
    a step depends only on the steps before it (constant LR after warmup, batches by step), so
    a trunk extended for a new budget keeps its states. The warmup is: it is capped by the
    trunk's smallest budget, so adding a smaller budget can change it."""
    return fingerprint(cfg, manifest, run_id) | {"warmup": warmup}


def _trunk_start(out: Path, trunk: plan.Trunk, fp: dict, resume: Path) -> None:
    """Leave in `resume` the latest saved state (a resume checkpoint or a branch state) at or
    before the first branch this trunk has not saved yet, or nothing: a trunk rerun because
    its grid grew trains only past what it already has (a new larger budget: from its old
    end; a new budget inside it: from the branch state before that budget's branch)."""
    saved = {
        b: out / f"branch_{cid}.pt"
        for cid, b in trunk.branches
        if (out / f"branch_{cid}.pt").exists()
        and load_state(out / f"branch_{cid}.pt", "WSD branch state")["fingerprint"] == fp | {"branch": b}
    }
    limit = min((b for _, b in trunk.branches if b not in saved), default=trunk.steps)
    usable = {b: p for b, p in saved.items() if b <= limit}  # step -> file holding the state there
    if resume.exists():
        at = load_state(resume, "resume checkpoint")
        if at["fingerprint"] == fp and at["step"] <= limit:
            usable[at["step"]] = resume
        elif at["fingerprint"] == fp:  # past a branch the grid now asks for: of no use
            resume.unlink()
    if not usable or usable[max(usable)] == resume:
        return  # nothing saved (a fresh trunk) or the killed run's own checkpoint is the furthest
    start = max(usable)
    print(f"[{trunk.run}] continuing from its branch state at step {start} ({usable[start].name})", flush=True)
    resume_from(load_state(usable[start], "WSD branch state"), resume, fingerprint=fp)


def train_trunk(
    cfg: dict,
    trunk: plan.Trunk,
    data_dir: Path,
    out: Path,
    threads: int = 1,
    resume: Path | None = None,
    write_record: bool = True,
    track: tracking.Tracker = tracking.OFF,
) -> dict:
    tc = cfg["train"]
    manifest = common.read_json(data_dir / "manifest.json", "data manifest")
    shape = study.Study(cfg).cell[trunk.branches[0][0]].shape(cfg)  # its cells share its shape
    peak = peak_lr(cfg, shape)
    fp = trunk_fingerprint(cfg, manifest, trunk.run, trunk.warmup)
    job = Job(
        trunk.run,
        shape,
        trunk.code_frac,
        trunk.seed,
        trunk.steps,
        lambda s: lr_wsd(s, trunk.warmup, None, trunk.steps, peak, tc["min_lr_ratio"]),
        fp,
        peak,
        branches={step: out / f"branch_{cid}.pt" for cid, step in trunk.branches},
        track=track,
    )
    out.mkdir(parents=True, exist_ok=True)
    resume = resume or out / "resume.pt"
    world = distributed.world()
    if world.main:
        _trunk_start(out, trunk, fp, resume)
    world.barrier()
    res = run(job, cfg, data_dir, resume, threads)
    info = {
        "run": trunk.__dict__,
        "peak_lr": peak,
        "wall_seconds": round(res["wall"], 2),
        "diverged_step": res["diverged_at"],
        "flops_spent": trunk.flops,
        "curve": res["curve"],
        "hardware": res["hardware"],
        "provenance": common.provenance(
            config_hash=fp["config"],
            data_config_hash=manifest["data_config_hash"],
            seed=trunk.seed,
            device=res["device"],
            threads=threads,
            data_parallel=world.size,
        ),
    }
    if not world.main:
        world.barrier()
        return info
    # a branch state for each cell: several cells may branch at one step
    for cid, step in trunk.branches:
        src = job.branches[step]
        dst = out / f"branch_{cid}.pt"
        if src != dst:
            with common.atomic_path(dst) as tmp:
                tmp.write_bytes(src.read_bytes())
    if write_record:
        common.write_json(study.trunk_record(out), info)
    resume.unlink(missing_ok=True)
    world.barrier()
    return info


def eval_fingerprint(cfg: dict, train_fp: dict) -> dict:
    """What a cell's eval.json depends on: its model and what is scored (not the batch size)."""
    return {"train": train_fp, "eval": digest({k: v for k, v in cfg["eval"].items() if k != "batch_size"})}


def _kept(path: Path, fp: dict) -> bool:
    """A result file from an earlier run of this job that still holds for these settings."""
    return path.exists() and common.read_json(path, "cached result").get("fingerprint") == fp


def train_trunk_job(cfg: dict, trunk: plan.Trunk, data_dir: Path, out: Path, threads: int = 1) -> dict:
    """One WSD trunk and every cell that branches off it, in one process: the trunk, then each
    cell's cooldown and its evaluation, into out/cells/<cell>/ (the collect_cell rule copies
    them to results/<study>/cells/). One process per trunk instead of two per cell saves the
    start-up of ~150 jobs in the default study. A cell whose train.json and eval.json there
    were made with the same settings is kept: a trunk job rerun because the grid grew (a new
    budget) trains and scores only the new cells; one rerun for new eval settings only scores."""
    root = study_root(out)
    with tracking.open_run(cfg, trunk.run, "trunk", trunk.__dict__, root) as track:
        info = train_trunk(cfg, trunk, data_dir, out, threads, write_record=False, track=track)
    cells = study.Study(cfg).cell
    failed = []
    for cid, _ in trunk.branches:
        cache = out / "cells" / cid
        track = tracking.OFF  # a cell kept from an earlier run opens no new run: it was logged then
        try:
            if _kept(cache / "train.json", _cell_fp(cfg, data_dir, cid, trunk.warmup)):
                rec = common.read_json(cache / "train.json", "cached training record")
                print0(f"[{cid}] cooldown kept from an earlier run (same settings)")
            else:
                track = tracking.open_run(cfg, cid, "cell", cells[cid].__dict__, root)
                rec = train_cell(
                    cfg, cells[cid], data_dir, cache, threads, trunk_dir=out, trunk_warmup=trunk.warmup, track=track
                )
            efp = eval_fingerprint(cfg, rec["fingerprint"])
            if not distributed.world().main:
                pass  # rank 0 scores the model the ranks trained together
            elif _kept(cache / "eval.json", efp):
                print(f"[{cid}] evaluation kept from an earlier run (same settings)", flush=True)
            else:
                r = harness.evaluate_cell(
                    cache,
                    data_dir,
                    cfg["eval"]["batch_size"],
                    threads,
                    benchmarks=sorted(cfg["eval"]["benchmarks"]),
                    fingerprint=efp,
                )
                track.evaluation(cells[cid].steps, r)
                print(
                    f"[{cid}] " + " ".join(f"{m}={v:.3f}" for m, v in r["bits_per_byte"].items()) + " bits/byte",
                    flush=True,
                )
        except (KeyError, ValueError, FileNotFoundError, RuntimeError) as e:  # the other cells still run
            print(f"[{cid}] failed: {e}", file=sys.stderr, flush=True)
            failed.append(cid)
        finally:
            track.close(failed=cid in failed)
        distributed.world().barrier()
    if failed:
        raise RuntimeError(
            f"trunk {trunk.run}: {len(failed)} of {len(trunk.branches)} cells failed "
            f"({', '.join(failed)}); the others are kept in {out / 'cells'} for the rerun"
        )
    info["cells"] = [cid for cid, _ in trunk.branches]
    if distributed.world().main:
        common.write_json(study.trunk_record(out), info)
    return info


def study_root(out: Path) -> Path:
    """The study's results folder of a job writing to `out`: jobs write to <root>/trunks/<run>
    (stable/<run> in an older study) or <root>/cells/<cell>."""
    return Path(out).resolve().parent.parent


def _cell_fp(cfg: dict, data_dir: Path, cell_id: str, warmup: int) -> dict:
    manifest = common.read_json(data_dir / "manifest.json", "data manifest")
    return fingerprint(cfg, manifest, cell_id) | {"trunk_warmup": warmup}


def find_cell(cfg: dict, cell_id: str) -> plan.Cell:
    grid = study.Study(cfg)
    why = next((d["reason"] for d in grid.dropped if d["cell"] == cell_id), None)
    if why:
        raise KeyError(f"cell {cell_id!r}: {why}")
    return grid.find_cell(cell_id)
