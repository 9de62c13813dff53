"""Checkpoints as plain data: atomic writes, `weights_only=True` loads, RNG state capture.

Format `opgan-ckpt-1` (docs/ARCHITECTURE.md): `format`, `config` (the TrainConfig dict plus the
`generator`/`discriminator` model configs), `generator`, `discriminator`, `opt_g`, `opt_d`, `step`,
`rng`, `sample_rate`, `metrics`, and for a second-pass run `second_pass` = {`config`, `generator`}
(the trained second generator; `generator` is then the frozen first pass, as `load_restorer` reads it).
"""
from __future__ import annotations

import os
import pickle
import random
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint", "capture_rng", "restore_rng"]

FORMAT = "opgan-ckpt-1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not of our format."""


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write `payload` to `path` atomically: a temp file in the same folder, fsync, then os.replace.

    A run killed mid-write leaves the previous file intact (and at worst a stray `.tmp`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(dict(payload), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without executing code (`weights_only=True`), checking its format.

    Every way a file can fail (missing, a folder, empty, truncated, not a .pt, code instead of data,
    another format) raises CheckpointError with a one-line message that says which.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"'{path}' is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
    _check_container(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused what the file asks to build
        raise CheckpointError(_refused(path, e)) from e
    except Exception as e:  # truncated or foreign files raise many different types
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"cannot read checkpoint '{path}': {type(e).__name__}: {first}") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"'{path}' is not an {FORMAT} checkpoint (it holds a {type(ckpt).__name__})")
    if ckpt.get("format") != FORMAT:
        if "format" not in ckpt and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise CheckpointError(f"'{path}' holds a bare state dict, not an {FORMAT} checkpoint "
                                  "(which also stores the model config and sample rate)")
        raise CheckpointError(f"'{path}' is not an {FORMAT} checkpoint (format: {ckpt.get('format')!r})")
    return ckpt


def _refused(path: Path, e: Exception) -> str:
    """One line for a file that `weights_only=True` refused. torch's own text goes on to offer
    `weights_only=False`, which would run whatever the file holds: that advice is never passed on."""
    text = str(e)
    what = re.search(r"GLOBAL ([\w.]+)", text)
    held = f"a pickled {what.group(1)}" if what else "pickled objects"
    if "Weights only load failed" not in text and what is None:  # e.g. a truncated legacy-format file
        first = (text.strip().splitlines() or [""])[0][:200]
        return f"cannot read checkpoint '{path}': {type(e).__name__}: {first}"
    return (f"refused checkpoint '{path}': it holds code ({held}), not only tensors and numbers; it must not be "
            "loaded with weights_only=False, which would run that code. Use a checkpoint saved by opgan")


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container
_PICKLE_MAGIC = b"\x80"  # torch.save(..., _use_new_zipfile_serialization=False)


def _check_container(path: Path) -> None:
    """Name the usual non-checkpoints before torch.load turns them into an obscure exception."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
    if size == 0:
        raise CheckpointError(f"cannot read checkpoint '{path}': the file is empty (0 bytes)")
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"cannot read checkpoint '{path}': the file is truncated or damaged "
                                  f"({size} bytes; an interrupted download or copy?)")
    elif not head.startswith(_PICKLE_MAGIC):
        raise CheckpointError(f"cannot read checkpoint '{path}': not a PyTorch .pt file (it begins {head!r})")


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) RNG states as weights_only-loadable data."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of capture_rng (CUDA states restored only when the device count matches)."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _as_tuple(x: Any) -> Any:
    """random.setstate needs tuples all the way down (a round trip may hand back lists)."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
