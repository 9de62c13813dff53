"""Copy a run's state into a committed folder (``training/<name>/``) so that anyone can resume it.

A run folder written on one machine names that machine's folders (``--data /home/me/.cache/opgan``,
``--runs-dir runs/cand``) and its ``last.pt`` holds the generator three times (weights and Adam's two
moments). Publishing rewrites every absolute path in its records and checkpoints the way a committed record
shows it (relative to the working folder, else ``~/...``; `opgan.checkpoint.shown_path`), points
``runs_dir`` at the destination, so that ``python train.py --resume --runs-dir training --name <name>``
continues it from a clone, and compacts ``last.pt`` (`opgan.checkpoint.compact_training_state`).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .checkpoint import (check_training_state, compact_training_state, load_checkpoint,
                         save_checkpoint, shown_path)
from .train_rundir import RUN_FILES, VAL_TABLES, write_json

logger = logging.getLogger("opgan.publish")

__all__ = ["publish_run"]


def _shown(value: Any) -> Any:
    """``value`` with every absolute path string (at any depth) as a committed record shows it."""
    if isinstance(value, str):
        return shown_path(value) if os.path.isabs(value) else value
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_shown(v) for v in value)
    return value


def _config(config: dict[str, Any], runs_dir: str) -> dict[str, Any]:
    return {**_shown(config), "runs_dir": runs_dir}


def _absolute(value: Any) -> list[str]:
    """The absolute path strings in a shown ``value``: outside the working folder and home, so kept."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in _absolute(v)]
    return [value] if isinstance(value, str) and os.path.isabs(value) else []


def publish_run(run_dir: str | Path, to: str | Path = "training", overwrite: bool = False) -> Path:
    """Write ``run_dir``'s run into ``<to>/<its name>/`` (or rewrite it in place when that is where it is);
    returns the destination. ValueError / CheckpointError (one line) when the run is incomplete or the
    destination already holds another copy and ``overwrite`` is off; nothing is written then."""
    src = Path(run_dir)
    cfg_path = src / "config.json"
    if not cfg_path.is_file() or not (src / "last.pt").is_file():
        raise ValueError(f"{src} is not a run folder (it needs config.json and last.pt)")
    try:
        config = json.loads(cfg_path.read_text())
        name = config["name"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{cfg_path}: not a run's config ({type(e).__name__})") from None
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ValueError(f"{cfg_path}: its run name {name!r} cannot name a folder")
    dest = Path(to) / name
    in_place = dest.resolve() == src.resolve()
    held = [f for f in RUN_FILES if (dest / f).exists()]
    if held and not in_place and not overwrite:
        raise ValueError(f"{dest} already holds {', '.join(held)}; pass --overwrite to replace them")
    runs_dir = shown_path(to)
    last = load_checkpoint(src / "last.pt")
    check_training_state(last, src / "last.pt")
    best = load_checkpoint(src / "best.pt") if (src / "best.pt").is_file() else None
    # everything read and checked: now write
    shown, last_config = _config(config, runs_dir), _config(last["config"], runs_dir)
    dest.mkdir(parents=True, exist_ok=True)
    write_json(dest / "config.json", shown)
    if (src / "summary.json").is_file():
        write_json(dest / "summary.json", _shown(json.loads((src / "summary.json").read_text())))
    if (src / "metrics.jsonl").is_file():
        lines = [json.dumps(_shown(json.loads(ln))) for ln in (src / "metrics.jsonl").read_text().splitlines() if ln]
        tmp = dest / ".metrics.jsonl.tmp"
        tmp.write_text("".join(ln + "\n" for ln in lines))
        os.replace(tmp, dest / "metrics.jsonl")
    for table in VAL_TABLES.values():  # the validation rows (and the raw weights' of an averaged run)
        if (src / table).is_file() and not in_place:
            shutil.copyfile(src / table, dest / table)
    save_checkpoint(dest / "last.pt", {**compact_training_state(last), "config": last_config})
    if best is not None:
        save_checkpoint(dest / "best.pt", {**best, "config": _config(best["config"], runs_dir)})
    left = sorted(set(_absolute(shown) + _absolute(last_config)))
    if left:
        logger.warning("%s: paths outside the working folder and home kept as they are: %s", dest, ", ".join(left))
    return dest
