"""A seeded bank of simulated room impulse responses (shoebox rooms, RT60 0.2–1.5 s).

Each RIR = early part from pyroomacoustics' image-source model (ISM, order capped so one RIR costs
a few ms) up to a mixing time of 80 ms, then a late tail of Gaussian noise under an exponential
envelope with the room's target RT60 (amplitude falls 60 dB per RT60), energy-matched to the ISM
at the junction. A full-order ISM for RT60 = 1.5 s needs ~200 reflection orders (seconds per RIR);
the statistical tail is the standard cheap stand-in for the diffuse late field.

Every RIR is scaled so its direct path has unit amplitude and stored with the index of that direct
path, so `apply_rir` can convolve and slice the output to keep the direct sound at its original time
(the clean target stays sample-aligned with the reverberant input). The bank is stored at one rate
(`.npz`, no pyroomacoustics needed to load it) and resampled on demand.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from .audio import resample

__all__ = ["RIRBank", "apply_rir", "early_rir", "simulate_rir", "drr_db", "set_drr"]

log = logging.getLogger(__name__)

_MIX_TIME_S = 0.080
_ISM_MAX_ORDER = 20
_SOUND_SPEED = 343.0


def drr_db(h: np.ndarray, d0: int, sr: int, half_window_ms: float = 2.5) -> float:
    """Direct-to-reverberant ratio: energy within ±2.5 ms of the direct path vs the rest."""
    direct = float(np.sum(h[_direct_window(h, d0, sr, half_window_ms)] ** 2))
    rest = float(np.sum(h**2)) - direct
    return float(10 * np.log10(direct / max(rest, 1e-20)))


def _direct_window(h: np.ndarray, d0: int, sr: int, half_window_ms: float = 2.5) -> slice:
    w = max(1, int(round(half_window_ms * 1e-3 * sr)))
    return slice(max(0, d0 - w), d0 + w + 1)


def set_drr(h: np.ndarray, d0: int, sr: int, target_db: float) -> np.ndarray:
    """Rescale everything outside the ±2.5 ms direct-path window so the DRR equals `target_db`.

    The decay (RT60) and the reflection pattern are kept; only the direct/reverberant balance,
    which in a real room follows the source distance, is set.
    """
    win = _direct_window(h, d0, sr)
    out = np.asarray(h, dtype=np.float64).copy()
    direct = float(np.sum(out[win] ** 2))
    rest = float(np.sum(out**2)) - direct
    if rest <= 0:
        return out.astype(np.float32)
    g = np.sqrt(direct / rest * 10 ** (-target_db / 10))
    keep = out[win].copy()
    out *= g
    out[win] = keep
    return out.astype(np.float32)


def early_rir(h: np.ndarray, d0: int, sr: int, early_ms: float = 50.0, fade_ms: float = 5.0) -> np.ndarray:
    """The direct path and the reflections of the first `early_ms` after it, the late tail faded out.

    Speech convolved with it is the dereverberation target that keeps early reflections: they colour
    the sound but do not smear it, so a model is asked to remove only the late tail (as the field's
    dereverberation targets do). A `fade_ms` half-cosine ends it without a step.
    """
    out = np.asarray(h, dtype=np.float64).copy()
    end = d0 + max(0, int(round(early_ms * 1e-3 * sr)))
    fade = max(1, int(round(fade_ms * 1e-3 * sr)))
    if end >= out.size:
        return out.astype(np.float32)
    seg = out[end:end + fade]
    seg *= 0.5 * (1 + np.cos(np.pi * (np.arange(seg.size) + 1) / (fade + 1)))
    out[end + fade:] = 0.0
    return out.astype(np.float32)


def _rt60_schroeder(h: np.ndarray, sr: int) -> float:
    """RT60 from the Schroeder backward integral, T20 fit (-5 to -25 dB) extrapolated to 60 dB."""
    e = np.cumsum(h[::-1] ** 2)[::-1]
    edc = 10 * np.log10(e / e[0] + 1e-30)
    i5 = int(np.argmax(edc <= -5))
    i25 = int(np.argmax(edc <= -25))
    if i25 <= i5:
        return float("nan")
    t = np.arange(i5, i25) / sr
    slope = np.polyfit(t, edc[i5:i25], 1)[0]
    return float(-60.0 / slope) if slope < 0 else float("nan")


def simulate_rir(rng: np.random.Generator, sr: int = 16000,
                 rt60_range: tuple[float, float] = (0.2, 1.5)) -> tuple[np.ndarray, int, dict]:
    """One random shoebox RIR. Returns (h, direct_index, info) with h[direct_index] == 1."""
    import pyroomacoustics as pra

    for _ in range(100):
        dims = np.array([rng.uniform(3.0, 10.0), rng.uniform(3.0, 8.0), rng.uniform(2.4, 4.0)])
        rt60 = float(rng.uniform(*rt60_range))
        try:
            e_abs, _ = pra.inverse_sabine(rt60, dims)
        except ValueError:  # RT60 too short for this room volume: draw another room
            continue
        margin = 0.4
        src = rng.uniform(margin, dims - margin)
        mic = rng.uniform(margin, dims - margin)
        dist = float(np.linalg.norm(src - mic))
        if 0.5 <= dist <= 5.0:
            break
    else:  # pragma: no cover - the loop above essentially always succeeds
        raise RuntimeError("could not draw a valid room")

    room = pra.ShoeBox(dims, fs=sr, materials=pra.Material(float(e_abs)), max_order=_ISM_MAX_ORDER)
    room.add_source(src.tolist())
    room.add_microphone(mic.tolist())
    room.compute_rir()
    h = np.asarray(room.rir[0][0], dtype=np.float64)

    # Direct path: the ISM places it at dist/c plus half the fractional-delay filter.
    expected = int(round(dist / _SOUND_SPEED * sr)) + pra.constants.get("frac_delay_length") // 2
    lo, hi = max(0, expected - 20), min(len(h), expected + 21)
    d0 = lo + int(np.argmax(np.abs(h[lo:hi])))
    h = h / h[d0]

    # Late tail: exponential noise from the mixing time on, energy-matched over the 20 ms before it.
    n_mix = d0 + int(_MIX_TIME_S * sr)
    n_fade = int(0.010 * sr)
    n_end = n_mix + int(rt60 * sr)  # until the tail is 60 dB below its start
    if len(h) < n_end:
        h = np.pad(h, (0, n_end - len(h)))
    h = h[:n_end]
    t = (np.arange(n_end) - n_mix) / sr
    env = np.exp(-6.9078 * np.maximum(t, -0.02) / rt60)  # 60 dB amplitude decay per RT60
    ref = h[n_mix - int(0.02 * sr):n_mix]
    ref_env = env[n_mix - int(0.02 * sr):n_mix]
    level = np.sqrt(np.mean(ref**2) / max(np.mean(ref_env**2), 1e-20))
    tail = rng.standard_normal(n_end) * env * level
    ramp = np.clip((np.arange(n_end) - (n_mix - n_fade)) / n_fade, 0.0, 1.0)  # ISM -> tail crossfade
    ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
    h = h * (1 - ramp) + tail * ramp
    h[d0] = 1.0
    info = {
        "rt60_target": rt60,
        "rt60": _rt60_schroeder(h[d0:], sr),
        "drr_db": drr_db(h, d0, sr),
        "room": [round(float(v), 3) for v in dims],
        "distance": round(dist, 3),
        "absorption": round(float(e_abs), 4),
    }
    return h.astype(np.float32), d0, info


def apply_rir(x: np.ndarray, h: np.ndarray, d0: int) -> np.ndarray:
    """Linear convolution, sliced so the direct path stays at its original sample (same length as x)."""
    y = fftconvolve(np.asarray(x, dtype=np.float64), np.asarray(h, dtype=np.float64))
    return y[d0:d0 + len(x)].astype(np.float32)


@dataclass
class RIRBank:
    """N RIRs at `sample_rate`, stored flat (no padding) with direct-path indices and metadata."""

    sample_rate: int
    rirs: list[np.ndarray]
    direct: np.ndarray
    rt60: np.ndarray
    drr: np.ndarray
    info: list[dict] = field(default_factory=list)
    parent: np.ndarray | None = None  # indices into the bank this one was cut from (see `subset`)
    _cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.rirs)

    @classmethod
    def simulate(cls, n: int, sample_rate: int = 16000, seed: int = 0,
                 rt60_range: tuple[float, float] = (0.2, 1.5), progress: bool = False) -> "RIRBank":
        """Simulate `n` rooms; RIR i depends only on (seed, i), so banks of different sizes share rooms."""
        if n < 1:
            raise ValueError(f"RIRBank needs n >= 1, got {n}")
        it = range(n)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="simulating RIRs", unit="rir")
        rirs, d0s, infos = [], [], []
        for i in it:
            h, d0, info = simulate_rir(np.random.default_rng([seed, i]), sample_rate, rt60_range)
            rirs.append(h)
            d0s.append(d0)
            infos.append(info)
        return cls(
            sample_rate=int(sample_rate), rirs=rirs, direct=np.array(d0s, dtype=np.int64),
            rt60=np.array([i["rt60"] for i in infos]), drr=np.array([i["drr_db"] for i in infos]),
            info=infos,
        )

    def save(self, path: str | os.PathLike, dtype: str = "float32") -> Path:
        """Write an .npz (`dtype="float16"` halves the size for shipped banks)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.array([len(h) for h in self.rirs], dtype=np.int64)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(tmp, sample_rate=self.sample_rate, flat=np.concatenate(self.rirs).astype(dtype),
                 lengths=lengths, direct=self.direct, rt60=self.rt60, drr=self.drr,
                 info=np.array(json.dumps(self.info)))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RIRBank":
        try:
            z = np.load(path, allow_pickle=False)
            flat, lengths = z["flat"].astype(np.float32), z["lengths"]
            rirs = np.split(flat, np.cumsum(lengths)[:-1])
            return cls(sample_rate=int(z["sample_rate"]), rirs=list(rirs), direct=z["direct"],
                       rt60=z["rt60"], drr=z["drr"], info=json.loads(str(z["info"])))
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a RIR bank ({exc})") from None

    @classmethod
    def load_or_simulate(cls, path: str | os.PathLike, n: int, sample_rate: int = 16000,
                         seed: int = 0, progress: bool = False) -> "RIRBank":
        """Reuse a cached bank at `path` if it holds >= n RIRs, else simulate and cache it."""
        path = Path(path)
        if path.is_file():
            bank = cls.load(path)
            if len(bank) >= n:
                return bank
        t0 = time.perf_counter()
        bank = cls.simulate(n, sample_rate, seed, progress=progress)
        bank.save(path)
        log.info("simulated %d RIRs in %.1f s -> %s", n, time.perf_counter() - t0, path)
        return bank

    def get(self, i: int, sr: int | None = None) -> tuple[np.ndarray, int]:
        """RIR i (and its direct-path index) at rate `sr` (resampled once, then cached)."""
        sr = int(sr or self.sample_rate)
        if sr == self.sample_rate:
            return self.rirs[i], int(self.direct[i])
        key = (i, sr)
        if key not in self._cache:
            h = resample(self.rirs[i], self.sample_rate, sr)
            d0 = int(round(self.direct[i] * sr / self.sample_rate))
            lo, hi = max(0, d0 - 3), min(len(h), d0 + 4)
            d0 = lo + int(np.argmax(np.abs(h[lo:hi])))
            self._cache[key] = (h / h[d0], d0)
        return self._cache[key]

    def subset(self, indices) -> "RIRBank":
        """A bank of some of these RIRs (e.g. disjoint rooms per split); `parent_index` maps back."""
        idx = np.asarray(list(indices), dtype=np.int64)
        if idx.size == 0:
            raise ValueError("RIRBank.subset: no indices")
        return RIRBank(self.sample_rate, [self.rirs[i] for i in idx], self.direct[idx], self.rt60[idx],
                       self.drr[idx], [self.info[i] for i in idx] if self.info else [],
                       parent=np.array([self.parent_index(i) for i in idx], dtype=np.int64))

    def parent_index(self, i: int) -> int:
        return int(self.parent[i]) if self.parent is not None else int(i)

    def nearest(self, rt60: float, rng: np.random.Generator, k: int = 3) -> int:
        """Index of a RIR whose RT60 is among the k closest to `rt60` (random among them)."""
        rt = np.nan_to_num(self.rt60, nan=1e9)
        order = np.argsort(np.abs(rt - rt60), kind="stable")[: max(1, min(k, len(self)))]
        return int(order[rng.integers(len(order))])
