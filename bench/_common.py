"""Shared pieces of the Self-ONN benchmarks: layer shapes, providers, inputs, FLOPs, saved bytes.

Used by ``bench/test_bench_selfonn.py`` (pytest-benchmark), ``bench/report.py`` and the GPU round
(``tools/gpu/gpu_round.py``). Layer shapes come from the models (``opgan.models.opgan_layer_shapes``),
never from a copy here.

Baselines are measured as a user would run them at their best: cuDNN picks its algorithms by timing
them (:func:`fair_baselines`: ``torch.backends.cudnn.benchmark = True``; its heuristic alone picked a
1.8 ms bf16 weight-gradient kernel for gen.down3) and ``torch.compile`` specialises on each shape
(:data:`COMPILE_SETTINGS`: ``dynamic=False``). :func:`best_baseline` is the faster of the FastONN
formulation and its compile per layer, what the fused kernels are held to.
"""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Callable

import torch

import selfonn
from opgan.models import CONTEXT_PREFIX, LayerShape, opgan_layer_shapes


#: A layer shape as the models report it: name, kind, c_in, c_out, k, stride, padding, L_in, q, dilation.
Layer = LayerShape


def opgan_layers(L: int = 32000, f: int = 16, q: int = 3, fold_upsample: bool = True,
                 context: bool = False) -> list[Layer]:
    """Every Self-ONN call of the Op-GAN generator and discriminator for input length L, read from the
    models themselves (`opgan.models.opgan_layer_shapes`), so the benchmarks cannot drift from them.
    ``context``: then also the dilated context candidate's distinct layers (``gen.ctx.*``), after the 16."""
    return opgan_layer_shapes(L, filters=f, q=q, fold_upsample=fold_upsample, context=context)


def is_context(layer: Layer | str) -> bool:
    """A layer of the dilated context blocks (kept out of the 16-layer totals older records hold)."""
    return (layer if isinstance(layer, str) else layer.name).startswith(CONTEXT_PREFIX)


def sweep_layers() -> list[Layer]:
    """Scaling sweep around (C=64, L=16000, q=3, k=5): channels, length and q one at a time."""
    base = Layer("sweep", "conv", 64, 64, 5, 1, 2, 16000, 3)
    out = [replace(base, name=f"sweep.C{c}", c_in=c, c_out=c) for c in (16, 32, 64, 128, 256, 512)]
    out += [replace(base, name=f"sweep.L{n // 1000}k", L_in=n) for n in (1000, 4000, 16000, 64000)]
    out += [replace(base, name=f"sweep.q{q}", q=q) for q in (1, 3, 5, 7)]
    return out


# ---- providers --------------------------------------------------------------------------------


def _reference(layer: Layer):
    if layer.transposed:
        return lambda x, w, b: selfonn.reference_conv_transpose1d(x, w, b, layer.stride, layer.padding, 0, 1,
                                                                  layer.dilation, layer.q)
    return lambda x, w, b: selfonn.reference_conv1d(x, w, b, layer.stride, layer.padding, layer.dilation, 1, layer.q)


def _selfonn_op(layer: Layer, backend: str):
    """The layer through selfonn's public functional API on one backend (what a user's model runs)."""
    if layer.transposed:
        return lambda x, w, b: selfonn.selfonn_conv_transpose1d(x, w, b, layer.stride, layer.padding, 0, 1,
                                                                layer.dilation, layer.q, backend=backend)
    return lambda x, w, b: selfonn.selfonn_conv1d(x, w, b, layer.stride, layer.padding, layer.dilation, 1, layer.q,
                                                  backend=backend)


def _exact_torch(layer: Layer):
    return _selfonn_op(layer, "torch")


def _fused(layer: Layer):
    # Through the dispatcher, not the kernel module's entry points: the same call (and autocast
    # handling) as a model's, and independent of how the kernel module names its launchers.
    return _selfonn_op(layer, "triton")


#: the torch.compile backend of the 'compiled' provider ('aot_eager' in CPU smoke runs: no C++ build)
COMPILE_BACKEND = {"name": "inductor"}
#: how every torch.compile baseline is built: one graph per shape, as a user compiling a fixed-size
#: training step gets (``dynamic=True`` kept symbolic lengths and cost gen.down1 a 1.1 ms reduction)
COMPILE_SETTINGS: dict[str, Any] = {"dynamic": False}
#: the environment variable that opts the CPU into the 'compiled' provider (inductor on a CPU builds
#: C++ for each shape: minutes for the whole suite, so it is off unless asked for)
CPU_COMPILE_ENV = "SELFONN_BENCH_CPU_COMPILE"


def fair_baselines() -> dict[str, Any]:
    """Let cuDNN time its algorithms for every conv shape (``cudnn.benchmark``) and return the settings
    the baselines run under, for a record's ``env``. Call before the first timed call; warm-up calls
    then include cuDNN's search."""
    torch.backends.cudnn.benchmark = True
    return {"cudnn_benchmark": torch.backends.cudnn.benchmark,
            "compile": {"backend": COMPILE_BACKEND["name"], **COMPILE_SETTINGS}}


def best_baseline(ms: dict[str, float | None]) -> tuple[str, float] | tuple[None, None]:
    """The faster of the FastONN formulation ('reference') and its compile ('compiled'): (name, ms),
    or (None, None) when neither was measured."""
    got = [(ms[p], p) for p in ("reference", "compiled") if ms.get(p)]
    if not got:
        return None, None
    value, name = min(got)
    return name, value


@functools.lru_cache(maxsize=None)
def _compiled_reference(transposed: bool, stride: int, padding: int, q: int, backend: str, dilation: int = 1):
    # One wrapper per (kind, stride, padding, q, dilation); dynamic=False: dynamo specialises each layer's
    # shapes (a recompile per shape, each a cache entry of its own).
    if transposed:
        def f(x, w, b):
            return selfonn.reference_conv_transpose1d(x, w, b, stride, padding, 0, 1, dilation, q)
    else:
        def f(x, w, b):
            return selfonn.reference_conv1d(x, w, b, stride, padding, dilation, 1, q)
    _raise_recompile_limits()
    return torch.compile(f, backend=backend, **COMPILE_SETTINGS)


def _raise_recompile_limits(n: int = 1024) -> None:
    """Every compiled provider shares one of two code objects (``f`` above), so across a benchmark's
    layers, dtypes and grad modes dynamo recompiles far past its default limit of 8 and then quietly
    runs ``f`` eagerly: the 'compiled' column would time the uncompiled reference."""
    cfg = torch._dynamo.config
    for name, old_name in (("recompile_limit", "cache_size_limit"),
                           ("accumulated_recompile_limit", "accumulated_cache_size_limit")):
        name = name if hasattr(cfg, name) else old_name  # renamed in torch 2.7
        if getattr(cfg, name, n) < n:
            setattr(cfg, name, n)


def _compiled(layer: Layer):
    return _compiled_reference(layer.transposed, layer.stride, layer.padding, layer.q, COMPILE_BACKEND["name"],
                               layer.dilation)


PROVIDERS: dict[str, Callable[[Layer], Callable]] = {
    "fused": _fused,  # Triton kernels (CUDA; CPU only under TRITON_INTERPRET=1)
    "torch": _exact_torch,  # selfonn's exact torch path (the CPU default)
    "reference": _reference,  # FastONN: cat powers + one cuDNN/ATen conv
    "compiled": _compiled,  # torch.compile of the FastONN formulation
}


def provider_available(name: str, device: str, cpu_compile: bool | None = None) -> str | None:
    """None if the provider can run on `device`, else the reason it is skipped. ``cpu_compile``: the
    'compiled' provider also on a CPU with inductor (default: ``$SELFONN_BENCH_CPU_COMPILE=1``)."""
    if name == "fused" and device != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return "fused Triton kernels need CUDA (or TRITON_INTERPRET=1)"
    if name == "fused":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "triton not installed"
    if cpu_compile is None:
        cpu_compile = os.environ.get(CPU_COMPILE_ENV) == "1"
    if name == "compiled" and device != "cuda" and COMPILE_BACKEND["name"] == "inductor" and not cpu_compile:
        return (f"torch.compile on a CPU builds C++ per shape (minutes): opt in with --bench-compile "
                f"or {CPU_COMPILE_ENV}=1")
    return None


# ---- the FastONN formulation inside the models -------------------------------------------------


def _formulation_conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, q=1, backend=None):
    return selfonn.reference_conv1d(x, weight, bias, stride, padding, dilation, groups, q)


def _formulation_conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                                  dilation=1, q=1, backend=None):
    return selfonn.reference_conv_transpose1d(x, weight, bias, stride, padding, output_padding, groups, dilation, q)


#: the modules whose Self-ONN calls :func:`formulation` redirects (the layers, and the generator's
#: folded upsample, which calls the functional op itself)
_FORMULATION_SITES = ("selfonn.modules", "opgan.models.generator")


@contextlib.contextmanager
def formulation() -> Iterator[None]:
    """Every Self-ONN layer of the models computed as FastONN does (cat the powers, one cuDNN/ATen
    conv, autograd saving the Q-times larger input) inside: the third backend of the training step,
    what a user of the original formulation trains with. Nothing in ``selfonn`` changes outside."""
    import importlib

    swaps = {"selfonn_conv1d": _formulation_conv1d, "selfonn_conv_transpose1d": _formulation_conv_transpose1d}
    saved: list[tuple[Any, str, Any]] = []
    try:
        for name in _FORMULATION_SITES:
            mod = sys.modules.get(name) or importlib.import_module(name)
            for attr, fn in swaps.items():
                if hasattr(mod, attr):
                    saved.append((mod, attr, getattr(mod, attr)))
                    setattr(mod, attr, fn)
        yield
    finally:
        for mod, attr, fn in reversed(saved):
            setattr(mod, attr, fn)


def make_inputs(layer: Layer, B: int, device: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """x in [-1, 1] (audio range), weights scaled like a default init; all require grad."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(B, layer.c_in, layer.L_in, generator=gen) * 2 - 1
    fan_in = layer.q * layer.c_in * layer.k
    w = (torch.rand(layer.weight_shape(), generator=gen) * 2 - 1) / fan_in**0.5
    b = torch.rand(layer.c_out, generator=gen) * 0.1
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


def time_step(step, device: str, warmup: int, repeats: int, min_time: float) -> float:
    """Median milliseconds of one step (CUDA events on GPU, perf_counter on CPU)."""
    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    times: list[float] = []
    start_all = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start_all < min_time and len(times) < 10 * repeats):
        times.append(call_ms(step, device))
    return statistics.median(times)


def timed_calls(step, device: str, calls: int) -> tuple[list[float], list[float]]:
    """(wall ms, host ms) of each of ``calls`` calls, each call on an idle device: wall by CUDA events
    (launch gaps included), host by perf_counter around the call without waiting for the device (its
    enqueue time; the wait after each call keeps the launch queue from filling and stalling the host)."""
    wall: list[float] = []
    host: list[float] = []
    if device == "cuda":
        torch.cuda.synchronize()
    for _ in range(calls):
        if device == "cuda":
            t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            h0 = time.perf_counter()
            t0.record()
            step()
            t1.record()
            h1 = time.perf_counter()
            t1.synchronize()
            wall.append(t0.elapsed_time(t1))
        else:
            h0 = time.perf_counter()
            step()
            h1 = time.perf_counter()
            wall.append((h1 - h0) * 1e3)
        host.append((h1 - h0) * 1e3)
    return wall, host


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max of timings, the form every record keeps them in."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def call_ms(step, device: str) -> float:
    """Milliseconds of one call: CUDA events on GPU (launch gaps included), perf_counter on CPU."""
    if device != "cuda":
        t0 = time.perf_counter()
        step()
        return (time.perf_counter() - t0) * 1e3
    t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0.record()
    step()
    t1.record()
    t1.synchronize()
    return t0.elapsed_time(t1)


def peak_mib(step, device: str) -> float | None:
    """Peak memory allocated during one step, above what was allocated before it (CUDA only)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20
