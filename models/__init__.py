"""Op-GAN models on Self-ONN layers: the U-Net generator, the discriminator and their losses.

Builds only on selfonn's public API (`SelfONN1d`, `SelfONNTranspose1d`, the functional ops); the learning
ladder's reference model (`DemucsGenerator`) wraps the `denoiser` package's Demucs, imported when built;
`SpectralGenerator` runs the same Self-ONN layers over STFT frames as a mask estimator.
"""
import torch

from . import losses
from .discriminator import Discriminator, DiscriminatorConfig, build_discriminator, min_discriminator_length
from .generator import ARCHS, LENGTH_MULTIPLE, Generator, GeneratorConfig, build_generator
from .reference import DemucsConfig, DemucsGenerator, ReferenceUnavailable
from .shapes import CONTEXT_PREFIX, LayerShape
from .spectral import SpectralConfig, SpectralGenerator

__all__ = [
    "ARCHS",
    "CONTEXT_CANDIDATE",
    "CONTEXT_PREFIX",
    "DemucsConfig",
    "DemucsGenerator",
    "Discriminator",
    "DiscriminatorConfig",
    "Generator",
    "GeneratorConfig",
    "LENGTH_MULTIPLE",
    "LayerShape",
    "ReferenceUnavailable",
    "SpectralConfig",
    "SpectralGenerator",
    "build_discriminator",
    "build_generator",
    "losses",
    "min_discriminator_length",
    "opgan_layer_shapes",
]


#: the dilated-context generator the quality work compares (7 blocks, d = 1..64, width 16): the context
#: layers ``opgan_layer_shapes(context=True)`` adds are this generator's
CONTEXT_CANDIDATE: dict[str, object] = {"context": "dilated", "context_blocks": 7, "context_width": 16}


def opgan_layer_shapes(
    length: int = 32000, filters: int = 16, q: int = 3, fold_upsample: bool = True, context: bool = False
) -> list[LayerShape]:
    """Every Self-ONN call of one Op-GAN generator + discriminator forward on a (B, 1, length) clip.

    Read from models built on the meta device (no memory, no init cost), so benchmarks measure
    exactly the shapes training runs: 10 generator calls, then 6 discriminator calls. ``context``:
    then also the distinct layers of :data:`CONTEXT_CANDIDATE`'s context blocks in call order
    (``gen.ctx.d1``, ``gen.ctx.proj`` (once: every block's is the same), ``gen.ctx.d2`` .. ``gen.ctx.d64``),
    after the 16: totals over the paper's layers stay the first 16, names starting with
    :data:`CONTEXT_PREFIX` are the extra ones.
    """
    if length % LENGTH_MULTIPLE or length < min_discriminator_length():
        raise ValueError(
            f"clip length {length} does not fit both models: it must be a multiple of {LENGTH_MULTIPLE} "
            f"and >= {min_discriminator_length()} (the discriminator's minimum)"
        )
    with torch.device("meta"):
        g = Generator(GeneratorConfig(filters=filters, q=q), fold_upsample=fold_upsample)
        d = Discriminator(DiscriminatorConfig(filters=filters, q=q))
        shapes = g.layer_shapes(length) + d.layer_shapes(length)
        if context:
            cg = Generator(GeneratorConfig(filters=filters, q=q, **CONTEXT_CANDIDATE), fold_upsample=fold_upsample)
            ctx: dict[str, LayerShape] = {}
            for s in cg.layer_shapes(length):  # in call order, each name once (every block's proj is one shape)
                if s.name.startswith(CONTEXT_PREFIX):
                    ctx.setdefault(s.name, s)
            shapes += ctx.values()
    return shapes
