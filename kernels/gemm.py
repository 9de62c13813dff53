"""Implicit-GEMM kernels of the fused Self-ONN layers: the forward and grad_x of every layer with more
than one channel on both sides (``_mm_kernel``), its config space and launcher (``_mm``).

Gather mode (a conv) reads its operand at ``t*s + j*d - pl``; ``SCATTER`` mode (a transposed conv)
gives each program one output phase ``l mod s``, so no tap is spent on stride holes. ``POW_A=True``:
operand ``x``, its powers formed in registers (conv / transposed conv forward). ``POW_A=False``:
operand ``dy``, one accumulator per power scaled by ``p*x**(p-1)`` at the end (grad_x)."""

from __future__ import annotations

import math
import weakref

import torch
import triton
import triton.language as tl

from . import _launch
from ._common import (_acc_dtype, _bucket, _canon_w_strides, _cdiv, _Dims, _fit_stages, _geo_consts, _Geom, _idx,
                      _kernel, _np2, _opt, _precision, _program_index, register)
from ._launch import Cfg


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
    IDX: tl.constexpr, BLOCK_R: tl.constexpr, TRANS: tl.constexpr,
):
    """acc[T, N] += sum_{i in block i0, p} a[rows, i] ** p * W[col(i, p), n]; a loaded once.

    TRANS: the transposed product, acc[N, T] += W[col(i, p), n]^T a[rows, i]^p^T: the powered tile is the
    MMA's second operand, which wgmma reads from shared memory, so no wgmma takes an operand from
    registers (ptxas serialised every wgmma of that form: its C7515 notice)."""
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
        if TRANS:
            acc = tl.dot(tl.trans(w), tl.trans(ap.to(w.dtype)), acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)
        else:
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
    ONE_PASS: tl.constexpr, TRANS_FWD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """Implicit GEMM ``out[b, n, l] = sum_{r, taps} f(a[b, r, src]) W[...]``, tiled [BLOCK_T rows, BLOCK_N channels].

    Gather (conv): rows are output positions l, tap j reads ``a`` at l*s + j*d - pl.
    SCATTER (transposed conv): programs own one output phase r = l mod s (rows l = r + m*s), so a
    tap either feeds every row of the tile or none (no MMA work on stride holes) and reads a
    contiguous run of ``a``. POW_A: powers of ``a`` (= x) formed in registers, one load per
    (tap, channel block) - conv fwd (gather) / convT fwd (scatter). Otherwise ``a`` = dy, outputs are
    input channels, one accumulator per power (a pure MMA loop) scaled by (p+1)*x**p at the end -
    convT dx (gather) / conv dx (scatter); ONE_PASS (Q <= 3): all powers' accumulators in one pass
    over the reduction, each dy tile loaded once instead of once per power. TRANS_FWD (POW_A): the
    transposed product ``out^T = W^T a^T`` (``Options.fwd_transposed``).
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
        if TRANS_FWD:  # accumulate acc^T (see _acc_powers), transposed back after the loop
            acc = tl.zeros([BLOCK_N, BLOCK_T], dtype=ACC_DTYPE)
        for it in range(0, n_taps * n_rb):  # flattened (tap, channel block): one long pipelined loop
            k = it // n_rb
            src = src0 + k * src_step  # [T] source positions of this tap
            src_ok = l_ok & (src >= 0) & (src < L_A)  # zero padding
            acc = _acc_powers(acc, a_b, src.to(IDX) * sa_l, src_ok, w_ptr,
                              w_g + (j0 + k * tap_step) * sw_k, g * CQG, n, n_ok, r_lo + (it - k * n_rb) * BLOCK_R,
                              r_hi, C_IN, CQG, sa_c, sw_o, sw_c, Q, GROUPS, ACC_DTYPE, PRECISION, IDX, BLOCK_R,
                              TRANS_FWD)
        if TRANS_FWD:
            acc = tl.trans(acc)
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


_MM_SHAPES = [  # (BLOCK_T, BLOCK_N, BLOCK_R, warps); the first is the untuned default
    # The dual (grad_x) mode holds two [T, N] accumulators and x, x**p: at 4 warps a 128x64 tile spills
    # (~1 KB of stack per thread for sm_90); 8 warps or 64 rows keep wide tiles spill-free.
    (128, 64, 32, 8), (128, 64, 32, 4), (128, 64, 64, 8), (128, 128, 32, 8), (64, 64, 64, 4), (64, 64, 32, 4),
    (128, 32, 32, 4), (128, 16, 32, 4), (64, 16, 16, 4), (256, 64, 32, 8),
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


def _mm_configs(narrow_reduction: bool = False, narrow_out: bool = False) -> list[Cfg]:
    """The GEMM kernels' configs; ``narrow_reduction`` / ``narrow_out``: those for a reduction / output
    side of <= 16 channels."""
    shapes = _MM_SHAPES_R16 + [s for s in _MM_SHAPES if s[2] == 16] if narrow_reduction else list(_MM_SHAPES)
    if narrow_out:
        shapes += [s for s in _MM_SHAPES_N16 if not narrow_reduction or s[2] == 16]
    return [Cfg.of(num_warps=w, BLOCK_T=t, BLOCK_N=n, BLOCK_R=r) for t, n, r, w in shapes]


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


# W is repacked tap-major ([G, K, CQG, OG], output channel contiguous) before the GEMM kernels once a
# call has Options.pack_min_macs multiply-adds: the repack is one small copy kernel, the unpacked W
# tile is a stride-K gather (~8x the L2 sectors). Small layers keep the native layout (one launch).
# A packed copy is kept per weight tensor and version (its ``_version`` counts in-place writes), so a
# training step's forward and backward pack once; never inside a CUDA graph capture, whose replays
# must pack the weights of their own time. Writes through ``.data`` bypass the version counter (as
# they bypass autograd's own checks): a model updated that way repacks only on its next new version.
_packed: dict[int, tuple] = {}  # id(weight) -> (weakref, version, (pointer, strides, groups, kind), packed)


def _gemm_weight(weight: torch.Tensor, d: _Dims, g: _Geom, macs: int):
    """W for the GEMM kernels and its canonical strides; repacked tap-major when large enough."""
    sw = _canon_w_strides(weight, d, g)
    if macs < _opt().pack_min_macs:
        return weight, sw
    packed_sw = (d.K * d.CQG * d.OG, 1, d.OG, d.CQG * d.OG)
    capturing = weight.is_cuda and torch.cuda.is_current_stream_capturing()
    what = (weight.data_ptr(), weight.stride(), g.groups, g.transposed)
    hit = None if capturing else _packed.get(id(weight))
    if hit is not None and hit[0]() is weight and hit[1] == weight._version and hit[2] == what:
        return hit[3], packed_sw
    view = weight.as_strided((g.groups, d.OG, d.CQG, d.K), sw)  # [g, o, c, j]
    packed = view.permute(0, 3, 2, 1).contiguous()  # [g, j, c, o]: o contiguous, then c
    if not capturing:
        key = id(weight)
        _packed[key] = (weakref.ref(weight, lambda _, k=key: _packed.pop(k, None)), weight._version, what, packed)
    return packed, packed_sw


def _mm(kind: str, a, w, sw, x, bias, out, *, L_A: int, L_OUT: int, N_OUT: int, n_red: int, n_bg: int,
        d: _Dims, g: _Geom, pow_a: bool) -> None:
    """One implicit-GEMM launch: ``kind`` 'gather' (conv fwd / convT dx) or 'scatter' (conv dx / convT fwd)."""
    xs = x if x is not None else a
    scatter = kind == "scatter"
    j_step = g.stride // math.gcd(g.stride, g.dilation) if scatter else 1
    consts = {**_geo_consts(d, g), "J_STEP": j_step, "GROUPS": g.groups,
              "SCATTER": scatter, "POW_A": pow_a, "HAS_BIAS": bias is not None, "ACC_DTYPE": _acc_dtype(a.dtype),
              "PRECISION": _precision(a), "IDX": _idx(a, x, out, weights=(w,)),
              "ONE_PASS": _opt().dual_one_pass and not pow_a and g.q <= 3,
              "TRANS_FWD": _opt().fwd_transposed and pow_a}
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


register(gather=_mm_kernel, scatter=_mm_kernel)
