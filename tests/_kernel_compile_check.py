"""Compile the kernel variants the Op-GAN layers launch for sm_90, offline (no GPU), and report them.

Run in a process without TRITON_INTERPRET (``tests/test_kernels_compile.py`` does): each launch the
launchers would make is intercepted and its first candidate configs are compiled with Triton's
bundled ptxas for ``GPUTarget("cuda", 90, 32)``. Prints one JSON object: per variant the registers,
stack bytes per thread (where spilled registers go), local bytes, shared memory and whether the MMA is wgmma.
``--compare before.json after.json`` prints what changed between two such reports (a markdown table).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from opgan.models import opgan_layer_shapes
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
from kernel_stats import loop_census  # noqa: E402  (bench/: the one SASS loop census)
from selfonn.kernels import _launch
from selfonn.kernels import gemm, grad_w
from selfonn.kernels import selfonn_conv as sc

_TARGET = GPUTarget("cuda", 90, 32)
_DTYPES = {torch.float32: "fp32", torch.float64: "fp64", torch.bfloat16: "bf16", torch.float16: "fp16",
           torch.int32: "i32"}
# The Op-GAN's layer kinds (f = 16, L = 32000, folded up blocks), read from the models: single-channel
# in and out, strided convs narrow and wide, the transposed up blocks, the discriminator's stride 8.
LAYERS = ("gen.down1", "gen.down2", "gen.down4", "gen.up2", "gen.up4", "gen.out_T", "disc.1", "disc.2", "disc.3",
          "disc.head")


def _cuobjdump() -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def _compile(kernel: _launch.Kernel, args: dict, cfg: _launch.Cfg) -> dict:
    fn = kernel.fn
    no_spec = {fn.arg_names[i] if isinstance(i, int) else i for i in getattr(fn, "do_not_specialize", ())}
    merged = {**args, **cfg.kwargs}
    sig, consts, attrs = {}, {}, {}
    for i, name in enumerate(fn.arg_names):
        v = merged[name]
        if name not in kernel.runtime_names:
            sig[name], consts[name] = "constexpr", v
        elif isinstance(v, torch.Tensor):
            sig[name] = "*" + _DTYPES[v.dtype]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif v == 1 and name not in no_spec:  # as Triton's JIT specialises it
            sig[name], consts[name] = "constexpr", 1
        else:
            sig[name] = "i32" if -(2**31) <= v < 2**31 else "i64"
            if v % 16 == 0 and name not in no_spec:
                attrs[(i,)] = [["tt.divisibility", 16]]
    ck = triton.compile(ASTSource(fn, sig, consts, attrs), target=_TARGET,
                        options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages})
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(ck.asm["cubin"])
        f.flush()
        listing = subprocess.run([_cuobjdump(), "--dump-resource-usage", "-sass", f.name], capture_output=True,
                                 text=True).stdout  # the resource line, then the SASS
    m = re.search(r"REG:(\d+)\s+STACK:(\d+).*?LOCAL:(\d+)", listing, re.S)
    # Spilled registers show up as STACK (per-thread stack frame), not LOCAL, in cuobjdump's listing.
    return {"regs": int(m.group(1)) if m else -1, "stack": int(m.group(2)) if m else -1,
            "local": int(m.group(3)) if m else -1,
            "smem": ck.metadata.shared, "wgmma": "wgmma" in ck.asm.get("ptx", ""), "loop": loop_census(listing)}


def main(n_configs: int, dtypes: list[str]) -> dict:
    results: dict[str, dict] = {}
    layer = [""]

    def compile_launch(self, tune_key, candidates, prepare):
        cands = candidates() if callable(candidates) else candidates
        for cfg in list(cands)[:n_configs]:
            args, _ = prepare(cfg)
            tag = f"{layer[0]} {self.name} {dict(cfg.blocks)} w{cfg.num_warps}"
            if tag not in results:
                try:
                    results[tag] = _compile(self, args, cfg)
                except Exception as e:  # reported, the caller fails on it
                    results[tag] = {"error": repr(e)[:500]}

    _launch.Kernel._launch = compile_launch
    _launch.sm_count = lambda device: 132
    for dname in dtypes:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp64": torch.float64}[dname]
        gemm._precision = grad_w._precision = lambda t: "tf32" if t.dtype == torch.float32 else "ieee"
        for shape in opgan_layer_shapes(32000, filters=16, q=3):
            if shape.name not in LAYERS:
                continue
            layer[0] = f"{shape.name}/{dname}"
            cin, cout, k, q = shape.c_in, shape.c_out, shape.k, shape.q
            g = sc._geom(shape.stride, shape.padding, 1, 1, q, 0, shape.transposed)
            x = torch.zeros(8, cin, shape.L_in, dtype=dtype)
            w = torch.zeros((q * cin, cout, k) if shape.transposed else (cout, q * cin, k), dtype=dtype)
            d = sc._dims(x, w, g)
            sc._forward(x, w, torch.zeros(cout, dtype=dtype), g)
            sc._backward(torch.zeros(8, d.C_out, d.L_out, dtype=dtype), x, w, g, True, True, True)
    return results


def compare(before: dict, after: dict) -> str:
    """A markdown table of the variants both reports hold whose registers, stack or main-loop
    instructions differ, then the loop instructions summed over every variant both have a loop for."""
    rows, tot_b, tot_a = [], 0, 0
    for tag in sorted(set(before) & set(after)):
        b, a = before[tag], after[tag]
        if "error" in b or "error" in a:
            continue
        lb, la = b.get("loop", {}).get("instructions"), a.get("loop", {}).get("instructions")
        if lb and la:
            tot_b, tot_a = tot_b + lb, tot_a + la
        if (b["regs"], b["stack"], lb) != (a["regs"], a["stack"], la):
            rows.append(f"| {tag} | {b['regs']} → {a['regs']} | {b['stack']} → {a['stack']} | {lb} → {la} |")
    head = ["| variant | registers | stack bytes | loop instructions |", "|---|---|---|---|"]
    only = len(set(before) ^ set(after))
    foot = (f"\n{len(rows)} of {len(set(before) & set(after))} variants changed ({only} in one report only); "
            f"loop instructions over both: {tot_b} → {tot_a}")
    return "\n".join(head + rows) + foot


if __name__ == "__main__":
    if sys.argv[1] == "--compare":  # python tests/_kernel_compile_check.py --compare before.json after.json
        with open(sys.argv[2]) as fb, open(sys.argv[3]) as fa:
            print(compare(json.load(fb), json.load(fa)))
    else:
        print(json.dumps(main(int(sys.argv[1]), sys.argv[2].split(","))))
