"""Benchmarks: training throughput (ours vs Hugging Face Llama vs the matmul peak) and DAG scale.

    skillscale speed train [--json] [--precision fp32|bf16|both] [--threads N]
        [--config config/config.yaml] [--d-model D --n-layers L --n-heads H]
    skillscale speed dag [--fractions 10 --budgets 20 --seeds 5]   # 5,000 cells
    skillscale speed prepare [--sizes 10M,100M,1G]   # data preparation (speed_prep.py); also: speed prep
    skillscale speed gpu [--config config/studies/gpu-paper.yaml]   # MFU by size, packing (speed_gpu.py)

In one process, at one model shape (default: the largest cell of the study in --config,
at its train.batch_size and model.seq_len), it measures

- ours: tokens/s of `model.Decoder` trained by `train.build_optimizer` + `train.train_step`,
  the very code a workflow cell trains with (fused AdamW, grad clip, bf16 autocast if asked);
- ours old loss (CPU, fp32, eager): the same with torch's cross_entropy over the logits instead
  of `train.HeadCrossEntropy`, the trainer before it (`--cell-jobs` compares them at d16/32/64);
- hf: tokens/s of `transformers.LlamaForCausalLM` with the same shape (d_model, layers, heads,
  intermediate_size = our d_ff, vocab, untied head, seq len, batch), SDPA attention, driven
  by the same `train_step` and optimizer; both parameter counts are reported, they must match;
- peak: the best FLOP/s of `torch.matmul` on large square matrices in fp32 and bf16, with the
  same thread count: what this machine can do at best in its densest kernel.

How to read it: `ours/hf` > 1 means our trainer is faster than the reference implementation.
`mfu` (model-FLOPs utilisation) = tokens/s x `flops_per_token(shape)["exact"]` (3 x forward:
every weight matmul, the head included, plus causal attention counted as full, no causal
saving) / the measured peak of the precision trained in. Norms, activations, the loss and the
optimizer are not counted as work, so small widths, where they dominate, have low MFU.
Timing: `--warmup-steps` untimed steps, then `--repeats` runs of `--steps` steps, ours and hf
interleaved so load from other processes hits both alike; the median run is reported.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from skillscale import plan, study
from skillscale.model.decoder import Decoder, ModelShape, flops_per_token, param_counts
from skillscale.train import devices
from skillscale.train.devices import matmul_peak, sync
from skillscale.train.step import build_optimizer, loss_fn, train_step


def peaks(device: str, n: int) -> dict[str, float]:
    """Both precisions always: that bf16 is (or is not) faster than fp32 here is worth seeing."""
    return {p: matmul_peak(dt, device, n) for p, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))}


def default_shape(cfg: dict, d_model=None, n_layers=None, n_heads=None) -> ModelShape:
    """The largest cell of the study (by standard N), with any dimension overridden."""
    cells, _ = plan.build(cfg)
    big = max(cells, key=lambda c: c.n_params)
    return plan.shape_of(cfg, d_model or big.d_model, n_layers or big.n_layers, n_heads or big.n_heads)


def hf_llama(shape: ModelShape):
    """LlamaForCausalLM with our shape, or None if transformers is not installed."""
    try:
        # deferred: each benchmark's imports load only when it runs
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:
        return None
    hc = LlamaConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.d_model,
        intermediate_size=shape.d_ff,
        num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_heads,
        max_position_embeddings=shape.seq_len,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(hc)


def trainer(model, tc: dict, batch: torch.Tensor, device: str, compile_: bool, hf: bool, fused: bool = True):
    """A zero-argument function doing one optimizer step of `model` on `batch`; fused=False:
    torch's cross_entropy over the logits instead of `train.HeadCrossEntropy` (the old loss)."""
    model = model.to(device).train()
    opt = build_optimizer(model, tc, 1e-3, device)
    fwd = (lambda x: model(input_ids=x, use_cache=False).logits) if hf else model
    loss_of = loss_fn(fwd, compile_, fused)  # compiled: model and loss as one graph, as the workflow does
    return lambda: train_step(loss_of, model, opt, batch, tc, 1e-3)


def time_runs(steps: dict, n_steps: int, warmup: int, repeats: int, device: str) -> dict[str, float]:
    """Median seconds per step of each trainer; runs interleaved so machine load hits all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    runs = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync(device)
            t = time.perf_counter()
            for _ in range(n_steps):
                loss = step()
            loss.item()  # waits for the device
            runs[name].append((time.perf_counter() - t) / n_steps)
    return {name: statistics.median(r) for name, r in runs.items()}


MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")


def kernel_split(step, n: int = 5) -> dict[str, float]:
    """ms per step in matmul ops, in attention ops and in everything else, from torch.profiler's
    self CPU times (CPU only). Any trainer of this shape calls the same matmul and attention
    kernels, so ours with "everything else" free bounds how far it could outrun hf: the
    "ceiling" is the interleaved ours/hf ratio times ours' step over its kernel time."""
    # deferred: each benchmark's imports load only when it runs
    from torch.profiler import profile

    with profile() as prof:
        for _ in range(n):
            step()
    ev = prof.key_averages()
    ms = lambda keep: sum(e.self_cpu_time_total for e in ev if keep(e.key)) / n / 1e3
    total, mm, attn = ms(lambda k: True), ms(lambda k: k in MATMUL_OPS), ms(lambda k: "attention" in k)
    return {"step_ms": total, "matmul_ms": mm, "attention_ms": attn, "other_ms": total - mm - attn}


def time_precision(prec: str, shape: ModelShape, cfg: dict, batch, hf_state, a, device, modes) -> dict:
    """Seconds per step of ours (and hf, if `hf_state`) in each mode ("eager", "compiled"), all
    from the same fresh weights, in `prec`; plus the eager steps' kernel split on CPU."""
    tc = cfg["train"] | {"precision": prec}
    steps = {}
    for mode in modes:
        tag = "" if mode == "eager" else " compiled"
        torch.manual_seed(0)
        steps["ours" + tag] = trainer(Decoder(shape), tc, batch, device, mode == "compiled", hf=False)
        if mode == "eager" and device == "cpu" and prec == "fp32":  # the loss before HeadCrossEntropy
            torch.manual_seed(0)
            steps["ours old loss"] = trainer(Decoder(shape), tc, batch, device, False, hf=False, fused=False)
        if hf_state is not None:
            hf = hf_llama(shape)
            hf.load_state_dict(hf_state)
            steps["hf" + tag] = trainer(hf, tc, batch, device, mode == "compiled", hf=True)
    sec = time_runs(steps, a.steps, a.warmup_steps, a.repeats, device)
    split = {name: kernel_split(steps[name]) for name in ("ours", "hf") if name in steps and device == "cpu"}
    return {"seconds": sec, "split": split}


def bench_train(a) -> dict:
    torch.set_num_threads(a.threads)
    device = "cuda" if a.device == "auto" and torch.cuda.is_available() else "cpu"
    cfg = study.load(a.config)
    shape = default_shape(cfg, a.d_model, a.n_layers, a.n_heads)
    bs = a.batch_size or cfg["train"]["batch_size"]
    tokens = bs * shape.seq_len  # per step: rows of seq_len + 1 tokens, seq_len of them predicted
    fpt = flops_per_token(shape)["exact"]
    # the workflow compiles on CUDA only (train.compile: auto); on CPU --compile adds compiled rows
    modes = ["compiled"] if device == "cuda" else ["eager", "compiled"] if a.compile else ["eager"]
    n_peak = a.peak_size or (8192 if device == "cuda" else 2048)
    load = os.getloadavg()[0]
    peak = peaks(device, n_peak)
    torch.manual_seed(0)
    batch = torch.randint(0, shape.vocab_size, (bs, shape.seq_len + 1), device=device)
    hf = None if a.no_hf else hf_llama(shape)
    params = {"ours": param_counts(shape)["total"]}
    if hf is not None:
        params |= {"hf": sum(p.numel() for p in hf.parameters())}
        params |= {"match": params["hf"] == params["ours"]}
    hf_state = None if hf is None else hf.state_dict()
    precision = a.precision or devices.precision(cfg["train"], device)  # default: what the study trains in
    timed = {
        p: time_precision(p, shape, cfg, batch, hf_state, a, device, modes)
        for p in (["fp32", "bf16"] if precision == "both" else [precision])
    }
    # peak again after training: the best of the two, so a busy moment does not lower it
    peak = {p: max(v, w) for (p, v), w in zip(peak.items(), peaks(device, n_peak).values())}
    results = {}
    for prec, t in timed.items():
        row = {
            name: {"tokens_per_s": tokens / s, "step_ms": 1e3 * s, "mfu": tokens / s * fpt / peak[prec]}
            for name, s in t["seconds"].items()
        }
        ratios = {
            f"{o}/{h}": row[o]["tokens_per_s"] / row[h]["tokens_per_s"]
            for o, h in (
                ("ours", "hf"),
                ("ours", "ours old loss"),
                ("ours compiled", "hf compiled"),
                ("ours compiled", "hf"),
            )
            if o in row and h in row
        }
        split = t["split"]
        if "ours/hf" in ratios and "ours" in split:  # see kernel_split: ours with "other" free
            kernels = split["ours"]["matmul_ms"] + split["ours"]["attention_ms"]
            ratios["ceiling ours/hf"] = ratios["ours/hf"] * split["ours"]["step_ms"] / kernels
        results[prec] = {"trainers": row, "ratios": ratios, "kernel_split": split}
    out = {
        "device": device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "shape": shape.to_dict() | {"d_ff": shape.d_ff},
        "batch_size": bs,
        "tokens_per_step": tokens,
        "flops_per_token": fpt,
        "modes": modes,
        "steps": a.steps,
        "repeats": a.repeats,
        "params": params,
        "peak_flops": peak,
        "results": results,
        "load_average": [load, os.getloadavg()[0]],
    }
    if hf is None:
        out["hf_skipped"] = "skipped: --no-hf" if a.no_hf else "skipped: pip install transformers"
    return out


def table(r: dict) -> str:
    s, p = r["shape"], r["params"]
    hf = f", hf {p['hf']:,} ({'match' if p['match'] else 'MISMATCH'})" if "hf" in p else f"; hf {r['hf_skipped']}"
    lines = [
        f"shape d_model={s['d_model']} n_layers={s['n_layers']} n_heads={s['n_heads']} d_ff={s['d_ff']} "
        f"vocab={s['vocab_size']} seq_len={s['seq_len']}, batch {r['batch_size']} = {r['tokens_per_step']} "
        "tokens/step",
        f"device {r['device']}, {r['threads']} threads, torch {r['torch']}, modes {'+'.join(r['modes'])}, "
        f"load average {r['load_average'][0]:.2f} -> {r['load_average'][1]:.2f}",
        f"params (total): ours {p['ours']:,}{hf}",
        f"FLOPs/token (exact: 3 x forward, attention counted in full) {r['flops_per_token']:,.0f}",
        "matmul peak: " + ", ".join(f"{k} {v / 1e9:,.1f} GFLOP/s" for k, v in r["peak_flops"].items()),
        "",
        f"{'precision':<10}{'trainer':<15}{'tokens/s':>11}{'ms/step':>10}{'MFU':>8}",
    ]
    for prec, res in r["results"].items():
        for name, x in res["trainers"].items():
            lines.append(f"{prec:<10}{name:<15}{x['tokens_per_s']:>11,.0f}{x['step_ms']:>10.1f}{100 * x['mfu']:>7.1f}%")
        if res["ratios"]:
            lines.append(f"{prec:<10}ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in res["ratios"].items()))
        for name, x in res["kernel_split"].items():
            lines.append(
                f"{prec:<10}{name} eager step under the profiler: {x['step_ms']:.1f} ms = matmul "
                f"{x['matmul_ms']:.1f} + attention {x['attention_ms']:.1f} + other {x['other_ms']:.1f}"
            )
    return "\n".join(lines)


# -- a cell's job, old path vs ours: what a default-study cell pays besides its steps -------
OLD_JOB = """
import time, torch
from skillscale.model.decoder import Decoder, ModelShape
from skillscale.train.step import loss_fn, train_step
m = Decoder(ModelShape({d}, 2, 2, 512, 128, 2.6667))
opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95), fused=True)
train_step(loss_fn(m, False, fused=False), m, opt, torch.randint(0, 512, (16, 129)),
           dict(grad_clip=1.0, precision="fp32"), 1e-3)
"""
NEW_JOB = """
import torch
from skillscale.model.decoder import Decoder, ModelShape
from skillscale.train.step import build_optimizer, loss_fn, train_step
tc = dict(weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0, precision="fp32")
m = Decoder(ModelShape({d}, 2, 2, 512, 128, 2.6667))
train_step(loss_fn(m, False), m, build_optimizer(m, tc, 1e-3, "cpu"), torch.randint(0, 512, (16, 129)), tc, 1e-3)
"""


def default_eval_dir(d: Path, cfg: dict) -> Path:
    """Evaluation files of the study's sizes (data.eval) filled with stand-in text."""
    import random

    rng, e = random.Random(0), cfg["data"]["eval"]
    words = [w for w in Path(__file__).read_text().split() if w.isalpha()]
    text = lambda n: " ".join(rng.choice(words) for _ in range(n // 6))
    rows = {
        "knowledge_qa": [{"id": i, "context": text(40), "target": text(12)} for i in range(e["knowledge_qa_items"])],
        "code_fn": [{"id": i, "context": text(120), "target": text(180)} for i in range(e["code_fn_items"])],
        "knowledge_text": [{"id": i, "text": text(e["text_bytes"] // 10)} for i in range(10)],
        "code_text": [{"id": i, "text": text(e["text_bytes"] // 10)} for i in range(10)],
    }
    for name, rs in rows.items():
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    return d


def bench_cell_jobs(a, widths=(16, 32, 64)) -> dict:
    """Per width, in one run: the fixed costs of a default-study cell under the old path (its
    own training process built on torch.optim, then its own evaluation process running
    lm-eval's simple_evaluate) and ours (a trunk job's process trains and scores its cells;
    the optimizer is a small AdamW over the same fused kernel; lm-eval without its
    environment report), next to the step both paths share."""
    import subprocess
    import tempfile

    # deferred: each benchmark's imports load only when it runs
    from skillscale.data.tokenizer import ByteTokenizer
    from skillscale.evaluate.harness import SkillscaleLM, harness_evaluate, run_tasks

    cfg = study.load(a.config)
    torch.set_num_threads(1)
    start = lambda code: _seconds(lambda: subprocess.run([sys.executable, "-c", code], check=True))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        eval_dir = default_eval_dir(Path(tmp), cfg)
        for d in widths:
            shape = ModelShape(d, 2, 2, 256, cfg["model"]["seq_len"], cfg["model"]["ffn_mult"])
            lm = SkillscaleLM(Decoder(shape).eval(), ByteTokenizer(), shape.seq_len, cfg["eval"]["batch_size"])
            run_tasks(lm, eval_dir)  # imports and first-call costs paid outside the timing
            old_eval = _seconds(lambda: _simple_evaluate(lm, eval_dir))  # noqa: B023 (called at once)
            new_eval = _seconds(lambda: run_tasks(lm, eval_dir))  # noqa: B023 (called at once)
            rows[d] = {
                "start_old_s": start(OLD_JOB.format(d=d)),
                "start_new_s": start(NEW_JOB.format(d=d)),
                "eval_old_s": old_eval,
                "eval_new_s": new_eval,
            }
            rows[d] |= compile_payoff(
                ModelShape(d, 2, 2, cfg["data"]["tokenizer"]["vocab_size"], shape.seq_len, shape.ffn_mult), cfg, a
            )
    return {"widths": rows, "threads": 1, "eval_sizes": cfg["data"]["eval"], "harness": harness_evaluate.__name__}


def compile_payoff(shape: ModelShape, cfg: dict, a) -> dict:
    """Eager vs compiled step at this shape (1 thread), the seconds the first compiled step
    takes (a cold inductor cache, as in a fresh job), and the steps a job needs before
    compiling pays: compile seconds / seconds saved per step."""
    tc = cfg["train"]
    batch = torch.randint(0, shape.vocab_size, (tc["batch_size"], shape.seq_len + 1))
    torch.manual_seed(0)
    old_loss = trainer(Decoder(shape), tc, batch, "cpu", False, hf=False, fused=False)
    eager = trainer(Decoder(shape), tc, batch, "cpu", False, hf=False)
    compiled = trainer(Decoder(shape), tc, batch, "cpu", True, hf=False)
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        old = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        try:
            first = _seconds(compiled)
        finally:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR") if old is None else os.environ.update(TORCHINDUCTOR_CACHE_DIR=old)
        sec = time_runs(
            {"old": old_loss, "eager": eager, "compiled": compiled}, a.steps, a.warmup_steps, a.repeats, "cpu"
        )
    saved = sec["eager"] - sec["compiled"]
    return {
        "step_old_ms": 1e3 * sec["old"],
        "step_eager_ms": 1e3 * sec["eager"],
        "step_compiled_ms": 1e3 * sec["compiled"],
        "compile_s": first,
        "break_even_steps": first / saved if saved > 0 else float("inf"),
    }


def _seconds(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def _simple_evaluate(lm, eval_dir: Path) -> None:
    """The old path: lm-eval's simple_evaluate, environment report included."""
    # deferred: each benchmark's imports load only when it runs
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from skillscale.evaluate.harness import METRICS, TASKS_DIR

    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"eval_dir": str(eval_dir)})
    simple_evaluate(
        model=lm,
        tasks=[t for t, _ in METRICS.values()],
        task_manager=tm,
        bootstrap_iters=0,
        log_samples=False,
        verbosity="WARNING",
    )


def cell_jobs_table(r: dict) -> str:
    lines = [
        "",
        "a cell's fixed costs (1 thread; a fresh process to its first step; one evaluation of the "
        "study's eval-set sizes), old path vs ours:",
        f"{'width':<7}{'start old':>11}{'start ours':>12}{'eval old':>10}{'eval ours':>11}"
        f"{'step old':>11}{'step ours':>11}{'ours/old':>9}{'compiled':>10}{'compile':>9}{'pays after':>12}",
    ]
    for d, x in r["widths"].items():
        lines.append(
            f"d{d:<6}{x['start_old_s']:>10.2f}s{x['start_new_s']:>11.2f}s{x['eval_old_s']:>9.2f}s"
            f"{x['eval_new_s']:>10.2f}s{x['step_old_ms']:>8.1f} ms{x['step_eager_ms']:>8.1f} ms"
            f"{x['step_old_ms'] / x['step_eager_ms']:>8.2f}x{x['step_compiled_ms']:>7.1f} ms"
            f"{x['compile_s']:>8.1f}s{x['break_even_steps']:>7,.0f} steps"
        )
    lines.append(
        "old: a training process and an evaluation process per cell, torch's cross_entropy over the "
        "logits; ours: one process per WSD trunk for its trunk, cooldowns and evaluations, the head and "
        "loss as one HeadCrossEntropy (steps: eager, interleaved; ours/old > 1: ours is faster)"
    )
    return "\n".join(lines)


# -- the workflow's own scale: DAG construction for a large grid ----------------------------
def dag_config(fractions: int, budgets: int, seeds: int) -> dict:
    """A study of fractions x budgets x seeds x 5 sizes on the default ladder (nothing runs)."""
    lo, hi = 2e11, 1e12  # the default ladder's sizes bracket these budgets' optima
    return {
        "study": "dagbench",
        "seeds": list(range(seeds)),
        "mix": {"code_fractions": [round(0.05 + 0.9 * i / max(fractions - 1, 1), 4) for i in range(fractions)]},
        "grid": {
            "budgets": [float(f"{lo * (hi / lo) ** (i / max(budgets - 1, 1)):.3g}") for i in range(budgets)],
            "sizes_per_budget": 5,
        },
    }


def bench_dag(a) -> dict:
    """Wall time of `snakemake -n` (quiet and verbose) on a grid of a.cells cells, in a scratch
    copy of the workflow so nothing is written under the user's results/."""
    import shutil
    import subprocess
    import tempfile

    # deferred: each benchmark's imports load only when it runs
    import yaml

    repo = Path(a.workflow).resolve()
    cfg = dag_config(a.fractions, a.budgets, a.seeds)
    cells = a.fractions * a.budgets * a.seeds * study.load(repo / "config" / "config.yaml")["grid"]["sizes_per_budget"]
    out = {
        "cells": cells,
        "fractions": a.fractions,
        "budgets": a.budgets,
        "seeds": a.seeds,
        "load_average_before": os.getloadavg()[0],
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        for name in ("Snakefile", "workflow", "config", "profiles", "envs"):
            src = repo / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, wd / name)
        (wd / "big.yaml").write_text(yaml.safe_dump(cfg))
        for label, extra in (
            ("dry run, job table only (-n --quiet rules)", ["--quiet", "rules"]),
            ("dry run, every job printed (-n)", []),
        ):
            t = time.perf_counter()
            p = subprocess.run(
                ["snakemake", "-n", "--cores", "1", "--configfile", "big.yaml", *extra],
                cwd=wd,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t
            if p.returncode != 0:
                raise SystemExit(f"snakemake -n failed:\n{p.stderr[-3000:]}")
            jobs = next((int(ln.split()[1]) for ln in p.stdout.splitlines() if ln.startswith("total")), None)
            out["runs"][label] = {"seconds": round(wall, 1), "jobs": jobs, "output_lines": len(p.stdout.splitlines())}
    out["load_average_after"] = os.getloadavg()[0]
    return out


def dag_table(r: dict) -> str:
    lines = [
        f"{r['cells']:,} cells = {r['fractions']} code fractions x {r['budgets']} budgets x 5 sizes x "
        f"{r['seeds']} seeds; load average {r['load_average_before']:.2f} -> {r['load_average_after']:.2f}"
    ]
    for label, x in r["runs"].items():
        lines.append(f"{label:<46}{x['seconds']:>7.1f} s  {x['jobs']:,} jobs, {x['output_lines']:,} lines of output")
    return "\n".join(lines)


def run(a) -> int:
    """`skillscale speed train|dag|prepare|gpu` (their arguments: skillscale.cli)."""
    if a.what in ("prepare", "prep"):
        # deferred: each benchmark's imports load only when it runs
        from skillscale.tools import speed_prep

        r = speed_prep.bench_prepare(a)
        print(json.dumps(r, indent=2) if a.json else speed_prep.table(r))
        return 0
    if a.what == "dag":
        r = bench_dag(a)
        print(json.dumps(r, indent=2) if a.json else dag_table(r))
        return 0
    if a.what == "gpu" or a.device == "cuda":
        # deferred: each benchmark's imports load only when it runs
        from skillscale.tools import speed_gpu

        r = speed_gpu.bench_cuda(a)
        print(json.dumps(r, indent=2) if a.json else speed_gpu.table(r))
        return 0
    a.config = a.config or "config/config.yaml"
    r = bench_train(a)
    if a.cell_jobs:
        r["cell_jobs"] = bench_cell_jobs(a)
    print(json.dumps(r, indent=2) if a.json else table(r) + (cell_jobs_table(r["cell_jobs"]) if a.cell_jobs else ""))
    return 0
