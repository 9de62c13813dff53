"""The RAR builder on the shipped fixture: composition, determinism, resume, manifest, refusals."""
import csv
import json

import numpy as np
import pytest

from opgan.data.assets import default_rirs, fixture_dir
from opgan.data.builder import COMPOSITION, MANIFEST_FIELDS, build, main, plan_split

SIZE = 0.01  # speech: train 15 clean -> 15 blend + 3x5 single


@pytest.fixture(scope="module")
def bank():
    return default_rirs()


@pytest.fixture(scope="module")
def built(tmp_path_factory, bank):
    out = tmp_path_factory.mktemp("b") / "speech"
    meta = build("speech", fixture_dir(), out, size=SIZE, seed=7, rirs=bank, progress=False)
    return out, meta


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "build.json"}


def test_paper_composition():
    counts = {(k, s): len(plan_split(k, s, 1.0)) for k in COMPOSITION for s in COMPOSITION[k]}
    assert counts == {("speech", "train"): 3000, ("speech", "val"): 1000, ("speech", "test"): 1453,
                      ("music", "train"): 3250, ("music", "val"): 1000, ("music", "test"): 1660}
    plan = plan_split("speech", "train", 1.0)
    singles = [ci for _, case, ci, _ in plan if case != "blend"]
    assert len(singles) == len(set(singles)) == 1500  # non-overlapping groups of the clean clips


def test_layout_manifest_and_counts(built):
    out, meta = built
    assert meta["complete"] and json.loads((out / "build.json").read_text())["complete"]
    for split in ("train", "val", "test"):
        rows = _rows(out / split / "manifest.csv")
        plan = plan_split("speech", split, SIZE)
        assert [r["id"] for r in rows] == [p[0] for p in plan]
        assert list(rows[0]) == MANIFEST_FIELDS
        for r in rows:
            assert (out / split / "clean" / f"{r['id']}.wav").is_file()
            assert (out / split / "corrupted" / f"{r['id']}.wav").is_file()
            assert np.isfinite(float(r["input_sdr_db"])) and 0 < float(r["gain"]) <= 1
            arts = r["artifacts"].split("+")
            if r["case"] != "blend":
                assert arts == [r["case"]]
            if "awgn" in arts:
                assert float(r["awgn_snr_db"]) == pytest.approx(30 - 35 * float(r["awgn_w"]), abs=5e-3)
            if "background" in arts:
                assert float(r["background_sir_db"]) == pytest.approx(25 - 30 * float(r["background_w"]), abs=5e-3)
                assert not r["background_source"].startswith(r["source"].split("/")[0] + ":")
            if "reverb" in arts:
                assert 0.1 < float(r["rt60"]) < 1.8 and r["rir_index"] != ""
                assert int(r["rir_index"]) % 10 in {"train": range(8), "val": [8], "test": [9]}[split]
        assert meta["splits"][split]["clips"] == len(plan)
    # speakers never cross splits
    spk = {s: {r["source"].split("/")[0] for r in _rows(out / s / "manifest.csv")} for s in ("train", "val", "test")}
    assert spk["val"] == {"speech:ivrvoice_ru_f"} and spk["test"] == {"speech:june_f"}
    assert spk["train"] <= {"speech:allison_f", "speech:carlo_m"}


def test_same_seed_identical_files_and_resume(built, tmp_path, bank):
    out, _ = built
    ref = _snapshot(out)
    again = tmp_path / "again"
    build("speech", fixture_dir(), again, size=SIZE, seed=7, rirs=bank, progress=False, splits=["train"])
    # interrupt: lose two clips and the last manifest rows, then resume
    (again / "train" / "corrupted" / "blend_00003.wav").unlink()
    (again / "train" / "clean" / "reverb_00001.wav").unlink()
    man = again / "train" / "manifest.csv"
    lines = man.read_text().splitlines(keepends=True)
    man.write_text("".join(lines[:-4]))
    meta = build("speech", fixture_dir(), again, size=SIZE, seed=7, rirs=bank, progress=False)
    assert meta["splits"]["train"]["new_clips"] == 5  # 2 lost files + 4 lost rows, one overlapping
    assert _snapshot(again) == ref
    meta = build("speech", fixture_dir(), again, size=SIZE, seed=7, rirs=bank, progress=False)
    assert all(s["new_clips"] == 0 for s in meta["splits"].values())
    assert _snapshot(again) == ref


def test_other_seed_differs_and_is_refused_in_place(built, tmp_path, bank):
    out, _ = built
    with pytest.raises(ValueError, match="other settings"):
        build("speech", fixture_dir(), out, size=SIZE, seed=8, rirs=bank, progress=False)
    other = tmp_path / "s8"
    build("speech", fixture_dir(), other, size=SIZE, seed=8, rirs=bank, progress=False, splits=["val"])
    assert (other / "val" / "corrupted" / "blend_00000.wav").read_bytes() != \
        (out / "val" / "corrupted" / "blend_00000.wav").read_bytes()
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing"):
        build("speech", fixture_dir(), tmp_path / "user", size=SIZE, rirs=bank, progress=False)


def test_music_cli(tmp_path, bank, capsys):
    bank.save(tmp_path / "rirs.npz")
    rc = main(["--kind", "music", "--sources", str(fixture_dir()), "--out", str(tmp_path / "m"),
               "--size", "0.005", "--rirs", str(tmp_path / "rirs.npz"), "--quiet", "--splits", "train,test"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "blend" in text and "SDR mean" in text
    import soundfile as sf

    info = sf.info(str(next((tmp_path / "m" / "test" / "corrupted").glob("*.wav"))))
    assert info.samplerate == 22050 and info.frames == 32000
    assert main(["--kind", "speech", "--sources", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert main(["--kind", "speech", "--sources", str(fixture_dir()), "--out", str(tmp_path / "y"),
                 "--size", "huge"]) == 2


def test_band_limited_voices_are_no_clean_targets_by_default(tmp_path, bank):
    """The shipped corpus's menardi_f (8 kHz prompts upsampled) is left out of speech targets unless
    --min-bandwidth 0 asks for the old behaviour; build.json says which voices were left out."""
    from opgan.data.assets import corpus_dir

    meta = build("speech", corpus_dir(), tmp_path / "new", size=SIZE, seed=3, splits=["train"], rirs=bank,
                 progress=False)
    assert meta["min_clean_bandwidth_hz"] == 6000.0
    assert list(meta["splits"]["train"]["band_limited_groups"]) == ["speech:menardi_f"]
    rows = _rows(tmp_path / "new" / "train" / "manifest.csv")
    assert rows and not any(r["source"].startswith("speech:menardi_f") for r in rows)
    assert main(["--kind", "speech", "--sources", str(corpus_dir()), "--out", str(tmp_path / "old"), "--size",
                 str(SIZE), "--seed", "3", "--splits", "train", "--rirs", str(corpus_dir().parent / "rirs_16k.npz"),
                 "--min-bandwidth", "0", "--quiet"]) == 0
    old = json.loads((tmp_path / "old" / "build.json").read_text())
    assert old["min_clean_bandwidth_hz"] is None and old["splits"]["train"]["band_limited_groups"] == {}
    sources = {r["source"].split("/")[0] for r in _rows(tmp_path / "old" / "train" / "manifest.csv")}
    assert "speech:menardi_f" in sources  # 15 clean clips over 6 voices: menardi_f is drawn at seed 3
    # a build made before the rule (no key in build.json) is finished as it began, by default
    old.pop("min_clean_bandwidth_hz")
    (tmp_path / "old" / "build.json").write_text(json.dumps(old))
    first = _rows(tmp_path / "old" / "train" / "manifest.csv")[0]["id"]
    (tmp_path / "old" / "train" / "clean" / f"{first}.wav").unlink()
    rirs = corpus_dir().parent / "rirs_16k.npz"  # as the CLI run gave it
    again = build("speech", corpus_dir(), tmp_path / "old", size=SIZE, seed=3, splits=["train"], rirs=rirs,
                  progress=False)
    assert again["min_clean_bandwidth_hz"] is None and again["splits"]["train"]["new_clips"] == 1
    with pytest.raises(ValueError, match="min_clean_bandwidth_hz"):  # an explicit other setting is refused
        build("speech", corpus_dir(), tmp_path / "old", size=SIZE, seed=3, splits=["train"], rirs=rirs,
              progress=False, min_bandwidth_hz=6000.0)
