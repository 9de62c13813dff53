"""bench/tables.py: README's speed tables from the newest results record, and its --check mode."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tables = _load("tables")


def _record(date: str, fused_ms: float) -> dict:
    def layer(name, dtype, fused, ref, compiled, shape):
        return {"layer": name, "mode": "fwd+bwd", "dtype": dtype, "shape": shape,
                "ms": {"fused": fused, "reference": ref, "compiled": compiled},
                "peak_mib": {"fused": 78.0, "reference": 310.0, "compiled": None}}

    return {
        "device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130", "triton": "3.6.0", "date": date,
        "command": "python bench/gpu_round.py",
        "config": {"layers": {"batch": 8, "length": 32000, "q": 3}, "train": {"filters": 16, "q": 3, "batch": 8}},
        "layers": [
            layer("gen.up2", "tf32", fused_ms, 1.17, 1.09, {"c_in": 256, "c_out": 64}),
            layer("disc.1", "tf32", 0.659, 0.424, None, {"c_in": 1, "c_out": 16}),
            layer("gen.up2", "bf16", 0.5, 0.8, 0.7, {"c_in": 256, "c_out": 64}),
            {**layer("gen.up2", "tf32", 9.0, 9.0, 9.0, {}), "mode": "fwd"},  # fwd rows stay out of README
        ],
        "train_step": [
            {"backend": "triton", "dtype": "tf32", "ms": 41.5, "peak_mib": 2048.0, "compile": False},
            {"backend": "torch", "dtype": "bf16", "ms": None, "peak_mib": None, "error": "skipped"},
            {"backend": "triton", "dtype": "tf32", "ms": 50.0, "peak_mib": 2100.0, "fold_upsample": False},
        ],
    }


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "results"
    results.mkdir()
    (results / "2026-01-02-h100.json").write_text(json.dumps(_record("2026-01-02T10:00:00+00:00", 2.37)))
    (results / "2026-01-01-h100.json").write_text(json.dumps(_record("2026-01-01T10:00:00+00:00", 99.0)))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{tables.BEGIN}\nold table\n{tables.END}\n\n## After\n")
    return results, readme


def test_renders_the_newest_record_between_the_markers(repo):
    results, readme = repo
    args = ["--results", str(results), "--readme", str(readme)]
    assert tables.main([*args, "--check"]) == 1  # stale
    assert tables.main(args) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nintro\n\n" + tables.BEGIN) and text.endswith(tables.END + "\n\n## After\n")
    block = text.split(tables.BEGIN)[1].split(tables.END)[0]
    assert "NVIDIA H100 80GB HBM3" in block and "2026-01-02" in block and "old table" not in block
    assert "| gen.up2 256→64 | 2.37 | 1.17 | 1.09 | 0.49× | 0.46× | 78 | 310 |" in block
    assert "| **all 2 layers** | 3.03 | 1.59 | – | 0.53× | – | | |" in block  # compiled incomplete: no total
    assert "99" not in block and "| 9 |" not in block  # the older record and fwd rows stay out
    assert "bf16 autocast" in block and "| gen.up2 256→64 | 0.5 | 0.8 | 0.7 | 1.60× | 1.40× |" in block
    assert "| triton | tf32 | no | folded | 41.5 | 2048 |" in block
    assert "| torch | bf16 | no | folded | – | – |" in block
    assert "| triton | tf32 | no | upsample + conv | 50 | 2100 |" in block
    assert tables.main([*args, "--check"]) == 0  # up to date now
    assert tables.main(args) == 0 and readme.read_text() == text  # idempotent


def test_refuses_bad_inputs_with_one_line(repo, tmp_path, capsys):
    results, readme = repo
    readme.write_text("no markers here\n")
    assert tables.main(["--results", str(results), "--readme", str(readme)]) == 2
    assert readme.read_text() == "no markers here\n"  # nothing the user had is touched
    assert tables.main(["--results", str(tmp_path / "none"), "--readme", str(readme)]) == 2
    (results / "2026-02-01-h100.json").write_text('{"device": "x", "layers": [{"mode": "both"}]}')
    assert tables.main(["--results", str(results), "--readme", str(readme), "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("tables: ") for line in err) and "missing 'torch'" in err[-1]


def test_schema_errors_name_what_is_wrong():
    good = _record("2026-01-02", 1.0)
    assert tables.schema_errors(good) == []
    bad = json.loads(json.dumps(good))
    bad["layers"][0]["ms"] = {"fused": 1.0}
    bad["layers"][1]["dtype"] = "fp16"
    bad["train_step"][0]["backend"] = "cuda"
    errs = tables.schema_errors(bad)
    assert any("layers[0].ms" in e for e in errs) and any("layers[1].dtype" in e for e in errs)
    assert any("train_step[0].backend" in e for e in errs)
