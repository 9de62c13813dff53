"""Checkpoint fields from a crafted or damaged file: each refused in one line before anything is
built or allocated from it (restore's load_restorer), and interrupted writes' temporaries cleaned."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from opgan.checkpoint import (MAX_PARAMETERS, CheckpointError, check_restorer, remove_stale_temporaries,
                              save_checkpoint)
from opgan.enhance import load_restorer
from opgan.models import build_generator


def _good(filters: int = 2, q: int = 2) -> dict:
    torch.manual_seed(0)
    gen = build_generator({"filters": filters, "q": q})
    return {"format": "opgan-ckpt-1", "config": {"name": "x", "generator": {"filters": filters, "q": q}},
            "generator": gen.state_dict(), "sample_rate": 16000, "metrics": {"sdr": 1.0}}


def _second(ck: dict) -> dict:
    return {"config": {"generator": {"filters": 2, "q": 2}}, "generator": ck["generator"]}


# (change to a good checkpoint, what the one-line error says)
BAD = {
    "rate_text": (lambda ck: ck.update(sample_rate="abc"), "invalid sample_rate 'abc'"),
    "rate_huge": (lambda ck: ck.update(sample_rate=10**9), "invalid sample_rate 1000000000"),
    "rate_zero": (lambda ck: ck.update(sample_rate=0), "invalid sample_rate 0"),
    "rate_bool": (lambda ck: ck.update(sample_rate=True), "invalid sample_rate True"),
    "config_text": (lambda ck: ck.update(config="abc"), "config must be a mapping of fields, got a str"),
    "config_list": (lambda ck: ck.update(config=[1, 2]), "config must be a mapping of fields, got a list"),
    "config_missing": (lambda ck: ck.pop("config"), "lacks config"),
    "generator_config_list": (lambda ck: ck["config"].update(generator=[2, 2]), "config.generator must be a mapping"),
    "filters_huge": (lambda ck: ck["config"]["generator"].update(filters=200000), "filters 200000 is not an integer"),
    "filters_text": (lambda ck: ck["config"]["generator"].update(filters="8"), "filters '8' is not an integer"),
    "q_huge": (lambda ck: ck["config"]["generator"].update(q=10**6), "q 1000000 is not an integer"),
    "q_list_bad": (lambda ck: ck["config"]["generator"].update(q=[2] * 9 + [0]), "q 0 is not an integer"),
    "q_list_long": (lambda ck: ck["config"]["generator"].update(q=[2] * 10**5), "not a list of per-layer orders"),
    "residual_text": (lambda ck: ck["config"]["generator"].update(residual="yes"), "residual must be true or false"),
    "unknown_field": (lambda ck: ck["config"]["generator"].update(width=3), "config not understood"),
    "weights_text": (lambda ck: ck.update(generator="weights"), "generator must be a mapping"),
    "weights_shape": (lambda ck: ck["config"]["generator"].update(filters=4), "do not match"),
    "weights_not_tensor": (lambda ck: ck["generator"].update({"down.0.weight": [1.0]}), "not a tensor"),
    "second_pass_list": (lambda ck: ck.update(second_pass=[1]), "second_pass must be a mapping"),
    "second_pass_lacks": (lambda ck: ck.update(second_pass={"config": {}}), "second_pass lacks generator"),
    "second_pass_config": (lambda ck: ck.update(second_pass={**_second(ck), "config": "x"}),
                           "second_pass.config must be a mapping"),
    "second_pass_filters": (lambda ck: ck.update(second_pass={**_second(ck), "config": {"filters": 10**6}}),
                            "second pass filters 1000000"),
    "metrics_list": (lambda ck: ck.update(metrics=[1]), "metrics must be a mapping"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_fields_are_one_line_errors(tmp_path, case):
    change, message = BAD[case]
    ck = _good()
    change(ck)
    path = tmp_path / "bad.pt"
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace("[", r"\[")) as e:
        load_restorer(path)
    assert "\n" not in str(e.value)


def test_a_huge_model_is_refused_before_any_allocation():
    """Within each field's bound but too many parameters in all: counted on the meta device."""
    ck = _good()
    ck["config"]["generator"].update(filters=256, q=16)
    with pytest.raises(CheckpointError, match=f"more than the {MAX_PARAMETERS:,}"):
        check_restorer(ck, "big.pt")


def test_good_checkpoints_pass_with_their_fields():
    ck = _good()
    ck["second_pass"] = _second(ck)
    ck["sample_rate"] = 22050.0  # an integral float is a rate
    spec = check_restorer(ck, "ok.pt")
    assert spec.sample_rate == 22050 and spec.generator.config == {"filters": 2, "q": 2}
    assert spec.second is not None and spec.metrics == {"sdr": 1.0}


def test_restore_cli_refuses_a_crafted_rate_in_one_line(tmp_path):
    """`opgan restore --model crafted.pt` with sample_rate 10**9: exit 2 and one line, no allocation
    (it resampled the input to 10**9 Hz: a 3.6 GiB array per second of audio)."""
    import numpy as np
    import soundfile as sf

    ck = _good()
    ck["sample_rate"] = 10**9
    torch.save(ck, tmp_path / "crafted.pt")
    sf.write(tmp_path / "in.wav", np.zeros(1600, np.float32), 16000)
    cmd = [sys.executable, "-m", "opgan", "restore", str(tmp_path / "in.wav"), "-o", str(tmp_path / "out"),
           "--model", str(tmp_path / "crafted.pt"), "--device", "cpu", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "sample_rate" in r.stderr


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_interrupted_writes_are_removed(tmp_path):
    """Only the checkpoint writer's own pattern, and only stale ones: a writer that is gone, or (no PID
    in the name) a file older than the run's start. A live writer's fresh file and user files stay."""
    started = time.time()
    dead = tmp_path / f".last.pt.{_dead_pid()}-abcd1234.tmp"
    live = tmp_path / f".last.pt.{os.getpid()}-efgh5678.tmp"
    old_style = tmp_path / ".best.pt.k2j3h4l5.tmp"  # before the PID was in the name
    fresh_old_style = tmp_path / ".best.pt.zzzzzzzz.tmp"
    json_tmp = tmp_path / ".summary.json.tmp"
    user = [tmp_path / ".last.pt.notes", tmp_path / "last.pt.tmp", tmp_path / ".other.pt.1-abcdefgh.tmp",
            tmp_path / ".last.pt.my-backup.tmp"]
    for p in (dead, live, old_style, fresh_old_style, json_tmp, *user):
        p.write_bytes(b"x")
    past = started - 60
    for p in (old_style, json_tmp):
        os.utime(p, (past, past))
    for p in (fresh_old_style, live):
        os.utime(p, (started + 1, started + 1))
    removed = remove_stale_temporaries(tmp_path, ("last.pt", "best.pt", "summary.json"), started)
    assert sorted(removed) == sorted([dead, old_style, json_tmp])
    assert all(p.exists() for p in (live, fresh_old_style, *user))


def test_save_checkpoint_names_its_temporary_with_its_pid(tmp_path, monkeypatch):
    """A write killed mid-way leaves `.NAME.PID-XXXX.tmp`: the PID is what lets the next run tell it is stale."""
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    save_checkpoint(tmp_path / "last.pt", {"format": "opgan-ckpt-1"})
    assert len(seen) == 1 and seen[0].startswith(f".last.pt.{os.getpid()}-") and seen[0].endswith(".tmp")
    # what a writer killed mid-way leaves (its name, a dead writer's PID) is what the next run removes
    left = tmp_path / seen[0].replace(f".{os.getpid()}-", f".{_dead_pid()}-")
    left.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path, ("last.pt",), time.time() - 3600) == [left]
