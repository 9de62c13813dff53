"""Pack the fetched sources into a compact, split-aware corpus (Ogg Vorbis), e.g. the shipped
`opgan/assets/audio/corpus` or a larger training corpus for a machine without apt/pyroomacoustics:

    <out>/speech/{train,val,test}/<speaker>/<speaker>_<k>.ogg   (16 kHz, prompts joined into ~30 s)
    <out>/music/{train,val,test}/<track>.ogg                    (22.05 kHz excerpt or whole track)
    <out>/background/{train,val,test}/<clip>.ogg                (22.05 kHz mono)

Selection is seeded; the split of every speaker/track/clip is the cache's (see `opgan.data.fetch`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .audio import load_mono, save_audio
from .sources import SPLITS, discover_splits

__all__ = ["pack_corpus", "pack_fixture", "main"]


def _budget(spec: float | dict | None, split: str) -> float | None:
    return spec.get(split) if isinstance(spec, dict) else spec


def _speakers_by_split(cache: Path) -> dict[str, dict[str, list[Path]]]:
    """The fetch cache's speech files, per split, grouped by speaker (in discovery order)."""
    speech = discover_splits(cache / "speech")
    out: dict[str, dict[str, list[Path]]] = {}
    for split in SPLITS:
        by_spk = out.setdefault(split, {})
        for f in speech[split]:
            by_spk.setdefault(f.group, []).append(f.path)
    return out


def _by_group(files) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for f in sorted(files, key=lambda f: f.path.name):
        out.setdefault(f.group, []).append(f.path)
    return out


def pack_corpus(cache: Path, out: Path, speech_s: float | dict | None = 150.0, music_s: float | None = 30.0,
                music_tracks: dict | None = None, background_s: float | None = 10.0,
                background_clips: dict | None = None, chunk_s: float = 30.0, seed: int = 0,
                quality: float = 0.3, only: dict[str, set[str]] | None = None) -> dict:
    """Write the corpus; budgets are seconds per speaker (per split if a dict) / per excerpt
    (None = everything); `*_tracks`/`*_clips` cap how many items each split keeps. `only`
    ({kind: {group, ...}}) packs just those groups (other kinds not at all) and leaves the rest of
    `out` as it is: that is how the shipped corpus grows without rewriting its older files."""
    rng = np.random.default_rng(seed)

    def wanted(kind: str, group: str) -> bool:
        return only is None or group in only.get(kind, ())
    summary: dict = {}

    def write(path: Path, x: np.ndarray, sr: int) -> None:
        save_audio(path, x, sr, overwrite=True, compression_level=quality)
        summary.setdefault(path.relative_to(out).parts[0], []).append((path, x.size / sr))

    speakers = _speakers_by_split(cache)
    for split in SPLITS:
        for spk, files in sorted(speakers[split].items()):
            if not wanted("speech", spk):
                continue
            files = [files[i] for i in rng.permutation(len(files))]
            budget = _budget(speech_s, split)
            chunk_len = chunk_s if budget is None else min(chunk_s, budget)  # a budget under one chunk: met, not rounded up
            chunk, total, k = [], 0.0, 0
            gap = np.zeros(int(0.15 * 16000), np.float32)
            for p in files:
                x, _ = load_mono(p, 16000)
                chunk += [x, gap]
                if sum(c.size for c in chunk) >= chunk_len * 16000:
                    sig = np.concatenate(chunk)
                    write(out / "speech" / split / spk / f"{spk}_{k:03d}.ogg", sig, 16000)
                    total += sig.size / 16000
                    chunk, k = [], k + 1
                    if budget is not None and total >= budget:
                        break
            if chunk and (budget is None or total < budget):
                write(out / "speech" / split / spk / f"{spk}_{k:03d}.ogg", np.concatenate(chunk), 16000)

    def excerpt(x: np.ndarray, sr: int, seconds: float | None) -> np.ndarray:
        if seconds is None or x.size <= seconds * sr:
            return x
        n = int(seconds * sr)
        lo = min(int(5 * sr), x.size - n)  # skip a fade-in
        start = int(rng.integers(lo, x.size - n + 1))
        return x[start:start + n]

    for kind, secs, caps in (("music", music_s, music_tracks), ("background", background_s, background_clips)):
        parts = discover_splits(cache / kind)
        for split in SPLITS:
            groups = _by_group(parts[split])
            names = sorted(g for g in groups if wanted(kind, g))
            cap = (caps or {}).get(split)
            if cap is not None and len(names) > cap:
                names = [names[i] for i in sorted(rng.choice(len(names), cap, replace=False))]
            for g in names:
                files = groups[g]
                if secs is None:  # everything: a piece cut into parts keeps its folder (one group)
                    for f in files:
                        x, _ = load_mono(f, 22050)
                        sub = (g,) if len(files) > 1 else ()
                        write(out.joinpath(kind, split, *sub, f"{f.stem}.ogg"), x, 22050)
                    continue
                x, _ = load_mono(files[int(rng.integers(len(files)))], 22050)  # one excerpt per piece
                write(out / kind / split / f"{g}.ogg", excerpt(x, 22050, secs), 22050)
    return {k: {"files": len(v), "minutes": round(sum(d for _, d in v) / 60, 2),
                "megabytes": round(sum(p.stat().st_size for p, _ in v) / 1e6, 2)} for k, v in summary.items()}


def pack_fixture(cache: Path, out: Path, seed: int = 0) -> None:
    """The test fixture: per split a few real prompts per speaker (FLAC, so the short-file joining
    is exercised), 3 s music excerpts and 2 s background excerpts (Ogg)."""
    rng = np.random.default_rng(seed)
    speakers = _speakers_by_split(cache)
    for split in SPLITS:
        for spk, files in sorted(speakers[split].items()):
            picked, total = [], 0.0
            for i in rng.permutation(len(files)):
                x, _ = load_mono(files[i], 16000)
                if 0.8 <= x.size / 16000 <= 2.5:
                    picked.append((files[i].name, x))
                    total += x.size / 16000
                if total >= 3.0:
                    break
            for name, x in picked:
                save_audio(out / "speech" / split / spk / name, x, 16000, subtype="PCM_16", overwrite=True)
    for kind, secs, n_train in (("music", 3.0, 2), ("background", 2.0, 2)):
        parts = discover_splits(cache / kind)
        for split in SPLITS:
            files = sorted(parts[split], key=lambda f: f.path.name)
            for j in sorted(rng.choice(len(files), min(len(files), n_train if split == "train" else 1), replace=False)):
                x, _ = load_mono(files[j].path, 22050)
                n = int(secs * 22050)
                start = int(rng.integers(min(5 * 22050, x.size - n), x.size - n + 1))
                save_audio(out / kind / split / f"{files[j].path.stem}.ogg", x[start:start + n], 22050,
                           overwrite=True)


def main(argv: list[str] | None = None) -> int:
    from .fetch import default_cache_dir

    ap = argparse.ArgumentParser(prog="python -m opgan.data.pack", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=None, help="the `opgan fetch` cache")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--speech-s", type=float, default=150.0, help="seconds per speaker (<=0: all)")
    ap.add_argument("--music-s", type=float, default=30.0, help="seconds per track (<=0: whole tracks)")
    ap.add_argument("--background-s", type=float, default=10.0, help="seconds per clip (<=0: whole clips)")
    ap.add_argument("--quality", type=float, default=0.3, help="Vorbis compression level 0 (best) .. 1")
    ap.add_argument("--chunk-s", type=float, default=30.0, help="seconds per speech file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", action="append", default=[], metavar="KIND:GROUP",
                    help="pack only these speakers/pieces/clips (repeatable), keep the rest of --out")
    a = ap.parse_args(argv)
    pos = lambda v: v if v > 0 else None  # noqa: E731
    only: dict[str, set[str]] | None = None
    for item in a.only:
        kind, _, group = item.partition(":")
        if kind not in ("speech", "music", "background") or not group:
            ap.error(f"--only {item!r}: expected speech|music|background:GROUP")
        only = only or {}
        only.setdefault(kind, set()).add(group)
    summary = pack_corpus((a.cache or default_cache_dir()).expanduser(), a.out, pos(a.speech_s), pos(a.music_s),
                          background_s=pos(a.background_s), chunk_s=a.chunk_s, seed=a.seed, quality=a.quality,
                          only=only)
    for kind, s in summary.items():
        print(f"{kind:>10}: {s['files']:4d} files, {s['minutes']:6.1f} min, {s['megabytes']:6.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
