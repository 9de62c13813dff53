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


# ---- bf16 autocast, folded up blocks, layer geometry ------------------------------------------

import os  # noqa: E402

import torch.nn.functional as F  # noqa: E402

import selfonn  # noqa: E402
from opgan.models import LayerShape, opgan_layer_shapes  # noqa: E402
from opgan.models.generator import _Up, folded_upsample_weight  # noqa: E402

BACKENDS = [
    "torch",
    pytest.param("triton", marks=pytest.mark.skipif(
        os.environ.get("TRITON_INTERPRET") != "1", reason="CPU Triton runs need TRITON_INTERPRET=1 (set w/o CUDA)")),
]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def _bf16_step(g: Generator, d: Discriminator, x_g: torch.Tensor, x_d: torch.Tensor, autocast: bool):
    """One forward + backward of G and D; returns the outputs and every parameter's gradient."""
    g.zero_grad(set_to_none=True), d.zero_grad(set_to_none=True)
    with torch.autocast(x_g.device.type, dtype=torch.bfloat16, enabled=autocast):
        y, s = g(x_g), d(x_d)
    # a linear loss: both runs backpropagate the same upstream gradient, so only the models' rounding differs
    weight = torch.linspace(-1, 1, y.numel(), device=y.device).view_as(y)
    ((y.float() * weight).sum() + s.float().sum()).backward()
    return y, s, [p.grad for p in [*g.parameters(), *d.parameters()]]


def _tiny_gan(device: str = "cpu", length: int = 64) -> tuple[Generator, Discriminator, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(filters=2, q=2)).to(device)
    d = Discriminator(DiscriminatorConfig(filters=1, q=2)).to(device)
    x_g = (torch.rand(1, 1, length) * 2 - 1).to(device)
    x_d = (torch.rand(1, 1, min_discriminator_length()) * 2 - 1).to(device)
    return g, d, x_g, x_d


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_autocast_runs_generator_and_discriminator(backend):
    """Stacked Self-ONN layers under CPU bf16 autocast: forward and backward go through every backend
    (the second layer used to raise TypeError: bf16 input, fp32 weight); outputs bf16, gradients fp32.
    The Triton interpreter's bf16 tl.dot is wrong (triton-lang/triton#11584), so values are checked
    on the torch path here and on CUDA below."""
    g, d, x_g, x_d = _tiny_gan()
    with selfonn.use_backend(backend):
        y, s, grads = _bf16_step(g, d, x_g, x_d, autocast=True)
    assert y.dtype == s.dtype == torch.bfloat16 and y.shape == x_g.shape and s.shape == (1, 1, 1)
    assert all(gr is not None and gr.dtype == torch.float32 for gr in grads)


@pytest.mark.parametrize("backend, device", [
    ("torch", "cpu"),
    pytest.param("triton", "cuda", marks=pytest.mark.skipif(
        not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1", reason="needs a CUDA device")),
])
def test_bf16_autocast_tracks_float32(backend, device):
    """The bf16 model's output and gradients stay close to the float32 model's (whole-model relative
    error; single small tensors of this tiny net sit behind InstanceNorms on short signals, whose
    conditioning amplifies bf16 rounding even for a plain CNN)."""
    g, d, x_g, x_d = _tiny_gan(device, length=512)
    with selfonn.use_backend(backend):
        y32, s32, grads32 = _bf16_step(g, d, x_g, x_d, autocast=False)
        y, s, grads = _bf16_step(g, d, x_g, x_d, autocast=True)
    assert y.dtype == torch.bfloat16
    assert _rel_err(y, y32) < 0.05
    torch.testing.assert_close(s.float(), s32, rtol=0.05, atol=0.03)  # one score: an absolute tolerance
    n_g = len(list(g.parameters()))
    for part in (slice(0, n_g), slice(n_g, None)):  # generator, then discriminator
        flat, flat32 = (torch.cat([t.flatten() for t in gs[part]]) for gs in (grads, grads32))
        assert torch.isfinite(flat).all() and _rel_err(flat, flat32) < 0.1


def test_folded_upsample_weight_is_upsample_then_conv():
    """The derivation, checked in float64 on a plain conv (q=1) for every length parity."""
    torch.manual_seed(0)
    w = torch.randn(3, 4, 5, dtype=torch.float64)
    for n in (1, 2, 7):
        h = torch.randn(2, 4, n, dtype=torch.float64)
        expected = F.conv1d(F.interpolate(h, scale_factor=2, mode="nearest"), w, padding=2)
        got = F.conv_transpose1d(h, folded_upsample_weight(w), stride=2, padding=2)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="k5"):
        folded_upsample_weight(torch.zeros(3, 4, 3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_folded_up_block_matches_upsample_conv(backend):
    """Output and every gradient (x and the stored k5 weight) agree with upsample + conv, Self-ONN q=3."""
    torch.manual_seed(0)
    plain, folded = _Up(3, 2, q=3, fold=False), _Up(3, 2, q=3, fold=True)
    folded.load_state_dict(plain.state_dict())
    x = (torch.rand(2, 3, 9) * 2 - 1).requires_grad_(True)
    with selfonn.use_backend(backend):
        outs = [m(x) for m in (plain, folded)]
        grads = [torch.autograd.grad(y.square().sum(), (x, m.conv.weight)) for y, m in zip(outs, (plain, folded))]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_folded_generator_is_the_same_model():
    """Same parameters and state-dict keys; output and all gradients agree to float rounding."""
    torch.manual_seed(0)
    plain = Generator(GeneratorConfig(filters=4, q=3), fold_upsample=False)
    folded = build_generator(plain.config.to_dict())
    assert list(folded.state_dict()) == list(plain.state_dict())
    folded.load_state_dict(plain.state_dict())
    x = torch.rand(2, 1, 256) * 2 - 1
    ys = [m(x) for m in (plain, folded)]
    torch.testing.assert_close(ys[1], ys[0], rtol=1e-5, atol=1e-5)
    for y in ys:
        y.square().sum().backward()
    for a, b in zip(folded.parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4 * b.grad.abs().max().item())


#: generator configs as the U-Net checkpoints shipped before the spectral models stored them: the first ones
#: (no gate floor, leak, activation or context fields) and the last one (floor 0.05, leak 0.01)
_STORED_UNET_CONFIGS = {"first": {"filters": 8, "q": 3, "residual": True, "gate": True},
                        "last": {"filters": 8, "q": 3, "residual": True, "gate": True, "gate_floor": 0.05,
                                 "gate_leak": 0.01}}


def _stored_unet(name: str) -> Generator:
    """A U-Net built from a stored config, every weight drawn (so the zero-initialised output layer is not zero)."""
    torch.manual_seed(0)
    gen = build_generator(dict(_STORED_UNET_CONFIGS[name])).eval()
    with torch.no_grad():
        for p in gen.parameters():
            p.normal_(0, 0.2)
    return gen


@pytest.mark.parametrize("name", ["first", "last"])
def test_stored_unet_checkpoints_load_unchanged_into_folded_generator(name):
    gen = _stored_unet(name)  # the default (folded) generator
    assert all(block.fold for block in gen.up)
    plain = build_generator(gen.config, fold_upsample=False).eval()
    plain.load_state_dict(gen.state_dict(), strict=True)
    x = torch.rand(1, 1, 2048, generator=torch.Generator().manual_seed(0)) * 0.6 - 0.3
    with torch.no_grad():
        torch.testing.assert_close(gen(x), plain(x), rtol=1e-5, atol=1e-5)


def _traced_convolutions(model: torch.nn.Module, x: torch.Tensor) -> list[tuple]:
    """(kind, weight shape, stride, padding, input length, dilation) of every aten.convolution a forward runs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Trace(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution.default:
                inp, w, _, stride, padding, dilation, transposed = args[:7]
                kind = "conv_transpose" if transposed else "conv"
                seen.append((kind, tuple(w.shape), stride[0], padding[0], inp.shape[-1], dilation[0]))
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), selfonn.use_backend("torch"), Trace():
        model(x)
    return seen


@pytest.mark.parametrize("fold", [True, False])
def test_layer_shapes_are_what_forward_runs(fold):
    """opgan_layer_shapes (what benchmarks measure) lists exactly the convolutions the models run."""
    f, q, length = 2, 3, 2688
    shapes = opgan_layer_shapes(length, filters=f, q=q, fold_upsample=fold)
    assert len(shapes) == 16 and all(isinstance(s, LayerShape) for s in shapes)
    g = Generator(GeneratorConfig(filters=f, q=q), fold_upsample=fold)
    d = Discriminator(DiscriminatorConfig(filters=f, q=q))
    x = torch.zeros(1, 1, length)
    traced = _traced_convolutions(g, x) + _traced_convolutions(d, x)
    listed = [(s.kind, s.weight_shape(), s.stride, s.padding, s.L_in, s.dilation) for s in shapes]
    assert traced == listed
    if fold:  # the up blocks are stride-2 transposed convs on the half-length input
        assert [s.kind for s in shapes[5:9]] == ["conv_transpose"] * 4
    with pytest.raises(ValueError, match="multiple of 32"):
        opgan_layer_shapes(length + 1)
    with pytest.raises(ValueError, match="minimum"):
        opgan_layer_shapes(2048)


def test_context_layer_shapes_are_what_forward_runs():
    """With the dilated context blocks, the generator lists every call in order (their dilations
    included); opgan_layer_shapes(context=True) adds the candidate's distinct layers after the 16."""
    from opgan.models import CONTEXT_CANDIDATE, CONTEXT_PREFIX

    f, q, length = 2, 2, 2688
    g = Generator(GeneratorConfig(filters=f, q=q, **CONTEXT_CANDIDATE))
    shapes = g.layer_shapes(length)
    traced = _traced_convolutions(g, torch.zeros(1, 1, length))
    assert traced == [(s.kind, s.weight_shape(), s.stride, s.padding, s.L_in, s.dilation) for s in shapes]
    ctx = [s for s in shapes if s.name.startswith(CONTEXT_PREFIX)]
    assert len(ctx) == 14 and [s.dilation for s in ctx[::2]] == [1, 2, 4, 8, 16, 32, 64]
    assert all(s.L_out == s.L_in == length // 32 for s in ctx)  # length-preserving, at the bottleneck
    plain = opgan_layer_shapes(length, filters=f, q=q)
    both = opgan_layer_shapes(length, filters=f, q=q, context=True)
    assert both[:16] == plain and not any(s.name.startswith(CONTEXT_PREFIX) for s in plain)
    assert [s.name for s in both[16:]] == ["gen.ctx.d1", "gen.ctx.proj"] + [f"gen.ctx.d{2**i}" for i in range(1, 7)]
    d8 = next(s for s in both if s.name == "gen.ctx.d8")
    assert (d8.c_in, d8.c_out, d8.k, d8.padding, d8.dilation, d8.L_in) == (8 * f, 16, 3, 8, 8, length // 32)


@pytest.mark.parametrize("transposed", [False, True])
def test_shape_of_a_dilated_layer(transposed):
    """shape_of takes dilated layers; L_out and the weight shape match what the module computes."""
    from opgan.models.shapes import shape_of

    cls = selfonn.SelfONNTranspose1d if transposed else selfonn.SelfONN1d
    layer = cls(4, 6, 3, stride=2, padding=3, dilation=5, q=2)
    s = shape_of("x", layer, 40)
    assert (s.dilation, s.k, s.stride, s.padding, s.q) == (5, 3, 2, 3, 2)
    with torch.no_grad():
        y = layer(torch.zeros(1, 4, 40))
    assert s.L_out == y.shape[-1] and s.weight_shape() == tuple(layer.weight.shape)
    assert s.fwd_flops(1) == 2.0 * (40 if transposed else s.L_out) * 6 * 2 * 4 * 3  # dilation adds no taps
    with pytest.raises(ValueError, match="groups=1"):
        shape_of("g", cls(4, 6, 3, groups=2, q=2), 40)


def test_folding_cuts_up_block_flops_by_40_percent():
    plain, folded = (opgan_layer_shapes(32000, fold_upsample=fold)[5:9] for fold in (False, True))
    ratio = sum(s.fwd_flops(8) for s in folded) / sum(s.fwd_flops(8) for s in plain)
    assert ratio == pytest.approx(0.6)
    assert [s.L_out for s in folded] == [s.L_out for s in plain]


def test_gated_residual_generator_starts_at_identity_and_gates_per_clip():
    """gate=True: identity at init; afterwards the correction is scaled by one sigmoid per clip."""
    from opgan.models import Generator, GeneratorConfig, build_generator

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(filters=2, q=2, residual=True, gate=True))
    x = torch.randn(3, 1, 512) * 0.2
    assert torch.equal(g(x), x)
    torch.nn.init.normal_(g.out.weight, std=0.1)
    with torch.no_grad():
        g.gate.bias.fill_(-30.0)  # gate closed: back to the input whatever the correction
        assert torch.allclose(g(x), x, atol=1e-9)
        g.gate.bias.fill_(30.0)  # gate open: the plain residual generator's output
        plain = Generator(GeneratorConfig(filters=2, q=2, residual=True))
        plain.load_state_dict({k: v for k, v in g.state_dict().items() if not k.startswith("gate.")})
        assert torch.allclose(g(x), plain(x), atol=1e-6)
    assert build_generator(g.config.to_dict()).config.gate is True
    with pytest.raises(ValueError, match="needs residual"):
        Generator(GeneratorConfig(filters=2, q=2, gate=True))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gate", [False, True], ids=["residual", "gated"])
def test_generator_saves_skips_only_inside_their_concatenation(gate, backend, monkeypatch):
    """Training forward keeps each skip and up-block output only as a view of its concatenation (the
    standalone tensors are freed once forward returns); output and every gradient are bit-identical
    to the plain concatenation's, also on a second backward through the retained graph."""
    import weakref

    from opgan.models import generator as gen_mod

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(filters=4, q=3, residual=True, gate=gate))
    for p in g.out.parameters():  # leave the zero-initialised residual output so every gradient flows
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 1, 256) * 2 - 1
    parts: list[weakref.ref] = []
    concat = gen_mod._SkipSharing.concat

    def recording(self, ps):
        parts.extend(weakref.ref(p) for p in ps)
        return concat(self, ps)

    monkeypatch.setattr(gen_mod._SkipSharing, "concat", recording)
    with selfonn.use_backend(backend):
        y = g(x)
        assert len(parts) == 8 and all(r() is None for r in parts)  # 4 levels x (up output, skip)
        y_ref = g._forward(x, lambda ps: torch.cat(ps, dim=1))
        loss = y.square().sum()
        grads = torch.autograd.grad(loss, list(g.parameters()), retain_graph=True)
        again = torch.autograd.grad(loss, list(g.parameters()))  # after the skips moved to their own copies
        grads_ref = torch.autograd.grad(y_ref.square().sum(), list(g.parameters()))
    assert torch.equal(y, y_ref)
    for a, b, c in zip(grads, again, grads_ref):
        assert torch.equal(a, c) and torch.equal(b, c)
    with torch.no_grad(), selfonn.use_backend(backend):  # inference: no hooks, the same output
        torch.testing.assert_close(g(x), y_ref.detach(), rtol=1e-5, atol=1e-6)


# ---- gate floor and leak, activation, dilated context (issue 23) ------------------------------------


@pytest.mark.parametrize("kind, floor, leak", [("first", 0.0, 0.0), ("last", 0.05, 0.01)])
def test_stored_configs_build_the_gate_they_were_trained_with(kind, floor, leak):
    """The first shipped U-Nets' config predates gate_floor/gate_leak/activation/context: it builds the
    old network, whose output is x + sigmoid(gate(stats)) * out(h) exactly. The last one records its
    floor and leak: x + (floor + (1 - floor) * sigmoid(gate(stats))) * out(h) (the leak changes only
    the gradient)."""
    from dataclasses import fields

    from opgan.models.generator import _LATER_DEFAULTS

    assert {f.name: f.default for f in fields(GeneratorConfig) if f.name in _LATER_DEFAULTS} == _LATER_DEFAULTS
    assert GeneratorConfig(8, 3, True, True).to_dict() == {"filters": 8, "q": 3, "residual": True, "gate": True}
    assert GeneratorConfig.from_dict(GeneratorConfig(8, 3, True, True, gate_floor=0.05).to_dict()).gate_floor == 0.05
    gen = _stored_unet(kind)
    assert (gen.config.gate_floor, gen.config.gate_leak, gen.config.activation, gen.config.context) == \
        (floor, leak, "tanh", "none")
    x = torch.rand(2, 1, 1024, generator=torch.Generator().manual_seed(0)) * 0.6 - 0.3
    with torch.no_grad():
        skips, h = [], x
        for layer in gen.down:
            h = torch.tanh(layer(h))
            skips.append(h)
        for block, skip in zip(gen.up, reversed(skips[:-1])):
            h = torch.cat([block(h), skip], dim=1)
        stats = torch.cat([torch.cat([s.mean(-1), s.square().mean(-1)], dim=1) for s in skips], dim=1)
        g = torch.sigmoid(gen.gate(stats)).unsqueeze(-1)
        want = x + (floor + (1 - floor) * g if floor else g) * gen.out(h)
        if floor:  # the floor's affine map may round differently from the model's own expression
            torch.testing.assert_close(gen(x), want, rtol=0, atol=1e-7)
        else:
            assert torch.equal(gen(x), want)


def _shut_gate_fit(floor: float, leak: float, steps: int = 60) -> tuple[float, float, float]:
    """A gated generator whose gate is driven shut (bias -30) is trained, gate only, towards its own
    open-gate output. Returns (gate value after, loss before, loss after)."""
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(filters=2, q=2, residual=True, gate=True, gate_floor=floor, gate_leak=leak))
    torch.nn.init.normal_(g.out.weight, std=0.3)
    x = torch.randn(4, 1, 256) * 0.3
    with torch.no_grad():
        g.gate.bias.fill_(30.0)
        target = g(x)
        g.gate.bias.fill_(-30.0)
    opt = torch.optim.Adam(g.gate.parameters(), lr=1.0)
    losses_ = []
    for _ in range(steps):
        loss = (g(x) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses_.append(loss.item())
    with torch.no_grad():
        skips, h = [], x
        for layer in g.down:
            h = torch.tanh(layer(h))
            skips.append(h)
        stats = torch.cat([torch.cat([s.mean(-1), s.square().mean(-1)], dim=1) for s in skips], dim=1)
        gate = g.gate_value(g.gate(stats)).mean().item()
    return gate, losses_[0], losses_[-1]


def test_a_shut_gate_reopens_with_the_leak_and_stays_shut_without():
    gate, before, after = _shut_gate_fit(floor=0.05, leak=0.01)
    assert gate > 0.9 and after < 0.2 * before
    gate0, before0, after0 = _shut_gate_fit(floor=0.0, leak=0.0)  # the shipped gate: shut for good
    assert gate0 < 1e-6 and after0 == pytest.approx(before0, rel=1e-3)


def test_gate_floor_keeps_the_correction_trained_while_shut():
    x = torch.randn(2, 1, 256) * 0.3
    grads = {}
    for floor in (0.0, 0.05):
        torch.manual_seed(0)
        g = Generator(GeneratorConfig(filters=2, q=2, residual=True, gate=True, gate_floor=floor))
        torch.nn.init.normal_(g.out.weight, std=0.3)
        with torch.no_grad():
            g.gate.bias.fill_(-30.0)
        (g(x) - 0.5 * x).abs().mean().backward()
        grads[floor] = g.out.weight.grad.norm().item()
    assert grads[0.0] < 1e-9 and grads[0.05] > 1e-4
    with pytest.raises(ValueError, match="gate_floor"):
        Generator(GeneratorConfig(filters=2, residual=True, gate=True, gate_floor=1.0))


def test_prelu_activation_is_a_plain_conv_control_of_the_same_shape():
    tanh = Generator(GeneratorConfig(filters=4, q=1, residual=True))
    prelu = Generator(GeneratorConfig(filters=4, q=1, residual=True, activation="prelu"))
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(prelu) - n(tanh) == 4 + 8 + 16 + 32 + 32 + 32 + 16 + 8 + 4  # one slope per channel
    assert not any(isinstance(m, torch.nn.Tanh) for m in prelu.modules())
    x = torch.randn(2, 1, 512) * 0.3
    prelu(x).square().sum().backward()
    with pytest.raises(ValueError, match="activation"):
        Generator(GeneratorConfig(filters=2, activation="relu"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_dilated_context_starts_as_the_plain_generator_and_trains(backend):
    """context='dilated': zero-initialised projections make it the same function as the plain generator
    at init; after a step every block has moved. Runs on the fused kernels (dilation) too."""
    torch.manual_seed(0)
    cfg = dict(filters=2, q=2, residual=True)
    ctx = Generator(GeneratorConfig(**cfg, context="dilated", context_blocks=3, context_width=4))
    plain = Generator(GeneratorConfig(**cfg))
    missing, unexpected = plain.load_state_dict(ctx.state_dict(), strict=False)
    assert not missing and all(k.startswith("context.") for k in unexpected)
    assert [b.conv.dilation[0] for b in ctx.context] == [1, 2, 4]
    for p in ctx.out.parameters():
        torch.nn.init.normal_(p, std=0.1)
    plain.out.load_state_dict(ctx.out.state_dict())
    x = torch.randn(2, 1, 512) * 0.3
    with selfonn.use_backend(backend):
        with torch.no_grad():
            assert torch.equal(ctx(x), plain(x))
        opt = torch.optim.Adam(ctx.parameters(), lr=1e-2)
        for _ in range(2):
            opt.zero_grad()
            (ctx(x) - 0.5 * x).square().mean().backward()
            opt.step()
    assert all(b.proj.weight.abs().sum() > 0 and b.conv.weight.grad.abs().sum() > 0 for b in ctx.context)
    with selfonn.use_backend("torch"), torch.no_grad():
        ref = ctx(x)
    with selfonn.use_backend(backend), torch.no_grad():
        torch.testing.assert_close(ctx(x), ref, rtol=1e-4, atol=1e-5)


def test_input_norm_makes_the_generator_level_invariant():
    """Scaling a clip by any gain scales the output by the same gain (the network sees one level); the
    shipped configs, which name no input_norm, build the generator that does not rescale."""
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(filters=4, q=3, residual=True, gate=True, input_norm=True))
    for m in g.modules():  # a trained-looking network: the zero-initialised output layer would hide scaling
        if getattr(m, "weight", None) is not None and m.weight.dim() == 3:
            torch.nn.init.normal_(m.weight, std=0.2)
    plain = Generator(GeneratorConfig(filters=4, q=3, residual=True, gate=True))
    plain.load_state_dict(g.state_dict())
    x = torch.randn(2, 1, 2048) * 0.05
    with torch.no_grad():
        y = g(x)
        for gain in (0.1, 3.0):  # above the RMS floor (1e-3): a quieter clip is amplified by at most 100
            assert (g(gain * x) - gain * y).abs().max() <= 1e-4 * (gain * y).abs().max()  # float32 rounding
        assert not torch.allclose(plain(3.0 * x), 3.0 * plain(x), rtol=1e-2)  # without it: level-dependent
        assert torch.isfinite(g(torch.zeros(1, 1, 64))).all()  # silence: the floor, no division by zero
    assert "input_norm" not in GeneratorConfig(filters=4).to_dict()  # old readers load default configs
    assert GeneratorConfig.from_dict(g.config.to_dict()).input_norm
