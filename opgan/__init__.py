"""Op-GAN blind audio restoration: `opgan.from_pretrained("speech")`, the `opgan` CLI, the trainer.

Importing `opgan` stays light (no torch): the model code loads on first use, and
``opgan.__version__`` is read from ``selfonn._version`` (the one place the version lives) on first use.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .pretrained import PretrainedRestorer

__all__ = ["from_pretrained"]


def from_pretrained(name_or_path: str | Path = "speech", device: str | torch.device = "cpu") -> PretrainedRestorer:
    """`"speech"`, `"music"` or a checkpoint path as an eval-mode module with `restore(audio, sample_rate)`.

    See `opgan.pretrained.from_pretrained` and docs/restore.md.
    """
    from .pretrained import from_pretrained as load

    return load(name_or_path, device=device)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from selfonn._version import __version__

        return __version__
    raise AttributeError(f"module 'opgan' has no attribute {name!r}")
