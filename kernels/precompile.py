"""Compile every kernel variant a piece of work will launch, all at once, before running it.

A first step on a GPU tunes each new layer shape: it compiles up to 8 candidate configs per kernel
and benchmarks them. Compiling one at a time costs about half a second per variant, minutes for a
whole Op-GAN in two precisions. :func:`precompile` runs a function (say, one forward and backward
of the model) with every fused launch replaced by *compiling* what that launch would run, the
compiles spread over a thread pool (Triton's compiler releases the GIL), and waits for them. The
compiled kernels land in Triton's in-memory and on-disk caches, so the real run that follows only
benchmarks and launches. Values computed during ``fn`` are garbage (nothing is launched): use it
for its calls, never for its results.

With ``target="cuda:90"`` it needs no GPU at all: CPU tensors stand in for CUDA ones and Triton
compiles for that architecture, filling ``TRITON_CACHE_DIR`` with the very entries a GPU run of the
same Triton version would look up (``tools/gpu/prewarm_cache.py`` packs them for a GPU machine without network).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from . import _launch

log = logging.getLogger(__name__)

#: SMs of the H100 SXM and H200 (what the GPU rounds get); split sizes depend on it
DEFAULT_OFFLINE_SMS = 132


@dataclass
class PrecompileReport:
    """What one :func:`precompile` did: variants submitted per kernel, failures, seconds."""

    variants: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 0

    @property
    def total(self) -> int:
        return sum(self.variants.values())


class _OfflineDriver:
    """Just enough of Triton's active driver for the JIT to compile (warmup) for ``target``: the
    target, device 0 and stream 0. Anything that would launch or load a binary fails loudly."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def get_current_target(self):
        return self.target

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:  # noqa: ARG002
        return 0

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cpu")

    def __getattr__(self, name: str):
        raise RuntimeError(f"selfonn.kernels.precompile: no GPU in offline mode (Triton asked for driver.{name})")


def parse_target(target: str) -> Any:
    """``"cuda:90"`` -> Triton's ``GPUTarget("cuda", 90, 32)`` (``"cuda:90:32"`` names the warp size)."""
    from triton.backends.compiler import GPUTarget

    parts = target.split(":")
    if len(parts) not in (2, 3) or parts[0] != "cuda" or not all(p.isdigit() for p in parts[1:]):
        raise ValueError(f"target must look like 'cuda:90' (backend:arch[:warp_size]), got {target!r}")
    return GPUTarget("cuda", int(parts[1]), int(parts[2]) if len(parts) == 3 else 32)


@contextlib.contextmanager
def _offline(target: str, sms: int) -> Iterator[None]:
    from triton.runtime.driver import driver

    previous = getattr(driver, "_active", None)  # reset_active() would probe for a GPU: restore as it was
    driver.set_active(_OfflineDriver(parse_target(target)))
    _launch._offline_sms = sms
    try:
        yield
    finally:
        _launch._offline_sms = None
        driver._active = previous


def precompile(fn: Callable[[], Any], workers: int | None = None, target: str | None = None,
               sms: int = DEFAULT_OFFLINE_SMS) -> PrecompileReport:
    """Run ``fn`` with every fused-kernel launch replaced by compiling the configs it would run.

    ``workers``: compile threads (default: the CPU count). ``target``: compile for that GPU without
    one (``"cuda:90"``; ``fn`` then uses CPU tensors) with ``sms`` streaming multiprocessors. Needs
    ``triton.AsyncCompileMode`` (Triton >= 3.5) for parallelism; older Tritons compile serially.
    Returns a :class:`PrecompileReport`.
    """
    if _launch.interpreting():
        raise RuntimeError("precompile needs compiled kernels: unset TRITON_INTERPRET")
    if _launch._compile_hook is not None:
        raise RuntimeError("precompile is already running")
    report = PrecompileReport(workers=max(1, workers or os.cpu_count() or 1))

    seen: set[int] = set()
    pending: list[tuple[str, Any]] = []

    def compile_call(kernel: _launch.Kernel, configs: list, prepare: _launch.Prepare) -> None:
        for cfg in configs:
            tag = f"{kernel.name} {dict(cfg.blocks)} w{cfg.num_warps}"
            try:
                got = kernel.warmup(cfg, prepare)
            except Exception as e:  # reported; the real run falls back to the next config
                report.failed.append(f"{tag}: {e!r:.300}")
                continue
            if got is not None and id(got) not in seen:  # the same object again: a variant already compiled
                seen.add(id(got))
                report.variants[kernel.name] = report.variants.get(kernel.name, 0) + 1
                if hasattr(got, "future"):
                    pending.append((tag, got.future))

    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if target is not None:
            stack.enter_context(_offline(target, sms))
        if report.workers > 1:
            stack.enter_context(_launch.async_compiles(report.workers))  # on exit: waits for every compile
        _launch._compile_hook = compile_call
        try:
            fn()
        finally:
            _launch._compile_hook = None
    report.failed += [f"{tag}: {fut.exception()!r:.300}" for tag, fut in pending if fut.exception() is not None]
    report.seconds = time.perf_counter() - t0
    log.info("selfonn.kernels: precompiled %d variants in %.1f s on %d threads%s", report.total, report.seconds,
             report.workers, f" ({len(report.failed)} failed)" if report.failed else "")
    return report
