"""The field's reference model for the learning ladder: Demucs (the `denoiser` package's speech enhancer).

The ladder compares the paper's Self-ONN U-Net with controls trained by the same trainer on the same data;
a model of the field, trained the same way, tells whether a result is the Self-ONN's or the setup's. The
network is the package's own ``denoiser.demucs.Demucs`` (a dependency, not a copy), wrapped to the
generator's call contract: (B, 1, T) -> (B, 1, T) for any T, a ``config`` with ``to_dict`` and
``length_multiple``. Demucs pads its input to its ``valid_length`` and crops the output back itself.

The package's requirements pin an old torch, so it is installed without them (its model imports only
torch): :data:`INSTALL`. It is imported when a model is built, so configs and checkpoints can be read
and checked without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .arch import ArchConfig

__all__ = ["ARCH", "INSTALL", "DemucsConfig", "DemucsGenerator", "ReferenceUnavailable", "demucs_class"]

#: the ``arch`` a stored generator config names for this model (the U-Net's configs name none)
ARCH = "demucs"
#: how to install the package (its own requirements would replace torch with 1.5.1)
INSTALL = "pip install --no-deps denoiser==0.1.5"
#: Demucs' resampling factors (its own check)
RESAMPLES = (1, 2, 4)


class ReferenceUnavailable(ImportError):
    """The reference model's package is not installed (the message says how to install it)."""


def demucs_class() -> type[nn.Module]:
    """``denoiser.demucs.Demucs``, or ReferenceUnavailable naming the install command."""
    try:
        from denoiser.demucs import Demucs
    except ImportError:
        raise ReferenceUnavailable(f"the Demucs reference model needs the denoiser package: {INSTALL}") from None
    return Demucs


@dataclass
class DemucsConfig(ArchConfig):
    """Demucs' own options, as plain data (checkpoints stay weights_only-loadable).

    Defaults: Demucs' speech-enhancement architecture (x4 resampling, 5 encoder/decoder levels of k8 s4,
    GLU, a bidirectional LSTM at the bottleneck, input normalised by its std) with ``hidden`` 8 instead
    of 48: at batch 8 x 4096 samples on one CPU thread its training step costs about what the recipe's
    f=8 U-Net's does (docs/training.md, "Learning ladder").
    """

    ARCH: ClassVar[str] = ARCH
    NAME: ClassVar[str] = "Demucs"

    arch: str = ARCH  # tells build_generator which network a stored config describes
    hidden: int = 8  # channels of the first level (Demucs' default 48), x growth per level
    depth: int = 5  # encoder/decoder levels
    kernel_size: int = 8
    stride: int = 4
    resample: int = 4  # the input is upsampled by this before the encoder (1, 2 or 4)
    growth: float = 2.0
    glu: bool = True
    normalize: bool = True  # divide the input by its std (and the output back by it)
    causal: bool = False  # False: a bidirectional LSTM at the bottleneck
    rescale: float = 0.1  # Demucs' weight-rescaling init
    floor: float = 1e-3  # added to the std when normalising

    def check(self) -> None:
        """ValueError for options Demucs cannot build or run with."""
        if min(self.hidden, self.depth, self.kernel_size, self.stride) < 1 or self.resample not in RESAMPLES:
            raise ValueError(f"Demucs needs hidden, depth, kernel_size, stride >= 1 and resample in {RESAMPLES}, got "
                             f"{self.hidden}, {self.depth}, {self.kernel_size}, {self.stride}, {self.resample}")
        if self.kernel_size < self.stride or not self.growth >= 1 or self.rescale < 0 or not self.floor > 0:
            raise ValueError(f"Demucs needs kernel_size >= stride, growth >= 1, rescale >= 0 and floor > 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.growth}, {self.rescale}, {self.floor}")


class DemucsGenerator(nn.Module):
    """``denoiser.demucs.Demucs`` as a generator: (B, 1, T) -> (B, 1, T), any T >= 1.

    Its bidirectional LSTM (and the normalisation by the clip's std) hears the whole clip:
    ``unbounded_reach`` tells `opgan.receptive` there is no finite support to search for.
    """

    #: read by `opgan.enhance.enhance_clips`: Demucs pads to its valid length and crops back itself
    length_multiple = 1
    unbounded_reach = True

    def __init__(self, config: DemucsConfig | None = None) -> None:
        super().__init__()
        self.config = config or DemucsConfig()
        self.config.check()
        c = self.config
        demucs = demucs_class()
        self.net = demucs(chin=1, chout=1, hidden=c.hidden, depth=c.depth, kernel_size=c.kernel_size,
                          stride=c.stride, causal=c.causal, resample=c.resample, growth=c.growth, glu=c.glu,
                          normalize=c.normalize, rescale=c.rescale, floor=c.floor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1 or x.shape[-1] == 0:
            raise ValueError(f"DemucsGenerator expects (batch, 1, length > 0), got {tuple(x.shape)}")
        # Demucs divides by the clip's std, undefined for one sample: such a clip goes in with one zero after it
        y = self.net(F.pad(x, (0, 1)))[..., :1] if x.shape[-1] == 1 else self.net(x)
        if y.shape != x.shape:  # Demucs' own contract; a changed package version would show here
            raise RuntimeError(f"Demucs returned {tuple(y.shape)} for input {tuple(x.shape)}")
        return y
