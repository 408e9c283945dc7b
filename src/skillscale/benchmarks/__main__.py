"""`python -m skillscale.benchmarks` (the prepare_benchmarks rule): copy each configured
evaluation benchmark's documents into results/<study>/data/benchmarks/."""

import argparse
import sys
from pathlib import Path

from skillscale import study
from skillscale.benchmarks import BenchmarkError, copy_documents
from skillscale.config import ConfigError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m skillscale.benchmarks", description=__doc__)
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args(argv)
    try:
        m = copy_documents(study.load(a.config), a.out)
    except (BenchmarkError, ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, r in m.items():
        print(f"{name} ({r['skill']}): {r['n_docs']} docs from {r['source']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
