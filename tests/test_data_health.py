"""Code health of opgan.data: no import cycles, no prints in library code, warnings go to logging."""
import ast
import logging
from pathlib import Path

import numpy as np
import soundfile as sf

import opgan.data

DATA = Path(opgan.data.__file__).parent


def _tree(name: str) -> ast.Module:
    return ast.parse((DATA / f"{name}.py").read_text())


def _imports(name: str) -> set[str]:
    """Sibling modules a data module imports, at top level or inside functions."""
    out = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_data_modules_import_no_cycle():
    mods = sorted(p.stem for p in DATA.glob("*.py") if p.stem != "__init__")
    graph = {m: _imports(m) & set(mods) for m in mods}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, f"import cycle: {' -> '.join(path + [m, n])}"
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in mods:
        if m not in state:
            visit(m, [])


def test_library_code_does_not_print():
    for p in sorted(DATA.glob("*.py")):
        for fn in ast.walk(ast.parse(p.read_text())):
            if not isinstance(fn, ast.FunctionDef) or fn.name == "main":
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                    raise AssertionError(f"{p.name}:{node.lineno}: print() in {fn.name}(); use logging")


def test_builder_logs_skipped_sources(tmp_path, caplog):
    from opgan.data.assets import default_rirs
    from opgan.data.builder import build

    src = tmp_path / "src"
    for spk in ("a", "b", "c"):
        d = src / spk
        d.mkdir(parents=True)
        rng = np.random.default_rng(len(spk))
        sf.write(d / "long.wav", (0.3 * rng.standard_normal(48000)).astype(np.float32), 16000)
    sf.write(src / "a" / "tiny.wav", np.full(100, 0.1, np.float32), 16000)
    (src / "splits.json").write_text('{"train": ["a", "b", "c"]}')
    with caplog.at_level(logging.WARNING, logger="opgan.data.builder"):
        build("speech", src, tmp_path / "out", size=0.002, rirs=default_rirs(), progress=False, splits=["train"])
    assert any("tiny.wav" in r.getMessage() and "too short" in r.getMessage() for r in caplog.records)


def test_rir_cache_logs(tmp_path, caplog):
    from opgan.data.rir import RIRBank

    with caplog.at_level(logging.INFO, logger="opgan.data.rir"):
        RIRBank.load_or_simulate(tmp_path / "bank.npz", 1)
    assert any("simulated 1 RIRs" in r.getMessage() for r in caplog.records)


def test_asset_dir_is_the_package_folder():
    from opgan.data.assets import asset_dir

    assert (asset_dir() / "rirs_16k.npz").is_file() and (asset_dir() / "corpus" / "speech").is_dir()
