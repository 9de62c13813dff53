"""Drop-in conversion of an existing model's convolutions into Self-ONN layers of order q.

Each ``nn.Conv1d`` / ``nn.ConvTranspose1d`` becomes a ``SelfONN1d`` / ``SelfONNTranspose1d`` with the same
geometry; its weights go into the power-1 slice and the higher-order slices start at zero, so the
converted model computes what it did before (to float rounding) and fine-tuning grows the non-linear
terms from there.
"""

from __future__ import annotations

import torch
from torch import nn

from . import _args
from .backend import check_backend
from .modules import SelfONN1d, SelfONNTranspose1d

_Conv = nn.Conv1d | nn.ConvTranspose1d


def _convert_one(conv: _Conv, q: int, backend: str | None, where: str) -> nn.Module:
    weight = conv.weight
    if isinstance(weight, nn.parameter.UninitializedParameter):
        raise ValueError(f"{where}: lazy conv has no weights yet; run one forward pass before convert()")
    if conv.groups > 1 and q > 1:
        # FastONN groups split the power-major stack, so with q > 1 group g no longer sees the power-1
        # copies of its own input channels: no placement of the old weights reproduces the old output.
        raise ValueError(
            f"{where}: cannot convert a grouped conv (groups={conv.groups}) to q={q} exactly: FastONN's group "
            "mapping gives group g the power-major stack channels [g*Q*in/groups, (g+1)*Q*in/groups), which do "
            "not contain x**1 of that group's inputs. Convert with q=1 or replace this layer by hand."
        )
    factory = {"device": weight.device, "dtype": weight.dtype}
    bias = conv.bias is not None
    new: SelfONN1d | SelfONNTranspose1d
    if isinstance(conv, nn.ConvTranspose1d):
        new = SelfONNTranspose1d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.output_padding,
            conv.groups, bias, conv.dilation, conv.padding_mode, q=q, backend=backend, **factory,
        )
        power1 = new.weight[: conv.in_channels]  # rows (q-1)*in + c: power 1 comes first
    else:
        new = SelfONN1d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            conv.groups, bias, conv.padding_mode, q=q, backend=backend, **factory,
        )
        power1 = new.weight[:, : conv.in_channels // conv.groups]
    with torch.no_grad():
        new.weight.zero_()
        power1.copy_(weight.detach())
        if bias:
            new.bias.copy_(conv.bias.detach())  # type: ignore[union-attr]
    new.weight.requires_grad_(weight.requires_grad)
    if bias:
        new.bias.requires_grad_(conv.bias.requires_grad)  # type: ignore[union-attr]
    new.train(conv.training)
    return new


def convert(module: nn.Module, q: int, backend: str | None = None) -> nn.Module:
    """Replace every ``nn.Conv1d`` / ``nn.ConvTranspose1d`` in ``module`` by its Self-ONN equivalent of order ``q``.

    Works in place and returns ``module`` (or the new layer when ``module`` itself is a conv). The effective
    weight is copied, so weight-norm/parametrizations are folded in and hooks on the old convs are not carried
    over. A conv shared by several parents stays shared. Grouped convs convert only with ``q=1`` (see error).
    """
    q = _args.check_q(q)
    backend = check_backend(backend)
    if not isinstance(module, nn.Module):
        raise TypeError(f"convert() needs an nn.Module, got {type(module).__name__}")
    done: dict[int, nn.Module] = {}

    def swap(conv: _Conv, where: str) -> nn.Module:
        if id(conv) not in done:
            done[id(conv)] = _convert_one(conv, q, backend, where)
        return done[id(conv)]

    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        return swap(module, type(module).__name__)

    def walk(parent: nn.Module, prefix: str) -> None:
        # _modules, not named_children(): the latter skips a module's second appearance under one parent
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            where = f"{prefix}{name}"
            if isinstance(child, (nn.Conv1d, nn.ConvTranspose1d)):
                setattr(parent, name, swap(child, where))
            elif not isinstance(child, (SelfONN1d, SelfONNTranspose1d)):
                walk(child, where + ".")

    walk(module, "")
    return module
