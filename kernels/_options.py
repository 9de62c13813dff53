"""Settings of the fused kernels' host side: one frozen :class:`Options` value, set with :func:`options`.

Every setting a launcher reads (which kernel family a layer takes, how grad_W splits its reduction,
what the tuner times) lives in one immutable value. Benchmarks and tests change it for a block::

    from selfonn import kernels
    with kernels.options(thin=False, dw_tiles="concat"):
        ...  # single-channel layers on the GEMM kernels, grad_W on concat-channel tiles

The current value is process-wide (not per thread), like ``torch.backends`` flags. Launch plans are
kept per options value (:func:`selfonn.kernels.selfonn_conv`), so a call under other options never
replays launches recorded under the defaults, and no per-call key carries the settings themselves.
This module imports neither torch nor Triton.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace

__all__ = ["Options", "get_options", "options"]

_TILE_KINDS = ("tuned", "pow", "concat")


@dataclass(frozen=True)
class Options:
    """The fused kernels' host-side settings (defaults: what ships).

    * ``thin``: bandwidth kernels for single-channel layers (``C_in = 1`` or ``C_out = 1``, groups 1);
      False sends them to the GEMM kernels.
    * ``plans``: replay the launches a call signature recorded (compiled launches only).
    * ``thin_split_bwd``: the single-channel backward in two launches (dx on the thin kernel, grad_W on
      the grad_W kernel) or one; ``"tuned"`` times both on a shape's first GPU call and keeps the faster.
    * ``thin_bwd_tap_loop``: that backward's dx taps in a loop (fewer registers) instead of unrolled.
    * ``dual_one_pass``: grad_x on the GEMM kernels with every power's accumulator in one pass (q <= 3).
    * ``fwd_transposed``: the GEMM forward as the transposed product (weights first, the powered input
      tile second), so wgmma reads both operands from shared memory: with the powered tile in
      registers ptxas serialises every wgmma of the forward (its C7515 notice, offline for sm_90).
    * ``dw_tiles``: grad_W tile kind for groups 1 and q = 2, 3: ``"pow"`` (x loaded once a step for all
      powers), ``"concat"`` (one concat channel per column) or ``"tuned"`` (both timed, the faster kept).
    * ``wide_offsets``: 64-bit element offsets everywhere (else only where 32 bits do not fit).
    * ``pack_min_macs``: repack W tap-major for the GEMM kernels from this many multiply-adds a call.
    * ``dw_programs_per_sm``, ``dw_min_steps``: grad_W's split of its (batch, time) reduction: this many
      programs per SM, never fewer than this many steps a program.
    * ``dw_split_steps``, ``dw_split_divs``: the split variants the tuner also times (lower step floors
      where the floor bounds the split; 1/k as many splits where the SM count does).
    * ``tail_max_splits``, ``tail_elements``: partials the last program of a split grad_W tile sums per
      load (at most this many splits, at most this many values).
    """

    thin: bool = True
    plans: bool = True
    thin_split_bwd: bool | str = "tuned"
    thin_bwd_tap_loop: bool = True
    dual_one_pass: bool = True
    fwd_transposed: bool = False
    dw_tiles: str = "tuned"
    wide_offsets: bool = False
    pack_min_macs: int = 1 << 27
    dw_programs_per_sm: int = 2
    dw_min_steps: int = 4
    dw_split_steps: tuple[int, ...] = (2, 1)
    dw_split_divs: tuple[int, ...] = (2, 4)
    tail_max_splits: int = 32
    tail_elements: int = 8192

    def __post_init__(self) -> None:
        for name in ("thin", "plans", "thin_bwd_tap_loop", "dual_one_pass", "fwd_transposed", "wide_offsets"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not (isinstance(self.thin_split_bwd, bool) or self.thin_split_bwd == "tuned"):
            raise ValueError(f"thin_split_bwd must be True, False or 'tuned', got {self.thin_split_bwd!r}")
        if self.dw_tiles not in _TILE_KINDS:
            raise ValueError(f"dw_tiles must be one of {_TILE_KINDS}, got {self.dw_tiles!r}")
        for name, lo in (("pack_min_macs", 0), ("dw_programs_per_sm", 1), ("dw_min_steps", 1),
                         ("tail_max_splits", 1), ("tail_elements", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        for name in ("dw_split_steps", "dw_split_divs"):
            v = getattr(self, name)
            if not isinstance(v, (tuple, list)) or any(isinstance(k, bool) or not isinstance(k, int) or k < 1
                                                       for k in v):
                raise ValueError(f"{name} must be a tuple of ints >= 1, got {v!r}")
            object.__setattr__(self, name, tuple(v))


_current = Options()


def get_options() -> Options:
    """The options in force now."""
    return _current


@contextlib.contextmanager
def options(**changes) -> Iterator[Options]:
    """Inside the block the kernels run with ``changes`` applied to the current options (field names
    of :class:`Options`); the previous value comes back on exit. Yields the value in force."""
    global _current
    unknown = set(changes) - {f.name for f in fields(Options)}
    if unknown:
        raise TypeError(f"unknown kernel options {sorted(unknown)}; known: {[f.name for f in fields(Options)]}")
    previous = _current
    _current = replace(previous, **changes) if changes else previous
    try:
        yield _current
    finally:
        _current = previous
