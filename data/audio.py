"""Audio I/O with loud, file-named errors.

Everything downstream (corruption, datasets, metrics) assumes finite float32 samples at a known
rate, so the checks live here, once: an unreadable, empty, non-finite or wrong-rate file raises
:class:`AudioError` naming the file instead of turning into a NaN clip three modules later.
"""
from __future__ import annotations

import os
import re
from math import gcd
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioError",
    "load_audio",
    "load_mono",
    "save_audio",
    "resample",
    "find_audio_files",
    "check_file",
    "check_finite",
    "truncation",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif")


class AudioError(ValueError):
    """A file or signal that cannot be used as audio (the message names the file)."""


def check_finite(x: np.ndarray, what: str) -> None:
    """Raise AudioError if `x` holds NaN or Inf (so they never reach a clip or a metric)."""
    if not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise AudioError(f"{what}: {bad} non-finite sample(s) (NaN/Inf)")


def check_file(path: Path) -> None:
    """Raise AudioError unless `path` is a non-empty file (libsndfile calls a 0-byte file 'Format not recognised')."""
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes)")


# libsndfile's header log: a data chunk whose declared size exceeds what the file holds reads
# "data : 32000 (should be 21999)" (WAV, CAF), "SSND : ..." (AIFF) or "Data Size : ..." (AU).
_SHORT_DATA = re.compile(r"^\s*(?:data|SSND|Data Size)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def truncation(path: str | os.PathLike) -> tuple[float, float] | None:
    """(seconds the header declares, seconds the file holds) when its audio data is cut short, else None.

    libsndfile reads such a file without complaint (it stops at the end of the data), so an
    interrupted copy or download would pass unnoticed; the declared size is in its header log.
    """
    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - unreadable files are reported by whoever reads them
        return None
    m = _SHORT_DATA.search(info.extra_info or "")
    if m is None or info.samplerate <= 0:
        return None
    declared, present = int(m.group(1)), int(m.group(2))
    if declared <= present:
        return None
    held = info.frames / info.samplerate
    return (held * declared / present if present > 0 else float("inf")), held


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling along the last axis (exact rational ratio, float32 out)."""
    sr_in, sr_out = int(sr_in), int(sr_out)
    if sr_in <= 0 or sr_out <= 0:
        raise AudioError(f"resample: sample rates must be positive, got {sr_in} -> {sr_out}")
    x = np.asarray(x, dtype=np.float32)
    if sr_in == sr_out:
        return x
    g = gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g, axis=-1).astype(np.float32)


def load_audio(path: str | os.PathLike, sr: int | None = None) -> tuple[np.ndarray, int]:
    """Read a file as float32 `(channels, samples)`; resample to `sr` when given.

    Raises AudioError (naming the file) when it is missing, unreadable, empty, or non-finite.
    """
    path = Path(path)
    check_file(path)
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types (LibsndfileError, RuntimeError, ...)
        raise AudioError(f"{path}: unreadable audio ({exc})") from None
    if data.size == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    x = np.ascontiguousarray(data.T)
    check_finite(x, str(path))
    if sr is not None and int(sr) != int(file_sr):
        x = resample(x, int(file_sr), int(sr))
        file_sr = int(sr)
    return x, int(file_sr)


def load_excerpt(path: str | os.PathLike, sr: int, length: int, rng: np.random.Generator,
                 frames: int, file_sr: int) -> tuple[np.ndarray, int]:
    """`length` mono samples at `sr` from a random place of a file of `frames` frames at `file_sr`, read by
    seeking instead of decoding the whole file (a music track is minutes long; a background needs a second).
    Returns the excerpt and its start frame in the file. The caller checks that the file holds more than
    the excerpt (`frames` from `sf.info`)."""
    need = int(np.ceil(length * file_sr / sr)) + 64  # + a margin for the resampler's edges
    start = int(rng.integers(0, max(1, frames - need + 1)))
    try:
        data, _ = sf.read(str(path), start=start, frames=need, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: unreadable audio ({exc})") from None
    x = data.mean(axis=1)
    check_finite(x, str(path))
    x = resample(x, int(file_sr), int(sr))
    if x.size < length:
        raise AudioError(f"{path}: {x.size} samples at {start}, fewer than the {length} asked for")
    return x[:length], start


def load_mono(path: str | os.PathLike, sr: int | None = None) -> tuple[np.ndarray, int]:
    """`load_audio` averaged to one channel, shape `(T,)`."""
    x, file_sr = load_audio(path, sr)
    return x.mean(axis=0).astype(np.float32), file_sr


def save_audio(
    path: str | os.PathLike,
    x: np.ndarray,
    sr: int,
    subtype: str | None = None,
    overwrite: bool = False,
    compression_level: float = 0.0,
) -> Path:
    """Write `x` ((T,) or (C, T)) to `path`; refuses to replace an existing file unless `overwrite`.

    The format follows the suffix (.wav, .flac, .ogg = Vorbis with `compression_level` 0..1).

    The file is written under a temporary name and moved into place, so an interrupted build never
    leaves a truncated clip that a resumed build would take as finished.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise AudioError(f"{path}: expected a non-empty (T,) or (C, T) signal, got shape {x.shape}")
    check_finite(x, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt, extra = None, {}
    if path.suffix.lower() in (".ogg", ".oga"):
        fmt, subtype = "OGG", subtype or "VORBIS"
        extra = {"compression_level": float(compression_level)}
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        with sf.SoundFile(str(tmp), "w", int(sr), x.shape[0], subtype=subtype, format=fmt, **extra) as fh:
            # Blockwise: libsndfile's Vorbis encoder crashes on multi-million-frame single writes.
            for i in range(0, x.shape[1], 1 << 16):
                fh.write(x[:, i:i + (1 << 16)].T)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def find_audio_files(roots: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Sorted audio files (by extension) under one or several files/folders, recursively."""
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    out: list[Path] = []
    for root in roots:
        root = Path(root)
        if root.is_file():
            out.append(root)
        elif root.is_dir():
            out.extend(
                p for p in root.rglob("*")
                if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")
            )
        else:
            raise AudioError(f"{root}: no such file or folder")
    return sorted(set(out))

