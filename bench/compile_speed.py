"""How long the fused kernels take to compile, one after another vs all at once (no GPU needed).

    python bench/compile_speed.py                      # gen.up2 fwd+bwd, fp32, for sm_90, 1 vs all CPUs
    python bench/compile_speed.py --layers gen.up2,gen.out_T --workers 1,2,16

Each measurement compiles the candidate configs a first (tuning) step of the layers would compile,
through ``selfonn.kernels.precompile`` in a fresh process with an empty Triton cache, offline for
``--target`` unless a CUDA device is present (then for it). Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = """
import json, sys, torch
sys.path.insert(0, {here!r})
from _common import PROVIDERS, make_inputs, make_step, opgan_layers
from selfonn.kernels.precompile import precompile
torch.backends.cudnn.allow_tf32 = True
device = "cuda" if torch.cuda.is_available() else "cpu"
wanted = {layers!r}.split(",")
layers = [la for la in opgan_layers(32000) if la.name in wanted]


def work():
    # what a first fused fwd+bwd (fp32, B=8, L=32000) of each layer launches: the GPU round's layer cells
    for la in layers:
        make_step(PROVIDERS["fused"](la), make_inputs(la, 8, device), "fwd+bwd")()


r = precompile(work, workers={workers}, target=None if device == "cuda" else {target!r})
print(json.dumps({{"variants": r.total, "seconds": r.seconds, "failed": len(r.failed)}}))
"""


def measure(layers: list[str], workers: int, target: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    with tempfile.TemporaryDirectory() as cache:
        env["TRITON_CACHE_DIR"] = cache
        code = _CHILD.format(here=str(HERE), layers=",".join(layers), workers=workers, target=target)
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"compile_speed: the measurement failed: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", default="gen.up2", help="comma list of Op-GAN layer names")
    ap.add_argument("--workers", default=f"1,{os.cpu_count() or 1}", help="comma list of thread counts")
    ap.add_argument("--target", default="cuda:90", help="offline target when there is no GPU")
    args = ap.parse_args(argv)
    layers = args.layers.split(",")
    rows = [(int(w), measure(layers, int(w), args.target)) for w in args.workers.split(",")]
    base = rows[0][1]["seconds"]
    print(f"compile of {', '.join(layers)} fwd+bwd (fp32), {os.cpu_count()} CPUs\n")
    print("| threads | variants | seconds | speed-up |\n|---|---|---|---|")
    for w, r in rows:
        print(f"| {w} | {r['variants']} | {r['seconds']:.1f} | {base / r['seconds']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
