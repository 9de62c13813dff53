"""How much of a restorer's SDR gap is output level, and can a blind per-clip gain recover it?

Plain SDR is scale-sensitive: an output that keeps the room's energy is louder than the dry clean and
loses SDR even where its SI-SDR is fine. This script measures, per test set, (1) the SDRi the model
would reach if every output were scaled to the clean's level (an oracle: the ceiling of any level
correction), and (2) what a blind per-clip gain actually recovers: a ridge regression from level-free
statistics of the input and output spectra (per-band log-power quantiles, frame-energy quantiles,
spectral flux, output/input band ratios) to the clean's level relative to the output, fitted on a
built folder's ``train`` split and scored on its ``val`` split, on clean copies of ``val`` (do no
harm) and on the test sets. Every clip is one 2 s window, restored as `opgan.enhance.enhance_clips`
does (peak-normalised).

    python bench/level_calibration.py --model speech --fit datasets/level-fit \\
        --test datasets/prompts datasets/sentences --json docs/results/level-calibration.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

N_FFT, HOP, BANDS = 512, 128, 16
QUANTILES = (5, 25, 50, 75, 95)


def _band_db(x: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, BANDS, frames) log power per log-spaced band, relative to each clip's mean power."""
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, return_complex=True)
    p = spec.abs().square()
    edges = np.unique(np.round(np.geomspace(2, p.shape[1], BANDS + 1)).astype(int))
    edges[0] = 0
    bands = torch.stack([p[:, a:b].mean(1) for a, b in zip(edges[:-1], edges[1:])], 1)
    ref = bands.mean((1, 2), keepdim=True).clamp_min(1e-12)
    return 10 * torch.log10(bands / ref + 1e-8)


def _features(bi: np.ndarray, bo: np.ndarray) -> np.ndarray:
    out = []
    for b in (bi, bo):
        out.append(np.percentile(b, QUANTILES, axis=2).transpose(1, 0, 2).reshape(len(b), -1))
        e = 10 * np.log10((10 ** (b / 10)).sum(1) + 1e-8)
        out.append(np.percentile(e, (5, 10, 25, 50, 75, 90, 95), axis=1).T)
        d = np.diff(b, axis=2)
        out += [np.abs(d).mean(2), np.clip(d, 0, None).mean(2)]
    out.append((bo - bi).mean(2))
    return np.concatenate(out, 1)


def collect(restorer, folder: Path, split: str, clean_input: bool = False, batch: int = 16) -> dict[str, np.ndarray]:
    """Per clip: <s,s>, <s,y>, <y,y>, the input SDR, the case and the feature vector."""
    from opgan.data import open_dataset
    from opgan.enhance import enhance_clips

    ds = open_dataset(str(folder), split=split)
    ids = list(getattr(ds, "ids", [])) or [f"{i:05d}" for i in range(len(ds))]
    rec: dict[str, list] = {k: [] for k in ("ss", "sy", "yy", "inp_sdr", "feat")}
    with torch.inference_mode():
        for i0 in range(0, len(ds), batch):
            pairs = [ds[i] for i in range(i0, min(len(ds), i0 + batch))]
            s = torch.stack([c.reshape(1, -1) for _, c in pairs]).float()
            x = s.clone() if clean_input else torch.stack([n.reshape(1, -1) for n, _ in pairs]).float()
            y = enhance_clips(restorer.generator, x)
            rec["ss"].append(s.square().sum((1, 2)))
            rec["sy"].append((s * y).sum((1, 2)))
            rec["yy"].append(y.square().sum((1, 2)))
            rec["inp_sdr"].append(10 * torch.log10(s.square().sum((1, 2)) / (s - x).square().sum((1, 2)).clamp_min(1e-20)))
            rec["feat"].append(torch.from_numpy(_features(_band_db(x[:, 0]).numpy(), _band_db(y[:, 0]).numpy())))
    out = {k: torch.cat(v).double().numpy() for k, v in rec.items()}
    out["case"] = np.array(["clean" if clean_input else i.split("_")[0] for i in ids])
    return out


def _sdr(d: dict[str, np.ndarray], g: np.ndarray | float) -> np.ndarray:
    err = np.maximum(d["ss"] - 2 * g * d["sy"] + g * g * d["yy"], d["ss"] * 1e-5)  # capped at 50 dB
    return 10 * np.log10(d["ss"] / err)


def score(d: dict[str, np.ndarray], gain_db: np.ndarray) -> dict:
    """SDR change from scaling each output by ``gain_db``, overall, per case and on light inputs."""
    base = _sdr(d, 1.0)
    oracle_db = 10 * np.log10(d["ss"] / d["yy"])
    delta = _sdr(d, 10 ** (gain_db / 20)) - base
    oracle = _sdr(d, 10 ** (oracle_db / 20)) - base
    light = d["inp_sdr"] >= 15
    resid = gain_db - oracle_db  # the blind gain's level error against the clean, per clip
    r = {"clips": int(len(base)), "level_vs_clean_db": float(-oracle_db.mean()),
         "oracle_sdr_change": float(oracle.mean()), "blind_sdr_change": float(delta.mean()),
         "blind_level_vs_clean_db": float(resid.mean()),
         "blind_abs_level_error_db": float(np.abs(resid).mean()), "abs_level_error_db": float(np.abs(oracle_db).mean()),
         "by_case": {c: {"oracle_sdr_change": float(oracle[d["case"] == c].mean()),
                         "blind_sdr_change": float(delta[d["case"] == c].mean())} for c in sorted(set(d["case"]))}}
    if light.any():
        r["light"] = {"clips": int(light.sum()), "blind_mean": float(delta[light].mean()), "blind_worst": float(delta[light].min())}
    var = oracle_db.var()
    r["r2"] = float(1 - resid.var() / var) if var > 1e-9 else None
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="speech")
    ap.add_argument("--fit", type=Path, required=True, help="a built folder with train and val splits")
    ap.add_argument("--test", type=Path, nargs="*", default=[], help="built folders with a test split")
    ap.add_argument("--ridge", type=float, default=100.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from opgan.enhance import load_restorer

    torch.set_num_threads(1)
    try:
        r = load_restorer(args.model)
        train = [collect(r, args.fit, "train"), collect(r, args.fit, "train", clean_input=True)]
        sets = {"val": collect(r, args.fit, "val"), "val, clean inputs": collect(r, args.fit, "val", clean_input=True)}
        sets.update({p.name: collect(r, p, "test") for p in args.test})
    except (OSError, ValueError, KeyError) as e:  # a folder that is not a build, a missing split, a bad model
        print(f"level_calibration: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    x = np.concatenate([d["feat"] for d in train])
    t = np.concatenate([10 * np.log10(d["ss"] / d["yy"]) for d in train])
    mu, sd = x.mean(0), x.std(0) + 1e-3
    z = (x - mu) / sd
    w = np.linalg.solve(z.T @ z + args.ridge * np.eye(z.shape[1]), z.T @ (t - t.mean()))
    results = {name: score(d, ((d["feat"] - mu) / sd) @ w + t.mean()) for name, d in sets.items()}
    print(f"{'set':<20} {'clips':>5} {'level':>6} {'oracle dSDR':>11} {'blind dSDR':>10} {'R2':>5} {'|err| dB':>8} "
          f"{'light mean / worst':>18}")
    for name, s in results.items():
        light = s.get("light", {})
        print(f"{name:<20} {s['clips']:>5} {s['level_vs_clean_db']:>+6.2f} {s['oracle_sdr_change']:>+11.2f} "
              f"{s['blind_sdr_change']:>+10.2f} {s['r2'] if s['r2'] is None else round(s['r2'], 2)!s:>5} "
              f"{s['blind_abs_level_error_db']:>8.2f} {light.get('blind_mean', math.nan):>+8.2f} / "
              f"{light.get('blind_worst', math.nan):+.2f}")
    if args.json:
        cmd = "python bench/level_calibration.py " + " ".join(sys.argv[1:] if argv is None else argv)
        args.json.write_text(json.dumps({"command": cmd, "model": args.model, "features": int(x.shape[1]),
                                         "fit_clips": int(len(t)), "ridge": args.ridge, "sets": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
