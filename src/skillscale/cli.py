"""The `skillscale` command (also `python -m skillscale`): plan a study, analyse its cells, fit any
points file, and the tools and studies beside the workflow.

    skillscale plan --config config/config.yaml [config/studies/X.yaml ...] [--out plan.csv] [--estimate]
    skillscale analyze --config results/<study>/config.yaml --study-dir results/<study>
    skillscale fit POINTS.csv --approach isoflop|parametric --json
    skillscale optimum results/<study> --budget 1e21 --code-fraction 0.35 [--weights m=0.7,n=0.3] [--json]
    skillscale mixture-recovery --draws 40 --noise 0.012           # synthetic check of the mixture law
    skillscale export results/<study>/cells/<cell> OUT     # a transformers LlamaForCausalLM folder
    skillscale export results/<study> OUT --all            # every trained cell: OUT/<cell>/
    skillscale evaluate-hf MODEL_DIR --data results/<study>/data [--out FILE]
    skillscale designs results/default                     # what other seeds x sizes designs would buy
    skillscale extrapolate results/default results/cpu-long
    skillscale sweepcompare results/default results/default-cosine
    skillscale lrsweep --config results/default/config.yaml --data results/default/data --out DIR
    skillscale speed train|dag|prepare|gpu                 # benchmarks
    skillscale sample-corpora corpora/                     # small corpora in real shapes, for tests
    skillscale status results/<study> [--json]             # cells done/running/failed/waiting, time left

`skillscale VERB --help` says more. The workflow's stages keep their own commands
(`python -m skillscale.data`, `python -m skillscale.train`, `python -m skillscale.benchmarks`)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

# lm-eval's per-task progress bars (plan --estimate runs it) only clutter the terminal; tqdm
# reads this when it is first imported, which may be before skillscale.evaluate.harness is
os.environ.setdefault("TQDM_DISABLE", "1")

from skillscale import common, plan, study
from skillscale import config as cfgmod
from skillscale.data.mixing import shares


def cmd_plan(a) -> int:
    cfg = study.load_layers(a.config)
    cells, dropped = plan.build(cfg)
    df = plan.to_frame(cells)
    if a.out:
        with common.atomic_path(Path(a.out)) as tmp:
            df.to_csv(tmp, index=False)
    print(
        f"study {cfg['study']}: {len(cells)} cells = {len(cfg['mix']['code_fractions'])} code fractions"
        f" x {len(cfg['grid']['budgets'])} budgets x {cfg['grid']['sizes_per_budget']} sizes"
        f" x {len(cfg['seeds'])} seeds"
        f"; {df.flops.sum():.3g} training FLOPs in all"
    )
    summary = df.groupby("budget").agg(
        sizes=("size", "nunique"), n_min=("n_params", "min"), n_max=("n_params", "max"), steps_min=("steps", "min")
    )
    print(summary.to_string())
    cost = plan.sweep_cost(cfg, cells)
    print(
        f"schedule {cfg['train']['schedule']}: cell by cell (cosine) {cost['per_cell_flops']:.3g} FLOPs;"
        f" warmup-stable-decay {cost['wsd_flops']:.3g} FLOPs = {cost['wsd_over_per_cell']:.0%} of that"
        f" ({len(plan.trunks(cfg, cells))} trunks + {len(cells)} cooldowns of {cfg['train']['cooldown_fraction']:.0%})"
    )
    for d in dropped:
        print(f"dropped {d['cell']}: {d['reason']}")
    if a.estimate:
        from skillscale.tools import costplan  # torch and lm-eval, to calibrate: only for --estimate

        threads = a.threads or cfg["resources"]["train_threads"]
        rate = a.flops_per_second
        if rate is None and cfg["train"]["device"] == "cuda":
            import torch  # only to ask whether this machine has CUDA

            if not torch.cuda.is_available():  # a GPU study planned on a machine without one
                rate = cfg["resources"]["flops_per_second"]
        jobs, s = costplan.estimate(cfg, threads, a.jobs or (8 if rate else None), flops_per_second=rate)
        if rate:
            print(
                f"\nat a stated throughput of {rate:.3g} FLOP/s per job (resources.flops_per_second or"
                " --flops-per-second; exact FLOPs incl. attention and head), not calibrated here"
            )
        else:
            print(
                f"\ncalibrated on this machine ({threads} thread(s) per job;"
                f" {s['parallel_jobs']} jobs side by side run"
                f" {s['side_by_side_slowdown']:.2f}x slower each than one alone, measured):"
                " training throughput per shape"
            )
        by_size = jobs.groupby(["kind", "size", "n_params"], sort=False).agg(
            jobs=("job", "size"), tok_per_s=("tok_per_s", "first"), flops=("flops", "sum"), seconds=("seconds", "sum")
        )
        print(by_size.sort_index(level="n_params").to_string(float_format=lambda x: f"{x:.3g}"))
        print(
            f"total: {s['jobs']} jobs ({s['cells']} cells, each trained and evaluated), {s['flops']:.3g} FLOPs,"
            f" {s['cpu_seconds'] / 60:.1f} job-minutes: {s['startup_seconds']:.1f} s start-up per job,"
            f" evaluation {s['eval_seconds'] / 60:.1f} min ({s['harness_seconds']:.2f} s of lm-eval per cell +"
            f" {s['eval_tokens']:,.0f} tokens scored);"
            f" with {s['parallel_jobs']} jobs at a time about {s['wall_seconds'] / 60:.1f} minutes of wall time"
        )
        if rate:
            gpu_h, longest = s["cpu_seconds"] / 3600, s["longest_job_seconds"] / 3600
            layout = "".join(
                [
                    f", {s['packs']} of them packs of small trunks side by side" if s["packs"] else "",
                    f", {s['data_parallel_jobs']} data-parallel" if s["data_parallel_jobs"] else "",
                ]
            )
            print(
                f"GPU-hours: {gpu_h:,.0f} of training and evaluation at {rate:.3g} FLOP/s per GPU"
                f" ({s['jobs']} jobs{layout}; the longest {longest:.1f} h);"
                f" on {a.jobs or 8} GPUs about {s['wall_seconds'] / 3600:.1f} h of wall time"
            )
        print(data_needs(cfg))
    return 0


def data_needs(cfg: dict) -> str:
    """Training tokens each configured source must supply (the largest cell's share of it)."""
    if cfg["data"]["sources"] is None:
        return "data: the embedded corpora (repeated as the default study does)"
    cells, _ = plan.build(cfg)
    need = {}
    for c in cells:
        for k, v in shares(cfg["data"]["sources"], c.code_frac).items():
            need[k] = max(need.get(k, 0), v * c.tokens)
    me = cfg["data"]["max_epochs"]
    return "data: the largest cell takes " + ", ".join(
        f"{k} {v:.3g} tokens (>= {v / me:.3g} unique at max_epochs={me:g})" for k, v in need.items()
    )


def cmd_analyze(a) -> int:
    from skillscale.analysis import report  # pandas, scipy, matplotlib: only for analyze

    cfg = study.load(a.config)
    try:
        r = report.analyze(cfg, Path(a.study_dir), allow_missing=a.allow_missing)
    except report.IncompleteStudy as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_cells = r["cells"]["cell"].nunique()
    print(f"{n_cells} cells analysed ({len(r['missing'])} missing, {len(r['diverged'])} diverged)")
    o = r["optima"]
    print(
        o[["code_frac", "metric", "budget", "n_opt", "n_opt_lo", "n_opt_hi", "loss_opt", "status"]].to_string(
            index=False, float_format=lambda x: f"{x:.4g}"
        )
    )
    print(f"tables: {Path(a.study_dir) / 'tables'}  figures: {Path(a.study_dir) / 'figures'}")
    return 0


def cmd_export(a) -> int:
    from skillscale.tools import export  # torch and safetensors: only for export

    try:
        if a.all:
            done = export.export_study(Path(a.source), Path(a.out))
            print(f"exported {len(done)} cells to {a.out}/<cell>/")
        else:
            m = export.export_cell(Path(a.source), Path(a.out), Path(a.data) if a.data else None)
            print(f"exported {m['cell']} to {a.out} (LlamaForCausalLM, fp32)")
    except (export.ExportError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_evaluate_hf(a) -> int:
    import json

    from skillscale.evaluate import hf  # torch, lm-eval and transformers: only for evaluate-hf

    data = Path(a.data)
    out = Path(a.out) if a.out else data.parent / "external" / f"{Path(a.model_dir).resolve().name}.json"
    benchmarks = None if a.benchmarks is None else [b for b in a.benchmarks.split(",") if b]
    try:
        r = hf.evaluate_hf(Path(a.model_dir), data, benchmarks, a.seq_len, a.batch_size, a.device, a.dtype)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    common.write_json(out, r)
    print(json.dumps(r["bits_per_byte"], indent=1))
    print(f"N = {r['n_params']:.4g} (total {r['n_params_total']:.4g}); written to {out}")
    return 0


def _tool(module: str):
    """The verb that runs `module.run(args)`: the module (and its pandas, scipy or torch) is
    imported only when the verb is used, so `skillscale --help` and `plan` stay fast."""

    def cmd(a) -> int:
        return importlib.import_module(module).run(a)

    return cmd


def cmd_sample_corpora(a) -> int:
    from skillscale.tools import samplecorpora  # defers the embedded corpora (and pyarrow, inside write)

    print(samplecorpora.write(Path(a.out)))
    return 0


def _doc(module: str) -> str:
    """A verb's module docstring, its --help description, read from the file: importing the
    module for it would import torch or pandas on every start of the command."""
    text = (Path(__file__).parent / module).read_text()
    return text[3 : text.index('"""', 3)] if text.startswith('"""') else ""


def _verb(sub, name: str, help: str, module: str, **kw) -> argparse.ArgumentParser:
    """A verb whose --help description is its module's docstring (`module`: path under skillscale/)."""
    raw = argparse.RawDescriptionHelpFormatter
    return sub.add_parser(name, help=help, description=_doc(module), formatter_class=raw, **kw)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def add_fit(sub) -> None:
    p = _verb(sub, "fit", "fit Approach 2 (isoflop) or 3 (parametric) to a points CSV", "tools/fitpoints.py")
    p.add_argument("points", help="CSV with one row per trained model")
    p.add_argument("--approach", choices=("isoflop", "parametric"), required=True)
    p.add_argument("--group", nargs="+", default=[], metavar="COL", help="fit separately per value of these columns")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for intervals (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ci", type=float, default=0.9, help="confidence level of the intervals")
    p.add_argument(
        "--window",
        type=float,
        default=None,
        help="isoflop: fit each parabola to sizes within this many ln-units of the best observed size",
    )
    p.add_argument("--include-edge", action="store_true", help="isoflop: use edge optima in the power law")
    p.add_argument(
        "--budget-width",
        type=float,
        default=0.1,
        help="isoflop: widest spread of log10 C merged into one budget (no budget column)",
    )
    p.add_argument(
        "--drop-highest",
        type=int,
        default=0,
        metavar="K",
        help="drop the K highest-loss points per group first (Epoch AI drop 5 of Chinchilla's)",
    )
    p.add_argument("--n-col", default="n_params")
    p.add_argument("--tokens-col", default="tokens")
    p.add_argument("--loss-col", default="loss")
    p.add_argument("--flops-col", default="flops")
    p.add_argument("--budget-col", default="budget")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=_tool("skillscale.tools.fitpoints"))


def add_optimum(sub) -> None:
    p = _verb(
        sub,
        "optimum",
        "N*, D* and each metric's loss at a budget and code fraction, from the mixture law",
        "analysis/optimum.py",
    )
    p.add_argument("source", help="a study folder (results/<study>, analysed) or a CSV of points")
    p.add_argument("--budget", type=float, required=True, help="training compute in FLOPs")
    p.add_argument("--code-fraction", type=float, required=True, help="share of training tokens that are code, 0-1")
    p.add_argument("--weights", help="objective sum w_m L_m, e.g. knowledge_qa=0.7,code_fn=0.3 (default: per metric)")
    p.add_argument(
        "--flops", choices=("6nd", "exact"), help="C = 6ND, or exact FLOPs with attention (default: grid.flops)"
    )
    p.add_argument("--json", action="store_true", help="print every number as JSON")
    p.add_argument("--n-boot", type=int, default=100, help="CSV only: bootstrap refits per metric")
    p.add_argument("--form", help="CSV only, when its grid cannot choose: the law's form (default: share)")
    p.set_defaults(func=_tool("skillscale.analysis.optimum"))


def add_mixture_recovery(sub) -> None:
    p = _verb(
        sub,
        "mixture-recovery",
        "synthetic cells from a known mixture law: N* error and interval coverage of the fit",
        "tools/mixrecovery.py",
    )
    p.add_argument("--cells", help="a study's cells.csv whose grid to draw on (default: the default study's design)")
    p.add_argument("--draws", type=int, default=40)
    p.add_argument("--noise", default="0.012", help="bits/byte per cell; comma-separated for several levels")
    p.add_argument("--budget-factor", type=float, default=10.0, help="ask at this many times the largest budget")
    p.add_argument("--code-fraction", type=float, default=0.35, help="ask at this (untrained) code fraction")
    p.add_argument("--n-boot", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--form", help="the known law's form, share (default) or deff_add; fitted with the same form")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_tool("skillscale.tools.mixrecovery"))


def add_studies(sub) -> None:
    """The studies of finished studies (skillscale.studies)."""
    p = _verb(
        sub, "designs", "what other seeds x sizes-per-budget designs of a finished study buy", "studies/designs.py"
    )
    p.add_argument("study", type=Path, help="a finished study folder, e.g. results/default")
    p.add_argument("--designs", default="5x1,6x1,7x1,9x1,5x2,6x2,7x2,5x3", help="SIZESxSEEDS, comma-separated")
    p.add_argument("--reps", type=int, default=8, help="simulated studies per design")
    p.add_argument("--cores", type=int, default=_cores(), help="jobs side by side")
    p.set_defaults(func=_tool("skillscale.studies.designs"))
    p = _verb(sub, "extrapolate", "fit on one study's budgets, predict another's larger ones", "studies/extrapolate.py")
    p.add_argument("small", type=Path, help="study folder whose budgets the power laws are fitted on")
    p.add_argument("large", type=Path, help="study folder with larger budgets to predict")
    p.add_argument("--out", type=Path, help="also write the report (Markdown) here")
    p.add_argument("--n-boot", type=int, default=200)
    p.set_defaults(func=_tool("skillscale.studies.extrapolate"))
    p = _verb(
        sub, "sweepcompare", "compare two sweeps of one grid (WSD vs cosine): compute and N*", "studies/sweepcompare.py"
    )
    p.add_argument("a", type=Path, help="study folder of the sweep under test (e.g. WSD)")
    p.add_argument("b", type=Path, help="study folder of the reference sweep (e.g. cosine per cell)")
    p.add_argument("--out", type=Path)
    p.set_defaults(func=_tool("skillscale.studies.sweepcompare"))
    p = _verb(
        sub, "lrsweep", "train a budget's smallest and largest size at several learning rates", "studies/lrsweep.py"
    )
    p.add_argument("--config", required=True)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--lrs", default="0.0015,0.003,0.006,0.012,0.024", help="base learning rates (train.lr)")
    p.add_argument("--budget", type=float, help="budget whose window's ends are swept (default: the middle one)")
    p.add_argument("--code-frac", type=float, default=None, help="default: the middle code fraction")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_tool("skillscale.studies.lrsweep"))


def add_speed(sub) -> None:
    """`skillscale speed train|dag|prepare|gpu` (skillscale.tools.speed, speed_prep, speed_gpu)."""
    p = _verb(sub, "speed", "benchmarks: training throughput and MFU, DAG scale, data preparation", "tools/speed.py")
    p.set_defaults(func=_tool("skillscale.tools.speed"))
    bench = p.add_subparsers(dest="what", required=True)
    t = bench.add_parser("train", help="tokens/s and MFU of our trainer vs HF Llama vs matmul peak")
    t.add_argument("--config", help="default: config/config.yaml; with --device cuda, config/studies/gpu-paper.yaml")
    t.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="cuda: the GPU benchmark (speed_gpu.py: MFU from the ladder's smallest model to >= 100M"
        " parameters, packed small cells vs one per GPU); skipped with a message without CUDA",
    )
    t.add_argument("--pack", type=int, default=8, help="--device cuda: small-cell jobs side by side")
    t.add_argument("--sizes", type=int, help="--device cuda: time only this many shapes of the sweep, spread evenly")
    t.add_argument("--pack-steps", type=int, default=300, help="--device cuda: steps of each small-cell job")
    t.add_argument("--d-model", type=int)
    t.add_argument("--n-layers", type=int)
    t.add_argument("--n-heads", type=int)
    t.add_argument("--batch-size", type=int, help="default: the config's train.batch_size")
    t.add_argument("--threads", type=int, default=_cores(), help="default: all cores this process may use")
    t.add_argument(
        "--precision",
        choices=["fp32", "bf16", "both"],
        help="default: the config's train.precision, the one the study trains in",
    )
    t.add_argument("--steps", type=int, default=20, help="timed steps per run")
    t.add_argument("--warmup-steps", type=int, default=5)
    t.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    t.add_argument("--peak-size", type=int, help="matmul side for the peak (default 2048 CPU, 8192 CUDA)")
    t.add_argument(
        "--compile",
        action="store_true",
        help="on CPU, also time both trainers compiled (model and loss as one graph); CUDA: always",
    )
    t.add_argument("--no-hf", action="store_true", help="skip the Hugging Face comparison")
    t.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    t.add_argument(
        "--cell-jobs",
        action="store_true",
        help="also time a cell's fixed costs (start-up, evaluation) at d16, d32, d64, old path vs ours",
    )
    g = bench.add_parser("dag", help="seconds for snakemake -n to build the DAG of a large grid")
    g.add_argument("--workflow", default=".", help="repository root holding the Snakefile")
    g.add_argument("--fractions", type=int, default=10)
    g.add_argument("--budgets", type=int, default=20)
    g.add_argument("--seeds", type=int, default=5)
    g.add_argument("--json", action="store_true")
    q = _verb(
        bench,
        "prepare",
        "tokens/s and peak RSS of data preparation vs a naive one (speed_prep.py)",
        "tools/speed_prep.py",
        aliases=["prep"],
    )
    q.add_argument("--sizes", default="10M,100M,1G", help="corpus sizes in bytes of text")
    q.add_argument("--threads", type=int, default=_cores())
    q.add_argument("--workdir", default="/tmp/skillscale-benchprep")
    q.add_argument("--keep", action="store_true", help="keep the generated corpora")
    q.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="alternating runs of each contender per size, the fastest reported (a shared machine)",
    )
    q.add_argument("--json", action="store_true")
    c = _verb(
        bench,
        "gpu",
        "MFU by size and packed small cells vs one per GPU (speed_gpu.py; = train --device cuda)",
        "tools/speed_gpu.py",
    )
    c.add_argument("--config", help="default: config/studies/gpu-paper.yaml")
    c.add_argument("--pack", type=int, default=8, help="small-cell jobs side by side")
    c.add_argument("--sizes", type=int, help="time only this many shapes of the sweep, spread evenly (default: all)")
    c.add_argument("--pack-steps", type=int, default=300, help="steps of each small-cell job")
    c.add_argument("--steps", type=int, default=20, help="timed steps per run")
    c.add_argument("--warmup-steps", type=int, default=5)
    c.add_argument("--peak-size", type=int, help="matmul side for the peak (default 8192)")
    c.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skillscale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("plan", help="list the cells of a study config")
    sp.add_argument(
        "--config",
        required=True,
        nargs="+",
        metavar="YAML",
        help="one or more config files, later ones override earlier ones, as snakemake's"
        " --configfile does over config/config.yaml (so: config/config.yaml config/studies/X.yaml)",
    )
    sp.add_argument("--out", help="write plan.csv here")
    sp.add_argument("--estimate", action="store_true", help="calibrate this machine and estimate wall time per job")
    sp.add_argument("--threads", type=int, help="threads per training job (default: resources.train_threads)")
    sp.add_argument(
        "--jobs", type=int, help="jobs side by side (default: cores / threads; GPUs for a stated estimate: 8)"
    )
    sp.add_argument(
        "--flops-per-second",
        type=float,
        help="estimate at this stated throughput per job instead of calibrating (default for a"
        " train.device=cuda study on a machine without CUDA: resources.flops_per_second)",
    )
    sp.set_defaults(func=cmd_plan)
    sa = sub.add_parser("analyze", help="aggregate cells, fit, write tables and figures")
    sa.add_argument("--config", required=True)
    sa.add_argument("--study-dir", required=True)
    sa.add_argument("--allow-missing", action="store_true", help="analyse whatever cells exist")
    sa.set_defaults(func=cmd_analyze)
    se = sub.add_parser("export", help="write a trained cell as a transformers LlamaForCausalLM folder")
    se.add_argument("source", help="a cell folder (results/<study>/cells/<cell>), or a study folder with --all")
    se.add_argument("out", help="export folder: new, empty, or an earlier export (replaced)")
    se.add_argument("--data", help="the study's data folder (default: <cell>/../../data)")
    se.add_argument("--all", action="store_true", help="export every trained cell of the study folder to OUT/<cell>/")
    se.set_defaults(func=cmd_export)
    sh = sub.add_parser("evaluate-hf", help="score a local Hugging Face causal LM on a study's skill metrics")
    sh.add_argument("model_dir")
    sh.add_argument("--data", required=True, help="the study's data folder (results/<study>/data)")
    sh.add_argument("--benchmarks", help="comma-separated (default: every benchmark the study prepared)")
    sh.add_argument("--out", help="record to write (default: results/<study>/external/<model>.json)")
    sh.add_argument("--seq-len", type=int, help="context per window (default: the model's max_position_embeddings)")
    sh.add_argument("--batch-size", type=int, default=32)
    sh.add_argument("--device", help="default: cuda if available, else cpu")
    sh.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    sh.set_defaults(func=cmd_evaluate_hf)
    add_fit(sub)
    add_optimum(sub)
    add_mixture_recovery(sub)
    add_studies(sub)
    add_speed(sub)
    sc = _verb(
        sub, "sample-corpora", "small corpora on disk in real shapes, from the embedded texts", "tools/samplecorpora.py"
    )
    sc.add_argument("out", nargs="?", default="corpora", help="folder to write them to (default: corpora)")
    sc.set_defaults(func=cmd_sample_corpora)
    add_status(sub)
    return p


def add_status(sub) -> None:
    p = _verb(
        sub,
        "status",
        "where a running (or finished) study stands: cells done/running/failed/waiting, time left",
        "tools/status.py",
    )
    p.add_argument("study", type=Path, help="the study's results folder, e.g. results/default")
    p.add_argument("--json", action="store_true", help="print one JSON object (remaining_seconds, finish_utc, ...)")
    p.add_argument(
        "--jobs", type=int, help="jobs side by side for the waiting ones (default: the most that have run at once)"
    )
    p.add_argument(
        "--against",
        type=Path,
        metavar="SNAPSHOT",
        help="a finished study: compare an earlier `status --json` snapshot's remaining time with the real end",
    )
    p.set_defaults(func=_tool("skillscale.tools.status"))


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("lm_eval").setLevel(logging.WARNING)  # its request counts say nothing here
    try:
        return a.func(a)
    except cfgmod.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
