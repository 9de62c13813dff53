"""Where a run computes: the one `--device` resolver (trainer, restore, evaluate) and the CPU thread count.

Kept apart from `distrib` (which joins process groups) so that tools that never train import only torch.
"""
from __future__ import annotations

import os

import torch

__all__ = ["DeviceError", "cpu_threads", "resolve_device"]


class DeviceError(ValueError):
    """A `--device` that names nothing usable here (unknown name, or CUDA asked for but absent)."""


def resolve_device(name: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda`, `cuda:N` or `mps` -> a usable torch.device.

    `local_rank` is given by distributed runs: each process then takes the CUDA device of its rank.
    Raises DeviceError with a one-line reason instead of failing later inside `.to(device)`.
    """
    if name is None or str(name) == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {str(name)!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(name)!r} requested but no CUDA device is available")
        if local_rank is not None:
            return torch.device("cuda", local_rank)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(name)!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"device {str(name)!r} requested but MPS is not available")
    elif dev.type != "cpu":
        raise DeviceError(f"device {str(name)!r} is not supported; use auto, cpu, cuda or cuda:N")
    return dev


def _usable_cpus() -> float:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota if one is set."""
    try:
        n = float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        n = float(os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            n = min(n, float(quota) / float(period))
    except (OSError, ValueError):
        pass
    return n


def cpu_threads() -> int:
    """Intra-op threads for CPU inference: the CPUs not already kept busy by others, at least 1.

    torch's default is one thread per core whatever the load; on a machine whose cores are taken
    (load average at or above the CPU count) its threads wait on each other and a restore ran
    2-10x slower than with one thread (bench/restore_threads.py). An idle machine still gets every
    core torch would use.
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    idle = int(_usable_cpus() - load + 0.5)
    return max(1, min(torch.get_num_threads(), idle))
