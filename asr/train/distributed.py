"""Multi-process (DDP) plumbing: initialisation from torchrun's environment, a local launcher, and small
collectives.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; with WORLD_SIZE > 1 the process group is created
here (NCCL on GPUs, Gloo on CPUs). `spawn_local` starts such a group on this machine without torchrun
(what `trainer.num_procs` uses). Single-process runs never touch torch.distributed.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable
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


def spawn_local(fn: Callable[..., object], args: tuple, num_procs: int) -> None:
    """Run fn(*args) in `num_procs` new processes that form one process group on this machine (what
    `torchrun --standalone --nproc_per_node num_procs` does), and wait for them all.

    This process's CPU threads are shared out: each process gets torch.get_num_threads() // num_procs
    (at least 1). Small models get more out of two CPU cores as two single-threaded processes than as
    one process with two threads (1.24x the audio per second for synth's transformer_small). The
    processes log to this process's log files. An exception in any of them is raised here
    (torch.multiprocessing.ProcessRaisedException, with the child's traceback).
    """
    import torch.multiprocessing as mp

    if num_procs < 1:
        raise ValueError(f"spawn_local: num_procs must be >= 1, got {num_procs}")
    root = logging.getLogger()
    threads = max(1, torch.get_num_threads() // num_procs)
    mp.start_processes(_spawned_main, args=(fn, args, num_procs, _free_port(), threads, root.level,
                                            _log_targets(root)),
                       nprocs=num_procs, join=True, start_method="spawn")


LogTarget = tuple[str, str | None, str | None]  # (a log file's path or "stdout"/"stderr", format, date format)


def _log_targets(logger: logging.Logger) -> list[LogTarget]:
    """Where and how `logger`'s handlers write, in a form a spawned process can rebuild them from."""
    targets = []
    for handler in logger.handlers:
        fmt, datefmt = (handler.formatter._fmt, handler.formatter.datefmt) if handler.formatter else (None, None)
        if isinstance(handler, logging.FileHandler):
            targets.append((handler.baseFilename, fmt, datefmt))
        elif isinstance(handler, logging.StreamHandler):
            targets.append(("stdout" if handler.stream is sys.stdout else "stderr", fmt, datefmt))
    return targets


def _handler(target: LogTarget) -> logging.Handler:
    where, fmt, datefmt = target
    streams = {"stdout": sys.stdout, "stderr": sys.stderr}
    handler = logging.StreamHandler(streams[where]) if where in streams else logging.FileHandler(where)
    if fmt is not None:
        handler.setFormatter(logging.Formatter(fmt, datefmt))
    return handler


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawned_main(rank: int, fn: Callable[..., object], args: tuple, world_size: int, port: int, threads: int,
                  log_level: int, log_targets: list[LogTarget]) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS=str(threads))
    torch.set_num_threads(threads)
    # The parent's handlers and formats (Hydra's console and run.log, for asr-run), or the console.
    handlers = [_handler(target) for target in log_targets] or [logging.StreamHandler()]
    # The other ranks repeat rank 0's progress messages: only their warnings and errors are logged.
    level = log_level if rank == 0 else max(log_level, logging.WARNING)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    try:
        fn(*args)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


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
