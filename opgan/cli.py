"""The `opgan` console script: one entry point, one subcommand per tool, each imported lazily.

Lazy imports keep `opgan restore --help` fast and let `opgan fetch` run without torch-heavy
modules; every subcommand is also reachable as its own `main(argv)` for scripting.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

__all__ = ["COMMANDS", "main"]

#: subcommand -> (module with a `main(argv)`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "restore": ("opgan.restore", "restore audio files or folders with a pretrained or trained model"),
    "evaluate": ("opgan.evaluate", "score a model and baselines on a RAR test set; write CSV/JSON, figures, HTML"),
    "train": ("opgan.trainer", "train an Op-GAN (same as `python train.py`)"),
    "build": ("opgan.data.builder", "build a RAR dataset (clean/corrupted pairs) from recordings"),
    "fetch": ("opgan.data.fetch", "download or locate the published datasets and recordings"),
    "gate": ("opgan.gate", "score models on the shipped quality-gate clips (build, score, pin floors)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: opgan <command> [options]   (or: python -m opgan <command> ...)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "examples:",
              "  opgan restore talk.wav                     # -> talk_restored.wav (shipped speech model)",
              "  opgan restore recordings/ -o restored/ --model music",
              "  opgan evaluate --data rar_tiny --model speech --out eval_tiny",
              "", "Run `opgan <command> --help` for a command's options and more examples."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"opgan {version('opgan-selfonn')}")
        except PackageNotFoundError:
            print("opgan (not installed)")
        return 0
    cmd, rest = args[0], args[1:]
    if cmd not in COMMANDS:
        print(f"opgan: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    name = COMMANDS[cmd][0]
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            print(f"opgan {cmd}: this installation lacks {name} (reinstall the package)", file=sys.stderr)
            return 2
        raise  # a missing third-party dependency: its own message says which
    rc = module.main(rest)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
