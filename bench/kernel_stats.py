"""What the fused kernels compile to for sm_90, per Op-GAN layer, without a GPU: the offline view of
why a kernel is slower than cuDNN's, before anyone changes it.

    python bench/kernel_stats.py --triton 3.6.0                   # the layers the speed issue names, all candidates
    python bench/kernel_stats.py --layers all                     # all 16 layers (~15 min on 2 loaded cores)
    python bench/kernel_stats.py --triton 3.6.0 --alt fwd_transposed=True \
        --out bench/results/2026-12-05-sm90-stats.json            # + a forward variant, and the JSON record

Each layer's forward and backward (B=8, L=32000, q=3, fp32 with TF32, as the GPU round runs them) go
through the fused path with every launch replaced by compiling, offline for sm_90 (132 SMs), the
configs a first call would tune over: all candidates (``selfonn.kernels.precompile``'s stand-in
driver; compiles on a thread pool). Per compiled variant: tile, warps, stages, programs (and waves on
132 SMs), registers/thread, spill stores / loads (``ptxas -v`` on the PTX), shared memory, theoretical
occupancy on sm_90 from registers and shared memory, the MMA kind and count in the SASS (HGMMA =
wgmma, HMMA = mma.sync; cuobjdump), whether ptxas serialises the wgmma (its C7515 notice), and the
instructions of the main loop (around the first MMA; in a kernel without MMA the largest innermost
loop that loads) and of the whole kernel. Where a GPU-round record (``--gpu-record``, default the
newest in bench/results with autotune picks) timed the same tune key, its pick is marked and each
candidate's median µs is given. gen.out_T's single-channel forward gets a roofline.

``--triton``: compile with that version (the GPU machines carry 3.6.0); registers, instruction
counts and even wgmma scheduling differ between Triton versions, so compare records of one version.
``bench/tables.py`` renders the newest record into docs/kernels.md (block ``sm90-stats``).
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import difflib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _bench_path() -> None:
    """bench/'s modules (_common, tables) importable, as when run as a script."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))


log = logging.getLogger("kernel_stats")

#: layers the speed issue names (fused GEMMs slower than cuDNN's; gen.out_T's thin forward)
NAMED = ("gen.up2", "gen.down4", "gen.down5", "gen.up3", "gen.out_T")
BATCH, LENGTH, Q = 8, 32000, 3
SMS = 132  # H100 SXM and H200

#: sm_90 per-SM limits (CUDA occupancy calculator, compute capability 9.0)
SM90 = {"regs_per_sm": 65536, "reg_alloc_unit_per_warp": 256, "max_warps_per_sm": 64, "max_blocks_per_sm": 32,
        "smem_per_sm": 233472, "smem_reserved_per_block": 1024}
#: what the roofline uses: HBM bandwidth and fp32 (CUDA-core FMA) peak, dense, boost clock (vendor datasheets)
DEVICES = {"H100 SXM": {"hbm_tb_s": 3.35, "fp32_tflop_s": 67.0}, "H200": {"hbm_tb_s": 4.8, "fp32_tflop_s": 67.0}}
#: which pass each kernel serves, by layer kind (gather / scatter modes of _mm_kernel swap for a transposed conv)
_ROLE = {("gather", False): "fwd", ("scatter", False): "grad_x", ("gather", True): "grad_x",
         ("scatter", True): "fwd", ("dw", False): "grad_W", ("dw", True): "grad_W", ("thin_fwd", False): "fwd",
         ("thin_fwd", True): "fwd"}


def _bin(tool: str) -> Path:
    import triton

    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / tool


# ---- SASS --------------------------------------------------------------------------------------------

_INS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);")


def _mnemonics(sass: str) -> list[tuple[int, str]]:
    """(address, mnemonic with its modifiers) of every instruction, predicates dropped."""
    return [(int(a, 16), re.sub(r"^@!?U?P\w+\s+", "", op.strip()).split()[0])
            for a, op in _INS.findall(sass) if op.strip()]


def _width(mn: str) -> int:
    """Bytes an STL / LDL moves (``.64`` 8, ``.128`` 16, else 4)."""
    m = re.search(r"\.(64|128)\b", mn)
    return int(m.group(1)) // 8 if m else 4


def _is_mma(mn: str) -> bool:
    """A tensor-core MMA (HGMMA: wgmma, HMMA: mma.sync; not HFMA2.MMA, a move on the FMA pipe)."""
    return mn.startswith(("HGMMA", "HMMA", "IMMA", "DMMA"))


def _mma_kind(mns: list[str]) -> tuple[str, int]:
    hg = sum(m.startswith("HGMMA") for m in mns)
    hm = sum(m.startswith("HMMA") for m in mns)
    if hg:
        return "wgmma", hg
    if hm:
        return "mma.sync", hm
    return "none", 0


def loop_census(sass: str) -> dict[str, int]:
    """The main loop: the innermost loop (a backward branch around it) holding the first MMA, or in a
    kernel without MMA the largest innermost loop that loads from global memory; its instructions,
    async copies, global loads, MMAs, FMAs and spill accesses. ``{}`` when there is no such loop."""
    ins = [(int(a, 16), op.strip()) for a, op in _INS.findall(sass)]
    mnemonic = [re.sub(r"^@!?U?P\w+\s+", "", op).split()[0] for _, op in ins]
    loops = []  # (first index, last index) of every backward branch's range
    for j, (_, op) in enumerate(ins):
        m = re.search(r"\bBRA (0x[0-9a-f]+)", op)
        if m and int(m.group(1), 16) <= ins[j][0]:
            start = next(i for i, (a, _) in enumerate(ins) if a >= int(m.group(1), 16))
            loops.append((start, j))
    first = next((i for i, m in enumerate(mnemonic) if _is_mma(m)), None)
    if first is not None:
        around = [lp for lp in loops if lp[0] <= first <= lp[1]]
        loop = min(around, key=lambda lp: lp[1] - lp[0]) if around else None
    else:
        inner = [lp for lp in loops if not any(o != lp and lp[0] <= o[0] and o[1] <= lp[1] for o in loops)
                 and any(mn.split(".")[0] == "LDG" for mn in mnemonic[lp[0]:lp[1] + 1])]
        loop = max(inner, key=lambda lp: lp[1] - lp[0]) if inner else None
    if loop is None:
        return {}
    body = mnemonic[loop[0]:loop[1] + 1]
    return {"instructions": len(body), "ldgsts": sum(mn.startswith("LDGSTS") for mn in body),
            "ldg": sum(mn.split(".")[0] == "LDG" for mn in body), "mma": sum(_is_mma(mn) for mn in body),
            "ffma": sum(mn.split(".")[0] in ("FFMA", "FMUL", "FADD") for mn in body),
            "wgmma_waits": sum(mn.startswith("WARPGROUP.DEPBAR") for mn in body),
            "spill_ops": sum(mn.split(".")[0] in ("STL", "LDL") for mn in body)}


def cubin_stats(cubin: bytes) -> dict[str, Any]:
    """Registers, stack, MMA kind and count, wgmma waits, loop and total instruction counts of one cubin
    (cuobjdump's resource line and SASS)."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        listing = subprocess.run([str(_bin("cuobjdump")), "--dump-resource-usage", "-sass", f.name],
                                 capture_output=True, text=True, check=True).stdout
    m = re.search(r"REG:(\d+)\s+STACK:(\d+).*?LOCAL:(\d+)", listing, re.S)
    ins = [mn for _, mn in _mnemonics(listing)]
    kind, count = _mma_kind(ins)
    real = [mn for mn in ins if mn != "NOP"]
    return {"regs": int(m.group(1)) if m else None, "stack": int(m.group(2)) if m else None,
            "local": int(m.group(3)) if m else None,
            "sass_spill_store_bytes": sum(_width(mn) for mn in ins if mn.split(".")[0] == "STL"),
            "sass_spill_load_bytes": sum(_width(mn) for mn in ins if mn.split(".")[0] == "LDL"),
            "mma": kind, "mma_count": count, "sass_instructions": len(real), "loop": loop_census(listing)}


def _ptxas() -> list[str]:
    """Triton's ptxas for sm_90 and the options it adds that change register allocation (newer
    Tritons take a newer ptxas for sm_90 and ``--regAllocOptLevel=2``)."""
    import inspect

    from triton.backends.nvidia import compiler

    try:
        tool = compiler.get_ptxas(90).path
    except (AttributeError, TypeError):
        tool = str(_bin("ptxas"))
    extra = ["--regAllocOptLevel=2"] if "regAllocOptLevel=2" in inspect.getsource(compiler) else []
    return [tool, *extra]


def ptxas_report(ptx: str, arch: str = "sm_90a") -> dict[str, Any]:
    """What ``ptxas -v`` says of the PTX: spill store / load bytes, registers, and its C7515 notice
    (wgmma serialised, with the reason) when it gives one."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        r = subprocess.run([*_ptxas(), "-lineinfo", "-v", f"--gpu-name={arch}", str(src), "-o",
                            str(Path(d) / "k.cubin")], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"ptxas failed: {(r.stderr or r.stdout).strip()[-300:]}")
    log_ = r.stderr + r.stdout
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log_)
    regs = re.search(r"Used (\d+) registers", log_)
    serial = re.search(r"wgmma\.mma_async instructions are serialized due to (.*?) in the function", log_)
    return {"spill_store_bytes": int(spill.group(1)) if spill else None,
            "spill_load_bytes": int(spill.group(2)) if spill else None,
            "ptxas_regs": int(regs.group(1)) if regs else None,
            "wgmma_serialized": serial.group(1) if serial else None}


def variant_stats(cubin: bytes, ptx: str) -> dict[str, Any]:
    return {**cubin_stats(cubin), **ptxas_report(ptx)}


def occupancy(regs: int, smem: int, warps: int) -> dict[str, Any]:
    """Resident blocks and warps per SM on sm_90 from registers/thread and shared memory/block, and
    which of them (or the warp / block caps) limits it."""
    per_warp = -(-regs * 32 // SM90["reg_alloc_unit_per_warp"]) * SM90["reg_alloc_unit_per_warp"]
    limits = {"regs": (SM90["regs_per_sm"] // per_warp) // warps if per_warp else SM90["max_blocks_per_sm"],
              "smem": SM90["smem_per_sm"] // (smem + SM90["smem_reserved_per_block"]),
              "warps": SM90["max_warps_per_sm"] // warps, "blocks": SM90["max_blocks_per_sm"]}
    blocks = min(limits.values())
    return {"blocks_per_sm": blocks, "warps_per_sm": blocks * warps,
            "limit": min(limits, key=lambda k: (limits[k], k != "regs"))}


def thin_forward_roofline(layer: Any, batch: int = BATCH) -> dict[str, Any]:
    """Bytes a single-channel forward must move (x read once, y written once, W and bias) and its
    FLOPs (one multiply-add per weight per output sample, the powers included), against each device's
    HBM bandwidth and fp32 FMA peak (the thin kernels use no tensor cores)."""
    l_out = layer.L_out
    elems = batch * (layer.c_in * layer.L_in + layer.c_out * l_out) + layer.q * layer.c_in * layer.c_out * layer.k
    nbytes = 4 * elems
    taps = layer.k / (layer.stride if layer.transposed else 1)  # a transposed conv's output meets k/s taps
    flops = int(2 * batch * layer.c_out * l_out * layer.q * layer.c_in * taps)
    flops += batch * layer.c_in * layer.L_in * (layer.q - 1)  # the powers
    out = {"bytes": nbytes, "flops": flops, "devices": {}}
    for dev, spec in DEVICES.items():
        mem_us = nbytes / (spec["hbm_tb_s"] * 1e12) * 1e6
        fl_us = flops / (spec["fp32_tflop_s"] * 1e12) * 1e6
        out["devices"][dev] = {**spec, "memory_us": round(mem_us, 2), "fp32_us": round(fl_us, 2),
                               "roofline_us": round(max(mem_us, fl_us), 2)}
    return out


# ---- the GPU round's picks -------------------------------------------------------------------------


def gpu_record(path: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The GPU-round record whose autotune picks mark the candidates (``path``, or the newest in
    bench/results that has them)."""
    paths = [path] if path else sorted((ROOT / "bench" / "results").glob("*.json"), reverse=True)
    for p in paths:
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            if path:
                raise SystemExit(f"kernel_stats: cannot read {p}: {exc}") from None
            continue
        if isinstance(rec, dict) and (rec.get("autotune") or {}).get("picks"):
            try:
                return rec, str(p.resolve().relative_to(ROOT))
            except ValueError:
                return rec, p.name
        if path:
            raise SystemExit(f"kernel_stats: {p} has no autotune picks")
    return None, None


def _tokens(key: str) -> list[str]:
    return re.findall(r"[\w.]+|'[^']*'", key)


def match_key(key: str, known: list[str]) -> str | None:
    """The round's tune key for ``key``: the same string, else the one that differs from it only by a
    few fields added or dropped since (the code moved on: e.g. grad_W's key gained its tail settings),
    never by a changed value (another layer's channels, length bucket or geometry)."""
    if key in known:
        return key
    mine, best = _tokens(key), None
    for k in known:
        ops = difflib.SequenceMatcher(None, mine, _tokens(k), autojunk=False).get_opcodes()
        if any(op == "replace" for op, *_ in ops):
            continue
        moved = sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in ops if op != "equal")
        if moved <= 4 and (best is None or moved < best[0]):
            best = (moved, k)
    return best[1] if best else None


def _picks(rec: dict[str, Any] | None) -> dict[str, dict[str, tuple[str, dict[str, float]]]]:
    """kernel name -> str(tune key) -> (picked config, {config: median ms}) from a round's autotune."""
    out: dict[str, dict[str, tuple[str, dict[str, float]]]] = {}
    for p in (rec or {}).get("autotune", {}).get("picks", []):
        m = re.search(r"\[(\w+)\]$", p.get("kernel", ""))
        if not m:
            continue
        for key, cfg in (p.get("picks") or {}).items():
            times = {c: ms for c, ms in (p.get("timings") or {}).get(key, []) if ms is not None}
            out.setdefault(m.group(1), {})[key] = (cfg, times)
    return out


def _device_profile(rec: dict[str, Any] | None, layer: str) -> dict[str, Any]:
    """The round's per-kernel profile of a layer (tf32, fwd+bwd): fused kernels and cuDNN's by role."""
    got: dict[str, Any] = {}
    for e in (rec or {}).get("profile") or []:
        if e.get("layer") == layer and e.get("dtype") == "tf32" and e.get("mode") == "fwd+bwd":
            got[e["provider"]] = [{"kernel": k["kernel"][:60], "us": round(k["us"], 1), "calls": k.get("calls"),
                                   "role": k.get("role")} for k in e.get("kernels", [])]
    return got


# ---- compiling what the fused path launches --------------------------------------------------------


@dataclass
class _Launch:
    """One launch the fused path would make, and the configs it would compile."""

    layer: str
    role: str
    kernel: str
    tune_key: str
    geometry: dict = field(default_factory=dict)  # the layer's K, stride, channels, q
    cfgs: list = field(default_factory=list)  # (Cfg, programs, compiled kernel or future)


def compile_layers(layers: list[Any], workers: int, dtype: str = "tf32", max_configs: int | None = None,
                   roles: tuple[str, ...] | None = None) -> list[_Launch]:
    """Every variant the fused fwd+bwd of ``layers`` would compile on a first call (``max_configs``: only
    each launch's first candidates; ``roles``: only those passes' launches), compiled for sm_90."""
    import torch

    _bench_path()
    from _common import PROVIDERS, make_inputs
    from selfonn.kernels import _launch
    from selfonn.kernels.precompile import _offline

    torch.backends.cudnn.allow_tf32 = dtype == "tf32"
    launches: list[_Launch] = []
    state = {"layer": None, "key": None}
    original = _launch.Kernel.configs_to_compile

    def configs_to_compile(self, tune_key, candidates):
        state["key"] = tune_key
        return original(self, tune_key, candidates)

    def hook(kernel, configs, prepare):
        layer = state["layer"]
        if kernel.name == "thin_bwd":
            role = "bwd" if prepare(configs[0])[0].get("HAS_DW", True) else "grad_x (2 launches)"
        elif kernel.name == "dw" and 1 in (layer.c_in, layer.c_out):  # the thin backward's two-launch way
            role = "grad_W (2 launches)"
        else:
            role = _ROLE[(kernel.name, layer.transposed)]
        if roles is not None and role not in roles:
            return
        rec = _Launch(layer.name, role, kernel.name, str(state["key"]),
                      {"k": layer.k, "stride": layer.stride, "c_in": layer.c_in, "c_out": layer.c_out, "q": layer.q})
        for cfg in configs[:max_configs]:
            _, n = prepare(cfg)
            try:
                ck = kernel.warmup(cfg, prepare)
            except Exception as exc:  # reported per config
                ck = exc
            rec.cfgs.append((cfg, n, ck))
        launches.append(rec)

    _launch.Kernel.configs_to_compile = configs_to_compile
    _launch._compile_hook = hook
    try:
        with _offline("cuda:90", SMS), _launch.async_compiles(workers):
            for layer in layers:
                state["layer"] = layer
                x, w, b = make_inputs(layer, BATCH, "cpu")
                y = PROVIDERS["fused"](layer)(x, w, b)
                y.backward(torch.ones_like(y))
    finally:
        _launch._compile_hook = None
        _launch.Kernel.configs_to_compile = original
    return launches


def _resolve(ck: Any) -> Any:
    if isinstance(ck, Exception):
        return ck
    try:
        return ck.result() if hasattr(ck, "result") else ck
    except Exception as exc:
        return exc


#: block sizes in the order a tile is read: GEMM rows (time) x output channels x reduction block;
#: grad_W rows x columns x (batch, time) step; thin channels x time (the backward: its dx tile, then grad_W's)
_TILE_ORDER = {"gather": ("T", "N", "R"), "scatter": ("T", "N", "R"), "dw": ("M", "N", "T"), "thin_fwd": ("C", "T"),
               "thin_bwd": ("C", "TX", "M", "N", "T")}


def tile_name(kernel: str, blocks: dict[str, int]) -> str:
    """``T128 N64 R32``; grad_W tiles end in ``pow`` (power tiles) or ``concat``; the thin backward's
    dx tile and grad_W tile are split by ``/``."""
    parts = [f"{k}{blocks['BLOCK_' + k]}" for k in _TILE_ORDER.get(kernel, ()) if "BLOCK_" + k in blocks]
    if kernel == "thin_bwd" and len(parts) > 2:
        parts.insert(2, "/")
    if "POW_TILES" in blocks:
        parts.append("pow" if blocks["POW_TILES"] else "concat")
    return " ".join(parts) or "-"


def gemm_loop(kernel: str, role: str, blocks: dict[str, int], geo: dict[str, int]) -> dict[str, int] | None:
    """The GEMM kernels' main loop per program: its trip count (taps x reduction blocks; a transposed
    layout's phase takes every stride-th tap) and the MMA FLOPs of one trip (q accumulating MMAs of
    a [T, R] x [R, N] tile: the forward's powers, grad_x's one pass); None for other kernels or q > 3."""
    if kernel not in ("gather", "scatter") or geo["q"] > 3:
        return None
    taps = geo["k"] if kernel == "gather" else -(-geo["k"] // geo["stride"])
    red = geo["c_in"] if role == "fwd" else geo["c_out"]
    t, n, r = blocks["BLOCK_T"], blocks["BLOCK_N"], blocks["BLOCK_R"]
    return {"iterations": taps * -(-red // r), "mma_flops": 2 * t * n * r * geo["q"]}


def analyse(launches: list[_Launch], workers: int, picks: dict) -> list[dict[str, Any]]:
    """One row per compiled variant of each launch (host-only split variants folded into their
    compiled variant), with its stats, occupancy, waves and the round's timing where it has one."""
    rows: list[dict[str, Any]] = []
    jobs: dict[int, Any] = {}
    for la in launches:
        known = picks.get(la.kernel, {})
        hit = match_key(la.tune_key, list(known))
        pick, times = known[hit] if hit else (None, {})
        seen: dict[tuple, dict[str, Any]] = {}
        for i, (cfg, n, ck) in enumerate(la.cfgs):
            variant = (cfg.blocks, cfg.num_warps, cfg.num_stages)
            ms = times.get(str(cfg))
            row = seen.get(variant)
            if row is None:
                row = {"layer": la.layer, "role": la.role, "kernel": la.kernel, "candidate": i,
                       "blocks": dict(cfg.blocks), "tile": tile_name(la.kernel, dict(cfg.blocks)),
                       "num_warps": cfg.num_warps,
                       "num_stages": cfg.num_stages, "programs": n, "host_variants": 0, "h200_us": None,
                       "h200_pick": False, "main_loop": gemm_loop(la.kernel, la.role, dict(cfg.blocks), la.geometry)}
                seen[variant] = row
                rows.append(row)
                ck = _resolve(ck)
                if isinstance(ck, Exception):
                    row["error"] = repr(ck)[:300]
                else:
                    row["smem"] = ck.metadata.shared
                    jobs[id(row)] = (ck.asm["cubin"], ck.asm["ptx"])
            row["host_variants"] += 1
            if ms is not None and (row["h200_us"] is None or ms * 1e3 < row["h200_us"]):
                row["h200_us"] = round(ms * 1e3, 1)  # the fastest split of this compiled variant
                if str(cfg) == pick:
                    row["h200_pick"] = True
                    row["programs"] = n
            elif str(cfg) == pick:
                row["h200_pick"] = True
                row["programs"] = n
    by_id = {id(r): r for r in rows}
    with ThreadPoolExecutor(workers) as pool:
        for rid, stats in zip(jobs, pool.map(lambda j: variant_stats(*j), jobs.values())):
            r = by_id[rid]
            r.update(stats)
            r.update(occupancy(r["regs"], r["smem"], r["num_warps"]))
            r["waves"] = round(r["programs"] / (SMS * r["blocks_per_sm"]), 2) if r["blocks_per_sm"] else None
    return rows


# ---- output ----------------------------------------------------------------------------------------


def _use_triton(version: str, argv: list[str] | None) -> int | None:
    """Re-run this script with Triton ``version`` in front of the installed one (its wheel fetched and
    unpacked by tools/gpu/prewarm_cache.py's helpers); None when it is the installed one."""
    import importlib.util

    import triton

    if triton.__version__ == version:
        return None
    if os.environ.get("KERNEL_STATS_SITE"):
        print(f"kernel_stats: still Triton {triton.__version__} after switching to {version}", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("prewarm_cache", ROOT / "tools" / "gpu" / "prewarm_cache.py")
    prewarm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prewarm)
    try:
        site = prewarm._extracted(prewarm._wheel(version, f"{sys.version_info.major}.{sys.version_info.minor}"))
    except (OSError, RuntimeError) as exc:
        print(f"kernel_stats: cannot get Triton {version} for this Python: {exc}", file=sys.stderr)
        return 2
    env = {**os.environ, "KERNEL_STATS_SITE": str(site),
           "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    log.warning("kernel_stats: Triton %s installed; re-running with %s", triton.__version__, version)
    args = argv if argv is not None else sys.argv[1:]
    return subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", default=",".join(NAMED),
                    help="comma list of Op-GAN layer names, or 'all' (default: the layers the speed issue names)")
    ap.add_argument("--out", type=Path, help="write the JSON record here (refuses to overwrite)")
    ap.add_argument("--gpu-record", type=Path, help="GPU-round record whose picks and timings to show")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="compile threads")
    ap.add_argument("--all", action="store_true", help="print every candidate, not the picks only")
    ap.add_argument("--max-configs", type=int, help="compile only each launch's first N candidates")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a selfonn.kernels option changed for the compile (repeatable), e.g. fwd_power_accs=True")
    ap.add_argument("--alt", metavar="NAME=VALUE",
                    help="also compile the forward launches with this option changed (e.g. fwd_transposed=True) "
                         "and keep their rows apart (the record's 'alternative'), to compare offline")
    ap.add_argument("--triton", help="compile with this Triton version (e.g. 3.6.0, the GPU machines'): its "
                                     "wheel for this Python is fetched from PyPI and cached, as "
                                     "tools/gpu/prewarm_cache.py does")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if "selfonn.kernels" in sys.modules and os.environ.get("TRITON_INTERPRET") == "1":
        print("kernel_stats: the kernels were imported under TRITON_INTERPRET=1; run in a fresh process",
              file=sys.stderr)
        return 2
    os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels: before the kernels are imported
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton < 3.10's default, as on the GPU machines
    if not _bin("ptxas").exists() or not _bin("cuobjdump").exists():
        print("kernel_stats: this Triton has no bundled NVIDIA ptxas / cuobjdump", file=sys.stderr)
        return 2
    if args.out and args.out.exists():
        print(f"kernel_stats: {args.out} exists; not overwriting it", file=sys.stderr)
        return 2
    _bench_path()
    from _common import opgan_layers

    every = opgan_layers(LENGTH, q=Q)
    wanted = [la.name for la in every] if args.layers == "all" else [n for n in args.layers.split(",") if n]
    unknown = sorted(set(wanted) - {la.name for la in every})
    if unknown or not wanted:
        print(f"kernel_stats: unknown layer(s) {', '.join(unknown) or '(none given)'}; known: "
              f"{', '.join(la.name for la in every)}", file=sys.stderr)
        return 2
    layers = [la for la in every if la.name in wanted]
    try:
        changes = {k: ast.literal_eval(v) for k, _, v in (item.partition("=") for item in args.set)}
        alt = {k: ast.literal_eval(v) for k, _, v in [args.alt.partition("=")]} if args.alt else {}
        from selfonn import kernels

        with kernels.options(**changes), kernels.options(**alt):
            pass
    except (ValueError, SyntaxError, TypeError) as exc:
        print(f"kernel_stats: bad --set ({exc})", file=sys.stderr)
        return 2
    if args.triton:
        switched = _use_triton(args.triton, argv)
        if switched is not None:
            return switched
    rec_gpu, gpu_src = gpu_record(args.gpu_record)
    try:
        os.nice(10)  # a batch job beside whatever else runs here
    except OSError:
        pass
    t0 = time.perf_counter()
    from selfonn import kernels

    with kernels.options(**changes):
        launches = compile_layers(layers, args.workers, max_configs=args.max_configs)
    # the round timed the defaults: with options changed its timings are not this code's
    rows = analyse(launches, args.workers, {} if changes else _picks(rec_gpu))
    alt_rows = None
    if alt:
        with kernels.options(**changes), kernels.options(**alt):
            alt_rows = analyse(compile_layers(layers, args.workers, max_configs=args.max_configs, roles=("fwd",)),
                               args.workers, {})
    seconds = time.perf_counter() - t0
    import torch
    import triton

    record: dict[str, Any] = {
        "kind": "sm90-stats", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/kernel_stats.py"
                   + (f" --layers {args.layers}" if args.layers != ",".join(NAMED) else "")
                   + (f" --max-configs {args.max_configs}" if args.max_configs else "")
                   + "".join(f" --set {item}" for item in args.set) + (f" --alt {args.alt}" if args.alt else "")
                   + (f" --triton {args.triton}" if args.triton else ""),
        "options": {k: repr(v) for k, v in changes.items()},
        "triton": triton.__version__, "torch": torch.__version__, "target": "sm_90", "sms": SMS,
        "config": {"batch": BATCH, "length": LENGTH, "q": Q, "dtype": "tf32"}, "sm90_limits": SM90,
        "gpu_record": gpu_src, "gpu_device": (rec_gpu or {}).get("device"), "compile_seconds": round(seconds, 1),
        "workers": args.workers,
        "layers": {la.name: {"kind": la.kind, "c_in": la.c_in, "c_out": la.c_out, "k": la.k, "stride": la.stride,
                             "q": la.q,
                             "L_in": la.L_in, "L_out": la.L_out, "profile": _device_profile(rec_gpu, la.name)}
                   for la in layers},
        "rows": rows,
    }
    if alt:
        record["alternative"] = {"set": args.alt, "rows": alt_rows}
    thin = [la for la in layers if la.name == "gen.out_T"]
    if thin:
        rl = thin_forward_roofline(thin[0])
        fused = {k["kernel"]: k["us"] for k in record["layers"]["gen.out_T"]["profile"].get("fused", [])}
        rl["measured_us"] = fused.get("_thin_fwd_kernel")
        record["roofline"] = {"gen.out_T": rl}
    print(f"sm_90 compile statistics, Triton {triton.__version__}, {len(rows)} variants of {len(layers)} layers in "
          f"{seconds:.0f} s on {args.workers} threads; GPU µs and ★ from {gpu_src or 'no GPU record'}\n")
    from tables import roofline_line, stats_table

    print(stats_table(rows, best_only=not args.all))
    if thin:
        print(f"\ngen.out_T's thin forward: {roofline_line(record['roofline']['gen.out_T'])}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
