"""Benchmark setup: `python -m pytest bench/ --benchmark-only` (not collected by the default run).

Rounds, time and warm-up come from pytest-benchmark's own options (`--benchmark-min-rounds`,
`--benchmark-max-time`, `--benchmark-warmup`, ...), saving and comparing runs from
`--benchmark-autosave` / `--benchmark-compare`. The options here choose what is measured: the
scaling sweep only with `--sweep`, the dilated context blocks' layers (``gen.ctx.*``) only with
`--context`; on a CPU the Op-GAN shapes at a shorter length (`--bench-length`,
default 4000) so the suite stays usable without a GPU; torch.compile on a CPU only with
`--bench-compile`. Every baseline runs as a user runs it at its best (`_common.fair_baselines`:
cudnn.benchmark on, torch.compile(dynamic=False)); the saved JSON's machine_info says so.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402


@dataclass(frozen=True)
class BenchConfig:
    """What the suite measures, from the command line."""

    device: str
    length: int
    batch: int
    cpu_compile: bool


def pytest_addoption(parser):
    group = parser.getgroup("selfonn benchmarks")
    group.addoption("--sweep", action="store_true", help="also run the C / L / q scaling sweep")
    group.addoption("--context", action="store_true",
                    help="also run the dilated context blocks' layers (gen.ctx.d1 .. gen.ctx.d64, gen.ctx.proj)")
    group.addoption("--bench-length", type=int, default=None,
                    help="Op-GAN clip length, a multiple of 32 >= 2656 (default 32000 on CUDA, 4000 on CPU)")
    group.addoption("--bench-batch", type=int, default=None, help="batch (default 8 on CUDA, 2 on CPU)")
    group.addoption("--bench-compile", action="store_true",
                    help="the torch.compile provider on a CPU too (inductor builds C++ per shape: minutes; "
                         f"or {_common.CPU_COMPILE_ENV}=1)")
    group.addoption("--bench-compile-backend", default="inductor",
                    help="torch.compile backend of the compiled provider (default inductor; aot_eager checks the "
                         "wiring on a CPU in seconds, and runs there without --bench-compile)")


def pytest_configure(config):
    config.addinivalue_line("markers", "sweep: scaling sweep, only with --sweep")
    config.addinivalue_line("markers", "context: the dilated context blocks' layers, only with --context")
    _common.COMPILE_BACKEND["name"] = config.getoption("--bench-compile-backend")
    config._selfonn_baselines = _common.fair_baselines()


@pytest.fixture(scope="session")
def bench_config(request) -> BenchConfig:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    opt = request.config.getoption
    return BenchConfig(device=device, length=opt("--bench-length") or (32000 if device == "cuda" else 4000),
                       batch=opt("--bench-batch") or (8 if device == "cuda" else 2),
                       cpu_compile=opt("--bench-compile") or os.environ.get(_common.CPU_COMPILE_ENV) == "1")


def pytest_benchmark_update_machine_info(config, machine_info):
    """The settings every number of a saved run depends on, beside pytest-benchmark's machine info."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    machine_info["selfonn"] = {
        **getattr(config, "_selfonn_baselines", {}), "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None, "torch": torch.__version__,
        "tf32": torch.backends.cudnn.allow_tf32, "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET")}


def pytest_collection_modifyitems(config, items):
    for marker, option, what in (("sweep", "--sweep", "scaling sweep"),
                                 ("context", "--context", "dilated context layers")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"{what}: pass {option} to run it")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)
