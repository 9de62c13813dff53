"""opgan.from_pretrained and hubconf.py: the shipped restorers one line away, offline, through the same
inference path as `opgan restore`."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

import opgan
from opgan.checkpoint import CheckpointError
from opgan.enhance import load_restorer
from opgan.models import build_generator
from opgan.pretrained import PretrainedRestorer
from opgan.restore import restore_file

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent


def _signal(sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(0)
    x = [0.3 * np.sin(2 * np.pi * (220 + 90 * c) * t) + 0.05 * rng.standard_normal(t.size) for c in range(channels)]
    return np.stack(x).astype(np.float32)


@pytest.fixture(scope="module")
def speech() -> PretrainedRestorer:
    return opgan.from_pretrained("speech")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise OSError("network access during an offline load")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_from_pretrained_is_an_eval_module_with_the_models_rate(speech):
    assert isinstance(speech, nn.Module) and not speech.training
    assert not any(m.training for m in speech.modules())
    assert (speech.sample_rate, speech.name) == (16000, "speech")
    assert opgan.from_pretrained("music").sample_rate == 22050
    # forward: the model-rate step on (B, 1, L) clips, as the Restorer runs it
    x = torch.from_numpy(_signal(16000, 0.25))[None]
    with torch.inference_mode():
        torch.testing.assert_close(speech(x), load_restorer("speech")(x))


def test_restore_is_the_cli_path(speech, tmp_path):
    """model.restore(array, rate) gives what `opgan restore` writes for the same samples."""
    x = _signal(44100, 1.5)[0]
    src = tmp_path / "in.wav"
    sf.write(src, x, 44100, subtype="FLOAT")
    restore_file(src, tmp_path / "out.wav", load_restorer("speech"), device="cpu")
    from_cli, sr = sf.read(tmp_path / "out.wav", dtype="float32")
    y = speech.restore(x, 44100)
    assert sr == 44100 and y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, from_cli, atol=2e-6)
    assert not np.allclose(y, x, atol=1e-3)  # it did something


def test_restore_takes_torch_multichannel_and_integer_audio(speech):
    x = _signal(22050, 0.6, channels=2)  # (C, T)
    ref = speech.restore(x, 22050)
    t = torch.from_numpy(x.T.copy()).double()  # (T, C) float64 tensor
    out = speech.restore(t, 22050)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.shape == t.shape
    np.testing.assert_allclose(out.numpy().T, ref, atol=1e-6)
    pcm = np.round(x[0] * 32767).astype(np.int16)
    y = speech.restore(pcm, 22050)
    assert y.dtype == np.int16 and y.shape == pcm.shape
    half = speech.restore(x[0], 22050, dry_wet=0.0)  # all dry: the input back
    np.testing.assert_allclose(half, x[0], atol=1e-5)
    with pytest.raises(ValueError, match="overlap"):
        speech.restore(x, 22050, overlap=1.0)
    with pytest.raises(ValueError, match="non-finite"):
        speech.restore(np.full(1000, np.nan, np.float32), 16000)


def test_from_pretrained_takes_a_checkpoint_path(tmp_path):
    torch.manual_seed(0)
    gen = build_generator({"filters": 2, "q": 2})
    path = tmp_path / "mine.pt"
    torch.save({"format": "opgan-ckpt-1", "config": {"generator": {"filters": 2, "q": 2}},
                "generator": gen.state_dict(), "sample_rate": 8000, "metrics": {"val_sdr": 1.0}}, path)
    m = opgan.from_pretrained(path)
    assert m.sample_rate == 8000 and m.metrics == {"val_sdr": 1.0} and not m.training
    assert m.restore(_signal(48000, 0.2)[0], 48000).shape == (9600,)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        opgan.from_pretrained(tmp_path / "missing.pt")


def test_torch_hub_loads_the_shipped_models_offline(speech, no_network):
    model = torch.hub.load(str(ROOT), "speech", source="local")
    assert isinstance(model, PretrainedRestorer) and not model.training and model.sample_rate == 16000
    x = _signal(16000, 0.5)[0]
    np.testing.assert_array_equal(model.restore(x, 16000), speech.restore(x, 16000))
    assert torch.hub.load(str(ROOT), "music", source="local").sample_rate == 22050
    assert torch.hub.load(str(ROOT), "from_pretrained", "music", source="local").name == "music"


def test_torch_hub_works_from_a_checkout_that_is_not_installed(tmp_path):
    """pyproject maps models/ -> opgan.models (and data/, kernels/); hubconf makes that mapping itself."""
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in getattr(f, '__name__', type(f).__name__)]\n"
        "import torch\n"
        f"m = torch.hub.load({str(ROOT)!r}, 'music', source='local')\n"
        "import opgan.models, opgan.data\n"
        f"assert opgan.models.__file__.startswith({str(ROOT / 'models')!r}), opgan.models.__file__\n"
        "print(m.sample_rate, type(m).__name__)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["22050", "PretrainedRestorer"]
