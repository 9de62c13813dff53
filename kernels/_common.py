"""Shared pieces of the fused Self-ONN kernels: geometry and its checks, offsets and precision, the
kernel registry, config helpers, and the program index every kernel numbers its programs with.

The math and the kernel families are described in :mod:`selfonn.kernels.selfonn_conv`."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from . import _launch
from . import _options
from ._launch import Cfg
from ._options import Options


def _opt() -> Options:
    """The options in force (``selfonn.kernels.options``)."""
    return _options._current


@triton.jit
def _program_index():
    """This program's index on the folded 1-D launch (see ``_launch.fold_grid``)."""
    return tl.program_id(1).to(tl.int64) * tl.num_programs(0) + tl.program_id(0)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)  # not triton.cdiv: a JIT-wrapped helper costs microseconds per call on the host


def _next_pow2(n: int) -> int:
    return 1 << (int(n) - 1).bit_length() if n > 1 else 1


def _np2(v: int, floor: int = 16) -> int:
    return max(floor, _next_pow2(max(int(v), 1)))


#: shared memory a block may use on the GPUs we tune for (Hopper: 227 KB), less room for the epilogue
_SMEM_BUDGET = 224 * 1024


def _fit_stages(cfg: Cfg, elems_per_stage: int, elem_bytes: int = 4) -> Cfg:
    """``cfg`` with no more pipeline stages than ``elems_per_stage`` fp32 values a stage fit in (at least 1)."""
    stages = max(1, min(cfg.num_stages, _SMEM_BUDGET // (elems_per_stage * elem_bytes)))
    return cfg if stages == cfg.num_stages else replace(cfg, num_stages=stages)


@dataclass(frozen=True)
class _Geom:
    """Conv geometry shared by both layer kinds (padding already split into left/right)."""

    stride: int
    pad_left: int
    pad_right: int
    dilation: int
    groups: int
    q: int
    output_padding: int = 0
    transposed: bool = False

    def __hash__(self) -> int:  # a plan key part, hashed on every call: computed once (never for SymInts)
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash(self.ints())
            object.__setattr__(self, "_hash", h)
        return h

    def ints(self) -> tuple[int, int, int, int, int, int, bool, int]:
        """The op schema's geometry arguments, in order."""
        return (self.stride, self.pad_left, self.pad_right, self.dilation, self.groups, self.q, self.transposed,
                self.output_padding)


@dataclass(frozen=True)
class _Dims:
    B: int
    C_in: int
    L_in: int
    C_out: int
    OG: int
    CQG: int
    K: int
    L_out: int


_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _acc_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


_I32_MAX = 2**31 - 1


def _idx(*tensors: torch.Tensor | None, weights: tuple[torch.Tensor | None, ...] = ()):
    """The kernels' offset type: int32 when every element offset inside one batch item (and into the
    weights) fits, else int64. Each batch item's base is always formed in 64 bits, once per program;
    32-bit per-element address math takes half the registers (register pressure, not bandwidth,
    bounds these kernels: up to 255 registers per thread offline with 64-bit offsets)."""
    if _opt().wide_offsets:
        return tl.int64
    for t in tensors:  # (B, C, L) activations: the batch stride is not an element offset
        if t is not None:
            n, st = t.shape, t.stride()
            if (n[1] - 1) * st[1] + (n[2] - 1) * st[2] > _I32_MAX:
                return tl.int64
    for w in weights:
        if w is not None and sum((n - 1) * st for n, st in zip(w.shape, w.stride())) > _I32_MAX:
            return tl.int64
    return tl.int32


def _precision(t: torch.Tensor) -> str:
    if t.dtype == torch.float32 and (t.is_cuda or _launch.offline()) and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "ieee"


def _bucket(n: int) -> int:
    return _next_pow2(max(int(n), 1))


def _check_device(*ts: torch.Tensor) -> None:
    dev = ts[0].device
    for t in ts:
        if t.device != dev:
            raise ValueError(f"all tensors must be on one device, got {t.device} and {dev}")
    if dev.type != "cuda" and not _launch.interpreting() and not _launch.offline():
        raise RuntimeError(
            f"selfonn.kernels runs on CUDA tensors (got {dev}); on CPU use selfonn's 'torch' backend "
            "or set TRITON_INTERPRET=1 before importing selfonn.kernels (slow, for testing)"
        )


def _split_padding(padding: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(padding, int) and not isinstance(padding, bool):
        pl = pr = padding
    elif isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(v, int) for v in padding):
        pl, pr = int(padding[0]), int(padding[1])
    else:
        raise ValueError(f"padding must be an int or a (left, right) pair of ints, got {padding!r}")
    if pl < 0 or pr < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return pl, pr


def _geom(stride, padding, dilation, groups, q, output_padding=0, transposed=False) -> _Geom:
    for name, v, lo in (("stride", stride, 1), ("dilation", dilation, 1), ("groups", groups, 1), ("q", q, 1),
                        ("output_padding", output_padding, 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    pl, pr = _split_padding(padding)
    return _Geom(stride, pl, pr, dilation, groups, q, output_padding, transposed)


def _check_io(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    if x.dim() != 3:
        raise ValueError(f"x must be (batch, channels, length), got shape {tuple(x.shape)}")
    if weight.dim() != 3:
        raise ValueError(f"weight must be 3-D, got shape {tuple(weight.shape)}")
    if x.dtype not in _DTYPES or weight.dtype != x.dtype:
        raise TypeError(f"x and weight must share one float dtype of {_DTYPES}, got {x.dtype} and {weight.dtype}")
    if bias is not None and (bias.dim() != 1 or bias.dtype != x.dtype):
        raise ValueError(f"bias must be 1-D with x's dtype, got {tuple(bias.shape)} {bias.dtype}")
    _check_device(x, weight, *([bias] if bias is not None else []))


def _dims(x: torch.Tensor, weight: torch.Tensor, g: _Geom) -> _Dims:
    B, C_in, L_in = x.shape
    G, Q = g.groups, g.q
    if g.transposed:
        QC, OG, K = weight.shape
        if QC != Q * C_in:
            raise ValueError(f"weight {tuple(weight.shape)} does not match q={Q}, in_channels={C_in}: "
                             f"expected dim 0 = q*in = {Q * C_in}")
        if QC % G:
            raise ValueError(f"groups={G} must divide q*in_channels={QC}")
        if g.output_padding >= max(g.stride, g.dilation):
            raise ValueError(f"output_padding={g.output_padding} must be smaller than stride or dilation")
        L_out = (L_in - 1) * g.stride - g.pad_left - g.pad_right + g.dilation * (K - 1) + g.output_padding + 1
        if L_out < 1:
            raise ValueError(f"transposed conv output length would be {L_out}; reduce padding")
        return _Dims(B, C_in, L_in, OG * G, OG, QC // G, K, L_out)
    C_out, CQG, K = weight.shape
    if (Q * C_in) % G or C_out % G:
        raise ValueError(f"groups={G} must divide q*in_channels={Q * C_in} and out_channels={C_out}")
    if CQG != Q * C_in // G:
        raise ValueError(f"weight {tuple(weight.shape)} does not match q={Q}, in_channels={C_in}, groups={G}: "
                         f"expected dim 1 = q*in/groups = {Q * C_in // G}")
    L_out = (L_in + g.pad_left + g.pad_right - g.dilation * (K - 1) - 1) // g.stride + 1
    if L_out < 1:
        raise ValueError(f"input length {L_in} too short for kernel_size={K}, dilation={g.dilation}, "
                         f"padding=({g.pad_left}, {g.pad_right}): output length would be {L_out}")
    return _Dims(B, C_in, L_in, C_out, C_out // G, CQG, K, L_out)


def _canon_w_strides(weight: torch.Tensor, d: _Dims, g: _Geom) -> tuple[int, int, int, int]:
    """W's strides as (group, output in group, column in group, tap) for either layout."""
    st = weight.stride()
    if g.transposed:
        return d.CQG * st[0], st[1], st[0], st[2]  # W (Q*C_in, OG, K)
    return d.OG * st[0], st[0], st[1], st[2]  # W (C_out, CQG, K)


def _geo_consts(d: _Dims, g: _Geom) -> dict:
    return {"Q": g.q, "K": d.K, "STRIDE": g.stride, "DIL": g.dilation, "PAD_L": g.pad_left}


def _use_thin(d: _Dims, g: _Geom) -> bool:
    return _opt().thin and g.groups == 1 and (d.C_in == 1 or d.C_out == 1)


_kernels: dict[str, _launch.Kernel] = {}
_kernel_fns: dict[str, object] = {}  # launcher name -> @triton.jit kernel (each family registers its own)


def register(**kernels) -> None:
    """Name each family's kernels for :func:`_kernel` (``_mm_kernel`` serves "gather" and "scatter")."""
    _kernel_fns.update(kernels)


def _kernel(name: str) -> _launch.Kernel:
    """The launcher of kernel ``name``: its tuned configs and compiled kernels live as long as it."""
    k = _kernels.get(name)
    if k is None:
        k = _kernels[name] = _launch.Kernel(name, _kernel_fns[name])
    return k


_geom_of = functools.lru_cache(maxsize=1024)(_Geom)  # one _Geom per geometry: no dataclass init per call
