"""Functional Self-ONN ops with autograd and backend dispatch, and the exact torch path.

Math (power-major FastONN layout, see :mod:`selfonn.reference`)::

    X  = cat([x**1, ..., x**Q], dim=1)                  # (B, Q*in, L)
    y  = conv(X, W) + b          (or conv_transpose)
    dW = conv_weight_grad(X, dy);   db = sum(dy over batch, time)
    dX = conv_input_grad(W, dy);    dx = sum_q q * x**(q-1) * dX[:, (q-1)*in : q*in]

The exact path (:class:`_ExactSelfONN`) saves only ``x`` and ``W`` - not the Q-times larger ``X`` that
autograd on the reference keeps - and recomputes ``X`` in backward. ``X``'s gradients come from the same
``aten.convolution_backward`` call autograd uses, so dW and db are bit-identical to the reference and dx
differs only in the order its Q terms are summed.

Precision: float32/float64 inputs form their powers in their own dtype (bit-for-bit the reference).
float16/bfloat16 inputs (``model.half()`` or ``torch.autocast``) form ``x**q`` in float32 and round it
once to the low dtype before the conv; the chain rule for dx also runs in float32.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from . import _args
from .backend import resolve_backend

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _powers(x: torch.Tensor, q: int) -> torch.Tensor:
    """Power-major stack ``cat([x**1..x**q], dim=1)``; low-precision inputs are powered in float32."""
    if q == 1:
        return x
    if x.dtype in _LOW_PRECISION:
        xf = x.float()
        return torch.cat([xf.pow(i) for i in range(1, q + 1)], dim=1).to(x.dtype)
    return torch.cat([x.pow(i) for i in range(1, q + 1)], dim=1)


def _power_chain(grad_X: torch.Tensor, x: torch.Tensor, q: int) -> torch.Tensor:
    """dx = sum_q q * x**(q-1) * dX_q  (the VJP of the power stack)."""
    if q == 1:
        return grad_X
    c = x.shape[1]
    low = x.dtype in _LOW_PRECISION
    xw = x.float() if low else x
    gw = grad_X.float() if low else grad_X
    acc = gw[:, :c].clone()
    for i in range(2, q + 1):
        acc.addcmul_(gw[:, (i - 1) * c : i * c], xw.pow(i - 1), value=i)
    return acc.to(x.dtype) if low else acc


class _ExactSelfONN(torch.autograd.Function):
    """Self-ONN (transposed) conv that saves only ``x`` and recomputes the power stack in backward.

    ``pad`` is a ``(left, right)`` pair. Conv: an uneven pair pads ``x`` by the difference and the conv
    takes the symmetric rest (as ATen does for ``padding='same'``, so q=1 stays bit-identical to
    ``F.conv1d``). Transposed: the conv crops ``min(pad)`` and the rest is sliced off.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        transposed: bool,
        stride: int,
        pad: tuple[int, int],
        dilation: int,
        output_padding: int,
        groups: int,
        q: int,
    ) -> torch.Tensor:
        left, right = pad
        m = min(left, right)
        xin = x
        if not transposed and left != right:
            xin = F.pad(x, (left - m, right - m))
        y = torch.ops.aten.convolution(
            _powers(xin, q), weight, bias, [stride], [m], [dilation], transposed, [output_padding], groups
        )
        if transposed and left != right:
            y = y[..., left - m : y.shape[-1] - (right - m)].contiguous()
        ctx.save_for_backward(x, weight)
        ctx.cfg = (transposed, stride, (left, right), dilation, output_padding, groups, q)
        ctx.bias_sizes = None if bias is None else [bias.shape[0]]
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        transposed, stride, (left, right), dilation, output_padding, groups, q = ctx.cfg
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        m = min(left, right)
        xin = x
        if left != right:
            if transposed:
                grad_y = F.pad(grad_y, (left - m, right - m))
            else:
                xin = F.pad(x, (left - m, right - m))
        X = _powers(xin, q)
        need_b = need_b and ctx.bias_sizes is not None
        conv_args = (ctx.bias_sizes, [stride], [m], [dilation], transposed, [output_padding], groups)
        if x.device.type == "cpu" and x.dtype in _LOW_PRECISION and (need_w or need_b):
            # oneDNN's CPU bfloat16 weight gradient can leave taps that only ever see padding unwritten
            # (stale memory; e.g. the discriminator's last layers on a short clip): form dW and db in
            # float32 from the same rounded operands, then round once.
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_y.float(), X.float(), weight.float(), *conv_args, [False, need_w, need_b]
            )
            grad_w = grad_w.to(weight.dtype) if need_w else None
            grad_b = grad_b.to(weight.dtype) if need_b else None
            grad_X = None
            if need_x:
                grad_X = torch.ops.aten.convolution_backward(
                    grad_y, X, weight, *conv_args, [True, False, False]
                )[0]
        else:
            grad_X, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_y, X, weight, *conv_args, [need_x, need_w, need_b]
            )
        grad_x = None
        if need_x:
            if not transposed and left != right:
                grad_X = grad_X[..., left - m : left - m + x.shape[-1]]
            grad_x = _power_chain(grad_X, x, q)
        return (
            grad_x,
            grad_w if need_w else None,
            grad_b if need_b else None,
            None, None, None, None, None, None, None,
        )


def _autocast_operands(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
    """Mirror autocast's rule for convolutions: cast float32/16 operands to the autocast dtype.

    Runs *before* the operand checks, so a stacked layer whose input is already bf16 (the previous
    layer's output) and whose weight is the fp32 parameter reaches every backend with one dtype.
    """
    if not isinstance(x, torch.Tensor):
        return x, weight, bias, False  # check_operands names the bad argument
    if _any_autocast is not None and not _any_autocast():
        return x, weight, bias, False  # one C call instead of the device's own flag
    device_type = x.device.type
    if not torch.is_autocast_enabled(device_type):
        return x, weight, bias, False
    dtype = torch.get_autocast_dtype(device_type)

    def cast(t: torch.Tensor | None) -> torch.Tensor | None:
        # autocast's eligibility rule: floating point but never float64
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dtype == torch.float64:
            return t
        return t.to(dtype)

    return cast(x), cast(weight), cast(bias), True  # type: ignore[return-value]


_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", None)  # torch >= 2.4


def _unbatched(x: torch.Tensor) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() == 2


def selfonn_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: _args.PaddingArg = 0,
    dilation: int = 1,
    groups: int = 1,
    q: int = 1,
    backend: str | None = None,
) -> torch.Tensor:
    """Self-ONN convolution ``y = b + sum_q conv(x**q, W_q)`` with FastONN weights ``(out, Q*in/groups, k)``.

    Same argument meanings as :func:`torch.nn.functional.conv1d`; ``padding`` may also be a
    ``(left, right)`` pair of zero padding. ``backend``: ``None`` (global), ``'auto'``, ``'torch'``,
    ``'triton'``. Accepts ``(B, C, L)`` or unbatched ``(C, L)`` input.
    """
    if not _plain(stride, dilation, groups, q):
        q = _args.check_q(q)
        groups = _args.check_groups(groups)
        stride = _args.single_int(stride, "stride", minimum=1)
        dilation = _args.single_int(dilation, "dilation", minimum=1)
    if _unbatched(x):
        return selfonn_conv1d(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups, q, backend).squeeze(0)
    x, weight, bias, autocast = _autocast_operands(x, weight, bias)
    fused = _takes_kernels(x, weight, bias, backend)
    try:
        if type(padding) is int and padding >= 0:  # what conv_padding returns for it, without the call
            pad = (padding, padding)
        else:
            pad = _args.conv_padding(padding, weight.shape[-1], stride, dilation)
    except (ValueError, AttributeError, IndexError):  # the last two: a weight that is no 3-D tensor
        _args.check_operands(x, weight, bias, q, groups, transposed=False)  # an operand error first
        raise

    def validate() -> None:
        _args.check_operands(x, weight, bias, q, groups, transposed=False)
        _args.check_conv_length(x.shape[-1], pad, weight.shape[-1], dilation)

    if fused and not autocast:  # the common call, one frame shorter
        return _fused()(x, weight, bias, stride, pad[0], pad[1], dilation, groups, q, False, 0, validate)
    if not fused:  # the fused kernels run it once per call signature; any other call checks here
        validate()
    if autocast:
        with torch.autocast(x.device.type, enabled=False):
            return _conv(x, weight, bias, stride, pad, dilation, groups, q, backend, False, 0, fused, validate)
    return _conv(x, weight, bias, stride, pad, dilation, groups, q, backend, False, 0, fused, validate)


def selfonn_conv_transpose1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int = 0,
    groups: int = 1,
    dilation: int = 1,
    q: int = 1,
    backend: str | None = None,
) -> torch.Tensor:
    """Self-ONN transposed convolution with FastONN weights ``(Q*in, out/groups, k)``.

    Same argument order and meanings as :func:`torch.nn.functional.conv_transpose1d`; ``padding`` may
    also be a ``(left, right)`` pair (samples cropped from each end of the output).
    """
    if not (_plain(stride, dilation, groups, q) and type(output_padding) is int and output_padding >= 0):
        q = _args.check_q(q)
        groups = _args.check_groups(groups)
        stride = _args.single_int(stride, "stride", minimum=1)
        dilation = _args.single_int(dilation, "dilation", minimum=1)
        output_padding = _args.single_int(output_padding, "output_padding")
    if _unbatched(x):
        return selfonn_conv_transpose1d(
            x.unsqueeze(0), weight, bias, stride, padding, output_padding, groups, dilation, q, backend
        ).squeeze(0)
    x, weight, bias, autocast = _autocast_operands(x, weight, bias)
    fused = _takes_kernels(x, weight, bias, backend)
    try:
        if type(padding) is int and padding >= 0:  # what transpose_padding returns for it, without the call
            pad = (padding, padding)
        else:
            pad = _args.transpose_padding(padding)
    except ValueError:
        _args.check_operands(x, weight, bias, q, groups, transposed=True)  # an operand error first
        raise

    def validate() -> None:
        _args.check_operands(x, weight, bias, q, groups, transposed=True)
        _args.check_transpose_length(x.shape[-1], pad, weight.shape[-1], stride, dilation, output_padding)

    if fused and not autocast:  # the common call, one frame shorter
        return _fused()(x, weight, bias, stride, pad[0], pad[1], dilation, groups, q, True, output_padding, validate)
    if not fused:  # the fused kernels run it once per call signature; any other call checks here
        validate()
    if autocast:
        with torch.autocast(x.device.type, enabled=False):
            return _conv(x, weight, bias, stride, pad, dilation, groups, q, backend, True, output_padding, fused,
                         validate)
    return _conv(x, weight, bias, stride, pad, dilation, groups, q, backend, True, output_padding, fused, validate)


def _plain(stride: object, dilation: object, groups: object, q: object) -> bool:
    """Whether these arguments are ints in range already (what the checks would return unchanged):
    a layer's own, call after call, skip the checks' function calls."""
    return (type(stride) is int and type(dilation) is int and type(groups) is int and type(q) is int
            and stride >= 1 and dilation >= 1 and groups >= 1 and q >= 1)


def _takes_kernels(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, backend: str | None) -> bool:
    """Whether the call takes the fused kernels: 3-D tensor operands on a backend that resolves to them.
    (Their operand and length checks then run once per call signature, before its first launches: a
    replayed launch plan was recorded after they passed.) An error resolving the backend is raised
    again by _conv, after any operand error."""
    if (isinstance(x, torch.Tensor) and x.dim() == 3 and isinstance(weight, torch.Tensor) and weight.dim() == 3
            and (bias is None or isinstance(bias, torch.Tensor))):
        try:
            return resolve_backend(backend, x) == "triton"
        except RuntimeError:
            return False
    return False


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, pad: tuple[int, int],
          dilation: int, groups: int, q: int, backend: str | None, transposed: bool, output_padding: int,
          fused: bool, validate: Callable[[], object] | None) -> torch.Tensor:
    """The call on the backend it resolved to: the fused kernels (``fused``, with their deferred operand
    and length check ``validate``) or the exact torch path (checked already)."""
    if fused or resolve_backend(backend, x) == "triton":
        return _fused()(x, weight, bias, stride, pad[0], pad[1], dilation, groups, q, transposed, output_padding,
                        validate)
    return _ExactSelfONN.apply(x, weight, bias, transposed, stride, pad, dilation, output_padding, groups, q)


def _fused():
    """The fused kernels' entry for checked operands, imported on first use: Triton stays unloaded until
    a call resolves to it. (Looked up in sys.modules, not the import system, on every later call.)"""
    if torch.compiler.is_compiling():  # no sys.modules lookup for dynamo to guard on
        from selfonn.kernels.selfonn_conv import checked_conv

        return checked_conv
    mod = sys.modules.get("selfonn.kernels.selfonn_conv")
    if mod is None:
        import selfonn.kernels.selfonn_conv as mod
    return mod.checked_conv
