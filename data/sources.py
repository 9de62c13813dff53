"""Source recordings: split discovery by speaker/track, clean-clip sampling, background pools.

A *group* is one recording identity (a speaker folder, a music track, an ambience clip). Splits are
made by group, so no recording appears in two of train/val/test. A kind folder is split by, first
match wins:

1. `train/`, `val/`, `test/` subfolders (the shipped corpus and the `.gpu/sources` layout);
2. a `splits.json` beside the groups (`{"train": [group, ...], "val": [...], "test": [...]}`,
   written by `opgan fetch`);
3. otherwise a stable hash of the group names (about 80/10/10, at least one group per split).
   With fewer than three groups, files are split by hash instead (with a warning: the same speaker
   or track then appears in several splits).

Group of a file = its first folder below the split (or kind) folder, or its file stem when it lies
directly there.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf

from .audio import AudioError, find_audio_files, load_excerpt, load_mono
from .synth_noise import synth_ambience

__all__ = [
    "SPLITS", "GROUP_WEIGHTS", "BAND_CHECK_FILES", "BACKGROUND_KINDS", "SourceFile", "discover_splits", "files_with_groups",
    "ClipSampler", "BackgroundPool", "source_kind", "background_kind", "parse_weights", "parse_background_mix",
]

SPLITS = ("train", "val", "test")
#: how ClipSampler draws a group (speaker / track): uniformly, or in proportion to sqrt(its minutes)
GROUP_WEIGHTS = ("uniform", "sqrt")
#: what a background excerpt is, by the prefix of its file's group ("bg:", "bg0:" ... are ambience folders);
#: "synthetic" is no file: shaped, modulated, bursty or tonal noise made from the draw's seed (data.synth_noise)
BACKGROUND_KINDS = ("ambience", "speech", "music", "synthetic")
#: files per group (evenly spread) whose spectrum decides a group's bandwidth (`min_bandwidth_hz`)
BAND_CHECK_FILES = 24

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceFile:
    path: Path
    group: str


def _group_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else path.stem


def files_with_groups(roots: str | os.PathLike | Iterable[str | os.PathLike | SourceFile],
                      prefix: str = "") -> list[SourceFile]:
    """Audio files under each root (a folder or a file), grouped by first sub-folder or stem;
    `SourceFile`s pass through unchanged."""
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    out: list[SourceFile] = []
    for root in roots:
        if isinstance(root, SourceFile):
            out.append(root)
            continue
        root = Path(root)
        if root.is_file():
            out.append(SourceFile(root, prefix + root.stem))
            continue
        for p in find_audio_files(root):
            out.append(SourceFile(p, prefix + _group_of(p, root)))
    return out


def _hash(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def discover_splits(kind_dir: str | os.PathLike, prefix: str = "") -> dict[str, list[SourceFile]]:
    """Split one kind's folder into train/val/test file lists (see module docstring for the rules)."""
    kind_dir = Path(kind_dir)
    if not kind_dir.is_dir():
        raise AudioError(f"{kind_dir}: no such folder of audio")
    if any((kind_dir / s).is_dir() for s in SPLITS):
        return {s: files_with_groups(kind_dir / s, prefix) if (kind_dir / s).is_dir() else [] for s in SPLITS}
    files = files_with_groups(kind_dir, prefix)
    if not files:
        raise AudioError(f"{kind_dir}: holds no audio files ({', '.join(('.wav', '.flac', '.ogg'))})")
    groups = sorted({f.group for f in files})
    split_file = kind_dir / "splits.json"
    if split_file.is_file():
        spec = json.loads(split_file.read_text())
        where = {prefix + g: s for s in SPLITS for g in spec.get(s, [])}
        unknown = sorted(set(groups) - set(where))
        if unknown and "train" in spec:  # without a "train" list, unlisted groups are train by design
            warnings.warn(f"{split_file}: groups not listed, put in train: {unknown[:5]}", stacklevel=2)
        return {s: [f for f in files if where.get(f.group, "train") == s] for s in SPLITS}
    if len(groups) >= 3:
        ordered = sorted(groups, key=_hash)
        n_hold = max(1, round(0.1 * len(groups)))
        test, val = set(ordered[:n_hold]), set(ordered[n_hold:2 * n_hold])
        pick = lambda g: "test" if g in test else "val" if g in val else "train"  # noqa: E731
        return {s: [f for f in files if pick(f.group) == s] for s in SPLITS}
    warnings.warn(f"{kind_dir}: fewer than 3 speakers/tracks, splitting by file: the same recording "
                  "identity appears in several splits", stacklevel=2)
    def by_file(f: SourceFile) -> str:
        h = int(_hash(str(f.path.relative_to(kind_dir))), 16) % 10
        return "test" if h == 0 else "val" if h == 1 else "train"
    return {s: [f for f in files if by_file(f) == s] for s in SPLITS}


class _LRU:
    """A small cache of decoded, resampled mono signals keyed by path."""

    def __init__(self, sr: int, size: int = 64):
        self.sr, self.size, self.data = sr, size, OrderedDict()

    def __call__(self, path: Path) -> np.ndarray:
        if path in self.data:
            self.data.move_to_end(path)
            return self.data[path]
        x, _ = load_mono(path, self.sr)
        self.data[path] = x
        if len(self.data) > self.size:
            self.data.popitem(last=False)
        return x


def _active_fraction(x: np.ndarray, sr: int, rel_db: float = -40.0) -> float:
    """Fraction of 20 ms frames whose energy is within `rel_db` of the loudest frame."""
    f = max(1, int(0.02 * sr))
    n = len(x) // f
    if n == 0:
        return 0.0
    e = np.mean(x[: n * f].reshape(n, f) ** 2, axis=1)
    top = float(e.max())
    return 0.0 if top <= 0 else float(np.mean(e > top * 10 ** (rel_db / 10)))


def _unit_rms(seg: np.ndarray, sr: int) -> np.ndarray | None:
    """A background excerpt scaled to unit RMS (float32), or None if it is (nearly) silent or active in
    under 30 % of its 20 ms frames."""
    rms = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))
    if rms > 1e-5 and _active_fraction(seg, sr, -30.0) >= 0.3:
        return (seg / rms).astype(np.float32)
    return None


class ClipSampler:
    """Draw clean clips of `clip_len` samples at `sr` from a list of source files.

    Speakers (groups) are drawn uniformly (`group_weight="uniform"`) or in proportion to the square
    root of their minutes (`"sqrt"`: a speaker with 100x the audio is drawn 10x as often, so a pile of
    short letter readings cannot crowd out long natural speech, nor one long voice the rest); files
    within a group in proportion to their length.
    Files shorter than a clip are joined with the next files of the same group (short pauses in
    between), which is how 1–3 s voice prompts make 2 s clips. Windows that are mostly silence are
    redrawn. Unusable files (unreadable, empty, non-finite, shorter than `min_seconds`, or sampled
    below `sr` when `min_sr` is set) are reported once by name in `self.rejected` and skipped.

    `min_bandwidth_hz` keeps band-limited recordings out of the clean targets: a group whose pooled
    long-term spectrum ends below it (`opgan.data.bandwidth.band_edge_hz`, read at `sr`; an 8 kHz
    telephone voice upsampled to 16 kHz ends near 4 kHz) is never drawn. Such groups are logged and
    listed with their edge in `self.band_limited`; they may still serve as background (degraded input).
    """

    def __init__(self, files: Sequence[SourceFile], sr: int, clip_len: int = 32000,
                 min_seconds: float = 0.25, min_sr: int | None = None, cache_size: int = 64,
                 min_active: float = 0.5, group_weight: str = "uniform", min_bandwidth_hz: float | None = None):
        if group_weight not in GROUP_WEIGHTS:
            raise ValueError(f"group_weight must be one of {GROUP_WEIGHTS}, got {group_weight!r}")
        self.sr, self.clip_len, self.min_active = int(sr), int(clip_len), float(min_active)
        self.group_weight = group_weight
        self.rejected: dict[str, str] = {}
        self._load = _LRU(self.sr, cache_size)
        self.groups: dict[str, list[tuple[SourceFile, float]]] = {}
        for f in files:
            try:
                info = sf.info(str(f.path))
            except Exception as exc:
                self._reject(f.path, f"unreadable ({exc})")
                continue
            if info.frames <= 0:
                self._reject(f.path, "empty (0 samples)")
            elif info.frames / info.samplerate < min_seconds:
                self._reject(f.path, f"too short ({info.frames / info.samplerate:.3f} s < {min_seconds} s)")
            elif min_sr is not None and info.samplerate < min_sr:
                self._reject(f.path, f"sample rate {info.samplerate} Hz below the required {min_sr} Hz")
            else:
                self.groups.setdefault(f.group, []).append((f, info.frames / info.samplerate))
        for g in self.groups:
            self.groups[g].sort(key=lambda t: str(t[0].path))
        self.min_bandwidth_hz = None if min_bandwidth_hz is None else float(min_bandwidth_hz)
        self.band_limited: dict[str, float] = {}
        if self.min_bandwidth_hz is not None:
            self._drop_band_limited()
        self.group_names = sorted(self.groups)
        if not self.group_names:
            why = "; ".join(filter(None, [f"rejected: {self._report()}" if self.rejected else "",
                                          f"band-limited: {self.band_limited}" if self.band_limited else ""]))
            raise AudioError("no usable source audio" + (f"; {why}" if why else ""))

    def _drop_band_limited(self) -> None:
        from .bandwidth import measure_voice

        for g in sorted(self.groups):
            band = measure_voice(g, [f.path for f, _ in self.groups[g]], self.sr, max_files=BAND_CHECK_FILES)
            edge = band.edge_hz
            if band.files == 0 or edge == 0.0:  # nothing readable or all silent: the draws reject it
                log.warning("bandwidth of %s could not be measured; kept", g)
                continue
            if edge < self.min_bandwidth_hz:
                self.band_limited[g] = round(edge, 1)
                del self.groups[g]
        if self.band_limited:
            log.warning("not used as clean targets (long-term spectrum ends below %.0f Hz): %s",
                        self.min_bandwidth_hz, ", ".join(f"{g} ({e:.0f} Hz)" for g, e in self.band_limited.items()))

    def _reject(self, path: Path, why: str) -> None:
        if str(path) not in self.rejected:
            self.rejected[str(path)] = why
            warnings.warn(f"skipping {path}: {why}", stacklevel=3)

    def _report(self) -> str:
        return "; ".join(f"{p}: {w}" for p, w in list(self.rejected.items())[:5])

    def _read(self, f: SourceFile) -> np.ndarray | None:
        try:
            return self._load(f.path)
        except AudioError as exc:
            self._reject(f.path, str(exc).split(": ", 1)[-1])
            return None

    def _pick_group(self, rng: np.random.Generator, usable: list[str]) -> int:
        if self.group_weight == "uniform":  # one integer draw: the streams of older builds are kept
            return int(rng.integers(len(usable)))
        w = np.sqrt([sum(d for _, d in self.groups[g]) for g in usable])
        return int(rng.choice(len(usable), p=w / w.sum()))

    def draw(self, rng: np.random.Generator, max_tries: int = 20,
             length: int | None = None) -> tuple[np.ndarray, str, str]:
        """One clean clip (float32, unnormalised) of `length` samples (default `clip_len`), its
        source description and its group."""
        clip_len = self.clip_len if length is None else int(length)
        for _ in range(max_tries):
            usable = [g for g in self.group_names if any(str(f.path) not in self.rejected for f, _ in self.groups[g])]
            if not usable:
                raise AudioError(f"every source file was rejected: {self._report()}")
            g = usable[self._pick_group(rng, usable)]
            files = [(f, d) for f, d in self.groups[g] if str(f.path) not in self.rejected]
            p = np.array([d for _, d in files])
            k = int(rng.choice(len(files), p=p / p.sum()))
            parts, names, total = [], [], 0
            for j in range(len(files)):  # this file, then its successors in the group if too short
                f = files[(k + j) % len(files)][0]
                x = self._read(f)
                if x is None:
                    continue
                if parts:
                    gap = np.zeros(int(rng.uniform(0.1, 0.3) * self.sr), np.float32)
                    parts.append(gap)
                    total += gap.size
                parts.append(x)
                names.append(f.path.name)
                total += x.size
                if total >= clip_len:
                    break
            if total < clip_len:
                continue
            sig = np.concatenate(parts)
            start = int(rng.integers(0, sig.size - clip_len + 1))
            clip = sig[start:start + clip_len]
            if _active_fraction(clip, self.sr) >= self.min_active:
                desc = f"{g}/{names[0]}@{start}" + (f"+{len(names) - 1}" if len(names) > 1 else "")
                return clip.astype(np.float32), desc, g
        raise AudioError(f"could not draw a non-silent {clip_len}-sample clip in {max_tries} tries "
                         f"(sources are too short or silent)")


def source_kind(name: str) -> str:
    """What a background is from its group or manifest name ('speech:june_f', 'bg:rain:r.ogg@0',
    'synthetic:hum'): its prefix if 'speech', 'music' or 'synthetic', else 'ambience' (the builder's
    background folders: 'bg:', 'bg0:' ...)."""
    prefix = name.partition(":")[0] if ":" in name else ""
    return prefix if prefix in ("speech", "music", "synthetic") else "ambience"


def background_kind(f: SourceFile) -> str:
    """The kind of a background file (`source_kind` of its group)."""
    return source_kind(f.group)


def parse_weights(spec: str, names: Sequence[str], what: str, item: str) -> dict[str, float]:
    """'a:0.6,b:0.4' -> {name: weight} over distinct ``names`` (a bare name weighs 1); ValueError naming
    ``what`` (e.g. "cases") and its ``item`` (e.g. "case") for an unknown or repeated name, a weight that is
    not a finite number >= 0, or weights that are all zero."""
    mix: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, w = part.strip().partition(":")
        try:
            weight = float(w) if sep else 1.0
        except ValueError:
            weight = float("nan")
        if name not in names or name in mix or not (weight >= 0 and np.isfinite(weight)):
            raise ValueError(f"{what} must be '{item}:weight,...' with distinct {item}s from {', '.join(names)} "
                             f"and finite weights >= 0, got {spec!r}")
        mix[name] = weight
    if not sum(mix.values()) > 0:
        raise ValueError(f"{what} needs at least one positive weight, got {spec!r}")
    return mix


def parse_background_mix(spec: str) -> dict[str, float]:
    """'ambience:0.6,music:0.25,speech:0.15' -> {kind: weight}; ValueError on anything else."""
    return parse_weights(spec, BACKGROUND_KINDS, "background mix", "kind")


class BackgroundPool:
    """Unit-RMS background excerpts from ambience files and from other recordings (other speakers,
    other tracks) — never from the clean clip's own group. Short files are looped.

    By default a file is drawn uniformly, so the kind with the most files dominates: a speech cache of
    thousands of short files makes nearly every "background" another talker. ``kind_weights``
    ({'ambience': w, 'speech': w, 'music': w}) draws the kind first by those weights (kinds with no file
    left are dropped), then a file of that kind uniformly; files longer than ``EXCERPT_S`` are then read
    by seeking to a random excerpt instead of decoding them whole (a pool drawing music tracks often
    would otherwise spend ~45 ms per draw). Without ``kind_weights`` the draws stay those of the recorded
    builds and runs.
    """

    #: files longer than this (seconds) are read as excerpts in a kind-weighted pool
    EXCERPT_S = 30.0

    def __init__(self, files: Sequence[SourceFile], cache_size: int = 64,
                 kind_weights: dict[str, float] | None = None):
        self.files = [f for f in files]
        self.kind_weights = dict(kind_weights) if kind_weights else None
        self._group_kind = {f.group: background_kind(f) for f in self.files}  # what _pick groups by
        self.rejected: dict[str, str] = {}
        self._frames: dict[Path, tuple[int, int]] = {}
        self._caches: dict[int, _LRU] = {}
        self._cache_size = cache_size
        if not self.files:
            raise AudioError("background pool: no background files")

    def __len__(self) -> int:
        return len(self.files)

    def draw(self, rng: np.random.Generator, length: int, sr: int,
             exclude_group: str | None = None, max_tries: int = 20) -> tuple[np.ndarray, str]:
        load = self._caches.setdefault(int(sr), _LRU(int(sr), self._cache_size))
        cands = [f for f in self.files if f.group != exclude_group and str(f.path) not in self.rejected]
        for _ in range(max_tries):
            if not cands:
                break
            f = self._pick(rng, cands)
            if f is None:
                break
            if f == "synthetic":
                x, family = synth_ambience(rng, length, sr)
                return x, f"synthetic:{family}"
            try:
                excerpt = self._excerpt(f.path, sr, length, rng)
                if excerpt is not None:
                    unit = _unit_rms(excerpt[0], sr)
                    if unit is not None:
                        return unit, f"{f.group}:{f.path.name}@{excerpt[1]}/{self._frames[f.path][1]}"
                    continue
                x = load(f.path)
            except AudioError as exc:
                self.rejected[str(f.path)] = str(exc)
                warnings.warn(f"skipping background {f.path}: {exc}", stacklevel=2)
                cands = [c for c in cands if c.path != f.path]
                continue
            if x.size < length:
                x = np.tile(x, int(np.ceil(length / x.size)) + 1)
            start = int(rng.integers(0, x.size - length + 1))
            unit = _unit_rms(x[start:start + length].astype(np.float64), sr)
            if unit is not None:
                return unit, f"{f.group}:{f.path.name}@{start}"
        raise AudioError("background pool: no usable (non-silent) background excerpt"
                         + (f" of the kinds {self.kind_weights}" if self.kind_weights else "")
                         + (f" (excluding {exclude_group})" if exclude_group else ""))

    def _excerpt(self, path: Path, sr: int, length: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, int] | None:
        """A seeked excerpt of a long file in a kind-weighted pool; None: decode the file whole (cached)."""
        if self.kind_weights is None:
            return None
        if path not in self._frames:
            try:
                info = sf.info(str(path))
            except Exception as exc:
                raise AudioError(f"{path}: unreadable audio ({exc})") from None
            self._frames[path] = (int(info.frames), int(info.samplerate))
        frames, file_sr = self._frames[path]
        if file_sr <= 0 or frames < max(self.EXCERPT_S * file_sr, 2 * length * file_sr / sr):
            return None
        return load_excerpt(path, sr, length, rng, frames, file_sr)

    def _pick(self, rng: np.random.Generator, cands: list[SourceFile]) -> SourceFile | str | None:
        """A file, "synthetic" (no file: made from the seed), or None when no kind of the mix is left."""
        if self.kind_weights is None:
            return cands[int(rng.integers(len(cands)))]
        by_kind: dict[str, list[SourceFile]] = {}
        for f in cands:
            by_kind.setdefault(self._group_kind[f.group], []).append(f)
        kinds = [k for k in BACKGROUND_KINDS if (by_kind.get(k) or k == "synthetic")
                 and self.kind_weights.get(k, 0.0) > 0]
        if not kinds:
            return None
        p = np.array([self.kind_weights[k] for k in kinds], dtype=np.float64)
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
        if kind == "synthetic":
            return kind
        group = by_kind[kind]
        return group[int(rng.integers(len(group)))]
