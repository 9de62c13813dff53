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

Kernels. Two implicit-GEMM kernels tile the output over (time, channels) and reduce with ``tl.dot``;
each has two modes chosen by the constexpr ``POW_A``:

* ``_fwd_kernel`` gathers its operand at ``t*s + j*d - pl`` (a conv). ``POW_A=True``: operand ``x``,
  powers computed in registers from one load of ``x`` per (channel tile, tap) - the conv forward.
  ``POW_A=False``: operand ``dy``, output channels are input channels, one accumulator per power
  ``p`` (pure MMA loop), scaled by ``p*x**(p-1)`` once at the end - the transposed conv's ``dx``.
* ``_bwd_dx_kernel`` scatters (a transposed conv), decomposed by output phase ``l mod s`` so that
  no tap is wasted on stride holes. ``POW_A=False``: the conv's ``dx``; ``POW_A=True``: the
  transposed conv forward (a transposed conv is the data-gradient of a conv: same kernel).
* ``_bwd_dw_kernel`` correlates ``dy`` with ``x**p`` windows into fp32 partials per (batch, time
  chunk), summed afterwards in a fixed order (deterministic, no atomics); ``GATHER_X`` picks which
  operand is read at the strided window (conv) or at the scattered one (transposed conv).
* ``_bwd_db_kernel`` reduces ``dy`` over time into per-batch fp32 partials.

No ``(B, Q*C, L)`` tensor is ever written; autograd saves only ``x`` and ``W``. Powers and
accumulation are fp32 (fp64 for fp64 inputs) with one cast on store. fp32 ``tl.dot`` uses IEEE
precision unless ``torch.backends.cudnn.allow_tf32`` (the flag governing the conv this replaces) is
on, in which case TF32 is used, like cuDNN. Under autocast (CUDA) x, W and bias are cast to the
autocast dtype first; the MMA then runs in bf16/fp16 with fp32 accumulation.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

__all__ = ["triton_selfonn_conv1d", "triton_selfonn_conv_transpose1d"]


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# --------------------------------------------------------------------------------------------
# Shared reduction steps (inlined into the kernels).
# --------------------------------------------------------------------------------------------


@triton.jit
def _acc_powers(
    acc, a_ptr, a_rows, rows_ok, w_ptr, w_off, g_cqg, n, n_ok,
    i_lo, i_hi, C_IN, CQG, sa_c, sw_o, sw_c,
    Q: tl.constexpr, ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """acc[T, N] += sum_{i, p} x[rows, i] ** p * W[col(i, p), n]; x loaded once per i tile."""
    for i0 in range(i_lo, i_hi, BLOCK_R):
        i = i0 + tl.arange(0, BLOCK_R)  # [R] input channels
        i_ok = i < i_hi
        a = tl.load(
            a_ptr + a_rows[:, None] + i[None, :].to(tl.int64) * sa_c,
            mask=rows_ok[:, None] & i_ok[None, :], other=0.0,
        ).to(ACC_DTYPE)  # [T, R]; zero padding stays 0 under every power
        ap = a
        for p in tl.static_range(Q):
            if p > 0:
                ap = ap * a
            c = p * C_IN + i - g_cqg  # [R] column inside the group
            c_ok = i_ok & (c >= 0) & (c < CQG)  # columns of other groups contribute zero
            w = tl.load(
                w_ptr + w_off + c[:, None].to(tl.int64) * sw_c + n[None, :].to(tl.int64) * sw_o,
                mask=c_ok[:, None] & n_ok[None, :], other=0.0,
            )  # [R, N]
            acc = tl.dot(ap.to(w.dtype), w, acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)
    return acc


@triton.jit
def _acc_dual(
    acc, a_ptr, a_rows, rows_ok, w_ptr, w_off, n, n_ok, o0, o_hi, C_IN, CQG, OG, sa_c, sw_g, sw_o, sw_c,
    P: tl.constexpr, ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """acc[T, N] += sum_{o in block o0} dy[rows, o] * W[o, col(n, P)] for input channels n at power P.

    The caller keeps one accumulator per power and applies (P+1) * x**P once at the end, so the
    reduction loop is pure MMA (no elementwise work per step)."""
    idx = P * C_IN + n  # [N] concat channel of (n, P)
    gc = idx // CQG  # [N] its group
    c = idx - gc * CQG  # [N] its column inside the group
    o = o0 + tl.arange(0, BLOCK_R)  # [R] output channels of the conv (reduction)
    o_ok = o < o_hi
    a = tl.load(
        a_ptr + a_rows[:, None] + o[None, :].to(tl.int64) * sa_c,
        mask=rows_ok[:, None] & o_ok[None, :], other=0.0,
    )  # [T, R]
    o_rel = o[:, None] - (gc * OG)[None, :]  # [R, N] o inside the column's group
    # W[o, col] is nonzero only when o belongs to the column's group.
    w_ok = o_ok[:, None] & n_ok[None, :] & (o_rel >= 0) & (o_rel < OG)
    w = tl.load(
        w_ptr + w_off + gc[None, :].to(tl.int64) * sw_g + c[None, :].to(tl.int64) * sw_c + o_rel.to(tl.int64) * sw_o,
        mask=w_ok, other=0.0,
    )  # [R, N]
    return tl.dot(a.to(w.dtype), w, acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)


@triton.jit
def _reduction_range(g, n0, C_IN, CQG, OG, Q: tl.constexpr, POW_A: tl.constexpr, BLOCK_N: tl.constexpr):
    """Channels the reduction must visit: input channels of group g (POW_A) or the conv outputs
    of every group that one of the tile's (input channel, power) columns falls in (dual)."""
    if POW_A:
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
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["L_A", "L_OUT", "L_BUCKET"])
def _fwd_kernel(
    a_ptr, w_ptr, x_ptr, bias_ptr, out_ptr,
    L_A, L_OUT, C_A, N_OUT, C_IN, CQG, OG, N_GRID_G,
    stride, pad_left, dilation, K, J_STEP,
    sa_b, sa_c, sa_l, sw_g, sw_o, sw_c, sw_k, sx_b, sx_c, sx_l, so_b, so_c, so_l,
    L_BUCKET,
    Q: tl.constexpr, POW_A: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """out[b, n, t] = sum_{r, j} f(a[b, r, t*s + j*d - pl]) W[...]: conv fwd (POW_A) / convT dx."""
    pid_t = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_bg = tl.program_id(2)
    b = pid_bg // N_GRID_G
    g = pid_bg % N_GRID_G
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)  # [T] output positions
    t_ok = t < L_OUT
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [N] output channels (local to group g)
    n_ok = n < N_OUT
    r_lo, r_hi = _reduction_range(g, pid_n * BLOCK_N, C_IN, CQG, OG, Q, POW_A, BLOCK_N)
    acc = tl.zeros([BLOCK_T, BLOCK_N], dtype=ACC_DTYPE)
    a_base = b.to(tl.int64) * sa_b
    if POW_A:
        w_off0 = g.to(tl.int64) * sw_g
        for j in range(K):
            pos = t * stride + j * dilation - pad_left  # [T] input positions of tap j
            pos_ok = t_ok & (pos >= 0) & (pos < L_A)  # zero padding
            a_rows = a_base + pos.to(tl.int64) * sa_l
            acc = _acc_powers(acc, a_ptr, a_rows, pos_ok, w_ptr, w_off0 + j * sw_k, g * CQG, n, n_ok, r_lo, r_hi,
                              C_IN, CQG, sa_c, sw_o, sw_c, Q, ACC_DTYPE, PRECISION, BLOCK_R)
    else:
        xv = tl.load(
            x_ptr + b.to(tl.int64) * sx_b + n[None, :].to(tl.int64) * sx_c + t[:, None].to(tl.int64) * sx_l,
            mask=t_ok[:, None] & n_ok[None, :], other=0.0,
        ).to(ACC_DTYPE)  # [T, N] x at the output positions
        xpow = xv
        for p in tl.static_range(Q):
            acc_p = tl.zeros([BLOCK_T, BLOCK_N], dtype=ACC_DTYPE)
            n_ob = tl.cdiv(r_hi - r_lo, BLOCK_R)
            for it in range(K * n_ob):  # flattened (tap, channel block): one long pipelined loop
                j = it // n_ob
                pos = t * stride + j * dilation - pad_left
                pos_ok = t_ok & (pos >= 0) & (pos < L_A)
                a_rows = a_base + pos.to(tl.int64) * sa_l
                acc_p = _acc_dual(acc_p, a_ptr, a_rows, pos_ok, w_ptr, j * sw_k, n, n_ok,
                                  r_lo + (it - j * n_ob) * BLOCK_R, r_hi,
                                  C_IN, CQG, OG, sa_c, sw_g, sw_o, sw_c, p, ACC_DTYPE, PRECISION, BLOCK_R)
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
        out_ptr + b.to(tl.int64) * so_b + n_glob[None, :].to(tl.int64) * so_c + t[:, None].to(tl.int64) * so_l,
        acc.to(out_ptr.dtype.element_ty), mask=t_ok[:, None] & n_ok[None, :],
    )


@triton.jit(do_not_specialize=["L_A", "L_OUT", "L_BUCKET"])
def _bwd_dx_kernel(
    a_ptr, w_ptr, x_ptr, bias_ptr, out_ptr,
    L_A, L_OUT, C_A, N_OUT, C_IN, CQG, OG, N_GRID_G,
    stride, pad_left, dilation, K, J_STEP,
    sa_b, sa_c, sa_l, sw_g, sw_o, sw_c, sw_k, sx_b, sx_c, sx_l, so_b, so_c, so_l,
    L_BUCKET,
    Q: tl.constexpr, POW_A: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """out[b, n, l] = sum_{r, j, t: t*s + j*d - pl = l} f(a[b, r, t]) W[...]: conv dx / convT fwd (POW_A).

    Programs own one output phase r = l mod s, so a tap j either feeds every row of the tile
    (when (r + pl - j*d) is a multiple of s) or none: no MMA work is spent on stride holes.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_bgr = tl.program_id(2)
    r = pid_bgr % stride
    bg = pid_bgr // stride
    b = bg // N_GRID_G
    g = bg % N_GRID_G
    m = pid_m * BLOCK_T + tl.arange(0, BLOCK_T)  # [T]
    l = r + m * stride  # [T] output positions of phase r
    l_ok = l < L_OUT
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [N]
    n_ok = n < N_OUT
    r_lo, r_hi = _reduction_range(g, pid_n * BLOCK_N, C_IN, CQG, OG, Q, POW_A, BLOCK_N)
    acc = tl.zeros([BLOCK_T, BLOCK_N], dtype=ACC_DTYPE)
    a_base = b.to(tl.int64) * sa_b
    # Taps feeding phase r: j*d = r + pl (mod s). They form j0, j0 + J_STEP, ... with
    # J_STEP = s / gcd(s, d); j0 is the first solution in [0, J_STEP) (none: j0 = K).
    shift = K * dilation  # keeps the numerator positive so % and // are unambiguous
    j0 = r * 0 + K  # a tensor even when K is specialised to a constant
    for jj in range(0, J_STEP):
        hit = (r + pad_left - jj * dilation + shift * stride) % stride == 0
        j0 = tl.where(hit & (jj < j0), jj, j0)
    n_taps = (K - j0 + J_STEP - 1) // J_STEP
    src0 = m + (r + pad_left - j0 * dilation + shift * stride) // stride - shift  # [T] input row of tap j0
    d_src = (J_STEP * dilation) // stride  # each next valid tap reads d_src rows earlier
    if POW_A:
        w_off0 = g.to(tl.int64) * sw_g
        for k in range(n_taps):
            j = j0 + k * J_STEP
            src = src0 - k * d_src  # [T] input positions t with t*s + j*d - pl = l
            src_ok = l_ok & (src >= 0) & (src < L_A)
            a_rows = a_base + src.to(tl.int64) * sa_l
            acc = _acc_powers(acc, a_ptr, a_rows, src_ok, w_ptr, w_off0 + j * sw_k, g * CQG, n, n_ok,
                              r_lo, r_hi, C_IN, CQG, sa_c, sw_o, sw_c, Q, ACC_DTYPE, PRECISION, BLOCK_R)
    else:
        xv = tl.load(
            x_ptr + b.to(tl.int64) * sx_b + n[None, :].to(tl.int64) * sx_c + l[:, None].to(tl.int64) * sx_l,
            mask=l_ok[:, None] & n_ok[None, :], other=0.0,
        ).to(ACC_DTYPE)  # [T, N]
        xpow = xv
        n_ob = tl.cdiv(r_hi - r_lo, BLOCK_R)
        for p in tl.static_range(Q):
            acc_p = tl.zeros([BLOCK_T, BLOCK_N], dtype=ACC_DTYPE)
            for it in range(n_taps * n_ob):  # flattened (valid tap, channel block)
                k = it // n_ob
                j = j0 + k * J_STEP
                src = src0 - k * d_src
                src_ok = l_ok & (src >= 0) & (src < L_A)
                a_rows = a_base + src.to(tl.int64) * sa_l
                acc_p = _acc_dual(acc_p, a_ptr, a_rows, src_ok, w_ptr, j * sw_k, n, n_ok,
                                  r_lo + (it - k * n_ob) * BLOCK_R, r_hi,
                                  C_IN, CQG, OG, sa_c, sw_g, sw_o, sw_c, p, ACC_DTYPE, PRECISION, BLOCK_R)
            if p == 0:
                acc += acc_p
            else:
                acc += acc_p * xpow * (p + 1)
                xpow = xpow * xv
    if POW_A:
        n_glob = g * OG + n
    else:
        n_glob = n
    if HAS_BIAS:
        acc += tl.load(bias_ptr + n_glob, mask=n_ok, other=0.0).to(ACC_DTYPE)[None, :]
    tl.store(
        out_ptr + b.to(tl.int64) * so_b + n_glob[None, :].to(tl.int64) * so_c + l[:, None].to(tl.int64) * so_l,
        acc.to(out_ptr.dtype.element_ty), mask=l_ok[:, None] & n_ok[None, :],
    )


@triton.jit(do_not_specialize=["L_X", "L_Y", "L_RED", "L_BUCKET"])
def _bwd_dw_kernel(
    x_ptr, dy_ptr, part_ptr,
    L_X, L_Y, L_RED, C_IN, CQG, OG, N_GRID_G, T_CHUNK, N_CHUNKS,
    stride, pad_left, dilation,
    sx_b, sx_c, sx_l, sy_b, sy_c, sy_l, sp_s, sp_g, sp_o, sp_c, sp_k,
    L_BUCKET,
    Q: tl.constexpr, GATHER_X: tl.constexpr, ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """part[s, g, o, c, j] = sum_{t in chunk} dy[b, g*OG+o, ty] * x[b, i(c), tx] ** p(c).

    GATHER_X (conv):  tx = t*s + j*d - pl, ty = t, t < L_out.
    else (convT):     tx = t, ty = t*s + j*d - pl, t < L_in.
    """
    pid_oc = tl.program_id(0)
    pid_jg = tl.program_id(1)
    pid_s = tl.program_id(2)
    n_cb = tl.cdiv(CQG, BLOCK_C)
    pid_o = pid_oc // n_cb
    pid_c = pid_oc % n_cb
    j = pid_jg // N_GRID_G
    g = pid_jg % N_GRID_G
    b = pid_s // N_CHUNKS
    chunk = pid_s % N_CHUNKS
    o = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)  # [O] local output channels
    o_ok = o < OG
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)  # [C] columns inside the group
    c_ok = c < CQG
    idx = g * CQG + c
    ch = idx % C_IN  # [C] input channel of each column
    pw = idx // C_IN  # [C] its power minus one
    t_lo = chunk * T_CHUNK
    t_hi = tl.minimum(t_lo + T_CHUNK, L_RED)
    x_base = x_ptr + b.to(tl.int64) * sx_b + ch[None, :].to(tl.int64) * sx_c
    y_base = dy_ptr + b.to(tl.int64) * sy_b + (g * OG + o)[:, None].to(tl.int64) * sy_c
    acc = tl.zeros([BLOCK_O, BLOCK_C], dtype=ACC_DTYPE)
    for t0 in range(t_lo, t_hi, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)  # [T]
        t_ok = t < t_hi
        win = t * stride + j * dilation - pad_left
        if GATHER_X:
            tx = win
            ty = t
            tx_ok = t_ok & (tx >= 0) & (tx < L_X)
            ty_ok = t_ok
        else:
            tx = t
            ty = win
            tx_ok = t_ok
            ty_ok = t_ok & (ty >= 0) & (ty < L_Y)
        xv = tl.load(x_base + tx[:, None].to(tl.int64) * sx_l, mask=tx_ok[:, None] & c_ok[None, :],
                     other=0.0).to(ACC_DTYPE)  # [T, C]
        xp = xv
        for k in tl.static_range(1, Q):
            xp = tl.where(pw[None, :] >= k, xp * xv, xp)  # per-column power
        dy = tl.load(y_base + ty[None, :].to(tl.int64) * sy_l, mask=o_ok[:, None] & ty_ok[None, :],
                     other=0.0)  # [O, T]
        acc = tl.dot(dy, xp.to(dy.dtype), acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)
    tl.store(
        part_ptr + pid_s.to(tl.int64) * sp_s + g.to(tl.int64) * sp_g + o[:, None].to(tl.int64) * sp_o
        + c[None, :].to(tl.int64) * sp_c + j.to(tl.int64) * sp_k,
        acc, mask=o_ok[:, None] & c_ok[None, :],
    )


@triton.jit(do_not_specialize=["L"])
def _bwd_db_kernel(dy_ptr, part_ptr, C, L, sy_b, sy_c, sy_l,
                   ACC_DTYPE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """part[b, c] = sum_t dy[b, c, t]."""
    pid_c = tl.program_id(0)
    b = tl.program_id(1)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)  # [C]
    c_ok = c < C
    acc = tl.zeros([BLOCK_C, BLOCK_T], dtype=ACC_DTYPE)
    base = dy_ptr + b.to(tl.int64) * sy_b + c[:, None].to(tl.int64) * sy_c
    for t0 in range(0, L, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)
        acc += tl.load(base + t[None, :].to(tl.int64) * sy_l, mask=c_ok[:, None] & (t < L)[None, :],
                       other=0.0).to(ACC_DTYPE)
    tl.store(part_ptr + b.to(tl.int64) * C + c, tl.sum(acc, axis=1), mask=c_ok)


# --------------------------------------------------------------------------------------------
# Autotuning: a small config space, keyed on channels, kernel size, Q, stride and a
# power-of-two length bucket (so variable-length audio does not re-tune every batch).
# --------------------------------------------------------------------------------------------


def _mm_configs() -> list[triton.Config]:
    shapes = [(128, 64, 32, 4), (128, 32, 32, 4), (64, 64, 32, 4), (128, 16, 32, 4),
              (64, 16, 16, 4), (256, 64, 32, 8)]
    return [triton.Config({"BLOCK_T": t, "BLOCK_N": n, "BLOCK_R": r}, num_warps=w, num_stages=3)
            for t, n, r, w in shapes]


def _np2_floor16(v: int) -> int:
    return max(16, triton.next_power_of_2(int(v)))


def _prune_mm(configs, named_args, **kwargs):
    args = {**named_args, **kwargs}  # launched with keywords: Triton passes them in kwargs
    n_cap = _np2_floor16(args["N_OUT"])
    r_cap = _np2_floor16(args["C_IN"] if args["POW_A"] else args["C_A"])
    kept = [c for c in configs if c.kwargs["BLOCK_N"] <= n_cap and c.kwargs["BLOCK_R"] <= r_cap]
    return kept or configs[-2:-1]


def _dw_configs() -> list[triton.Config]:
    # (BLOCK_O, BLOCK_C, BLOCK_T, warps); the wide (64|128, 128) tiles raise fp32 arithmetic intensity.
    shapes = [(64, 64, 64, 4), (64, 128, 32, 4), (128, 128, 32, 8), (32, 64, 128, 4), (16, 16, 256, 4),
              (32, 32, 128, 4)]
    return [triton.Config({"BLOCK_O": o, "BLOCK_C": c, "BLOCK_T": t}, num_warps=w, num_stages=3)
            for o, c, t, w in shapes]


def _prune_dw(configs, named_args, **kwargs):
    args = {**named_args, **kwargs}
    o_cap = _np2_floor16(args["OG"])
    c_cap = _np2_floor16(args["CQG"])
    kept = [c for c in configs if c.kwargs["BLOCK_O"] <= o_cap and c.kwargs["BLOCK_C"] <= c_cap]
    return kept or configs[4:5]


_MM_KEY = ["C_A", "N_OUT", "C_IN", "K", "stride", "N_GRID_G", "Q", "POW_A", "L_BUCKET"]
_DW_KEY = ["C_IN", "CQG", "OG", "N_GRID_G", "stride", "Q", "GATHER_X", "L_BUCKET"]
_INTERP_MM = {"BLOCK_T": 16, "BLOCK_N": 16, "BLOCK_R": 16}
_INTERP_DW = {"BLOCK_O": 16, "BLOCK_C": 16, "BLOCK_T": 16}

_tuned: dict[str, object] = {}


def _kernel(name: str):
    """The kernel to launch: autotuned on a GPU, one small fixed config under the interpreter."""
    base = {"fwd": _fwd_kernel, "dx": _bwd_dx_kernel, "dw": _bwd_dw_kernel}[name]
    if _interpreting():
        return base, (_INTERP_DW if name == "dw" else _INTERP_MM)
    if name not in _tuned:
        if name == "dw":
            _tuned[name] = triton.autotune(_dw_configs(), key=_DW_KEY,
                                           prune_configs_by={"early_config_prune": _prune_dw})(base)
        else:
            _tuned[name] = triton.autotune(_mm_configs(), key=_MM_KEY,
                                           prune_configs_by={"early_config_prune": _prune_mm})(base)
    return _tuned[name], {}


# --------------------------------------------------------------------------------------------
# Launchers
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


_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _acc_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _precision(t: torch.Tensor) -> str:
    if t.dtype == torch.float32 and t.is_cuda and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "ieee"


def _check_device(*ts: torch.Tensor) -> None:
    dev = ts[0].device
    for t in ts:
        if t.device != dev:
            raise ValueError(f"all tensors must be on one device, got {t.device} and {dev}")
    if dev.type != "cuda" and not _interpreting():
        raise RuntimeError(
            f"selfonn.kernels runs on CUDA tensors (got {dev}); on CPU use selfonn's 'torch' backend "
            "or set TRITON_INTERPRET=1 before importing selfonn.kernels (slow, for testing)"
        )


def _split_padding(padding: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(padding, int):
        pl = pr = padding
    elif isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(v, int) for v in padding):
        pl, pr = int(padding[0]), int(padding[1])
    else:
        raise ValueError(f"padding must be an int or a (left, right) pair of ints, got {padding!r}")
    if pl < 0 or pr < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return pl, pr


def _geom(stride, padding, dilation, groups, q, output_padding=0) -> _Geom:
    for name, v, lo in (("stride", stride, 1), ("dilation", dilation, 1), ("groups", groups, 1), ("q", q, 1),
                        ("output_padding", output_padding, 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    pl, pr = _split_padding(padding)
    return _Geom(stride, pl, pr, dilation, groups, q, output_padding)


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


def _launch_mm(kind: str, a, w, x, bias, out, *, L_A, L_OUT, C_A, N_OUT, C_IN, CQG, OG, n_grid_g,
               stride, pad_left, dilation, K, w_strides, q, pow_a) -> None:
    """Launch _fwd_kernel (kind 'fwd') or _bwd_dx_kernel (kind 'dx')."""
    kern, fixed = _kernel(kind)
    B = a.shape[0]
    if kind == "fwd":
        rows = L_OUT
        grid_bz = B * n_grid_g
    else:
        rows = triton.cdiv(L_OUT, stride)
        grid_bz = B * n_grid_g * stride

    def grid(meta):
        return (triton.cdiv(rows, meta["BLOCK_T"]), triton.cdiv(N_OUT, meta["BLOCK_N"]), grid_bz)

    sw_g, sw_o, sw_c, sw_k = w_strides
    xs = x if x is not None else a
    kern[grid](
        a_ptr=a, w_ptr=w, x_ptr=xs, bias_ptr=bias if bias is not None else w, out_ptr=out,
        L_A=L_A, L_OUT=L_OUT, C_A=C_A, N_OUT=N_OUT, C_IN=C_IN, CQG=CQG, OG=OG, N_GRID_G=n_grid_g,
        stride=stride, pad_left=pad_left, dilation=dilation, K=K,
        J_STEP=stride // math.gcd(stride, dilation),
        sa_b=a.stride(0), sa_c=a.stride(1), sa_l=a.stride(2),
        sw_g=sw_g, sw_o=sw_o, sw_c=sw_c, sw_k=sw_k,
        sx_b=xs.stride(0), sx_c=xs.stride(1), sx_l=xs.stride(2),
        so_b=out.stride(0), so_c=out.stride(1), so_l=out.stride(2),
        L_BUCKET=triton.next_power_of_2(max(int(L_OUT), 1)),
        Q=q, POW_A=pow_a, HAS_BIAS=bias is not None, ACC_DTYPE=_acc_dtype(a.dtype),
        PRECISION=_precision(a), **fixed,
    )


# Target number of programs for the grad_W split over (batch, time chunk); fewer chunks keep the
# fp32 partial buffer (S x |W|) small, more chunks fill the GPU when channels are few.
_DW_TARGET_PROGRAMS = 2048
_DW_MIN_CHUNK = 256


def _dw_chunks(B: int, L_red: int, tiles: int, t_chunk: int | None) -> tuple[int, int]:
    if t_chunk is None:
        want = max(1, _DW_TARGET_PROGRAMS // max(1, B * tiles))
        n = max(1, min(want, triton.cdiv(L_red, _DW_MIN_CHUNK)))
        t_chunk = triton.cdiv(L_red, n)
    n = triton.cdiv(L_red, t_chunk)
    return t_chunk, n


def _launch_dw(x, dy, w_shape, w_strides_of, *, L_RED, C_IN, CQG, OG, G, stride, pad_left, dilation, K, q,
               gather_x, t_chunk=None) -> torch.Tensor:
    """grad_W in fp32: per-(batch, chunk) partials from _bwd_dw_kernel, then one fixed-order sum."""
    kern, fixed = _kernel("dw")
    B = x.shape[0]
    tiles = K * G * triton.cdiv(OG, 64) * triton.cdiv(CQG, 64)
    t_chunk, n_chunks = _dw_chunks(B, L_RED, tiles, t_chunk)
    S = B * n_chunks
    acc_t = torch.float64 if x.dtype == torch.float64 else torch.float32
    part = torch.empty((S, *w_shape), device=x.device, dtype=acc_t)
    sp_g, sp_o, sp_c, sp_k = w_strides_of(part.stride()[1:])

    def grid(meta):
        return (triton.cdiv(OG, meta["BLOCK_O"]) * triton.cdiv(CQG, meta["BLOCK_C"]), K * G, S)

    kern[grid](
        x_ptr=x, dy_ptr=dy, part_ptr=part,
        L_X=x.shape[2], L_Y=dy.shape[2], L_RED=L_RED, C_IN=C_IN, CQG=CQG, OG=OG, N_GRID_G=G,
        T_CHUNK=t_chunk, N_CHUNKS=n_chunks, stride=stride, pad_left=pad_left, dilation=dilation,
        sx_b=x.stride(0), sx_c=x.stride(1), sx_l=x.stride(2),
        sy_b=dy.stride(0), sy_c=dy.stride(1), sy_l=dy.stride(2),
        sp_s=part.stride(0), sp_g=sp_g, sp_o=sp_o, sp_c=sp_c, sp_k=sp_k,
        L_BUCKET=triton.next_power_of_2(max(int(L_RED), 1)),
        Q=q, GATHER_X=gather_x, ACC_DTYPE=_acc_dtype(x.dtype), PRECISION=_precision(x), **fixed,
    )
    return part.sum(0)


def _launch_db(dy: torch.Tensor) -> torch.Tensor:
    B, C, L = dy.shape
    acc_t = torch.float64 if dy.dtype == torch.float64 else torch.float32
    part = torch.empty((B, C), device=dy.device, dtype=acc_t)
    block_c, block_t = (16, 16) if _interpreting() else (32, 256)
    _bwd_db_kernel[(triton.cdiv(C, block_c), B)](
        dy_ptr=dy, part_ptr=part, C=C, L=L, sy_b=dy.stride(0), sy_c=dy.stride(1), sy_l=dy.stride(2),
        ACC_DTYPE=_acc_dtype(dy.dtype), BLOCK_C=block_c, BLOCK_T=block_t,
    )
    return part.sum(0)


# Weight strides as (group, out-in-group, column-in-group, tap) for either layout.
def _conv_w_strides(st, OG: int, CQG: int):
    return (OG * st[0], st[0], st[1], st[2])  # W (C_out, CQG, K)


def _convT_w_strides(st, OG: int, CQG: int):
    return (CQG * st[0], st[1], st[0], st[2])  # W (Q*C_in, OG, K)


def _conv_dims(x, weight, g: _Geom):
    B, C_in, L_in = x.shape
    C_out, CQG, K = weight.shape
    G, Q = g.groups, g.q
    if (Q * C_in) % G or C_out % G:
        raise ValueError(f"groups={G} must divide q*in_channels={Q * C_in} and out_channels={C_out}")
    if CQG != Q * C_in // G:
        raise ValueError(f"weight {tuple(weight.shape)} does not match q={Q}, in_channels={C_in}, groups={G}: "
                         f"expected dim 1 = q*in/groups = {Q * C_in // G}")
    L_out = (L_in + g.pad_left + g.pad_right - g.dilation * (K - 1) - 1) // g.stride + 1
    if L_out < 1:
        raise ValueError(f"input length {L_in} too short for kernel_size={K}, dilation={g.dilation}, "
                         f"padding=({g.pad_left}, {g.pad_right}): output length would be {L_out}")
    return B, C_in, L_in, C_out, C_out // G, CQG, K, L_out


def _convT_dims(x, weight, g: _Geom):
    B, C_in, L_in = x.shape
    QC, OG, K = weight.shape
    G, Q = g.groups, g.q
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
    return B, C_in, L_in, OG * G, OG, QC // G, K, L_out


def _conv_fwd(x, weight, bias, g: _Geom) -> torch.Tensor:
    B, C_in, L_in, C_out, OG, CQG, K, L_out = _conv_dims(x, weight, g)
    if bias is not None and bias.shape[0] != C_out:
        raise ValueError(f"bias has {bias.shape[0]} entries, expected out_channels={C_out}")
    y = torch.empty((B, C_out, L_out), device=x.device, dtype=x.dtype)
    _launch_mm("fwd", x, weight, None, bias, y, L_A=L_in, L_OUT=L_out, C_A=C_in, N_OUT=OG, C_IN=C_in,
               CQG=CQG, OG=OG, n_grid_g=g.groups, stride=g.stride, pad_left=g.pad_left, dilation=g.dilation,
               K=K, w_strides=_conv_w_strides(weight.stride(), OG, CQG), q=g.q, pow_a=True)
    return y


def _conv_bwd(x, weight, dy, g: _Geom, need_x: bool, need_w: bool):
    B, C_in, L_in, C_out, OG, CQG, K, L_out = _conv_dims(x, weight, g)
    dx = dw = None
    if need_x:
        dx = torch.empty_like(x, memory_format=torch.contiguous_format)
        _launch_mm("dx", dy, weight, x, None, dx, L_A=L_out, L_OUT=L_in, C_A=C_out, N_OUT=C_in, C_IN=C_in,
                   CQG=CQG, OG=OG, n_grid_g=1, stride=g.stride, pad_left=g.pad_left, dilation=g.dilation,
                   K=K, w_strides=_conv_w_strides(weight.stride(), OG, CQG), q=g.q, pow_a=False)
    if need_w:
        dw = _launch_dw(x, dy, weight.shape, lambda st: _conv_w_strides(st, OG, CQG), L_RED=L_out, C_IN=C_in,
                        CQG=CQG, OG=OG, G=g.groups, stride=g.stride, pad_left=g.pad_left, dilation=g.dilation,
                        K=K, q=g.q, gather_x=True).to(weight.dtype)
    return dx, dw


def _convT_fwd(x, weight, bias, g: _Geom) -> torch.Tensor:
    B, C_in, L_in, C_out, OG, CQG, K, L_out = _convT_dims(x, weight, g)
    if bias is not None and bias.shape[0] != C_out:
        raise ValueError(f"bias has {bias.shape[0]} entries, expected out_channels={C_out}")
    y = torch.empty((B, C_out, L_out), device=x.device, dtype=x.dtype)
    _launch_mm("dx", x, weight, None, bias, y, L_A=L_in, L_OUT=L_out, C_A=C_in, N_OUT=OG, C_IN=C_in,
               CQG=CQG, OG=OG, n_grid_g=g.groups, stride=g.stride, pad_left=g.pad_left, dilation=g.dilation,
               K=K, w_strides=_convT_w_strides(weight.stride(), OG, CQG), q=g.q, pow_a=True)
    return y


def _convT_bwd(x, weight, dy, g: _Geom, need_x: bool, need_w: bool):
    B, C_in, L_in, C_out, OG, CQG, K, L_out = _convT_dims(x, weight, g)
    dx = dw = None
    if need_x:
        dx = torch.empty_like(x, memory_format=torch.contiguous_format)
        _launch_mm("fwd", dy, weight, x, None, dx, L_A=L_out, L_OUT=L_in, C_A=C_out, N_OUT=C_in, C_IN=C_in,
                   CQG=CQG, OG=OG, n_grid_g=1, stride=g.stride, pad_left=g.pad_left, dilation=g.dilation,
                   K=K, w_strides=_convT_w_strides(weight.stride(), OG, CQG), q=g.q, pow_a=False)
    if need_w:
        dw = _launch_dw(x, dy, weight.shape, lambda st: _convT_w_strides(st, OG, CQG), L_RED=L_in, C_IN=C_in,
                        CQG=CQG, OG=OG, G=g.groups, stride=g.stride, pad_left=g.pad_left, dilation=g.dilation,
                        K=K, q=g.q, gather_x=False).to(weight.dtype)
    return dx, dw


# --------------------------------------------------------------------------------------------
# Autograd
# --------------------------------------------------------------------------------------------


class _SelfONNConv1dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, geom: _Geom):
        ctx.save_for_backward(x, weight)
        ctx.geom = geom
        ctx.has_bias = bias is not None
        return _conv_fwd(x, weight, bias, geom)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dx, dw = _conv_bwd(x, weight, dy, ctx.geom, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        db = _launch_db(dy).to(dy.dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db, None


class _SelfONNConvTranspose1dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, geom: _Geom):
        ctx.save_for_backward(x, weight)
        ctx.geom = geom
        ctx.has_bias = bias is not None
        return _convT_fwd(x, weight, bias, geom)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dx, dw = _convT_bwd(x, weight, dy, ctx.geom, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        db = _launch_db(dy).to(dy.dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db, None


def _autocast(x, weight, bias):
    """Cast to the autocast dtype (as cuDNN conv does under autocast); casts are differentiable."""
    dev = x.device.type
    if dev == "cuda" and torch.is_autocast_enabled(dev):
        dt = torch.get_autocast_dtype(dev)
        x, weight = x.to(dt), weight.to(dt)
        bias = bias.to(dt) if bias is not None else None
    return x, weight, bias


def triton_selfonn_conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
    stride: int = 1, padding: int | tuple[int, int] = 0, dilation: int = 1, groups: int = 1, q: int = 1,
) -> torch.Tensor:
    """Fused ``conv1d(cat([x**1..x**q], 1), weight, bias, ...)``; x (B, C_in, L), weight (C_out, q*C_in/groups, k)."""
    g = _geom(stride, padding, dilation, groups, q)
    _check_io(x, weight, bias)
    x, weight, bias = _autocast(x, weight, bias)
    return _SelfONNConv1dFn.apply(x, weight, bias, g)


def triton_selfonn_conv_transpose1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
    stride: int = 1, padding: int | tuple[int, int] = 0, output_padding: int = 0, groups: int = 1,
    dilation: int = 1, q: int = 1,
) -> torch.Tensor:
    """Fused ``conv_transpose1d(cat([x**1..x**q], 1), weight, bias, ...)``; weight (q*C_in, C_out/groups, k).

    A ``(left, right)`` padding trims ``left`` samples at the start and ``right`` at the end (the
    adjoint of a conv with that zero padding); an int ``p`` is ``(p, p)`` as in PyTorch.
    """
    g = _geom(stride, padding, dilation, groups, q, output_padding)
    _check_io(x, weight, bias)
    x, weight, bias = _autocast(x, weight, bias)
    return _SelfONNConvTranspose1dFn.apply(x, weight, bias, g)
