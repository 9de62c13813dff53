"""The real audio shipped in `opgan/assets/audio/` (works offline, no fetch needed).

- `fixture/`: a few seconds per kind and split, for tests.
- `corpus/`: the compact default corpus (speech: 4 speakers, ~2–2.5 min each; music: 8 excerpts of
  30 s from 8 tracks; background: 15 ambience excerpts of 10 s), split by speaker/track:
  speech train = allison_f (en+es prompts) + carlo_m (the male voice), val = ivrvoice_ru_f,
  test = june_f, so validation and test speakers are never heard in training.
- `rirs_16k.npz`: 60 simulated room impulse responses (so defaults need no pyroomacoustics).

See `opgan/assets/audio/ATTRIBUTION.md` for sources and licences. A dynamic-mixing dataset over
the corpus: `opgan.data.datasets.default_dynamic_dataset` (this module imports no dataset code).

The wheel leaves `corpus/`, `fixture/` and the quality-gate clips out (they are training and test
material, 18 MiB of audio); a wheel install that asks for them gets `MissingAssetError`, one line
that points to a source checkout.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .audio import AudioError
from .rir import RIRBank
from .sources import SPLITS, discover_splits

__all__ = ["asset_dir", "corpus_dir", "fixture_dir", "default_sources", "default_rirs",
           "build_default_dataset", "MissingAssetError", "require_asset"]


class MissingAssetError(AudioError, FileNotFoundError):
    """Shipped audio that this installation does not hold (a wheel install: only a checkout has it).

    An AudioError and a FileNotFoundError, so the CLIs' existing one-line handlers report it."""


def require_asset(path: Path, what: str) -> Path:
    """`path` if it exists, else MissingAssetError saying that `what` comes with a source checkout."""
    if not path.exists():
        raise MissingAssetError(f"not in this installation: {what} ({path}); the wheel leaves the training and "
                                f"test audio out, use a source checkout (git clone, then pip install -e .)")
    return path


def asset_dir() -> Path:
    """`opgan/assets/audio` of the installed package (a plain folder: opgan is not installed zipped)."""
    return Path(str(resources.files("opgan").joinpath("assets", "audio")))


def corpus_dir() -> Path:
    """The shipped training corpus (a source checkout only)."""
    return require_asset(asset_dir() / "corpus", "the shipped training corpus")


def fixture_dir() -> Path:
    """The shipped test fixture (a source checkout only)."""
    return require_asset(asset_dir() / "fixture", "the shipped test fixture")


def default_sources(kind: str, root: str | os.PathLike | None = None) -> dict[str, list[Path]]:
    """{split: [clean files]} of the shipped corpus (or another sources root) for `kind`."""
    if kind not in ("speech", "music", "background"):
        raise ValueError(f"kind must be speech, music or background, got {kind!r}")
    parts = discover_splits(Path(root or corpus_dir()) / kind)
    return {s: [f.path for f in parts[s]] for s in SPLITS}


def default_rirs() -> RIRBank:
    """The shipped 16 kHz RIR bank."""
    return RIRBank.load(asset_dir() / "rirs_16k.npz")


def build_default_dataset(kind: str, root: str | os.PathLike, size: str | float = "tiny", seed: int = 0,
                          progress: bool = False) -> Path:
    """Build (or resume) a RAR dataset from the shipped corpus into `root`; returns `root`."""
    from .builder import build

    build(kind, corpus_dir(), root, size=size, seed=seed, rirs=default_rirs(), progress=progress)
    return Path(root)
