"""Benchmark setup: `python -m pytest bench/ --benchmark-only` (not collected by the default run).

The scaling sweep runs only with `--sweep`; on CPU the Op-GAN shapes run at a shorter length
(`--bench-length`, default 4000) so the suite stays usable without a GPU.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_addoption(parser):
    parser.addoption("--sweep", action="store_true", help="also run the C / L / q scaling sweep")
    parser.addoption("--bench-length", type=int, default=None,
                     help="Op-GAN clip length, a multiple of 32 >= 2656 (default 32000 on CUDA, 4000 on CPU)")
    parser.addoption("--bench-batch", type=int, default=None, help="batch (default 8 on CUDA, 2 on CPU)")


def pytest_configure(config):
    config.addinivalue_line("markers", "sweep: scaling sweep, only with --sweep")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--sweep"):
        return
    skip = pytest.mark.skip(reason="scaling sweep: pass --sweep to run it")
    for item in items:
        if "sweep" in item.keywords:
            item.add_marker(skip)

