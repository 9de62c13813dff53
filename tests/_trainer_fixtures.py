"""A tiny synthetic RAR set in the builder layout, for trainer tests (seconds on CPU)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def make_tiny_rar(root: Path, n_train: int = 8, n_val: int = 2, length: int = 3200, seed: int = 0) -> Path:
    """Chirp-like tones (clean) plus noise and a short echo (corrupted)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / SR
    for split, n in (("train", n_train), ("val", n_val)):
        for sub in ("clean", "corrupted"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            f0 = rng.uniform(150, 600)
            clean = 0.4 * np.sin(2 * np.pi * f0 * t * (1 + 0.3 * t)) * np.hanning(length)
            echo = np.concatenate([np.zeros(160), clean[:-160]]) * 0.5
            corrupted = clean + echo + 0.05 * rng.standard_normal(length)
            cid = f"{split}{i:03d}"
            sf.write(root / split / "clean" / f"{cid}.wav", clean.astype(np.float32), SR, subtype="FLOAT")
            sf.write(root / split / "corrupted" / f"{cid}.wav", corrupted.astype(np.float32), SR, subtype="FLOAT")
            rows.append({"id": cid, "sample_rate": SR})
        with open(root / split / "manifest.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["id", "sample_rate"])
            w.writeheader()
            w.writerows(rows)
    return root


def check_generator_run(run: Path, data: Path, args, generator_cls: type, tmp_path: Path) -> dict:
    """What a 2-step tiny run of any generator arch must give: finite training losses; a copy resumes one
    step further with the weights moving on from last.pt's, and another arch cannot resume it; best.pt
    restores a signal of any length; the ladder's train/validation gap reads it. ``args(data, runs,
    *extra)`` is the test's command line. Returns the gap record."""
    import json

    import torch

    from opgan import ladder
    from opgan.checkpoint import load_checkpoint
    from opgan.enhance import enhance_signal, load_restorer
    from opgan.trainer import main

    last = load_checkpoint(run / "last.pt")
    assert last["step"] == 2 and "discriminator" in last  # lambda_adv > 0: the discriminator trained beside it
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite([r["g_loss"] for r in recs if r["kind"] == "train"]).all()

    runs = tmp_path / "runs"
    (runs / run.name).mkdir(parents=True)
    for f in run.iterdir():
        if f.is_file():
            (runs / run.name / f.name).write_bytes(f.read_bytes())
    assert main(args(data, runs, "--max-steps", "3", "--resume")) == 0
    resumed = load_checkpoint(runs / run.name / "last.pt")
    assert resumed["step"] == 3
    assert any(not torch.equal(v, resumed["generator"][k]) for k, v in last["generator"].items())
    assert main(args(data, runs, "--max-steps", "4", "--resume", "--arch", "unet")) == 2

    r = load_restorer(run / "best.pt")  # overlap-add, padding-free
    assert isinstance(r.generator, generator_cls)
    x = 0.1 * np.random.default_rng(0).standard_normal(5001).astype(np.float32)
    y = enhance_signal(r, x, window=2048)
    assert y.shape == x.shape and np.isfinite(y).all()
    rec = ladder.gap(run, data / "train", data / "val")
    assert rec["train"]["clips"] == 8 and np.isfinite(rec["si_sdr_gain_gap"])
    return rec
