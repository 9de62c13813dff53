"""tools/gpu/gpu_continue.sh's handling of the Triton cache pack: `prepare` builds it (tools/gpu/prewarm_cache.py
--training) before it sizes the sources pack and counts it in the 64 MiB, or says in one line that it
could not and goes on; `run` unpacks it and points TRITON_CACHE_DIR at it. The script runs for real
in a scratch copy of the repository, with `python`/`python3` stubs that stand in for pip, the
compile, the sources pack and train.py (each call logged), so no test trains or compiles anything."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

_STUB = r"""#!/usr/bin/env bash
echo "$(basename "$0") $* | TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-} | gpu: $(ls .gpu 2>/dev/null | tr '\n' ' ')" >> "$STUB_LOG"
case "$*" in
    "-m pip download"*) exit 0 ;;
    *tools/gpu/prewarm_cache.py*)
        if [ "$STUB_PREWARM_MIB" = fail ]; then
            echo "compile log line" >&2
            echo "prewarm_cache: cannot get Triton 3.6.0 for this Python: pip download triton==3.6.0 failed" >&2
            exit 2
        fi
        mkdir -p .gpu/triton-cache && truncate -s "${STUB_PREWARM_MIB}M" .gpu/triton-cache.tar.xz
        echo "prewarm_cache: 287 variants (...) -> .gpu/triton-cache.tar.xz" >&2 ;;
    "-m opgan.data.pack"*) mkdir -p .gpu/sources && truncate -s "${STUB_SOURCES_MIB}M" .gpu/sources/speech.ogg ;;
    "-c import soundfile" | "-c import opgan.trainer") exit 0 ;;
    *torch.load*) echo 5 ;;
    "-m opgan.checkpoint compact"*) exit 0 ;;
    train.py*) [ -z "${TRITON_CACHE_DIR:-}" ] || ls "$TRITON_CACHE_DIR/ABC" >> "$STUB_LOG" ;;
    *) exec "$STUB_REAL_PYTHON" "$@" ;;
esac
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A scratch repository holding the script, triton_pack.py, two run folders and the stubs' bin folder."""
    repo = tmp_path / "repo"
    (repo / "training").mkdir(parents=True)
    (repo / "tools" / "gpu").mkdir(parents=True)
    for name in ("gpu_continue.sh", "triton_pack.py"):  # triton_pack: the sizes (prepare) and unpack() (run)
        shutil.copy(ROOT / "tools" / "gpu" / name, repo / "tools" / "gpu" / name)
    for kind in ("speech-spectral-norm", "music-spectral-norm"):
        (repo / "training" / kind).mkdir()
        (repo / "training" / kind / "config.json").write_text("{}\n")
    (repo / ".gitignore").write_text("/.gpu/\n/.whl/\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name in ("python", "python3"):
        (bin_ / name).write_text(_STUB)
        (bin_ / name).chmod(0o755)
    (tmp_path / "cache" / "speech").mkdir(parents=True)
    return repo


def _script(repo: Path, cmd: str, cwd: Path | None = None, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    log = repo.parent / "calls.log"
    log.unlink(missing_ok=True)
    full = {k: v for k, v in os.environ.items() if k != "TRITON_CACHE_DIR"}
    full.update(PATH=f"{repo.parent / 'bin'}{os.pathsep}{os.environ['PATH']}", STUB_LOG=str(log),
                STUB_REAL_PYTHON=sys.executable, OPGAN_CACHE=str(repo.parent / "cache"), **env)
    r = subprocess.run(["bash", str(repo / "tools" / "gpu" / "gpu_continue.sh"), cmd], cwd=cwd or repo, env=full,
                       capture_output=True, text=True, timeout=60, check=False)
    return r, log.read_text().splitlines() if log.is_file() else []


def test_prepare_builds_the_triton_pack_first_and_counts_it_in_the_64_mib(repo: Path):
    r, calls = _script(repo, "prepare", STUB_PREWARM_MIB="10", STUB_SOURCES_MIB="30")
    assert r.returncode == 0, r.stderr
    (prewarm,) = [c for c in calls if "prewarm_cache.py" in c]
    assert "--training training/speech-spectral-norm,training/music-spectral-norm" in prewarm and f"--training-data {repo.parent / 'cache'}" in prewarm
    assert "--out .gpu/triton-cache --pack" in prewarm
    (pack,) = [c for c in calls if "opgan.data.pack" in c]
    assert calls.index(prewarm) < calls.index(pack) and "triton-cache.tar.xz" in pack.split("gpu:")[1]
    assert "-> .gpu/triton-cache.tar.xz" in r.stdout  # the compile's last line
    assert "Triton cache 10.0 MiB" in r.stdout and "pack 30.0 MiB" in r.stdout
    assert sorted(p.name for p in (repo / ".gpu").iterdir()) == ["sources", "triton-cache.tar.xz"]  # no folder
    # 10 + 30 MiB fit; 40 + 30 do not: the sources get what the Triton pack leaves
    r, _ = _script(repo, "prepare", STUB_PREWARM_MIB="40", STUB_SOURCES_MIB="30")
    assert r.returncode == 1 and "does not fit" in r.stderr
    # TRITON_PACK=0: no compile; the pack already there is kept and still counted
    r, calls = _script(repo, "prepare", TRITON_PACK="0", STUB_SOURCES_MIB="30")
    assert r.returncode == 1 and not any("prewarm_cache.py" in c for c in calls)


def test_prepare_goes_on_without_a_triton_pack_when_it_cannot_build_one(repo: Path):
    (repo / ".gpu").mkdir()
    (repo / ".gpu" / "triton-cache.tar.xz").write_bytes(b"an earlier prepare's pack")
    r, calls = _script(repo, "prepare", STUB_PREWARM_MIB="fail", STUB_SOURCES_MIB="60")
    assert r.returncode == 0, r.stderr
    (line,) = [ln for ln in r.stdout.splitlines() if "no Triton cache pack" in ln]
    assert "cannot get Triton 3.6.0" in line and "compile log line" not in r.stdout
    assert "Triton cache 0.0 MiB" in r.stdout and not (repo / ".gpu" / "triton-cache.tar.xz").exists()


@pytest.mark.parametrize("packed", [True, False])
def test_run_points_triton_at_the_unpacked_cache(repo: Path, packed: bool):
    if packed:
        src = repo.parent / "src" / "triton-cache"
        (src / "ABC").mkdir(parents=True)
        (src / "ABC" / "k.cubin").write_bytes(b"\0")
        (repo / ".gpu").mkdir()
        with tarfile.open(repo / ".gpu" / "triton-cache.tar.xz", "w:xz") as tar:
            tar.add(src, arcname=src.name)
    work, out = repo.parent / "work", repo.parent / "out"
    r, calls = _script(repo, "run", DEVICE="cpu", WORK=str(work), OUT=str(out))
    assert r.returncode == 0, r.stderr
    trains = [i for i, c in enumerate(calls) if c.startswith("python3 train.py")]
    assert len(trains) == 2
    compacts = [c for c in calls if c.startswith("python3 -m opgan.checkpoint compact")]
    assert [c.split()[4] for c in compacts] == [f"{work}/training/{n}/last.pt" for n in ("speech-spectral-norm", "music-spectral-norm")]
    for name in ("speech-spectral-norm", "music-spectral-norm"):  # one file per run (the tool returns files <= 16 MiB)
        with tarfile.open(out / f"{name}.tgz") as tar:
            assert {f"training/{name}", f"training/{name}/config.json", f"training/{name}.log"} <= set(tar.getnames())
    for i in trains:
        assert "--device cpu" in calls[i]
        if packed:
            assert f"TRITON_CACHE_DIR={work / 'triton-cache'} " in calls[i] and calls[i + 1] == "k.cubin"
        else:
            assert "TRITON_CACHE_DIR= " in calls[i]
    assert ("(1 cubins)" in r.stdout) == packed


def test_the_script_works_from_any_folder(repo: Path):
    """It lives in tools/gpu/ and works on the repository root wherever it is started from."""
    r, calls = _script(repo, "prepare", cwd=repo / "training", STUB_PREWARM_MIB="1", STUB_SOURCES_MIB="1")
    assert r.returncode == 0, r.stderr
    assert (repo / ".gpu" / "sources").is_dir() and not (repo / "training" / ".gpu").exists()
    assert any("tools/gpu/prewarm_cache.py --training training/speech-spectral-norm,training/music-spectral-norm" in c for c in calls)
    r, _ = _script(repo, "nonsense", cwd=repo / "training")
    assert r.returncode == 2 and r.stderr.startswith("usage: bash tools/gpu/gpu_continue.sh")


def test_the_committed_tree_leaves_room_for_what_a_gpu_call_carries():
    """Everything a device call copies (the tree, the wheels, the Triton cache pack ~6 MiB, the sources
    pack) must stay under 64 MiB, so the tree must leave room; the committed run states are kept
    compact (`python -m opgan.checkpoint compact`), a full last.pt being three copies of the generator."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tree that travels is git's")
    sys.path.insert(0, str(ROOT / "tools" / "gpu"))
    import triton_pack

    tree = triton_pack.tree_bytes(ROOT) / 2**20
    assert tree <= 55.0, (f"the tree is {tree:.1f} MiB: with the wheels and the Triton cache pack it leaves the sources "
                          "pack too little of the device's 64 MiB (untrack or compact something)")
    tracked = subprocess.run(["git", "ls-files", "training"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for last in [ROOT / n for n in tracked.split() if n.endswith("/last.pt")]:
        opt = torch.load(last, map_location="cpu", weights_only=True)["opt_g"]["state"]
        assert all("exp_avg" not in st for st in opt.values()), f"{last} is not compact"
