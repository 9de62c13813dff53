"""The generator's weight average (`--ema-decay`): its arithmetic, what best.pt and last.pt hold, the raw
weights' validation beside it, resume (bitwise, or adding an average to a run without one), bad state."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from opgan.checkpoint import load_checkpoint, save_checkpoint
from opgan.config import ConfigError, parse_args
from opgan.publish import publish_run
from opgan.train_ema import WARMUP, WeightAverage
from opgan.trainer import main

sys.path.insert(0, str(Path(__file__).parent))
from _trainer_fixtures import make_tiny_rar  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_rar(tmp_path_factory.mktemp("rar") / "data")


def _args(data: Path, runs: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--data", str(data), "--runs-dir", str(runs), *extra]


def _steps(path: Path) -> list[int]:
    with path.open(newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)]


def test_the_average_follows_the_weights_with_its_warmup_then_its_decay():
    lin = nn.Linear(3, 2)
    lin.register_buffer("count", torch.zeros((), dtype=torch.long))
    avg = WeightAverage(lin, 0.9)
    start = lin.weight.detach().clone()
    expect = start.clone()
    for n in range(100):
        with torch.no_grad():
            lin.weight.add_(1.0)
            lin.count.add_(1)
        d = min(0.9, (1 + n) / (WARMUP + n))
        expect = d * expect + (1 - d) * lin.weight.detach()
        avg.update(lin)
    torch.testing.assert_close(avg.model.weight, expect)
    assert avg.model.count.item() == 100  # an integer buffer is copied, not averaged
    assert avg.current_decay() == 0.9 and not avg.model.weight.requires_grad
    assert not torch.equal(avg.model.weight, lin.weight)  # a copy, not the module's own tensors
    with pytest.raises(ValueError):
        WeightAverage(lin, 1.0)


def test_flag_bounds():
    assert parse_args(["--ema-decay", "0.999"])[0].ema_decay == 0.999
    for bad in ("1", "-0.1"):
        with pytest.raises(ConfigError, match="ema_decay"):
            parse_args(["--ema-decay", bad])[0].validate()


def test_a_run_ships_its_average_validates_both_and_resumes_bitwise(tiny_data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ema = ("--ema-decay", "0.5", "--ckpt-every", "1")
    assert main(_args(tiny_data, a, "--max-steps", "4", *ema)) == 0
    run = a / "tiny"
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    assert last["ema"]["updates"] == 4 and last["ema"]["decay"] == 0.5
    # best.pt holds the average it was chosen by; last.pt the raw weights the optimiser steps, and the average
    best_step = json.loads((run / "summary.json").read_text())["best_step"]
    assert best["step"] == best_step
    if best_step == 4:
        for k, v in best["generator"].items():
            assert torch.equal(v, last["ema"]["weights"][k]), k
    assert any(not torch.equal(v, last["ema"]["weights"][k]) for k, v in last["generator"].items()
               if v.is_floating_point())
    # each validation scored both: the average in metrics.csv, the raw weights in metrics-raw.csv
    assert _steps(run / "metrics.csv") == _steps(run / "metrics-raw.csv") == [2, 4]
    kinds = [json.loads(ln)["kind"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert kinds.count("val") == kinds.count("val_raw") == 2
    # stopped and resumed, the average continues where it was: the same state as the uninterrupted run
    assert main(_args(tiny_data, b, "--max-steps", "2", *ema)) == 0
    assert main(_args(tiny_data, b, "--max-steps", "4", "--resume")) == 0
    other = load_checkpoint(b / "tiny" / "last.pt")
    assert other["ema"]["updates"] == 4
    for key in ("generator",):
        for k, v in last[key].items():
            assert torch.equal(v, other[key][k]), k
    for k, v in last["ema"]["weights"].items():
        assert torch.equal(v, other["ema"]["weights"][k]), k
    assert _steps(b / "tiny" / "metrics-raw.csv") == [2, 4]
    # a published copy keeps both validation tables; its compact last.pt drops the average (one more copy of
    # the generator), which the resumed run starts again from the resumed weights
    dest = publish_run(run, to=tmp_path / "pub")
    assert _steps(dest / "metrics-raw.csv") == [2, 4] and "ema" not in load_checkpoint(dest / "last.pt")
    assert main(["--runs-dir", str(tmp_path / "pub"), "--name", "tiny", "--resume", "--max-steps", "5"]) == 0
    assert load_checkpoint(dest / "last.pt")["ema"]["updates"] == 1


def test_resume_may_add_an_average_and_a_bad_one_is_one_line(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path, "--max-steps", "2", "--ckpt-every", "1")) == 0
    run = tmp_path / "tiny"
    plain = load_checkpoint(run / "last.pt")
    assert "ema" not in plain and not (run / "metrics-raw.csv").exists()
    assert main(_args(tiny_data, tmp_path, "--max-steps", "3", "--resume", "--ema-decay", "0.9")) == 0
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["ema"]["updates"] == 1  # started at step 2's weights, one step ago
    assert _steps(run / "metrics-raw.csv") == [3]
    resumes = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if '"resume"' in ln]
    assert resumes and "ema_decay" in resumes[-1]["changed"]
    # a crafted average that does not fit the model: one line, exit 2, nothing changed
    ckpt["ema"]["weights"] = {k: v[..., :1] if v.dim() else v for k, v in ckpt["ema"]["weights"].items()}
    save_checkpoint(run / "last.pt", ckpt)
    before = (run / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(_args(tiny_data, tmp_path, "--max-steps", "4", "--resume")) == 2
    err = capsys.readouterr().err.strip()
    assert "ema weights do not match" in err and len(err.splitlines()) == 1
    assert (run / "last.pt").read_bytes() == before


def test_the_average_rebinds_to_another_module_and_follows_a_loaded_state():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    avg = WeightAverage(a, 0.5)
    avg.update(a)
    saved = {k: v.clone() for k, v in avg.model.state_dict().items()}
    avg.updates = 50  # past the warmup: decay 0.5
    avg.update(b)  # another module: matched by name again, not the first one's cached tensors
    torch.testing.assert_close(avg.model.weight, 0.5 * saved["weight"] + 0.5 * b.weight.detach())
    avg.load({"decay": 0.5, "updates": 50, "weights": saved}, "x")  # loaded in place: the binding holds
    with torch.no_grad():
        b.weight.mul_(2.0)
    avg.update(b)
    torch.testing.assert_close(avg.model.weight, 0.5 * saved["weight"] + 0.5 * b.weight.detach())
