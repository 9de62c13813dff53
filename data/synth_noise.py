"""Synthetic ambience: an unbounded variety of noise-like backgrounds drawn from a seed.

Why: the recorded ambience is a few dozen clips (61 in the fetch cache's training split, 11 in the shipped
corpus). A mask trained on them learns those clips' spectra and damages speech under ambience it has not
heard (the learning ladder's background rung, docs/training.md). Real ambience is mostly shaped broadband
noise (rain, wind, fans, traffic, water), modulated or bursty (fire, rain drops, crowds), or tonal (mains
hum, engines, drones). Each draw here picks one of those families with random parameters:

    colour      white noise through a random smooth spectral envelope: a tilt of -9..+3 dB/octave and
                up to four resonances (bumps or notches of +-15 dB, 1/3 to 2 octaves wide) in log frequency
    modulated   coloured noise times a slow envelope: a random-phase LFO (0.2..8 Hz, depth 0.3..0.95) or
                smoothed random steps (a crowd, gusts of wind)
    bursts      coloured noise gated into Poisson bursts (2..40 per second, 2..60 ms, random heights):
                crackle, rain drops, clicks
    hum         harmonics of f0 in 40..400 Hz (random amplitudes, 1/f^a roll-off, slight drift) over
                coloured noise 0..-30 dB below them: mains hum, engines, drones, fans

Everything is synthesised from the given generator, so a dataset item stays a pure function of its seed.
"""
from __future__ import annotations

import numpy as np

__all__ = ["FAMILIES", "synth_ambience"]

FAMILIES = ("colour", "modulated", "bursts", "hum")


def _envelope_db(freqs: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A random smooth spectral envelope (dB) over ``freqs`` (Hz): tilt plus resonances in log frequency."""
    octaves = np.log2(np.maximum(freqs, 20.0) / 1000.0)
    env = rng.uniform(-9.0, 3.0) * octaves
    lo, hi = np.log2(50.0 / 1000.0), np.log2(sr / 2 / 1000.0)
    for _ in range(int(rng.integers(0, 5))):
        centre, width = rng.uniform(lo, hi), rng.uniform(1.0 / 3.0, 2.0)
        env = env + rng.uniform(-15.0, 15.0) * np.exp(-0.5 * ((octaves - centre) / (width / 2.355)) ** 2)
    return env


def _coloured(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """White noise shaped by a random envelope, in the frequency domain (circular, so any length works)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    gain = 10.0 ** (_envelope_db(freqs, sr, rng) / 20.0)
    gain[freqs < 30.0] = 0.0  # nothing below 30 Hz, no DC
    return np.fft.irfft(spec * gain, n)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    k = np.hanning(width + 2)[1:-1]
    return np.convolve(x, k / k.sum(), mode="same")


def _modulated(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    if rng.uniform() < 0.5:
        depth = rng.uniform(0.3, 0.95)
        env = 1.0 - depth * 0.5 * (1.0 + np.sin(2 * np.pi * rng.uniform(0.2, 8.0) * t + rng.uniform(0, 2 * np.pi)))
    else:  # smoothed random steps every 50..500 ms
        step = max(1, int(rng.uniform(0.05, 0.5) * sr))
        levels = rng.uniform(0.05, 1.0, size=n // step + 2)
        env = _smooth(np.repeat(levels, step), step)[:n]  # levels cover n + step samples: same-size output
    return _coloured(n, sr, rng) * env


def _bursts(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    rate, dur = rng.uniform(2.0, 40.0), rng.uniform(0.002, 0.06)
    count = max(1, int(rng.poisson(rate * n / sr)))
    gate = np.zeros(n)
    width = max(2, int(dur * sr))
    shape = np.hanning(width)
    for start in rng.integers(0, max(1, n - width), size=count):
        gate[start:start + width] += rng.uniform(0.2, 1.0) * shape[: n - start]
    floor = 10.0 ** (rng.uniform(-40.0, -10.0) / 20.0)  # a bed under the bursts
    return _coloured(n, sr, rng) * (gate + floor)


def _hum(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    f0 = float(np.exp(rng.uniform(np.log(40.0), np.log(400.0))))
    drift = 1.0 + rng.uniform(0.0, 0.01) * np.sin(2 * np.pi * rng.uniform(0.05, 1.0) * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * f0 * np.cumsum(drift) / sr
    roll = rng.uniform(0.5, 2.0)
    y = np.zeros(n)
    for h in range(1, int(min(30, (sr / 2 - 100) // f0)) + 1):
        y += rng.uniform(0.2, 1.0) / h**roll * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    bed = _coloured(n, sr, rng)
    bed *= np.std(y) / max(float(np.std(bed)), 1e-12) * 10.0 ** (rng.uniform(-30.0, 0.0) / 20.0)
    return y + bed


_MAKERS = {"colour": _coloured, "modulated": _modulated, "bursts": _bursts, "hum": _hum}


def synth_ambience(rng: np.random.Generator, length: int, sr: int) -> tuple[np.ndarray, str]:
    """A unit-RMS float32 excerpt of ``length`` samples at ``sr`` and the family it came from."""
    if length < 1 or sr < 1000:
        raise ValueError(f"synth_ambience needs length >= 1 and sr >= 1000, got {length}, {sr}")
    family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    x = _MAKERS[family](max(int(length), 4096), int(sr), rng)[: int(length)]  # a short excerpt of a longer draw
    rms = float(np.sqrt(np.mean(x**2)))
    if not np.isfinite(rms) or rms <= 0:  # cannot happen for these families; never hand out garbage
        raise ValueError(f"synth_ambience: degenerate {family} excerpt")
    return (x / rms).astype(np.float32), family
