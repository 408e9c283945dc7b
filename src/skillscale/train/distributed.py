"""Data parallelism kept outside the training loop: who this process is, and the few
collective steps the loop needs.

A job started by `torchrun --nproc_per_node P` (the workflow does so for cells at or above
`resources.ddp_min_params`) has P processes, one per GPU (or CPU slice); each trains on
its rows of every global batch and DDP averages the gradients, so a step equals the
single-process step on the whole batch up to float summation order. Only rank 0 writes
files; the others wait at a barrier where a later step reads what rank 0 wrote. A plain
`python -m skillscale.train` is world size 1, and every helper here is then a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch (its size divides the batch: checked
        at config validation, resources.ddp_processes against train.batch_size)."""
        if self.size == 1:
            return batch
        n = batch.shape[0] // self.size
        return batch[self.rank * n : (self.rank + 1) * n]

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over ranks (each rank's loss is the mean over equally many rows)."""
        if self.size > 1:
            x = x.clone()
            torch.distributed.all_reduce(x)
            x /= self.size
        return x

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()


_WORLD: World | None = None


def world(device: str = "cpu") -> World:
    """This process's world, as torchrun describes it in the environment (RANK, WORLD_SIZE,
    LOCAL_RANK), its process group started on first use (NCCL on CUDA, gloo on CPU);
    world size 1 without torchrun."""
    global _WORLD
    if _WORLD is None:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        _WORLD = World() if size == 1 else World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
        if size > 1:
            torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
            if device == "cuda":
                torch.cuda.set_device(_WORLD.local_rank)
    return _WORLD


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """The module whose forward syncs gradients in backward (DDP), or the model itself."""
    if world.size == 1:
        return model
    # deferred: DDP's wrapper only in a data-parallel job
    from torch.nn.parallel import DistributedDataParallel

    ids = [world.local_rank] if next(model.parameters()).is_cuda else None
    return DistributedDataParallel(model, device_ids=ids)
