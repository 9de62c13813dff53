"""Argument normalisation and validation shared by the reference, the functional ops and the modules.

Every check raises a ``ValueError``/``TypeError`` that names the argument, so bad input never
reaches a convolution kernel as a deep traceback or silent garbage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PaddingArg = int | tuple[int, int] | Sequence[int] | str


def single_int(value: int | Sequence[int], name: str, minimum: int = 0) -> int:
    """Accept ``v`` or ``(v,)`` (the 1-tuples nn.Conv1d stores) and return ``v`` as an int."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{name} must be an int or a 1-tuple for a 1-D convolution, got {value!r}")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_q(q: int) -> int:
    """The order Q of the generative neuron: an int >= 1."""
    if isinstance(q, bool) or not isinstance(q, int):
        raise TypeError(f"q must be an int >= 1, got {type(q).__name__} ({q!r})")
    if q < 1:
        raise ValueError(f"q must be >= 1 (q=1 is an ordinary convolution), got {q}")
    return q


def check_groups(groups: int) -> int:
    return single_int(groups, "groups", minimum=1)


def same_padding(kernel_size: int, dilation: int) -> tuple[int, int]:
    """PyTorch's ``padding='same'`` split: the extra sample of an odd total goes on the right."""
    total = dilation * (kernel_size - 1)
    left = total // 2
    return left, total - left


def conv_padding(padding: PaddingArg, kernel_size: int, stride: int, dilation: int) -> tuple[int, int]:
    """Normalise a conv padding (int, ``(p,)``, ``(left, right)``, ``'same'``, ``'valid'``) to a pair."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0
        if padding == "same":
            if stride != 1:
                raise ValueError("padding='same' is not supported for strided convolutions (stride must be 1)")
            return same_padding(kernel_size, dilation)
        raise ValueError(f"padding must be an int, a (left, right) pair, 'same' or 'valid', got {padding!r}")
    if isinstance(padding, (tuple, list)):
        if len(padding) == 1:
            p = single_int(padding[0], "padding")
            return p, p
        if len(padding) == 2:
            return single_int(padding[0], "padding[0] (left)"), single_int(padding[1], "padding[1] (right)")
        raise ValueError(f"padding must be an int or a (left, right) pair, got {padding!r}")
    p = single_int(padding, "padding")
    return p, p


def transpose_padding(padding: int | Sequence[int]) -> tuple[int, int]:
    """Normalise a transposed-conv padding (samples cropped from each end of the output) to a pair."""
    if isinstance(padding, str):
        raise ValueError(f"string padding is not supported for transposed convolutions, got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        return single_int(padding[0], "padding[0] (left)"), single_int(padding[1], "padding[1] (right)")
    p = single_int(padding, "padding")
    return p, p


def check_operands(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    q: int,
    groups: int,
    transposed: bool,
) -> int:
    """Check ranks, channel counts, dtypes and devices; return the input channel count.

    Weight layouts (FastONN): conv ``(out, Q*in/groups, k)``, transposed ``(Q*in, out/groups, k)``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    xs = x.shape
    if len(xs) != 3:
        raise ValueError(
            f"expected a 3-D input (batch, channels, length) or 2-D (channels, length), got shape {tuple(xs)}"
        )
    if not isinstance(weight, torch.Tensor) or weight.dim() != 3:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a 3-D tensor, got {shape}")
    w0, w1 = weight.shape[0], weight.shape[1]
    if transposed:
        if w0 % q:
            raise ValueError(f"transposed weight's dim 0 ({w0} = Q*in_channels) is not divisible by q={q}")
        if w0 % groups:
            raise ValueError(f"transposed weight's dim 0 ({w0} = Q*in_channels) is not divisible by groups={groups}")
        in_channels = w0 // q
        out_channels = w1 * groups
    else:
        if w0 % groups:
            raise ValueError(f"out_channels={w0} is not divisible by groups={groups}")
        if (w1 * groups) % q:
            raise ValueError(
                f"weight's dim 1 ({w1}) times groups={groups} (= Q*in_channels) is not divisible by q={q}"
            )
        in_channels = w1 * groups // q
        out_channels = w0
    if xs[1] != in_channels:
        raise ValueError(
            f"expected input with {in_channels} channels (in_channels of this layer, q={q}, groups={groups}), "
            f"got input of shape {tuple(xs)}"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != out_channels):
        raise ValueError(f"bias must have shape ({out_channels},), got {tuple(bias.shape)}")
    dtype, device = x.dtype, x.device
    _check_like(weight, "weight", dtype, device)
    if bias is not None:
        _check_like(bias, "bias", dtype, device)
    if not x.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor, got {dtype}")
    return in_channels


def _check_like(t: torch.Tensor, name: str, dtype: torch.dtype, device: torch.device) -> None:
    if t.dtype != dtype:
        raise TypeError(
            f"input dtype {dtype} does not match {name} dtype {t.dtype}; "
            "move the layer with .to(dtype) or run under torch.autocast"
        )
    if t.device != device:
        raise ValueError(f"input is on {device} but {name} is on {t.device}")


def check_conv_length(length: int, pad: tuple[int, int], kernel_size: int, dilation: int) -> None:
    span = dilation * (kernel_size - 1) + 1
    if length + pad[0] + pad[1] < span:
        raise ValueError(
            f"input length {length} plus padding {pad} is shorter than the kernel's span "
            f"{span} (dilation*(kernel_size-1)+1): the output would be empty"
        )


def check_transpose_length(
    length: int, pad: tuple[int, int], kernel_size: int, stride: int, dilation: int, output_padding: int
) -> int:
    if output_padding >= max(stride, dilation):
        raise ValueError(
            f"output_padding={output_padding} must be smaller than stride={stride} or dilation={dilation}"
        )
    if length < 1:
        raise ValueError(f"input length must be >= 1, got {length}")
    out = (length - 1) * stride - pad[0] - pad[1] + dilation * (kernel_size - 1) + output_padding + 1
    if out < 1:
        raise ValueError(
            f"padding {pad} crops more than the transposed conv produces for input length {length}: "
            f"output length would be {out}"
        )
    return out
