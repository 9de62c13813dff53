"""The learning ladder's reference model (Demucs from the `denoiser` package) through the project's own
trainer, checkpoints, restorer and tools; and the one-line errors when its package is missing or a
checkpoint asks for an absurd one."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from opgan.checkpoint import CheckpointError, check_generator, load_checkpoint, save_checkpoint
from opgan.config import ConfigError, parse_args
from opgan.enhance import load_restorer
from opgan.models import DemucsConfig, DemucsGenerator, build_generator
from opgan.trainer import main

sys.path.insert(0, str(Path(__file__).parent))
from _trainer_fixtures import check_generator_run, make_tiny_rar  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
INSTALL = "pip install --no-deps denoiser==0.1.5"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_rar(tmp_path_factory.mktemp("rar") / "data")


def _args(data: Path, runs: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--data", str(data), "--runs-dir", str(runs), "--arch", "demucs",
            "--demucs-hidden", "4", "--demucs-depth", "3", *extra]


@pytest.fixture(scope="module")
def demucs_run(tiny_data, tmp_path_factory) -> Path:
    """A 2-step run of the reference model, adversarial (the tiny preset keeps the discriminator on)."""
    runs = tmp_path_factory.mktemp("runs")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_args(tiny_data, runs, "--max-steps", "2", "--val-every", "2", "--ckpt-every", "1")) == 0
    finally:
        torch.set_num_threads(n)
    return runs / "tiny"


@pytest.mark.parametrize("length", [1, 2, 333, 1001, 4097])
def test_wrapper_keeps_any_length_and_passes_gradients(length):
    torch.manual_seed(0)
    g = DemucsGenerator(DemucsConfig(hidden=4, depth=3))
    x = (0.1 * torch.randn(2, 1, length)).requires_grad_(True)
    y = g(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="expects"):
        g(torch.zeros(2, 2, 64))


def test_build_generator_dispatches_on_arch():
    g = build_generator({"arch": "demucs", "hidden": 4, "depth": 2})
    assert isinstance(g, DemucsGenerator) and g.config.to_dict()["hidden"] == 4
    assert type(build_generator({"filters": 2, "q": 2})).__name__ == "Generator"  # the U-Net's configs name no arch
    with pytest.raises(ValueError, match="arch must be one of"):
        build_generator({"arch": "wavenet"})
    with pytest.raises(ValueError, match="resample"):
        build_generator({"arch": "demucs", "resample": 3})


def test_reference_run_trains_checkpoints_resumes_and_restores(demucs_run, tiny_data, tmp_path):
    cfg = json.loads((demucs_run / "config.json").read_text())
    assert (cfg["arch"], cfg["demucs_hidden"], cfg["demucs_depth"]) == ("demucs", 4, 3)
    last = load_checkpoint(demucs_run / "last.pt")
    gcfg = last["config"]["generator"]
    assert gcfg["arch"] == "demucs" and gcfg["hidden"] == 4 and gcfg["depth"] == 3 and gcfg["causal"] is False
    assert any(k.startswith("net.lstm.") for k in last["generator"])
    # resume, restore and the ladder's gap, as for every generator arch
    check_generator_run(demucs_run, tiny_data, _args, DemucsGenerator, tmp_path)


def test_restore_cli_and_warm_start_from_a_reference_checkpoint(demucs_run, tiny_data, tmp_path, capsys):
    from opgan.restore import main as restore_main

    wav = tmp_path / "a.wav"
    sf.write(wav, 0.2 * np.sin(np.arange(7000) / 9.0), 16000)
    assert restore_main([str(wav), "-o", str(tmp_path / "out"), "--model", str(demucs_run / "best.pt")]) == 0
    assert sf.info(str(tmp_path / "out" / "a.wav")).frames == 7000
    ckpt = str(demucs_run / "last.pt")
    assert main(_args(tiny_data, tmp_path, "--name", "warm", "--max-steps", "1", "--init-from", ckpt)) == 0
    capsys.readouterr()
    assert main(["--preset", "tiny", "--data", str(tiny_data), "--runs-dir", str(tmp_path), "--name", "unet",
                 "--init-from", ckpt]) == 2
    assert "does not match" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ({"hidden": 10**6}, "hidden 1000000 is not an integer from 1 to 256"),
    ({"depth": 100}, "depth 100 is not an integer from 1 to 8"),
    ({"resample": 3}, "not understood"),
    ({"growth": 1e9}, "growth 1000000000.0 is not a number"),
    ({"hidden": 256, "depth": 8, "growth": 4.0}, "parameters, more than"),
    ({"glu": "yes"}, "glu must be true or false"),
    ({"kernel_size": 2, "stride": 4}, "kernel_size >= stride"),
    ({"lstm": 3}, "unknown Demucs config keys"),
])
def test_checkpoint_validation_bounds_the_reference_model(change, message):
    good = DemucsConfig(hidden=4, depth=2)
    state = DemucsGenerator(good).state_dict()
    assert check_generator(good.to_dict(), state, "x.pt").config["hidden"] == 4
    with pytest.raises(CheckpointError, match=message):
        check_generator({**good.to_dict(), **change}, state, "x.pt")


def test_config_bounds_and_ladder_flags():
    cfg, _, _ = parse_args(["--arch", "demucs", "--demucs-hidden", "8"])
    assert cfg.generator_config()["hidden"] == 8 and cfg.generator_config()["resample"] == 4
    for bad, message in ((["--arch", "conformer"], "arch must be one of"),
                         (["--arch", "demucs", "--demucs-resample", "3"], "demucs_resample must be one of"),
                         (["--arch", "demucs", "--demucs-depth", "0"], "demucs_depth must be >= 1"),
                         (["--arch", "demucs", "--demucs-depth", "50"], "demucs_depth must be from 1 to 8"),
                         (["--arch", "demucs", "--demucs-hidden", "4096"], "demucs_hidden must be from 1 to 256")):
        with pytest.raises(ConfigError, match=message):
            parse_args(bad)


@pytest.fixture
def no_denoiser(monkeypatch):
    """As if the package were not installed (a None entry makes its import raise ImportError)."""
    for name in [m for m in sys.modules if m == "denoiser" or m.startswith("denoiser.")] + ["denoiser"]:
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_package_is_one_line_naming_the_install_command(no_denoiser, demucs_run, tiny_data, tmp_path,
                                                                capsys):
    assert main(_args(tiny_data, tmp_path, "--max-steps", "1")) == 2
    err = capsys.readouterr().err
    assert INSTALL in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "tiny").exists()  # refused before any run folder was made
    with pytest.raises(CheckpointError, match=INSTALL):
        load_restorer(demucs_run / "best.pt")
    # the U-Net needs nothing of it
    assert main(["--preset", "tiny", "--data", str(tiny_data), "--runs-dir", str(tmp_path), "--max-steps", "1"]) == 0


def test_saved_reference_checkpoint_round_trips(tmp_path):
    g = DemucsGenerator(DemucsConfig(hidden=4, depth=2))
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"format": "opgan-ckpt-1", "config": {"generator": g.config.to_dict()},
                           "generator": g.state_dict(), "sample_rate": 16000})
    r = load_restorer(path)
    x = 0.1 * torch.randn(1, 1, 999)
    with torch.no_grad():
        assert torch.allclose(r(x), g.eval()(x / x.abs().max()) * x.abs().max(), atol=1e-6)


def test_receptive_profiles_it_beside_the_unet(capsys):
    from torch import nn

    from opgan import receptive

    class Frames(nn.Module):  # (1, 1, L) -> L/4 frames of 4 samples through a 2-layer BiLSTM
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(4, 3, num_layers=2, bidirectional=True)

        def forward(self, x):
            return self.lstm(x.reshape(-1, 1, 4))[0]

    per_frame = 2 * (4 * 3 * 4 + 4 * 3 * 3) + 2 * (4 * 3 * 6 + 4 * 3 * 3)  # both directions, both layers
    assert receptive.count_macs(Frames(), 64) == 16 * per_frame
    assert receptive.main(["tiny", "tiny:arch=demucs,demucs_hidden=4,demucs_depth=3", "--steps", "1",
                           "--length", "2048"]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if "arch=demucs" in ln)
    assert "whole clip" in row and "| - |" not in row  # no finite support to search; timed beside the U-Net
