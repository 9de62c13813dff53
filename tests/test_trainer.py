"""Trainer: outputs, resume (in-process and after a real SIGKILL), non-finite stop, config errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from opgan.checkpoint import load_checkpoint
from opgan.config import ConfigError, parse_args
from opgan.trainer import main

sys.path.insert(0, str(Path(__file__).parent))
from _trainer_fixtures import make_tiny_rar  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_rar(tmp_path_factory.mktemp("rar") / "data")


pytestmark = pytest.mark.usefixtures("one_thread")


def _args(data: Path, runs: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--data", str(data), "--runs-dir", str(runs), *extra]


def _states_equal(a: dict, b: dict) -> None:
    for key in ("generator", "discriminator"):
        for k, v in a[key].items():
            assert torch.equal(v, b[key][k]), f"{key}.{k} differs"
    for key in ("opt_g", "opt_d"):
        for pid, st in a[key]["state"].items():
            for k, v in st.items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(b[key]["state"][pid][k])), f"{key}[{pid}].{k}"
    assert a["step"] == b["step"]


def test_tiny_run_outputs_and_restorer(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path, "--max-steps", "4")) == 0
    run = tmp_path / "tiny"
    for f in ("config.json", "last.pt", "best.pt", "metrics.jsonl", "metrics.csv", "summary.json"):
        assert (run / f).is_file(), f
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["q"] == 2 and cfg["filters"] == 2
    val_rows = (run / "metrics.csv").read_text().splitlines()
    assert val_rows[0].startswith("step,") and len(val_rows) == 1 + 2  # validations at steps 2 and 4
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in recs if r["kind"] == "val"]
    assert {"sdr_gain", "si_sdr_gain", "silent_floor_gain", "d_loss", "g_loss"} <= set(val[-1])
    assert abs(val[-1]["silent_floor_gain"] + val[-1]["sdr_in"]) < 1e-4
    ckpt = load_checkpoint(run / "last.pt")  # weights_only=True
    assert ckpt["step"] == 4 and ckpt["config"]["generator"] == {"filters": 2, "q": 2, "residual": False, "gate": False}
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch"}
    from opgan.enhance import load_restorer

    r = load_restorer(run / "best.pt")
    x = torch.randn(1, 1, 3200) * 0.1
    y = r(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert "final validation" in capsys.readouterr().out


def test_resume_in_process_is_bitwise(tiny_data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(_args(tiny_data, a, "--max-steps", "5", "--ckpt-every", "1")) == 0
    assert main(_args(tiny_data, b, "--max-steps", "3", "--ckpt-every", "1")) == 0
    assert main(_args(tiny_data, b, "--max-steps", "5", "--resume")) == 0
    _states_equal(load_checkpoint(a / "tiny" / "last.pt"), load_checkpoint(b / "tiny" / "last.pt"))
    steps = [json.loads(ln)["step"] for ln in (b / "tiny" / "metrics.jsonl").read_text().splitlines()
             if '"train"' in ln]
    assert steps == sorted(set(steps)) == [1, 2, 3, 4, 5]


def test_a_compacted_last_pt_resumes_near_the_full_one(tiny_data, tmp_path, capsys):
    """`python -m opgan.checkpoint compact` keeps the models, RNG and step, the second moment in bf16
    and no first moment; the resumed run loads it (first moments from zero) and trains on."""
    from opgan.checkpoint import main as ckpt_main

    a, b = tmp_path / "a", tmp_path / "b"
    assert main(_args(tiny_data, a, "--max-steps", "3", "--ckpt-every", "1")) == 0
    assert main(_args(tiny_data, b, "--max-steps", "3", "--ckpt-every", "1")) == 0
    full = load_checkpoint(b / "tiny" / "last.pt")
    assert ckpt_main(["compact", str(b / "tiny" / "last.pt")]) == 0
    assert "MiB" in capsys.readouterr().out
    small = load_checkpoint(b / "tiny" / "last.pt")
    assert (b / "tiny" / "last.pt").stat().st_size < 0.7 * (a / "tiny" / "last.pt").stat().st_size
    for k, v in full["generator"].items():
        assert torch.equal(v, small["generator"][k])
    for pid, st in small["opt_g"]["state"].items():
        assert "exp_avg" not in st and st["exp_avg_sq"].dtype == torch.bfloat16
        assert torch.equal(st["exp_avg_sq"], full["opt_g"]["state"][pid]["exp_avg_sq"].to(torch.bfloat16))
    assert main(_args(tiny_data, a, "--max-steps", "5", "--resume")) == 0
    assert main(_args(tiny_data, b, "--max-steps", "5", "--resume")) == 0
    ra, rb = load_checkpoint(a / "tiny" / "last.pt"), load_checkpoint(b / "tiny" / "last.pt")
    assert rb["step"] == 5 and rb["opt_g"]["state"][0]["exp_avg"].dtype == torch.float32
    for k, v in ra["generator"].items():  # two steps from nearly the same state: nearly the same weights
        if v.is_floating_point():
            assert torch.allclose(v, rb["generator"][k], atol=5e-3), k
    # a file that is not a resumable checkpoint: one line, exit 2, nothing written
    best = a / "tiny" / "best.pt"
    before = best.read_bytes()
    assert ckpt_main(["compact", str(best)]) == 2
    assert "not a resumable checkpoint" in capsys.readouterr().err and best.read_bytes() == before


def test_publish_makes_a_run_committable_and_resumable(tiny_data, tmp_path, monkeypatch, capsys):
    """`python -m opgan.checkpoint publish RUN_DIR --to training`: no machine path left in any record or
    checkpoint, runs_dir pointing at the copy, last.pt compact; the copy resumes from its own folder; a
    second publish without --overwrite is refused and changes nothing."""
    from opgan.checkpoint import main as ckpt_main

    monkeypatch.setenv("HOME", str(tiny_data.parent))  # the data lies in ~/data
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(_args(tiny_data, work / "runs" / "cand", "--max-steps", "3", "--ckpt-every", "1")) == 0
    assert ckpt_main(["publish", str(work / "runs" / "cand" / "tiny")]) == 0
    assert "--runs-dir training --name tiny" in capsys.readouterr().out
    dest = work / "training" / "tiny"
    texts = {f: (dest / f).read_text() for f in ("config.json", "metrics.jsonl", "summary.json", "metrics.csv")}
    for f, text in texts.items():
        assert str(tmp_path) not in text and str(tiny_data.parent) not in text, f
    cfg = json.loads(texts["config.json"])
    assert cfg["data"] == "~/data" and cfg["runs_dir"] == "training" and cfg["name"] == "tiny"
    last, best = load_checkpoint(dest / "last.pt"), load_checkpoint(dest / "best.pt")
    assert last["config"]["data"] == best["config"]["data"] == "~/data"
    assert last["config"]["runs_dir"] == best["config"]["runs_dir"] == "training"
    assert all("exp_avg" not in st for st in last["opt_g"]["state"].values())
    before = (dest / "last.pt").read_bytes()
    assert ckpt_main(["publish", str(work / "runs" / "cand" / "tiny")]) == 2
    assert "already holds" in capsys.readouterr().err and (dest / "last.pt").read_bytes() == before
    assert ckpt_main(["publish", str(work / "runs")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["--runs-dir", "training", "--name", "tiny", "--resume", "--max-steps", "5"]) == 0
    assert load_checkpoint(dest / "last.pt")["step"] == 5
    assert ckpt_main(["publish", "training/tiny"]) == 0  # in place: compacts the resumed state again
    assert all("exp_avg" not in st for st in load_checkpoint(dest / "last.pt")["opt_g"]["state"].values())


def test_kill_mid_run_then_resume_matches_uninterrupted(tiny_data, tmp_path):
    """A real SIGKILL at an arbitrary moment; resuming reaches exactly the uninterrupted state."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    cmd = [sys.executable, str(REPO / "train.py"), *_args(tiny_data, killed, "--ckpt-every", "1",
                                                           "--val-every", "1000", "--max-steps", "100000",
                                                           "--threads", "1")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "tiny" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.4)  # let it run on: the kill lands mid-step or mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), "the run never wrote a checkpoint"
    k = load_checkpoint(last)["step"]  # a torn write would fail to load here
    target = k + 3
    assert main(_args(tiny_data, killed, "--resume", "--max-steps", str(target), "--ckpt-every", "1")) == 0
    ref = tmp_path / "ref"
    assert main(_args(tiny_data, ref, "--max-steps", str(target), "--val-every", "1000", "--ckpt-every", "1")) == 0
    _states_equal(load_checkpoint(ref / "tiny" / "last.pt"), load_checkpoint(last))


def test_sigterm_stops_after_the_step_saves_it_and_resume_matches(tiny_data, tmp_path):
    """SIGTERM (kill, a scheduler) mid-run: exit 143 after the step in flight, last.pt at that very step
    (no checkpoint was due: every 1000 steps), summary.json saying so; resuming reaches the uninterrupted state."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stopped = tmp_path / "stopped"
    cmd = [sys.executable, str(REPO / "train.py"), *_args(tiny_data, stopped, "--ckpt-every", "1000",
                                                           "--val-every", "1000", "--max-steps", "100000",
                                                           "--threads", "1", "--log-every", "1")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = stopped / "tiny" / "metrics.jsonl"
    deadline = time.time() + 120
    while not log.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.4)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "continue with --resume" in err and "Traceback" not in err
    k = load_checkpoint(stopped / "tiny" / "last.pt")["step"]
    summary = json.loads((stopped / "tiny" / "summary.json").read_text())
    assert summary["stop_reason"] == "terminated" and summary["step"] == k >= 1
    target = k + 2
    assert main(_args(tiny_data, stopped, "--resume", "--max-steps", str(target))) == 0
    ref = tmp_path / "ref"
    assert main(_args(tiny_data, ref, "--max-steps", str(target), "--val-every", "1000", "--ckpt-every", "1000")) == 0
    _states_equal(load_checkpoint(ref / "tiny" / "last.pt"), load_checkpoint(stopped / "tiny" / "last.pt"))


def _poison_l1(monkeypatch, from_call: int) -> None:
    """The temporal L1 term turns NaN from its ``from_call``-th call on (one call a training step)."""
    from opgan.models import losses

    calls = {"n": 0}
    real = losses.temporal_l1

    def poisoned(est, ref):
        calls["n"] += 1
        out = real(est, ref)
        return out * float("nan") if calls["n"] >= from_call else out

    monkeypatch.setattr(losses, "temporal_l1", poisoned)


def test_non_finite_loss_stops_and_keeps_last_good(tiny_data, tmp_path, monkeypatch, capsys):
    _poison_l1(monkeypatch, 3)
    assert main(_args(tiny_data, tmp_path, "--max-steps", "6", "--ckpt-every", "1")) == 1
    err = capsys.readouterr().err
    assert "non-finite" in err and "step 3" in err and "last.pt" in err
    assert load_checkpoint(tmp_path / "tiny" / "last.pt")["step"] == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--preset", "nope"], "unknown preset"),
        (["--data", "/no/such/dataset"], "does not exist"),
        (["--clip-len", "8000"], "shorter than clip_len"),
        (["--clip-len", "1000"], "multiple of 32"),
        (["--clip-len", "1024"], "too short"),
        (["--batch-size", "64"], "larger than the training set"),
        (["--set", "nosuchfield=1"], "unknown config fields"),
        (["--lr", "abc"], "expects float"),
        (["--g-q", "3,3"], "10 comma-separated"),
    ],
)
def test_bad_configs_give_clear_errors(tiny_data, tmp_path, capsys, extra, message):
    args = _args(tiny_data, tmp_path)
    if extra[0] in ("--preset", "--data"):  # replace, not append
        i = args.index(extra[0])
        args[i + 1] = extra[1]
        extra = []
    assert main(args + extra) == 2
    assert message in capsys.readouterr().err


def test_refuses_to_clobber_and_resume_guards(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2")) == 0
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2")) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(_args(tiny_data, tmp_path, "--resume", "--q", "1")) == 2
    assert "cannot change q" in capsys.readouterr().err
    (tmp_path / "tiny" / "notes.txt").write_text("user file")
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2", "--overwrite")) == 0
    assert (tmp_path / "tiny" / "notes.txt").read_text() == "user file"  # never deletes user files


def test_cli_overrides_and_presets():
    cfg, over, _ = parse_args(["--preset", "cnn", "--set", "lr=1e-3", "--no-val-stoi", "--max-steps", "7"])
    assert cfg.q == 1 and cfg.lr == 1e-3 and cfg.val_stoi is False and cfg.max_steps == 7
    assert cfg.name == "cnn" and over == {"lr": 1e-3, "val_stoi": False, "max_steps": 7}
    paper, _, _ = parse_args(["--preset", "paper"])
    assert (paper.filters, paper.q, paper.clip_len, paper.batch_size, paper.lr) == (16, 3, 32000, 8, 2e-4)
    gpu, _, _ = parse_args(["--preset", "gpu"])
    assert gpu.dynamic and gpu.max_minutes > 0
    with pytest.raises(ConfigError):
        parse_args(["--set", "novalue"])


def test_second_pass_trains_on_first_pass_output(tiny_data, tmp_path):
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2")) == 0
    first = tmp_path / "tiny" / "best.pt"
    assert main(_args(tiny_data, tmp_path, "--name", "second", "--max-steps", "2", "--second-pass-of",
                      str(first))) == 0
    ckpt = load_checkpoint(tmp_path / "second" / "best.pt")
    assert "second_pass" in ckpt
    f0 = load_checkpoint(first)["generator"]
    assert all(torch.equal(v, ckpt["generator"][k]) for k, v in f0.items())  # first pass frozen
    from opgan.enhance import load_restorer

    r = load_restorer(tmp_path / "second" / "best.pt")
    assert r.second is not None
    recs = [json.loads(ln) for ln in (tmp_path / "second" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "first_pass" for r in recs)


def test_validation_reports_level_and_do_no_harm():
    """An attenuating 'restorer' shows up in level_db and in the light-input SDR loss, and the score
    (what select_by='score' keeps) penalises it although plain SDR gain on heavy inputs may rise."""
    from opgan.trainer import HARM_TOLERANCE_DB, validate

    g = torch.Generator().manual_seed(0)
    clean = torch.randn(6, 1, 4000, generator=g) * 0.1
    noise = torch.randn(6, 1, 4000, generator=g) * 0.1
    light = [0.01, 0.01, 0.01]  # input SDR 20 dB
    heavy = [1.0, 1.0, 1.0]  # input SDR 0 dB
    scale = torch.tensor(light + heavy).view(6, 1, 1)
    data = [(c + s * n, c) for c, n, s in zip(clean, noise, scale)]
    half = validate(lambda x: 0.5 * x, data, torch.device("cpu"), 16000, with_stoi=False)
    assert half["level_db"] < -3  # every output about 6 dB below the clean's level
    assert half["light_clips"] == 3 and half["light_sdr_gain"] < -10 and half["light_worst_gain"] < -10
    assert half["score"] == pytest.approx(half["si_sdr_gain"] + half["light_sdr_gain"] + HARM_TOLERANCE_DB)
    ident = validate(lambda x: x.clone(), data, torch.device("cpu"), 16000, with_stoi=False)
    assert ident["light_sdr_gain"] == pytest.approx(0.0) and ident["score"] == pytest.approx(0.0, abs=1e-9)
    assert half["score"] < ident["score"]


def test_plain_regression_run_skips_the_discriminator(tiny_data, tmp_path):
    """lambda_adv=0 with the recipe's terms: the discriminator is never updated; best.pt by score."""
    args = _args(tiny_data, tmp_path, "--max-steps", "2", "--lambda-adv", "0", "--lambda-mr", "1",
                 "--lambda-sisdr", "1", "--lambda-level", "1", "--select-by", "score")
    assert main(args) == 0
    run = tmp_path / "tiny"
    ckpt = load_checkpoint(run / "last.pt")
    assert not ckpt["opt_d"]["state"]  # Adam never stepped the discriminator
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train"]
    assert {"g_l1", "g_mr", "g_sisdr", "g_level"} <= set(train[-1]) and "g_adv" not in train[-1]
    assert json.loads((run / "summary.json").read_text())["select_by"] == "score"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"level_db", "light_sdr_gain", "score"} <= set(header)


def test_fit_restores_the_callers_backend_and_says_where_things_went(tiny_data, tmp_path, capsys):
    import selfonn

    selfonn.set_backend("torch")
    try:
        assert main(_args(tiny_data, tmp_path, "--max-steps", "2", "--backend", "auto")) == 0
        assert selfonn.get_backend() == "torch"
    finally:
        selfonn.set_backend("auto")
    out = capsys.readouterr().out
    assert f"[train] data: {tiny_data}" in out
    assert f"outputs in {tmp_path / 'tiny'}" in out and "best.pt" in out


def test_safety_cap_stops_and_says_how_to_continue(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path, "--max-steps", "50", "--max-minutes", "0.00001")) == 0
    out = capsys.readouterr().out
    assert "safety cap stopped the run at step 1 of 50" in out and "--resume" in out
    assert json.loads((tmp_path / "tiny" / "summary.json").read_text())["stop_reason"] == "max_minutes"


def test_init_from_warm_starts_a_new_run(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2")) == 0
    src = load_checkpoint(tmp_path / "tiny" / "last.pt")
    assert main(_args(tiny_data, tmp_path, "--name", "warm", "--max-steps", "1", "--val-every", "1",
                      "--init-from", str(tmp_path / "tiny" / "last.pt"), "--lr", "1e-12")) == 0
    warm = load_checkpoint(tmp_path / "warm" / "last.pt")
    assert warm["step"] == 1  # a new run, not a resume
    for key in ("generator", "discriminator"):  # lr 1e-12: weights stay (numerically) where they started
        for k, v in src[key].items():
            assert torch.allclose(v, warm[key][k], atol=1e-6), f"{key}.{k}"
    capsys.readouterr()
    assert main(_args(tiny_data, tmp_path, "--name", "bad", "--q", "1", "--init-from",
                      str(tmp_path / "tiny" / "last.pt"))) == 2
    assert "does not match" in capsys.readouterr().err
    assert main(_args(tiny_data, tmp_path, "--name", "bad2", "--init-from", "nosuchmodel")) == 2
    assert "not found" in capsys.readouterr().err
    # the gate's floor and leak hold no weights: a warm start may change them (and says so in its config)
    assert main(_args(tiny_data, tmp_path, "--name", "floor", "--max-steps", "1", "--gate-floor", "0.3",
                      "--gate-leak", "0", "--init-from", str(tmp_path / "tiny" / "last.pt"))) == 0
    cfg = load_checkpoint(tmp_path / "floor" / "last.pt")["config"]
    assert (cfg["gate_floor"], cfg["gate_leak"]) == (0.3, 0)
    # but a field that shapes weights must match, also one only the source names (a default is left out)
    assert main(_args(tiny_data, tmp_path, "--name", "ctx", "--max-steps", "1", "--context", "dilated",
                      "--context-blocks", "1")) == 0
    capsys.readouterr()
    assert main(_args(tiny_data, tmp_path, "--name", "bad3", "--init-from", str(tmp_path / "ctx" / "last.pt"))) == 2
    assert "does not match" in capsys.readouterr().err


def test_dynamic_mixing_options_reach_the_training_set(tmp_path, monkeypatch):
    """--cases/--augment/--group-weight shape the training mix (validation keeps the paper's cases)."""
    from opgan import train_run

    seen = {}
    real = train_run.Run.__init__

    def spy(self, cfg, run_dir, info, device, train_set, val_set, *a, **k):
        seen["train"], seen["val"] = train_set, val_set
        real(self, cfg, run_dir, info, device, train_set, val_set, *a, **k)

    monkeypatch.setattr(train_run.Run, "__init__", spy)
    args = ["--preset", "tiny", "--dynamic", "--dynamic-clips", "8", "--runs-dir", str(tmp_path), "--max-steps", "1",
            "--val-every", "1", "--cases", "blend:2,clean:1,light:1", "--augment", "--group-weight", "sqrt",
            "--data-root", str(tmp_path / "datasets"), "--data-size", "tiny", "--seed", "5",
            "--val-data", "default:speech", "--reverb-target", "early", "--background-mix", "ambience:3,music:1",
            "--room-prob", "0.5", "--reverb-min-rt60", "0.6"]
    assert main(args) == 0
    train, val = seen["train"], seen["val"]
    assert train.background.kind_weights == {"ambience": 3.0, "music": 1.0}
    assert val.background is None or val.background.kind_weights is None  # validation keeps its own draws
    assert train.reverb_target == "early" and val.reverb_target == "dry"  # validation keeps the dry clean
    assert train.room_prob == 0.5 and getattr(val, "room_prob", 0.0) == 0.0
    assert train.reverb_min_w == pytest.approx(0.4 / 1.3) and getattr(val, "reverb_min_w", 0.0) == 0.0
    assert train.cases == ("blend", "clean", "light") and train.case_probs.tolist() == pytest.approx([0.5, 0.25, 0.25])
    assert train.augment is not None and train.sampler.group_weight == "sqrt"
    assert "clean" not in val.cases and val.augment is None
    assert train.seed == 5 and val.seed == 1  # validation clips do not move with the training seed


@pytest.mark.parametrize("extra, message", [
    (["--dynamic", "--cases", "blend:1,shout:1"], "cases must be"),
    (["--dynamic", "--cases", "blend:-1"], "cases must be"),
    (["--dynamic", "--cases", "clean:0"], "at least one positive"),
    (["--augment"], "add --dynamic"),
    (["--dynamic", "--group-weight", "loud"], "group_weight must be"),
    (["--dynamic", "--reverb-target", "wet"], "reverb_target must be"),
    (["--reverb-target", "early"], "add --dynamic"),
    (["--dynamic", "--room-prob", "1.5"], "room_prob must"),
    (["--room-prob", "0.3"], "add --dynamic"),
    (["--dynamic", "--reverb-min-rt60", "1.6"], "reverb_min_rt60 must"),
    (["--reverb-min-rt60", "0.6"], "add --dynamic"),
    (["--dynamic", "--background-mix", "noise:1"], "background mix must be"),
    (["--background-mix", "ambience:1"], "add --dynamic"),
])
def test_bad_mixing_options_are_config_errors(tmp_path, capsys, extra, message):
    assert main(["--preset", "tiny", "--runs-dir", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


def test_lr_half_life_and_a_new_lr_on_resume(tiny_data, tmp_path):
    args = _args(tiny_data, tmp_path, "--max-steps", "2", "--lr", "1e-3", "--lr-half-life", "2", "--gate",
                 "--residual")
    assert main(args) == 0
    recs = [json.loads(ln) for ln in (tmp_path / "tiny" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in recs if r["kind"] == "train"]
    assert lrs == pytest.approx([1e-3 * 0.5 ** 0.5, 1e-3 * 0.5], rel=1e-2)  # logged (5 decimals) after steps 1, 2
    # a resume that fails before training (here its device) leaves config.json as it was, so the resume
    # that trains still sees, logs and saves the change
    before = (tmp_path / "tiny" / "config.json").read_text()
    if not torch.cuda.is_available():
        assert main(_args(tiny_data, tmp_path, "--resume", "--max-steps", "3", "--lr", "1e-4", "--device", "cuda")) != 0
        assert (tmp_path / "tiny" / "config.json").read_text() == before
    assert main(_args(tiny_data, tmp_path, "--resume", "--max-steps", "3", "--lr", "1e-4", "--lr-half-life", "0")) == 0
    ckpt = load_checkpoint(tmp_path / "tiny" / "last.pt")
    assert ckpt["opt_g"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    # the schedule change is in the record and config.json holds the config trained with now
    recs = [json.loads(ln) for ln in (tmp_path / "tiny" / "metrics.jsonl").read_text().splitlines()]
    resumed = [r for r in recs if r["kind"] == "resume"]
    assert resumed == [{"kind": "resume", "step": 2, "changed": {"lr": [1e-3, 1e-4], "lr_half_life": [2, 0]}}]
    saved = json.loads((tmp_path / "tiny" / "config.json").read_text())
    assert saved["lr"] == 1e-4 and saved["lr_half_life"] == 0
    assert ckpt["config"]["generator"]["gate"] is True


def test_compile_flag_traces_the_training_forwards(tiny_data, tmp_path, monkeypatch):
    """--compile MODE wraps G and D's training forwards in torch.compile (aot_eager here: no inductor
    build on CPU CI); the run trains and validates on the same parameters."""
    calls = []
    real = torch.compile

    def spy(module, **kw):
        calls.append((type(module).__name__, kw))
        return real(module, **kw)

    monkeypatch.setattr(torch, "compile", spy)
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2", "--compile", "aot_eager")) == 0
    assert [c[0] for c in calls] == ["Generator", "Discriminator"]
    assert all(c[1] == {"backend": "aot_eager"} for c in calls)
    ckpt = load_checkpoint(tmp_path / "tiny" / "last.pt")
    assert ckpt["step"] == 2 and not any(k.startswith("_orig_mod") for k in ckpt["generator"])
    assert main(_args(tiny_data, tmp_path, "--name", "x", "--compile", "fastest")) == 2


def test_max_minutes_counts_this_session_on_resume(tiny_data, tmp_path, capsys):
    """A resumed run with --max-minutes trains on (at least a step), however long it trained before."""
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2")) == 0
    assert main(_args(tiny_data, tmp_path, "--resume", "--max-steps", "50", "--max-minutes", "0.00001")) == 0
    assert load_checkpoint(tmp_path / "tiny" / "last.pt")["step"] == 3
    assert "stopped the run at step 3 of 50" in capsys.readouterr().out


def test_kernel_precompile_before_the_first_step_changes_nothing(tiny_data, tmp_path, monkeypatch):
    """On a single CUDA process with the fused backend the trainer compiles all kernel variants before
    its first step (selfonn.kernels.precompile, launches replaced by compiles). Here the launches are
    real torch ones, so the check is that the pass updates nothing: the run ends bit-identical."""
    from opgan import train_run
    from selfonn.kernels import precompile as pc

    assert main(_args(tiny_data, tmp_path, "--name", "plain", "--max-steps", "3")) == 0
    calls = []

    def fake_precompile(fn):
        calls.append(1)
        fn()  # G and D forward and backward on the first batch
        return pc.PrecompileReport(variants={"gather": 1})

    monkeypatch.setattr(train_run, "precompile_wanted", lambda device, world, x: True)
    monkeypatch.setattr(pc, "precompile", fake_precompile)
    assert main(_args(tiny_data, tmp_path, "--name", "pre", "--max-steps", "3")) == 0
    assert calls == [1]  # once per session, before the first step
    _states_equal(load_checkpoint(tmp_path / "plain" / "last.pt"), load_checkpoint(tmp_path / "pre" / "last.pt"))



def test_precompile_passes_are_the_steps_passes():
    """The precompile runs D as the step does: on real + fake with its weights trainable (the D
    update), then on fake with them frozen (the G update: a grad_x-only backward, other kernels),
    the gradient reaching G; D's flags are as they were afterwards."""
    from opgan.trainer import precompile_passes

    seen: list[tuple[int, bool]] = []

    class D(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 1, 3, padding=1)
            self.conv.bias.requires_grad_(False)  # a flag of its own, to be restored as it was

        def forward(self, v):
            seen.append((v.shape[0], self.conv.weight.requires_grad))
            return self.conv(v)

    g, d = torch.nn.Conv1d(1, 1, 3, padding=1), D()
    x, y = torch.randn(2, 1, 16), torch.randn(2, 1, 16)
    precompile_passes(g, d, x, y, adversarial=True)()
    assert seen == [(4, True), (2, False)]
    assert g.weight.grad is not None and d.conv.weight.requires_grad and not d.conv.bias.requires_grad
    seen.clear()
    precompile_passes(g, d, x, y, adversarial=False)()
    assert seen == []


def _fake_capture(calls: list):
    """A stand-in for CUDA-graph capture on the CPU: nothing runs at capture; each replay runs the
    captured body again (on the static inputs) and writes its output into the static output."""
    def capture(fn):
        calls.append("capture")
        out = torch.empty(0)

        def replay():
            calls.append("replay")
            r = fn()
            out.resize_(r.shape).copy_(r)
        return replay, out
    return capture


@pytest.fixture
def graph_on_cpu(monkeypatch):
    """--cuda-graph's step logic on the CPU: the device check passes and capture is the stand-in."""
    from opgan import train_graph

    calls: list = []
    monkeypatch.setattr(train_graph.StepGraph, "supported", staticmethod(lambda device: True))
    monkeypatch.setattr(train_graph, "capture", _fake_capture(calls))
    return calls


def test_cuda_graph_step_trains_as_the_eager_step(tiny_data, tmp_path, graph_on_cpu):
    """--cuda-graph: 3 eager warm-up steps of the in-place body, one capture, replays after; the run
    ends where the eager run ends (same data, same updates), logs the same losses, and its checkpoint
    resumes in an eager run (the lr a float again, Adam not capturable)."""
    extra = ("--device", "cpu", "--max-steps", "6", "--ckpt-every", "1", "--val-every", "3", "--residual", "--gate")
    assert main(_args(tiny_data, tmp_path, "--name", "eager", *extra)) == 0
    assert main(_args(tiny_data, tmp_path, "--name", "graph", "--cuda-graph", *extra)) == 0
    assert graph_on_cpu == ["capture"] + ["replay"] * 3
    a, b = load_checkpoint(tmp_path / "eager" / "last.pt"), load_checkpoint(tmp_path / "graph" / "last.pt")
    for key in ("generator", "discriminator"):
        for k, v in a[key].items():
            torch.testing.assert_close(b[key][k], v, rtol=1e-5, atol=1e-6, msg=f"{key}.{k}")
    group = b["opt_g"]["param_groups"][0]
    assert isinstance(group["lr"], float) and group["lr"] == pytest.approx(a["opt_g"]["param_groups"][0]["lr"])
    assert group["capturable"] is False and group["fused"] is None  # (a CUDA run steps Adam fused)

    def losses(name):
        recs = [json.loads(ln) for ln in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [r[k] for r in recs if r["kind"] == "train" for k in ("d_loss", "g_loss")]

    assert losses("graph") == pytest.approx(losses("eager"), rel=1e-4)
    assert main(_args(tiny_data, tmp_path, "--name", "graph", "--resume", "--no-cuda-graph", "--max-steps", "7")) == 0
    assert load_checkpoint(tmp_path / "graph" / "last.pt")["step"] == 7


def test_cuda_graph_non_finite_loss_stops_after_the_step(tiny_data, tmp_path, graph_on_cpu, monkeypatch, capsys):
    """The captured step cannot stop mid-way: its losses are checked after it, and the run stops there
    without saving (last.pt keeps the last good step)."""
    _poison_l1(monkeypatch, 5)
    assert main(_args(tiny_data, tmp_path, "--device", "cpu", "--cuda-graph", "--max-steps", "8", "--ckpt-every", "1")) == 1
    err = capsys.readouterr().err
    assert "generator loss became non-finite" in err and "step 5" in err
    assert load_checkpoint(tmp_path / "tiny" / "last.pt")["step"] == 4


def test_cuda_graph_needs_cuda_and_no_compile(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path, "--cuda-graph", "--device", "cpu")) == 2
    assert "--cuda-graph needs a CUDA device (this run is on cpu); pass --no-cuda-graph" in capsys.readouterr().err
    assert main(_args(tiny_data, tmp_path, "--name", "x", "--cuda-graph", "--compile", "default")) == 2
    assert "reduce-overhead" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-graph capture needs a CUDA device")
@pytest.mark.parametrize("backend, precision", [("triton", "fp32"), ("torch", "fp32"), ("triton", "bf16")])
def test_cuda_graph_on_the_gpu_matches_eager(tiny_data, tmp_path, backend, precision, capsys, monkeypatch):
    """The real capture, on by default on CUDA: the step is captured (no fallback), and 8 steps (3 eager
    warm-up, the capture, 4 replays) end where the eager run (--no-cuda-graph) ends, in float32 (TF32 off)
    on either backend, and under bf16 autocast (its cast cache off in the graph)."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    extra = ("--device", "cuda", "--backend", backend, "--max-steps", "8", "--val-every", "4", "--residual", "--gate",
             "--bf16" if precision == "bf16" else "--no-bf16")
    assert main(_args(tiny_data, tmp_path, "--name", "eager", "--no-cuda-graph", *extra)) == 0
    assert "training step: eager (--no-cuda-graph)" in capsys.readouterr().out
    assert main(_args(tiny_data, tmp_path, "--name", "graph", *extra)) == 0
    out = capsys.readouterr()
    assert "training step: one CUDA graph (the default on CUDA" in out.out
    assert "captured in a CUDA graph" in out.out and "capturing the training step failed" not in out.err + out.out
    a, b = load_checkpoint(tmp_path / "eager" / "last.pt"), load_checkpoint(tmp_path / "graph" / "last.pt")
    for key in ("generator", "discriminator"):
        for k, v in a[key].items():
            torch.testing.assert_close(b[key][k], v, rtol=1e-4, atol=1e-5, msg=f"{key}.{k}")
    assert main(_args(tiny_data, tmp_path, "--name", "graph", "--resume", "--max-steps", "10", *extra[:4])) == 0
    assert load_checkpoint(tmp_path / "graph" / "last.pt")["step"] == 10


# ---- a run folder's files are never lost, a failed start leaves nothing, checkpoints are checked --------


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_resume_without_last_pt_refuses_and_changes_nothing(tiny_data, tmp_path, capsys):
    """It started again at step 0 and overwrote best.pt and the metrics history."""
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2")) == 0
    run = tmp_path / "tiny"
    (run / "last.pt").unlink()
    before = _snapshot(run)
    capsys.readouterr()
    assert main(_args(tiny_data, tmp_path, "--resume", "--max-steps", "4")) == 2
    err = capsys.readouterr().err
    assert "no last.pt to resume from" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert _snapshot(run) == before


def test_a_start_that_fails_before_step_one_leaves_nothing(tiny_data, tmp_path, capsys, monkeypatch):
    """--tensorboard without tensorboard, or bad data: the same --name runs at once when fixed (a
    config.json was left and the name refused until --overwrite). An --overwrite whose start fails
    keeps the run it would have replaced."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2", "--tensorboard")) == 2
    assert "pip install 'opgan-selfonn[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "tiny").exists()
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2", "--clip-len", "8000")) == 2  # longer than the clips
    assert not (tmp_path / "tiny").exists()
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2")) == 0
    before = _snapshot(tmp_path / "tiny")
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2", "--overwrite", "--tensorboard")) == 2
    assert _snapshot(tmp_path / "tiny") == before
    _poison_l1(monkeypatch, 1)  # diverges in its first step: nothing to keep either
    assert main(_args(tiny_data, tmp_path, "--name", "nan", "--max-steps", "2")) == 1
    assert not (tmp_path / "nan").exists()


def test_resume_cleans_the_temporaries_a_killed_run_left(tiny_data, tmp_path):
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2")) == 0
    run = tmp_path / "tiny"
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    stale = [run / f".last.pt.{p.pid}-x1y2z3w4.tmp", run / ".best.pt.q8w7e6r5.tmp"]
    keep = run / ".last.pt.mine"
    for f in (*stale, keep):
        f.write_bytes(b"partial")
    past = time.time() - 3600
    os.utime(stale[1], (past, past))
    assert main(_args(tiny_data, tmp_path, "--resume", "--max-steps", "3")) == 0
    assert not any(f.exists() for f in stale) and keep.exists()


def _resume_with(tiny_data, tmp_path, capsys, change) -> str:
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2")) == 0
    last = tmp_path / "tiny" / "last.pt"
    ck = torch.load(last, weights_only=True)
    change(ck, tmp_path)
    torch.save(ck, last)
    capsys.readouterr()
    assert main(_args(tiny_data, tmp_path, "--resume", "--max-steps", "3")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def _other_configs_state(ck, tmp_path):
    g = build_models_for(q=1)
    ck["generator"], ck["discriminator"] = g[0].state_dict(), g[1].state_dict()


def build_models_for(**fields):
    from opgan.config import preset
    from opgan.trainer import build_models

    cfg = preset("tiny")
    for k, v in fields.items():
        setattr(cfg, k, v)
    return build_models(cfg)


@pytest.mark.parametrize("case, change, message", [
    ("other_config", _other_configs_state, "saved by another configuration"),
    ("step_text", lambda ck, _: ck.update(step="abc"), "invalid step 'abc'"),
    ("step_negative", lambda ck, _: ck.update(step=-5), "invalid step -5"),
    ("train_s", lambda ck, _: ck.update(train_s=float("nan")), "invalid train_s"),
    ("rng", lambda ck, _: ck.update(rng={"python": 1}), "RNG state is malformed"),
    ("opt_state", lambda ck, _: ck["opt_g"]["state"][0].update(exp_avg=torch.zeros(3)), "opt_g state of parameter 0"),
    ("opt_groups", lambda ck, _: ck["opt_d"].update(param_groups=[]), "opt_d does not fit"),
    ("metrics", lambda ck, _: ck.update(metrics=[1]), "metrics must be a mapping"),
    ("best_only", lambda ck, _: [ck.pop(k) for k in ("opt_g", "opt_d", "rng")], "not a resumable checkpoint"),
])
def test_a_malformed_last_pt_is_one_line(tiny_data, tmp_path, capsys, case, change, message):
    """A last.pt of another configuration gave a load_state_dict traceback; bad fields a TypeError's."""
    assert message in _resume_with(tiny_data, tmp_path, capsys, change)


@pytest.mark.parametrize("flag", ["--second-pass-of", "--init-from"])
def test_malformed_source_checkpoints_are_one_line(tiny_data, tmp_path, capsys, flag):
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2")) == 0
    ck = torch.load(tmp_path / "tiny" / "best.pt", weights_only=True)
    for i, change in enumerate([dict(config="abc"), dict(sample_rate="abc"), dict(second_pass=[1])]):
        bad = tmp_path / f"bad{i}.pt"
        torch.save({**ck, **change}, bad)
        capsys.readouterr()
        assert main(_args(tiny_data, tmp_path, "--name", f"n{i}", flag, str(bad))) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / f"n{i}").exists()


def test_malformed_config_json_on_resume_is_one_line(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2")) == 0
    (tmp_path / "tiny" / "config.json").write_text("{not json")
    capsys.readouterr()
    assert main(_args(tiny_data, tmp_path, "--resume", "--max-steps", "3")) == 2
    assert "cannot read" in capsys.readouterr().err


# ---- CUDA graphs by default on CUDA ------------------------------------------------------------


def test_cuda_graph_decision():
    """auto: on for one eager CUDA process, with the reason the run logs; 'on' insists; 'off' opts out."""
    from opgan.config import TrainConfig
    from opgan.train_graph import use_cuda_graph

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")  # (a device object needs no GPU)
    auto = TrainConfig()
    assert auto.cuda_graph == "auto"
    assert use_cuda_graph(auto, cuda, 1) == (True, "the default on CUDA; --no-cuda-graph turns it off")
    assert use_cuda_graph(auto, cpu, 1)[0] is False
    assert use_cuda_graph(auto, cuda, 2) == (False, "2 processes (DDP steps are not captured yet)")
    assert use_cuda_graph(TrainConfig(compile="default"), cuda, 1)[0] is False
    assert use_cuda_graph(TrainConfig(cuda_graph="off"), cuda, 1) == (False, "--no-cuda-graph")
    assert use_cuda_graph(TrainConfig(cuda_graph="on"), cuda, 1) == (True, "--cuda-graph")
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        use_cuda_graph(TrainConfig(cuda_graph="on"), cpu, 1)


def test_cuda_graph_flags_and_older_configs():
    """--cuda-graph / --no-cuda-graph / nothing; a bool from code or an older config.json; with --compile
    only an explicit --cuda-graph is an error (auto steps aside for the compiled forwards)."""
    from opgan.config import TrainConfig

    assert parse_args([])[0].cuda_graph == "auto"
    assert parse_args(["--cuda-graph"])[0].cuda_graph == "on"
    assert parse_args(["--no-cuda-graph"])[0].cuda_graph == "off"
    assert parse_args(["--set", "cuda_graph=true"])[0].cuda_graph == "on"
    assert parse_args(["--compile", "default"])[0].cuda_graph == "auto"
    assert TrainConfig.from_dict({"cuda_graph": False}).cuda_graph == "off"
    cfg = TrainConfig(cuda_graph=True)
    cfg.validate()
    assert cfg.cuda_graph == "on"
    with pytest.raises(ConfigError, match="cuda_graph must be one of"):
        parse_args(["--set", "cuda_graph=sometimes"])


def test_cuda_graph_capture_failure_trains_on_eagerly(tiny_data, tmp_path, monkeypatch, capsys):
    """A step that cannot be captured: a warning with the reason, then the eager step; the run ends
    where the eager run ends."""
    from opgan import train_graph

    def failing_capture(fn):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    extra = ("--device", "cpu", "--max-steps", "5", "--val-every", "5")
    assert main(_args(tiny_data, tmp_path, "--name", "eager", *extra)) == 0
    monkeypatch.setattr(train_graph.StepGraph, "supported", staticmethod(lambda device: True))
    monkeypatch.setattr(train_graph, "capture", failing_capture)
    capsys.readouterr()
    assert main(_args(tiny_data, tmp_path, "--name", "graph", "--cuda-graph", *extra)) == 0
    out = capsys.readouterr()
    assert "training step: one CUDA graph (--cuda-graph)" in out.out
    assert "capturing the training step failed (operation not permitted when stream is capturing)" in out.out + out.err
    a, b = load_checkpoint(tmp_path / "eager" / "last.pt"), load_checkpoint(tmp_path / "graph" / "last.pt")
    for key in ("generator", "discriminator"):
        for k, v in a[key].items():
            torch.testing.assert_close(b[key][k], v, rtol=1e-5, atol=1e-6, msg=f"{key}.{k}")


# ---- --help and --quiet ------------------------------------------------------------------------


def test_help_describes_presets_fields_and_examples(capsys):
    from dataclasses import fields as dc_fields

    from opgan.config import PRESET_HELP, PRESETS, TrainConfig, build_parser, field_help

    assert set(PRESET_HELP) == set(PRESETS) and all(PRESET_HELP.values())
    helps = field_help()
    missing = [f.name for f in dc_fields(TrainConfig) if not helps.get(f.name)]
    assert not missing, f"fields without a comment to show as help: {missing}"
    assert "(default: 100)" not in helps["lambda_t"] and helps["dynamic"].endswith("the fixed val split")
    text = build_parser().format_help()
    assert "minutes on an idle" in " ".join(text.split()) and "examples:" in text and "python train.py --preset tiny" in text
    assert "--no-cuda-graph" in text and "--quiet" in text


def test_quiet_prints_no_progress(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2", "--quiet", "--progress")) == 0
    out = capsys.readouterr()
    assert "[train]" not in out.out and "[val]" not in out.out and out.err == ""
    assert json.loads((tmp_path / "tiny" / "config.json").read_text())["progress"] is False
    assert main(_args(tiny_data, tmp_path, "--name", "loud", "--max-steps", "2")) == 0
    assert "[train]" in capsys.readouterr().out  # the next run in the process talks again


def test_data_paths_with_a_tilde_open_as_the_shell_would(tiny_data, tmp_path, monkeypatch):
    """A config.json (or a quoted flag) may hold "~/...": the trainer expands it like the shell."""
    monkeypatch.setenv("HOME", str(tiny_data.parent))
    assert main(_args(Path("~") / tiny_data.name, tmp_path, "--max-steps", "1")) == 0
    assert (tmp_path / "tiny" / "last.pt").is_file()
