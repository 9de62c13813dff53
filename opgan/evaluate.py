"""`opgan evaluate`: score a model and baselines on the same RAR clips; write CSV/JSON, figures, HTML.

Every table carries two reference rows beside the methods: `identity` (the unprocessed input)
and `silent` (an all-zero output). SDR as defined by the Op-GAN paper, 10·log10(Σs²/Σ(ŝ−s)²),
rewards attenuation: on a loud reverberant input the silent output "improves" SDR by many dB.
SI-SDR, STOI and PESQ sit beside SDR everywhere, the verdict is decided by SI-SDRi (`VERDICT_RULE`),
and each clip's output level against the clean level (`level_err_db`) shows who turned the volume down.

A metric that cannot be computed on a clip (an exception, a warning that its value is a placeholder,
a nan) is recorded as a failure of that metric for that clip: it is left out of that metric's mean
and counted, per method and metric, in metrics.csv (`failed`), summary.json and the report.

A clip that cannot be read (missing file, clean and corrupted of different lengths or rates) is
skipped with a warning and listed in summary.json (`skipped_clips`); the run goes on. A clip that
cannot measure an improvement (its clean is silent, or its corrupted input equals its clean, so the
input SDR is +inf or undefined) is scored but marked `degenerate` and kept out of every mean
(`degenerate_clips`). An output folder that holds an earlier evaluation is refused unless `overwrite`.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import platform
import sys
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .baselines import BaselineUnavailable, Method, make_baseline, model_method, parse_baselines, reference_methods
from .checkpoint import CheckpointError, shown_path
from .device import cpu_threads, resolve_device
from .metrics import BALANCE_BANDS, LIGHT_INPUT_SDR_DB, level_db
from .enhance import SILENCE_PEAK, Restorer, load_restorer, shipped_weights
from .restore import RestoreError

__all__ = [
    "SDR_BINS", "METRIC_KEYS", "VERDICT_RULE", "DO_NO_HARM_MIN_SDR", "evaluate", "main", "input_sdr_bin",
    "background_kind",
    "clip_refs", "score_clips", "summarize_rows", "score_estimate", "level_error_db", "do_no_harm", "verdict",
    "pick_examples",
    "format_table",
]

#: input-SDR bins (dB) for the "by input SDR" aggregation: label -> [lo, hi)
SDR_BINS: list[tuple[str, float, float]] = [
    ("< 0 dB", -math.inf, 0.0),
    ("0-5 dB", 0.0, 5.0),
    ("5-10 dB", 5.0, 10.0),
    ("10-15 dB", 10.0, 15.0),
    (">= 15 dB", 15.0, math.inf),
]
#: per-octave level vs the clean above 1 kHz (`opgan.metrics.band_balance_db`); nan above the Nyquist frequency
BAND_KEYS = list(BALANCE_BANDS)
METRIC_KEYS = ["sdr", "sdr_imp", "si_sdr", "si_sdr_imp", "stoi", "pesq", "level_err_db", *BAND_KEYS]
#: the metrics that are computed (and can fail); the *_imp keys follow sdr / si_sdr
SCORED = ["sdr", "si_sdr", "stoi", "pesq", "level_err_db", *BAND_KEYS]
_BASE_METRIC = {"sdr_imp": "sdr", "si_sdr_imp": "si_sdr"}
CASE_ORDER = ["blend", "awgn", "background", "reverb"]
CSV_FIELDS = ["id", "case", "input_sdr_bin", "background", "method", "sdr_in", "sdr", "sdr_imp", "si_sdr_in", "si_sdr",
              "si_sdr_imp", "stoi", "pesq", "level_err_db", *BAND_KEYS, "seconds", "failed", "degenerate"]
#: what an evaluation writes into its --out folder (an existing one is not replaced without --overwrite)
OUTPUTS = ("metrics.csv", "summary.json", "report.html", "figures")
DO_NO_HARM_MIN_SDR = LIGHT_INPUT_SDR_DB
#: output level vs clean, dB (the one definition in opgan.metrics; kept under its evaluate name)
level_error_db = level_db
VERDICT_RULE = (
    "Best method = the highest mean SI-SDR improvement over all clips (the unprocessed input, the "
    "silent floor and the clean-informed oracle are not candidates); SDRi and STOI are reported beside "
    "it, and a mean SI-SDRi at or below 0 dB is not called an improvement. Plain SDR does not decide: "
    "it rewards attenuation."
)
METRIC_NOTE = (
    "SDR is the Op-GAN paper's 10*log10(sum s^2 / sum (s_hat - s)^2). It rewards mere attenuation: the "
    "'silent' row (an all-zero output) scores SDR = 0 dB on every clip, i.e. a positive 'improvement' "
    "whenever the input SDR is negative (heavy reverberation). Read SDR with SI-SDR, STOI and PESQ beside it; "
    "the level error (output vs clean level, dB) shows how much a method turned the volume down."
)


def background_kind(meta: dict) -> str:
    """What interferes in a builder clip: 'ambience', 'speech', 'music' or 'synthetic' (the kind of the
    manifest's background source), '' when it has no background. A background case is a different task
    per kind: a competing talker cannot be told from the target by a mask, ambience can."""
    from opgan.data.sources import source_kind

    src = str(meta.get("background_source") or "")
    return source_kind(src) if src else ""


def input_sdr_bin(sdr_in: float) -> str:
    for label, lo, hi in SDR_BINS:
        if lo <= sdr_in < hi:
            return label
    return "n/a"  # nan input SDR (silent reference)


# ------------------------------------------------------------------------------------ per clip


def _guarded(fn: Callable[[], float]) -> tuple[float, str | None]:
    """(value, None) or (nan, reason): an exception, a warning (pystoi/pesq placeholders) or a nan is a failure."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(fn())
        except Exception as e:  # noqa: BLE001 - recorded and counted, never silently dropped
            return math.nan, f"{type(e).__name__}: {e}"[:200]
    if caught:
        return math.nan, f"{caught[0].category.__name__}: {caught[0].message}"[:200]
    if math.isnan(value):
        return math.nan, "undefined (nan)"
    return value, None


def score_estimate(est: np.ndarray, ref: np.ndarray, sr: int, *, with_stoi: bool = True,
                   with_pesq: bool = True) -> tuple[dict[str, float], dict[str, str]]:
    """SDR, SI-SDR, STOI, PESQ, level error and per-octave balance of one estimate -> (values,
    {metric: failure reason}).

    Metrics that are switched off (and octaves above the Nyquist frequency) are nan and not failures;
    a silent estimate's SI-SDR is -inf.
    """
    from .metrics import band_level_db, pesq_wb, sdr, si_sdr, stoi

    jobs: dict[str, Callable[[], float]] = {
        "sdr": lambda: sdr(est, ref),
        # An all-zero estimate has no projection on the reference: its SI-SDR is -inf.
        "si_sdr": lambda: si_sdr(est, ref) if np.any(est) else -math.inf,
        "level_err_db": lambda: level_error_db(est, ref),
        **{k: (lambda lo=lo, hi=hi: band_level_db(est, ref, sr, lo, hi))
           for k, (lo, hi) in BALANCE_BANDS.items() if hi <= sr / 2},
    }
    if with_stoi:
        jobs["stoi"] = lambda: stoi(est, ref, sr)
    if with_pesq:
        jobs["pesq"] = lambda: pesq_wb(est, ref, sr)
    values = {k: math.nan for k in SCORED}
    failed: dict[str, str] = {}
    for key, fn in jobs.items():
        values[key], reason = _guarded(fn)
        if reason is not None:
            failed[key] = reason
    return values, failed


@dataclass
class ClipRef:
    """One clip of the evaluated set: dataset index, id, case and its manifest row (if any)."""

    index: int
    id: str
    case: str
    meta: dict = field(default_factory=dict)

    @property
    def passage(self) -> str:
        """The clean passage: builder clips of different cases may share one (same `clean_index`)."""
        ci = self.meta.get("clean_index")
        return self.id if ci in (None, "") else f"passage {ci}"


def _select(n: int, limit: int | None) -> list[int]:
    """Evenly spread clip indices (builder manifests are grouped by case, so the first N would not be)."""
    if not limit or limit >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, limit).round().astype(int).tolist()))


def _clip_ref(ds: Any, i: int) -> ClipRef:
    rows = getattr(ds, "rows", None)
    if rows:
        return ClipRef(i, rows[i].get("id", f"{i:05d}"), rows[i].get("case", "unknown") or "unknown", dict(rows[i]))
    ids = getattr(ds, "ids", None)
    if ids:
        cid = ids[i]
        return ClipRef(i, cid, cid.split("_")[0] if cid.split("_")[0] in CASE_ORDER else "unknown")
    return ClipRef(i, f"{i:05d}", "unknown")


def clip_refs(ds: Any, limit: int | None = None) -> list[ClipRef]:
    """The clips `score_clips` scores: all of `ds`, or `limit` of them spread evenly over it."""
    return [_clip_ref(ds, i) for i in _select(len(ds), limit)]


def _load_pair(ds: Any, i: int) -> tuple[np.ndarray, np.ndarray]:
    corrupted, clean = ds[i]
    return (corrupted.numpy().reshape(-1).astype(np.float32), clean.numpy().reshape(-1).astype(np.float32))


def degenerate_reason(y: np.ndarray, x: np.ndarray, sdr_in: float, si_sdr_in: float) -> str:
    """Why a clip (corrupted `y`, clean `x`) cannot measure an improvement, or "" when it can.

    A silent clean makes every SDR -inf or undefined; an input equal to its clean has input SDR +inf,
    so every improvement is -inf. Either would make a mean -inf (or nan) whatever the methods do.
    """
    if x.size == 0 or np.abs(x).max() < SILENCE_PEAK:
        return "clean reference is silent"
    if y.shape == x.shape and np.array_equal(y, x):
        return "corrupted input equals its clean reference"
    if not (math.isfinite(sdr_in) and math.isfinite(si_sdr_in)):
        return f"input SDR {sdr_in} / SI-SDR {si_sdr_in} dB is not finite"
    return ""


def _run_method(m: Method, y: np.ndarray, sr: int, clean: np.ndarray | None = None
                ) -> tuple[np.ndarray | None, float, str | None]:
    """(estimate, seconds, None) or (None, seconds, reason) when the method raises or returns a bad estimate.
    An oracle method is also given the clean clip."""
    t0 = time.perf_counter()
    try:
        est = np.asarray(m.fn(y, sr, clean) if m.oracle else m.fn(y, sr), dtype=np.float32).reshape(-1)
    except Exception as e:  # noqa: BLE001 - one clip's failure is counted, the evaluation goes on
        return None, time.perf_counter() - t0, f"method failed: {type(e).__name__}: {e}"[:200]
    dt = time.perf_counter() - t0
    if est.shape != y.shape or not np.isfinite(est).all():
        return None, dt, f"method returned a bad estimate (shape {est.shape}, finite={bool(np.isfinite(est).all())})"
    return est, dt, None


@dataclass
class Scores:
    """What scoring every clip with every method produced."""

    rows: list[dict]
    seconds: dict[str, float]
    audio_seconds: float
    skipped: dict[str, str] = field(default_factory=dict)  # clip id -> why it could not be read


def score_clips(ds: Any, clips: list[ClipRef], methods: list[Method], sr: int, *, with_stoi: bool,
                with_pesq: bool, progress: bool, log: Callable[[str], None]) -> Scores:
    """Run every method on every clip and score it: one row per (clip, method), failures recorded in `failed`."""
    rows: list[dict] = []
    seconds: dict[str, float] = defaultdict(float)
    audio_seconds = 0.0
    skipped: dict[str, str] = {}
    logged: set[tuple[str, str]] = set()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(clips), desc="evaluate", unit="clip", file=sys.stderr)
    for clip in clips:
        try:
            y, x = _load_pair(ds, clip.index)
            if y.shape != x.shape or y.size == 0:
                raise ValueError(f"corrupted has {y.size} samples, clean {x.size}")
        except (OSError, ValueError, RuntimeError) as e:  # AudioError is a ValueError
            skipped[clip.id] = str(e)[:300]
            log(f"warning: clip {clip.id} skipped: {skipped[clip.id]}")
            if bar is not None:
                bar.update(1)
            continue
        audio_seconds += len(y) / sr
        ref_in, in_failed = score_estimate(y, x, sr, with_stoi=False, with_pesq=False)
        sdr_in, si_in = ref_in["sdr"], ref_in["si_sdr"]
        degenerate = degenerate_reason(y, x, sdr_in, si_in)
        if degenerate:
            log(f"note: clip {clip.id} is degenerate ({degenerate}): scored, kept out of the means")
        # an input score that fails makes every method's improvement in it fail
        in_failed = {f"{k}_imp": f"input {k}: {v}" for k, v in in_failed.items() if k in ("sdr", "si_sdr")}
        for m in methods:
            est, dt, crash = _run_method(m, y, sr, x)
            seconds[m.key] += dt
            if est is None:
                met = {k: math.nan for k in SCORED}
                failed = {k: crash for k in SCORED if (k != "stoi" or with_stoi) and (k != "pesq" or with_pesq)
                          and (k not in BALANCE_BANDS or BALANCE_BANDS[k][1] <= sr / 2)}
            else:
                met, failed = score_estimate(est, x, sr, with_stoi=with_stoi, with_pesq=with_pesq)
            failed = {**in_failed, **failed}
            for metric, reason in (("all metrics", crash),) if crash else failed.items():
                if (m.key, metric) not in logged:  # the first failure of each kind in the log, all in the files
                    logged.add((m.key, metric))
                    log(f"note: {m.key} {metric} failed on {clip.id}: {reason} (counted in summary.json)")
            rows.append({
                "id": clip.id, "case": clip.case, "input_sdr_bin": input_sdr_bin(sdr_in),
                "background": background_kind(clip.meta), "method": m.key,
                "sdr_in": sdr_in, "sdr": met["sdr"], "sdr_imp": met["sdr"] - sdr_in,
                "si_sdr_in": si_in, "si_sdr": met["si_sdr"], "si_sdr_imp": met["si_sdr"] - si_in,
                "stoi": met["stoi"], "pesq": met["pesq"], "level_err_db": met["level_err_db"],
                **{k: met[k] for k in BAND_KEYS}, "seconds": round(dt, 4), "failed": failed, "degenerate": degenerate,
            })
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return Scores(rows, dict(seconds), audio_seconds, skipped)


# ------------------------------------------------------------------------------------- summary


def _mean(values: list[float]) -> float:
    """Mean that keeps -inf (a silent floor's SI-SDR) and ignores nan (failed or not computed: counted apart)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan


def _failures(rows: list[dict]) -> dict[str, int]:
    """Per metric, how many of these rows could not be scored (an improvement also fails with its metric)."""
    return {k: sum(1 for r in rows if k in r["failed"] or _BASE_METRIC.get(k) in r["failed"]) for k in METRIC_KEYS}


def summarize_rows(rows: list[dict], by: str) -> dict[str, dict[str, dict[str, Any]]]:
    """method -> group -> {metric means..., n, failed: {metric: count}, degenerate}; `by` is 'case',
    'input_sdr_bin' or 'background'.

    `n` counts the clips that enter the means; a metric's mean is over the n - failed[metric] clips where it
    could be computed. Degenerate clips (`degenerate_reason`) are counted in `degenerate`, never averaged.
    """
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    kept_out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        if r.get("degenerate"):
            kept_out[r["method"]][r[by]] += 1
            kept_out[r["method"]]["all"] += 1
            groups[r["method"]].setdefault(r[by], [])
            groups[r["method"]].setdefault("all", [])
            continue
        groups[r["method"]][r[by]].append(r)
        groups[r["method"]]["all"].append(r)
    order = CASE_ORDER if by == "case" else [b[0] for b in SDR_BINS]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for m, g in groups.items():
        keys = [k for k in order if k in g] + sorted(k for k in g if k not in order and k != "all") + ["all"]
        out[m] = {k: {**{mk: _mean([r.get(mk, math.nan) for r in g[k]]) for mk in METRIC_KEYS}, "n": len(g[k]),
                      "failed": _failures(g[k]), "degenerate": kept_out[m][k]} for k in keys}
    return out


def failure_table(rows: list[dict]) -> dict[str, dict[str, dict[str, Any]]]:
    """method -> metric -> {n, first: 'reason (clip id)'} for every metric that failed at least once."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        if r.get("degenerate"):  # kept out of the means anyway
            continue
        for metric, reason in r["failed"].items():
            entry = out[r["method"]].setdefault(metric, {"n": 0, "first": f"{reason} ({r['id']})"})
            entry["n"] += 1
    return dict(out)


def do_no_harm(rows: list[dict], min_input_sdr: float = DO_NO_HARM_MIN_SDR) -> dict[str, Any]:
    """On clips that are already good (input SDR >= `min_input_sdr`): mean SDRi and the worst clip's SDRi per method."""
    per_method: dict[str, dict[str, Any]] = {}
    easy = [r for r in rows if r["sdr_in"] >= min_input_sdr and not r.get("degenerate")]
    for m in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in easy if r["method"] == m]
        ok = [r for r in mine if "sdr" not in r["failed"] and "sdr_imp" not in r["failed"]]
        worst = min(ok, key=lambda r: r["sdr_imp"]) if ok else None
        per_method[m] = {
            "n": len(mine), "failed": len(mine) - len(ok),
            "mean_sdr_imp": _mean([r["sdr_imp"] for r in ok]),
            "mean_si_sdr_imp": _mean([r["si_sdr_imp"] for r in mine]),
            "worst_sdr_imp": worst["sdr_imp"] if worst else math.nan,
            "worst_id": worst["id"] if worst else None,
        }
    return {"min_input_sdr_db": min_input_sdr, "n_clips": len({r["id"] for r in easy}), "methods": per_method}


def best_by_metric(overall: dict[str, dict], candidates: list[str]) -> dict[str, dict[str, Any]]:
    """metric -> {method, value, runner_up, runner_up_value} over the candidate methods' 'all' means.

    Higher is better, except level error (closest to 0 dB is best).
    """
    out: dict[str, dict[str, Any]] = {}
    for metric in ("si_sdr_imp", "sdr_imp", "stoi", "pesq", "level_err_db"):
        scored = [(k, overall[k][metric]) for k in candidates if not math.isnan(overall[k][metric])]
        if not scored:
            continue
        if metric == "level_err_db":
            scored.sort(key=lambda kv: abs(kv[1]))
        else:
            scored.sort(key=lambda kv: kv[1], reverse=True)
        out[metric] = {"method": scored[0][0], "value": scored[0][1],
                       "runner_up": scored[1][0] if len(scored) > 1 else None,
                       "runner_up_value": scored[1][1] if len(scored) > 1 else math.nan}
    return out


def _signed(v: float, unit: str = " dB") -> str:
    if not math.isfinite(v):
        return ("-inf" if v < 0 else "inf") + unit
    return f"{v if round(v, 2) else 0.0:+.2f}{unit}"  # no "-0.00"


#: how far a method may move the output's level, or one octave's level, from the clean's before the verdict says so
CAVEAT_LEVEL_DB = 1.0
CAVEAT_BAND_DB = 2.0


def _caveats(s: dict, stoi_in: float) -> list[str]:
    """What the chosen method damages while it gains SI-SDR: intelligibility, level, an octave's balance."""
    out = []
    if math.isfinite(s.get("stoi", math.nan)) and math.isfinite(stoi_in) and s["stoi"] < stoi_in:
        out.append(f"STOI falls ({s['stoi']:.3f} from {stoi_in:.3f})")
    level = s.get("level_err_db", math.nan)
    if math.isfinite(level) and abs(level) > CAVEAT_LEVEL_DB:
        out.append(f"its output level is {_signed(level)} vs the clean")
    lost = [f"{b.removeprefix('band_').replace('_', '-')} {_signed(s[b])}" for b in BAND_KEYS
            if isinstance(s.get(b), (int, float)) and math.isfinite(s[b]) and abs(s[b]) > CAVEAT_BAND_DB]
    if lost:
        out.append("its octaves differ from the clean's (" + ", ".join(lost) + ")")
    return out


def verdict(by_case: dict[str, dict], labels: dict[str, str], references: list[str]) -> dict[str, Any]:
    """The summary's reading of the result, decided by `VERDICT_RULE` (mean SI-SDRi over all clips)."""
    overall = {k: v["all"] for k, v in by_case.items()}
    candidates = [k for k in labels if k not in references and k in overall]
    best = best_by_metric(overall, candidates)
    if "si_sdr_imp" not in best:
        return {"rule": VERDICT_RULE, "best": None, "best_by_metric": best,
                "text": "No method could be scored (every SI-SDR failed); see the failures below."}
    key = best["si_sdr_imp"]["method"]
    s = overall[key]
    n = s["n"]
    stoi_in = overall.get("identity", {}).get("stoi", math.nan)
    stoi_txt = (f", STOI {s['stoi']:.2f} (unprocessed {stoi_in:.2f})"
                if math.isfinite(s["stoi"]) and math.isfinite(stoi_in) else "")
    figures = f"mean SI-SDRi {_signed(s['si_sdr_imp'])}, SDRi {_signed(s['sdr_imp'])}{stoi_txt} over {n} clips"
    if s["si_sdr_imp"] > 0:
        text = f"{labels[key]} has the highest SI-SDR gain: {figures}"
    else:
        text = f"No method improves SI-SDR on average; the least harmful is {labels[key]}: {figures}"
    runner = best["si_sdr_imp"]["runner_up"]
    if runner is not None:
        lead = s["si_sdr_imp"] - best["si_sdr_imp"]["runner_up_value"]
        text += f", {_signed(lead)} SI-SDRi ahead of {labels[runner]}"
    if s["sdr_imp"] > 0 >= s["si_sdr_imp"]:
        text += "; its SDR gain is not matched by SI-SDR"
        if s["level_err_db"] < -0.5:
            text += f" and comes with a lower level (output {_signed(s['level_err_db'])} vs clean)"
    caveats = _caveats(s, stoi_in)
    if caveats:
        text += "; but " + ", ".join(caveats[:-1]) + (" and " if len(caveats) > 1 else "") + caveats[-1]
    fails = max(s["failed"].values()) if s["failed"] else 0
    if fails:
        text += f"; up to {fails} of its clips failed a metric and are left out of that metric's mean"
    if s.get("degenerate"):
        text += f"; {s['degenerate']} degenerate clip(s) (silent clean, or input equal to clean) are left out"
    return {"rule": VERDICT_RULE, "best": key, "best_by_metric": best, "text": text + "."}


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


# ---------------------------------------------------------------------------------- run details


def _checkpoint_file(model: str | Path) -> Path | None:
    shipped = shipped_weights()
    p = shipped.get(str(model), Path(model).expanduser())
    return p if p.is_file() else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str) -> str:
    """What the timings ran on: GPU name, or CPU model, core count and torch threads."""
    import os

    import torch

    if str(device).startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA {torch.version.cuda})"
    return f"{_cpu_name()}, {os.cpu_count()} logical cores, torch {torch.get_num_threads()} threads"


def run_details(model: str | Path, restorer: Restorer, device: str) -> dict[str, Any]:
    """Version, checkpoint (path, sha256), device and date: what a reader needs to reproduce the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        opgan_version = version("opgan-selfonn")
    except PackageNotFoundError:
        opgan_version = "unknown (not installed)"
    ckpt = _checkpoint_file(model)
    return {
        "opgan_version": opgan_version, "torch_version": torch.__version__,
        "checkpoint": shown_path(ckpt) if ckpt else str(model),
        "checkpoint_sha256": _sha256(ckpt) if ckpt else None,
        "device": str(device), "hardware": hardware(str(device)),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------------------------------- examples


def pick_examples(rows: list[dict], clips: list[ClipRef], key: str, n: int) -> list[tuple[str, ClipRef]]:
    """[(tag, clip)], best first: the best, median and worst clip of `key` by SI-SDRi (more examples: evenly
    spaced ranks), each from a different clean passage. Clips where `key`'s SI-SDR failed are not candidates."""
    by_id = {c.id: c for c in clips}
    ranked = sorted((r for r in rows if r["method"] == key and "si_sdr_imp" not in r["failed"]
                     and "si_sdr" not in r["failed"] and not r.get("degenerate")),
                    key=lambda r: r["si_sdr_imp"], reverse=True)
    if n <= 0 or not ranked:
        return []
    last = len(ranked) - 1
    wanted = [("best", 0), ("worst", last), ("median", last // 2)]
    if n > 3:  # evenly spaced ranks between them
        extra = [round(x) for x in np.linspace(0, last, n)[1:-1]]
        extra.remove(min(extra, key=lambda r: abs(r - last // 2)))
        wanted += [(f"rank {r + 1} of {last + 1}", r) for r in extra]
    chosen: list[tuple[int, str, ClipRef]] = []
    used: set[str] = set()
    for tag, rank in wanted[:n]:
        for r in sorted(range(len(ranked)), key=lambda i: (abs(i - rank), i)):  # nearest unused passage
            clip = by_id[ranked[r]["id"]]
            if clip.passage not in used:
                used.add(clip.passage)
                chosen.append((r, tag, clip))
                break
    return [(tag, clip) for _, tag, clip in sorted(chosen, key=lambda c: c[0])]


def corrupted_segments(meta: dict) -> list[tuple[str, int, int]]:
    """[(artifact, start, length)] in samples from a builder manifest row ([] when unknown)."""
    out = []
    for art in filter(None, str(meta.get("artifacts", "")).split("+")):
        try:
            out.append((art, int(float(meta[f"{art}_start"])), int(float(meta[f"{art}_len"]))))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def example_audio(ds: Any, picks: list[tuple[str, ClipRef]], methods: list[Method], rows: list[dict],
                  sr: int) -> dict[str, dict]:
    """Re-run the methods on the few example clips (keeping every output in memory would not be bounded)."""
    scores = {(r["id"], r["method"]): r for r in rows}
    out: dict[str, dict] = {}
    for tag, clip in picks:
        y, x = _load_pair(ds, clip.index)
        outputs = {}
        for m in methods:
            if m.reference:
                continue
            est, _, _ = _run_method(m, y, sr)
            if est is not None:
                outputs[m.key] = est
        out[clip.id] = {"tag": tag, "case": clip.case, "clean": x, "corrupted": y, "outputs": outputs,
                        "sdr_in": scores[(clip.id, "identity")]["sdr_in"],
                        "segments": corrupted_segments(clip.meta),
                        "scores": {m.key: scores[(clip.id, m.key)] for m in methods}}
    return out


# -------------------------------------------------------------------------------------- writing


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


def _csv_value(key: str, v: Any) -> Any:
    if key == "failed":
        return "; ".join(f"{m}: {reason}" for m, reason in v.items())
    if key == "degenerate":
        return v
    return f"{v:.4f}" if isinstance(v, float) else v


def write_tables(out: Path, rows: list[dict], summary: dict) -> None:
    """metrics.csv (one row per clip and method) and summary.json, each written then moved into place."""
    tmp = out / ".metrics.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(k, r[k]) for k in CSV_FIELDS})
    tmp.replace(out / "metrics.csv")
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(_json_safe(summary), indent=1) + "\n")
    tmp.replace(out / "summary.json")


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before the long run, an output folder that holds an earlier evaluation (unless `overwrite`,
    which then clears the earlier figures: a report must not pick up another run's example images)."""
    earlier = [name for name in OUTPUTS if (out / name).exists()] if out.is_dir() else []
    if earlier and not overwrite:
        raise FileExistsError(f"output folder {out} holds an earlier evaluation ({', '.join(earlier)}); "
                              "pass --overwrite to replace it, or choose another --out")
    if earlier and (out / "figures").is_dir():
        for p in (out / "figures").iterdir():
            if p.is_file() and p.suffix in (".png", ".jpg"):
                p.unlink()


def _check_writable(out: Path) -> None:
    """Fail before the long run, not after it, when the output folder cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".opgan-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write to output folder {out}: {e.strerror or e}") from e


# ------------------------------------------------------------------------------------- the run


def _build_methods(restorer: Restorer, baselines: str | None, device: str, batch_size: int,
                   log: Callable[[str], None]) -> tuple[list[Method], dict[str, str]]:
    """Reference rows, the model, then the baselines that can run here (the others skipped with a note)."""
    methods: list[Method] = reference_methods() + [model_method(restorer, batch_size=batch_size)]
    skipped: dict[str, str] = {}
    for name, arg in parse_baselines(baselines):
        try:
            methods.append(make_baseline(name, arg, device=device, batch_size=batch_size))
        except BaselineUnavailable as e:
            skipped[name] = str(e)
            log(f"note: baseline {name} skipped: {e}")
    return methods, skipped


def summarize(scores: Scores, methods: list[Method], info: dict[str, Any]) -> dict[str, Any]:
    """Everything summary.json holds: run details, means by case and input SDR, failures, verdict, gates."""
    labels = {m.key: m.label for m in methods}
    refs = [m.key for m in methods if m.reference]
    by_case = summarize_rows(scores.rows, "case")
    summary = {
        **info, "methods": labels, "reference_methods": refs,
        "rtf": {k: v / scores.audio_seconds for k, v in scores.seconds.items()} if scores.audio_seconds else {},
        "audio_seconds": scores.audio_seconds,
        "by_case": by_case,
        "by_input_sdr": summarize_rows(scores.rows, "input_sdr_bin"),
        # the background case (the interferer alone) by what interferes
        "by_background": summarize_rows([r for r in scores.rows if r["case"] == "background" and r.get("background")],
                                        "background"),
        "failures": failure_table(scores.rows),
        "level_err_db": {k: v["all"]["level_err_db"] for k, v in by_case.items()},
        "band_balance_db": {k: {b: v["all"][b] for b in BAND_KEYS if BALANCE_BANDS[b][1] <= info["sample_rate"] / 2}
                            for k, v in by_case.items()},
        "do_no_harm": do_no_harm(scores.rows),
        "verdict": verdict(by_case, labels, refs),
        "note": METRIC_NOTE,
    }
    summary["margins"] = _margins(by_case, "opgan")
    return summary


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
    examples: int = 3,
    device: str = "auto",
    batch_size: int = 4,
    stoi: bool = True,
    progress: bool = True,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the evaluation and write `out/{metrics.csv, summary.json, figures/*.png, report.html}`.

    Returns the summary dict (as written to summary.json, before JSON's inf/nan encoding). An `out` that
    holds an earlier evaluation raises FileExistsError unless `overwrite`.
    """
    from opgan.data import open_dataset

    from . import report

    out = Path(out)
    _check_out(out, overwrite)
    device = resolve_device(device)
    restorer = load_restorer(model, device=device)
    ds = open_dataset(data, split, skip_missing=True)
    missing = dict(getattr(ds, "skipped", {}) or {})
    for cid, why in missing.items():
        log(f"warning: clip {cid} skipped: {why}")
    _check_writable(out)
    sr = int(sample_rate or getattr(ds, "sample_rate", None) or restorer.sample_rate)
    if kind == "auto":
        kind = "speech" if (restorer.name.startswith("speech") or sr <= 16000) else "music"
    methods, skipped_baselines = _build_methods(restorer, baselines, device, batch_size, log)
    clips = clip_refs(ds, limit)
    scores = score_clips(ds, clips, methods, sr, with_stoi=stoi, with_pesq=kind == "speech",
                         progress=progress, log=log)
    skipped = {**missing, **scores.skipped}
    if len(scores.skipped) == len(clips):
        raise ValueError(f"{data}: none of the {len(clips)} clips could be read, e.g. "
                         f"{next(iter(scores.skipped.items()))}")
    degenerate = {r["id"]: r["degenerate"] for r in scores.rows if r["degenerate"]}
    info = {
        "data": str(data), "split": split, "model": str(model), "model_name": restorer.name,
        "sample_rate": sr, "kind": kind, "n_clips": len(clips) - len(scores.skipped),
        "clips_in_set": len(ds) + len(missing),
        "skipped_clips": skipped, "degenerate_clips": degenerate,
        "skipped_baselines": skipped_baselines, "pesq": kind == "speech", "stoi": stoi,
        "run": run_details(model, restorer, device),
    }
    summary = summarize(scores, methods, info)
    picks = pick_examples(scores.rows, clips, "opgan", examples)
    summary["examples"] = [{"tag": tag, "id": c.id, "case": c.case} for tag, c in picks]
    write_tables(out, scores.rows, summary)
    audio = example_audio(ds, picks, methods, scores.rows, sr)
    figures = report.make_figures(out / "figures", [r for r in scores.rows if not r["degenerate"]], summary,
                                  audio, sr)
    report.write_html(out / "report.html", summary, figures, audio, sr, scores.rows)
    log(format_table(summary))
    log(f"verdict: {summary['verdict']['text']}")
    log(f"wrote {out / 'metrics.csv'}, {out / 'summary.json'}, {len(figures)} figures, {out / 'report.html'}")
    return summary


# ------------------------------------------------------------------------------------ text table


def _fmt(v: float, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    return f"{v:.{digits}f}"


def format_table(summary: dict, by: str = "by_case") -> str:
    """Plain-text table: method x group with SDRi / SI-SDRi / STOI / PESQ means, then failures per method."""
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
    for key, bands in summary.get("band_balance_db", {}).items():  # per-octave level vs the clean
        if bands:
            lines.append(f"{methods.get(key, key)[:30]:<30} | level vs clean {_fmt(summary['level_err_db'][key])} dB; "
                         + ", ".join(f"{b[5:].replace('_', '-')} {_fmt(v)}" for b, v in bands.items()) + " dB")
    for key, per_metric in summary.get("failures", {}).items():
        counts = ", ".join(f"{m} {v['n']}" for m, v in per_metric.items())
        lines.append(f"failed ({methods.get(key, key)}): {counts} of {summary['n_clips']} clips; e.g. "
                     f"{next(iter(per_metric.values()))['first']}")
    for what, note in (("skipped_clips", "skipped (could not be read)"),
                       ("degenerate_clips", "degenerate (scored, left out of the means)")):
        clips = summary.get(what) or {}
        if clips:
            cid, why = next(iter(clips.items()))
            lines.append(f"{len(clips)} clip(s) {note}; e.g. {cid}: {why}")
    return "\n".join(lines)


EXAMPLES = """examples:
  # offline, in about a minute on 2 cores: build the tiny test set from the shipped clips, then score
  opgan build --kind speech --sources opgan/assets/audio/corpus --rirs opgan/assets/audio/rirs_16k.npz \\
      --size tiny --splits test --out rar_tiny
  opgan evaluate --data rar_tiny --model speech --out eval_tiny --limit 16
  opgan evaluate --data rar_tiny --model runs/speech/best.pt --baselines noisereduce,wpe --out eval_run
  opgan evaluate --data TIMIT-RAR.mat --sample-rate 16000 --out eval_timit --no-stoi --quiet
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="opgan evaluate",
        description="Score a model (and baselines) on a RAR test set: per clip and by case / input-SDR bin.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="builder root or split folder, or a TIMIT-RAR/GTZAN-RAR .mat file")
    p.add_argument("--split", default="test", help="split of a builder root (default: test)")
    p.add_argument("--model", default="speech", help="speech | music | checkpoint path (default: speech)")
    p.add_argument("--out", required=True, help="output folder (metrics.csv, summary.json, figures/, report.html)")
    p.add_argument("--baselines", default=None,
                   help="comma list: cnn=PATH (a q=1 checkpoint), noisereduce, wpe, dfn, oracle (the clean-informed "
                        "magnitude-mask ceiling, a reference row), or all (the package baselines)")
    p.add_argument("--limit", type=int, default=None, help="evaluate N clips spread evenly over the set")
    p.add_argument("--kind", default="auto", choices=["auto", "speech", "music"], help="speech adds PESQ (wide-band)")
    p.add_argument("--sample-rate", type=int, default=None, help="rate of a .mat set (default: the model's)")
    p.add_argument("--examples", type=int, default=3,
                   help="clips shown with spectrograms and audio players: best, median, worst by the model's "
                        "SI-SDRi, then evenly spaced ranks (default 3)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--no-stoi", action="store_true", help="skip STOI (the slowest metric on CPU)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation in --out")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: the cores not already busy, at least 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.threads is not None and args.threads < 1:
            raise ValueError("--threads must be >= 1")
        import torch

        torch.set_num_threads(args.threads or cpu_threads())
        evaluate(
            args.data, args.model, args.out, split=args.split, baselines=args.baselines, limit=args.limit,
            kind=args.kind, sample_rate=args.sample_rate, examples=args.examples, device=args.device,
            batch_size=args.batch_size, stoi=not args.no_stoi, progress=not args.quiet, overwrite=args.overwrite,
        )
    except (CheckpointError, OSError, ValueError, RestoreError) as e:
        print(f"opgan evaluate: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
