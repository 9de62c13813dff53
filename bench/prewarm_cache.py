"""Fill a Triton cache for a GPU round here, without a GPU: compile time stays off the lent device.

    PYTHONPATH=/path/to/triton-3.6-site python bench/prewarm_cache.py --expect-triton 3.6.0 --pack
    # then, on the device (carry .triton-cache.tar.gz):
    python bench/gpu_round.py --triton-cache .triton-cache.tar.gz

It runs the GPU round's own ``compile_work`` (every layer cell, fwd+bwd, each dtype, and every eager
fused train-step variant) through :func:`selfonn.kernels.precompile.precompile` with a CPU stand-in
for an sm_90 GPU, so the cache holds the very entries the round's JIT will look up. A key matches
only the same Triton build (its source hash is in every key) and the same cache-relevant ``TRITON_*``
environment, so the script names the Triton it needs (``--expect-triton``, the GPU machines carry
3.6) and refuses to run with such variables set. Only binaries and metadata are kept
(``TRITON_STORE_BINARY_ONLY``), about 10x smaller than the full cache. ``PREWARM.json`` in the folder
says what it holds.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".triton-cache", help="cache folder to fill (created; existing entries kept)")
    ap.add_argument("--target", default="cuda:90", help="GPU architecture to compile for (H100/H200: cuda:90)")
    ap.add_argument("--sms", type=int, default=132, help="its streaming multiprocessors (split sizes depend on it)")
    ap.add_argument("--expect-triton", default="", help="refuse to run under any other Triton version")
    ap.add_argument("--workers", type=int, default=0, help="compile threads (default: all CPUs)")
    ap.add_argument("--pack", action="store_true", help="also write OUT.tar.gz (what to carry: ~4x smaller)")
    ap.add_argument("--round-args", default="", help="gpu_round arguments that change shapes, e.g. '--dtypes tf32'")
    args = ap.parse_args(argv)

    out = Path(args.out).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"prewarm_cache: cannot create {out}: {e.strerror}", file=sys.stderr)
        return 2
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("prewarm_cache: unset TRITON_INTERPRET (this compiles real kernels)", file=sys.stderr)
        return 2
    os.environ["TRITON_CACHE_DIR"] = str(out)  # before Triton reads its knobs
    os.environ["TRITON_STORE_BINARY_ONLY"] = "1"  # not part of any cache key (checked below)

    import triton
    from triton._C.libtriton import get_cache_invalidating_env_vars

    if args.expect_triton and triton.__version__ != args.expect_triton:
        print(f"prewarm_cache: this is Triton {triton.__version__}, the device runs {args.expect_triton}: its keys "
              f"would not match (install that version's wheel on PYTHONPATH)", file=sys.stderr)
        return 2
    invalidating = get_cache_invalidating_env_vars()
    if invalidating:
        print(f"prewarm_cache: unset {sorted(invalidating)}: they change every cache key", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(HERE))
    import gpu_round
    import torch

    from selfonn.kernels.precompile import precompile

    round_args = gpu_round._parse(args.round_args.split())
    torch.backends.cuda.matmul.allow_tf32 = True  # as the round sets them
    torch.backends.cudnn.allow_tf32 = True
    ctx = {"device": "cpu"}
    t0 = time.perf_counter()
    report = precompile(gpu_round.compile_work(round_args, ctx), workers=args.workers or None, target=args.target,
                        sms=args.sms)
    files = [p for p in out.rglob("*") if p.is_file()]
    manifest = {
        "triton": triton.__version__, "torch": torch.__version__, "target": args.target, "sms": args.sms,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/prewarm_cache.py", *(argv if argv is not None else sys.argv[1:])]),
        "variants": report.variants, "total": report.total, "failed": report.failed,
        "compile_s": round(report.seconds, 1), "workers": report.workers,
        "cubins": sum(1 for p in files if p.suffix == ".cubin"), "mib": round(sum(p.stat().st_size for p in files) / 2**20, 1),
    }
    (out / "PREWARM.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if args.pack:
        import tarfile

        with tarfile.open(f"{out}.tar.gz", "w:gz") as tar:
            tar.add(out, arcname=out.name)
        manifest["tar_mib"] = round(Path(f"{out}.tar.gz").stat().st_size / 2**20, 1)
    (out / "PREWARM.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"prewarm_cache: {report.total} variants ({manifest['cubins']} cubins, {manifest['mib']} MiB) in "
          f"{time.perf_counter() - t0:.0f} s for {args.target} with Triton {triton.__version__} -> {out}"
          + (f"; {len(report.failed)} FAILED" if report.failed else ""), file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
