"""Moving a Triton cache and the working tree to a GPU machine: what one call may carry, and unpacking a
cache pack where its entries are found again.

Shared by ``gpu_round.py`` (``--triton-cache``), ``prewarm_cache.py`` (``--pack`` sizes what travels) and
``gpu_continue.sh``; it imports nothing of the project, so none of them imports another to reach it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

#: what may travel to a GPU machine in one call: the working tree plus the carried paths
TRAVEL_MIB = 64.0


def tree_bytes(root: Path) -> int:
    """Bytes of the files git tracks or would track (untracked, not ignored) under ``root``: what
    travels to the device with every call."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                           capture_output=True, check=True).stdout.decode().split("\0")
    return sum((root / n).stat().st_size for n in dict.fromkeys(names) if n and (root / n).is_file())


def path_bytes(path: Path) -> int:
    """Bytes of a carried file or folder (0 when it does not exist)."""
    files = [path] if path.is_file() else list(path.rglob("*")) if path.is_dir() else []
    return sum(f.stat().st_size for f in files if f.is_file())


def travel_mib(root: Path, carried: list[Path]) -> tuple[float, float]:
    """(tree, carried) MiB that travel to the device in one call (``tools/gpu/gpu_continue.sh prepare``
    sizes its call with the same two functions)."""
    return tree_bytes(root) / 2**20, sum(path_bytes(c) for c in carried) / 2**20


def unpack(pack: str | os.PathLike, dest: str | os.PathLike, reuse: bool = False) -> Path:
    """Unpack a ``--pack`` file (one folder) into ``dest`` and point its entries' group files at where
    their files now are (Triton wrote absolute paths; an entry whose files are not found there is
    compiled again). ``reuse``: a folder of that name already in ``dest`` is taken as it is (an earlier
    unpack). Returns the cache folder, for ``TRITON_CACHE_DIR``."""
    import tarfile

    with tarfile.open(pack) as tar:
        tops = {Path(m.name).parts[0] for m in tar.getmembers() if m.name not in ("", ".")}
        if len(tops) != 1:
            raise ValueError(f"{pack} should hold one folder, holds {sorted(tops)[:5]}")
        folder = (Path(dest) / tops.pop()).resolve()
        if reuse and folder.is_dir():
            return folder
        try:
            tar.extractall(dest, filter="data")
        except TypeError:  # a Python without extraction filters
            tar.extractall(dest)  # noqa: S202 (our own archive)
    for grp in folder.glob("*/__grp__*.json"):
        data = json.loads(grp.read_text())
        data["child_paths"] = {name: str(grp.parent / name) for name in data.get("child_paths", {})}
        grp.write_text(json.dumps(data))
    return folder
