"""``SelfONN1d`` / ``SelfONNTranspose1d``: drop-in generative-neuron replacements for nn.Conv1d / nn.ConvTranspose1d.

Arguments, attribute names (``in_channels``, ``kernel_size`` as a 1-tuple, ...) and output lengths follow
``nn.Conv1d`` / ``nn.ConvTranspose1d``, positional order included; ``q`` (the order of the Maclaurin-style
power series) and ``backend`` are keyword-only, so a positional ``nn.Conv1d`` call keeps its meaning.
Parameters are ``weight``/``bias`` in FastONN's layout and initialisation, so FastONN state dicts load
unchanged. Non-zero padding modes and ``padding='same'`` are resolved here, so every backend sees plain
zero padding (an int, or a ``(left, right)`` pair).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import _args
from .backend import check_backend
from .functional import selfonn_conv1d, selfonn_conv_transpose1d

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _channels(in_channels: int, out_channels: int, groups: int) -> None:
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
        _args.single_int(v, name, minimum=1)
    if in_channels % groups:
        raise ValueError(f"in_channels={in_channels} must be divisible by groups={groups}")
    if out_channels % groups:
        raise ValueError(f"out_channels={out_channels} must be divisible by groups={groups}")


class _SelfONNBase(nn.Module):
    weight: torch.Tensor
    bias: torch.Tensor | None

    def reset_parameters(self) -> None:
        """FastONN init: Xavier-uniform weights with tanh gain, bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        nn.init.xavier_uniform_(self.weight, gain=nn.init.calculate_gain("tanh"))
        if self.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,):
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if getattr(self, "output_padding", (0,)) != (0,):
            s += f", output_padding={self.output_padding}"
        if self.dilation != (1,):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        s += f", q={self.q}"
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        return s


class SelfONN1d(_SelfONNBase):
    """Self-ONN 1-D convolution: ``y = b + sum_{q=1..Q} conv1d(x**q, W_q)``.

    ``weight`` is ``(out, Q*in/groups, k)`` over the power-major stack ``cat([x**1..x**Q], dim=1)``; with
    ``groups > 1`` group ``g`` reads stack channels ``[g*Q*in/groups, (g+1)*Q*in/groups)`` (FastONN's
    mapping). ``q=1`` is exactly ``nn.Conv1d``. ``backend``: ``None`` (global), ``'auto'``, ``'torch'``, ``'triton'``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: _args.PaddingArg = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        q: int = 1,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.q = _args.check_q(q)
        self.groups = _args.check_groups(groups)
        _channels(in_channels, out_channels, self.groups)
        k = _args.single_int(kernel_size, "kernel_size", minimum=1)
        s = _args.single_int(stride, "stride", minimum=1)
        d = _args.single_int(dilation, "dilation", minimum=1)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        pad = _args.conv_padding(padding, k, s, d)  # validates (incl. 'same' with stride > 1)
        if not isinstance(padding, str) and pad[0] != pad[1]:
            raise ValueError(f"padding must be an int, 'same' or 'valid' (as in nn.Conv1d), got {padding!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = (k,), (s,), (d,)
        self.padding: tuple[int] | str = padding if isinstance(padding, str) else (pad[0],)
        self._pad_pair = pad
        self.padding_mode = padding_mode
        self.backend = check_backend(backend)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, self.q * in_channels // self.groups, k, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad: int | tuple[int, int] = self._pad_pair
        if self.padding_mode != "zeros" and pad != (0, 0):
            # F.pad's 1-D non-constant modes take (C, L) or (B, C, L), like nn.Conv1d does.
            x = F.pad(x, self._pad_pair, mode=self.padding_mode)
            pad = 0
        return selfonn_conv1d(
            x, self.weight, self.bias, self.stride[0], pad, self.dilation[0], self.groups, self.q, backend=self.backend
        )


class SelfONNTranspose1d(_SelfONNBase):
    """Self-ONN 1-D transposed convolution: ``y = b + sum_{q=1..Q} conv_transpose1d(x**q, W_q)``.

    ``weight`` is ``(Q*in, out/groups, k)`` (row ``(q-1)*in + c`` holds power ``q`` of input channel ``c``);
    groups split the power-major stack as in :class:`SelfONN1d`. ``q=1`` is exactly ``nn.ConvTranspose1d``.
    ``forward(x, output_size=None)`` resolves ``output_size`` to an ``output_padding`` like PyTorch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | Sequence[int] = 1,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        q: int = 1,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(f"Only 'zeros' padding_mode is supported for SelfONNTranspose1d, got {padding_mode!r}")
        if isinstance(padding, str):
            raise ValueError(f"SelfONNTranspose1d does not support string padding, got {padding!r}")
        self.q = _args.check_q(q)
        self.groups = _args.check_groups(groups)
        _channels(in_channels, out_channels, self.groups)
        k = _args.single_int(kernel_size, "kernel_size", minimum=1)
        s = _args.single_int(stride, "stride", minimum=1)
        d = _args.single_int(dilation, "dilation", minimum=1)
        p = _args.single_int(padding, "padding")
        op = _args.single_int(output_padding, "output_padding")
        if op >= max(s, d):
            raise ValueError(f"output_padding={op} must be smaller than stride={s} or dilation={d}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (k,), (s,), (p,)
        self.output_padding, self.dilation = (op,), (d,)
        self.padding_mode = padding_mode
        self.backend = check_backend(backend)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(self.q * in_channels, out_channels // self.groups, k, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def _output_padding_for(self, x: torch.Tensor, output_size: int | Sequence[int] | None) -> int:
        if output_size is None:
            return self.output_padding[0]
        size = output_size
        if isinstance(output_size, (list, tuple, torch.Size)):
            if len(output_size) not in (1, x.dim()):
                raise ValueError(
                    f"output_size must be the output length or the full output shape, got {tuple(output_size)}"
                )
            size = output_size[-1]
        size = int(size)  # type: ignore[arg-type]
        (s,), (p,), (k,), (d,) = self.stride, self.padding, self.kernel_size, self.dilation
        smallest = (x.shape[-1] - 1) * s - 2 * p + d * (k - 1) + 1
        largest = smallest + s - 1
        if not smallest <= size <= largest:
            raise ValueError(
                f"requested output length {size} is not reachable from input length {x.shape[-1]}: "
                f"valid lengths are {smallest}..{largest}"
            )
        return size - smallest

    def forward(self, x: torch.Tensor, output_size: int | Sequence[int] | None = None) -> torch.Tensor:
        op = self._output_padding_for(x, output_size)
        return selfonn_conv_transpose1d(
            x,
            self.weight,
            self.bias,
            self.stride[0],
            self.padding[0],
            op,
            self.groups,
            self.dilation[0],
            self.q,
            backend=self.backend,
        )
