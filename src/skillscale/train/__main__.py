"""`python -m skillscale.train`: the train rules' entry point.

    python -m skillscale.train --config results/<study>/config.yaml --cell <id> \
        --data results/<study>/data --out results/<study>/cells/<id> [--evaluate]
    python -m skillscale.train ... --trunk <code_frac_size_seed> --out results/<study>/trunks/<run>
    python -m skillscale.train ... --pack <trunk> <trunk> ... --out results/<study>/trunks --record <file>
"""

import os

# A trunk job scores its cells through lm-eval: its per-task progress bars (tqdm reads this
# when first imported) and the tokenizers' fork warnings only clutter job logs. Set here, in
# the entry point, before anything imports them.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import sys
from pathlib import Path

from skillscale import study
from skillscale.evaluate import harness
from skillscale.train import distributed, tracking
from skillscale.train.jobs import eval_fingerprint, find_cell, study_root, train_cell, train_trunk_job
from skillscale.train.loop import pick_device
from skillscale.train.packs import train_pack


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m skillscale.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", required=True)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--cell", help="train this cell (cosine) or its cooldown branch (wsd)")
    which.add_argument(
        "--trunk",
        help="train this WSD trunk (code fraction, size, seed), then the cooldown and "
        "evaluation of every cell on it, into OUT/cells/",
    )
    which.add_argument(
        "--pack",
        nargs="+",
        metavar="TRUNK",
        help="train these WSD trunks side by side, one --trunk process each, into OUT/<trunk>/",
    )
    p.add_argument("--record", type=Path, help="--pack: where to write the pack's record once all trunks are done")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--trunk-dir", type=Path, help="--cell under wsd: the trunk's folder holding branch states")
    p.add_argument("--resume", type=Path, help="resume checkpoint path (default: inside --out)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--evaluate", action="store_true", help="--cell: then score it (eval.json) in the same process")
    a = p.parse_args(argv)
    cfg = study.load(a.config)
    try:
        distributed.world(pick_device(cfg["train"]["device"]))  # (torchrun: the process group)
        if a.pack:
            train_pack(a.config, cfg, a.pack, a.data, a.out, a.threads, a.record)
        elif a.trunk:
            train_trunk_job(cfg, study.Study(cfg).find_trunk(a.trunk), a.data, a.out, a.threads)
        else:
            cell = find_cell(cfg, a.cell)
            with tracking.open_run(cfg, cell.cell, "cell", cell.__dict__, study_root(a.out)) as track:
                rec = train_cell(cfg, cell, a.data, a.out, a.threads, a.resume, a.trunk_dir, track=track)
                if a.evaluate and distributed.world().main:
                    r = harness.evaluate_cell(
                        a.out,
                        a.data,
                        cfg["eval"]["batch_size"],
                        a.threads,
                        benchmarks=sorted(cfg["eval"]["benchmarks"]),
                        fingerprint=eval_fingerprint(cfg, rec["fingerprint"]),
                    )
                    track.evaluation(cell.steps, r)
    except (KeyError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    return 0


raise SystemExit(main())
