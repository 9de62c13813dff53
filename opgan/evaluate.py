"""`opgan evaluate`: score a model and baselines on the same RAR clips; write CSV/JSON, figures, HTML.

Every table carries two reference rows beside the methods: `identity` (the unprocessed input)
and `silent` (an all-zero output). The seed's SDR, 10·log10(Σs²/Σ(ŝ−s)²), rewards attenuation:
on a loud reverberant input the silent output "improves" SDR by many dB. SI-SDR, STOI and PESQ sit
beside SDR everywhere so a method that merely turns the volume down is visible as such.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .baselines import BaselineUnavailable, Method, make_baseline, model_method, parse_baselines, reference_methods
from .checkpoint import CheckpointError
from .device import resolve_device
from .enhance import load_restorer
from .restore import RestoreError

__all__ = ["SDR_BINS", "METRIC_KEYS", "evaluate", "main", "input_sdr_bin", "summarize_rows"]

#: input-SDR bins (dB) for the "by input SDR" aggregation: label -> [lo, hi)
SDR_BINS: list[tuple[str, float, float]] = [
    ("< 0 dB", -math.inf, 0.0),
    ("0-5 dB", 0.0, 5.0),
    ("5-10 dB", 5.0, 10.0),
    ("10-15 dB", 10.0, 15.0),
    (">= 15 dB", 15.0, math.inf),
]
METRIC_KEYS = ["sdr", "sdr_imp", "si_sdr", "si_sdr_imp", "stoi", "pesq"]
CASE_ORDER = ["blend", "awgn", "background", "reverb"]
CSV_FIELDS = ["id", "case", "input_sdr_bin", "method", "sdr_in", "sdr", "sdr_imp", "si_sdr_in", "si_sdr",
              "si_sdr_imp", "stoi", "pesq", "seconds"]
METRIC_NOTE = (
    "SDR is the seed's 10*log10(sum s^2 / sum (s_hat - s)^2). It rewards mere attenuation: the "
    "'silent' row (an all-zero output) scores SDR = 0 dB on every clip, i.e. a positive 'improvement' "
    "whenever the input SDR is negative (heavy reverberation). Read SDR with SI-SDR, STOI and PESQ beside it."
)


def input_sdr_bin(sdr_in: float) -> str:
    for label, lo, hi in SDR_BINS:
        if lo <= sdr_in < hi:
            return label
    return "n/a"  # nan input SDR (silent reference)


def _metrics(est: np.ndarray, ref: np.ndarray, sr: int, with_pesq: bool, with_stoi: bool) -> dict[str, float]:
    """SDR, SI-SDR, STOI, PESQ of one estimate; a metric that cannot be computed gives nan."""
    from .metrics import pesq_wb, sdr, si_sdr, stoi

    out = {"sdr": sdr(est, ref)}
    # An all-zero estimate has no projection on the reference: its SI-SDR is -inf, not +inf.
    out["si_sdr"] = si_sdr(est, ref) if np.any(est) else -math.inf
    out["stoi"] = math.nan
    if with_stoi:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out["stoi"] = stoi(est, ref, sr)
            except Exception:  # noqa: BLE001 - a metric failure must not end a long evaluation
                pass
    out["pesq"] = math.nan
    if with_pesq:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out["pesq"] = pesq_wb(est, ref, sr) if np.any(est) else math.nan
            except Exception:  # noqa: BLE001 - pesq raises on degenerate (e.g. silent) signals
                pass
    return out


def _mean(values: list[float]) -> float:
    """Mean that keeps -inf (a silent floor's SI-SDR) and ignores nan (a metric that did not apply)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan


def summarize_rows(rows: list[dict], by: str) -> dict[str, dict[str, dict[str, float]]]:
    """method -> group -> {metric mean..., n}; `by` is 'case' or 'input_sdr_bin'; group 'all' included."""
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[r["method"]][r[by]].append(r)
        groups[r["method"]]["all"].append(r)
    order = CASE_ORDER if by == "case" else [b[0] for b in SDR_BINS]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for m, g in groups.items():
        keys = [k for k in order if k in g] + sorted(k for k in g if k not in order and k != "all") + ["all"]
        out[m] = {k: {**{mk: _mean([r[mk] for r in g[k]]) for mk in METRIC_KEYS}, "n": len(g[k])} for k in keys}
    return out


def _json_safe(obj: Any) -> Any:
    """JSON has no inf/nan: nan -> null, +-inf -> "inf"/"-inf" strings."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _select(n: int, limit: int | None) -> list[int]:
    """Evenly spread clip indices (builder manifests are grouped by case, so the first N would not be)."""
    if not limit or limit >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, limit).round().astype(int).tolist()))


def _clip_meta(ds: Any, i: int) -> tuple[str, str]:
    rows = getattr(ds, "rows", None)
    if rows:
        return rows[i].get("id", f"{i:05d}"), rows[i].get("case", "unknown") or "unknown"
    ids = getattr(ds, "ids", None)
    if ids:
        cid = ids[i]
        case = cid.split("_")[0] if cid.split("_")[0] in CASE_ORDER else "unknown"
        return cid, case
    return f"{i:05d}", "unknown"


def evaluate(
    data: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    baselines: str | None = None,
    limit: int | None = None,
    kind: str = "auto",
    sample_rate: int | None = None,
    examples: int = 4,
    device: str = "auto",
    batch_size: int = 4,
    stoi: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the evaluation and write `out/{metrics.csv, summary.json, figures/*.png, report.html}`.

    Returns the summary dict (as written to summary.json, before JSON's inf/nan encoding).
    """
    from opgan.data import open_dataset

    from . import report

    out = Path(out)
    device = resolve_device(device)
    restorer = load_restorer(model, device=device)
    ds = open_dataset(data, split)
    sr = int(sample_rate or getattr(ds, "sample_rate", None) or restorer.sample_rate)
    if kind == "auto":
        kind = "speech" if (restorer.name.startswith("speech") or sr <= 16000) else "music"
    with_pesq = kind == "speech"

    methods: list[Method] = reference_methods() + [model_method(restorer, batch_size=batch_size)]
    skipped: dict[str, str] = {}
    for name, arg in parse_baselines(baselines):
        try:
            methods.append(make_baseline(name, arg, device=device, batch_size=batch_size))
        except BaselineUnavailable as e:
            skipped[name] = str(e)
            log(f"note: baseline {name} skipped: {e}")

    idx = _select(len(ds), limit)
    rows: list[dict] = []
    seconds: dict[str, float] = defaultdict(float)
    audio_seconds = 0.0
    # Examples: the first clip of each case (then more clips) up to `examples`.
    metas = [_clip_meta(ds, i) for i in idx]
    example_ids: list[str] = []
    for case in CASE_ORDER + sorted({c for _, c in metas} - set(CASE_ORDER)):
        for cid, c in metas:
            if c == case and len(example_ids) < examples:
                example_ids.append(cid)
                break
    for cid, _ in metas:
        if len(example_ids) >= examples:
            break
        if cid not in example_ids:
            example_ids.append(cid)
    example_audio: dict[str, dict] = {}

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(idx), desc="evaluate", unit="clip", file=sys.stderr)
    for i, (cid, case) in zip(idx, metas):
        corrupted, clean = ds[i]
        y = corrupted.numpy().reshape(-1).astype(np.float32)
        x = clean.numpy().reshape(-1).astype(np.float32)
        audio_seconds += len(y) / sr
        ref_in = _metrics(y, x, sr, with_pesq=False, with_stoi=False)
        sdr_in, si_in = ref_in["sdr"], ref_in["si_sdr"]
        sdr_bin = input_sdr_bin(sdr_in)
        outputs = {}
        for m in methods:
            t0 = time.perf_counter()
            est = np.asarray(m.fn(y, sr), dtype=np.float32).reshape(-1)
            dt = time.perf_counter() - t0
            seconds[m.key] += dt
            if est.shape != y.shape or not np.isfinite(est).all():
                raise RuntimeError(f"method {m.key} returned a bad estimate for clip {cid} "
                                   f"(shape {est.shape}, finite={np.isfinite(est).all()})")
            met = _metrics(est, x, sr, with_pesq, stoi)
            rows.append({
                "id": cid, "case": case, "input_sdr_bin": sdr_bin, "method": m.key,
                "sdr_in": sdr_in, "sdr": met["sdr"], "sdr_imp": met["sdr"] - sdr_in,
                "si_sdr_in": si_in, "si_sdr": met["si_sdr"], "si_sdr_imp": met["si_sdr"] - si_in,
                "stoi": met["stoi"], "pesq": met["pesq"], "seconds": round(dt, 4),
            })
            if cid in example_ids:
                outputs[m.key] = est
        if cid in example_ids:
            example_audio[cid] = {"case": case, "clean": x, "corrupted": y, "outputs": outputs,
                                  "sdr_in": sdr_in}
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    labels = {m.key: m.label for m in methods}
    summary = {
        "data": str(data), "split": split, "model": str(model), "model_name": restorer.name,
        "sample_rate": sr, "kind": kind, "n_clips": len(idx), "clips_in_set": len(ds),
        "methods": labels, "reference_methods": [m.key for m in methods if m.reference],
        "skipped_baselines": skipped, "pesq": with_pesq, "stoi": stoi,
        "rtf": {k: v / audio_seconds for k, v in seconds.items()} if audio_seconds else {},
        "by_case": summarize_rows(rows, "case"),
        "by_input_sdr": summarize_rows(rows, "input_sdr_bin"),
        "note": METRIC_NOTE,
    }
    summary["margins"] = _margins(summary["by_case"], "opgan")

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    (out / "summary.json").write_text(json.dumps(_json_safe(summary), indent=1) + "\n")
    figures = report.make_figures(out / "figures", rows, summary, example_audio, sr)
    report.write_html(out / "report.html", summary, figures, example_audio, sr)
    log(format_table(summary))
    log(f"wrote {out / 'metrics.csv'}, {out / 'summary.json'}, {len(figures)} figures, {out / 'report.html'}")
    return summary


def _margins(by_case: dict, key: str) -> dict:
    """How far `key` is ahead of every other method (dB of SDRi / SI-SDRi) per case: the issue's targets
    (e.g. >= 3 dB over every baseline on blend, q=3 >= q=1 + 0.5 dB) read straight off this."""
    out: dict[str, dict] = {}
    for other, cases in by_case.items():
        if other == key:
            continue
        out[other] = {c: {m: by_case[key][c][m] - v[m] for m in ("sdr_imp", "si_sdr_imp")}
                      for c, v in cases.items() if c in by_case[key]}
    return out


def _fmt(v: float, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    return f"{v:.{digits}f}"


def format_table(summary: dict, by: str = "by_case") -> str:
    """Plain-text table: method x group with SDRi / SI-SDRi / STOI / PESQ means."""
    methods = summary["methods"]
    groups = list(next(iter(summary[by].values())).keys())
    head = f"{'method':<30}" + "".join(f" | {g:^27}" for g in groups)
    sub = f"{'(mean over clips)':<30}" + "".join(f" | {'SDRi':>6} {'SI-SDRi':>7} {'STOI':>5} {'PESQ':>5}" for _ in groups)
    lines = [head, sub]
    for key, label in methods.items():
        cells = []
        for g in groups:
            s = summary[by][key].get(g)
            if s is None:
                cells.append(f"{'':27}")
                continue
            cells.append(f"{_fmt(s['sdr_imp']):>6} {_fmt(s['si_sdr_imp']):>7} {_fmt(s['stoi']):>5} {_fmt(s['pesq']):>5}")
        lines.append(f"{label[:30]:<30}" + "".join(f" | {c}" for c in cells))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="opgan evaluate",
        description="Score a model (and baselines) on a RAR test set: per clip and by case / input-SDR bin.",
    )
    p.add_argument("--data", required=True, help="builder root or split folder, or a TIMIT-RAR/GTZAN-RAR .mat file")
    p.add_argument("--split", default="test", help="split of a builder root (default: test)")
    p.add_argument("--model", default="speech", help="speech | music | checkpoint path (default: speech)")
    p.add_argument("--out", required=True, help="output folder (metrics.csv, summary.json, figures/, report.html)")
    p.add_argument("--baselines", default=None,
                   help="comma list: cnn=PATH (a q=1 checkpoint), noisereduce, wpe, dfn, or all")
    p.add_argument("--limit", type=int, default=None, help="evaluate N clips spread evenly over the set")
    p.add_argument("--kind", default="auto", choices=["auto", "speech", "music"], help="speech adds PESQ (wide-band)")
    p.add_argument("--sample-rate", type=int, default=None, help="rate of a .mat set (default: the model's)")
    p.add_argument("--examples", type=int, default=4, help="clips shown with figures and audio players (default 4)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--no-stoi", action="store_true", help="skip STOI (the slowest metric on CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        evaluate(
            args.data, args.model, args.out, split=args.split, baselines=args.baselines, limit=args.limit,
            kind=args.kind, sample_rate=args.sample_rate, examples=args.examples, device=args.device,
            batch_size=args.batch_size, stoi=not args.no_stoi, progress=not args.quiet,
        )
    except (CheckpointError, FileNotFoundError, ValueError, RestoreError) as e:
        print(f"opgan evaluate: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
