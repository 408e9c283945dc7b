"""Stage plan: a validated config -> the grid of cells (code fraction x budget x size x seed),
the WSD trunks they branch from, and how jobs use the machine (packs, data parallelism,
memory). Pure arithmetic on the config: no torch, no files."""

from skillscale.plan.cluster import (
    Pack,
    check_pack_fits,
    ddp_nodes,
    ddp_processes,
    ddp_world,
    memory_problems,
    packs,
    per_job,
    train_memory_bytes,
)
from skillscale.plan.grid import (
    Cell,
    Trunk,
    build,
    cell_id,
    cooldown_flops,
    cooldown_steps,
    job_flops,
    ladder,
    shape_of,
    size_name,
    sweep_cost,
    to_frame,
    trunk_id,
    trunks,
    warmup_steps,
    window,
)

__all__ = [
    "Cell", "Pack", "Trunk", "build", "cell_id", "check_pack_fits", "cooldown_flops", "cooldown_steps", "ddp_nodes",
    "ddp_processes", "ddp_world", "job_flops", "ladder", "memory_problems", "packs", "per_job", "shape_of",
    "size_name", "sweep_cost", "to_frame", "train_memory_bytes", "trunk_id", "trunks", "warmup_steps", "window",
]
