# Shared helpers for the rules: paths, what training jobs read, and their resources.

from skillscale import plan


def cell_dir(cell):
    return f"{R}/cells/{cell}"


def all_cell_evals():
    return [f"{cell_dir(c)}/eval.json" for c in CELL]


def runtime_min(flops):
    """Runtime request (minutes) of a training job: its FLOPs at resources.flops_per_second
    (default 1e10, a slow CPU core; `skillscale plan --estimate` measures yours) with a 3x
    margin, at least 10 min. Only cluster executors use it (Slurm's --time)."""
    return max(10, int(3 * flops / config["resources"]["flops_per_second"] / 60))


def ddp_processes(n_params):
    return plan.ddp_processes(config, n_params)  # per node


def ddp_nodes(n_params):
    return plan.ddp_nodes(config, n_params)


def launcher(n_params):
    """python, or torchrun with one process per GPU (rank-local threads: train_threads each);
    over several nodes, srun starts one torchrun per node (the job is an `mpi` job to the
    Slurm plugin, so its command is not wrapped in a one-task srun), and they meet at the
    allocation's first node (c10d rendezvous; a port per job, so jobs sharing a node do not
    collide)."""
    p, nodes = ddp_processes(n_params), ddp_nodes(n_params)
    if p * nodes == 1:
        return "python"
    if nodes == 1:
        return f"torchrun --standalone --nproc_per_node {p}"
    need = "${SLURM_JOB_NODELIST:?resources.ddp_nodes > 1 runs only in a Slurm allocation (profiles/slurm)}"
    head = f'"$(scontrol show hostnames "{need}" | head -n 1)"'
    return (
        f"srun torchrun --nnodes {nodes} --nproc_per_node {p} --rdzv_backend c10d"
        f' --rdzv_id "$SLURM_JOB_ID" --rdzv_endpoint {head}:"$((29500 + SLURM_JOB_ID % 1000))"'
    )


def gpu_resources(n_params):
    """What a training job asks Slurm for (None: not requested). One node: `gpu` GPUs (of
    SKILLSCALE_GPU_MODEL, when set). Several: that many nodes with ddp_processes GPUs each
    (gres, per node) and one task per node."""
    p, nodes = ddp_processes(n_params), ddp_nodes(n_params)
    model = os.environ.get("SKILLSCALE_GPU_MODEL") or None
    if nodes == 1:
        return {"gpu": p, "gpu_model": model, "gres": None, "nodes": None, "tasks": None, "mpi": None}
    return {
        "gpu": None,
        "gpu_model": None,
        "gres": f"gpu:{model}:{p}" if model else f"gpu:{p}",
        "nodes": nodes,
        "tasks": nodes,
        "mpi": "srun",
    }


def gpu_request(n_params_of):
    """A training job's GPU resources (gpu_resources) as the lambdas of a rule's resources:
    `n_params_of(wildcards)` is the size the job trains."""
    keys = ("gpu", "gpu_model", "gres", "nodes", "tasks", "mpi")
    return {k: (lambda w, k=k: gpu_resources(n_params_of(w))[k]) for k in keys}


def training_inputs():
    """What every training job reads: the prepared data and, if any, the benchmarks."""
    return {
        "manifest": f"{DATA}/manifest.json",
        "shards": SHARDS,
        "evals": EVAL_FILES,
        "benchmarks": BENCH_MANIFEST,
    }


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


def trunk_done(run):
    """The file that says a trunk is trained: its pack's record, or its own."""
    return f"{R}/packs/{PACK_OF[run]}.json" if run in PACK_OF else f"{TRUNKS}/{run}/{TRUNK_RECORD}"
