# Shared helpers for the rules: paths and per-cell resources.


def cell_dir(cell):
    return f"{R}/cells/{cell}"


def all_cell_evals():
    return [f"{cell_dir(c)}/eval.json" for c in CELL]


def runtime_min(flops):
    """Slurm runtime request, scaled from a job's FLOPs at a conservative throughput."""
    return max(10, int(3 * flops / 1e10 / 60))  # 1e10 FLOP/s: a slow CPU core, 3x margin
