"""opgan.data.audio and source discovery: bad input is reported by name, never turned into NaN."""
import numpy as np
import pytest
import soundfile as sf

from opgan.data.assets import fixture_dir
from opgan.data.audio import AudioError, find_audio_files, load_audio, resample, save_audio
from opgan.data.sources import ClipSampler, discover_splits, files_with_groups


def test_roundtrip_and_resample(tmp_path):
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    p = save_audio(tmp_path / "a.wav", x, 16000)
    y, sr = load_audio(p)
    assert sr == 16000 and y.shape == (1, 16000) and y.dtype == np.float32
    np.testing.assert_allclose(y[0], x, atol=1e-4)  # default wav subtype is PCM_16
    with pytest.raises(FileExistsError):
        save_audio(p, x, 16000)
    z, sr2 = load_audio(p, sr=22050)
    assert sr2 == 22050 and z.shape == (1, 22050)
    assert resample(x, 16000, 16000) is not None and resample(x, 16000, 8000).shape == (8000,)


def test_ogg_long_write(tmp_path):
    x = 0.1 * np.random.default_rng(0).standard_normal(400_000).astype(np.float32)
    y, sr = load_audio(save_audio(tmp_path / "long.ogg", x, 16000))
    assert y.shape == (1, 400_000) and np.all(np.isfinite(y))


def test_bad_files_are_named(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wave file")
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.1, np.nan, 0.2], np.float32), 16000, subtype="FLOAT")
    for path, why in ((empty, "empty"), (garbage, "unreadable"), (nan, "non-finite"), (tmp_path / "no.wav", "no such")):
        with pytest.raises(AudioError, match=why) as err:
            load_audio(path)
        assert path.name in str(err.value)
    with pytest.raises(AudioError, match="non-finite"):
        save_audio(tmp_path / "out.wav", np.array([np.inf, 0.0]), 16000)
    assert issubclass(AudioError, ValueError)


def test_zero_byte_file_is_called_empty(tmp_path):
    """A 0-byte file is not 'Format not recognised': the message says it is empty."""
    zero = tmp_path / "zero.wav"
    zero.touch()
    with pytest.raises(AudioError, match=r"zero.wav: the file is empty \(0 bytes\)"):
        load_audio(zero)


def test_sampler_skips_bad_sources(tmp_path):
    good = fixture_dir() / "speech" / "train" / "carlo_m"
    d = tmp_path / "spk"
    d.mkdir()
    for f in good.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    sf.write(d / "short.wav", np.full(800, 0.1, np.float32), 16000)
    sf.write(d / "narrow.wav", np.full(16000, 0.1, np.float32), 8000)  # below the target rate
    sf.write(d / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(d / "silent.wav", np.zeros(40000, np.float32), 16000)
    sf.write(d / "nan.wav", np.full(40000, np.nan, np.float32), 16000, subtype="FLOAT")
    with pytest.warns(UserWarning):
        s = ClipSampler(files_with_groups(tmp_path), 16000, 32000, min_sr=16000)
        rng = np.random.default_rng(0)
        clips = [s.draw(rng) for _ in range(12)]
    for clip, desc, group in clips:
        assert clip.shape == (32000,) and np.all(np.isfinite(clip)) and np.any(clip)
        assert "silent" not in desc and "nan" not in desc
    rejected = {p.split("/")[-1]: why for p, why in s.rejected.items()}
    assert "too short" in rejected["short.wav"] and "below" in rejected["narrow.wav"]
    assert "empty" in rejected["empty.wav"]
    assert "non-finite" in rejected.get("nan.wav", "non-finite")  # rejected once drawn


def test_silent_only_sources_refused(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(40000, np.float32), 16000)
    s = ClipSampler(files_with_groups(tmp_path), 16000, 32000)
    with pytest.raises(AudioError, match="non-silent"):
        s.draw(np.random.default_rng(0), max_tries=5)


def test_split_discovery(tmp_path):
    parts = discover_splits(fixture_dir() / "speech")
    groups = {s: {f.group for f in v} for s, v in parts.items()}
    assert groups == {"train": {"allison_f", "carlo_m"}, "val": {"ivrvoice_ru_f"}, "test": {"june_f"}}
    # a flat folder of groups: split by hashed group, never one group in two splits
    for g in range(10):
        (tmp_path / f"spk{g}").mkdir()
        sf.write(tmp_path / f"spk{g}" / "a.wav", np.full(100, 0.1, np.float32), 16000)
    parts = discover_splits(tmp_path)
    seen = [f.group for v in parts.values() for f in v]
    assert len(seen) == len(set(seen)) == 10 and all(parts[s] for s in parts)
    assert len(find_audio_files(tmp_path)) == 10
