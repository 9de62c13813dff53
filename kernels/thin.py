"""Bandwidth kernels for single-channel layers (``C_in = 1`` or ``C_out = 1``, groups 1): no ``tl.dot``
over a padded channel axis, the few weights per tap loaded once per program. The backward is one
launch (the grad_x programs and :mod:`.grad_w`'s programs as disjoint ranges of one kernel) or two
(``Options.thin_split_bwd``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from . import _launch
from . import grad_w
from ._common import (_acc_dtype, _bucket, _cdiv, _Dims, _geo_consts, _Geom, _idx, _kernel, _np2, _opt, _program_index,
                      register)
from ._launch import Cfg
from .grad_w import _db_mode, _dw_args, _dw_body, _dw_candidates, _dw_key, _with_splits

log = logging.getLogger(__name__)


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


def _thin_configs() -> list[Cfg]:
    return [Cfg.of(num_warps=w, BLOCK_C=c, BLOCK_T=t) for c, t, w in _THIN_SHAPES]


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


_thin_split_picks: dict[tuple, bool] = {}
_thin_split_timings: dict[tuple, tuple[float, float]] = {}  # (one launch, two launches) ms per key


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
    grad_w._launch_dw(x, dy, dw, db, d, g)


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
            dw_cands = _with_splits(dw_cands, lambda c: grad_w._dw_plan(c, d, g, need_w, db_mode, L_red, dy.shape[2],
                                                                 x.device))
        return [Cfg(Cfg.of(BLOCK_C=tc["BLOCK_C"], BLOCK_TX=tc["BLOCK_T"], **dc.kwargs).blocks,
                    max(tc.num_warps, dc.num_warps), dc.num_stages, dc.host)
                for tc in _thin_bwd_tiles(c_fan) for dc in dw_cands]

    def prepare(cfg: Cfg):
        p_dx = 0
        if dx is not None:
            p_dx = d.B * _cdiv(d.L_in, cfg["BLOCK_TX"]) * (_cdiv(c_fan, cfg["BLOCK_C"]) if fanout else 1)
        if need_w or need_b:
            plan = {**grad_w._dw_plan(cfg, d, g, need_w, db_mode, L_red, dy.shape[2], x.device), "cfg": cfg}
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


register(thin_fwd=_thin_fwd_kernel, thin_bwd=_thin_bwd_kernel)
