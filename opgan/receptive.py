"""How far a generator hears, what it costs: effective receptive field, parameters, MACs, CPU ms per step.

    python -m opgan.receptive paper                       # the paper's generator (f=16, q=3)
    python -m opgan.receptive default context speech      # presets side by side, and a shipped model
    python -m opgan.receptive "default:context=dilated,context_width=32" runs/x/best.pt
    python -m opgan.receptive default default:arch=demucs   # the ladder's reference model beside the U-Net

A model is a preset name, ``PRESET:field=value,...`` (TrainConfig fields), a shipped model name or a
checkpoint path. Columns:

* ``rf90`` / ``rf99``: the radius around one output sample (the middle of a noise input) that holds
  90 % / 99 % of the energy of that sample's gradient with respect to the input, in samples and in ms at
  the model's rate. It is what the model listens to, not what it could: a residual model is measured
  on its correction (output minus input), and an untrained model's zero-initialised layers get their
  default random init first (else its correction, and so its gradient, is zero).
* ``support``: the radius where that gradient is non-zero at all, with random weights and without the
  InstanceNorms and the clip gate (which add only whole-clip statistics): the architecture's reach
  ("whole clip" for a model with a recurrent layer, such as the ladder's Demucs reference: ``arch=demucs``).
* ``MMAC/s``: multiply-adds per second of audio of one forward pass (every convolution, matrix product and
  LSTM torch runs, Self-ONN power stacks included).
* ``ms/step``: CPU forward + backward of an L1 loss at batch 8 x 4096 samples on one thread, the median
  of the timed steps; models are timed in turn so a busy machine slows them alike.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["Profile", "energy_radius", "gradient_energy", "support_radius", "count_macs", "step_ms", "profile", "main"]

log = logging.getLogger(__name__)


@dataclass
class Profile:
    """One model's numbers (radii in input samples)."""

    name: str
    rate: int
    params: int
    rf90: float
    rf99: float
    support: int
    macs_per_s: float
    ms_per_step: float = float("nan")


def _correction(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    residual = bool(getattr(getattr(model, "config", None), "residual", False))
    return (lambda x: model(x) - x) if residual else model


def gradient_energy(model: nn.Module, length: int, batch: int = 4, seed: int = 0,
                    dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Squared gradient of output sample ``length // 2`` (a residual model's correction) with respect to
    every input sample, summed over a batch of white-noise inputs at 0.1 RMS: shape (length,)."""
    x = (0.1 * torch.randn(batch, 1, length, generator=torch.Generator().manual_seed(seed))).to(dtype)
    x.requires_grad_(True)
    y = _correction(model)(x)
    y[:, 0, length // 2].sum().backward()
    return x.grad.detach().double().square().sum(0)[0].numpy()


def energy_radius(energy: np.ndarray, share: float, centre: int | None = None) -> int:
    """The smallest r such that samples centre-r..centre+r hold ``share`` of the total energy."""
    centre = len(energy) // 2 if centre is None else centre
    total = energy.sum()
    if not total > 0:
        raise ValueError("the gradient is zero everywhere (a model whose correction is zero)")
    for r in range(len(energy)):
        if energy[max(0, centre - r): centre + r + 1].sum() >= share * total:
            return r
    return len(energy)


def _randomised(model: nn.Module, structural: bool) -> nn.Module:
    """A copy whose all-zero parameters (zero-initialised outputs) get their default init; with
    ``structural`` every parameter is re-drawn and the InstanceNorms and clip gate are taken out."""
    probe = copy.deepcopy(model)
    torch.manual_seed(0)
    for m in probe.modules():
        own = list(m.parameters(recurse=False))
        if own and hasattr(m, "reset_parameters") and (structural or all(not p.any() for p in own)):
            m.reset_parameters()
    if structural:
        for name, m in list(probe.named_modules()):
            for child_name, child in list(m.named_children()):
                if isinstance(child, (nn.InstanceNorm1d, nn.GroupNorm, nn.LayerNorm)):
                    setattr(m, child_name, nn.Identity())
        if getattr(probe, "gate", None) is not None:
            probe.gate = None  # y = x + out(h): the per-clip statistics only add whole-clip terms
    return probe


def support_radius(model: nn.Module, length: int) -> int:
    """Largest distance from the middle output sample at which the input gradient is non-zero, with
    random weights, in float64 (outside the reach of the convolutions it is exactly zero). The length
    doubles until the support stays clear of the edges. -1: a model that hears the whole clip (one that says
    ``unbounded_reach``, e.g. through a recurrent layer) has no such radius."""
    if getattr(model, "unbounded_reach", False):
        return -1
    probe = _randomised(model, structural=True).double()
    while True:
        e = gradient_energy(probe, length, batch=1, dtype=torch.float64)
        nz = np.flatnonzero(e > 0)
        r = int(max(length // 2 - nz.min(), nz.max() - length // 2))
        if nz.min() > 0 and nz.max() < length - 1:
            return r
        length *= 2


#: CPU LSTMs (the Demucs reference's) run as this fused op, not as matrix products
_MKLDNN_RNN_LAYER = getattr(torch.ops.aten, "mkldnn_rnn_layer", None)
_MKLDNN_RNN_LAYER = getattr(_MKLDNN_RNN_LAYER, "default", None)


def count_macs(model: nn.Module, length: int) -> int:
    """Multiply-adds of one forward on a (1, 1, length) input: every aten convolution, matrix product and
    fused CPU LSTM layer (its input and recurrent products at every time step)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    import selfonn

    total = [0]
    aten = torch.ops.aten

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is aten.convolution.default:
                inp, w, transposed, groups = args[0], args[1], args[6], args[8]
                k = int(np.prod(w.shape[2:]))
                if transposed:  # weight (in, out/groups, k): every input sample meets out/groups * k taps
                    total[0] += inp.numel() * w.shape[1] * k
                else:  # weight (out, in/groups, k)
                    total[0] += out.numel() * w.shape[1] * k
            elif func is _MKLDNN_RNN_LAYER:  # one direction of one LSTM layer on CPU (input (T, B, in) or (B, T, in))
                inp, w_ih, w_hh = args[0], args[1], args[2]
                total[0] += inp.numel() // inp.shape[-1] * (w_ih.numel() + w_hh.numel())
            elif func in (aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default):
                a = args[1] if func in (aten.addmm.default, aten.baddbmm.default) else args[0]
                total[0] += out.numel() * a.shape[-1]
            return out

    with torch.no_grad(), selfonn.use_backend("torch"), Count():
        model(torch.zeros(1, 1, length))
    return total[0]


def step_ms(models: Sequence[nn.Module], batch: int = 8, length: int = 4096, steps: int = 10,
            warmup: int = 2) -> list[float]:
    """Median CPU ms of forward + backward (L1 to a fixed target) per model, one thread, timed in turn."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        x, target = 0.1 * torch.randn(batch, 1, length, generator=g), 0.1 * torch.randn(batch, 1, length, generator=g)
        times: list[list[float]] = [[] for _ in models]
        for i in range(warmup + steps):
            for j, m in enumerate(models):
                m.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                (m(x) - target).abs().mean().backward()
                if i >= warmup:
                    times[j].append(1000 * (time.perf_counter() - t0))
        return [statistics.median(t) for t in times]
    finally:
        torch.set_num_threads(threads)


def profile(name: str, model: nn.Module, rate: int, length: int = 16384, trained: bool = False) -> Profile:
    """Receptive field, size and MACs of ``model`` (timing is separate: see `step_ms`)."""
    mult = getattr(model, "length_multiple", 1)
    length = -(-length // mult) * mult
    model = model.float().eval()
    measured = model if trained else _randomised(model, structural=False)
    e = gradient_energy(measured, length)
    per_s = -(-rate // mult) * mult
    return Profile(
        name=name, rate=rate, params=sum(p.numel() for p in model.parameters()),
        rf90=energy_radius(e, 0.90), rf99=energy_radius(e, 0.99), support=support_radius(model, length),
        macs_per_s=count_macs(model, per_s) * rate / per_s,
    )


def _load(spec: str) -> tuple[nn.Module, int, bool]:
    """(generator, sample rate, trained?) of a preset[:field=value,...], a shipped model or a checkpoint."""
    from opgan.config import PRESETS, TrainConfig, preset
    from opgan.models import build_generator

    head, _, sets = spec.partition(":")
    if head in PRESETS:
        base = preset(head).to_dict()
        for item in filter(None, sets.split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"{spec!r}: expected PRESET:field=value,..., got {item!r}")
            base[key.strip().replace("-", "_")] = value.strip()
        cfg = TrainConfig.from_dict(base)
        torch.manual_seed(cfg.seed)  # an untrained model's numbers are one draw of its init: make it repeatable
        return build_generator(cfg.generator_config()), cfg.sample_rate or 16000, False
    if head in ("speech", "music") or Path(spec).expanduser().is_file():
        from opgan.enhance import load_restorer

        r = load_restorer(spec)
        if r.second is not None:
            raise ValueError(f"{spec!r} is a two-pass model; profile its passes' checkpoints one at a time")
        return r.generator, int(r.sample_rate), True
    raise ValueError(f"{spec!r} is neither a preset ({', '.join(PRESETS)}), a shipped model nor a checkpoint file")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m opgan.receptive", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="preset[:field=value,...], shipped model name, or checkpoint path")
    ap.add_argument("--length", type=int, default=16384, help="noise input length for the gradient (samples)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per model (0: no timing)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=4096, help="training crop length for the timing")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as a record (a new file; "
                    "docs/results/receptive.json is the one `python -m opgan.tables` renders)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = ap.parse_args(argv)
    if args.json is not None and args.json.exists() and not args.overwrite:
        print(f"opgan.receptive: {args.json} exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        loaded = [(spec, *_load(spec)) for spec in args.models]
    except Exception as e:  # bad user input: one line, exit 2
        print(f"opgan.receptive: {e}", file=sys.stderr)
        return 2
    rows = [profile(spec, m, rate, args.length, trained) for spec, m, rate, trained in loaded]
    if args.steps > 0:
        for row, t in zip(rows, step_ms([m.train() for _, m, _, _ in loaded], args.batch, args.crop, args.steps)):
            row.ms_per_step = t
    from opgan.tables import receptive_rows

    print(receptive_rows([asdict(r) for r in rows]))
    if args.json is not None:
        import os
        import platform
        from datetime import date

        rec = {"command": "python -m opgan.receptive " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])
                                                                   if a != "--overwrite"),
               "batch": args.batch, "crop": args.crop, "steps": args.steps, "length": args.length,
               "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores", "load_avg": os.getloadavg()[0],
               "torch": torch.__version__, "date": date.today().isoformat(), "rows": [asdict(r) for r in rows]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rec, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
