"""The exact torch path against the FastONN reference: forward and every gradient, gradcheck, q=1 == nn.Conv1d."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch

from selfonn import (
    reference_conv1d,
    reference_conv_transpose1d,
    selfonn_conv1d,
    selfonn_conv_transpose1d,
)

# PyTorch's own note when the reference uses padding='same' with an even kernel and odd dilation.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel:UserWarning")


@dataclass(frozen=True)
class Conv:
    b: int
    cin: int
    cout: int
    k: int
    stride: int = 1
    padding: int | str | tuple[int, int] = 0
    dilation: int = 1
    groups: int = 1
    q: int = 3
    length: int = 16

    def __str__(self) -> str:
        return (
            f"b{self.b}-c{self.cin}x{self.cout}-k{self.k}-s{self.stride}-p{self.padding}-d{self.dilation}"
            f"-g{self.groups}-q{self.q}-L{self.length}"
        ).replace(" ", "")


@dataclass(frozen=True)
class ConvT:
    b: int
    cin: int
    cout: int
    k: int
    stride: int = 1
    padding: int | tuple[int, int] = 0
    output_padding: int = 0
    dilation: int = 1
    groups: int = 1
    q: int = 3
    length: int = 9

    def __str__(self) -> str:
        return (
            f"b{self.b}-c{self.cin}x{self.cout}-k{self.k}-s{self.stride}-p{self.padding}-op{self.output_padding}"
            f"-d{self.dilation}-g{self.groups}-q{self.q}-L{self.length}"
        ).replace(" ", "")


CONV_CASES = [
    Conv(1, 1, 1, 1, q=1, length=1),  # T=1, k=1
    Conv(2, 3, 5, 3, padding=1, q=2),  # odd channels
    Conv(1, 4, 4, 7, padding="same", q=5, length=3),  # shorter than the kernel span, 'same'
    Conv(2, 2, 3, 4, padding="same", dilation=3, q=2, length=11),  # uneven 'same' (even k, odd dilation)
    Conv(1, 3, 2, 2, stride=8, q=3, length=29),  # stride > k, prime length
    Conv(3, 4, 8, 5, stride=2, padding=2, dilation=2, groups=2, q=3, length=31),
    Conv(4, 8, 4, 3, groups=4, q=4, length=13),
    Conv(1, 4, 4, 3, padding=(0, 2), q=2, length=5),  # explicit (left, right) pair
    Conv(2, 5, 7, 6, stride=2, padding="valid", q=1, length=6),  # exactly one output sample
    Conv(1, 8, 8, 1, groups=4, q=5, length=7),
]


def _sampled_conv_cases(n: int, seed: int = 0) -> list[Conv]:
    rng = random.Random(seed)
    cases = []
    while len(cases) < n:
        groups = rng.choice([1, 1, 2, 4])
        cin = groups * rng.randint(1, 3) if groups > 1 else rng.randint(1, 7)
        cout = groups * rng.randint(1, 3) if groups > 1 else rng.randint(1, 7)
        k, stride, dilation = rng.randint(1, 7), rng.choice([1, 2, 8]), rng.randint(1, 3)
        padding = rng.choice([0, 1, 3, "same"]) if stride == 1 else rng.choice([0, 1, 3])
        length = rng.choice([1, 2, 5, 17, 40])
        pad_total = dilation * (k - 1) if padding == "same" else 2 * padding
        if length + pad_total < dilation * (k - 1) + 1:
            continue  # empty output: covered by the error tests
        q, b = rng.randint(1, 5), rng.randint(1, 4)
        cases.append(Conv(b, cin, cout, k, stride, padding, dilation, groups, q, length))
    return cases


CONVT_CASES = [
    ConvT(1, 1, 1, 1, q=1, length=1),
    ConvT(2, 3, 5, 3, stride=2, padding=1, output_padding=1, q=2),
    ConvT(1, 4, 2, 7, stride=1, padding=3, q=5, length=2),  # input shorter than the kernel
    ConvT(2, 4, 6, 4, stride=8, output_padding=3, q=3, length=5),  # stride > k
    ConvT(3, 8, 4, 5, stride=2, padding=2, dilation=2, groups=2, q=3, length=7),
    ConvT(1, 8, 8, 3, groups=4, q=4, length=11),
    ConvT(2, 3, 3, 5, stride=2, padding=(1, 3), output_padding=1, q=2, length=6),  # uneven crop
    ConvT(1, 2, 3, 3, dilation=3, output_padding=2, q=2, length=4),  # output_padding < dilation
]


def _sampled_convt_cases(n: int, seed: int = 1) -> list[ConvT]:
    rng = random.Random(seed)
    cases = []
    while len(cases) < n:
        groups = rng.choice([1, 1, 2, 4])
        cin = groups * rng.randint(1, 3) if groups > 1 else rng.randint(1, 7)
        cout = groups * rng.randint(1, 3) if groups > 1 else rng.randint(1, 7)
        k, stride, dilation = rng.randint(1, 7), rng.choice([1, 2, 8]), rng.randint(1, 3)
        padding = rng.choice([0, 1, 2])
        output_padding = rng.randrange(max(stride, dilation))
        length = rng.choice([1, 2, 5, 17])
        if (length - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1 < 1:
            continue
        q, b = rng.randint(1, 5), rng.randint(1, 4)
        cases.append(ConvT(b, cin, cout, k, stride, padding, output_padding, dilation, groups, q, length))
    return cases


ALL_CONV = CONV_CASES + _sampled_conv_cases(30)
ALL_CONVT = CONVT_CASES + _sampled_convt_cases(20)


def _close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5, what: str = "") -> None:
    """Float32-rounding agreement: relative to the tensor's own magnitude (sums of Q terms of mixed sign)."""
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale, msg=lambda m: f"{what}: {m}")


def _operands(case: Conv | ConvT, dtype: torch.dtype, transposed: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(case.b, case.cin, case.length, generator=g, dtype=dtype) * 2.4 - 1.2  # |x| > 1 too
    if transposed:
        w_shape = (case.q * case.cin, case.cout // case.groups, case.k)
    else:
        w_shape = (case.cout, case.q * case.cin // case.groups, case.k)
    w = torch.randn(w_shape, generator=g, dtype=dtype) * 0.3
    b = torch.randn(case.cout, generator=g, dtype=dtype)
    return x, w, b


def _ops(case: Conv | ConvT):
    """(exact op, reference op, positional args after x, weight, bias) for a case."""
    if isinstance(case, ConvT):
        args = (case.stride, case.padding, case.output_padding, case.groups, case.dilation, case.q)
        return selfonn_conv_transpose1d, reference_conv_transpose1d, args
    return selfonn_conv1d, reference_conv1d, (case.stride, case.padding, case.dilation, case.groups, case.q)


def _compare(case, transposed: bool, dtype: torch.dtype, noncontiguous: bool = False) -> None:
    x, w, b = _operands(case, dtype, transposed)
    if noncontiguous:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
        assert not x.is_contiguous()
    fast, ref, args = _ops(case)
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]
    leaves_ref = [t.clone().requires_grad_(True) for t in (x, w, b)]
    y = fast(*leaves, *args, backend="torch")
    y_ref = ref(*leaves_ref, *args)
    assert y.shape == y_ref.shape
    _close(y, y_ref, what="y")
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    grads = torch.autograd.grad(y, leaves, gy)
    grads_ref = torch.autograd.grad(y_ref, leaves_ref, gy)
    for name, got, want in zip(("grad_x", "grad_w", "grad_b"), grads, grads_ref):
        _close(got, want, what=name)


@pytest.mark.parametrize("case", ALL_CONV, ids=str)
def test_conv_matches_reference(case: Conv) -> None:
    _compare(case, transposed=False, dtype=torch.float32)


@pytest.mark.parametrize("case", ALL_CONVT, ids=str)
def test_conv_transpose_matches_reference(case: ConvT) -> None:
    _compare(case, transposed=True, dtype=torch.float32)


@pytest.mark.parametrize("case", CONV_CASES[1:5], ids=str)
def test_conv_noncontiguous_input(case: Conv) -> None:
    _compare(case, transposed=False, dtype=torch.float32, noncontiguous=True)


@pytest.mark.parametrize("case", CONV_CASES[1:3] + CONVT_CASES[1:3], ids=str)
def test_float64_agrees_tightly(case) -> None:
    transposed = isinstance(case, ConvT)
    x, w, b = _operands(case, torch.float64, transposed)
    fast, ref, args = _ops(case)
    torch.testing.assert_close(fast(x, w, b, *args), ref(x, w, b, *args), rtol=1e-12, atol=1e-12)


GRADCHECK_CASES = [
    Conv(1, 2, 3, 3, padding=1, q=3, length=6),
    Conv(2, 4, 2, 2, stride=2, padding=(2, 1), dilation=2, groups=2, q=2, length=7),
    ConvT(1, 2, 3, 3, stride=2, padding=1, output_padding=1, q=3, length=4),
    ConvT(1, 4, 4, 2, stride=3, padding=(0, 2), groups=2, q=2, length=3),
]


@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=str)
def test_gradcheck_float64(case) -> None:
    transposed = isinstance(case, ConvT)
    x, w, b = (t.requires_grad_(True) for t in _operands(case, torch.float64, transposed))
    fast, _, args = _ops(case)

    def f(x, w, b):
        return fast(x, w, b, *args, backend="torch")
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))  # e.g. gradient penalties


def test_q1_is_bitwise_nn_conv1d() -> None:
    torch.manual_seed(0)
    for padding in (0, 2, "same"):
        conv = torch.nn.Conv1d(5, 6, 4, padding=padding, dilation=3)
        x = torch.randn(3, 5, 23, requires_grad=True)
        y = selfonn_conv1d(x, conv.weight, conv.bias, 1, padding, 3, 1, 1, backend="torch")
        y_ref = conv(x)
        assert torch.equal(y, y_ref), padding
        gy = torch.randn_like(y)
        assert all(
            torch.equal(a, b)
            for a, b in zip(
                torch.autograd.grad(y, (x, conv.weight, conv.bias), gy),
                torch.autograd.grad(y_ref, (x, conv.weight, conv.bias), gy),
            )
        )


def test_q1_is_bitwise_nn_conv_transpose1d() -> None:
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose1d(4, 6, 5, stride=3, padding=2, output_padding=1, groups=2)
    x = torch.randn(2, 4, 9, requires_grad=True)
    y = selfonn_conv_transpose1d(x, conv.weight, conv.bias, 3, 2, 1, 2, 1, 1, backend="torch")
    y_ref = conv(x)
    assert torch.equal(y, y_ref)
    gy = torch.randn_like(y)
    for a, b in zip(
        torch.autograd.grad(y, (x, conv.weight, conv.bias), gy),
        torch.autograd.grad(y_ref, (x, conv.weight, conv.bias), gy),
    ):
        assert torch.equal(a, b)


def test_unbatched_input_like_conv1d() -> None:
    torch.manual_seed(0)
    x, w, b = torch.randn(3, 10), torch.randn(4, 6, 3), torch.randn(4)
    y = selfonn_conv1d(x, w, b, padding=1, q=2)
    assert y.shape == (4, 10)
    torch.testing.assert_close(y, reference_conv1d(x[None], w, b, padding=1, q=2)[0])
    wt = torch.randn(6, 4, 3)
    yt = selfonn_conv_transpose1d(x, wt, b, stride=2, q=2)
    torch.testing.assert_close(yt, reference_conv_transpose1d(x[None], wt, b, stride=2, q=2)[0])


def test_only_x_is_saved_for_backward() -> None:
    """The exact path keeps x (and W), never the Q-times larger power stack the reference keeps."""
    x = torch.randn(2, 4, 50, requires_grad=True)
    w = torch.randn(8, 4 * 4, 5, requires_grad=True)
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        selfonn_conv1d(x, w, None, padding=2, q=4, backend="torch").sum().backward()
    activations = [t for t in saved if t.data_ptr() != w.data_ptr()]
    assert sum(t.numel() for t in activations) == x.numel()
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        reference_conv1d(x, w, None, padding=2, q=4)
    assert max(t.numel() for t in saved) == 4 * x.numel()  # the reference keeps the stack


def test_low_precision_powers_use_float32() -> None:
    """bfloat16 inputs: powers formed in float32 then rounded once, so ours is never worse than the literal formula."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 40) * 3 - 1.5
    w, b = torch.randn(4, 15, 3) * 0.3, torch.randn(4)
    truth = reference_conv1d(x.double(), w.double(), b.double(), padding=1, q=5)
    ours = selfonn_conv1d(x.bfloat16(), w.bfloat16(), b.bfloat16(), padding=1, q=5, backend="torch")
    assert ours.dtype == torch.bfloat16
    err = (ours.double() - truth).abs().max().item()
    assert err < 0.05 * truth.abs().max().item()
    literal = reference_conv1d(x.bfloat16(), w.bfloat16(), b.bfloat16(), padding=1, q=5)
    assert err <= (literal.double() - truth).abs().max().item()


@pytest.mark.parametrize("length, k, stride", [(1, 3, 4), (2, 4, 4), (6, 4, 8)])
def test_bfloat16_weight_grad_of_taps_that_only_see_padding(length: int, k: int, stride: int) -> None:
    """CPU bfloat16 dW: taps that never touch the signal get exactly 0 (oneDNN's bf16 weight gradient
    left them as stale memory, e.g. 4e34 in the discriminator head on a short clip)."""
    torch.manual_seed(0)
    for _ in range(5):  # the stale values were there in most, not all, calls
        x = (torch.rand(2, 16, length) * 2 - 1).bfloat16()
        w = (torch.randn(3, 32, k) * 0.1).bfloat16().requires_grad_(True)
        b = torch.zeros(3, dtype=torch.bfloat16, requires_grad=True)
        y = selfonn_conv1d(x, w, b, stride=stride, padding=1, q=2, backend="torch")
        gy = torch.randn(y.shape, dtype=torch.bfloat16)
        y.backward(gy)
        w64 = w.detach().double().requires_grad_(True)
        reference_conv1d(x.double(), w64, None, stride=stride, padding=1, q=2).backward(gy.double())
        torch.testing.assert_close(w.grad.double(), w64.grad, rtol=0.02, atol=0.02)
        torch.testing.assert_close(b.grad.double(), gy.double().sum((0, 2)), rtol=0.02, atol=0.02)
