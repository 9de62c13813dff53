"""Fused Self-ONN kernels vs the FastONN reference: values and every gradient, both layer kinds.

On CPU the kernels run under TRITON_INTERPRET=1 (set by conftest when there is no GPU); on a CUDA
machine the same cases run compiled. Shapes are tiny because the interpreter is slow. Every kernel
is reached: the implicit-GEMM forward/grad_x kernels, the grad_W kernel (single pass and split with
its in-kernel ordered reduction), the single-channel bandwidth kernels, each config of each config
space (pinned), the repacked-weight path and folded launch grids.
"""

from __future__ import annotations

import os
import types
from dataclasses import dataclass, replace

import pytest
import torch
import triton

from selfonn import reference_conv1d, reference_conv_transpose1d
from selfonn.kernels import _launch
from selfonn.kernels._launch import Cfg
from selfonn.kernels import gemm
from selfonn.kernels import grad_w as gw
from selfonn.kernels import selfonn_conv as sc
from selfonn.kernels import thin as th

pytestmark = pytest.mark.timeout(300)

CUDA_ONLY = pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                               reason="needs a CUDA device (compiled kernels, autocast, TF32, CUDA graphs)")


@dataclass(frozen=True)
class Case:
    B: int
    cin: int
    cout: int
    L: int
    k: int
    stride: int = 1
    padding: int | tuple[int, int] = 0
    dilation: int = 1
    groups: int = 1
    q: int = 3
    output_padding: int = 0
    noncontig: bool = False


CONV_CASES = {
    "T1": Case(1, 2, 3, 1, 1, q=2),
    "prime_T37": Case(2, 3, 5, 37, 3, padding=1),
    "k1": Case(2, 3, 4, 11, 1, q=2),
    "stride_gt_k": Case(2, 2, 3, 29, 2, stride=5, q=2),
    "stride2_opgan_down": Case(2, 3, 5, 31, 5, stride=2, padding=2),
    "stride8_disc": Case(1, 2, 4, 40, 4, stride=8, padding=1),
    "pad_left_right": Case(1, 3, 2, 19, 4, padding=(2, 1), q=2),
    "dilation2": Case(2, 3, 4, 21, 3, padding=2, dilation=2),
    "dilation3_stride2": Case(1, 2, 3, 26, 3, stride=2, padding=1, dilation=3, q=2),
    "gcd_s4_d2": Case(1, 2, 3, 29, 3, stride=4, padding=2, dilation=2),
    "channels_off_block": Case(1, 17, 19, 9, 2, q=2),
    "groups2_spans_powers": Case(2, 4, 6, 15, 3, padding=1, groups=2),
    "groups3_one_power_each": Case(1, 3, 3, 12, 2, groups=3),
    "groups6_single_column": Case(1, 2, 6, 10, 3, padding=1, groups=6),
    "q1": Case(2, 3, 4, 16, 3, padding=1, q=1),
    "q4": Case(1, 3, 4, 14, 3, q=4),
    "q5": Case(1, 2, 3, 13, 3, stride=2, padding=1, q=5),
    "noncontiguous_x": Case(2, 3, 4, 17, 3, padding=1, noncontig=True),
    # single-channel layers (bandwidth kernels)
    "cin1_opgan_down1": Case(2, 1, 5, 37, 5, stride=2, padding=2),
    "cin1_disc1_s8_odd": Case(2, 1, 4, 45, 4, stride=8, padding=1),
    "cout1_disc_head": Case(1, 4, 1, 13, 3, stride=4, padding=1),
    "cin1_cout1_gcd_s2_d2": Case(1, 1, 1, 23, 3, stride=2, padding=1, dilation=2),
    "cin1_groups3_gemm": Case(1, 1, 3, 11, 3, groups=3),
    "cout1_q1_noncontig": Case(2, 3, 1, 19, 3, padding=(0, 2), q=1, noncontig=True),
}

CONVT_CASES = {
    "T1": Case(1, 2, 3, 1, 1, q=2),
    "basic": Case(2, 3, 5, 13, 3, q=2),
    "stride2_pad1_outpad1": Case(2, 3, 4, 11, 3, stride=2, padding=1, output_padding=1),
    "stride8_outpad3": Case(1, 2, 3, 5, 4, stride=8, padding=1, output_padding=3),
    "stride_gt_k": Case(1, 3, 2, 7, 2, stride=3, q=2),
    "pad_left_right": Case(1, 3, 2, 9, 4, stride=2, padding=(1, 2), q=2),
    "dilation2_outpad1": Case(1, 2, 3, 8, 3, padding=1, dilation=2, output_padding=1, q=2),
    "gcd_s4_d2": Case(1, 2, 3, 6, 3, stride=4, padding=1, dilation=2, output_padding=1),
    "channels_off_block": Case(1, 17, 19, 5, 2, q=2),
    "groups2_spans_powers": Case(2, 4, 6, 7, 3, stride=2, padding=1, groups=2),
    "groups3_one_power_each": Case(1, 3, 3, 6, 2, groups=3),
    "q1": Case(2, 3, 4, 8, 3, stride=2, q=1),
    "q5": Case(1, 2, 3, 6, 3, q=5),
    "noncontiguous_x": Case(2, 3, 4, 9, 3, stride=2, padding=1, noncontig=True),
    # single-channel layers (bandwidth kernels)
    "cout1_opgan_out_k6_s2": Case(2, 4, 1, 9, 6, stride=2, padding=2),
    "cin1_s2_outpad1": Case(2, 1, 3, 9, 3, stride=2, padding=1, output_padding=1),
    "cout1_gcd_s2_d2_odd": Case(1, 3, 1, 7, 3, stride=2, padding=1, dilation=2, output_padding=1),
    "cin1_cout1_s3": Case(1, 1, 1, 6, 4, stride=3, padding=(2, 1), q=2),
}

SINGLE_CHANNEL = [(False, n) for n in CONV_CASES if n.startswith(("cin1", "cout1"))] + \
                 [(True, n) for n in CONVT_CASES if n.startswith(("cin1", "cout1"))]


def _make(case: Case, transposed: bool, device: str, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    stretch = 2 if case.noncontig else 1  # non-contiguous x: every other sample of a longer signal
    x_full = torch.rand(case.B, case.cin, stretch * case.L, generator=gen, dtype=torch.float64) * 2 - 1
    x = x_full[..., ::stretch].clone()
    xd = x_full.to(device=device, dtype=dtype)[..., ::stretch]
    assert xd.is_contiguous() != case.noncontig or case.L == 1
    if transposed:
        w_shape = (case.q * case.cin, case.cout // case.groups, case.k)
    else:
        w_shape = (case.cout, case.q * case.cin // case.groups, case.k)
    w = (torch.rand(w_shape, generator=gen, dtype=torch.float64) * 2 - 1) / (case.q * case.cin * case.k) ** 0.5
    b = torch.rand(case.cout, generator=gen, dtype=torch.float64) - 0.5

    def prep(t):  # a leaf of its own (on CPU in float64, .to would return t itself)
        return t.detach().to(device=device, dtype=dtype).requires_grad_(True)

    return (x.requires_grad_(True), w.requires_grad_(True), b.requires_grad_(True)), (
        xd.requires_grad_(True), prep(w), prep(b))


def _ops(case: Case, transposed: bool):
    if transposed:
        def ker(x, w, b):
            return sc.triton_selfonn_conv_transpose1d(x, w, b, case.stride, case.padding, case.output_padding,
                                                      case.groups, case.dilation, case.q)

        def ref(x, w, b):
            return reference_conv_transpose1d(x, w, b, case.stride, case.padding, case.output_padding,
                                              case.groups, case.dilation, case.q)
    else:
        def ker(x, w, b):
            return sc.triton_selfonn_conv1d(x, w, b, case.stride, case.padding, case.dilation, case.groups, case.q)

        def ref(x, w, b):
            return reference_conv1d(x, w, b, case.stride, case.padding, case.dilation, case.groups, case.q)
    return ker, ref


def _assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    actual = actual.detach().double().cpu()
    expected = expected.detach().double().cpu()
    assert torch.isfinite(actual).all(), f"{name}: non-finite values (unwritten output?)"
    err = (actual - expected).abs().max().item()
    bound = tol * (1.0 + expected.abs().max().item())
    assert err <= bound, f"{name}: max abs error {err:.3e} > {bound:.3e}"


def _check(case: Case, transposed: bool, device: str, dtype: torch.dtype, tol: float, autocast: bool = False):
    (x, w, b), (xd, wd, bd) = _make(case, transposed, device, torch.float32 if autocast else dtype)
    ker, ref = _ops(case, transposed)
    y_ref = ref(x, w, b)
    if autocast:
        with torch.autocast("cuda", dtype=dtype):
            y = ker(xd, wd, bd)
        assert y.dtype == dtype
    else:
        y = ker(xd, wd, bd)
    _assert_close("y", y, y_ref, tol)
    gy = torch.rand(y_ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    grads_ref = torch.autograd.grad(y_ref, (x, w, b), gy)
    grads = torch.autograd.grad(y, (xd, wd, bd), gy.to(device=device, dtype=y.dtype))
    for name, g, g_ref in zip(("grad_x", "grad_W", "grad_bias"), grads, grads_ref):
        _assert_close(name, g, g_ref, tol)


def _tf32_off():
    return torch.backends.cudnn.flags(enabled=True, allow_tf32=False)


def _case(transposed: bool, name: str) -> Case:
    return (CONVT_CASES if transposed else CONV_CASES)[name]


# ---- every case, both dtypes, default dispatch (GEMM or single-channel kernels) -----------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("case", list(CONV_CASES.values()), ids=list(CONV_CASES))
def test_conv1d_matches_reference(case, dtype, device, poison_empty, kernel_tol):
    with _tf32_off():
        _check(case, False, device, dtype, kernel_tol[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("case", list(CONVT_CASES.values()), ids=list(CONVT_CASES))
def test_conv_transpose1d_matches_reference(case, dtype, device, poison_empty, kernel_tol):
    with _tf32_off():
        _check(case, True, device, dtype, kernel_tol[dtype])


def test_dispatch_picks_thin_kernels_for_single_channel_layers(device, monkeypatch):
    """C_in = 1 / C_out = 1 with groups 1 take the bandwidth kernels (1 launch fwd, 1 bwd); others the GEMMs."""
    seen: list[str] = []
    real = _launch.Kernel.__call__

    def spy(self, *a, **k):
        seen.append(self.name)
        return real(self, *a, **k)

    monkeypatch.setattr(_launch.Kernel, "__call__", spy)
    for transposed, name, expect in [(False, "cin1_opgan_down1", ["thin_fwd", "thin_bwd"]),
                                     (True, "cout1_opgan_out_k6_s2", ["thin_fwd", "thin_bwd"]),
                                     (False, "cin1_groups3_gemm", ["gather", "scatter", "dw"]),
                                     (True, "basic", ["scatter", "gather", "dw"])]:
        seen.clear()
        _, (x, w, b) = _make(_case(transposed, name), transposed, device, torch.float64)
        _ops(_case(transposed, name), transposed)[0](x, w, b).sum().backward()
        assert seen == expect, (name, seen)


@pytest.mark.parametrize(("transposed", "name"), SINGLE_CHANNEL, ids=[f"{'convT' if t else 'conv'}-{n}"
                                                                       for t, n in SINGLE_CHANNEL])
def test_single_channel_layers_on_gemm_kernels(transposed, name, device, poison_empty, kernel_tol, kernel_options):
    """The GEMM kernels stay exact on the single-channel shapes the thin kernels normally take."""
    kernel_options(thin=False)
    _check(_case(transposed, name), transposed, device, torch.float64, kernel_tol[torch.float64])


THIN = [(t, n) for t, n in SINGLE_CHANNEL if _case(t, n).groups == 1]  # grouped ones take the GEMMs


@pytest.mark.parametrize(("transposed", "name"), THIN, ids=[f"{'convT' if t else 'conv'}-{n}" for t, n in THIN])
def test_thin_backward_in_two_launches(transposed, name, device, poison_empty, monkeypatch, kernel_tol, kernel_options):
    """thin_split_bwd=True: dx on the thin kernel (its grad_W body compiled out), grad_W / grad_bias on
    _dw_kernel; the same values as the reference, whichever gradients are wanted."""
    kernel_options(thin_split_bwd=True)
    seen: list[str] = []
    real = _launch.Kernel.__call__
    monkeypatch.setattr(_launch.Kernel, "__call__", lambda self, *a, **k: seen.append(self.name) or real(self, *a, **k))
    case = _case(transposed, name)
    _check(case, transposed, device, torch.float64, kernel_tol[torch.float64])
    assert seen == ["thin_fwd", "thin_bwd", "dw"], seen
    ker, ref = _ops(case, transposed)
    for wanted, launches in [((True, False, False), ["thin_bwd"]), ((False, True, True), ["dw"])]:
        (x, w, b), (xd, wd, bd) = _make(case, transposed, device, torch.float64)
        for t, td, on in zip((x, w, b), (xd, wd, bd), wanted):
            t.requires_grad_(on)
            td.requires_grad_(on)
        y = ker(xd, wd, bd)
        seen.clear()
        got = torch.autograd.grad(y.sum(), [t for t in (xd, wd, bd) if t.requires_grad])
        want = torch.autograd.grad(ref(x, w, b).sum(), [t for t in (x, w, b) if t.requires_grad])
        assert seen == launches, (wanted, seen)
        for g, g_ref in zip(got, want):
            _assert_close("grad", g, g_ref, kernel_tol[torch.float64])


@pytest.mark.parametrize(("transposed", "name"), [(False, "stride2_opgan_down"), (True, "stride2_pad1_outpad1"),
                                                  (False, "cin1_disc1_s8_odd"), (True, "cout1_opgan_out_k6_s2"),
                                                  (False, "groups2_spans_powers")])
def test_wide_offsets_match_reference(transposed, name, device, poison_empty, kernel_tol, kernel_options):
    """64-bit element offsets (what a batch item past 2**31 elements gets) on every kernel kind."""
    kernel_options(wide_offsets=True)
    case = _case(transposed, name)
    _check(case, transposed, device, torch.float64, kernel_tol[torch.float64])
    _check(replace(case, noncontig=True), transposed, device, torch.float64, kernel_tol[torch.float64])


UNREAD_CASES = {  # a sample the layer never reads: x's tail past the last window / convT's output padding
    "conv_s8_tail": (False, Case(1, 2, 3, 35, 4, stride=8)),
    "conv_cin1_s8_tail": (False, Case(2, 1, 3, 35, 4, stride=8)),
    "convT_s2_outpad1": (True, Case(1, 2, 3, 5, 3, stride=2, output_padding=1)),
    "convT_cout1_s2_outpad1": (True, Case(2, 3, 1, 5, 3, stride=2, output_padding=1)),
}


@pytest.mark.parametrize("name", list(UNREAD_CASES))
def test_grad_w_never_reads_what_the_layer_does_not(name, device, kernel_tol):
    """grad_W's operand tiles run past the data (edge rows and columns, times past the last output);
    only values the layer itself reads may reach a gradient. A NaN in x's unread tail (conv) or in
    dy's output-padding sample (convT) leaves grad_x and grad_W finite and equal to the reference."""
    transposed, case = UNREAD_CASES[name]
    (x, w, b), (xd, wd, bd) = _make(case, transposed, device, torch.float64)
    ker, ref = _ops(case, transposed)
    if not transposed:
        with torch.no_grad():
            x[..., -1] = float("nan")
            xd[..., -1] = float("nan")
    y_ref, y = ref(x, w, b), ker(xd, wd, bd)
    gy = torch.rand(y_ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    if transposed:
        gy[..., -1] = float("nan")
    grads_ref = torch.autograd.grad(y_ref, (x, w), gy)
    grads = torch.autograd.grad(y, (xd, wd), gy.to(device=device, dtype=y.dtype))
    for label, g, g_ref in zip(("grad_x", "grad_W"), grads, grads_ref):
        if not transposed and label == "grad_x":
            g, g_ref = g[..., :-1], g_ref[..., :-1]  # d/dx of the NaN sample itself: 0 * NaN either way
        _assert_close(label, g, g_ref, kernel_tol[torch.float64])


@pytest.mark.parametrize(("transposed", "name"), [(False, "stride2_opgan_down"), (True, "stride2_pad1_outpad1"),
                                                  (False, "groups2_spans_powers"), (True, "groups2_spans_powers")])
@pytest.mark.parametrize("q", [1, 2, 3, 4])
def test_dual_one_pass_matches_reference(transposed, name, q, device, poison_empty, monkeypatch, kernel_tol,
                                         kernel_options):
    """dual_one_pass: grad_x with every power's accumulator in one pass (q <= 3; q = 4 keeps the passes)
    matches the reference, and the per-power passes bit for bit (the same sums in the same order)."""
    case = replace(_case(transposed, name), q=q)
    _, (x, w, b) = _make(case, transposed, device, torch.float32)
    ker, _ = _ops(case, transposed)

    def grad_x():
        x.grad = None
        ker(x, w, b).square().sum().backward()
        return x.grad.clone()

    # the per-power passes first (the default is one pass): each setting has its own plan key, so on a
    # GPU the second call records a plan of its own instead of replaying the first one's
    kernel_options(dual_one_pass=False)
    passes = grad_x()
    kernel_options(dual_one_pass=True)
    one_pass = _gemm_launch_args(monkeypatch, "ONE_PASS")
    assert torch.equal(grad_x(), passes)
    assert one_pass == [False, q <= 3]  # the forward, then grad_x in one pass where q allows
    _check(case, transposed, device, torch.float64, kernel_tol[torch.float64])


def _gemm_launch_args(monkeypatch, name: str) -> list:
    """The list each later GEMM launch (gather or scatter kernel) appends its first config's ``name``
    argument to, in launch order."""
    seen = []
    real = _launch.Kernel.__call__

    def spy(self, device, key, candidates, prepare):
        if self.name in ("gather", "scatter"):
            cands = candidates() if callable(candidates) else candidates
            seen.append(prepare(cands[0])[0][name])
        return real(self, device, key, candidates, prepare)

    monkeypatch.setattr(_launch.Kernel, "__call__", spy)
    return seen


def test_offset_type_follows_the_largest_batch_item():
    """int32 while every offset inside one batch item (and W) fits; the batch stride never counts."""
    class View:  # shape and strides only: the layouts in question would need terabytes
        def __init__(self, shape, stride):
            self.shape, self._stride = shape, stride

        def stride(self):
            return self._stride

    tl = sc.tl
    x, w = torch.empty(4, 3, 10), torch.empty(8, 9, 5)
    assert sc._idx(x, None, weights=(w, None)) is tl.int32
    assert sc._idx(View((3, 2, 2), (2**40, 1, 1))) is tl.int32  # batch items far apart: still int32
    assert sc._idx(View((1, 2, 2), (0, 2**31 - 2, 1))) is tl.int32  # the largest offset is 2**31 - 1
    assert sc._idx(x, View((1, 2, 2), (0, 2**31 - 1, 1))) is tl.int64  # one past it
    assert sc._idx(x, weights=(View((2, 2), (2**31, 1)),)) is tl.int64


# ---- every config of every config space, pinned ----------------------------------------------

_PIN_CASES = {False: Case(2, 5, 6, 23, 3, stride=2, padding=1), True: Case(2, 5, 6, 9, 3, stride=2, padding=1)}


def _check_pinned(case: Case, transposed: bool, device: str, kernel_tol: dict) -> None:
    """_check for a pinned config: float64 under the interpreter; on a GPU float32, the dtype the
    configs are sized for (float64 doubles a tile's shared memory past Hopper's 227 KiB on the wide
    ones). A config this GPU cannot hold is skipped: the launcher itself moves on to the next one."""
    dtype = torch.float64 if device == "cpu" else torch.float32
    try:
        with _tf32_off():
            _check(case, transposed, device, dtype, kernel_tol[dtype])
    except triton.runtime.errors.OutOfResources as e:
        pytest.skip(f"pinned config needs more than this GPU has: {e}")


@pytest.mark.parametrize(("transposed", "name"), [(False, "stride2_opgan_down"), (True, "stride2_pad1_outpad1"),
                                                  (False, "groups2_spans_powers"), (True, "groups2_spans_powers"),
                                                  (False, "q5"), (False, "channels_off_block"), (True, "T1")])
def test_transposed_forward_matches_reference(transposed, name, device, poison_empty, monkeypatch, kernel_tol,
                                              kernel_options):
    """fwd_transposed: the GEMM forward as W^T (a^p)^T (wgmma then reads the powered tile from shared
    memory) matches the reference, values and every gradient, and runs where the forward does."""
    kernel_options(fwd_transposed=True)
    seen = _gemm_launch_args(monkeypatch, "TRANS_FWD")
    case = _case(transposed, name)
    _check(case, transposed, device, torch.float64, kernel_tol[torch.float64])
    assert seen[0] is True and not any(seen[1:])  # the forward only, not grad_x
    _check(replace(case, noncontig=True), transposed, device, torch.float64, kernel_tol[torch.float64])


@pytest.mark.parametrize("i", [0, 7, 8], ids=[str(sc._MM_SHAPES[i]) for i in (0, 7, 8)])
def test_transposed_forward_pinned_configs(i, device, poison_empty, kernel_tol, kernel_options):
    """fwd_transposed with wide, narrow-output and narrow-reduction tiles pinned."""
    kernel_options(fwd_transposed=True)
    t, n, r, w = sc._MM_SHAPES[i]
    cfg = _launch.Cfg.of(num_warps=w, BLOCK_T=t, BLOCK_N=n, BLOCK_R=r)
    for transposed in (False, True):
        with _launch.pin("gather", cfg), _launch.pin("scatter", cfg):
            _check_pinned(_PIN_CASES[transposed], transposed, device, kernel_tol)


_ALL_MM_SHAPES = sc._MM_SHAPES + sc._MM_SHAPES_R16 + sc._MM_SHAPES_N16


@pytest.mark.parametrize("i", range(len(_ALL_MM_SHAPES)), ids=[str(s) for s in _ALL_MM_SHAPES])
def test_each_gemm_config(i, device, poison_empty, kernel_tol):
    """Forward and grad_x with each (BLOCK_T, BLOCK_N, BLOCK_R) config, far wider than the channels
    (the narrow sides' extra tiles included)."""
    t, n, r, w = _ALL_MM_SHAPES[i]
    cfg = _launch.Cfg.of(num_warps=w, BLOCK_T=t, BLOCK_N=n, BLOCK_R=r)
    transposed = bool(i % 2)
    with _launch.pin("gather", cfg), _launch.pin("scatter", cfg):
        _check_pinned(_PIN_CASES[transposed], transposed, device, kernel_tol)


@pytest.mark.parametrize("pow_tiles", [True, False], ids=["pow", "concat"])
@pytest.mark.parametrize("i", range(len(sc._DW_SHAPES)), ids=[str(s) for s in sc._DW_SHAPES])
def test_each_dw_config(i, pow_tiles, device, poison_empty, kernel_tol, kernel_options):
    """grad_W / grad_bias with each (BLOCK_M, BLOCK_N, BLOCK_T) config of both tile kinds, split over
    several programs."""
    kernel_options(dw_min_steps=1)
    transposed = bool(i % 2)
    with _launch.pin("dw", sc._dw_configs(pow_tiles)[i]):
        _check_pinned(_PIN_CASES[transposed], transposed, device, kernel_tol)


@pytest.mark.parametrize("q,groups", [(1, 1), (4, 1), (3, 2)], ids=["q1", "q4", "groups2"])
def test_pinned_pow_config_on_a_concat_geometry(q, groups, device, poison_empty, kernel_tol):
    """A power-tile config pinned where power tiles do not apply runs the concat tiles (host and kernel agree)."""
    case = Case(2, 4, 6, 23, 3, stride=2, padding=1, groups=groups, q=q)
    with _launch.pin("dw", sc._dw_configs(pow_tiles=True)[0]):
        _check_pinned(case, False, device, kernel_tol)


def test_grad_w_tunes_over_both_tile_kinds(kernel_options):
    """'tuned' offers power- and concat-tile candidates where both apply (power first: the untuned
    default); 'pow' / 'concat' force one kind; other geometries only ever get concat tiles."""
    d = sc._Dims(B=8, C_in=64, L_in=4000, C_out=128, OG=128, CQG=192, K=5, L_out=2000)
    g = sc._Geom(stride=2, pad_left=2, pad_right=2, dilation=1, groups=1, q=3)
    kinds = [c["POW_TILES"] for c in sc._dw_candidates(d, g)]
    assert kinds[0] is True and set(kinds) == {True, False}
    kernel_options(dw_tiles="pow")
    assert {c["POW_TILES"] for c in sc._dw_candidates(d, g)} == {True}
    kernel_options(dw_tiles="concat")
    assert {c["POW_TILES"] for c in sc._dw_candidates(d, g)} == {False}
    kernel_options(dw_tiles="tuned")
    for other in (sc._Geom(2, 2, 2, 1, groups=1, q=1), sc._Geom(2, 2, 2, 1, groups=2, q=3)):
        assert {c["POW_TILES"] for c in sc._dw_candidates(d, other)} == {False}


def test_grad_w_split_variants_follow_what_bounds_the_split(monkeypatch):
    """Each grad_W config is offered again with host split settings (the kernel's arguments are the
    same), after every plain config so the untuned default stays first: where the floor of
    dw_min_steps steps a program leaves SMs idle (disc.2: 8 programs on 132 SMs) with floors 2 and 1
    (more programs); where the SM count bounds it (gen.down4: 43 splits a tile, all summed by one
    program) with half and a quarter as many splits."""
    monkeypatch.setattr(_launch, "_offline_sms", 132)
    monkeypatch.setattr(_launch, "interpreting", lambda: False)  # the GPU's candidate lists
    cpu = torch.device("cpu")

    def offered(d, g, L_red):
        def plan(c):
            return sc._dw_plan(c, d, g, True, 1, L_red, L_red, cpu)

        base = sc._dw_candidates(d, g)
        cands = sc._with_splits(base, plan)
        assert cands[:len(base)] == base and not any(c.host for c in base)
        extra = cands[len(base):]
        for c in extra:
            plain = Cfg(c.blocks, c.num_warps, c.num_stages)
            assert plain in base and c.kwargs == plain.kwargs
            if plan(plain)["sm_bound"]:
                assert set(c.host_kw) == {"DW_SPLIT_DIV"} and plan(c)["S"] < plan(plain)["S"]
            else:
                assert set(c.host_kw) == {"DW_MIN_STEPS"} and plan(c)["S"] > plan(plain)["S"]
        return base[0], {c.host for c in extra if c.blocks == base[0].blocks}, plan

    g8 = sc._Geom(stride=8, pad_left=1, pad_right=1, dilation=1, groups=1, q=3)
    disc2 = sc._Dims(B=8, C_in=16, L_in=4000, C_out=32, OG=32, CQG=48, K=4, L_out=500)
    first, hosts, plan = offered(disc2, g8, 500)
    assert hosts == {(("DW_MIN_STEPS", 2),), (("DW_MIN_STEPS", 1),)}
    assert [plan(first.with_host(DW_MIN_STEPS=m))["S"] for m in (4, 2, 1)] == [8, 16, 32]
    g2 = sc._Geom(stride=2, pad_left=2, pad_right=2, dilation=1, groups=1, q=3)
    down4 = sc._Dims(B=8, C_in=64, L_in=4000, C_out=128, OG=128, CQG=192, K=5, L_out=2000)
    first, hosts, plan = offered(down4, g2, 2000)
    assert hosts == {(("DW_SPLIT_DIV", 2),), (("DW_SPLIT_DIV", 4),)}
    assert [plan(first.with_host(DW_SPLIT_DIV=k))["S"] for k in (1, 2, 4)] == [43, 22, 11]


@pytest.mark.parametrize("host", [{"DW_MIN_STEPS": 1}, {"DW_SPLIT_DIV": 2}], ids=["finer", "coarser"])
@pytest.mark.parametrize(("transposed", "name"), [(False, "stride2_opgan_down"), (True, "stride2_pad1_outpad1"),
                                                  (False, "cin1_disc1_s8_odd"), (True, "cout1_opgan_out_k6_s2")])
def test_grad_w_host_split_matches_reference(transposed, name, host, device, poison_empty, monkeypatch, kernel_tol,
                                             kernel_options):
    """A config whose split is set by a host setting (one (batch, time) step a program, or half as
    many splits as one step each) launches that split, on _dw_kernel and in the single-channel
    backward, and matches the reference: the kernel never sees the setting (under the interpreter an
    unknown argument raises)."""
    kernel_options(dw_programs_per_sm=10**4)  # SMs to spare: the floor sets the plain split
    if "DW_SPLIT_DIV" in host:
        kernel_options(dw_min_steps=1)  # the plain split: a program per step
    plans, real = [], sc._dw_plan

    def spy(cfg, *args):
        plan = real(cfg, *args)
        plans.append((cfg.host_kw, plan, real(Cfg(cfg.blocks, cfg.num_warps, cfg.num_stages), *args)))
        return plan

    monkeypatch.setattr(gw, "_dw_plan", spy)
    dw = sc._interp_dw(True).with_host(**host)
    tc = sc._thin_configs()[-1]
    thin = Cfg(Cfg.of(BLOCK_C=tc["BLOCK_C"], BLOCK_TX=tc["BLOCK_T"], **dw.kwargs).blocks, host=dw.host)
    case = _case(transposed, name)
    if "DW_SPLIT_DIV" in host:  # enough (batch, time) steps to halve
        case = replace(case, B=3, L=max(case.L, 80 if not transposed else 40))
    with _launch.pin("dw", dw), _launch.pin("thin_bwd", thin):
        _check(case, transposed, device, torch.float64, kernel_tol[torch.float64])
    assert plans and all(h == host for h, _, _ in plans), plans
    if "DW_MIN_STEPS" in host:
        assert all(p["STEPS"] == 1 for _, p, _ in plans), plans
    else:
        splits = [(p["S"], plain["S"]) for _, p, plain in plans]
        assert all(s <= s_plain for s, s_plain in splits) and any(1 < s < s_plain for s, s_plain in splits), splits


def test_thin_backward_times_one_launch_against_two(monkeypatch, caplog, kernel_options):
    """thin_split_bwd="tuned": a shape's first call on a GPU runs both ways once (tuning their
    kernels), times them, keeps the faster per shape and records both times; none of those launches
    joins a plan being recorded. Forced values, a backward without grad_W and a failed timing take
    no timing (the last: one launch, with a warning)."""
    calls, paused = [], []

    def thin(dy, x, w, dx, dw, db, d, g):
        calls.append(("thin", dw is not None))
        paused.append(getattr(_launch._tls, "launches", "unset") is None)

    monkeypatch.setattr(th, "_thin_bwd", thin)
    monkeypatch.setattr(gw, "_launch_dw", lambda *a: calls.append(("dw",)))
    monkeypatch.setattr(th, "_thin_bwd_key", lambda *a: ("key",))
    monkeypatch.setattr(_launch.Kernel, "tuning_enabled", staticmethod(lambda: True))
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    times = {"one": 2.0, "two": 1.0}
    monkeypatch.setattr(triton.testing, "do_bench", lambda fn, **kw: times[fn.__name__])
    monkeypatch.setattr(th, "_thin_split_picks", {})
    monkeypatch.setattr(th, "_thin_split_timings", {})
    x = types.SimpleNamespace(device=torch.device("cuda", 0))
    with _launch.recording() as launches:
        assert sc._thin_split(None, x, None, "dx", "dw", "db", None, None) is True
    assert calls == [("thin", True), ("thin", False), ("dw",)] and all(paused) and launches == []
    assert th._thin_split_timings == {(("key",), x.device): (2.0, 1.0)}
    calls.clear()
    assert sc._thin_split(None, x, None, "dx", "dw", "db", None, None) is True and calls == []  # kept
    assert sc._thin_split(None, x, None, "dx", None, None, None, None) is False  # dx only: one launch
    kernel_options(thin_split_bwd=False)
    assert sc._thin_split(None, x, None, "dx", "dw", "db", None, None) is False and calls == []
    kernel_options(thin_split_bwd="tuned")
    monkeypatch.setattr(th, "_thin_split_picks", {})
    monkeypatch.setattr(triton.testing, "do_bench", lambda fn, **kw: 1 / 0)
    assert sc._thin_split(None, x, None, "dx", "dw", "db", None, None) is False
    assert "one launch" in caplog.text and th._thin_split_picks == {(("key",), x.device): False}


@pytest.mark.parametrize(("transposed", "name"), [(False, "cin1_opgan_down1"), (False, "cout1_disc_head"),
                                                  (True, "cout1_opgan_out_k6_s2"), (True, "cin1_s2_outpad1")])
def test_thin_backward_unrolled_taps_match_reference(transposed, name, device, poison_empty, kernel_tol,
                                                     kernel_options):
    """The single-channel backward's dx with its taps unrolled (the knob beside the default loop)."""
    kernel_options(thin_bwd_tap_loop=False)
    _check(_case(transposed, name), transposed, device, torch.float64, kernel_tol[torch.float64])


@pytest.mark.parametrize("i", range(len(sc._THIN_SHAPES)), ids=[str(s) for s in sc._THIN_SHAPES])
def test_each_thin_config(i, device, poison_empty, kernel_tol):
    """Single-channel fwd and one-launch bwd with each (BLOCK_C, BLOCK_T) config (+ a wide grad_W tile)."""
    tc = sc._thin_configs()[i]
    dc = sc._dw_configs(pow_tiles=bool(i // 2 % 2))[i % len(sc._DW_SHAPES)]  # both kinds, both layer kinds
    bwd = _launch.Cfg.of(num_warps=4, BLOCK_C=tc["BLOCK_C"], BLOCK_TX=tc["BLOCK_T"], **dc.kwargs)
    transposed = bool(i % 2)
    case = Case(2, 1, 5, 37, 5, stride=2, padding=2) if not transposed else Case(2, 5, 1, 9, 6, stride=2, padding=2)
    with _launch.pin("thin_fwd", tc), _launch.pin("thin_bwd", bwd):
        _check_pinned(case, transposed, device, kernel_tol)


@pytest.mark.slow
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
@pytest.mark.parametrize("i", range(len(sc._MM_SHAPES)))
def test_each_gemm_and_dw_config_both_kinds_slow(i, transposed, device, poison_empty, kernel_tol, kernel_options):
    kernel_options(dw_min_steps=1)
    mm, dw = sc._mm_configs()[i], sc._dw_configs(pow_tiles=bool(i // 2 % 2))[i % len(sc._DW_SHAPES)]
    with _launch.pin("gather", mm), _launch.pin("scatter", mm), _launch.pin("dw", dw), _tf32_off():
        _check(_PIN_CASES[transposed], transposed, device, torch.float32, kernel_tol[torch.float32])


def _random_case(seed: int) -> tuple[bool, Case]:
    """A seeded random geometry: kind, channels (often 1), groups, stride/dilation with shared factors."""
    import random

    r = random.Random(seed)
    transposed = r.random() < 0.4
    q = r.choice([1, 2, 3, 3, 4])
    cin, cout = r.choice([1, 1, 2, 3, 5, 8, 17]), r.choice([1, 1, 2, 4, 6, 16])
    groups = r.choice([g for g in (1, 1, 1, 2, 3) if (q * cin) % g == 0 and cout % g == 0])
    k, s, d = r.choice([1, 2, 3, 4, 5, 6]), r.choice([1, 1, 2, 3, 4, 8]), r.choice([1, 1, 2, 3])
    pad = r.choice([0, 1, 2, (0, 2), (2, 1)])
    L = r.randint(d * (k - 1) + 1, 60)
    op = r.randrange(max(s, d)) if transposed else 0
    case = Case(r.randint(1, 3), cin, cout, L, k, stride=s, padding=pad, dilation=d, groups=groups, q=q,
                output_padding=op, noncontig=r.random() < 0.3)
    return transposed, case


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
@pytest.mark.parametrize(("cin", "cout"), [(4, 6), (1, 4), (4, 1)], ids=["gemm", "cin1", "cout1"])
@pytest.mark.parametrize("dilation", [1, 2, 4, 8, 16, 32])
def test_dilated_same_length_layers(transposed, cin, cout, dilation, device, poison_empty, kernel_tol):
    """The layers a dilated generator stacks: k = 3, dilation 1 to 32 and padding = dilation (output as
    long as the input), on each kernel family (GEMM, C_in = 1, C_out = 1), forward and every gradient
    against the reference; the signal shorter than the widest receptive field, as a deep stack's
    inner layers see it."""
    case = Case(2, cin, cout, 37, 3, padding=dilation, dilation=dilation, q=3)
    _check(case, transposed, device, torch.float64, kernel_tol[torch.float64])


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
@pytest.mark.parametrize("k", [3, 7, 11, 15])
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_kernel_sizes_and_strides(transposed, k, stride, device, poison_empty, kernel_tol):
    """Kernel sizes 3 to 15 and strides 1 to 4 (odd sizes with 'same'-style padding; the transposed
    layer with the output padding that restores stride x length), forward and every gradient."""
    if transposed:
        case = Case(1, 3, 4, 9, k, stride=stride, padding=k // 2, output_padding=stride - 1, q=2)
    else:
        case = Case(1, 3, 4, 41, k, stride=stride, padding=k // 2, q=2)
    _check(case, transposed, device, torch.float64, kernel_tol[torch.float64])


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_random_geometries_slow(seed, device, poison_empty, kernel_tol, kernel_options):
    transposed, case = _random_case(seed)
    kernel_options(dw_min_steps=1 + seed % 3)
    if transposed:
        pl, pr = case.padding if isinstance(case.padding, tuple) else (case.padding, case.padding)
        L_out = (case.L - 1) * case.stride - pl - pr + case.dilation * (case.k - 1) + case.output_padding + 1
        if L_out < 1:
            pytest.skip("geometry with an empty output")
    _check(case, transposed, device, torch.float64, kernel_tol[torch.float64])


# ---- grad_W split and ordered reduction, repacked weights, folded grids --------------------------


@pytest.mark.parametrize("tail", [32, 2, 1], ids=["tail32", "tail2", "tail1"])
@pytest.mark.parametrize("thin", [False, True], ids=["gemm", "thin"])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_grad_w_split_reduces_in_order(transposed, thin, tail, device, poison_empty, monkeypatch, kernel_tol,
                                       kernel_options):
    """Many splits: partials summed by the last program of each tile, ``tail`` of them per load (2: several
    loads and a masked last one; 1: one at a time); counters are left at zero."""
    kernel_options(dw_min_steps=1)
    kernel_options(dw_split_steps=())  # the spy below sees launched plans only, no candidates sized
    kernel_options(dw_split_divs=())
    kernel_options(tail_max_splits=tail)
    monkeypatch.setattr(_launch, "_offline_sms", 5 if tail == 2 else None)  # 10 programs a tile: S odd
    splits = []
    real_plan = sc._dw_plan
    monkeypatch.setattr(gw, "_dw_plan", lambda *a, **k: splits.append(real_plan(*a, **k)["S"]) or real_plan(*a, **k))
    if thin:
        case = Case(2, 1, 4, 45, 4, stride=2, padding=1) if not transposed else Case(2, 3, 1, 23, 4, stride=2,
                                                                                     padding=1)
    else:
        case = Case(2, 3, 4, 37, 3, stride=2, padding=1)
    if tail == 2:  # 3 items x 3 time tiles of 16 under 10 wanted programs: 9 splits, 5 loads, the last masked
        case = replace(case, B=3, L=80 if not transposed else 40)
    _check(case, transposed, device, torch.float64, kernel_tol[torch.float64])
    assert splits and min(splits) > 1, splits
    assert tail != 2 or any(s % 2 for s in splits), splits  # an odd split count: a masked last load
    assert _launch._counters and not any(c.any() for c in _launch._counters.values())


def test_grad_w_bitwise_deterministic(device, kernel_options):
    """The split reduction is ordered: repeated backward passes give bit-identical grad_W."""
    kernel_options(dw_min_steps=1)
    _, (x, w, b) = _make(Case(2, 3, 4, 37, 3, stride=2, padding=1), False, device, torch.float32)
    y = sc.triton_selfonn_conv1d(x, w, b, 2, 1, 1, 1, 3)
    g1 = torch.autograd.grad(y, (w, b), torch.ones_like(y), retain_graph=True)
    g2 = torch.autograd.grad(y, (w, b), torch.ones_like(y))
    assert all(torch.equal(p, r) for p, r in zip(g1, g2))


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_repacked_weight_path(transposed, device, poison_empty, kernel_tol, kernel_options):
    """Large layers repack W tap-major for the GEMMs; force it on a small grouped case."""
    kernel_options(pack_min_macs=0)
    case = _case(transposed, "groups2_spans_powers")
    _check(case, transposed, device, torch.float64, kernel_tol[torch.float64])
    _check(replace(case, groups=1, noncontig=True), transposed, device, torch.float64, kernel_tol[torch.float64])


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_repacked_weight_kept_per_version(transposed, device, kernel_tol, kernel_options):
    """A packed W serves every call while the weight is unchanged (a step's forward and backward pack
    once) and is packed again after an in-place update, whose values the next call then uses."""
    kernel_options(pack_min_macs=0)
    case = _case(transposed, "stride2_pad1_outpad1" if transposed else "stride2_opgan_down")
    (x, w, b), (xd, wd, bd) = _make(case, transposed, device, torch.float64)
    ker, ref = _ops(case, transposed)
    y = ker(xd, wd, bd)
    packed = gemm._packed[id(wd)][3]
    y.square().sum().backward()
    assert gemm._packed[id(wd)][3] is packed
    with torch.no_grad():
        w.mul_(-0.5)
        wd.mul_(-0.5)
    _assert_close("y after an in-place update", ker(xd, wd, bd), ref(x, w, b), kernel_tol[torch.float64])
    assert gemm._packed[id(wd)][3] is not packed


@pytest.mark.parametrize(("transposed", "name"), [(False, "stride2_opgan_down"), (True, "stride2_pad1_outpad1"),
                                                  (False, "cin1_disc1_s8_odd"), (True, "cout1_opgan_out_k6_s2")])
def test_folded_grid_index_math(transposed, name, device, poison_empty, monkeypatch, kernel_tol, kernel_options):
    """With grid axis 0 capped at 3 programs every launch spills onto axis 1 (as a batch of long
    audio spills past CUDA's 65535 on axes 1/2 in the old layout): results are unchanged."""
    monkeypatch.setattr(_launch, "_GRID_X_MAX", 3)
    kernel_options(dw_min_steps=1)
    grids = []
    real = _launch.fold_grid
    monkeypatch.setattr(_launch, "fold_grid", lambda n: grids.append(real(n)) or real(n))
    _check(_case(transposed, name), transposed, device, torch.float64, kernel_tol[torch.float64])
    assert grids and all(g[0] <= 3 for g in grids) and max(g[1] for g in grids) > 1


def test_fold_grid_limits(monkeypatch):
    assert _launch.fold_grid(5) == (5, 1, 1)
    monkeypatch.setattr(_launch, "_GRID_X_MAX", 4)
    assert _launch.fold_grid(9) == (4, 3, 1)
    monkeypatch.setattr(_launch, "_GRID_YZ_MAX", 2)
    with pytest.raises(ValueError, match="exceed the CUDA grid"):
        _launch.fold_grid(9)
    with pytest.raises(ValueError, match="at least one program"):
        _launch.fold_grid(0)


# ---- autograd behaviour ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gemm", "thin"])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_gradcheck_fp64(transposed, kind, device):
    if kind == "gemm":
        case = Case(1, 2, 4, 6, 2, stride=2, padding=1, groups=2, q=3, output_padding=1 if transposed else 0)
    else:
        case = Case(1, 1, 3, 7, 3, stride=2, padding=1) if not transposed else Case(1, 2, 1, 5, 3, stride=2)
    _, (x, w, b) = _make(case, transposed, device, torch.float64)
    ker, _ = _ops(case, transposed)
    assert torch.autograd.gradcheck(ker, (x, w, b), fast_mode=True)


@pytest.mark.parametrize("mode", ["no_bias", "frozen_weight", "input_only", "bias_only"])
@pytest.mark.parametrize(("transposed", "cin"), [(False, 3), (True, 3), (False, 1)], ids=["conv", "convT", "thin"])
def test_partial_requires_grad(mode, transposed, cin, device, poison_empty, kernel_tol):
    case = Case(2, cin, 4, 12, 3, stride=2, padding=1)
    (x, w, b), (xd, wd, bd) = _make(case, transposed, device, torch.float64)
    if mode == "no_bias":
        b = bd = None
    if mode in ("frozen_weight", "bias_only"):
        w.requires_grad_(False)
        wd.requires_grad_(False)
    if mode in ("input_only", "bias_only"):
        x.requires_grad_(False)
        xd.requires_grad_(False)
    ker, ref = _ops(case, transposed)
    y, y_ref = ker(xd, wd, bd), ref(x, w, b)
    _assert_close("y", y, y_ref, kernel_tol[torch.float64])
    wrt = [t for t in (x, w, b) if t is not None and t.requires_grad]
    wrt_d = [t for t in (xd, wd, bd) if t is not None and t.requires_grad]
    for g, g_ref in zip(torch.autograd.grad(y.sum(), wrt_d), torch.autograd.grad(y_ref.sum(), wrt)):
        _assert_close("grad", g, g_ref, kernel_tol[torch.float64])


@pytest.mark.parametrize("cin", [3, 1], ids=["gemm", "thin"])
def test_saves_only_x_and_weight(cin, device):
    """The autograd graph holds x and W, never a (B, Q*C, L) power stack."""
    case = Case(2, cin, 4, 20, 3, padding=1, q=4)
    _, (x, w, b) = _make(case, False, device, torch.float32)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        sc.triton_selfonn_conv1d(x, w, b, 1, 1, 1, 1, case.q)
    assert sorted(tuple(t.shape) for t in saved) == sorted([tuple(x.shape), tuple(w.shape)])


def test_through_selfonn_backend(device, kernel_tol):
    """selfonn's 'triton' backend reaches these kernels with the same answer as the exact path."""
    import selfonn

    torch.manual_seed(0)
    conv = selfonn.SelfONN1d(3, 4, 5, stride=2, padding=2, q=3).double().to(device)
    convt = selfonn.SelfONNTranspose1d(4, 2, 6, stride=2, padding=2, q=3).double().to(device)
    x = (torch.rand(2, 3, 24, dtype=torch.float64, device=device) * 2 - 1)
    with selfonn.use_backend("torch"):
        y_ref = convt(conv(x))
    with selfonn.use_backend("triton"):
        y = convt(conv(x))
    _assert_close("y", y, y_ref, kernel_tol[torch.float64])


# ---- argument checks and config spaces -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"padding": -1}, "non-negative"),
        ({"padding": (1, 2, 3)}, "pair"),
        ({"stride": 0}, "stride"),
        ({"q": 0}, "q must be"),
        ({"groups": 4}, "groups=4"),
        ({"q": 2}, "does not match q=2"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match, device):
    x = torch.zeros(1, 2, 8, device=device)
    w = torch.zeros(3, 6, 3, device=device)  # q=3, in=2, groups=1
    args = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "q": 3} | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        sc.triton_selfonn_conv1d(x, w, None, **args)


def test_too_short_input_and_dtype_mismatch_raise(device):
    def z(*shape, dtype=torch.float32):
        return torch.zeros(*shape, device=device, dtype=dtype)

    with pytest.raises(ValueError, match="too short"):
        sc.triton_selfonn_conv1d(z(1, 2, 2), z(3, 2, 5), None, 1, 0, 1, 1, 1)
    with pytest.raises(TypeError, match="dtype"):
        sc.triton_selfonn_conv1d(z(1, 2, 8), z(3, 2, 3, dtype=torch.float64), None, 1, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="output_padding"):
        sc.triton_selfonn_conv_transpose1d(z(1, 2, 8), z(2, 3, 3), None, 2, 0, 2, 1, 1, 1)


def test_config_spaces_compile_on_a_gpu():
    """Power-of-two blocks, every tl.dot dimension >= 16; pruning never empties a list and keeps
    blocks no wider than the channel axis needs."""
    for cfg in sc._mm_configs() + sc._mm_configs(True, True) + sc._mm_configs(False, True) + sc._dw_configs():
        for name, v in cfg.kwargs.items():
            assert name == "POW_TILES" or (v >= 16 and v & (v - 1) == 0), cfg
    for cfg in sc._thin_configs():
        assert all(v >= 2 and v & (v - 1) == 0 for v in cfg.kwargs.values()), cfg
    assert all(c["BLOCK_N"] == 16 and c["BLOCK_R"] == 16 for c in sc._prune_mm(1, 1))
    assert all(c["BLOCK_M"] <= 16 for c in sc._prune_dw(1, 3))
    # the short-step grad_W tile only where (16, 16, 256) would otherwise be the one tile
    def tiles(rows: int, cols: int) -> set[tuple[int, int, int]]:
        interp = (sc._interp_dw(True)["BLOCK_M"], sc._interp_dw(True)["BLOCK_N"], sc._interp_dw(True)["BLOCK_T"])
        return {(c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_T"]) for c in sc._prune_dw(rows, cols, True)} - {interp}

    assert tiles(16, 5) == {(16, 16, 256), (16, 16, 64)} and (16, 16, 64) not in tiles(32, 64)
    assert max(c["BLOCK_R"] for c in sc._prune_mm(256, 256)) == 64  # reduction blocks up to 64
    # a narrow side still gets wide tiles on the other (gen.up4's grad_x had one 64x16 tile)
    assert max(c["BLOCK_N"] * c["BLOCK_T"] for c in sc._prune_mm(64, 16)) == 128 * 64
    assert max(c["BLOCK_R"] for c in sc._prune_mm(16, 64)) == 64 and len(sc._prune_mm(16, 64)) > 2
    assert {c["BLOCK_C"] for c in sc._prune_thin(1)} == {2}
    assert {c["BLOCK_C"] for c in sc._prune_thin(16)} == {16, 8}


# ---- CUDA only -----------------------------------------------------------------------------------


@CUDA_ONLY
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_autocast_low_precision_cuda(dtype, transposed, kernel_tol):
    case = Case(2, 16, 32, 300, 5, stride=2, padding=2, q=3)
    _check(case, transposed, "cuda", dtype, kernel_tol[dtype], autocast=True)


@CUDA_ONLY
def test_autocast_stacked_layers_cuda():
    """A bf16 activation from one layer feeds the next (fp32 weights) under autocast."""
    torch.manual_seed(0)
    w1 = torch.randn(8, 3, 5, device="cuda") * 0.3
    w2 = torch.randn(4, 24, 5, device="cuda") * 0.2
    x = torch.rand(2, 1, 400, device="cuda") * 2 - 1
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = sc.triton_selfonn_conv1d(torch.tanh(sc.triton_selfonn_conv1d(x, w1, None, 2, 2, 1, 1, 3)), w2, None,
                                     1, 2, 1, 1, 3)
    ref = reference_conv1d(torch.tanh(reference_conv1d(x.double(), w1.double(), None, 2, 2, 1, 1, 3)),
                           w2.double(), None, 1, 2, 1, 1, 3)
    assert y.dtype == torch.bfloat16
    _assert_close("y", y, ref, 3e-2)


@CUDA_ONLY
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_tf32_when_allowed_cuda(transposed, kernel_tol):
    case = Case(2, 32, 64, 500, 5, stride=2, padding=2, q=3)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=True):
        _check(case, transposed, "cuda", torch.float32, kernel_tol["tf32"])


@CUDA_ONLY
@pytest.mark.parametrize("name", ["conv", "convT", "conv_cin1", "convT_cout1"])
def test_opgan_sized_layer_cuda(name):
    """Real block sizes (tuned configs, many tiles, split grad_W, repacked W) at fp32 IEEE."""
    case, transposed = {
        "conv": (Case(2, 64, 128, 4000, 5, stride=2, padding=2), False),
        "convT": (Case(2, 32, 16, 2000, 6, stride=2, padding=2), True),
        "conv_cin1": (Case(2, 1, 16, 32000, 4, stride=8, padding=1), False),
        "convT_cout1": (Case(2, 32, 1, 16000, 6, stride=2, padding=2), True),
    }[name]
    with _tf32_off():
        _check(case, transposed, "cuda", torch.float32, 1e-4)


@CUDA_ONLY
def test_direct_launch_matches_jit_path_cuda(monkeypatch):
    """Cached compiled kernels launched directly, and then from a plan, give the same bits as
    Triton's JIT launch."""
    case = Case(2, 16, 32, 1000, 5, stride=2, padding=2)
    (_, _, _), (x, w, b) = _make(case, False, "cuda", torch.float32)
    outs = []
    for direct in (False, True, True):  # the second direct call hits the cache
        for k in sc._kernels.values():
            monkeypatch.setattr(k, "direct_ok", direct)
        y = sc.triton_selfonn_conv1d(x, w, b, 2, 2, 1, 1, 3)
        outs.append((y, *torch.autograd.grad(y, (x, w, b), torch.ones_like(y))))
    assert any(k.compiled for k in sc._kernels.values()) and sc.plans()  # the third call replayed plans
    for other in outs[1:]:
        assert all(torch.equal(p, r) for p, r in zip(outs[0], other))
