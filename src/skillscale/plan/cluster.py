"""Where the grid's jobs run: small trunks packed into one job (resources.pack), data
parallelism over processes and nodes (resources.ddp_*), and whether a job fits in memory."""

from __future__ import annotations

from dataclasses import dataclass

from skillscale.model.shapes import ModelShape, param_counts
from skillscale.plan.grid import Trunk, build, trunks


# -- packing small trunks into one job (resources.pack) ------------------------------------------
@dataclass(frozen=True)
class Pack:
    """WSD trunks of one size trained side by side in one job, one process each, on the job's
    one GPU (or train_threads CPU threads each)."""

    name: str
    runs: tuple[str, ...]
    size: str
    n_params: int


def ddp_processes(cfg: dict, n_params: int) -> int:
    """Data-parallel processes per node of a training job: resources.ddp_processes for
    models of at least resources.ddp_min_params parameters, else 1."""
    rc = cfg["resources"]
    return rc["ddp_processes"] if n_params >= rc["ddp_min_params"] else 1


def ddp_nodes(cfg: dict, n_params: int) -> int:
    """Nodes of a training job: resources.ddp_nodes for data-parallel sizes, else 1."""
    rc = cfg["resources"]
    return rc["ddp_nodes"] if n_params >= rc["ddp_min_params"] else 1


def ddp_world(cfg: dict, n_params: int) -> int:
    """All processes (GPUs) of a training job, over its nodes."""
    return ddp_processes(cfg, n_params) * ddp_nodes(cfg, n_params)


def per_job(cfg: dict, n_params: int) -> int:
    """How many trunks of this size one job trains side by side: the first resources.pack
    entry (by max_params) the size fits under, 1 for none; data-parallel sizes never pack."""
    rc = cfg["resources"]
    if ddp_world(cfg, n_params) > 1:
        return 1
    for entry in sorted(rc["pack"], key=lambda e: e["max_params"]):
        if n_params <= entry["max_params"]:
            return entry["per_job"]
    return 1


def packs(cfg: dict, runs: list[Trunk]) -> list[Pack]:
    """The trunks of each size, per_job at a time in (seed, code fraction) order: members of a
    pack have the same shape and steps, so none waits long for the others. A lone remainder
    trains as its own job."""
    if cfg["train"]["schedule"] != "wsd":
        return []
    by_size: dict[str, list[Trunk]] = {}
    for r in runs:
        by_size.setdefault(r.size, []).append(r)
    out = []
    for size, members in by_size.items():
        k = per_job(cfg, members[0].n_params)
        members = sorted(members, key=lambda r: (r.seed, r.code_frac))
        for i in range(0, len(members), k if k > 1 else len(members) + 1):
            chunk = members[i : i + k]
            if k > 1 and len(chunk) > 1:
                out.append(Pack(f"{size}_pack{i // k}", tuple(r.run for r in chunk), size, chunk[0].n_params))
    return out


def train_memory_bytes(cfg: dict, shape: ModelShape) -> float:
    """A CUDA training process's memory, roughly: the context and allocator slack (1 GiB),
    fp32 weights, gradients and AdamW's two moments (16 bytes a parameter), and for the
    rows of one forward/backward pass (resources.micro_batch_rows, or the process's share
    of the batch) the activations backward keeps, ~34 d_model values a token a layer
    (Korthikanti et al. 2022; flash attention keeps no seq_len^2 scores) at 2 bytes in
    bf16, 4 in fp32, plus the fp32 logits' three passes."""
    rc, tc = cfg["resources"], cfg["train"]
    rows = rc["micro_batch_rows"] or tc["batch_size"] // ddp_world(cfg, param_counts(shape)["standard"])
    tokens = rows * shape.seq_len
    act = tokens * shape.n_layers * 34 * shape.d_model * (4 if tc["precision"] == "fp32" else 2)
    return 2**30 + 16 * param_counts(shape)["total"] + act + 3 * tokens * shape.vocab_size * 4


def check_pack_fits(cfg: dict, runs: list[Trunk], device_bytes: float, key: str = "resources.pack") -> None:
    """Trunks sharing one GPU that need more than 90% of its memory are refused before any
    starts, naming their size and the memory they need."""
    cells, _ = build(cfg)
    shape = {c.size: c.shape(cfg) for c in cells}
    need = sum(train_memory_bytes(cfg, shape[r.size]) for r in runs)
    if need > 0.9 * device_bytes:
        what = (
            f"{len(runs)} trunks of {runs[0].size} side by side need"
            if len(runs) > 1
            else f"a trunk of {runs[0].size} needs"
        )
        fix = (
            f"lower per_job for {runs[0].n_params:,} parameters"
            if len(runs) > 1
            else "set resources.micro_batch_rows (fewer rows per forward/backward pass) or resources.ddp_processes"
        )
        raise ValueError(
            f"{key}: {what} about {need / 2**30:.1f} GiB, more than 90% of the GPU's"
            f" {device_bytes / 2**30:.0f} GiB; {fix}"
        )


def memory_problems(cfg: dict) -> list[str]:
    """At planning, for a study that trains on GPUs: jobs (a trunk alone, or a pack) that
    cannot fit resources.gpu_memory_gb; and packing without WSD."""
    rc = cfg["resources"]
    if rc["pack"] and cfg["train"]["schedule"] != "wsd":
        return ["resources.pack: packs WSD trunks (train.schedule: wsd); cosine cells train one per job"]
    if cfg["train"]["device"] != "cuda":
        return []  # CPU jobs: their memory is the node's (the rules' mem_mb)
    cells, _ = build(cfg)
    runs = {r.run: r for r in trunks(cfg, cells)}
    groups = [[runs[r] for r in p.runs] for p in packs(cfg, list(runs.values()))]
    packed = {r.run for g in groups for r in g}
    groups += [[r] for r in runs.values() if r.run not in packed]
    out = []
    for g in groups:
        key = "resources.pack" if len(g) > 1 else "resources.micro_batch_rows"
        try:
            check_pack_fits(cfg, g, rc["gpu_memory_gb"] * 2**30, key=f"{key} (against resources.gpu_memory_gb)")
        except ValueError as e:
            out.append(str(e))
    return sorted(set(out))
