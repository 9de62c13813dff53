"""Clean-source augmentation and the "clean"/"light" corruption cases."""
import numpy as np
import pytest
from scipy.signal import welch

from opgan.data.assets import default_rirs, fixture_dir
from opgan.data.augment import (AugmentConfig, augment_clean, mulaw, narrowband, random_eq, source_length,
                                telephone)
from opgan.data.corrupt import ALL_CASES, CASES, LIGHT, corrupt, input_sdr
from opgan.data.datasets import DynamicRARDataset, open_dataset

SR = 16000
ALL_ON = AugmentConfig(p_speed=1.0, p_eq=1.0, p_telephone=1.0, p_narrowband=1.0, p_mulaw=1.0, p_level=1.0)


def noise(n=SR, seed=0):
    return (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def band_power(x, lo, hi, sr=SR):
    f, p = welch(x, sr, nperseg=1024)
    return float(p[(f >= lo) & (f < hi)].sum())


def test_band_limits():
    x = noise()
    tel = telephone(x, SR)
    assert band_power(tel, 4500, 8000) < 1e-3 * band_power(x, 4500, 8000)
    assert band_power(tel, 0, 150) < 1e-2 * band_power(x, 0, 150)
    assert band_power(tel, 800, 3000) > 0.7 * band_power(x, 800, 3000)
    nb = narrowband(x, SR)
    assert nb.shape == x.shape and band_power(nb, 4200, 8000) < 1e-3 * band_power(x, 4200, 8000)
    assert band_power(nb, 500, 3500) > 0.9 * band_power(x, 500, 3500)


def test_mulaw_quantises_with_a_relative_error():
    x = np.linspace(-1, 1, 10001)
    y = mulaw(x)
    assert len(np.unique(np.round(y, 12))) <= 256
    big = np.abs(x) > 0.1
    assert np.max(np.abs(y - x)[big] / np.abs(x[big])) < 0.05  # companding: error follows the level


def test_random_eq_is_bounded():
    x = noise(4 * SR)
    y, rec = random_eq(x, SR, np.random.default_rng(1), max_db=6.0)
    gain_db = 10 * np.log10(band_power(y, 100, 7000) / band_power(x, 100, 7000))
    assert abs(gain_db) < 3 * 6.0 and np.all(np.isfinite(y))
    assert all(abs(rec[k]) <= 6.0 for k in ("eq_low_db", "eq_high_db", "eq_peak_db"))


@pytest.mark.parametrize("seed", range(5))
def test_augment_clean_keeps_length_level_and_finiteness(seed):
    rng = np.random.default_rng(seed)
    speed = 1.1 if seed % 2 else 0.9
    x = noise(source_length(32000, speed), seed)
    y, rec = augment_clean(x, SR, rng, ALL_ON, 32000, peak=0.5, speed=speed)
    assert y.shape == (32000,) and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert rec["speed"] == speed and rec["mulaw"] and rec["telephone"] and rec["narrowband"]
    assert np.max(np.abs(y)) == pytest.approx(10 ** (rec["level_dbfs"] / 20), rel=0.05)
    with pytest.raises(ValueError, match="samples"):
        augment_clean(x[:1000], SR, rng, ALL_ON, 32000, peak=0.5, speed=1.0)


def test_speed_changes_pitch_by_the_factor():
    t = np.arange(source_length(32000, 1.1)) / SR
    x = np.sin(2 * np.pi * 500 * t)
    off = AugmentConfig(p_speed=1.0, p_eq=0, p_telephone=0, p_narrowband=0, p_mulaw=0, p_level=0)
    y, _ = augment_clean(x, SR, np.random.default_rng(0), off, 32000, peak=0.5, speed=1.1)
    f = np.fft.rfftfreq(y.size, 1 / SR)[np.argmax(np.abs(np.fft.rfft(y)))]
    assert f == pytest.approx(550, abs=2)


def test_config_validation():
    with pytest.raises(ValueError, match="p_eq"):
        AugmentConfig(p_eq=1.5)
    with pytest.raises(ValueError, match="speed"):
        AugmentConfig(speed=(1.2, 0.8))
    with pytest.raises(ValueError, match="level_db"):
        AugmentConfig(level_db=(-10.0, 3.0))


def test_clean_case_is_the_identity_and_light_is_mild():
    rng = np.random.default_rng(0)
    x = noise(32000) * 0.5
    y, c, rec = corrupt(x, SR, rng, "clean")
    assert np.array_equal(y, c) and np.array_equal(c, x) and rec["artifacts"] == "" and rec["input_sdr_db"] == np.inf

    class Bg:
        def draw(self, rng, length, sr, exclude_group=None):
            return np.random.default_rng(5).standard_normal(length).astype(np.float32), "bg"

    for s in range(20):
        y, c, rec = corrupt(x, SR, np.random.default_rng(s), "light", Bg(), default_rirs(), p_segment=0.0)
        assert rec["case"] == "light" and rec["artifacts"]
        if "awgn" in rec["artifacts"]:
            assert 30.0 <= rec["awgn_snr_db"] <= 50.0
        if "background" in rec["artifacts"]:
            assert 25.0 <= rec["background_sir_db"] <= 40.0
        if rec["artifacts"] in ("awgn", "background", "awgn+background"):
            assert input_sdr(y, c) > 20.0
        if "reverb" in rec["artifacts"]:
            assert LIGHT.rt60_s[0] <= rec["reverb_rt60_target"] <= LIGHT.rt60_s[1]
    assert set(CASES) < set(ALL_CASES) and "clean" not in CASES


def _dynamic(**kw):
    src = fixture_dir()
    return DynamicRARDataset(src / "speech" / "train", src / "background" / "train", SR, length=6, seed=3,
                             rir_bank=default_rirs(), **kw)


def test_dynamic_augment_is_deterministic_and_off_by_default():
    plain, off = _dynamic(), _dynamic(augment=False)
    for i in range(3):
        a, b = plain.sample(i), off.sample(i)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    aug1, aug2 = _dynamic(augment=ALL_ON), _dynamic(augment=ALL_ON)
    for e in (0, 1):
        aug1.set_epoch(e)
        aug2.set_epoch(e)
        for i in range(3):
            y1, x1, r1 = aug1.sample(i)
            y2, x2, r2 = aug2.sample(i)
            assert np.array_equal(y1, y2) and np.array_equal(x1, x2)
            assert y1.shape == x1.shape == (32000,) and np.all(np.isfinite(y1)) and np.all(np.isfinite(x1))
            assert r1["aug_mulaw"] and "aug_speed" in r1
    aug1.set_epoch(0)
    y0 = aug1.sample(0)[0]
    aug1.set_epoch(1)
    assert not np.array_equal(y0, aug1.sample(0)[0])
    assert isinstance(_dynamic(augment=True).augment, AugmentConfig)
    with pytest.raises(TypeError, match="augment"):
        _dynamic(augment="yes")


def test_dynamic_cases_clean_and_light():
    ds = _dynamic(cases=("clean",))
    y, x, rec = ds.sample(0)
    assert np.array_equal(y, x) and rec["case"] == "clean"
    ds = _dynamic(cases=("blend", "clean", "light"), case_probs=(0.0, 0.5, 0.5))
    assert {ds.sample(i)[2]["case"] for i in range(6)} <= {"clean", "light"}
    with pytest.raises(ValueError, match="case_probs"):
        _dynamic(cases=("clean", "light"), case_probs=(1.0,))
    with pytest.raises(ValueError, match="unknown case"):
        _dynamic(cases=("loud",))
    ds = open_dataset("default:speech", "val", length=2, cases=("clean",), augment=True)
    y, x = ds[0]
    assert y.shape == (1, 32000) and bool((y == x).all())
    with pytest.raises(ValueError, match="dynamic mixing"):
        open_dataset(fixture_dir(), "val", augment=True)  # a folder of sources without kind=
