"""Compile the kernel variants the Op-GAN layers launch for sm_90, offline (no GPU), and report them.

Run in a process without TRITON_INTERPRET (``tests/test_kernels_compile.py`` does): each launch the
launchers would make is intercepted and its first candidate configs are compiled with Triton's
bundled ptxas for ``GPUTarget("cuda", 90, 32)``. Prints one JSON object: per variant the registers,
stack bytes per thread (where spilled registers go), local bytes, shared memory and whether the MMA is wgmma.
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

from selfonn.kernels import _launch
from selfonn.kernels import selfonn_conv as sc

_TARGET = GPUTarget("cuda", 90, 32)
_DTYPES = {torch.float32: "fp32", torch.float64: "fp64", torch.bfloat16: "bf16", torch.float16: "fp16",
           torch.int32: "i32"}
# (name, C_in, C_out, L_in, k, stride, padding, transposed): the Op-GAN's layer kinds (f = 16, L = 32000).
LAYERS = [
    ("gen.down1", 1, 16, 32000, 5, 2, 2, False),
    ("gen.down4", 64, 128, 4000, 5, 2, 2, False),
    ("gen.up2", 256, 64, 4000, 5, 1, 2, False),
    ("gen.out_T", 32, 1, 16000, 6, 2, 2, True),
    ("disc.1", 1, 16, 32000, 4, 8, 1, False),
    ("disc.3", 32, 64, 500, 4, 8, 1, False),
    ("disc.head", 256, 1, 16, 3, 4, 1, False),
]


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
        usage = subprocess.run([_cuobjdump(), "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    m = re.search(r"REG:(\d+)\s+STACK:(\d+).*?LOCAL:(\d+)", usage, re.S)
    # Spilled registers show up as STACK (per-thread stack frame), not LOCAL, in cuobjdump's listing.
    return {"regs": int(m.group(1)) if m else -1, "stack": int(m.group(2)) if m else -1,
            "local": int(m.group(3)) if m else -1,
            "smem": ck.metadata.shared, "wgmma": "wgmma" in ck.asm.get("ptx", "")}


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
        sc._precision = lambda t: "tf32" if t.dtype == torch.float32 else "ieee"
        for name, cin, cout, L, k, s, p, transposed in LAYERS:
            layer[0] = f"{name}/{dname}"
            g = sc._geom(s, p, 1, 1, 3, 0, transposed)
            x = torch.zeros(8, cin, L, dtype=dtype)
            w = torch.zeros((3 * cin, cout, k) if transposed else (cout, 3 * cin, k), dtype=dtype)
            d = sc._dims(x, w, g)
            sc._forward(x, w, torch.zeros(cout, dtype=dtype), g)
            sc._backward(torch.zeros(8, d.C_out, d.L_out, dtype=dtype), x, w, g, True, True, True)
    return results


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), sys.argv[2].split(","))))
