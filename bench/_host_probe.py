"""Host-path probes: the cheapest calls of each kind a fused layer call is made of.

A small layer's fused fwd+bwd is bound by host time, not by its kernels: the first GPU round measured
400-900 us of host time per call on the GPU machine, against ~50 us for the same Python on a
workstation CPU (``bench/host_overhead.py``). These probes time each ingredient alone on whatever
machine runs them, so a round can say where that time goes: the interpreter, a torch launch, a
Triton launch through its binder or through ``selfonn.kernels``' direct path, the autograd engine.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class Noop(torch.autograd.Function):
    """A custom autograd Function with a fused conv's inputs and outputs and no work: the floor of any
    ``autograd.Function``-based layer call."""

    @staticmethod
    def forward(ctx, x, w, b):  # noqa: ARG004
        ctx.save_for_backward(x, w)
        return x.new_empty(x.shape)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        return torch.empty_like(x), torch.empty_like(w), dy.new_empty(w.shape[0])


def _triton_probes(device: str) -> dict[str, Callable[[], object]]:
    """One tiny Triton kernel launched through Triton's binder and through selfonn's launcher."""
    from _probe_kernel import fill_kernel

    from selfonn.kernels import _launch

    buf = torch.empty(1024, device=device)
    kernel = _launch.Kernel("host_probe", fill_kernel)
    cfg = [_launch.Cfg.of(BLOCK=1024)]
    dev = buf.device

    def direct() -> None:
        kernel(dev, ("host_probe",), cfg, lambda c: ({"ptr": buf, "n": buf.numel()}, 1))

    return {"triton_binder_launch": lambda: fill_kernel[(1,)](buf, buf.numel(), BLOCK=1024),
            "triton_direct_launch": direct}


def _noop_fwd_bwd(device: str) -> Callable[[], None]:
    x = torch.randn(2, 4, 64, device=device, requires_grad=True)
    w = torch.randn(8, 12, 3, device=device, requires_grad=True)
    b = torch.randn(8, device=device, requires_grad=True)
    ones = torch.ones(2, 4, 64, device=device)

    def step() -> None:
        Noop.apply(x, w, b).backward(ones)
        x.grad = w.grad = b.grad = None

    return step


def probes(device: str) -> dict[str, Callable[[], object]]:
    """name -> a call to time per iteration. Triton's only on a GPU (the interpreter is no launch); there
    the no-op Function also runs on CPU tensors: CUDA backward runs on the engine's device thread, so
    the difference is that hand-off."""
    small = torch.zeros(1024, device=device)
    out = {"python_call": lambda: None, "torch_empty": lambda: torch.empty(4096, device=device),
           "torch_launch": small.zero_, "autograd_noop_fwd_bwd": _noop_fwd_bwd(device)}
    if device == "cuda":
        out["autograd_noop_fwd_bwd_cpu_tensors"] = _noop_fwd_bwd("cpu")
        out.update(_triton_probes(device))
        out["cuda_synchronize"] = torch.cuda.synchronize
    return out


def triton_probes_for_tests(device: str) -> dict[str, Callable[[], object]]:
    """The Triton probes on any device (under TRITON_INTERPRET=1 on the CPU: tests run them there)."""
    return _triton_probes(device)
