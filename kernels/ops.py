"""The fused conv as PyTorch sees it: an ``autograd.Function`` for eager calls and the ``torch.library``
ops ``selfonn::fused_conv`` / ``selfonn::fused_conv_backward`` for ``torch.compile`` and CUDA graphs
(their fake implementations are shape arithmetic only), plus the checked entry points."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._common import _check_io, _dims, _DTYPES, _geom, _Geom, _geom_of
from ._dispatch import _backward, _forward, _forward_planned


def _fn_backward(ctx, dy):
    x, weight = ctx.saved_tensors
    nx, nw, nb = ctx.needs_input_grad[:3]  # nb is False without a bias
    dx, dw, db = _backward(dy, x, weight, ctx.geom, nx, nw, nb, ctx.plan)
    return dx, dw, db, None, None


# create_graph=True: a second backward through these gradients errors out (the kernels' results are
# not differentiable); the wrapper costs microseconds, so only that case pays for it.
_fn_backward_once = torch.autograd.function.once_differentiable(_fn_backward)


class _SelfONNFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, geom: _Geom, validate=None):
        ctx.save_for_backward(x, weight)
        ctx.geom = geom
        y, ctx.plan = _forward_planned(x, weight, bias, geom, validate)
        return y

    @staticmethod
    def backward(ctx, dy):
        if torch.is_grad_enabled():
            return _fn_backward_once(ctx, dy)
        x, weight = ctx.saved_tensors  # _fn_backward inline: one frame less on every layer's backward
        nx, nw, nb = ctx.needs_input_grad[:3]
        dx, dw, db = _backward(dy, x, weight, ctx.geom, nx, nw, nb, ctx.plan)
        return dx, dw, db, None, None


def _fused_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, pad_left: int,
                pad_right: int, dilation: int, groups: int, q: int, transposed: bool,
                output_padding: int) -> torch.Tensor:
    """Self-ONN (transposed) conv, the fused kernels; the op ``torch.compile`` records."""
    g = _geom_of(stride, pad_left, pad_right, dilation, groups, q, output_padding, transposed)
    return _forward(x, weight, bias, g)


def _fused_conv_fake(x, weight, bias, stride, pad_left, pad_right, dilation, groups, q, transposed, output_padding):
    d = _dims(x, weight, _Geom(stride, pad_left, pad_right, dilation, groups, q, output_padding, transposed))
    return x.new_empty((d.B, d.C_out, d.L_out))


def _fused_conv_backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: int, pad_left: int,
                         pad_right: int, dilation: int, groups: int, q: int, transposed: bool, output_padding: int,
                         need_x: bool, need_w: bool, need_b: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dW, dbias) of ``selfonn::fused_conv``; a gradient not asked for is an empty tensor."""
    g = _geom_of(stride, pad_left, pad_right, dilation, groups, q, output_padding, transposed)
    dx, dw, db = _backward(dy, x, weight, g, need_x, need_w, need_b)
    empty = x.new_empty(0)
    return (dx if dx is not None else empty, dw if dw is not None else empty.clone(),
            db if db is not None else empty.clone())


def _fused_conv_backward_fake(dy, x, weight, stride, pad_left, pad_right, dilation, groups, q, transposed,
                              output_padding, need_x, need_w, need_b):
    d = _dims(x, weight, _Geom(stride, pad_left, pad_right, dilation, groups, q, output_padding, transposed))
    return (x.new_empty(x.shape) if need_x else x.new_empty(0),
            weight.new_empty(weight.shape) if need_w else x.new_empty(0),
            dy.new_empty((d.C_out,)) if need_b else x.new_empty(0))


def _op_setup(ctx, inputs, output):
    x, weight, bias, *geom = inputs
    ctx.save_for_backward(x, weight)
    ctx.geom = tuple(geom)
    ctx.has_bias = bias is not None


def _op_backward(ctx, dy):
    x, weight = ctx.saved_tensors
    nx, nw, nb = ctx.needs_input_grad[:3]
    nb = nb and ctx.has_bias
    dx, dw, db = torch.ops.selfonn.fused_conv_backward(dy, x, weight, *ctx.geom, nx, nw, nb)
    return (dx if nx else None, dw if nw else None, db if nb else None) + (None,) * len(ctx.geom)


# Registered below torch.library.custom_op's wrappers (its per-call Python: the output aliasing check,
# a dynamo-disable frame), which cost a compiled graph more per fused call than the eager path's whole
# host work: the schema, one CompositeExplicitAutograd kernel each, fakes and the autograd formula.
_lib = torch.library.Library("selfonn", "DEF")
_lib.define("fused_conv(Tensor x, Tensor weight, Tensor? bias, SymInt stride, SymInt pad_left, SymInt pad_right, "
            "SymInt dilation, SymInt groups, SymInt q, bool transposed, SymInt output_padding) -> Tensor")
_lib.define("fused_conv_backward(Tensor dy, Tensor x, Tensor weight, SymInt stride, SymInt pad_left, "
            "SymInt pad_right, SymInt dilation, SymInt groups, SymInt q, bool transposed, SymInt output_padding, "
            "bool need_x, bool need_w, bool need_b) -> (Tensor, Tensor, Tensor)")
_lib.impl("fused_conv", torch._disable_dynamo(_fused_conv), "CompositeExplicitAutograd")
_lib.impl("fused_conv_backward", torch._disable_dynamo(_fused_conv_backward), "CompositeExplicitAutograd")
torch.library.register_fake("selfonn::fused_conv", _fused_conv_fake, lib=_lib)
torch.library.register_fake("selfonn::fused_conv_backward", _fused_conv_backward_fake, lib=_lib)
torch.library.register_autograd("selfonn::fused_conv", _op_backward, setup_context=_op_setup, lib=_lib)


def _apply(x, weight, bias, g: _Geom) -> torch.Tensor:
    """Eager: the autograd.Function (no dispatcher round trip), or the bare forward when no gradient
    can flow (inference: the Function's bookkeeping is a quarter of a small call's host time).
    Under torch.compile: the library op."""
    if torch.compiler.is_compiling():
        return torch.ops.selfonn.fused_conv(x, weight, bias, *g.ints())
    return _eager(x, weight, bias, g)


def _eager(x, weight, bias, g: _Geom, validate=None) -> torch.Tensor:
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        if _unwrap is None or torch._C._are_functorch_transforms_active():
            return _SelfONNFn.apply(x, weight, bias, g, validate)
        # what Function.apply does without functorch transforms, less its Python (a tenth of the floor)
        return _c_apply(_unwrap(x), _unwrap(weight), None if bias is None else _unwrap(bias), g, validate)
    return _forward_planned(x, weight, bias, g, validate)[0]


_c_apply = super(torch.autograd.Function, _SelfONNFn).apply  # the C entry Function.apply ends in
_unwrap = getattr(getattr(torch._C, "_functorch", None), "unwrap_if_dead", None)


def _autocast(x, weight, bias):
    """Cast to the autocast dtype (as cuDNN conv does under autocast); casts are differentiable."""
    dev = x.device.type
    if dev == "cuda" and torch.is_autocast_enabled(dev):
        dt = torch.get_autocast_dtype(dev)
        x, weight = x.to(dt), weight.to(dt)
        bias = bias.to(dt) if bias is not None else None
    return x, weight, bias


def checked_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, pad_left: int,
                 pad_right: int, dilation: int, groups: int, q: int, transposed: bool,
                 output_padding: int, validate: Callable[[], object] | None = None) -> torch.Tensor:
    """The fused (transposed) conv for :mod:`selfonn.functional`, which has checked the arguments and
    applied autocast already: the entry points below repeat that for direct callers. ``validate``:
    the caller's operand check, run once per call signature (before a signature's first launches;
    a call that replays a plan has the signature of one that passed it), and always while tracing."""
    if x.dtype not in _DTYPES:  # devices: selfonn's backend resolution allows CUDA or the interpreter only
        if validate is not None:
            validate()
        raise TypeError(f"the fused kernels take one of {_DTYPES}, got {x.dtype}")
    if torch.compiler.is_compiling():  # torch.compile cannot trace an lru_cache: a plain _Geom
        if validate is not None:
            validate()
        g = _Geom(stride, pad_left, pad_right, dilation, groups, q, output_padding, transposed)
        return torch.ops.selfonn.fused_conv(x, weight, bias, *g.ints())
    return _eager(x, weight, bias, _geom_of(stride, pad_left, pad_right, dilation, groups, q, output_padding,
                                            transposed), validate)


def triton_selfonn_conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
    stride: int = 1, padding: int | tuple[int, int] = 0, dilation: int = 1, groups: int = 1, q: int = 1,
) -> torch.Tensor:
    """Fused ``conv1d(cat([x**1..x**q], 1), weight, bias, ...)``; x (B, C_in, L), weight (C_out, q*C_in/groups, k)."""
    g = _geom(stride, padding, dilation, groups, q)
    x, weight, bias = _autocast(x, weight, bias)
    _check_io(x, weight, bias)
    return _apply(x, weight, bias, g)


def triton_selfonn_conv_transpose1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
    stride: int = 1, padding: int | tuple[int, int] = 0, output_padding: int = 0, groups: int = 1,
    dilation: int = 1, q: int = 1,
) -> torch.Tensor:
    """Fused ``conv_transpose1d(cat([x**1..x**q], 1), weight, bias, ...)``; weight (q*C_in, C_out/groups, k).

    A ``(left, right)`` padding trims ``left`` samples at the start and ``right`` at the end (the
    adjoint of a conv with that zero padding); an int ``p`` is ``(p, p)`` as in PyTorch.
    """
    g = _geom(stride, padding, dilation, groups, q, output_padding, transposed=True)
    x, weight, bias = _autocast(x, weight, bias)
    _check_io(x, weight, bias)
    return _apply(x, weight, bias, g)
