"""Real-time factor of the shipped models through `opgan.restore.restore_file` (read, resample,
overlap-add, write), in process, so start-up is not counted.

    python bench/restore_rtf.py                                   # speech and music, 60 s, 1 and 2 threads
    python bench/restore_rtf.py --json docs/results/rtf.json      # the record docs/restore.md's table is made from

RTF = seconds of processing per second of audio (below 1 is faster than real time). "CPU RTF" is the
process CPU time over the audio duration (what the work costs, whatever else runs); "wall RTF" is
the elapsed time, best / median of the rounds, on the machine as it is loaded (its 1-minute load
average is recorded).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

RATES = {"speech": 16000, "music": 22050}


def _input(folder: Path, seconds: float, sr: int) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.03 * rng.standard_normal(t.size)
    path = folder / f"in_{sr}.wav"
    sf.write(path, x.astype(np.float32), sr)
    return path


def measure(model: str, seconds: float, threads: int, rounds: int) -> dict:
    from opgan.enhance import load_restorer
    from opgan.restore import restore_file

    torch.set_num_threads(threads)
    restorer = load_restorer(model)
    with tempfile.TemporaryDirectory() as tmp:
        src = _input(Path(tmp), seconds, RATES.get(model, restorer.sample_rate))
        restore_file(src, Path(tmp) / "warm.wav", restorer, overwrite=True)
        walls, cpus, loads = [], [], []
        for i in range(rounds):
            loads.append(os.getloadavg()[0])
            w, c = time.perf_counter(), time.process_time()
            restore_file(src, Path(tmp) / f"out{i}.wav", restorer, overwrite=True)
            walls.append(time.perf_counter() - w)
            cpus.append(time.process_time() - c)
    return {"model": model, "threads": threads, "seconds": seconds, "rounds": rounds,
            "cpu_rtf": statistics.median(cpus) / seconds, "wall_rtf_best": min(walls) / seconds,
            "wall_rtf_median": statistics.median(walls) / seconds, "load_avg": [min(loads), max(loads)]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="speech,music")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="write the record here")
    args = ap.parse_args(argv)
    rows = [measure(m, args.seconds, int(t), args.rounds)
            for m in args.models.split(",") for t in args.threads.split(",")]
    for r in rows:
        print(f"{r['model']:>6}  threads {r['threads']}  CPU RTF {r['cpu_rtf']:.3f}  wall RTF best "
              f"{r['wall_rtf_best']:.3f} median {r['wall_rtf_median']:.3f}  (load {r['load_avg'][0]:.1f}-"
              f"{r['load_avg'][1]:.1f})")
    if args.json:
        cmd = "python bench/restore_rtf.py " + " ".join(argv if argv is not None else sys.argv[1:])
        rec = {"command": cmd.strip(), "machine": f"{platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} logical cores", "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d"), "rows": rows}
        args.json.write_text(json.dumps(rec, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
