"""The kernels compile for a real GPU (sm_90) without one: what the interpreter cannot check.

The interpreter accepts code a GPU compile rejects (tl.dot on small blocks, non-power-of-two shapes,
data-dependent Python control flow) and says nothing of registers or shared memory. This compiles
the variants the Op-GAN layers launch with Triton's bundled ptxas, in a subprocess without
TRITON_INTERPRET, and checks that none fails, spills or exceeds the H100's shared memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import triton

_PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
_H100_SMEM = 232448  # bytes of shared memory a block may use


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not _PTXAS.exists(), reason="this Triton has no bundled NVIDIA ptxas")
def test_opgan_kernel_variants_compile_for_sm90():
    """Every candidate config of every Op-GAN layer kind compiles; none exceeds the shared memory; the
    tuner always has a candidate that spills at most 128 bytes of registers per thread (cuobjdump's
    STACK column; with Triton 3.6, the GPU machines', every call has a spill-free candidate and a
    few wide ones spill up to ~350 bytes).
    Before the thin tiles were halved every gen.out_T forward candidate spilled 0.8-5.4 KB."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    script = Path(__file__).with_name("_kernel_compile_check.py")
    out = subprocess.run([sys.executable, str(script), "8", "fp32,bf16"], env=env, capture_output=True, text=True,
                         timeout=880, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    kernels = {tag.split()[1] for tag in results}
    assert kernels == {"gather", "scatter", "dw", "thin_fwd", "thin_bwd"}, kernels
    bad = {tag: r for tag, r in results.items() if "error" in r or r["local"] != 0 or r["smem"] > _H100_SMEM}
    assert not bad, bad
    by_call: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    for tag, r in results.items():
        by_call.setdefault((tag.split()[0], tag.split()[1]), []).append((tag, r))
    least = {call: min(r["stack"] for _, r in rs) for call, rs in by_call.items()}
    assert all(v <= 128 for v in least.values()), least
    # The big GEMM layers' first two candidates (64+ rows) run on wgmma.
    assert all(r["wgmma"] for (layer, kern), rs in by_call.items() if layer.startswith("gen.up2/")
               and not kern.startswith("thin") for _, r in rs[:2])


_PRECOMPILE_SCRIPT = """
import json, sys, torch
from selfonn import SelfONN1d
from selfonn.kernels.precompile import precompile
layer = SelfONN1d(4, 8, 3, stride=2, padding=1, q=3, backend="triton")
def step():
    x = torch.randn(2, 4, 512, requires_grad=True)
    layer(x).sum().backward()
first = precompile(step, workers=2, target="cuda:90")
second = precompile(step, workers=2, target="cuda:90")
print(json.dumps({"first": first.variants, "failed": first.failed, "second": second.variants,
                  "second_s": second.seconds}))
"""


@pytest.mark.timeout(300)
@pytest.mark.skipif(not _PTXAS.exists(), reason="this Triton has no bundled NVIDIA ptxas")
def test_precompile_fills_the_triton_cache_for_sm90_without_a_gpu(tmp_path):
    """selfonn.kernels.precompile(target='cuda:90') compiles a layer's fwd+bwd variants from CPU
    tensors into TRITON_CACHE_DIR (what tools/gpu/prewarm_cache.py packs for a GPU machine); a second
    pass finds them all and compiles nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITON_")}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", _PRECOMPILE_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=280, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["failed"] == []
    assert set(r["first"]) == {"gather", "scatter", "dw"}, r  # forward, grad_x, grad_W (+ bias)
    cubins = list(tmp_path.rglob("*.cubin"))
    assert len(cubins) == sum(r["first"].values())
    assert r["second"] == r["first"] and r["second_s"] < 5  # found, not compiled again


def test_compile_reports_compare_as_a_table():
    """``_kernel_compile_check.py --compare``: the variants whose registers, stack or loop changed, and
    the loop instructions summed over the variants both reports hold."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from _kernel_compile_check import compare
    finally:
        sys.path.pop(0)
    same = {"regs": 96, "stack": 0, "loop": {"instructions": 300}}
    before = {"a": same, "b": {"regs": 255, "stack": 64, "loop": {"instructions": 900}}, "gone": same}
    after = {"a": same, "b": {"regs": 128, "stack": 0, "loop": {"instructions": 800}}, "new": same}
    table = compare(before, after)
    assert "| b | 255 → 128 | 64 → 0 | 900 → 800 |" in table and "| a |" not in table
    assert "1 of 2 variants changed (2 in one report only)" in table and "1200 → 1100" in table


def _kernel_stats():
    """bench/kernel_stats.py as a module (importing it imports no kernels: it stays off the interpreter)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "bench" / "kernel_stats.py"
    spec = importlib.util.spec_from_file_location("bench_kernel_stats", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.timeout(300)
@pytest.mark.skipif(not _PTXAS.exists(), reason="this Triton has no bundled NVIDIA ptxas")
def test_kernel_stats_reports_a_layer_compiled_offline(tmp_path):
    """bench/kernel_stats.py compiles a small layer's fwd+bwd launches for sm_90 (first candidate each)
    and writes a record whose rows hold every statistic, with no machine path in it; it refuses to
    overwrite a file and an unknown layer (exit 2)."""
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITON_")}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    out = tmp_path / "stats.json"
    cmd = [sys.executable, str(root / "bench" / "kernel_stats.py"), "--layers", "disc.3", "--max-configs", "1",
           "--workers", "2"]
    r = subprocess.run([*cmd, "--out", str(out)], env=env, capture_output=True, text=True, timeout=280, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert rec["kind"] == "sm90-stats" and rec["target"] == "sm_90" and rec["sms"] == 132
    assert set(rec["layers"]) == {"disc.3"}
    rows = rec["rows"]
    assert {(row["role"], row["kernel"]) for row in rows} == {("fwd", "gather"), ("grad_x", "scatter"), ("grad_W", "dw")}
    for row in rows:
        assert "error" not in row, row
        assert 0 < row["regs"] <= 255 and row["spill_store_bytes"] >= 0 and row["spill_load_bytes"] >= 0
        assert row["smem"] > 0 and row["programs"] > 0 and row["waves"] > 0
        assert 0 < row["warps_per_sm"] <= 64 and row["limit"] in ("regs", "smem", "warps", "blocks")
        assert row["mma"] in ("wgmma", "mma.sync") and row["mma_count"] > 0  # every GEMM kernel has an MMA
        assert row["loop"]["mma"] > 0 and row["loop"]["instructions"] < row["sass_instructions"]
        assert row["ptxas_regs"] == row["regs"] and "wgmma_serialized" in row  # ptxas -v run as Triton runs it
        assert row["main_loop"]["iterations"] > 0 if row["kernel"] != "dw" else row["main_loop"] is None
    text = out.read_text()
    assert str(tmp_path) not in text and str(Path.home()) not in text and str(root) not in text
    assert "| disc.3 | fwd | gather |" in r.stdout
    again = subprocess.run([*cmd, "--out", str(out)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 2 and "not overwriting" in again.stderr and out.read_text() == text
    bad = subprocess.run([*cmd[:3], "disc.99"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "unknown layer" in bad.stderr


def test_kernel_stats_occupancy_and_sass_census():
    """sm_90 occupancy from registers and shared memory, the MMA kind and spill bytes read off SASS,
    and the round's tune keys matched across fields added since, never across another layer's values."""
    ks = _kernel_stats()
    assert ks.occupancy(255, 0, 4) == {"blocks_per_sm": 2, "warps_per_sm": 8, "limit": "regs"}
    assert ks.occupancy(32, 0, 4)["warps_per_sm"] == 64  # the warp cap
    assert ks.occupancy(96, 100 * 1024, 4) == {"blocks_per_sm": 2, "warps_per_sm": 8, "limit": "smem"}
    sass = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   HFMA2.MMA R2, -RZ, RZ, 0, 0 ;
        /*0020*/              @!P0 LDG.E.128 R4, desc[UR4][R2.64] ;
        /*0030*/                   HGMMA.64x64x8.F32.TF32 R24, gdesc[UR4], R24 ;
        /*0040*/                   STL.64 [R1], R4 ;
        /*0050*/                   LDL R6, [R1] ;
        /*0060*/               @P1 BRA 0x20 ;
        /*0070*/                   EXIT ;
        /*0080*/                   BRA 0x80;
    """
    assert ks.loop_census(sass) == {"instructions": 5, "ldgsts": 0, "ldg": 1, "mma": 1, "ffma": 0, "wgmma_waits": 0,
                                      "spill_ops": 2}
    mns = [m for _, m in ks._mnemonics(sass)]
    assert ks._mma_kind(mns) == ("wgmma", 1) and ks._mma_kind(["HMMA.1684.F32.TF32"] * 3) == ("mma.sync", 3)
    assert ks._mma_kind(["HFMA2.MMA"]) == ("none", 0)
    assert sum(ks._width(m) for m in mns if m.startswith("STL")) == 8
    old = "(torch.float32, 'tf32', 3, 5, 64, 192, 16384, triton.language.int32, False, (True, False), 4)"
    new = "(torch.float32, 'tf32', 3, 5, 64, 192, 16384, triton.language.int32, (True, False), 4, 32, 8192)"
    other = "(torch.float32, 'tf32', 3, 5, 128, 384, 16384, triton.language.int32, False, (True, False), 4)"
    assert ks.match_key(new, [other, old]) == old
    assert ks.match_key(new, [other]) is None
