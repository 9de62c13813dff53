"""The speed tables, rendered from the GPU-round records in ``bench/results/``.

    python bench/tables.py            # rewrite the speed blocks in README.md and docs/*.md
    python bench/tables.py --check    # exit 1 when a speed block is not what the newest records render
    python bench/tables.py --print    # the full tables on stdout, no file touched

A record is the main JSON of ``tools/gpu/gpu_round.py`` (``$OUT/<date>-<gpu>.json``), copied to
``bench/results/<date>-<gpu>.json``. Each table (tf32 layers, bf16 layers, training step) comes from
the newest record, by its ``date`` field, that holds rows for it (a later round of one section only
replaces that table), and names its record, its command and how its baselines ran. Two blocks, with
the markers every generated table uses (``opgan.tables``, the one splicer: nothing outside a block
changes)::

    <!-- table:speed -->            every table and the targets check
    <!-- /table:speed -->
    <!-- table:speed-summary -->    a few lines of headline ratios
    <!-- /table:speed-summary -->
    <!-- table:sm90-stats -->        the offline sm_90 compile statistics of the layers the speed
    <!-- /table:sm90-stats -->       issue names (``bench/kernel_stats.py``'s record, ``kind: sm90-stats``)

Older records (before ``cudnn.benchmark`` and ``torch.compile(dynamic=False)``, with five-step
training medians) render too; their baseline settings are stated as they were.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from opgan import tables as splicer

ROOT = Path(__file__).resolve().parent.parent
#: the block names this script fills (``<!-- table:NAME -->``)
BLOCKS = ("speed", "speed-summary", "sm90-stats")
#: a record's ``kind`` for bench/kernel_stats.py's offline compile statistics (not a gpu_round record)
STATS_KIND = "sm90-stats"
#: the layers the stats block shows: where cuDNN's GEMMs beat the fused ones, and gen.out_T's thin forward
STATS_LAYERS = ("gen.up2", "gen.down4", "gen.down5", "gen.up3", "gen.out_T")
PROVIDERS = ("fused", "reference", "compiled")
MODES = ("fwd", "fwd+bwd")
DTYPES = ("tf32", "bf16")
#: training-step backends: fused kernels, selfonn's exact torch path, the FastONN formulation
BACKENDS = ("triton", "torch", "reference")
BACKEND_NAMES = {"triton": "fused", "torch": "torch exact", "reference": "FastONN formulation"}
#: the name prefix of the dilated context candidate's layers (``opgan.models.CONTEXT_PREFIX``): their rows
#: get tables of their own and stay out of the 16-layer totals and targets older records are compared on
CONTEXT_PREFIX = "gen.ctx."


class RecordError(ValueError):
    """A results record that is missing, unreadable or not in the gpu_round schema."""


def schema_errors(rec: Any) -> list[str]:
    """What in ``rec`` breaks the gpu_round schema (empty when it is valid); extra keys are allowed."""
    if not isinstance(rec, dict):
        return [f"top level is {type(rec).__name__}, not an object"]
    errs = [f"missing '{k}'" for k in ("device", "torch", "triton", "date", "command", "layers", "train_step")
            if k not in rec]
    for i, e in enumerate(rec.get("layers") or []):
        where = f"layers[{i}]"
        if not isinstance(e, dict):
            errs.append(f"{where} is not an object")
            continue
        if not isinstance(e.get("layer"), str):
            errs.append(f"{where}.layer is not a string")
        if e.get("mode") not in MODES:
            errs.append(f"{where}.mode {e.get('mode')!r} is not one of {MODES}")
        if e.get("dtype") not in DTYPES:
            errs.append(f"{where}.dtype {e.get('dtype')!r} is not one of {DTYPES}")
        for key in ("ms", "peak_mib"):
            d = e.get(key)
            if not isinstance(d, dict) or (key == "ms" and set(d) < set(PROVIDERS)):
                errs.append(f"{where}.{key} must be an object" + (f" with keys {PROVIDERS}" if key == "ms" else ""))
            elif any(v is not None and not isinstance(v, (int, float)) for v in d.values()):
                errs.append(f"{where}.{key} holds a value that is neither a number nor null")
    for i, e in enumerate(rec.get("train_step") or []):
        where = f"train_step[{i}]"
        if not isinstance(e, dict):
            errs.append(f"{where} is not an object")
            continue
        if e.get("backend") not in BACKENDS:
            errs.append(f"{where}.backend {e.get('backend')!r} is not one of {BACKENDS}")
        if e.get("dtype") not in DTYPES:
            errs.append(f"{where}.dtype {e.get('dtype')!r} is not one of {DTYPES}")
        for key in ("ms", "peak_mib"):
            if key not in e or (e[key] is not None and not isinstance(e[key], (int, float))):
                errs.append(f"{where}.{key} must be a number or null")
    for key in ("layers", "train_step"):
        if key in rec and not isinstance(rec[key], list):
            errs.append(f"'{key}' is not a list")
    return errs


def load_record(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RecordError(f"cannot read {path}: {exc}") from exc
    errs = schema_errors(rec)
    if errs:
        raise RecordError(f"{path} is not a gpu_round record: {'; '.join(errs[:5])}")
    return rec


def _kind(path: Path) -> str | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # load_record says what is wrong
    return rec.get("kind") if isinstance(rec, dict) else None


def records(results: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every gpu_round record in ``results``, newest first (by ``date``; file name breaks ties)."""
    paths = [p for p in sorted(results.glob("*.json")) if _kind(p) != STATS_KIND] if results.is_dir() else []
    if not paths:
        raise RecordError(f"no results record (*.json) in {results}; copy gpu_round's main JSON there first")
    return sorted(((p, load_record(p)) for p in paths), key=lambda pr: (str(pr[1]["date"]), pr[0].name), reverse=True)


def stats_records(results: Path) -> list[tuple[Path, dict[str, Any]]]:
    """bench/kernel_stats.py's records in ``results``, newest first."""
    out = []
    for p in sorted(results.glob("*.json")) if results.is_dir() else []:
        if _kind(p) == STATS_KIND:
            rec = json.loads(p.read_text())
            if not isinstance(rec.get("rows"), list) or "date" not in rec:
                raise RecordError(f"{p} is not a kernel_stats record (no rows or date)")
            out.append((p, rec))
    return sorted(out, key=lambda pr: (str(pr[1]["date"]), pr[0].name), reverse=True)


STATS_HEAD = ("| layer | pass | kernel | tile | warps/stages | programs (waves) | regs | spill st/ld B | smem KB "
              "| warps/SM (limit) | MMA | loop / total instr | GPU µs |")


def stats_table(rows: list[dict[str, Any]], best_only: bool = False) -> str:
    """bench/kernel_stats.py's rows as markdown, one line per compiled variant (``best_only``: per
    launch, the GPU round's pick, else the first candidate). ★: the round's pick, its µs the candidate's
    median on that GPU; waves: programs over 132 SMs × resident blocks per SM; "serial": ptxas
    serialises the kernel's wgmma (its C7515 notice)."""
    lines = [STATS_HEAD, "|" + "---|" * (STATS_HEAD.count("|") - 1)]
    for r in _shown(rows) if best_only else rows:
        head = f"| {r['layer']} | {r['role']} | {r['kernel']} | {r['tile']} | {r['num_warps']}/{r['num_stages']} "
        if "error" in r:
            lines.append(head + f"| error: {r['error'][:60]} |" + " |" * 7)
            continue
        loop = (r.get("loop") or {}).get("instructions")
        mma = (r["mma"] + (f" ×{r['mma_count']}" if r["mma_count"] else "")
               + (" serial" if r.get("wgmma_serialized") else ""))
        us = "–" if r.get("h200_us") is None else f"{r['h200_us']:g}"
        lines.append(head + f"| {r['programs']} ({r['waves']:g}) | {r['regs']} "
                     f"| {r['spill_store_bytes']}/{r['spill_load_bytes']} | {r['smem'] / 1024:.0f} "
                     f"| {r['warps_per_sm']} ({r['limit']}) | {mma} | {'–' if loop is None else loop} / "
                     f"{r['sass_instructions']} | {us}{' ★' if r.get('h200_pick') else ''} |")
    return "\n".join(lines)


#: the TF32 tensor-core peak per SM and clock of the H100 SXM / H200 (495 TFLOP/s dense = 132 SMs x
#: 2048 FLOP/clock x 1.83 GHz) and the issue rate (4 schedulers, one warp instruction a clock each)
TF32_FLOP_PER_CLK, CLOCK_MHZ, ISSUE_PER_CLK, SMS = 2048, 1830, 4, 132


def loop_table(rows: list[dict[str, Any]]) -> str | None:
    """Per GEMM pick (forward, grad_x): the GPU's time per main-loop trip against what the compile
    says a trip needs at the TF32 peak (MMA-bound) and at full issue (loop instructions x warps / 4),
    for the CTAs an SM runs at once; the ratio says how far the loop is from either bound."""
    lines = ["| layer | pass | tile / warps | programs (CTAs an SM) | rounds × trips | GPU µs a trip | MMA-bound µs "
             "| issue-bound µs | GPU ÷ bound |", "|---|---|---|---|---|---|---|---|---|"]
    for r in _shown(rows):
        ml, loop = r.get("main_loop"), (r.get("loop") or {}).get("instructions")
        if not ml or not r.get("h200_us") or not loop or "error" in r:
            continue
        conc = min(r["blocks_per_sm"], -(-r["programs"] // SMS))
        rounds = -(-r["programs"] // (SMS * r["blocks_per_sm"]))
        per_trip = r["h200_us"] / (rounds * ml["iterations"])
        mma = conc * ml["mma_flops"] / TF32_FLOP_PER_CLK / CLOCK_MHZ
        issue = conc * loop * r["num_warps"] / ISSUE_PER_CLK / CLOCK_MHZ
        lines.append(f"| {r['layer']} | {r['role']} | {r['tile']} / {r['num_warps']} | {r['programs']} ({conc}) "
                     f"| {rounds} × {ml['iterations']} | {per_trip:.2f} | {mma:.2f} | {issue:.2f} "
                     f"| {per_trip / max(mma, issue):.1f}× |")
    return "\n".join(lines) if len(lines) > 2 else None


def _shown(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per launch (layer, pass, kernel): the GPU round's pick, else the first candidate."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["layer"], r["role"], r["kernel"]), []).append(r)
    return [next((r for r in g if r.get("h200_pick")), g[0]) for g in groups.values()]


def _delta(a: dict[str, Any], b: dict[str, Any]) -> str:
    """How variant ``b`` compiles against ``a``: wgmma serialisation, waits, registers, loop instructions."""
    def mma(r: dict[str, Any]) -> str:
        return f"{r['mma']}{' serialised' if r.get('wgmma_serialized') else ''}"

    la, lb = a.get("loop") or {}, b.get("loop") or {}
    return (f"{mma(a)} → {mma(b)}, wgmma waits a loop {la.get('wgmma_waits', '–')} → "
            f"{lb.get('wgmma_waits', '–')}, registers {a['regs']} → {b['regs']}, spill stores "
            f"{a['spill_store_bytes']} → {b['spill_store_bytes']} B, "
            f"loop instructions {la.get('instructions', '–')} → {lb.get('instructions', '–')}")


def roofline_line(rl: dict[str, Any]) -> str:
    """gen.out_T's thin forward roofline in words (bench/kernel_stats.py's ``roofline`` entry)."""
    parts = [f"{dev} {d['roofline_us']:g} µs ({d['hbm_tb_s']:g} TB/s HBM; fp32 FMA at {d['fp32_tflop_s']:g} "
             f"TFLOP/s: {d['fp32_us']:g} µs)" for dev, d in rl["devices"].items()]
    got = rl.get("measured_us")
    lowest = min(d["roofline_us"] for d in rl["devices"].values())
    return (f"{rl['bytes'] / 1e6:.1f} MB moved (x read once, y written once), {rl['flops'] / 1e6:.0f} MFLOP: "
            f"roofline {'; '.join(parts)}"
            + (f"; measured {got:g} µs on the GPU ({got / lowest:.0f}× the lower)" if got else "") + ".")


def _kernel_label(name: str) -> str:
    """A profile's kernel name, short: cuDNN's own (``sm90_xmma_fprop``), CUTLASS's, or the head of it."""
    if name.startswith(("sm90_", "sm80_")):
        return "_".join(name.split("_")[:3])
    if "cutlass" in name:
        return "cutlass implicit GEMM"
    return name.split("(")[0].split("<")[0].replace("void ", "")[:40]


def _cudnn_vs_fused(rec: dict[str, Any], layer: str) -> str | None:
    """One line: the round's profile of ``layer`` (tf32 fwd+bwd), the fused kernels against the
    reference's convolution kernels (those the round gave a role, and CUTLASS's implicit GEMMs)."""
    prof = (rec.get("layers", {}).get(layer) or {}).get("profile") or {}
    if not prof.get("fused") or not prof.get("reference"):
        return None

    def part(k: dict[str, Any]) -> str:
        calls = f", {k['calls']:g} calls" if (k.get("calls") or 1) > 1 else ""
        return f"{k.get('role') or 'conv'} {k['us']:g} ({_kernel_label(k['kernel'])}{calls})"

    def mine(k: dict[str, Any]) -> str:
        calls = f" ({k['calls']:g} calls)" if (k.get("calls") or 1) > 1 else ""
        return f"{k['kernel']} {k['us']:g}{calls}"

    fused = [k for k in prof["fused"] if k["kernel"].startswith("_")]
    conv = [k for k in prof["reference"] if k.get("role") or "cutlass" in k["kernel"]]
    return f"fused {', '.join(mine(k) for k in fused)}; cuDNN {', '.join(part(k) for k in conv)}"


def stats_render(recs: list[tuple[dict[str, Any], str]]) -> str:
    """The sm90-stats block: the newest kernel_stats record's rows of the issue's layers, the GPU
    round's kernel times beside them, and gen.out_T's roofline."""
    if not recs:
        return ("_(no kernel_stats record yet: `python bench/kernel_stats.py --out "
                "bench/results/<date>-sm90-stats.json`)_\n")
    rec, src = recs[0]
    cfg = rec["config"]
    layers = [la for la in STATS_LAYERS if la in rec.get("layers", {})]
    rows = [r for r in rec["rows"] if r["layer"] in layers]
    gemm = [r for r in rec["rows"] if r["kernel"] in ("gather", "scatter", "dw") and "error" not in r]
    picked = [r for r in gemm if r.get("h200_pick")]
    wg = sum(r["mma"] == "wgmma" for r in gemm)
    out = [f"Compiled offline for sm_90 (132 SMs) with Triton {rec['triton']} (torch {rec['torch']}) by "
           f"`{rec['command']}`, record `{src}`: {len(rec['rows'])} variants of {len(rec['layers'])} layers "
           f"(B={cfg['batch']}, L={cfg['length']}, q={cfg['q']}, {cfg['dtype']}). "
           f"GPU µs and ★ (the tuner's pick): each candidate's median on the {rec.get('gpu_device') or 'GPU'} "
           f"in `{rec.get('gpu_record')}`. Of the {len(gemm)} GEMM variants (`gather`, `scatter`, `dw`) {wg} "
           f"use wgmma (HGMMA); of the {len(picked)} the GPU picked, {sum(r['mma'] == 'wgmma' for r in picked)}.",
           "", stats_table(rows, best_only=True), ""]
    loops = loop_table(rows)
    if loops:
        out += ["The GEMM picks' main loop (a trip: one tap and reduction block, every power's MMA) against "
                f"its bounds on the GPU's SMs (TF32 {TF32_FLOP_PER_CLK} FLOP and {ISSUE_PER_CLK} warp instructions "
                f"a clock an SM at {CLOCK_MHZ / 1000:g} GHz; the CTAs an SM runs at once share both); GPU µs "
                "a trip is the pick's time over its rounds and trips, prologue and epilogue included:", "",
                loops, ""]
    for la in layers:
        line = _cudnn_vs_fused(rec, la)
        if line:
            out.append(f"- {la}, the GPU round's profile (µs, fwd+bwd): {line}.")
    alt = rec.get("alternative") or {}
    for r in _shown(rows):
        twin = next((a for a in alt.get("rows", []) if "error" not in a and "error" not in r
                     and (a["layer"], a["role"], a["kernel"], a["tile"], a["num_warps"], a["num_stages"])
                     == (r["layer"], r["role"], r["kernel"], r["tile"], r["num_warps"], r["num_stages"])), None)
        if twin and any(twin.get(k) != r.get(k) for k in ("mma", "wgmma_serialized", "regs", "loop",
                                                           "spill_store_bytes")):
            out.append(f"- {r['layer']} {r['role']} ({r['tile']}, {r['num_warps']} warps) with `{alt['set']}`: "
                       + _delta(r, twin) + ".")
    rl = (rec.get("roofline") or {}).get("gen.out_T")
    if rl:
        out.append(f"- gen.out_T's thin forward: {roofline_line(rl)}")
    return "\n".join(out) + "\n"


def _num(v: float | None, spec: str = ".3g") -> str:
    return "–" if v is None else format(v, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a and b else "–"


def _layer_rows(rec: dict[str, Any], dtype: str, context: bool = False) -> list[dict[str, Any]]:
    """fwd+bwd rows of ``dtype``: the paper's layers, or (``context``) the context candidate's."""
    return [e for e in rec["layers"] if e["mode"] == "fwd+bwd" and e["dtype"] == dtype
            and e["layer"].startswith(CONTEXT_PREFIX) == context]


def _best(d: dict[str, Any]) -> tuple[str | None, float | None]:
    """The faster of the formulation and its compile in ``d`` (a row's ms or device_ms): (name, ms)."""
    got = [(d[p], p) for p in ("reference", "compiled") if d.get(p)]
    if not got:
        return None, None
    value, name = min(got)
    return name, value


def _total(rows: list[dict[str, Any]], key: str, provider: str) -> float | None:
    """Sum over the rows, or None when any row lacks the value (no partial totals). ``provider``
    "best": each row's best baseline."""
    vals = [_best(e.get(key) or {})[1] if provider == "best" else (e.get(key) or {}).get(provider) for e in rows]
    return None if not vals or any(v is None for v in vals) else sum(vals)


_SHORT = {"reference": "ref", "compiled": "compile", "sum": ""}


def _layer_table(rec: dict[str, Any], dtype: str, context: bool = False) -> str | None:
    rows = _layer_rows(rec, dtype, context)
    if not rows:
        return None
    lines = ["| layer | fused | FastONN ref | torch.compile(ref) | best baseline | best/fused "
             "| fused | ref | compiled | best baseline | best/fused | fused MiB | ref MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def cells(d: dict[str, Any], best: tuple[str | None, float | None]) -> str:
        f, r, c = (d.get(p) for p in PROVIDERS)
        name, value = best
        shown = f"{_num(value)} {_SHORT[name]}".rstrip() if name else "–"
        return f"{_num(f)} | {_num(r)} | {_num(c)} | {shown} | {_ratio(value, f)}"

    for e in rows:
        mib, shape = e.get("peak_mib", {}), e.get("shape", {})
        ms, dev = e["ms"], e.get("device_ms") or {}
        label = e["layer"] + (f" {shape['c_in']}→{shape['c_out']}" if "c_in" in shape and "c_out" in shape else "")
        lines.append(f"| {label} | {cells(ms, _best(ms))} | {cells(dev, _best(dev))} "
                     f"| {_num(mib.get('fused'), '.0f')} | {_num(mib.get('reference'), '.0f')} |")
    tot = {k: {p: _total(rows, k, p) for p in PROVIDERS} for k in ("ms", "device_ms")}
    best = {k: _total(rows, k, "best") for k in ("ms", "device_ms")}
    what = f"{len(rows)} context" if context else f"{len(rows)}"
    lines.append(f"| **all {what} layers** | {cells(tot['ms'], ('sum', best['ms']) if best['ms'] else (None, None))} "
                 f"| {cells(tot['device_ms'], ('sum', best['device_ms']) if best['device_ms'] else (None, None))} | | |")
    return "\n".join(lines)


def _run_as(e: dict[str, Any]) -> str:
    if e.get("compile"):
        return "torch.compile" + (f" ({e['compile_mode']})" if e.get("compile_mode") else "")
    return "one CUDA graph" if e.get("graph") else "eager"


def _same_way(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two training-step rows run the same way (precision, run as, up blocks), on any backends."""
    return (a["dtype"] == b["dtype"] and _run_as(a) == _run_as(b)
            and a.get("fold_upsample", True) == b.get("fold_upsample", True))


def _train_table(rec: dict[str, Any]) -> str | None:
    rows = rec["train_step"]
    if not rows:
        return None
    lines = ["| backend | precision | run as | up blocks | median ms | min–max ms | steps | host ms | peak MiB "
             "| torch exact / this |", "|---|---|---|---|---|---|---|---|---|---|"]
    failed: list[str] = []
    for e in rows:
        fold = e.get("fold_upsample", True)
        mode = _run_as(e)
        spread = f"{_num(e['ms_min'])}–{_num(e['ms_max'])}" if e.get("ms_min") and e.get("ms_max") else "–"
        torch_row = next((t for t in rows if t["backend"] == "torch" and _same_way(t, e) and t.get("ms")), None)
        vs = _ratio(torch_row["ms"], e["ms"]) if torch_row and e["backend"] != "torch" else "–"
        lines.append(f"| {BACKEND_NAMES.get(e['backend'], e['backend'])} | {e['dtype']} | {mode} "
                     f"| {'folded' if fold else 'upsample + conv'} | {_num(e['ms'])} | {spread} "
                     f"| {e.get('steps', '–')} | {_num(e.get('host_ms'))} | {_num(e['peak_mib'], '.0f')} | {vs} |")
        if e["ms"] is None and e.get("error"):
            failed.append(f"- {BACKEND_NAMES.get(e['backend'], e['backend'])} {e['dtype']} {mode}: "
                          f"{_first_line(e['error'])}")
    return "\n".join(lines + (["", "Not measured (the record holds the whole error):", *failed] if failed else []))


def _first_line(text: str, width: int = 110) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else "?"
    return line if len(line) <= width else line[:width - 1] + "…"


#: the speed targets the fused kernels are held to (the fused-speed issue), checked against the records:
#: fwd+bwd per layer against the best baseline (the faster of the formulation and its compile), and
#: over all layers together (device time)
TARGET_LAYER, TARGET_ALL_LAYERS = 1.5, 3.0
#: training step, fused against the torch backend, run each way (tf32), at most this share of its peak
TARGET_STEP = {"eager": 2.0, "torch.compile": 1.5, "one CUDA graph": 2.5}
TARGET_STEP_PEAK = 0.5
TARGET_ROOF = {"tf32": 25.0, "bf16": 50.0}  # gen.up2 fwd+bwd, % of the roofline (bf16: the stretch)


def _best_ratios(rows: list[dict[str, Any]], key: str) -> list[tuple[float, str]]:
    """best baseline / fused of ``key`` (ms or device_ms) for every row that has both."""
    out = []
    for e in rows:
        d = e.get(key) or {}
        _, best = _best(d)
        if best and d.get("fused"):
            out.append((best / d["fused"], e["layer"]))
    return out


def _activation_ratios(rows: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """fused/reference saved bytes with the (fp32, groups 1) weight both save taken out of each."""
    out = []
    for e in rows:
        sv, sh = e.get("saved_mib") or {}, e.get("shape") or {}
        if not (sv.get("fused") and sv.get("reference") and all(k in sh for k in ("c_in", "c_out", "k", "q"))):
            continue
        w = sh["q"] * sh["c_in"] * sh["c_out"] * sh["k"] * 4 / 2**20
        if sv["reference"] - w > 0:
            out.append(((sv["fused"] - w) / (sv["reference"] - w), e["layer"]))
    return out


def _step_pair(rows: list[dict[str, Any]], dtype: str, run_as: str) -> tuple[float, float] | None:
    """(torch ms / triton ms, triton peak / torch peak) of the folded steps run as ``run_as``."""
    def pick(backend: str) -> dict[str, Any] | None:
        return next((e for e in rows if e["backend"] == backend and e["dtype"] == dtype and _run_as(e) == run_as
                     and e.get("fold_upsample", True) and e["ms"]), None)
    tri, tor = pick("triton"), pick("torch")
    if not (tri and tor and tri.get("peak_mib") and tor.get("peak_mib")):
        return None
    return tor["ms"] / tri["ms"], tri["peak_mib"] / tor["peak_mib"]


def _targets(layer_rec: dict[str, Any] | None, step_rec: dict[str, Any] | None,
             prof_rec: dict[str, Any] | None) -> str | None:
    """The targets table: each target, what the newest record holding it measured, and whether it is met."""
    lines = ["| target | measured | met |", "|---|---|---|"]

    def row(target: str, measured: str, met: bool) -> None:
        lines.append(f"| {target} | {measured} | {'yes' if met else '**no**'} |")

    def count(got: list[tuple[float, str]], floor: float) -> tuple[str, bool]:
        low, where = min(got)
        n = sum(r >= floor for r, _ in got)
        return f"{n} of {len(got)} layers (lowest {low:.2f}×, {where})", n == len(got)

    if layer_rec:
        rows = _layer_rows(layer_rec, "tf32")
        for key, how in (("device_ms", "kernels' own time"), ("ms", "wall time, host launch cost included")):
            got = _best_ratios(rows, key)
            if got:
                row(f"fused fwd+bwd ≥ {TARGET_LAYER}× the best baseline on every layer (tf32; {how})",
                    *count(got, TARGET_LAYER))
        fused, best = _total(rows, "device_ms", "fused"), _total(rows, "device_ms", "best")
        if fused and best:
            row(f"all {len(rows)} layers together ≥ {TARGET_ALL_LAYERS:g}× the best baseline (tf32; kernels' own time)",
                f"{best / fused:.2f}× ({fused:.3g} ms against {best:.3g})", best / fused >= TARGET_ALL_LAYERS)
        acts = _activation_ratios(rows)
        if acts:
            high, where = max(acts)
            q = (rows[0].get("shape") or {}).get("q", 3)
            row("saved activations ≤ 1/q of the formulation's (weights excluded)",
                f"largest fused/reference {high:.2f} ({where}; 1/q = {1 / q:.2f})", high <= 1 / q + 1e-9)
    if step_rec:
        for run_as, floor in TARGET_STEP.items():
            pair = _step_pair(step_rec["train_step"], "tf32", run_as)
            if pair:
                row(f"training step ≥ {floor}× the torch backend at ≤ {TARGET_STEP_PEAK}× its peak memory "
                    f"(tf32, {run_as})", f"{pair[0]:.2f}× at {pair[1]:.2f}× the peak",
                    pair[0] >= floor and pair[1] <= TARGET_STEP_PEAK)
    if prof_rec:
        for dtype, floor in TARGET_ROOF.items():
            e = next((e for e in prof_rec["profile"] if e.get("layer") == "gen.up2" and e.get("provider") == "fused"
                      and e.get("dtype") == dtype and e.get("pct_roofline") is not None), None)
            if e:
                stretch = " (the stretch)" if dtype == "bf16" else ""
                row(f"gen.up2 fwd+bwd ≥ {floor:.0f} % of the {dtype.upper()} roofline{stretch}",
                    f"{e['pct_roofline']:.1f} % ({e['us']:.0f} µs against {e['roofline_us']:.0f})",
                    e["pct_roofline"] >= floor)
    return "\n".join(lines) if len(lines) > 2 else None


def baselines(rec: dict[str, Any]) -> str:
    """How a record's baselines ran, in words (older records did not say: their settings were these)."""
    env = rec.get("env") or {}
    bench = env.get("cudnn_benchmark")
    cudnn = ("cuDNN's algorithms timed per shape (`cudnn.benchmark`)" if bench
             else "cuDNN's heuristic algorithm choice (`cudnn.benchmark` off)")
    comp = env.get("compile") or {}
    dynamic = comp.get("dynamic", True)  # the records before the setting was written compiled dynamic=True
    return f"Baselines: {cudnn}; `torch.compile(dynamic={dynamic})`."


def _source(rec: dict[str, Any], source: str) -> str:
    fixed = " Corrections made after the run are listed in the record." if rec.get("corrections") else ""
    return (f"Measured on **{rec['device']}** ({str(rec['date'])[:10]}; torch {rec['torch']}, Triton {rec['triton']}) "
            f"by `{rec['command']}`, record `{source}`. {baselines(rec)}{fixed}")


WALL_VS_DEVICE = ("Columns 2–6 are wall time per call (CUDA events around eager calls, host launch cost "
                  "included); columns 7–11 the same calls replayed from one CUDA graph, the kernels' own time. "
                  "All in ms; the best baseline is the faster of the formulation and its compile, per layer "
                  "(its total: the sum of those).")


def render(recs: list[tuple[dict[str, Any], str]] | dict[str, Any], source: str | None = None) -> str:
    """The markdown that goes between the markers (without the markers). Each table comes from the
    newest record (``recs``: newest first, with its source path) that holds rows for it, and says
    which; ``render(rec, source)`` renders one record."""
    if isinstance(recs, dict):
        recs = [(recs, source or "?")]
    parts: list[str] = []
    named: set[str] = set()

    def newest(has) -> tuple[dict[str, Any], str] | None:
        return next(((r, s) for r, s in recs if has(r)), None)

    def add(rec: dict[str, Any], src: str, text: str) -> None:
        if src not in named:
            named.add(src)
            parts.append(_source(rec, src))
        parts.append(text)

    layers_found: dict[str, tuple[dict[str, Any], str] | None] = {}
    for dtype, title in (("tf32", "fp32 with TF32 (PyTorch's conv default)"), ("bf16", "bf16 autocast")):
        found = layers_found[dtype] = newest(lambda r, d=dtype: _layer_rows(r, d))
        if found:
            rec, src = found
            lay = rec.get("config", {}).get("layers", {})
            shape = ", ".join(f"{k}={lay[k]}" for k in ("batch", "length", "q") if k in lay)
            add(rec, src, f"Every Op-GAN layer, forward+backward, {title}{', ' + shape if shape else ''}. "
                          f"{WALL_VS_DEVICE}\n\n{_layer_table(rec, dtype)}")
    for dtype, title in (("tf32", "tf32"), ("bf16", "bf16 autocast")):
        found = newest(lambda r, d=dtype: _layer_rows(r, d, context=True))
        if found:
            rec, src = found
            add(rec, src, f"The dilated context candidate's distinct layers (`gen.ctx.d1` .. `gen.ctx.d64`: the k3 "
                          f"conv of each block, `gen.ctx.proj`: their 1x1 projection), forward+backward, {title}, "
                          f"columns as above; not in the Op-GAN totals or the targets:\n\n"
                          f"{_layer_table(rec, dtype, context=True)}")
    step_found = newest(lambda r: r["train_step"])
    if step_found:
        rec, src = step_found
        trn = rec.get("config", {}).get("train", {})
        tshape = ", ".join(f"{k}={trn[k]}" for k in ("filters", "q", "batch", "length") if k in trn)
        add(rec, src, f"Whole Op-GAN training step (G+D, Adam){' at ' + tshape if tshape else ''}:\n\n"
                      f"{_train_table(rec)}")
    layer_found = layers_found["tf32"]
    prof_found = newest(lambda r: isinstance(r.get("profile"), list) and r["profile"])
    table = _targets(*(f[0] if f else None for f in (layer_found, step_found, prof_found)))
    if table:
        rec, src = next(f for f in (prof_found, layer_found, step_found) if f)
        add(rec, src, "The speed targets, from the same records (the per-kernel profile: `profile` in the "
                      f"round's record):\n\n{table}")
    return "\n\n".join(parts) + "\n"


def summary(recs: list[tuple[dict[str, Any], str]]) -> str:
    """A few lines of headline ratios from the newest records (for README; the full tables live elsewhere)."""
    lines = []
    layer = next(((r, s) for r, s in recs if _layer_rows(r, "tf32")), None)
    if layer:
        rec, src = layer
        rows = _layer_rows(rec, "tf32")
        fused, best = _total(rows, "device_ms", "fused"), _total(rows, "device_ms", "best")
        got = _best_ratios(rows, "device_ms")
        if fused and best and got:
            low, where = min(got)
            lines.append(f"- **Per layer** (fwd+bwd, tf32, the kernels' own time): all {len(rows)} Op-GAN layers "
                         f"{best / fused:.2f}× faster than the best baseline together ({fused:.3g} ms against "
                         f"{best:.3g}); the slowest gain {low:.2f}× ({where}).")
    step = next(((r, s) for r, s in recs if r["train_step"]), None)
    if step:
        rec, src = step
        parts = []
        for run_as in TARGET_STEP:
            pair = _step_pair(rec["train_step"], "tf32", run_as)
            if pair:
                parts.append(f"{run_as} {pair[0]:.2f}× at {pair[1]:.2f}× the peak memory")
        if parts:
            lines.append("- **Training step** (G+D, tf32), fused against the torch backend: " + "; ".join(parts) + ".")
    if not lines:
        return "_(no speed record yet)_\n"
    rec, src = (layer or step)
    return "\n".join(lines) + (f"\n\n{rec['device']}, {str(rec['date'])[:10]}, record `{src}`. "
                               f"{baselines(rec)}\n")


def _blocks(recs: list[tuple[dict[str, Any], str]], stats: list[tuple[dict[str, Any], str]] = ()):
    """name -> body for this script's blocks, None for every other (left to its own generator);
    ``stats``: kernel_stats records, newest first, with their sources."""
    rendered: dict[str, str] = {}

    def body(name: str) -> str | None:
        if name not in BLOCKS:
            return None
        if name not in rendered:
            rendered[name] = (render(recs) if name == "speed" else stats_render(stats) if name == STATS_KIND
                              else summary(recs))
        return rendered[name]

    return body


def _named(found) -> list[tuple[dict, str]]:
    """(record, the name a table cites it by): its path in the repository, or its file name elsewhere."""
    out = []
    for path, rec in found:
        try:
            out.append((rec, str(path.resolve().relative_to(ROOT))))
        except ValueError:
            out.append((rec, path.name))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results", help="folder of records")
    ap.add_argument("--file", "--readme", dest="files", type=Path, action="append", default=None,
                    help="a markdown file holding speed blocks (repeatable; default: README.md and docs/*.md)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a speed block is out of date, change nothing")
    mode.add_argument("--print", action="store_true", help="print the full tables, change nothing")
    args = ap.parse_args(argv)
    try:
        recs, stats = _named(records(args.results)), _named(stats_records(args.results))
        if args.print:
            print(render(recs), end="")
            if stats:
                print("\n" + stats_render(stats), end="")
            return 0
        files = args.files or splicer.marked_files(ROOT)
        texts = {}
        for f in files:
            try:
                texts[f] = f.read_text()
            except OSError as exc:
                raise RecordError(f"cannot read {f}: {exc.strerror or exc}") from exc
        mine = [f for f, t in texts.items() if set(splicer.block_names(t)) & set(BLOCKS)]
        if not mine:
            raise RecordError(f"no <!-- table:speed -->, speed-summary or sm90-stats block in "
                              f"{', '.join(str(f) for f in files) or 'any file'}")
        stale = splicer.update_files(mine, _blocks(recs, stats), check=args.check)
    except RecordError as exc:
        print(f"tables: {exc}", file=sys.stderr)
        return 2
    for f in stale:
        print(f"tables: {f} {'is out of date; run python bench/tables.py' if args.check else 'updated'} "
              f"from {args.results}", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
