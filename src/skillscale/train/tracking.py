"""Live tracking of training jobs: Weights & Biases and TensorBoard (config `logging.wandb`,
`logging.tensorboard`), both optional extras and off by default.

The loop calls one small interface, a `Tracker`, at the points where it already keeps its
curve: `point` for every curve point (every train.log_every steps), `evaluation` once a
cell is scored, `close` at the end. With logging off, or on a rank other than 0 of a
data-parallel job, the tracker has no sinks and does nothing, and neither package is
imported. One run per trunk and per cell (its cooldown, or its cosine run), grouped by
study; a run's history is its job's whole curve, so a cell's run holds the trunk's points up
to its branch (the history its train.json keeps) and then its own cooldown. A tracking
failure (no W&B login, say) is reported in the job's log and training goes on: the
results are what the job is for.

This module is imported by the config check (study.validate), so it imports nothing heavy
at its top: the packages come in only when a run is opened.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

# config key -> (module to import, the pip install that provides it)
EXTRAS = {
    "wandb": ("wandb", "pip install 'skillscale[wandb]' (or pip install wandb)"),
    "tensorboard": ("tensorboard", "pip install 'skillscale[tensorboard]' (or pip install tensorboard)"),
}


def config_problems(cfg: dict) -> list[str]:
    """A tracker switched on whose package is not installed: refused before any job runs."""
    return [
        f"logging.{key}: is set, but the {module} package is not installed here; {fix}, or remove logging.{key}"
        for key, (module, fix) in EXTRAS.items()
        if cfg["logging"][key] is not None and importlib.util.find_spec(module) is None
    ]


class Tracker:
    """Where one run's points go: its sinks (none: logging off)."""

    def __init__(self, sinks=()):
        self.sinks = list(sinks)

    def point(self, p: dict, tokens_per_second: float | None = None) -> None:
        """One curve point (step, tokens, loss, lr, seconds) and the job's tokens/s up to it
        (None for the points a job resumed with: their rate was logged by the run that made them)."""
        metrics = {"train/loss": p["loss"], "train/lr": p["lr"], "train/tokens": p["tokens"]}
        if tokens_per_second is not None:
            metrics["train/tokens_per_second"] = tokens_per_second
        for s in self.sinks:
            s.log(p["step"], metrics)

    def evaluation(self, step: int, result: dict) -> None:
        """A cell's eval.json: its bits per byte per metric, at the cell's last step."""
        metrics = {f"eval/bits_per_byte/{m}": v for m, v in sorted(result["bits_per_byte"].items())}
        for s in self.sinks:
            s.log(step, metrics)

    def close(self, failed: bool = False) -> None:
        for s in self.sinks:
            s.close(failed)
        self.sinks = []

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(failed=exc_type is not None)  # a job that raised ends its run as failed


OFF = Tracker()  # logging off: what every job gets unless a run is opened for it


def open_run(cfg: dict, name: str, kind: str, what: dict, root: Path) -> Tracker:
    """The tracker of one job's run: `name` a trunk or cell id, `kind` "trunk" or "cell",
    `what` its plan entry (the run's config, with the study's config beside it), `root` the
    study's results folder (default home of the run files)."""
    lc = cfg["logging"]
    if lc["wandb"] is None and lc["tensorboard"] is None:
        return OFF
    # deferred: torch (through distributed), which the config check importing this module does not need
    from skillscale.train import distributed

    if not distributed.world().main:  # rank 0 logs for the job; the ranks' curves are the same
        return OFF
    run_config = {"study": cfg["study"], "kind": kind, kind: what, "config": cfg}
    sinks = []
    for sink, on in ((_WandB, lc["wandb"]), (_TensorBoard, lc["tensorboard"])):
        if on is None:
            continue
        try:
            sinks.append(sink(on, cfg["study"], name, kind, run_config, Path(root)))
        except Exception as e:  # tracking must not cost the training run
            print(f"[{name}] {sink.__name__[1:]} run not started ({e}); training goes on", file=sys.stderr, flush=True)
    return Tracker(sinks)


class _WandB:
    def __init__(self, wc: dict, study: str, name: str, kind: str, run_config: dict, root: Path):
        # deferred: wandb is an optional extra (logging.wandb), imported only when a run is opened
        import wandb

        where = {} if os.environ.get("WANDB_DIR") else {"dir": str(root)}  # <dir>/wandb/
        if where:
            root.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=wc["project"],
            entity=wc["entity"],
            group=wc["group"] or study,
            job_type=kind,
            name=name,
            config=run_config,
            mode=wc["mode"],
            # the job's log stays the job's own: W&B does not wrap stdout/stderr
            settings=wandb.Settings(console="off"),
            **where,
        )

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(metrics, step=step)

    def close(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class _TensorBoard:
    def __init__(self, tc: dict, study: str, name: str, kind: str, run_config: dict, root: Path):
        # deferred: tensorboard is an optional extra (logging.tensorboard), imported only when a run is opened
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(tc["dir"] or root / "tensorboard") / name))
        self.writer.add_text("config", "```\n" + json.dumps(run_config, indent=1, default=str) + "\n```", 0)

    def log(self, step: int, metrics: dict) -> None:
        for tag, v in metrics.items():
            # double precision: the event file holds the loss train.json holds, not a float32 of it
            self.writer.add_scalar(tag, v, step, new_style=True, double_precision=True)

    def close(self, failed: bool) -> None:
        self.writer.close()
