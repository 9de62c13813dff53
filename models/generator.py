"""The Op-GAN generator: a 1D U-Net of Self-ONN layers (the seed's design, q configurable per layer).

Shapes for the default f=16 on a (B, 1, 32000) clip:

    down  1->f->2f->4f->8f->8f   SelfONN1d k5 s2 p2 + tanh       32000 -> 16000 -> ... -> 1000
    up    8f->8f, 16f->4f, 8f->2f, 4f->f  nearest x2, SelfONN1d k5 s1 p2, InstanceNorm1d, tanh, concat skip
    out   SelfONNTranspose1d(2f -> 1, k6, s2, p2) + tanh                 16000 -> 32000

`residual=True` (not in the seed) adds the input back, `y = x + out(h)` without the final tanh, and
zero-initialises the output layer, so training starts from the identity instead of silence: on a
short CPU budget this is the difference between "beats the input" and "still learning to copy it".

Five stride-2 stages mean any length that is a multiple of 32 maps back to itself exactly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from selfonn import SelfONN1d, SelfONNTranspose1d

#: Number of Self-ONN layers in the generator: 5 down + 4 up + 1 output.
N_GENERATOR_LAYERS = 10
#: Input lengths must be a multiple of this (five stride-2 stages).
LENGTH_MULTIPLE = 32


def _per_layer_q(q: int | list[int], n: int, what: str) -> list[int]:
    """Expand one q for every layer, or check a per-layer list (why: the issue asks q per layer)."""
    qs = [int(q)] * n if isinstance(q, int) else [int(v) for v in q]
    if len(qs) != n or any(v < 1 for v in qs):
        raise ValueError(f"{what}: q must be an int >= 1 or a list of {n} ints >= 1, got {q!r}")
    return qs


@dataclass
class GeneratorConfig:
    """Generator hyper-parameters (kept as plain data so checkpoints stay weights_only-loadable)."""

    filters: int = 16  # f: channels of the first down layer; widths are f, 2f, 4f, 8f, 8f
    q: int | list[int] = 3  # Self-ONN order: one int, or 10 ints (5 down, 4 up, 1 output layer)
    residual: bool = False  # y = x + out(h) (identity at init) instead of the seed's y = tanh(out(h))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GeneratorConfig":
        unknown = set(d) - {"filters", "q", "residual"}
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        return cls(**d)


class _Up(nn.Module):
    """Nearest x2 upsample, Self-ONN conv, InstanceNorm, tanh (the skip concat happens in the U-Net)."""

    def __init__(self, cin: int, cout: int, q: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        # No bias: the InstanceNorm right after removes it (its true gradient is zero, so Adam
        # would only random-walk it on rounding noise).
        self.conv = SelfONN1d(cin, cout, 5, stride=1, padding=2, q=q, bias=False)
        self.norm = nn.InstanceNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.norm(self.conv(self.up(x))))


class Generator(nn.Module):
    """(B, 1, L) -> (B, 1, L) restorer in [-1, 1]; L a multiple of 32."""

    #: read by `opgan.enhance.enhance_clips` to pad inputs to a valid length
    length_multiple = LENGTH_MULTIPLE

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        f = self.config.filters
        if f < 1:
            raise ValueError(f"generator filters must be >= 1, got {f}")
        qs = _per_layer_q(self.config.q, N_GENERATOR_LAYERS, "generator")
        widths = [1, f, 2 * f, 4 * f, 8 * f, 8 * f]
        self.down = nn.ModuleList(
            SelfONN1d(widths[i], widths[i + 1], 5, stride=2, padding=2, q=qs[i]) for i in range(5)
        )
        # (in, out) of each up block; in = previous up output + its skip (except the first).
        ups = [(8 * f, 8 * f), (16 * f, 4 * f), (8 * f, 2 * f), (4 * f, f)]
        self.up = nn.ModuleList(_Up(cin, cout, qs[5 + i]) for i, (cin, cout) in enumerate(ups))
        self.out = SelfONNTranspose1d(2 * f, 1, 6, stride=2, padding=2, q=qs[9])
        if self.config.residual:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"Generator expects (batch, 1, length), got {tuple(x.shape)}")
        if x.shape[-1] % LENGTH_MULTIPLE or x.shape[-1] == 0:
            raise ValueError(
                f"Generator input length must be a positive multiple of {LENGTH_MULTIPLE}, got {x.shape[-1]}"
            )
        skips = []
        h = x
        for layer in self.down:
            h = torch.tanh(layer(h))
            skips.append(h)
        # skips: d1 (f), d2 (2f), d3 (4f), d4 (8f), d5 (8f, the bottleneck = h)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            h = torch.cat([block(h), skip], dim=1)
        if self.config.residual:
            return x + self.out(h)
        return torch.tanh(self.out(h))


def build_generator(config: dict[str, Any] | GeneratorConfig | None = None) -> Generator:
    """Build a generator from a plain dict (as stored in checkpoints) or a GeneratorConfig."""
    if config is None or isinstance(config, GeneratorConfig):
        return Generator(config)
    return Generator(GeneratorConfig.from_dict(dict(config)))
