"""Per-kernel GPU time of one Self-ONN layer's fwd+bwd (torch.profiler), to see where time goes.

    python bench/profile_kernels.py                 # a few Op-GAN layers, fused vs reference
    python bench/profile_kernels.py --layers gen.up2 --providers fused

Launch overhead does not show here (only device time), unlike report.py's event timings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROVIDERS, make_inputs, make_step, opgan_layers  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", default="gen.down1,gen.down4,gen.up2,gen.out_T,disc.1")
    ap.add_argument("--providers", default="fused,reference")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=32000)
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        ap.error("needs a CUDA device")
    layers = {la.name: la for la in opgan_layers(args.length)}
    for name in args.layers.split(","):
        layer = layers[name]
        inputs = make_inputs(layer, args.batch, "cuda")
        for prov in args.providers.split(","):
            step = make_step(PROVIDERS[prov](layer), inputs, "fwd+bwd")
            for _ in range(3):
                step()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(args.iters):
                    step()
                torch.cuda.synchronize()
            rows = []
            total = 0.0
            for ev in prof.key_averages():
                us = ev.device_time_total / args.iters
                if us > 0:
                    rows.append((us, ev.key))
                    total += us
            rows.sort(reverse=True)
            print(f"\n### {name} ({layer.c_in}->{layer.c_out}, L={layer.L_in}) {prov}: "
                  f"{total:.1f} us device time per step")
            for us, key in rows[:8]:
                print(f"  {us:9.1f} us  {key[:100]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
