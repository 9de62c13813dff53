"""Drive the fused kernels' compiled-launch host path on CPU tensors, launching nothing.

The host side of a fused call (argument checks, plan lookup, launch arguments) is plain Python,
the same with or without a GPU. :func:`dry_run` runs it on CPU tensors as it would run for an sm_90
GPU (CPU tensors standing in, as in :func:`selfonn.kernels.precompile.precompile`), with Triton's JIT
and every launch replaced by an entry in a log: tests check what would be launched and with which
arguments, ``bench/host_overhead.py`` times the host path without a GPU. Each kernel runs its first
candidate config; the kernels' tuning, compiled-kernel and plan caches are set aside and restored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from . import _launch
from . import _common, _dispatch
from .precompile import DEFAULT_OFFLINE_SMS


class _Compiled:
    """Stands in for a compiled kernel: what the direct launch path reads from one."""

    packed_metadata = function = None


@contextlib.contextmanager
def dry_run(sms: int = DEFAULT_OFFLINE_SMS, log: bool = True) -> Iterator[list[tuple[str, tuple, list]]]:
    """Inside, fused calls on CPU tensors append ``(path, grid, args)`` per launch to the yielded
    list instead of launching: ``path`` is ``"jit"`` (Triton's binder, the first call of a launch
    key) or ``"direct"`` (a cached compiled kernel or a plan), ``args`` every kernel argument in
    signature order. ``log=False``: nothing is appended (timing). Not thread-safe: it patches
    module state for its duration."""
    entries: list[tuple[str, tuple, list]] = []

    def jit(self, grid, args, cfg):
        if log:
            entries.append(("jit", grid, self.ordered(args, cfg)))
        return _Compiled()

    def direct(ck, grid, vals):
        if log:
            entries.append(("direct", grid, list(vals)))

    patches = [
        (_launch, "interpreting", lambda: False),
        (_launch, "_offline_sms", sms),
        (_launch, "_current_device", lambda: 0),
        (_launch, "run_compiled", direct),
        (_launch.Kernel, "_jit", jit),
        (_launch.Kernel, "_bench", lambda self, cfg, prepare: 0.0),  # the first candidate wins
        (_launch.Kernel, "_precompile", lambda self, candidates, prepare: 0),
    ]
    saved = [(obj, name, obj.__dict__[name]) for obj, name, _ in patches]
    kernels = dict(_common._kernels)  # emptied in place: modules that imported the dict keep seeing it
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        _common._kernels.clear()
        with _dispatch.plans_set_aside():
            yield entries
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
        _common._kernels.clear()
        _common._kernels.update(kernels)
