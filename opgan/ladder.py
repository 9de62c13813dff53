"""Fixed crop sets for the learning ladder: one training batch to overfit, and per-case validation and
training-sample sets, written as builder split folders (clean/, corrupted/) that ``--data``,
``--val-data`` and ``opgan evaluate --data`` read as they are.

    python -m opgan.ladder crops runs/ladder/fixed8 --split train --n 8 --si-sdr=-5,10     # rung (a)
    python -m opgan.ladder crops runs/ladder/val-awgn --split val --case awgn --n 64        # rung (b) validation
    python -m opgan.ladder crops runs/ladder/train-awgn --split train --case awgn --n 64    # its train-crop gap
    python -m opgan.ladder gap runs/ladder/b-awgn-paper --train runs/ladder/train-awgn --val runs/ladder/val-awgn
    python -m opgan.ladder crops runs/ladder/val-reverb-early --like runs/ladder/val-reverb --reverb-target early
    python -m opgan.ladder score music datasets/eval-music --every 5   # a model on a built test set

Crops are drawn from the same dynamic mixing the trainer uses (the shipped recordings, or ``--data`` a
sources root), split by speaker as the trainer splits them, with one corruption case (``--case``) or the
paper's blend of cases (``all``); crops whose clean signal is near silent are skipped (they carry no
learning signal, and their SI-SDR is undefined). The folder also gets ``crops.json``: the command's
parameters and each crop's input SDR and SI-SDR.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["write_crops", "score_folder", "gap", "score", "main"]

log = logging.getLogger(__name__)


def _si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    from opgan import metrics

    return float(metrics.si_sdr(est, ref))


def write_crops(out: Path, split: str, n: int, clip_len: int, case: str = "all", kind: str = "speech",
                data: str = "", seed: int = 0, si_sdr_range: tuple[float, float] | None = None,
                min_rms_db: float = -40.0, max_draws: int = 0, reverb_target: str = "dry",
                background_mix: str = "",
                replay: Sequence[tuple[int, int]] | None = None) -> list[dict]:
    """Write ``n`` (corrupted, clean) crops of ``clip_len`` samples to ``out``/{corrupted,clean}/NNN.wav.

    ``replay``, (draw, offset) pairs from another folder's crops.json, writes exactly those crops (no
    filter): with another ``reverb_target`` the same inputs get the other target. Refuses an existing
    non-empty ``out`` (never overwrites). Returns the per-crop records."""
    from opgan import metrics
    from opgan.data import datasets as D
    from opgan.data.audio import save_audio
    from opgan.data.corrupt import ALL_CASES

    if case != "all" and case not in ALL_CASES:
        raise ValueError(f"case must be 'all' or one of {', '.join(ALL_CASES)}, got {case!r}")
    if n < 1 or clip_len < 32 or clip_len % 32:
        raise ValueError(f"need n >= 1 and clip_len a positive multiple of 32, got {n}, {clip_len}")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty (choose another folder)")
    dynamic = {} if case == "all" else {"cases": (case,), "case_probs": (1.0,)}
    if reverb_target != "dry":
        dynamic["reverb_target"] = reverb_target
    if background_mix:
        dynamic["background_mix"] = background_mix
    spec = data or f"default:{kind}"
    if replay is not None:
        n = len(replay)
        draws = max((d for d, _ in replay), default=-1) + 1
    else:
        draws = max_draws or 50 * n
    ds = D.open_dataset(spec, split, kind=kind, length=draws, seed=seed, **dynamic)
    sr = int(ds.sample_rate)
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for i, o in (replay if replay is not None else ((i, None) for i in range(draws))):
        x, y = (t[0].numpy().astype(np.float64) for t in ds[i])
        if x.shape[-1] < clip_len:
            raise ValueError(f"{spec} clips are {x.shape[-1]} samples, shorter than {clip_len}")
        if o is None:
            o = int(rng.integers(0, x.shape[-1] - clip_len + 1))
        xc, yc = x[o: o + clip_len], y[o: o + clip_len]
        si = _si_sdr(xc, yc)
        if replay is None and (10 * np.log10(np.mean(yc ** 2) + 1e-20) < min_rms_db or (
                si_sdr_range is not None and not si_sdr_range[0] <= si <= si_sdr_range[1])):
            continue
        name = f"{len(rows):03d}"
        save_audio(out / "corrupted" / f"{name}.wav", xc, sr, subtype="FLOAT")
        save_audio(out / "clean" / f"{name}.wav", yc, sr, subtype="FLOAT")
        rows.append({"id": name, "draw": i, "offset": o, "input_si_sdr": round(si, 3),
                     "input_sdr": round(float(metrics.sdr(xc, yc)), 3)})
        if len(rows) == n:
            break
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} of {draws} draws passed the filters (SI-SDR range {si_sdr_range}, "
                         f"clean RMS >= {min_rms_db} dBFS); widen them")
    meta = {"split": split, "case": case, "kind": kind, "data": data or f"default:{kind}", "seed": seed,
            "clip_len": clip_len, "sample_rate": sr, "si_sdr_range": si_sdr_range, "min_rms_db": min_rms_db,
            "reverb_target": reverb_target, **({"background_mix": background_mix} if background_mix else {}),
            "replayed": replay is not None, "crops": rows}
    (out / "crops.json").write_text(json.dumps(meta, indent=1) + "\n")
    return rows


def score_folder(restorer, folder: Path, batch: int = 8, split: str = "train", every: int = 1) -> dict[str, float]:
    """Mean input/output SDR and SI-SDR of a restorer over a crop folder, and their gains (non-finite
    values, e.g. the SI-SDR of a crop its artifact missed, left out of the means). For a gated
    generator also the clip gate's mean and median over the crops: a model that stays near identity
    because its gate shut reads differently from one whose correction learnt nothing. For a mask model
    also its last hidden layer's share of saturated tanh units (|h| > 0.99) and its mean standard
    deviation over frames: near 1 and near 0, the mask is a fixed equaliser that ignores the input.
    Beside them the output's and the input's level against the clean (dB) and the silent floor.
    ``split`` names the folder's split (crop folders hold ``train``; a built test set ``test``); ``every``
    scores every n-th clip; clips of unequal lengths are run one at a time."""
    import torch

    from opgan.data import datasets as D

    ds = D.open_dataset(folder, split)
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    picked = list(range(0, len(ds), every))
    rows: dict[str, list[float]] = {k: [] for k in ("sdr_in", "sdr_out", "si_sdr_in", "si_sdr_out")}
    levels: dict[str, list[float]] = {"level_in_db": [], "level_db": []}  # -inf counts: a silent output is one
    gen = getattr(restorer, "generator", None)
    gate = getattr(gen, "gate", None)
    gates: list[float] = []
    hook = gate.register_forward_hook(lambda m, i, z: gates.extend(gen.gate_value(z).flatten().tolist())) \
        if isinstance(gate, torch.nn.Module) else None
    # a mask model's last hidden layer (the output layer's input): saturated tanh units, and how much it
    # changes from frame to frame (zero: the mask no longer depends on the input, a fixed equaliser)
    hidden: list[tuple[float, float]] = []
    out_layer = getattr(gen, "out", None) if hasattr(gen, "mask") else None
    hook_h = out_layer.register_forward_pre_hook(
        lambda m, a: hidden.append(((a[0].abs() > 0.99).float().mean().item(), a[0].std(-1).mean().item()))) \
        if isinstance(out_layer, torch.nn.Module) else None
    try:
        for lo in range(0, len(picked), batch):
            items = [ds[i] for i in picked[lo:lo + batch]]
            groups = [items] if len({a.shape[-1] for a, _ in items}) == 1 else [[it] for it in items]
            for group in groups:
                x = torch.stack([a for a, _ in group]).float()
                s = torch.stack([b for _, b in group]).float()
                _score(rows, levels, x, s, restorer(x).float())
    finally:
        for h in (hook, hook_h):
            if h is not None:
                h.remove()
    keep = [all(np.isfinite(rows[k][i]) for k in rows) for i in range(len(picked))]
    out = {k: float(np.mean([v for v, ok in zip(vals, keep) if ok])) for k, vals in rows.items()}
    out["sdr_gain"] = out["sdr_out"] - out["sdr_in"]
    out["si_sdr_gain"] = out["si_sdr_out"] - out["si_sdr_in"]
    # beside SDR, which rewards attenuation: the output level against the clean's, and the all-silent
    # output's SDR gain (its SDR is 0 dB on every clip)
    for k, vals in levels.items():
        out[k] = float(np.mean([v for v, ok in zip(vals, keep) if ok]))
    out["silent_floor_gain"] = -out["sdr_in"]
    out["clips"] = float(sum(keep))
    out["by_input_sdr"] = _by_input_sdr(rows, keep)
    if gates:
        out["gate_mean"], out["gate_median"] = float(np.mean(gates)), float(np.median(gates))
    if hidden:
        out["hidden_saturated"] = float(np.mean([h[0] for h in hidden]))
        out["hidden_frame_std"] = float(np.mean([h[1] for h in hidden]))
    return out


def _by_input_sdr(rows: dict[str, list[float]], keep: list[bool]) -> dict[str, dict[str, float]]:
    """Gains per input-SDR bin (`opgan evaluate`'s bins): a mean near zero can hide gains on heavy
    inputs paid for by damage to light ones, which is what a mask's precision ceiling does."""
    from opgan.evaluate import input_sdr_bin

    out: dict[str, dict[str, float]] = {}
    for i, ok in enumerate(keep):
        if ok:
            b = out.setdefault(input_sdr_bin(rows["sdr_in"][i]), {"clips": 0.0, "sdr_gain": 0.0, "si_sdr_gain": 0.0})
            b["clips"] += 1
            b["sdr_gain"] += rows["sdr_out"][i] - rows["sdr_in"][i]
            b["si_sdr_gain"] += rows["si_sdr_out"][i] - rows["si_sdr_in"][i]
    for b in out.values():
        b["sdr_gain"] /= b["clips"]
        b["si_sdr_gain"] /= b["clips"]
    return out


def _score(rows: dict[str, list[float]], levels: dict[str, list[float]], x, s, est) -> None:
    from opgan import metrics

    for xi, si, ei in zip(x[:, 0].numpy(), s[:, 0].numpy(), est[:, 0].numpy()):
        rows["sdr_in"].append(metrics.sdr(xi, si))
        rows["sdr_out"].append(metrics.sdr(ei, si))
        rows["si_sdr_in"].append(metrics.si_sdr(xi, si))
        rows["si_sdr_out"].append(metrics.si_sdr(ei, si))
        levels["level_in_db"].append(metrics.level_db(xi, si))
        levels["level_db"].append(metrics.level_db(ei, si))


def gap(run_dir: Path, train: Path, val: Path, checkpoint: str = "best.pt", out: str = "gap.json") -> dict:
    """The same metrics on a fixed sample of training crops and on validation crops, written to
    ``run_dir``/``out``: a model that scores well on both generalises, well only on training crops
    overfits, poorly on both fails to learn."""
    if Path(out).name != out or not (out.startswith("gap") and out.endswith(".json")):
        raise ValueError(f"--out must be a file name gap*.json in the run folder, got {out!r}")
    from opgan.checkpoint import load_checkpoint
    from opgan.enhance import load_restorer

    r = load_restorer(run_dir / checkpoint)
    rec = {"checkpoint": checkpoint, "step": int(load_checkpoint(run_dir / checkpoint).get("step", -1)),
           "train_folder": str(train), "val_folder": str(val),
           "train": score_folder(r, train), "val": score_folder(r, val)}
    rec["si_sdr_gain_gap"] = rec["train"]["si_sdr_gain"] - rec["val"]["si_sdr_gain"]
    (run_dir / out).write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def score(model: str, folder: Path, split: str = "test", every: int = 1) -> dict:
    """`score_folder` for a shipped model's name or a checkpoint on a built split (a test set of
    `opgan build`, or a crop folder with ``split="train"``)."""
    from opgan.enhance import load_restorer

    folder = Path(folder)
    if not (folder / split).is_dir():
        raise FileNotFoundError(f"no '{split}' split in '{folder}' (a folder written by opgan build or crops)")
    return {"model": str(model), "folder": str(folder), "split": split, "every": every,
            **score_folder(load_restorer(model), folder, split=split, every=every)}


def _like(folder: Path) -> dict:
    """write_crops' arguments that replay the crops of an existing crop folder."""
    try:
        meta = json.loads((folder / "crops.json").read_text())
        data = meta["data"]
        return {"split": meta["split"], "n": len(meta["crops"]), "clip_len": int(meta["clip_len"]),
                "case": meta["case"], "kind": meta["kind"], "data": "" if data.startswith("default:") else data,
                "seed": int(meta["seed"]), "background_mix": meta.get("background_mix", ""),
                "replay": [(int(r["draw"]), int(r["offset"])) for r in meta["crops"]]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--like {folder}: not a crop folder with a readable crops.json ({e})") from None


def _range(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition(",")
    try:
        r = (float(lo), float(hi))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in dB, got {text!r}") from None
    if not sep or r[0] > r[1]:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in dB with LOW <= HIGH, got {text!r}")
    return r


def main(argv: Sequence[str] | None = None) -> int:
    from opgan.data.corrupt import REVERB_TARGETS

    ap = argparse.ArgumentParser(prog="python -m opgan.ladder", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("crops", help="write a folder of fixed (corrupted, clean) crops")
    c.add_argument("out", type=Path, help="new folder (clean/, corrupted/, crops.json)")
    c.add_argument("--split", default="train", choices=["train", "val", "test"])
    c.add_argument("--n", type=int, default=8, help="number of crops")
    c.add_argument("--clip-len", type=int, default=4096)
    c.add_argument("--case", default="all", help="one corruption case (awgn, background, reverb, blend, light, "
                                                 "clean) or 'all' (the paper's mixture)")
    c.add_argument("--kind", default="speech", choices=["speech", "music"])
    c.add_argument("--data", default="", help="sources root ('' = the shipped recordings)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--si-sdr", type=_range, default=None, metavar="LOW,HIGH", help="keep crops whose input SI-SDR "
                   "lies in this range (dB)")
    c.add_argument("--min-rms-db", type=float, default=-40.0, help="skip crops whose clean RMS is below this (dBFS)")
    c.add_argument("--reverb-target", default="dry", choices=REVERB_TARGETS,
                   help="target of reverberant segments: dry, or keeping the RIR's first 50 ms of reflections")
    c.add_argument("--background-mix", default="", metavar="KIND:W,...",
                   help="draw the background's kind by weight (ambience, speech, music, synthetic), e.g. ambience:1")
    c.add_argument("--like", type=Path, default=None, metavar="FOLDER",
                   help="write the same crops as this crop folder (its split, case, data, seed, length, draws and "
                        "offsets from its crops.json; no filter), e.g. with another --reverb-target")
    g = sub.add_parser("gap", help="score a run's checkpoint on training crops and on validation crops (gap.json)")
    g.add_argument("run", type=Path, help="a run folder (holds best.pt)")
    g.add_argument("--train", type=Path, required=True, help="crop folder of training crops (`crops --split train`)")
    g.add_argument("--val", type=Path, required=True, help="crop folder of validation crops")
    g.add_argument("--checkpoint", default="best.pt")
    g.add_argument("--out", default="gap.json", help="record's name in the run folder (gap*.json), e.g. "
                   "gap-early.json for a second pair of folders")
    sc = sub.add_parser("score", help="score a model on a built split: SDR / SI-SDR gains by input SDR, output level "
                        "and the silent floor, and for a mask model its last hidden layer's saturated units (JSON "
                        "on standard output)")
    sc.add_argument("model", help="'speech', 'music' or a checkpoint path")
    sc.add_argument("data", type=Path, help="a folder written by opgan build (or by crops, with --split train)")
    sc.add_argument("--split", default="test", choices=["train", "val", "test"])
    sc.add_argument("--every", type=int, default=1, help="score every n-th clip (default: all)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cmd == "score":
        try:
            rec = score(args.model, args.data, args.split, args.every)
        except Exception as e:  # bad paths, checkpoints or folders: one line, exit 2
            print(f"opgan.ladder: {e}", file=sys.stderr)
            return 2
        print(json.dumps(rec, indent=1))
        return 0
    if args.cmd == "gap":
        try:
            rec = gap(args.run, args.train, args.val, args.checkpoint, args.out)
        except Exception as e:  # bad paths or checkpoints: one line, exit 2
            print(f"opgan.ladder: {e}", file=sys.stderr)
            return 2
        log.info("%s: SI-SDRi %+.2f dB on training crops, %+.2f dB on validation crops (gap %+.2f)", args.run,
                 rec["train"]["si_sdr_gain"], rec["val"]["si_sdr_gain"], rec["si_sdr_gain_gap"])
        return 0
    try:
        if args.like is not None:
            rows = write_crops(args.out, reverb_target=args.reverb_target, **_like(args.like))
        else:
            rows = write_crops(args.out, args.split, args.n, args.clip_len, args.case, args.kind, args.data,
                               args.seed, args.si_sdr, args.min_rms_db, reverb_target=args.reverb_target,
                               background_mix=args.background_mix)
    except (ValueError, FileExistsError, FileNotFoundError, OSError) as e:
        print(f"opgan.ladder: {e}", file=sys.stderr)
        return 2
    si = [r["input_si_sdr"] for r in rows]
    finite = [v for v in si if np.isfinite(v)]  # a crop the artifact's segment missed is its own clean (+inf)
    log.info("%s: %d crops, input SI-SDR %.1f..%.1f dB (mean of the %d finite: %.1f)", args.out, len(rows),
             min(si), max(si), len(finite), float(np.mean(finite)) if finite else float("nan"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
