"""Fill a Triton cache for a GPU round here, without a GPU: compile time stays off the GPU machine.

    python tools/gpu/prewarm_cache.py --pack         # -> .triton-cache/ and .triton-cache.tar.xz (~16 MB)
    # then, on the device (carry .triton-cache.tar.xz):
    python tools/gpu/gpu_round.py --triton-cache .triton-cache.tar.xz

It runs the GPU round's own ``compile_work`` (every layer cell, fwd+bwd, each dtype, every eager
fused train-step variant and the knobs cells) through :func:`selfonn.kernels.precompile.precompile`
with a CPU stand-in for an sm_90 GPU, so the cache holds the entries the round's JIT will look up.
A Triton cache key covers the Triton build (its version, its Python sources and the hash of
``libtriton.so``), the compile target and options and the cache-relevant ``TRITON_*`` environment.
So the script:

- compiles with the device's Triton version (``--triton``, default 3.6.0, what the GPU machines carry):
  if another is installed it fetches that version's wheel for this Python from PyPI (cached under
  ``~/.cache/opgan/wheels``) and re-runs itself with it;
- keys the entries for the device's Python build (``--device-python``, default 3.12): wheels for two
  Pythons differ only in their shared libraries, so the key is this build's with the device build's
  ``libtriton.so`` hash in place of this one's (that wheel is fetched too);
- refuses to run with cache-relevant ``TRITON_*`` variables set, and keeps only binaries and
  metadata (``TRITON_STORE_BINARY_ONLY``, not part of the key).

``PREWARM.json`` in the folder says what it holds. On the device the round's ``compile`` section
reports how many cubins were there before and after: equal counts mean every variant was found.
Here each run says how many cubins it wrote and how many it found, so a second run into the same
folder (without ``--pack``) checks that every key is found again.

Triton's cache names each entry's files by absolute path (its ``__grp__*.json``): an entry is found
only where its files are where they were written. The round unpacks its pack at the path it was
built at (the repository root, the same path here and on the GPU machines); ``triton_pack.unpack`` puts a
pack anywhere and rewrites those paths (``tools/gpu/gpu_continue.sh run`` uses it).

Training mode: ``--training`` names run folders (each with the ``config.json`` that ``train.py
--resume`` trains on) and compiles what a GPU session of those runs compiles early, in place of the
round's work:

    python tools/gpu/prewarm_cache.py --training training/speech-spectral-norm,training/music-spectral-norm --pack
    # -> .gpu/triton-cache/ and .gpu/triton-cache.tar.xz (tools/gpu/gpu_continue.sh prepare runs this)

- the trainer's ``precompile_kernels`` before the first step (``opgan.trainer.precompile_passes``: G
  forward, D on real + fake and on fake, each backward) on the batch it trains on, (batch_size, 1,
  clip_len), with every candidate config of every key (tuning on, as on a fresh GPU);
- the validation forward it compiles lazily at its first validation (eval mode, no gradients,
  ``enhance_clips`` on each validation batch shape: ``val_clips`` of the val split of
  ``--training-data``, default the run's ``data``, in ``batch_size`` batches; skipped with a note
  when that data cannot be opened).

Runs whose models and shapes are the same (the shipped speech and music runs) are compiled once.
Not included: a second-pass run's frozen first pass, DDP runs (the trainer precompiles single-process
runs only) and ``torch.compile``'s own kernels. ``tools/gpu/gpu_continue.sh run`` points
``TRITON_CACHE_DIR`` at the unpacked pack.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import logging
import lzma
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


WHEELS = Path.home() / ".cache" / "opgan" / "wheels"


def _wheel(version: str, python: str) -> Path:
    """Triton ``version``'s manylinux x86_64 wheel for CPython ``python`` (e.g. "3.12"), from PyPI, cached."""
    tag = "cp" + python.replace(".", "")
    found = sorted(WHEELS.glob(f"triton-{version}-{tag}-{tag}-*.whl"))
    if found:
        return found[0]
    WHEELS.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           python, "--implementation", "cp", "--platform", "manylinux_2_27_x86_64", "--platform",
           "manylinux_2_28_x86_64", "-d", str(WHEELS), f"triton=={version}"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(WHEELS.glob(f"triton-{version}-{tag}-{tag}-*.whl"))
    if r.returncode != 0 or not found:
        raise RuntimeError(f"pip download triton=={version} for Python {python} failed: "
                           f"{(r.stderr or r.stdout).strip().splitlines()[-1:] or ['?']}")
    return found[0]


def _extracted(wheel: Path) -> Path:
    site = wheel.with_suffix("")  # .../triton-X-cpYY-...-x86_64 (a folder beside the wheel)
    if not (site / "triton" / "__init__.py").is_file():
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                z.extract(info, site)
                mode = (info.external_attr >> 16) & 0o777
                if mode:  # zipfile drops permissions: ptxas and friends must stay executable
                    os.chmod(site / info.filename, mode)
    return site


def _sha256(f) -> str:
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def _key_for_device_build(wheel: Path) -> None:
    """Make Triton key cache entries as the build in ``wheel`` (another Python's) would.

    ``triton_key()`` is the version plus digests of Triton's Python sources and of ``libtriton.so``;
    wheels of one version for two Pythons differ only in their shared libraries (checked here for the
    sources), so the device build's key is this one's with its libtriton digest swapped in."""
    import triton
    from triton.runtime import cache

    root = Path(triton.__file__).parent
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith("triton/") and name.endswith(".py"):
                local = root.parent / name
                if not local.is_file() or local.read_bytes() != z.read(name):
                    raise RuntimeError(f"{name} differs between this Triton and {wheel.name}")
        with z.open("triton/_C/libtriton.so") as f:
            theirs = _sha256(f)
    with open(root / "_C" / "libtriton.so", "rb") as f:
        ours = _sha256(f)
    original = cache.triton_key()
    if ours not in original:
        raise RuntimeError("this Triton's key does not hold its libtriton digest where expected")
    device_key = original.replace(ours, theirs)
    cache.triton_key = lambda: device_key  # get_cache_key() looks it up at each call


def training_plans(run_dirs: list[Path], data: str | None = None) -> list[dict]:
    """What a GPU session of each run compiles early (see the module docstring), as plain data: the
    run folders, the model config, the training batch's shape, the validation batches' shapes, whether
    D runs (adversarial) and bf16. Runs that would compile the same are merged into one plan."""
    from opgan.config import TrainConfig

    plans: dict[str, dict] = {}
    for run_dir in run_dirs:
        path = run_dir / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir}: no config.json (a train.py run folder)")
        cfg = TrainConfig.from_dict(json.loads(path.read_text()))
        cfg.validate()
        plan = {"config": {k: getattr(cfg, k) for k in _MODEL_FIELDS}, "train": [cfg.batch_size, 1, cfg.clip_len],
                "validation": _validation_shapes(cfg, data), "adversarial": cfg.lambda_adv > 0, "bf16": cfg.bf16}
        if cfg.second_pass_of:
            plan["note"] = "second pass: its frozen first pass is not compiled"
        key = json.dumps(plan, sort_keys=True)
        plans.setdefault(key, {"runs": [], **plan})["runs"].append(str(run_dir))
    return list(plans.values())


# the config fields build_models reads that change a kernel (gate_floor, gate_leak and activation do not)
_MODEL_FIELDS = ("filters", "d_filters", "q", "g_q", "d_q", "residual", "gate", "context", "context_blocks",
                 "context_width", "arch", "spectral_n_fft", "spectral_hidden", "spectral_blocks", "spectral_gate",
                 "spectral_df_order", "spectral_df_bins")


def _validation_shapes(cfg, data: str | None) -> list[list[int]]:
    """The (batch, 1, length) shapes the trainer's validation restores, as ``opgan.trainer.validate``
    batches its clips (the length of the val split's first clip; [] when that data cannot be opened)."""
    from opgan.data import datasets as D

    spec = cfg.val_data or data or cfg.data
    try:
        if not spec:
            raise FileNotFoundError("the run trains on the default set (no data to look at)")
        val = D.open_dataset(spec, "val", kind=cfg.data_kind, seed=cfg.val_seed)
        length = int(val[0][0].shape[-1])
    except (OSError, ValueError, RuntimeError) as e:
        print(f"prewarm_cache: {cfg.name}: no validation shapes ({e}); its validation compiles on the GPU",
              file=sys.stderr)
        return []
    n = len(val) if not cfg.val_clips else min(cfg.val_clips, len(val))
    sizes = sorted({min(cfg.batch_size, n - lo) for lo in range(0, n, cfg.batch_size)}, reverse=True)
    return [[b, 1, length] for b in sizes]


def training_work(plans: list[dict]):
    """The passes of :func:`training_plans`' plans, on CPU tensors with the fused backend (for
    :func:`selfonn.kernels.precompile.precompile` with a target)."""
    import contextlib

    import torch

    import selfonn
    from opgan.config import TrainConfig
    from opgan.enhance import enhance_clips
    from opgan.trainer import build_models, precompile_passes

    def run() -> None:
        for plan in plans:
            cfg = TrainConfig(**plan["config"])
            torch.manual_seed(0)
            g, d = build_models(cfg)
            # the trainer's bf16 autocast is CUDA's; CPU tensors stand in for CUDA ones here
            autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if plan["bf16"] else contextlib.nullcontext
            gen = torch.Generator().manual_seed(1)
            y = (torch.rand(plan["train"], generator=gen) - 0.5) * 0.8
            x = (y + 0.1 * torch.randn(plan["train"], generator=gen)).clamp(-1, 1)
            with selfonn.use_backend("triton"):
                precompile_passes(g, d, x, y, plan["adversarial"], autocast)()
                g.eval()  # validation: eval mode, no gradients, no autocast (opgan.trainer.validate)
                with torch.inference_mode():
                    for shape in plan["validation"]:
                        enhance_clips(g, (torch.rand(shape, generator=gen) - 0.5) * 0.8)

    return run


def _describe(plans: list[dict]) -> str:
    def one(p: dict) -> str:
        c = p["config"]
        val = ", ".join("x".join(map(str, s[::2])) for s in p["validation"]) or "none"
        return (f"{','.join(p['runs'])}: f={c['filters']} q={c['g_q'] or c['q']}, train {p['train'][0]}x{p['train'][2]}"
                f"{' (G only)' if not p['adversarial'] else ''}{' bf16' if p['bf16'] else ''}, validation {val}"
                + (f" ({p['note']})" if p.get("note") else ""))

    return "; ".join(one(p) for p in plans)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None,
                    help="cache folder to fill (created; existing entries kept, except with --pack); default "
                         ".triton-cache, with --training .gpu/triton-cache")
    ap.add_argument("--target", default="cuda:90", help="GPU architecture to compile for (H100/H200: cuda:90)")
    ap.add_argument("--sms", type=int, default=None,
                    help="its streaming multiprocessors, which split sizes depend on (default: H100/H200's)")
    ap.add_argument("--triton", default="3.6.0", help="the device's Triton version (fetched for this Python if needed)")
    ap.add_argument("--device-python", default="3.12", help="the device's Python (its libtriton.so is in every key)")
    ap.add_argument("--workers", type=int, default=0, help="compile threads (default: all CPUs)")
    ap.add_argument("--pack", action="store_true",
                    help="start OUT afresh (a previous prewarm's folder only) and also write OUT.tar.xz (what to "
                         "carry: ~4x smaller)")
    ap.add_argument("--round-args", default="", help="gpu_round arguments that change shapes, e.g. '--dtypes tf32'")
    ap.add_argument("--training", default="", metavar="DIR[,DIR...]",
                    help="compile what a GPU session of these train.py run folders compiles early, not the round's work")
    ap.add_argument("--training-data", default=None, metavar="PATH",
                    help="with --training: the data the runs validate on (as train.py --data; default: each "
                         "run's config), read for the validation clips' shapes")
    args = ap.parse_args(argv)
    if args.training and args.round_args:
        ap.error("--round-args applies to the round's work, not --training's")
    if args.out is None:
        args.out = ".gpu/triton-cache" if args.training else ".triton-cache"

    if os.environ.get("TRITON_INTERPRET") == "1":
        print("prewarm_cache: unset TRITON_INTERPRET (this compiles real kernels)", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    if args.pack and out.is_dir() and any(out.iterdir()):
        # A pack carries only what this run compiles: entries of older kernel sources (a Triton key
        # holds each kernel's source and first line number) would only add megabytes.
        if not (out / "PREWARM.json").is_file():
            print(f"prewarm_cache: {out} holds entries this script did not write; --pack needs a fresh or "
                  "previous prewarm folder", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"prewarm_cache: cannot create {out}: {e.strerror}", file=sys.stderr)
        return 2
    os.environ["TRITON_CACHE_DIR"] = str(out)  # before Triton reads its knobs
    os.environ["TRITON_STORE_BINARY_ONLY"] = "1"  # not part of any cache key (checked below)

    import triton

    here_py = f"{sys.version_info.major}.{sys.version_info.minor}"
    if triton.__version__ != args.triton:
        if os.environ.get("PREWARM_SITE"):
            print(f"prewarm_cache: still Triton {triton.__version__} after switching to {args.triton}", file=sys.stderr)
            return 2
        try:
            site = _extracted(_wheel(args.triton, here_py))
        except (OSError, RuntimeError) as e:
            print(f"prewarm_cache: cannot get Triton {args.triton} for this Python: {e}", file=sys.stderr)
            return 2
        env = {**os.environ, "PREWARM_SITE": str(site),
               "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
        print(f"prewarm_cache: Triton {triton.__version__} here; re-running with {args.triton} from {site}",
              file=sys.stderr)
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *(argv if argv is not None
                                                                                      else sys.argv[1:])], env)
    from triton._C.libtriton import get_cache_invalidating_env_vars

    if args.device_python != here_py:
        try:
            _key_for_device_build(_wheel(args.triton, args.device_python))
        except (OSError, RuntimeError, KeyError) as e:
            print(f"prewarm_cache: cannot key the cache for Python {args.device_python}'s Triton: {e}", file=sys.stderr)
            return 2
    invalidating = get_cache_invalidating_env_vars()
    if invalidating:
        print(f"prewarm_cache: unset {sorted(invalidating)}: they change every cache key", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    from selfonn.kernels.precompile import DEFAULT_OFFLINE_SMS, precompile

    sms = args.sms or DEFAULT_OFFLINE_SMS
    torch.backends.cuda.matmul.allow_tf32 = True  # as the round sets them (and PyTorch's default for cuDNN,
    torch.backends.cudnn.allow_tf32 = True  # which the kernels follow: the trainer leaves it so)
    what: dict = {}
    if args.training:
        try:
            plans = training_plans([Path(d) for d in args.training.split(",") if d], args.training_data)
        except (OSError, ValueError) as e:
            print(f"prewarm_cache: --training: {e}", file=sys.stderr)
            return 2
        print(f"prewarm_cache: {_describe(plans)}", file=sys.stderr)
        work, what["training"] = training_work(plans), plans
    else:
        sys.path[:0] = [str(HERE), str(ROOT / "bench")]  # gpu_round, and the _common it imports
        import gpu_round

        work = gpu_round.compile_work(gpu_round._parse(args.round_args.split()), {"device": "cpu"})
    t0, started = time.perf_counter(), time.time() - 1  # (a file system's mtimes may be coarse)
    report = precompile(work, workers=args.workers or None, target=args.target, sms=sms)
    files = [p for p in out.rglob("*") if p.is_file()]
    manifest = {
        "triton": triton.__version__, "keyed_for_python": args.device_python, "torch": torch.__version__,
        "target": args.target, "sms": sms,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "tools/gpu/prewarm_cache.py", *(argv if argv is not None else sys.argv[1:])]),
        "variants": report.variants, "total": report.total, "failed": report.failed,
        "compile_s": round(report.seconds, 1), "workers": report.workers,
        "cubins": sum(1 for p in files if p.suffix == ".cubin"),
        # cubins this run wrote (compiled): the rest were found (Triton rewrites an entry it compiles again)
        "cubins_written": sum(1 for p in files if p.suffix == ".cubin" and p.stat().st_mtime >= started),
        "mib": round(sum(p.stat().st_size for p in files) / 2**20, 1), **what,
    }
    (out / "PREWARM.json").write_text(json.dumps(manifest, indent=1) + "\n")
    packed = ""
    if args.pack:
        import tarfile

        # xz: the variants' cubins share most of their bytes, and xz's window finds it across files
        # (~14 MiB where gzip wrote ~32 for 763 variants): the pack and the tree must travel in 64 MiB.
        # Extreme preset 9: 22.3 MiB where preset 6 wrote 28.6 for the round's 1418 variants (~3 min more here).
        with tarfile.open(f"{out}.tar.xz", "w:xz", preset=9 | lzma.PRESET_EXTREME) as tar:
            tar.add(out, arcname=out.name)
        packed = f" and {out}.tar.xz ({Path(f'{out}.tar.xz').stat().st_size / 2**20:.1f} MiB)"
    print(f"prewarm_cache: {report.total} variants ({manifest['cubins']} cubins, {manifest['cubins_written']} of them "
          f"compiled now, the rest found; {manifest['mib']} MiB) in {time.perf_counter() - t0:.0f} s for {args.target} "
          f"with Triton {triton.__version__} -> {out}{packed}" + (f"; {len(report.failed)} FAILED" if report.failed else ""),
          file=sys.stderr)
    if args.pack and not args.training:
        # the round's call carries the pack and the wheels (.whl) with the tree: it must stay under the limit
        sys.path.insert(0, str(HERE))
        from triton_pack import TRAVEL_MIB, travel_mib

        root = ROOT
        try:
            tree, extra = travel_mib(root, [Path(f"{out}.tar.xz"), root / ".whl"])
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"prewarm_cache: could not size what travels ({exc})", file=sys.stderr)
        else:
            total = tree + extra
            print(f"prewarm_cache: call 1 carries tree {tree:.1f} MiB + pack and .whl {extra:.1f} MiB = {total:.1f} "
                  f"of the {TRAVEL_MIB:.0f} MiB that may travel", file=sys.stderr)
            if total > TRAVEL_MIB:
                print(f"prewarm_cache: {total:.1f} MiB would not travel in one call; leave .whl out of the carry or "
                      f"shrink the tree", file=sys.stderr)
                return 1
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
