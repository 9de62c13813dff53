"""grad_W (and grad_bias) of the fused Self-ONN layers: one GEMM over the weight's own flattened index
per launch (``_dw_kernel``), its config space, reduction split and launcher (``_launch_dw``).

A program owns a (row, column) tile with every power and tap in it and reduces over a long (batch,
time) range; the range is split only as far as the SM count needs, and split partials are summed in
split order by the last program to finish each tile (an arrival counter): deterministic, one launch.
The single-channel backward (:mod:`.thin`) runs the same programs (``_dw_body``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton
import triton.language as tl

from . import _launch
from ._common import (_acc_dtype, _bucket, _cdiv, _Dims, _geo_consts, _Geom, _idx, _kernel, _np2, _opt, _precision,
                      _program_index, register)
from ._launch import Cfg


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


#: A second grad_W tile for GEMMs of at most 16x16 (gen.down1's and disc.1's: 16 output channels x 4-5
#: taps), which had only (16, 16, 256): that takes 255 registers on disc.1 (offline, Triton 3.6,
#: sm_90, fp32), and the single-channel backward's one launch then holds as many for its grad_x
#: programs too; with 64 steps, 64. Offered only to GEMMs that small (_prune_dw).
_DW_SHORT_STEP = (16, 16, 64, 4)
_DW_SHAPES = [  # (BLOCK_M, BLOCK_N, BLOCK_T, warps): M >= 64 where the rows allow (wgmma)
    (64, 128, 64, 8), (64, 64, 64, 4), (128, 128, 32, 8), (128, 64, 64, 8),
    (32, 64, 128, 4), (16, 64, 128, 4), (32, 32, 128, 4), (16, 16, 256, 4), _DW_SHORT_STEP,
]


def _interp_dw(pow_tiles: bool) -> Cfg:
    return Cfg.of(BLOCK_M=16, BLOCK_N=16, BLOCK_T=16, POW_TILES=pow_tiles)


def _dw_configs(pow_tiles: bool = False) -> list[Cfg]:
    """``POW_TILES``: the tile kind (see ``_opt().dw_tiles``); a kind the geometry cannot take runs concat tiles."""
    return [Cfg.of(num_warps=w, BLOCK_M=m, BLOCK_N=n, BLOCK_T=t, POW_TILES=pow_tiles) for m, n, t, w in _DW_SHAPES]


def _prune_dw(rows: int, cols: int, pow_tiles: bool = False) -> list[Cfg]:
    small = _np2(rows) * _np2(cols) <= 16 * 16  # the short-step tile only where no other tile fits
    kept = [c for c in _dw_configs(pow_tiles) if c["BLOCK_M"] <= _np2(rows) and c["BLOCK_N"] <= _np2(cols)
            and (small or (c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_T"], c.num_warps) != _DW_SHORT_STEP)]
    kept = kept or [_interp_dw(pow_tiles)]
    return [_interp_dw(pow_tiles)] + kept if _launch.interpreting() else kept


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
    """The grad_W tune key: what its candidates and their timing depend on, the options among it (the
    tail's per-load split count is a constexpr the compiled-kernel cache does not see by itself)."""
    o = _opt()
    return (x.dtype, _precision(x), g.transposed, g.q, d.K, g.stride, g.dilation, g.pad_left, g.groups, d.C_in,
            d.CQG, d.OG, db_mode, need_w, _bucket(d.B * L_red), idx, _dw_tile_kinds(g), o.dw_min_steps,
            o.dw_split_steps, o.dw_split_divs, o.tail_max_splits, o.tail_elements)


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


register(dw=_dw_kernel)
