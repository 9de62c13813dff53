"""Background kinds drawn by weight (`--background-mix`), the seeked excerpt of long files, and the
evaluation's split of background clips by interferer kind."""
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from opgan.config import ConfigError, TrainConfig
from opgan.data.assets import fixture_dir
from opgan.data.audio import load_excerpt
from opgan.data.sources import BackgroundPool, SourceFile, background_kind, files_with_groups, parse_background_mix
from opgan.evaluate import background_kind as eval_background_kind

SR = 16000


def _pool_files() -> list[SourceFile]:
    root = fixture_dir()
    return (files_with_groups(root / "background" / "train", prefix="bg:")
            + files_with_groups(root / "speech" / "train", prefix="speech:")
            + files_with_groups(root / "music" / "train", prefix="music:"))


def test_parse_background_mix_accepts_kinds_and_refuses_the_rest():
    assert parse_background_mix("ambience:0.6,music:0.25,speech:0.15") == {"ambience": 0.6, "music": 0.25,
                                                                           "speech": 0.15}
    assert parse_background_mix("ambience") == {"ambience": 1.0}
    for bad in ("noise:1", "speech:1,speech:2", "speech:-1", "speech:nan", "speech:x", "speech:0"):
        with pytest.raises(ValueError):
            parse_background_mix(bad)


def test_background_kind_of_a_file():
    assert background_kind(SourceFile(fixture_dir(), "bg:rain")) == "ambience"
    assert background_kind(SourceFile(fixture_dir(), "bg0:x")) == "ambience"
    assert background_kind(SourceFile(fixture_dir(), "speech:june_f")) == "speech"
    assert background_kind(SourceFile(fixture_dir(), "music:a")) == "music"
    assert eval_background_kind({"background_source": "speech:june_f:x.flac@3"}) == "speech"
    assert eval_background_kind({"background_source": "bg:rain:r.ogg@0"}) == "ambience"
    assert eval_background_kind({"background_source": ""}) == eval_background_kind({}) == ""


def test_kind_weights_decide_what_interferes():
    files = _pool_files()
    kinds = Counter(background_kind(f) for f in files)
    assert set(kinds) == {"ambience", "speech", "music"}
    rng = np.random.default_rng(0)
    only = BackgroundPool(files, kind_weights={"ambience": 1.0})
    for _ in range(20):
        x, name = only.draw(rng, 4000, SR)
        assert name.startswith("bg:") and x.shape == (4000,)
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    mixed = BackgroundPool(files, kind_weights={"ambience": 0.5, "music": 0.5, "speech": 0.0})
    drawn = Counter(mixed.draw(rng, 4000, SR)[1].partition(":")[0] for _ in range(200))
    assert "speech" not in drawn and min(drawn["bg"], drawn["music"]) > 60
    # a kind whose every file is the clean clip's own group is dropped, not an error
    speech_groups = {f.group for f in files if background_kind(f) == "speech"}
    if len(speech_groups) == 1:
        with pytest.raises(Exception, match="background pool"):
            BackgroundPool(files, kind_weights={"speech": 1.0}).draw(rng, 4000, SR, exclude_group=speech_groups.pop())


def test_default_pool_draws_are_unchanged_by_the_option():
    """Without kind weights a pool draws as it always did (recorded builds replay)."""
    files = _pool_files()
    a = BackgroundPool(files)
    b = BackgroundPool(files, kind_weights=None)
    for seed in range(5):
        xa, na = a.draw(np.random.default_rng(seed), 4000, SR)
        xb, nb = b.draw(np.random.default_rng(seed), 4000, SR)
        assert na == nb and np.array_equal(xa, xb)
        assert "/" not in na.rpartition("@")[2]  # whole-file reads name their start in samples at SR


def test_long_files_are_read_as_seeked_excerpts(tmp_path):
    sr_file = 22050
    t = np.arange(40 * sr_file) / sr_file
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / "long.flac"
    sf.write(path, np.stack([tone, tone], axis=1), sr_file)
    x, start = load_excerpt(path, SR, 8000, np.random.default_rng(1), tone.size, sr_file)
    assert x.shape == (8000,) and 0 <= start < tone.size
    ref = np.sin(2 * np.pi * 440 * (start / sr_file + np.arange(8000) / SR))
    mid = slice(200, 7800)  # away from the resampler's edges
    assert abs(np.corrcoef(x[mid], ref[mid])[0, 1]) > 0.99
    pool = BackgroundPool([SourceFile(path, "music:long")], kind_weights={"music": 1.0})
    y, name = pool.draw(np.random.default_rng(2), 8000, SR)
    assert y.shape == (8000,) and name.endswith(f"/{sr_file}")


def test_config_background_mix_is_checked_and_needs_dynamic_mixing():
    TrainConfig(dynamic=True, background_mix="ambience:0.5,music:0.3,speech:0.2").validate()
    with pytest.raises(ConfigError, match="background mix"):
        TrainConfig(dynamic=True, background_mix="noise:1").validate()
    with pytest.raises(ConfigError, match="add --dynamic"):
        TrainConfig(background_mix="ambience:1").validate()


def test_build_draws_the_interferers_of_the_mix(tmp_path):
    import csv

    from opgan.data.builder import build, main
    from opgan.data.assets import corpus_dir, default_rirs

    out = tmp_path / "amb"
    meta = build("speech", corpus_dir(), out, "tiny", splits=["test"], rirs=default_rirs(), progress=False,
                 background_mix="ambience:1")
    assert meta["background_mix"] == {"ambience": 1.0}
    with open(out / "test" / "manifest.csv") as fh:
        srcs = [r["background_source"] for r in csv.DictReader(fh) if r["background_source"]]
    assert srcs and all(s.startswith("bg:") for s in srcs)
    # a build is finished with the mix it began with; another one is refused, as other settings are
    with pytest.raises(ValueError, match="background_mix"):
        build("speech", corpus_dir(), out, "tiny", splits=["test"], rirs=default_rirs(), progress=False,
              background_mix="speech:1")
    assert main(["--kind", "speech", "--sources", str(corpus_dir()), "--out", str(tmp_path / "bad"),
                 "--background-mix", "noise:1", "--quiet"]) == 2


def test_synthetic_ambience_families_are_unit_rms_and_seeded():
    from opgan.data.synth_noise import FAMILIES, synth_ambience

    seen = set()
    for seed in range(40):
        x, family = synth_ambience(np.random.default_rng(seed), 8000, SR)
        y, again = synth_ambience(np.random.default_rng(seed), 8000, SR)
        assert family == again and np.array_equal(x, y)  # a pure function of the seed
        assert x.dtype == np.float32 and x.shape == (8000,) and np.isfinite(x).all()
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
        seen.add(family)
    assert seen == set(FAMILIES)
    with pytest.raises(ValueError):
        synth_ambience(np.random.default_rng(0), 0, SR)


def test_synthetic_kind_needs_no_file_and_mixes_by_weight():
    files = _pool_files()
    pool = BackgroundPool(files, kind_weights={"synthetic": 1.0, "ambience": 1.0})
    rng = np.random.default_rng(3)
    names = [pool.draw(rng, 4000, SR)[1] for _ in range(100)]
    synth = [n for n in names if n.startswith("synthetic:")]
    assert 25 < len(synth) < 75 and all(n.startswith(("synthetic:", "bg:")) for n in names)
    assert eval_background_kind({"background_source": synth[0]}) == "synthetic"
    assert parse_background_mix("synthetic:1") == {"synthetic": 1.0}
