"""SelfONN1d / SelfONNTranspose1d: nn.Conv1d parity, FastONN state dicts, groups mapping, errors, backends,
autocast and torch.compile."""

from __future__ import annotations

import io
import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import selfonn
from selfonn import (
    SelfONN1d,
    SelfONNTranspose1d,
    get_backend,
    reference_conv1d,
    reference_conv_transpose1d,
    set_backend,
    use_backend,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel:UserWarning")


class FastONNSelfONN1d(nn.Module):
    """The FastONN layer, written out: power-major cat, then one conv; parameters `weight` / `bias`."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                 groups: int = 1, q: int = 1) -> None:
        super().__init__()
        self.q, self.stride, self.padding, self.dilation, self.groups = q, stride, padding, dilation, groups
        self.weight = nn.Parameter(torch.empty(cout, q * cin // groups, k))
        self.bias = nn.Parameter(torch.empty(cout))
        nn.init.xavier_uniform_(self.weight, gain=nn.init.calculate_gain("tanh"))
        bound = 1 / math.sqrt(self.weight.shape[1] * k)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x**i for i in range(1, self.q + 1)], dim=1)
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class FastONNSelfONNTranspose1d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, output_padding: int = 0,
                 groups: int = 1, q: int = 1) -> None:
        super().__init__()
        self.q, self.stride, self.padding, self.output_padding, self.groups = q, stride, padding, output_padding, groups
        self.weight = nn.Parameter(torch.randn(q * cin, cout // groups, k) * 0.2)
        self.bias = nn.Parameter(torch.randn(cout) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x**i for i in range(1, self.q + 1)], dim=1)
        return F.conv_transpose1d(
            x, self.weight, self.bias, self.stride, self.padding, self.output_padding, self.groups
        )


def _roundtrip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("groups", [1, 2])
def test_fastonn_state_dict_loads_unchanged(groups: int) -> None:
    torch.manual_seed(0)
    theirs = FastONNSelfONN1d(4, 6, 5, stride=2, padding=2, dilation=1, groups=groups, q=3)
    ours = SelfONN1d(4, 6, 5, stride=2, padding=2, groups=groups, q=3)
    ours.load_state_dict(_roundtrip(theirs.state_dict()))  # strict: same names and shapes
    x = torch.randn(2, 4, 33)
    assert torch.equal(ours(x), theirs(x))
    theirs_t = FastONNSelfONNTranspose1d(4, 6, 4, stride=2, padding=1, output_padding=1, groups=groups, q=3)
    ours_t = SelfONNTranspose1d(4, 6, 4, stride=2, padding=1, output_padding=1, groups=groups, q=3)
    ours_t.load_state_dict(_roundtrip(theirs_t.state_dict()))
    assert torch.equal(ours_t(x), theirs_t(x))
    # and back: our state dict drives the FastONN formulation
    theirs.load_state_dict(SelfONN1d(4, 6, 5, groups=groups, q=3).state_dict())


def test_parameter_shapes_and_init() -> None:
    torch.manual_seed(0)
    m = SelfONN1d(8, 16, 5, groups=2, q=3)
    assert m.weight.shape == (16, 3 * 8 // 2, 5) and m.bias.shape == (16,)
    fan_in, fan_out = 12 * 5, 16 * 5
    w_bound = nn.init.calculate_gain("tanh") * math.sqrt(6 / (fan_in + fan_out))
    assert m.weight.abs().max() <= w_bound and m.weight.abs().max() > 0.9 * w_bound
    assert m.bias.abs().max() <= 1 / math.sqrt(fan_in)
    t = SelfONNTranspose1d(8, 16, 5, groups=4, q=2)
    assert t.weight.shape == (2 * 8, 16 // 4, 5)
    assert SelfONN1d(3, 4, 3, bias=False).bias is None
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]


def test_groups_map_onto_the_power_major_stack() -> None:
    """FastONN mapping, in=2, q=2, groups=2: stack = [x0, x1, x0**2, x1**2]; group 0 reads the first half
    (power 1 of *all* inputs), group 1 the second half (power 2 of all inputs)."""
    m = SelfONN1d(2, 2, 1, groups=2, q=2, bias=False)
    with torch.no_grad():
        m.weight.fill_(1.0)
    x = torch.tensor([[[2.0], [3.0]]])
    assert m(x).flatten().tolist() == [2.0 + 3.0, 4.0 + 9.0]
    t = SelfONNTranspose1d(2, 2, 1, groups=2, q=2, bias=False)
    with torch.no_grad():
        t.weight.fill_(1.0)
    assert t(x).flatten().tolist() == [2.0 + 3.0, 4.0 + 9.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3),
        dict(kernel_size=4, stride=3, padding=2, dilation=2),
        dict(kernel_size=4, padding="same", dilation=3),
        dict(kernel_size=5, padding="valid", groups=3),
        dict(kernel_size=3, padding=2, padding_mode="reflect"),
        dict(kernel_size=4, padding="same", padding_mode="circular"),
        dict(kernel_size=3, padding=1, padding_mode="replicate", bias=False),
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_q1_equals_conv1d_on_same_weights(kwargs: dict) -> None:
    torch.manual_seed(0)
    conv = nn.Conv1d(6, 9, **kwargs)
    ours = SelfONN1d(6, 9, q=1, **kwargs)
    ours.load_state_dict(conv.state_dict())
    for x in (torch.randn(2, 6, 19), torch.randn(6, 19)):  # batched and unbatched
        assert torch.equal(ours(x), conv(x))


@pytest.mark.parametrize("output_size", [None, 40, [2, 5, 41], (42,)])
def test_transpose_q1_equals_conv_transpose1d(output_size) -> None:
    torch.manual_seed(0)
    conv = nn.ConvTranspose1d(4, 5, 6, stride=3, padding=1, groups=1, dilation=1)
    ours = SelfONNTranspose1d(4, 5, 6, stride=3, padding=1, q=1)
    ours.load_state_dict(conv.state_dict())
    x = torch.randn(2, 4, 13)
    y = ours(x, output_size=output_size)
    torch_size = [output_size] if isinstance(output_size, int) else output_size  # ours also takes a bare int
    assert torch.equal(y, conv(x, output_size=torch_size))
    if output_size is not None:
        assert y.shape[-1] == (output_size if isinstance(output_size, int) else output_size[-1])


def test_modules_match_reference_with_q() -> None:
    torch.manual_seed(0)
    m = SelfONN1d(4, 6, 4, padding="same", dilation=3, q=4)
    x = torch.randn(2, 4, 21)
    torch.testing.assert_close(m(x), reference_conv1d(x, m.weight, m.bias, 1, "same", 3, 1, 4), rtol=1e-6, atol=1e-6)
    assert m(x).shape[-1] == 21
    t = SelfONNTranspose1d(4, 6, 4, stride=2, padding=1, q=4)
    torch.testing.assert_close(t(x, output_size=43), reference_conv_transpose1d(x, t.weight, t.bias, 2, 1, 1, 1, 1, 4))


def test_extra_repr() -> None:
    assert repr(SelfONN1d(4, 8, 3, q=3)) == "SelfONN1d(4, 8, kernel_size=(3,), stride=(1,), q=3)"
    r = repr(
        SelfONN1d(4, 8, 3, padding="same", dilation=2, groups=2, bias=False, q=2, padding_mode="reflect", backend="torch")
    )
    assert r == (
        "SelfONN1d(4, 8, kernel_size=(3,), stride=(1,), padding='same', dilation=(2,), groups=2, bias=False, "
        "padding_mode='reflect', q=2, backend='torch')"
    )
    assert repr(SelfONNTranspose1d(4, 8, 4, stride=2, padding=1, output_padding=1, q=5)) == (
        "SelfONNTranspose1d(4, 8, kernel_size=(4,), stride=(2,), padding=(1,), output_padding=(1,), q=5)"
    )


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: SelfONN1d(4, 4, 3, q=0), "q must be >= 1"),
        (lambda: SelfONN1d(4, 4, 3, q=2.0), "q must be an int"),
        (lambda: SelfONN1d(3, 4, 3, groups=2), "in_channels=3 must be divisible by groups=2"),
        (lambda: SelfONN1d(4, 3, 3, groups=2), "out_channels=3 must be divisible by groups=2"),
        (lambda: SelfONNTranspose1d(4, 6, 3, groups=4), "out_channels=6 must be divisible by groups=4"),
        (lambda: SelfONN1d(4, 4, 3, stride=2, padding="same"), "strided"),
        (lambda: SelfONN1d(4, 4, 3, padding="full"), "padding must be"),
        (lambda: SelfONN1d(4, 4, 3, padding_mode="mirror"), "padding_mode must be one of"),
        (lambda: SelfONNTranspose1d(4, 4, 3, padding_mode="reflect"), "Only 'zeros' padding_mode"),
        (lambda: SelfONNTranspose1d(4, 4, 3, stride=2, output_padding=2), "output_padding=2 must be smaller"),
        (lambda: SelfONN1d(4, 4, 0), "kernel_size must be >= 1"),
        (lambda: SelfONN1d(4, 4, 3, backend="cuda"), "backend must be one of"),
    ],
)
def test_bad_arguments(build, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_bad_inputs() -> None:
    m = SelfONN1d(4, 6, 5, q=2)
    with pytest.raises(ValueError, match="expected a 3-D input"):
        m(torch.randn(1, 1, 4, 10))
    with pytest.raises(ValueError, match="expected input with 4 channels"):
        m(torch.randn(2, 3, 10))
    with pytest.raises(ValueError, match="shorter than the kernel's span 5"):
        m(torch.randn(2, 4, 4))
    with pytest.raises(TypeError, match="does not match weight dtype"):
        m(torch.randn(2, 4, 10, dtype=torch.float64))
    t = SelfONNTranspose1d(4, 6, 3, stride=2, padding=1, q=2)
    with pytest.raises(ValueError, match="expected input with 4 channels"):
        t(torch.randn(2, 8, 10))
    with pytest.raises(ValueError, match="valid lengths are 19..20"):
        t(torch.randn(2, 4, 10), output_size=25)
    with pytest.raises(ValueError, match="crops more than"):
        selfonn.selfonn_conv_transpose1d(torch.randn(1, 4, 1), t.weight, None, 1, 2, 0, 1, 1, 2)


def test_backend_setting_and_context() -> None:
    assert get_backend() == "auto"
    with use_backend("torch"):
        assert get_backend() == "torch"
        with pytest.raises(ValueError, match="backend must be one of"):
            set_backend("cuda")
        assert get_backend() == "torch"
    assert get_backend() == "auto"


def test_triton_on_cpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    m = SelfONN1d(2, 2, 3, q=2, backend="triton")
    with pytest.raises(RuntimeError, match="needs CUDA tensors.*TRITON_INTERPRET=1"):
        m(torch.randn(1, 2, 8))
    with use_backend("triton"), pytest.raises(RuntimeError, match="needs CUDA tensors"):
        SelfONNTranspose1d(2, 2, 3)(torch.randn(1, 2, 8))
    with use_backend("triton"):  # a layer's own choice beats the global one
        SelfONN1d(2, 2, 3, backend="torch")(torch.randn(1, 2, 8))


@pytest.fixture
def fake_kernels(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Stand-in for selfonn.kernels.selfonn_conv that records what the dispatcher hands the kernels."""
    calls: list[tuple] = []
    fake = types.ModuleType("selfonn.kernels.selfonn_conv")
    fake.operand_dtypes = []  # (x, weight, bias) dtypes and whether autocast was on, per call

    def record(x, weight, bias):
        b = None if bias is None else bias.dtype
        fake.operand_dtypes.append((x.dtype, weight.dtype, b, torch.is_autocast_enabled(x.device.type)))

    def checked_conv(x, weight, bias, stride, pad_left, pad_right, dilation, groups, q, transposed, output_padding,
                     validate=None):
        if validate is not None:  # the kernels run the dispatcher's operand check (once per call signature)
            validate()
        pad = (pad_left, pad_right)
        record(x, weight, bias)
        if transposed:
            calls.append(("convT", pad, stride, output_padding, groups, dilation, q))
            return reference_conv_transpose1d(x, weight, bias, stride, pad, output_padding, groups, dilation, q)
        calls.append(("conv", pad, stride, dilation, groups, q))
        return reference_conv1d(x, weight, bias, stride, pad, dilation, groups, q)

    fake.checked_conv = checked_conv
    monkeypatch.setitem(sys.modules, "selfonn.kernels.selfonn_conv", fake)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    return calls


def test_dispatch_hands_kernels_plain_zero_padding(fake_kernels: list[tuple]) -> None:
    x = torch.randn(1, 4, 16)
    SelfONN1d(4, 4, 4, padding="same", dilation=1, q=2, backend="triton")(x)  # uneven: (1, 2)
    SelfONN1d(4, 4, 3, padding=1, padding_mode="reflect", q=2, backend="triton")(x)  # padded in the module
    SelfONN1d(4, 4, 3, padding=2, q=3, backend="triton")(x)
    SelfONNTranspose1d(4, 4, 3, stride=2, padding=1, q=2, backend="triton")(x, output_size=32)
    assert fake_kernels == [
        ("conv", (1, 2), 1, 1, 1, 2),
        ("conv", (0, 0), 1, 1, 1, 2),
        ("conv", (2, 2), 1, 1, 1, 3),
        ("convT", (1, 1), 2, 1, 1, 1, 2),
    ]
    SelfONN1d(4, 4, 3, q=2, backend="auto")(x)  # auto on CPU: exact torch path, not the kernels
    assert len(fake_kernels) == 4


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_autocast_stacked_layers(backend: str, fake_kernels: list[tuple]) -> None:
    """The second layer gets a bf16 input and an fp32 weight: both reach the backend as bf16, autocast off."""
    torch.manual_seed(0)
    net = nn.Sequential(
        SelfONN1d(3, 4, 3, padding=1, q=3, backend=backend),
        nn.Tanh(),
        SelfONN1d(4, 4, 3, padding=1, q=2, backend=backend),
        SelfONNTranspose1d(4, 2, 4, stride=2, padding=1, q=2, backend=backend),
    )
    x = torch.rand(2, 3, 16) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert y.dtype == torch.bfloat16
    y.float().square().sum().backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in net.parameters())
    torch.testing.assert_close(y.float(), net(x), rtol=0.03, atol=0.03)
    seen = sys.modules["selfonn.kernels.selfonn_conv"].operand_dtypes[:3]
    bf16 = torch.bfloat16
    assert seen == ([(bf16, bf16, bf16, False)] * 3 if backend == "triton" else [])


def test_autocast_bfloat16_cpu() -> None:
    torch.manual_seed(0)
    m = SelfONN1d(4, 6, 3, padding=1, q=3)
    x = torch.rand(2, 4, 30) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
        y_conv = nn.Conv1d(4, 6, 3)(x)
    assert y.dtype == y_conv.dtype == torch.bfloat16  # same output dtype as nn.Conv1d under autocast
    y_full = m(x)
    torch.testing.assert_close(y.float(), y_full, rtol=0.03, atol=0.03 * y_full.abs().max().item())
    y.float().sum().backward()
    assert m.weight.grad.dtype == torch.float32 and torch.isfinite(m.weight.grad).all()


@pytest.mark.parametrize("cls", ["conv", "transpose"])
def test_torch_compile_fullgraph(cls: str) -> None:
    torch.manual_seed(0)
    if cls == "conv":
        m: nn.Module = SelfONN1d(3, 5, 3, padding=1, q=3)
    else:
        m = SelfONNTranspose1d(3, 5, 4, stride=2, padding=1, q=3)
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 3, 12, requires_grad=True)
    y, y_c = m(x), compiled(x)
    torch.testing.assert_close(y_c, y)
    g, g_c = (torch.autograd.grad(out.sum(), (x, m.weight)) for out in (y, y_c))
    for a, b in zip(g, g_c):
        torch.testing.assert_close(a, b)


def test_device_dtype_kwargs() -> None:
    m = SelfONN1d(2, 3, 3, q=2, device="cpu", dtype=torch.float64)
    t = SelfONNTranspose1d(2, 3, 3, q=2, dtype=torch.float64)
    assert m.weight.dtype == m.bias.dtype == t.weight.dtype == torch.float64
    assert m(torch.randn(1, 2, 9, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.slow
def test_torch_compile_inductor() -> None:
    """The default compiler (C++ codegen on CPU: ~40 s, hence slow)."""
    torch.manual_seed(0)
    m = SelfONN1d(3, 5, 3, padding=1, q=3)
    x = torch.randn(2, 3, 12, requires_grad=True)
    y = torch.compile(m, fullgraph=True)(x)
    torch.testing.assert_close(y, m(x))
    (gx,) = torch.autograd.grad(y.sum(), x)
    (gx_ref,) = torch.autograd.grad(m(x).sum(), x)
    torch.testing.assert_close(gx, gx_ref)


def test_positional_arguments_follow_conv1d() -> None:
    """q and backend are keyword-only: nn.Conv1d's / nn.ConvTranspose1d's positional calls mean the same here."""
    torch.manual_seed(0)
    conv = nn.Conv1d(4, 4, 3, 1, 1, 1, 1, True, "reflect")
    ours = SelfONN1d(4, 4, 3, 1, 1, 1, 1, True, "reflect")
    assert (ours.padding_mode, ours.padding, ours.q, ours.bias is not None) == ("reflect", (1,), 1, True)
    ours.load_state_dict(conv.state_dict())
    x = torch.randn(2, 4, 11)
    assert torch.equal(ours(x), conv(x))
    convt = nn.ConvTranspose1d(4, 3, 4, 2, 1, 1, 1, False, 1, "zeros", None, torch.float64)
    ourst = SelfONNTranspose1d(4, 3, 4, 2, 1, 1, 1, False, 1, "zeros", None, torch.float64)
    assert ourst.weight.dtype == torch.float64 and ourst.bias is None and ourst.output_padding == (1,)
    ourst.load_state_dict(convt.state_dict())
    xt = torch.randn(2, 4, 7, dtype=torch.float64)
    assert torch.equal(ourst(xt), convt(xt))
    with pytest.raises(TypeError):
        SelfONN1d(4, 4, 3, 1, 1, 1, 1, True, "zeros", None, None, 3)  # q by position is refused, not misread
    assert SelfONN1d(4, 4, 3, 1, 1, 1, 1, True, "reflect", q=3).weight.shape == (4, 12, 3)
