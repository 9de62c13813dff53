"""`opgan restore`: restore recordings of any rate, channel count and length, streaming.

Per file: a pre-scan (peak, DC, clipping, NaN/Inf, silence) decides what to tell the user, then one
streaming pass: read a block -> resample to the model's rate (soxr) -> overlap-add through the
same `enhance_clips` the trainer validates with -> resample back -> dry/wet mix -> write. Memory is
bounded by a few windows per channel whatever the file length. Outputs are written to a temporary
file beside the target and moved into place, so a failure never leaves a half-written output, and
an input is never overwritten. Every failure of one input or output (missing, empty, unreadable,
unwritable) is reported as one line and the other files are still restored. The temporary file of a
run that was killed (``.NAME.partial-PID.ext``, its process gone) is removed by the next run that
writes into that folder.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import soundfile as sf
import soxr

from .checkpoint import CheckpointError
from .data.audio import AudioError, check_file, check_finite, truncation
from .device import DeviceError, cpu_threads, resolve_device
from .enhance import SILENCE_PEAK, WINDOW, OverlapAdd, Restorer, channels_first, load_restorer

__all__ = [
    "FileReport",
    "InputStats",
    "RestoreError",
    "StreamResampler",
    "main",
    "restore_array",
    "restore_file",
    "restore_paths",
    "scan_file",
    "stale_partials",
]

BLOCK_FRAMES = 1 << 16  # frames read per block: bounded memory, few Python round trips
CLIP_LEVEL = 0.999  # |x| at or above this (of full scale) counts as a clipped sample
CLIP_WARN_FRACTION = 1e-3
DC_WARN = 1e-3  # absolute DC offset (of full scale) worth removing ...
DC_WARN_RELATIVE = 0.01  # ... if also this large relative to the channel's peak


class RestoreError(RuntimeError):
    """A file cannot be restored; the message says why and what to do."""


def audio_extensions() -> set[str]:
    """File extensions soundfile can read here (used when an input is a folder)."""
    exts = {"." + k.lower() for k in sf.available_formats()}
    return (exts | {".aif", ".oga", ".opus"}) - {".raw"}


# ----------------------------------------------------------------------------------------------
# Streaming resampling


class StreamResampler:
    """Block-wise resampling with soxr (`ResampleStream`, HQ), equal to its one-shot `soxr.resample`.

    One thing is added to soxr's stream: the total output is exactly `ceil(n_in * sr_out / sr_in)`
    samples (soxr rounds, so a round trip could come back a sample short): the end of the signal is
    extended with zeros as far as needed and the output cut to that length.
    """

    def __init__(self, sr_in: int, sr_out: int, channels: int = 1) -> None:
        self.sr_in, self.sr_out, self.channels = int(sr_in), int(sr_out), channels
        self.identity = self.sr_in == self.sr_out
        self.stream = None if self.identity else soxr.ResampleStream(
            self.sr_in, self.sr_out, channels, dtype="float32", quality="HQ"
        )
        self.n_in = 0
        self.n_out = 0

    def _run(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        y = self.stream.resample_chunk(np.ascontiguousarray(x.T, dtype=np.float32), last=last)
        return np.ascontiguousarray(y.reshape(-1, self.channels).T)

    def push(self, x: np.ndarray) -> np.ndarray:
        """Feed (C, n) samples; return the (C, m) resampled samples that are final."""
        if self.identity:
            return np.asarray(x, dtype=np.float32)
        self.n_in += x.shape[1]
        y = self._run(x)
        self.n_out += y.shape[1]
        return y

    def flush(self) -> np.ndarray:
        """Return the rest: the filter's tail, then zeros-extended output up to the exact length."""
        if self.identity:
            return np.zeros((self.channels, 0), dtype=np.float32)
        total = -(-self.n_in * self.sr_out // self.sr_in)
        pad = -(-self.sr_in // self.sr_out) + 1  # input zeros worth at least one more output sample
        y = self._run(np.zeros((self.channels, pad), np.float32), last=True)[:, : max(total - self.n_out, 0)]
        self.n_out += y.shape[1]
        return y


# ----------------------------------------------------------------------------------------------
# The restoration pipeline on (C, T) blocks


class _Pipeline:
    """DC removal -> resample -> overlap-add enhance -> resample back -> dry/wet, streaming."""

    def __init__(
        self,
        restorer: Restorer,
        sr: int,
        channels: int,
        wet: float = 1.0,
        batch_size: int = 4,
        dc: np.ndarray | None = None,
        window: int = WINDOW,
        hop: int | None = None,
    ) -> None:
        if not 0.0 <= wet <= 1.0:
            raise ValueError(f"dry/wet must be within [0, 1], got {wet}")
        self.wet = float(wet)
        self.dc = np.zeros((channels, 1), np.float32) if dc is None else np.asarray(dc, np.float32).reshape(channels, 1)
        self.down = StreamResampler(sr, restorer.sample_rate, channels)
        self.ola = OverlapAdd(restorer, channels=channels, window=window, hop=hop, batch_size=batch_size)
        self.up = StreamResampler(restorer.sample_rate, sr, channels)
        self.dry: deque[np.ndarray] = deque()
        self.dry_len = 0
        self.n_in = 0
        self.n_out = 0
        self.channels = channels

    def _mix(self, y: np.ndarray) -> np.ndarray:
        y = y[:, : max(self.n_in - self.n_out, 0)]  # the round trip may give a few extra samples
        n = y.shape[1]
        if not np.isfinite(y).all():
            raise RestoreError("the model produced NaN/Inf samples (broken checkpoint?)")
        parts, got = [], 0
        while got < n:
            head = self.dry[0]
            take = min(n - got, head.shape[1])
            parts.append(head[:, :take])
            got += take
            if take == head.shape[1]:
                self.dry.popleft()
            else:
                self.dry[0] = head[:, take:]
        self.dry_len -= n
        self.n_out += n
        if self.wet == 1.0 or n == 0:
            return y
        dry = np.concatenate(parts, axis=1)
        return (self.wet * y + (1.0 - self.wet) * dry).astype(np.float32)

    def push(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32) - self.dc
        self.dry.append(x)
        self.dry_len += x.shape[1]
        self.n_in += x.shape[1]
        return self._mix(self.up.push(self.ola.push(self.down.push(x))))

    def flush(self) -> np.ndarray:
        a = self.up.push(self.ola.push(self.down.flush()))
        b = self.up.push(self.ola.flush())
        c = self.up.flush()
        return self._mix(np.concatenate([a, b, c], axis=1))


def _as_restorer(model: Restorer | str | Path, device: str) -> Restorer:
    return model if isinstance(model, Restorer) else load_restorer(model, device=resolve_device(device))


def _to_float(x: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Samples as float32 full scale [-1, 1], and the function that turns the result back.

    Integer PCM (int8/16/32, uint8 centred at 128, as soundfile reads them) is scaled by its full
    scale and the result rounded and clipped back into the same dtype; floats come back as float32.
    """
    if x.dtype.kind == "f":
        return x.astype(np.float32, copy=False), lambda y: y
    if x.dtype.kind not in "iu":
        raise ValueError(f"restore_array expects float or integer PCM samples, got dtype {x.dtype}")
    info = np.iinfo(x.dtype)
    scale = 2.0 ** (info.bits - 1)
    zero = scale if x.dtype.kind == "u" else 0.0

    def back(y: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(y * scale + zero), info.min, info.max).astype(x.dtype)

    return ((x.astype(np.float32) - np.float32(zero)) / np.float32(scale)), back


def restore_array(
    x: np.ndarray,
    sr: int,
    model: Restorer | str | Path = "speech",
    wet: float = 1.0,
    batch_size: int = 4,
    device: str = "auto",
    hop: int | None = None,
) -> np.ndarray:
    """Restore an in-memory signal at rate `sr`; returns the same shape, rate and sample type.

    `x` is (T,), (C, T), or (T, C) as `soundfile.read` returns it (the shorter axis, at most
    `MAX_CHANNELS` long, is channels; see `opgan.enhance.channels_first`). Float samples are
    full scale 1.0 and come back float32; integer PCM (e.g. int16) is scaled to full scale for the
    model and returned in its own dtype. Same pipeline as `restore_file` (resample, overlap-add,
    resample back, dry/wet mix). Raises ValueError for other shapes or dtypes and for NaN/Inf.
    """
    if int(sr) <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    x = np.asarray(x)
    xs, transposed = channels_first(x)  # checked before anything is allocated from the shape
    xs, back = _to_float(xs)
    check_finite(xs, "restore_array input")
    restorer = _as_restorer(model, device)
    if np.abs(xs).max(initial=0.0) < SILENCE_PEAK:
        y = np.zeros_like(xs)
    else:
        pipe = _Pipeline(restorer, int(sr), xs.shape[0], wet=wet, batch_size=batch_size, hop=hop)
        y = np.concatenate([pipe.push(xs), pipe.flush()], axis=1)
    y = back(y[0] if x.ndim == 1 else (y.T if transposed else y))
    return y


# ----------------------------------------------------------------------------------------------
# Files


@dataclass
class InputStats:
    """What the pre-scan found in an input file."""

    frames: int
    sample_rate: int
    channels: int
    format: str
    subtype: str
    peak: np.ndarray  # (C,)
    mean: np.ndarray  # (C,)
    clipped_fraction: float
    nonfinite: int
    first_nonfinite_s: float | None

    @property
    def silent(self) -> bool:
        return bool(self.peak.max(initial=0.0) < SILENCE_PEAK)

    def dc_to_remove(self) -> np.ndarray:
        """Per-channel DC offsets large enough to matter (zeros elsewhere)."""
        big = (np.abs(self.mean) > DC_WARN) & (np.abs(self.mean) > DC_WARN_RELATIVE * self.peak)
        return np.where(big, self.mean, 0.0).astype(np.float32)


def _open_error(path: Path, e: Exception) -> RestoreError:
    return RestoreError(
        f"cannot read '{path}' as audio ({e}). Supported: {', '.join(sorted(sf.available_formats()))}"
    )


def scan_file(path: str | Path, block_frames: int = BLOCK_FRAMES) -> InputStats:
    """One streaming read of `path`: peak, mean, clipping and NaN/Inf per channel."""
    path = Path(path)
    try:
        check_file(path)
    except AudioError as e:
        raise RestoreError(str(e)) from None
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:  # soundfile raises LibsndfileError / TypeError for foreign files
        raise _open_error(path, e) from e
    with f:
        c, sr = f.channels, f.samplerate
        peak, total = np.zeros(c), np.zeros(c)
        clipped = nonfinite = seen = 0
        first_bad = None
        try:
            for blk in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                bad = ~np.isfinite(blk)
                if bad.any():
                    nonfinite += int(bad.sum())
                    if first_bad is None:
                        first_bad = (seen + int(np.argmax(bad.any(axis=1)))) / sr
                    blk = np.where(bad, 0.0, blk)
                a = np.abs(blk)
                peak = np.maximum(peak, a.max(axis=0, initial=0.0))
                total += blk.sum(axis=0, dtype=np.float64)
                clipped += int((a >= CLIP_LEVEL).sum())
                seen += blk.shape[0]
        except Exception as e:
            raise RestoreError(f"'{path}' is damaged: read failed after {seen} frames ({e})") from e
        return InputStats(
            frames=seen,
            sample_rate=sr,
            channels=c,
            format=f.format,
            subtype=f.subtype,
            peak=peak,
            mean=total / max(seen, 1),
            clipped_fraction=clipped / max(seen * c, 1),
            nonfinite=nonfinite,
            first_nonfinite_s=first_bad,
        )


@dataclass
class FileReport:
    """Outcome of restoring one file."""

    input: Path
    output: Path | None
    seconds: float = 0.0  # audio duration
    wall: float = 0.0  # processing time
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # worth a line even with --quiet (e.g. a truncated input)
    error: str | None = None

    @property
    def rtf(self) -> float:
        """Real-time factor: processing time / audio duration (below 1 is faster than real time)."""
        return self.wall / self.seconds if self.seconds > 0 else float("nan")


def _check_output(src: Path, dst: Path, overwrite: bool) -> None:
    if dst.is_dir():
        raise RestoreError(f"output '{dst}' is a folder; choose another -o or --suffix")
    if dst.exists():
        if dst.resolve() == src.resolve() or os.path.samefile(dst, src):
            raise RestoreError(f"output '{dst}' is the input itself; choose another -o or --suffix")
        if not overwrite:
            raise RestoreError(f"output '{dst}' exists; pass --overwrite to replace it")
    elif dst.resolve() == src.resolve():
        raise RestoreError(f"output '{dst}' is the input itself; choose another -o or --suffix")


def _write_error(dst: Path, e: BaseException) -> RestoreError:
    """One line for anything that stops an output from being written (the OS's reason, not a traceback)."""
    if isinstance(e, FileExistsError):
        why = f"'{e.filename}' is a file, not a folder"
    elif isinstance(e, OSError):
        why = e.strerror or str(e)
    elif isinstance(e, AssertionError):  # soundfile's check that every frame was written
        why = "short write (disk full?)"
    else:
        why = str(e)
    return RestoreError(f"cannot write '{dst}': {why}")


def _discard(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def restore_file(
    src: str | Path,
    dst: str | Path,
    model: Restorer | str | Path = "speech",
    *,
    wet: float = 1.0,
    batch_size: int = 4,
    overwrite: bool = False,
    output_subtype: str | None = None,
    device: str = "auto",
    block_frames: int = BLOCK_FRAMES,
    hop: int | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> FileReport:
    """Restore one file into `dst`, keeping its rate, channels, format and (by default) subtype.

    Raises `RestoreError` with a user-facing message for unreadable, empty or NaN/Inf inputs, for
    outputs that exist (unless `overwrite`) or that would replace the input, and for outputs that
    cannot be written (the OS's reason); nothing is left behind then. A truncated input (its header
    declares more audio than the file holds) is restored as far as it goes, with a warning in the
    report. `on_frames(n)` is called after each block of `n` input frames (a progress bar's hook).
    """
    src, dst = Path(src), Path(dst)
    report = FileReport(input=src, output=dst)
    _check_output(src, dst, overwrite)
    stats = scan_file(src, block_frames)
    if stats.frames == 0:
        raise RestoreError(f"'{src}' holds no audio frames")
    if stats.nonfinite:
        raise RestoreError(
            f"'{src}' contains {stats.nonfinite} NaN/Inf samples (first at {stats.first_nonfinite_s:.3f} s); "
            "repair or trim the file first"
        )
    subtype = output_subtype or stats.subtype
    if not sf.check_format(stats.format, subtype):
        raise RestoreError(f"subtype {subtype} cannot be written in format {stats.format}; pick another --output-subtype")
    restorer = _as_restorer(model, device)
    report.seconds = stats.frames / stats.sample_rate
    short = truncation(src)
    if short is not None:
        report.warnings.append(
            f"the file is truncated: its header declares {short[0]:.2f} s of audio, it holds {short[1]:.2f} s "
            "(an interrupted copy or download?); restored what is there"
        )
    if stats.silent:
        report.notes.append("input is silent: wrote silence")
    if stats.clipped_fraction > CLIP_WARN_FRACTION:
        report.notes.append(
            f"input looks clipped ({100 * stats.clipped_fraction:.2f}% of samples at full scale); "
            "clipped peaks are not reconstructed"
        )
    dc = stats.dc_to_remove()
    if np.any(dc):
        report.notes.append("removed DC offset " + ", ".join(f"{d:+.4f}" for d in dc))
    float_out = subtype.upper() in ("FLOAT", "DOUBLE")

    tmp = dst.with_name(f".{dst.stem}.partial-{os.getpid()}{dst.suffix}")
    t0 = time.perf_counter()
    n_clip = 0
    try:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            open(tmp, "wb").close()  # the OS's reason if it cannot be created (libsndfile says "System error")
            fout = sf.SoundFile(
                str(tmp), "w", samplerate=stats.sample_rate, channels=stats.channels, subtype=subtype, format=stats.format
            )
        except (OSError, sf.SoundFileError) as e:
            raise _write_error(dst, e) from e
        with fout, sf.SoundFile(str(src)) as fin:
            pipe = None if stats.silent else _Pipeline(
                restorer, stats.sample_rate, stats.channels, wet=wet, batch_size=batch_size, dc=dc, hop=hop
            )

            def write(y: np.ndarray) -> None:
                nonlocal n_clip
                if not float_out:
                    over = np.abs(y) > 1.0
                    if over.any():
                        n_clip += int(over.sum())
                        y = np.clip(y, -1.0, 1.0)
                try:
                    fout.write(np.ascontiguousarray(y.T))
                except (OSError, sf.SoundFileError, AssertionError) as e:
                    raise _write_error(dst, e) from e

            for blk in fin.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                write(np.zeros_like(blk.T) if pipe is None else pipe.push(blk.T))
                if on_frames is not None:
                    on_frames(blk.shape[0])
            if pipe is not None:
                write(pipe.flush())
        try:
            os.replace(tmp, dst)
        except OSError as e:
            raise _write_error(dst, e) from e
    except BaseException:
        _discard(tmp)
        raise
    report.wall = time.perf_counter() - t0
    if n_clip:
        report.notes.append(f"{n_clip} output samples exceeded full scale and were clipped (use --output-subtype FLOAT to keep them)")
    return report


_PARTIAL = re.compile(r"^\.(?P<stem>.+)\.partial-(?P<pid>\d+)(?P<ext>\.[^.]*)?$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # another user's live process (or a number the OS cannot take): leave it
    return True


def stale_partials(folder: str | Path) -> list[Path]:
    """The temporary outputs in `folder` (``.NAME.partial-PID.ext``, as `restore_file` names them) whose
    writing process no longer exists: what a killed run left behind. Nothing else is matched."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    out = []
    for p in entries:
        m = _PARTIAL.match(p.name)
        if m and p.is_file() and not p.is_symlink() and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"])):
            out.append(p)
    return sorted(out)


def _clean_stale_partials(folder: Path, log: Callable[[str], None]) -> None:
    removed = []
    for p in stale_partials(folder):
        try:
            p.unlink()
            removed.append(p.name)
        except OSError:
            pass
    if removed:
        log(f"removed {len(removed)} unfinished output(s) of an interrupted run in '{folder}': {', '.join(removed)}")


def _check_suffix(suffix: str) -> None:
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if any(sep in suffix for sep in seps) or "\0" in suffix:
        raise RestoreError(f"--suffix {suffix!r} must not contain a path separator (outputs stay in their folder)")


class _Progress:
    """One tqdm bar over the seconds of audio of every input (to stderr), or nothing."""

    def __init__(self, enabled: bool, items: list[tuple[Path, Path, str | None]]) -> None:
        self.bar = None
        self.count = sum(err is None for _, _, err in items)
        if not enabled or not self.count:
            return
        from tqdm import tqdm

        total = 0.0
        for src, _, err in items:
            if err is None:
                with contextlib.suppress(Exception):
                    total += sf.info(str(src)).duration
        self.bar = tqdm(total=round(total, 1), unit="s", file=sys.stderr, dynamic_ncols=True, leave=False,
                        bar_format="{desc}{percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of audio "
                                   "[{elapsed}<{remaining}]")
        self.done = 0.0

    def start(self, index: int, src: Path) -> Callable[[int], None] | None:
        """Name the file being restored; return the per-block hook that advances the bar."""
        if self.bar is None:
            return None
        self.bar.set_description_str(f"{index}/{self.count} {src.name[:40]} ", refresh=False)
        try:
            sr = sf.info(str(src)).samplerate
        except Exception:  # noqa: BLE001 - restore_file reports unreadable files
            return None
        return lambda n: self.bar.update(min(n / sr, self.bar.total - self.bar.n))

    def finish(self, src: Path) -> None:
        """Put the bar at the end of this file (a failed or truncated file may have advanced less)."""
        if self.bar is None:
            return
        with contextlib.suppress(Exception):
            self.done += sf.info(str(src)).duration
        self.bar.n = min(round(self.done, 1), self.bar.total)
        self.bar.refresh()

    def say(self, fn: Callable[[str], None]) -> Callable[[str], None]:
        """`fn` printed above the bar rather than through it."""
        if self.bar is None:
            return fn

        def write(message: str) -> None:
            with self.bar.external_write_mode():
                fn(message)

        return write

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _earlier_output(q: Path, suffix: str) -> bool:
    """``a_restored.wav`` beside ``a.wav``: what an earlier run wrote next to its input."""
    return bool(suffix) and q.stem.endswith(suffix) and q.with_name(q.stem[: -len(suffix)] + q.suffix).is_file()


def _expand_inputs(inputs: Iterable[str | Path], skip: Path | None = None,
                   suffix: str = "") -> list[tuple[Path, Path, str | None]]:
    """(file, path relative to where it was named, error or None) per input, folders walked recursively.

    A missing input or an empty folder becomes an entry with its error (reported in order, the
    others still restored). A second run must not restore the first run's outputs again: when `skip`
    (the output folder) lies inside a folder being walked, the files under it are not taken as
    inputs, and a walked file named like an output written beside its input (``a<suffix>.wav``
    next to ``a.wav``) is left out. Files named one by one are always taken.
    """
    exts = audio_extensions()
    skip = skip.resolve() if skip is not None else None
    out: list[tuple[Path, Path, str | None]] = []
    for item in inputs:
        p = Path(item)
        try:
            if p.is_dir():
                root = p.resolve()
                inner = skip if skip is not None and skip != root and skip.is_relative_to(root) else None
                found = sorted(
                    q for q in p.rglob("*")
                    if q.is_file() and q.suffix.lower() in exts and not q.name.startswith(".")
                    and not (inner is not None and q.resolve().is_relative_to(inner))
                    and not _earlier_output(q, suffix)
                )
                if not found:
                    raise RestoreError(f"folder '{p}' holds no audio files")
                out += [(q, q.relative_to(p), None) for q in found]
            elif p.is_file():
                out.append((p, Path(p.name), None))
            else:
                raise RestoreError(f"no such file or folder: '{p}'")
        except (RestoreError, OSError) as e:
            out.append((p, Path(p.name), str(e)))
    return out


def _prepare_outdir(outdir: Path) -> None:
    """Create the output folder, or say in one line why it cannot be used."""
    if outdir.exists() and not outdir.is_dir():
        raise RestoreError(f"output folder '{outdir}' is an existing file, not a folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RestoreError(f"cannot create output folder '{outdir}': {e.strerror or e}") from e
    if not os.access(outdir, os.W_OK):
        raise RestoreError(f"output folder '{outdir}' is not writable")


def restore_paths(
    inputs: Sequence[str | Path],
    outdir: str | Path | None = None,
    model: Restorer | str | Path = "speech",
    *,
    suffix: str | None = None,
    wet: float = 1.0,
    batch_size: int = 4,
    overwrite: bool = False,
    output_subtype: str | None = None,
    device: str = "auto",
    hop: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
    log_error: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> list[FileReport]:
    """Restore files and folders; outputs go to `outdir` (tree kept) or beside each input.

    Without `outdir` the default suffix is `_restored`; with it, none; a suffix with a path
    separator is refused (`RestoreError`): outputs never leave their folder. One bad file (or a
    missing input) does not stop the others: its `FileReport.error` says what went wrong. An
    `outdir` that cannot be created or written raises `RestoreError` before any file is read.
    `log` gets one line per restored file and its notes, `log_error` errors and warnings (as
    ``INPUT: error: ...`` / ``INPUT: warning: ...``); `progress` shows a tqdm bar on stderr over
    the seconds of audio of all inputs. Unfinished outputs of a killed run (see `stale_partials`)
    in a folder written to are removed first.
    """
    if suffix is None:
        suffix = "" if outdir is not None else "_restored"
    _check_suffix(suffix)
    restorer = _as_restorer(model, device)
    items = _expand_inputs(inputs, skip=Path(outdir) if outdir is not None else None,
                           suffix=suffix if outdir is None else "")
    if outdir is not None and any(err is None for _, _, err in items):
        _prepare_outdir(Path(outdir))
    reports, planned, swept = [], set(), set()
    bar = _Progress(progress, items)
    log, log_error = bar.say(log), bar.say(log_error)
    index = 0
    try:
        for src, rel, error in items:
            if error is not None:
                reports.append(FileReport(input=src, output=None, error=error))
                log_error(f"{src}: error: {error}")
                continue
            index += 1
            base = (Path(outdir) / rel.parent) if outdir is not None else src.parent
            dst = base / f"{rel.stem}{suffix}{rel.suffix}"
            if base not in swept:
                swept.add(base)
                _clean_stale_partials(base, log)
            try:
                if dst.resolve() in planned:
                    raise RestoreError(f"two inputs would both be written to '{dst}'; use separate runs or --suffix")
                planned.add(dst.resolve())
                r = restore_file(
                    src, dst, restorer, wet=wet, batch_size=batch_size, overwrite=overwrite,
                    output_subtype=output_subtype, hop=hop, on_frames=bar.start(index, src),
                )
                log(f"{src} -> {dst}  ({r.seconds:.1f} s audio in {r.wall:.1f} s, RTF {r.rtf:.3f})")
                for n in r.notes:
                    log(f"  note: {n}")
                for w in r.warnings:
                    log_error(f"{src}: warning: {w}")
            except (RestoreError, ValueError, OSError, sf.SoundFileError) as e:
                r = FileReport(input=src, output=None, error=str(e))
                log_error(f"{src}: error: {e}")
            bar.finish(src)
            reports.append(r)
    finally:
        bar.close()
    return reports


# ----------------------------------------------------------------------------------------------
# CLI


EXAMPLES = """examples:
  opgan restore talk.wav                        # writes talk_restored.wav beside it (speech model)
  opgan restore recordings/ -o restored/        # a folder, recursively; the tree is kept under restored/
  opgan restore song.flac --model music --dry-wet 0.7 -o out/
  opgan restore long.wav --overlap 0.25 --threads 4 --quiet -o out/
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="opgan restore",
        description="Restore recordings hit by noise, background audio and reverberation (any rate, channels, length).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="audio files or folders (walked recursively)")
    p.add_argument("-o", "--outdir", help="output folder (default: beside each input, with --suffix _restored)")
    p.add_argument("--model", default="speech", help="speech | music | path to a checkpoint (default: speech)")
    p.add_argument("--dry-wet", type=float, default=1.0, metavar="W",
                   help="strength: output = W*restored + (1-W)*input, W in [0, 1] (default 1)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU) | cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=int, default=4, help="32000-sample windows per forward pass (default 4)")
    p.add_argument("--overlap", type=float, default=0.5,
                   help="window overlap in (0, 1): 0.5 = Hann 50%% (default), 0.25 is ~1.5x faster")
    p.add_argument("--suffix", default=None, help="appended to output file names (no path separators)")
    p.add_argument("--output-subtype", default=None, help="soundfile subtype, e.g. PCM_16, PCM_24, FLOAT (default: input's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never inputs)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: the cores not already busy, at least 1)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no per-file lines (errors and warnings still go to stderr); "
                        "the bar is shown only when stderr is a terminal")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = lambda m: print(m, file=sys.stderr)  # noqa: E731
    try:
        if args.threads is not None and args.threads < 1:
            raise RestoreError("--threads must be >= 1")
        if args.batch_size < 1:
            raise RestoreError("--batch-size must be >= 1")
        if not 0.0 <= args.dry_wet <= 1.0:
            raise RestoreError("--dry-wet must be within [0, 1]")
        if args.output_subtype and args.output_subtype.upper() not in sf.available_subtypes():
            raise RestoreError(f"unknown --output-subtype {args.output_subtype}; see soundfile.available_subtypes()")
        if not 0.0 < args.overlap < 1.0:
            raise RestoreError("--overlap must be within (0, 1)")
        if args.suffix:
            _check_suffix(args.suffix)
        out = Path(args.outdir) if args.outdir else None
        if out is not None and not out.exists() and out.suffix.lower() in audio_extensions():
            raise RestoreError(f"-o takes a folder (outputs keep their input names); '{out}' looks like a file name")
        hop = max(1, round(WINDOW * (1.0 - args.overlap)))
        import torch

        torch.set_num_threads(args.threads or cpu_threads())
        restorer = load_restorer(args.model, device=resolve_device(args.device))
        reports = restore_paths(
            args.inputs,
            out,
            restorer,
            suffix=args.suffix,
            wet=args.dry_wet,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            output_subtype=args.output_subtype.upper() if args.output_subtype else None,
            hop=hop,
            progress=not args.quiet and sys.stderr.isatty(),
            log=(lambda m: None) if args.quiet else print,
        )
    except (RestoreError, CheckpointError, DeviceError) as e:
        err(f"opgan restore: error: {e}")
        return 2
    except KeyboardInterrupt:
        err("opgan restore: interrupted (finished outputs are kept, the one in progress was discarded)")
        return 130
    failed = [r for r in reports if r.error]
    if failed:
        err(f"opgan restore: {len(failed)} of {len(reports)} input(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
