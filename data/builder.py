"""`opgan build`: a RAR dataset (clean/corrupted 32000-sample pairs + manifest) from real recordings.

Composition (the paper's Table 1), scaled by `--size` (tiny = 0.02, small = 0.1, paper = 1, or a
fraction): every clean clip of a split gets one random-blend corruption; disjoint groups of the
same clean clips get one single-artifact corruption each (AWGN only / background only / reverb only).

    speech (16 kHz)   train 1500 clean -> 1500 blend + 3x500 single = 3000
                      val    500 clean ->  500 blend + 500 single   = 1000
                      test   703 clean ->  703 blend + 3x250 single = 1453
    music (22.05 kHz) train 1750 clean -> 1750 blend + 3x500 single = 3250
                      val    500 clean ->  500 blend + 500 single   = 1000
                      test   830 clean ->  830 blend + 830 single   = 1660

Every clip is a pure function of (seed, split, case, index), so a re-run skips finished clips,
redoes unfinished ones bit-identically, and never duplicates a clip. Output:
`<out>/<split>/{clean,corrupted}/<id>.wav`, `<out>/<split>/manifest.csv`, `<out>/build.json`.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from .audio import AudioError, save_audio
from .corrupt import ARTIFACTS, CASES, SEVERITY, corrupt
from .bandwidth import MIN_CLEAN_BANDWIDTH_HZ
from .rir import RIRBank
from .sources import SPLITS, BackgroundPool, ClipSampler, SourceFile, discover_splits, parse_background_mix

__all__ = ["build", "main", "source_lists", "plan_split", "COMPOSITION", "SIZES", "SAMPLE_RATES", "CLEAN_MIN_BANDWIDTH_HZ",
           "MANIFEST_FIELDS", "default_rir_bank", "rir_split", "format_report"]

SAMPLE_RATES = {"speech": 16000, "music": 22050}
#: clean targets must hold spectrum up to here (`ClipSampler(min_bandwidth_hz=...)`): speech only, where
#: 8 kHz telephone voices upsampled to 16 kHz would teach that clean speech has no band above 4 kHz
CLEAN_MIN_BANDWIDTH_HZ: dict[str, float | None] = {"speech": MIN_CLEAN_BANDWIDTH_HZ, "music": None}
COMPOSITION = {  # split -> (clean clips, single-artifact clips per artifact in ARTIFACTS order)
    "speech": {"train": (1500, (500, 500, 500)), "val": (500, (167, 167, 166)), "test": (703, (250, 250, 250))},
    "music": {"train": (1750, (500, 500, 500)), "val": (500, (167, 167, 166)), "test": (830, (277, 277, 276))},
}
SIZES = {"tiny": 0.02, "small": 0.1, "paper": 1.0}
MANIFEST_FIELDS = [
    "id", "case", "artifacts", "clean_index", "source", "sample_rate", "length", "clean_peak", "gain",
    "input_sdr_db", "awgn_w", "awgn_snr_db", "awgn_start", "awgn_len", "background_w", "background_sir_db",
    "background_source", "background_start", "background_len", "reverb_w", "reverb_rt60_target", "rt60",
    "drr_db", "rir_index", "reverb_start", "reverb_len",
]
log = logging.getLogger(__name__)
_SPLIT_NO = {s: i for i, s in enumerate(SPLITS)}
_RIR_SPLIT = {"train": range(0, 8), "val": range(8, 9), "test": range(9, 10)}  # RIR index mod 10


def parse_size(size: str | float) -> float:
    if isinstance(size, str) and size in SIZES:
        return SIZES[size]
    try:
        f = float(size)
    except ValueError:
        raise ValueError(f"size must be one of {sorted(SIZES)} or a fraction in (0, 1], got {size!r}") from None
    if not 0 < f <= 1:
        raise ValueError(f"size fraction must lie in (0, 1], got {f}")
    return f


def plan_split(kind: str, split: str, fraction: float) -> list[tuple[str, str, int, int]]:
    """[(id, case, clean_index, case_index)]: blends for every clean clip, then the single-artifact
    groups over consecutive (disjoint while they fit) clean clips."""
    n_clean, singles = COMPOSITION[kind][split]
    n_clean = max(1, round(n_clean * fraction))
    plan = [(f"blend_{i:05d}", "blend", i, i) for i in range(n_clean)]
    offset = 0
    for art, n in zip(ARTIFACTS, singles):
        n = max(1, round(n * fraction))
        plan += [(f"{art}_{j:05d}", art, (offset + j) % n_clean, j) for j in range(n)]
        offset += n
    return plan


def _kind_dir(root: Path, kind: str) -> tuple[Path, Path | None]:
    """(kind folder, sources root or None) for a sources root or a bare kind folder."""
    if (root / kind).is_dir():
        return root / kind, root
    return root, None


def source_lists(sources: str | os.PathLike, kind: str, split: str,
                 extra_background: Iterable[str | os.PathLike] = ()) -> tuple[list[SourceFile], list[SourceFile]]:
    """Clean files of `kind`/`split` and the background pool for that split.

    Background = `<root>/background` plus both kinds' recordings of the same split (other speakers,
    music tracks; the clean clip's own group is excluded at draw time) plus `extra_background`.
    """
    root = Path(sources)
    kind_dir, src_root = _kind_dir(root, kind)
    clean = discover_splits(kind_dir, prefix=f"{kind}:")[split]
    bg: list[SourceFile] = []
    if src_root is not None:
        for other in ("background", "speech", "music"):
            d = src_root / other
            if d.is_dir():
                prefix = "bg:" if other == "background" else f"{other}:"
                bg += clean if other == kind else discover_splits(d, prefix=prefix)[split]
    else:
        bg += clean
    for i, d in enumerate(extra_background):
        d = Path(d)
        bg += discover_splits(d, prefix=f"bg{i}:")[split] if d.is_dir() else [SourceFile(d, f"bg{i}:{d.stem}")]
    return clean, bg


def rir_split(bank: RIRBank, split: str) -> RIRBank:
    """The rooms of one split (RIR index mod 10: 0-7 train, 8 val, 9 test), so no room is shared."""
    idx = [i for i in range(len(bank)) if i % 10 in _RIR_SPLIT[split]]
    return bank.subset(idx) if idx else bank


def default_rir_bank(n: int = 200, seed: int = 0, path: str | os.PathLike | None = None,
                     progress: bool = False) -> RIRBank:
    """The cached 16 kHz bank (`$OPGAN_CACHE/rirs_16k_n{n}_s{seed}.npz`), simulated on first use."""
    if path is None:
        from .fetch import default_cache_dir

        path = default_cache_dir() / f"rirs_16k_n{n}_s{seed}.npz"
    return RIRBank.load_or_simulate(path, n, 16000, seed, progress=progress)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4f}"
    return str(v)


def _read_rows(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {r["id"]: r for r in csv.DictReader(fh)}


def _stats(rows: Iterable[dict]) -> dict:
    by_case: dict[str, list[float]] = {}
    for r in rows:
        by_case.setdefault(r["case"], []).append(float(r["input_sdr_db"]))
    return {c: {"n": len(v), "sdr_mean": round(float(np.mean(v)), 2), "sdr_min": round(float(np.min(v)), 2),
                "sdr_max": round(float(np.max(v)), 2)} for c, v in sorted(by_case.items())}


def build(kind: str, sources: str | os.PathLike, out: str | os.PathLike, size: str | float = "small",
          seed: int = 0, splits: Iterable[str] = SPLITS, rirs: RIRBank | str | os.PathLike | None = None,
          n_rirs: int = 200, clip_len: int = 32000, extra_background: Iterable[str | os.PathLike] = (),
          progress: bool = True, min_bandwidth_hz: float | None | str = "auto",
          background_mix: str | None = None) -> dict:
    """Build (or finish) a dataset; returns the build.json content.

    `background_mix` ('ambience:0.6,music:0.4', see `BackgroundPool`) draws the background's kind by weight;
    None draws one file of the pool uniformly, so the kind with the most files (a speech cache's thousands
    of short files) makes nearly every background.

    `min_bandwidth_hz`: clean groups whose spectrum ends below it are not drawn ("auto":
    `CLEAN_MIN_BANDWIDTH_HZ[kind]` for a new build, the existing build's own setting when resuming, so
    a build made before this rule is finished without it; None keeps every group)."""
    if kind not in SAMPLE_RATES:
        raise ValueError(f"kind must be one of {sorted(SAMPLE_RATES)}, got {kind!r}")
    fraction, sr = parse_size(size), SAMPLE_RATES[kind]
    splits = list(splits)
    out = Path(out)
    meta_path = out / "build.json"
    if min_bandwidth_hz == "auto":  # a new build takes the default; a build is finished as it began
        if meta_path.is_file():
            min_bandwidth_hz = json.loads(meta_path.read_text()).get("min_clean_bandwidth_hz")
            if min_bandwidth_hz is None:
                log.info("%s: resuming a build made without the clean-bandwidth rule, without it", out)
        else:
            min_bandwidth_hz = CLEAN_MIN_BANDWIDTH_HZ[kind]
    sources = Path(sources).expanduser().resolve()
    kind_weights = parse_background_mix(background_mix) if background_mix else None
    config = {"format": "opgan-rar-1", "kind": kind, "sample_rate": sr, "clip_len": clip_len,
              "size": size, "fraction": fraction, "seed": seed, "sources": str(sources),
              "extra_background": [str(Path(p).resolve()) for p in extra_background],
              "n_rirs": (len(rirs) if isinstance(rirs, RIRBank) else n_rirs),
              "min_clean_bandwidth_hz": min_bandwidth_hz,
              "severity": {"awgn_snr_db": SEVERITY.snr_db, "background_sir_db": SEVERITY.sir_db,
                           "reverb_rt60_s": SEVERITY.rt60_s}}
    if kind_weights:  # absent otherwise, so builds made before the option resume unchanged
        config["background_mix"] = kind_weights
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        diff = {k for k in config if k not in ("size",) and json.dumps(old.get(k)) != json.dumps(config[k])}
        if diff:
            raise ValueError(f"{out} holds a build with other settings ({', '.join(sorted(diff))}); "
                             "choose another --out or delete that folder")
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists, is not empty and holds no build.json: refusing to write into it")
    out.mkdir(parents=True, exist_ok=True)
    meta = {**config, "complete": False, "splits": {}}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")

    if isinstance(rirs, (str, os.PathLike)):
        bank = RIRBank.load(rirs)
    elif isinstance(rirs, RIRBank):
        bank = rirs
    else:
        bank = default_rir_bank(n_rirs, seed, progress=progress)
    t_start = time.perf_counter()
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        meta["splits"][split] = _build_split(kind, split, sources, out / split, fraction, seed, sr, clip_len,
                                             bank, list(extra_background), progress, min_bandwidth_hz,
                                             kind_weights)
    meta["build_seconds"] = round(time.perf_counter() - t_start, 1)
    meta["complete"] = set(meta["splits"]) == set(SPLITS)
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, meta_path)
    return meta


def _build_split(kind: str, split: str, sources: Path, dest: Path, fraction: float, seed: int, sr: int,
                 clip_len: int, bank: RIRBank, extra_bg: list, progress: bool,
                 min_bandwidth_hz: float | None = None, kind_weights: dict[str, float] | None = None) -> dict:
    plan = plan_split(kind, split, fraction)
    kind_no = sorted(SAMPLE_RATES).index(kind)
    manifest = dest / "manifest.csv"
    rows = _read_rows(manifest)
    done = {cid for cid, r in rows.items()
            if (dest / "clean" / f"{cid}.wav").is_file() and (dest / "corrupted" / f"{cid}.wav").is_file()}
    todo = [p for p in plan if p[0] not in done]
    t0 = time.perf_counter()
    rejected: dict[str, str] = {}
    band_limited: dict[str, float] = {}
    if todo:
        clean_files, bg_files = source_lists(sources, kind, split, extra_bg)
        if not clean_files:
            raise AudioError(f"{sources}: no {kind} files for the {split} split")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rejected files are collected and reported below
            sampler = ClipSampler(clean_files, sr, clip_len, min_sr=sr, min_bandwidth_hz=min_bandwidth_hz)
        band_limited = sampler.band_limited
        background = BackgroundPool(bg_files, kind_weights=kind_weights) if bg_files else None
        split_bank = rir_split(bank, split)
        dest.mkdir(parents=True, exist_ok=True)
        new_file = not manifest.exists()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(plan), initial=len(plan) - len(todo), desc=f"{kind}/{split}", unit="clip")
        with open(manifest, "a", newline="") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rejected files are collected and reported below
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
            if new_file:
                writer.writeheader()
            for cid, case, ci, j in todo:
                rng_clean = np.random.default_rng([seed, kind_no, _SPLIT_NO[split], 0, ci])
                clip, desc, group = sampler.draw(rng_clean)
                peak = rng_clean.uniform(0.3, 0.9)
                clip = clip * (peak / float(np.max(np.abs(clip))))
                rng = np.random.default_rng([seed, kind_no, _SPLIT_NO[split], 1 + CASES.index(case), j])
                y, x, rec = corrupt(clip, sr, rng, case, background, split_bank, clean_group=group)
                if "rir_index" in rec:
                    rec["rir_index"] = split_bank.parent_index(rec["rir_index"])
                save_audio(dest / "clean" / f"{cid}.wav", x, sr, subtype="PCM_16", overwrite=True)
                save_audio(dest / "corrupted" / f"{cid}.wav", y, sr, subtype="PCM_16", overwrite=True)
                rec.update(id=cid, clean_index=ci, source=desc, sample_rate=sr, length=clip_len,
                           clean_peak=float(np.max(np.abs(x))))
                writer.writerow({k: _fmt(rec.get(k)) for k in MANIFEST_FIELDS})
                fh.flush()
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        rejected = {**sampler.rejected, **(background.rejected if background is not None else {})}
        for path, why in rejected.items():
            log.warning("skipped source %s: %s", path, why)
    # Rewrite the manifest in plan order, one row per id (a resumed run may have appended twice).
    rows = _read_rows(manifest)
    ordered = [rows[cid] for cid, *_ in plan if cid in rows]
    tmp = manifest.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(ordered)
    os.replace(tmp, manifest)
    return {"clips": len(ordered), "clean_clips": len({r["clean_index"] for r in ordered}),
            "seconds_audio": round(len(ordered) * clip_len / sr, 1), "new_clips": len(todo),
            "build_seconds": round(time.perf_counter() - t0, 1), "input_sdr_db": _stats(ordered),
            "rejected_sources": rejected, "band_limited_groups": band_limited}


def format_report(meta: dict) -> str:
    """A plain-text table: clips, minutes and input SDR (mean/min/max) per split and case."""
    lines = [f"{meta['kind']} @ {meta['sample_rate']} Hz, size {meta['size']} (x{meta['fraction']}), "
             f"seed {meta['seed']}, built in {meta.get('build_seconds', 0)} s",
             f"{'split':<6} {'case':<11} {'clips':>6} {'min':>6} {'SDR mean':>9} {'SDR min':>8} {'SDR max':>8}"]
    for split, s in meta["splits"].items():
        for case, st in s["input_sdr_db"].items():
            lines.append(f"{split:<6} {case:<11} {st['n']:>6} {st['n'] * meta['clip_len'] / meta['sample_rate'] / 60:>6.1f} "
                         f"{st['sdr_mean']:>9.2f} {st['sdr_min']:>8.2f} {st['sdr_max']:>8.2f}")
    return "\n".join(lines)


EXAMPLES = """examples:
  # offline, from the recordings shipped in a checkout (a few seconds):
  opgan build --kind speech --sources opgan/assets/audio/corpus --rirs opgan/assets/audio/rirs_16k.npz \\
      --size tiny --splits test --out rar_tiny
  opgan build --kind speech --out rar_speech          # from the `opgan fetch` cache, size small
  opgan build --kind music --size paper --out rar_music --quiet
"""


def main(argv: list[str] | None = None) -> int:
    from .fetch import default_cache_dir

    ap = argparse.ArgumentParser(prog="opgan build", description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", required=True, choices=sorted(SAMPLE_RATES))
    ap.add_argument("--sources", type=Path, default=None,
                    help="sources root (speech/, music/, background/) or a folder of audio "
                         "(default: the `opgan fetch` cache, $OPGAN_CACHE or ~/.cache/opgan)")
    ap.add_argument("--out", type=Path, required=True, help="output folder (created; re-run to resume)")
    ap.add_argument("--size", default="small", help="tiny | small | paper | a fraction in (0, 1] (default small)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--splits", default="train,val,test", help="comma-separated subset of train,val,test")
    ap.add_argument("--background", type=Path, action="append", default=[],
                    help="extra background folder (repeatable; train/val/test sub-folders respected)")
    ap.add_argument("--background-mix", default=None, metavar="KIND:W,...",
                    help="draw the background's kind by weight, e.g. ambience:0.6,music:0.4 (kinds: synthetic, ambience = "
                         "background folders, speech, music); default: one file of the pool uniformly, so "
                         "the kind with the most files dominates")
    ap.add_argument("--rirs", type=Path, default=None, help="a RIR bank .npz (default: simulate/cached)")
    ap.add_argument("--n-rirs", type=int, default=200, help="rooms to simulate when --rirs is not given")
    ap.add_argument("--min-bandwidth", type=float, default=None, metavar="HZ",
                    help="clean speakers/tracks whose long-term spectrum ends below HZ are not used as clean "
                         f"targets (default: {MIN_CLEAN_BANDWIDTH_HZ:.0f} for speech, off for music; 0 = off)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING, format="%(message)s")
    sources = args.sources or default_cache_dir()
    if not sources.is_dir():
        print(f"opgan build: {sources}: no such folder; run `opgan fetch` first or pass --sources DIR",
              file=sys.stderr)
        return 2
    try:
        meta = build(args.kind, sources, args.out, args.size, args.seed, args.splits.split(","),
                     rirs=args.rirs, n_rirs=args.n_rirs, extra_background=args.background,
                     progress=not args.quiet, background_mix=args.background_mix,
                     min_bandwidth_hz="auto" if args.min_bandwidth is None else (args.min_bandwidth or None))
    except (ValueError, FileExistsError, FileNotFoundError) as exc:  # AudioError is a ValueError
        print(f"opgan build: {exc}", file=sys.stderr)
        return 2
    print(format_report(meta))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
