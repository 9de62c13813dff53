r"""Fused Triton kernels for the Self-ONN generative neuron (1-D conv and transposed conv).

Math (FastONN formulation, the ground truth). ``X = cat([x**1, ..., x**Q], dim=1)`` is the power
stack, ``(B, Q*C_in, L)``, power-major: concat channel ``idx`` is power ``p = idx // C_in + 1`` of
input channel ``i = idx % C_in``. With ``G`` groups, group ``g`` owns the concat channels
``[g*CQG, (g+1)*CQG)`` (``CQG = Q*C_in/G``) and the outputs ``[g*OG, (g+1)*OG)`` (``OG = C_out/G``).
Concat channel ``idx`` is column ``c = idx - g*CQG`` of its group's weights.

SelfONN1d, weight ``W (C_out, CQG, K)``, zero padding ``(pl, pr)``::

    y[b, o, t] = bias[o] + sum_{c, j} W[o, c, j] * x[b, i(c), t*s + j*d - pl] ** p(c)

SelfONNTranspose1d, weight ``W (Q*C_in, OG, K)`` (the adjoint of the conv above)::

    y[b, o, l] = bias[o] + sum_{c, j, t: t*s + j*d - pl = l} W[idx(c), o_g, j] * x[b, i(c), t] ** p(c)

VJPs of the conv (``dy`` the output gradient; ``G_p = conv_transpose(dy, W_p)`` the data-gradient of
the plain conv restricted to the power-``p`` columns)::

    dx[b, i, l]    = sum_p  p * x[b, i, l] ** (p-1) * G_p[b, i, l]
    dW[o, c, j]    = sum_{b, t} dy[b, o, t] * x[b, i(c), t*s + j*d - pl] ** p(c)
    dbias[o]       = sum_{b, t} dy[b, o, t]

VJPs of the transposed conv (the same with the roles of gather and scatter swapped)::

    dx[b, i, t]    = sum_p  p * x[b, i, t] ** (p-1) * conv(dy, W_p)[b, i, t]
    dW[idx, o_g, j] = sum_{b, t} x[b, i, t] ** p * dy[b, o, t*s + j*d - pl]
    dbias[o]       = sum_{b, l} dy[b, o, l]

Kernels (K, stride, dilation, left padding, Q and groups are compile-time constants; lengths are
not specialised). Every kernel numbers its programs on one 1-D index (``_launch.fold_grid``).

* ``_mm_kernel``: implicit GEMM, output tiled [time, channels], one flattened (tap, channel block)
  loop. Gather mode (a conv) reads its operand at ``t*s + j*d - pl``; ``SCATTER`` mode (a transposed
  conv) gives each program one output phase ``l mod s``, so no tap is spent on stride holes and
  each valid tap reads a contiguous run of rows. ``POW_A=True``: operand ``x``, its powers formed in
  registers from one load per (tap, channel block) - conv forward (gather) / transposed conv forward
  (scatter). ``POW_A=False``: operand ``dy``, output channels are input channels, one accumulator
  per power (a pure MMA loop) scaled by ``p*x**(p-1)`` at the end - transposed conv ``dx`` (gather) /
  conv ``dx`` (scatter).
* ``_dw_kernel``: grad_W as one GEMM whose columns are the weight's own flattened index: the conv's
  ``(c, j)`` (x read at each column's tap) or the transposed conv's concat channels with ``(o, j)``
  rows (dy read at each row's tap). A program owns a (row, column) tile with every power and tap in
  it and reduces over a long (batch, time) range; grad_bias comes from the same dy tiles (conv) or
  from extra programs (transposed conv). The (batch, time) range is split only as far as the SM
  count needs; split partials are summed in split order by the last program to finish each tile
  (an arrival counter, as CUTLASS's ordered split-K): deterministic, no extra launch.
* ``_thin_fwd_kernel`` / ``_thin_bwd_kernel``: bandwidth kernels for single-channel layers
  (``C_in = 1`` or ``C_out = 1``, groups 1): no ``tl.dot`` over a padded channel axis, the few weights
  per tap loaded once per program. The backward is one launch: the ``dx`` programs and the grad_W /
  grad_bias programs of ``_dw_kernel`` are disjoint program ranges of one kernel.

Launches: forward 1 (plus a weight repack for large layers, see ``Options.pack_min_macs``); backward 2
(GEMM layers: dx, dW+db) or 1 (single-channel layers). No ``(B, Q*C, L)`` tensor is ever written;
autograd saves only ``x`` and ``W``. Powers and accumulation are fp32 (fp64 for fp64 inputs) with one
cast on store. fp32 ``tl.dot`` uses IEEE precision unless ``torch.backends.cudnn.allow_tf32`` (the
flag governing the conv this replaces) is on, then TF32, like cuDNN. Under autocast (CUDA) x, W and
bias are cast to the autocast dtype first; the MMA then runs in bf16/fp16 with fp32 accumulation.

The ops are registered with ``torch.library`` (``selfonn::fused_conv`` and its backward) so that
``torch.compile`` sees one opaque op per layer; eager calls take a direct ``autograd.Function`` path
to the same launchers (no dispatcher overhead). A call signature seen before replays the launches
its first call recorded (``_launch.Plan``: only the tensors change), skipping the host path.

Modules: :mod:`._common` (geometry, checks, registry), :mod:`.gemm` (``_mm_kernel``), :mod:`.grad_w`
(``_dw_kernel``), :mod:`.thin` (``_thin_*``), :mod:`._dispatch` (a call's launches and plans),
:mod:`.ops` (autograd Function, ``torch.library`` ops, entry points); settings in :mod:`._options`.
This module re-exports their names for code written against the single module they came from.
"""

from __future__ import annotations

import triton.language as tl

from ._common import (_DTYPES, _Dims, _Geom, _check_device, _dims, _geom, _geom_of, _idx, _kernel, _kernels,
                      _precision, _use_thin)
from ._dispatch import _backward, _forward, plans, plans_set_aside
from .gemm import _MM_SHAPES, _MM_SHAPES_N16, _MM_SHAPES_R16, _mm, _mm_configs, _prune_mm
from .grad_w import (_DW_SHAPES, _DW_SHORT_STEP, _dw_candidates, _dw_configs, _dw_plan, _interp_dw, _launch_dw,
                     _prune_dw, _with_splits)
from .ops import _SelfONNFn, checked_conv, triton_selfonn_conv1d, triton_selfonn_conv_transpose1d
from .thin import (_THIN_SHAPES, _prune_thin, _thin_bwd, _thin_bwd_key, _thin_configs, _thin_split, _thin_split_picks,
                   _thin_split_timings)

__all__ = ["triton_selfonn_conv1d", "triton_selfonn_conv_transpose1d"]

