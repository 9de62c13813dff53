"""Augmentation of the clean source before corruption: it widens what "clean" sounds like (speed,
timbre, level, telephone/codec band limits) while the pair stays consistent, because the target *is*
the augmented clean clip and the corruption is added on top of it.

Each transform has its own probability; all are off unless an `AugmentConfig` is passed
(`DynamicRARDataset(..., augment=AugmentConfig())` or `augment=True` for these defaults):

    speed        resampling by a factor in [0.9, 1.1] (tempo and pitch move together, as in
                 speed perturbation for ASR); the clip is drawn longer/shorter so its length is kept
    eq           a low shelf, a high shelf and a peak, each +-`eq_db` (RBJ biquads)
    telephone    band-pass 300-3400 Hz (4th-order Butterworth)
    narrowband   down to 8 kHz and back (nothing above 4 kHz, as in G.711/GSM audio)
    mulaw        8-bit mu-law quantisation (companded, like G.711)
    level        peak level drawn log-uniformly in `level_db` dBFS instead of U[0.3, 0.9]

Everything is drawn from the generator passed in, so item i of epoch e stays a pure function of
(seed, e, i).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, lfilter, resample_poly, sosfilt

from .audio import resample

__all__ = ["AugmentConfig", "augment_clean", "speed_factor", "source_length", "random_eq", "telephone",
           "narrowband", "mulaw"]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the clean-source augmentations (see module docstring)."""

    p_speed: float = 0.5
    speed: tuple[float, float] = (0.9, 1.1)
    p_eq: float = 0.5
    eq_db: float = 6.0
    p_telephone: float = 0.05
    p_narrowband: float = 0.05
    p_mulaw: float = 0.05
    p_level: float = 0.3
    level_db: tuple[float, float] = (-30.0, -1.0)

    def __post_init__(self):
        for name in ("p_speed", "p_eq", "p_telephone", "p_narrowband", "p_mulaw", "p_level"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must lie in [0, 1], got {p}")
        if not 0.5 <= self.speed[0] <= self.speed[1] <= 2.0:
            raise ValueError(f"AugmentConfig.speed must be an ordered range within [0.5, 2], got {self.speed}")
        if not self.level_db[0] <= self.level_db[1] <= 0.0:
            raise ValueError(f"AugmentConfig.level_db must be an ordered range <= 0 dBFS, got {self.level_db}")
        if self.eq_db < 0:
            raise ValueError(f"AugmentConfig.eq_db must be >= 0, got {self.eq_db}")


_SPEED_STEPS = 200  # speed factors are multiples of 1/200 (an exact polyphase ratio)


def speed_factor(rng: np.random.Generator, cfg: AugmentConfig) -> float:
    """1.0, or a factor in cfg.speed (drawn first, so the clip length can follow)."""
    if rng.uniform() >= cfg.p_speed:
        return 1.0
    return round(rng.uniform(*cfg.speed) * _SPEED_STEPS) / _SPEED_STEPS


def source_length(clip_len: int, speed: float) -> int:
    """Samples to draw so that playing them `speed` times faster leaves at least `clip_len`."""
    return int(math.ceil(clip_len * speed)) + 8


def _change_speed(x: np.ndarray, speed: float, clip_len: int) -> np.ndarray:
    down = int(round(speed * _SPEED_STEPS))
    g = math.gcd(_SPEED_STEPS, down)
    y = resample_poly(np.asarray(x, np.float64), _SPEED_STEPS // g, down // g)
    return y[:clip_len]


def _biquad(kind: str, f0: float, gain_db: float, sr: int, q: float = 0.7071) -> tuple[np.ndarray, np.ndarray]:
    """RBJ audio-EQ-cookbook shelf/peak coefficients (b, a)."""
    a_ = 10 ** (gain_db / 40)
    w = 2 * math.pi * f0 / sr
    cw, sw = math.cos(w), math.sin(w)
    alpha = sw / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a_, -2 * cw, 1 - alpha * a_]
        a = [1 + alpha / a_, -2 * cw, 1 - alpha / a_]
    else:
        s = 1 if kind == "low" else -1
        k = 2 * math.sqrt(a_) * alpha
        b = [a_ * ((a_ + 1) - s * (a_ - 1) * cw + k), s * 2 * a_ * ((a_ - 1) - s * (a_ + 1) * cw),
             a_ * ((a_ + 1) - s * (a_ - 1) * cw - k)]
        a = [(a_ + 1) + s * (a_ - 1) * cw + k, -s * 2 * ((a_ - 1) + s * (a_ + 1) * cw),
             (a_ + 1) + s * (a_ - 1) * cw - k]
    b, a = np.asarray(b), np.asarray(a)
    return b / a[0], a / a[0]


def random_eq(x: np.ndarray, sr: int, rng: np.random.Generator, max_db: float = 6.0) -> tuple[np.ndarray, dict]:
    """Low shelf (80-400 Hz), high shelf (2-6 kHz, at most 0.4 sr) and a peak (300 Hz-4 kHz,
    Q 0.5-2), each with a gain uniform in +-max_db."""
    rec = {"eq_low_hz": float(rng.uniform(80, 400)), "eq_low_db": float(rng.uniform(-max_db, max_db)),
           "eq_high_hz": float(min(rng.uniform(2000, 6000), 0.4 * sr)), "eq_high_db": float(rng.uniform(-max_db, max_db)),
           "eq_peak_hz": float(rng.uniform(300, min(4000, 0.4 * sr))), "eq_peak_db": float(rng.uniform(-max_db, max_db)),
           "eq_peak_q": float(rng.uniform(0.5, 2.0))}
    y = np.asarray(x, np.float64)
    for kind, f, g, q in (("low", rec["eq_low_hz"], rec["eq_low_db"], 0.7071),
                          ("high", rec["eq_high_hz"], rec["eq_high_db"], 0.7071),
                          ("peak", rec["eq_peak_hz"], rec["eq_peak_db"], rec["eq_peak_q"])):
        b, a = _biquad(kind, f, g, sr, q)
        y = lfilter(b, a, y)
    return y, rec


def telephone(x: np.ndarray, sr: int, lo: float = 300.0, hi: float = 3400.0) -> np.ndarray:
    """Telephone band: a 4th-order Butterworth band-pass run forward and backward (zero phase, so the
    target is not delayed against the source)."""
    sos = butter(4, [lo, min(hi, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")
    y = sosfilt(sos, np.asarray(x, np.float64))
    return sosfilt(sos, y[::-1])[::-1]


def narrowband(x: np.ndarray, sr: int, rate: int = 8000) -> np.ndarray:
    """Resampled to `rate` and back: the content of an 8 kHz recording, at `sr`."""
    if sr <= rate:
        return np.asarray(x, np.float64)
    y = resample(resample(np.asarray(x, np.float32), sr, rate), rate, sr).astype(np.float64)
    return y[:len(x)] if y.size >= len(x) else np.pad(y, (0, len(x) - y.size))


def mulaw(x: np.ndarray, bits: int = 8, mu: float = 255.0) -> np.ndarray:
    """mu-law compand, quantise to `bits`, expand (the G.711 quantisation noise floor)."""
    x = np.clip(np.asarray(x, np.float64), -1.0, 1.0)
    c = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = 2 ** (bits - 1)
    c = np.clip(np.round(c * q), -q, q - 1) / q  # 2**bits levels
    return np.sign(c) * np.expm1(np.abs(c) * np.log1p(mu)) / mu


def augment_clean(x: np.ndarray, sr: int, rng: np.random.Generator, cfg: AugmentConfig, clip_len: int,
                  peak: float, speed: float = 1.0) -> tuple[np.ndarray, dict]:
    """Augment one clean clip drawn with `source_length(clip_len, speed)` samples (or `clip_len`
    when `speed` is 1). Returns (float32 clip of `clip_len` samples, record); the clip peaks at
    `peak`, or at a level drawn from `cfg.level_db`. mu-law comes last, at the final level, as in a
    codec."""
    rec: dict = {}
    y = np.asarray(x, np.float64)
    if speed != 1.0:
        y = _change_speed(y, speed, clip_len)
        rec["speed"] = speed
    y = y[:clip_len]
    if y.size < clip_len:
        raise ValueError(f"augment_clean: got {y.size} samples for a {clip_len}-sample clip at speed {speed}")
    if rng.uniform() < cfg.p_eq:
        y, eq = random_eq(y, sr, rng, cfg.eq_db)
        rec.update(eq)
    if rng.uniform() < cfg.p_telephone:
        y = telephone(y, sr)
        rec["telephone"] = True
    if rng.uniform() < cfg.p_narrowband:
        y = narrowband(y, sr)
        rec["narrowband"] = True
    if rng.uniform() < cfg.p_level:
        peak = float(10 ** (rng.uniform(*cfg.level_db) / 20))
        rec["level_dbfs"] = 20 * math.log10(peak)
    top = float(np.max(np.abs(y)))
    if top > 0:
        y = y * (peak / top)
    if rng.uniform() < cfg.p_mulaw:
        y = mulaw(y)
        rec["mulaw"] = True
    return y.astype(np.float32), rec
