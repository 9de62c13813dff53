"""bench/gpu_round.py: the --smoke round runs end to end on CPU and writes a record in the results schema;
its deadlines cut a slow section short without losing the others."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gpu_round = _load("gpu_round")
tables = _load("tables")


def test_smoke_round_writes_a_valid_record(tmp_path: Path):
    env = {**os.environ, "TRITON_INTERPRET": "1", "OUT": str(tmp_path / "out")}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "bench/gpu_round.py", "--smoke"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.monotonic() - t0 < 240
    (record,) = (tmp_path / "out").glob("*-cpu.json")  # $OUT is honoured
    data = json.loads(record.read_text())
    assert tables.schema_errors(data) == []
    assert [s["status"] for s in data["sections"].values()] == ["done"] * 7, data["sections"]
    assert {(e["layer"], e["mode"], e["dtype"]) for e in data["layers"]} == {
        ("disc.head", m, d) for m in ("fwd", "fwd+bwd") for d in ("tf32", "bf16")}
    for e in data["layers"]:
        assert all(isinstance(e["ms"][p], float) and e["ms"][p] > 0 for p in ("fused", "reference", "compiled")), e
    assert {(e["backend"], e["dtype"]) for e in data["train_step"]} >= {("torch", "tf32"), ("torch", "bf16")}
    assert all(e["ms"] and e["ms"] > 0 for e in data["train_step"])
    assert data["tests"]["returncode"] == 0 and data["env"]["TRITON_INTERPRET"] == "1"
    md = record.with_suffix(".md").read_text()
    assert "## Layers" in md and "## Op-GAN training step" in md
    assert (tmp_path / "out" / "triton-cache.tar.gz").is_file() and (tmp_path / "out" / "tests.log").is_file()
    # the device tool returns at most 8 files from $OUT
    assert len(list((tmp_path / "out").iterdir())) <= 8
    # the README tables render from such a record
    assert "disc.head" in tables.render(data, record.name)


def test_deadline_interrupts_and_nests():
    with pytest.raises(gpu_round.BudgetExceeded):
        with gpu_round.deadline(5):
            with gpu_round.deadline(0.05):  # the inner, earlier one fires
                time.sleep(2)
    t0 = time.monotonic()
    with gpu_round.deadline(0.5):
        time.sleep(0.05)  # finishes in time: no alarm afterwards
    time.sleep(0.6)
    assert time.monotonic() - t0 < 2
    wrapped = RuntimeError("InterpreterError(\"BudgetExceeded('time budget exhausted')\")")
    assert gpu_round._is_budget(wrapped) and not gpu_round._is_budget(RuntimeError("other"))


def test_a_slow_section_is_stopped_and_the_rest_still_written(tmp_path: Path, monkeypatch):
    """--budget-s too small for the layers section: it is stopped, later sections still run, JSON is valid."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    rc = gpu_round.main(["--smoke", "--out", str(tmp_path), "--sections", "layers,autotune", "--budget-s", "1.5"])
    assert rc == 0
    (record,) = tmp_path.glob("*.json")
    data = json.loads(record.read_text())
    assert data["sections"]["layers"]["status"] == "stopped"
    assert data["sections"]["autotune"]["status"] == "done"
    assert tables.schema_errors(data) == []
