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
