"""Op-GAN models on Self-ONN layers: the U-Net generator, the discriminator and their losses.

Builds only on selfonn's public API (`SelfONN1d`, `SelfONNTranspose1d`, the functional ops).
"""
import torch

from . import losses
from .discriminator import Discriminator, DiscriminatorConfig, build_discriminator, min_discriminator_length
from .generator import LENGTH_MULTIPLE, Generator, GeneratorConfig, build_generator
from .shapes import LayerShape

__all__ = [
    "Discriminator",
    "DiscriminatorConfig",
    "Generator",
    "GeneratorConfig",
    "LENGTH_MULTIPLE",
    "LayerShape",
    "build_discriminator",
    "build_generator",
    "losses",
    "min_discriminator_length",
    "opgan_layer_shapes",
]


def opgan_layer_shapes(
    length: int = 32000, filters: int = 16, q: int = 3, fold_upsample: bool = True
) -> list[LayerShape]:
    """Every Self-ONN call of one Op-GAN generator + discriminator forward on a (B, 1, length) clip.

    Read from models built on the meta device (no memory, no init cost), so benchmarks measure
    exactly the shapes training runs: 10 generator calls, then 6 discriminator calls.
    """
    if length % LENGTH_MULTIPLE or length < min_discriminator_length():
        raise ValueError(
            f"clip length {length} does not fit both models: it must be a multiple of {LENGTH_MULTIPLE} "
            f"and >= {min_discriminator_length()} (the discriminator's minimum)"
        )
    with torch.device("meta"):
        g = Generator(GeneratorConfig(filters=filters, q=q), fold_upsample=fold_upsample)
        d = Discriminator(DiscriminatorConfig(filters=filters, q=q))
    return g.layer_shapes(length) + d.layer_shapes(length)
