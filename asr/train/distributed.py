"""Multi-process (DDP) plumbing: initialisation from torchrun's environment and small collectives.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; with WORLD_SIZE > 1 the process group is created
here (NCCL on GPUs, Gloo on CPUs). Single-process runs never touch torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and figures."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "cpu") -> DistInfo:
    """Join the process group described by the environment (torchrun), if any."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={world_size} but {name} is not set: launch multi-process runs "
                               "with torchrun")
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]))


def resolve_device(device: str, info: DistInfo) -> torch.device:
    """The device of this process: each process of a multi-GPU run uses the GPU of its local rank."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"TrainerConfig.device={device!r} but CUDA is not available on this machine")
        if info.enabled or device == "cuda":
            device = f"cuda:{info.local_rank}"
        torch.cuda.set_device(torch.device(device))
    return torch.device(device)


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over processes (a copy; identity in single-process runs)."""
    values = values.clone()
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_true(flag: bool, device: torch.device, info: DistInfo) -> bool:
    """Whether `flag` holds on every process (so that all of them take the same branch)."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item() > 0)
