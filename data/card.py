"""The speech data card: minutes and bandwidth of every voice of a speech folder, split as the loaders split it.

    python -m opgan.data.card [speech folder]     # default: the shipped corpus; prints a Markdown table

What each column means, and the rule that keeps band-limited voices out of clean targets:
`opgan.data.bandwidth`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

from .bandwidth import MIN_CLEAN_BANDWIDTH_HZ, VoiceBand, measure_voice
from .sources import discover_splits

__all__ = ["measure_corpus", "format_card"]


def measure_corpus(kind_dir: str | os.PathLike, sr: int = 16000,
                   max_files: int = 200) -> list[tuple[str, VoiceBand]]:
    """[(split, VoiceBand)] for every voice (group) of a speech folder, split as the loaders split it."""
    out: list[tuple[str, VoiceBand]] = []
    for split, files in discover_splits(kind_dir).items():
        groups: dict[str, list[Path]] = {}
        for f in files:
            groups.setdefault(f.group, []).append(f.path)
        out += [(split, measure_voice(g, fs, sr, max_files)) for g, fs in sorted(groups.items())]
    return out


def format_card(rows: Iterable[tuple[str, VoiceBand]]) -> str:
    """The data card's Markdown table: voice, split, minutes, stored rate, band edge, 99 % roll-off, role."""
    lines = ["| voice | split | minutes | stored at | band edge (-50 dB) | 99 % roll-off | clean target |",
             "|---|---|---|---|---|---|---|"]
    for split, v in rows:
        role = "yes" if v.full_band else f"no (edge < {MIN_CLEAN_BANDWIDTH_HZ / 1000:.0f} kHz)"
        lines.append(f"| `{v.voice}` | {split} | {v.seconds / 60:.2f} | {v.sample_rate / 1000:g} kHz | "
                     f"{v.edge_hz / 1000:.2f} kHz | {v.rolloff99_hz / 1000:.2f} kHz | {role} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .assets import corpus_dir

    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else corpus_dir() / "speech"
    if not folder.is_dir():
        print(f"opgan.data.card: {folder}: no such folder", file=sys.stderr)
        return 2
    print(format_card(measure_corpus(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
