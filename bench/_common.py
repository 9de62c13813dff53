"""Shared pieces of the Self-ONN benchmarks: layer shapes, providers, inputs, FLOPs, saved bytes.

Used by ``bench/test_bench_selfonn.py`` (pytest-benchmark) and ``bench/report.py`` (plain script).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Callable

import torch

import selfonn


@dataclass(frozen=True)
class Layer:
    """One Self-ONN layer at a given input length (B is chosen by the caller)."""

    name: str
    cin: int
    cout: int
    L: int
    k: int
    stride: int = 1
    padding: int = 0
    q: int = 3
    transposed: bool = False

    @property
    def L_out(self) -> int:
        if self.transposed:
            return (self.L - 1) * self.stride - 2 * self.padding + (self.k - 1) + 1
        return (self.L + 2 * self.padding - (self.k - 1) - 1) // self.stride + 1

    def weight_shape(self) -> tuple[int, int, int]:
        if self.transposed:
            return (self.q * self.cin, self.cout, self.k)
        return (self.cout, self.q * self.cin, self.k)

    def fwd_flops(self, B: int) -> float:
        """2 * MACs of the one big conv (the power stack's extra multiplies are negligible)."""
        spatial = self.L if self.transposed else self.L_out
        return 2.0 * B * spatial * self.cout * self.q * self.cin * self.k

    def scaled(self, factor: float) -> "Layer":
        """The same layer on a signal `factor` times as long (for quick CPU runs)."""
        return replace(self, L=max(self.k + 1, int(self.L * factor)))


def opgan_layers(L: int = 32000, f: int = 16, q: int = 3) -> list[Layer]:
    """Every distinct Self-ONN layer shape of the Op-GAN generator and discriminator for input length L."""
    g = [
        Layer("gen.down1", 1, f, L, 5, 2, 2, q),
        Layer("gen.down2", f, 2 * f, L // 2, 5, 2, 2, q),
        Layer("gen.down3", 2 * f, 4 * f, L // 4, 5, 2, 2, q),
        Layer("gen.down4", 4 * f, 8 * f, L // 8, 5, 2, 2, q),
        Layer("gen.down5", 8 * f, 8 * f, L // 16, 5, 2, 2, q),
        Layer("gen.up1", 8 * f, 8 * f, L // 16, 5, 1, 2, q),
        Layer("gen.up2", 16 * f, 4 * f, L // 8, 5, 1, 2, q),
        Layer("gen.up3", 8 * f, 2 * f, L // 4, 5, 1, 2, q),
        Layer("gen.up4", 4 * f, f, L // 2, 5, 1, 2, q),
        Layer("gen.out_T", 2 * f, 1, L // 2, 6, 2, 2, q, transposed=True),
    ]
    d: list[Layer] = []
    chans = [1, f, 2 * f, 4 * f, 8 * f, 16 * f]
    length = L
    for i, s in enumerate((8, 8, 8, 4, 4)):
        layer = Layer(f"disc.{i + 1}", chans[i], chans[i + 1], length, 4, s, 1, q)
        d.append(layer)
        length = layer.L_out
    d.append(Layer("disc.head", 16 * f, 1, length, 3, 4, 1, q))
    return g + d


def sweep_layers() -> list[Layer]:
    """Scaling sweep around (C=64, L=16000, q=3, k=5): channels, length and q one at a time."""
    base = Layer("sweep", 64, 64, 16000, 5, 1, 2, 3)
    out = [replace(base, name=f"sweep.C{c}", cin=c, cout=c) for c in (16, 32, 64, 128, 256, 512)]
    out += [replace(base, name=f"sweep.L{n // 1000}k", L=n) for n in (1000, 4000, 16000, 64000)]
    out += [replace(base, name=f"sweep.q{q}", q=q) for q in (1, 3, 5, 7)]
    return out


# ---- providers --------------------------------------------------------------------------------


def _reference(layer: Layer):
    if layer.transposed:
        return lambda x, w, b: selfonn.reference_conv_transpose1d(x, w, b, layer.stride, layer.padding, 0, 1, 1,
                                                                  layer.q)
    return lambda x, w, b: selfonn.reference_conv1d(x, w, b, layer.stride, layer.padding, 1, 1, layer.q)


def _exact_torch(layer: Layer):
    if layer.transposed:
        return lambda x, w, b: selfonn.selfonn_conv_transpose1d(x, w, b, layer.stride, layer.padding, 0, 1, 1,
                                                                layer.q, backend="torch")
    return lambda x, w, b: selfonn.selfonn_conv1d(x, w, b, layer.stride, layer.padding, 1, 1, layer.q,
                                                  backend="torch")


def _fused(layer: Layer):
    from selfonn.kernels.selfonn_conv import triton_selfonn_conv1d, triton_selfonn_conv_transpose1d

    if layer.transposed:
        return lambda x, w, b: triton_selfonn_conv_transpose1d(x, w, b, layer.stride, layer.padding, 0, 1, 1, layer.q)
    return lambda x, w, b: triton_selfonn_conv1d(x, w, b, layer.stride, layer.padding, 1, 1, layer.q)


@functools.lru_cache(maxsize=None)
def _compiled_reference(transposed: bool, stride: int, padding: int, q: int):
    # dynamic=True: one graph per (kind, stride, padding, q), not one per length/channel count.
    if transposed:
        def f(x, w, b):
            return selfonn.reference_conv_transpose1d(x, w, b, stride, padding, 0, 1, 1, q)
    else:
        def f(x, w, b):
            return selfonn.reference_conv1d(x, w, b, stride, padding, 1, 1, q)
    return torch.compile(f, dynamic=True)


def _compiled(layer: Layer):
    return _compiled_reference(layer.transposed, layer.stride, layer.padding, layer.q)


PROVIDERS: dict[str, Callable[[Layer], Callable]] = {
    "fused": _fused,  # Triton kernels (CUDA only)
    "torch": _exact_torch,  # selfonn's exact torch path (the CPU default)
    "reference": _reference,  # FastONN: cat powers + one cuDNN/ATen conv
    "compiled": _compiled,  # torch.compile of the FastONN formulation
}


def provider_available(name: str, device: str) -> str | None:
    """None if the provider can run on `device`, else the reason it is skipped."""
    if name == "fused" and device != "cuda":
        return "fused Triton kernels need CUDA"
    if name == "fused":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "triton not installed"
    if name == "compiled" and device != "cuda":
        return "torch.compile provider measured on CUDA only (CPU inductor compile is minutes)"
    return None


def make_inputs(layer: Layer, B: int, device: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """x in [-1, 1] (audio range), weights scaled like a default init; all require grad."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(B, layer.cin, layer.L, generator=gen) * 2 - 1
    fan_in = layer.q * layer.cin * layer.k
    w = (torch.rand(layer.weight_shape(), generator=gen) * 2 - 1) / fan_in**0.5
    b = torch.rand(layer.cout, generator=gen) * 0.1
    return [t.to(device=device, dtype=dtype).requires_grad_(True) for t in (x, w, b)]


def make_step(fn: Callable, inputs, mode: str) -> Callable[[], None]:
    """A closure running one forward ('fwd') or forward+backward ('fwd+bwd') step."""
    x, w, b = inputs
    if mode == "fwd":
        def step():
            with torch.no_grad():
                fn(x, w, b)
    elif mode == "fwd+bwd":
        def step():
            y = fn(x, w, b)
            y.backward(torch.ones_like(y))
            x.grad = w.grad = b.grad = None
    else:
        raise ValueError(f"mode must be 'fwd' or 'fwd+bwd', got {mode!r}")
    return step


def saved_bytes(fn: Callable, inputs) -> int:
    """Bytes autograd keeps for backward (distinct storages), the 'saved activations' measure."""
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(*inputs)
    del y
    # parameters and x belong to the caller anyway; count them too so ratios are honest
    return sum(seen.values())
