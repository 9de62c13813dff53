"""Bandwidth of source voices and the rule that keeps band-limited voices out of clean targets."""
import logging

import numpy as np
import pytest
import soundfile as sf

from opgan.data.audio import AudioError, resample
from opgan.data.bandwidth import MIN_CLEAN_BANDWIDTH_HZ, band_edge_hz, ltas, rolloff_hz
from opgan.data.card import measure_corpus
from opgan.data.sources import ClipSampler, files_with_groups

SR = 16000


def _speechlike(seed: int, seconds: float = 3.0) -> np.ndarray:
    """Pink-ish noise with a syllable-rate envelope: energy falls with frequency as speech's does."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec /= np.maximum(f, 100.0) ** 0.7
    x = np.fft.irfft(spec, n)
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * np.arange(n) / SR)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def _telephone(x: np.ndarray) -> np.ndarray:
    """To 8 kHz and back: nothing above 4 kHz, as the upsampled telephone voices."""
    return resample(resample(x, SR, 8000), 8000, SR)


def test_edge_tells_full_band_from_upsampled_narrow_band():
    x = _speechlike(0)
    f, p = ltas(x, SR)
    f8, p8 = ltas(_telephone(x), SR)
    assert band_edge_hz(f, p) >= 7500
    assert 3500 <= band_edge_hz(f8, p8) < 5000
    assert rolloff_hz(f8, p8) < 4000 and rolloff_hz(f, p) > rolloff_hz(f8, p8)
    assert band_edge_hz(*ltas(np.zeros(SR), SR)) == 0.0


def _voices(tmp_path, band_limited: tuple[str, ...]) -> list:
    for k, name in enumerate(("anna", "bert", "cleo")):
        d = tmp_path / name
        d.mkdir()
        for j in range(2):
            x = _speechlike(10 * k + j)
            sf.write(d / f"{j}.flac", _telephone(x) if name in band_limited else x, SR)
    return files_with_groups(tmp_path)


def test_sampler_drops_band_limited_groups_and_logs_them(tmp_path, caplog):
    files = _voices(tmp_path, ("bert",))
    assert ClipSampler(files, SR, 16000).group_names == ["anna", "bert", "cleo"]
    with caplog.at_level(logging.WARNING, logger="opgan.data.sources"):
        s = ClipSampler(files, SR, 16000, min_bandwidth_hz=MIN_CLEAN_BANDWIDTH_HZ)
    assert s.group_names == ["anna", "cleo"]
    assert list(s.band_limited) == ["bert"] and s.band_limited["bert"] < 5000
    assert "bert" in caplog.text
    rng = np.random.default_rng(0)
    assert {s.draw(rng)[2] for _ in range(20)} == {"anna", "cleo"}


def test_sampler_refuses_when_every_group_is_band_limited(tmp_path):
    files = _voices(tmp_path, ("anna", "bert", "cleo"))
    with pytest.raises(AudioError, match="band-limited"):
        ClipSampler(files, SR, 16000, min_bandwidth_hz=MIN_CLEAN_BANDWIDTH_HZ)


def test_shipped_corpus_card_and_default_dataset():
    from opgan.data.assets import corpus_dir
    from opgan.data.datasets import default_dynamic_dataset

    card = {v.voice: v for _, v in measure_corpus(corpus_dir() / "speech")}
    assert not card["menardi_f"].full_band  # the 8 kHz Italian prompts
    assert all(v.full_band for k, v in card.items() if k != "menardi_f")
    assert card["allison_f"].seconds > 120 and card["allison_f"].sample_rate == 16000
    ds = default_dynamic_dataset("speech", "train", length=2)
    assert "speech:menardi_f" in ds.sampler.band_limited
    assert "speech:menardi_f" not in ds.sampler.group_names
    old = default_dynamic_dataset("speech", "train", length=2, min_bandwidth_hz=None)
    assert "speech:menardi_f" in old.sampler.group_names


def test_a_damaged_file_does_not_decide_a_voice(tmp_path):
    files = _voices(tmp_path, ("bert",))
    (tmp_path / "bert" / "broken.flac").write_bytes(b"fLaC not really")
    (tmp_path / "anna" / "broken.flac").write_bytes(b"fLaC not really")
    s = ClipSampler(files_with_groups(tmp_path), SR, 16000, min_bandwidth_hz=MIN_CLEAN_BANDWIDTH_HZ)
    assert s.group_names == ["anna", "cleo"] and list(s.band_limited) == ["bert"]
    assert any("broken.flac" in p for p in s.rejected)
