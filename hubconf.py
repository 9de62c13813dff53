"""torch.hub entry points for the shipped restorers (offline: the weights are in the checkout).

    import torch
    model = torch.hub.load("path/to/opgan-selfonn", "speech", source="local")
    restored = model.restore(audio, sample_rate)

Each entry returns `opgan.pretrained.PretrainedRestorer` in eval mode (see docs/restore.md). The
checkout's own code is used even when it is not installed: pyproject maps models/ -> opgan.models,
data/ -> opgan.data and kernels/ -> selfonn.kernels, and `_checkout_packages` makes the same mapping
for an import from this folder.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

dependencies = ["torch", "numpy", "scipy", "soundfile", "soxr"]

_ROOT = Path(__file__).resolve().parent
_MAPPED = (("selfonn.kernels", "kernels"), ("opgan.data", "data"), ("opgan.models", "models"))


def _checkout_packages() -> None:
    """Import this checkout's mapped sub-packages under their package names when no install provides them."""
    for name, folder in _MAPPED:
        parent_name, _, leaf = name.rpartition(".")
        parent = importlib.import_module(parent_name)
        if name in sys.modules or Path(parent.__file__).resolve().parent.parent != _ROOT:
            continue  # already there, or the parent package is not this checkout's
        if importlib.util.find_spec(name) is not None:
            continue  # an editable install maps it
        init = _ROOT / folder / "__init__.py"
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        setattr(parent, leaf, module)


def _load(name_or_path: str, device: str):
    _checkout_packages()
    from opgan.pretrained import from_pretrained as load

    return load(name_or_path, device=device)


def speech(device: str = "cpu"):
    """Op-GAN speech restorer (16 kHz model; `restore` takes any rate): noise, background audio, reverberation."""
    return _load("speech", device)


def music(device: str = "cpu"):
    """Op-GAN music restorer (22.05 kHz model; `restore` takes any rate)."""
    return _load("music", device)


def from_pretrained(name_or_path: str = "speech", device: str = "cpu"):
    """A shipped model by name ("speech", "music") or a checkpoint file of this project (`opgan-ckpt-1`)."""
    return _load(name_or_path, device)
