"""An exponential moving average of the generator's weights (Polyak averaging), kept beside training.

A run's validation swings from one check to the next by more than many changes gain (a few tenths of a
dB, and several dB on its worst light clip): each check reads the weights of one step, noise of the last
few updates included. The average over the last ~1/(1-decay) steps reads that noise out without changing
what is trained: the optimiser steps the raw weights, and the average only follows them.
"""
from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import CheckpointError, check_state

__all__ = ["WeightAverage"]

#: Steps the average spends warming up: its decay is min(decay, (1 + n) / (WARMUP + n)) after n updates,
#: so a fresh average follows the weights closely at first instead of holding on to the initial ones.
WARMUP = 10


@dataclass
class _Binding:
    """The averaged and the source tensors of one source module, matched by name: floating point ones
    (averaged) and the rest (copied)."""

    source: weakref.ref
    avg_floats: list[torch.Tensor]
    src_floats: list[torch.Tensor]
    avg_others: list[torch.Tensor]
    src_others: list[torch.Tensor]


class WeightAverage:
    """EMA of a module's floating-point parameters and buffers (other buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._binding: _Binding | None = None

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (WARMUP + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model``'s current weights."""
        d = self.current_decay()
        self.updates += 1
        b = self._bind(model)
        if b.avg_floats:
            src = [s if s.dtype == a.dtype else s.to(a.dtype) for a, s in zip(b.avg_floats, b.src_floats)]
            torch._foreach_lerp_(b.avg_floats, src, 1.0 - d)
        for a, s in zip(b.avg_others, b.src_others):
            a.copy_(s)

    def _bind(self, model: nn.Module) -> _Binding:
        """Match the tensors by name once per source module instead of on every step (two state dicts a step
        are host time beside a short GPU step). Both modules' tensors are updated in place (the optimiser,
        `load_state_dict`); a module moved with `.to()` gets new buffers, so an average is made after its
        model is placed, as the trainer does."""
        if self._binding is None or self._binding.source() is not model:
            avg, src = self.model.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
            floats = [k for k, v in avg.items() if v.is_floating_point()]
            others = [k for k, v in avg.items() if not v.is_floating_point()]
            self._binding = _Binding(weakref.ref(model), [avg[k] for k in floats], [src[k] for k in floats],
                                     [avg[k] for k in others], [src[k] for k in others])
        return self._binding

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "weights": self.model.state_dict()}

    def load(self, state: Any, where: Path | str) -> None:
        """Restore a saved average (from last.pt), checked against this model's shapes first."""
        if not isinstance(state, dict) or not isinstance(state.get("updates"), int) or state["updates"] < 0:
            raise CheckpointError(f"'{where}': its weight average ('ema') is malformed")
        weights = check_state(state.get("weights"), self.model.state_dict(), where, "ema")
        self.model.load_state_dict(weights)
        self.updates = state["updates"]
