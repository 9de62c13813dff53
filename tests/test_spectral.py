"""The STFT-mask Self-ONN generator (`--arch spectral`): identity at init, any length, level-free features,
through the trainer, checkpoints, restorer and tools, and bounded when a checkpoint asks for an absurd one."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from opgan.checkpoint import CheckpointError, check_generator, load_checkpoint
from opgan.config import ConfigError, parse_args
from opgan.models import SpectralConfig, SpectralGenerator, build_generator
from opgan.trainer import main
from selfonn import SelfONN1d

sys.path.insert(0, str(Path(__file__).parent))
from _trainer_fixtures import check_generator_run, make_tiny_rar  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = SpectralConfig(n_fft=64, hidden=8, blocks=2, q=2)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_rar(tmp_path_factory.mktemp("rar") / "data")


def _args(data: Path, runs: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--data", str(data), "--runs-dir", str(runs), "--arch", "spectral",
            "--spectral-n-fft", "64", "--spectral-hidden", "8", "--spectral-blocks", "2", "--q", "2", "--spectral-gate",
            *extra]


@pytest.fixture(scope="module")
def spectral_run(tiny_data, tmp_path_factory) -> Path:
    """A 2-step run of the gated model, adversarial (the tiny preset keeps the discriminator on)."""
    runs = tmp_path_factory.mktemp("runs")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_args(tiny_data, runs, "--max-steps", "2", "--val-every", "2", "--ckpt-every", "1")) == 0
    finally:
        torch.set_num_threads(n)
    return runs / "tiny"


@pytest.mark.parametrize("length", [1, 7, 31, 333, 4097])
def test_identity_at_init_for_any_length_and_gradients_reach_every_layer(length):
    torch.manual_seed(0)
    g = SpectralGenerator(SMALL)
    x = (0.1 * torch.randn(2, 1, length)).requires_grad_(True)
    y = g(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)  # the mask is exactly 1 while the output layer is zero
    (y - 0.5 * x).square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert g.out.weight.grad.abs().sum() > 0  # the zero-initialised output layer learns first
    with pytest.raises(ValueError, match="expects"):
        g(torch.zeros(2, 2, 64))


def test_mask_is_level_free_bounded_and_finite_on_silence():
    torch.manual_seed(0)
    g = SpectralGenerator(SMALL)
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.3)
        x = 0.1 * torch.randn(1, 1, 2048)
        m = g.mask(x)
        torch.testing.assert_close(g.mask(100 * x), m, atol=1e-4, rtol=0)  # features see the clip at one level
        assert m.shape == (1, 33, 2048 // 16 + 1) and m.min() >= 0 and m.max() <= SMALL.mask_max
        silent = g(torch.zeros(1, 1, 2048))
        assert torch.isfinite(silent).all() and silent.abs().max() == 0  # a mask times nothing is nothing


def test_every_layer_is_a_selfonn_layer_and_reach_is_the_dilations():
    g = SpectralGenerator(SpectralConfig(n_fft=64, hidden=4, blocks=3, q=3))
    convs = [m for m in g.modules() if isinstance(m, SelfONN1d)]
    assert len(convs) == 2 + 2 * 3 and all(c.q == 3 for c in convs)
    assert [b.conv.dilation[0] for b in g.blocks] == [1, 2, 4]
    # a frame's mask depends on +-(1 + 1 + 2 + 4) frames and nothing further
    x = torch.zeros(1, 1, 64 * 16, requires_grad=True)
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.3)
    xin = x + 0.1 * torch.randn_like(x)
    g.mask(xin)[0, :, 32].sum().backward()
    frames = x.grad[0, 0].reshape(-1, 16).abs().sum(-1).nonzero().flatten()
    assert frames.min() >= 32 - 8 - 2 and frames.max() <= 32 + 8 + 2  # +-8 frames, +-2 more for the window


def test_build_generator_dispatches_and_configs_round_trip():
    g = build_generator(SMALL.to_dict())
    assert isinstance(g, SpectralGenerator) and g.config == SMALL
    with pytest.raises(ValueError, match="unknown spectral config keys"):
        build_generator({**SMALL.to_dict(), "lstm": 1})
    with pytest.raises(ValueError, match="mask_max"):
        build_generator({**SMALL.to_dict(), "mask_max": 1.0})


def test_run_trains_checkpoints_resumes_and_restores(spectral_run, tiny_data, tmp_path):
    cfg = json.loads((spectral_run / "config.json").read_text())
    assert (cfg["arch"], cfg["spectral_hidden"], cfg["spectral_blocks"]) == ("spectral", 8, 2)
    last = load_checkpoint(spectral_run / "last.pt")
    assert last["config"]["generator"] == {**SMALL.to_dict(), "gate": True}
    rec = check_generator_run(spectral_run, tiny_data, _args, SpectralGenerator, tmp_path)
    assert 0 < rec["val"]["gate_median"] < 1  # the gap reading sees its clip gate as it sees the U-Net's


@pytest.mark.parametrize("change, message", [
    ({"hidden": 10**6}, "hidden 1000000 is not an integer from 1 to 1024"),
    ({"blocks": 40}, "blocks 40 is not an integer from 1 to 12"),
    ({"n_fft": 10**7}, "n_fft 10000000 is not an integer from 16 to 8192"),
    ({"n_fft": 66}, "not understood"),
    ({"mask_max": 1e9}, "mask_max 1000000000.0 is not a number"),
    ({"q": 99}, "q 99 is not an integer"),
    ({"hidden": 1024, "blocks": 12, "q": 16}, "parameters, more than"),
])
def test_checkpoint_validation_bounds_it(change, message):
    state = SpectralGenerator(SMALL).state_dict()
    assert check_generator(SMALL.to_dict(), state, "x.pt").config["hidden"] == 8
    with pytest.raises(CheckpointError, match=message):
        check_generator({**SMALL.to_dict(), **change}, state, "x.pt")


def test_config_flags_and_bounds():
    cfg, _, _ = parse_args(["--arch", "spectral", "--spectral-hidden", "32", "--q", "2"])
    assert cfg.generator_config() == {**SpectralConfig(hidden=32, q=2).to_dict()}
    for bad, message in ((["--arch", "spectral", "--spectral-n-fft", "510"], "spectral_n_fft must be from 16 to 8192 "
                                                                             "and a multiple of 4"),
                         (["--arch", "spectral", "--spectral-blocks", "0"], "spectral_blocks must be >= 1"),
                         (["--arch", "spectral", "--spectral-hidden", "5000"], "spectral_hidden must be from 1 to 1024"),
                         (["--arch", "spectral", "--g-q", "1,2,3,1,2,3,1,2,3,1"], "takes one --q")):
        with pytest.raises(ConfigError, match=message):
            parse_args(bad)


def test_receptive_profiles_it(capsys):
    from opgan import receptive

    assert receptive.main(["tiny", "tiny:arch=spectral,spectral_n_fft=64,spectral_hidden=8,spectral_blocks=2",
                           "--steps", "1", "--length", "2048"]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if "arch=spectral" in ln)
    assert "whole clip" not in row


@pytest.mark.skipif(__import__("os").environ.get("TRITON_INTERPRET") != "1",
                    reason="CPU Triton runs need TRITON_INTERPRET=1 (set w/o CUDA)")
def test_fused_kernels_run_it_as_the_reference_does():
    """Every layer (k3 over 33 bins in, k3 dilated, 1x1 mask and filter) on the Triton kernels, forward and backward."""
    import selfonn

    torch.manual_seed(0)
    g = SpectralGenerator(SpectralConfig(n_fft=64, hidden=4, blocks=2, q=2, df_order=3, df_bins=8))
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.3)
    x = 0.1 * torch.randn(1, 1, 256)
    outs = []
    for backend in ("torch", "triton"):
        g.zero_grad(set_to_none=True)
        with selfonn.use_backend(backend):
            y = g(x)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append((y.detach(), [p.grad.clone() for p in g.parameters()]))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-5, rtol=1e-4)
    for a, b in zip(outs[1][1], outs[0][1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)


def test_gate_scales_the_correction_per_clip_and_can_pass_a_clip_unchanged():
    torch.manual_seed(0)
    cfg = SpectralConfig(n_fft=64, hidden=8, blocks=2, q=2, gate=True)
    g = SpectralGenerator(cfg)
    x = 0.1 * torch.randn(3, 1, 700)
    torch.testing.assert_close(g(x), x, atol=1e-5, rtol=0)  # the identity at init, gate or not
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.3)
        ungated = SpectralGenerator(SpectralConfig(**{**cfg.to_dict(), "gate": False}))
        ungated.load_state_dict({k: v for k, v in g.state_dict().items() if not k.startswith("gate.")})
        y_free = ungated(x)
        g.gate.weight.zero_()
        g.gate.bias.fill_(-30.0)  # shut: the clip passes as it came
        torch.testing.assert_close(g(x), x, atol=1e-6, rtol=0)
        g.gate.bias.fill_(30.0)  # open: the mask's output, as without the gate
        torch.testing.assert_close(g(x), y_free, atol=1e-6, rtol=0)
    cfg_args, _, _ = parse_args(["--arch", "spectral", "--spectral-gate"])
    assert cfg_args.generator_config()["gate"] is True
    assert parse_args(["--arch", "spectral"])[0].generator_config()["gate"] is False  # the ladder's model: no gate


def _trained_mask_model(path: Path) -> tuple[SpectralGenerator, Path]:
    """A mask-only, ungated model with a non-zero mask layer (as if trained), saved as a checkpoint at ``path``."""
    from opgan.checkpoint import save_checkpoint

    torch.manual_seed(0)
    src = SpectralGenerator(SMALL)
    with torch.no_grad():
        src.out.weight.normal_(0, 0.1)
    save_checkpoint(path, {"format": "opgan-ckpt-1", "config": {"generator": src.config.to_dict()},
                           "generator": src.state_dict(), "sample_rate": 16000})
    return src, path


def test_a_gate_can_be_added_to_a_trained_ungated_model(tiny_data, tmp_path):
    src, path = _trained_mask_model(tmp_path / "ungated.pt")
    assert main(_args(tiny_data, tmp_path, "--name", "gated", "--max-steps", "1", "--lr", "1e-12",
                      "--init-from", str(path))) == 0
    g = load_checkpoint(tmp_path / "gated" / "last.pt")["generator"]
    torch.testing.assert_close(g["out.weight"], src.state_dict()["out.weight"], atol=1e-6, rtol=0)
    assert g["gate.bias"].item() == pytest.approx(2.0, abs=1e-6)  # the added gate starts open, at its init
    # the other way round is refused: a gated model's gate would be dropped
    gated = tmp_path / "gated" / "last.pt"
    assert main(["--preset", "tiny", "--data", str(tiny_data), "--runs-dir", str(tmp_path), "--name", "back",
                 "--arch", "spectral", "--spectral-n-fft", "64", "--spectral-hidden", "8", "--spectral-blocks", "2",
                 "--q", "2", "--init-from", str(gated)]) == 2


def test_frame_norm_keeps_every_tanh_unsaturated_when_weights_grow():
    """Trained models grow a per-channel constant that saturates every tanh (the mask then no longer follows
    the input: a fixed equaliser, and no gradient passes). With per-frame normalisation the same grown weights
    leave the last hidden layer unsaturated. At init both are the identity."""
    torch.manual_seed(0)
    x = 0.1 * torch.randn(2, 1, 4096)
    saturated = {}
    for norm in (False, True):
        torch.manual_seed(1)
        g = SpectralGenerator(SpectralConfig(**{**SMALL.to_dict(), "norm": norm}))
        torch.testing.assert_close(g(x), x, atol=1e-5, rtol=0)
        seen = []
        g.out.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
        with torch.no_grad():
            g.inp.bias.normal_(0, 8.0)  # grown constants, as measured in trained models (|mean| 5-9 per channel)
            for b in g.blocks:
                b.proj.weight.normal_(0, 0.3)
                b.proj.bias.normal_(0, 8.0)
            g(x)
        saturated[norm] = (seen[-1].abs() > 0.99).float().mean().item()
    assert saturated[False] > 0.5 and saturated[True] < 0.05
    assert parse_args(["--arch", "spectral", "--spectral-norm"])[0].generator_config()["norm"] is True
    assert parse_args(["--arch", "spectral"])[0].generator_config()["norm"] is False  # the shipped models' form


FILTERED = SpectralConfig(n_fft=64, hidden=8, blocks=2, q=2, norm=True, df_order=3, df_bins=10)


def test_complex_filter_starts_as_the_identity_and_is_the_centred_sum_over_frames():
    """Y(f, n) = m X(f, n) + sum_i C_i X(f, n + i) on the low bins, checked bin by bin against a loop."""
    torch.manual_seed(0)
    g = SpectralGenerator(FILTERED).double()
    x = 0.1 * torch.randn(2, 1, 500, dtype=torch.float64)
    torch.testing.assert_close(g(x), x, atol=1e-9, rtol=0)  # zero coefficients and a unit mask
    with torch.no_grad():
        g.df.weight.normal_(0, 0.3)
        g.out.weight.normal_(0, 0.3)
    spec = g._stft(x[:, 0])
    m, h = g._mask(x, spec)
    c = torch.tanh(g.df(h)).view(2, 2, 3, 10, -1)
    coef = torch.complex(c[:, 0], c[:, 1])
    want = spec * m
    frames = spec.shape[-1]
    for n in range(frames):
        for i in range(3):
            if 0 <= n + i - 1 < frames:
                want[:, :10, n] += coef[:, i, :, n] * spec[:, :10, n + i - 1]
    got = g._filter(spec, m, h)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    torch.testing.assert_close(got[:, 10:], (spec * m)[:, 10:])  # the bins above df_bins keep the mask alone
    y = g(x)
    (y - 0.5 * x).square().sum().backward()
    assert g.df.weight.grad.abs().sum() > 0


def test_complex_filter_through_flags_checkpoints_and_the_trainer(tiny_data, tmp_path):
    cfg, _, _ = parse_args(["--arch", "spectral", "--spectral-df-order", "5", "--spectral-df-bins", "40"])
    assert cfg.generator_config() == SpectralConfig(df_order=5, df_bins=40).to_dict()
    for bad, message in ((["--spectral-df-order", "4"], "spectral_df_order must be odd"),
                         (["--spectral-df-order", "3", "--spectral-df-bins", "300"], "at most n_fft/2 \\+ 1 = 257"),
                         (["--spectral-df-order", "99"], "spectral_df_order must be from 0 to 15")):
        with pytest.raises(ConfigError, match=message):
            parse_args(["--arch", "spectral", *bad])
    state = SpectralGenerator(FILTERED).state_dict()
    assert check_generator(FILTERED.to_dict(), state, "x.pt").config["df_order"] == 3
    with pytest.raises(CheckpointError, match="df_order 99 is not an integer from 0 to 15"):
        check_generator({**FILTERED.to_dict(), "df_order": 99}, state, "x.pt")
    with pytest.raises(CheckpointError, match="not understood"):
        check_generator({**FILTERED.to_dict(), "df_order": 2}, state, "x.pt")
    with pytest.raises(CheckpointError, match="was it saved by another version"):  # the filter's weights are missing
        check_generator(FILTERED.to_dict(), SpectralGenerator(SMALL).state_dict(), "x.pt")
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2", "--val-every", "2", "--spectral-df-order", "3",
                      "--spectral-df-bins", "10", "--lambda-adv", "0")) == 0
    g = load_checkpoint(tmp_path / "tiny" / "best.pt")["config"]["generator"]
    assert (g["df_order"], g["df_bins"]) == (3, 10)


def test_a_complex_filter_can_be_added_to_a_trained_mask_model(tiny_data, tmp_path, capsys):
    """--init-from a mask-only model into a filtered run: the filter starts at zero, so the model restores
    as the source did; a filtered model cannot go back (its filter would be dropped)."""
    src, path = _trained_mask_model(tmp_path / "mask.pt")

    def args(*extra: str) -> list[str]:  # ungated, as the source is
        return [a for a in _args(tiny_data, tmp_path, "--lambda-adv", "0", *extra) if a != "--spectral-gate"]

    assert main(args("--name", "df", "--max-steps", "1", "--lr", "1e-12", "--init-from", str(path),
                     "--spectral-df-order", "3", "--spectral-df-bins", "10")) == 0
    ckpt = load_checkpoint(tmp_path / "df" / "last.pt")
    g = build_generator(ckpt["config"]["generator"])
    g.load_state_dict(ckpt["generator"])
    x = 0.1 * torch.randn(1, 1, 700)
    with torch.no_grad():
        torch.testing.assert_close(g(x), src(x), atol=1e-5, rtol=0)
    assert g.config.df_order == 3 and g.df.weight.abs().max() < 1e-6
    back = tmp_path / "df" / "last.pt"
    capsys.readouterr()
    assert main(args("--name", "back", "--init-from", str(back))) == 2
    assert main(args("--name", "wider", "--init-from", str(back), "--spectral-df-order", "3",
                     "--spectral-df-bins", "12")) == 2
    assert capsys.readouterr().err.count("does not match this run's") == 2
