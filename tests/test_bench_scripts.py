"""The bench scripts and the GPU-machine tooling: tools/gpu/gpu_round.py's --smoke round runs end to end
on CPU and writes a record in the results schema, its deadlines cut a slow section short without losing
the others; bench/tables.py renders the speed tables from the newest record and --check says when the
file is stale."""
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


GPU_TOOLS = ROOT / "tools" / "gpu"


def _load(name: str, folder: Path = ROOT / "bench"):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", folder / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gpu_round = _load("gpu_round", GPU_TOOLS)
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
            {**layer("gen.up2", "tf32", fused_ms, 1.17, 1.09, {"c_in": 256, "c_out": 64}),
             "device_ms": {"fused": 0.6, "reference": 0.9, "compiled": None}},
            layer("disc.1", "tf32", 0.659, 0.424, None, {"c_in": 1, "c_out": 16}),
            layer("gen.up2", "bf16", 0.5, 0.8, 0.7, {"c_in": 256, "c_out": 64}),
            {**layer("gen.up2", "tf32", 9.0, 9.0, 9.0, {}), "mode": "fwd"},  # fwd rows stay out of README
        ],
        "train_step": [
            {"backend": "triton", "dtype": "tf32", "ms": 41.5, "peak_mib": 2048.0, "compile": False},
            {"backend": "torch", "dtype": "bf16", "ms": None, "peak_mib": None, "error": "skipped"},
            {"backend": "triton", "dtype": "tf32", "ms": 50.0, "peak_mib": 2100.0, "fold_upsample": False},
            {"backend": "triton", "dtype": "tf32", "ms": 30.5, "peak_mib": 1900.0, "graph": True},
            {"backend": "torch", "dtype": "tf32", "ms": 12.5, "peak_mib": 900.0, "compile": True,
             "compile_mode": "reduce-overhead"},
            # a newer record's rows: min / median / max over 20 steps, host time, the formulation's step
            {"backend": "torch", "dtype": "tf32", "ms": 83.0, "ms_min": 80.0, "ms_max": 91.0, "steps": 20,
             "host_ms": 12.0, "peak_mib": 4096.0},
            {"backend": "reference", "dtype": "tf32", "ms": 60.0, "ms_min": 58.0, "ms_max": 70.0, "steps": 20,
             "host_ms": 9.5, "peak_mib": 3000.0},
        ],
    }


SPEED = "<!-- table:speed -->\n{}<!-- /table:speed -->\n"
SUMMARY = "<!-- table:speed-summary -->\n{}<!-- /table:speed-summary -->\n"


def _block(text: str, name: str = "speed") -> str:
    return text.split(f"<!-- table:{name} -->\n")[1].split(f"<!-- /table:{name} -->")[0]


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "results"
    results.mkdir()
    newer = _record("2026-01-02T10:00:00+00:00", 2.37)
    newer["env"] = {"cudnn_benchmark": True, "compile": {"backend": "inductor", "dynamic": False}}
    (results / "2026-01-02-h100.json").write_text(json.dumps(newer))
    (results / "2026-01-01-h100.json").write_text(json.dumps(_record("2026-01-01T10:00:00+00:00", 99.0)))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{SPEED.format('old table')}\n## After\n")
    return results, readme


def test_renders_the_newest_record_between_the_markers(repo):
    results, readme = repo
    args = ["--results", str(results), "--file", str(readme)]
    assert tables.main([*args, "--check"]) == 1  # stale
    assert tables.main(args) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nintro\n\n<!-- table:speed -->\n")
    assert text.endswith("<!-- /table:speed -->\n\n## After\n")
    block = _block(text)
    assert "NVIDIA H100 80GB HBM3" in block and "2026-01-02" in block and "old table" not in block
    # the baselines as the record says they ran
    assert "cuDNN's algorithms timed per shape (`cudnn.benchmark`); `torch.compile(dynamic=False)`" in block
    # best baseline: the faster of the formulation and its compile, per layer and measure
    assert ("| gen.up2 256→64 | 2.37 | 1.17 | 1.09 | 1.09 compile | 0.46× | 0.6 | 0.9 | – | 0.9 ref | 1.50× "
            "| 78 | 310 |") in block
    # compiled incomplete: its total is missing, the best baseline's is not; no device time for disc.1: no totals
    assert "| **all 2 layers** | 3.03 | 1.59 | – | 1.51 | 0.50× | – | – | – | – | – | | |" in block
    assert "99" not in block and "| 9 |" not in block  # the older record and fwd rows stay out
    assert "bf16 autocast" in block and "| gen.up2 256→64 | 0.5 | 0.8 | 0.7 | 0.7 compile | 1.40× |" in block
    assert block.count("Measured on") == 1 and "2026-01-02-h100.json" in block
    assert "| fused | tf32 | eager | folded | 41.5 | – | – | – | 2048 | 2.00× |" in block  # torch 83 ms / 41.5
    assert "| torch exact | bf16 | eager | folded | – | – | – | – | – | – |" in block
    assert "| fused | tf32 | eager | upsample + conv | 50 | – | – | – | 2100 | – |" in block
    assert "| fused | tf32 | one CUDA graph | folded | 30.5 | – | – | – | 1900 | – |" in block
    assert "| torch exact | tf32 | torch.compile (reduce-overhead) | folded | 12.5 | – | – | – | 900 | – |" in block
    assert "| torch exact | tf32 | eager | folded | 83 | 80–91 | 20 | 12 | 4096 | – |" in block
    assert "| FastONN formulation | tf32 | eager | folded | 60 | 58–70 | 20 | 9.5 | 3000 | 1.38× |" in block
    assert tables.main([*args, "--check"]) == 0  # up to date now
    assert tables.main(args) == 0 and readme.read_text() == text  # idempotent


def test_the_summary_block_and_other_generators_blocks(repo, tmp_path):
    """speed-summary: the headline ratios; blocks of other kinds (opgan.tables') are left as they are,
    and opgan.tables leaves the speed blocks to this script: one splicer, two generators."""
    from opgan import tables as splicer

    results, readme = repo
    other = "<!-- table:gate -->\nkept\n<!-- /table:gate -->\n"
    readme.write_text(SUMMARY.format("old") + other + SPEED.format("old"))
    assert tables.main(["--results", str(results), "--file", str(readme)]) == 0
    text = readme.read_text()
    summary = _block(text, "speed-summary")
    assert "- **Training step** (G+D, tf32), fused against the torch backend: eager 2.00× at 0.50× the peak memory." \
        in summary and "2026-01-02-h100.json" in summary and "`torch.compile(dynamic=False)`" in summary
    assert "| fused |" not in summary and "| fused |" in _block(text)
    assert other in text
    speed_only = text.replace(other, "")
    assert splicer.replace_blocks(speed_only) == speed_only  # opgan.tables leaves both speed blocks alone
    old = _record("2026-01-01T10:00:00+00:00", 1.0)
    old["layers"][1]["device_ms"] = {"fused": 0.2, "reference": 0.5, "compiled": 0.25}
    line = tables.summary([(old, "r.json")]).splitlines()[0]
    assert line == ("- **Per layer** (fwd+bwd, tf32, the kernels' own time): all 2 Op-GAN layers 1.44× faster than "
                    "the best baseline together (0.8 ms against 1.15); the slowest gain 1.25× (disc.1).")
    assert "cudnn.benchmark` off); `torch.compile(dynamic=True)`" in tables.summary([(old, "r.json")])


def _stats_record(date: str) -> dict:
    """A bench/kernel_stats.py record: a GEMM forward (two candidates, the second the GPU's pick) and a
    thin forward, gen.out_T's roofline."""
    def row(layer, role, kernel, tile, mma, us, pick, **kw):
        return {"layer": layer, "role": role, "kernel": kernel, "tile": tile, "num_warps": 8, "num_stages": 3,
                "programs": 250, "waves": 0.95, "regs": 176, "spill_store_bytes": 0, "spill_load_bytes": 0,
                "smem": 139264, "warps_per_sm": 8, "limit": "regs", "mma": mma, "mma_count": 24 if mma != "none" else 0,
                "loop": {"instructions": 514}, "sass_instructions": 1782, "h200_us": us, "h200_pick": pick, **kw}

    return {"kind": "sm90-stats", "date": date, "command": "python bench/kernel_stats.py --triton 3.6.0",
            "triton": "3.6.0", "torch": "2.13.0", "target": "sm_90", "sms": 132,
            "config": {"batch": 8, "length": 32000, "q": 3, "dtype": "tf32"},
            "gpu_record": "bench/results/2026-01-02-h100.json", "gpu_device": "NVIDIA H200",
            "layers": {"gen.down4": {"profile": {"fused": [{"kernel": "_mm_kernel", "us": 81.3, "calls": 2.0, "role": None}],
                                                 "reference": [{"kernel": "sm80_xmma_fprop_implicit_gemm", "us": 26.7,
                                                                "calls": 1.0, "role": "fwd"},
                                                               {"kernel": "nchwToNhwcKernel", "us": 29.0, "calls": 4.0,
                                                                "role": None}]}},
                       "gen.out_T": {"profile": {}}, "disc.1": {"profile": {}}},
            "alternative": {"set": "fwd_transposed=True",
                            "rows": [row("gen.down4", "fwd", "gather", "T256 N64 R32", "wgmma", None, False, regs=200,
                                         loop={"instructions": 600, "wgmma_waits": 3})]},
            "rows": [row("gen.down4", "fwd", "gather", "T128 N64 R32", "wgmma", 70.0, False),
                     row("gen.down4", "fwd", "gather", "T256 N64 R32", "wgmma", 50.3, True,
                         wgmma_serialized="non wgmma instructions defining accumulator registers",
                         loop={"instructions": 514, "wgmma_waits": 24}, blocks_per_sm=1,
                         main_loop={"iterations": 10, "mma_flops": 2 * 256 * 64 * 32 * 3}),
                     row("gen.out_T", "fwd", "thin_fwd", "C16 T64", "none", 109.6, True),
                     row("disc.1", "fwd", "thin_fwd", "C16 T64", "none", None, False)],
            "roofline": {"gen.out_T": {"bytes": 17_400_000, "flops": 156_000_000, "measured_us": 105.7,
                                       "devices": {"H200": {"hbm_tb_s": 4.8, "fp32_tflop_s": 67.0, "memory_us": 3.63,
                                                            "fp32_us": 2.33, "roofline_us": 3.63}}}}}


def test_the_compile_stats_block_renders_the_newest_kernel_stats_record(repo):
    """sm90-stats: bench/kernel_stats.py's record (kind sm90-stats, beside the gpu_round records, which
    it does not disturb): the picked candidate per launch of the issue's layers, the GPU profile's
    fused and cuDNN kernels, gen.out_T's roofline; --check says when it is stale."""
    results, readme = repo
    (results / "2026-01-05-sm90-stats.json").write_text(json.dumps(_stats_record("2026-01-05T10:00:00+00:00")))
    readme.write_text("<!-- table:sm90-stats -->\nold\n<!-- /table:sm90-stats -->\n" + SPEED.format("old"))
    args = ["--results", str(results), "--file", str(readme)]
    assert tables.main([*args, "--check"]) == 1
    assert tables.main(args) == 0 and tables.main([*args, "--check"]) == 0
    text = readme.read_text()
    block = _block(text, "sm90-stats")
    assert "Triton 3.6.0" in block and "`python bench/kernel_stats.py --triton 3.6.0`" in block
    assert "2026-01-05-sm90-stats.json" in block and "NVIDIA H200" in block
    assert ("| gen.down4 | fwd | gather | T256 N64 R32 | 8/3 | 250 (0.95) | 176 | 0/0 | 136 | 8 (regs) "
            "| wgmma ×24 serial | 514 / 1782 | 50.3 ★ |") in block
    # the alternative compile of the same forward tile, against the pick
    assert ("- gen.down4 fwd (T256 N64 R32, 8 warps) with `fwd_transposed=True`: wgmma serialised → wgmma, "
            "wgmma waits a loop 24 → 3, registers 176 → 200, spill stores 0 → 0 B, loop instructions 514 → 600.") \
        in block
    assert "T128 N64 R32" not in block and "disc.1" not in block  # the pick only; the layers only
    # its main loop: 250 programs at one CTA an SM are 2 rounds of 10 trips; 50.3 µs over 20 trips against
    # 3.1 MFLOP / 2048 FLOP a clock at 1.83 GHz (MMA) and 514 instructions x 8 warps / 4 a clock (issue)
    assert "| gen.down4 | fwd | T256 N64 R32 / 8 | 250 (1) | 2 × 10 | 2.51 | 0.84 | 0.56 | 3.0× |" in block
    assert "| gen.out_T | fwd | thin_fwd | C16 T64 |" in block and "| none |" in block
    assert "- gen.down4, the GPU round's profile (µs, fwd+bwd): fused _mm_kernel 81.3 (2 calls); cuDNN " \
           "fwd 26.7 (sm80_xmma_fprop)." in block
    assert "17.4 MB moved" in block and "H200 3.63 µs" in block and "measured 105.7 µs" in block and "(29×" in block
    assert "NVIDIA H100 80GB HBM3" in _block(text)  # the speed block still renders from the gpu_round record


def test_each_table_comes_from_the_newest_record_that_has_it(repo):
    """A later round of the tf32 layers alone replaces that table only, and both records are named."""
    results, readme = repo
    later = _record("2026-01-03T10:00:00+00:00", 1.5)
    later["layers"] = [e for e in later["layers"] if e["dtype"] == "tf32"]
    later["train_step"], later["command"] = [], "python bench/gpu_round.py --sections layers --dtypes tf32"
    later["corrections"] = ["one"]
    (results / "2026-01-03-h100-tf32.json").write_text(json.dumps(later))
    assert tables.main(["--results", str(results), "--readme", str(readme)]) == 0
    block = _block(readme.read_text())
    _, tf32, rest = block.split("Measured on")  # each record named once, before its first table
    assert "2026-01-03-h100-tf32.json" in tf32 and "--dtypes tf32" in tf32 and "| gen.up2 256→64 | 1.5 |" in tf32
    assert "Corrections made after the run" in tf32 and "bf16" not in tf32
    assert "2026-01-02-h100.json" in rest and "Corrections" not in rest
    assert "| gen.up2 256→64 | 0.5 | 0.8 |" in rest and "| fused | tf32 | eager | folded | 41.5 |" in rest


def test_targets_check_reads_the_records(repo):
    """The targets table: each per-layer target against the best baseline in device and wall time
    (lowest ratio named), all layers together, the saved activations with the weight taken out, the
    training step each way it runs (speed and peak), the roofline; missing values leave their row
    out, a failed step is listed under its table."""
    results, readme = repo
    rec = _record("2026-01-04T10:00:00+00:00", 0.5)
    rec["layers"] = [
        {"layer": "a", "mode": "fwd+bwd", "dtype": "tf32", "shape": {"c_in": 1, "c_out": 16, "k": 4, "q": 3},
         "ms": {"fused": 1.0, "reference": 2.0, "compiled": 1.0}, "peak_mib": {},
         "device_ms": {"fused": 0.05, "reference": 0.2, "compiled": 0.13},
         "saved_mib": {"fused": 1.0 + 768 / 2**20, "reference": 4.0 + 768 / 2**20}},
        {"layer": "b", "mode": "fwd+bwd", "dtype": "tf32", "shape": {},
         "ms": {"fused": 1.0, "reference": 1.4, "compiled": 1.3}, "peak_mib": {},
         "device_ms": {"fused": 0.1, "reference": 0.16, "compiled": 0.125}},
    ]
    rec["train_step"] = [
        {"backend": "triton", "dtype": "tf32", "ms": 10.0, "peak_mib": 60.0},
        {"backend": "torch", "dtype": "tf32", "ms": 14.0, "peak_mib": 100.0},
        {"backend": "triton", "dtype": "tf32", "ms": 2.0, "peak_mib": 60.0, "graph": True},
        {"backend": "torch", "dtype": "tf32", "ms": 5.0, "peak_mib": 100.0, "graph": True},
        {"backend": "triton", "dtype": "tf32", "ms": 5.0, "peak_mib": 40.0, "compile": True},
        {"backend": "torch", "dtype": "tf32", "ms": 8.0, "peak_mib": 100.0, "compile": True},
        {"backend": "torch", "dtype": "tf32", "ms": None, "peak_mib": None, "compile": True,
         "compile_mode": "reduce-overhead", "error": "AssertionError: boom\n  File x"},
    ]
    rec["profile"] = [{"layer": "gen.up2", "provider": "fused", "dtype": "tf32", "us": 264.0, "roofline_us": 57.0,
                       "pct_roofline": 21.6}]
    (results / "2026-01-04-h100.json").write_text(json.dumps(rec))
    block = tables.render([(rec, "r.json")])
    assert "| fused fwd+bwd ≥ 1.5× the best baseline on every layer (tf32; kernels' own time) " \
           "| 1 of 2 layers (lowest 1.25×, b) | **no** |" in block
    assert "(tf32; wall time, host launch cost included) | 0 of 2 layers (lowest 1.00×, a) | **no** |" in block
    assert "| all 2 layers together ≥ 3× the best baseline (tf32; kernels' own time) " \
           "| 1.70× (0.15 ms against 0.255) | **no** |" in block
    assert "| largest fused/reference 0.25 (a; 1/q = 0.33) | yes |" in block
    assert "(tf32, eager) | 1.40× at 0.60× the peak | **no** |" in block
    assert "(tf32, one CUDA graph) | 2.50× at 0.60× the peak | **no** |" in block
    assert "| training step ≥ 1.5× the torch backend at ≤ 0.5× its peak memory (tf32, torch.compile) " \
           "| 1.60× at 0.40× the peak | yes |" in block
    assert "bf16" not in block.split("The speed targets")[1]  # the step targets are tf32's
    assert "| gen.up2 fwd+bwd ≥ 25 % of the TF32 roofline | 21.6 % (264 µs against 57) | **no** |" in block
    assert "BF16 roofline" not in block
    assert "- torch exact tf32 torch.compile (reduce-overhead): AssertionError: boom" in block and "File x" not in block
    rec["train_step"] = [{"backend": "triton", "dtype": "bf16", "ms": 10.0, "peak_mib": 40.0},
                         {"backend": "torch", "dtype": "bf16", "ms": 13.0, "peak_mib": 100.0}]
    assert "| fused | bf16 | eager | folded | 10 | – | – | – | 40 | 1.30× |" in tables.render([(rec, "r.json")])
    assert tables.main(["--results", str(results), "--readme", str(readme)]) == 0
    assert "The speed targets" in readme.read_text()


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



def test_smoke_round_writes_a_valid_record(tmp_path: Path):
    env = {**os.environ, "TRITON_INTERPRET": "1", "OUT": str(tmp_path / "out")}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "tools/gpu/gpu_round.py", "--smoke"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.monotonic() - t0 < 240
    (record,) = (tmp_path / "out").glob("*-cpu.json")  # $OUT is honoured
    data = json.loads(record.read_text())
    assert tables.schema_errors(data) == []
    assert [s["status"] for s in data["sections"].values()] == ["done"] * len(gpu_round.SECTIONS), data["sections"]
    assert list(data["sections"]) == list(gpu_round.SECTIONS)
    assert "no GPU" in data["compile"]["note"]
    assert {(e["layer"], e["mode"], e["dtype"]) for e in data["layers"]} == {
        (la, m, d) for la in ("disc.head", "gen.ctx.d8") for m in ("fwd", "fwd+bwd") for d in ("tf32", "bf16")}
    assert {e["layer"]: e["shape"].get("dilation") for e in data["layers"]} == {"disc.head": None, "gen.ctx.d8": 8}
    for e in data["layers"]:
        assert all(isinstance(e["ms"][p], float) and e["ms"][p] > 0 for p in ("fused", "reference", "compiled")), e
    assert {(e["backend"], e["dtype"]) for e in data["train_step"]} >= {
        (b, d) for b in ("torch", "reference") for d in ("tf32", "bf16")}
    assert all(e["ms"] and e["ms_min"] <= e["ms"] <= e["ms_max"] and e["steps"] == 2 for e in data["train_step"])
    # the baselines as a user runs them at their best, and the record says so
    env = data["env"]
    assert env["cudnn_benchmark"] is True and env["compile"]["dynamic"] is False, env
    # --host-calls calls for the headline cells (smoke: 2), a quarter (at least --repeats) for the others
    assert all(e["calls"]["fused"] == (2 if (e["mode"], e["dtype"]) == ("fwd+bwd", "tf32") else 1)
               for e in data["layers"])
    assert all(e["best_baseline"]["ms"]["provider"] in ("reference", "compiled") for e in data["layers"])
    assert data["tests"]["returncode"] == 0 and data["env"]["TRITON_INTERPRET"] == "1"
    assert {(r["layer"], r["variant"]) for r in data["knobs"]} == {  # smoke: the one layer it has
        ("disc.head", v) for v in ("default", "dw_concat_tiles", "dw_split_fixed", "dw_min_steps_16", "dw_min_steps_1",
                                   "tail_serial", "thin_split_bwd", "thin_one_launch", "thin_bwd_unrolled",
                                   "thin_off")}
    assert all(r["ms"] and r["ms"] > 0 for r in data["knobs"]), data["knobs"]
    md = record.with_suffix(".md").read_text()
    assert "## Layers" in md and "## Op-GAN training step" in md and "## Launcher constants" in md and "## Host path" in md
    host = data["host"]  # the probes a CPU has, and the smoke layer's CPU-side profile per provider
    assert {"python_call", "torch_launch", "autograd_noop_fwd_bwd"} <= set(host["probes_us"]), host
    assert all(v is not None and v > 0 for v in host["probes_us"].values()), host
    assert host["layer"] == "disc.head" and set(host["cpu_profile"]) == {"fused", "reference"}, host
    assert all(rows and rows[0]["self_us"] > 0 for rows in host["cpu_profile"].values()), host
    assert (tmp_path / "out" / "triton-cache.tar.gz").is_file() and (tmp_path / "out" / "tests.log").is_file()
    # the device tool returns at most 8 files from $OUT
    assert len(list((tmp_path / "out").iterdir())) <= 8
    # the README tables render from such a record
    rendered = tables.render(data, record.name)
    assert "disc.head" in rendered and "| gen.ctx.d8 16→16 |" in rendered


def test_tests_section_runs_pytest_on_workers(tmp_path: Path):
    """The CUDA tests compile ~400 kernel variants: the section spreads them over pytest-xdist workers."""
    pytest.importorskip("xdist", reason="pytest-xdist (a dev extra) is not installed")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OUT": str(tmp_path / "out")}
    r = subprocess.run([sys.executable, "tools/gpu/gpu_round.py", "--sections", "env,tests", "--tests",
                        "tests/test_public_api.py", "--test-workers", "2"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    (record,) = (tmp_path / "out").glob("*-cpu.json")
    tests = json.loads(record.read_text())["tests"]
    assert tests["workers"] == 2 and " -n 2 " in tests["command"], tests
    assert tests["returncode"] == 0 and tests["counts"]["passed"] == tests["counts"]["collected"] > 0, tests
    assert gpu_round._test_workers(0) == 0 and gpu_round._test_workers(3) == 3


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
    # the round's clock starts in main(): torch's import (~1 s on a busy machine) must not use up the 1.5 s,
    # and autotune gets a share its few ms fit in however loaded the CPUs are (0.03 x 1.5 s is 45 ms)
    import torch  # noqa: F401

    monkeypatch.setitem(gpu_round.SHARES, "autotune", 0.5)
    rc = gpu_round.main(["--smoke", "--out", str(tmp_path), "--sections", "layers,autotune", "--budget-s", "1.5"])
    assert rc == 0
    (record,) = tmp_path.glob("*.json")
    data = json.loads(record.read_text())
    assert data["sections"]["layers"]["status"] == "stopped"
    assert data["sections"]["autotune"]["status"] == "done"
    assert tables.schema_errors(data) == []


@pytest.mark.parametrize("suffix", ["xz", "gz"])
def test_a_packed_triton_cache_is_unpacked_once_and_used(suffix, tmp_path: Path, monkeypatch):
    """--triton-cache takes what tools/gpu/prewarm_cache.py --pack writes: one folder in a .tar.xz (or .tar.gz)."""
    import tarfile

    src = tmp_path / "src" / ".triton-cache"
    (src / "ABC").mkdir(parents=True)
    (src / "ABC" / "k.cubin").write_bytes(b"\0")
    # Triton's group file names its entry's files by absolute path: the build folder's
    (src / "ABC" / "__grp__k.json").write_text(json.dumps({"child_paths": {"k.cubin": str(src / "ABC" / "k.cubin")}}))
    tgz = tmp_path / f".triton-cache.tar.{suffix}"
    with tarfile.open(tgz, f"w:{suffix}") as tar:
        tar.add(src, arcname=src.name)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    gpu_round._use_triton_cache(tgz)
    assert os.environ["TRITON_CACHE_DIR"] == str((tmp_path / ".triton-cache").resolve())
    assert (tmp_path / ".triton-cache" / "ABC" / "k.cubin").is_file()
    grp = json.loads((tmp_path / ".triton-cache" / "ABC" / "__grp__k.json").read_text())
    assert grp["child_paths"] == {"k.cubin": str((tmp_path / ".triton-cache" / "ABC" / "k.cubin").resolve())}
    gpu_round._use_triton_cache(tgz)  # already there: kept as it is
    with pytest.raises(SystemExit, match="no such folder"):
        gpu_round._use_triton_cache(tmp_path / "missing")


def test_autotune_section_reports_the_lean_launchers_picks(monkeypatch):
    """The tuned configs of selfonn.kernels' Kernel objects are in the record (they are not triton.autotune)."""
    from selfonn.kernels import _launch
    from selfonn.kernels import selfonn_conv as sc

    k = sc._kernel("gather")
    monkeypatch.setitem(k.tuned, ("bf16", "key"), _launch.Cfg.of(BLOCK_T=64))
    monkeypatch.setitem(k.timings, ("bf16", "key"), [(_launch.Cfg.of(BLOCK_T=64), 0.25),
                                                     (_launch.Cfg.of(BLOCK_T=128), float("inf"))])
    rec = gpu_round.Record.__new__(gpu_round.Record)
    rec.data, rec.md = {}, {}
    gpu_round.section_autotune(rec, None, {})
    picks = {p["kernel"]: p for p in rec.data["autotune"]["picks"]}
    (mine,) = [p for name, p in picks.items() if name.endswith(f"[{k.name}]")]
    assert "('bf16', 'key')" in mine["picks"] and "BLOCK_T" in mine["picks"]["('bf16', 'key')"]
    (fast, failed) = mine["timings"]["('bf16', 'key')"]  # each candidate's ms; one that failed: None
    assert "BLOCK_T" in fast[0] and fast[1] == 0.25 and failed[1] is None
    json.dumps(rec.data)  # the record stays JSON


def test_autotune_section_compares_the_grad_w_tile_kinds(monkeypatch):
    """For grad_W the record names the fastest power-tile and concat-tile candidate of each key, and
    the fastest per split floor where finer splits were timed."""
    from selfonn.kernels import selfonn_conv as sc

    k = sc._kernel("dw")
    pow_cfg, concat_cfg, concat_slow = sc._dw_configs(True)[0], sc._dw_configs(False)[0], sc._dw_configs(False)[1]
    monkeypatch.setitem(k.tuned, ("fp32", "key"), concat_cfg)
    monkeypatch.setitem(k.timings, ("fp32", "key"), [(pow_cfg, 0.3), (concat_cfg, 0.2), (concat_slow, float("inf"))])
    finer = [(pow_cfg.with_host(DW_MIN_STEPS=2), 0.25), (concat_cfg.with_host(DW_MIN_STEPS=1), 0.1)]
    monkeypatch.setitem(k.timings, ("fp32", "split"), [(pow_cfg, 0.3), (concat_cfg, 0.2), *finer])
    monkeypatch.setattr(sc, "_thin_split_timings", {("thin", "key"): (0.2, 0.15)})
    monkeypatch.setattr(sc, "_thin_split_picks", {("thin", "key"): True})
    rec = gpu_round.Record.__new__(gpu_round.Record)
    rec.data, rec.md = {}, {}
    gpu_round.section_autotune(rec, None, {})
    (mine,) = [p for p in rec.data["autotune"]["picks"] if p["kernel"].endswith(f"[{k.name}]")]
    assert mine["by_tile_kind"]["('fp32', 'key')"] == {"pow": 0.3, "concat": 0.2}
    assert "0.3 / 0.2" in rec.md["autotune"]
    # where finer grad_W splits were timed: the fastest per split floor
    assert "('fp32', 'key')" not in mine["by_split"]
    assert mine["by_split"]["('fp32', 'split')"] == {"default": 0.2, "floor 2": 0.25, "floor 1": 0.1}
    assert rec.data["autotune"]["thin_split_bwd"] == [
        {"key": "('thin', 'key')", "one_launch_ms": 0.2, "two_launches_ms": 0.15, "pick": "two launches"}]
    assert "one launch against two" in rec.md["autotune"]
    coarse = [(pow_cfg, 0.3), (pow_cfg.with_host(DW_SPLIT_DIV=4), 0.15)]
    assert gpu_round._by_split(coarse) == {"default": 0.3, "1/4": 0.15}


def test_prewarm_pack_refuses_a_folder_it_did_not_write(tmp_path: Path, capsys, monkeypatch):
    """--pack starts its folder afresh, so it only clears a previous prewarm's (PREWARM.json there)."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    mine = tmp_path / "cache"
    mine.mkdir()
    (mine / "precious.txt").write_text("a user's file")
    assert _load("prewarm_cache", GPU_TOOLS).main(["--pack", "--out", str(mine)]) == 2
    assert (mine / "precious.txt").is_file() and "did not write" in capsys.readouterr().err


def test_prewarm_unpacks_wheels_keeping_executables(tmp_path: Path):
    """The Triton wheel prewarm_cache.py fetches is unpacked with its permissions (ptxas must run)."""
    import stat
    import zipfile

    prewarm = _load("prewarm_cache", GPU_TOOLS)
    whl = tmp_path / "triton-0-cp311-cp311-x.whl"
    with zipfile.ZipFile(whl, "w") as z:
        info = zipfile.ZipInfo("triton/backends/nvidia/bin/ptxas")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        z.writestr(info, "#!/bin/sh\n")
        z.writestr("triton/__init__.py", "")
    site = prewarm._extracted(whl)
    assert os.access(site / "triton" / "backends" / "nvidia" / "bin" / "ptxas", os.X_OK)
    assert prewarm._extracted(whl) == site  # already there: reused


def test_layers_section_measures_every_layers_ratio_before_compiling(monkeypatch, tmp_path: Path):
    """Fused and reference cells of all layers come before any torch.compile cell (a compile each):
    a deadline during the compiled wave leaves every layer's fused/reference ratio in the record."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    args = gpu_round._parse(["--smoke", "--layers", "disc.head,disc.3", "--dtypes", "tf32"])
    calls = []

    def fake_cell(layer, provider, mode, dtype, inputs, args, ctx):
        calls.append((mode, layer.name, provider))
        if [c[2] for c in calls].count("compiled") == 2:  # the deadline hits the second compile
            raise gpu_round.BudgetExceeded("section budget")
        return {"ms": 1.0, "peak_mib": 1.0}

    import _common

    monkeypatch.setattr(gpu_round, "measure_cell", fake_cell)
    monkeypatch.setattr(_common, "provider_available", lambda provider, device: None)
    rec = gpu_round.Record(tmp_path, "x", {"device": "cpu", "date": "d", "command": "c", "torch": "t",
                                           "triton": "tr"})
    with pytest.raises(gpu_round.BudgetExceeded):
        with gpu_round.deadline(60):
            gpu_round.section_layers(rec, args, {"device": "cpu"})
    order = [c for c in calls if c[0] == "fwd+bwd"]
    assert [c[2] for c in order] == ["fused", "reference"] * 2 + ["compiled"] * 2
    first, second = order[4][1], order[5][1]
    rows = {e["layer"]: e for e in rec.data["layers"]}
    assert set(rows) == {"disc.head", "disc.3"}
    assert all(r["ms"]["fused"] == 1.0 and r["ms"]["reference"] == 1.0 for r in rows.values())
    assert rows[first]["ms"]["compiled"] == 1.0 and "errors" not in rows[first]
    assert rows[second]["ms"]["compiled"] is None and "not reached" in rows[second]["errors"]["compiled"]


def test_the_round_lists_the_context_layers_after_the_16(monkeypatch, tmp_path: Path):
    """The round measures the dilated context candidate's layers after every cell of the 16 (a deadline
    cuts them first), their rows carry the dilation, the 16's rows stay as older records hold them,
    and the tables keep them out of the 16-layer totals."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    names = [la.name for la in gpu_round._layer_shapes(gpu_round._parse([]))]
    ctx = ["gen.ctx.d1", "gen.ctx.proj"] + [f"gen.ctx.d{2**i}" for i in range(1, 7)]
    assert len(names) == 24 and names[16:] == ctx
    assert len(gpu_round._layer_shapes(gpu_round._parse(["--no-context-layers"]))) == 16
    assert [la.name for la in gpu_round._layer_shapes(gpu_round._parse(["--layers", "context"]))] == ctx
    args = gpu_round._parse(["--smoke", "--layers", "gen.ctx.d8,disc.head", "--dtypes", "tf32"])
    calls = []

    def fake_cell(layer, provider, mode, dtype, inputs, args, ctx):
        calls.append(layer.name)
        return {"ms": 1.0 if layer.name == "disc.head" else 2.0, "peak_mib": 1.0, "device_ms": 1.0}

    import _common

    monkeypatch.setattr(gpu_round, "measure_cell", fake_cell)
    monkeypatch.setattr(_common, "provider_available", lambda provider, device: None)
    rec = gpu_round.Record(tmp_path, "x", {"device": "cpu", "date": "d", "command": "c", "torch": "t",
                                           "triton": "tr"})
    gpu_round.section_layers(rec, args, {"device": "cpu"})
    assert calls == ["disc.head"] * 6 + ["gen.ctx.d8"] * 6  # 2 modes x 3 providers each
    rows = {(e["layer"], e["mode"]): e for e in rec.data["layers"]}
    shape = rows["gen.ctx.d8", "fwd+bwd"]["shape"]
    assert shape["dilation"] == 8 and shape["padding"] == 8
    assert "dilation" not in rows["disc.head", "fwd+bwd"]["shape"]
    data = {**rec.data, "train_step": []}
    assert tables.schema_errors(data) == []
    block = tables.render(data, "r.json")
    paper, ctx_table = block.split("The dilated context candidate's")
    assert "| **all 1 layers** | 1 | 1 | 1 | 1 |" in paper and "gen.ctx" not in paper
    ctx_table, targets = ctx_table.split("The speed targets")
    assert "| gen.ctx.d8 16→16 | 2 |" in ctx_table and "| **all 1 context layers** | 2 | 2 | 2 | 2 |" in ctx_table
    assert "0 of 1 layers (lowest 1.00×, disc.head)" in targets and "gen.ctx" not in targets  # the 16 only
    # the compile section submits the context layers' variants last too (after the train step's and the knobs')
    launched = []
    monkeypatch.setitem(_common.PROVIDERS, "fused", lambda layer: lambda x, w, b: launched.append(layer.name) or
                        x.sum() + w.sum() + b.sum())
    gpu_round.compile_work(gpu_round._parse(["--smoke", "--layers", "gen.ctx.d8,disc.head"]), {"device": "cpu"})()
    assert launched[-2:] == ["gen.ctx.d8"] * 2 and len(launched) > 4 and "gen.ctx.d8" not in launched[:-2]


@pytest.mark.timeout(300)
def test_host_overhead_script_prints_its_table(capsys):
    """bench/host_overhead.py times the fused host path on CPU (launches left out), plans on and off."""
    from selfonn import kernels
    from selfonn.kernels import selfonn_conv as sc

    layers = "disc.head,gen.up2,gen.ctx.d8"
    assert _load("host_overhead").main(["--layers", layers, "--calls", "3", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "| disc.head |" in out and "| gen.up2 |" in out and "| gen.ctx.d8 |" in out and "(floor)" in out
    assert kernels.get_options().plans and sc.plans() == {}  # module state restored


def test_compile_speed_script_prints_its_table(capsys):
    """bench/compile_speed.py compiles a layer's variants offline (fresh cache) and tabulates the time."""
    import triton

    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("this Triton has no bundled NVIDIA ptxas")
    assert _load("compile_speed").main(["--layers", "disc.head", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "| 1 |" in out and "1.00x" in out


def test_tests_section_leaves_out_files_whose_imports_are_missing(monkeypatch):
    """A test file needing a module the GPU machine lacks is left out with the reason (its collection
    error would stop the whole pytest run); the default list holds the trainer's --cuda-graph test."""
    assert "tests/test_trainer.py" in gpu_round._parse([]).tests
    monkeypatch.setitem(gpu_round._TEST_NEEDS, "tests/test_trainer.py", "no_such_module_here")
    keep, left_out = gpu_round._runnable_tests(["tests/test_models.py", "tests/test_trainer.py", "-k", "cuda"])
    assert keep == ["tests/test_models.py", "-k", "cuda"]
    assert left_out == ["tests/test_trainer.py (no_such_module_here is not importable: carry .whl and pass --wheels)"]
    monkeypatch.setitem(gpu_round._TEST_NEEDS, "tests/test_trainer.py", "json")
    assert gpu_round._runnable_tests(["tests/test_trainer.py"]) == (["tests/test_trainer.py"], [])


def test_slow_tests_start_first_one_per_worker():
    """The tests section's slow tests (gpu_round.SLOW_TESTS) go first, each at the head of the share
    pytest-xdist's worksteal scheduler first sends a worker; the order is the same on every worker."""
    slow_first = _load("_pytest_slow_first", GPU_TOOLS)
    ids = [f"tests/test_kernels_ops.py::k{i}" for i in range(60)] + [
        "tests/test_models.py::test_bf16_autocast_tracks_float32[triton-cuda]",
        *(f"tests/test_trainer.py::test_cuda_graph_on_the_gpu_matches_eager[{p}]" for p in ("a", "b", "c")),
        "tests/test_kernels_selfonn_conv.py::test_each_thin_config[cuda-(64, 16, 4)]"]
    order = slow_first.slow_first(ids, ids, gpu_round.SLOW_TESTS, workers=4)
    assert sorted(order) == sorted(ids)
    sizes = slow_first.shares(len(ids), 4)
    assert sizes == [16, 16, 16, 17] and sum(sizes) == len(ids)
    starts = [sum(sizes[:w]) for w in range(4)]
    heads = [order[s] for s in starts]
    assert [h.split("[")[-1] for h in heads[:3]] == ["a]", "b]", "c]"] and heads[3].startswith("tests/test_models.py")
    assert order[starts[0] + 1] == ids[-1]  # the fifth slow test: second in the first share
    assert slow_first.slow_first(ids, ids, gpu_round.SLOW_TESTS)[:5] == [*ids[61:64], ids[60], ids[-1]]  # one process
    # as the round loads it: -p _pytest_slow_first, the patterns in $GPU_ROUND_SLOW_FIRST
    env = {**os.environ, "GPU_ROUND_SLOW_FIRST": json.dumps(["::test_import_does_not"]),
           "PYTHONPATH": str(GPU_TOOLS)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                        "-p", "_pytest_slow_first", "tests/test_public_api.py"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[0].endswith("::test_import_does_not_pull_in_triton_or_kernels"), r.stdout


def test_tests_section_names_what_its_deadline_cut():
    """A killed pytest -v run: the tests it had begun and not finished (pytest-xdist prints a node id
    alone when the test starts), node ids with spaces included; the whole process group is killed."""
    log = "\n".join([
        "tests/test_trainer.py::test_cuda_graph_on_the_gpu_matches_eager[triton-fp32] ",
        "tests/test_kernels_selfonn_conv.py::test_each_thin_config[cuda-(64, 16, 4)] ",
        "tests/test_kernels_ops.py::test_opcheck[cuda-conv_s2] ",
        "[gw5] [ 93%] PASSED tests/test_kernels_selfonn_conv.py::test_each_thin_config[cuda-(64, 16, 4)] ",
        "[gw4] [ 94%] FAILED tests/test_kernels_ops.py::test_opcheck[cuda-conv_s2] ",
        "tests/test_models.py::test_x PASSED                [ 95%]",
        "tests/test_models.py::test_bf16_autocast_tracks_float32[triton-cuda] ",
        "[killed after 92 s: the section's deadline]"])
    assert gpu_round._unfinished_tests(log) == [
        "tests/test_trainer.py::test_cuda_graph_on_the_gpu_matches_eager[triton-fp32]",
        "tests/test_models.py::test_bf16_autocast_tracks_float32[triton-cuda]"]
    t0 = time.monotonic()
    out, rc = gpu_round._run_group(["sh", "-c", "echo begun; sleep 30 & sleep 30"], dict(os.environ), timeout=1)
    assert rc is None and "begun" in out and time.monotonic() - t0 < 15  # the background sleep held the pipe too
    assert gpu_round._run_group([sys.executable, "-c", "print('ok')"], dict(os.environ), timeout=30) == ("ok\n", 0)


def test_compiled_train_step_marks_each_cudagraph_step(monkeypatch):
    """Under torch.compile's CUDA-graph modes each train step begins a cudagraph-trees step, so D's
    update (a backward between G's forward and G's backward) cannot start a generation that overwrites
    G's output before g_loss reads it (round 2: both reduce-overhead variants failed)."""
    import torch

    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # as when the round runs it
    marks, compiles = [], []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiles.append(kw) or module)  # the wiring, not inductor
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    args = gpu_round._parse(["--smoke"])
    for mode, compile_, expected in (("reduce-overhead", True, 2), (None, True, 0), ("reduce-overhead", False, 0)):
        marks.clear()
        step = gpu_round.train_step_fn("torch", "tf32", compile_, True, args, {"device": "cpu"}, compile_mode=mode)
        step()
        step()
        assert len(marks) == expected, (mode, compile_)
    # specialised graphs, as every compiled baseline: D's two batch sizes must not turn its batch symbolic
    assert compiles and all(kw["dynamic"] is False for kw in compiles), compiles


def test_train_section_records_where_a_variant_failed(tmp_path: Path, monkeypatch):
    """A failed train variant keeps the last frames of its traceback; an empty message says where it was
    raised (round 2's reduce-overhead row on the torch backend read only "AssertionError: "). Each
    compiled variant starts from a reset dynamo (no cache entries, no cudagraph trees of the one before)."""
    import torch

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))

    def broken(*a, **kw):
        def step():
            if kw.get("compile_mode") == "reduce-overhead":
                raise AssertionError  # a bare assert's (pytest rewrites the asserts of this file)

        return step

    monkeypatch.setattr(gpu_round, "train_step_fn", broken)
    args = gpu_round._parse(["--smoke", "--out", str(tmp_path)])
    args.no_compile, args.compile_backend, args.train_warmup = False, "inductor", 1
    rec = gpu_round.Record(tmp_path, "t", {"device": "cpu", "date": "d", "command": "c", "torch": "t", "triton": "t"})
    with gpu_round.deadline(60):
        gpu_round.section_train(rec, args, {"device": "cpu"})
    rows = rec.data["train_step"]
    failed = [r for r in rows if r.get("error")]
    assert [(r["backend"], r.get("compile_mode")) for r in failed] == [
        ("torch", "reduce-overhead"), ("reference", "reduce-overhead")], rows
    assert failed[0]["error"].startswith("AssertionError: (no message) at test_bench_scripts.py:")
    assert "in step" in failed[0]["traceback"] and "raise AssertionError" in failed[0]["traceback"]
    assert len(resets) == sum(r["compile"] for r in rows) == 6  # tf32, bf16, reduce-overhead per backend
    # the rest measured, each over --train-steps steps: min <= median <= max, and its host time
    for r in rows:
        if not r.get("error"):
            assert r["steps"] == args.train_steps and r["ms_min"] <= r["ms"] <= r["ms_max"] and r["host_ms"] > 0, r


def test_cache_section_packs_only_this_rounds_entries(tmp_path: Path, monkeypatch):
    """The cache section leaves out the carried entries (the next round has them) and the sources; the
    group files it packs name only what it packs; past MAX_TAR_BYTES it writes another part."""
    cache = tmp_path / ".triton-cache"

    def entry(key: str, size: int = 100, grp: bool = True) -> None:
        (cache / key).mkdir(parents=True)
        names = {f"k.{ext}": os.urandom(size) if ext == "cubin" else b"x" * 10 for ext in ("cubin", "json", "source")}
        for name, data in names.items():
            (cache / key / name).write_bytes(data)
        if grp:
            (cache / key / "__grp__k.json").write_text(json.dumps(
                {"child_paths": {n: str(cache / key / n) for n in names}}))

    entry("CARRIED")
    before = gpu_round._cache_entries(cache)
    entry("NEW1", size=200_000)
    entry("NEW2", size=200_000)
    (cache / "LAUNCHER").mkdir()
    (cache / "LAUNCHER" / "cuda_utils.so").write_bytes(b"so")
    out = tmp_path / "out"
    out.mkdir()
    rec = gpu_round.Record(out, "t", {})
    gpu_round.section_cache(rec, None, {"cache_dir": cache, "cache_entries_before": before})
    info = rec.data["cache"]
    assert (info["carried_entries"], info["new_entries"], info["packed_entries"]) == (1, 3, 2), info
    assert info["entries_without_binaries"] == 1 and [t["tar"] for t in info["tars"]] == ["triton-cache.tar.gz"]
    import tarfile

    with tarfile.open(out / "triton-cache.tar.gz") as tar:
        names = sorted(tar.getnames())
        grp = json.loads(tar.extractfile(".triton-cache/NEW1/__grp__k.json").read())
    assert names == [f".triton-cache/{k}/{n}" for k in ("NEW1", "NEW2") for n in ("__grp__k.json", "k.cubin", "k.json")]
    assert grp["child_paths"] == {n: str(cache / "NEW1" / n) for n in ("k.cubin", "k.json")}
    # parts: an entry finding the part past its size (less ~1 MiB zlib may hold) starts another
    monkeypatch.setattr(gpu_round, "MAX_TAR_BYTES", 2**20 + 1000)
    monkeypatch.setattr(gpu_round, "MAX_CACHE_PARTS", 2)
    entry("NEW3", size=200_000)
    gpu_round.section_cache(rec, None, {"cache_dir": cache, "cache_entries_before": before})
    info = rec.data["cache"]
    assert [t["tar"] for t in info["tars"]] == ["triton-cache.tar.gz", "triton-cache.2.tar.gz"], info
    assert info["packed_entries"] == 2 and "left out" in info["error"], info
    assert not list(out.glob("*.tmp"))


def test_saved_activations_script_prints_its_table(capsys):
    """bench/saved_activations.py: with skip sharing the generator's training step saves less and peaks lower."""
    assert _load("saved_activations").main(["--filters", "8", "--batch", "2", "--length", "2048"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in out.splitlines()
            if line.startswith("| skip sharing") or line.startswith("| plain")}
    assert set(rows) == {"skip sharing (default)", "plain torch.cat"}
    (peak_s, saved_s), (peak_p, saved_p) = rows["skip sharing (default)"], rows["plain torch.cat"]
    assert 0 < float(saved_s) < float(saved_p)
    if peak_p.strip() != "-":  # glibc: the heap's peak over forward + backward
        assert 0 < float(peak_s) < float(peak_p)


def test_host_probes_launch_the_triton_kernel(monkeypatch):
    """The round's Triton probes run (under the interpreter here: the kernel resolves its names and the
    launcher accepts its arguments)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # as when the round runs it
    probe = _load("_host_probe")
    for name, fn in probe.triton_probes_for_tests("cpu").items():
        fn()
    assert {"python_call", "torch_launch", "autograd_noop_fwd_bwd"} <= set(probe.probes("cpu"))


def _training_run(runs: Path, name: str, data: Path, **over) -> Path:
    """A train.py run folder holding only the config.json a --resume trains on (the ship preset's models)."""
    from opgan.config import preset

    run = runs / name
    run.mkdir(parents=True)
    cfg = {**preset("ship").to_dict(), "name": name, "runs_dir": str(runs), "data": str(data), "dynamic": False,
           "cases": "", "augment": False, "group_weight": "uniform",
           "rirs": "", "clip_len": 2656, "batch_size": 2, "val_clips": 0, **over}
    (run / "config.json").write_text(json.dumps(cfg))
    return run


def test_prewarm_training_mode_compiles_the_trainers_first_step_and_validation(tmp_path: Path, monkeypatch):
    """--training: the passes the trainer precompiles before its first step (G forward, D on real +
    fake and on fake, backward) on its batch, and the validation forward at the val clips' batch
    shapes; runs with the same models and shapes are one plan. Here the launches are only recorded
    (the compile hook, CPU tensors standing in for an sm_90 GPU's), nothing compiles."""
    import torch

    from selfonn.kernels import _launch
    from selfonn.kernels.precompile import _offline

    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from _trainer_fixtures import make_tiny_rar
    finally:
        sys.path.pop(0)
    prewarm = _load("prewarm_cache", GPU_TOOLS)
    data = make_tiny_rar(tmp_path / "data", n_train=2, n_val=3)  # 3 val clips of 3200 samples: batches of 2 and 1
    runs = [_training_run(tmp_path / "runs", name, data, data_kind=kind) for name, kind in
            (("speech", "speech"), ("music", "music"))]
    (plan,) = prewarm.training_plans(runs)
    assert plan["runs"] == [str(r) for r in runs] and plan["adversarial"] and not plan["bf16"]
    assert plan["train"] == [2, 1, 2656] and plan["validation"] == [[2, 1, 3200], [1, 1, 3200]]
    assert plan["config"]["filters"] == 8 and plan["config"]["q"] == 3
    other = _training_run(tmp_path / "runs", "g-only", data, lambda_adv=0.0, batch_size=1, val_clips=1)
    plans = prewarm.training_plans([runs[0], other], data=str(tmp_path / "missing"))  # no val data: no val shapes
    assert [(p["train"], p["validation"], p["adversarial"]) for p in plans] == [([2, 1, 2656], [], True),
                                                                               ([1, 1, 2656], [], False)]
    with pytest.raises(FileNotFoundError, match="no config.json"):
        prewarm.training_plans([tmp_path])
    # the generator's arch and its own fields shape the kernels too: a spectral run is a plan of its own
    spectral = _training_run(tmp_path / "runs", "spectral", data, arch="spectral", spectral_hidden=8, spectral_blocks=2,
                             spectral_n_fft=64)
    plans = prewarm.training_plans([runs[0], spectral])
    assert [p["config"]["arch"] for p in plans] == ["unet", "spectral"] and plans[1]["config"]["spectral_hidden"] == 8

    calls: list[tuple[str, set]] = []

    def hook(kernel, configs, prepare):
        args, _ = prepare(configs[0])
        calls.append((kernel.name, {tuple(v.shape) for v in args.values() if isinstance(v, torch.Tensor)}))

    monkeypatch.setattr(_launch, "_compile_hook", hook)
    with _offline("cuda:90", 132):
        prewarm.training_work([plan])()
    shapes = set().union(*(s for _, s in calls))
    assert {"thin_fwd", "thin_bwd", "gather", "scatter", "dw"} <= {k for k, _ in calls}  # forwards and backwards
    assert (2, 1, 2656) in shapes  # G's input: the training batch
    assert any(s[0] == 4 and s[-1] == 2656 for s in shapes if len(s) == 3)  # D on real + fake
    assert any(s[0] == 1 and s[-1] >= 3200 for s in shapes if len(s) == 3)  # the validation's last batch


def test_prewarm_unpack_points_the_entries_at_where_their_files_now_are(tmp_path: Path):
    """Triton's group files name an entry's files by absolute path (the folder the pack was built in):
    unpack() rewrites them, or every entry unpacked elsewhere would be compiled again."""
    import tarfile

    built = tmp_path / "built" / "triton-cache"
    (built / "KEY").mkdir(parents=True)
    for name in ("k.cubin", "k.json"):
        (built / "KEY" / name).write_text(name)
    (built / "KEY" / "__grp__k.json").write_text(json.dumps(
        {"child_paths": {n: str(built / "KEY" / n) for n in ("k.cubin", "k.json")}}))
    pack = tmp_path / "triton-cache.tar.xz"
    with tarfile.open(pack, "w:xz") as tar:
        tar.add(built, arcname=built.name)
    (tmp_path / "built").rename(tmp_path / "gone")
    folder = _load("triton_pack", GPU_TOOLS).unpack(pack, tmp_path / "elsewhere")
    assert folder == (tmp_path / "elsewhere" / "triton-cache").resolve()
    paths = json.loads((folder / "KEY" / "__grp__k.json").read_text())["child_paths"]
    assert paths == {n: str(folder / "KEY" / n) for n in ("k.cubin", "k.json")}
    assert all(Path(p).is_file() for p in paths.values())


def test_travel_size_counts_the_tree_and_what_is_carried(tmp_path: Path):
    """What one device call moves: tracked and untracked-not-ignored files, plus the carried paths that
    exist; ignored files count only when carried."""
    def git(*a):
        subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitignore").write_text("/pack.tar.xz\n/.whl/\n")
    (tmp_path / "tracked.py").write_bytes(b"x" * 2**20)
    git("add", ".gitignore", "tracked.py")
    (tmp_path / "new.txt").write_bytes(b"y" * 2**19)  # untracked, not ignored: travels
    (tmp_path / "pack.tar.xz").write_bytes(b"z" * 2**21)
    (tmp_path / ".whl").mkdir()
    (tmp_path / ".whl" / "a.whl").write_bytes(b"w" * 2**19)
    tree, carried = _load("triton_pack", GPU_TOOLS).travel_mib(tmp_path, [tmp_path / "pack.tar.xz", tmp_path / ".whl",
                                                                  tmp_path / "absent"])
    assert tree == pytest.approx(1.5, abs=0.01) and carried == pytest.approx(2.5)


@pytest.mark.parametrize("context", [False, True])
def test_formulation_runs_every_model_layer_on_the_fastonn_formulation(monkeypatch, context):
    """The training step's 'reference' backend: inside ``_common.formulation()`` each Self-ONN layer of
    G (the folded up blocks' functional calls included, the dilated context blocks' too) runs as FastONN
    does, with the exact path's result; outside, nothing is redirected."""
    import torch

    import selfonn
    from opgan.models import CONTEXT_CANDIDATE, Generator, GeneratorConfig

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import _common

    calls: list[str] = []
    conv, conv_t = selfonn.reference_conv1d, selfonn.reference_conv_transpose1d
    monkeypatch.setattr(selfonn, "reference_conv1d", lambda *a: calls.append("conv") or conv(*a))
    monkeypatch.setattr(selfonn, "reference_conv_transpose1d", lambda *a: calls.append("conv_t") or conv_t(*a))
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(filters=2, q=2, **(CONTEXT_CANDIDATE if context else {})))
    x = torch.rand(1, 1, 2688) * 2 - 1
    with selfonn.use_backend("torch"):
        exact = g(x)
    with _common.formulation():
        fastonn = g(x)
    n_gen = len(g.layer_shapes(2688))
    assert n_gen == (10 + 14 if context else 10) and len(calls) == n_gen and {"conv", "conv_t"} <= set(calls), calls
    torch.testing.assert_close(fastonn, exact, rtol=1e-5, atol=1e-5)
    calls.clear()
    with selfonn.use_backend("torch"):
        g(x)
    assert calls == []  # restored on exit


def test_report_holds_the_fused_kernels_to_the_best_baseline(monkeypatch):
    """bench/report.py: a column with the faster of the formulation and its compile per layer, and its
    total against the fused kernels'."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    report = _load("report")
    down1, up2 = report.opgan_layers(2688)[:2]
    rows = [{"layer": down1, "mode": "fwd+bwd", "ms": {"fused": 1.0, "reference": 3.0, "compiled": 2.0}, "mib": {},
             "tflops": {"fused": 1.0}},
            {"layer": up2, "mode": "fwd+bwd", "ms": {"fused": 1.0, "reference": 1.5, "compiled": 4.0}, "mib": {},
             "tflops": {"fused": 1.0}}]
    out = report.table(rows, ["fused", "reference", "compiled"], "cpu").splitlines()
    assert "| best baseline ms | best/fused |" in out[0]
    assert "| 2 (compiled) | 2.00x |" in out[2] and "| 1.5 (reference) | 1.50x |" in out[3]
    assert "best baseline/fused 1.75x" in report.summary(rows, ["fused", "reference", "compiled"])


def test_the_repositorys_speed_tables_match_their_records():
    """The speed blocks in README.md and docs/*.md are what bench/results renders (as opgan.tables'
    test checks the other generated tables)."""
    assert tables.main(["--check"]) == 0, "run `python bench/tables.py`"


def test_clean_input_scores_methods_on_clean_clips(tmp_path):
    """bench/clean_input.py: the record holds every set and method with its per-octave levels, and a
    folder that is not a build is refused with exit 2."""
    from opgan.data.assets import default_rirs, fixture_dir
    from opgan.data.builder import build

    clean_input = _load("clean_input")
    build("speech", fixture_dir(), tmp_path / "set", size=0.01, seed=1, splits=["test"], rirs=default_rirs(),
          progress=False)
    out = tmp_path / "rec.json"
    assert clean_input.main([str(tmp_path / "set"), "--clips", "2", "--baselines", "", "--json", str(out)]) == 0
    rec = json.loads(out.read_text())
    per = rec["sets"]["set"]["opgan"]
    assert per["n"] == 2 and set(per["bands_db"]) == {"band_1_2k", "band_2_4k", "band_4_8k"}
    assert rec["methods"] == {"opgan": "Op-GAN (q=3)"} and rec["command"].startswith("python bench/clean_input.py")
    assert clean_input.main([str(tmp_path), "--baselines", ""]) == 2


def test_level_calibration_separates_the_oracle_from_a_blind_gain(tmp_path):
    """bench/level_calibration.py: scaling by the oracle gain scores as the oracle, a 0 dB gain changes
    nothing; a tiny build gives a record with every set; a folder that is not a build exits 2."""
    import numpy as np
    from opgan.data.assets import default_rirs, fixture_dir
    from opgan.data.builder import build

    lc = _load("level_calibration")
    rng = np.random.default_rng(0)
    d = {"ss": rng.uniform(1, 2, 8), "yy": rng.uniform(1, 4, 8), "inp_sdr": np.array([20.0] * 4 + [0.0] * 4),
         "case": np.array(["awgn", "reverb"] * 4)}
    d["sy"] = 0.8 * np.sqrt(d["ss"] * d["yy"])
    oracle = 10 * np.log10(d["ss"] / d["yy"])
    s = lc.score(d, oracle)
    assert abs(s["blind_sdr_change"] - s["oracle_sdr_change"]) < 1e-9 and s["r2"] == 1.0
    assert s["blind_abs_level_error_db"] < 1e-9 and s["light"]["clips"] == 4
    s0 = lc.score(d, np.zeros(8))
    assert abs(s0["blind_sdr_change"]) < 1e-12 and abs(s0["blind_level_vs_clean_db"] - s0["level_vs_clean_db"]) < 1e-9
    build("speech", fixture_dir(), tmp_path / "set", size=0.01, seed=1, splits=["train", "val", "test"],
          rirs=default_rirs(), progress=False)
    out = tmp_path / "rec.json"
    assert lc.main(["--fit", str(tmp_path / "set"), "--test", str(tmp_path / "set"), "--json", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert set(rec["sets"]) == {"val", "val, clean inputs", "set"} and rec["features"] == 254
    assert rec["command"].startswith("python bench/level_calibration.py")
    assert lc.main(["--fit", str(tmp_path)]) == 2


def test_mask_variants_reproduce_the_model_and_change_what_they_say(tmp_path):
    """bench/mask_variants.py: an identity mask transform gives the model's own output; capping the mask
    at one never raises a bin, sharpening never lifts one; the shift average is a mean of two aligned passes;
    a tiny build gives a record with every variant; bad variants and folders exit 2."""
    import numpy as np
    import torch
    from opgan.data.assets import default_rirs, fixture_dir
    from opgan.data.builder import build
    from opgan.enhance import load_restorer

    mv = _load("mask_variants")
    g = load_restorer("speech").generator
    x = torch.randn(1, 1, 4000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.inference_mode():
        assert torch.allclose(mv.with_mask(g, x, lambda m: m), g(x), atol=1e-6)
        assert torch.allclose(mv.with_mask(g, x, lambda m: torch.ones_like(m)), x, atol=1e-5)
        m = g.mask(x)
        s = torch.where(m < 1, m.clamp_min(0) ** 1.5, m)
        assert bool((s <= m).all()) and bool((s < m).any()) and bool((m.clamp_max(1.0) <= 1).all())
        y2 = mv.restore(g, x, "shifts2")
        assert y2.shape == x.shape and not torch.equal(y2, mv.restore(g, x, "shipped"))
        assert torch.allclose(mv.restore(g, x, "twice"), g(g(x / x.abs().max())) * x.abs().max(), atol=1e-5)
    build("speech", fixture_dir(), tmp_path / "set", size=0.01, seed=1, splits=["test"], rirs=default_rirs(),
          progress=False)
    out = tmp_path / "rec.json"
    assert mv.main(["--sets", str(tmp_path / "set"), "--variants", "shipped,nolift", "--json", str(out)]) == 0
    rec = json.loads(out.read_text())
    got = rec["sets"]["set"]
    assert set(got["variants"]) == {"shipped", "nolift"} and got["clips"] > 0
    assert np.isfinite(got["variants"]["shipped"]["sdr_gain"]) and rec["command"].startswith("python bench/mask_variants.py")
    assert mv.main(["--sets", str(tmp_path / "set"), "--variants", "louder"]) == 2
    assert mv.main(["--sets", str(tmp_path)]) == 2


def test_loss_by_case_splits_a_runs_loss_and_refuses_a_folder_without_a_config(tmp_path):
    """bench/loss_by_case.py: on the default recipe's own items the oracle's loss is the lowest and the
    shares of the model's loss add up to 1; the summary's arithmetic is checked on made-up losses."""
    from opgan.config import preset

    lbc = _load("loss_by_case")
    s = lbc.summarise({"awgn": {"identity": [4.0], "model": [2.0], "oracle": [1.0]},
                       "background": {"identity": [3.0, 3.0], "model": [3.0, 3.0], "oracle": [1.0, 1.0]}}, 3)
    assert s["awgn"]["captured"] == pytest.approx(2 / 3) and s["background"]["captured"] == 0.0
    assert s["background"]["share_of_model_loss"] == pytest.approx(0.75) and s["all"]["model"] == pytest.approx(8 / 3)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(preset("default").to_dict()))
    out = tmp_path / "rec.json"
    assert lbc.main([str(run), "--model", "speech", "--items", "6", "--json", str(out)]) == 0
    rec = json.loads(out.read_text())
    cases = {k: v for k, v in rec["cases"].items() if k != "all"}
    assert sum(v["n"] for v in cases.values()) == 6
    assert sum(v["share_of_model_loss"] for v in cases.values()) == pytest.approx(1.0)
    assert rec["cases"]["all"]["oracle"] <= min(rec["cases"]["all"]["identity"], rec["cases"]["all"]["model"])
    assert rec["command"].startswith("python bench/loss_by_case.py")
    assert lbc.main([str(tmp_path / "nope")]) == 2
