"""Train one cell of the grid (or one WSD trunk): read top to bottom.

    python -m skillscale.train --config results/<study>/config.yaml --cell <id> \
        --data results/<study>/data --out results/<study>/cells/<id>
    python -m skillscale.train ... --trunk <code_frac_size_seed> --out results/<study>/stable/<run>

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

import argparse
import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# a trunk job scores its cells through lm-eval: its per-task progress bars (tqdm reads this
# at import) and the tokenizers' fork warnings only clutter job logs
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from skillscale import config as cfgmod  # noqa: E402
from skillscale.train import devices  # noqa: E402
from skillscale.train import distributed
from skillscale import common
from skillscale.data import mixing
from skillscale import plan
from skillscale.config import NOT_TRAJECTORY  # noqa: E402
from skillscale.model.decoder import Decoder, param_counts  # noqa: E402
from skillscale.model.shapes import flops_per_token  # noqa: E402


# -- learning-rate schedules ------------------------------------------------------------------
def lr_cosine(step: int, steps: int, warmup: int, peak: float, min_ratio: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def lr_wsd(step: int, warmup: int, branch: int | None, steps: int, peak: float, min_ratio: float) -> float:
    """Warmup, constant peak, then from `branch` a 1-sqrt decay to min_ratio at `steps`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if branch is None or step < branch:
        return peak
    t = (step - branch + 1) / max(1, steps - branch)
    return peak * (min_ratio + (1 - min_ratio) * (1 - math.sqrt(min(1.0, t))))


# -- the pieces of one optimizer step (the benchmark reuses them) -------------------------------
class AdamW:
    """AdamW over parameter groups, stepped by torch's fused kernel: the very update
    `torch.optim.AdamW(fused=True)` makes, bit for bit (tested). Not torch.optim itself: its
    constructor imports torch._dynamo, about a second of every job's start-up on CPU."""

    def __init__(self, groups: list[dict], lr: float, betas: tuple[float, float], eps: float = 1e-8):
        self.param_groups = [{"lr": lr, "betas": betas, "eps": eps, **g, "params": list(g["params"])} for g in groups]
        params = [p for g in self.param_groups for p in g["params"]]
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in params]

    def _slices(self):
        i = 0
        for g in self.param_groups:
            yield g, slice(i, i + len(g["params"]))
            i += len(g["params"])

    @torch.no_grad()
    def step(self) -> None:
        for g, sl in self._slices():
            params = [p for p in g["params"] if p.grad is not None]
            if len(params) != len(g["params"]):
                raise RuntimeError("AdamW: every parameter needs a gradient (a model part the loss never reaches?)")
            steps = self.steps[sl]
            torch._foreach_add_(steps, 1)
            torch._fused_adamw_(params, [p.grad for p in params], self.exp_avg[sl], self.exp_avg_sq[sl], [], steps,
                                amsgrad=False, lr=g["lr"], beta1=g["betas"][0], beta2=g["betas"][1],
                                weight_decay=g["weight_decay"], eps=g["eps"], maximize=False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps,
                "lr": [g["lr"] for g in self.param_groups]}

    def load_state_dict(self, state: dict) -> None:
        if "exp_avg" not in state or len(state["exp_avg"]) != len(self.exp_avg):
            raise ValueError("optimizer state from another model or an older skillscale; delete the checkpoint")
        for mine, saved in ((self.exp_avg, state["exp_avg"]), (self.exp_avg_sq, state["exp_avg_sq"]),
                            (self.steps, state["steps"])):
            for a, b in zip(mine, saved):
                a.copy_(b)
        for g, lr in zip(self.param_groups, state["lr"]):
            g["lr"] = lr


def build_optimizer(model: torch.nn.Module, tc: dict, peak: float, device: str) -> AdamW:
    """AdamW with weight decay on matrices only (not norms, not the embedding); fused kernel."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embed" not in name else no_decay).append(p)
    return AdamW([{"params": decay, "weight_decay": tc["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
                 lr=peak, betas=(tc["beta1"], tc["beta2"]))


class HeadCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of the logits h W^T against targets y: the output head and the loss
    as one function whose backward reuses the softmax its forward computed.

    The same numbers as `cross_entropy(h @ W.T, y)` up to float rounding, with less work over
    the (tokens x vocab) logits, which at the default's widths cost more than any matmul:
    torch's log-softmax backward computes the exponentials again and nll_loss's backward fills
    a zero tensor of that size; here backward turns the saved softmax into the logits' gradient
    in place. fp32 only (an autocast step keeps the plain loss); one backward per forward."""

    @staticmethod
    def forward(ctx, h, w, y):
        z = h @ w.t()  # (n, V) logits
        z -= z.amax(dim=-1, keepdim=True)
        z_target = z.gather(1, y[:, None])
        p = z.exp_()
        total = p.sum(dim=-1, keepdim=True)
        loss = (total.log() - z_target).mean()
        p /= total
        ctx.save_for_backward(h, w, y, p)
        return loss

    @staticmethod
    def backward(ctx, grad):
        h, w, y, p = ctx.saved_tensors
        # d loss / d z = (softmax - onehot) / n, made in the saved softmax itself
        p[torch.arange(y.numel(), device=y.device), y] -= 1.0
        p *= grad / y.numel()
        return p @ w, p.t() @ h, None


def next_token_loss(fwd, batch, fused: bool = False):
    """Mean cross-entropy of each token given the ones before it (fwd: batch -> logits).
    fused (a plain Decoder in fp32): the head and the loss in one `HeadCrossEntropy`."""
    x, y = batch[:, :-1], batch[:, 1:].flatten()
    if fused and not torch.is_autocast_enabled(batch.device.type):
        return HeadCrossEntropy.apply(fwd.features(x).flatten(0, 1), fwd.head.weight, y)
    return torch.nn.functional.cross_entropy(fwd(x).float().flatten(0, 1), y)


def use_compile(tc: dict, device: str) -> bool:
    """`train.compile`: auto compiles on CUDA only. On 2 CPU cores compiling buys 8-20% a step,
    but every workflow job compiles afresh (per-job inductor cache), ~11 s: a loss for short jobs."""
    mode = tc.get("compile", "auto")
    return mode == "always" or (mode == "auto" and device == "cuda")


def loss_fn(fwd, compiled: bool, fused: bool = True):
    """batch -> loss. Compiled, model and loss are one graph, so the log-softmax fuses with the
    head's output (compiling the model alone leaves the loss's three passes over the logits).
    Eager, a plain Decoder's head and loss are `HeadCrossEntropy` (fused=False: torch's
    cross_entropy over the logits, the trainer before it; DDP's wrapper always takes that path,
    its forward being what synchronises gradients)."""
    if compiled:
        return torch.compile(lambda batch: next_token_loss(fwd, batch))
    fused = fused and isinstance(fwd, Decoder)
    return lambda batch: next_token_loss(fwd, batch, fused)


def train_step(loss_of, model, opt, batch, tc: dict, lr: float, micro_rows: int | None = None,
               no_sync=None):
    """One AdamW step at learning rate `lr`; returns the (detached) loss. loss_of: `loss_fn`.

    micro_rows (resources.micro_batch_rows): the batch goes through forward and backward
    that many rows at a time, gradients accumulating (each part's mean loss weighted by its
    rows), so a batch too large for the device's memory gives the same step up to float
    summation order. no_sync (DDP's): gradients are averaged across ranks once, at the last part."""
    for g in opt.param_groups:
        g["lr"] = lr
    autocast = torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=tc["precision"] == "bf16")
    if micro_rows and micro_rows < batch.shape[0]:
        parts, loss = batch.split(micro_rows), 0.0
        for i, part in enumerate(parts):
            sync = i == len(parts) - 1 or no_sync is None
            with contextlib.nullcontext() if sync else no_sync(), autocast:
                part_loss = loss_of(part) * (part.shape[0] / batch.shape[0])
            part_loss.backward()
            loss = loss + part_loss.detach()
    else:
        with autocast:
            loss = loss_of(batch)
        loss.backward()
    if tc["grad_clip"] > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach()


pick_device = devices.pick


def print0(*args) -> None:
    """Progress from rank 0 only: a data-parallel job's log reads like a single process's."""
    if distributed.world().main:
        print(*args, flush=True)


def fmt_time(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"


# -- the loop -----------------------------------------------------------------------------------
@dataclass
class Job:
    """A stretch of training: steps [start, end) of one (code fraction, size, seed) stream."""

    name: str
    shape: object
    code_frac: float
    seed: int
    end: int
    lr: Callable[[int], float]
    fingerprint: dict
    peak: float
    branches: dict[int, Path] = field(default_factory=dict)  # step -> where to save state


def save_state(path: Path, step, model, opt, curve, wall, fingerprint, diverged_at=None) -> None:
    with common.atomic_path(path) as tmp:
        torch.save({"step": step, "model": model.state_dict(), "opt": opt.state_dict(),
                    "curve": curve, "wall": wall, "fingerprint": fingerprint,
                    "diverged_at": diverged_at}, tmp)


def resume_from(state: dict, resume: Path, **changes) -> None:
    """Make a saved state (a WSD branch state) the job's resume checkpoint, with `changes`
    (its fingerprint, at least), so that `run` continues from it."""
    with common.atomic_path(resume) as tmp:
        torch.save(state | changes, tmp)


def load_state(path: Path, what: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a torn or foreign file: say which and what to do
        raise ValueError(f"{path}: {what} cannot be read ({e}); delete it and rerun") from None


def run(job: Job, cfg: dict, data_dir: Path, resume: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(job.seed)
    device = pick_device(cfg["train"]["device"])
    # precision: auto is bf16 autocast on CUDA (fp32 master weights, optimizer and loss), fp32 on CPU
    tc = cfg["train"] | {"precision": devices.precision(cfg["train"], device)}
    math_settings = devices.configure(device)
    world = distributed.world(device)
    seq_len, bs = job.shape.seq_len, tc["batch_size"]
    mix = mixing.for_cell(data_dir, common.read_json(data_dir / "manifest.json", "data manifest"), cfg,
                          job.code_frac, seq_len, bs, job.seed)
    compiled = use_compile(tc, device)
    model, fwd, loss_of = model_for(job.shape, device, world, compiled)
    opt = build_optimizer(model, tc, job.lr(0), device)
    micro, no_sync = cfg["resources"]["micro_batch_rows"], getattr(fwd, "no_sync", None)

    step, curve, wall, diverged_at = 0, [], 0.0, None
    if resume.exists():
        state = load_state(resume, "resume checkpoint")
        if state["fingerprint"] != job.fingerprint:  # stale: left by a job of another config
            print0(f"[{job.name}] ignoring {resume}: written for another config or job")
        else:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            step, curve, wall, diverged_at = state["step"], state["curve"], state["wall"], state["diverged_at"]
            print0(f"[{job.name}] resumed from {resume} at step {step}")

    print0(f"[{job.name}] N={param_counts(job.shape)['standard']:,} steps {step}..{job.end} "
           f"peak lr={job.peak:.2e} device={device} threads={threads}"
           + (f" x {world.size} data-parallel processes" if world.size > 1 else ""))
    window, t0, t_ckpt, first = [], time.time() - wall, time.time(), step
    while step < job.end and diverged_at is None:
        batch = world.rows(torch.from_numpy(mix.batch(step))).to(device, non_blocking=True)
        window.append(train_step(loss_of, model, opt, batch, tc, job.lr(step), micro, no_sync))
        step += 1
        if step % tc["log_every"] and step != job.end and step not in job.branches:
            continue
        mean = world.mean(torch.stack(window).float().mean()).item()
        window, elapsed = [], time.time() - t0
        curve.append({"step": step, "tokens": step * bs * seq_len, "loss": mean,
                      "lr": job.lr(step - 1), "seconds": round(elapsed, 2)})
        if not math.isfinite(mean) or mean > 2 * math.log(job.shape.vocab_size):
            diverged_at = step
            print0(f"[{job.name}] diverged at step {step}: loss {mean}")
        else:
            rate = (step - first) * bs * seq_len / max(1e-9, elapsed - wall)
            eta = (job.end - step) * bs * seq_len / rate
            print0(f"[{job.name}] step {step}/{job.end} loss {mean:.4f} {rate:,.0f} tok/s eta {fmt_time(eta)}")
        if not world.main:  # rank 0 writes every state (the ranks' models are identical)
            continue
        for b in [b for b in job.branches if b == step or (diverged_at and b > step)]:
            save_state(job.branches[b], step, model, opt, curve, elapsed, job.fingerprint | {"branch": b}, diverged_at)
        if step < job.end and time.time() - t_ckpt >= tc["checkpoint_seconds"]:
            save_state(resume, step, model, opt, curve, elapsed, job.fingerprint)
            t_ckpt = time.time()
    world.barrier()  # the states rank 0 wrote are complete before any rank reads them
    wall_here = time.time() - t0 - wall
    return {"model": model, "curve": curve, "wall": time.time() - t0, "diverged_at": diverged_at,
            "device": device, "steps_here": step - first, "mix": mix,
            "hardware": hardware(job, tc, device, world, math_settings | {"compiled": compiled},
                                 step - first, wall_here)}


_COMPILED: dict = {}  # (shape, device, world size) -> (model, its DDP wrapper or itself, compiled loss)


def model_for(shape, device: str, world, compiled: bool):
    """A freshly initialised model (from the seed set before), the module that runs it (DDP's
    wrapper under torchrun: each rank trains on its rows of the global batch and DDP averages
    the gradients) and batch -> loss. Compiled, a process compiles once per shape: a trunk
    job's cooldowns reuse the trunk's model object with fresh weights loaded, where a new
    object would be traced again (and past torch._dynamo's recompile limit, run eager)."""
    fresh, key = Decoder(shape), (shape, device, world.size)
    if compiled and key in _COMPILED:
        with torch.no_grad():
            _COMPILED[key][0].load_state_dict(fresh.state_dict())
        return _COMPILED[key]
    model = fresh.to(device)
    fwd = distributed.wrap(model, world)
    built = (model, fwd, loss_fn(fwd, compiled))
    if compiled:
        _COMPILED[key] = built
    return built


def hardware(job: Job, tc: dict, device: str, world, settings: dict, steps: int, seconds: float) -> dict:
    """What a record says of how it was computed: the device, the precision (autocast dtype,
    fp32 master weights and optimizer state, TF32, compile) and, on CUDA, the model FLOPs
    utilisation of this job's steps against the device's measured matmul peak (per process)."""
    out = {"device": devices.describe(device), "data_parallel": world.size,
           "precision": {"autocast": None if tc["precision"] == "fp32" else tc["precision"],
                         "master_weights": "fp32", **settings}}
    peak = devices.peak_flops(device, tc["precision"])
    if peak and steps and seconds > 0:
        flops = steps * tc["batch_size"] * job.shape.seq_len * flops_per_token(job.shape)["exact"]
        out |= {"peak_flops": peak, "model_flops_per_second": flops / seconds,
                "mfu": flops / seconds / world.size / peak}
    return out


# -- the two kinds of job ------------------------------------------------------------------------
def fingerprint(cfg: dict, manifest: dict, name: str) -> dict:
    tc = {k: v for k, v in cfg["train"].items() if k not in NOT_TRAJECTORY}
    return {"job": name, "config": cfgmod.digest({"model": cfg["model"], "train": tc}),
            "data": manifest["data_config_hash"]}


def peak_lr(cfg: dict, shape) -> float:
    tc = cfg["train"]
    return tc["lr"] * (tc["lr_ref_width"] / shape.d_model) ** tc["lr_width_exponent"]


def train_cell(cfg: dict, cell: plan.Cell, data_dir: Path, out: Path, threads: int = 1,
               resume: Path | None = None, stable_dir: Path | None = None, trunk_warmup: int | None = None) -> dict:
    tc = cfg["train"]
    manifest = common.read_json(data_dir / "manifest.json", "data manifest")
    shape = cell.shape(cfg)
    peak = peak_lr(cfg, shape)
    resume = resume or out / "resume.pt"
    if tc["schedule"] == "wsd":
        if stable_dir is None:
            raise ValueError(f"cell {cell.cell}: train.schedule=wsd needs --stable (the trunk's folder)")
        branch = cell.steps - plan.cooldown_steps(cfg, cell.steps)
        warmup = _trunk_warmup(cfg, cell) if trunk_warmup is None else trunk_warmup
        lr = lambda s: lr_wsd(s, warmup, branch, cell.steps, peak, tc["min_lr_ratio"])  # noqa: E731
    else:
        branch, warmup = 0, plan.warmup_steps(cfg, cell.n_params, cell.steps)
        lr = lambda s: lr_cosine(s, cell.steps, warmup, peak, tc["min_lr_ratio"])  # noqa: E731
    job = Job(cell.cell, shape, cell.code_frac, cell.seed, cell.steps, lr,
              fingerprint(cfg, manifest, cell.cell), peak)
    if branch and not _resumable(resume, job.fingerprint):  # start the cooldown at the trunk's state
        start = stable_dir / f"branch_{cell.cell}.pt"
        if not start.exists():
            raise FileNotFoundError(f"{start}: WSD branch state missing; rerun the train_stable rule")
        state = load_state(start, "WSD branch state")
        if state["fingerprint"] != trunk_fingerprint(cfg, manifest, plan.run_id(cell), warmup) | {"branch": branch}:
            raise ValueError(f"{start}: WSD branch state was written for another config or trunk; "
                             "rerun the train_stable rule")
        print0(f"[{cell.cell}] cooldown from the trunk's state at step {branch}")
        if distributed.world().main:
            resume_from(state, resume, fingerprint=job.fingerprint, wall=0.0)  # wall: this job's own time
        distributed.world().barrier()
    res = run(job, cfg, data_dir, resume, threads)

    from safetensors.torch import save_file

    world = distributed.world()
    if world.main:
        with common.atomic_path(out / "model.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in res["model"].state_dict().items()}, str(tmp))
    curve, diverged_at = res["curve"], res["diverged_at"]
    steps_here = cell.steps - branch
    result = {
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
        if diverged_at is None and res["steps_here"] else None,
        "hyper": {"peak_lr": peak, "warmup_steps": warmup, "batch_size": tc["batch_size"], "seq_len": shape.seq_len,
                  "schedule": "cosine-to-own-budget" if tc["schedule"] == "cosine" else f"wsd branch at step {branch}",
                  **{k: tc[k] for k in ("min_lr_ratio", "weight_decay", "beta1", "beta2", "grad_clip")},
                  "precision": devices.precision(tc, res["device"])},
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
            seed=cell.seed, device=res["device"], threads=threads, data_parallel=world.size,
        ),
    }
    if world.main:
        common.write_json(out / "train.json", result)
        resume.unlink(missing_ok=True)
    world.barrier()
    print0(f"[{cell.cell}] done in {fmt_time(res['wall'])}: final loss {result['final_loss']:.4f}")
    return result


def _resumable(path: Path, fp: dict) -> bool:
    return path.exists() and load_state(path, "resume checkpoint")["fingerprint"] == fp


def _trunk_warmup(cfg: dict, cell: plan.Cell) -> int:
    """A trunk's warmup is shared by its cells; every cell of the grid needs the same number."""
    cells, _ = plan.build(cfg)
    trunk = next(r for r in plan.stable_runs(cfg, cells) if r.run == plan.run_id(cell))
    return trunk.warmup


def trunk_fingerprint(cfg: dict, manifest: dict, run_id: str, warmup: int) -> dict:
    """What a trunk's states depend on. Its length and branch steps are not in it: the state at
    a step depends only on the steps before it (constant LR after warmup, batches by step), so
    a trunk extended for a new budget keeps its states. The warmup is: it is capped by the
    trunk's smallest budget, so adding a smaller budget can change it."""
    return fingerprint(cfg, manifest, run_id) | {"warmup": warmup}


def _trunk_start(out: Path, trunk: plan.StableRun, fp: dict, resume: Path) -> None:
    """Leave in `resume` the latest saved state (a resume checkpoint or a branch state) at or
    before the first branch this trunk has not saved yet, or nothing: a trunk rerun because
    its grid grew trains only past what it already has (a new larger budget: from its old
    end; a new budget inside it: from the branch state before that budget's branch)."""
    saved = {b: out / f"branch_{cid}.pt" for cid, b in trunk.branches
             if (out / f"branch_{cid}.pt").exists()
             and load_state(out / f"branch_{cid}.pt", "WSD branch state")["fingerprint"] == fp | {"branch": b}}
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


def train_stable(cfg: dict, trunk: plan.StableRun, data_dir: Path, out: Path, threads: int = 1,
                 resume: Path | None = None, write_record: bool = True) -> dict:
    tc = cfg["train"]
    manifest = common.read_json(data_dir / "manifest.json", "data manifest")
    cells, _ = plan.build(cfg)
    shape = next(c for c in cells if plan.run_id(c) == trunk.run).shape(cfg)
    peak = peak_lr(cfg, shape)
    fp = trunk_fingerprint(cfg, manifest, trunk.run, trunk.warmup)
    job = Job(trunk.run, shape, trunk.code_frac, trunk.seed, trunk.steps,
              lambda s: lr_wsd(s, trunk.warmup, None, trunk.steps, peak, tc["min_lr_ratio"]), fp, peak,
              branches={step: out / f"branch_{cid}.pt" for cid, step in trunk.branches})
    out.mkdir(parents=True, exist_ok=True)
    resume = resume or out / "resume.pt"
    world = distributed.world()
    if world.main:
        _trunk_start(out, trunk, fp, resume)
    world.barrier()
    res = run(job, cfg, data_dir, resume, threads)
    info = {"run": trunk.__dict__, "peak_lr": peak, "wall_seconds": round(res["wall"], 2),
            "diverged_step": res["diverged_at"], "flops_spent": trunk.flops, "curve": res["curve"],
            "hardware": res["hardware"],
            "provenance": common.provenance(config_hash=fp["config"], data_config_hash=manifest["data_config_hash"],
                                        seed=trunk.seed, device=res["device"], threads=threads,
                                        data_parallel=world.size)}
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
        common.write_json(out / "stable.json", info)
    resume.unlink(missing_ok=True)
    world.barrier()
    return info


def eval_fingerprint(cfg: dict, train_fp: dict) -> dict:
    """What a cell's eval.json depends on: its model and what is scored (not the batch size)."""
    return {"train": train_fp, "eval": cfgmod.digest({k: v for k, v in cfg["eval"].items() if k != "batch_size"})}


def _kept(path: Path, fp: dict) -> bool:
    """A result file from an earlier run of this job that still holds for these settings."""
    return path.exists() and common.read_json(path, "cached result").get("fingerprint") == fp


def train_trunk_job(cfg: dict, trunk: plan.StableRun, data_dir: Path, out: Path, threads: int = 1) -> dict:
    """One WSD trunk and every cell that branches off it, in one process: the trunk, then each
    cell's cooldown and its evaluation, into out/cells/<cell>/ (the collect_cell rule copies
    them to results/<study>/cells/). One process per trunk instead of two per cell saves the
    start-up of ~150 jobs in the default study. A cell whose train.json and eval.json there
    were made with the same settings is kept: a trunk job rerun because the grid grew (a new
    budget) trains and scores only the new cells; one rerun for new eval settings only scores."""
    from skillscale.evaluate import harness

    info = train_stable(cfg, trunk, data_dir, out, threads, write_record=False)
    cells = {c.cell: c for c in plan.build(cfg)[0]}
    failed = []
    for cid, _ in trunk.branches:
        cache = out / "cells" / cid
        try:
            if _kept(cache / "train.json", _cell_fp(cfg, data_dir, cid, trunk.warmup)):
                rec = common.read_json(cache / "train.json", "cached training record")
                print0(f"[{cid}] cooldown kept from an earlier run (same settings)")
            else:
                rec = train_cell(cfg, cells[cid], data_dir, cache, threads, stable_dir=out, trunk_warmup=trunk.warmup)
            efp = eval_fingerprint(cfg, rec["fingerprint"])
            if not distributed.world().main:
                pass  # rank 0 scores the model the ranks trained together
            elif _kept(cache / "eval.json", efp):
                print(f"[{cid}] evaluation kept from an earlier run (same settings)", flush=True)
            else:
                r = harness.evaluate_cell(cache, data_dir, cfg["eval"]["batch_size"], threads,
                                           benchmarks=sorted(cfg["eval"]["benchmarks"]), fingerprint=efp)
                print(f"[{cid}] " + " ".join(f"{m}={v:.3f}" for m, v in r["bits_per_byte"].items()) + " bits/byte",
                      flush=True)
        except (KeyError, ValueError, FileNotFoundError, RuntimeError) as e:  # the other cells still run
            print(f"[{cid}] failed: {e}", file=sys.stderr, flush=True)
            failed.append(cid)
        distributed.world().barrier()
    if failed:
        raise RuntimeError(f"trunk {trunk.run}: {len(failed)} of {len(trunk.branches)} cells failed "
                           f"({', '.join(failed)}); the others are kept in {out / 'cells'} for the rerun")
    info["cells"] = [cid for cid, _ in trunk.branches]
    if distributed.world().main:
        common.write_json(out / "stable.json", info)
    return info


def _cell_fp(cfg: dict, data_dir: Path, cell_id: str, warmup: int) -> dict:
    manifest = common.read_json(data_dir / "manifest.json", "data manifest")
    return fingerprint(cfg, manifest, cell_id) | {"trunk_warmup": warmup}


def find_cell(cfg: dict, cell_id: str) -> plan.Cell:
    cells, dropped = plan.build(cfg)
    for c in cells:
        if c.cell == cell_id:
            return c
    why = next((d["reason"] for d in dropped if d["cell"] == cell_id), "not in this config's grid")
    raise KeyError(f"cell {cell_id!r}: {why}")


def find_run(cfg: dict, run_id: str) -> plan.StableRun:
    cells, _ = plan.build(cfg)
    for r in plan.stable_runs(cfg, cells):
        if r.run == run_id:
            return r
    raise KeyError(f"stable run {run_id!r}: not in this config's grid")


def train_pack(config: str, cfg: dict, runs: list[str], data_dir: Path, out: Path, threads: int,
               record: Path | None) -> dict:
    """Several small WSD trunks side by side in one job (resources.pack): one process each,
    the `--trunk` job's very command, so each result is the one that trunk gets alone. They
    share the job's device: on a GPU, small models each leave most of it idle, and one job
    instead of k saves k - 1 queue waits and CUDA start-ups. Waits for all; fails (after
    the others finished, their work kept) if any failed."""
    import signal
    import subprocess

    trunks = [find_run(cfg, r) for r in runs]
    device = pick_device(cfg["train"]["device"])
    env = dict(os.environ)
    if device == "cuda":  # before any member allocates: the fit, then the peak measured alone
        plan.check_pack_fits(cfg, trunks, torch.cuda.get_device_properties(0).total_memory)
        env[devices.PEAK_ENV] = str(devices.peak_flops(device, devices.precision(cfg["train"], device)))
    t0 = time.time()
    print(f"pack: {len(trunks)} trunks side by side on {device}: {', '.join(runs)}", flush=True)
    procs = {r.run: subprocess.Popen([sys.executable, "-m", "skillscale.train", "--config", config, "--trunk", r.run,
                                      "--data", str(data_dir), "--out", str(out / r.run), "--threads", str(threads)],
                                     env=env) for r in trunks}

    def stop(signum, frame):  # a cancelled job (scancel, Ctrl-C) takes its members with it
        for p in procs.values():
            p.send_signal(signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = {run: p.wait() for run, p in procs.items()}
    failed = [r for r, c in codes.items() if c]
    if failed:
        raise RuntimeError(f"pack: {len(failed)} of {len(runs)} trunks failed ({', '.join(failed)}; their lines"
                           " above say why); the others' results are kept for the rerun")
    info = {"runs": runs, "device": device, "wall_seconds": round(time.time() - t0, 2),
            "members": {r: common.read_json(out / r / "stable.json", "trunk record")["wall_seconds"] for r in runs}}
    if record:
        common.write_json(record, info)
    print(f"pack: {len(runs)} trunks done in {fmt_time(info['wall_seconds'])}", flush=True)
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m skillscale.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--cell", help="train this cell (cosine) or its cooldown branch (wsd)")
    which.add_argument("--trunk", help="train this WSD trunk (code fraction, size, seed), then the cooldown and "
                                     "evaluation of every cell on it, into OUT/cells/")
    which.add_argument("--pack", nargs="+", metavar="TRUNK",
                       help="train these WSD trunks side by side, one --trunk process each, into OUT/<trunk>/")
    p.add_argument("--record", type=Path, help="--pack: where to write the pack's record once all trunks are done")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--stable", type=Path, help="wsd: the trunk's folder holding branch states")
    p.add_argument("--resume", type=Path, help="resume checkpoint path (default: inside --out)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--evaluate", action="store_true", help="--cell: then score it (eval.json) in the same process")
    a = p.parse_args(argv)
    cfg = cfgmod.load(a.config)
    try:
        distributed.world(pick_device(cfg["train"]["device"]))  # (torchrun: the process group)
        if a.pack:
            train_pack(a.config, cfg, a.pack, a.data, a.out, a.threads, a.record)
        elif a.trunk:
            train_trunk_job(cfg, find_run(cfg, a.trunk), a.data, a.out, a.threads)
        else:
            rec = train_cell(cfg, find_cell(cfg, a.cell), a.data, a.out, a.threads, a.resume, a.stable)
            if a.evaluate and distributed.world().main:
                from skillscale.evaluate import harness

                harness.evaluate_cell(a.out, a.data, cfg["eval"]["batch_size"], a.threads,
                                       benchmarks=sorted(cfg["eval"]["benchmarks"]),
                                       fingerprint=eval_fingerprint(cfg, rec["fingerprint"]))
    except (KeyError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
