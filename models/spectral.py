"""A Self-ONN mask estimator in the short-time Fourier domain: the same 1D Self-ONN layers, run over STFT frames.

Why: on the learning ladder the waveform U-Net and the field's waveform reference (Demucs) both learnt
AWGN and neither learnt reverberation at a CPU budget. A magnitude mask over time-frequency bins is the
other representation the field uses (DeepFilterNet, many dereverberation masks): the network decides per
bin how much of the input to keep, so "change nothing" is a mask of ones and removing a reverberant tail
or a noise floor is a per-bin gain, not a waveform to synthesise.

    x (B, 1, T) -> STFT (n_fft, hop n_fft/4, Hann) -> X (B, F, N)      F = n_fft/2 + 1 bins, N frames
    features    tanh(log10(|X| / (rms(x) * ||w||) + 1e-4) / 2)  in (-1, 1): level-free, bounded for the powers
    network     SelfONN1d(F -> H, k3) + tanh, then residual dilated Self-ONN blocks (d = 1, 2, ..., 2**(b-1))
                over frames, then a 1x1 SelfONN1d(H -> F); with ``norm=True`` every tanh sees a per-frame
                LayerNorm of its input (`FrameNorm`: without it trained models saturate every tanh)
    mask        m = mask_max * sigmoid(z + b0), b0 = log(1 / (mask_max - 1)): exactly 1 while the output
                layer is zero (its init), so training starts from the identity, as the U-Net's residual does
    output      iSTFT(m * X) at the input's length: the noisy phase is kept
    filter      (``df_order=o > 0``) on the lowest ``df_bins`` bins the mask is joined by a complex filter over
                the o frames around each one: Y(f, n) = m X(f, n) + sum_i C_i(f, n) X(f, n + i), |i| <= o // 2,
                C = tanh(1x1 SelfONN1d(H -> 2 o df_bins)) per real and imaginary part, zero at init
    gate        (``gate=True``) y = x + g * (iSTFT(Y) - x), one g = sigmoid(w . stats + b) per clip from the
                mean and mean square over frames of the last hidden layer

The frames are channels-last 1D sequences, so every layer is an ordinary ``SelfONN1d`` (the fused kernels on
CUDA, the exact path elsewhere). With b blocks each frame's mask hears +-(2**b) frames, +-(2**b * hop + n_fft/2)
samples: +-272 ms for b=5, n_fft 512 at 16 kHz (an output sample, through the overlap-add, a little more:
`python -m opgan.receptive default default:arch=spectral` measures a support of +-280 ms).

Why the filter: a magnitude mask can only scale each bin and keeps the noisy phase, so its gain is capped by the
ideal mask's (the `oracle` baseline). Neighbouring frames of a voiced bin are strongly correlated, and a short
complex filter across them can recover what a gain cannot (DeepFilterNet's "deep filtering", used there on the
low band, where the harmonics are). The mask stays, and the filter is added to it from zero, so the model starts
as the identity and the mask-only model is the special case C = 0.

Why the gate: a mask has a precision ceiling. A nearly clean clip passes through unharmed only if the mask is
within a few thousandths of 1 on every bin that holds speech; a mask 4 % low on average caps the output at
about 26 dB SDR, so a 43 dB input loses 17 dB. "This clip is already clean, change nothing" is one decision
per clip, as in the U-Net's clip gate (models.generator), not something every bin must learn.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from selfonn import SelfONN1d

from .arch import ArchConfig
from .generator import _ContextBlock

__all__ = ["ARCH", "FrameNorm", "SpectralConfig", "SpectralGenerator"]

#: the ``arch`` a stored generator config names for this model
ARCH = "spectral"
#: the RMS floor that keeps a silent clip's features finite (the mask, not the level, is what is learnt)
RMS_FLOOR = 1e-5
#: the gate's bias at init: sigmoid(2) = 0.88, open, so the mask learns from the first step while the gate learns
#: which clips to leave alone
GATE_BIAS = 2.0


@dataclass
class SpectralConfig(ArchConfig):
    """The mask estimator's options, as plain data (checkpoints stay weights_only-loadable)."""

    ARCH: ClassVar[str] = ARCH
    NAME: ClassVar[str] = "spectral"

    arch: str = ARCH  # tells build_generator which network a stored config describes
    n_fft: int = 512  # STFT size (32 ms at 16 kHz); hop is n_fft // 4
    hidden: int = 128  # channels of every layer between the input and the mask
    blocks: int = 5  # residual dilated blocks, dilations 1, 2, ..., 2**(blocks-1) frames
    q: int = 3  # Self-ONN order of every layer
    mask_max: float = 1.2  # the mask lies in (0, mask_max): it may lift a bin a little, never without bound
    gate: bool = False  # scale the correction by a per-clip gate (see the module docstring)
    norm: bool = False  # normalise each frame's channels before every tanh (see `FrameNorm`)
    df_order: int = 0  # frames of the complex filter, centred (odd; 0 = the magnitude mask alone)
    df_bins: int = 0  # the lowest bins the filter works on (0 = all n_fft/2 + 1)

    @property
    def hop(self) -> int:
        return self.n_fft // 4

    @property
    def filter_bins(self) -> int:
        """How many of the lowest bins the complex filter works on (0 without one)."""
        return 0 if not self.df_order else self.df_bins or self.n_fft // 2 + 1

    def check(self) -> None:
        """ValueError for options the network cannot be built with."""
        if self.n_fft < 16 or self.n_fft % 4 or min(self.hidden, self.blocks, self.q) < 1:
            raise ValueError(f"the spectral generator needs n_fft >= 16 and a multiple of 4, hidden, blocks, q >= 1, "
                             f"got {self.n_fft}, {self.hidden}, {self.blocks}, {self.q}")
        if self.df_order < 0 or (self.df_order and self.df_order % 2 == 0) or not 0 <= self.df_bins <= self.n_fft // 2 + 1:
            raise ValueError(f"the spectral generator's filter needs an odd df_order (or 0) and 0 <= df_bins <= "
                             f"n_fft/2 + 1, got {self.df_order}, {self.df_bins}")
        if not 1 < self.mask_max <= 4:
            raise ValueError(f"the spectral generator needs 1 < mask_max <= 4, got {self.mask_max}")


class FrameNorm(nn.Module):
    """LayerNorm over the channels of each frame of a (B, C, N) sequence.

    Why: without it the residual stream and the input layer's output grow during training until every tanh
    saturates (|tanh| > 0.99 on all units of trained models); the mask then no longer depends on the input
    (zero variance over frames: a fixed equaliser) and no gradient reaches the layers below. Per frame, not
    per clip, so a frame's mask still depends on its neighbours only and a crop behaves as the whole file.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.ln(h.transpose(1, 2)).transpose(1, 2)


class _NormedBlock(_ContextBlock):
    """h + proj(tanh(conv_d(tanh(norm(h))))): the context block with its input normalised per frame."""

    def __init__(self, channels: int, width: int, dilation: int, q: int) -> None:
        super().__init__(channels, width, dilation, q, "tanh")
        self.norm = FrameNorm(channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.proj(self.act(self.conv(self.pre(self.norm(h)))))


class SpectralGenerator(nn.Module):
    """(B, 1, T) -> (B, 1, T) for any T >= 1: the input's STFT times a learnt mask, back to samples."""

    #: read by `opgan.enhance.enhance_clips`: any length works (the STFT pads with zeros, the iSTFT crops back)
    length_multiple = 1

    def __init__(self, config: SpectralConfig | None = None) -> None:
        super().__init__()
        self.config = config or SpectralConfig()
        self.config.check()
        c = self.config
        bins = c.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        self.inp = SelfONN1d(bins, c.hidden, 3, padding=1, q=c.q)
        # h + proj(tanh(conv_d(tanh(h)))): the U-Net's dilated context block, zero-initialised projection
        if c.norm:
            self.blocks = nn.Sequential(*(_NormedBlock(c.hidden, c.hidden, 2**i, c.q) for i in range(c.blocks)))
        else:
            self.blocks = nn.Sequential(*(_ContextBlock(c.hidden, c.hidden, 2**i, c.q, "tanh") for i in range(c.blocks)))
        self.inp_norm = FrameNorm(c.hidden) if c.norm else nn.Identity()
        self.out_norm = FrameNorm(c.hidden) if c.norm else nn.Identity()
        self.out = SelfONN1d(c.hidden, bins, 1, q=c.q)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # the complex filter's coefficients, real parts then imaginary, tap-major: zero at init
        self.df = SelfONN1d(c.hidden, 2 * c.df_order * c.filter_bins, 1, q=c.q) if c.df_order else None
        if self.df is not None:
            nn.init.zeros_(self.df.weight)
            nn.init.zeros_(self.df.bias)
        self.mask_bias = math.log(1.0 / (c.mask_max - 1.0))  # sigmoid(mask_bias) * mask_max == 1
        self.gate = nn.Linear(2 * c.hidden, 1) if c.gate else None
        if self.gate is not None:
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, GATE_BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1 or x.shape[-1] == 0:
            raise ValueError(f"SpectralGenerator expects (batch, 1, length > 0), got {tuple(x.shape)}")
        spec = self._stft(x[:, 0])
        m, h = self._mask(x, spec)
        y = torch.istft(self._filter(spec, m, h), self.config.n_fft, self.config.hop, window=self._window(x), center=True,
                        length=x.shape[-1]).unsqueeze(1).to(x.dtype)
        if self.gate is None:
            return y
        g = self.gate_value(self.gate(torch.cat([h.mean(-1), h.square().mean(-1)], dim=1)))  # (B, 1)
        return x + g.unsqueeze(-1).to(x.dtype) * (y - x)

    def gate_value(self, z: torch.Tensor) -> torch.Tensor:
        """The clip gate from its pre-activation ``z`` (the ``gate`` layer's output)."""
        return torch.sigmoid(z)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, F, N) mask for ``x`` (B, 1, T): what the network multiplies the input's STFT by (with
        ``df_order``, the complex filter adds to it on the low bins)."""
        return self._mask(x, self._stft(x[:, 0]))[0]

    def _mask(self, x: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask and the last hidden layer (B, hidden, N) it came from."""
        # (B, 1, 1); a per-clip constant to the gradient, so each frame's mask depends on its neighbours only
        rms = _fft_dtype(x.detach()).square().mean(-1, keepdim=True).sqrt().clamp_min(RMS_FLOOR)
        w = self._window(x)
        mag = spec.abs() / (rms * w.square().sum().sqrt())
        feat = torch.tanh(torch.log10(mag + 1e-4) / 2)
        h = torch.tanh(self.inp_norm(self.inp(feat)))
        h = torch.tanh(self.out_norm(self.blocks(h)))
        return self.config.mask_max * torch.sigmoid(self.out(h) + self.mask_bias), h

    def _filter(self, spec: torch.Tensor, m: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """m * spec, plus the complex filter over neighbouring frames on the lowest bins when there is one."""
        y = spec * m
        if self.df is None:
            return y
        o, fb = self.config.df_order, self.config.filter_bins
        b, n = spec.shape[0], spec.shape[-1]
        c = torch.tanh(self.df(h)).to(spec.real.dtype).view(b, 2, o, fb, n)
        low = torch.view_as_real(spec[:, :fb])  # (B, fb, N, 2)
        low = torch.nn.functional.pad(low, (0, 0, o // 2, o // 2))  # frames padded with zeros at both ends
        taps = torch.stack([low[:, :, i:i + n] for i in range(o)], 1)  # (B, o, fb, N, 2): frame n + i - o//2
        re = (c[:, 0] * taps[..., 0] - c[:, 1] * taps[..., 1]).sum(1)
        im = (c[:, 0] * taps[..., 1] + c[:, 1] * taps[..., 0]).sum(1)
        return torch.cat([y[:, :fb] + torch.complex(re, im), y[:, fb:]], 1)

    def _window(self, x: torch.Tensor) -> torch.Tensor:
        return self.window.to(device=x.device, dtype=_fft_dtype(x).dtype)

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        # constant padding, so that a clip shorter than n_fft/2 works
        return torch.stft(_fft_dtype(x), self.config.n_fft, self.config.hop, window=self._window(x), center=True,
                          pad_mode="constant", return_complex=True)


def _fft_dtype(x: torch.Tensor) -> torch.Tensor:
    """x in float32, or float64 if it is (half precision has no FFT on every device)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
