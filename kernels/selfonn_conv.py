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
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from . import _launch
from . import _options
from ._launch import Cfg
from ._options import Options

log = logging.getLogger(__name__)

__all__ = ["triton_selfonn_conv1d", "triton_selfonn_conv_transpose1d"]


def _opt() -> Options:
    """The options in force (``selfonn.kernels.options``)."""
    return _options._current


# --------------------------------------------------------------------------------------------
# Shared pieces (inlined into the kernels)
# --------------------------------------------------------------------------------------------


@triton.jit
def _program_index():
    """This program's index on the folded 1-D launch (see ``_launch.fold_grid``)."""
    return tl.program_id(1).to(tl.int64) * tl.num_programs(0) + tl.program_id(0)


@triton.jit
def _tap(t, L_SRC, J, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr,
         GATHER: tl.constexpr):
    """Source position of output position ``t`` through tap ``J`` and whether it exists.

    GATHER (a conv): ``t*s + J*d - pl``. Otherwise (a transposed conv) the ``u`` with
    ``u*s + J*d - pl = t``, which exists only when ``t + pl - J*d`` is a non-negative multiple of s."""
    if GATHER:
        pos = t * STRIDE + (J * DIL - PAD_L)
        ok = (pos >= 0) & (pos < L_SRC)
    else:
        num = t + (PAD_L - J * DIL)
        numc = tl.maximum(num, 0)  # truncating division must not see negatives
        pos = numc // STRIDE
        ok = (num >= 0) & (pos * STRIDE == numc) & (pos < L_SRC)
    return pos, ok


@triton.jit
def _dpoly(w_base, sw_p, w_ok, xv, Q: tl.constexpr, ACC_DTYPE: tl.constexpr):
    """``sum_p (p+1) * w_p * xv**p`` by Horner (the derivative of ``sum_p w_p xv**(p+1)``).

    ``w_base + p*sw_p`` addresses ``w_p`` ([C] vectors); the result is [C, T] (``xv`` broadcasts)."""
    h = tl.load(w_base + (Q - 1) * sw_p, mask=w_ok, other=0.0).to(ACC_DTYPE)[:, None] * Q
    for k in tl.static_range(1, Q):
        wp = tl.load(w_base + (Q - 1 - k) * sw_p, mask=w_ok, other=0.0).to(ACC_DTYPE)
        h = h * xv + wp[:, None] * (Q - k)
    return h


@triton.jit
def _red_tile(a_ptr, a_rows, rows_ok, r0, r_hi, sa_c, IDX: tl.constexpr, BLOCK_R: tl.constexpr):
    """The GEMMs' A operand: a[rows, r] for reduction channels r in [r0, r0 + BLOCK_R) below r_hi, as a
    [T, R] tile (out of range: 0), with those channels and their mask."""
    r = r0 + tl.arange(0, BLOCK_R)  # [R]
    r_ok = r < r_hi
    a = tl.load(a_ptr + (a_rows[:, None] + r[None, :].to(IDX) * sa_c), mask=rows_ok[:, None] & r_ok[None, :],
                other=0.0)
    return a, r, r_ok


@triton.jit
def _acc_powers(
    acc, a_ptr, a_rows, rows_ok, w_ptr, w_off, g_cqg, n, n_ok, i0, i_hi, C_IN, CQG, sa_c, sw_o, sw_c,
    Q: tl.constexpr, GROUPS: tl.constexpr, ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
    IDX: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """acc[T, N] += sum_{i in block i0, p} a[rows, i] ** p * W[col(i, p), n]; a loaded once."""
    a, i, i_ok = _red_tile(a_ptr, a_rows, rows_ok, i0, i_hi, sa_c, IDX, BLOCK_R)  # [T, R], input channels i
    a = a.to(ACC_DTYPE)  # zero padding stays 0 under every power
    ap = a
    for p in tl.static_range(Q):
        if p > 0:
            ap = ap * a
        if GROUPS == 1:
            c = p * C_IN + i  # [R] column of (i, p)
            c_ok = i_ok
        else:
            c = p * C_IN + i - g_cqg  # column inside the group
            c_ok = i_ok & (c >= 0) & (c < CQG)  # columns of other groups contribute zero
        w = tl.load(
            w_ptr + w_off + (c[:, None].to(IDX) * sw_c + n[None, :].to(IDX) * sw_o),
            mask=c_ok[:, None] & n_ok[None, :], other=0.0,
        )  # [R, N]
        acc = tl.dot(ap.to(w.dtype), w, acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)
    return acc


@triton.jit
def _acc_dual(
    acc, a_ptr, a_rows, rows_ok, w_ptr, w_off, n, n_ok, o0, o_hi, C_IN, CQG, OG, sa_c, sw_g, sw_o, sw_c,
    P: tl.constexpr, GROUPS: tl.constexpr, ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
    IDX: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """acc[T, N] += sum_{o in block o0} dy[rows, o] * W[o, col(n, P)] for input channels n at power P."""
    a, o, o_ok = _red_tile(a_ptr, a_rows, rows_ok, o0, o_hi, sa_c, IDX, BLOCK_R)  # o: the conv's output channels
    w = _dual_w(w_ptr, w_off, n, n_ok, o, o_ok, C_IN, CQG, OG, sw_g, sw_o, sw_c, P, GROUPS, IDX)
    return tl.dot(a.to(w.dtype), w, acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)


@triton.jit
def _acc_dual_powers(
    acc0, acc1, acc2, a_ptr, a_rows, rows_ok, w_ptr, w_off, n, n_ok, o0, o_hi, C_IN, CQG, OG, sa_c, sw_g, sw_o,
    sw_c, Q: tl.constexpr, GROUPS: tl.constexpr, ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
    IDX: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """_acc_dual for powers 0..Q-1 (Q <= 3) at once: the dy tile loaded once for all of them."""
    a, o, o_ok = _red_tile(a_ptr, a_rows, rows_ok, o0, o_hi, sa_c, IDX, BLOCK_R)
    w = _dual_w(w_ptr, w_off, n, n_ok, o, o_ok, C_IN, CQG, OG, sw_g, sw_o, sw_c, 0, GROUPS, IDX)
    a = a.to(w.dtype)
    acc0 = tl.dot(a, w, acc0, input_precision=PRECISION, out_dtype=ACC_DTYPE)
    if Q > 1:
        w = _dual_w(w_ptr, w_off, n, n_ok, o, o_ok, C_IN, CQG, OG, sw_g, sw_o, sw_c, 1, GROUPS, IDX)
        acc1 = tl.dot(a, w, acc1, input_precision=PRECISION, out_dtype=ACC_DTYPE)
    if Q > 2:
        w = _dual_w(w_ptr, w_off, n, n_ok, o, o_ok, C_IN, CQG, OG, sw_g, sw_o, sw_c, 2, GROUPS, IDX)
        acc2 = tl.dot(a, w, acc2, input_precision=PRECISION, out_dtype=ACC_DTYPE)
    return acc0, acc1, acc2


@triton.jit
def _dual_w(w_ptr, w_off, n, n_ok, o, o_ok, C_IN, CQG, OG, sw_g, sw_o, sw_c, P: tl.constexpr, GROUPS: tl.constexpr,
            IDX: tl.constexpr):
    """W[o, col(n, P)] as an [R, N] tile: reduction channels o, input channels n at power P."""
    if GROUPS == 1:
        w_ok = o_ok[:, None] & n_ok[None, :]
        w_off2 = (P * C_IN + n)[None, :].to(IDX) * sw_c + o[:, None].to(IDX) * sw_o
    else:
        idx = P * C_IN + n  # [N] concat channel of (n, P)
        gc = idx // CQG  # [N] its group
        c = idx - gc * CQG  # [N] its column inside the group
        o_rel = o[:, None] - (gc * OG)[None, :]  # [R, N] o inside the column's group
        # W[o, col] is nonzero only when o belongs to the column's group.
        w_ok = o_ok[:, None] & n_ok[None, :] & (o_rel >= 0) & (o_rel < OG)
        w_off2 = (gc[None, :].to(IDX) * sw_g + c[None, :].to(IDX) * sw_c
                  + o_rel.to(IDX) * sw_o)
    return tl.load(w_ptr + w_off + w_off2, mask=w_ok, other=0.0)  # [R, N]


@triton.jit
def _reduction_range(g, n0, C_IN, CQG, OG, Q: tl.constexpr, GROUPS: tl.constexpr, POW_A: tl.constexpr,
                     BLOCK_N: tl.constexpr):
    """Channels the reduction must visit: input channels of group g (POW_A) or the conv outputs
    of every group that one of the tile's (input channel, power) columns falls in (dual)."""
    if GROUPS == 1:
        lo = n0 * 0
        if POW_A:
            hi = lo + C_IN
        else:
            hi = lo + OG
    elif POW_A:
        start = g * CQG
        p_first = start // C_IN
        p_last = (start + CQG - 1) // C_IN
        inside = (p_first == p_last).to(tl.int32)  # group lives inside one power: a channel slice
        lo = inside * (start - p_first * C_IN)
        hi = C_IN + inside * (lo + CQG - C_IN)
    else:
        n_last = tl.minimum(n0 + BLOCK_N, C_IN) - 1
        lo = (n0 // CQG) * OG
        hi = ((Q - 1) * C_IN + n_last) // CQG * OG + OG
    return lo, hi


# --------------------------------------------------------------------------------------------
# Implicit-GEMM kernels: forward and grad_x
# --------------------------------------------------------------------------------------------


@triton.jit
def _phase_taps(r, K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr,
                J_STEP: tl.constexpr):
    """Taps feeding output phase ``r`` of a transposed conv: j*d = r + pl (mod s), i.e. j0, j0 + J_STEP, ...
    with J_STEP = s / gcd(s, d); j0 is the first solution in [0, J_STEP) (none: j0 = K). Returns j0,
    the tap count and the source-row offset of tap j0 (rows of tap j0 + k*J_STEP are J_STEP*d/s earlier
    per k). K*d*s keeps numerators positive so truncating % and // are exact."""
    j0 = r * 0 + K
    for jj in tl.static_range(J_STEP):
        hit = (r + (PAD_L + K * DIL * STRIDE - jj * DIL)) % STRIDE == 0
        j0 = tl.where(hit & (jj < j0), jj, j0)
    n_taps = (K - j0 + J_STEP - 1) // J_STEP
    src_off = (r + PAD_L - j0 * DIL + K * DIL * STRIDE) // STRIDE - K * DIL
    return j0, n_taps, src_off


@triton.jit(do_not_specialize=["L_A", "L_OUT", "N_PROG"])
def _mm_kernel(
    a_ptr, w_ptr, x_ptr, bias_ptr, out_ptr,
    L_A, L_OUT, N_PROG, N_OUT, C_IN, CQG, OG,
    sa_b, sa_c, sa_l, sw_g, sw_o, sw_c, sw_k, sx_b, sx_c, sx_l, so_b, so_c, so_l,
    Q: tl.constexpr, K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr,
    J_STEP: tl.constexpr, GROUPS: tl.constexpr, SCATTER: tl.constexpr, POW_A: tl.constexpr,
    HAS_BIAS: tl.constexpr, ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr, IDX: tl.constexpr,
    ONE_PASS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """Implicit GEMM ``out[b, n, l] = sum_{r, taps} f(a[b, r, src]) W[...]``, tiled [BLOCK_T rows, BLOCK_N channels].

    Gather (conv): rows are output positions l, tap j reads ``a`` at l*s + j*d - pl.
    SCATTER (transposed conv): programs own one output phase r = l mod s (rows l = r + m*s), so a
    tap either feeds every row of the tile or none (no MMA work on stride holes) and reads a
    contiguous run of ``a``. POW_A: powers of ``a`` (= x) formed in registers, one load per
    (tap, channel block) - conv fwd (gather) / convT fwd (scatter). Otherwise ``a`` = dy, outputs are
    input channels, one accumulator per power (a pure MMA loop) scaled by (p+1)*x**p at the end -
    convT dx (gather) / conv dx (scatter); ONE_PASS (Q <= 3): all powers' accumulators in one pass
    over the reduction, each dy tile loaded once instead of once per power.
    """
    pid = _program_index()
    if pid >= N_PROG:
        return
    if SCATTER:
        n_mt = tl.cdiv(tl.cdiv(L_OUT, STRIDE), BLOCK_T)
        n_phase = STRIDE
    else:
        n_mt = tl.cdiv(L_OUT, BLOCK_T)
        n_phase = 1
    n_nt = tl.cdiv(N_OUT, BLOCK_N)
    nt = (pid % n_nt).to(tl.int32)  # channel tiles fastest: they share the operand tile
    rest = pid // n_nt
    mt = (rest % n_mt).to(tl.int32)
    rest = rest // n_mt
    r = (rest % n_phase).to(tl.int32)
    bg = rest // n_phase
    if POW_A:
        b = bg // GROUPS
        g = (bg % GROUPS).to(tl.int32)
    else:
        b = bg
        g = nt * 0
    m = mt * BLOCK_T + tl.arange(0, BLOCK_T)  # [T] rows
    # Tap k (k = 0 .. n_taps-1) is weight tap j0 + k*tap_step reading rows src0 + k*src_step.
    if SCATTER:
        l = r + m * STRIDE  # [T] output positions of phase r
        j0, n_taps, src_off = _phase_taps(r, K, STRIDE, DIL, PAD_L, J_STEP)
        src0 = m + src_off
        tap_step = J_STEP
        src_step = -(J_STEP * DIL // STRIDE)
    else:
        l = m
        j0 = r * 0
        n_taps = K
        src0 = m * STRIDE - PAD_L
        tap_step = 1
        src_step = DIL
    l_ok = l < L_OUT
    n = nt * BLOCK_N + tl.arange(0, BLOCK_N)  # [N] output channels (local to group g)
    n_ok = n < N_OUT
    r_lo, r_hi = _reduction_range(g, nt * BLOCK_N, C_IN, CQG, OG, Q, GROUPS, POW_A, BLOCK_N)
    n_rb = tl.cdiv(r_hi - r_lo, BLOCK_R)
    acc = tl.zeros([BLOCK_T, BLOCK_N], dtype=ACC_DTYPE)
    a_b = a_ptr + b.to(tl.int64) * sa_b  # the batch item's base: 64-bit once, offsets inside it IDX
    if POW_A:
        w_g = g.to(tl.int64) * sw_g
        for it in range(0, n_taps * n_rb):  # flattened (tap, channel block): one long pipelined loop
            k = it // n_rb
            src = src0 + k * src_step  # [T] source positions of this tap
            src_ok = l_ok & (src >= 0) & (src < L_A)  # zero padding
            acc = _acc_powers(acc, a_b, src.to(IDX) * sa_l, src_ok, w_ptr,
                              w_g + (j0 + k * tap_step) * sw_k, g * CQG, n, n_ok, r_lo + (it - k * n_rb) * BLOCK_R,
                              r_hi, C_IN, CQG, sa_c, sw_o, sw_c, Q, GROUPS, ACC_DTYPE, PRECISION, IDX, BLOCK_R)
    elif ONE_PASS:
        acc1 = tl.zeros([BLOCK_T, BLOCK_N], dtype=ACC_DTYPE)
        acc2 = tl.zeros([BLOCK_T, BLOCK_N], dtype=ACC_DTYPE)
        for it in range(0, n_taps * n_rb):
            k = it // n_rb
            src = src0 + k * src_step
            src_ok = l_ok & (src >= 0) & (src < L_A)
            acc, acc1, acc2 = _acc_dual_powers(acc, acc1, acc2, a_b, src.to(IDX) * sa_l, src_ok, w_ptr,
                                               (j0 + k * tap_step) * sw_k, n, n_ok, r_lo + (it - k * n_rb) * BLOCK_R,
                                               r_hi, C_IN, CQG, OG, sa_c, sw_g, sw_o, sw_c, Q, GROUPS, ACC_DTYPE,
                                               PRECISION, IDX, BLOCK_R)
        if Q > 1:  # x only now: not held through the loop
            xv = tl.load(
                x_ptr + b.to(tl.int64) * sx_b + (n[None, :].to(IDX) * sx_c + l[:, None].to(IDX) * sx_l),
                mask=l_ok[:, None] & n_ok[None, :], other=0.0,
            ).to(ACC_DTYPE)
            acc += acc1 * xv * 2  # as the per-power passes combine them: the same sums, the same order
            if Q > 2:
                acc += acc2 * (xv * xv) * 3
    else:
        xv = tl.load(
            x_ptr + b.to(tl.int64) * sx_b + (n[None, :].to(IDX) * sx_c + l[:, None].to(IDX) * sx_l),
            mask=l_ok[:, None] & n_ok[None, :], other=0.0,
        ).to(ACC_DTYPE)  # [T, N] x at the output positions
        xpow = xv
        for p in tl.static_range(Q):
            acc_p = tl.zeros([BLOCK_T, BLOCK_N], dtype=ACC_DTYPE)
            for it in range(0, n_taps * n_rb):
                k = it // n_rb
                src = src0 + k * src_step
                src_ok = l_ok & (src >= 0) & (src < L_A)
                acc_p = _acc_dual(acc_p, a_b, src.to(IDX) * sa_l, src_ok, w_ptr,
                                  (j0 + k * tap_step) * sw_k, n, n_ok, r_lo + (it - k * n_rb) * BLOCK_R, r_hi,
                                  C_IN, CQG, OG, sa_c, sw_g, sw_o, sw_c, p, GROUPS, ACC_DTYPE, PRECISION, IDX,
                                  BLOCK_R)
            if p == 0:
                acc += acc_p
            else:
                acc += acc_p * xpow * (p + 1)  # d(x**(p+1))/dx = (p+1) x**p
                xpow = xpow * xv
    if POW_A:
        n_glob = g * OG + n
    else:
        n_glob = n
    if HAS_BIAS:
        acc += tl.load(bias_ptr + n_glob, mask=n_ok, other=0.0).to(ACC_DTYPE)[None, :]
    tl.store(
        out_ptr + b.to(tl.int64) * so_b + (n_glob[None, :].to(IDX) * so_c + l[:, None].to(IDX) * so_l),
        acc.to(out_ptr.dtype.element_ty), mask=l_ok[:, None] & n_ok[None, :],
    )


# --------------------------------------------------------------------------------------------
# grad_W (+ grad_bias): one GEMM over the flattened weight, ordered in-kernel split reduction
# --------------------------------------------------------------------------------------------


@triton.jit
def _dw_operands(step, n_tt, dy_ptr, x_ptr, sy_b, sy_l, sx_b, sx_l, y_rows, x_cols, y_shift, x_shift, L_RED, L_X,
                 L_Y, STRIDE: tl.constexpr, TRANSPOSED: tl.constexpr, IDX: tl.constexpr, BLOCK_T: tl.constexpr):
    """grad_W operands of (batch, time) step ``step``: dy [M, T] and x [T, N] at each row's / column's
    tap, for times below L_RED. The operand read at a stride and shift (conv: x, convT: dy) is masked
    by one unsigned compare per element (a negative position compares above any length) and its
    time; the contiguous one by its time alone. Rows and columns past the GEMM's edge arrive clamped
    onto real ones (_dw_rows, _dw_cols): they read real data and their results are never stored."""
    b = step // n_tt
    t = ((step - b * n_tt) * BLOCK_T).to(tl.int32) + tl.arange(0, BLOCK_T)  # [T]
    t_ok = t < L_RED
    if TRANSPOSED:
        ypos = (t * STRIDE)[None, :] + y_shift[:, None]  # [M, T]
        a = tl.load(dy_ptr + b * sy_b + (y_rows[:, None] + ypos.to(IDX) * sy_l),
                    mask=(ypos.to(tl.uint32) < L_Y.to(tl.uint32)) & t_ok[None, :], other=0.0)
        xv = tl.load(x_ptr + b * sx_b + (x_cols[None, :] + t[:, None].to(IDX) * sx_l), mask=t_ok[:, None],
                     other=0.0)
    else:
        a = tl.load(dy_ptr + b * sy_b + (y_rows[:, None] + t[None, :].to(IDX) * sy_l), mask=t_ok[None, :],
                    other=0.0)
        xpos = (t * STRIDE)[:, None] + x_shift[None, :]  # [T, N]
        xv = tl.load(x_ptr + b * sx_b + (x_cols[None, :] + xpos.to(IDX) * sx_l),
                     mask=(xpos.to(tl.uint32) < L_X.to(tl.uint32)) & t_ok[:, None], other=0.0)
    return a, xv


@triton.jit
def _dw_mma(acc, dacc, a, xv, pw, Q: tl.constexpr, DB_MODE: tl.constexpr, ACC_DTYPE: tl.constexpr,
            PRECISION: tl.constexpr):
    """acc += a @ x**p (each column at its own power); dacc += row sums of a (DB_MODE 1)."""
    xv = xv.to(ACC_DTYPE)
    xp = xv
    for k in tl.static_range(1, Q):
        xp = tl.where(pw[None, :] >= k, xp * xv, xp)  # per-column power
    acc = tl.dot(a, xp.to(a.dtype), acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)
    if DB_MODE == 1:
        dacc += tl.sum(a.to(ACC_DTYPE), axis=1)
    return acc, dacc


@triton.jit
def _sum_splits(ptr, stride, S, ACC_DTYPE: tl.constexpr, TAIL: tl.constexpr, SIZE: tl.constexpr):
    """sum over s < S of ptr[s*stride + (0..SIZE)]: the split partials of one tile, TAIL of them per
    load (independent loads in flight instead of S dependent round trips), in a fixed order."""
    k = tl.arange(0, SIZE)
    total = tl.zeros([SIZE], dtype=ACC_DTYPE)
    if TAIL == 1:
        for s in range(0, S):
            total += tl.load(ptr + s * stride + k, cache_modifier=".cg")
    else:
        r = tl.arange(0, TAIL)
        for s0 in range(0, S, TAIL):
            sr = s0 + r
            blk = tl.load(ptr + (sr * stride)[:, None] + k[None, :], mask=(sr < S)[:, None], other=0.0,
                          cache_modifier=".cg")
            total += tl.sum(blk, axis=0)
    return total


@triton.jit
def _dw_rows(m, OG, K: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr, TRANSPOSED: tl.constexpr):
    """grad_W rows ``m``: (valid, output channel, dy shift). conv: m = o; convT: m = o*K + j, each row
    reading dy at its tap. Rows past the edge read the last output channel (loads need no row mask)."""
    if TRANSPOSED:
        o = m // K
        return m < OG * K, tl.minimum(o, OG - 1), (m - o * K) * DIL - PAD_L
    return m < OG, tl.minimum(m, OG - 1), m * 0


@triton.jit
def _dw_cols(n, N_CH, K: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr, TRANSPOSED: tl.constexpr):
    """grad_W columns ``n`` over N_CH channels: (valid, channel, x shift). conv: n = c*K + j, each
    column reading x at its tap; convT: n = c. The columns' counterpart of _dw_rows (clamped alike)."""
    if TRANSPOSED:
        return n < N_CH, tl.minimum(n, N_CH - 1), n * 0
    c = n // K  # the tap from n itself: the compiler then sees K-long runs of adjacent positions
    return n < N_CH * K, tl.minimum(c, N_CH - 1), (n - c * K) * DIL - PAD_L


@triton.jit
def _dw_gemm_tile(
    tile, split, x_ptr, dy_ptr, dw_ptr, db_ptr, part_ptr, pdb_ptr, cnt_ptr,
    B, L_X, L_Y, L_RED, C_IN, CQG, OG, N_MT, N_NT, N_GEMM, N_DBT, S, STEPS,
    sx_b, sx_c, sx_l, sy_b, sy_c, sy_l,
    Q: tl.constexpr, K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr,
    GROUPS: tl.constexpr, TRANSPOSED: tl.constexpr, DB_MODE: tl.constexpr, ONE_SPLIT: tl.constexpr,
    ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr, IDX: tl.constexpr,
    TAIL: tl.constexpr, TAIL_DB: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """D[m, n] = sum over this split's (batch, time) steps of A[m, t] * B[t, n].

    conv:  m = o (OG rows), n = c*K + j (W's own (column, tap) order), A = dy, B = x at t*s + j*d - pl.
    convT: m = o*K + j (W's own (out, tap) order), n = c (CQG columns), A = dy at t*s + j*d - pl, B = x.
    B's column carries its (input channel, power): x is raised per column in registers.
    """
    nt = (tile % N_NT).to(tl.int32)
    rest = tile // N_NT
    mt = (rest % N_MT).to(tl.int32)
    g = (rest // N_MT).to(tl.int32)
    m = mt * BLOCK_M + tl.arange(0, BLOCK_M)  # [M]
    n = nt * BLOCK_N + tl.arange(0, BLOCK_N)  # [N]
    m_ok, o, y_shift = _dw_rows(m, OG, K, DIL, PAD_L, TRANSPOSED)
    n_ok, c, x_shift = _dw_cols(n, CQG, K, DIL, PAD_L, TRANSPOSED)  # c: concat channel in the group
    if GROUPS == 1:
        idx = c
    else:
        idx = g * CQG + c
    ch = idx % C_IN  # [N] input channel
    pw = idx // C_IN  # [N] power - 1
    y_rows = (g * OG + o).to(IDX) * sy_c  # [M]
    x_cols = ch.to(IDX) * sx_c  # [N]
    n_tt = tl.cdiv(L_RED, BLOCK_T)
    lo = split * STEPS
    hi = tl.minimum(lo + STEPS, B * n_tt)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=ACC_DTYPE)
    dacc = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)
    for step in range(lo, hi):
        a, xv = _dw_operands(step, n_tt, dy_ptr, x_ptr, sy_b, sy_l, sx_b, sx_l, y_rows, x_cols, y_shift, x_shift,
                             L_RED, L_X, L_Y, STRIDE, TRANSPOSED, IDX, BLOCK_T)
        acc, dacc = _dw_mma(acc, dacc, a, xv, pw, Q, DB_MODE, ACC_DTYPE, PRECISION)
    if TRANSPOSED:
        dw_off = (g * CQG + c)[None, :].to(IDX) * (OG * K) + m[:, None]  # W (Q*C_in, OG, K)
    else:
        dw_off = (g * OG + o)[:, None].to(IDX) * (CQG * K) + n[None, :]  # W (C_out, CQG, K)
    _dw_finish(acc, acc, acc, dacc, tile, split, nt, dw_ptr, db_ptr, part_ptr, pdb_ptr, cnt_ptr, dw_off,
               m_ok[:, None] & n_ok[None, :], 0, g * OG + o, m_ok, g * N_MT + mt, N_GEMM, N_DBT, S,
               1, DB_MODE, ONE_SPLIT, ACC_DTYPE, TAIL, TAIL_DB, BLOCK_M, BLOCK_N)


@triton.jit
def _dw_finish(
    acc0, acc1, acc2, dacc, tile, split, nt, dw_ptr, db_ptr, part_ptr, pdb_ptr, cnt_ptr, dw_off, dw_ok, p_step,
    db_off, db_ok, db_slot, N_GEMM, N_DBT, S,
    NACC: tl.constexpr, DB_MODE: tl.constexpr, ONE_SPLIT: tl.constexpr, ACC_DTYPE: tl.constexpr,
    TAIL: tl.constexpr, TAIL_DB: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Store a grad_W tile's NACC accumulators (accumulator p's W entries ``p * p_step`` after the
    first's) and, from column tile 0, its grad_bias rows. With one split directly; else as this
    split's partials (NACC per tile), and the last split to arrive sums every split's in a fixed
    order (deterministic), stores the totals and resets the tile's arrival counter."""
    if ONE_SPLIT:
        tl.store(dw_ptr + dw_off, acc0.to(dw_ptr.dtype.element_ty), mask=dw_ok)
        if NACC > 1:
            tl.store(dw_ptr + (dw_off + p_step), acc1.to(dw_ptr.dtype.element_ty), mask=dw_ok)
        if NACC > 2:
            tl.store(dw_ptr + (dw_off + 2 * p_step), acc2.to(dw_ptr.dtype.element_ty), mask=dw_ok)
        if DB_MODE == 1:
            if nt == 0:
                tl.store(db_ptr + db_off, dacc.to(db_ptr.dtype.element_ty), mask=db_ok)
    else:
        size = BLOCK_M * BLOCK_N
        loc = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
        mine = part_ptr + (split * N_GEMM + tile) * (NACC * size)  # this split's NACC partials of the tile
        tl.store(mine + loc, acc0)
        if NACC > 1:
            tl.store(mine + size + loc, acc1)
        if NACC > 2:
            tl.store(mine + 2 * size + loc, acc2)
        if DB_MODE == 1:
            if nt == 0:
                tl.store(pdb_ptr + (split * N_DBT + db_slot) * BLOCK_M + tl.arange(0, BLOCK_M), dacc)
        tl.debug_barrier()  # every thread's partials are stored before the arrival is published
        arrived = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel", scope="gpu")
        if arrived == S - 1:  # the last split to finish sums all of them, in a fixed order
            for p in tl.static_range(NACC):
                total = _sum_splits(part_ptr + (tile * NACC + p) * size, N_GEMM * (NACC * size), S, ACC_DTYPE, TAIL,
                                    BLOCK_M * BLOCK_N)
                total = tl.reshape(total, [BLOCK_M, BLOCK_N])  # row-major, as ``loc`` stored it
                tl.store(dw_ptr + (dw_off + p * p_step), total.to(dw_ptr.dtype.element_ty), mask=dw_ok)
            if DB_MODE == 1:
                if nt == 0:
                    dtot = _sum_splits(pdb_ptr + db_slot * BLOCK_M, N_DBT * BLOCK_M, S, ACC_DTYPE, TAIL_DB, BLOCK_M)
                    tl.store(db_ptr + db_off, dtot.to(db_ptr.dtype.element_ty), mask=db_ok)
            tl.store(cnt_ptr + tile, 0)  # ready for the next launch


@triton.jit
def _dw_pow_tile(
    tile, split, x_ptr, dy_ptr, dw_ptr, db_ptr, part_ptr, pdb_ptr, cnt_ptr,
    B, L_X, L_Y, L_RED, C_IN, CQG, OG, N_MT, N_NT, N_GEMM, N_DBT, S, STEPS,
    sx_b, sx_c, sx_l, sy_b, sy_c, sy_l,
    Q: tl.constexpr, K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr,
    TRANSPOSED: tl.constexpr, DB_MODE: tl.constexpr, ONE_SPLIT: tl.constexpr,
    ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr, IDX: tl.constexpr, TAIL: tl.constexpr, TAIL_DB: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """_dw_gemm_tile with every power of its columns in the program (groups 1, Q <= 3).

    Columns are (input channel, tap) (conv) or input channels (convT), not concat channels: each step
    loads x once, raises it to 2 and 3 in registers and feeds one accumulator per power (the
    concat-column tile re-loaded x for every power, each column at its own power). Power p's
    W entries sit p*C_in concat channels after power 0's."""
    nt = (tile % N_NT).to(tl.int32)
    mt = ((tile // N_NT) % N_MT).to(tl.int32)
    m = mt * BLOCK_M + tl.arange(0, BLOCK_M)  # [M]
    n = nt * BLOCK_N + tl.arange(0, BLOCK_N)  # [N]
    m_ok, o, y_shift = _dw_rows(m, OG, K, DIL, PAD_L, TRANSPOSED)
    n_ok, ch, x_shift = _dw_cols(n, C_IN, K, DIL, PAD_L, TRANSPOSED)  # ch: input channel
    if TRANSPOSED:
        dw_off = n[None, :].to(IDX) * (OG * K) + m[:, None]  # W (Q*C_in, OG, K) at power 0
        p_step = C_IN * OG * K
    else:
        dw_off = o[:, None].to(IDX) * (CQG * K) + n[None, :]  # W (C_out, Q*C_in, K) at power 0
        p_step = C_IN * K
    y_rows = o.to(IDX) * sy_c  # [M]
    x_cols = ch.to(IDX) * sx_c  # [N]
    n_tt = tl.cdiv(L_RED, BLOCK_T)
    lo = split * STEPS
    hi = tl.minimum(lo + STEPS, B * n_tt)
    acc0 = tl.zeros([BLOCK_M, BLOCK_N], dtype=ACC_DTYPE)
    acc1 = tl.zeros([BLOCK_M, BLOCK_N], dtype=ACC_DTYPE)
    acc2 = tl.zeros([BLOCK_M, BLOCK_N], dtype=ACC_DTYPE)
    dacc = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)
    for step in range(lo, hi):
        a, xv = _dw_operands(step, n_tt, dy_ptr, x_ptr, sy_b, sy_l, sx_b, sx_l, y_rows, x_cols, y_shift, x_shift,
                             L_RED, L_X, L_Y, STRIDE, TRANSPOSED, IDX, BLOCK_T)
        xv = xv.to(ACC_DTYPE)
        acc0 = tl.dot(a, xv.to(a.dtype), acc0, input_precision=PRECISION, out_dtype=ACC_DTYPE)
        if Q > 1:
            x2 = xv * xv
            acc1 = tl.dot(a, x2.to(a.dtype), acc1, input_precision=PRECISION, out_dtype=ACC_DTYPE)
            if Q > 2:
                acc2 = tl.dot(a, (x2 * xv).to(a.dtype), acc2, input_precision=PRECISION, out_dtype=ACC_DTYPE)
        if DB_MODE == 1:
            dacc += tl.sum(a.to(ACC_DTYPE), axis=1)
    _dw_finish(acc0, acc1, acc2, dacc, tile, split, nt, dw_ptr, db_ptr, part_ptr, pdb_ptr, cnt_ptr, dw_off,
               m_ok[:, None] & n_ok[None, :], p_step, o, m_ok, mt, N_GEMM, N_DBT, S,
               Q, DB_MODE, ONE_SPLIT, ACC_DTYPE, TAIL, TAIL_DB, BLOCK_M, BLOCK_N)


@triton.jit
def _db_tile(
    dt, split, dy_ptr, db_ptr, pdb_ptr, cnt_ptr, B, L_Y, C_OUT, N_GEMM, N_DBT, S, DB_STEPS, sy_b, sy_c, sy_l,
    ONE_SPLIT: tl.constexpr, ACC_DTYPE: tl.constexpr, IDX: tl.constexpr, TAIL_DB: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """grad_bias partial over this split's (batch, time) steps for channels [dt*M, (dt+1)*M)."""
    o = dt * BLOCK_M + tl.arange(0, BLOCK_M)  # [M]
    o_ok = o < C_OUT
    n_lt = tl.cdiv(L_Y, BLOCK_T)
    lo = split * DB_STEPS
    hi = tl.minimum(lo + DB_STEPS, B * n_lt)
    acc = tl.zeros([BLOCK_M, BLOCK_T], dtype=ACC_DTYPE)
    rows = o.to(IDX) * sy_c
    for step in range(lo, hi):
        b = step // n_lt
        l = ((step - b * n_lt) * BLOCK_T).to(tl.int32) + tl.arange(0, BLOCK_T)  # [T]
        acc += tl.load(dy_ptr + b * sy_b + (rows[:, None] + l[None, :].to(IDX) * sy_l),
                       mask=o_ok[:, None] & (l < L_Y)[None, :], other=0.0).to(ACC_DTYPE)
    dacc = tl.sum(acc, axis=1)
    if ONE_SPLIT:
        tl.store(db_ptr + o, dacc.to(db_ptr.dtype.element_ty), mask=o_ok)
    else:
        tl.store(pdb_ptr + (split * N_DBT + dt) * BLOCK_M + tl.arange(0, BLOCK_M), dacc)
        tl.debug_barrier()
        arrived = tl.atomic_add(cnt_ptr + N_GEMM + dt, 1, sem="acq_rel", scope="gpu")
        if arrived == S - 1:
            dtot = _sum_splits(pdb_ptr + dt * BLOCK_M, N_DBT * BLOCK_M, S, ACC_DTYPE, TAIL_DB, BLOCK_M)
            tl.store(db_ptr + o, dtot.to(db_ptr.dtype.element_ty), mask=o_ok)
            tl.store(cnt_ptr + N_GEMM + dt, 0)


@triton.jit
def _dw_body(
    pid, x_ptr, dy_ptr, dw_ptr, db_ptr, part_ptr, pdb_ptr, cnt_ptr,
    B, L_X, L_Y, L_RED, C_IN, CQG, OG, C_OUT, N_MT, N_NT, N_GEMM, N_DBT, S, STEPS, DB_STEPS,
    sx_b, sx_c, sx_l, sy_b, sy_c, sy_l,
    Q: tl.constexpr, K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr,
    GROUPS: tl.constexpr, TRANSPOSED: tl.constexpr, DB_MODE: tl.constexpr, ONE_SPLIT: tl.constexpr,
    ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr, IDX: tl.constexpr,
    TAIL: tl.constexpr, TAIL_DB: tl.constexpr, POW_TILES: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """Program ``pid`` of a grad_W launch: tiles fastest (a wave of programs shares its x, dy range),
    then splits. DB_MODE: 0 no bias, 1 bias from the conv's dy tiles, 2 separate bias tiles."""
    if DB_MODE == 2:
        n_tiles = N_GEMM + N_DBT
    else:
        n_tiles = N_GEMM
    split = pid // n_tiles
    tile = pid - split * n_tiles
    if DB_MODE == 2 and tile >= N_GEMM:
        _db_tile(tile - N_GEMM, split, dy_ptr, db_ptr, pdb_ptr, cnt_ptr, B, L_Y, C_OUT, N_GEMM, N_DBT, S,
                 DB_STEPS, sy_b, sy_c, sy_l, ONE_SPLIT, ACC_DTYPE, IDX, TAIL_DB, BLOCK_M, BLOCK_T)
    elif POW_TILES and GROUPS == 1 and (Q == 2 or Q == 3):  # a pinned pow config on another geometry: concat
        _dw_pow_tile(tile, split, x_ptr, dy_ptr, dw_ptr, db_ptr, part_ptr, pdb_ptr, cnt_ptr,
                     B, L_X, L_Y, L_RED, C_IN, CQG, OG, N_MT, N_NT, N_GEMM, N_DBT, S, STEPS,
                     sx_b, sx_c, sx_l, sy_b, sy_c, sy_l, Q, K, STRIDE, DIL, PAD_L, TRANSPOSED,
                     DB_MODE, ONE_SPLIT, ACC_DTYPE, PRECISION, IDX, TAIL, TAIL_DB, BLOCK_M, BLOCK_N, BLOCK_T)
    else:
        _dw_gemm_tile(tile, split, x_ptr, dy_ptr, dw_ptr, db_ptr, part_ptr, pdb_ptr, cnt_ptr,
                      B, L_X, L_Y, L_RED, C_IN, CQG, OG, N_MT, N_NT, N_GEMM, N_DBT, S, STEPS,
                      sx_b, sx_c, sx_l, sy_b, sy_c, sy_l, Q, K, STRIDE, DIL, PAD_L, GROUPS, TRANSPOSED,
                      DB_MODE, ONE_SPLIT, ACC_DTYPE, PRECISION, IDX, TAIL, TAIL_DB, BLOCK_M, BLOCK_N, BLOCK_T)


@triton.jit(do_not_specialize=["L_X", "L_Y", "N_PROG", "B", "S", "STEPS", "DB_STEPS"])
def _dw_kernel(
    x_ptr, dy_ptr, dw_ptr, db_ptr, part_ptr, pdb_ptr, cnt_ptr,
    B, L_X, L_Y, L_RED, N_PROG, C_IN, CQG, OG, C_OUT, N_MT, N_NT, N_GEMM, N_DBT, S, STEPS, DB_STEPS,
    sx_b, sx_c, sx_l, sy_b, sy_c, sy_l,
    Q: tl.constexpr, K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr,
    GROUPS: tl.constexpr, TRANSPOSED: tl.constexpr, DB_MODE: tl.constexpr, ONE_SPLIT: tl.constexpr,
    ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr, IDX: tl.constexpr,
    TAIL: tl.constexpr, TAIL_DB: tl.constexpr, POW_TILES: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):
    pid = _program_index()
    if pid >= N_PROG:
        return
    _dw_body(pid, x_ptr, dy_ptr, dw_ptr, db_ptr, part_ptr, pdb_ptr, cnt_ptr,
             B, L_X, L_Y, L_RED, C_IN, CQG, OG, C_OUT, N_MT, N_NT, N_GEMM, N_DBT, S, STEPS, DB_STEPS,
             sx_b, sx_c, sx_l, sy_b, sy_c, sy_l, Q, K, STRIDE, DIL, PAD_L, GROUPS, TRANSPOSED, DB_MODE,
             ONE_SPLIT, ACC_DTYPE, PRECISION, IDX, TAIL, TAIL_DB, POW_TILES, BLOCK_M, BLOCK_N, BLOCK_T)


# --------------------------------------------------------------------------------------------
# Bandwidth kernels for single-channel layers (C_in = 1 or C_out = 1, groups = 1)
# --------------------------------------------------------------------------------------------


@triton.jit
def _thin_tap(acc, j, t, t_ok, rows, rows_ok, L_SRC, ss_l, w_c, c_ok, xv, sw_p, sw_j, Q: tl.constexpr,
              STRIDE: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr, GATHER: tl.constexpr,
              POW_IN: tl.constexpr, ACC_DTYPE: tl.constexpr, IDX: tl.constexpr):
    """_thin_body's tile plus tap ``j``: source rows ``rows`` ([1] fan-out, [C] fan-in) at the tap, a
    [rows, T] tile broadcast against the [C] weights."""
    pos, pos_ok = _tap(t, L_SRC, j, STRIDE, DIL, PAD_L, GATHER)
    v = tl.load(rows[:, None] + pos[None, :].to(IDX) * ss_l,
                mask=rows_ok[:, None] & (t_ok & pos_ok)[None, :], other=0.0).to(ACC_DTYPE)
    if POW_IN:
        vp = v
        for p in tl.static_range(Q):
            w = tl.load(w_c + p * sw_p + j * sw_j, mask=c_ok, other=0.0).to(ACC_DTYPE)  # [C]
            acc += w[:, None] * vp
            vp = vp * v
    else:
        acc += v * _dpoly(w_c + j * sw_j, sw_p, c_ok, xv, Q, ACC_DTYPE)
    return acc


@triton.jit
def _thin_taps(acc, t, t_ok, rows, rows_ok, L_SRC, ss_l, w_c, c_ok, xv, sw_p, sw_j, Q: tl.constexpr,
               K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr,
               GATHER: tl.constexpr, POW_IN: tl.constexpr, ACC_DTYPE: tl.constexpr, IDX: tl.constexpr,
               TAP_LOOP: tl.constexpr):
    """Every tap's _thin_tap, in a loop (TAP_LOOP) or unrolled."""
    if TAP_LOOP:
        for j in range(K):
            acc = _thin_tap(acc, j, t, t_ok, rows, rows_ok, L_SRC, ss_l, w_c, c_ok, xv, sw_p, sw_j, Q, STRIDE, DIL,
                            PAD_L, GATHER, POW_IN, ACC_DTYPE, IDX)
    else:
        for j in tl.static_range(K):
            acc = _thin_tap(acc, j, t, t_ok, rows, rows_ok, L_SRC, ss_l, w_c, c_ok, xv, sw_p, sw_j, Q, STRIDE, DIL,
                            PAD_L, GATHER, POW_IN, ACC_DTYPE, IDX)
    return acc


@triton.jit
def _thin_body(
    pid, src_ptr, w_ptr, x_ptr, bias_ptr, out_ptr, L_SRC, L_OUT, C_FAN,
    ss_b, ss_c, ss_l, sw_n, sw_p, sw_j, sx_b, sx_c, sx_l, so_b, so_c, so_l,
    Q: tl.constexpr, K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr,
    GATHER: tl.constexpr, FANOUT: tl.constexpr, POW_IN: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACC_DTYPE: tl.constexpr, IDX: tl.constexpr, TAP_LOOP: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """One [C, T] tile of a single-channel layer; ``_tap`` maps output to source positions.

    FANOUT (one source channel -> C_FAN outputs), POW_IN:  out[n, t] = sum_{p,j} w[n,p,j] src[t_j]**(p+1)
    FANOUT, not POW_IN (dx of C_out = 1):                   out[n, t] = sum_j src[t_j] * sum_p (p+1) w[n,p,j] x[n,t]**p
    fan-in (C_FAN source channels -> one output), POW_IN:   out[t] = sum_{c,p,j} w[c,p,j] src[c, t_j]**(p+1)
    fan-in, not POW_IN (dx of C_in = 1):                    out[t] = sum_{c,j} src[c, t_j] * sum_p (p+1) w[c,p,j] x[t]**p
    ``w[n, p, j]`` lives at ``n*sw_n + p*sw_p + j*sw_j``. Outer products and Horner: no MMA.
    TAP_LOOP: taps in a loop, not unrolled: unrolled, every tap's [C] weight vectors were loaded up
    front and held (a thread holds whole channel columns), 255 registers and spills on wide tiles.
    """
    n_tt = tl.cdiv(L_OUT, BLOCK_T)
    if FANOUT:
        n_ct = tl.cdiv(C_FAN, BLOCK_C)
        ct = (pid % n_ct).to(tl.int32)
        rest = pid // n_ct
    else:
        rest = pid
    tt = (rest % n_tt).to(tl.int32)
    b = rest // n_tt
    t = tt * BLOCK_T + tl.arange(0, BLOCK_T)  # [T] output positions
    t_ok = t < L_OUT
    acc = tl.zeros([BLOCK_C, BLOCK_T], dtype=ACC_DTYPE)
    src_b = src_ptr + b * ss_b
    if FANOUT:
        c = ct * BLOCK_C + tl.arange(0, BLOCK_C)  # [C] output channels
        c_ok = c < C_FAN
        w_c = w_ptr + c.to(IDX) * sw_n
        if POW_IN:
            xv = acc  # unused
        else:
            xv = tl.load(x_ptr + b * sx_b + (c[:, None].to(IDX) * sx_c + t[None, :].to(IDX) * sx_l),
                         mask=c_ok[:, None] & t_ok[None, :], other=0.0).to(ACC_DTYPE)  # [C, T]
        one = tl.arange(0, 1)  # the single source row
        acc = _thin_taps(acc, t, t_ok, src_b + one, one < 1, L_SRC, ss_l, w_c, c_ok, xv, sw_p, sw_j, Q, K, STRIDE,
                         DIL, PAD_L, GATHER, POW_IN, ACC_DTYPE, IDX, TAP_LOOP)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + c, mask=c_ok, other=0.0).to(ACC_DTYPE)[:, None]
        tl.store(out_ptr + b * so_b + (c[:, None].to(IDX) * so_c + t[None, :].to(IDX) * so_l),
                 acc.to(out_ptr.dtype.element_ty), mask=c_ok[:, None] & t_ok[None, :])
    else:
        if POW_IN:
            xv = acc  # unused
        else:
            xv = tl.load(x_ptr + b * sx_b + t.to(IDX) * sx_l, mask=t_ok, other=0.0).to(ACC_DTYPE)[None, :]
        for c0 in range(0, C_FAN, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)  # [C] source channels
            c_ok = c < C_FAN
            w_c = w_ptr + c.to(IDX) * sw_n
            acc = _thin_taps(acc, t, t_ok, src_b + c.to(IDX) * ss_c, c_ok, L_SRC, ss_l, w_c, c_ok, xv, sw_p, sw_j, Q,
                             K, STRIDE, DIL, PAD_L, GATHER, POW_IN, ACC_DTYPE, IDX, TAP_LOOP)
        out = tl.sum(acc, axis=0)  # [T]
        if HAS_BIAS:
            out += tl.load(bias_ptr).to(ACC_DTYPE)
        tl.store(out_ptr + b * so_b + t.to(IDX) * so_l, out.to(out_ptr.dtype.element_ty), mask=t_ok)


@triton.jit(do_not_specialize=["L_X", "L_Y", "N_PROG"])
def _thin_fwd_kernel(
    x_ptr, w_ptr, bias_ptr, y_ptr, L_X, L_Y, N_PROG, C_FAN,
    sx_b, sx_c, sx_l, sw_n, sw_p, sw_j, sy_b, sy_c, sy_l,
    Q: tl.constexpr, K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr,
    GATHER: tl.constexpr, FANOUT: tl.constexpr, HAS_BIAS: tl.constexpr, ACC_DTYPE: tl.constexpr,
    IDX: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
):
    pid = _program_index()
    if pid >= N_PROG:
        return
    _thin_body(pid, x_ptr, w_ptr, x_ptr, bias_ptr, y_ptr, L_X, L_Y, C_FAN,
               sx_b, sx_c, sx_l, sw_n, sw_p, sw_j, sx_b, sx_c, sx_l, sy_b, sy_c, sy_l,
               Q, K, STRIDE, DIL, PAD_L, GATHER, FANOUT, True, HAS_BIAS, ACC_DTYPE, IDX, True, BLOCK_C, BLOCK_T)


@triton.jit(do_not_specialize=["L_X", "L_Y", "N_PROG", "P_DX", "B", "S", "STEPS", "DB_STEPS"])
def _thin_bwd_kernel(
    x_ptr, dy_ptr, w_ptr, dx_ptr, dw_ptr, db_ptr, part_ptr, pdb_ptr, cnt_ptr,
    B, L_X, L_Y, L_RED, N_PROG, P_DX, C_FAN, C_IN, CQG, OG, C_OUT, N_MT, N_NT, N_GEMM, N_DBT, S, STEPS, DB_STEPS,
    sx_b, sx_c, sx_l, sy_b, sy_c, sy_l, sw_n, sw_p, sw_j, sdx_b, sdx_c, sdx_l,
    Q: tl.constexpr, K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD_L: tl.constexpr,
    TRANSPOSED: tl.constexpr, FANOUT: tl.constexpr, DB_MODE: tl.constexpr, ONE_SPLIT: tl.constexpr,
    ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr, HAS_DW: tl.constexpr, IDX: tl.constexpr,
    TAIL: tl.constexpr, TAIL_DB: tl.constexpr, POW_TILES: tl.constexpr,
    TAP_LOOP: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_TX: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """Single-channel backward in one launch: the grad_W/grad_bias programs first (each walks several
    (batch, time) steps: started first, they overlap the many short dx programs instead of trailing
    them), then P_DX programs writing dx. HAS_DW=False compiles the dx part alone (its registers no
    longer sized for the grad_W body). TAP_LOOP: dx's taps in a loop (``_opt().thin_bwd_tap_loop``)."""
    pid = _program_index()
    if pid >= N_PROG:
        return
    n_dw = N_PROG - P_DX
    if HAS_DW and pid < n_dw:
        _dw_body(pid, x_ptr, dy_ptr, dw_ptr, db_ptr, part_ptr, pdb_ptr, cnt_ptr,
                 B, L_X, L_Y, L_RED, C_IN, CQG, OG, C_OUT, N_MT, N_NT, N_GEMM, N_DBT, S, STEPS, DB_STEPS,
                 sx_b, sx_c, sx_l, sy_b, sy_c, sy_l, Q, K, STRIDE, DIL, PAD_L, 1, TRANSPOSED, DB_MODE,
                 ONE_SPLIT, ACC_DTYPE, PRECISION, IDX, TAIL, TAIL_DB, POW_TILES, BLOCK_M, BLOCK_N, BLOCK_T)
    else:
        _thin_body(pid - n_dw, dy_ptr, w_ptr, x_ptr, w_ptr, dx_ptr, L_Y, L_X, C_FAN,
                   sy_b, sy_c, sy_l, sw_n, sw_p, sw_j, sx_b, sx_c, sx_l, sdx_b, sdx_c, sdx_l,
                   Q, K, STRIDE, DIL, PAD_L, TRANSPOSED, FANOUT, False, False, ACC_DTYPE, IDX, TAP_LOOP, BLOCK_C,
                   BLOCK_TX)


# --------------------------------------------------------------------------------------------
# Config spaces (pruned per call so no block exceeds what its axis needs)
# --------------------------------------------------------------------------------------------


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)  # not triton.cdiv: a JIT-wrapped helper costs microseconds per call on the host


def _next_pow2(n: int) -> int:
    return 1 << (int(n) - 1).bit_length() if n > 1 else 1


def _np2(v: int, floor: int = 16) -> int:
    return max(floor, _next_pow2(max(int(v), 1)))


_MM_SHAPES = [  # (BLOCK_T, BLOCK_N, BLOCK_R, warps); the first is the untuned default
    # The dual (grad_x) mode holds two [T, N] accumulators and x, x**p: at 4 warps a 128x64 tile spills
    # (~1 KB of stack per thread for sm_90); 8 warps or 64 rows keep wide tiles spill-free.
    (128, 64, 32, 8), (128, 64, 32, 4), (128, 64, 64, 8), (128, 128, 32, 8), (64, 64, 64, 4), (64, 64, 32, 4),
    (128, 32, 32, 4), (128, 16, 32, 4), (64, 16, 16, 4), (256, 64, 32, 8),
]
#: A second grad_W tile for GEMMs of at most 16x16 (gen.down1's and disc.1's: 16 output channels x 4-5
#: taps), which had only (16, 16, 256): that takes 255 registers on disc.1 (offline, Triton 3.6,
#: sm_90, fp32), and the single-channel backward's one launch then holds as many for its grad_x
#: programs too; with 64 steps, 64. Offered only to GEMMs that small (_prune_dw).
_DW_SHORT_STEP = (16, 16, 64, 4)
_DW_SHAPES = [  # (BLOCK_M, BLOCK_N, BLOCK_T, warps): M >= 64 where the rows allow (wgmma)
    (64, 128, 64, 8), (64, 64, 64, 4), (128, 128, 32, 8), (128, 64, 64, 8),
    (32, 64, 128, 4), (16, 64, 128, 4), (32, 32, 128, 4), (16, 16, 256, 4), _DW_SHORT_STEP,
]
_THIN_SHAPES = [  # (BLOCK_C, BLOCK_T, warps): per channel block 16 tile elements per thread (twice that
    # spilled), then 8 and 4: the first GPU round found these kernels latency-bound (gen.down1's backward
    # 174 us against a 4 us roofline) and the offline compile shows the smaller tiles cutting registers,
    # so occupancy, by up to 2.7x (gen.down1 fwd 128 -> 48, gen.out_T fwd 255 -> 125); the tuner picks.
    (64, 32, 4), (64, 64, 8), (64, 16, 4),
    (32, 64, 4), (32, 128, 8), (32, 32, 4), (32, 16, 4),
    (16, 128, 4), (16, 256, 8), (16, 64, 4), (16, 32, 4),
    (8, 256, 4), (8, 512, 8), (8, 128, 4), (8, 64, 4),
    (4, 512, 4), (4, 1024, 8), (4, 256, 4),
    (2, 1024, 4), (2, 2048, 8), (2, 512, 4),
]
# A reduction side of 16 channels or fewer (gen.down2's and disc.2's forward over C_in = 16, gen.up4's
# grad_x over C_out = 16) allows only 16-channel reduction blocks, which left those launches a single
# 64x16 tile (gen.up4's grad_x: 4000 programs, dy re-read by each of 4 channel tiles). These give them
# the wide output tiles the other layers tune over. Offline (Triton 3.6, sm_90, fp32) none spills on
# gen.up4's grad_x (186-194 registers; 128x64 at 4 warps and 256x64 at 8 did, 264-320 bytes: left out).
_MM_SHAPES_R16 = [(128, 64, 16, 8), (64, 64, 16, 4), (128, 32, 16, 4), (256, 32, 16, 8), (64, 32, 16, 4)]
# An output side of 16 channels (gen.up4's forward to C_out = 16, gen.down2's and disc.2's grad_x to
# C_in = 16) kept two tiles, 128x16 and 64x16: these add longer time blocks and deeper reduction blocks.
_MM_SHAPES_N16 = [(256, 16, 32, 8), (128, 16, 64, 4), (256, 16, 64, 8)]
# Under the interpreter the smallest legal tiles run fastest: these go first there.
_INTERP_MM = Cfg.of(BLOCK_T=16, BLOCK_N=16, BLOCK_R=16)


def _interp_dw(pow_tiles: bool) -> Cfg:
    return Cfg.of(BLOCK_M=16, BLOCK_N=16, BLOCK_T=16, POW_TILES=pow_tiles)


def _mm_configs(narrow_reduction: bool = False, narrow_out: bool = False) -> list[Cfg]:
    """The GEMM kernels' configs; ``narrow_reduction`` / ``narrow_out``: those for a reduction / output
    side of <= 16 channels."""
    shapes = _MM_SHAPES_R16 + [s for s in _MM_SHAPES if s[2] == 16] if narrow_reduction else list(_MM_SHAPES)
    if narrow_out:
        shapes += [s for s in _MM_SHAPES_N16 if not narrow_reduction or s[2] == 16]
    return [Cfg.of(num_warps=w, BLOCK_T=t, BLOCK_N=n, BLOCK_R=r) for t, n, r, w in shapes]


def _dw_configs(pow_tiles: bool = False) -> list[Cfg]:
    """``POW_TILES``: the tile kind (see ``_opt().dw_tiles``); a kind the geometry cannot take runs concat tiles."""
    return [Cfg.of(num_warps=w, BLOCK_M=m, BLOCK_N=n, BLOCK_T=t, POW_TILES=pow_tiles) for m, n, t, w in _DW_SHAPES]


def _thin_configs() -> list[Cfg]:
    return [Cfg.of(num_warps=w, BLOCK_C=c, BLOCK_T=t) for c, t, w in _THIN_SHAPES]


def _prune_mm(n_out: int, n_red: int, one_pass_q: int = 0) -> list[Cfg]:
    """``one_pass_q``: the dual one-pass mode's power count (0 otherwise). Its loop has no math between
    loads and MMAs, so Triton pipelines it with a shared-memory buffer per stage holding the dy tile
    and the Q weight tiles; stages drop to what fits (a 128x64 tile with 64-channel blocks: 240 KB
    at 3 stages, past Hopper's 227 KB)."""
    kept = [c for c in _mm_configs(_np2(n_red) <= 16, _np2(n_out) <= 16)
            if c["BLOCK_N"] <= _np2(n_out) and c["BLOCK_R"] <= _np2(n_red)]
    if one_pass_q:
        kept = [_fit_stages(c, c["BLOCK_T"] * c["BLOCK_R"] + one_pass_q * c["BLOCK_R"] * c["BLOCK_N"]) for c in kept]
    kept = kept or [_INTERP_MM]
    return [_INTERP_MM] + kept if _launch.interpreting() else kept


#: shared memory a block may use on the GPUs we tune for (Hopper: 227 KB), less room for the epilogue
_SMEM_BUDGET = 224 * 1024


def _fit_stages(cfg: Cfg, elems_per_stage: int, elem_bytes: int = 4) -> Cfg:
    """``cfg`` with no more pipeline stages than ``elems_per_stage`` fp32 values a stage fit in (at least 1)."""
    stages = max(1, min(cfg.num_stages, _SMEM_BUDGET // (elems_per_stage * elem_bytes)))
    return cfg if stages == cfg.num_stages else replace(cfg, num_stages=stages)


def _prune_dw(rows: int, cols: int, pow_tiles: bool = False) -> list[Cfg]:
    small = _np2(rows) * _np2(cols) <= 16 * 16  # the short-step tile only where no other tile fits
    kept = [c for c in _dw_configs(pow_tiles) if c["BLOCK_M"] <= _np2(rows) and c["BLOCK_N"] <= _np2(cols)
            and (small or (c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_T"], c.num_warps) != _DW_SHORT_STEP)]
    kept = kept or [_interp_dw(pow_tiles)]
    return [_interp_dw(pow_tiles)] + kept if _launch.interpreting() else kept


def _thin_bwd_tiles(c_fan: int) -> list[Cfg]:
    """The thin tiles the backward tunes over: the largest channel block's (16, 8 and 4 elements per
    thread); each candidate compiles the whole two-part kernel, so fewer than the forward's."""
    kept = _prune_thin(c_fan)
    return [c for c in kept if c["BLOCK_C"] == kept[0]["BLOCK_C"]][:4]


def _prune_thin(c_fan: int) -> list[Cfg]:
    """Channel blocks of the fan side's size or half of it (a smaller block only re-reads the
    single-channel side); the smallest legal block when there are no more channels than that."""
    cap = _np2(c_fan, floor=2)
    kept = [c for c in _thin_configs() if c["BLOCK_C"] in (min(cap, 64), min(cap, 64) // 2)]
    return kept or _thin_configs()[-1:]


# --------------------------------------------------------------------------------------------
# Host side: geometry, launchers
# --------------------------------------------------------------------------------------------


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash(self.ints()))  # a plan key part: hashed on every call

    def __hash__(self) -> int:
        return self._hash

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
# W is repacked tap-major ([G, K, CQG, OG], output channel contiguous) before the GEMM kernels once a
# call has Options.pack_min_macs multiply-adds: the repack is one small copy kernel, the unpacked W
# tile is a stride-K gather (~8x the L2 sectors). Small layers keep the native layout (one launch).
# grad_W split (Options.dw_programs_per_sm, dw_min_steps): where the step floor leaves SMs idle (short
# reductions: the discriminator's layers, gen.down1's widest grad_W tile: 8 to 504 steps in all), the
# tuner also times each grad_W config with lower floors (Options.dw_split_steps: more programs, fewer
# steps each, more partials for the tail to sum); where the SM count bounds the split instead (the
# wide generator layers: ~260 programs), with 1/k as many splits (Options.dw_split_divs): the last
# program of a tile sums every split's partials alone, one load after another (gen.down4's first
# candidate: 43 splits x 3 powers x 32 KB, 4.2 MB read by one program after all others are done), so
# fewer, longer splits can win. S and STEPS are runtime arguments: the variants share the compiled kernel.
# The last program of a split tile sums the partials Options.tail_max_splits at a time, at most
# Options.tail_elements values per load (a [16, 16] tile: 32 partials per load; [64, 128]: one).
# Single-channel backward (Options.thin_split_bwd): "tuned" times one launch against two on the first
# call of a shape on a GPU and keeps the faster here (the GPU round records both times).
_thin_split_picks: dict[tuple, bool] = {}
_thin_split_timings: dict[tuple, tuple[float, float]] = {}  # (one launch, two launches) ms per key
# Single-channel backward, dx's taps in a loop (Options.thin_bwd_tap_loop): unrolled, ptxas hoisted
# every tap's loads and weight vectors, and the C_in = 1 layers' one-launch variants needed 197-255
# registers whatever the grad_W tile; looped, 64-128 (offline, Triton 3.6, sm_90, fp32).
# grad_x in one pass (Options.dual_one_pass, q <= 3): offline (sm_90, Triton 3.9 ptxas) it also needs
# fewer registers than one pass per power (gen.up2's 128x64 tile 244 -> 176 registers, its 4-warp
# variant's spill 832 -> 72 bytes; spilling GEMM variants in the compile check 11 -> 3).
# grad_W tile kinds (Options.dw_tiles): offline (sm_90) pow tiles cut the single-channel layers' small
# backward tiles from 200-255 to 92-186 registers, but wide ones hold Q accumulators (gen.down4's
# 64x128: 160 -> 214 registers for 3x the outputs), so neither wins everywhere on paper; "tuned" times
# both kinds per tune key. The single-channel backward, whose candidates are few, keeps the first kind.


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


def _gemm_weight(weight: torch.Tensor, d: _Dims, g: _Geom, macs: int):
    """W for the GEMM kernels and its canonical strides; repacked tap-major when large enough."""
    sw = _canon_w_strides(weight, d, g)
    if macs < _opt().pack_min_macs:
        return weight, sw
    G = g.groups
    view = weight.as_strided((G, d.OG, d.CQG, d.K), sw)  # [g, o, c, j]
    packed = view.permute(0, 3, 2, 1).contiguous()  # [g, j, c, o]: o contiguous, then c
    return packed, (d.K * d.CQG * d.OG, 1, d.OG, d.CQG * d.OG)


def _geo_consts(d: _Dims, g: _Geom) -> dict:
    return {"Q": g.q, "K": d.K, "STRIDE": g.stride, "DIL": g.dilation, "PAD_L": g.pad_left}


def _use_thin(d: _Dims, g: _Geom) -> bool:
    return _opt().thin and g.groups == 1 and (d.C_in == 1 or d.C_out == 1)


_kernels: dict[str, _launch.Kernel] = {}


def _kernel(name: str) -> _launch.Kernel:
    if name not in _kernels:
        fn = {"gather": _mm_kernel, "scatter": _mm_kernel, "dw": _dw_kernel,
              "thin_fwd": _thin_fwd_kernel, "thin_bwd": _thin_bwd_kernel}[name]
        _kernels[name] = _launch.Kernel(name, fn)
    return _kernels[name]


def _mm(kind: str, a, w, sw, x, bias, out, *, L_A: int, L_OUT: int, N_OUT: int, n_red: int, n_bg: int,
        d: _Dims, g: _Geom, pow_a: bool) -> None:
    """One implicit-GEMM launch: ``kind`` 'gather' (conv fwd / convT dx) or 'scatter' (conv dx / convT fwd)."""
    xs = x if x is not None else a
    scatter = kind == "scatter"
    j_step = g.stride // math.gcd(g.stride, g.dilation) if scatter else 1
    consts = {**_geo_consts(d, g), "J_STEP": j_step, "GROUPS": g.groups,
              "SCATTER": scatter, "POW_A": pow_a, "HAS_BIAS": bias is not None, "ACC_DTYPE": _acc_dtype(a.dtype),
              "PRECISION": _precision(a), "IDX": _idx(a, x, out, weights=(w,)),
              "ONE_PASS": _opt().dual_one_pass and not pow_a and g.q <= 3}
    rows = _cdiv(L_OUT, g.stride) if scatter else L_OUT
    if scatter:
        n_bg *= g.stride
    base = {
        "a_ptr": a, "w_ptr": w, "x_ptr": xs, "bias_ptr": bias if bias is not None else w, "out_ptr": out,
        "L_A": L_A, "L_OUT": L_OUT, "N_OUT": N_OUT, "C_IN": d.C_in, "CQG": d.CQG, "OG": d.OG,
        "sa_b": a.stride(0), "sa_c": a.stride(1), "sa_l": a.stride(2),
        "sw_g": sw[0], "sw_o": sw[1], "sw_c": sw[2], "sw_k": sw[3],
        "sx_b": xs.stride(0), "sx_c": xs.stride(1), "sx_l": xs.stride(2),
        "so_b": out.stride(0), "so_c": out.stride(1), "so_l": out.stride(2), **consts,
    }

    def prepare(cfg: Cfg):
        n = _cdiv(N_OUT, cfg["BLOCK_N"]) * _cdiv(rows, cfg["BLOCK_T"]) * n_bg
        return {**base, "N_PROG": n}, n

    key = (a.dtype, tuple((k, v) for k, v in consts.items() if k != "ACC_DTYPE"), d.C_in, d.CQG, d.OG, N_OUT, sw[1] == 1, _bucket(rows))
    one_pass_q = g.q if consts["ONE_PASS"] else 0
    _kernel(kind)(a.device, key, lambda: _prune_mm(N_OUT, n_red, one_pass_q), prepare)


def _pow_legal(g: _Geom) -> bool:
    """Whether grad_W may run on power tiles (_dw_pow_tile): groups 1, Q = 2 or 3 (the kernel's test too)."""
    return g.groups == 1 and 2 <= g.q <= 3


def _dw_tile_kinds(g: _Geom) -> tuple[bool, ...]:
    """The ``POW_TILES`` values of ``g``'s grad_W candidates (``_opt().dw_tiles``), the untuned default first."""
    if not _pow_legal(g) or _opt().dw_tiles == "concat":
        return (False,)
    return (True,) if _opt().dw_tiles == "pow" else (True, False)


def _cfg_pow(cfg: Cfg, g: _Geom) -> bool:
    """Whether a grad_W launch with ``cfg`` runs power tiles (a pow config on another geometry does not)."""
    return bool(cfg.kwargs.get("POW_TILES", False)) and _pow_legal(g)


def _dw_extent(d: _Dims, g: _Geom, pow_tiles: bool) -> tuple[int, int]:
    """(rows, columns) of the grad_W GEMM as the launch tiles it."""
    if pow_tiles:
        return (d.OG * d.K, d.C_in) if g.transposed else (d.OG, d.C_in * d.K)
    return (d.OG * d.K, d.CQG) if g.transposed else (d.OG, d.CQG * d.K)


def _dw_plan(cfg: Cfg, d: _Dims, g: _Geom, need_w: bool, db_mode: int, L_red: int, L_y: int, device) -> dict:
    """Tiles and split of a grad_W launch for one config."""
    BM, BN, BT = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_T"]
    rows, cols = _dw_extent(d, g, _cfg_pow(cfg, g))
    n_mt, n_nt = _cdiv(rows, BM), _cdiv(cols, BN)
    n_gemm = g.groups * n_mt * n_nt if need_w else 0
    n_dbt = _cdiv(d.C_out, BM) if db_mode == 2 else g.groups * n_mt
    n_tiles = n_gemm + (n_dbt if db_mode == 2 else 0)
    total = d.B * _cdiv(L_red, BT)
    want = _cdiv(_opt().dw_programs_per_sm * _launch.sm_count(device), max(n_tiles, 1))
    floor_cap = _cdiv(total, cfg.host_kw.get("DW_MIN_STEPS", _opt().dw_min_steps))
    S = _cdiv(max(1, min(want, floor_cap)), cfg.host_kw.get("DW_SPLIT_DIV", 1))
    steps = _cdiv(total, S)
    S = _cdiv(total, steps)
    db_steps = _cdiv(d.B * _cdiv(L_y, BT), S)
    return {"N_MT": n_mt, "N_NT": n_nt, "N_GEMM": n_gemm, "N_DBT": n_dbt, "S": S, "STEPS": steps,
            "DB_STEPS": db_steps, "n_tiles": n_tiles, "sm_bound": want < floor_cap}


def _dw_args(plan: dict, x, dy, dw, db, d: _Dims, g: _Geom, db_mode: int, L_red: int, idx) -> dict:
    """Arguments of the grad_W program range (shared by _dw_kernel and _thin_bwd_kernel); ``idx`` the
    launch's offset type (:func:`_idx` over every tensor it reads or writes)."""
    S, one = plan["S"], plan["S"] == 1
    acc_t = torch.float64 if x.dtype == torch.float64 else torch.float32
    BM, BN = plan["cfg"]["BLOCK_M"], plan["cfg"]["BLOCK_N"]
    pow_tiles = _cfg_pow(plan["cfg"], g)
    if one:
        part = pdb = cnt = x
    else:
        per_tile = BM * BN * (g.q if pow_tiles else 1)  # a partial per power with pow tiles
        part = _launch.scratch(max(S * plan["N_GEMM"] * per_tile, 1), acc_t, x.device)
        pdb = _launch.scratch(max(S * plan["N_DBT"] * BM, 1), acc_t, x.device)
        cnt = _launch.counters(x.device, plan["n_tiles"])
    return {
        "x_ptr": x, "dy_ptr": dy, "dw_ptr": dw if dw is not None else x, "db_ptr": db if db is not None else x,
        "part_ptr": part, "pdb_ptr": pdb, "cnt_ptr": cnt,
        "B": d.B, "L_X": x.shape[2], "L_Y": dy.shape[2], "L_RED": L_red, "C_IN": d.C_in, "CQG": d.CQG,
        "OG": d.OG, "C_OUT": d.C_out, **{k: plan[k] for k in ("N_MT", "N_NT", "N_GEMM", "N_DBT", "S", "STEPS",
                                                           "DB_STEPS")},
        "sx_b": x.stride(0), "sx_c": x.stride(1), "sx_l": x.stride(2),
        "sy_b": dy.stride(0), "sy_c": dy.stride(1), "sy_l": dy.stride(2),
        **_geo_consts(d, g), "TRANSPOSED": g.transposed, "DB_MODE": db_mode, "ONE_SPLIT": one,
        "ACC_DTYPE": _acc_dtype(x.dtype), "PRECISION": _precision(x), "IDX": idx,
        "TAIL": _tail_splits(BM * BN), "TAIL_DB": _tail_splits(BM),
    }


def _tail_splits(size: int) -> int:
    """Split partials the last program of a tile loads at once (TAIL): up to _opt().tail_elements elements."""
    return max(1, min(_opt().tail_max_splits, _opt().tail_elements // size))


def _db_mode(g: _Geom, need_w: bool, need_b: bool) -> int:
    if not need_b:
        return 0
    return 1 if need_w and not g.transposed else 2


def _dw_candidates(d: _Dims, g: _Geom) -> list[Cfg]:
    return [c for p in _dw_tile_kinds(g) for c in _prune_dw(*_dw_extent(d, g, p), p)]


def _with_splits(cands: list[Cfg], plan_of: Callable[[Cfg], dict]) -> list[Cfg]:
    """``cands``, then each one's split variants (host settings; ``plan_of(cfg)``: its _dw_plan) that
    launch another number of splits: where the floor of (batch, time) steps a program bounds the split,
    lower floors (``_opt().dw_split_steps``: more, shorter programs); where the SM count does, fewer splits
    (``_opt().dw_split_divs``: a shorter tail)."""
    out = list(cands)
    for c in cands:
        base = plan_of(c)
        if base["sm_bound"]:
            variants = [c.with_host(DW_SPLIT_DIV=k) for k in _opt().dw_split_divs]
        else:
            variants = [c.with_host(DW_MIN_STEPS=m) for m in _opt().dw_split_steps]
        for v in variants:
            if plan_of(v)["S"] != base["S"] and v not in out:
                out.append(v)
    return out


def _dw_key(x, d: _Dims, g: _Geom, db_mode: int, need_w: bool, L_red: int, idx) -> tuple:
    return (x.dtype, _precision(x), g.transposed, g.q, d.K, g.stride, g.dilation, g.pad_left, g.groups, d.C_in,
            d.CQG, d.OG, db_mode, need_w, _bucket(d.B * L_red), idx, _dw_tile_kinds(g), _opt().dw_min_steps,
            _opt().dw_split_steps, _opt().dw_split_divs)


def _launch_dw(x, dy, dw, db, d: _Dims, g: _Geom) -> None:
    """grad_W and/or grad_bias of either layer kind in one launch."""
    need_w, need_b = dw is not None, db is not None
    db_mode = _db_mode(g, need_w, need_b)
    L_red = d.L_in if g.transposed else d.L_out
    idx = _idx(x, dy, weights=(dw,))

    def prepare(cfg: Cfg):
        plan = {**_dw_plan(cfg, d, g, need_w, db_mode, L_red, dy.shape[2], x.device), "cfg": cfg}
        n = plan["S"] * plan["n_tiles"]
        return {**_dw_args(plan, x, dy, dw, db, d, g, db_mode, L_red, idx), "GROUPS": g.groups, "N_PROG": n}, n

    def candidates() -> list[Cfg]:
        return _with_splits(_dw_candidates(d, g), lambda c: _dw_plan(c, d, g, need_w, db_mode, L_red, dy.shape[2],
                                                                     x.device))

    _kernel("dw")(x.device, _dw_key(x, d, g, db_mode, need_w, L_red, idx), candidates, prepare)


def _thin_w_strides(weight: torch.Tensor, d: _Dims, g: _Geom, fan_is_out: bool) -> tuple[int, int, int]:
    """(sw_n, sw_p, sw_j) of ``w[n, p, j]`` for the thin kernels; ``n`` the fan channel."""
    st = weight.stride()
    s_o, s_idx = (st[1], st[0]) if g.transposed else (st[0], st[1])  # canonical W[o, idx, j]
    if fan_is_out:  # C_in = 1: idx = p
        return s_o, s_idx, st[2]
    return s_idx, d.C_in * s_idx, st[2]  # C_out = 1: idx = p*C_in + i


def _thin_fwd(x, weight, bias, y, d: _Dims, g: _Geom) -> None:
    fanout = d.C_in == 1
    c_fan = d.C_out if fanout else d.C_in
    sw = _thin_w_strides(weight, d, g, fan_is_out=fanout)
    consts = {**_geo_consts(d, g), "GATHER": not g.transposed, "FANOUT": fanout, "HAS_BIAS": bias is not None,
              "ACC_DTYPE": _acc_dtype(x.dtype), "IDX": _idx(x, y, weights=(weight,))}
    base = {"x_ptr": x, "w_ptr": weight, "bias_ptr": bias if bias is not None else weight, "y_ptr": y,
            "L_X": d.L_in, "L_Y": d.L_out, "C_FAN": c_fan,
            "sx_b": x.stride(0), "sx_c": x.stride(1), "sx_l": x.stride(2), "sw_n": sw[0], "sw_p": sw[1],
            "sw_j": sw[2], "sy_b": y.stride(0), "sy_c": y.stride(1), "sy_l": y.stride(2), **consts}

    def prepare(cfg: Cfg):
        n = d.B * _cdiv(d.L_out, cfg["BLOCK_T"]) * (_cdiv(c_fan, cfg["BLOCK_C"]) if fanout else 1)
        return {**base, "N_PROG": n}, n

    key = (x.dtype, tuple((k, v) for k, v in consts.items() if k != "ACC_DTYPE"), c_fan, _bucket(d.L_out))
    _kernel("thin_fwd")(x.device, key, lambda: _prune_thin(c_fan), prepare)


def _faster_of(one: Callable[[], None], two: Callable[[], None], bench: Callable[[Callable[[], None]], float]
               ) -> tuple[bool, float, float]:
    """(whether ``two`` is the faster, ms of ``one``, ms of ``two``): each run once first (its kernels
    tune and compile there), then timed by ``bench``; no launch of theirs joins a plan being recorded."""
    with _launch.recording_paused():
        one()
        two()
        t1, t2 = bench(one), bench(two)
    return t2 < t1, t1, t2


def _thin_split(dy, x, weight, dx, dw, db, d: _Dims, g: _Geom) -> bool:
    """Whether this single-channel backward runs in two launches (``_opt().thin_split_bwd``): with "tuned"
    the faster way for its shape on this GPU, timed on the shape's first call; one launch where
    nothing can be timed (CPU tensors, tuning off, a CUDA graph capture) or the timing fails."""
    if not (dw is not None or db is not None):
        return False
    if _opt().thin_split_bwd != "tuned":
        return bool(_opt().thin_split_bwd)

    def one() -> None:
        _thin_bwd(dy, x, weight, dx, dw, db, d, g)

    def two() -> None:
        _thin_bwd_split(dy, x, weight, dx, dw, db, d, g)

    if _launch._compile_hook is not None:  # precompile: compile the two-launch way's kernels too
        two()
        return False
    if x.device.type != "cuda":
        return False
    key = (_thin_bwd_key(dy, x, weight, dx, dw, db, d, g), x.device)
    pick = _thin_split_picks.get(key)
    if pick is not None:
        return pick
    if not _launch.Kernel.tuning_enabled() or torch.cuda.is_current_stream_capturing():
        return False

    try:
        pick, t1, t2 = _faster_of(one, two, _launch.bench_ms)
        _thin_split_timings[key] = (t1, t2)
        log.debug("selfonn.kernels: thin backward %s: one launch %.4f ms, two %.4f ms", key, t1, t2)
    except Exception as e:  # e.g. a config this GPU cannot hold in one of the ways: keep the other
        log.warning("selfonn.kernels: timing the single-channel backward both ways failed (%s); one launch", e)
        pick = False
    _thin_split_picks[key] = pick
    return pick


def _thin_bwd_split(dy, x, weight, dx, dw, db, d: _Dims, g: _Geom) -> None:
    """The single-channel backward in two launches: dx alone on the thin kernel (its grad_W body
    compiled out), grad_W / grad_bias on _dw_kernel."""
    if dx is not None:
        _thin_bwd(dy, x, weight, dx, None, None, d, g)
    _launch_dw(x, dy, dw, db, d, g)


def _thin_bwd_key(dy, x, weight, dx, dw, db, d: _Dims, g: _Geom) -> tuple:
    """The thin backward's tune key (its kernel's and the split pick's)."""
    need_w, need_b = dw is not None, db is not None
    fanout = d.C_in != 1
    L_red = d.L_in if g.transposed else d.L_out
    idx = _idx(x, dy, dx, weights=(weight, dw))
    return (_dw_key(x, d, g, _db_mode(g, need_w, need_b), need_w, L_red, idx), fanout, dx is not None,
            d.C_in if fanout else d.C_out, _bucket(d.L_in), _opt().thin_bwd_tap_loop)


def _thin_bwd(dy, x, weight, dx, dw, db, d: _Dims, g: _Geom) -> None:
    """dx (bandwidth kernel) and grad_W / grad_bias (the _dw_kernel programs) in one launch."""
    fanout = d.C_in != 1  # dx fans the single dy channel out to C_in channels
    c_fan = d.C_in if fanout else d.C_out
    need_w, need_b = dw is not None, db is not None
    db_mode = _db_mode(g, need_w, need_b)
    L_red = d.L_in if g.transposed else d.L_out
    sw = _thin_w_strides(weight, d, g, fan_is_out=not fanout)
    idx = _idx(x, dy, dx, weights=(weight, dw))

    def candidates() -> list[Cfg]:  # a small product: each candidate compiles the whole two-part kernel
        dw_cands = _dw_candidates(d, g)[:2 if need_w or need_b else 1]
        if need_w or need_b:
            dw_cands = _with_splits(dw_cands, lambda c: _dw_plan(c, d, g, need_w, db_mode, L_red, dy.shape[2],
                                                                 x.device))
        return [Cfg(Cfg.of(BLOCK_C=tc["BLOCK_C"], BLOCK_TX=tc["BLOCK_T"], **dc.kwargs).blocks,
                    max(tc.num_warps, dc.num_warps), dc.num_stages, dc.host)
                for tc in _thin_bwd_tiles(c_fan) for dc in dw_cands]

    def prepare(cfg: Cfg):
        p_dx = 0
        if dx is not None:
            p_dx = d.B * _cdiv(d.L_in, cfg["BLOCK_TX"]) * (_cdiv(c_fan, cfg["BLOCK_C"]) if fanout else 1)
        if need_w or need_b:
            plan = {**_dw_plan(cfg, d, g, need_w, db_mode, L_red, dy.shape[2], x.device), "cfg": cfg}
        else:  # dx only: an empty grad_W range
            plan = {"N_MT": 1, "N_NT": 1, "N_GEMM": 0, "N_DBT": 0, "S": 1, "STEPS": 0, "DB_STEPS": 0,
                    "n_tiles": 0, "cfg": cfg}
        args = _dw_args(plan, x, dy, dw, db, d, g, db_mode, L_red, idx)
        dxt = dx if dx is not None else x
        n = p_dx + plan["S"] * plan["n_tiles"]
        args.update({"w_ptr": weight, "dx_ptr": dxt, "N_PROG": n, "P_DX": p_dx, "C_FAN": c_fan,
                     "HAS_DW": need_w or need_b, "TAP_LOOP": _opt().thin_bwd_tap_loop,
                     "sw_n": sw[0], "sw_p": sw[1], "sw_j": sw[2],
                     "sdx_b": dxt.stride(0), "sdx_c": dxt.stride(1), "sdx_l": dxt.stride(2), "FANOUT": fanout})
        return args, n

    _kernel("thin_bwd")(x.device, _thin_bwd_key(dy, x, weight, dx, dw, db, d, g), candidates, prepare)


# ---- plans: a repeated call signature skips the host path (``_launch.Plan``) --------------------
#
# Plans are kept per options value (``_plan_sets``): switching options switches dicts, so a plan key
# holds only what a call's launches depend on besides its tensors' addresses and the options.

_PLANS_MAX = 4096
_plan_sets: dict[Options, dict[tuple, _launch.Plan]] = {}
_plan_opts: Options | None = None  # the options _plan_dict belongs to (compared by identity per call)
_plan_dict: dict[tuple, _launch.Plan] = {}
_replay_ok = True  # False once this Triton's launcher refused a direct call: plans off for the process


def plans() -> dict[tuple, _launch.Plan]:
    """The plans recorded under the current options (equal options share them)."""
    global _plan_opts, _plan_dict
    o = _options._current
    if o is not _plan_opts:
        _plan_dict = _plan_sets.setdefault(o, {})
        _plan_opts = o
    return _plan_dict


@contextlib.contextmanager
def plans_set_aside() -> Iterator[None]:
    """Inside: no plan recorded before is seen, and none recorded inside is kept afterwards."""
    global _plan_sets, _plan_opts, _plan_dict
    saved = _plan_sets, _plan_opts, _plan_dict
    _plan_sets, _plan_opts, _plan_dict = {}, None, {}
    try:
        yield
    finally:
        _plan_sets, _plan_opts, _plan_dict = saved


def _replaying() -> bool:
    """Whether plans may be replayed now: not while a config is pinned (tests) or precompile runs (its
    launches only compile). A plan exists only where launches were compiled and real (_recordable)."""
    return _options._current.plans and _replay_ok and not _launch._pinned and _launch._compile_hook is None


def _recordable() -> bool:
    """Plans are recorded only where launches are compiled and direct: not under the interpreter."""
    return not _launch.interpreting() and _launch._direct_enabled()


def _replay(plan: _launch.Plan, tensors: tuple) -> bool:
    """Launch ``plan`` with this call's tensors; False (the caller takes the full path) if it does not
    fit them, or (plans then off for the process) if this Triton's launcher refuses the direct call."""
    global _replay_ok
    try:
        return plan.run_fn(tensors)
    except (ImportError, AttributeError, TypeError, KeyError) as e:
        _replay_ok = False
        log.warning("selfonn.kernels: plan replay unavailable (%r); launching through the full path", e)
        return False


def _keep(plans: dict, key: tuple, plan: _launch.Plan | None) -> None:
    # Inside a CUDA graph capture an untuned key runs its first candidate, untuned: replaying that
    # forever would skip the tuning of the next eager call, so a plan recorded there is not kept.
    if plan is not None and not (plan.device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
        if len(plans) >= _PLANS_MAX:
            plans.clear()
        plans[key] = plan


def _macs(d: _Dims) -> int:
    return d.B * d.L_out * d.C_out * d.CQG * d.K


def _packs(d: _Dims, g: _Geom) -> bool:
    """Whether the GEMM kernels get W repacked (a fresh tensor per call, so a plan role of its own)."""
    return not _use_thin(d, g) and _macs(d) >= _opt().pack_min_macs


def _recording(key: tuple | None):
    return _launch.recording() if key is not None else contextlib.nullcontext([])


_FRESH = ("y", "dx", "dw", "db", "wp")  # roles a call allocates itself (aligned: not checked per call)
_tf32 = torch._C._get_cudnn_allow_tf32  # torch.backends.cudnn.allow_tf32 without the module attribute lookup


def _forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, g: _Geom) -> torch.Tensor:
    """y of either layer kind. A call signature seen before replays its plan; the first records it."""
    key = plan_dict = None
    o = _options._current
    if o.plans and _replay_ok and not _launch._pinned and _launch._compile_hook is None:  # _replaying()
        plan_dict = _plan_dict if o is _plan_opts else plans()
        # everything the launches depend on besides the tensors' addresses and the options
        key = (g, x.shape, x.stride(), x.dtype, x.device, weight.shape, weight.stride(), weight.dtype,
               None if bias is None else (bias.shape, bias.stride()), _tf32())
        plan = plan_dict.get(key)
        if plan is not None:
            y_shape, packs, d = plan.data
            y = x.new_empty(y_shape)
            if _replay(plan, (x, weight, bias, y, _gemm_weight(weight, d, g, _macs(d))[0] if packs else None)):
                return y
        elif not _recordable():
            key = None
    d = _dims(x, weight, g)
    if bias is not None and bias.shape[0] != d.C_out:
        raise ValueError(f"bias has {bias.shape[0]} entries, expected out_channels={d.C_out}")
    y = x.new_empty((d.B, d.C_out, d.L_out))
    with _recording(key) as launches:
        w = weight
        if _use_thin(d, g):
            _thin_fwd(x, weight, bias, y, d, g)
        else:
            w, sw = _gemm_weight(weight, d, g, _macs(d))
            kind = "scatter" if g.transposed else "gather"
            _mm(kind, x, w, sw, None, bias, y, L_A=d.L_in, L_OUT=d.L_out, N_OUT=d.OG, n_red=d.C_in,
                n_bg=d.B * g.groups, d=d, g=g, pow_a=True)
        if key is not None:  # roles in the order _replay passes them
            roles = {"x": x, "w": weight, "b": bias, "y": y, "wp": w if w is not weight else None}
            _keep(plan_dict, key, _launch.Plan.of(launches, roles, x.device, ((d.B, d.C_out, d.L_out),
                                                                              _packs(d, g), d), fresh=_FRESH))
    return y


def _grads(x: torch.Tensor, weight: torch.Tensor, dy: torch.Tensor, C_out: int, need_x: bool, need_w: bool,
           need_b: bool):
    dx = torch.empty_like(x, memory_format=torch.contiguous_format) if need_x else None
    dw = torch.empty_like(weight, memory_format=torch.contiguous_format) if need_w else None
    db = dy.new_empty(C_out) if need_b else None
    return dx, dw, db


def _backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, g: _Geom, need_x: bool, need_w: bool,
              need_b: bool):
    """(dx, dW, dbias), None where not needed; dW in W's dtype, dbias in dy's. Plans as in _forward."""
    key = plan_dict = None
    o = _options._current
    if (need_x or need_w or need_b) and o.plans and _replay_ok and not _launch._pinned \
            and _launch._compile_hook is None:  # _replaying()
        plan_dict = _plan_dict if o is _plan_opts else plans()
        key = (g, x.shape, x.stride(), x.dtype, x.device, weight.shape, weight.stride(), weight.dtype, dy.shape,
               dy.stride(), dy.dtype, need_x, need_w, need_b, _tf32())
        plan = plan_dict.get(key)
        if plan is not None:
            d, packs = plan.data
            dx = torch.empty_like(x, memory_format=torch.contiguous_format) if need_x else None
            dw = torch.empty_like(weight, memory_format=torch.contiguous_format) if need_w else None
            db = dy.new_empty(d.C_out) if need_b else None
            if _replay(plan, (x, weight, dy, dx, dw, db, _gemm_weight(weight, d, g, _macs(d))[0] if packs else None)):
                return dx, dw, db
        elif not _recordable():
            key = None
    d = _dims(x, weight, g)
    dx, dw, db = _grads(x, weight, dy, d.C_out, need_x, need_w, need_b)
    if not (need_x or need_w or need_b):
        return dx, dw, db
    with _recording(key) as launches:
        w = weight
        thin = _use_thin(d, g)
        if thin and _thin_split(dy, x, weight, dx, dw, db, d, g):
            _thin_bwd_split(dy, x, weight, dx, dw, db, d, g)
        elif thin:
            _thin_bwd(dy, x, weight, dx, dw, db, d, g)
        else:
            if need_x:
                w, sw = _gemm_weight(weight, d, g, _macs(d))
                kind = "gather" if g.transposed else "scatter"
                _mm(kind, dy, w, sw, x, None, dx, L_A=d.L_out, L_OUT=d.L_in, N_OUT=d.C_in, n_red=d.C_out, n_bg=d.B,
                    d=d, g=g, pow_a=False)
            if need_w or need_b:
                _launch_dw(x, dy, dw, db, d, g)
        if key is not None:  # roles in the order _replay passes them
            roles = {"x": x, "w": weight, "dy": dy, "dx": dx, "dw": dw, "db": db, "wp": w if w is not weight else None}
            _keep(plan_dict, key, _launch.Plan.of(launches, roles, x.device, (d, need_x and _packs(d, g)),
                                                  fresh=_FRESH))
    return dx, dw, db


# --------------------------------------------------------------------------------------------
# Autograd (eager) and torch.library ops (torch.compile, CUDA graphs)
# --------------------------------------------------------------------------------------------


def _fn_backward(ctx, dy):
    x, weight = ctx.saved_tensors
    nx, nw, nb = ctx.needs_input_grad[:3]
    dx, dw, db = _backward(dy, x, weight, ctx.geom, nx, nw, nb and ctx.has_bias)
    return dx, dw, db, None


# create_graph=True: a second backward through these gradients errors out (the kernels' results are
# not differentiable); the wrapper costs microseconds, so only that case pays for it.
_fn_backward_once = torch.autograd.function.once_differentiable(_fn_backward)


class _SelfONNFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, geom: _Geom):
        ctx.save_for_backward(x, weight)
        ctx.geom = geom
        ctx.has_bias = bias is not None
        return _forward(x, weight, bias, geom)

    @staticmethod
    def backward(ctx, dy):
        if torch.is_grad_enabled():
            return _fn_backward_once(ctx, dy)
        return _fn_backward(ctx, dy)


@torch.library.custom_op("selfonn::fused_conv", mutates_args=())
def _fused_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, pad_left: int,
                pad_right: int, dilation: int, groups: int, q: int, transposed: bool,
                output_padding: int) -> torch.Tensor:
    """Self-ONN (transposed) conv, the fused kernels; the op ``torch.compile`` records."""
    g = _geom_of(stride, pad_left, pad_right, dilation, groups, q, output_padding, transposed)
    return _forward(x, weight, bias, g)


@_fused_conv.register_fake
def _fused_conv_fake(x, weight, bias, stride, pad_left, pad_right, dilation, groups, q, transposed, output_padding):
    d = _dims(x, weight, _Geom(stride, pad_left, pad_right, dilation, groups, q, output_padding, transposed))
    return x.new_empty((d.B, d.C_out, d.L_out))


@torch.library.custom_op("selfonn::fused_conv_backward", mutates_args=())
def _fused_conv_backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: int, pad_left: int,
                         pad_right: int, dilation: int, groups: int, q: int, transposed: bool, output_padding: int,
                         need_x: bool, need_w: bool, need_b: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dW, dbias) of ``selfonn::fused_conv``; a gradient not asked for is an empty tensor."""
    g = _geom_of(stride, pad_left, pad_right, dilation, groups, q, output_padding, transposed)
    dx, dw, db = _backward(dy, x, weight, g, need_x, need_w, need_b)
    empty = x.new_empty(0)
    return (dx if dx is not None else empty, dw if dw is not None else empty.clone(),
            db if db is not None else empty.clone())


@_fused_conv_backward.register_fake
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


_fused_conv.register_autograd(_op_backward, setup_context=_op_setup)


def _apply(x, weight, bias, g: _Geom) -> torch.Tensor:
    """Eager: the autograd.Function (no dispatcher round trip), or the bare forward when no gradient
    can flow (inference: the Function's bookkeeping is a quarter of a small call's host time).
    Under torch.compile: the library op."""
    if torch.compiler.is_compiling():
        return torch.ops.selfonn.fused_conv(x, weight, bias, *g.ints())
    return _eager(x, weight, bias, g)


def _eager(x, weight, bias, g: _Geom) -> torch.Tensor:
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        if _unwrap is None or torch._C._are_functorch_transforms_active():
            return _SelfONNFn.apply(x, weight, bias, g)
        # what Function.apply does without functorch transforms, less its Python (a tenth of the floor)
        return _c_apply(_unwrap(x), _unwrap(weight), None if bias is None else _unwrap(bias), g)
    return _forward(x, weight, bias, g)


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


_geom_of = functools.lru_cache(maxsize=1024)(_Geom)  # one _Geom per geometry: no dataclass init per call


def checked_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, pad_left: int,
                 pad_right: int, dilation: int, groups: int, q: int, transposed: bool,
                 output_padding: int) -> torch.Tensor:
    """The fused (transposed) conv for :mod:`selfonn.functional`, which has checked the arguments and
    operands and applied autocast already: the entry points below repeat that for direct callers."""
    if x.dtype not in _DTYPES:  # devices: selfonn's backend resolution allows CUDA or the interpreter only
        raise TypeError(f"the fused kernels take one of {_DTYPES}, got {x.dtype}")
    if torch.compiler.is_compiling():  # torch.compile cannot trace an lru_cache: a plain _Geom
        g = _Geom(stride, pad_left, pad_right, dilation, groups, q, output_padding, transposed)
        return torch.ops.selfonn.fused_conv(x, weight, bias, *g.ints())
    return _eager(x, weight, bias, _geom_of(stride, pad_left, pad_right, dilation, groups, q, output_padding,
                                            transposed))


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
