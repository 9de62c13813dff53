"""opgan evaluate: a tiny RAR set + a tiny random checkpoint -> CSV, JSON, figures, HTML with reference rows."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from opgan import baselines as bl
from opgan.evaluate import _select, evaluate, input_sdr_bin, main
from opgan.models import build_generator

torch.set_num_threads(1)
SR = 16000
CASES = ["blend", "awgn", "background", "reverb"]


def _ckpt(path, q):
    torch.manual_seed(q)
    gen = build_generator({"filters": 2, "q": q})
    torch.save({"format": "opgan-ckpt-1", "config": {"generator": {"filters": 2, "q": q}},
                "generator": gen.state_dict(), "sample_rate": SR, "metrics": {}}, path)
    return path


def _clean(rng, n):
    t = np.arange(n) / SR
    env = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in enumerate((180, 360, 540, 1100), 1))
    return (0.5 * env * x / np.max(np.abs(x))).astype(np.float32)


def _corrupt(rng, x, case):
    noise = rng.standard_normal(x.size).astype(np.float32)
    if case == "awgn":
        return x + 0.05 * noise
    if case == "background":
        return x + 0.2 * np.sin(2 * np.pi * 60 * np.arange(x.size) / SR).astype(np.float32)
    h = rng.standard_normal(2400) * np.exp(-np.arange(2400) / 500.0)
    h[0] = 1.0
    rev = np.convolve(x, h)[: x.size].astype(np.float32)
    rev *= 0.9 / np.abs(rev).max()  # a loud reverberant input: the case where SDR rewards silence
    return rev + (0.03 * noise if case == "blend" else 0)


@pytest.fixture(scope="module")
def rar(tmp_path_factory):
    root = tmp_path_factory.mktemp("rar")
    split = root / "test"
    (split / "clean").mkdir(parents=True)
    (split / "corrupted").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i, case in enumerate(CASES * 2):
        cid = f"{case}_{i:05d}"
        x = _clean(rng, SR)
        y = np.clip(_corrupt(rng, x, case), -1, 1)
        sf.write(split / "clean" / f"{cid}.wav", x, SR, subtype="PCM_16")
        sf.write(split / "corrupted" / f"{cid}.wav", y, SR, subtype="PCM_16")
        rows.append({"id": cid, "case": case, "sample_rate": SR, "length": SR})
    with open(split / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture(scope="module")
def result(rar, tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    q3, q1 = _ckpt(d / "q3.pt", 3), _ckpt(d / "q1.pt", 1)
    out = d / "out"
    summary = evaluate(rar, q3, out, baselines=f"cnn={q1},noisereduce,wpe", examples=2, progress=False,
                       log=lambda m: None)
    return out, summary


def test_outputs_written(result):
    out, _ = result
    for name in ("metrics.csv", "summary.json", "report.html"):
        assert (out / name).stat().st_size > 500
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert {"bars_by_case.png", "bars_by_input_sdr.png", "scatter_sdr.png"} <= set(pngs)
    assert len([p for p in pngs if p.startswith("example_")]) == 2
    assert all((out / "figures" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)
    assert "data:audio/wav;base64," in html
    assert "silent output (floor)" in html and "rewards mere attenuation" in html


def test_metrics_rows_and_reference_rows(result):
    out, summary = result
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    methods = {"identity", "silent", "opgan", "cnn", "noisereduce", "wpe"}
    assert {r["method"] for r in rows} == methods
    assert len(rows) == 8 * len(methods)
    for r in rows:
        assert math.isfinite(float(r["sdr"])) and math.isfinite(float(r["sdr_in"]))
        if r["method"] == "identity":
            assert float(r["sdr_imp"]) == pytest.approx(0.0, abs=1e-3)
            assert math.isfinite(float(r["pesq"])) and math.isfinite(float(r["stoi"]))
        if r["method"] == "silent":  # the all-zero floor: SDR exactly 0 dB, SI-SDR -inf
            assert float(r["sdr"]) == pytest.approx(0.0, abs=1e-6)
            assert float(r["si_sdr"]) == -math.inf
        if r["method"] in ("opgan", "cnn", "noisereduce", "wpe"):
            assert math.isfinite(float(r["si_sdr"])) and 0.0 <= float(r["stoi"]) <= 1.0
    by_case = summary["by_case"]
    assert set(by_case) == methods
    assert list(by_case["silent"]) == CASES + ["all"]
    assert all(by_case[m]["all"]["n"] == 8 for m in methods)
    # The metric trap is visible: silence "improves" SDR on the loud reverberant clips.
    assert by_case["silent"]["reverb"]["sdr_imp"] > 0
    assert by_case["silent"]["reverb"]["si_sdr_imp"] == -math.inf
    assert summary["methods"]["cnn"] == "CNN-GAN (q=1)" and summary["methods"]["opgan"] == "Op-GAN (q=3)"
    m = summary["margins"]
    assert set(m) == methods - {"opgan"}
    assert m["cnn"]["blend"]["sdr_imp"] == pytest.approx(by_case["opgan"]["blend"]["sdr_imp"] - by_case["cnn"]["blend"]["sdr_imp"])
    assert m["identity"]["all"]["sdr_imp"] == pytest.approx(by_case["opgan"]["all"]["sdr_imp"])


def test_summary_json_is_valid_json(result):
    out, _ = result
    data = json.loads((out / "summary.json").read_text())  # strict: no NaN/Infinity tokens
    assert data["by_case"]["silent"]["all"]["si_sdr"] == "-inf"
    assert data["n_clips"] == 8 and data["pesq"] is True
    assert set(data["by_input_sdr"]["opgan"]) <= {"< 0 dB", "0-5 dB", "5-10 dB", "10-15 dB", ">= 15 dB", "all"}
    assert all(v >= 0 for v in data["rtf"].values())


def test_missing_baseline_is_skipped_with_note(rar, tmp_path, monkeypatch):
    def unavailable():
        raise bl.BaselineUnavailable("pretend-package not installed")

    monkeypatch.setitem(bl.BASELINES, "dfn", ("DeepFilterNet3", unavailable))
    notes = []
    s = evaluate(rar, _ckpt(tmp_path / "m.pt", 2), tmp_path / "o", baselines="dfn", limit=4, examples=1,
                 stoi=False, progress=False, log=notes.append)
    assert s["skipped_baselines"] == {"dfn": "pretend-package not installed"}
    assert any("dfn skipped" in n for n in notes)
    assert "pretend-package" in (tmp_path / "o" / "report.html").read_text()
    assert set(s["methods"]) == {"identity", "silent", "opgan"} and s["n_clips"] == 4


def test_mat_dataset_and_cli_errors(tmp_path, capsys):
    import scipy.io

    rng = np.random.default_rng(1)
    clean = np.stack([_clean(rng, 8000) for _ in range(2)])
    noisy = clean + 0.05 * rng.standard_normal(clean.shape).astype(np.float32)
    scipy.io.savemat(tmp_path / "set.mat", {"noisy_sig": noisy, "clear_sig": clean})
    ck = _ckpt(tmp_path / "m.pt", 1)
    rc = main(["--data", str(tmp_path / "set.mat"), "--model", str(ck), "--out", str(tmp_path / "o"),
               "--quiet", "--examples", "1", "--no-stoi"])
    assert rc == 0
    assert "unprocessed input" in capsys.readouterr().out
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["n_clips"] == 2 and s["sample_rate"] == SR and list(s["by_case"]["opgan"]) == ["unknown", "all"]
    assert main(["--data", str(tmp_path / "set.mat"), "--model", str(tmp_path / "nope.pt"), "--out", "x"]) == 2
    assert main(["--data", str(tmp_path / "set.mat"), "--model", str(ck), "--out", str(tmp_path / "o2"),
                 "--baselines", "bogus"]) == 2
    assert "unknown baseline" in capsys.readouterr().err


def test_helpers():
    assert _select(10, 4) == [0, 3, 6, 9] and _select(3, None) == [0, 1, 2]
    assert input_sdr_bin(-3.0) == "< 0 dB" and input_sdr_bin(7.5) == "5-10 dB" and input_sdr_bin(99) == ">= 15 dB"
    assert bl.parse_baselines("cnn=a.pt, wpe,noisereduce") == [("cnn", "a.pt"), ("wpe", None), ("noisereduce", None)]
    with pytest.raises(ValueError, match="cnn=PATH"):
        bl.parse_baselines("cnn")


def test_package_baselines_run_and_keep_length():
    rng = np.random.default_rng(3)
    x = _clean(rng, 12000)
    y = x + 0.05 * rng.standard_normal(x.size).astype(np.float32)
    for name in ("noisereduce", "wpe", "dfn"):
        try:
            m = bl.make_baseline(name)
        except bl.BaselineUnavailable as e:
            pytest.skip(str(e)) if name != "dfn" else None
            continue
        z = m.fn(y, SR)
        assert z.shape == y.shape and np.isfinite(z).all()
        # Aligned with the input (no framing delay left): best lag of the cross-correlation is 0.
        c = np.correlate(z, x, "full")
        assert abs(int(np.argmax(c)) - (x.size - 1)) <= 2, name
