"""Datasets yielding `(corrupted, clean)` float32 tensors of shape (1, L) for the trainer.

- `RARFolderDataset`: a builder split (`<split>/{clean,corrupted}/<id>.wav` + `manifest.csv`).
- `MatRARDataset`: the published TIMIT-RAR / GTZAN-RAR .mat files (`clear_sig`, `noisy_sig`: (N, L)).
- `DynamicRARDataset`: a fresh random corruption per (seed, epoch, index) from source folders
  (dynamic mixing: the model never sees the same corrupted clip twice).
- `open_dataset(spec, split)`: picks one of these from a path or name.
"""
from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .assets import corpus_dir, default_rirs
from .audio import AudioError, check_finite, load_audio
from .augment import AugmentConfig, augment_clean, source_length, speed_factor
from .builder import CLEAN_MIN_BANDWIDTH_HZ, SAMPLE_RATES, rir_split, source_lists
from .corrupt import ALL_CASES, CASES, REVERB_TARGETS, add_room, corrupt, weight_for_rt60
from .rir import RIRBank
from .sources import SPLITS, BackgroundPool, ClipSampler, files_with_groups, parse_background_mix

__all__ = ["RARFolderDataset", "MatRARDataset", "DynamicRARDataset", "default_dynamic_dataset", "open_dataset",
           "read_manifest"]


def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(1, -1)


class RARFolderDataset(Dataset):
    """Pairs `clean/<id>.wav` with `corrupted/<id>.wav` (ids from `manifest.csv`, else from the files).

    All files must share one sample rate and each pair one length; a mismatch raises AudioError
    naming the file instead of silently resampling or padding. Manifest ids without both files raise
    FileNotFoundError, or with `skip_missing` are left out and listed in `skipped` (id -> reason).
    """

    def __init__(self, split_dir: str | os.PathLike, sample_rate: int | None = None, *, skip_missing: bool = False):
        self.root = Path(split_dir)
        clean_dir, corr_dir = self.root / "clean", self.root / "corrupted"
        if not (clean_dir.is_dir() and corr_dir.is_dir()):
            raise FileNotFoundError(f"{self.root}: expected clean/ and corrupted/ sub-folders (a builder split)")
        manifest = self.root / "manifest.csv"
        if manifest.is_file():
            self.rows = read_manifest(manifest)
            self.ids = [r["id"] for r in self.rows]
        else:
            self.rows = []
            self.ids = sorted(p.stem for p in corr_dir.glob("*.wav") if (clean_dir / p.name).exists())
        if not self.ids:
            raise FileNotFoundError(f"{self.root}: no clean/corrupted pairs")
        missing = [i for i in self.ids if not (corr_dir / f"{i}.wav").exists() or not (clean_dir / f"{i}.wav").exists()]
        self.skipped: dict[str, str] = {}
        if missing and skip_missing and len(missing) < len(self.ids):
            for i in missing:
                gone = [d for d in ("clean", "corrupted") if not (self.root / d / f"{i}.wav").exists()]
                self.skipped[i] = f"no {' or '.join(gone)} file"
            keep = [k for k, i in enumerate(self.ids) if i not in self.skipped]
            self.ids = [self.ids[k] for k in keep]
            self.rows = [self.rows[k] for k in keep] if self.rows else []
            missing = []
        if missing:
            raise FileNotFoundError(f"{self.root}: {len(missing)} manifest ids without files, e.g. {missing[0]} "
                                    "(an unfinished build? re-run it to complete)")
        if sample_rate is None and self.rows and self.rows[0].get("sample_rate"):
            sample_rate = int(self.rows[0]["sample_rate"])
        self.sample_rate = sample_rate
        if self.sample_rate is None:
            import soundfile as sf

            self.sample_rate = int(sf.info(str(corr_dir / f"{self.ids[0]}.wav")).samplerate)

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, path: Path) -> np.ndarray:
        x, sr = load_audio(path)
        if sr != self.sample_rate:
            raise AudioError(f"{path}: sample rate {sr} Hz, but this dataset is {self.sample_rate} Hz")
        return x.mean(axis=0)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        cid = self.ids[i]
        y = self._load(self.root / "corrupted" / f"{cid}.wav")
        x = self._load(self.root / "clean" / f"{cid}.wav")
        if x.shape != y.shape:
            raise AudioError(f"{self.root}/*/{cid}.wav: clean has {x.size} samples, corrupted {y.size}")
        return _tensor(y), _tensor(x)


class MatRARDataset(Dataset):
    """TIMIT-RAR / GTZAN-RAR .mat file: `noisy_sig` (corrupted) and `clear_sig` (clean), (N, L) each.

    MATLAB v5/v7 files load with scipy; v7.3 (HDF5) files need h5py (and are stored transposed).
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int | None = None,
                 noisy_key: str = "noisy_sig", clean_key: str = "clear_sig"):
        self.path = Path(path)
        self.sample_rate = sample_rate
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such .mat file")
        noisy, clean = self._read(noisy_key, clean_key)
        if noisy.shape != clean.shape or noisy.ndim != 2 or noisy.shape[0] == 0:
            raise AudioError(f"{self.path}: {noisy_key} {noisy.shape} and {clean_key} {clean.shape} "
                             "must be equal (N, L) arrays")
        for name, arr in ((noisy_key, noisy), (clean_key, clean)):
            check_finite(arr, f"{self.path}:{name}")
        self.noisy, self.clean = noisy, clean

    def _read(self, nk: str, ck: str) -> tuple[np.ndarray, np.ndarray]:
        import scipy.io

        try:
            m = scipy.io.loadmat(str(self.path), variable_names=[nk, ck])
            transpose = False
        except NotImplementedError:  # MATLAB v7.3 = HDF5
            try:
                import h5py
            except ImportError:
                raise ImportError(f"{self.path} is a MATLAB v7.3 (HDF5) file: `pip install h5py` to read it") from None
            with h5py.File(self.path, "r") as f:
                m = {k: np.asarray(f[k]) for k in (nk, ck) if k in f}
            transpose = True
        except Exception as exc:
            raise AudioError(f"{self.path}: not a readable .mat file ({exc})") from None
        for k in (nk, ck):
            if k not in m:
                raise AudioError(f"{self.path}: no variable {k!r} (expected {nk!r} and {ck!r})")
        noisy, clean = (np.asarray(m[k], dtype=np.float32) for k in (nk, ck))
        if transpose:
            noisy, clean = noisy.T, clean.T
        return np.ascontiguousarray(noisy), np.ascontiguousarray(clean)

    def __len__(self) -> int:
        return self.noisy.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _tensor(self.noisy[i]), _tensor(self.clean[i])


class DynamicRARDataset(Dataset):
    """Corrupts clean clips on the fly; item i of epoch e is a pure function of (seed, e, i).

    Args:
        clean_files_or_dirs: files or folders of clean audio (sub-folder = speaker/track group),
            or `SourceFile`s with explicit groups.
        background_dirs: files or folders of background audio (ambience, other recordings).
        sample_rate: output rate (16000 speech, 22050 music); sources are resampled.
        clip_len: samples per clip.
        length: number of items per epoch.
        seed: base seed.
        rir_bank: a RIRBank or an .npz path; None simulates 64 rooms (needs pyroomacoustics).
        cases: corruption cases to draw from and their probabilities `case_probs` (default: half
            random blends, half single artifacts, as in the paper's composition). Besides the
            paper's four (`CASES`), "clean" (corrupted == clean) and "light" (mild artifacts only)
            teach the model to leave clean input alone, e.g. `cases=("blend", "awgn", "background",
            "reverb", "clean", "light"), case_probs=(0.4, 0.15, 0.15, 0.15, 0.05, 0.1)`.
        background_from_clean: also use other groups' clean recordings as background mixtures.
        group_weight: how speakers/tracks are drawn: "uniform" or "sqrt" (see ClipSampler).
        background_mix: None (default: a background file drawn uniformly, whatever its kind) or the
            weights of the background kinds, e.g. 'ambience:0.6,music:0.25,speech:0.15' (see BackgroundPool).
        min_bandwidth_hz: clean groups whose long-term spectrum ends below this are not drawn as
            targets (see ClipSampler); None (default here) keeps every group.
        augment: None/False (default: off), True (`AugmentConfig()` defaults) or an AugmentConfig:
            speed, EQ, level and telephone/codec band limits applied to the clean clip before it
            is corrupted (the target is the augmented clean clip), see `opgan.data.augment`.
        reverb_target: "dry" (default) or "early": the target of reverberant segments keeps the RIR's
            first 50 ms of reflections (see `opgan.data.corrupt`); the corrupted inputs are the same.
        room_prob: probability that the clean clip is first put in a mild room of the bank
            (`opgan.data.corrupt.add_room`), kept in input and target: the model learns to keep a
            recording's own room. 0 (default) draws exactly what it drew before this option.
        reverb_min_rt60: the mildest added reverberation's target RT60 in seconds (None: the full
            severity range from 0.2 s); with a room, e.g. 0.6, added reverberation stays heavier
            than any room a clean clip may carry (`corrupt(reverb_min_w=...)`; light cases keep theirs).
    """

    def __init__(self, clean_files_or_dirs: str | os.PathLike | Sequence[str | os.PathLike],
                 background_dirs: str | os.PathLike | Sequence[str | os.PathLike] | None,
                 sample_rate: int, clip_len: int = 32000, length: int = 1000, seed: int = 0,
                 rir_bank: RIRBank | str | os.PathLike | None = None,
                 cases: Sequence[str] = CASES, case_probs: Sequence[float] | None = None,
                 background_from_clean: bool = True, p_segment: float = 0.5,
                 augment: AugmentConfig | bool | None = None, group_weight: str = "uniform",
                 min_bandwidth_hz: float | None = None, reverb_target: str = "dry",
                 background_mix: str | None = None, room_prob: float = 0.0,
                 reverb_min_rt60: float | None = None):
        self.sample_rate, self.clip_len, self.length, self.seed = int(sample_rate), int(clip_len), int(length), int(seed)
        clean_files = files_with_groups(clean_files_or_dirs)
        if not clean_files:
            raise AudioError(f"no clean audio files in {clean_files_or_dirs}")
        self.sampler = ClipSampler(clean_files, self.sample_rate, self.clip_len, group_weight=group_weight,
                                   min_bandwidth_hz=min_bandwidth_hz)
        bg = files_with_groups(background_dirs, prefix="bg:") if background_dirs else []
        if background_from_clean:
            bg = bg + clean_files
        kinds = parse_background_mix(background_mix) if background_mix else None
        self.background = BackgroundPool(bg, kind_weights=kinds) if bg else None
        if isinstance(rir_bank, (str, os.PathLike)):
            rir_bank = RIRBank.load(rir_bank)
        self.rirs = rir_bank if rir_bank is not None else RIRBank.simulate(64, 16000, seed=self.seed)
        self.cases = tuple(cases)
        if not self.cases or any(c not in ALL_CASES for c in self.cases):
            raise ValueError(f"unknown case in {self.cases}; choose from {ALL_CASES}")
        if self.background is None and any(c in ("blend", "background", "light") for c in self.cases):
            raise ValueError("DynamicRARDataset: background cases need background_dirs or background_from_clean")
        if case_probs is None:
            case_probs = [0.5 if c == "blend" else 1.0 for c in self.cases]
        p = np.asarray(case_probs, dtype=np.float64)
        if p.shape != (len(self.cases),) or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
            raise ValueError(f"case_probs must be {len(self.cases)} non-negative weights (one per case), "
                             f"not all zero; got {list(case_probs)}")
        self.case_probs = p / p.sum()
        if augment is True:
            augment = AugmentConfig()
        elif augment is False:
            augment = None
        elif augment is not None and not isinstance(augment, AugmentConfig):
            raise TypeError(f"augment must be None, a bool or an AugmentConfig, got {type(augment).__name__}")
        self.augment = augment
        self.p_segment = p_segment
        if reverb_target not in REVERB_TARGETS:
            raise ValueError(f"reverb_target must be one of {REVERB_TARGETS}, got {reverb_target!r}")
        self.reverb_target = reverb_target
        if not 0.0 <= float(room_prob) <= 1.0:
            raise ValueError(f"room_prob must lie in [0, 1], got {room_prob}")
        self.room_prob = float(room_prob)
        self.reverb_min_w = 0.0 if reverb_min_rt60 is None else weight_for_rt60(float(reverb_min_rt60))
        if self.reverb_min_w >= 1.0:
            raise ValueError(f"reverb_min_rt60 must lie below the severity's longest RT60, got {reverb_min_rt60}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch, so each epoch sees new corruptions (call before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    #: draws of one item that may fail on its audio (a clip that turns silent, a background stretch no
    #: source can fill) before the item's error is raised: one bad draw must not stop a long run
    MAX_DRAWS = 8

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """(corrupted, clean, record) as numpy for item i of the current epoch.

        A draw that fails on its audio (``AudioError``) is redrawn from the item's next stream, with a
        warning, up to ``MAX_DRAWS`` draws; the item stays a pure function of (seed, epoch, i)."""
        if not 0 <= i < self.length:
            raise IndexError(i)
        for attempt in range(self.MAX_DRAWS):
            try:
                y, x, rec = self._draw(i, attempt)
            except AudioError as exc:
                error = exc
                if attempt + 1 < self.MAX_DRAWS:
                    warnings.warn(f"dynamic mixing: redrawing item {i} ({exc})", stacklevel=2)
                continue
            if attempt:
                rec["redraws"] = attempt
            return y, x, rec
        raise AudioError(f"{error} (item {i}: {self.MAX_DRAWS} draws failed)") from None

    def _draw(self, i: int, attempt: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """One draw of item i: the first from the item's own streams (as before redraws existed),
        later ones from streams keyed by the attempt too."""
        extra = [2, attempt] if attempt else []
        rng = np.random.default_rng([self.seed, self.epoch, i, *extra])
        aug: dict = {}
        if self.augment is None:
            clip, desc, group = self.sampler.draw(rng)
            clip = clip * (rng.uniform(0.3, 0.9) / float(np.max(np.abs(clip))))
        else:  # its own stream, so the clip, level and corruption draws match the unaugmented item
            arng = np.random.default_rng([self.seed, self.epoch, i, 1, *extra])
            speed = speed_factor(arng, self.augment)
            clip, desc, group = self.sampler.draw(
                rng, length=source_length(self.clip_len, speed) if speed != 1.0 else None)
            clip, aug = augment_clean(clip, self.sample_rate, arng, self.augment, self.clip_len,
                                      peak=rng.uniform(0.3, 0.9), speed=speed)
        room: dict = {}
        if self.room_prob > 0:  # its own stream, so every other draw matches the item without rooms
            rrng = np.random.default_rng([self.seed, self.epoch, i, 3, *extra])
            if rrng.uniform() < self.room_prob:
                clip, room = add_room(clip, self.sample_rate, rrng, self.rirs)
        case = self.cases[int(rng.choice(len(self.cases), p=self.case_probs))]
        y, x, rec = corrupt(clip, self.sample_rate, rng, case, self.background, self.rirs,
                            clean_group=group, p_segment=self.p_segment, reverb_target=self.reverb_target,
                            reverb_min_w=self.reverb_min_w)
        rec["source"] = desc
        rec.update({f"aug_{k}": v for k, v in aug.items()})
        rec.update(room)
        return y, x, rec

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        y, x, _ = self.sample(i)
        return _tensor(y), _tensor(x)


def default_dynamic_dataset(kind: str, split: str = "train", length: int = 1000, seed: int = 0,
                            rir_bank: RIRBank | str | os.PathLike | None = None, root: str | os.PathLike | None = None,
                            cases: Sequence[str] | None = None, case_probs: Sequence[float] | None = None,
                            augment: AugmentConfig | bool | None = None,
                            group_weight: str = "uniform",
                            min_bandwidth_hz: float | None | str = "auto",
                            reverb_target: str = "dry", background_mix: str | None = None,
                            room_prob: float = 0.0, reverb_min_rt60: float | None = None) -> DynamicRARDataset:
    """A DynamicRARDataset over the shipped corpus (or another sources root) for `kind`/`split`,
    with that split's own rooms (RIR index mod 10: 0-7 train, 8 val, 9 test). `cases`,
    `case_probs` and `augment` are passed on (defaults: the paper's four cases, no augmentation).
    `min_bandwidth_hz="auto"` keeps band-limited voices out of speech targets
    (`CLEAN_MIN_BANDWIDTH_HZ`); None keeps every voice, as runs before this rule did."""
    if kind not in SAMPLE_RATES:
        raise ValueError(f"kind must be one of {sorted(SAMPLE_RATES)}, got {kind!r}")
    bank = rir_bank if isinstance(rir_bank, RIRBank) else RIRBank.load(rir_bank) if rir_bank else default_rirs()
    clean, bg = source_lists(Path(root or corpus_dir()), kind, split)
    extra = {"cases": tuple(cases)} if cases is not None else {}
    if min_bandwidth_hz == "auto":
        min_bandwidth_hz = CLEAN_MIN_BANDWIDTH_HZ[kind]
    return DynamicRARDataset(clean, bg, SAMPLE_RATES[kind], length=length, seed=seed,
                             rir_bank=rir_split(bank, split), background_from_clean=False,
                             case_probs=case_probs, augment=augment, group_weight=group_weight,
                             min_bandwidth_hz=min_bandwidth_hz, reverb_target=reverb_target,
                             background_mix=background_mix, room_prob=room_prob,
                             reverb_min_rt60=reverb_min_rt60, **extra)


def open_dataset(spec: str | os.PathLike, split: str = "train", *, kind: str | None = None,
                 length: int | None = None, seed: int = 0,
                 rir_bank: RIRBank | str | os.PathLike | None = None, skip_missing: bool = False,
                 **dynamic) -> Dataset:
    """Open a dataset from a spec:

    - a `.mat` file -> MatRARDataset;
    - a builder split folder (clean/, corrupted/) -> RARFolderDataset;
    - a builder root (`<split>/clean`, `build.json`) -> RARFolderDataset of `split`;
    - `default:speech` / `default:music` or a sources root (`speech/`, `music/`, `background/`)
      with `kind` -> DynamicRARDataset over that kind's `split` (shipped corpus for `default:`);
      `dynamic` keywords (`cases`, `case_probs`, `augment`, `group_weight`, `reverb_target`,
      `background_mix`, `room_prob`, `reverb_min_rt60`) go to it.

    `skip_missing` lets a builder split leave out (and list) manifest ids whose files are missing.
    """
    s = str(spec)
    if s.startswith("default:"):
        return default_dynamic_dataset(s.split(":", 1)[1], split, length=length or 1000, seed=seed,
                                       rir_bank=rir_bank, **dynamic)
    p = Path(spec)
    if dynamic and not (kind is not None and (p / kind).is_dir()):
        raise ValueError(f"{spec}: {', '.join(sorted(dynamic))} only apply to dynamic mixing "
                         "(`default:<kind>` or a sources root with kind=...)")
    if p.suffix.lower() == ".mat":
        return MatRARDataset(p)
    if (p / "clean").is_dir() and (p / "corrupted").is_dir():
        return RARFolderDataset(p, skip_missing=skip_missing)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if (p / split / "clean").is_dir():
        return RARFolderDataset(p / split, skip_missing=skip_missing)
    if kind is not None and (p / kind).is_dir():
        return default_dynamic_dataset(kind, split, length=length or 1000, seed=seed, rir_bank=rir_bank, root=p,
                                       **dynamic)
    if not p.exists():
        raise FileNotFoundError(f"{spec}: no such dataset file or folder")
    raise ValueError(f"{spec}: not a .mat file, a builder root/split, or a sources root "
                     f"(pass kind='speech'|'music' for a sources root)")

