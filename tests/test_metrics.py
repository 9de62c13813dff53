"""opgan.metrics against hand-computed cases."""
import math

import numpy as np
import pytest

from opgan import metrics


def test_sdr_hand_computed():
    ref = np.array([1.0, -1.0, 1.0, -1.0])
    est = np.array([1.5, -1.0, 1.0, -1.0])  # error energy 0.25, signal energy 4 -> 10*log10(16)
    assert metrics.sdr(est, ref) == pytest.approx(10 * math.log10(16.0))
    assert metrics.sdr(ref, ref) == math.inf
    # The seed's SDR is not scale invariant: half the gain -> error = ref/2 -> 10*log10(4)
    assert metrics.sdr(0.5 * ref, ref) == pytest.approx(10 * math.log10(4.0))


def test_si_sdr_hand_computed():
    ref = np.array([1.0, -1.0, 1.0, -1.0])
    assert metrics.si_sdr(3.0 * ref, ref) == math.inf  # scale invariant
    noise = np.array([1.0, 1.0, -1.0, -1.0])  # orthogonal to ref, zero mean, same energy
    assert metrics.si_sdr(ref + 0.5 * noise, ref) == pytest.approx(10 * math.log10(1 / 0.25))
    assert math.isnan(metrics.si_sdr(ref, np.zeros(4)))
    # a silent estimate holds nothing of the reference: the floor, never a perfect score
    assert metrics.si_sdr(np.zeros(4), ref) == -math.inf


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="lengths differ"):
        metrics.sdr(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        metrics.sdr(np.array([np.nan, 1.0]), np.ones(2))
    with pytest.raises(ValueError, match="1-D"):
        metrics.sdr(np.zeros((2, 2)), np.zeros((2, 2)))


def test_batch_helpers_accept_tensors():
    torch = pytest.importorskip("torch")
    ref = torch.ones(3, 1, 8)
    est = ref.clone()
    est[1] *= 0.5
    out = metrics.sdr_batch(est, ref)
    assert out.shape == (3,)
    assert out[1] == pytest.approx(10 * math.log10(4.0))
    assert np.isinf(out[0])


@pytest.fixture(scope="module")
def speech():
    from opgan.data.assets import fixture_dir
    from opgan.data.audio import load_mono

    files = sorted((fixture_dir() / "speech" / "test").rglob("*.flac"))
    x = np.concatenate([load_mono(f, 16000)[0] for f in files])
    return x[: 3 * 16000].astype(np.float64)


def test_stoi_and_pesq_order_degradations(speech):
    rng = np.random.default_rng(0)
    noisy = speech + 0.3 * np.std(speech) * rng.standard_normal(speech.size)
    very = speech + 3.0 * np.std(speech) * rng.standard_normal(speech.size)
    assert metrics.stoi(speech, speech, 16000) == pytest.approx(1.0, abs=1e-6)
    assert metrics.stoi(noisy, speech, 16000) > metrics.stoi(very, speech, 16000)
    p_clean = metrics.pesq_wb(speech, speech, 16000)
    assert p_clean > 4.0
    assert p_clean > metrics.pesq_wb(noisy, speech, 16000) > metrics.pesq_wb(very, speech, 16000)
    # other rates are resampled to 16 kHz first
    from opgan.data.audio import resample

    s22 = resample(speech.astype(np.float32), 16000, 22050).astype(np.float64)
    assert metrics.pesq_wb(s22, s22, 22050) > 4.0


def test_pesq_silent_reference_is_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="silent"):
        assert math.isnan(metrics.pesq_wb(np.zeros(16000), np.zeros(16000), 16000))


def test_pesq_silent_estimate_scores_low(speech):
    assert metrics.pesq_wb(np.zeros_like(speech), speech, 16000) < 1.5


def test_band_balance_finds_a_dull_output(speech):
    from scipy.signal import butter, sosfiltfilt

    bal = metrics.band_balance_db(speech, speech, 16000)
    assert list(bal) == ["band_1_2k", "band_2_4k", "band_4_8k"]  # 8-16 kHz lies above 16 kHz's Nyquist
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in bal.values())
    dull = sosfiltfilt(butter(8, 3000, fs=16000, output="sos"), speech)  # a restorer that removes consonants
    d = metrics.band_balance_db(dull, speech, 16000)
    assert d["band_1_2k"] == pytest.approx(0.0, abs=0.5)
    assert d["band_4_8k"] < -30 and d["band_2_4k"] < -1
    assert metrics.band_balance_db(0.5 * speech, speech, 16000)["band_4_8k"] == pytest.approx(-6.0206, abs=1e-6)
    assert metrics.band_level_db(np.zeros_like(speech), speech, 16000, 4000, 8000) == -math.inf
    assert math.isnan(metrics.band_level_db(speech, np.zeros_like(speech), 16000, 4000, 8000))
    assert "band_8_16k" in metrics.band_balance_db(speech[:4000], speech[:4000], 44100)
