"""Minimal distributed helper, initialised from torchrun's environment (RANK, WORLD_SIZE, ...).

`torchrun --nproc_per_node=N train.py` sets the variables; a plain `python train.py` sees none and
runs as a single process. NCCL on CUDA, gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "init", "is_main", "barrier", "any_flag", "any_flags", "wrap", "unwrap", "shutdown"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


_INFO = DistInfo()


def init(device_type: str = "cpu") -> DistInfo:
    """Join the process group described by the environment (no-op for a single process)."""
    global _INFO
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _INFO = DistInfo()
        return _INFO
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    _INFO = DistInfo(rank, world, local)
    return _INFO


def info() -> DistInfo:
    return _INFO


def is_main() -> bool:
    return _INFO.rank == 0


def barrier() -> None:
    if _INFO.enabled:
        dist.barrier()


def any_flag(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank when `flag` is true on any rank (ranks must agree on when to stop)."""
    if not _INFO.enabled:
        return flag
    return any_flags((flag,), device)[0]


def any_flags(flags: tuple[bool, ...], device: torch.device | str = "cpu") -> tuple[bool, ...]:
    """`any_flag` for several flags in one all-reduce (one per training step instead of one per flag)."""
    if not _INFO.enabled:
        return tuple(bool(f) for f in flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v > 0) for v in t.tolist())


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` when running distributed, else `model` itself."""
    if not _INFO.enabled:
        return model
    ids = [device.index if device.index is not None else _INFO.local_rank] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def shutdown() -> None:
    global _INFO
    if dist.is_initialized():
        dist.destroy_process_group()
    _INFO = DistInfo()
