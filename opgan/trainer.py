"""The Op-GAN trainer: LSGAN + temporal/spectral L1, blind peak scaling, validation through
`opgan.enhance.enhance_clips`, atomic resumable checkpoints, DDP via torchrun.

`python train.py` (or `opgan train`) calls :func:`main`; :func:`fit` runs one training from a
:class:`~opgan.config.TrainConfig`. The run folder `<runs_dir>/<name>/` holds `config.json`,
`last.pt` (full state, for `--resume`), `best.pt` (best validation SDR; loadable by
`opgan.enhance.load_restorer`), `metrics.jsonl` (every record), `metrics.csv` (one row per
validation) and `summary.json`.

Determinism: the batch for global step s is a pure function of (seed, s): the epoch permutation
comes from a generator seeded by (seed, epoch) and the random crops from one seeded by (seed, s),
so a run resumed from any checkpoint replays exactly what an uninterrupted run would have done.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from . import distrib
from .checkpoint import FORMAT, CheckpointError, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import RESUMABLE_FIELDS, ConfigError, TrainConfig, parse_args
from .device import DeviceError, resolve_device

logger = logging.getLogger("opgan.train")

__all__ = ["NonFiniteLossError", "TrainResult", "fit", "main", "validate", "build_models"]

#: Files the trainer writes into a run folder (and the only ones `--overwrite` removes).
RUN_FILES = ("config.json", "last.pt", "best.pt", "metrics.jsonl", "metrics.csv", "summary.json")
VAL_COLUMNS = ("step", "time_s", "d_loss", "g_loss", "sdr_in", "sdr_out", "sdr_gain", "si_sdr_in", "si_sdr_out",
               "si_sdr_gain", "stoi_in", "stoi_out", "silent_floor_gain", "level_db", "light_clips",
               "light_sdr_gain", "light_worst_gain", "score")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/Inf; the run stopped and the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What a finished run reports (also written to summary.json)."""

    run_dir: str
    step: int
    wall_s: float
    train_s: float
    final: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    best_step: int = -1
    first_pass: dict[str, float] = field(default_factory=dict)
    generator: nn.Module | None = field(default=None, repr=False)  # the trained generator (this process's)
    discriminator: nn.Module | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("generator", "discriminator")}


# ------------------------------------------------------------------------------------------------
# Models and data


def build_models(cfg: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """The generator and discriminator a config describes (seeded by the caller)."""
    from opgan.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

    g = Generator(GeneratorConfig.from_dict(cfg.generator_config()))
    d = Discriminator(DiscriminatorConfig(filters=cfg.d_filters, q=cfg.discriminator_q()))
    return g, d


def _open_data(cfg: TrainConfig) -> tuple[Dataset, Dataset, int]:
    """Train and validation sets and their sample rate, with the checks that make bad data fail early."""
    from opgan.data import datasets as D

    if cfg.data:
        spec = cfg.data
        if not Path(spec).expanduser().exists():
            raise ConfigError(f"--data {spec!r} does not exist (a RAR builder root, a TIMIT-RAR/GTZAN-RAR "
                              f".mat file, or a sources root)")
    else:
        from opgan.data.assets import build_default_dataset

        root = Path(cfg.data_root) / f"{cfg.data_kind}-{cfg.data_size}"
        if distrib.is_main():
            build_default_dataset(cfg.data_kind, root, cfg.data_size)
        distrib.barrier()
        spec = str(root)
    try:
        rirs = cfg.rirs or None
        if rirs and not Path(rirs).expanduser().is_file():
            raise ConfigError(f"--rirs {rirs!r} does not exist (an RIR bank .npz, e.g. from `opgan build --n-rirs`)")
        val = D.open_dataset(cfg.val_data or spec, "val", kind=cfg.data_kind, seed=cfg.val_seed, rir_bank=rirs)
        if cfg.dynamic:
            dyn_spec = spec if cfg.data else f"default:{cfg.data_kind}"
            mix = cfg.case_mix()
            dynamic = {"augment": cfg.augment, "group_weight": cfg.group_weight,
                       **({"cases": mix[0], "case_probs": mix[1]} if mix else {})}
            train = D.open_dataset(dyn_spec, "train", kind=cfg.data_kind, length=cfg.dynamic_clips, seed=cfg.seed,
                                   rir_bank=rirs, **dynamic)
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
        _say(f"[train] {spec} holds one split: validating on its last {n_val} clips (set --val-data to change)")
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


class _StepBatches:
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


def _crop(x: torch.Tensor, y: torch.Tensor, clip_len: int, seed: int, step: int, rank: int, world: int):
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
    from opgan.enhance import SILENCE_PEAK

    peak = x.abs().amax(dim=(1, 2), keepdim=True)
    gain = torch.where(peak < SILENCE_PEAK, torch.ones_like(peak), peak)
    return x / gain, y / gain


# ------------------------------------------------------------------------------------------------
# Validation


#: Allowed mean SDR loss on light inputs before the selection score is penalised (the issue's target).
HARM_TOLERANCE_DB = 0.5


def validate(
    restore: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    device: torch.device,
    sample_rate: int,
    max_clips: int = 0,
    batch_size: int = 8,
    with_stoi: bool = True,
) -> dict[str, float]:
    """Mean SDR / SI-SDR / STOI of inputs and outputs over the validation clips (`max_clips` of them,
    evenly spaced, when non-zero), the output level against the clean's, and do-no-harm figures.

    `restore` maps (B,1,L) corrupted audio at its original scale to the estimate (the trainer passes
    `enhance_clips` with the generator). `silent_floor_gain` is the SDR improvement an all-zero
    output would get (SDR(0, s) = 0 dB, so it is minus the input SDR): on loud reverberant input
    plain SDR rewards attenuation, so read `sdr_gain` against it and against `si_sdr_gain`.
    `level_db` is the mean of 10·log10(Σout²/Σclean²) (0 = the clean's level; attenuation is
    negative). `light_*` cover clips whose input SDR is >= LIGHT_INPUT_SDR_DB. `score` is what
    `select_by='score'` keeps best.pt by: SI-SDR gain, minus any mean SDR loss on light inputs beyond
    HARM_TOLERANCE_DB.
    """
    from opgan import metrics as M

    total = len(dataset)
    n = total if not max_clips else min(max_clips, total)
    # An evenly spaced subset, so a partial validation still covers every corruption case of the split.
    idx = np.linspace(0, total - 1, n).round().astype(int).tolist() if n < total else list(range(total))
    rows: dict[str, list[float]] = {k: [] for k in ("sdr_in", "sdr_out", "si_sdr_in", "si_sdr_out",
                                                    "stoi_in", "stoi_out", "level_db")}
    with torch.inference_mode():
        for lo in range(0, n, batch_size):
            items = [dataset[i] for i in idx[lo: lo + batch_size]]
            x = torch.stack([a for a, _ in items]).float()
            s = torch.stack([b for _, b in items]).float()
            est = restore(x.to(device)).float().cpu()
            for xi, si, ei in zip(x[:, 0].numpy(), s[:, 0].numpy(), est[:, 0].numpy()):
                rows["sdr_in"].append(M.sdr(xi, si))
                rows["sdr_out"].append(M.sdr(ei, si))
                rows["si_sdr_in"].append(M.si_sdr(xi, si))
                rows["si_sdr_out"].append(M.si_sdr(ei, si))
                rows["level_db"].append(M.level_db(ei, si))
                if with_stoi:
                    rows["stoi_in"].append(M.stoi(xi, si, sample_rate))
                    rows["stoi_out"].append(M.stoi(ei, si, sample_rate))
    out = {k: _finite_mean(v) for k, v in rows.items() if v}
    out["sdr_gain"] = out["sdr_out"] - out["sdr_in"]
    out["si_sdr_gain"] = out["si_sdr_out"] - out["si_sdr_in"]
    out["silent_floor_gain"] = -out["sdr_in"]
    out.update(_do_no_harm(np.asarray(rows["sdr_in"]), np.asarray(rows["sdr_out"])))
    harm = min(0.0, out["light_sdr_gain"] + HARM_TOLERANCE_DB) if out["light_clips"] else 0.0
    out["score"] = out["si_sdr_gain"] + harm
    out["clips"] = float(n)
    return out


def _do_no_harm(sdr_in: np.ndarray, sdr_out: np.ndarray) -> dict[str, float]:
    """Mean and worst SDR gain over the clips whose input is already good (light corruption)."""
    from opgan.metrics import LIGHT_INPUT_SDR_DB

    light = np.isfinite(sdr_in) & np.isfinite(sdr_out) & (sdr_in >= LIGHT_INPUT_SDR_DB)
    gains = sdr_out[light] - sdr_in[light]
    if not gains.size:
        return {"light_clips": 0.0, "light_sdr_gain": float("nan"), "light_worst_gain": float("nan")}
    return {"light_clips": float(gains.size), "light_sdr_gain": float(gains.mean()),
            "light_worst_gain": float(gains.min())}


def _finite_mean(v: list[float]) -> float:
    a = np.asarray(v, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


# ------------------------------------------------------------------------------------------------
# Run folder, logs


#: resumable fields that change what is trained from the resume on (a schedule or curriculum step):
#: each change is logged as a "resume" record in metrics.jsonl, so the learning curve shows it
_TRAINING_FIELDS = frozenset({"lr", "lr_half_life", "cases", "augment", "group_weight", "data", "rirs", "bf16"})


def _prepare_run_dir(cfg: TrainConfig, overrides: dict[str, Any], resume: bool,
                     overwrite: bool) -> tuple[TrainConfig, Path, dict[str, list]]:
    """Create / check the run folder; on resume, return the saved config with allowed overrides and
    the training-relevant changes ({field: [old, new]}). A resumed run's config.json is rewritten by
    :func:`_fit` only once the run has started (a resume that fails, e.g. on its device or checkpoint,
    leaves it as it was, so the changes are still logged by the resume that trains)."""
    run_dir = Path(cfg.runs_dir) / cfg.name
    existing = [f for f in RUN_FILES if (run_dir / f).exists()]
    distrib.barrier()  # every rank looks before rank 0 writes, so all take the same decision
    if resume and existing:
        saved_path = run_dir / "config.json"
        if not saved_path.is_file():
            raise ConfigError(f"{run_dir} has no config.json; cannot resume it (use --overwrite to start over)")
        saved = json.loads(saved_path.read_text())
        changed = sorted(k for k, v in overrides.items() if k not in RESUMABLE_FIELDS and saved.get(k) != v)
        if changed:
            raise ConfigError(
                f"cannot change {', '.join(changed)} when resuming {run_dir} (only "
                f"{', '.join(sorted(RESUMABLE_FIELDS))} may change); start a new --name instead"
            )
        changes = {k: [saved.get(k), v] for k, v in overrides.items()
                   if k in RESUMABLE_FIELDS and k in _TRAINING_FIELDS and saved.get(k) != v}
        saved.update({k: v for k, v in overrides.items() if k in RESUMABLE_FIELDS})
        return TrainConfig.from_dict(saved), run_dir, changes
    if existing and not overwrite:
        raise ConfigError(
            f"run folder {run_dir} already holds a run ({', '.join(existing)}); pass --resume to continue it, "
            f"--overwrite to replace it, or --name NEW for a new run"
        )
    if distrib.is_main():
        for f in existing:
            p = run_dir / f
            p.unlink()
        if (run_dir / "tb").is_dir() and overwrite:
            shutil.rmtree(run_dir / "tb")
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / "config.json", cfg.to_dict())
    distrib.barrier()
    return cfg, run_dir, {}


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


class _Log:
    """metrics.jsonl (all records) + metrics.csv (validation rows) + optional TensorBoard."""

    def __init__(self, run_dir: Path, resume_step: int, tensorboard: bool, enabled: bool) -> None:
        self.enabled = enabled
        self.jsonl, self.csv = run_dir / "metrics.jsonl", run_dir / "metrics.csv"
        self.tb = None
        if not enabled:
            return
        self._truncate(resume_step)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ConfigError("--tensorboard needs the `tensorboard` package (pip install tensorboard)") from e
            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step + 1)

    def _truncate(self, step: int) -> None:
        """Drop records past the checkpoint we resume from (they will be redone)."""
        if self.jsonl.exists():
            keep = [ln for ln in self.jsonl.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
            self.jsonl.write_text("".join(ln + "\n" for ln in keep))
        if self.csv.exists():
            with self.csv.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
            self._write_csv_rows(rows, mode="w")

    def _write_csv_rows(self, rows: list[dict], mode: str) -> None:
        new = mode == "w" or not self.csv.exists()
        with self.csv.open(mode, newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=VAL_COLUMNS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)

    def record(self, kind: str, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        rec = {"kind": kind, "step": step, **{k: _round(v) for k, v in values.items()}}
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if kind == "val":
            self._write_csv_rows([rec], mode="a")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _round(v: Any) -> Any:
    return round(v, 5) if isinstance(v, float) and math.isfinite(v) else v


# ------------------------------------------------------------------------------------------------
# The training run


def _resolve_weights(path: str) -> Path:
    """A checkpoint path, or the name of a shipped model ('speech', 'music', ...)."""
    from opgan.enhance import shipped_weights

    p = Path(path).expanduser()
    if p.is_file():
        return p
    shipped = shipped_weights()
    if path in shipped:
        return shipped[path]
    raise ConfigError(f"checkpoint {path!r} not found (a file, or one of the shipped models: {', '.join(shipped)})")


def _compiled(module: nn.Module, mode: str) -> nn.Module:
    """`module` itself ('' = eager), or torch.compile'd: an inductor mode, or 'aot_eager' (tracing only)."""
    if not mode:
        return module
    if mode == "aot_eager":
        return torch.compile(module, backend="aot_eager")
    return torch.compile(module, mode=mode)


def _portable(opt_state: dict) -> dict:
    """An optimiser state dict any run can load: a --cuda-graph run's lr tensor and capturable flag
    become the plain float and False, a CUDA run's fused flag the default (the loading run sets its
    own, see `_Run._optimiser_mode`)."""
    for group in opt_state["param_groups"]:
        group["lr"] = float(group["lr"])
        group["capturable"] = False
        group["fused"] = None
    return opt_state


def _capture(fn: Callable[[], torch.Tensor]) -> tuple[Callable[[], None], torch.Tensor]:
    """``fn`` captured in one CUDA graph (nothing runs yet): its replay and its (static) output.
    thread_local: the DataLoader's pin-memory thread allocates pinned buffers meanwhile, which the
    default global mode would count against the capture (and poison that thread with the error)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        out = fn()
    return graph.replay, out


class _StepGraph:
    """A training step replayed from one CUDA graph (--cuda-graph).

    The first WARMUP steps run eagerly on a side stream (the fused kernels tune and cache their launch
    plans, Adam creates its state); the next one is captured with its batch in static input buffers
    and replayed; every later step copies its batch into those buffers and replays. Each replay is a
    real step: parameters, gradients and Adam state are the same tensors the eager step updates. If
    the capture fails the run goes on eagerly, with a warning saying why."""

    WARMUP = 3

    @staticmethod
    def supported(device: torch.device) -> bool:
        return device.type == "cuda"

    def __init__(self, body: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: torch.device) -> None:
        self.body, self.device = body, device
        self.calls = 0
        self.replay: Callable[[], None] | None = None
        self.failed = False

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.replay is None and not self.failed and self.calls > self.WARMUP:
            self.static_x, self.static_y = x.clone(), y.clone()
            try:
                self.replay, self.out = _capture(lambda: self.body(self.static_x, self.static_y))
            except Exception as e:  # an op that cannot be captured: the run stays correct, only slower
                self.failed = True
                logger.warning("--cuda-graph: capturing the training step failed (%s); training on eagerly",
                               str(e).splitlines()[0] if str(e) else type(e).__name__)
            else:
                _say(f"[train] the training step is captured in a CUDA graph (after {self.WARMUP} eager steps)")
        if self.replay is not None and x.shape == self.static_x.shape and y.shape == self.static_y.shape:
            self.static_x.copy_(x)
            self.static_y.copy_(y)
            self.replay()
            return self.out
        return self._eager(x, y)

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The body run eagerly; on a side stream before the capture, as capture wants its warm-up."""
        if self.device.type != "cuda" or self.replay is not None or self.failed:
            return self.body(x, y)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            out = self.body(x, y)
        torch.cuda.current_stream(self.device).wait_stream(side)
        return out


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Run:
    """State of one training run (models, optimisers, data plan, logs)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, info: distrib.DistInfo, device: torch.device,
                 train_set: Dataset, val_set: Dataset, ckpt: dict | None, sample_rate: int) -> None:
        from opgan.models import build_generator

        self.cfg, self.run_dir, self.info, self.device = cfg, run_dir, info, device
        self.train_set, self.val_set, self.sample_rate = train_set, val_set, sample_rate
        _seed_all(cfg.seed)
        g, d = build_models(cfg)
        self.first: nn.Module | None = None
        self.first_cfg: dict | None = None
        if cfg.second_pass_of:
            first = load_checkpoint(cfg.second_pass_of)
            sp = first.get("second_pass")
            if sp:
                raise ConfigError(f"{cfg.second_pass_of} is already a two-pass model; pass its first pass instead")
            self.first_cfg = dict(first["config"]["generator"])
            self.first = build_generator(self.first_cfg)
            self.first.load_state_dict(first["generator"])
            self.first_state = first["generator"]
            self.first = self.first.to(device).eval().requires_grad_(False)
        self.g_raw, self.d_raw = g.to(device), d.to(device)
        if cfg.cuda_graph and not _StepGraph.supported(device):
            raise ConfigError(f"--cuda-graph needs a CUDA device (this run is on {device}); pass --no-cuda-graph")
        # (fused, capturable and the lr's form are set by _optimiser_mode below, after any checkpoint load)
        self.opt_g = torch.optim.Adam(self.g_raw.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.d_raw.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.step = 0
        self.train_s = 0.0
        self.best: dict[str, float] = {}
        self.best_step = -1
        self.last_val: dict[str, float] = {}
        self.first_pass_val: dict[str, float] = {}
        if ckpt is not None:
            self._load(ckpt)
        elif cfg.init_from:
            self._init_from(cfg.init_from)
        self._optimiser_mode()
        # torch.compile (--compile MODE): the training forwards only; validation and checkpoints use the
        # eager modules (same parameters). With the fused backend the Self-ONN layers are library ops
        # (selfonn::fused_conv), so a model compiles to one graph and CUDA graphs can capture it.
        g_fwd, self.d_fwd = _compiled(self.g_raw, cfg.compile), _compiled(self.d_raw, cfg.compile)
        self.g = distrib.wrap(g_fwd, device) if g_fwd is self.g_raw else g_fwd
        self.d = distrib.wrap(self.d_raw, device)
        if cfg.batch_size % info.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {info.world_size} processes")
        self.plan = _StepBatches(len(train_set), cfg.batch_size, cfg.seed, info.rank, info.world_size)
        use_amp = cfg.bf16 and device.type == "cuda"
        # a captured step must not reuse autocast's cast cache across replays
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not cfg.cuda_graph)) \
            if use_amp else nullcontext
        self.graph = _StepGraph(self._graph_body, device) if cfg.cuda_graph else None

    def _optimiser_mode(self) -> None:
        """Adam as this run steps it: fused on CUDA; for --cuda-graph, `capturable` (its step counts on
        the device) and the lr a device tensor the graph reads (refilled before each replay); plain
        floats otherwise. Applied after a checkpoint load too, which brings back the saving run's settings."""
        capturable = self.cfg.cuda_graph and self.device.type == "cuda"
        fused = self.device.type == "cuda"  # 2 launches a step instead of the foreach path's ~8 (host-bound steps)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["capturable"] = capturable
                group["fused"] = fused or None
                lr = float(group["lr"])
                group["lr"] = torch.tensor(lr, device=self.device) if self.cfg.cuda_graph else lr
            for st in opt.state.values():
                if torch.is_tensor(st.get("step")):
                    st["step"] = st["step"].to(self.device if capturable or fused else "cpu", torch.float32)

    # -- checkpoints ----------------------------------------------------------------------------
    def _model_configs(self) -> tuple[dict, dict]:
        return self.g_raw.config.to_dict(), self.d_raw.config.to_dict()

    def payload(self, full: bool = True) -> dict[str, Any]:
        gcfg, dcfg = self._model_configs()
        config = {**self.cfg.to_dict(), "generator": gcfg, "discriminator": dcfg}
        out: dict[str, Any] = {
            "format": FORMAT,
            "config": config,
            "generator": self.g_raw.state_dict(),
            "sample_rate": self.sample_rate,
            "step": self.step,
            "metrics": {"last_val": dict(self.last_val), "best_val": dict(self.best), "best_step": self.best_step,
                        "first_pass_val": dict(self.first_pass_val)},
        }
        if self.first is not None:
            # load_restorer's layout: `generator` is the first pass, `second_pass` the one trained here.
            config["generator"] = self.first_cfg
            out["generator"] = self.first_state
            out["second_pass"] = {"config": {"generator": gcfg}, "generator": self.g_raw.state_dict()}
        if full:
            out.update(discriminator=self.d_raw.state_dict(), opt_g=_portable(self.opt_g.state_dict()),
                       opt_d=_portable(self.opt_d.state_dict()), rng=capture_rng(), train_s=self.train_s)
        return out

    def _load(self, ckpt: dict) -> None:
        g_state = ckpt["second_pass"]["generator"] if self.first is not None else ckpt["generator"]
        self.g_raw.load_state_dict(g_state)
        self.d_raw.load_state_dict(ckpt["discriminator"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.step = int(ckpt["step"])
        self.train_s = float(ckpt.get("train_s", 0.0))
        m = ckpt.get("metrics", {})
        self.last_val, self.best = dict(m.get("last_val", {})), dict(m.get("best_val", {}))
        self.best_step = int(m.get("best_step", -1))
        self.first_pass_val = dict(m.get("first_pass_val", {}))
        restore_rng(ckpt["rng"])

    def _init_from(self, path: str) -> None:
        """Warm start: weights from a checkpoint (a shipped model or a run's best/last.pt), with fresh
        optimisers at step 0. The generator's shape must match this config's."""
        from opgan.models import GeneratorConfig

        src = load_checkpoint(_resolve_weights(path))
        want = self.g_raw.config.to_dict()
        have = GeneratorConfig.from_dict(dict(src["config"]["generator"])).to_dict()
        if have != want or "second_pass" in src:
            raise ConfigError(f"--init-from {path}: its generator {have} does not match this run's {want}")
        self.g_raw.load_state_dict(src["generator"])
        if "discriminator" in src:
            try:
                self.d_raw.load_state_dict(src["discriminator"])
            except RuntimeError as e:
                raise ConfigError(f"--init-from {path}: its discriminator does not fit this run's: "
                                  f"{str(e).splitlines()[0]}") from None

    def save_last(self) -> None:
        if distrib.is_main():
            save_checkpoint(self.run_dir / "last.pt", self.payload(full=True))

    # -- one step -------------------------------------------------------------------------------
    def _inputs(self, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = _crop(x, y, self.cfg.clip_len, self.cfg.seed, step, self.info.rank, self.info.world_size)
        x, y = x.to(self.device, non_blocking=True).float(), y.to(self.device, non_blocking=True).float()
        if self.first is not None:
            from opgan.enhance import enhance_clips

            with torch.no_grad():
                x = enhance_clips(self.first, x)  # the second pass sees the first pass's output
        return blind_normalise(x, y)

    def learning_rate(self) -> float:
        """The lr of the next step: a pure function of (lr, lr_half_life, step), so resume replays it and
        a changed lr on --resume takes effect (the optimiser state keeps the old one otherwise)."""
        cfg = self.cfg
        return cfg.lr * 0.5 ** (self.step / cfg.lr_half_life) if cfg.lr_half_life else cfg.lr

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One discriminator step then one generator step; returns the detached losses.

        With lambda_adv == 0 the discriminator is neither run nor updated (a plain regression run).
        With --cuda-graph the same step runs as `_graph_body` (replayed from a CUDA graph after its
        warm-up); its losses are checked after the step, the eager step's before each update."""
        lr = self.learning_rate()
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                if torch.is_tensor(group["lr"]):
                    group["lr"].fill_(lr)
                else:
                    group["lr"] = lr
        if self.graph is not None:
            losses = self.graph(x, y).tolist()  # first: its first run names the losses
            vals = dict(zip(self.loss_names, losses))
            for which, key in (("discriminator", "d_loss"), ("generator", "g_loss")):
                if which == "generator" or self.cfg.lambda_adv > 0:
                    if not math.isfinite(vals[key]):
                        self._non_finite(which, vals[key])
            return vals
        losses = self._step(x, y, in_place=False).tolist()
        return dict(zip(self.loss_names, losses))

    def _graph_body(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training step without a host sync, as a CUDA graph captures it: gradients zeroed in place
        (their tensors stay the graph's), no finiteness check inside."""
        return self._step(x, y, in_place=True)

    def _step(self, x: torch.Tensor, y: torch.Tensor, in_place: bool) -> torch.Tensor:
        """G forward, the D update (when adversarial), the G update; the losses stacked on the device,
        named in ``self.loss_names`` (set here: Python runs this at least once before any replay)."""
        with self.autocast():
            fake = self.g(x)
        adversarial = self.cfg.lambda_adv > 0
        loss_d = self._d_step(y, fake, in_place=in_place) if adversarial else fake.new_full((), float("nan"))
        loss_g, parts = self._g_step(y, fake, adversarial, in_place=in_place)
        self.loss_names = ["d_loss", "g_loss", *parts]
        return torch.stack([loss_d.detach().float(), loss_g.detach().float(), *(v.float() for v in parts.values())])

    def precompile_kernels(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Compile every fused-kernel variant a step launches, all at once, before the first step.

        A first step on a GPU otherwise compiles each layer's candidates key by key (minutes for an
        Op-GAN). One G forward/backward and the D passes run with launches replaced by compiles
        (selfonn.kernels.precompile); nothing is updated and their garbage gradients are dropped.
        Single-process CUDA runs with the fused backend only."""
        if not _precompile_wanted(self.device, self.info.world_size, x):
            return
        from selfonn.kernels.precompile import precompile

        try:
            report = precompile(precompile_passes(self.g_raw, self.d_raw, x, y, self.cfg.lambda_adv > 0,
                                                  self.autocast))
        except Exception as e:  # never fatal: the first step compiles what is missing, key by key
            logger.warning("selfonn kernel precompile failed (%s); the first step compiles instead", e)
        else:
            _say(f"[train] compiled {report.total} fused-kernel variants in {report.seconds:.1f} s on "
                 f"{report.workers} threads")
        finally:
            for opt in (self.opt_g, self.opt_d):
                opt.zero_grad(set_to_none=True)

    def _d_step(self, y: torch.Tensor, fake: torch.Tensor, in_place: bool = False) -> torch.Tensor:
        """LSGAN discriminator update: real -> 1, fake -> 0 (one forward over both halves: one DDP reduction).
        ``in_place``: the captured step's form (gradients zeroed in place, no host-side check)."""
        from opgan.models import losses as L

        self.d_raw.requires_grad_(True)
        with self.autocast():
            scores = self.d(torch.cat([y, fake.detach()]))
        d_real, d_fake = scores.split(y.shape[0])
        loss_d = L.d_loss(d_real, d_fake)
        self.opt_d.zero_grad(set_to_none=not in_place)
        loss_d.backward()
        if not in_place:
            self._check_finite("discriminator", loss_d)
        self.opt_d.step()
        return loss_d

    def _g_step(self, y: torch.Tensor, fake: torch.Tensor, adversarial: bool,
                in_place: bool = False) -> tuple[torch.Tensor, dict]:
        """Generator update: fool the (updated) D, plus the reconstruction terms the config weights.
        D's weights get no grads here, so the raw module is used and D's DDP reducer stays out."""
        from opgan.models import losses as L

        cfg = self.cfg
        d_fake_g = None
        if adversarial:
            self.d_raw.requires_grad_(False)
            with self.autocast():
                d_fake_g = self.d_fwd(fake)
        loss_g, parts = L.g_loss(d_fake_g, fake, y, cfg.lambda_t, cfg.lambda_s, cfg.lambda_adv,
                                 cfg.lambda_mr, cfg.lambda_sisdr, cfg.lambda_level, cfg.lambda_sdr, cfg.sdr_cap_db)
        self.opt_g.zero_grad(set_to_none=not in_place)
        loss_g.backward()
        if not in_place:
            self._check_finite("generator", loss_g)
        self.opt_g.step()
        self.d_raw.requires_grad_(True)
        return loss_g, parts

    def _check_finite(self, which: str, loss: torch.Tensor) -> None:
        bad = distrib.any_flag(not bool(torch.isfinite(loss.detach()).item()), self.device)
        if bad:
            self._non_finite(which, loss.item())

    def _non_finite(self, which: str, value: float) -> None:
        last = self.run_dir / "last.pt"
        where = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"the {which} loss became non-finite ({value}) at step {self.step + 1}; training stopped "
            f"without saving this state; {where}. Try a lower --lr"
            + (" or --no-bf16" if self.cfg.bf16 else "")
            + " and --resume, or check the data for NaN/Inf samples"
        )

    # -- validation -----------------------------------------------------------------------------
    def restore_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        from opgan.enhance import enhance_clips

        g = self.g_raw
        if self.first is None:
            return lambda x: enhance_clips(g, x)
        first = self.first
        return lambda x: enhance_clips(g, enhance_clips(first, x))

    def run_validation(self) -> dict[str, float]:
        self.g_raw.eval()
        try:
            res = validate(self.restore_fn(), self.val_set, self.device, self.sample_rate,
                           self.cfg.val_clips, self.cfg.batch_size, self.cfg.val_stoi)
        finally:
            self.g_raw.train()
        return res


def _batches(run: _Run, loader_kw: dict) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(step, corrupted, clean) from run.step on, epoch after epoch (each epoch a fresh loader)."""
    step = run.step
    while True:
        epoch = run.plan.epoch_of(step)
        if hasattr(run.train_set, "set_epoch"):
            run.train_set.set_epoch(epoch)
        loader = DataLoader(run.train_set, batch_sampler=list(run.plan.steps(step)), **loader_kw)
        for x, y in loader:
            yield step, x, y
            step += 1


def fit(cfg: TrainConfig, resume: bool = False, overwrite: bool = False,
        overrides: dict[str, Any] | None = None) -> TrainResult:
    """Train as `cfg` says; returns the final/best validation metrics (rank 0's view)."""
    t_wall = time.time()
    info = distrib.init("cuda" if cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    try:
        return _fit(cfg, resume, overwrite, overrides or {}, info, t_wall)
    finally:
        distrib.shutdown()


def precompile_passes(g: nn.Module, d: nn.Module, x: torch.Tensor, y: torch.Tensor, adversarial: bool,
                      autocast: Callable[[], Any] = nullcontext) -> Callable[[], None]:
    """What :meth:`_Run.precompile_kernels` runs under selfonn.kernels.precompile: the passes a training
    step makes on the batch (x, y), as it makes them: G forward; when ``adversarial``, D on real + fake
    with its weights trainable (the D update), then D on fake with them frozen (the G update: D's
    backward there is grad_x only, other kernels than the update's); each backward (the caller drops
    the gradients). ``bench/prewarm_cache.py --training`` compiles the same passes offline, from CPU
    tensors, for a GPU's Triton cache."""

    def work() -> None:
        with autocast():
            fake = g(x)
        if not adversarial:
            fake.float().sum().backward()
            return
        with autocast():
            scores = d(torch.cat([y, fake.detach()]))
        scores.float().sum().backward()
        flags = [p.requires_grad for p in d.parameters()]
        d.requires_grad_(False)
        try:
            with autocast():
                out = d(fake)
            out.float().sum().backward()
        finally:
            for p, flag in zip(d.parameters(), flags):
                p.requires_grad_(flag)

    return work


def _precompile_wanted(device: torch.device, world_size: int, x: torch.Tensor) -> bool:
    from selfonn.backend import resolve_backend

    return device.type == "cuda" and world_size == 1 and resolve_backend(None, x) == "triton"


def _say(msg: str) -> None:
    """Progress for the user, from rank 0 only (other ranks would repeat it)."""
    if distrib.is_main():
        logger.info(msg)


def _fit(cfg: TrainConfig, resume: bool, overwrite: bool, overrides: dict[str, Any],
         info: distrib.DistInfo, t_wall: float) -> TrainResult:
    import selfonn

    cfg.validate()
    cfg, run_dir, changes = _prepare_run_dir(cfg, overrides, resume, overwrite)
    device = resolve_device(cfg.device, info.local_rank if info.enabled else None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with selfonn.use_backend(cfg.backend):  # the caller's global backend is restored afterwards
        run = _start_run(cfg, run_dir, info, device, resume)
        log = _Log(run_dir, run.step, cfg.tensorboard, enabled=distrib.is_main())
        if resume and distrib.is_main():
            _write_json(run_dir / "config.json", cfg.to_dict())  # config.json holds what the run trains with now
        if changes:
            log.record("resume", run.step, {"changed": changes})
            _say(f"[train] resumed at step {run.step} with " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()))
        try:
            _first_pass_baseline(run, log)
            stop_reason, steps_per_s = _train_loop(run, log)
        finally:
            log.close()
    return _finish(run, stop_reason, steps_per_s, t_wall)


def _start_run(cfg: TrainConfig, run_dir: Path, info: distrib.DistInfo, device: torch.device,
               resume: bool) -> "_Run":
    """Open the data, build (or restore) models and optimisers, and tell the user where things are."""
    ckpt = load_checkpoint(run_dir / "last.pt") if resume and (run_dir / "last.pt").exists() else None
    train_set, val_set, sample_rate = _open_data(cfg)
    run = _Run(cfg, run_dir, info, device, train_set, val_set, ckpt, sample_rate)
    n_params = sum(p.numel() for p in run.g_raw.parameters())
    _say(f"[train] data: {_describe_data(cfg)}")
    _say(f"[train] run {run_dir}  preset={cfg.preset}  q={cfg.generator_q()}  f={cfg.filters}  "
         f"G params={n_params:,}  device={device}  processes={info.world_size}  "
         f"train clips={len(train_set)}  val clips={cfg.val_clips or len(val_set)}"
         + (f"  resuming at step {run.step}" if ckpt else ""))
    return run


def _describe_data(cfg: TrainConfig) -> str:
    if cfg.data:
        what = f"{cfg.data} ({'dynamic mixing of its sources' if cfg.dynamic else 'fixed clips'})"
    elif cfg.dynamic:
        what = (f"dynamic mixing of the shipped {cfg.data_kind} recordings; validation on "
                f"{Path(cfg.data_root) / f'{cfg.data_kind}-{cfg.data_size}'} (built from their val split)")
    else:
        what = f"{Path(cfg.data_root) / f'{cfg.data_kind}-{cfg.data_size}'} (built from the shipped recordings)"
    return what + (f", validation on {cfg.val_data}" if cfg.val_data else "")


def _first_pass_baseline(run: "_Run", log: "_Log") -> None:
    """For a second-pass run, validate the frozen first pass once (the baseline to beat)."""
    if run.first is None or not distrib.is_main() or run.first_pass_val:
        return
    from opgan.enhance import enhance_clips

    first, cfg = run.first, run.cfg
    run.first_pass_val = validate(lambda x: enhance_clips(first, x), run.val_set, run.device, run.sample_rate,
                                  cfg.val_clips, cfg.batch_size, cfg.val_stoi)
    log.record("first_pass", run.step, run.first_pass_val)
    _say(f"[train] first pass alone: {_fmt(run.first_pass_val)}")


def _train_loop(run: "_Run", log: "_Log") -> tuple[str, float]:
    """Step until max_steps (the bound) or max_minutes (a safety net); validate and checkpoint on the way.
    Returns the stop reason and this session's training throughput (steps/s)."""
    cfg, device = run.cfg, run.device
    loader_kw: dict[str, Any] = dict(num_workers=cfg.workers, pin_memory=device.type == "cuda")
    if cfg.workers:
        loader_kw["persistent_workers"] = False
    bar = None
    if cfg.progress and distrib.is_main():
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=run.step, desc="train", unit="step", dynamic_ncols=True)
    acc: dict[str, list[float]] = {}
    since_val: dict[str, list[float]] = {}  # train losses since the last validation (for metrics.csv)
    t_seg = time.time()
    seg_steps, seg_train_s0 = 0, run.train_s  # this session's throughput (a resumed run counts anew)
    stop_reason = "max_steps"
    try:
        if run.step >= cfg.max_steps:
            if not run.last_val:
                _validate_and_save(run, log, {})
            return stop_reason, 0.0
        for step, x, y in _batches(run, loader_kw):
            xin, yin = run._inputs(x, y, step)
            if seg_steps == 0:
                run.precompile_kernels(xin, yin)
            vals = run.train_step(xin, yin)
            run.step = step + 1
            for k, v in vals.items():
                acc.setdefault(k, []).append(v)
                since_val.setdefault(k, []).append(v)
            seg_steps += 1
            now = time.time()
            run.train_s += now - t_seg
            t_seg = now
            if bar is not None:
                bar.update(1)
            if run.step % cfg.log_every == 0:
                rec = {k: float(np.mean(v)) for k, v in acc.items()}
                rec["time_s"] = run.train_s
                rec["lr"] = run.learning_rate()
                log.record("train", run.step, rec)
                if bar is not None:
                    bar.set_postfix(d=f"{rec['d_loss']:.3f}", g=f"{rec['g_loss']:.2f}")
                acc = {}
            # per session: a run resumed with --max-minutes M trains M more minutes, whatever it did before
            out_of_time = cfg.max_minutes > 0 and run.train_s - seg_train_s0 >= cfg.max_minutes * 60
            out_of_time = distrib.any_flag(out_of_time, device)
            done = run.step >= cfg.max_steps or out_of_time
            if run.step % cfg.val_every == 0 or done:
                _validate_and_save(run, log, {k: float(np.mean(v)) for k, v in since_val.items()})
                since_val = {}
                t_seg = time.time()  # validation time is not training time
            elif run.step % cfg.ckpt_every == 0:
                run.save_last()
            if done:
                if out_of_time and run.step < cfg.max_steps:
                    stop_reason = "max_minutes"
                    _say(f"[train] the {cfg.max_minutes:g}-minute safety cap stopped the run at step {run.step} of "
                         f"{cfg.max_steps}; continue it with --resume")
                break
    finally:
        if bar is not None:
            bar.close()
    return stop_reason, seg_steps / max(run.train_s - seg_train_s0, 1e-9)


def _finish(run: "_Run", stop_reason: str, steps_per_s: float, t_wall: float) -> TrainResult:
    """Write summary.json and report where the results are."""
    result = TrainResult(run_dir=str(run.run_dir), step=run.step, wall_s=time.time() - t_wall,
                         train_s=run.train_s, final=run.last_val, best=run.best, best_step=run.best_step,
                         first_pass=run.first_pass_val, generator=run.g_raw, discriminator=run.d_raw)
    if distrib.is_main():
        summary = {**result.summary(), "stop_reason": stop_reason, "steps_per_s": steps_per_s,
                   "select_by": run.cfg.select_by}
        _write_json(run.run_dir / "summary.json", summary)
        _say(f"[train] done at step {run.step} ({stop_reason}); train {run.train_s / 60:.1f} min, "
             f"wall {result.wall_s / 60:.1f} min")
        _say(f"[train] final validation: {_fmt(run.last_val)}")
        _say(f"[train] best by {run.cfg.select_by} (step {run.best_step}): {_fmt(run.best)}")
        _say(f"[train] outputs in {run.run_dir}/: best.pt (restore with `opgan restore --model "
             f"{run.run_dir / 'best.pt'} FILE`), last.pt (--resume), metrics.csv, summary.json")
    distrib.barrier()
    return result


def _validate_and_save(run: _Run, log: _Log, train_losses: dict[str, float]) -> None:
    """Validate on rank 0, keep best.pt by the config's `select_by` metric, write last.pt."""
    if distrib.is_main():
        res = run.run_validation()
        run.last_val = res
        key = run.cfg.select_by
        is_best = not run.best or res[key] > run.best.get(key, -math.inf)
        if is_best:
            run.best, run.best_step = dict(res), run.step
        log.record("val", run.step, {**train_losses, **res, "time_s": run.train_s, "best": is_best})
        _say(f"[val] step {run.step}: {_fmt(res)}" + ("  (best)" if is_best else ""))
        run.save_last()
        if is_best:
            save_checkpoint(run.run_dir / "best.pt", run.payload(full=False))
    distrib.barrier()


def _fmt(m: dict[str, float]) -> str:
    if not m:
        return "-"
    s = (f"SDR {m['sdr_in']:+.2f} -> {m['sdr_out']:+.2f} dB (gain {m['sdr_gain']:+.2f}; silent-output floor "
         f"{m['silent_floor_gain']:+.2f}), SI-SDR gain {m['si_sdr_gain']:+.2f} dB")
    if "stoi_out" in m:
        s += f", STOI {m['stoi_in']:.3f} -> {m['stoi_out']:.3f}"
    if "level_db" in m:
        s += f", level {m['level_db']:+.2f} dB"
    if m.get("light_clips"):
        s += f", light inputs ({m['light_clips']:.0f}) SDR gain {m['light_sdr_gain']:+.2f} (worst {m['light_worst_gain']:+.2f})"
    return s


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time of the record (so redirections and capture work)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; the property always follows sys.stdout
        pass


def _cli_logging() -> None:
    """`python train.py` shows the trainer's progress lines on stdout unless logging is set up already."""
    root = logging.getLogger("opgan")
    if not root.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """`python train.py [...]` / `opgan train [...]`: returns a process exit code."""
    from opgan.data.audio import AudioError

    _cli_logging()
    try:
        cfg, overrides, args = parse_args(argv)
        fit(cfg, resume=args.resume, overwrite=args.overwrite, overrides=overrides)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ConfigError, CheckpointError, DeviceError, AudioError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; continue with --resume (from the last checkpoint)", file=sys.stderr)
        return 130
    return 0
