"""The trainer's run folder and logs: which files a run owns, the checks before it starts, and the
records it writes (metrics.jsonl, metrics.csv, optional TensorBoard, JSON summaries).

A run folder `<runs_dir>/<name>/` holds only :data:`RUN_FILES` (and `tb/`); `--overwrite` removes
those and nothing else. A new run writes nothing there until it has started (data opened, models
built), so a start that fails leaves nothing that blocks a retry with the same name.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

from . import distrib
from .checkpoint import remove_stale_temporaries
from .config import RESUMABLE_FIELDS, ConfigError, TrainConfig

logger = logging.getLogger("opgan.train")

__all__ = ["RUN_FILES", "VAL_COLUMNS", "VAL_TABLES", "RunFolder", "RunLog", "prepare_run_dir",
           "require_tensorboard", "say", "write_json"]

#: The validation tables per record kind: the weights validated (the average, when the run keeps one) and,
#: beside them, the raw weights of a run that keeps an average.
VAL_TABLES = {"val": "metrics.csv", "val_raw": "metrics-raw.csv"}
#: Files the trainer writes into a run folder (and the only ones `--overwrite` removes).
RUN_FILES = ("config.json", "last.pt", "best.pt", "metrics.jsonl", *VAL_TABLES.values(), "summary.json")
VAL_COLUMNS = ("step", "time_s", "d_loss", "g_loss", "sdr_in", "sdr_out", "sdr_gain", "si_sdr_in", "si_sdr_out",
               "si_sdr_gain", "stoi_in", "stoi_out", "silent_floor_gain", "level_db", "light_clips",
               "light_sdr_gain", "light_worst_gain", "score")

#: resumable fields that change what is trained or validated from the resume on (a schedule or curriculum
#: step, the weight average):
#: each change is logged as a "resume" record in metrics.jsonl, so the learning curve shows it
TRAINING_FIELDS = frozenset({"lr", "lr_half_life", "ema_decay", "cases", "augment", "group_weight", "background_mix", "room_prob",
                             "reverb_min_rt60", "data", "rirs", "bf16"})


def say(msg: str) -> None:
    """Progress for the user, from rank 0 only (other ranks would repeat it)."""
    if distrib.is_main():
        logger.info(msg)


class RunFolder:
    """Where a run writes, and what its start does there once the run has started.

    ``stale``: files of an earlier run that `--overwrite` replaces, with its tb/ (removed by
    :meth:`commit`, so an overwrite whose start fails keeps the old run); ``created``: the folder did
    not exist before.
    """

    def __init__(self, path: Path, resume: bool, stale: list[str], created: bool, overwrite: bool = False) -> None:
        self.path, self.resume, self.stale, self.created, self.overwrite = path, resume, stale, created, overwrite
        self.committed = False

    def commit(self, cfg: TrainConfig) -> None:
        """The run has started: clear an overwritten run's files and write config.json (what the run
        trains with now; a resume rewrites it here, after its checks, so a failed resume leaves it)."""
        if distrib.is_main():
            for f in self.stale:
                (self.path / f).unlink(missing_ok=True)
            if self.overwrite and (self.path / "tb").is_dir():
                shutil.rmtree(self.path / "tb")
            write_json(self.path / "config.json", cfg.to_dict())
        self.committed = True
        distrib.barrier()

    def abandon(self) -> None:
        """A new run failed before its first step: remove what it wrote, so the same name can be retried.

        Not a resume, and only the run's own files: once committed, RUN_FILES and tb/ are this run's
        (an overwritten run's were removed then); before, nothing was written. Then the folder itself
        if this run created it and nothing else is in it."""
        if self.resume or not distrib.is_main():
            return
        if self.committed:
            for f in RUN_FILES:
                (self.path / f).unlink(missing_ok=True)
            if (self.path / "tb").is_dir():
                shutil.rmtree(self.path / "tb")
        if self.created:
            try:
                self.path.rmdir()
            except OSError:  # the user put something there meanwhile: keep it
                pass


def prepare_run_dir(cfg: TrainConfig, overrides: dict[str, Any], resume: bool,
                    overwrite: bool) -> tuple[TrainConfig, RunFolder, dict[str, list]]:
    """Check the run folder and create it; on resume, return the saved config with allowed overrides
    and the training-relevant changes ({field: [old, new]}). Nothing is written or removed here:
    :meth:`RunFolder.commit` does that once the run has started."""
    run_dir = Path(cfg.runs_dir) / cfg.name
    existing = [f for f in RUN_FILES if (run_dir / f).exists()]
    distrib.barrier()  # every rank looks before rank 0 writes, so all take the same decision
    if resume and existing:
        cfg, changes = _resumed_config(run_dir, existing, overrides)
        return cfg, RunFolder(run_dir, True, [], False), changes
    if existing and not overwrite:
        raise ConfigError(
            f"run folder {run_dir} already holds a run ({', '.join(existing)}); pass --resume to continue it, "
            f"--overwrite to replace it, or --name NEW for a new run"
        )
    created = not run_dir.exists()
    if distrib.is_main():
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the run folder {run_dir}: {e.strerror or e}") from None
    distrib.barrier()
    return cfg, RunFolder(run_dir, False, existing, created, overwrite), {}


def _resumed_config(run_dir: Path, existing: list[str],
                    overrides: dict[str, Any]) -> tuple[TrainConfig, dict[str, list]]:
    """The config a resume trains with: config.json's, with the overrides RESUMABLE_FIELDS allow."""
    saved_path = run_dir / "config.json"
    if not saved_path.is_file():
        raise ConfigError(f"{run_dir} has no config.json; cannot resume it (use --overwrite to start over)")
    if "last.pt" not in existing and set(existing) - {"config.json"}:
        # Starting again at step 0 would overwrite best.pt and the metrics of the steps already trained.
        raise ConfigError(
            f"{run_dir} has no last.pt to resume from (it holds {', '.join(f for f in existing if f != 'config.json')}); "
            f"nothing was changed: restore last.pt, train a new --name (--init-from {run_dir / 'best.pt'} "
            f"starts from its weights), or pass --overwrite to start this run over"
        )
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {saved_path}: {e}") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{saved_path} must hold a JSON object of config fields")
    changed = sorted(k for k, v in overrides.items() if k not in RESUMABLE_FIELDS and saved.get(k) != v)
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(changed)} when resuming {run_dir} (only "
            f"{', '.join(sorted(RESUMABLE_FIELDS))} may change); start a new --name instead"
        )
    changes = {k: [saved.get(k), v] for k, v in overrides.items()
               if k in RESUMABLE_FIELDS and k in TRAINING_FIELDS and saved.get(k) != v}
    saved.update({k: v for k, v in overrides.items() if k in RESUMABLE_FIELDS})
    return TrainConfig.from_dict(saved), changes


def clean_stale_temporaries(run_dir: Path, started: float) -> None:
    """Remove the temporary files a killed run left in its folder (rank 0; see
    :func:`opgan.checkpoint.remove_stale_temporaries` for which ones count as stale)."""
    if not distrib.is_main():
        return
    removed = remove_stale_temporaries(run_dir, RUN_FILES, started)
    if removed:
        say(f"[train] removed {len(removed)} temporary file(s) an interrupted run left in {run_dir}: "
            + ", ".join(p.name for p in removed))


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (a temp file beside it, then os.replace)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


class RunLog:
    """metrics.jsonl (all records) + metrics.csv (validation rows) + optional TensorBoard; a run that keeps
    a weight average also writes metrics-raw.csv, the raw weights' validation rows ("val_raw" records)."""

    def __init__(self, run_dir: Path, resume_step: int, tensorboard: bool, enabled: bool) -> None:
        self.enabled = enabled
        self.jsonl = run_dir / "metrics.jsonl"
        self.csvs = {kind: run_dir / name for kind, name in VAL_TABLES.items()}
        self.tb = None
        if not enabled:
            return
        self._truncate(resume_step)
        if tensorboard:
            self.tb = require_tensorboard()(str(run_dir / "tb"), purge_step=resume_step + 1)

    def _truncate(self, step: int) -> None:
        """Drop records past the checkpoint we resume from (they will be redone)."""
        if self.jsonl.exists():
            keep = [ln for ln in self.jsonl.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
            self.jsonl.write_text("".join(ln + "\n" for ln in keep))
        for path in self.csvs.values():
            if path.exists():
                with path.open(newline="") as fh:
                    rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
                self._write_csv_rows(path, rows, mode="w")

    @staticmethod
    def _write_csv_rows(path: Path, rows: list[dict], mode: str) -> None:
        new = mode == "w" or not path.exists()
        with path.open(mode, newline="") as fh:
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
        if kind in self.csvs:
            self._write_csv_rows(self.csvs[kind], [rec], mode="a")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def require_tensorboard() -> type:
    """TensorBoard's SummaryWriter, or a ConfigError saying how to install it. Imported here: tensorboard
    is optional (the `tensorboard` extra), and a run checks for it before it writes anything."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the `tensorboard` package: pip install 'opgan-selfonn[tensorboard]' "
                          "(or pip install tensorboard)") from None
    return SummaryWriter


def _round(v: Any) -> Any:
    return round(v, 5) if isinstance(v, float) and math.isfinite(v) else v
