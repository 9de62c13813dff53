"""Checkpoints as plain data: atomic writes, `weights_only=True` loads, RNG state capture.

Format `opgan-ckpt-1` (docs/ARCHITECTURE.md): `format`, `config` (the TrainConfig dict plus the
`generator`/`discriminator` model configs), `generator`, `discriminator`, `opt_g`, `opt_d`, `step`,
`rng`, `sample_rate`, `metrics`, and for a second-pass run `second_pass` = {`config`, `generator`}
(the trained second generator; `generator` is then the frozen first pass, as `load_restorer` reads it).

A checkpoint is data from anywhere: every field is checked and bounded here before anything is built
or allocated from it (:func:`check_restorer` for the inference fields, :func:`check_training_state`
and :func:`check_state` for a resume), each failure a one-line CheckpointError.
"""
from __future__ import annotations

import math
import os
import pickle
import random
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

__all__ = ["FORMAT", "CheckpointError", "shown_path", "GeneratorSpec", "RestorerSpec", "TrainingState", "capture_rng",
           "check_generator", "check_restorer", "check_state", "check_training_state", "compact_training_state",
           "fill_first_moments", "load_checkpoint", "remove_stale_temporaries", "restore_rng", "save_checkpoint"]

FORMAT = "opgan-ckpt-1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not of our format."""


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write `payload` to `path` atomically: a temp file in the same folder, fsync, then os.replace.

    A run killed mid-write leaves the previous file intact (and at worst a stray
    `.NAME.PID-XXXX.tmp`, which :func:`remove_stale_temporaries` clears).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's PID in the name lets a later run tell a dead writer's leftovers from a live one's.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(dict(payload), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without executing code (`weights_only=True`), checking its format.

    Every way a file can fail (missing, a folder, empty, truncated, not a .pt, code instead of data,
    another format) raises CheckpointError with a one-line message that says which.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"'{path}' is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
    _check_container(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused what the file asks to build
        raise CheckpointError(_refused(path, e)) from e
    except Exception as e:  # truncated or foreign files raise many different types
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"cannot read checkpoint '{path}': {type(e).__name__}: {first}") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"'{path}' is not an {FORMAT} checkpoint (it holds a {type(ckpt).__name__})")
    if ckpt.get("format") != FORMAT:
        if "format" not in ckpt and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise CheckpointError(f"'{path}' holds a bare state dict, not an {FORMAT} checkpoint "
                                  "(which also stores the model config and sample rate)")
        raise CheckpointError(f"'{path}' is not an {FORMAT} checkpoint (format: {ckpt.get('format')!r})")
    return ckpt


def _refused(path: Path, e: Exception) -> str:
    """One line for a file that `weights_only=True` refused. torch's own text goes on to offer
    `weights_only=False`, which would run whatever the file holds: that advice is never passed on."""
    text = str(e)
    what = re.search(r"GLOBAL ([\w.]+)", text)
    held = f"a pickled {what.group(1)}" if what else "pickled objects"
    if "Weights only load failed" not in text and what is None:  # e.g. a truncated legacy-format file
        first = (text.strip().splitlines() or [""])[0][:200]
        return f"cannot read checkpoint '{path}': {type(e).__name__}: {first}"
    return (f"refused checkpoint '{path}': it holds code ({held}), not only tensors and numbers; it must not be "
            "loaded with weights_only=False, which would run that code. Use a checkpoint saved by opgan")


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container
_PICKLE_MAGIC = b"\x80"  # torch.save(..., _use_new_zipfile_serialization=False)


def _check_container(path: Path) -> None:
    """Name the usual non-checkpoints before torch.load turns them into an obscure exception."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
    if size == 0:
        raise CheckpointError(f"cannot read checkpoint '{path}': the file is empty (0 bytes)")
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"cannot read checkpoint '{path}': the file is truncated or damaged "
                                  f"({size} bytes; an interrupted download or copy?)")
    elif not head.startswith(_PICKLE_MAGIC):
        raise CheckpointError(f"cannot read checkpoint '{path}': not a PyTorch .pt file (it begins {head!r})")


def compact_training_state(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """`ckpt` with each Adam state cut to about a quarter of its size, for committing a run's state
    (a resumable checkpoint is otherwise three copies of the generator).

    The second moment is kept in bfloat16: a ~1000-step average at beta2 0.999 that a resume would
    otherwise spend hundreds of steps re-estimating (rounding: 0.4 %); the load casts it back to the
    parameter's dtype. The first moment is dropped: it averages the last 2 (beta1 0.5) to 10 (0.9)
    gradients, and the resumed run starts it at zero (`fill_first_moments`). A weight average (`ema`)
    is dropped too: one more copy of the generator, which a resumed run starts again from the resumed
    weights (warmed up, it follows them within a few hundred steps). The models, RNG states and
    bookkeeping are untouched, so the resumed run draws the same data.
    """
    out = dict(ckpt)
    out.pop("ema", None)
    for key in ("opt_g", "opt_d"):
        opt = out.get(key)
        if not isinstance(opt, Mapping) or not isinstance(opt.get("state"), Mapping):
            continue
        state = {}
        for pid, st in opt["state"].items():
            st = dict(st) if isinstance(st, Mapping) else st
            if isinstance(st, dict) and isinstance(st.get("exp_avg_sq"), torch.Tensor):
                st.pop("exp_avg", None)
                if st["exp_avg_sq"].dtype == torch.float32:
                    st["exp_avg_sq"] = st["exp_avg_sq"].to(torch.bfloat16)
            state[pid] = st
        out[key] = {**opt, "state": state}
    return out


def fill_first_moments(opt_state: Mapping[str, Any]) -> dict[str, Any]:
    """An optimiser state dict whose Adam entries all hold `exp_avg`: zeros where a compact state
    (:func:`compact_training_state`) dropped it."""
    state = {}
    for pid, st in opt_state.get("state", {}).items():
        if isinstance(st, dict) and "exp_avg" not in st and isinstance(st.get("exp_avg_sq"), torch.Tensor):
            st = {**st, "exp_avg": torch.zeros(st["exp_avg_sq"].shape, dtype=torch.float32)}
        state[pid] = st
    return {**opt_state, "state": state}


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) RNG states as weights_only-loadable data."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of capture_rng (CUDA states restored only when the device count matches)."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _as_tuple(x: Any) -> Any:
    """random.setstate needs tuples all the way down (a round trip may hand back lists)."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def remove_stale_temporaries(folder: str | Path, names: Iterable[str], started: float) -> list[Path]:
    """Remove the temporary files interrupted writes of `names` left in `folder`; return them.

    Only this module's and the trainer's patterns (`.NAME.PID-XXXX.tmp` from :func:`save_checkpoint`,
    `.NAME.XXXX.tmp` from older versions, `.NAME.tmp` from JSON writes), and only stale ones: a PID in
    the name that no longer runs, or, without one (or with a live one, perhaps reused), a file last
    written before `started` (the caller's start time)."""
    folder = Path(folder)
    removed = []
    for name in names:
        # tempfile's 8 random characters after the PID (or alone, before the PID was added); none for JSON
        pattern = re.compile(rf"^\.{re.escape(name)}(?:\.(?:(\d+)-)?[a-z0-9_]{{8}})?\.tmp$")
        for p in folder.glob(f".{name}*.tmp"):
            m = pattern.match(p.name)
            if m is None or not p.is_file():
                continue
            try:
                stale = (m.group(1) is not None and not _pid_alive(int(m.group(1)))) or p.stat().st_mtime < started
            except OSError:
                continue
            if stale:
                try:
                    p.unlink()
                except FileNotFoundError:
                    continue
                removed.append(p)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # someone else's live process (or a PID the OS cannot name: not ours to judge)
    return True


# ------------------------------------------------------------------------------------------------
# Field checks: nothing is built or allocated from a checkpoint before its fields pass these

#: Sample rates a model may declare (restore resamples every input to it: a 10**9 Hz rate asked for
#: a 3.6 GiB array).
SAMPLE_RATE_RANGE = (1_000, 384_000)
#: Largest `filters` and Self-ONN order `q` a checkpoint's generator may ask for (the paper's model:
#: f=16, q=3; 200000 filters asked for terabytes).
MAX_FILTERS = 256
MAX_Q = 16
#: Bounds of the reference model's (Demucs') fields in a checkpoint (its default: hidden 48, depth 5, k8 s4,
#: growth 2; the ladder's: hidden 8): a deep stack of growing levels asks for channels by the billion.
DEMUCS_BOUNDS = {"hidden": (1, MAX_FILTERS), "depth": (1, 8), "kernel_size": (1, 64), "stride": (1, 16),
                 "resample": (1, 4)}
DEMUCS_GROWTH = (1.0, 4.0)
#: Bounds of the spectral mask estimator's fields in a checkpoint (its default: n_fft 512, hidden 128, 5 blocks)
SPECTRAL_BOUNDS = {"n_fft": (16, 8192), "hidden": (1, 1024), "blocks": (1, 12), "df_order": (0, 15),
                   "df_bins": (0, 4097)}
SPECTRAL_MASK_MAX = (1.0, 4.0)
#: Largest generator a checkpoint may describe, in parameters (512 MiB of float32; the shipped ones
#: hold 1.4 M, the paper's U-Net 1 M), counted on the meta device before anything is allocated.
MAX_PARAMETERS = 2**27
#: Largest step count and training time a resumable checkpoint may claim.
MAX_STEP = 10**12


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator's checked config and weights (shapes already matched to that config)."""

    config: dict[str, Any]
    state: dict[str, torch.Tensor]


@dataclass(frozen=True)
class RestorerSpec:
    """The checked inference fields of a checkpoint (what `opgan.enhance.load_restorer` builds from)."""

    config: dict[str, Any]  # the checkpoint's whole config (a TrainConfig dict, or a bare generator's)
    generator: GeneratorSpec
    second: GeneratorSpec | None
    sample_rate: int
    metrics: dict[str, Any]


@dataclass(frozen=True)
class TrainingState:
    """The checked bookkeeping fields of a resumable checkpoint (last.pt)."""

    step: int
    train_s: float
    metrics: dict[str, Any]
    rng: Mapping[str, Any]


def check_restorer(ckpt: Mapping[str, Any], where: str | Path) -> RestorerSpec:
    """Check and bound the fields a restorer is built from: `config`, `generator`, `sample_rate`,
    an optional `second_pass` = {`config`, `generator`} and `metrics`."""
    missing = [k for k in ("config", "generator", "sample_rate") if k not in ckpt]
    if missing:
        raise CheckpointError(f"'{where}' lacks {', '.join(missing)}")
    config = _mapping(ckpt["config"], where, "config")
    gen = check_generator(generator_config(config, where), ckpt["generator"], where)
    second = None
    sp = ckpt.get("second_pass")
    if sp is not None and sp != {}:
        sp = _mapping(sp, where, "second_pass")
        absent = [k for k in ("config", "generator") if k not in sp]
        if absent:
            raise CheckpointError(f"'{where}': second_pass lacks {', '.join(absent)}")
        sp_config = _mapping(sp["config"], where, "second_pass.config")
        second = check_generator(generator_config(sp_config, where), sp["generator"], where, "second pass")
    metrics = ckpt.get("metrics")
    metrics = {} if metrics is None else _mapping(metrics, where, "metrics")
    return RestorerSpec(config=config, generator=gen, second=second,
                        sample_rate=check_sample_rate(ckpt["sample_rate"], where), metrics=metrics)


def generator_config(config: Mapping[str, Any], where: str | Path) -> dict[str, Any]:
    """The generator's config inside a checkpoint's config: its `generator` (or `model`, `gen`) entry
    when it has one (a trainer config), else the config itself (a bare generator config)."""
    for key in ("generator", "model", "gen"):
        if key in config:
            return _mapping(config[key], where, f"config.{key}")
    return dict(config)


def check_sample_rate(value: Any, where: str | Path) -> int:
    """A sample rate in Hz: an integer within SAMPLE_RATE_RANGE."""
    lo, hi = SAMPLE_RATE_RANGE
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CheckpointError(f"'{where}' has invalid sample_rate {_short(value)} (an integer from {lo} to {hi} Hz)")
    return value


def check_generator(config: Any, state: Any, where: str | Path, what: str = "generator") -> GeneratorSpec:
    """Check a generator config's fields and bounds, count its parameters on the meta device, and match
    `state` to the shapes it builds; nothing is allocated for a config that fails."""
    from opgan.models import build_generator  # here, not above: light tools import this module too

    config = _mapping(config, where, f"{what} config")
    if config.get("arch") == "demucs":
        _check_demucs(config, where, what)
    if config.get("arch") == "spectral":
        _check_spectral(config, where, what)
    _check_int(config, "filters", 1, MAX_FILTERS, where, what)
    q = config.get("q")
    if isinstance(q, (list, tuple)):
        if not 0 < len(q) <= 64:
            raise CheckpointError(f"'{where}': {what} q {_short(q)} is not a list of per-layer orders")
        for v in q:
            _check_int({"q": v}, "q", 1, MAX_Q, where, what)
    elif q is not None:
        _check_int(config, "q", 1, MAX_Q, where, what)
    for key, value in config.items():
        if not isinstance(key, str):
            raise CheckpointError(f"'{where}': {what} config has a non-text key {_short(key)}")
        if key in ("residual", "gate", "input_norm", "glu", "normalize", "causal") and not isinstance(value, bool):
            raise CheckpointError(f"'{where}': {what} config {key} must be true or false, got {_short(value)}")
    try:
        with torch.device("meta"):
            reference = build_generator(dict(config))
    except ImportError as e:  # the reference model's package is not installed: say how to install it
        raise CheckpointError(f"'{where}': cannot build its {what}: {_first_line(e)}") from None
    except Exception as e:  # any way a config can be wrong: unknown keys, bad types or values
        raise CheckpointError(f"'{where}': {what} config not understood "
                              f"({type(e).__name__}: {_first_line(e)}); config={_short(config)}") from None
    n = sum(p.numel() for p in reference.parameters())
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"'{where}': its {what} config describes {n:,} parameters, more than the "
                              f"{MAX_PARAMETERS:,} a checkpoint may ask for; config={_short(config)}")
    ref_state = reference.state_dict()
    try:
        checked = check_state(state, ref_state, where, what)
    except CheckpointError as e:
        raise CheckpointError(f"{e} (the {what} built from its config {_short(config)}); "
                              f"was it saved by another version?") from None
    return GeneratorSpec(config=dict(config), state=checked)


def _check_demucs(config: Mapping[str, Any], where: str | Path, what: str) -> None:
    """The reference model's size fields within DEMUCS_BOUNDS (before its parameters are counted)."""
    for key, (lo, hi) in DEMUCS_BOUNDS.items():
        _check_int(config, key, lo, hi, where, what)
    lo, hi = DEMUCS_GROWTH
    for key, bounds in (("growth", (lo, hi)), ("rescale", (0.0, 10.0)), ("floor", (1e-12, 1.0))):
        v = config.get(key, bounds[0])
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not bounds[0] <= v <= bounds[1]:
            raise CheckpointError(f"'{where}': {what} {key} {_short(v)} is not a number from {bounds[0]} to {bounds[1]}")


def _check_spectral(config: Mapping[str, Any], where: str | Path, what: str) -> None:
    """The spectral generator's size fields within SPECTRAL_BOUNDS (before its parameters are counted)."""
    for key, (lo, hi) in SPECTRAL_BOUNDS.items():
        _check_int(config, key, lo, hi, where, what)
    lo, hi = SPECTRAL_MASK_MAX
    v = config.get("mask_max", 1.2)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < v <= hi:
        raise CheckpointError(f"'{where}': {what} mask_max {_short(v)} is not a number above {lo} and up to {hi}")


def check_state(state: Any, reference: Mapping[str, torch.Tensor], where: str | Path,
                what: str) -> dict[str, torch.Tensor]:
    """`state` as a state dict with exactly `reference`'s keys, shapes and floating dtypes (a module's
    own state_dict, or one built on the meta device): what `load_state_dict` then accepts."""
    state = _mapping(state, where, what)
    missing = [k for k in reference if k not in state]
    unexpected = [k for k in state if k not in reference]
    if missing or unexpected:
        parts = ([f"missing {', '.join(map(str, missing[:3]))}" + (" ..." if len(missing) > 3 else "")]
                 if missing else []) + ([f"unexpected {', '.join(map(str, unexpected[:3]))}"
                                         + (" ..." if len(unexpected) > 3 else "")] if unexpected else [])
        raise CheckpointError(f"'{where}': {what} weights do not match ({'; '.join(parts)})")
    for k, ref in reference.items():
        v = state[k]
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"'{where}': {what} weights do not match ({k} is a {type(v).__name__}, not a tensor)")
        if v.shape != ref.shape or v.dtype.is_floating_point != ref.dtype.is_floating_point:
            raise CheckpointError(f"'{where}': {what} weights do not match ({k}: {tuple(v.shape)} {v.dtype}, "
                                  f"expected {tuple(ref.shape)} {ref.dtype})")
    return dict(state)


def check_training_state(ckpt: Mapping[str, Any], where: str | Path) -> TrainingState:
    """Check a resumable checkpoint's bookkeeping: `step`, `train_s`, `metrics` and `rng` (the models'
    and optimisers' states are matched by the trainer against its own modules)."""
    missing = [k for k in ("generator", "discriminator", "opt_g", "opt_d", "step", "rng") if k not in ckpt]
    if missing:
        raise CheckpointError(f"'{where}' is not a resumable checkpoint: it lacks {', '.join(missing)} "
                              "(best.pt holds only what restoring needs; resume from last.pt)")
    step = ckpt["step"]
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        raise CheckpointError(f"'{where}' has invalid step {_short(step)}")
    train_s = ckpt.get("train_s", 0.0)
    if isinstance(train_s, bool) or not isinstance(train_s, (int, float)) or not 0 <= train_s < math.inf:
        raise CheckpointError(f"'{where}' has invalid train_s {_short(train_s)}")
    metrics = ckpt.get("metrics")
    metrics = {} if metrics is None else _mapping(metrics, where, "metrics")
    for key in ("last_val", "best_val", "first_pass_val"):
        m = _mapping(metrics.get(key, {}), where, f"metrics.{key}")
        if not all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in m.items()):
            raise CheckpointError(f"'{where}': metrics.{key} must map names to numbers")
    best_step = metrics.get("best_step", -1)
    if isinstance(best_step, bool) or not isinstance(best_step, int) or not -1 <= best_step <= step:
        raise CheckpointError(f"'{where}' has invalid metrics.best_step {_short(best_step)}")
    rng = _mapping(ckpt["rng"], where, "rng")
    return TrainingState(step=step, train_s=float(train_s), metrics=metrics, rng=rng)


def _check_int(config: Mapping[str, Any], key: str, lo: int, hi: int, where: str | Path, what: str) -> None:
    if key not in config:
        return
    v = config[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise CheckpointError(f"'{where}': {what} {key} {_short(v)} is not an integer from {lo} to {hi}")


def _mapping(value: Any, where: str | Path, what: str) -> dict:
    if not isinstance(value, Mapping):
        raise CheckpointError(f"'{where}': {what} must be a mapping of fields, got a {type(value).__name__} "
                              f"({_short(value)})")
    return dict(value)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def shown_path(path: str | Path) -> str:
    """``path`` as a committed record shows it: relative to the working folder when inside it, else with
    ``~`` for the home folder, so no record names a machine's folders."""
    path = Path(path).resolve()
    for base, shown in ((Path.cwd().resolve(), ""), (Path.home().resolve(), "~/")):
        try:
            return shown + path.relative_to(base).as_posix()
        except ValueError:
            continue
    return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m opgan.checkpoint compact LAST.PT ...`: rewrite resumable checkpoints in place with
    :func:`compact_training_state` (atomically, so a stop mid-write keeps the original);
    `python -m opgan.checkpoint publish RUN_DIR [--to training]`: a run's state made fit to commit
    (`opgan.publish.publish_run`)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m opgan.checkpoint",
                                 description="Shrink resumable checkpoints (last.pt) or publish a run's state for "
                                             "committing: compact LAST.PT ... | publish RUN_DIR [--to DIR]")
    ap.add_argument("command", choices=["compact", "publish"])
    ap.add_argument("paths", nargs="+", metavar="LAST.PT | RUN_DIR")
    ap.add_argument("--to", default="training", help="publish: the folder that receives <run name>/ (default training)")
    ap.add_argument("--overwrite", action="store_true", help="publish: replace a copy already there")
    args = ap.parse_args(argv)
    if args.command == "publish":
        from .publish import publish_run  # lazy: it imports the trainer's run-folder module

        for run in args.paths:
            try:
                dest = publish_run(run, args.to, overwrite=args.overwrite)
            except (OSError, ValueError, CheckpointError) as e:
                print(f"error: {_first_line(e)}", file=sys.stderr)
                return 2
            size = (dest / "last.pt").stat().st_size / 2**20
            print(f"{shown_path(run)} -> {shown_path(dest)} (last.pt {size:.1f} MiB); resume it with "
                  f"`python train.py --resume --runs-dir {shown_path(args.to)} --name {dest.name}`")
        return 0
    for path in args.paths:
        try:
            ckpt = load_checkpoint(path)
            check_training_state(ckpt, path)
        except CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        before = Path(path).stat().st_size
        save_checkpoint(path, compact_training_state(ckpt))
        print(f"{shown_path(path)}: {before / 2**20:.1f} -> {Path(path).stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
