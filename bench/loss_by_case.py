"""Where a run's remaining training loss lives: its objective per corruption case on its own training
items, for the unprocessed input, a trained model and the oracle mask (which sees the clean).

When every variant of a recipe (wider, longer frames, another optimiser setting) reaches the same
training loss, this says what that loss is made of: the cases where the model is close to the oracle
(learnt), and those where it is no better than its input while the oracle is far below (not learnt).

    python bench/loss_by_case.py training/speech-spectral-norm --model speech --items 300 \
        --json docs/results/loss-by-case-speech.json

Items are the run's dynamic training set (its config's data, cases, augmentation and targets, its seed),
one random crop of the run's clip length each, scaled by the input's peak as training does
(`blind_normalise`). The loss is the run's generator objective (`models.losses.g_loss` with its weights)
without the adversarial term, on each crop alone.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from opgan.config import TrainConfig

METHODS = ("identity", "model", "oracle")


def item_loss(est: torch.Tensor, ref: torch.Tensor, cfg: "TrainConfig") -> float:
    """The run's generator objective on one crop, without a discriminator (the trainer's call, lambda_adv 0)."""
    from opgan.models import losses

    loss, _ = losses.g_loss(None, est, ref, cfg.lambda_t, cfg.lambda_s, 0.0, cfg.lambda_mr, cfg.lambda_sisdr,
                            cfg.lambda_level, cfg.lambda_sdr, cfg.sdr_cap_db)
    return float(loss)


def summarise(per_case: dict[str, dict[str, list[float]]], n: int) -> dict[str, dict]:
    """Mean loss per case and method, the case's share of the model's total, and how much of what the oracle
    removes from the input's loss the model removes (1 = as much as the oracle)."""
    model_total = sum(sum(d["model"]) for d in per_case.values()) / n
    out = {}
    for case, d in sorted(per_case.items()):
        mean = {m: float(np.mean(d[m])) for m in METHODS}
        gap = mean["identity"] - mean["oracle"]
        out[case] = {"n": len(d["model"]), **mean,
                     "share_of_model_loss": float(sum(d["model"]) / n / model_total) if model_total else float("nan"),
                     "captured": float((mean["identity"] - mean["model"]) / gap) if gap > 1e-9 else float("nan")}
    out["all"] = {"n": n, **{m: float(sum(sum(d[m]) for d in per_case.values()) / n) for m in METHODS}}
    return out


def main(argv: list[str] | None = None) -> int:
    from opgan.baselines import oracle_mask
    from opgan.config import ConfigError, TrainConfig
    from opgan.enhance import load_restorer
    from opgan.train_data import blind_normalise, dynamic_train_set

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a run folder (its config.json gives data, cases and loss weights)")
    ap.add_argument("--model", default="speech", help="shipped model name or checkpoint")
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--json", type=Path, default=None, help="write the record here")
    args = ap.parse_args(argv)
    try:
        cfg = TrainConfig.from_dict(json.loads((args.run / "config.json").read_text()))
        if not cfg.dynamic:
            raise ConfigError("the run does not mix its data dynamically")
        ds = dynamic_train_set(cfg, length=args.items)
        restorer = load_restorer(args.model)
    except (OSError, ValueError, ConfigError) as e:
        print(f"loss_by_case: {e}", file=sys.stderr)
        return 2
    sr, g = ds.sample_rate, restorer.generator.eval()
    rng = np.random.default_rng(cfg.seed)
    per_case: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i in range(args.items):
        y, x, rec = ds.sample(i)
        o = int(rng.integers(0, len(y) - cfg.clip_len + 1))
        inp, ref = blind_normalise(torch.from_numpy(y[o: o + cfg.clip_len]).float()[None, None],
                                   torch.from_numpy(x[o: o + cfg.clip_len]).float()[None, None])
        oracle = torch.from_numpy(oracle_mask(inp[0, 0].numpy(), sr, ref[0, 0].numpy()))[None, None]
        with torch.no_grad():
            for m, est in (("identity", inp), ("model", g(inp)), ("oracle", oracle)):
                per_case[rec["case"]][m].append(item_loss(est, ref, cfg))
    summary = summarise(per_case, args.items)
    rec = {"command": "python bench/loss_by_case.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "run": str(args.run), "model": args.model, "items": args.items, "clip_len": cfg.clip_len,
           "loss": ("g_loss without the adversarial term: " + ", ".join(
               f"{k} {getattr(cfg, k):g}" for k in ("lambda_t", "lambda_s", "lambda_mr", "lambda_sisdr", "lambda_level",
                                                   "lambda_sdr") if getattr(cfg, k))),
           "cases": summary,
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    print(f"{'case':<11}{'n':>4}  " + "  ".join(f"{m:>9}" for m in METHODS) + "  share  captured")
    for case, v in summary.items():
        tail = f"  {v['share_of_model_loss']:5.2f}  {v['captured']:8.2f}" if case != "all" else ""
        print(f"{case:<11}{v['n']:>4}  " + "  ".join(f"{v[m]:9.3f}" for m in METHODS) + tail)
    if args.json:
        args.json.write_text(json.dumps(rec, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
