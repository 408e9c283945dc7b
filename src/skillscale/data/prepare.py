"""Prepare a study's data once, the one entry point of the data stage (`python -m skillscale.data`,
the prepare_data rule): the embedded corpora (embedded.py) or configured sources, streamed
(streamed.py), into results/<study>/data/: tokenizer, token shards, held-out eval sets and a
manifest.json with their hashes. (Evaluation benchmarks are copied in by skillscale.benchmarks.)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from skillscale import study
from skillscale.config import ConfigError
from skillscale.data.corpora import DataError
from skillscale.data.embedded import legacy_view, prepare_embedded
from skillscale.data.streamed import hashed_view, prepare_sources

log = logging.getLogger("skillscale.data")


def prepare(cfg: dict, out: Path, threads: int = 1) -> dict:
    """The study's data folder; returns its manifest."""
    if cfg["data"]["sources"] is not None:
        return prepare_sources(cfg, Path(out), threads)
    return prepare_embedded(cfg, Path(out))


def rule_params(dc: dict) -> dict:
    """The data section as the prepare_data rule's params (Snakemake reruns a job whose params changed)."""
    return legacy_view(dc) if dc["sources"] is None else hashed_view(dc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m skillscale.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", required=True, help="study YAML")
    p.add_argument("--out", required=True, help="data folder, e.g. results/<study>/data")
    p.add_argument("--threads", type=int, default=1, help="tokenizer threads (configured sources)")
    a = p.parse_args(argv)
    # the tokenizer's thread pool starts on first use and reads these then
    os.environ["RAYON_NUM_THREADS"] = str(a.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    try:
        m = prepare(study.load(a.config), Path(a.out), a.threads)
    except (DataError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if m.get("layout") == "sources":
        log.info(
            "done in %.1fs: %s",
            m["seconds"],
            ", ".join(f"{k} {v['n_tokens']:,} tokens in {len(v['files'])} files" for k, v in m["shards"].items()),
        )
        return 0
    facts = m.get("sources", {}).get("facts", {})
    how = (
        f"{facts['mentions_per_pass']:,} mentions of {facts['n']:,} facts by population"
        if facts.get("frequency") == "population"  # fact_repeats is 1 there: mention counts vary by fact
        else f"facts repeated {m['shards']['knowledge']['fact_repeats']}x"
    )
    log.info(
        "done in %.1fs: knowledge %d tokens (%s), code %d tokens",
        m["seconds"],
        m["shards"]["knowledge"]["n_tokens"],
        how,
        m["shards"]["code"]["n_tokens"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
