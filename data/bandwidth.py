"""How much of the spectrum a recording really holds: the long-term spectrum's upper band edge.

A clean target teaches the restorer what clean speech sounds like. An 8 kHz telephone recording
upsampled to 16 kHz is stored at 16 kHz but holds nothing above 4 kHz; used as a target it teaches
the model to remove the consonant band. The sample rate cannot tell the two apart, the spectrum can:
`band_edge_hz` is the highest frequency where the long-term average spectrum (LTAS, active frames
only) still lies within `floor_db` of its peak. Full-band speech stays within 50 dB of its peak up to
~7 kHz and beyond; an upsampled 8 kHz recording falls off a cliff at 4 kHz. `rolloff_hz` (the
frequency below which 99 % of the energy lies) is reported beside it, since it is the usual figure,
but speech keeps ~99 % of its energy below 4-5 kHz whatever its bandwidth, so the rule uses the edge.
The data card of a whole speech folder is `opgan.data.card`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .audio import AudioError, load_mono

log = logging.getLogger(__name__)

__all__ = ["ltas", "band_edge_hz", "rolloff_hz", "VoiceBand", "measure_voice", "MIN_CLEAN_BANDWIDTH_HZ",
           "EDGE_FLOOR_DB"]

#: clean targets for 16 kHz models must hold energy up to at least this frequency (an 8 kHz original
#: upsampled has its edge just below 4 kHz; full-band speech is at 7 kHz or more when stored at 16 kHz)
MIN_CLEAN_BANDWIDTH_HZ = 6000.0
#: how far below the LTAS peak the band edge is read
EDGE_FLOOR_DB = 50.0
_NFFT = 512
_SMOOTH_HZ = 250.0


def ltas(x: np.ndarray, sr: int, nfft: int = _NFFT, active_db: float = -40.0) -> tuple[np.ndarray, np.ndarray]:
    """(freqs, power) of the long-term average spectrum over frames within `active_db` of the loudest
    (pauses would otherwise weigh the recording's noise floor in), Hann window, 50 % overlap."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    hop = nfft // 2
    n = (x.size - nfft) // hop + 1
    freqs = np.fft.rfftfreq(nfft, 1.0 / sr)
    if n <= 0:
        return freqs, np.zeros(freqs.size)
    frames = x[np.arange(nfft)[None, :] + hop * np.arange(n)[:, None]]
    energy = np.sum(frames**2, axis=1)
    if energy.max() <= 0:
        return freqs, np.zeros(freqs.size)
    frames = frames[energy >= energy.max() * 10 ** (active_db / 10)]
    spec = np.abs(np.fft.rfft(frames * np.hanning(nfft), axis=1)) ** 2
    return freqs, spec.mean(axis=0)


def _smooth(power: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    k = max(1, int(round(_SMOOTH_HZ / (freqs[1] - freqs[0]))))
    return np.convolve(power, np.ones(k) / k, mode="same")


def band_edge_hz(freqs: np.ndarray, power: np.ndarray, floor_db: float = EDGE_FLOOR_DB) -> float:
    """Highest frequency (Hz) whose smoothed LTAS lies within `floor_db` of its peak; 0 for silence."""
    p = _smooth(np.asarray(power, dtype=np.float64), freqs)
    if p.max() <= 0:
        return 0.0
    above = np.flatnonzero(p >= p.max() * 10 ** (-floor_db / 10))
    return float(freqs[above[-1]])


def rolloff_hz(freqs: np.ndarray, power: np.ndarray, fraction: float = 0.99) -> float:
    """Frequency (Hz) below which `fraction` of the LTAS energy lies; 0 for silence."""
    c = np.cumsum(power)
    if c[-1] <= 0:
        return 0.0
    return float(freqs[int(np.searchsorted(c, fraction * c[-1]))])


@dataclass(frozen=True)
class VoiceBand:
    """One voice (group) of a corpus: how much audio and how much spectrum it holds."""

    voice: str
    files: int
    seconds: float
    sample_rate: int  # the files' (highest) stored rate
    edge_hz: float  # `band_edge_hz` of the voice's pooled LTAS
    rolloff99_hz: float

    @property
    def full_band(self) -> bool:
        return self.edge_hz >= MIN_CLEAN_BANDWIDTH_HZ


def measure_voice(voice: str, files: Sequence[str | os.PathLike], sr: int = 16000,
                  max_files: int = 200) -> VoiceBand:
    """Pool the LTAS of (up to `max_files`, evenly spread) files of one voice, read at `sr`.

    Every readable file counts toward `seconds`; the spectrum needs only a sample of them. Unreadable
    files are logged and left out (the loaders reject them when they are drawn)."""
    import soundfile as sf

    readable: list[Path] = []
    seconds, rate = 0.0, 0
    for f in sorted(Path(f) for f in files):
        try:
            info = sf.info(str(f))
        except Exception as exc:  # noqa: BLE001 - libsndfile raises several types for a damaged file
            log.warning("bandwidth of %s: skipping %s (%s)", voice, f, exc)
            continue
        readable.append(f)
        seconds += info.frames / info.samplerate
        rate = max(rate, int(info.samplerate))
    files = readable
    pick = files if len(files) <= max_files else [files[int(i)] for i in np.linspace(0, len(files) - 1, max_files)]
    total, freqs, weight = None, None, 0
    for f in pick:
        try:
            x, _ = load_mono(f, sr)
        except AudioError as exc:
            log.warning("bandwidth of %s: skipping %s (%s)", voice, f, exc)
            continue
        freqs, p = ltas(x, sr)
        n = max(1, x.size)
        total = p * n if total is None else total + p * n
        weight += n
    if total is None:
        return VoiceBand(voice, 0, 0.0, rate, 0.0, 0.0)
    total = total / weight
    return VoiceBand(voice, len(files), seconds, rate, band_edge_hz(freqs, total), rolloff_hz(freqs, total))
