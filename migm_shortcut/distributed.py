"""Processes under torchrun: the rank, world size and device of this one, and the process group.

Every command that runs under ``torchrun`` (``collect``, ``train-head``, ``sample``) starts here: one
process per GPU (nccl) or several on a CPU (gloo). Outside torchrun the world is one process and no
group is started.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from migm_shortcut.errors import MigmError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MigmError(f"--device {name} asked for, but no CUDA device is available; use --device cpu")
    return torch.device(name)


def init_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """Rank, world size and device; starts the process group when run under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        global _CPU_GROUP
        # Metric states and small host values live on the CPU: they sync over gloo even when the
        # tensors of the models sync over nccl (creating a group is collective: every rank is here).
        _CPU_GROUP = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    return rank, world, device


_CPU_GROUP = None


def cpu_group():
    """The process group for CPU tensors (metric states): the default one under gloo, a gloo group under nccl."""
    return _CPU_GROUP


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def my_batches(num: int, batch_size: int) -> list[list[int]]:
    """The batches of a one-process run over ``num`` items that this process takes under torchrun: whole
    batches dealt round-robin, so every sample has the batch mates it has in one process (batch mates change
    float round-off, hence tokens). All of them in one process."""
    rank, world = rank_and_world()
    return [list(range(b, min(b + batch_size, num))) for b in range(0, num, batch_size)][rank::world]


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks (``values`` itself in one process)."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, group=cpu_group())
    return t.tolist()


def finish_distributed() -> None:
    """Tear down the process group started by ``init_distributed`` (no-op outside torchrun)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order (just ``[obj]`` in one process)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj, group=cpu_group())
    return out
