"""The trainer's data: opening the training and validation sets (with the checks that make bad data
fail before anything is trained), the batch plan, random crops and blind peak scaling.

Determinism: the batch for global step s is a pure function of (seed, s): the epoch permutation
comes from a generator seeded by (seed, epoch) and the random crops from one seeded by (seed, s),
so a run resumed from any checkpoint replays exactly what an uninterrupted run would have done.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import Dataset, Subset

from . import distrib
from .config import ConfigError, TrainConfig
from .data import datasets as D
from .data.assets import build_default_dataset
from .enhance import SILENCE_PEAK
from .train_rundir import say

__all__ = ["StepBatches", "blind_normalise", "crop", "describe_data", "dynamic_train_set", "open_data"]


def dynamic_train_set(cfg: TrainConfig, length: int | None = None) -> Dataset:
    """A run's dynamic training set as its config defines it (sources, RIR bank, cases, augmentation,
    targets, seed); `length` items, `dynamic_clips` by default. Training and the bench scripts that
    replay a run's items both open it here."""
    spec = str(Path(cfg.data).expanduser()) if cfg.data else f"default:{cfg.data_kind}"
    rirs = str(Path(cfg.rirs).expanduser()) if cfg.rirs else None
    mix = cfg.case_mix()
    return D.open_dataset(spec, "train", kind=cfg.data_kind, length=cfg.dynamic_clips if length is None else length,
                          seed=cfg.seed, rir_bank=rirs, augment=cfg.augment, group_weight=cfg.group_weight,
                          reverb_target=cfg.reverb_target,
                          **({"background_mix": cfg.background_mix} if cfg.background_mix else {}),
                          **({"room_prob": cfg.room_prob} if cfg.room_prob else {}),
                          **({"reverb_min_rt60": cfg.reverb_min_rt60} if cfg.reverb_min_rt60 else {}),
                          **({"cases": mix[0], "case_probs": mix[1]} if mix else {}))


def open_data(cfg: TrainConfig) -> tuple[Dataset, Dataset, int]:
    """Train and validation sets and their sample rate, with the checks that make bad data fail early."""
    if cfg.data:
        spec = str(Path(cfg.data).expanduser())  # a config file's "~/..." as the shell would have it
        if not Path(spec).exists():
            raise ConfigError(f"--data {cfg.data!r} does not exist (a RAR builder root, a TIMIT-RAR/GTZAN-RAR "
                              f".mat file, or a sources root)")
    else:
        root = Path(cfg.data_root) / f"{cfg.data_kind}-{cfg.data_size}"
        if distrib.is_main():
            build_default_dataset(cfg.data_kind, root, cfg.data_size)
        distrib.barrier()
        spec = str(root)
    try:
        rirs = str(Path(cfg.rirs).expanduser()) if cfg.rirs else None
        if rirs and not Path(rirs).is_file():
            raise ConfigError(f"--rirs {cfg.rirs!r} does not exist (an RIR bank .npz, e.g. from `opgan build --n-rirs`)")
        val_spec = str(Path(cfg.val_data).expanduser()) if cfg.val_data else spec
        val = D.open_dataset(val_spec, "val", kind=cfg.data_kind, seed=cfg.val_seed, rir_bank=rirs)
        if cfg.dynamic:
            train = dynamic_train_set(cfg)
            if not isinstance(train, D.DynamicRARDataset):
                raise ConfigError(f"--dynamic needs source recordings (a sources root with {cfg.data_kind}/ and "
                                  f"background/, or no --data for the shipped ones), not {spec!r}")
        else:
            train = D.open_dataset(spec, "train", kind=cfg.data_kind, seed=cfg.seed)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ConfigError(f"cannot open dataset {spec!r}: {e}") from e
    if not cfg.val_data and isinstance(train, D.MatRARDataset) and isinstance(val, D.MatRARDataset) \
            and Path(train.path) == Path(val.path):
        # One .mat file holds one split: hold out its last 5% for validation (or pass --val-data).
        n_val = max(1, len(train) // 20)
        if len(train) - n_val < 1:
            raise ConfigError(f"{spec}: too few clips ({len(train)}) to hold out a validation set; pass --val-data")
        train, val = Subset(train, range(len(train) - n_val)), Subset(val, range(len(train) - n_val, len(train)))
        say(f"[train] {spec} holds one split: validating on its last {n_val} clips (set --val-data to change)")
    for what, ds in (("training", train), ("validation", val)):
        if len(ds) == 0:
            raise ConfigError(f"the {what} set of {spec!r} is empty")
    if cfg.batch_size > len(train):
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the training set ({len(train)} clips)")
    x, y = train[0]
    if x.dim() != 2 or x.shape[0] != 1 or x.shape != y.shape:
        raise ConfigError(f"dataset items must be (corrupted, clean) pairs of shape (1, L), got {tuple(x.shape)}")
    if x.shape[-1] < cfg.clip_len:
        raise ConfigError(
            f"training clips are {x.shape[-1]} samples, shorter than clip_len={cfg.clip_len}; "
            f"lower --clip-len (a multiple of 32, at least the discriminator's minimum) or use longer clips"
        )
    sr = _sample_rate(train, cfg)
    vsr = _sample_rate(val, cfg)
    if vsr != sr:
        raise ConfigError(f"training data is {sr} Hz but validation data is {vsr} Hz")
    return train, val, sr


def _sample_rate(ds: Dataset, cfg: TrainConfig) -> int:
    base = ds.dataset if isinstance(ds, Subset) else ds
    sr = getattr(base, "sample_rate", None)
    if sr is None:  # .mat files carry no rate: the config's, else the kind's usual rate
        sr = cfg.sample_rate or (16000 if cfg.data_kind == "speech" else 22050)
    if cfg.sample_rate and int(sr) != cfg.sample_rate:
        raise ConfigError(f"the data is {sr} Hz but --sample-rate is {cfg.sample_rate}")
    return int(sr)


def describe_data(cfg: TrainConfig) -> str:
    """Where a run's training and validation clips come from, in words."""
    if cfg.data:
        what = f"{cfg.data} ({'dynamic mixing of its sources' if cfg.dynamic else 'fixed clips'})"
    elif cfg.dynamic:
        what = (f"dynamic mixing of the shipped {cfg.data_kind} recordings; validation on "
                f"{Path(cfg.data_root) / f'{cfg.data_kind}-{cfg.data_size}'} (built from their val split)")
    else:
        what = f"{Path(cfg.data_root) / f'{cfg.data_kind}-{cfg.data_size}'} (built from the shipped recordings)"
    return what + (f", validation on {cfg.val_data}" if cfg.val_data else "")


class StepBatches:
    """Index lists for global steps, a pure function of (seed, step) so resuming replays them.

    Each epoch is a seeded permutation of the set (last partial batch dropped); rank r of W takes
    the r-th contiguous slice of each global batch.
    """

    def __init__(self, n: int, batch: int, seed: int, rank: int, world: int) -> None:
        self.n, self.batch, self.seed, self.rank, self.world = n, batch, seed, rank, world
        self.per_epoch = n // batch
        self.local = batch // world

    def epoch_of(self, step: int) -> int:
        return step // self.per_epoch

    def steps(self, start: int) -> Iterator[list[int]]:
        """Index lists for steps start, start+1, ... up to the end of start's epoch."""
        epoch = self.epoch_of(start)
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        for j in range(start - epoch * self.per_epoch, self.per_epoch):
            lo = j * self.batch + self.rank * self.local
            yield perm[lo: lo + self.local]


def crop(x: torch.Tensor, y: torch.Tensor, clip_len: int, seed: int, step: int, rank: int,
         world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random aligned crops of clip_len samples, drawn for the whole global batch from (seed, step) and
    sliced for this rank: resumable, and the same crops whatever the number of processes."""
    length, local = x.shape[-1], x.shape[0]
    if length == clip_len:
        return x, y
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    offs = torch.randint(0, length - clip_len + 1, (local * world,), generator=g)[rank * local:(rank + 1) * local]
    xs = torch.stack([x[i, :, o: o + clip_len] for i, o in enumerate(offs.tolist())])
    ys = torch.stack([y[i, :, o: o + clip_len] for i, o in enumerate(offs.tolist())])
    return xs, ys


def blind_normalise(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide corrupted AND clean by the corrupted clip's own peak (never the clean's: blind),
    exactly the scale `enhance_clips` gives the model at inference."""
    peak = x.abs().amax(dim=(1, 2), keepdim=True)
    gain = torch.where(peak < SILENCE_PEAK, torch.ones_like(peak), peak)
    return x / gain, y / gain
