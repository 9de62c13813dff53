"""Op-GAN models on Self-ONN layers: the U-Net generator, the discriminator and their losses.

Builds only on selfonn's public API (`SelfONN1d`, `SelfONNTranspose1d`).
"""
from . import losses
from .discriminator import Discriminator, DiscriminatorConfig, build_discriminator, min_discriminator_length
from .generator import LENGTH_MULTIPLE, Generator, GeneratorConfig, build_generator

__all__ = [
    "Discriminator",
    "DiscriminatorConfig",
    "Generator",
    "GeneratorConfig",
    "LENGTH_MULTIPLE",
    "build_discriminator",
    "build_generator",
    "losses",
    "min_discriminator_length",
]
