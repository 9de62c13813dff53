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
