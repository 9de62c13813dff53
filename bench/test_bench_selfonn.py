"""pytest-benchmark: Self-ONN layer throughput per provider x mode x layer shape.

    python -m pytest bench/ --benchmark-only                         # Op-GAN shapes
    python -m pytest bench/ --benchmark-only --benchmark-autosave    # ... and save the run (.benchmarks/)
    python -m pytest bench/ --benchmark-only --benchmark-compare     # ... against the last saved run
    python -m pytest bench/ --benchmark-only --benchmark-min-rounds 20 --benchmark-max-time 2
    python -m pytest bench/ --benchmark-only --sweep                 # + C / L / q scaling sweep
    python -m pytest bench/ --benchmark-only --context               # + the dilated context layers (gen.ctx.*)
    python -m pytest bench/ --benchmark-only -k "gen.up2 and fwd+bwd"

Providers: fused (Triton; CUDA, or a CPU under TRITON_INTERPRET=1), torch (selfonn's exact path),
reference (FastONN: cat powers + one conv), compiled (torch.compile(reference, dynamic=False): CUDA,
or a CPU with --bench-compile). Each group is one layer and mode at the shape actually run (its label
says batch, channels and length), providers side by side. Each benchmark records achieved TFLOP/s,
peak memory (CUDA) and the bytes autograd saves in `extra_info`; CUDA is synchronised inside the
timed call; two calls before the timing take compiles, autotuning and cuDNN's algorithm search.
`python bench/report.py` prints the same comparison as one ratio table.
"""

from __future__ import annotations

import pytest
import torch
from _common import (
    PROVIDERS,
    is_context,
    make_inputs,
    make_step,
    opgan_layers,
    provider_available,
    saved_bytes,
    sweep_layers,
)

OPGAN = [la.name for la in opgan_layers(32000) if not is_context(la)]
CONTEXT = [la.name for la in opgan_layers(32000, context=True) if is_context(la)]
SWEEP = {la.name: la for la in sweep_layers()}
LAYERS = (OPGAN + [pytest.param(name, marks=pytest.mark.context) for name in CONTEXT]
          + [pytest.param(name, marks=pytest.mark.sweep) for name in SWEEP])


def _layer(name: str, length: int):
    """The layer run: a sweep shape as it is, an Op-GAN layer of the models at the requested length."""
    if name in SWEEP:
        return SWEEP[name]
    return {la.name: la for la in opgan_layers(length, context=True)}[name]


def group_label(layer, mode: str, batch: int) -> str:
    kind = " transposed" if layer.transposed else ""
    dil = f" d={layer.dilation}" if layer.dilation != 1 else ""
    return (f"{layer.name} {mode}: B={batch} C {layer.c_in}->{layer.c_out} L_in={layer.L_in} "
            f"k={layer.k} s={layer.stride}{dil} q={layer.q}{kind}")


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("layer_name", LAYERS)
def test_selfonn_layer(benchmark, bench_config, layer_name, provider, mode):
    device, B = bench_config.device, bench_config.batch
    reason = provider_available(provider, device, cpu_compile=bench_config.cpu_compile)
    if reason:
        pytest.skip(reason)
    layer = _layer(layer_name, bench_config.length)
    benchmark.group = group_label(layer, mode, B)
    inputs = make_inputs(layer, B, device)
    fn = PROVIDERS[provider](layer)
    step = make_step(fn, inputs, mode)

    def timed():
        step()
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):  # compile / autotune / cuDNN's algorithm search outside the timing
        timed()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    benchmark(timed)
    benchmark.extra_info.update(
        provider=provider, mode=mode, layer=layer.name, B=B, L=layer.L_in, cin=layer.c_in, cout=layer.c_out,
        k=layer.k, stride=layer.stride, dilation=layer.dilation, q=layer.q, transposed=layer.transposed)
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable (one plain call)
    if stats is not None:
        flops = layer.fwd_flops(B) * (3.0 if mode == "fwd+bwd" else 1.0)
        benchmark.extra_info["tflops"] = flops / stats.stats.median / 1e12
    if device == "cuda":
        benchmark.extra_info["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    if mode == "fwd+bwd":
        benchmark.extra_info["saved_mib"] = saved_bytes(fn, inputs) / 2**20
