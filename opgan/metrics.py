"""Restoration metrics on 1-D numpy signals: the seed's SDR, SI-SDR, STOI, wide-band PESQ, level and
the per-octave spectral balance against the clean (`band_balance_db`).

`sdr` is the seed's plain ratio 10·log10(Σs² / Σ(ŝ−s)²) (no projection, no BSS-eval filter),
so an estimate with the wrong gain is penalised; `si_sdr` is the scale-invariant variant.
STOI and PESQ wrap `pystoi` and `pesq`; they are imported lazily so `import opgan.metrics`
stays light.
"""
from __future__ import annotations

import warnings
from math import gcd
from typing import Callable, Iterable

import numpy as np

__all__ = [
    "sdr", "si_sdr", "level_db", "band_level_db", "band_balance_db", "BALANCE_BANDS", "stoi", "pesq_wb", "sdr_batch", "si_sdr_batch", "metric_batch", "summarize",
    "METRICS", "LIGHT_INPUT_SDR_DB",
]

_EPS = 1e-12


def _pair(est: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    est = np.asarray(est, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if est.ndim != 1 or ref.ndim != 1:
        raise ValueError(f"metrics take 1-D signals, got shapes {est.shape} and {ref.shape}")
    if est.shape != ref.shape:
        raise ValueError(f"estimate and reference lengths differ: {est.shape[0]} vs {ref.shape[0]}")
    if est.size == 0:
        raise ValueError("metrics need at least one sample")
    if not (np.all(np.isfinite(est)) and np.all(np.isfinite(ref))):
        raise ValueError("metrics got NaN/Inf samples")
    return est, ref


def sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """Seed SDR in dB: 10·log10(Σ ref² / Σ (est − ref)²); +inf for a perfect estimate."""
    est, ref = _pair(est, ref)
    num = float(np.sum(ref**2))
    den = float(np.sum((est - ref) ** 2))
    if den == 0.0:
        return float("inf")
    if num == 0.0:
        return float("-inf")
    return 10.0 * np.log10(num / den)


#: Inputs at or above this SDR count as "light" (already good): a restorer must do no harm on them.
#: Validation, evaluation and the quality gate all use this one threshold.
LIGHT_INPUT_SDR_DB = 15.0


def level_db(est: np.ndarray, ref: np.ndarray) -> float:
    """Output level vs clean level in dB, 10·log10(Σŝ²/Σs²): 0 = same level, -inf = silent output,
    nan for a silent reference."""
    e, r = float(np.sum(np.square(est, dtype=np.float64))), float(np.sum(np.square(ref, dtype=np.float64)))
    if r == 0.0:
        return float("nan")
    return float("-inf") if e == 0.0 else 10.0 * float(np.log10(e / r))


#: octaves above 1 kHz for the spectral balance check: key -> (low Hz, high Hz). Level and SDR miss a
#: restorer that dulls consonants or leaves hiss: both show up as one octave's level off the clean's.
BALANCE_BANDS: dict[str, tuple[float, float]] = {
    "band_1_2k": (1000.0, 2000.0), "band_2_4k": (2000.0, 4000.0),
    "band_4_8k": (4000.0, 8000.0), "band_8_16k": (8000.0, 16000.0),
}
_BAND_NFFT = 512


def _power_spectrum(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(freqs, summed power) over Hann frames, 50 % overlap: the whole clip's spectrum."""
    n = _BAND_NFFT if x.size >= _BAND_NFFT else max(2, x.size)
    hop = n // 2
    frames = x[np.arange(n)[None, :] + hop * np.arange((x.size - n) // hop + 1)[:, None]]
    return np.fft.rfftfreq(n, 1.0 / sr), np.sum(np.abs(np.fft.rfft(frames * np.hanning(n), axis=1)) ** 2, axis=0)


def band_level_db(est: np.ndarray, ref: np.ndarray, sr: int, lo: float, hi: float) -> float:
    """Level of the estimate vs the reference in [lo, hi) Hz, dB (whole-clip power): 0 = the clean's
    balance, -6 = that band is 6 dB too quiet; nan when the reference holds nothing there or the band
    lies above the Nyquist frequency, -inf for an estimate with nothing there."""
    est, ref = _pair(est, ref)
    if hi > sr / 2:
        return float("nan")
    f, pr = _power_spectrum(ref, sr)
    _, pe = _power_spectrum(est, sr)
    band = (f >= lo) & (f < hi)
    r, e = float(pr[band].sum()), float(pe[band].sum())
    if r <= 0.0:
        return float("nan")
    return float("-inf") if e <= 0.0 else 10.0 * float(np.log10(e / r))


def band_balance_db(est: np.ndarray, ref: np.ndarray, sr: int) -> dict[str, float]:
    """`band_level_db` per octave of `BALANCE_BANDS` that fits below the Nyquist frequency (8-16 kHz
    needs sr >= 32 kHz). The clean itself reads 0 everywhere; a uniformly quieter output reads its
    level error in every band, a dulled one a large negative value in 4-8 kHz."""
    return {k: band_level_db(est, ref, sr, lo, hi) for k, (lo, hi) in BALANCE_BANDS.items() if hi <= sr / 2}


def si_sdr(est: np.ndarray, ref: np.ndarray, zero_mean: bool = True) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019): project `est` on `ref`, compare parts."""
    est, ref = _pair(est, ref)
    if zero_mean:
        est = est - est.mean()
        ref = ref - ref.mean()
    ref_energy = float(np.sum(ref**2))
    if ref_energy == 0.0:
        return float("nan")
    alpha = float(np.dot(est, ref)) / ref_energy
    target = alpha * ref
    noise = est - target
    num, den = float(np.sum(target**2)), float(np.sum(noise**2))
    if num == 0.0:  # silent (or orthogonal) estimate: nothing of the reference, however clean
        return float("-inf")
    if den == 0.0:
        return float("inf")
    return 10.0 * np.log10(num / den)


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x
    from scipy.signal import resample_poly

    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g)


def stoi(est: np.ndarray, ref: np.ndarray, sr: int, extended: bool = False) -> float:
    """Short-time objective intelligibility (pystoi; resamples to 10 kHz internally)."""
    from pystoi import stoi as _stoi

    est, ref = _pair(est, ref)
    if not np.any(ref):
        warnings.warn("stoi: silent reference, returning nan", RuntimeWarning, stacklevel=2)
        return float("nan")
    return float(_stoi(ref, est, int(sr), extended=extended))


def pesq_wb(est: np.ndarray, ref: np.ndarray, sr: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2) at 16 kHz; other rates are resampled to 16 kHz first.

    Returns nan (with a warning) only when pesq finds no utterance in a silent reference; any
    other failure is raised, since it points at a real problem rather than at the content.
    """
    from pesq import pesq as _pesq
    from pesq import NoUtterancesError

    est, ref = _pair(est, ref)
    est16 = _resample(est, int(sr), 16000)
    ref16 = _resample(ref, int(sr), 16000)
    if not np.any(ref16):  # pesq would divide by a zero peak
        warnings.warn("pesq_wb: silent reference, returning nan", RuntimeWarning, stacklevel=2)
        return float("nan")
    if not np.any(est16):  # a silent estimate is a (very) bad estimate, not an undefined one
        est16 = 1e-6 * np.random.default_rng(0).standard_normal(est16.size)
    try:
        return float(_pesq(16000, ref16, est16, "wb"))
    except NoUtterancesError:
        if np.sqrt(np.mean(ref16**2)) < 1e-4:
            warnings.warn("pesq_wb: no utterance in a (near-)silent reference, returning nan",
                          RuntimeWarning, stacklevel=2)
            return float("nan")
        raise


METRICS: dict[str, Callable[..., float]] = {"sdr": sdr, "si_sdr": si_sdr, "stoi": stoi, "pesq": pesq_wb}


def _rows(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1) if x.ndim > 1 else x[None]


def metric_batch(fn: Callable[..., float], est: np.ndarray, ref: np.ndarray, *args) -> np.ndarray:
    """Apply a per-signal metric to each row of (B, ...) arrays (e.g. (B, 1, L)); returns (B,)."""
    e, r = _rows(_to_numpy(est)), _rows(_to_numpy(ref))
    if e.shape != r.shape:
        raise ValueError(f"batch shapes differ: {e.shape} vs {r.shape}")
    return np.array([fn(a, b, *args) for a, b in zip(e, r)], dtype=np.float64)


def sdr_batch(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Seed SDR per row of (B, ...) arrays or tensors."""
    return metric_batch(sdr, est, ref)


def si_sdr_batch(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """SI-SDR per row of (B, ...) arrays or tensors."""
    return metric_batch(si_sdr, est, ref)


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def summarize(values: Iterable[float]) -> dict[str, float]:
    """mean/min/max/count over the finite values (nan-aware), for reports."""
    v = np.asarray([x for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}
