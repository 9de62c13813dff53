"""The one inference path: trainer validation, `opgan restore` and `opgan evaluate` all call it.

`enhance_clips` is the model-facing step (per-clip blind gain around a forward pass), `OverlapAdd`
turns it into a streaming, seam-free enhancer for signals of any length, `enhance_signal` is the
whole-array convenience on top, and `load_restorer` turns a checkpoint (or a shipped model name)
into a ready-to-run `Restorer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import CheckpointError, check_restorer, load_checkpoint
from .data.audio import check_finite

__all__ = [
    "MAX_CHANNELS",
    "SILENCE_PEAK",
    "WINDOW",
    "CheckpointError",
    "OverlapAdd",
    "Restorer",
    "channels_first",
    "enhance_clips",
    "enhance_signal",
    "load_restorer",
    "shipped_weights",
    "synthesis_window",
]

WINDOW = 32000
"""Samples per model window: the clip length the models are trained on."""

SILENCE_PEAK = 1e-8
"""Clips whose peak is below this are treated as silence (returned as zeros, never NaN)."""

MAX_CHANNELS = 64
"""Most channels an in-memory signal may have: the axis of a 2-D array that can be channels is at most this
long, which tells (C, T) from (T, C) and refuses shapes that would allocate per-channel buffers by the million."""

_WEIGHTS_DIR = Path(__file__).resolve().parent / "assets" / "weights"

ModelLike = Callable[[Tensor], Tensor]


def _length_multiple(model: Any) -> int:
    """The generator's total down-sampling factor (inputs must be a multiple of it)."""
    for obj in (model, getattr(model, "config", None)):
        m = getattr(obj, "length_multiple", None)
        if isinstance(m, int) and m > 0:
            return m
    return 32


def enhance_clips(model: ModelLike, x: Tensor) -> Tensor:
    """Restore a batch of clips `x` (B, 1, L) -> (B, 1, L) with blind, per-clip gain.

    Each clip is divided by its own peak before the forward pass and multiplied back after, so the
    model always sees the level it was trained on whatever the recording level. Clips with peak
    below `SILENCE_PEAK` give exact zeros. L need not be a multiple of the generator's stride: the
    clip is zero-padded for the forward pass and cropped back.

    Grad mode is left to the caller: validation and inference wrap this in `torch.inference_mode()`
    (as `enhance_signal` and `Restorer` do); a training step may back-propagate through it.
    """
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError(f"enhance_clips expects (batch, 1, length), got {tuple(x.shape)}")
    length = x.shape[-1]
    if length == 0:
        return x.clone()
    peak = x.detach().abs().amax(dim=(1, 2), keepdim=True)  # [B, 1, 1]
    if not bool(torch.isfinite(peak).all()):
        raise ValueError("enhance_clips: input contains NaN or Inf samples")
    silent = peak < SILENCE_PEAK
    gain = torch.where(silent, torch.ones_like(peak), peak)
    z = x / gain
    mult = _length_multiple(model)
    pad = (-length) % mult
    if pad:
        z = nn.functional.pad(z, (0, pad))
    y = model(z)
    if y.shape != z.shape:
        raise RuntimeError(f"model returned shape {tuple(y.shape)} for input {tuple(z.shape)}")
    y = y[..., :length] * gain
    return torch.where(silent, torch.zeros_like(y), y)


@dataclass
class Restorer:
    """A loaded restoration model: eval-mode generator(s) plus what is needed to use them.

    Calling it on (B, 1, L) runs `enhance_clips` with the generator, then with the optional
    second-pass generator (a second Op-GAN trained on the first one's output), under inference mode.
    """

    generator: nn.Module
    sample_rate: int
    config: dict = field(default_factory=dict)
    second: nn.Module | None = None
    metrics: dict = field(default_factory=dict)
    name: str = ""

    @property
    def device(self) -> torch.device:
        p = next(self.generator.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        p = next(self.generator.parameters(), None)
        return p.dtype if p is not None else torch.float32

    def __call__(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            y = enhance_clips(self.generator, x)
            if self.second is not None:
                y = enhance_clips(self.second, y)
        return y


def _window_fn(model: Restorer | ModelLike) -> tuple[Callable[[Tensor], Tensor], torch.device, torch.dtype]:
    """Wrap a Restorer or a bare module into a (B,1,L)->(B,1,L) inference function."""
    if isinstance(model, Restorer):
        return model, model.device, model.dtype
    device, dtype = torch.device("cpu"), torch.float32
    if isinstance(model, nn.Module):
        p = next(model.parameters(), None)
        if p is not None:
            device, dtype = p.device, p.dtype

    def fn(x: Tensor) -> Tensor:
        with torch.inference_mode():
            return enhance_clips(model, x)

    return fn, device, dtype


def synthesis_window(window: int, hop: int) -> np.ndarray:
    """Cross-fade weights: periodic Hann for hop <= window/2 (>= 50% overlap), else a Tukey window
    whose raised-cosine tapers span the overlap (window - hop) so neighbouring tapers sum to one.
    Outputs are divided by the summed weights, so any hop gives an exact identity."""
    if hop <= window // 2:
        n = np.arange(window)
        return 0.5 - 0.5 * np.cos(2 * np.pi * n / window)
    ov = window - hop
    w = np.ones(window)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(ov) / ov)
    w[:ov] = ramp
    w[window - ov :] = 1.0 - ramp  # complementary to the next window's rise: sums to exactly 1
    return w


class OverlapAdd:
    """Streaming windowed overlap-add of a clip enhancer over (C, T) signals of any length.

    The signal is zero-padded by `window - hop` at both ends and cut into windows of `window`
    samples every `hop` samples; each window (every channel independently) is enhanced, weighted
    by `synthesis_window` (Hann at the default 50% overlap) and added; the sum is divided by the
    summed weights. With the padding the weight sum never vanishes on real samples, consecutive
    windows cross-fade smoothly, and an identity model gives back its input exactly: no seams.
    Cost is window/hop forward passes per window of audio (2 at 50% overlap, 1.33 at 25%).

    A signal no longer than one window is enhanced as one clip (padded to the generator's length
    multiple), exactly as in validation.

    `push(block)` accepts any number of new samples and returns the output samples that are final;
    `flush()` returns the rest. Memory is bounded by about `2 * window + batch_size * hop` samples per channel
    whatever the signal length, and the output does not depend on how the input is split into
    blocks (each window is processed identically).
    """

    def __init__(
        self,
        model: Restorer | ModelLike,
        channels: int = 1,
        window: int = WINDOW,
        hop: int | None = None,
        batch_size: int = 4,
    ) -> None:
        hop = window // 2 if hop is None else hop
        if window <= 0 or not 0 < hop < window:
            raise ValueError(f"need window > 0 and 0 < hop < window, got window={window}, hop={hop}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.fn, self.device, self.dtype = _window_fn(model)
        self.channels, self.window, self.hop, self.batch_size = channels, window, hop, batch_size
        self.weight = synthesis_window(window, hop)
        self.pad = window - hop
        # Input buffer (padded coordinates): starts at absolute position `self.in_start`.
        self.inbuf = np.zeros((channels, self.pad), dtype=np.float32)
        self.in_start = 0
        # Accumulators cover absolute positions [acc_start, acc_start + acc.shape[1]).
        self.acc = np.zeros((channels, 0), dtype=np.float64)
        self.wsum = np.zeros(0, dtype=np.float64)
        self.acc_start = 0
        self.next_win = 0  # absolute start of the next window to process
        self.n_in = 0  # real samples pushed
        self.n_out = 0  # real samples emitted
        self.finished = False

    def _windows_ready(self, end: int) -> int:
        """How many windows fit entirely in input positions < end."""
        if end - self.next_win < self.window:
            return 0
        return (end - self.next_win - self.window) // self.hop + 1

    def _process(self, count: int) -> None:
        """Enhance `count` windows starting at `self.next_win` and add them into the accumulators."""
        c, w, h = self.channels, self.window, self.hop
        starts = [self.next_win + i * h for i in range(count)]
        segs = np.stack([self.inbuf[:, s - self.in_start : s - self.in_start + w] for s in starts])
        y = self._forward(segs.reshape(count * c, 1, w)).reshape(count, c, w)
        need = starts[-1] + w - self.acc_start
        if need > self.acc.shape[1]:
            grow = need - self.acc.shape[1]
            self.acc = np.concatenate([self.acc, np.zeros((c, grow))], axis=1)
            self.wsum = np.concatenate([self.wsum, np.zeros(grow)])
        for s, seg in zip(starts, y):
            o = s - self.acc_start
            self.acc[:, o : o + w] += seg * self.weight
            self.wsum[o : o + w] += self.weight
        self.next_win = starts[-1] + h
        # Input before the next window start is no longer needed.
        drop = self.next_win - self.in_start
        self.inbuf = self.inbuf[:, drop:]
        self.in_start = self.next_win

    def _forward(self, clips: np.ndarray) -> np.ndarray:
        """Run (N, 1, L) clips through the model `batch_size` at a time (so the channel count does
        not multiply the memory of one forward pass); float64 out for the accumulators."""
        outs = []
        for i in range(0, clips.shape[0], self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(clips[i : i + self.batch_size]))
            y = self.fn(x.to(device=self.device, dtype=self.dtype))
            outs.append(y.detach().to(device="cpu", dtype=torch.float64).numpy())
        return np.concatenate(outs)

    def _emit(self, upto: int) -> np.ndarray:
        """Return finished output for absolute positions < upto (real samples only)."""
        upto = min(upto, self.pad + self.n_in)
        start = max(self.acc_start, self.pad + self.n_out)
        if upto <= start:
            return np.zeros((self.channels, 0), dtype=np.float32)
        a, b = start - self.acc_start, upto - self.acc_start
        out = self.acc[:, a:b] / np.maximum(self.wsum[a:b], 1e-12)
        self.acc = self.acc[:, b:]
        self.wsum = self.wsum[b:]
        self.acc_start = upto
        self.n_out += upto - start
        return out.astype(np.float32)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Feed (C, n) new samples; return the (C, m) output samples that are now final."""
        if self.finished:
            raise RuntimeError("OverlapAdd.push after flush")
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1 and self.channels == 1:
            block = block[None]
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, n) samples, got {block.shape}")
        self.inbuf = np.concatenate([self.inbuf, block], axis=1)
        self.n_in += block.shape[1]
        outs = []
        end = self.in_start + self.inbuf.shape[1]
        # A signal of at most one window is enhanced whole at flush (as in training and validation),
        # so nothing is processed until the signal is known to be longer.
        while self.n_in > self.window and self._windows_ready(end) >= self.batch_size:
            self._process(self.batch_size)
            outs.append(self._emit(self.next_win))
        return np.concatenate(outs, axis=1) if outs else np.zeros((self.channels, 0), np.float32)

    def flush(self) -> np.ndarray:
        """Pad the end, process the remaining windows and return the rest of the output."""
        if self.finished:
            return np.zeros((self.channels, 0), dtype=np.float32)
        self.finished = True
        real_end = self.pad + self.n_in
        if self.n_in == 0:
            return np.zeros((self.channels, 0), dtype=np.float32)
        if self.n_in <= self.window:  # one clip, no overlap-add
            y = self._forward(self.inbuf[:, None, self.pad :])
            self.n_out = self.n_in
            return y.astype(np.float32).reshape(self.channels, -1)
        # Last window starts at or after real_end - hop, so the final real samples get nonzero weight.
        total = max(real_end + self.pad, self.window)
        total = self.next_win + self.window + math.ceil(max(total - self.next_win - self.window, 0) / self.hop) * self.hop
        end = self.in_start + self.inbuf.shape[1]
        if total > end:
            self.inbuf = np.concatenate([self.inbuf, np.zeros((self.channels, total - end), np.float32)], axis=1)
        outs = []
        while (k := self._windows_ready(total)) > 0:
            self._process(min(k, self.batch_size))
            outs.append(self._emit(self.next_win))
        outs.append(self._emit(real_end))
        return np.concatenate(outs, axis=1)


def channels_first(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """View a (T,), (C, T) or (T, C) signal as (C, T); also say whether it was (T, C).

    A 2-D array's channel axis is the shorter one and may hold at most `MAX_CHANNELS`; a square
    array (other than 1x1) is ambiguous. Either is refused with ValueError before anything is
    allocated from the shape (soundfile returns (T, C); taking it as (C, T) meant T channels).
    """
    if x.ndim == 1:
        return x[None], False
    if x.ndim != 2:
        raise ValueError(f"expected (T,), (C, T) or (T, C) samples, got shape {x.shape}")
    a, b = x.shape
    if a == b and a > 1:
        raise ValueError(f"shape {x.shape} is ambiguous: cannot tell channels from time; pass (C, T) with C < T")
    if min(a, b) > MAX_CHANNELS:
        raise ValueError(f"shape {x.shape} is not audio with at most {MAX_CHANNELS} channels; pass (C, T) or (T, C)")
    return (x, False) if a <= b else (x.T, True)


def enhance_signal(
    model: Restorer | ModelLike,
    x: np.ndarray,
    window: int = WINDOW,
    hop: int | None = None,
    batch_size: int = 4,
) -> np.ndarray:
    """Restore a whole signal `x` of shape (T,), (C, T) or (T, C) (channels independently); same shape out.

    Overlap-add of `window`-sample windows (Hann, `hop` = window/2 by default) through
    `enhance_clips`; see `OverlapAdd` for the streaming form used on files, `channels_first` for
    how the channel axis is told apart.
    """
    x = np.asarray(x, dtype=np.float32)
    xs, transposed = channels_first(x)
    check_finite(xs, "enhance_signal input")
    ola = OverlapAdd(model, channels=xs.shape[0], window=window, hop=hop, batch_size=batch_size)
    y = np.concatenate([ola.push(xs), ola.flush()], axis=1)
    return y[0] if x.ndim == 1 else (y.T if transposed else y)


# ----------------------------------------------------------------------------------------------
# Checkpoints


def shipped_weights() -> dict[str, Path]:
    """Names of the pretrained models shipped in the package and their files."""
    return {p.stem: p for p in sorted(_WEIGHTS_DIR.glob("*.pt"))}


def _generator_config(config: Mapping[str, Any]) -> dict:
    """Find the generator's config inside a checkpoint's config (trainer config or bare dict)."""
    for key in ("generator", "model", "gen"):
        sub = config.get(key)
        if isinstance(sub, Mapping):
            return dict(sub)
    return dict(config)


def _build(config: Mapping[str, Any], state: Mapping[str, Tensor], where: str) -> nn.Module:
    from opgan.models import build_generator  # lazy: opgan.enhance is imported by light tools too

    gcfg = _generator_config(config)
    try:
        gen = build_generator(gcfg)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{where}: generator config not understood ({e}); config={gcfg}") from e
    try:
        gen.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).strip().splitlines()[1:3])
        detail = detail[:300] + ("..." if len(detail) > 300 else "")
        raise CheckpointError(
            f"{where}: weights do not match the generator built from its config {gcfg} "
            f"({detail}); was it saved by another version?"
        ) from e
    return gen.eval()


def load_restorer(name_or_path: str | Path, device: str | torch.device = "cpu") -> Restorer:
    """Load `speech` / `music` (shipped weights) or a checkpoint path into an eval-mode `Restorer`.

    Checkpoints are plain data (`torch.load(weights_only=True)`, no pickled code) of format
    `opgan-ckpt-1`: `config`, `generator` state dict and `sample_rate` are required; an optional
    `second_pass` = {`config`, `generator`} adds a second generator applied to the first's output.
    """
    shipped = shipped_weights()
    name = str(name_or_path)
    if name in shipped:
        path = shipped[name]
    elif name in ("speech", "music"):
        raise CheckpointError(
            f"the shipped '{name}' model is missing from {_WEIGHTS_DIR} (broken install?); "
            "pass a checkpoint path with --model PATH"
        )
    else:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            known = ", ".join(shipped) or "none installed"
            raise CheckpointError(f"no checkpoint at '{path}' (shipped models: {known})")
    spec = check_restorer(load_checkpoint(path), path)  # every field checked and bounded first
    gen = _build(spec.generator.config, spec.generator.state, str(path)).to(device)
    second = None
    if spec.second is not None:
        second = _build(spec.second.config, spec.second.state, f"{path} (second pass)").to(device)
    return Restorer(
        generator=gen,
        sample_rate=spec.sample_rate,
        config=spec.config,
        second=second,
        metrics=spec.metrics,
        name=name if name in shipped else path.name,
    )
