"""What the wheel carries (pyproject's package-data), one version for both packages, and the one-line error
a wheel install gives when asked for audio that only a source checkout holds."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
AUDIO_SUFFIXES = {".flac", ".ogg", ".wav", ".mp3", ".opus"}


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_dir(pkg: str) -> Path:
    mapped = _setuptools().get("package-dir", {})
    return ROOT / mapped.get(pkg, pkg.replace(".", "/"))


def _wheel_data() -> dict[str, set[Path]]:
    """{package: files its package-data globs match}, expanded as setuptools does (relative to the package)."""
    out: dict[str, set[Path]] = {}
    for pkg, patterns in _setuptools()["package-data"].items():
        base = _package_dir(pkg)
        out[pkg] = {p for pat in patterns for p in base.glob(pat) if p.is_file()}
    return out


def test_only_package_data_goes_in_the_wheel():
    # include-package-data would also add whatever a stale egg-info SOURCES.txt lists (every asset)
    assert _setuptools()["include-package-data"] is False


def test_wheel_carries_weights_and_typing_markers_but_no_audio():
    data = _wheel_data()
    opgan = {p.relative_to(ROOT).as_posix() for p in data["opgan"]}
    assert {"opgan/assets/weights/speech.pt", "opgan/assets/weights/music.pt", "opgan/py.typed",
            "opgan/assets/audio/ATTRIBUTION.md"} <= opgan
    assert (ROOT / "selfonn/py.typed") in data["selfonn"]
    audio = sorted(p.name for files in data.values() for p in files if p.suffix.lower() in AUDIO_SUFFIXES)
    assert not audio, f"audio in the wheel: {audio[:5]}"
    mib = sum(p.stat().st_size for files in data.values() for p in files) / 2**20
    assert mib < 16, f"package data is {mib:.1f} MiB"  # two models of 1.4 M float32 parameters, 5.3 MiB each
    # and the checkout keeps what the default training run, the tests and the gate read
    for folder in ("opgan/assets/audio/corpus", "opgan/assets/audio/fixture", "opgan/assets/gate"):
        assert any(p.suffix in AUDIO_SUFFIXES for p in (ROOT / folder).rglob("*")), folder


def test_one_version_for_both_packages():
    import opgan
    import selfonn
    from selfonn import _version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" in project["dynamic"]
    assert _setuptools()["dynamic"]["version"] == {"attr": "selfonn._version.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", _version.__version__)
    assert selfonn.__version__ == opgan.__version__ == _version.__version__


def test_import_opgan_stays_light():
    # `opgan --help` and `opgan fetch` must not pay for torch; the version is read on first use
    code = "import sys, opgan, opgan.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_licence_names_mit_and_the_audio_licences():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "opgan/assets/audio/ATTRIBUTION.md" in text


def test_missing_corpus_is_one_line_pointing_to_a_checkout(tmp_path, monkeypatch, capsys):
    from opgan import trainer
    from opgan.data import assets

    monkeypatch.setattr(assets, "asset_dir", lambda: tmp_path / "assets" / "audio")
    with pytest.raises(assets.MissingAssetError, match="source checkout"):
        assets.corpus_dir()
    with pytest.raises(FileNotFoundError, match="source checkout"):
        assets.fixture_dir()
    # the default training run in a wheel install: exit 2 and one line, no traceback
    rc = trainer.main(["--preset", "tiny", "--runs-dir", str(tmp_path / "runs"), "--data-root",
                       str(tmp_path / "data"), "--max-steps", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "source checkout" in err and "Traceback" not in err


@pytest.mark.slow
def test_built_wheel_holds_weights_and_no_audio(tmp_path):
    """The real build (pip, isolated: needs setuptools from an index), from the tracked files only."""
    import shutil
    import zipfile

    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    src = tmp_path / "src"
    for rel in filter(None, files.decode().split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "whl"), str(src)],
                   check=True, timeout=300)
    (wheel,) = (tmp_path / "whl").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"opgan/assets/weights/speech.pt", "opgan/assets/weights/music.pt", "opgan/py.typed",
            "selfonn/py.typed"} <= set(names)
    assert any(n.endswith("/licenses/LICENSE") or n.endswith("/LICENSE") for n in names)
    assert not [n for n in names if Path(n).suffix in AUDIO_SUFFIXES]
    assert wheel.stat().st_size < 16 * 2**20  # two spectral models of 5.3 MiB each
