"""Op-GAN models and losses: the seed's shapes, any multiple-of-32 length, per-layer q, LSGAN terms."""
from __future__ import annotations

import pytest
import torch

from opgan.models import (
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    build_discriminator,
    build_generator,
    losses,
    min_discriminator_length,
)
from selfonn import SelfONN1d, SelfONNTranspose1d


pytestmark = pytest.mark.usefixtures("one_thread")


def test_generator_seed_architecture_f16():
    g = Generator()  # f=16, q=3
    assert g.config == GeneratorConfig(16, 3)
    down = [(m.weight.shape[0], m.weight.shape[1] // 3) for m in g.down]
    assert down == [(16, 1), (32, 16), (64, 32), (128, 64), (128, 128)]
    up = [(b.conv.weight.shape[0], b.conv.weight.shape[1] // 3) for b in g.up]
    assert up == [(128, 128), (64, 256), (32, 128), (16, 64)]
    assert isinstance(g.out, SelfONNTranspose1d) and tuple(g.out.weight.shape) == (3 * 32, 1, 6)
    with torch.no_grad():
        y = g(torch.randn(1, 1, 32000) * 0.3)
    assert y.shape == (1, 1, 32000) and y.abs().max() <= 1


@pytest.mark.parametrize("length", [32, 96, 4096, 32000 + 64])
def test_generator_any_multiple_of_32(length):
    g = Generator(GeneratorConfig(filters=2, q=2))
    assert g(torch.randn(2, 1, length)).shape == (2, 1, length)


def test_generator_rejects_bad_lengths_and_shapes():
    g = Generator(GeneratorConfig(filters=2, q=2))
    with pytest.raises(ValueError, match="multiple of 32"):
        g(torch.randn(1, 1, 1000))
    with pytest.raises(ValueError, match=r"\(batch, 1, length\)"):
        g(torch.randn(1, 2, 64))


def test_per_layer_q_and_q1_is_a_plain_cnn():
    qs = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]
    g = build_generator({"filters": 2, "q": qs})
    layers = [*g.down, *(b.conv for b in g.up), g.out]
    assert [m.q for m in layers] == qs
    cnn = Generator(GeneratorConfig(filters=4, q=1))
    op = Generator(GeneratorConfig(filters=4, q=3))
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(op) - n(cnn) == 2 * (n(cnn) - sum(m.bias.numel() for m in [*cnn.down, cnn.out]))
    assert all(b.conv.bias is None for b in g.up)  # InstanceNorm follows: a bias would be dead weight
    with pytest.raises(ValueError, match="list of 10"):
        build_generator({"filters": 2, "q": [3, 3]})
    with pytest.raises(ValueError, match="unknown generator config"):
        build_generator({"filters": 2, "width": 3})


def test_discriminator_one_score_per_clip():
    d = Discriminator()
    assert [m.stride for m in d.body] in ([8, 8, 8, 4, 4], [(8,), (8,), (8,), (4,), (4,)])
    assert isinstance(d.head, SelfONN1d)
    with torch.no_grad():
        assert d(torch.randn(2, 1, 32000) * 0.3).shape == (2, 1, 1)
    small = build_discriminator({"filters": 2, "q": 2})
    m = min_discriminator_length()
    assert small(torch.randn(1, 1, m)).shape == (1, 1, 1)
    with pytest.raises(ValueError, match="shorter than the minimum"):
        small(torch.randn(1, 1, m - 1))
    assert DiscriminatorConfig.from_dict(small.config.to_dict()) == small.config


def test_losses_values_and_gradients():
    ref = torch.randn(1, 1, 4096, generator=torch.Generator().manual_seed(0)) * 0.3
    assert losses.spectral_l1(ref, ref).item() == 0
    # white noise: every bin far above eps, so halving the amplitude costs log10(4) per bin
    assert losses.spectral_l1(ref * 0.5, ref).item() == pytest.approx(2 * torch.log10(torch.tensor(2.0)).item(), rel=1e-3)
    assert losses.power_spectrogram(ref).shape == (1, 129, 4096 // 128 + 1)
    assert losses.d_loss(torch.ones(3, 1, 1), torch.zeros(3, 1, 1)).item() == 0
    assert losses.d_loss(torch.zeros(3, 1, 1), torch.ones(3, 1, 1)).item() == 2
    est = (ref * 0.9).requires_grad_(True)
    total, parts = losses.g_loss(torch.full((1, 1, 1), 0.5), est, ref, 100.0, 1.0)
    assert set(parts) == {"g_adv", "g_l1", "g_spec"}
    expected = 0.25 + 100 * parts["g_l1"] + parts["g_spec"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    total.backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    _, no_spec = losses.g_loss(torch.ones(1, 1, 1), est, ref, 100.0, 0.0)
    assert "g_spec" not in no_spec


def test_generator_trains_a_step():
    g = Generator(GeneratorConfig(filters=2, q=3))
    x = torch.randn(2, 1, 256) * 0.3
    loss = losses.temporal_l1(g(x), x)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in g.parameters())


def test_residual_generator_starts_at_identity_and_learns():
    """residual=True: the zero-initialised output layer makes G(x) == x exactly, and it still trains."""
    from opgan.models import Generator, GeneratorConfig

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(filters=2, q=2, residual=True))
    x = torch.rand(2, 1, 256) * 2 - 1
    assert torch.equal(g(x), x)
    g(x).sub(0.5 * x).abs().mean().backward()
    assert g.out.weight.grad.abs().sum() > 0  # the output layer gets a gradient from the first step
    assert GeneratorConfig.from_dict({"filters": 2, "q": 2}).residual is False  # old checkpoints: the seed's


def test_g_loss_weights_each_term():
    """lambda_adv / lambda_t / lambda_s weight exactly their own term (the ablations rely on it)."""
    from opgan.models import losses as L

    torch.manual_seed(0)
    est, ref, d_fake = torch.randn(2, 1, 512), torch.randn(2, 1, 512), torch.randn(2, 1, 1)
    adv, tl1, sl1 = L.g_adversarial(d_fake), L.temporal_l1(est, ref), L.spectral_l1(est, ref)
    total, parts = L.g_loss(d_fake, est, ref, lambda_t=100.0, lambda_s=2.0, lambda_adv=0.5)
    assert torch.allclose(total, 0.5 * adv + 100.0 * tl1 + 2.0 * sl1)
    total0, parts0 = L.g_loss(d_fake, est, ref, lambda_t=100.0, lambda_s=0.0, lambda_adv=0.0)
    assert torch.allclose(total0, 100.0 * tl1) and "g_spec" not in parts0
