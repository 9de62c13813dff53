"""The `opgan` console script and `python -m opgan`: dispatch, help, errors, an end-to-end restore."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from opgan.cli import COMMANDS, main


def test_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert "examples:" in out and "opgan restore talk.wav" in out
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_a_main_and_help(name, capsys):
    module = importlib.import_module(COMMANDS[name][0])
    assert callable(module.main)
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_python_dash_m_restores_a_file(tmp_path):
    torch.manual_seed(0)
    from opgan.models import build_generator

    gen = build_generator({"filters": 2, "q": 1})
    ck = tmp_path / "m.pt"
    torch.save({"format": "opgan-ckpt-1", "config": {"generator": {"filters": 2, "q": 1}},
                "generator": gen.state_dict(), "sample_rate": 16000, "metrics": {}}, ck)
    src = tmp_path / "in.wav"
    sf.write(src, 0.3 * np.sin(np.arange(12000) / 7.0), 44100, subtype="PCM_16")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "opgan", "restore", str(src), "-o", str(tmp_path / "out"), "--model", str(ck),
           "--device", "cpu", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    info = sf.info(str(tmp_path / "out" / "in.wav"))
    assert (info.samplerate, info.frames, info.subtype) == (44100, 12000, "PCM_16")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "--overwrite" in r.stderr and "Traceback" not in r.stderr
    # -o naming an existing file: one line and exit 2 (was a FileExistsError traceback).
    (tmp_path / "some_file").write_text("keep")
    cmd[cmd.index("-o") + 1] = str(tmp_path / "some_file")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (tmp_path / "some_file").read_text() == "keep"


def test_default_restore_uses_shipped_speech_model(tmp_path):
    from opgan.enhance import shipped_weights

    if "speech" not in shipped_weights():
        pytest.skip("opgan/assets/weights/speech.pt not shipped in this checkout")
    src = tmp_path / "in.wav"
    sf.write(src, 0.3 * np.sin(np.arange(8000) / 5.0), 16000)
    assert main(["restore", str(src), "-o", str(tmp_path / "out"), "--device", "cpu"]) == 0
    y, sr = sf.read(tmp_path / "out" / "in.wav")
    assert sr == 16000 and y.shape == (8000,) and np.isfinite(y).all()


# `opgan train`'s parser (opgan/config.py) is tested with the trainer's options.
HELP_ARGS = {name: [name, "--help"] for name in COMMANDS if name != "train"}


@pytest.mark.parametrize("name", list(HELP_ARGS))
def test_help_shows_examples(name, capsys):
    with pytest.raises(SystemExit) as e:
        main(HELP_ARGS[name])
    assert e.value.code == 0
    text = capsys.readouterr().out
    examples = text[text.index("examples:"):]
    assert examples.count(f"opgan {name} ") >= 2  # at least two worked command lines


# --quiet wherever a command prints progress; --threads wherever it runs a model on the CPU
QUIET = {"restore": ["restore"], "evaluate": ["evaluate"], "build": ["build"], "fetch": ["fetch"],
         "gate": ["gate", "score"]}
THREADS = {"restore": ["restore"], "evaluate": ["evaluate"], "gate": ["gate", "score"]}


@pytest.mark.parametrize("flag,commands", [("--quiet", QUIET), ("--threads", THREADS)], ids=["quiet", "threads"])
def test_common_flags(flag, commands, capsys):
    for argv in commands.values():
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        assert flag in capsys.readouterr().out, argv
    for argv in THREADS.values():
        extra = {"evaluate": ["--data", "x", "--out", "y"]}.get(argv[0], ["x.wav"] if argv[0] == "restore" else [])
        assert main([*argv, *extra, "--threads", "0"]) == 2
        assert "--threads must be >= 1" in capsys.readouterr().err, argv


def test_a_run_killed_during_restore_leaves_nothing_behind_after_the_next(tmp_path):
    """SIGKILL mid-write leaves `.NAME.partial-PID.wav` (no handler runs); the next run removes it."""
    import signal
    import time

    from opgan.models import build_generator

    torch.manual_seed(0)
    ck = tmp_path / "m.pt"
    torch.save({"format": "opgan-ckpt-1", "config": {"generator": {"filters": 2, "q": 1}},
                "generator": build_generator({"filters": 2, "q": 1}).state_dict(), "sample_rate": 16000,
                "metrics": {}}, ck)
    src = tmp_path / "long.wav"
    sf.write(src, 0.1 * np.random.default_rng(0).standard_normal(16000 * 180), 16000, subtype="PCM_16")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "opgan", "restore", str(src), "-o", str(out), "--model", str(ck),
           "--device", "cpu", "--threads", "1", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob(".long.partial-*.wav")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = list(out.glob(".long.partial-*.wav"))
    assert left == [out / f".long.partial-{proc.pid}.wav"] and not (out / "long.wav").exists()
    sf.write(tmp_path / "short.wav", np.zeros(1600), 16000)
    r = subprocess.run(cmd[:4] + [str(tmp_path / "short.wav")] + cmd[5:-1], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert not left[0].exists() and "removed 1 unfinished output(s)" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["short.wav"]
