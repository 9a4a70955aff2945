"""Fine-tuning over several processes (PyTorch DistributedDataParallel): the pieces the trainer uses.

:mod:`.launch` starts the processes (or joins a ``torchrun`` group); this module is what each of them
needs inside the training loop.

Each process trains on its share of each epoch (``DistributedSampler``) with gradients averaged by
DDP; all validate the same network, so they take the same best-epoch and stopping decisions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import MedvisionError


@dataclass(frozen=True)
class Group:
    """This process's place in the group: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int
    world_size: int
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> Group | None:
    """The group a launcher (``torchrun``, a scheduler) started this process in; None when alone."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ["RANK"]) if world > 1 else 0
    except (KeyError, ValueError):
        return None
    if world <= 1:
        return None
    return Group(rank, world, int(os.environ.get("LOCAL_RANK", rank)))


def check_nproc(nproc: int, device: str) -> None:
    """Refuse a process count this machine cannot give: more GPUs than it has."""
    if nproc < 1:
        raise MedvisionError(f"--nproc must be at least 1, not {nproc}")
    if uses_cuda(device) and nproc > torch.cuda.device_count():
        raise MedvisionError(f"--nproc {nproc} needs {nproc} GPUs; this machine has {torch.cuda.device_count()}")


def uses_cuda(device: str) -> bool:
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


# -- pieces the trainer uses --------------------------------------------------------------------
def wrap(network: torch.nn.Module, group: Group | None, device: torch.device) -> torch.nn.Module:
    """``network`` in DDP for a group (its parameters broadcast from process 0), else as it is."""
    if group is None:
        return network
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)


def sampler(dataset, group: Group | None, seed: int):
    """A ``DistributedSampler`` giving this process its share of ``dataset`` (None when alone)."""
    if group is None:
        return None
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, num_replicas=group.world_size, rank=group.rank, shuffle=True, seed=seed)


def share_of(steps: int, group: Group | None) -> int:
    """Steps per epoch of one process, so that the group sees as many batches as one process would."""
    return steps if group is None else max(1, -(-steps // group.world_size))


def agree(flag: bool, group: Group | None) -> bool:
    """True in every process when it is true in any (e.g. "time is up", measured by each clock)."""
    if group is None:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def same_buffers(network: torch.nn.Module) -> None:
    """Process 0's buffers (e.g. BatchNorm running statistics) in every process."""
    with torch.no_grad():
        for buffer in network.buffers():
            dist.broadcast(buffer, src=0)


__all__ = ["Group", "agree", "check_nproc", "from_environment", "same_buffers", "sampler", "share_of", "wrap"]
