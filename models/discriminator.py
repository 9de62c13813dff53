"""The Op-GAN discriminator: strided Self-ONN layers down to one score per 32000-sample clip.

    SelfONN1d k4 p1, strides 8,8,8,4,4, widths 1->f->2f->4f->8f->16f, tanh after each
    SelfONN1d(16f -> 1, k3, s4, p1), no activation (LSGAN regresses the score to 0/1)

On 32000 samples the lengths are 4000, 500, 63, 16, 4 and 1. Longer inputs give several scores,
which the losses average.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from selfonn import SelfONN1d

from .generator import _per_layer_q
from .shapes import LayerShape, shape_of

#: (kernel, stride, padding) of each layer: five tanh'd body layers, then the head. The one place the
#: geometry is written down: the constructor, `min_discriminator_length` and `layer_shapes` read it.
_GEOMETRY = ((4, 8, 1), (4, 8, 1), (4, 8, 1), (4, 4, 1), (4, 4, 1), (3, 4, 1))
N_DISCRIMINATOR_LAYERS = len(_GEOMETRY)


@dataclass
class DiscriminatorConfig:
    """Discriminator hyper-parameters (plain data)."""

    filters: int = 16  # f: widths f, 2f, 4f, 8f, 16f
    q: int | list[int] = 3  # Self-ONN order: one int, or 6 ints (one per layer)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiscriminatorConfig":
        unknown = set(d) - {"filters", "q"}
        if unknown:
            raise ValueError(f"unknown discriminator config keys: {sorted(unknown)}")
        return cls(**d)


def min_discriminator_length() -> int:
    """Shortest input that still yields one score (why: clear errors for too-short clips)."""
    # Invert out = floor((L + 2p - k) / s) + 1 >= 1 backwards through the layers.
    need = 1
    for k, s, p in reversed(_GEOMETRY):
        need = (need - 1) * s + k - 2 * p
    return max(need, 1)


class Discriminator(nn.Module):
    """(B, 1, L) -> (B, 1, n) scores (n = 1 for L = 32000)."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DiscriminatorConfig()
        f = self.config.filters
        if f < 1:
            raise ValueError(f"discriminator filters must be >= 1, got {f}")
        qs = _per_layer_q(self.config.q, N_DISCRIMINATOR_LAYERS, "discriminator")
        widths = [1, f, 2 * f, 4 * f, 8 * f, 16 * f, 1]
        layers = [
            SelfONN1d(widths[i], widths[i + 1], k, stride=s, padding=p, q=qs[i])
            for i, (k, s, p) in enumerate(_GEOMETRY)
        ]
        self.body = nn.ModuleList(layers[:-1])
        self.head = layers[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"Discriminator expects (batch, 1, length), got {tuple(x.shape)}")
        if x.shape[-1] < min_discriminator_length():
            raise ValueError(
                f"Discriminator input length {x.shape[-1]} is shorter than the minimum {min_discriminator_length()}"
            )
        h = x
        for layer in self.body:
            h = torch.tanh(layer(h))
        return self.head(h)

    def layer_shapes(self, length: int) -> list[LayerShape]:
        """Every Self-ONN call of one forward on a (B, 1, length) input, in call order."""
        shapes = []
        for i, layer in enumerate(self.body):
            shapes.append(shape_of(f"disc.{i + 1}", layer, length))
            length = shapes[-1].L_out
        return shapes + [shape_of("disc.head", self.head, length)]


def build_discriminator(config: dict[str, Any] | DiscriminatorConfig | None = None) -> Discriminator:
    """Build a discriminator from a plain dict or a DiscriminatorConfig."""
    if config is None or isinstance(config, DiscriminatorConfig):
        return Discriminator(config)
    return Discriminator(DiscriminatorConfig.from_dict(dict(config)))
