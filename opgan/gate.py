"""Quality gate: a small fixed set of (corrupted, clean) clips shipped in the repo, with pinned floors
that the shipped restorers must beat in CI.

Why: loading the shipped weights and getting finite audio back says nothing about restoration. The
gate scores each shipped model on clips it never heard (test-split speakers/tracks, rooms and
ambiences), every corruption case at several input-SDR levels, and fails when the mean SDR or
SI-SDR improvement falls below its floor, or when the model harms inputs that were already good
(do no harm). An identity model (0 dB everywhere), an all-silent one (SI-SDR -inf) and a degraded
one all fail; `tests/test_quality_gate.py` proves it.

    opgan gate build --sources ~/.cache/opgan               # (re)build the clip set from test splits
    opgan gate ship speech=training/speech/best.pt          # copy a trained checkpoint into the weights
    opgan gate pin --json docs/results/gate.json            # score the shipped models, pin the floors
    opgan gate score                                        # score them against the pinned floors

Layout: `opgan/assets/gate/<kind>/<id>_{corrupted,clean}.flac` and `opgan/assets/gate/gate.json`
(clips with their case, input SDR and level; floors per kind; how the set was built).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from opgan.metrics import LIGHT_INPUT_SDR_DB

__all__ = ["GATE_DIR", "LEVELS", "Floors", "build_gate", "load_gate", "score_gate", "check_gate", "main"]

GATE_DIR = Path(__file__).resolve().parent / "assets" / "gate"
CASES = ("blend", "awgn", "background", "reverb")
#: input-SDR levels of the clip set: name -> [lo, hi) dB. "light" inputs must not be harmed.
LEVELS: dict[str, tuple[float, float]] = {"heavy": (-math.inf, 5.0), "mid": (5.0, LIGHT_INPUT_SDR_DB),
                                          "light": (LIGHT_INPUT_SDR_DB, math.inf)}
#: floors never go below these, so an identity model (0 dB improvement) always fails the gate
MIN_SDRI_DB = 0.25
MIN_SI_SDRI_DB = 0.25
#: do-no-harm targets on light inputs: mean SDRi >= -0.5 dB, no clip below -3 dB. A model that meets
#: them is held to them; one that does not is held to what it measured (minus the margin), but never
#: below the hard limits, which an attenuating or noisy model cannot reach.
LIGHT_MEAN_FLOOR_DB = -0.5
LIGHT_WORST_FLOOR_DB = -3.0
LIGHT_MEAN_HARD_MIN_DB = -3.0
LIGHT_WORST_HARD_MIN_DB = -15.0
#: pinned floors sit this far below the measured value (runs are deterministic; the margin absorbs
#: BLAS/platform differences and small retraining noise without letting a regression through)
PIN_MARGIN_DB = 0.3


@dataclass
class Floors:
    """What a model must reach on one kind's gate clips (means over the clips)."""

    sdri: float
    si_sdri: float
    light_mean_sdri: float = LIGHT_MEAN_FLOOR_DB
    light_worst_sdri: float = LIGHT_WORST_FLOOR_DB


def pin_floors(scores: dict[str, float]) -> Floors:
    """Floors for a model that measured `scores`: PIN_MARGIN_DB below them, never below the limits that
    make an identity model fail (SDRi, SI-SDRi) or let an attenuating one through (light inputs), and
    never looser than the do-no-harm targets when the model meets them."""
    def pin(value: float, target: float, hard_min: float) -> float:
        return max(hard_min, min(target, round(value - PIN_MARGIN_DB, 2)))

    return Floors(sdri=max(MIN_SDRI_DB, round(scores["sdri"] - PIN_MARGIN_DB, 2)),
                  si_sdri=max(MIN_SI_SDRI_DB, round(scores["si_sdri"] - PIN_MARGIN_DB, 2)),
                  light_mean_sdri=pin(scores["light_mean_sdri"], LIGHT_MEAN_FLOOR_DB, LIGHT_MEAN_HARD_MIN_DB),
                  light_worst_sdri=pin(scores["light_worst_sdri"], LIGHT_WORST_FLOOR_DB, LIGHT_WORST_HARD_MIN_DB))


def _level_of(sdr_in: float) -> str | None:
    for name, (lo, hi) in LEVELS.items():
        if lo <= sdr_in < hi:
            return name
    return None


def build_gate(kind: str, sources: str | Path, out: Path = GATE_DIR, per_cell: int = 2, seed: int = 20261127,
               max_draws: int = 3000, log: Callable[[str], None] = lambda m: None) -> list[dict]:
    """Draw test-split clips until every (case, level) cell holds `per_cell` clips (or draws run out:
    reverb alone never yields a light input) and write them as 16-bit FLAC pairs under out/kind."""
    from opgan.data.assets import default_rirs
    from opgan.data.datasets import default_dynamic_dataset
    from opgan.data.audio import save_audio
    from opgan.metrics import sdr

    ds = default_dynamic_dataset(kind, "test", length=max_draws, seed=seed, root=sources, rir_bank=default_rirs())
    cells: dict[tuple[str, str], list[dict]] = {(c, lv): [] for c in CASES for lv in LEVELS}
    folder = out / kind
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.flac"):
        old.unlink()
    for i in range(max_draws):
        if all(len(v) >= per_cell for (c, lv), v in cells.items() if not (c == "reverb" and lv == "light")):
            break
        y, x, rec = ds.sample(i)
        # Quantise first, so the stored pair is exactly what the gate scores.
        y, x = _pcm16(y), _pcm16(x)
        sdr_in = sdr(y, x)
        level = _level_of(sdr_in)
        cell = cells.get((rec["case"], level)) if level else None
        if cell is None or len(cell) >= per_cell:
            continue
        cid = f"{kind}_{rec['case']}_{level}_{len(cell)}"
        save_audio(folder / f"{cid}_corrupted.flac", y, ds.sample_rate, subtype="PCM_16", overwrite=True)
        save_audio(folder / f"{cid}_clean.flac", x, ds.sample_rate, subtype="PCM_16", overwrite=True)
        cell.append({"id": cid, "kind": kind, "case": rec["case"], "level": level, "sdr_in": round(sdr_in, 3),
                     "artifacts": rec["artifacts"], "source": rec.get("source", "")})
        log(f"{cid}: input SDR {sdr_in:+.2f} dB ({rec['artifacts']}, {rec.get('source', '')})")
    return [c for cell in cells.values() for c in cell]


def _pcm16(x: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(x, -1.0, 32767 / 32768) * 32768) / 32768).astype(np.float32)


def load_gate(path: Path = GATE_DIR) -> dict[str, Any]:
    """gate.json with each clip's audio attached as `corrupted` / `clean` arrays and its `sample_rate`."""
    from opgan.data.assets import require_asset
    from opgan.data.audio import load_mono

    if path == GATE_DIR:
        require_asset(path / "gate.json", "the quality-gate clips")
    meta = json.loads((path / "gate.json").read_text())
    for clip in meta["clips"]:
        folder = path / clip["kind"]
        clip["corrupted"], clip["sample_rate"] = load_mono(folder / f"{clip['id']}_corrupted.flac")
        clip["clean"], _ = load_mono(folder / f"{clip['id']}_clean.flac")
    return meta


def score_gate(restore: Callable[[np.ndarray, int], np.ndarray], clips: Sequence[dict]) -> dict[str, float]:
    """Mean SDRi / SI-SDRi, output level and do-no-harm figures of `restore(corrupted, sr)` on `clips`."""
    from opgan.metrics import level_db, sdr, si_sdr

    sdri, si_sdri, level, light = [], [], [], []
    for clip in clips:
        y, x, sr = clip["corrupted"], clip["clean"], clip["sample_rate"]
        est = np.asarray(restore(y, sr), dtype=np.float64)
        if est.shape != y.shape or not np.all(np.isfinite(est)):
            raise ValueError(f"{clip['id']}: restorer returned shape {est.shape} or non-finite samples")
        gain = sdr(est, x) - sdr(y, x)
        sdri.append(gain)
        si_sdri.append(si_sdr(est, x) - si_sdr(y, x))
        level.append(level_db(est, x))
        if clip["level"] == "light":
            light.append(gain)
    return {"clips": float(len(clips)), "sdri": float(np.mean(sdri)), "si_sdri": float(np.mean(si_sdri)),
            "level_db": float(np.mean(level)), "light_clips": float(len(light)),
            "light_mean_sdri": float(np.mean(light)) if light else math.nan,
            "light_worst_sdri": float(np.min(light)) if light else math.nan}


def check_gate(scores: dict[str, float], floors: Floors) -> list[str]:
    """The floors a score misses, one readable line each (empty = the gate passes)."""
    fails = []
    for key, floor in (("sdri", floors.sdri), ("si_sdri", floors.si_sdri),
                       ("light_mean_sdri", floors.light_mean_sdri), ("light_worst_sdri", floors.light_worst_sdri)):
        value = scores[key]
        if not value >= floor:  # nan and -inf fail too
            fails.append(f"{key} {value:+.2f} dB is below its floor {floor:+.2f} dB")
    return fails


def _restorer_fn(model: str) -> Callable[[np.ndarray, int], np.ndarray]:
    from opgan.enhance import enhance_signal, load_restorer

    r = load_restorer(model)

    def restore(y: np.ndarray, sr: int) -> np.ndarray:
        if sr != r.sample_rate:
            raise ValueError(f"gate clip at {sr} Hz, model at {r.sample_rate} Hz")
        return enhance_signal(r, y)  # the 32000-sample windows `opgan restore` uses

    return restore


def _table(scores: dict[str, dict[str, float]], floors: dict[str, Floors] | None) -> str:
    lines = ["| kind | clips | SDRi | SI-SDRi | level dB | light mean SDRi | light worst SDRi |",
             "|---|---|---|---|---|---|---|"]
    for kind, s in scores.items():
        f = floors.get(kind) if floors else None
        cell = (lambda k, v: f"{v:+.2f}" + (f" (floor {getattr(f, k):+.2f})" if f is not None else ""))
        lines.append(f"| {kind} | {s['clips']:.0f} | {cell('sdri', s['sdri'])} | {cell('si_sdri', s['si_sdri'])} | "
                     f"{s['level_db']:+.2f} | {cell('light_mean_sdri', s['light_mean_sdri'])} | "
                     f"{cell('light_worst_sdri', s['light_worst_sdri'])} |")
    return "\n".join(lines)


def floors_from(meta: dict[str, Any]) -> dict[str, Floors]:
    return {kind: Floors(**f) for kind, f in meta.get("floors", {}).items()}


EXAMPLES = """examples:
  opgan gate score                                        # score the shipped models against the pinned floors
  opgan gate score --models speech=runs/speech/best.pt    # a trained checkpoint against the speech floors
  opgan gate build --sources ~/.cache/opgan               # (re)build the clip set from test splits
  opgan gate ship speech=runs/speech/best.pt              # copy a trained checkpoint into the weights
  opgan gate pin --json docs/results/gate.json            # score the shipped models, pin the floors
"""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="opgan gate", description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: the cores not already busy, at least 1)")
    common.add_argument("--quiet", action="store_true", help="no per-clip lines (the table and failures still print)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", parents=[common], help="(re)build the clip set from a sources root's test splits")
    b.add_argument("--sources", type=Path, required=True, help="a sources root (opgan fetch cache)")
    b.add_argument("--per-cell", type=int, default=2, help="clips per (case, input-SDR level)")
    sh = sub.add_parser("ship", help="copy trained checkpoints into the shipped weights (restorer fields only)")
    sh.add_argument("pairs", nargs="+", metavar="KIND=CHECKPOINT", help="e.g. speech=training/speech/best.pt")
    for name in ("score", "pin"):
        p = sub.add_parser(name, parents=[common], help="score the shipped models" if name == "score" else
                           "score the shipped models and write floors (measured - margin) into gate.json")
        p.add_argument("--models", default="speech,music", help="kind=model pairs or kinds (shipped names)")
        p.add_argument("--json", type=Path, default=None, help="also write the scores and floors here "
                       "(docs/results/gate.json is what README's gate table is generated from)")
    args = ap.parse_args(argv)
    from opgan.checkpoint import CheckpointError
    from opgan.data.audio import AudioError

    try:
        threads = getattr(args, "threads", None)
        if threads is not None and threads < 1:
            raise ValueError("--threads must be >= 1")
        import torch

        from opgan.device import cpu_threads

        torch.set_num_threads(threads or cpu_threads())
        return _run(args)
    except (OSError, ValueError, AudioError, CheckpointError) as e:  # one line, never a traceback
        print(f"opgan gate: {e}", file=sys.stderr)
        return 2


#: what a shipped checkpoint keeps (opgan.enhance.load_restorer reads these); no optimiser state
_SHIPPED_KEYS = ("format", "config", "generator", "second_pass", "sample_rate", "metrics", "step")
#: config fields that name places on the training machine: not shipped
_LOCAL_FIELDS = ("data", "val_data", "rirs", "runs_dir", "data_root", "init_from", "second_pass_of")


def ship(kind: str, checkpoint: str | Path, weights_dir: Path = GATE_DIR.parent / "weights") -> Path:
    """Write `checkpoint`'s restorer part to the shipped weights `<weights_dir>/<kind>.pt`."""
    from opgan.checkpoint import load_checkpoint, save_checkpoint, shown_path

    ckpt = load_checkpoint(checkpoint)
    out = {k: ckpt[k] for k in _SHIPPED_KEYS if k in ckpt}
    out["config"] = {k: ("" if k in _LOCAL_FIELDS else v) for k, v in ckpt["config"].items()}
    out["config"]["trained_from"] = f"{shown_path(Path(checkpoint).parent)} (opgan fetch sources), step {ckpt.get('step')}"
    path = weights_dir / f"{kind}.pt"
    save_checkpoint(path, out)
    return path


def _run(args: argparse.Namespace) -> int:
    meta_path = GATE_DIR / "gate.json"
    if args.cmd == "ship":
        for pair in args.pairs:
            kind, sep, ckpt = pair.partition("=")
            if not sep or kind not in ("speech", "music"):
                raise ValueError(f"expected speech=CHECKPOINT or music=CHECKPOINT, got {pair!r}")
            print(f"{kind}: {ckpt} -> {ship(kind, ckpt)}; now run `opgan gate pin`")
        return 0
    if args.cmd == "build":
        if not Path(args.sources).is_dir():
            raise ValueError(f"--sources {args.sources}: no such folder (run `opgan fetch` first)")
        clips = []
        for kind in ("speech", "music"):
            clips += build_gate(kind, args.sources, per_cell=args.per_cell,
                                log=(lambda m: None) if args.quiet else print)
        meta = {"built_from": "test splits of `opgan fetch`'s sources, shipped 16 kHz RIR bank (test rooms)",
                "command": f"python -m opgan.gate build --sources {args.sources} --per-cell {args.per_cell}",
                "levels": {k: list(v) for k, v in LEVELS.items()},
                "clips": clips, "floors": {}}
        meta_path.write_text(json.dumps(meta, indent=1, default=str) + "\n")
        print(f"{len(clips)} clips -> {GATE_DIR}; now run `opgan gate ship ...` and `opgan gate pin`")
        return 0
    meta = load_gate()
    models = dict(p.split("=", 1) if "=" in p else (p, p) for p in args.models.split(","))
    scores = {kind: score_gate(_restorer_fn(model), [c for c in meta["clips"] if c["kind"] == kind])
              for kind, model in models.items()}
    if args.cmd == "pin":
        raw = json.loads(meta_path.read_text())
        for kind, s in scores.items():
            raw["floors"][kind] = pin_floors(s).__dict__
        meta_path.write_text(json.dumps(raw, indent=1) + "\n")
        meta["floors"] = raw["floors"]
    floors = floors_from(meta)
    print(_table(scores, floors))
    if args.json:
        record = {"command": f"opgan gate {args.cmd} --models {args.models} --json {args.json}",
                  "scores": scores, "floors": {k: f.__dict__ for k, f in floors.items()}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    fails = [f"{kind}: {msg}" for kind, s in scores.items() if kind in floors for msg in check_gate(s, floors[kind])]
    for msg in fails:
        print(f"gate: {msg}", file=sys.stderr)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
