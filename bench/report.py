"""Side-by-side Self-ONN benchmark: fused Triton kernels vs FastONN (cat powers + conv) vs
torch.compile of it vs selfonn's exact torch path, on the Op-GAN layer shapes (and a scaling sweep).

    python bench/report.py              # CUDA: Op-GAN shapes at B=8, L=32000 (about a minute on an H100)
    python bench/report.py --quick      # a few representative shapes, fewer repeats
    python bench/report.py --sweep      # also the C / L / q scaling sweep
    python bench/report.py --context    # also the dilated context blocks' layers (gen.ctx.*, totalled apart)
    python bench/report.py --device cpu # CPU: exact torch path vs reference at B=2, L=4000 by default
    python bench/report.py --device cpu --cpu-compile   # also torch.compile on the CPU (inductor: slow to build)

Prints one markdown table; every ratio comes from timings taken in this one run. The baselines run as
a user runs them at their best: ``cudnn.benchmark`` on, ``torch.compile(dynamic=False)``, and the
"best" column is the faster of the FastONN formulation and its compile per layer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    COMPILE_SETTINGS,
    PROVIDERS,
    Layer,
    best_baseline,
    fair_baselines,
    is_context,
    make_inputs,
    make_step,
    opgan_layers,
    peak_mib,
    provider_available,
    saved_bytes,
    sweep_layers,
    time_step,
)


def run(layers: list[Layer], providers: list[str], modes: list[str], B: int, device: str, args) -> list[dict]:
    rows = []
    for layer in layers:
        inputs = make_inputs(layer, B, device)
        for mode in modes:
            row = {"layer": layer, "mode": mode, "ms": {}, "mib": {}, "tflops": {}}
            flops = layer.fwd_flops(B) * (3.0 if mode == "fwd+bwd" else 1.0)
            for name in providers:
                fn = PROVIDERS[name](layer)
                step = make_step(fn, inputs, mode)
                try:
                    ms = time_step(step, device, args.warmup, args.repeats, args.min_time)
                except Exception as exc:  # report and keep going: one failing provider must not hide the rest
                    print(f"# {layer.name} {mode} {name}: failed: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
                    continue
                row["ms"][name] = ms
                row["tflops"][name] = flops / (ms * 1e-3) / 1e12
                row["mib"][name] = peak_mib(step, device)
                if mode == "fwd+bwd":
                    row.setdefault("saved", {})[name] = saved_bytes(fn, inputs) / 2**20
            rows.append(row)
            print(f"# done {layer.name} {mode}", file=sys.stderr, flush=True)
        del inputs
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def _fmt(v: float | None, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict], providers: list[str], device: str) -> str:
    base = "fused" if "fused" in providers else "torch"
    others = [p for p in providers if p != base]
    head = ["layer", "B x C_in->C_out x L (k,s,q)", "mode"] + [f"{p} ms" for p in providers]
    head += [f"{p}/{base}" for p in others]
    has_best = base == "fused" and any(p in providers for p in ("reference", "compiled"))
    if has_best:
        head += ["best baseline ms", "best/fused"]
    head += [f"{base} TFLOP/s"]
    if device == "cuda":
        head += [f"{p} peak MiB" for p in providers]
    head += [f"saved MiB {p}" for p in ("fused", "torch", "reference") if p in providers] + ["saved ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lay: Layer = r["layer"]
        ms = r["ms"]
        dil = f" d{lay.dilation}" if lay.dilation != 1 else ""
        kind = " T" if lay.transposed else ""
        shape = f"{lay.c_in}->{lay.c_out} x {lay.L_in} ({lay.k},{lay.stride},{lay.q}){dil}{kind}"
        cells = [lay.name, shape, r["mode"]] + [_fmt(ms.get(p)) for p in providers]
        cells += [_fmt(ms[p] / ms[base], ".2f") + "x" if p in ms and base in ms else "-" for p in others]
        if has_best:
            name, best = best_baseline(ms)
            cells += [f"{_fmt(best)} ({name})" if name else "-",
                      _fmt(best / ms[base], ".2f") + "x" if name and base in ms else "-"]
        cells += [_fmt(r["tflops"].get(base), ".2f")]
        if device == "cuda":
            cells += [_fmt(r["mib"].get(p), ".0f") for p in providers]
        saved = r.get("saved", {})
        cells += [_fmt(saved.get(p), ".1f") for p in ("fused", "torch", "reference") if p in providers]
        ratio = saved["fused"] / saved["reference"] if "fused" in saved and "reference" in saved else None
        cells += [_fmt(ratio, ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[dict], providers: list[str], label: str = "total") -> str:
    """Total time over the given layers per provider and mode, and the headline ratios."""
    out = []
    for mode in sorted({r["mode"] for r in rows}):
        tot = {p: sum(r["ms"].get(p, float("nan")) for r in rows if r["mode"] == mode) for p in providers}
        parts = [f"{p} {tot[p]:.2f} ms" for p in providers]
        if "fused" in tot:
            parts += [f"{p}/fused {tot[p] / tot['fused']:.2f}x" for p in providers if p != "fused"]
            best = [best_baseline(r["ms"])[1] for r in rows if r["mode"] == mode]
            if best and all(b is not None for b in best):
                parts.append(f"best baseline/fused {sum(best) / tot['fused']:.2f}x")
        out.append(f"- {label} {mode}: " + ", ".join(parts))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 8 on CUDA, 2 on CPU)")
    ap.add_argument("--length", type=int, default=None, help="Op-GAN input length (default 32000 CUDA, 4000 CPU)")
    ap.add_argument("--quick", action="store_true", help="a few representative shapes, fewer repeats")
    ap.add_argument("--sweep", action="store_true", help="add the C / L / q scaling sweep")
    ap.add_argument("--context", action="store_true",
                    help="add the dilated context blocks' layers (gen.ctx.*; totalled apart from the 16)")
    ap.add_argument("--providers", default=None, help="comma list of " + ",".join(PROVIDERS))
    ap.add_argument("--modes", default="fwd,fwd+bwd")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.05, help="seconds of timed calls per cell at least")
    ap.add_argument("--no-tf32", action="store_true", help="fp32 IEEE everywhere (default: PyTorch's TF32 flags)")
    ap.add_argument("--cpu-compile", action="store_true",
                    help="the torch.compile provider on a CPU too (inductor builds C++ per shape: minutes)")
    args = ap.parse_args(argv)

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is available")
    if device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    B = args.batch or (8 if device == "cuda" else 2)
    L = args.length or (32000 if device == "cuda" else 4000)
    args.repeats = args.repeats or (5 if args.quick else 10)

    layers = opgan_layers(L, context=args.context)
    if args.quick:
        keep = {"gen.down1", "gen.down4", "gen.up2", "gen.out_T", "disc.1", "disc.3", "gen.ctx.d8", "gen.ctx.proj"}
        layers = [la for la in layers if la.name in keep]
    if args.sweep:
        layers += sweep_layers()
    wanted = args.providers.split(",") if args.providers else list(PROVIDERS)
    providers = []
    for p in wanted:
        if p not in PROVIDERS:
            ap.error(f"unknown provider {p!r}; choose from {list(PROVIDERS)}")
        reason = provider_available(p, device, cpu_compile=args.cpu_compile)
        if reason:
            print(f"# skipping provider {p}: {reason}", file=sys.stderr)
        else:
            providers.append(p)
    modes = args.modes.split(",")
    settings = fair_baselines()  # cuDNN times its algorithms per shape: the warm-up calls search

    t0 = time.perf_counter()
    rows = run(layers, providers, modes, B, device, args)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"\n## Self-ONN layers: {name}, B={B}, Op-GAN input L={L}, fp32 "
          f"(cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, cudnn.benchmark={settings['cudnn_benchmark']}, "
          f"torch.compile({', '.join(f'{k}={v}' for k, v in COMPILE_SETTINGS.items())})), torch {torch.__version__}\n")
    print(table(rows, providers, device))
    print()
    paper = [r for r in rows if not r["layer"].name.startswith("sweep") and not is_context(r["layer"])]
    print(summary(paper, providers))
    ctx = [r for r in rows if is_context(r["layer"])]
    if ctx:
        print(summary(ctx, providers, f"context layers ({len({r['layer'].name for r in ctx})}, not in the total)"))
    print(f"\n(ratios > 1x: the provider is slower than {'fused' if 'fused' in providers else 'torch'}; "
          f"wall time of this report {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
