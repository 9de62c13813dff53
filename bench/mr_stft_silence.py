"""How often the training data holds near-silent clean crops, and what the multi-resolution STFT loss
made of them before and after spectral convergence moved to the batch level.

    python bench/mr_stft_silence.py                 # 50 batches of 8 x 4096 from the default recipe's mixing

Draws batches as the `default` preset's training does (dynamic mixing of the shipped recordings with the
recipe's cases, random 4096-sample crops, blind peak normalisation) and scores the identity estimate
(the corrupted input, where a residual generator starts) with the per-clip spectral convergence (floored
at 1e-5, the old definition) and with `models.losses.multi_resolution_stft` as it is now.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from opgan.config import preset
from opgan.data import datasets as D
from opgan.models import losses
from opgan.train_data import blind_normalise


def _old_mr_stft(est: torch.Tensor, ref: torch.Tensor) -> float:
    total = 0.0
    for n_fft, hop in losses.MR_RESOLUTIONS:
        e, r = losses._magnitude(est, n_fft, hop), losses._magnitude(ref, n_fft, hop)
        sc = torch.linalg.vector_norm(r - e, dim=(1, 2)) / torch.linalg.vector_norm(r, dim=(1, 2)).clamp_min(1e-5)
        total += (sc.mean() + (e.log() - r.log()).abs().mean()).item()
    return total / len(losses.MR_RESOLUTIONS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = preset("default")
    names, probs = cfg.case_mix()
    ds = D.open_dataset(f"default:{cfg.data_kind}", "train", kind=cfg.data_kind, length=args.batches * cfg.batch_size,
                        seed=args.seed, cases=names, case_probs=probs, augment=cfg.augment,
                        group_weight=cfg.group_weight)
    rng = np.random.default_rng(args.seed)
    old, new, rms = [], [], []
    for b in range(args.batches):
        xs, ys = [], []
        for i in range(cfg.batch_size):
            x, y = ds[b * cfg.batch_size + i]
            o = int(rng.integers(0, x.shape[-1] - cfg.clip_len + 1))
            xs.append(x[:, o: o + cfg.clip_len])
            ys.append(y[:, o: o + cfg.clip_len])
        x, y = torch.stack(xs).float(), torch.stack(ys).float()
        x, y = blind_normalise(x, y)
        rms += (10 * torch.log10(y.square().mean(dim=(1, 2)) + 1e-20)).tolist()
        with torch.no_grad():
            old.append(_old_mr_stft(x, y))
            new.append(losses.multi_resolution_stft(x, y).item())
    rms_a, old_a, new_a = np.array(rms), np.array(old), np.array(new)
    print(f"{len(rms)} crops of {cfg.clip_len} samples in {args.batches} batches of {cfg.batch_size}")
    for t in (-40, -60, -80):
        print(f"  clean RMS < {t} dBFS: {np.mean(rms_a < t) * 100:.1f} % of crops")
    for name, v in (("per-clip SC (old)", old_a), ("batch SC (now)", new_a)):
        print(f"  MR-STFT loss of the identity estimate, {name}: median {np.median(v):.2f}, "
              f"95th pct {np.percentile(v, 95):.2f}, max {v.max():.1f}")


if __name__ == "__main__":
    main()
