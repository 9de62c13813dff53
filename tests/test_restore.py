"""opgan.restore: streaming resampling, file handling, user-facing checks, the restore CLI."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from torch import nn

from opgan.enhance import Restorer
from opgan.models import build_generator
from opgan.restore import (
    RestoreError,
    StreamResampler,
    main,
    restore_array,
    restore_file,
    restore_paths,
    scan_file,
)

torch.set_num_threads(1)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Silence(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class Half(nn.Module):
    """Halves its input and records the shape of every batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return 0.5 * x


def identity_restorer(sr: int = 16000) -> Restorer:
    return Restorer(generator=Identity(), sample_rate=sr)


def tone(sr: int, seconds: float, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = [amp * np.sin(2 * np.pi * (300 + 110 * c) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t)) for c in range(channels)]
    return np.stack(x).astype(np.float32)


@pytest.fixture
def tiny_ckpt(tmp_path):
    torch.manual_seed(0)
    gen = build_generator({"filters": 2, "q": 2})
    path = tmp_path / "tiny.pt"
    torch.save(
        {"format": "opgan-ckpt-1", "config": {"generator": {"filters": 2, "q": 2}},
         "generator": gen.state_dict(), "sample_rate": 16000, "metrics": {}},
        path,
    )
    return path


# ---------------------------------------------------------------------------- resampling


RATES = [(44100, 16000), (16000, 44100), (48000, 16000), (22050, 16000), (16000, 22050), (8000, 16000), (16000, 16000)]


@pytest.mark.parametrize("sr_in,sr_out", RATES)
def test_stream_resampler_equals_one_shot_soxr(sr_in, sr_out, push_in_blocks):
    """Streaming in random blocks gives soxr's one-shot result (to 1e-6) and exactly ceil(n*out/in) samples."""
    rng = np.random.default_rng(sr_in + sr_out)
    x = rng.standard_normal((2, 30011)).astype(np.float32)
    y = push_in_blocks(StreamResampler(sr_in, sr_out, channels=2), x, rng, 7000)
    assert y.shape == (2, math.ceil(30011 * sr_out / sr_in))
    ref = soxr.resample(x.T, sr_in, sr_out).T  # soxr rounds its length; ours extends the end with zeros
    n = min(ref.shape[1], y.shape[1])
    np.testing.assert_allclose(y[:, :n], ref[:, :n], atol=1e-6, rtol=0)


@pytest.mark.parametrize("sr_in,sr_out", RATES)
@pytest.mark.parametrize("n", [1, 2, 7, 101, 44101])
def test_stream_resampler_lengths_are_exact(sr_in, sr_out, n):
    r = StreamResampler(sr_in, sr_out, channels=1)
    got = r.push(np.ones((1, n), np.float32)).shape[1] + r.flush().shape[1]
    assert got == math.ceil(n * sr_out / sr_in)


@pytest.mark.parametrize("n", [1, 3, 44099, 44101])
def test_round_trip_length_is_exact_for_any_length(n):
    x = 0.1 * np.ones(n, np.float32)
    assert restore_array(x, 44100, identity_restorer()).shape == (n,)


# ---------------------------------------------------------------------------- arrays


def test_restore_array_identity_same_rate_is_exact():
    x = tone(16000, 2.5, channels=2)
    y = restore_array(x, 16000, identity_restorer())
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-6)


@pytest.mark.parametrize("sr", [44100, 8000, 22050])
def test_restore_array_other_rates_round_trip(sr):
    x = tone(sr, 1.3)[0]  # band-limited: survives the trip through 16 kHz
    y = restore_array(x, sr, identity_restorer())
    assert y.shape == x.shape
    # The polyphase round trip is transparent below 8 kHz except for the zero-extended edges.
    edge = sr // 100
    np.testing.assert_allclose(y[edge:-edge], x[edge:-edge], atol=5e-3)


def test_restore_array_dry_wet():
    x = tone(16000, 1.0)
    r = Restorer(generator=Silence(), sample_rate=16000)
    np.testing.assert_allclose(restore_array(x, 16000, r, wet=0.0), x, atol=1e-7)
    np.testing.assert_allclose(restore_array(x, 16000, r, wet=0.25), 0.75 * x, atol=1e-6)
    assert not restore_array(x, 16000, r, wet=1.0).any()
    with pytest.raises(ValueError, match="dry/wet"):
        restore_array(x, 16000, r, wet=1.5)


def test_restore_array_silence_and_nan():
    out = restore_array(np.zeros(5000, np.float32), 16000, identity_restorer())
    assert out.shape == (5000,) and not out.any() and np.isfinite(out).all()
    bad = tone(16000, 0.2)[0]
    bad[10] = np.nan
    with pytest.raises(ValueError, match="1 non-finite sample"):
        restore_array(bad, 16000, identity_restorer())


def test_restore_array_takes_soundfile_layout(tmp_path):
    """(T, C) as soundfile.read returns it is restored as C channels (it used to be taken as T
    channels of C samples each, which for a 15 s stereo file asked for gigabytes)."""
    x = tone(22050, 0.7, channels=2)
    model = Half()
    y = restore_array(x.T, 22050, Restorer(generator=model, sample_rate=16000))
    assert y.shape == x.T.shape
    assert max(b for b, _, _ in model.seen) <= 4 and min(n for _, _, n in model.seen) > 10000
    np.testing.assert_allclose(y, restore_array(x, 22050, Restorer(generator=Half(), sample_rate=16000)).T, atol=1e-6)
    sf.write(tmp_path / "st.wav", x.T, 22050, subtype="FLOAT")
    data, sr = sf.read(tmp_path / "st.wav", dtype="float32")
    assert restore_array(data, sr, identity_restorer()).shape == data.shape


@pytest.mark.parametrize("shape,why", [((3, 3), "ambiguous"), ((100, 200), "at most 64 channels"), ((2, 3, 4), "got shape")])
def test_restore_array_refuses_shapes_it_cannot_read(shape, why):
    with pytest.raises(ValueError, match=why):
        restore_array(np.ones(shape, np.float32), 16000, identity_restorer())


def test_restore_array_scales_integer_pcm():
    """int16 samples are restored at full scale and come back as int16 (they used to be processed
    at +-32768 and returned as float32)."""
    x = tone(16000, 0.5)[0]
    pcm = np.round(x * 32767).astype(np.int16)
    model = Half()
    y = restore_array(pcm, 16000, Restorer(generator=model, sample_rate=16000))
    assert y.dtype == np.int16 and y.shape == pcm.shape
    np.testing.assert_allclose(y, np.round(pcm / 2), atol=1)
    u8 = np.round(128 + 100 * x).astype(np.uint8)
    np.testing.assert_allclose(restore_array(u8, 16000, identity_restorer()).astype(int), u8, atol=1)
    with pytest.raises(ValueError, match="dtype"):
        restore_array(np.ones(100, bool), 16000, identity_restorer())


def test_pipeline_memory_is_bounded_with_resampling():
    from opgan.restore import _Pipeline

    pipe = _Pipeline(identity_restorer(), 44100, channels=2, batch_size=2)
    block = np.zeros((2, 4410), np.float32)
    block[:, ::7] = 0.1
    held, out = [], 0
    for _ in range(300):  # 30 s of 44.1 kHz stereo, 0.1 s at a time
        out += pipe.push(block).shape[1]
        held.append(pipe.dry_len + pipe.ola.inbuf.shape[1] + pipe.ola.acc.shape[1])
    # A few windows of latency (~6 s at 44.1 kHz), constant: not the 1.3 M samples streamed.
    assert max(held) < 400_000 and max(held[150:]) <= max(held[:150]) + block.shape[1]
    assert out + pipe.flush().shape[1] == 300 * 4410


# ---------------------------------------------------------------------------- files


def test_restore_file_keeps_rate_channels_subtype(tmp_path):
    src = tmp_path / "in.wav"
    x = tone(22050, 1.2, channels=2)
    sf.write(src, x.T, 22050, subtype="PCM_24")
    dst = tmp_path / "out" / "in.wav"
    rep = restore_file(src, dst, identity_restorer(), block_frames=4096)
    info = sf.info(str(dst))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (22050, 2, "PCM_24", x.shape[1])
    y, _ = sf.read(dst, dtype="float32", always_2d=True)
    edge = 300
    np.testing.assert_allclose(y[edge:-edge].T, x[:, edge:-edge], atol=5e-3)
    assert rep.error is None and rep.seconds == pytest.approx(x.shape[1] / 22050)
    assert not list(dst.parent.glob(".*partial*"))  # no temporary left behind


def test_streamed_file_equals_whole_array_with_generator(tmp_path, tiny_ckpt):
    from opgan.enhance import load_restorer

    r = load_restorer(tiny_ckpt)
    src = tmp_path / "in.wav"
    x = tone(16000, 4.2)[0] + 0.05 * np.random.default_rng(0).standard_normal(67200).astype(np.float32)
    sf.write(src, x, 16000, subtype="FLOAT")
    restore_file(src, tmp_path / "out.wav", r, block_frames=5000, batch_size=1)
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    np.testing.assert_allclose(y, restore_array(x, 16000, r, batch_size=3), atol=1e-5)
    assert np.abs(y - x).max() > 1e-3  # the generator really ran


def test_output_subtype_override_and_clipping_note(tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, 3.0 * tone(16000, 0.5)[0], 16000, subtype="FLOAT")  # peak 1.5
    rep = restore_file(src, tmp_path / "o.wav", identity_restorer(), output_subtype="PCM_16")
    assert sf.info(str(tmp_path / "o.wav")).subtype == "PCM_16"
    assert any("clipped" in n for n in rep.notes)
    y, _ = sf.read(tmp_path / "o.wav")
    assert np.abs(y).max() <= 1.0


def test_never_overwrites_input_and_refuses_existing_output(tmp_path):
    src = tmp_path / "a.wav"
    sf.write(src, tone(16000, 0.3)[0], 16000)
    before = src.read_bytes()
    with pytest.raises(RestoreError, match="input itself"):
        restore_file(src, src, identity_restorer(), overwrite=True)
    (tmp_path / "out").mkdir()
    existing = tmp_path / "out" / "a.wav"
    existing.write_bytes(b"keep me")
    with pytest.raises(RestoreError, match="--overwrite"):
        restore_file(src, existing, identity_restorer())
    assert existing.read_bytes() == b"keep me"
    restore_file(src, existing, identity_restorer(), overwrite=True)
    assert sf.info(str(existing)).frames == 4800
    assert src.read_bytes() == before
    # -o pointing at the input's own folder with no suffix is refused per file.
    reps = restore_paths([src], tmp_path, identity_restorer(), log=lambda m: None, log_error=lambda m: None)
    assert reps[0].error and "input itself" in reps[0].error
    assert src.read_bytes() == before


def test_input_checks(tmp_path):
    r = identity_restorer()
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000, np.float32), 16000)
    rep = restore_file(silent, tmp_path / "silent_out.wav", r)
    y, _ = sf.read(tmp_path / "silent_out.wav")
    assert not y.any() and any("silent" in n for n in rep.notes)

    nan = tmp_path / "nan.wav"
    x = tone(16000, 0.3)[0]
    x[1234] = np.inf
    sf.write(nan, x, 16000, subtype="FLOAT")
    with pytest.raises(RestoreError, match=r"1 NaN/Inf samples \(first at 0.077 s\)"):
        restore_file(nan, tmp_path / "nan_out.wav", r)
    assert not (tmp_path / "nan_out.wav").exists()

    junk = tmp_path / "junk.wav"
    junk.write_text("this is not audio")
    with pytest.raises(RestoreError, match="cannot read"):
        restore_file(junk, tmp_path / "junk_out.wav", r)

    dc = tmp_path / "dc.wav"
    sf.write(dc, tone(16000, 0.5, amp=0.3)[0] + 0.2, 16000)
    rep = restore_file(dc, tmp_path / "dc_out.wav", r)
    assert any("removed DC offset +0.19" in n or "removed DC offset +0.20" in n for n in rep.notes)
    y, _ = sf.read(tmp_path / "dc_out.wav")
    assert abs(y.mean()) < 0.01

    clipped = tmp_path / "clipped.wav"
    sf.write(clipped, np.clip(3 * tone(16000, 0.5)[0], -1, 1), 16000)
    rep = restore_file(clipped, tmp_path / "clipped_out.wav", r)
    assert any("clipped" in n for n in rep.notes)

    stats = scan_file(clipped)
    assert stats.frames == 8000 and stats.clipped_fraction > 0.1


def test_cli_restores_folders_and_reports_errors(tmp_path, tiny_ckpt, capsys):
    indir = tmp_path / "in"
    (indir / "sub").mkdir(parents=True)
    sf.write(indir / "a.wav", tone(16000, 0.5)[0], 16000)
    sf.write(indir / "sub" / "b.flac", tone(48000, 0.4, channels=2).T, 48000)
    out = tmp_path / "out"
    assert main([str(indir), "-o", str(out), "--model", str(tiny_ckpt), "--device", "cpu", "--dry-wet", "0.8"]) == 0
    assert sf.info(str(out / "a.wav")).frames == 8000
    info = sf.info(str(out / "sub" / "b.flac"))
    assert (info.samplerate, info.channels, info.format) == (48000, 2, "FLAC")
    # Second run without --overwrite: each file refused, exit 1; with it: fine.
    assert main([str(indir), "-o", str(out), "--model", str(tiny_ckpt)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(indir / "a.wav"), "-o", str(out), "--model", str(tiny_ckpt), "--overwrite"]) == 0
    # Default: beside the input with a suffix.
    assert main([str(indir / "a.wav"), "--model", str(tiny_ckpt)]) == 0
    assert (indir / "a_restored.wav").is_file()
    # A folder run beside the inputs never takes an earlier output as an input (no a_restored_restored).
    assert main([str(indir), "--model", str(tiny_ckpt)]) == 1  # a_restored.wav exists: refused, not replaced
    assert not (indir / "a_restored_restored.wav").exists()
    assert (indir / "sub" / "b_restored.flac").is_file()
    capsys.readouterr()
    assert main([str(indir), "--model", str(tiny_ckpt), "--overwrite"]) == 0
    assert sorted(p.name for p in indir.rglob("*_restored*")) == ["a_restored.wav", "b_restored.flac"]
    # Bad model and bad input: clean messages, no traceback.
    assert main([str(indir / "a.wav"), "--model", str(tmp_path / "nope.pt")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.wav"), "--model", str(tiny_ckpt)]) == 1
    assert "no such file" in capsys.readouterr().err


def _one_line_errors(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if "error" in line]


def test_bad_inputs_among_good_ones_do_not_stop_the_run(tmp_path, capsys):
    """A missing path, a 0-byte file, an unreadable file and an empty folder are each reported
    on one line; the good files are still restored and the exit status is 1."""
    indir = tmp_path / "in"
    indir.mkdir()
    sf.write(indir / "a.wav", tone(16000, 0.3)[0], 16000)
    (indir / "empty.wav").touch()
    (indir / "junk.flac").write_text("not audio")
    (tmp_path / "nothing").mkdir()
    sf.write(tmp_path / "b.wav", tone(16000, 0.3)[0], 16000)
    out = tmp_path / "out"
    args = [str(tmp_path / "missing.wav"), str(indir), str(tmp_path / "nothing"), str(tmp_path / "b.wav"), "-o", str(out)]
    reports = restore_paths(args[:-2], out, identity_restorer(), log=lambda m: None, log_error=lambda m: None)
    assert [r.error is None for r in reports] == [False, True, False, False, False, True]
    assert sf.info(str(out / "a.wav")).frames == 4800 and sf.info(str(out / "b.wav")).frames == 4800
    errors = " | ".join(r.error for r in reports if r.error)
    assert "no such file or folder" in errors and f"{indir / 'empty.wav'}: the file is empty (0 bytes)" in errors
    assert "cannot read" in errors and "holds no audio files" in errors
    (out / "a.wav").unlink()
    (out / "b.wav").unlink()
    from opgan import restore as R

    real = R.load_restorer
    R.load_restorer = lambda *a, **k: identity_restorer()
    try:
        assert main(args) == 1
    finally:
        R.load_restorer = real
    lines = _one_line_errors(capsys.readouterr().err)
    assert len(lines) == 4 and (out / "a.wav").is_file() and (out / "b.wav").is_file()


def test_output_path_problems_are_one_line_errors(tmp_path, tiny_ckpt, capsys, monkeypatch):
    src = tmp_path / "a.wav"
    sf.write(src, tone(16000, 0.3)[0], 16000)
    some_file = tmp_path / "some_file"
    some_file.write_bytes(b"keep me")
    # -o naming an existing file (used to be a FileExistsError traceback from mkdir).
    assert main([str(src), "-o", str(some_file), "--model", str(tiny_ckpt)]) == 2
    assert "is an existing file, not a folder" in _one_line_errors(capsys.readouterr().err)[0]
    assert some_file.read_bytes() == b"keep me"
    # -o that cannot be created (a file in its path).
    assert main([str(src), "-o", str(some_file / "sub"), "--model", str(tiny_ckpt)]) == 2
    assert "cannot create output folder" in _one_line_errors(capsys.readouterr().err)[0]
    # -o that looks like a file name.
    assert main([str(src), "-o", str(tmp_path / "out.wav"), "--model", str(tiny_ckpt)]) == 2
    assert "looks like a file name" in capsys.readouterr().err and not (tmp_path / "out.wav").exists()
    # An OS error while writing: one line per file, exit 1, no temporary left, nothing replaced.
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.wav").write_bytes(b"old output")

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("opgan.restore.os.replace", refuse)
    assert main([str(src), "-o", str(out), "--model", str(tiny_ckpt), "--overwrite"]) == 1
    lines = _one_line_errors(capsys.readouterr().err)
    assert f"cannot write '{out / 'a.wav'}': Permission denied" in lines[0]
    assert (out / "a.wav").read_bytes() == b"old output" and sorted(p.name for p in out.iterdir()) == ["a.wav"]


def test_output_folder_inside_input_folder_is_not_read_back(tmp_path):
    indir = tmp_path / "in"
    indir.mkdir()
    sf.write(indir / "a.wav", tone(16000, 0.3)[0], 16000)
    for _ in range(2):
        reps = restore_paths([indir], indir / "restored", identity_restorer(), overwrite=True,
                             log=lambda m: None, log_error=lambda m: None)
        assert [r.input.name for r in reps] == ["a.wav"] and reps[0].error is None
    assert not (indir / "restored" / "restored").exists()
    # Restoring a folder into itself (with a suffix) still finds its files.
    other = tmp_path / "other"
    other.mkdir()
    sf.write(other / "b.wav", tone(16000, 0.3)[0], 16000)
    reps = restore_paths([other], other, identity_restorer(), suffix="_r", log=lambda m: None, log_error=lambda m: None)
    assert [r.error for r in reps] == [None] and (other / "b_r.wav").is_file()


def test_bad_model_and_device_are_one_line_errors(tmp_path, tiny_ckpt, capsys):
    src = tmp_path / "a.wav"
    sf.write(src, tone(16000, 0.3)[0], 16000)
    text = tmp_path / "model.txt"
    text.write_text("text\n")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(tiny_ckpt.read_bytes()[:3000])
    for extra, why in (
        (["--model", str(text)], "not a PyTorch .pt file"),
        (["--model", str(cut)], "truncated or damaged"),
        (["--model", str(tiny_ckpt), "--device", "gpu"], "unknown device 'gpu'"),
        (["--model", str(tiny_ckpt), "--threads", "0"], "--threads must be >= 1"),
    ):
        assert main([str(src), "-o", str(tmp_path / "out"), *extra]) == 2
        lines = _one_line_errors(capsys.readouterr().err)
        assert len(lines) == 1 and why in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_default_threads_follow_the_load(monkeypatch):
    from opgan import device

    monkeypatch.setattr(device, "_usable_cpus", lambda: 2.0)
    monkeypatch.setattr(device.os, "getloadavg", lambda: (4.0, 4.0, 4.0))
    assert device.cpu_threads() == 1  # busy: one thread, not two fighting over one free core
    monkeypatch.setattr(device.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert device.cpu_threads() == min(2, torch.get_num_threads())
    # The CLI uses that choice unless --threads is given.
    set_to = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    monkeypatch.setattr("opgan.restore.cpu_threads", lambda: 7)
    main(["nothing.wav", "--model", "nothing.pt"])
    main(["nothing.wav", "--model", "nothing.pt", "--threads", "3"])
    assert set_to == [7, 3]


# ------------------------------------------------------------------- suffix, killed runs, truncation, progress


def test_suffix_with_a_path_separator_is_refused(tmp_path, tiny_ckpt, capsys):
    src = tmp_path / "in" / "x.wav"
    src.parent.mkdir()
    sf.write(src, tone(16000, 0.3)[0], 16000)
    out = tmp_path / "in" / "out"
    # out/x + "/../../escaped" + .wav resolved to <tmp>/escaped.wav: outside the output folder.
    assert main([str(src), "-o", str(out), "--suffix", "/../../escaped", "--model", str(tiny_ckpt)]) == 2
    lines = _one_line_errors(capsys.readouterr().err)
    assert len(lines) == 1 and "must not contain a path separator" in lines[0]
    assert not (tmp_path / "escaped.wav").exists() and not (tmp_path / "in" / "escaped.wav").exists()
    with pytest.raises(RestoreError, match="path separator"):
        restore_paths([src], None, identity_restorer(), suffix="_a/b", log=lambda m: None)
    assert not (tmp_path / "in" / "x_a").exists()


def test_partial_outputs_of_a_killed_run_are_removed_by_the_next_run(tmp_path):
    import subprocess
    import sys

    src = tmp_path / "a.wav"
    sf.write(src, tone(16000, 0.3)[0], 16000)
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that has exited: its pid names no process now
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = out / f".a.partial-{gone.pid}.wav"  # what a SIGKILL during restore_file leaves
        stale_other = out / f".b.partial-{gone.pid}.flac"  # another input of the killed run
        running = out / f".a.partial-{alive.pid}.wav"  # a run still writing: not ours to touch
        for p in (stale, stale_other, running):
            p.write_bytes(b"RIFF half a file")
        keep = [out / ".a.partial-x.wav", out / f"a.partial-{gone.pid}.wav", out / "notes.txt"]
        for p in keep:
            p.write_text("user file")
        logged = []
        reps = restore_paths([src], out, identity_restorer(), log=logged.append, log_error=logged.append)
        assert reps[0].error is None and (out / "a.wav").is_file()
        assert not stale.exists() and not stale_other.exists() and running.exists()
        assert all(p.read_text() == "user file" for p in keep)
        assert any("removed 2 unfinished output(s)" in m for m in logged)
    finally:
        alive.kill()
        alive.wait()


def test_truncated_file_is_restored_with_one_warning(tmp_path, capsys, monkeypatch):
    full = tmp_path / "full.wav"
    sf.write(full, tone(16000, 1.0)[0], 16000, subtype="PCM_16")
    src = tmp_path / "cut.wav"
    data = full.read_bytes()
    src.write_bytes(data[: len(data) - 10000])  # header still says 1 s; 5000 frames are missing
    monkeypatch.setattr("opgan.restore.load_restorer", lambda *a, **k: identity_restorer())
    assert main([str(src), "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "warning: the file is truncated" in lines[0], lines
    assert "declares 1.00 s" in lines[0] and "holds 0.69 s" in lines[0]
    y, sr = sf.read(tmp_path / "out" / "cut.wav")
    assert sr == 16000 and y.shape == (11000,)
    # an intact file: no warning
    assert main([str(full), "-o", str(tmp_path / "out")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_progress_bar_and_quiet(tmp_path, capsys, monkeypatch):
    for name, seconds in (("a.wav", 2.0), ("b.wav", 1.0)):
        sf.write(tmp_path / name, tone(16000, seconds)[0], 16000)
    files = [tmp_path / "a.wav", tmp_path / "b.wav"]
    reps = restore_paths(files, tmp_path / "o1", identity_restorer(), progress=True, log=lambda m: None)
    assert all(r.error is None for r in reps)
    err = capsys.readouterr().err
    assert "2/2 b.wav" in err and "3.0/3.0 s of audio" in err and "100%" in err
    restore_paths(files, tmp_path / "o2", identity_restorer(), log=lambda m: None)
    assert capsys.readouterr().err == ""  # the API shows no bar unless asked
    monkeypatch.setattr("opgan.restore.load_restorer", lambda *a, **k: identity_restorer())
    # The CLI shows the bar only on a terminal (stderr here is captured), prints a line per file ...
    assert main([str(files[0]), "-o", str(tmp_path / "o3")]) == 0
    out, err = capsys.readouterr()
    assert "a.wav ->" in out and "s of audio" not in err
    # ... and with --quiet nothing at all, even on a terminal.
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert main([str(files[0]), "-o", str(tmp_path / "o4"), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main([str(files[0]), "-o", str(tmp_path / "o5")]) == 0
    assert "1/1 a.wav" in capsys.readouterr().err
