"""The geometry of every Self-ONN call a model makes, read from the modules themselves.

Benchmarks and reports take their layer shapes from here (``opgan.models.opgan_layer_shapes``), so
they cannot drift from what the generator and discriminator actually run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from selfonn import SelfONN1d, SelfONNTranspose1d

Kind = Literal["conv", "conv_transpose"]
#: the name prefix of the generator's context-block layers (``gen.ctx.d8``, ``gen.ctx.proj``): benchmarks
#: keep them apart from the paper's 16 layers, whose totals older records are compared on
CONTEXT_PREFIX = "gen.ctx."


@dataclass(frozen=True)
class LayerShape:
    """One Self-ONN call: ``kind`` conv/conv_transpose, channels, kernel, stride, symmetric padding, input length,
    q and dilation (last, with a default: the paper's layers all have 1, the context blocks do not).

    Weight layout is FastONN's: conv ``(c_out, q*c_in, k)``, transposed ``(q*c_in, c_out, k)``.
    """

    name: str
    kind: Kind
    c_in: int
    c_out: int
    k: int
    stride: int
    padding: int
    L_in: int
    q: int
    dilation: int = 1

    @property
    def transposed(self) -> bool:
        return self.kind == "conv_transpose"

    @property
    def L_out(self) -> int:
        span = self.dilation * (self.k - 1) + 1  # input samples one output sample's taps cover
        if self.transposed:
            return (self.L_in - 1) * self.stride - 2 * self.padding + span
        return (self.L_in + 2 * self.padding - span) // self.stride + 1

    def weight_shape(self) -> tuple[int, int, int]:
        if self.transposed:
            return (self.q * self.c_in, self.c_out, self.k)
        return (self.c_out, self.q * self.c_in, self.k)

    def fwd_flops(self, batch: int) -> float:
        """2 x multiply-adds of the one big conv over the power stack (the powers themselves are negligible);
        dilation spreads the k taps out, it does not add any."""
        taps_applied = self.L_in if self.transposed else self.L_out
        return 2.0 * batch * taps_applied * self.c_out * self.q * self.c_in * self.k


def shape_of(name: str, layer: nn.Module, length: int) -> LayerShape:
    """The LayerShape of a SelfONN1d / SelfONNTranspose1d module applied to an input of ``length`` samples."""
    if not isinstance(layer, (SelfONN1d, SelfONNTranspose1d)):
        raise TypeError(f"{name}: expected a Self-ONN layer, got {type(layer).__name__}")
    if layer.groups != 1 or isinstance(layer.padding, str):
        raise ValueError(f"{name}: LayerShape covers groups=1, int padding (the Op-GAN layers)")
    if getattr(layer, "output_padding", (0,)) != (0,):
        raise ValueError(f"{name}: LayerShape covers output_padding=0 (the Op-GAN layers)")
    return LayerShape(
        name=name,
        kind="conv_transpose" if isinstance(layer, SelfONNTranspose1d) else "conv",
        c_in=layer.in_channels,
        c_out=layer.out_channels,
        k=layer.kernel_size[0],
        stride=layer.stride[0],
        padding=layer.padding[0],
        L_in=length,
        q=layer.q,
        dilation=layer.dilation[0],
    )
