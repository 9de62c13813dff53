"""The pytest-benchmark suite (bench/) runs as a user runs it, once, on tiny shapes: it cannot rot
unnoticed. Rounds come from pytest-benchmark's options, group labels name the shape actually run,
the run saves and compares (--benchmark-autosave / --benchmark-compare), the CPU compile provider
is opt-in, and the saved machine info states how the baselines ran."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LENGTH = 2656  # the shortest clip the Op-GAN layers take: disc.head's input is then one sample
#: one round of each benchmark, no warm-up rounds: what the suite measures is not the point here
ONE_ROUND = ["--benchmark-only", "--benchmark-min-rounds", "1", "--benchmark-max-time", "0",
             "--benchmark-warmup", "off", "--bench-length", str(LENGTH), "--bench-batch", "1", "-p", "no:cacheprovider",
             "-p", "no:randomly", "-q"]


def _pytest(*args: str, storage: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "1"}  # the fused provider on this CPU
    env.pop("SELFONN_BENCH_CPU_COMPILE", None)
    return subprocess.run([sys.executable, "-m", "pytest", "bench/", *ONE_ROUND, f"--benchmark-storage=file://{storage}",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_the_benchmark_suite_runs_saves_and_compares(tmp_path: Path):
    storage, out = tmp_path / "store", tmp_path / "run.json"
    # every provider of one small layer (torch.compile with aot_eager: the wiring in seconds); the
    # fused backward under the interpreter is the kernel tests' business (seconds per call here)
    r = _pytest("-k", "disc.head and not fused-fwd+bwd", "--bench-compile-backend", "aot_eager",
                "--benchmark-autosave", f"--benchmark-json={out}", storage=storage)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    data = json.loads(out.read_text())
    names = {b["name"] for b in data["benchmarks"]}
    assert names == {f"test_selfonn_layer[disc.head-{p}-{m}]" for p in ("torch", "reference", "compiled")
                     for m in ("fwd", "fwd+bwd")} | {"test_selfonn_layer[disc.head-fused-fwd]"}, names
    for b in data["benchmarks"]:
        assert b["stats"]["rounds"] == 1, b["stats"]  # --benchmark-min-rounds/--benchmark-max-time, not a constant
        info = b["extra_info"]
        assert info["B"] == 1 and info["tflops"] > 0 and ("saved_mib" in info) == (info["mode"] == "fwd+bwd")
        # the label names the shape run, not the 32000-sample one the parameters were collected at
        assert b["group"] == (f"disc.head {info['mode']}: B=1 C 256->1 L_in={info['L']} k={info['k']} "
                              f"s={info['stride']} q=3"), b["group"]
    assert {b["extra_info"]["L"] for b in data["benchmarks"]} == {1}
    selfonn = data["machine_info"]["selfonn"]
    assert selfonn["cudnn_benchmark"] is True and selfonn["compile"] == {"backend": "aot_eager", "dynamic": False}
    (saved,) = storage.rglob("0001_*.json")
    # a second run compares against the saved one (with the same settings: pytest-benchmark warns of a
    # machine_info change, and its warning fails on a storage outside the working directory)
    r = _pytest("-k", "disc.head-torch-fwd and not bwd", "--bench-compile-backend", "aot_eager", "--benchmark-compare",
                storage=storage)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "(0001_" in r.stdout and "(NOW)" in r.stdout, r.stdout[-3000:]


def test_context_layers_are_opt_in(tmp_path: Path):
    """The dilated context layers (gen.ctx.*) run with --context only; their label and extra_info name
    the dilation."""
    out = tmp_path / "run.json"
    sel = ["-k", "gen.ctx.d8-torch-fwd and not bwd", f"--benchmark-json={out}"]
    r = _pytest("-rs", *sel, storage=tmp_path / "store")
    assert r.returncode == 0 and "1 skipped" in r.stdout and "pass --context" in r.stdout, r.stdout[-2000:]
    assert not out.exists()  # nothing measured
    r = _pytest("--context", *sel, storage=tmp_path / "store")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    (b,) = json.loads(out.read_text())["benchmarks"]
    info = b["extra_info"]
    assert info["dilation"] == 8 and info["L"] == LENGTH // 32 and info["cin"] == 128 and info["k"] == 3, info
    assert b["group"] == f"gen.ctx.d8 fwd: B=1 C 128->16 L_in={LENGTH // 32} k=3 s=1 d=8 q=3", b["group"]


def test_cpu_compile_is_opt_in(monkeypatch):
    """torch.compile with inductor on a CPU builds C++ per shape: skipped with how to opt in, unless asked."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import _common

    monkeypatch.delenv(_common.CPU_COMPILE_ENV, raising=False)
    monkeypatch.setitem(_common.COMPILE_BACKEND, "name", "inductor")
    reason = _common.provider_available("compiled", "cpu")
    assert reason and "--bench-compile" in reason and _common.CPU_COMPILE_ENV in reason
    assert _common.provider_available("compiled", "cpu", cpu_compile=True) is None
    monkeypatch.setenv(_common.CPU_COMPILE_ENV, "1")
    assert _common.provider_available("compiled", "cpu") is None
    assert _common.provider_available("compiled", "cuda") is None and _common.provider_available("torch", "cpu") is None


def _dilated_layers():
    import _common

    ctx = next(la for la in _common.opgan_layers(2688, 2, 2, context=True) if la.name == "gen.ctx.d8")
    return [ctx, _common.Layer("t.d3", "conv_transpose", 4, 3, 3, 2, 1, 20, 2, dilation=3)]


def test_every_provider_computes_a_dilated_layer_as_the_reference(monkeypatch, device):
    """The bench providers pass the layer's dilation: fused (the interpreter on a CPU), the exact torch
    path and torch.compile (aot_eager: no C++ build) agree with the FastONN formulation, forward and
    backward, on the context stack's gen.ctx.d8 and on a dilated transposed layer."""
    import torch

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import _common

    monkeypatch.setitem(_common.COMPILE_BACKEND, "name", "aot_eager")
    for layer in _dilated_layers():
        assert layer.dilation > 1 and _common.is_context(layer) == layer.name.startswith("gen.ctx.")
        want = None
        for name in ("reference", "torch", "fused", "compiled"):
            x, w, b = _common.make_inputs(layer, 2, device)
            y = _common.PROVIDERS[name](layer)(x, w, b)
            y.backward(torch.linspace(-1, 1, y.numel(), device=device).view_as(y))
            got = [y.detach(), x.grad, w.grad, b.grad]
            if want is None:
                want = got
                assert y.shape[-1] == layer.L_out  # the reference itself ran the layer's dilation
                continue
            for g, r in zip(got, want):
                torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4 * (1 + r.abs().max().item()),
                                           msg=lambda m, n=name, la=layer.name: f"{la} {n}: {m}")
