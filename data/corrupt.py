"""Real-world corruption: AWGN, background-audio mixture and reverberation, blended at random.

Severity: each active artifact draws a weight w ~ U[0, 1] (0 = mildest, 1 = harshest) mapped to
a physical level (see `SEVERITY` and docs/data.md):

    AWGN        SNR   = 30 - 35 w  dB      (30 .. -5 dB, noise power vs the clean segment's power)
    background  SIR   = 25 - 30 w  dB      (25 .. -5 dB, interferer power vs the clean segment's power)
    reverb      RT60  = 0.2 + 1.3 w s      (a RIR of the bank with one of the 3 nearest RT60s)
                DRR   = 12 - 20 w  dB      (12 .. -8 dB: reverberant part of that RIR rescaled)

Duration: each artifact covers the whole clip with probability 1 - p_segment, otherwise a random
sub-segment of 30–90 % of the clip, entered and left with 10 ms raised-cosine ramps (no clicks).
Cases: "blend" (each artifact on with probability 1/2, at least one), or a single artifact
("awgn", "background", "reverb") — the paper's four, `CASES`. Two more teach "do no harm"
(`EXTRA_CASES`, never drawn unless asked for): "clean" (corrupted == clean) and "light" (a blend
with the mild `LIGHT` severity: SNR 50..30 dB, SIR 40..25 dB, RT60 0.2..0.4 s with DRR 15..6 dB). Reverb is applied first (it is a property of the room the clean
source sounds in), then background and noise are added. If the mixture exceeds full scale, the
corrupted and the clean clip are scaled by the same gain (recorded), so the pair stays consistent.

Target: the dry clean clip (`reverb_target="dry"`, the paper's), or, with `"early"`, the clean clip
through the direct path and the first `EARLY_MS` of reflections of the same RIR (`rir.early_rir`) where
reverberation is on: the model then removes the late tail only. Every random draw is the same for both,
so a seed's corrupted input is the same up to the gain that keeps both clips under full scale.

The recording's own room (`add_room`, drawn before corruption by `DynamicRARDataset(room_prob=...)`):
the clean clip through a mild RIR of the bank (`ROOM`: RT60 0.2..0.6 s, DRR 15..3 dB), kept in the
input and in the target alike. Real clean recordings often carry the room they were made in; a model
taught only dry targets strips it, and harms good recordings, instead of removing only what was added.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .audio import AudioError, check_finite
from .rir import apply_rir, early_rir, set_drr

__all__ = [
    "ARTIFACTS", "CASES", "EXTRA_CASES", "ALL_CASES", "REVERB_TARGETS", "EARLY_MS", "SEVERITY", "LIGHT", "ROOM", "Severity",
    "BackgroundSource", "corrupt", "add_room",
    "snr_from_weight", "sir_from_weight", "rt60_from_weight", "drr_from_weight", "weight_for_rt60", "segment_mask",
    "input_sdr",
]

ARTIFACTS = ("awgn", "background", "reverb")
CASES = ("blend",) + ARTIFACTS
EXTRA_CASES = ("clean", "light")
ALL_CASES = CASES + EXTRA_CASES
_FULL_SCALE = 0.99
#: what the clean target keeps of a reverberant segment: nothing of the room ("dry"), or the direct
#: path and the reflections of its first EARLY_MS ("early")
REVERB_TARGETS = ("dry", "early")
EARLY_MS = 50.0


@dataclass(frozen=True)
class Severity:
    """Linear maps from a weight w in [0, 1] to an artifact level (documented in docs/data.md)."""

    snr_db: tuple[float, float] = (30.0, -5.0)  # AWGN SNR at w = 0 and at w = 1
    sir_db: tuple[float, float] = (25.0, -5.0)  # background SIR at w = 0 and at w = 1
    rt60_s: tuple[float, float] = (0.2, 1.5)  # reverb target RT60 at w = 0 and at w = 1
    drr_db: tuple[float, float] = (12.0, -8.0)  # reverb direct-to-reverberant ratio at w = 0 and w = 1

    @staticmethod
    def _lerp(rng: tuple[float, float], w: float) -> float:
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"severity weight must lie in [0, 1], got {w}")
        return float(rng[0] + (rng[1] - rng[0]) * w)


SEVERITY = Severity()
LIGHT = Severity(snr_db=(50.0, 30.0), sir_db=(40.0, 25.0), rt60_s=(0.2, 0.4), drr_db=(15.0, 6.0))
#: the room a clean recording may have been made in (`add_room`): only its reverb maps are used
ROOM = Severity(rt60_s=(0.2, 0.6), drr_db=(15.0, 3.0))


def snr_from_weight(w: float, sev: Severity = SEVERITY) -> float:
    return sev._lerp(sev.snr_db, w)


def sir_from_weight(w: float, sev: Severity = SEVERITY) -> float:
    return sev._lerp(sev.sir_db, w)


def rt60_from_weight(w: float, sev: Severity = SEVERITY) -> float:
    return sev._lerp(sev.rt60_s, w)


def drr_from_weight(w: float, sev: Severity = SEVERITY) -> float:
    return sev._lerp(sev.drr_db, w)


def weight_for_rt60(rt60: float, sev: Severity = SEVERITY) -> float:
    """The severity weight whose reverberation has this target RT60 (the inverse of `rt60_from_weight`)."""
    lo, hi = sev.rt60_s
    if not lo <= rt60 <= hi:
        raise ValueError(f"RT60 {rt60} s lies outside the severity's range {lo}..{hi} s")
    return float((rt60 - lo) / (hi - lo))


class BackgroundSource(Protocol):
    """Anything that returns a unit-RMS background excerpt and a name for the manifest."""

    def draw(self, rng: np.random.Generator, length: int, sr: int,
             exclude_group: str | None = None) -> tuple[np.ndarray, str]: ...


class RIRSource(Protocol):
    def nearest(self, rt60: float, rng: np.random.Generator, k: int = 3) -> int: ...
    def get(self, i: int, sr: int | None = None) -> tuple[np.ndarray, int]: ...


def segment_mask(length: int, start: int, seg_len: int, sr: int, ramp_ms: float = 10.0) -> np.ndarray:
    """1 inside [start, start+seg_len), 0 outside, raised-cosine ramps inside the segment edges."""
    m = np.zeros(length, dtype=np.float64)
    m[start:start + seg_len] = 1.0
    if seg_len < length:
        r = min(int(ramp_ms * 1e-3 * sr), seg_len // 2)
        if r > 0:
            up = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
            if start > 0:
                m[start:start + r] = up
            if start + seg_len < length:
                m[start + seg_len - r:start + seg_len] = up[::-1]
    return m


def _draw_segment(rng: np.random.Generator, length: int, p_segment: float) -> tuple[int, int]:
    if rng.uniform() >= p_segment:
        return 0, length
    seg_len = int(rng.uniform(0.3, 0.9) * length)
    start = int(rng.integers(0, length - seg_len + 1))
    return start, seg_len


def _ref_power(clean: np.ndarray, mask: np.ndarray) -> float:
    """Clean power over the artifact's segment (whole clip if that segment is nearly silent)."""
    w = float(mask.sum())
    p = float(np.sum(mask * clean**2) / max(w, 1.0))
    whole = float(np.mean(clean**2))
    return p if p > 1e-3 * whole else whole


def _rir_at(w: float, severity: Severity, rirs: "RIRSource", sr: int,
            rng: np.random.Generator) -> tuple[np.ndarray, int, int, float]:
    """The bank's RIR for severity weight w: one of the nearest to w's RT60, its reverberant part set to
    w's DRR. Returns (rir, direct-path index, bank index, DRR in dB)."""
    idx = rirs.nearest(rt60_from_weight(w, severity), rng)
    h, d0 = rirs.get(idx, sr)
    drr = drr_from_weight(w, severity)
    return set_drr(h, d0, sr, drr), d0, idx, drr


def add_room(clean: np.ndarray, sr: int, rng: np.random.Generator, rirs: "RIRSource",
             severity: Severity = ROOM) -> tuple[np.ndarray, dict]:
    """The clean clip as recorded in a mild room: the whole clip through one RIR of the bank (RT60 and
    DRR from `severity` at a weight w ~ U[0, 1]), brought back to the clean clip's peak.

    Returns (float32 clip, record of the room). The result is the new clean clip: `corrupt` adds its
    artifacts on top and returns it (or its early-reverberation version) as the target."""
    x = np.asarray(clean, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise AudioError(f"add_room: expected a non-empty 1-D clean clip, got shape {x.shape}")
    top = float(np.max(np.abs(x)))
    if top == 0:
        raise AudioError("add_room: clean clip is digital silence")
    w = float(rng.uniform())
    h, d0, idx, drr = _rir_at(w, severity, rirs, sr, rng)
    wet = apply_rir(x, h, d0).astype(np.float64)
    peak = float(np.max(np.abs(wet)))
    if not np.isfinite(peak) or peak == 0:
        raise AudioError("add_room: the room left nothing of the clip")
    rec = {"room_w": w, "room_rt60_target": rt60_from_weight(w, severity), "room_rir_index": idx,
           "room_drr_db": drr}
    return (wet * (top / peak)).astype(np.float32), rec


def input_sdr(corrupted: np.ndarray, clean: np.ndarray) -> float:
    """The seed's SDR of the corrupted input against the clean target, in dB."""
    num = float(np.sum(np.asarray(clean, np.float64) ** 2))
    den = float(np.sum((np.asarray(corrupted, np.float64) - clean) ** 2))
    return float("inf") if den == 0 else float(10 * np.log10(num / den))


def corrupt(
    clean: np.ndarray,
    sr: int,
    rng: np.random.Generator,
    case: str = "blend",
    background: BackgroundSource | None = None,
    rirs: RIRSource | None = None,
    clean_group: str | None = None,
    p_segment: float = 0.5,
    severity: Severity = SEVERITY,
    reverb_target: str = "dry",
    reverb_min_w: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Corrupt one clean clip. Returns (corrupted, clean, record), both float32, same length.

    `clean` may come back scaled (by `record["gain"]`) when the mixture would clip. `clean_group`
    names the clean clip's recording so the background never comes from the same recording.
    `reverb_target` "early" returns, as the clean clip, the dry clip with the RIR's early part applied
    where reverberation is on (see the module's docstring). `reverb_min_w` > 0 draws the reverberation's
    weight from U[reverb_min_w, 1] instead (all cases but "light"): added reverberation then stays
    heavier than a recording's own room (`add_room`), so the two never ask for opposite targets.
    """
    if case not in ALL_CASES:
        raise ValueError(f"unknown corruption case {case!r}; choose from {ALL_CASES}")
    if reverb_target not in REVERB_TARGETS:
        raise ValueError(f"unknown reverb target {reverb_target!r}; choose from {REVERB_TARGETS}")
    if not 0.0 <= reverb_min_w < 1.0:
        raise ValueError(f"reverb_min_w must lie in [0, 1), got {reverb_min_w}")
    x = np.asarray(clean, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise AudioError(f"corrupt: expected a non-empty 1-D clean clip, got shape {x.shape}")
    check_finite(x, "corrupt: clean clip")
    if not np.any(x):
        raise AudioError("corrupt: clean clip is digital silence (SNR/SIR undefined)")
    n = x.size

    if case == "light":
        severity = LIGHT
    if case == "clean":
        active = []
    elif case in ("blend", "light"):
        while True:
            active = [a for a in ARTIFACTS if rng.uniform() < 0.5]
            if active:
                break
    else:
        active = [case]
    if "background" in active and background is None:
        raise ValueError("corrupt: a background source is needed for the background artifact")
    if "reverb" in active and rirs is None:
        raise ValueError("corrupt: a RIR bank is needed for the reverb artifact")

    rec: dict = {"case": case, "artifacts": "+".join(active)}
    y = x.copy()
    target = x
    # Fixed order (reverb -> background -> awgn) so a record replays identically.
    if "reverb" in active:
        w = float(rng.uniform())
        if reverb_min_w and case != "light":
            w = reverb_min_w + (1.0 - reverb_min_w) * w
        start, seg = _draw_segment(rng, n, p_segment)
        h, d0, idx, drr = _rir_at(w, severity, rirs, sr, rng)
        wet = apply_rir(x, h, d0).astype(np.float64)
        m = segment_mask(n, start, seg, sr)
        y = (1 - m) * y + m * wet
        if reverb_target == "early":  # x stays dry: the levels of background and noise refer to it
            target = (1 - m) * x + m * apply_rir(x, early_rir(h, d0, sr, EARLY_MS), d0).astype(np.float64)
        rec.update(reverb_w=w, reverb_rt60_target=rt60_from_weight(w, severity), rir_index=idx,
                   rt60=float(rirs.rt60[idx]) if hasattr(rirs, "rt60") else float("nan"),
                   drr_db=drr, reverb_target=reverb_target,
                   reverb_start=start, reverb_len=seg)
    if "background" in active:
        w = float(rng.uniform())
        start, seg = _draw_segment(rng, n, p_segment)
        m = segment_mask(n, start, seg, sr)
        b, name = background.draw(rng, n, sr, exclude_group=clean_group)
        b = np.asarray(b, dtype=np.float64)
        check_finite(b, f"corrupt: background {name}")
        sir = sir_from_weight(w, severity)
        pb, whole = float(np.sum(m * b**2) / max(m.sum(), 1.0)), float(np.mean(b**2))
        if pb <= 1e-3 * whole:
            # the segment fell on a (near-)silent stretch of the excerpt, which is active elsewhere
            # (the source's guarantee): cover the whole clip rather than blow that stretch up
            start, seg, m, pb = 0, n, np.ones(n), whole
        if pb <= 0:
            raise AudioError(f"corrupt: background excerpt from {name} is silent")
        y = y + m * b * np.sqrt(_ref_power(x, m) / pb * 10 ** (-sir / 10))
        rec.update(background_w=w, background_sir_db=sir, background_source=name,
                   background_start=start, background_len=seg)
    if "awgn" in active:
        w = float(rng.uniform())
        start, seg = _draw_segment(rng, n, p_segment)
        m = segment_mask(n, start, seg, sr)
        snr = snr_from_weight(w, severity)
        noise = rng.standard_normal(n)
        pn = float(np.sum(m * noise**2) / max(m.sum(), 1.0))
        y = y + m * noise * np.sqrt(_ref_power(x, m) / pn * 10 ** (-snr / 10))
        rec.update(awgn_w=w, awgn_snr_db=snr, awgn_start=start, awgn_len=seg)

    peak = float(np.max(np.abs(y)))
    if target is not x:  # an early-reflection target may peak above the input; dry keeps its old rule
        peak = max(peak, float(np.max(np.abs(target))))
    gain = 1.0
    if peak > _FULL_SCALE:
        gain = _FULL_SCALE / peak
        y *= gain
        target = target * gain
    rec["gain"] = gain
    y32, x32 = y.astype(np.float32), target.astype(np.float32)
    check_finite(y32, "corrupt: corrupted clip")
    rec["input_sdr_db"] = input_sdr(y32, x32)
    return y32, x32, rec
