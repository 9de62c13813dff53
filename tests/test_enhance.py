"""opgan.enhance: blind gain, seam-free streaming overlap-add, checkpoint loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from opgan.enhance import (
    CheckpointError,
    OverlapAdd,
    Restorer,
    enhance_clips,
    enhance_signal,
    load_restorer,
    shipped_weights,
    synthesis_window,
)
from opgan.models import build_generator

torch.set_num_threads(1)


class Identity(nn.Module):
    def __init__(self, gain: float = 1.0) -> None:
        super().__init__()
        self.gain = gain
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.gain * x


class Cube(nn.Module):
    length_multiple = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] % 32 == 0
        return x**3


def tiny_checkpoint(path, filters=2, q=2, sr=16000, seed=0, **extra):
    torch.manual_seed(seed)
    gen = build_generator({"filters": filters, "q": q})
    ckpt = {
        "format": "opgan-ckpt-1",
        "config": {"name": "tiny", "generator": {"filters": filters, "q": q}},
        "generator": gen.state_dict(),
        "sample_rate": sr,
        "metrics": {"sdr": 1.0},
        **extra,
    }
    torch.save(ckpt, path)
    return gen.eval()


# ---------------------------------------------------------------------------- enhance_clips


def test_enhance_clips_undoes_peak_gain():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((3, 1, 100)).astype(np.float32))
    x[1] *= 1e-3
    x[2] *= 50.0
    y = enhance_clips(Cube(), x)  # pads 100 -> 128 for the model, crops back
    peak = x.abs().amax(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(y, peak * (x / peak) ** 3, rtol=1e-5, atol=1e-7)


def test_enhance_clips_silent_gives_zeros_not_nan():
    x = torch.zeros(3, 1, 64)
    x[1] = 1e-10  # below the silence threshold
    x[2, 0, 5] = 0.5
    model = Identity()
    y = enhance_clips(model, x)
    assert torch.isfinite(y).all()
    assert (y[:2] == 0).all()
    torch.testing.assert_close(y[2], x[2])
    assert model.seen[0].abs().amax(dim=(1, 2))[2] == pytest.approx(1.0)  # the model saw unit peak


def test_enhance_clips_rejects_nan_and_bad_shapes():
    x = torch.zeros(1, 1, 64)
    x[0, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        enhance_clips(Identity(), x)
    with pytest.raises(ValueError, match="batch, 1, length"):
        enhance_clips(Identity(), torch.zeros(2, 64))


def test_enhance_clips_keeps_grad_mode_for_training():
    gen = build_generator({"filters": 2, "q": 2})
    x = torch.randn(2, 1, 64)
    y = enhance_clips(gen, x)
    y.square().mean().backward()
    assert all(p.grad is not None for p in gen.parameters())


# ---------------------------------------------------------------------------- overlap-add


@pytest.mark.parametrize("length", [1, 31, 500, 1024, 1025, 5000])
@pytest.mark.parametrize("hop", [256, 128, 384, 500])  # Hann 50% / 75%, Tukey 25% / 2%
def test_overlap_add_identity_is_exact_across_window_edges(length, hop):
    rng = np.random.default_rng(length)
    x = rng.standard_normal(length).astype(np.float32)
    y = enhance_signal(Identity(), x, window=512, hop=hop, batch_size=3)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-6, rtol=0)


def test_overlap_add_constant_gain_has_no_seams():
    # A loud-then-quiet signal: every window has a different peak, so a seam would show as a step.
    t = np.arange(20000)
    x = (np.sin(2 * np.pi * t / 97) * np.where(t < 9000, 0.9, 0.01)).astype(np.float32)
    y = enhance_signal(Identity(gain=0.5), x, window=2048, batch_size=2)
    np.testing.assert_allclose(y, 0.5 * x, atol=1e-6, rtol=0)


def test_synthesis_windows_sum_to_one_in_the_interior():
    for hop in (256, 128, 384, 448):
        w = synthesis_window(512, hop)
        acc = np.zeros(512 * 8)
        for s in range(0, acc.size - 512 + 1, hop):
            acc[s : s + 512] += w
        interior = acc[512 : acc.size - 512]
        np.testing.assert_allclose(interior, interior.mean(), atol=1e-9)


def test_short_signal_is_one_clip():
    model = Identity()
    x = np.random.default_rng(0).standard_normal(32000).astype(np.float32)
    np.testing.assert_allclose(enhance_signal(model, x), x, atol=1e-6)
    assert [tuple(s.shape) for s in model.seen] == [(1, 1, 32000)]  # as in training: no overlap-add
    model.seen.clear()
    enhance_signal(model, x[:100])
    assert [tuple(s.shape) for s in model.seen] == [(1, 1, 128)]  # padded to a multiple of 32


def test_overlap_add_default_window_is_32000():
    x = np.random.default_rng(1).standard_normal(70001).astype(np.float32)
    model = Identity()
    y = enhance_signal(model, x)
    np.testing.assert_allclose(y, x, atol=1e-6)
    assert {s.shape[-1] for s in model.seen} == {32000}


def test_streaming_equals_whole_signal_with_real_generator(push_in_blocks):
    torch.manual_seed(0)
    gen = build_generator({"filters": 2, "q": 2}).eval()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3000)).astype(np.float32)
    whole = enhance_signal(gen, x, window=256, batch_size=4)
    streamed = push_in_blocks(OverlapAdd(gen, channels=2, window=256, batch_size=3), x, rng, 400)
    assert streamed.shape == x.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-5, rtol=0)  # float32 convs batched differently
    # Channels are independent: channel 1 alone gives the same as in the pair.
    np.testing.assert_allclose(enhance_signal(gen, x[1], window=256), whole[1], atol=1e-5)


def test_overlap_add_memory_is_bounded():
    window, hop, batch = 512, 256, 2
    ola = OverlapAdd(Identity(), channels=1, window=window, hop=hop, batch_size=batch)
    block = 300
    sizes = []
    total_out = 0
    for _ in range(400):  # 120000 samples streamed
        total_out += ola.push(np.ones((1, block), np.float32)).shape[1]
        sizes.append(max(ola.inbuf.shape[1], ola.acc.shape[1]))
    assert max(sizes) <= window + batch * hop + block
    assert total_out > 400 * block - (window + batch * hop + block)  # output keeps up with input


def test_forward_passes_hold_at_most_batch_size_clips():
    """Channels do not multiply the forward batch: memory per pass is bounded by --batch-size."""
    model = Identity()
    x = np.random.default_rng(3).standard_normal((6, 3000)).astype(np.float32)
    y = enhance_signal(model, x, window=512, batch_size=4)
    np.testing.assert_allclose(y, x, atol=1e-6)
    assert max(s.shape[0] for s in model.seen) <= 4


def test_enhance_signal_time_major_and_refusals():
    model = Identity()
    x = np.random.default_rng(4).standard_normal((2, 3000)).astype(np.float32)
    np.testing.assert_allclose(enhance_signal(model, x.T, window=512), x.T, atol=1e-6)  # (T, C) accepted
    assert max(s.shape[0] for s in model.seen) <= 4 and min(s.shape[-1] for s in model.seen) >= 512
    with pytest.raises(ValueError, match="ambiguous"):
        enhance_signal(model, np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match="at most 64 channels"):
        enhance_signal(model, np.ones((100, 200), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        enhance_signal(model, np.array([0.0, np.nan], np.float32))


def test_overlap_add_rejects_bad_args():
    with pytest.raises(ValueError):
        OverlapAdd(Identity(), window=512, hop=512)
    with pytest.raises(ValueError):
        enhance_signal(Identity(), np.array([0.0, np.inf], np.float32))


# ---------------------------------------------------------------------------- checkpoints


def test_load_restorer_roundtrip(tmp_path):
    path = tmp_path / "tiny.pt"
    gen = tiny_checkpoint(path)
    r = load_restorer(path)
    assert isinstance(r, Restorer) and r.sample_rate == 16000 and not r.generator.training
    assert r.metrics == {"sdr": 1.0} and r.second is None
    x = torch.randn(2, 1, 320)
    with torch.no_grad():
        torch.testing.assert_close(r(x), enhance_clips(gen, x))


def test_load_restorer_second_pass(tmp_path):
    path = tmp_path / "two.pt"
    torch.manual_seed(5)
    second = build_generator({"filters": 2, "q": 1}).eval()
    sp = {"config": {"generator": {"filters": 2, "q": 1}}, "generator": second.state_dict()}
    first = tiny_checkpoint(path, second_pass=sp)
    r = load_restorer(path)
    assert r.second is not None
    x = torch.randn(1, 1, 320)
    with torch.no_grad():
        torch.testing.assert_close(r(x), enhance_clips(second, enhance_clips(first, x)))


def test_load_restorer_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_restorer(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="cannot read.*not a PyTorch .pt file"):
        load_restorer(junk)
    wrong = tmp_path / "wrong.pt"
    torch.save({"format": "something-else"}, wrong)
    with pytest.raises(CheckpointError, match="format"):
        load_restorer(wrong)
    lacking = tmp_path / "lacking.pt"
    torch.save({"format": "opgan-ckpt-1", "config": {}}, lacking)
    with pytest.raises(CheckpointError, match="lacks generator, sample_rate"):
        load_restorer(lacking)
    mismatch = tmp_path / "mismatch.pt"
    tiny_checkpoint(mismatch)
    ck = torch.load(mismatch, weights_only=True)
    ck["config"]["generator"]["filters"] = 4
    torch.save(ck, mismatch)
    with pytest.raises(CheckpointError, match="do not match"):
        load_restorer(mismatch)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "opgan-ckpt-1", "obj": Identity()}, pickled)  # code, not data
    with pytest.raises(CheckpointError, match="holds code"):
        load_restorer(pickled)


class _RunsCommand:
    def __reduce__(self):
        import os

        return (os.system, ("echo this must never run",))


@pytest.mark.parametrize("legacy", [False, True])
def test_refused_pickle_says_it_holds_code_and_never_suggests_weights_only_false(tmp_path, legacy):
    """torch's own text, cut at 200 characters, ended at "Re-running `torch.load` with `weights_only` set to
    `False`": it pointed at the unsafe option. The message names what the file holds and warns against it."""
    path = tmp_path / "evil.pt"
    torch.save({"format": "opgan-ckpt-1", "config": _RunsCommand()}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError) as e:
        load_restorer(path)
    msg = str(e.value)
    assert "holds code" in msg and "system" in msg and "\n" not in msg
    assert "must not be loaded with weights_only=False" in msg
    assert "Re-running" not in msg and "will likely succeed" not in msg and "set to `False`" not in msg


def test_load_restorer_names_what_is_wrong_with_a_file(tmp_path):
    """Empty, text, truncated, folder and bare-state-dict files each get a one-line reason
    (a text file used to end in 'IndexError: pop from empty list')."""
    good = tmp_path / "good.pt"
    tiny_checkpoint(good)
    data = good.read_bytes()
    cases = {
        "empty.pt": (b"", r"empty \(0 bytes\)"),
        "notes.txt": (b"text\n", r"not a PyTorch .pt file \(it begins b'text\\n'\)"),
        "cut.pt": (data[: len(data) // 2], r"truncated or damaged \(\d+ bytes"),
    }
    for name, (content, why) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=why) as e:
            load_restorer(tmp_path / name)
        assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="is a folder"):
        load_restorer(tmp_path)
    bare = tmp_path / "bare.pt"
    torch.save(build_generator({"filters": 2, "q": 2}).state_dict(), bare)
    with pytest.raises(CheckpointError, match="bare state dict"):
        load_restorer(bare)


def test_one_checkpoint_reader():
    """enhance reads checkpoints through opgan.checkpoint: one format constant, one error class."""
    import opgan.checkpoint as ck
    import opgan.enhance as en

    assert en.CheckpointError is ck.CheckpointError
    assert not hasattr(en, "CHECKPOINT_FORMAT")


@pytest.mark.parametrize("name", ["speech", "music"])
def test_shipped_weights_load(name):
    """The shipped models are part of the package: `restore` works offline out of the box."""
    assert name in shipped_weights(), f"opgan/assets/weights/{name}.pt is missing from the package"
    r = load_restorer(name)
    assert r.sample_rate == {"speech": 16000, "music": 22050}[name]
    y = r(torch.randn(1, 1, 3200) * 0.1)
    assert y.shape == (1, 1, 3200) and torch.isfinite(y).all()
