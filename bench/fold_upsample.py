"""Whole-generator forward+backward with the up blocks folded (one stride-2 transposed conv) vs plain
(nearest x2 upsample + k5 conv), timed side by side in one run, the same weights in both.

    python bench/fold_upsample.py                          # CPU: f=8, q=3, B=8, L=8192, 1 thread
    python bench/fold_upsample.py --device cuda --filters 16 --length 32000 --backend triton

Rounds alternate plain / folded so drift in machine load hits both alike; prints the medians and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import selfonn
from opgan.models import Generator, GeneratorConfig, opgan_layer_shapes


def _timed(step, device: str) -> float:
    """Seconds of one call (CUDA synchronised)."""
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def compare(filters: int, q: int, batch: int, length: int, device: str, backend: str, rounds: int,
            warmup: int = 1) -> dict:
    """Median seconds per generator fwd+bwd for fold_upsample False / True, and their max output difference."""
    torch.manual_seed(0)
    plain = Generator(GeneratorConfig(filters=filters, q=q), fold_upsample=False).to(device)
    folded = Generator(GeneratorConfig(filters=filters, q=q), fold_upsample=True).to(device)
    folded.load_state_dict(plain.state_dict())
    x = (torch.rand(batch, 1, length) * 2 - 1).to(device)
    models = {"plain": plain, "folded": folded}

    def step(model):
        def run():
            model(x).square().mean().backward()
            model.zero_grad(set_to_none=True)
        return run

    times: dict[str, list[float]] = {name: [] for name in models}
    with selfonn.use_backend(backend):
        with torch.no_grad():
            diff = (plain(x) - folded(x)).abs().max().item()
        for r in range(warmup + rounds):
            for name, model in models.items():
                t = _timed(step(model), device)
                if r >= warmup:
                    times[name].append(t)
    flops = {name: sum(s.fwd_flops(batch) for s in opgan_layer_shapes(length, filters, q, fold)[:10])
             for name, fold in (("plain", False), ("folded", True))}
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return {"median_s": med, "times_s": times, "speedup": med["plain"] / med["folded"],
            "gflop_fwd": {k: v / 1e9 for k, v in flops.items()}, "max_abs_diff": diff}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--backend", choices=["torch", "triton", "auto"], default="auto")
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--q", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is available")
    torch.set_num_threads(args.threads)
    r = compare(args.filters, args.q, args.batch, args.length, args.device, args.backend, args.rounds)
    print(f"generator fwd+bwd, f={args.filters} q={args.q} B={args.batch} L={args.length} on {args.device} "
          f"(backend {args.backend}, {args.threads} thread(s), {args.rounds} rounds, torch {torch.__version__})")
    for name in ("plain", "folded"):
        ts = ", ".join(f"{t:.3f}" for t in r["times_s"][name])
        print(f"  {name:6s} median {r['median_s'][name] * 1e3:8.1f} ms  fwd {r['gflop_fwd'][name]:.2f} GFLOP  [{ts}] s")
    print(f"  speed-up folded vs plain: {r['speedup']:.2f}x   max |plain - folded| = {r['max_abs_diff']:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
