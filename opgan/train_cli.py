"""`python train.py` / `opgan train`: parse the command line, show progress, turn errors into one line
and an exit code (2 for bad input, 1 for a run that diverged, 130 for Ctrl-C)."""
from __future__ import annotations

import logging
import sys

from .checkpoint import CheckpointError
from .config import ConfigError, parse_args
from .data.audio import AudioError
from .device import DeviceError
from .train_loop import fit
from .train_run import NonFiniteLossError

__all__ = ["main"]


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time of the record (so redirections and capture work)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; the property always follows sys.stdout
        pass


def _cli_logging(quiet: bool) -> None:
    """`python train.py` shows the trainer's progress lines on stdout unless logging is set up already;
    --quiet keeps warnings only."""
    root = logging.getLogger("opgan")
    if not root.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    if quiet:
        logging.getLogger("opgan.train").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """`python train.py [...]` / `opgan train [...]`: returns a process exit code."""
    quiet = False
    try:
        cfg, overrides, args = parse_args(argv)
        quiet = args.quiet
        _cli_logging(quiet)
        result = fit(cfg, resume=args.resume, overwrite=args.overwrite, overrides=overrides)
        if result.stop_reason == "terminated":
            print(f"terminated at step {result.step} (SIGTERM), its state saved; continue with --resume", file=sys.stderr)
            return 143
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ConfigError, CheckpointError, DeviceError, AudioError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; continue with --resume (from the last checkpoint)", file=sys.stderr)
        return 130
    finally:
        if quiet:
            logging.getLogger("opgan.train").setLevel(logging.NOTSET)
    return 0
