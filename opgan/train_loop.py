"""A training run from start to finish: check the run folder, open the data, build or resume the
models (:mod:`opgan.train_run`), step until `max_steps` (or the `max_minutes` safety net) with
validation and checkpoints on the way, and write the summary.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import selfonn
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distrib
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .device import resolve_device
from .enhance import enhance_clips
from .train_data import describe_data, open_data
from .train_rundir import RunFolder, RunLog, clean_stale_temporaries, prepare_run_dir, require_tensorboard, say, \
    write_json
from .train_run import Run
from .train_validate import format_metrics, validate

__all__ = ["TrainResult", "fit"]


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
    stop_reason: str = ""  # max_steps, max_minutes or terminated (SIGTERM; last.pt holds the last step)
    generator: nn.Module | None = field(default=None, repr=False)  # the trained generator (this process's)
    discriminator: nn.Module | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("generator", "discriminator")}


def fit(cfg: TrainConfig, resume: bool = False, overwrite: bool = False,
        overrides: dict[str, Any] | None = None) -> TrainResult:
    """Train as `cfg` says; returns the final/best validation metrics (rank 0's view)."""
    t_wall = time.time()
    info = distrib.init("cuda" if cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    try:
        return _fit(cfg, resume, overwrite, overrides or {}, info, t_wall)
    finally:
        distrib.shutdown()


def _fit(cfg: TrainConfig, resume: bool, overwrite: bool, overrides: dict[str, Any],
         info: distrib.DistInfo, t_wall: float) -> TrainResult:
    cfg.validate()
    cfg, folder, changes = prepare_run_dir(cfg, overrides, resume, overwrite)
    run: Run | None = None
    try:
        clean_stale_temporaries(folder.path, t_wall)
        device = resolve_device(cfg.device, info.local_rank if info.enabled else None)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.tensorboard and distrib.is_main():
            require_tensorboard()
        with selfonn.use_backend(cfg.backend):  # the caller's global backend is restored afterwards
            run = _start_run(cfg, folder, info, device, resume)
            folder.commit(cfg)  # the run has started: from here on it owns the folder's files
            log = RunLog(folder.path, run.step, cfg.tensorboard, enabled=distrib.is_main())
            if changes:
                log.record("resume", run.step, {"changed": changes})
                say(f"[train] resumed at step {run.step} with " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()))
            try:
                _first_pass_baseline(run, log)
                stop_reason, steps_per_s = _train_loop(run, log)
            finally:
                log.close()
    except BaseException:
        if run is None or run.step == 0:  # failed before its first step: leave nothing that blocks a retry
            folder.abandon()
        raise
    return _finish(run, stop_reason, steps_per_s, t_wall)


def _start_run(cfg: TrainConfig, folder: RunFolder, info: distrib.DistInfo, device: torch.device,
               resume: bool) -> Run:
    """Open the data, build (or restore) models and optimisers, and tell the user where things are."""
    last = folder.path / "last.pt"
    ckpt = load_checkpoint(last) if resume and last.exists() else None
    train_set, val_set, sample_rate = open_data(cfg)
    run = Run(cfg, folder.path, info, device, train_set, val_set, ckpt, sample_rate)
    n_params = sum(p.numel() for p in run.g_raw.parameters())
    say(f"[train] data: {describe_data(cfg)}")
    say(f"[train] run {folder.path}  preset={cfg.preset}  {_model_words(cfg)}  "
        f"G params={n_params:,}  device={device}  processes={info.world_size}  "
        f"train clips={len(train_set)}  val clips={cfg.val_clips or len(val_set)}"
        + (f"  resuming at step {run.step}" if ckpt else ""))
    return run


def _model_words(cfg: TrainConfig) -> str:
    """The generator in the run's opening line: its arch and size fields."""
    if cfg.arch == "demucs":
        return f"arch=demucs hidden={cfg.demucs_hidden} depth={cfg.demucs_depth} resample={cfg.demucs_resample}"
    if cfg.arch == "spectral":
        return (f"arch=spectral n_fft={cfg.spectral_n_fft} hidden={cfg.spectral_hidden} "
                f"blocks={cfg.spectral_blocks} q={cfg.q}" + (" gated" if cfg.spectral_gate else "") + (" normed" if cfg.spectral_norm else "")
                + (f" filter={cfg.spectral_df_order}x{cfg.spectral_df_bins or 'all'}" if cfg.spectral_df_order else ""))
    return f"q={cfg.generator_q()}  f={cfg.filters}"


def _first_pass_baseline(run: Run, log: RunLog) -> None:
    """For a second-pass run, validate the frozen first pass once (the baseline to beat)."""
    if run.first is None or not distrib.is_main() or run.first_pass_val:
        return
    first, cfg = run.first, run.cfg
    run.first_pass_val = validate(lambda x: enhance_clips(first, x), run.val_set, run.device, run.sample_rate,
                                  cfg.val_clips, cfg.batch_size, cfg.val_stoi)
    log.record("first_pass", run.step, run.first_pass_val)
    say(f"[train] first pass alone: {format_metrics(run.first_pass_val)}")


def _batches(run: Run, loader_kw: dict) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
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


class _Termination:
    """SIGTERM (`kill`, a job scheduler's stop) asks the loop to stop after the step it is in: last.pt is
    written at that step and summary.json says so, so the stop loses no step. Installed only from the main
    thread (Python's rule for signal handlers); the previous handler comes back afterwards."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def install(self) -> "_Termination":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def _train_loop(run: Run, log: RunLog) -> tuple[str, float]:
    """Step until max_steps (the bound) or max_minutes (a safety net); validate and checkpoint on the way.
    Returns the stop reason and this session's training throughput (steps/s)."""
    cfg, device = run.cfg, run.device
    loader_kw: dict[str, Any] = dict(num_workers=cfg.workers, pin_memory=device.type == "cuda")
    if cfg.workers:
        loader_kw["persistent_workers"] = False
    bar = None
    if cfg.progress and distrib.is_main():
        bar = tqdm(total=cfg.max_steps, initial=run.step, desc="train", unit="step", dynamic_ncols=True)
    acc: dict[str, list[float]] = {}
    since_val: dict[str, list[float]] = {}  # train losses since the last validation (for metrics.csv)
    t_seg = time.time()
    seg_steps, seg_train_s0 = 0, run.train_s  # this session's throughput (a resumed run counts anew)
    stop_reason = "max_steps"
    termination = _Termination().install()
    try:
        if run.step >= cfg.max_steps:
            if not run.last_val:
                _validate_and_save(run, log, {})
            return stop_reason, 0.0
        for step, x, y in _batches(run, loader_kw):
            xin, yin = run.inputs(x, y, step)
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
            out_of_time, terminated = distrib.any_flags((out_of_time, termination.requested), device)
            if terminated:
                if distrib.is_main():
                    run.save_last()
                stop_reason = "terminated"
                say(f"[train] SIGTERM: stopped at step {run.step}, its state saved in last.pt; continue with --resume")
                break
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
                    say(f"[train] the {cfg.max_minutes:g}-minute safety cap stopped the run at step {run.step} of "
                        f"{cfg.max_steps}; continue it with --resume")
                break
    finally:
        termination.restore()
        if bar is not None:
            bar.close()
    return stop_reason, seg_steps / max(run.train_s - seg_train_s0, 1e-9)


def _validate_and_save(run: Run, log: RunLog, train_losses: dict[str, float]) -> None:
    """Validate on rank 0 (the weight average and, beside it, the raw weights when the run keeps an average),
    keep best.pt by the config's `select_by` metric, write last.pt."""
    if distrib.is_main():
        res = run.run_validation()
        raw = run.run_validation(raw=True) if run.ema is not None else None
        run.last_val = res
        key = run.cfg.select_by
        is_best = not run.best or res[key] > run.best.get(key, -math.inf)
        if is_best:
            run.best, run.best_step = dict(res), run.step
        log.record("val", run.step, {**train_losses, **res, "time_s": run.train_s, "best": is_best})
        say(f"[val] step {run.step}: {format_metrics(res)}" + ("  (best)" if is_best else "")
            + ("  [weight average]" if raw is not None else ""))
        if raw is not None:
            log.record("val_raw", run.step, {**raw, "time_s": run.train_s})
            say(f"[val] step {run.step}: {format_metrics(raw)}  [raw weights]")
        run.save_last()
        if is_best:
            save_checkpoint(run.run_dir / "best.pt", run.payload(full=False))
    distrib.barrier()


def _finish(run: Run, stop_reason: str, steps_per_s: float, t_wall: float) -> TrainResult:
    """Write summary.json and report where the results are."""
    result = TrainResult(run_dir=str(run.run_dir), step=run.step, wall_s=time.time() - t_wall,
                         train_s=run.train_s, final=run.last_val, best=run.best, best_step=run.best_step,
                         first_pass=run.first_pass_val, stop_reason=stop_reason, generator=run.g_raw,
                         discriminator=run.d_raw)
    if distrib.is_main():
        summary = {**result.summary(), "steps_per_s": steps_per_s,
                   "select_by": run.cfg.select_by}
        write_json(run.run_dir / "summary.json", summary)
        say(f"[train] done at step {run.step} ({stop_reason}); train {run.train_s / 60:.1f} min, "
            f"wall {result.wall_s / 60:.1f} min")
        say(f"[train] final validation: {format_metrics(run.last_val)}")
        say(f"[train] best by {run.cfg.select_by} (step {run.best_step}): {format_metrics(run.best)}")
        say(f"[train] outputs in {run.run_dir}/: best.pt (restore with `opgan restore --model "
            f"{run.run_dir / 'best.pt'} FILE`), last.pt (--resume), metrics.csv, summary.json")
    distrib.barrier()
    return result
