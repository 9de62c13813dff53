"""`opgan fetch` logic on tiny synthetic packages (no network): F0/sex labels, voice splitting,
piece families, splits, licences, decoding, and that a re-run skips finished packages."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import opgan.data.fetch as fetch
from opgan.data.catalog import BackgroundSource, MusicSource, Voice
from opgan.data.labels import (hash_split, median_f0, piece_families, sex_from_f0, sex_label, trim_silence,
                               voice_groups)


def voiced(f0: float, seconds: float = 1.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A vowel-like harmonic tone with a little jitter-free noise."""
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    x = x + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.mark.parametrize("f0,sr", [(110.0, 16000), (220.0, 44100), (180.0, 8000)])
def test_median_f0_and_sex(f0, sr):
    est = median_f0([(voiced(f0, sr=sr), sr)])
    assert est == pytest.approx(f0, rel=0.03)
    assert sex_from_f0(est) == ("m" if f0 < 165 else "f")
    assert median_f0([(np.zeros(sr, np.float32), sr)]) is None  # silence: no voiced frames
    assert sex_from_f0(None) is None


def test_sex_label_prefers_the_package_and_flags_the_boundary():
    assert sex_label("m", "package (folder it_IT_m_Carlo)", 182.0) == ("m", "package (folder it_IT_m_Carlo)")
    assert sex_label(None, "", 110.0) == ("m", "estimated from F0")
    assert sex_label(None, "", 240.0) == ("f", "estimated from F0")
    assert sex_label(None, "", 180.0) == ("f", "estimated from F0 (uncertain)")
    assert sex_label(None, "", None)[0] is None


def test_voice_groups_split_only_on_evidence():
    assert voice_groups({"alpha": 216.0, "syllab": 110.0}) == [["syllab"], ["alpha"]]  # a woman and a man
    assert voice_groups({"alpha": 125.0, "syllab": 62.0}) == [["alpha", "syllab"]]  # one man (creak)
    assert voice_groups({"alpha": 175.0, "syllab": 160.0}) == [["alpha", "syllab"]]  # too close to tell
    assert voice_groups({"a": 230.0, "b": None, "c": 100.0}) == [["b", "c"], ["a"]]
    assert voice_groups({"": 200.0}) == [[""]]


def test_trim_silence_keeps_margin():
    sr = 16000
    x = np.concatenate([np.zeros(sr), voiced(200, 0.5), np.zeros(sr)])
    y = trim_silence(x, sr)
    assert 0.5 * sr <= y.size <= 0.5 * sr + 2 * int(0.05 * sr) + 2 * 160
    assert trim_silence(np.zeros(sr), sr).size == 0


def test_piece_families():
    fam = piece_families(["menu", "menu_enhanced", "track3", "track3_enhanced", "track4", "victory",
                          "victory2", "frantic", "frantic-old", "airship_2", "airship_remix", "music003"])
    assert fam["menu_enhanced"] == fam["menu"] == "menu"
    assert fam["track3_enhanced"] == "track3" and fam["track4"] == "track4"
    assert fam["victory2"] == "victory" and fam["frantic-old"] == "frantic"
    assert fam["airship_2"] == fam["airship_remix"] == "airship"
    assert fam["music003"] == "music003"


def test_hash_split_is_stable_and_disjoint():
    names = [f"n{i}" for i in range(30)]
    a, b = hash_split(names, salt="x"), hash_split(list(reversed(names)), salt="x")
    assert a == b
    assert sorted(sum(a.values(), [])) == sorted(names)
    assert len(a["val"]) == len(a["test"]) == 3
    assert hash_split(["a", "b"]) == {"train": ["a", "b"], "val": [], "test": []}


def test_background_family_split_keeps_takes_together_and_out_of_test(monkeypatch):
    assert [fetch.scene_family(s) for s in ("TraficHigh2", "Trafic1", "f16_1", "oceanwaves")] == \
        ["trafic", "trafic", "f", "oceanwaves"]
    src = BackgroundSource("pkg", "x/*.wav", "city", "GPL-2+", "x", "city", by_family=True, splits=("train", "val"))
    monkeypatch.setattr(fetch, "BACKGROUND", [src])
    monkeypatch.setattr(fetch, "BACKGROUND_SPLITS", {})
    scenes = [f"Sc{chr(97 + i % 26)}{chr(97 + i // 26)}{kind}" for i in range(30) for kind in ("", "High", "Low")]
    clips = {f"city_{s}{k}": {"package": "pkg"} for s in scenes for k in (1, 2)}
    out = fetch.background_splits(clips)
    assert out["test"] == [] and out["val"] and out["train"]
    where = {c: s for s, cs in out.items() for c in cs}
    by_family: dict[str, set] = {}
    for c, s in where.items():
        by_family.setdefault(fetch.scene_family(c[len("city_"):]), set()).add(s)
    assert all(len(s) == 1 for s in by_family.values())  # every take of a scene in one split
    assert fetch.background_splits(dict(reversed(clips.items()))) == out  # order does not matter
    # `splits` holds for a source hashed by clip too
    monkeypatch.setattr(fetch, "BACKGROUND", [BackgroundSource("pkg", "x/*.wav", "city", "GPL-2+", "x", "city",
                                                               splits=("train", "val"))])
    by_clip = fetch.background_splits(clips)
    assert by_clip["test"] == [] and by_clip["val"] and by_clip != out


def test_dep5_licences():
    text = ("Format: x\n\nFiles: *\nCopyright: a\nLicense: GPL-2+\n\n"
            "Files: data/music/*\nCopyright: b\nLicense: CC-BY-SA-3.0\n")
    dep5 = fetch.parse_dep5(text)
    pre = ("usr/share/games/x/", "data/")
    assert fetch.license_for("usr/share/games/x/music/a.ogg", dep5, "?", pre) == "CC-BY-SA-3.0"
    assert fetch.license_for("usr/share/games/x/sounds/a.wav", dep5, "?", pre) == "GPL-2+"
    assert fetch.license_for("a.ogg", fetch.parse_dep5("free-form text\n"), "GPL-2") == "GPL-2"


def test_speaker_splits_follow_the_base_id():
    speakers = {"kl_de_alpha": {"base": "kl_de"}, "kl_de_syllab": {"base": "kl_de"}, "a_f": {"base": "a_f"},
                "b_m": {"base": "b_m"}}
    out = fetch.speaker_splits(speakers, {"val": ["kl_de"], "test": ["b_m"]})
    assert out == {"train": ["a_f"], "val": ["kl_de_alpha", "kl_de_syllab"], "test": ["b_m"]}


# --- a whole fetch over fake packages --------------------------------------------------------

def _fake_packages(root: Path) -> None:
    kl = root / "kl" / "usr/share/kl/de"
    (kl / "alpha").mkdir(parents=True)
    (kl / "syllab").mkdir()
    for i in range(4):
        sf.write(kl / "alpha" / f"a{i}.ogg", np.concatenate([np.zeros(4410), voiced(230, 0.6, 44100, i)]), 44100)
        sf.write(kl / "syllab" / f"s{i}.ogg", voiced(105, 0.6, 44100, i), 44100)
    (kl / "alpha" / "broken.ogg").write_bytes(b"OggS not really")  # a damaged file costs itself only
    gsm = root / "tel" / "usr/share/asterisk/sounds/xx"
    (gsm / "silence").mkdir(parents=True)
    for i in range(3):
        sf.write(gsm / f"p{i}.gsm", voiced(210, 0.8, 8000, i), 8000, format="RAW", subtype="GSM610")
    sf.write(gsm / "silence" / "1.gsm", np.zeros(8000), 8000, format="RAW", subtype="GSM610")
    sf.write(gsm / "beep.gsm", voiced(1000, 0.3, 8000), 8000, format="RAW", subtype="GSM610")
    mus = root / "mus" / "usr/share/m"
    mus.mkdir(parents=True)
    for name, secs in (("theme", 70.0), ("theme_enhanced", 31.0), ("jingle", 5.0), ("battle", 40.0),
                       ("calm", 35.0)):
        t = np.arange(int(secs * 22050)) / 22050
        sf.write(mus / f"{name}.ogg", 0.2 * np.sin(2 * np.pi * 440 * t), 22050)
    bg = root / "mus" / "usr/share/m/amb"
    bg.mkdir()
    rng = np.random.default_rng(0)
    rain = (0.1 * rng.standard_normal(22050 * 4)).astype(np.float32)
    for name, x in (("rain", rain), ("rain_copy", rain), ("click", rain[:2000]),
                    ("wind", 0.5 * rain[::-1].copy())):
        sf.write(bg / f"{name}.wav", x, 22050)
    for d in ("kl", "tel", "mus"):
        doc = root / d / f"usr/share/doc/{d}"
        doc.mkdir(parents=True)
        (doc / "copyright").write_text("Files: *\nCopyright: x\nLicense: GPL-2+\n")


@pytest.fixture
def fake_fetch(tmp_path, monkeypatch):
    src = tmp_path / "pkgs"
    _fake_packages(src)
    voices = [Voice("kl", "usr/share/kl/de", "kl_de", "de", "GPL-2+", "someone", per_subdir=True),
              Voice("tel", "usr/share/asterisk/sounds/xx", "tel_f", "xx", "GPL-2", "a voice", "gsm", "f", "package")]
    music = [MusicSource("mus", "usr/share/m/*.ogg", "mus", "GPL-2", "composer", "test")]
    background = [BackgroundSource("mus", "usr/share/m/amb/*.wav", "amb", "GPL-2", "x", "rain")]
    monkeypatch.setattr(fetch, "VOICES", voices)
    monkeypatch.setattr(fetch, "MUSIC", music)
    monkeypatch.setattr(fetch, "BACKGROUND", background)
    monkeypatch.setattr(fetch, "PACKAGES", {"speech": ["kl", "tel"], "music": ["mus"], "background": ["mus"]})
    monkeypatch.setattr(fetch, "SPEECH_SPLITS", {"val": ["tel_f"], "test": []})
    monkeypatch.setattr(fetch, "MUSIC_SPLITS", {})
    monkeypatch.setattr(fetch, "BACKGROUND_SPLITS", {})
    monkeypatch.setattr(fetch.shutil, "which", lambda name: "/usr/bin/" + name)
    extracted = []

    def fake_download(pkgs, debs, update):
        debs.mkdir(parents=True, exist_ok=True)
        out = {}
        for p in pkgs:
            (debs / f"{p}_1_all.deb").write_bytes(b"deb")
            out[p] = debs / f"{p}_1_all.deb"
        return out

    def fake_extract(deb, dest):
        import shutil

        extracted.append(deb.name)
        shutil.copytree(src / deb.name.split("_")[0], dest)
        return dest

    monkeypatch.setattr(fetch, "_download", fake_download)
    monkeypatch.setattr(fetch, "_extract", fake_extract)
    return tmp_path / "cache", extracted


def test_fetch_end_to_end_and_rerun(fake_fetch, monkeypatch):
    from opgan.data.sources import discover_splits

    cache, extracted = fake_fetch
    summary = fetch.fetch(cache)
    sp = summary["speakers"]
    # the KLettres-like folder holds a woman (alpha) and a man (syllab): two speakers, sex estimated
    assert set(sp) == {"kl_de_alpha", "kl_de_syllab", "tel_f"}
    assert sp["kl_de_alpha"]["sex"] == "f" and sp["kl_de_syllab"]["sex"] == "m"
    assert sp["kl_de_alpha"]["sex_source"].startswith("estimated") and sp["kl_de_alpha"]["prompts"] == 4
    assert sp["tel_f"]["sex_source"] == "package" and sp["tel_f"]["source_rate"] == 8000
    assert sp["tel_f"]["prompts"] == 3  # silence/ and beep dropped
    assert sf.info(str(next((cache / "speech" / "tel_f").glob("*.flac")))).samplerate == 16000  # upsampled
    # leading silence trimmed (0.1 s + 0.6 s tone -> ~0.65 s)
    a0 = sf.info(str(cache / "speech" / "kl_de_alpha" / "de_alpha_a0.flac"))
    assert a0.samplerate == 16000 and a0.duration < 0.7
    # music: the 5 s jingle is dropped, the 70 s piece is cut into parts, versions share a split
    tracks = summary["music_tracks"]
    assert set(tracks) == {"mus_theme", "mus_theme_enhanced", "mus_battle", "mus_calm"}
    assert len(list((cache / "music" / "mus_theme").glob("*.flac"))) == 1  # 70 s: one part (last >= 10 s)
    assert tracks["mus_theme"]["split"] == tracks["mus_theme_enhanced"]["split"]
    # background: the exact copy and the too-short clip are dropped
    assert set(summary["background_clips"]) == {"amb_rain", "amb_wind"}
    assert summary["background_clips"]["amb_rain"]["license"] == "GPL-2+"  # from the DEP-5 file
    # the splits.json files are what the loaders read
    parts = discover_splits(cache / "speech")
    assert {f.group for f in parts["val"]} == {"tel_f"}
    assert {f.group for f in parts["train"]} == {"kl_de_alpha", "kl_de_syllab"}
    assert json.loads((cache / "speech" / "speakers.json").read_text())["tel_f"]["split"] == "val"
    assert (cache / "licenses" / "kl.copyright").is_file()
    assert not (cache / "_extract").exists() and not (cache / "_tmp").exists()
    # a re-run unpacks nothing and gives the same summary
    n = len(extracted)
    again = fetch.fetch(cache)
    assert len(extracted) == n
    assert again["speakers"] == summary["speakers"] and again["splits"] == summary["splits"]


def test_pack_takes_one_excerpt_per_piece(fake_fetch, tmp_path):
    from opgan.data.pack import pack_corpus
    from opgan.data.sources import discover_splits

    cache, _ = fake_fetch
    summary = fetch.fetch(cache)
    out = tmp_path / "corpus"
    pack_corpus(cache, out, speech_s=2.0, music_s=3.0, background_s=2.0, chunk_s=1.0)
    music = discover_splits(out / "music")
    assert sorted(f.group for s in music.values() for f in s) == sorted(summary["music_tracks"])
    assert all(sf.info(str(f.path)).duration == pytest.approx(3.0, abs=0.05) for s in music.values() for f in s)
    for split, groups in summary["splits"]["music"].items():
        assert {f.group for f in music[split]} == set(groups)  # the cache's split is kept
    speech = discover_splits(out / "speech")
    assert {f.group for f in speech["val"]} == {"tel_f"}


def test_fetch_sentences_keeps_its_voices_apart_and_in_test(tmp_path, monkeypatch):
    """The eval-only sentence set: only the matched speakers, in their own sources root, test split only."""
    from opgan.data.catalog import SENTENCE_VOICES
    from opgan.data.sources import discover_splits

    sound = tmp_path / "pkgs" / "fil" / "usr/share/games/fillets-ng/sound"
    for level, rel in (("kitchen", "kitchen/cs"), ("bore", "share/borejokes/cs")):
        (sound / rel).mkdir(parents=True)
        for i in range(3):
            sf.write(sound / rel / f"{level}-m-line{i}.ogg", voiced(260, 0.8, 22050, i), 22050)
            sf.write(sound / rel / f"{level}-v-line{i}.ogg", voiced(120, 0.8, 22050, i), 22050)
        sf.write(sound / rel / f"{level}-x-robot.ogg", voiced(90, 0.8, 22050), 22050)  # another character
    (sound / "kitchen/nl").mkdir()
    sf.write(sound / "kitchen/nl/kuch-m-line0.ogg", voiced(250, 0.8, 22050), 22050)  # another language
    doc = tmp_path / "pkgs" / "fil" / "usr/share/doc/fil"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("GPL-2\n")
    voices = [Voice("fil", v.root, v.speaker, v.lang, v.license, v.attribution, match=v.match)
              for v in SENTENCE_VOICES]
    monkeypatch.setattr(fetch, "SENTENCE_VOICES", voices)
    monkeypatch.setattr(fetch.shutil, "which", lambda name: "/usr/bin/" + name)

    def fake_download(pkgs, debs, update):
        debs.mkdir(parents=True, exist_ok=True)
        return {p: debs / f"{p}_1_all.deb" for p in pkgs}

    def fake_extract(deb, dest):
        import shutil

        shutil.copytree(tmp_path / "pkgs" / deb.name.split("_")[0], dest)
        return dest

    monkeypatch.setattr(fetch, "_download", fake_download)
    monkeypatch.setattr(fetch, "_extract", fake_extract)
    cache = tmp_path / "cache"
    speakers = fetch.fetch_sentences(cache)
    root = cache / fetch.SENTENCES_DIR / "speech"
    assert set(speakers) == {"fillets_cs_small", "fillets_cs_big"}
    assert speakers["fillets_cs_small"]["prompts"] == 6 and speakers["fillets_cs_big"]["prompts"] == 6
    assert speakers["fillets_cs_small"]["sex"] == "f" and speakers["fillets_cs_big"]["sex"] == "m"
    assert speakers["fillets_cs_big"]["split"] == "test" and speakers["fillets_cs_big"]["source_rate"] == 22050
    assert speakers["fillets_cs_big"]["minutes"] > 0 and speakers["fillets_cs_big"]["band_edge_hz"] > 0
    assert not any("robot" in p.name or p.name.startswith("nl_") for p in root.rglob("*.flac"))
    parts = discover_splits(root)
    assert not parts["train"] and not parts["val"]
    assert {f.group for f in parts["test"]} == set(speakers)
    assert not (cache / "speech").exists()  # the training cache is left alone
    assert json.loads((root / "speakers.json").read_text())["fillets_cs_small"]["role"] == "eval only (test)"
    assert (cache / "licenses" / "fil.copyright").is_file() and not (cache / "_extract").exists()


def test_fetch_sentences_without_apt_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
    assert fetch.main(["--sentences", "--cache", str(tmp_path)]) == 2
    assert "apt-get/dpkg not found" in capsys.readouterr().err
    assert not (tmp_path / fetch.SENTENCES_DIR).exists()


def test_pack_meets_a_speech_budget_shorter_than_a_chunk(fake_fetch, tmp_path):
    """gpu_continue.sh shrinks --speech-s until its pack fits: the per-speaker seconds must follow it
    below the 30 s chunk instead of stopping at one whole chunk per speaker."""
    from opgan.data.pack import pack_corpus
    from opgan.data.sources import discover_splits

    cache, _ = fake_fetch
    fetch.fetch(cache)
    totals = {}
    for budget in (1.0, None):
        out = tmp_path / f"corpus{budget}"
        pack_corpus(cache, out, speech_s=budget, music_s=3.0, background_s=2.0, chunk_s=30.0)
        per_spk: dict[str, float] = {}
        for files in discover_splits(out / "speech").values():
            for f in files:
                per_spk[f.group] = per_spk.get(f.group, 0.0) + sf.info(str(f.path)).duration
        totals[budget] = per_spk
    assert set(totals[1.0]) == set(totals[None])  # every speaker kept
    assert all(totals[1.0][s] < totals[None][s] for s in totals[None] if totals[None][s] > 2.5)
    assert max(totals[None].values()) > 2.5
