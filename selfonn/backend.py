"""Backend selection for Self-ONN ops: which implementation runs a given call.

Three names:

* ``"torch"``  - the exact pure-PyTorch path (:mod:`selfonn.functional`), any device.
* ``"triton"`` - the fused kernels of :mod:`selfonn.kernels` (CUDA; on CPU only under
  ``TRITON_INTERPRET=1``, which is how the kernels are tested without a GPU).
* ``"auto"``   - Triton for CUDA tensors, the exact torch path for everything else.

A layer's own ``backend=`` wins; ``None`` defers to the process-wide choice set here.
Nothing in this module imports Triton: the kernels are imported only when a call resolves to them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator

import torch

BACKENDS = ("auto", "torch", "triton")

_global_backend = "auto"
_warned_fallback = False
_triton_ok: bool | None = None  # import probe result, cached: 'auto' asks on every CUDA call


def check_backend(name: str | None) -> str | None:
    """Validate a backend name (``None`` means "use the global choice")."""
    if name is None:
        return None
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {name!r}")
    return name


def set_backend(name: str) -> None:
    """Set the process-wide backend used by layers and ops created with ``backend=None``."""
    global _global_backend
    if check_backend(name) is None:
        raise ValueError(f"set_backend needs one of {BACKENDS}, got None")
    _global_backend = name


def get_backend() -> str:
    """The process-wide backend name (``"auto"`` unless changed)."""
    return _global_backend


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Temporarily set the process-wide backend: ``with use_backend("torch"): ...``."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def _triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _triton_offline() -> bool:
    """True inside ``selfonn.kernels.precompile(target=...)``: CPU tensors stand in for a GPU's."""
    launch = sys.modules.get("selfonn.kernels._launch")
    return launch is not None and launch.offline()


def _cpu_runs_triton() -> bool:
    """Whether CPU tensors may take the kernels: offline compilation or the interpreter. The module
    lookup goes first (cheaper than reading the environment), except while dynamo traces: it would
    guard on a module the traced call itself may import."""
    if torch.compiler.is_compiling():
        return _triton_interpret() or _triton_offline()
    return _triton_offline() or _triton_interpret()


def _triton_importable() -> bool:
    global _triton_ok
    if _triton_ok is None:
        try:
            import selfonn.kernels.selfonn_conv  # noqa: F401
        except ImportError:
            _triton_ok = False
        else:
            _triton_ok = True
    return _triton_ok


def resolve_backend(name: str | None, x: torch.Tensor) -> str:
    """Turn a backend choice into the implementation to run for input ``x``: ``"torch"`` or ``"triton"``.

    ``"auto"`` on a CUDA tensor picks Triton, falling back (with one warning) to the exact torch
    path if the kernels cannot be imported, so a GPU machine without Triton still works.
    An explicit ``"triton"`` never falls back: a CPU tensor without ``TRITON_INTERPRET=1`` is an error.
    """
    global _warned_fallback
    if type(name) is str and name == "triton":  # the explicit choice a fused layer call makes, first
        chosen = name
    else:
        chosen = check_backend(name) or _global_backend
    if chosen == "torch":
        return "torch"
    if chosen == "auto":
        if not x.is_cuda:
            return "torch"
        if _triton_importable():
            return "triton"
        if not _warned_fallback:
            _warned_fallback = True
            warnings.warn(
                "selfonn: backend 'auto' found CUDA tensors but the Triton kernels could not be "
                "imported (pip install 'opgan-selfonn[triton]'); using the exact torch path.",
                RuntimeWarning,
                stacklevel=3,
            )
        return "torch"
    # explicit "triton"
    if not x.is_cuda and not _cpu_runs_triton():
        raise RuntimeError(
            f"selfonn backend 'triton' needs CUDA tensors, got a tensor on {x.device}. "
            "Use backend='torch' (or 'auto'), move the model to a GPU, or set TRITON_INTERPRET=1 "
            "to run the kernels in Triton's (slow) CPU interpreter."
        )
    return "triton"
