"""The Python half of tools/gpu-check.sh: the export parity check and the one summary file.

    python -m skillscale.tools.gpu_check parity CELL_DIR OUT.json [--device cuda]
    python -m skillscale.tools.gpu_check summary CHECK_DIR     # CHECK_DIR/summary.json, and a table

parity: a trained cell exported as a transformers LlamaForCausalLM (skillscale export) and
both models' logits on the same random tokens, in fp32 and in bf16 (weights cast, as a
user loading the export with dtype=bfloat16 runs it), on the device: the largest absolute
logit difference, that relative to the largest logit, and the share of positions whose
top token agrees. fp32 must agree to 1e-4 (the CPU test: 1e-5); bf16 is held to 5% of the
logit scale and 95% top-1 agreement, a first bound to be tightened by what a GPU shows.

summary: what the check's phases left in CHECK_DIR (bench.json from `skillscale speed gpu
--json`, the CUDA and CPU test studies' results, parity.json, phases.tsv with each
phase's exit status and seconds) in one summary.json: MFU at each size, packed vs alone,
the CUDA study's wall time and how its cells' bits per byte agree with the CPU study's.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

from skillscale import common

FP32_BOUND, BF16_BOUND, BF16_TOP1 = 1e-4, 0.05, 0.95


def parity(cell_dir: Path, device: str) -> dict:
    # deferred: torch and transformers (the hf extra) only for this check
    import torch
    import transformers
    from safetensors.torch import load_file

    from skillscale.model.decoder import Decoder, ModelShape
    from skillscale.tools import export

    rec = common.read_json(cell_dir / "train.json", "training record")
    shape = ModelShape(**rec["cell"]["shape"])
    out = {"cell": rec["cell"]["cell"], "device": device}
    with tempfile.TemporaryDirectory() as tmp:
        export.export_cell(cell_dir, Path(tmp) / "hf")
        torch.manual_seed(0)
        ids = torch.randint(0, shape.vocab_size, (8, shape.seq_len), device=device)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            ours = Decoder(shape)
            ours.load_state_dict(load_file(str(cell_dir / "model.safetensors")))
            ours = ours.to(device=device, dtype=dtype).eval()
            hf = transformers.AutoModelForCausalLM.from_pretrained(str(Path(tmp) / "hf"), dtype=dtype)
            hf = hf.to(device).eval()
            with torch.no_grad():
                a, b = ours(ids).float(), hf(input_ids=ids).logits.float()
            diff = (a - b).abs().max().item()
            out[name] = {
                "max_abs_diff": diff,
                "relative": diff / a.abs().max().item(),
                "top1_agreement": (a.argmax(-1) == b.argmax(-1)).float().mean().item(),
            }
    out["ok"] = out["fp32"]["max_abs_diff"] <= FP32_BOUND and (
        out["bf16"]["relative"] <= BF16_BOUND and out["bf16"]["top1_agreement"] >= BF16_TOP1
    )
    return out


def cell_scores(study_dir: Path) -> dict:
    """cell id -> bits per byte per metric, from a study's cells/*/eval.json."""
    return {
        p.parent.name: common.read_json(p, "evaluation record")["bits_per_byte"]
        for p in sorted(Path(study_dir).glob("cells/*/eval.json"))
    }


def agreement(a_dir: Path, b_dir: Path) -> dict:
    """How two runs of one study agree: per (cell, metric) relative difference of bits per
    byte, and which of their tables are byte-identical."""
    a, b = cell_scores(a_dir), cell_scores(b_dir)
    rel = [
        abs(a[c][m] - b[c][m]) / abs(b[c][m])
        for c in sorted(set(a) & set(b))
        for m in a[c]
        if m in b[c] and math.isfinite(a[c][m]) and math.isfinite(b[c][m]) and b[c][m]
    ]
    tables = sorted(p.name for p in Path(b_dir).glob("tables/*.csv"))
    read = lambda d, t: (Path(d) / "tables" / t).read_bytes() if (Path(d) / "tables" / t).exists() else None
    same = [t for t in tables if read(a_dir, t) == read(b_dir, t)]
    return {
        "cells": len(set(a) & set(b)),
        "cells_only_in_one": sorted(set(a) ^ set(b)),
        "bits_per_byte_rel_diff": {"median": statistics.median(rel), "max": max(rel)} if rel else None,
        "tables": len(tables),
        "tables_identical": same,
    }


def phases(check_dir: Path) -> dict:
    """phases.tsv (name, exit status, seconds; one line per phase the script ran)."""
    path = check_dir / "phases.tsv"
    rows = [line.split("\t") for line in path.read_text().splitlines() if line] if path.exists() else []
    return {name: {"exit": int(rc), "seconds": float(s)} for name, rc, s in rows}


def summary(check_dir: Path) -> dict:
    check_dir = Path(check_dir)
    read = lambda name: json.loads((check_dir / name).read_text()) if (check_dir / name).exists() else None
    out = {"phases": phases(check_dir), "environment": read("environment.json")}
    bench = read("bench.json")
    if bench and "sweep" in bench:
        out["bench"] = {
            "device": bench["device"],
            "peak_bf16_tflops": bench["peak_bf16_flops"] / 1e12,
            "mfu": [
                {"shape": x["shape"], "n_params": x["n_params"], "tokens_per_s": x["tokens_per_s"], "mfu": x["mfu"]}
                for x in bench["sweep"]
            ],
            "pack": {k: bench["pack"][k] for k in ("members", "alone_tokens_per_s", "packed_tokens_per_s", "speedup")},
        }
    else:
        out["bench"] = bench  # what it said instead (skipped), or None: see phases
    cuda, cpu = check_dir / "study-cuda" / "results" / "test", check_dir / "study-cpu" / "results" / "test"
    if cuda.is_dir() and cpu.is_dir():
        out["study"] = {"cuda_seconds": out["phases"].get("study-cuda", {}).get("seconds")} | agreement(cuda, cpu)
    out["parity"] = read("parity.json")
    out["ok"] = bool(out["phases"]) and all(p["exit"] == 0 for p in out["phases"].values())
    common.write_json(check_dir / "summary.json", out)
    return out


def table(s: dict) -> str:
    lines = [f"{name:<12} exit {p['exit']:>3}  {p['seconds']:>7.1f} s" for name, p in s["phases"].items()]
    b = s.get("bench")
    if b and "mfu" in b:
        lines.append(f"bf16 matmul peak {b['peak_bf16_tflops']:,.0f} TFLOP/s on {b['device']['name']}")
        for x in b["mfu"]:
            tps, mfu = x["tokens_per_s"], 100 * x["mfu"]
            lines.append(f"  {x['n_params']:>13,} params  {tps:>14,.0f} tokens/s  MFU {mfu:5.1f}%")
        p = b["pack"]
        lines.append(
            f"  {p['members']} small cells packed: {p['packed_tokens_per_s']:,.0f} tokens/s vs"
            f" {p['alone_tokens_per_s']:,.0f} alone = {p['speedup']:.2f}x"
        )
    elif b:
        lines.append(f"bench: {b.get('skipped', b)}")
    st = s.get("study")
    if st:
        d = st["bits_per_byte_rel_diff"] or {}
        lines.append(
            f"test study on CUDA: {st['cuda_seconds']} s; {st['cells']} cells, bits/byte vs the CPU run:"
            f" median {d.get('median', float('nan')):.2e}, max {d.get('max', float('nan')):.2e} relative;"
            f" {len(st['tables_identical'])} of {st['tables']} tables byte-identical"
        )
    p = s.get("parity")
    if p:
        lines.append(
            f"export parity ({p['device']}): fp32 max |diff| {p['fp32']['max_abs_diff']:.2e};"
            f" bf16 {p['bf16']['relative']:.2%} of the logit scale, top-1 agreement {p['bf16']['top1_agreement']:.2%}"
            f" -> {'ok' if p['ok'] else 'OUT OF BOUNDS'}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m skillscale.tools.gpu_check", description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    q = sub.add_parser("parity")
    q.add_argument("cell_dir", type=Path)
    q.add_argument("out", type=Path)
    q.add_argument("--device", default="cuda")
    s = sub.add_parser("summary")
    s.add_argument("check_dir", type=Path)
    a = p.parse_args(argv)
    if a.what == "parity":
        r = parity(a.cell_dir, a.device)
        common.write_json(a.out, r)
        print(json.dumps(r, indent=1))
        return 0 if r["ok"] else 1
    r = summary(a.check_dir)
    print(table(r))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
