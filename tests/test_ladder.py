"""The learning ladder's pieces: fixed crop folders (opgan.ladder) and the ladder suites of opgan.ablate."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from opgan import ablate, ladder
from opgan.config import parse_args


def test_crops_are_a_fixed_dataset_of_the_chosen_case(tmp_path):
    from opgan.data import datasets as D

    out = tmp_path / "awgn"
    rows = ladder.write_crops(out, "train", 3, 2048, case="awgn", si_sdr_range=(-5.0, 15.0))
    meta = json.loads((out / "crops.json").read_text())
    assert meta["case"] == "awgn" and [r["id"] for r in meta["crops"]] == ["000", "001", "002"] == [r["id"] for r in rows]
    assert all(-5 <= r["input_si_sdr"] <= 15 for r in rows)
    ds = D.open_dataset(out, "train")  # what --data / --val-data open
    assert isinstance(ds, D.RARFolderDataset) and len(ds) == 3
    x, y = ds[0]
    assert x.shape == y.shape == (1, 2048)
    residual = (x - y).numpy()[0]
    assert residual.std() > 0 and abs(residual.mean()) < 0.05  # additive noise, not a level change
    again = ladder.write_crops(tmp_path / "again", "train", 3, 2048, case="awgn", si_sdr_range=(-5.0, 15.0))
    assert again == rows  # a pure function of its arguments
    with pytest.raises(FileExistsError):
        ladder.write_crops(out, "train", 1, 2048)


def test_like_replays_a_crop_folder_with_another_reverb_target(tmp_path):
    """--like writes the same crops (same inputs, up to the gain that keeps a pair under full scale);
    with the dry target they are byte-identical, with the early one only the targets move."""
    from opgan.data.audio import load_audio

    src = tmp_path / "val-reverb"
    rows = ladder.write_crops(src, "val", 2, 2048, case="reverb", si_sdr_range=(-30.0, 30.0))
    assert ladder.main(["crops", str(tmp_path / "dry"), "--like", str(src)]) == 0
    assert ladder.main(["crops", str(tmp_path / "early"), "--like", str(src), "--reverb-target", "early"]) == 0
    meta = json.loads((tmp_path / "early" / "crops.json").read_text())
    assert meta["reverb_target"] == "early" and meta["replayed"] and meta["case"] == "reverb"
    assert [(r["draw"], r["offset"]) for r in meta["crops"]] == [(r["draw"], r["offset"]) for r in rows]
    for r in rows:
        a = {d: [load_audio(tmp_path / d / sub / f"{r['id']}.wav")[0].ravel() for sub in ("corrupted", "clean")]
             for d in ("val-reverb", "dry", "early")}
        assert np.array_equal(a["dry"][0], a["val-reverb"][0]) and np.array_equal(a["dry"][1], a["val-reverb"][1])
        scale = float(np.dot(a["early"][0], a["dry"][0]) / np.dot(a["dry"][0], a["dry"][0]))
        assert np.allclose(a["early"][0], scale * a["dry"][0], atol=1e-5)
        assert not np.allclose(a["early"][1], scale * a["dry"][1], atol=1e-4)
    assert ladder.main(["crops", str(tmp_path / "x"), "--like", str(tmp_path / "none")]) == 2


def test_crops_cli_rejects_bad_input(tmp_path, capsys):
    assert ladder.main(["crops", str(tmp_path / "x"), "--case", "hail", "--n", "1"]) == 2
    assert "case must be" in capsys.readouterr().err
    assert ladder.main(["crops", str(tmp_path / "y"), "--n", "2", "--clip-len", "2048", "--si-sdr=80,90"]) == 2
    assert "passed the filters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ladder.main(["crops", str(tmp_path / "z"), "--si-sdr=5"])


@pytest.mark.parametrize("suite", ["ladder-a", "ladder-b", "ladder-c", "ladder-d"])
def test_every_ladder_run_is_a_valid_training_config(suite, tmp_path):
    s = ablate.SUITES[suite]
    for run in s["runs"]:
        cmd = ablate._command(s, run, str(tmp_path / "fixed8") if suite == "ladder-a" else "", tmp_path)
        argv = cmd[cmd.index("train") + 1:]
        cfg, _, _ = parse_args(argv)
        assert cfg.name == run.name and cfg.lambda_adv == 0 and cfg.threads == 1
        if suite == "ladder-a":  # one fixed batch, validated on itself
            assert cfg.data == cfg.val_data == str(tmp_path / "fixed8") and not cfg.dynamic
        else:
            # the shipped recordings, but for the runs that measure more voices or more ambience (the fetched
            # corpus, or a sources root holding part of it)
            more = "-voices" in run.name or "-fetch" in run.name
            assert ("--data" in argv) == more and cfg.dynamic
            if "-voices" in run.name or "-fetch6" in run.name:  # expanded as a shell would: a real path
                assert cfg.data == str(Path.home() / ".cache" / "opgan")
            assert cfg.val_data.startswith("runs/ladder/val-")
            assert cfg.cases == ("" if suite == "ladder-d" else f"{run.name.split('-')[1]}:1")
        if "plain" in run.name:
            assert (cfg.q, cfg.activation) == (1, "prelu")
        assert cfg.context == ("dilated" if "context" in run.name else "none")
        if "context" in run.name:  # the candidate with >= 250 ms of reach on each side at 16 kHz
            assert (2 ** cfg.context_blocks - 1) * 32 >= 0.25 * 16000
        # the field's reference model, and the Self-ONN mask estimator over STFT frames
        assert cfg.arch == next((a for a in ("demucs", "spectral") if a in run.name), "unet")
        assert cfg.seed == (1 if run.name.endswith("-s1") else 0)
    for arch in ("demucs", "spectral"):
        # every case runs both seeds of each model (changes to a model are named <model>-<change>)
        assert sum(r.name.split("-", 2)[-1] in (arch, f"{arch}-s1") for r in s["runs"]) \
            == 2 * len({r.name.split("-")[1] for r in s["runs"]})


def test_minutes_overrides_every_runs_cap(tmp_path, capsys):
    s = ablate.SUITES["ladder-b"]
    cmd = ablate._command(s, s["runs"][0], "", tmp_path, minutes=20)
    cfg, _, _ = parse_args(cmd[cmd.index("train") + 1:])
    assert cfg.max_minutes == 20 and "120" in s["base"]  # the suite's own cap is overridden, not edited
    with pytest.raises(SystemExit):
        ablate.main(["run", "ladder-b", "--minutes", "0", "--runs-dir", str(tmp_path)])
    assert "--minutes must be > 0" in capsys.readouterr().err


def test_steps_replace_the_minute_cap(tmp_path, capsys):
    s = ablate.SUITES["ladder-b"]
    cmd = ablate._command(s, s["runs"][0], "", tmp_path, steps=9071)
    cfg, _, _ = parse_args(cmd[cmd.index("train") + 1:])
    assert (cfg.max_steps, cfg.max_minutes) == (9071, 0)
    for bad, msg in ((["--steps", "0"], "--steps must be > 0"),
                     (["--steps", "5", "--minutes", "5"], "give one")):
        with pytest.raises(SystemExit):
            ablate.main(["run", "ladder-b", *bad, "--runs-dir", str(tmp_path)])
        assert msg in capsys.readouterr().err


def test_a_run_that_hit_its_minute_cap_is_done(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"max_steps": 1000}))
    (run / "summary.json").write_text(json.dumps({"step": 10, "stop_reason": "max_steps"}))
    assert not ablate._is_done(run)
    (run / "summary.json").write_text(json.dumps({"step": 10, "stop_reason": "max_minutes"}))
    assert ablate._is_done(run)


def test_gap_scores_training_and_validation_crops_alike(tmp_path):
    """An identity restorer (a residual generator at init) gains exactly nothing on either folder, and the
    input scores are those the crop folders recorded."""
    from opgan.checkpoint import FORMAT, save_checkpoint
    from opgan.models import Generator, GeneratorConfig

    train = tmp_path / "train"
    val = tmp_path / "val"
    rows_t = ladder.write_crops(train, "train", 2, 2048, case="awgn", si_sdr_range=(-5.0, 15.0))
    ladder.write_crops(val, "val", 2, 2048, case="awgn", si_sdr_range=(-5.0, 15.0))
    g = Generator(GeneratorConfig(filters=2, q=2, residual=True, gate=True))
    run = tmp_path / "run"
    save_checkpoint(run / "best.pt", {"format": FORMAT, "config": {"generator": g.config.to_dict()},
                                      "generator": g.state_dict(), "sample_rate": 16000, "step": 7})
    rec = ladder.gap(run, train, val)
    assert json.loads((run / "gap.json").read_text()) == rec and rec["step"] == 7
    for side in ("train", "val"):
        assert rec[side]["clips"] == 2 and abs(rec[side]["si_sdr_gain"]) < 1e-3 and abs(rec[side]["sdr_gain"]) < 1e-3
        assert 0 < rec[side]["gate_median"] < 1 and 0 < rec[side]["gate_mean"] < 1  # the clip gate's reading
        assert rec[side]["level_db"] == pytest.approx(rec[side]["level_in_db"], abs=1e-3)  # identity: same level
        assert rec[side]["silent_floor_gain"] == -rec[side]["sdr_in"]
        bins = rec[side]["by_input_sdr"]  # every crop in one input-SDR bin, gains as the whole folder's
        assert sum(b["clips"] for b in bins.values()) == 2
        assert all(abs(b["si_sdr_gain"]) < 1e-3 for b in bins.values())
    assert rec["train"]["si_sdr_in"] == pytest.approx(np.mean([r["input_si_sdr"] for r in rows_t]), abs=1e-2)
    assert ladder.main(["gap", str(tmp_path / "none"), "--train", str(train), "--val", str(val)]) == 2
    assert ladder.main(["gap", str(run), "--train", str(train), "--val", str(val), "--out", "gap-early.json"]) == 0
    assert json.loads((run / "gap-early.json").read_text())["val"] == rec["val"]
    assert ladder.main(["gap", str(run), "--train", str(train), "--val", str(val), "--out", "../x.json"]) == 2


def test_collect_writes_no_home_path(tmp_path, monkeypatch):
    """A run trained on `--data ~/.cache/opgan` stores the expanded path; its committed record says ~."""
    monkeypatch.setattr(Path, "home", lambda: Path("/home/someone"))
    run = tmp_path / "runs" / "b-awgn-paper-voices"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"data": "/home/someone/.cache/opgan", "max_steps": 3}))
    (run / "metrics.csv").write_text("step\n3\n")
    (run / "gap-early.json").write_text(json.dumps({"val_folder": "/home/someone/x"}))
    assert "b-awgn-paper-voices" in ablate.collect("ladder-b", tmp_path / "runs", out=tmp_path / "out")
    assert json.loads((tmp_path / "out" / "ladder-b" / "b-awgn-paper-voices" / "gap-early.json").read_text()) == {
        "val_folder": "~/x"}
    rec = json.loads((tmp_path / "out" / "ladder-b" / "b-awgn-paper-voices" / "config.json").read_text())
    assert rec["data"] == "~/.cache/opgan"


def test_gap_reads_a_mask_models_saturation(tmp_path):
    """A spectral model at init keeps its last hidden layer moving from frame to frame; the same model with a
    grown per-channel constant reads as saturated and frozen over frames (a fixed equaliser)."""
    from opgan.checkpoint import FORMAT, save_checkpoint
    import torch

    from opgan.models import SpectralConfig, SpectralGenerator

    folder = tmp_path / "crops"
    ladder.write_crops(folder, "val", 2, 2048, case="awgn", si_sdr_range=(-5.0, 15.0))
    torch.manual_seed(0)
    g = SpectralGenerator(SpectralConfig(n_fft=64, hidden=8, blocks=2, q=2))
    readings = []
    for grown in (False, True):
        if grown:
            with torch.no_grad():
                g.inp.bias.normal_(0, 50.0)
                g.blocks[0].proj.bias.normal_(0, 50.0)
        save_checkpoint(tmp_path / "best.pt", {"format": FORMAT, "config": {"generator": g.config.to_dict()},
                                                "generator": g.state_dict(), "sample_rate": 16000, "step": 1})
        rec = ladder.gap(tmp_path, folder, folder)["val"]
        readings.append((rec["hidden_saturated"], rec["hidden_frame_std"]))
    (sat0, std0), (sat1, std1) = readings
    assert sat0 < 0.5 < 0.9 < sat1 and std1 < 0.1 * std0


def test_score_reads_a_built_test_split_of_unequal_clips(tmp_path, capsys):
    """`score` runs a shipped model on a built test set (clips of several lengths, one at a time where they
    differ), every n-th clip, and prints one JSON record; a folder without the split is one line, exit 2."""
    from opgan.data.assets import corpus_dir, default_rirs
    from opgan.data.builder import build
    from opgan.data import datasets as D

    import soundfile as sf

    out = tmp_path / "tiny"
    build("speech", corpus_dir(), out, "tiny", splits=["test"], rirs=default_rirs(), progress=False)
    first = f"{D.open_dataset(out, 'test').ids[0]}.wav"
    for side in ("clean", "corrupted"):  # a shorter first clip: a user's folder need not be of one length
        a, sr = sf.read(out / "test" / side / first)
        sf.write(out / "test" / side / first, a[: len(a) // 2], sr)
    n = len(D.open_dataset(out, "test"))
    assert len({D.open_dataset(out, "test")[i][0].shape[-1] for i in range(0, n, 4)}) > 1
    assert ladder.main(["score", "speech", str(out), "--every", "4"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["clips"] == len(range(0, n, 4)) and rec["split"] == "test"
    assert sum(b["clips"] for b in rec["by_input_sdr"].values()) == rec["clips"]
    assert 0.0 <= rec["hidden_saturated"] < 0.5 and rec["hidden_frame_std"] > 0.01  # the shipped model: unsaturated
    assert rec["si_sdr_gain"] == pytest.approx(rec["si_sdr_out"] - rec["si_sdr_in"])
    assert rec["silent_floor_gain"] == -rec["sdr_in"] and np.isfinite(rec["level_db"]) and rec["level_in_db"] > -20
    assert ladder.main(["score", "speech", str(out), "--split", "val"]) == 2
    assert "no 'val' split" in capsys.readouterr().err
    assert ladder.main(["score", str(tmp_path / "none.pt"), str(out)]) == 2
    with pytest.raises(ValueError, match="every"):
        ladder.score("speech", out, every=0)
