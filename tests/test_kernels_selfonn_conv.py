"""Fused Self-ONN kernels vs the FastONN reference: values and every gradient, both layer kinds.

On CPU the kernels run under TRITON_INTERPRET=1 (set by conftest when there is no GPU); on a CUDA
machine the same cases run compiled. Shapes are tiny because the interpreter is slow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch

from selfonn import reference_conv1d, reference_conv_transpose1d
from selfonn.kernels import selfonn_conv as sc

pytestmark = pytest.mark.timeout(300)


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
    "stride4_disc_head": Case(1, 4, 1, 13, 3, stride=4, padding=1),
    "pad_left_right": Case(1, 3, 2, 19, 4, padding=(2, 1), q=2),
    "dilation2": Case(2, 3, 4, 21, 3, padding=2, dilation=2),
    "dilation3_stride2": Case(1, 2, 3, 26, 3, stride=2, padding=1, dilation=3, q=2),
    "channels_off_block": Case(1, 17, 19, 9, 2, q=2),
    "groups2_spans_powers": Case(2, 4, 6, 15, 3, padding=1, groups=2),
    "groups3_one_power_each": Case(1, 3, 3, 12, 2, groups=3),
    "groups6_single_column": Case(1, 2, 6, 10, 3, padding=1, groups=6),
    "q1": Case(2, 3, 4, 16, 3, padding=1, q=1),
    "q4": Case(1, 3, 4, 14, 3, q=4),
    "q5": Case(1, 2, 3, 13, 3, stride=2, padding=1, q=5),
    "noncontiguous_x": Case(2, 3, 4, 17, 3, padding=1, noncontig=True),
}

CONVT_CASES = {
    "T1": Case(1, 2, 3, 1, 1, q=2),
    "basic": Case(2, 3, 5, 13, 3, q=2),
    "stride2_pad1_outpad1": Case(2, 3, 4, 11, 3, stride=2, padding=1, output_padding=1),
    "opgan_final_k6_s2_p2": Case(2, 4, 1, 9, 6, stride=2, padding=2),
    "stride8_outpad3": Case(1, 2, 3, 5, 4, stride=8, padding=1, output_padding=3),
    "stride_gt_k": Case(1, 3, 2, 7, 2, stride=3, q=2),
    "pad_left_right": Case(1, 3, 2, 9, 4, stride=2, padding=(1, 2), q=2),
    "dilation2_outpad1": Case(1, 2, 3, 8, 3, padding=1, dilation=2, output_padding=1, q=2),
    "channels_off_block": Case(1, 17, 19, 5, 2, q=2),
    "groups2_spans_powers": Case(2, 4, 6, 7, 3, stride=2, padding=1, groups=2),
    "groups3_one_power_each": Case(1, 3, 3, 6, 2, groups=3),
    "q1": Case(2, 3, 4, 8, 3, stride=2, q=1),
    "q5": Case(1, 2, 3, 6, 3, q=5),
    "noncontiguous_x": Case(2, 3, 4, 9, 3, stride=2, padding=1, noncontig=True),
}


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

    def prep(t):
        return t.to(device=device, dtype=dtype).requires_grad_(True)

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
    expected = expected.detach().double()
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


def test_grad_w_split_over_many_time_chunks(device, poison_empty, monkeypatch, kernel_tol):
    """grad_W partials over several (batch, time-chunk) slots sum to the same answer."""
    monkeypatch.setattr(sc, "_DW_MIN_CHUNK", 8)
    for transposed in (False, True):
        case = Case(2, 3, 4, 37, 3, stride=2, padding=1)
        _check(case, transposed, device, torch.float64, kernel_tol[torch.float64])


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_gradcheck_fp64(transposed, device):
    case = Case(1, 2, 4, 6, 2, stride=2, padding=1, groups=2, q=3, output_padding=1 if transposed else 0)
    _, (x, w, b) = _make(case, transposed, device, torch.float64)
    ker, _ = _ops(case, transposed)
    assert torch.autograd.gradcheck(ker, (x, w, b), fast_mode=True)


@pytest.mark.parametrize("mode", ["no_bias", "frozen_weight", "input_only"])
def test_partial_requires_grad(mode, device, poison_empty, kernel_tol):
    case = Case(2, 3, 4, 12, 3, stride=2, padding=1)
    (x, w, b), (xd, wd, bd) = _make(case, False, device, torch.float64)
    if mode == "no_bias":
        b = bd = None
    elif mode == "frozen_weight":
        w.requires_grad_(False)
        wd.requires_grad_(False)
    else:
        x.requires_grad_(False)
        xd.requires_grad_(False)
    ker, ref = _ops(case, False)
    y, y_ref = ker(xd, wd, bd), ref(x, w, b)
    _assert_close("y", y, y_ref, kernel_tol[torch.float64])
    wrt = [t for t in (x, w, b) if t is not None and t.requires_grad]
    wrt_d = [t for t in (xd, wd, bd) if t is not None and t.requires_grad]
    for g, g_ref in zip(torch.autograd.grad(y.sum(), wrt_d), torch.autograd.grad(y_ref.sum(), wrt)):
        _assert_close("grad", g, g_ref, kernel_tol[torch.float64])


def test_saves_only_x_and_weight(device):
    """The autograd graph holds x and W, never a (B, Q*C, L) power stack."""
    case = Case(2, 3, 4, 20, 3, padding=1, q=4)
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
    _assert_close("y", y, y_ref.cpu(), kernel_tol[torch.float64])


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


def test_autotune_config_space_is_valid_for_tl_dot():
    """Every config is power-of-two and >= 16 on each tl.dot dim; pruning never empties the list."""
    for cfg in sc._mm_configs() + sc._dw_configs():
        for v in cfg.kwargs.values():
            assert v >= 16 and v & (v - 1) == 0, cfg
    args = {"N_OUT": 1, "C_IN": 1, "C_A": 1, "POW_A": True}
    assert sc._prune_mm(sc._mm_configs(), {}, **args)
    assert all(c.kwargs["BLOCK_N"] == 16 for c in sc._prune_mm(sc._mm_configs(), {}, **args))
    assert sc._prune_dw(sc._dw_configs(), {}, OG=1, CQG=3)


@pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                    reason="needs a CUDA device (autocast bf16/fp16 and TF32 are GPU paths)")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_autocast_low_precision_cuda(dtype, transposed, kernel_tol):
    case = Case(2, 16, 32, 300, 5, stride=2, padding=2, q=3)
    _check(case, transposed, "cuda", dtype, kernel_tol[dtype], autocast=True)


@pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                    reason="needs a CUDA device")
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_tf32_when_allowed_cuda(transposed, kernel_tol):
    case = Case(2, 32, 64, 500, 5, stride=2, padding=2, q=3)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=True):
        _check(case, transposed, "cuda", torch.float32, kernel_tol["tf32"])


@pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                    reason="needs a CUDA device")
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_opgan_sized_layer_cuda(transposed):
    """Real block sizes (autotuned configs, many tiles, many grad_W chunks) at fp32 IEEE."""
    case = Case(2, 64, 128, 4000, 5, stride=2, padding=2, q=3) if not transposed else \
        Case(2, 32, 16, 2000, 6, stride=2, padding=2, q=3)
    with _tf32_off():
        _check(case, transposed, "cuda", torch.float32, 1e-4)
