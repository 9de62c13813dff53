"""What each method does to a test set's *clean* clips: SI-SDR of method(clean) against the clean, and
the per-octave level against it.

A restorer should leave clean speech alone. It also tells a test set's references apart: a method
that changes a set's clean clips much more than another set's (WPE, a pure dereverberator, most of
all) says that set's "clean" recordings hold what the method removes (reverberation, noise).

    python bench/clean_input.py datasets/eval-speech datasets/eval-speech-sentences \
        --json docs/results/clean-input-speech.json
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf


def clean_clips(build: Path, split: str, n: int) -> list[Path]:
    """The first `n` distinct clean clips of a build's split (blend rows: one per clean passage)."""
    with open(build / split / "manifest.csv", newline="") as fh:
        ids = [r["id"] for r in csv.DictReader(fh) if r["case"] == "blend"]
    return [build / split / "clean" / f"{i}.wav" for i in ids[:n]]


def score(build: Path, methods: list, split: str, n: int) -> dict:
    from opgan.metrics import band_balance_db, si_sdr

    si: dict[str, list[float]] = {m.key: [] for m in methods}
    bands: dict[str, list[list[float]]] = {m.key: [] for m in methods}
    keys: list[str] = []
    for path in clean_clips(build, split, n):
        x, sr = sf.read(path, dtype="float32")
        for m in methods:
            y = np.asarray(m.fn(x, sr), dtype=np.float64).reshape(-1)
            si[m.key].append(si_sdr(y, x))
            b = band_balance_db(y, x, sr)
            keys = list(b)
            bands[m.key].append(list(b.values()))
    return {k: {"n": len(v), "si_sdr_mean": float(np.mean(v)), "si_sdr_min": float(np.min(v)),
                "bands_db": dict(zip(keys, np.round(np.mean(bands[k], axis=0), 2).tolist()))}
            for k, v in si.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builds", nargs="+", type=Path, help="builder roots (opgan build --out)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--clips", type=int, default=25, help="clean clips per set (default 25)")
    ap.add_argument("--model", default="speech")
    ap.add_argument("--baselines", default="noisereduce,wpe,dfn")
    ap.add_argument("--json", type=Path, default=None, help="write the record here")
    args = ap.parse_args(argv)
    from opgan.baselines import BaselineUnavailable, make_baseline, model_method, parse_baselines
    from opgan.enhance import load_restorer

    for b in args.builds:
        if not (b / args.split / "manifest.csv").is_file():
            print(f"clean_input: {b}: no {args.split}/manifest.csv (not a build)", file=sys.stderr)
            return 2
    methods = [model_method(load_restorer(args.model, device="cpu"), batch_size=4)]
    for name, arg in parse_baselines(args.baselines):
        try:
            methods.append(make_baseline(name, arg, device="cpu", batch_size=4))
        except BaselineUnavailable as e:
            print(f"note: {name} skipped: {e}", file=sys.stderr)
    rec = {"command": "python bench/clean_input.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model": args.model,
           "methods": {m.key: m.label for m in methods},
           "sets": {b.name: score(b, methods, args.split, args.clips) for b in args.builds}}
    for name, per in rec["sets"].items():
        for k, v in per.items():
            print(f"{name:<28} {rec['methods'][k]:<30} SI-SDR {v['si_sdr_mean']:6.2f} (min {v['si_sdr_min']:6.2f})  "
                  + ", ".join(f"{b[5:]} {d:+.2f}" for b, d in v["bands_db"].items()))
    if args.json:
        args.json.write_text(json.dumps(rec, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
