"""The `skillscale` command: plan a study, analyse its cells, fit any points file.

    skillscale plan --config config/config.yaml [config/studies/X.yaml ...] [--out plan.csv] [--estimate]
    skillscale analyze --config results/<study>/config.yaml --study-dir results/<study>
    skillscale fit POINTS.csv --approach isoflop|parametric --json
    skillscale export results/<study>/cells/<cell> OUT     # a transformers LlamaForCausalLM folder
    skillscale export results/<study> OUT --all            # every trained cell: OUT/<cell>/
    skillscale evaluate-hf MODEL_DIR --data results/<study>/data [--out FILE]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# lm-eval's per-task progress bars (plan --estimate runs it) only clutter the terminal; tqdm
# reads this when it is first imported, which may be before skillscale.evaluate.harness is
os.environ.setdefault("TQDM_DISABLE", "1")

from skillscale import study
from skillscale import config as cfgmod  # noqa: E402


def cmd_plan(a) -> int:
    from skillscale import common
    from skillscale import plan

    cfg = study.load_layers(a.config)
    cells, dropped = plan.build(cfg)
    df = plan.to_frame(cells)
    if a.out:
        with common.atomic_path(Path(a.out)) as tmp:
            df.to_csv(tmp, index=False)
    print(f"study {cfg['study']}: {len(cells)} cells = {len(cfg['mix']['code_fractions'])} code fractions"
          f" x {len(cfg['grid']['budgets'])} budgets x {cfg['grid']['sizes_per_budget']} sizes x {len(cfg['seeds'])} seeds"
          f"; {df.flops.sum():.3g} training FLOPs in all")
    summary = df.groupby("budget").agg(sizes=("size", "nunique"), n_min=("n_params", "min"),
                                       n_max=("n_params", "max"), steps_min=("steps", "min"))
    print(summary.to_string())
    cost = plan.sweep_cost(cfg, cells)
    print(f"schedule {cfg['train']['schedule']}: cell by cell (cosine) {cost['per_cell_flops']:.3g} FLOPs;"
          f" warmup-stable-decay {cost['wsd_flops']:.3g} FLOPs = {cost['wsd_over_per_cell']:.0%} of that"
          f" ({len(plan.trunks(cfg, cells))} trunks + {len(cells)} cooldowns of {cfg['train']['cooldown_fraction']:.0%})")
    for d in dropped:
        print(f"dropped {d['cell']}: {d['reason']}")
    if a.estimate:
        from skillscale.tools import costplan

        threads = a.threads or cfg["resources"]["train_threads"]
        rate = a.flops_per_second
        if rate is None and cfg["train"]["device"] == "cuda":
            import torch

            if not torch.cuda.is_available():  # a GPU study planned on a machine without one
                rate = cfg["resources"]["flops_per_second"]
        jobs, s = costplan.estimate(cfg, threads, a.jobs or (8 if rate else None), flops_per_second=rate)
        if rate:
            print(f"\nat a stated throughput of {rate:.3g} FLOP/s per job (resources.flops_per_second or"
                  " --flops-per-second; exact FLOPs incl. attention and head), not calibrated here")
        else:
            print(f"\ncalibrated on this machine ({threads} thread(s) per job; {s['parallel_jobs']} jobs side by side run"
                  f" {s['side_by_side_slowdown']:.2f}x slower each than one alone, measured): training throughput per shape")
        by_size = jobs.groupby(["kind", "size", "n_params"], sort=False).agg(
            jobs=("job", "size"), tok_per_s=("tok_per_s", "first"), flops=("flops", "sum"), seconds=("seconds", "sum"))
        print(by_size.sort_index(level="n_params").to_string(float_format=lambda x: f"{x:.3g}"))
        print(f"total: {s['jobs']} jobs ({s['cells']} cells, each trained and evaluated), {s['flops']:.3g} FLOPs,"
              f" {s['cpu_seconds'] / 60:.1f} job-minutes: {s['startup_seconds']:.1f} s start-up per job,"
              f" evaluation {s['eval_seconds'] / 60:.1f} min ({s['harness_seconds']:.2f} s of lm-eval per cell +"
              f" {s['eval_tokens']:,.0f} tokens scored);"
              f" with {s['parallel_jobs']} jobs at a time about {s['wall_seconds'] / 60:.1f} minutes of wall time")
        if rate:
            gpu_h, longest = s["cpu_seconds"] / 3600, s["longest_job_seconds"] / 3600
            layout = "".join([f", {s['packs']} of them packs of small trunks side by side" if s["packs"] else "",
                              f", {s['data_parallel_jobs']} data-parallel" if s["data_parallel_jobs"] else ""])
            print(f"GPU-hours: {gpu_h:,.0f} of training and evaluation at {rate:.3g} FLOP/s per GPU"
                  f" ({s['jobs']} jobs{layout}; the longest {longest:.1f} h);"
                  f" on {a.jobs or 8} GPUs about {s['wall_seconds'] / 3600:.1f} h of wall time")
        print(data_needs(cfg))
    return 0


def data_needs(cfg: dict) -> str:
    """Training tokens each configured source must supply (the largest cell's share of it)."""
    from skillscale import plan

    if cfg["data"]["sources"] is None:
        return "data: the embedded corpora (repeated as the default study does)"
    from skillscale.data.mixing import shares

    cells, _ = plan.build(cfg)
    need = {}
    for c in cells:
        for k, v in shares(cfg["data"]["sources"], c.code_frac).items():
            need[k] = max(need.get(k, 0), v * c.tokens)
    me = cfg["data"]["max_epochs"]
    return "data: the largest cell takes " + ", ".join(
        f"{k} {v:.3g} tokens (>= {v / me:.3g} unique at max_epochs={me:g})" for k, v in need.items())


def cmd_analyze(a) -> int:
    from skillscale.analysis import report

    cfg = study.load(a.config)
    try:
        r = report.analyze(cfg, Path(a.study_dir), allow_missing=a.allow_missing)
    except report.IncompleteStudy as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_cells = r["cells"]["cell"].nunique()
    print(f"{n_cells} cells analysed ({len(r['missing'])} missing, {len(r['diverged'])} diverged)")
    o = r["optima"]
    print(o[["code_frac", "metric", "budget", "n_opt", "n_opt_lo", "n_opt_hi", "loss_opt", "status"]]
          .to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"tables: {Path(a.study_dir) / 'tables'}  figures: {Path(a.study_dir) / 'figures'}")
    return 0


def cmd_export(a) -> int:
    from skillscale.tools import export

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

    from skillscale.evaluate import hf
    from skillscale import common

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="skillscale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("plan", help="list the cells of a study config")
    sp.add_argument("--config", required=True, nargs="+", metavar="YAML",
                    help="one or more config files, later ones override earlier ones, as snakemake's"
                         " --configfile does over config/config.yaml (so: config/config.yaml config/studies/X.yaml)")
    sp.add_argument("--out", help="write plan.csv here")
    sp.add_argument("--estimate", action="store_true", help="calibrate this machine and estimate wall time per job")
    sp.add_argument("--threads", type=int, help="threads per training job (default: resources.train_threads)")
    sp.add_argument("--jobs", type=int, help="jobs side by side (default: cores / threads; GPUs for a stated estimate: 8)")
    sp.add_argument("--flops-per-second", type=float,
                    help="estimate at this stated throughput per job instead of calibrating (default for a"
                         " train.device=cuda study on a machine without CUDA: resources.flops_per_second)")
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
    try:
        from skillscale.tools import fitpoints

        fitpoints.add_parser(sub)
    except ImportError:
        pass
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("lm_eval").setLevel(logging.WARNING)  # its request counts say nothing here
    try:
        return a.func(a)
    except cfgmod.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
