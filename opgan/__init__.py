"""opgan: blind restoration of real-world audio with 1D Operational GANs (trainer, restore, evaluate).

Importing this package stays light (no torch): the tools and subpackages load when used, and
``opgan.__version__`` is read from ``selfonn._version`` (the one place the version lives) on first use.
"""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from selfonn._version import __version__

        return __version__
    raise AttributeError(f"module 'opgan' has no attribute {name!r}")
