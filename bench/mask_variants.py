"""Can a change at inference time, with the same weights, move a mask model's output level or its gains?

The spectral models leave their output 2.7 to 3.0 dB above the clean's level (the reverberation and the
background they keep), which plain SDR counts as error. Before training for it, this script measures the
changes a user could make without training, on built test sets, one clip at a time as
`opgan.enhance.enhance_clips` runs it (peak-normalised):

    shipped     the model as it is
    shifts2     the mean of two passes whose STFT frames are offset by half a hop (the "shift trick" of
                waveform separators: it averages out where the frame grid falls)
    sharpen1.5  every mask value below one raised to the power 1.5 (suppresses more where the model already
                suppresses; values above one are kept)
    nolift      the mask capped at one (the model may lift a bin up to 1.2; this removes the lift)
    twice       the model run again on its own output

    python bench/mask_variants.py --model speech --sets datasets/prompts datasets/sentences \\
        --json docs/results/mask-variants-speech.json

Reported per set and variant: mean SDRi and SI-SDRi, the output level against the clean, the light
inputs' (input SDR >= 15 dB) mean and worst SDRi, and SDRi / SI-SDRi per corruption case.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

VARIANTS = ("shipped", "shifts2", "sharpen1.5", "nolift", "twice")

MaskFn = Callable[[torch.Tensor], torch.Tensor]


def with_mask(generator: torch.nn.Module, x: torch.Tensor, transform: MaskFn) -> torch.Tensor:
    """`SpectralGenerator.forward` of (B, 1, T) with `transform` applied to the mask (no clip gate)."""
    if getattr(generator, "gate", None) is not None:
        raise ValueError("with_mask: models with a clip gate are not supported")
    c = generator.config
    spec = generator._stft(x[:, 0])
    m, h = generator._mask(x, spec)
    y = torch.istft(generator._filter(spec, transform(m), h), c.n_fft, c.hop, window=generator._window(x),
                    center=True, length=x.shape[-1])
    return y.unsqueeze(1).to(x.dtype)


class _Masked(torch.nn.Module):
    """A generator whose mask goes through `transform`: what `enhance_clips` runs for a mask variant."""

    length_multiple = 1

    def __init__(self, generator: torch.nn.Module, transform: MaskFn) -> None:
        super().__init__()
        self.generator, self.transform = generator, transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return with_mask(self.generator, x, self.transform)


def restore(generator: torch.nn.Module, x: torch.Tensor, variant: str) -> torch.Tensor:
    """One clip (1, 1, T) restored by `variant` (see the module docstring)."""
    from opgan.enhance import enhance_clips

    if variant == "shipped":
        return enhance_clips(generator, x)
    if variant == "twice":
        return enhance_clips(generator, enhance_clips(generator, x))
    if variant == "shifts2":
        hop, n = generator.config.hop, x.shape[-1]
        outs = []
        for s in (0, hop // 2):  # the same padded length for both, so both see the same clip RMS
            z = torch.nn.functional.pad(x, (s, hop - s))
            outs.append(enhance_clips(generator, z)[..., s:s + n])
        return torch.stack(outs).mean(0)
    if variant == "sharpen1.5":
        return enhance_clips(_Masked(generator, lambda m: torch.where(m < 1, m.clamp_min(0) ** 1.5, m)), x)
    if variant == "nolift":
        return enhance_clips(_Masked(generator, lambda m: m.clamp_max(1.0)), x)
    raise ValueError(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")


def score_set(generator: torch.nn.Module, folder: Path, variants: tuple[str, ...], split: str = "test") -> dict:
    """Every variant on every clip of one built split, scored by `opgan evaluate`'s own core (its metrics,
    degenerate clips kept out, light inputs as its do-no-harm check): the summary in the module docstring."""
    from opgan.baselines import Method
    from opgan.data import open_dataset
    from opgan.evaluate import clip_refs, do_no_harm, score_clips, summarize_rows

    def method(v: str) -> Method:
        def fn(y: np.ndarray, sr: int) -> np.ndarray:
            with torch.inference_mode():
                return restore(generator, torch.from_numpy(y).view(1, 1, -1), v).reshape(-1).numpy()
        return Method(v, v, fn)

    ds = open_dataset(str(folder), split=split)
    rows = score_clips(ds, clip_refs(ds), [method(v) for v in variants], int(ds.sample_rate), with_stoi=False,
                       with_pesq=False, progress=False, log=lambda msg: None).rows
    by_case, light = summarize_rows(rows, "case"), do_no_harm(rows)["methods"]
    out: dict = {"clips": by_case[variants[0]]["all"]["n"], "variants": {}}
    for v in variants:
        every, lv = by_case[v]["all"], light[v]
        out["variants"][v] = {
            "sdr_gain": every["sdr_imp"], "si_sdr_gain": every["si_sdr_imp"], "level_vs_clean_db": every["level_err_db"],
            "light_clips": lv["n"], "light_sdr_gain_mean": lv["mean_sdr_imp"] if lv["n"] else None,
            "light_sdr_gain_worst": lv["worst_sdr_imp"] if lv["n"] else None,
            "by_case": {c: {"clips": g["n"], "sdr_gain": g["sdr_imp"], "si_sdr_gain": g["si_sdr_imp"]}
                        for c, g in sorted(by_case[v].items()) if c != "all"},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="speech", help="shipped model name or checkpoint (a spectral model)")
    ap.add_argument("--sets", nargs="+", type=Path, required=True, help="built folders (their test split is scored)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    ap.add_argument("--split", default="test")
    ap.add_argument("--json", type=Path, help="write the record here")
    args = ap.parse_args(argv)
    from opgan.enhance import CheckpointError, load_restorer

    variants = tuple(v for v in args.variants.split(",") if v)
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        print(f"mask_variants: unknown variant(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 2
    try:
        restorer = load_restorer(args.model)
    except (CheckpointError, OSError, ValueError) as e:
        print(f"mask_variants: cannot load {args.model}: {e}", file=sys.stderr)
        return 2
    g = restorer.generator
    if not hasattr(g, "_mask") or getattr(g, "gate", None) is not None:
        print(f"mask_variants: {args.model} is not a spectral mask model without a clip gate", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    record: dict = {"command": "python bench/mask_variants.py " + " ".join(sys.argv[1:] if argv is None else argv),
                    "model": str(args.model), "torch": torch.__version__, "machine": platform.machine(), "sets": {}}
    for folder in args.sets:
        try:
            record["sets"][folder.name] = res = score_set(g, folder, variants, args.split)
        except (OSError, ValueError) as e:
            print(f"mask_variants: cannot score {folder}: {e}", file=sys.stderr)
            return 2
        for v, r in res["variants"].items():
            print(f"{folder.name:22s} {v:11s} SDRi {r['sdr_gain']:+.2f} SI-SDRi {r['si_sdr_gain']:+.2f} "
                  f"level {r['level_vs_clean_db']:+.2f} light {r['light_sdr_gain_mean'] or 0:+.2f} / "
                  f"{r['light_sdr_gain_worst'] or 0:+.2f}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
