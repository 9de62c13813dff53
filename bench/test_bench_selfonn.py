"""pytest-benchmark: Self-ONN layer throughput per provider x mode x layer shape.

    python -m pytest bench/ --benchmark-only                  # Op-GAN shapes
    python -m pytest bench/ --benchmark-only --sweep          # + C / L / q scaling sweep
    python -m pytest bench/ --benchmark-only --benchmark-group-by=param:layer   # side-by-side groups

Providers: fused (Triton, CUDA only), torch (selfonn's exact path), reference (FastONN: cat powers
+ one conv), compiled (torch.compile of the reference, CUDA only). Each benchmark records peak
memory, achieved TFLOP/s and the bytes autograd saves in `extra_info`; CUDA is synchronised inside
the timed call. `python bench/report.py` prints the same comparison as one ratio table.
"""

from __future__ import annotations

import pytest
import torch
from _common import PROVIDERS, make_inputs, make_step, opgan_layers, provider_available, saved_bytes, sweep_layers

_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

LAYERS = [pytest.param(la, id=la.name) for la in opgan_layers(32000)]
LAYERS += [pytest.param(la, id=la.name, marks=pytest.mark.sweep) for la in sweep_layers()]


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("layer", LAYERS)
def test_selfonn_layer(benchmark, request, layer, provider, mode):
    reason = provider_available(provider, _DEVICE)
    if reason:
        pytest.skip(reason)
    if not layer.name.startswith("sweep"):  # the same layer of the models at the requested clip length
        length = request.config.getoption("--bench-length") or (32000 if _DEVICE == "cuda" else 4000)
        layer = {la.name: la for la in opgan_layers(length)}[layer.name]
    B = request.config.getoption("--bench-batch") or (8 if _DEVICE == "cuda" else 2)
    inputs = make_inputs(layer, B, _DEVICE)
    fn = PROVIDERS[provider](layer)
    step = make_step(fn, inputs, mode)

    def timed():
        step()
        if _DEVICE == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):  # compile / autotune outside the timing
        timed()
    if _DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    benchmark.pedantic(timed, rounds=10 if _DEVICE == "cuda" else 3, iterations=1, warmup_rounds=1)
    flops = layer.fwd_flops(B) * (3.0 if mode == "fwd+bwd" else 1.0)
    benchmark.extra_info.update(
        provider=provider, mode=mode, layer=layer.name, B=B, L=layer.L_in, cin=layer.c_in, cout=layer.c_out,
        k=layer.k, stride=layer.stride, q=layer.q, transposed=layer.transposed,
        tflops=flops / benchmark.stats.stats.median / 1e12,
    )
    if _DEVICE == "cuda":
        benchmark.extra_info["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    if mode == "fwd+bwd":
        benchmark.extra_info["saved_mib"] = saved_bytes(fn, inputs) / 2**20
