"""Host time of one fused Self-ONN call, with and without plans, on the CPU (no GPU needed).

    python bench/host_overhead.py                       # the 16 Op-GAN layer shapes (f=16, q=3)
    python bench/host_overhead.py --layers disc.3,gen.up2 --calls 500
    python bench/host_overhead.py --layers gen.ctx.d1,gen.ctx.d64,gen.ctx.proj   # the dilated context blocks

A small layer's kernels take microseconds on a GPU, so its fused call is as fast as the Python that
launches it. This times that Python: the public ``selfonn_conv1d`` / ``selfonn_conv_transpose1d``
calls on CPU tensors through the compiled-launch host path (``selfonn.kernels.dryrun``: everything a
GPU call runs up to the launch itself, which is left out), forward and forward+backward
(``torch.autograd.grad``), with plans (the default) and without (every call rebuilds its launch
arguments), side by side in one run. The floor is a no-op ``autograd.Function`` with the same calls.
Batch 1, length 2688 (host time does not depend on sizes), one thread, the best of several rounds of
this thread's CPU time (a loaded machine's other work does not count); prints a markdown table with
each layer's fwd+bwd as a multiple of the floor timed beside it (the floor row: their median).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import opgan_layers  # noqa: E402
from _host_probe import Noop  # noqa: E402


def _per_call_us(fns: list, calls: int, rounds: int) -> list[float]:
    """Best us per call of each of ``fns``, timed in turn within every round (a ratio of two of them
    compares times taken under the same conditions)."""
    for fn in fns:
        for _ in range(max(calls // 10, 5)):
            fn()
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.thread_time()  # this thread's CPU time: other work on a shared machine does not count
            for _ in range(calls):
                fn()
            best[i] = min(best[i], (time.thread_time() - t0) / calls * 1e6)
    return best


def _steps(call, x, w, b):
    y = call(x, w, b)
    dy = torch.randn_like(y)
    return (lambda: call(x, w, b)), (lambda: torch.autograd.grad(call(x, w, b), (x, w, b), dy))


def measure(layer, calls: int, rounds: int, floor) -> dict:
    """The layer's host times; ``floor``: the no-op Function's fwd+bwd, timed beside the planned fwd+bwd."""
    import selfonn
    from selfonn import kernels

    if layer.transposed:
        w = torch.randn(layer.q * layer.c_in, layer.c_out, layer.k, requires_grad=True)

        def call(x, w, b):
            return selfonn.selfonn_conv_transpose1d(x, w, b, layer.stride, layer.padding, 0, 1, layer.dilation,
                                                    layer.q, backend="triton")
    else:
        w = torch.randn(layer.c_out, layer.q * layer.c_in, layer.k, requires_grad=True)

        def call(x, w, b):
            return selfonn.selfonn_conv1d(x, w, b, layer.stride, layer.padding, layer.dilation, 1, layer.q,
                                          backend="triton")
    b = torch.randn(layer.c_out, requires_grad=True)
    x = torch.randn(1, layer.c_in, layer.L_in, requires_grad=True)
    row = {"layer": layer.name}
    for plans in (False, True):
        with kernels.options(plans=plans):
            fwd, both = _steps(call, x, w, b)
            tag = "plans" if plans else "no_plans"
            row[f"fwd_{tag}"], = _per_call_us([fwd], calls, rounds)
            if plans:
                row["fwd_bwd_plans"], row["floor"] = _per_call_us([both, floor], calls, rounds)
            else:
                row["fwd_bwd_no_plans"], = _per_call_us([both], calls, rounds)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", default="",
                    help="comma list of Op-GAN layer names (default: all 16), the context blocks' too (gen.ctx.d8)")
    ap.add_argument("--calls", type=int, default=300, help="calls per timing round")
    ap.add_argument("--rounds", type=int, default=7, help="timing rounds (the best is kept)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from selfonn.kernels.dryrun import dry_run

    layers = opgan_layers(2688, 16, 3, context=bool(args.layers))  # context layers only when named
    if args.layers:
        wanted = args.layers.split(",")
        unknown = set(wanted) - {lay.name for lay in layers}
        if unknown:
            ap.error(f"unknown layers {sorted(unknown)}")
        layers = [lay for lay in layers if lay.name in wanted]
    os.environ.setdefault("SELFONN_DIRECT_LAUNCH", "1")
    x, w = torch.randn(1, 4, 16, requires_grad=True), torch.randn(4, 4, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    noop_fwd, noop_both = _steps(Noop.apply, x, w, b)
    with dry_run(log=False):
        rows = [measure(layer, args.calls, args.rounds, noop_both) for layer in layers]
    floor = (_per_call_us([noop_fwd], args.calls, args.rounds)[0], statistics.median(r["floor"] for r in rows))

    cpu = platform.processor() or platform.machine()
    print(f"Host us per fused call, launches left out (`python bench/host_overhead.py`; {cpu}, "
          f"torch {torch.__version__}, 1 thread)\n")
    print("| layer | fwd, no plans | fwd, plans | fwd+bwd, no plans | fwd+bwd, plans | fwd+bwd saved | × floor |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        saved = 1 - r["fwd_bwd_plans"] / r["fwd_bwd_no_plans"]
        print(f"| {r['layer']} | {r['fwd_no_plans']:.1f} | {r['fwd_plans']:.1f} | {r['fwd_bwd_no_plans']:.1f} | "
              f"{r['fwd_bwd_plans']:.1f} | {saved:.0%} | {r['fwd_bwd_plans'] / r['floor']:.2f} |")
    print(f"| no-op autograd.Function (floor) | | {floor[0]:.1f} | | {floor[1]:.1f} | | 1.00 |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
