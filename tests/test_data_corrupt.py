"""Corruption cases, severity mapping, RIR alignment and clipping."""
import numpy as np
import pytest

from opgan.data.assets import default_rirs, fixture_dir
from opgan.data.corrupt import (ARTIFACTS, LIGHT, ROOM, SEVERITY, add_room, corrupt, drr_from_weight, input_sdr,
                                rt60_from_weight, segment_mask, sir_from_weight, snr_from_weight, weight_for_rt60)
from opgan.data.rir import RIRBank, apply_rir, drr_db, early_rir, set_drr
from opgan.data.sources import BackgroundPool, ClipSampler, files_with_groups

SR = 16000


@pytest.fixture(scope="module")
def bank():
    return default_rirs()


@pytest.fixture(scope="module")
def clip():
    s = ClipSampler(files_with_groups(fixture_dir() / "speech" / "train"), SR, 32000)
    x, _, group = s.draw(np.random.default_rng(1))
    return 0.5 * x / np.max(np.abs(x)), group


@pytest.fixture(scope="module")
def pool():
    return BackgroundPool(files_with_groups(fixture_dir() / "background" / "train", prefix="bg:"))


def test_severity_mapping_endpoints():
    assert (snr_from_weight(0), snr_from_weight(1)) == (30.0, -5.0)
    assert (sir_from_weight(0), sir_from_weight(1)) == (25.0, -5.0)
    assert (rt60_from_weight(0), rt60_from_weight(1)) == pytest.approx((0.2, 1.5))
    assert (drr_from_weight(0), drr_from_weight(1)) == (12.0, -8.0)
    assert snr_from_weight(0.5) == pytest.approx(12.5)
    with pytest.raises(ValueError):
        snr_from_weight(1.5)


def test_awgn_full_clip_hits_snr(clip):
    x, _ = clip
    for seed in range(20):  # find a draw covering the whole clip
        y, xc, rec = corrupt(x, SR, np.random.default_rng(seed), "awgn")
        if rec["awgn_len"] == x.size:
            break
    assert rec["gain"] == 1.0
    noise = y.astype(np.float64) - xc
    snr = 10 * np.log10(np.mean(xc.astype(np.float64) ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(rec["awgn_snr_db"], abs=0.05)
    assert rec["input_sdr_db"] == pytest.approx(snr, abs=0.05)
    assert rec["awgn_snr_db"] == pytest.approx(30 - 35 * rec["awgn_w"])


def test_segment_artifacts_leave_rest_untouched(clip, pool):
    x, group = clip
    found = 0
    for seed in range(40):
        y, xc, rec = corrupt(x, SR, np.random.default_rng(seed), "background", background=pool, clean_group=group)
        s, n = rec["background_start"], rec["background_len"]
        if n < x.size:
            outside = np.ones(x.size, bool)
            outside[s:s + n] = False
            np.testing.assert_array_equal(y[outside], xc[outside])
            assert np.any(y[s:s + n] != xc[s:s + n])
            found += 1
    assert found >= 5  # p_segment = 0.5 over 40 draws


def test_segment_mask_ramps():
    m = segment_mask(1000, 100, 500, 16000, ramp_ms=5)
    assert m[:100].sum() == 0 and m[600:].sum() == 0 and m[300] == 1
    assert 0 < m[100] < 0.1 and np.all(np.diff(m[100:180]) >= 0)


def test_each_case_and_blend(clip, pool, bank):
    x, group = clip
    seen = set()
    for seed in range(30):
        for case in ("blend",) + ARTIFACTS:
            y, xc, rec = corrupt(x, SR, np.random.default_rng(seed), case, pool, bank, clean_group=group)
            assert y.dtype == np.float32 and y.shape == x.shape and np.all(np.isfinite(y))
            assert np.max(np.abs(y)) <= 0.99 + 1e-6
            arts = rec["artifacts"].split("+")
            assert (arts == [case]) if case != "blend" else (1 <= len(arts) <= 3)
            assert rec["input_sdr_db"] == pytest.approx(input_sdr(y, xc))
            if case == "blend":
                seen.add(rec["artifacts"])
    assert len(seen) >= 5  # the blend really mixes different artifact sets


def test_clipping_scales_pair_consistently(clip, pool):
    x, group = clip
    loud = x / np.max(np.abs(x)) * 0.98
    for seed in range(20):
        y, xc, rec = corrupt(loud, SR, np.random.default_rng(seed), "awgn")
        if rec["gain"] < 1:
            np.testing.assert_allclose(xc, loud * rec["gain"], rtol=1e-5, atol=1e-7)
            assert np.max(np.abs(y)) == pytest.approx(0.99, abs=1e-6)
            return
    pytest.fail("no draw exceeded full scale")


def test_bad_clean_refused():
    with pytest.raises(ValueError, match="silence"):
        corrupt(np.zeros(100), SR, np.random.default_rng(0), "awgn")
    with pytest.raises(ValueError, match="non-finite"):
        corrupt(np.array([0.1, np.nan]), SR, np.random.default_rng(0), "awgn")
    with pytest.raises(ValueError, match="background source"):
        corrupt(np.ones(100), SR, np.random.default_rng(0), "background")


def test_background_never_from_own_group(clip):
    x, group = clip
    pool = BackgroundPool(files_with_groups(fixture_dir() / "speech" / "train"))
    for seed in range(10):
        _, name = pool.draw(np.random.default_rng(seed), 32000, SR, exclude_group=group)
        assert not name.startswith(group + ":")


def test_rir_bank_alignment_drr_and_cache(tmp_path):
    bank = RIRBank.simulate(4, SR, seed=3)
    for i in range(len(bank)):
        h, d0 = bank.get(i)
        assert h[d0] == pytest.approx(1.0) and np.argmax(np.abs(h)) == d0
        assert 0.15 < bank.rt60[i] < 1.7
        x = np.zeros(2000, np.float32)
        x[500] = 1.0
        y = apply_rir(x, h, d0)
        assert y.shape == x.shape and np.argmax(np.abs(y)) == 500  # direct path stays in place
        assert drr_db(set_drr(h, d0, SR, 3.0), d0, SR) == pytest.approx(3.0, abs=1e-3)
        h22, d22 = bank.get(i, 22050)
        assert h22[d22] == pytest.approx(1.0) and abs(d22 - d0 * 22050 / SR) <= 3
    bank.save(tmp_path / "b.npz")
    again = RIRBank.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(again.rirs[2], bank.rirs[2])
    same = RIRBank.simulate(2, SR, seed=3)  # RIR i depends on (seed, i) only
    np.testing.assert_array_equal(same.rirs[1], bank.rirs[1])
    sub = bank.subset([1, 3])
    assert len(sub) == 2 and sub.parent_index(1) == 3
    with pytest.raises(ValueError, match="not a RIR bank"):
        (tmp_path / "x.npz").write_bytes(b"nope")
        RIRBank.load(tmp_path / "x.npz")


def test_reverb_severity_follows_weight(clip, bank):
    x, _ = clip
    recs = [corrupt(x, SR, np.random.default_rng(s), "reverb", rirs=bank)[2] for s in range(25)]
    w = np.array([r["reverb_w"] for r in recs])
    rt = np.array([r["rt60"] for r in recs])
    assert np.corrcoef(w, rt)[0, 1] > 0.8
    assert all(r["drr_db"] == pytest.approx(SEVERITY.drr_db[0] + (SEVERITY.drr_db[1] - SEVERITY.drr_db[0]) * r["reverb_w"]) for r in recs)


def test_sqrt_group_weighting_draws_long_speakers_more_often(tmp_path):
    """A speaker with 16x the audio is drawn ~4x as often under 'sqrt', ~1x under 'uniform'."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    for group, n_files in (("long", 16), ("short", 1)):
        (tmp_path / group).mkdir()
        for i in range(n_files):
            sf.write(tmp_path / group / f"{i}.wav", (0.3 * rng.standard_normal(SR)).astype(np.float32), SR)
    files = files_with_groups(tmp_path)
    counts = {}
    for weight in ("uniform", "sqrt"):
        s = ClipSampler(files, SR, 4000, group_weight=weight)
        draws = [s.draw(np.random.default_rng(i))[2] for i in range(400)]
        counts[weight] = draws.count("long") / draws.count("short")
    assert 0.7 < counts["uniform"] < 1.4
    assert 3.0 < counts["sqrt"] < 5.3
    with pytest.raises(ValueError, match="group_weight"):
        ClipSampler(files, SR, 4000, group_weight="loudest")


def test_background_segment_on_a_silent_stretch_covers_the_whole_clip(clip):
    """An excerpt silent where the segment falls (active elsewhere) is mixed over the whole clip at the
    drawn SIR instead of failing the draw (it once stopped a training run) or being blown up."""
    x, group = clip

    class TailOnly:  # unit RMS, silent but for its last tenth
        def draw(self, rng, length, sr, exclude_group=None):
            b = np.zeros(length, np.float32)
            b[-length // 10:] = np.sqrt(10.0)
            return b, "tail"

    hit = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        y, xc, rec = corrupt(x, SR, rng, "background", background=TailOnly(), clean_group=group, p_segment=1.0)
        if rec["background_len"] == x.size:
            hit += 1
            noise = y.astype(np.float64) - xc
            assert np.all(noise[: -x.size // 10] == 0) and np.any(noise[-x.size // 10:] != 0)
            sir = 10 * np.log10(np.mean(xc.astype(np.float64) ** 2) / np.mean(noise**2))
            assert sir == pytest.approx(rec["background_sir_db"], abs=0.05)
    assert hit >= 10  # most 30-90 % segments miss the last tenth


def test_early_rir_keeps_the_first_reflections_and_drops_the_tail(bank):
    h, d0 = bank.get(0, SR)
    e = early_rir(h, d0, SR, early_ms=50.0, fade_ms=5.0)
    end = d0 + 800  # 50 ms at 16 kHz
    assert e.shape == h.shape and np.array_equal(e[:end], h[:end])
    assert not np.any(e[end + 80:]) and np.any(h[end + 80:])  # the 5 ms fade, then nothing
    assert np.all(np.abs(e[end:end + 80]) <= np.abs(h[end:end + 80]) + 1e-9)
    assert np.array_equal(early_rir(h, d0, SR, early_ms=10_000.0), h)  # a window past the end keeps it all


def test_early_reverb_target_keeps_the_input_and_only_moves_the_target(clip, bank, pool):
    """The same draws give the same input; the early target lies between the dry clean and the input,
    equals the dry clean where the reverberant segment is off, and other cases are unchanged."""
    x, group = clip
    for seed in range(6):
        y_d, s_d, r_d = corrupt(x, SR, np.random.default_rng(seed), "reverb", rirs=bank)
        y_e, s_e, r_e = corrupt(x, SR, np.random.default_rng(seed), "reverb", rirs=bank, reverb_target="early")
        assert r_e["reverb_target"] == "early" and r_d["reverb_target"] == "dry"
        assert np.allclose(y_e / r_e["gain"], y_d / r_d["gain"], atol=1e-6)  # same input up to the shared gain
        assert input_sdr(y_e, s_e) > input_sdr(y_d, s_d)  # the late tail is all that is left to remove
        assert not np.allclose(s_e, s_d, atol=1e-4)
        start, seg = r_e["reverb_start"], r_e["reverb_len"]
        if seg < len(x):  # outside its segment (and the 10 ms ramps) the target is the dry clip
            outside = np.ones(len(x), bool)
            outside[max(0, start - 160): start + seg + 160] = False
            assert np.allclose(s_e[outside] / r_e["gain"], s_d[outside] / r_d["gain"], atol=1e-6)
    y_a, s_a, _ = corrupt(x, SR, np.random.default_rng(0), "blend", pool, bank, clean_group=group)
    y_b, s_b, _ = corrupt(x, SR, np.random.default_rng(0), "awgn", pool, bank, clean_group=group, reverb_target="early")
    y_c, s_c, _ = corrupt(x, SR, np.random.default_rng(0), "awgn", pool, bank, clean_group=group)
    assert np.array_equal(y_b, y_c) and np.array_equal(s_b, s_c)  # no reverb: the target is the dry clip
    with pytest.raises(ValueError, match="reverb target"):
        corrupt(x, SR, np.random.default_rng(0), "reverb", rirs=bank, reverb_target="wet")


def test_add_room_is_a_mild_aligned_room_at_the_clips_peak(clip, bank):
    """The roomy clip keeps the clean's peak and its direct path (it correlates best within 0.2 ms of lag 0), its room
    follows the drawn weight within ROOM, and a silent clip is refused."""
    from opgan.data.audio import AudioError

    x, _ = clip
    for seed in range(4):
        y, rec = add_room(x, SR, np.random.default_rng(seed), bank)
        assert y.dtype == np.float32 and y.shape == x.shape
        assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(x)), rel=1e-5)
        assert rec["room_rt60_target"] == pytest.approx(rt60_from_weight(rec["room_w"], ROOM))
        assert ROOM.drr_db[1] <= rec["room_drr_db"] <= ROOM.drr_db[0] and 0.2 <= rec["room_rt60_target"] <= 0.6
        xc = np.correlate(y[:8000].astype(np.float64), x[:8000], "full")
        assert abs(int(np.argmax(xc)) - 7999) <= 3
        assert input_sdr(y, x) < 20  # audibly roomy, not a copy
    with pytest.raises(AudioError, match="silence"):
        add_room(np.zeros(100), SR, np.random.default_rng(0), bank)


def test_reverb_min_w_keeps_added_reverberation_above_a_floor(clip, bank, pool):
    """reverb_min_w maps the same draw into [min, 1] (so the room is heavier than ROOM's at 0.6 s), light
    cases keep their mild rooms, 0 changes nothing, and an RT60 maps back to its weight."""
    x, _ = clip
    w06 = weight_for_rt60(0.6)
    assert rt60_from_weight(w06) == pytest.approx(0.6) and weight_for_rt60(0.2) == 0.0
    for seed in range(6):
        _, _, r0 = corrupt(x, SR, np.random.default_rng(seed), "reverb", rirs=bank)
        _, _, r00 = corrupt(x, SR, np.random.default_rng(seed), "reverb", rirs=bank, reverb_min_w=0.0)
        _, _, r1 = corrupt(x, SR, np.random.default_rng(seed), "reverb", rirs=bank, reverb_min_w=w06)
        assert r00["reverb_w"] == r0["reverb_w"]
        assert r1["reverb_w"] == pytest.approx(w06 + (1 - w06) * r0["reverb_w"])
        assert r1["reverb_rt60_target"] >= 0.6 - 1e-9 and r1["drr_db"] <= drr_from_weight(w06) + 1e-9
        _, _, l0 = corrupt(x, SR, np.random.default_rng(seed), "light", pool, bank, clean_group=clip[1])
        _, _, l1 = corrupt(x, SR, np.random.default_rng(seed), "light", pool, bank, clean_group=clip[1], reverb_min_w=w06)
        assert l0.get("reverb_w") == l1.get("reverb_w")
        assert "reverb_w" not in l1 or l1["reverb_rt60_target"] <= LIGHT.rt60_s[1]
    with pytest.raises(ValueError, match="reverb_min_w"):
        corrupt(x, SR, np.random.default_rng(0), "reverb", rirs=bank, reverb_min_w=1.0)
    with pytest.raises(ValueError, match="outside"):
        weight_for_rt60(2.0)
