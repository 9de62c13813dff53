"""The FastONN formulation of the generative neuron, kept deliberately literal: the ground truth.

    y = b + sum_{q=1..Q} conv(x**q, W_q)

computed as FastONN does: concatenate the powers *power-major* along channels,
``X = cat([x**1, ..., x**Q], dim=1)`` (channel ``(q-1)*in + c`` holds ``x[:, c]**q``), then run ONE
ordinary (transposed) convolution on ``X``. Groups act on ``X``: group ``g`` sees concat channels
``[g*Q*in/groups, (g+1)*Q*in/groups)``. Autograd differentiates everything and saves the Q-times
larger ``X``; the exact path in :mod:`selfonn.functional` must match this to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _args


def _powers(x: torch.Tensor, q: int) -> torch.Tensor:
    return torch.cat([x**i for i in range(1, q + 1)], dim=1)


def reference_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: _args.PaddingArg = 0,
    dilation: int = 1,
    groups: int = 1,
    q: int = 1,
) -> torch.Tensor:
    """Self-ONN conv, FastONN formulation. ``weight``: ``(out, Q*in/groups, k)``; ``padding`` as in
    :func:`selfonn.selfonn_conv1d` (int, ``(left, right)``, ``'same'``, ``'valid'``)."""
    q = _args.check_q(q)
    if isinstance(padding, str):
        return F.conv1d(_powers(x, q), weight, bias, stride, padding, dilation, groups)
    left, right = _args.conv_padding(padding, weight.shape[-1], _args.single_int(stride, "stride", 1), 1)
    X = _powers(x, q)
    if left != right:
        X = F.pad(X, (left, right))
        left = 0
    return F.conv1d(X, weight, bias, stride, left, dilation, groups)


def reference_conv_transpose1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int = 0,
    groups: int = 1,
    dilation: int = 1,
    q: int = 1,
) -> torch.Tensor:
    """Self-ONN transposed conv, FastONN formulation. ``weight``: ``(Q*in, out/groups, k)``;
    ``padding`` crops that many samples from each end (a ``(left, right)`` pair crops unevenly)."""
    q = _args.check_q(q)
    left, right = _args.transpose_padding(padding)
    X = _powers(x, q)
    if left == right:
        return F.conv_transpose1d(X, weight, bias, stride, left, output_padding, groups, dilation)
    y = F.conv_transpose1d(X, weight, bias, stride, 0, output_padding, groups, dilation)
    return y[..., left : y.shape[-1] - right]
