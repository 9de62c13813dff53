"""Validation during training: the mean restoration metrics of a restorer over the validation clips,
the do-no-harm figures on lightly corrupted inputs, and the selection `score` best.pt may be kept by.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from . import metrics as M
from .metrics import LIGHT_INPUT_SDR_DB

__all__ = ["HARM_TOLERANCE_DB", "format_metrics", "validate"]

#: Allowed mean SDR loss on light inputs before the selection score is penalised (the issue's target).
HARM_TOLERANCE_DB = 0.5


def validate(
    restore: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    device: torch.device,
    sample_rate: int,
    max_clips: int = 0,
    batch_size: int = 8,
    with_stoi: bool = True,
) -> dict[str, float]:
    """Mean SDR / SI-SDR / STOI of inputs and outputs over the validation clips (`max_clips` of them,
    evenly spaced, when non-zero), the output level against the clean's, and do-no-harm figures.

    `restore` maps (B,1,L) corrupted audio at its original scale to the estimate (the trainer passes
    `enhance_clips` with the generator). `silent_floor_gain` is the SDR improvement an all-zero
    output would get (SDR(0, s) = 0 dB, so it is minus the input SDR): on loud reverberant input
    plain SDR rewards attenuation, so read `sdr_gain` against it and against `si_sdr_gain`.
    `level_db` is the mean of 10·log10(Σout²/Σclean²) (0 = the clean's level; attenuation is
    negative). `light_*` cover clips whose input SDR is >= LIGHT_INPUT_SDR_DB. `score` is what
    `select_by='score'` keeps best.pt by: SI-SDR gain, minus any mean SDR loss on light inputs beyond
    HARM_TOLERANCE_DB.
    """
    total = len(dataset)
    n = total if not max_clips else min(max_clips, total)
    # An evenly spaced subset, so a partial validation still covers every corruption case of the split.
    idx = np.linspace(0, total - 1, n).round().astype(int).tolist() if n < total else list(range(total))
    rows: dict[str, list[float]] = {k: [] for k in ("sdr_in", "sdr_out", "si_sdr_in", "si_sdr_out",
                                                    "stoi_in", "stoi_out", "level_db")}
    with torch.inference_mode():
        for lo in range(0, n, batch_size):
            items = [dataset[i] for i in idx[lo: lo + batch_size]]
            x = torch.stack([a for a, _ in items]).float()
            s = torch.stack([b for _, b in items]).float()
            est = restore(x.to(device)).float().cpu()
            for xi, si, ei in zip(x[:, 0].numpy(), s[:, 0].numpy(), est[:, 0].numpy()):
                rows["sdr_in"].append(M.sdr(xi, si))
                rows["sdr_out"].append(M.sdr(ei, si))
                rows["si_sdr_in"].append(M.si_sdr(xi, si))
                rows["si_sdr_out"].append(M.si_sdr(ei, si))
                rows["level_db"].append(M.level_db(ei, si))
                if with_stoi:
                    rows["stoi_in"].append(M.stoi(xi, si, sample_rate))
                    rows["stoi_out"].append(M.stoi(ei, si, sample_rate))
    out = {k: _finite_mean(v) for k, v in rows.items() if v}
    out["sdr_gain"] = out["sdr_out"] - out["sdr_in"]
    out["si_sdr_gain"] = out["si_sdr_out"] - out["si_sdr_in"]
    out["silent_floor_gain"] = -out["sdr_in"]
    out.update(_do_no_harm(np.asarray(rows["sdr_in"]), np.asarray(rows["sdr_out"])))
    harm = min(0.0, out["light_sdr_gain"] + HARM_TOLERANCE_DB) if out["light_clips"] else 0.0
    out["score"] = out["si_sdr_gain"] + harm
    out["clips"] = float(n)
    return out


def _do_no_harm(sdr_in: np.ndarray, sdr_out: np.ndarray) -> dict[str, float]:
    """Mean and worst SDR gain over the clips whose input is already good (light corruption)."""
    light = np.isfinite(sdr_in) & np.isfinite(sdr_out) & (sdr_in >= LIGHT_INPUT_SDR_DB)
    gains = sdr_out[light] - sdr_in[light]
    if not gains.size:
        return {"light_clips": 0.0, "light_sdr_gain": float("nan"), "light_worst_gain": float("nan")}
    return {"light_clips": float(gains.size), "light_sdr_gain": float(gains.mean()),
            "light_worst_gain": float(gains.min())}


def _finite_mean(v: list[float]) -> float:
    a = np.asarray(v, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def format_metrics(m: dict[str, float]) -> str:
    """One line of validation figures for the log."""
    if not m:
        return "-"
    s = (f"SDR {m['sdr_in']:+.2f} -> {m['sdr_out']:+.2f} dB (gain {m['sdr_gain']:+.2f}; silent-output floor "
         f"{m['silent_floor_gain']:+.2f}), SI-SDR gain {m['si_sdr_gain']:+.2f} dB")
    if "stoi_out" in m:
        s += f", STOI {m['stoi_in']:.3f} -> {m['stoi_out']:.3f}"
    if "level_db" in m:
        s += f", level {m['level_db']:+.2f} dB"
    if m.get("light_clips"):
        s += f", light inputs ({m['light_clips']:.0f}) SDR gain {m['light_sdr_gain']:+.2f} (worst {m['light_worst_gain']:+.2f})"
    return s
