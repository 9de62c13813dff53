"""Labelling helpers for fetched recordings: voice pitch and sex, silence trimming, piece families,
stable hash splits.

Debian packages rarely state a speaker's sex; where they do not, `opgan fetch` estimates it from the
median fundamental frequency (YIN difference function) and records the F0 and the word "estimated",
so the label can always be told apart from one the package states.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable, Sequence

import numpy as np

from .audio import resample

__all__ = ["frame_f0", "median_f0", "sex_from_f0", "sex_label", "SEX_F0_THRESHOLD", "SEX_F0_UNCERTAIN", "voice_groups", "trim_silence",
           "piece_families", "hash_split"]

# Adult male speaking F0 is typically 85-155 Hz, female 165-255 Hz; the boundary sits between.
# Expressive prompt reading widens both (the male Asterisk voice carlo_m has a median of ~180 Hz),
# so estimates inside SEX_F0_UNCERTAIN are flagged as uncertain.
SEX_F0_THRESHOLD = 165.0
SEX_F0_UNCERTAIN = (150.0, 190.0)
_F0_SR = 16000


def frame_f0(x: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 500.0, win_s: float = 0.025,
             hop_s: float = 0.01, threshold: float = 0.15, gate_db: float = -30.0) -> np.ndarray:
    """F0 in Hz of the voiced frames of `x` (YIN: first dip of the cumulative-mean-normalised
    difference function below `threshold`); frames quieter than `gate_db` below the loudest and
    frames without such a dip (unvoiced) are left out."""
    x = np.asarray(x, dtype=np.float64)
    if int(sr) != _F0_SR:
        x = resample(x, int(sr), _F0_SR).astype(np.float64)
    w, tmax, tmin, hop = int(win_s * _F0_SR), int(_F0_SR / fmin), int(_F0_SR / fmax), int(hop_s * _F0_SR)
    span = w + tmax
    n = (x.size - span) // hop + 1
    if n <= 0:
        return np.zeros(0)
    frames = x[np.arange(span)[None, :] + hop * np.arange(n)[:, None]]
    energy = np.sum(frames[:, :w] ** 2, axis=1)
    frames = frames[energy > energy.max() * 10 ** (gate_db / 10)] if energy.max() > 0 else frames[:0]
    if frames.shape[0] == 0:
        return np.zeros(0)
    nfft = 1 << int(np.ceil(np.log2(2 * span)))
    r = np.fft.irfft(np.conj(np.fft.rfft(frames[:, :w], nfft)) * np.fft.rfft(frames, nfft), nfft)[:, :tmax + 1]
    c = np.concatenate([np.zeros((frames.shape[0], 1)), np.cumsum(frames**2, axis=1)], axis=1)
    taus = np.arange(tmax + 1)
    d = c[:, w:w + 1] + (c[:, taus + w] - c[:, taus]) - 2 * r  # sum_j (x_j - x_{j+tau})^2
    cmean = np.cumsum(d[:, 1:], axis=1) / np.arange(1, tmax + 1)
    dn = d[:, 1:] / np.maximum(cmean, 1e-12)  # dn[:, k] is lag k + 1
    out = []
    for row in dn[:, tmin - 1:tmax - 1]:
        below = np.flatnonzero(row < threshold)
        if below.size == 0:
            continue
        t = int(below[0])
        while t + 1 < row.size and row[t + 1] < row[t]:
            t += 1
        out.append(_F0_SR / (t + tmin))
    return np.asarray(out)


def median_f0(signals: Iterable[tuple[np.ndarray, int]], min_frames: int = 50) -> float | None:
    """Median F0 over all voiced frames of several (signal, rate) pairs; None if too few voiced."""
    f0 = [frame_f0(x, sr) for x, sr in signals]
    f0 = np.concatenate(f0) if f0 else np.zeros(0)
    return float(np.median(f0)) if f0.size >= min_frames else None


def sex_from_f0(f0: float | None) -> str | None:
    """'m' below SEX_F0_THRESHOLD Hz, 'f' at or above it (children also land in 'f'), None if unknown."""
    if f0 is None:
        return None
    return "m" if f0 < SEX_F0_THRESHOLD else "f"


def sex_label(stated: str | None, stated_source: str, f0: float | None) -> tuple[str | None, str]:
    """(sex, how it is known): the package's statement when there is one, else the F0 estimate,
    marked uncertain near the boundary."""
    if stated:
        return stated, stated_source
    if f0 is None:
        return None, "unknown (too few voiced frames)"
    lo, hi = SEX_F0_UNCERTAIN
    return sex_from_f0(f0), "estimated from F0" + (" (uncertain)" if lo <= f0 <= hi else "")


def voice_groups(f0_by_part: dict[str, float | None], min_ratio: float = 1.4) -> list[list[str]]:
    """Parts (sub-folders) of one speaker folder that hold one voice each: parts are split apart only
    when their median F0s fall on opposite sides of the sex threshold *and* differ by `min_ratio`
    (evidence of two people, not of one voice reading letters vs syllables)."""
    known = {p: f for p, f in f0_by_part.items() if f is not None}
    low = sorted(p for p, f in known.items() if f < SEX_F0_THRESHOLD)
    high = sorted(p for p, f in known.items() if f >= SEX_F0_THRESHOLD)
    if low and high and min(known[p] for p in high) / max(known[p] for p in low) >= min_ratio:
        unknown = list(set(f0_by_part) - set(known))  # cannot tell: kept with the lower voice
        return [sorted(low + unknown), high]
    return [sorted(f0_by_part)]


def trim_silence(x: np.ndarray, sr: int, rel_db: float = -40.0, margin_s: float = 0.05) -> np.ndarray:
    """`x` without leading/trailing 10 ms frames quieter than `rel_db` below its loudest frame
    (keeping `margin_s` either side), so joined short prompts are not mostly silence."""
    f = max(1, int(0.01 * sr))
    n = x.size // f
    if n == 0:
        return x
    e = np.mean(x[:n * f].reshape(n, f).astype(np.float64) ** 2, axis=1)
    if e.max() <= 0:
        return x[:0]
    on = np.flatnonzero(e > e.max() * 10 ** (rel_db / 10))
    m = int(margin_s * sr)
    return x[max(0, on[0] * f - m):min(x.size, (on[-1] + 1) * f + m)]


_VARIANT_WORDS = re.compile(r"[_\-. ]*(enhanced|old|remix|map|edit|loop|short|long)$", re.I)


def piece_families(stems: Sequence[str]) -> dict[str, str]:
    """{stem: family}: versions of one piece (`x_enhanced`, `x-old`, `x_remix`, `x_map`, `x2` when `x`
    also exists) share a family, so a split never holds one version while another trains.
    Plain numbered series (`track3`, `track4`) stay separate pieces."""
    def strip_words(s: str) -> str:
        prev = None
        while prev != s:
            prev, s = s, _VARIANT_WORDS.sub("", s)
        return s or prev

    worded = {s: strip_words(s) for s in stems}
    bases = set(stems) | set(worded.values())
    out = {}
    for s, w in worded.items():
        d = re.sub(r"[_\-]*\d+$", "", w)
        out[s] = d if d and d != w and d in bases else w
    return out


def hash_split(names: Iterable[str], frac_val: float = 0.1, frac_test: float = 0.1,
               salt: str = "") -> dict[str, list[str]]:
    """A stable split of `names` by md5 (at least one each in val and test when there are >= 3)."""
    names = sorted(set(names), key=lambda s: hashlib.md5((salt + s).encode()).hexdigest())
    if len(names) < 3:
        return {"train": sorted(names), "val": [], "test": []}
    n_test, n_val = max(1, round(frac_test * len(names))), max(1, round(frac_val * len(names)))
    return {"test": sorted(names[:n_test]), "val": sorted(names[n_test:n_test + n_val]),
            "train": sorted(names[n_test + n_val:])}
