"""Wall time of `opgan restore` per CPU thread setting, interleaved, on whatever load the machine has.

    python bench/restore_threads.py                          # default vs --threads 1 vs 2, 3 rounds
    python bench/restore_threads.py --settings default,1,2,4 --rounds 5 --seconds 30 --model music

Each run is a fresh `python -m opgan restore` process (as a user runs it) on the same synthetic
file; the settings are interleaved round by round so that a change in the machine's load hits all
of them alike. Prints min / median / max wall seconds per setting and the 1-minute load average
seen before each run. "default" passes no `--threads`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def _input(folder: Path, seconds: float, sr: int, channels: int) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    x = np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)])
    x += 0.05 * rng.standard_normal(x.shape)
    path = folder / "in.wav"
    sf.write(path, x.T.astype(np.float32), sr)
    return path


def _run(src: Path, out: Path, model: str, setting: str) -> float:
    cmd = [sys.executable, "-m", "opgan", "restore", str(src), "-o", str(out), "--model", model,
           "--device", "cpu", "--overwrite"]
    if setting != "default":
        cmd += ["--threads", setting]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default="default,1,2", help="comma list: 'default' and/or thread counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the synthetic input")
    ap.add_argument("--sample-rate", type=int, default=16000)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--model", default="speech")
    args = ap.parse_args(argv)
    settings = args.settings.split(",")
    times: dict[str, list[float]] = {s: [] for s in settings}
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        src = _input(Path(tmp), args.seconds, args.sample_rate, args.channels)
        for r in range(args.rounds):
            order = settings if r % 2 == 0 else settings[::-1]
            for s in order:
                loads.append(os.getloadavg()[0])
                times[s].append(_run(src, Path(tmp) / "out", args.model, s))
                print(f"round {r + 1} {s:>8}: {times[s][-1]:6.1f} s (load {loads[-1]:.1f})", flush=True)
    print(f"\n{args.seconds:g} s of {args.sample_rate} Hz x{args.channels}, model {args.model}, "
          f"{os.cpu_count()} CPUs, load {min(loads):.1f}-{max(loads):.1f}")
    print(f"{'threads':>8}  {'min':>6}  {'median':>6}  {'max':>6}  (wall s, {args.rounds} runs)")
    for s, v in times.items():
        print(f"{s:>8}  {min(v):6.1f}  {statistics.median(v):6.1f}  {max(v):6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
