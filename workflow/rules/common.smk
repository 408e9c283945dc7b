# Shared helpers for the rules: paths and per-cell resources.


def cell_dir(cell):
    return f"{R}/cells/{cell}"


def all_cell_evals():
    return [f"{cell_dir(c)}/eval.json" for c in CELL]


def runtime_min(flops):
    """Runtime request (minutes) of a training job: its FLOPs at resources.flops_per_second
    (default 1e10, a slow CPU core; `skillscale plan --estimate` measures yours) with a 3x
    margin, at least 10 min. Only cluster executors use it (Slurm's --time)."""
    return max(10, int(3 * flops / config["resources"]["flops_per_second"] / 60))


# Per-job caches. Jobs running side by side (on one machine or on a cluster's shared
# filesystem) must not share the HF datasets / hub cache or torch.compile's inductor and
# triton caches: their lock files and half-written entries race. Every shell job gets fresh
# ones in a private folder under $TMPDIR (node-local on most clusters; Snakemake sets it
# from resources.tmpdir), removed when the job ends. A prefix, not part of each rule's
# command, so that adding it retriggers no job (Snakemake reruns jobs whose command changed).
# (Snakemake formats the prefix once: {{ }} are literal braces.)
shell.prefix(
    "set -euo pipefail; "
    'SKILLSCALE_JOB_CACHE="$(mktemp -d "${{TMPDIR:-/tmp}}/skillscale-job.XXXXXX")"; '
    "trap 'rm -rf \"$SKILLSCALE_JOB_CACHE\"' EXIT; "
    'export SKILLSCALE_JOB_CACHE HF_HOME="$SKILLSCALE_JOB_CACHE/hf" '
    'HF_DATASETS_CACHE="$SKILLSCALE_JOB_CACHE/hf/datasets" '
    'TORCHINDUCTOR_CACHE_DIR="$SKILLSCALE_JOB_CACHE/inductor" '
    'TRITON_CACHE_DIR="$SKILLSCALE_JOB_CACHE/triton"; '
)
