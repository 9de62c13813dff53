"""convert(): models that are not ours keep computing the same thing after their convs become Self-ONN layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfonn import SelfONN1d, SelfONNTranspose1d, convert


class TinyWaveUNet(nn.Module):
    """A small Wave-U-Net-like stack: strided downsampling convs, transposed upsampling, skip concatenation."""

    def __init__(self, ch: int = 6) -> None:
        super().__init__()
        self.down = nn.ModuleList([nn.Conv1d(1, ch, 15, padding=7), nn.Conv1d(ch, 2 * ch, 5, stride=2, padding=2)])
        self.mid = nn.Sequential(nn.Conv1d(2 * ch, 2 * ch, 3, padding="same", dilation=2), nn.LeakyReLU(0.2))
        self.up = nn.ConvTranspose1d(2 * ch, ch, 4, stride=2, padding=1)
        self.out = nn.Conv1d(2 * ch, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = torch.tanh(self.down[0](x))
        h2 = torch.tanh(self.down[1](h1))
        h = self.mid(h2)
        u = torch.tanh(self.up(h, output_size=h1.shape))
        return torch.tanh(self.out(torch.cat([u, h1], dim=1)))


class Conv1dClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(3, 8, 5, padding=2, padding_mode="reflect"),
            nn.BatchNorm1d(8),
            nn.ReLU(),
            nn.Conv1d(8, 8, 3, stride=2, dilation=2, padding=2, padding_mode="circular"),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
        )
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@pytest.mark.parametrize("q", [1, 3])
@pytest.mark.parametrize(
    "make, shape", [(TinyWaveUNet, (2, 1, 64)), (Conv1dClassifier, (3, 3, 40))], ids=["waveunet", "classifier"]
)
def test_converted_model_computes_the_same(make, shape, q: int) -> None:
    torch.manual_seed(0)
    model = make().eval()
    x = torch.rand(shape) * 2 - 1
    before = model(x)
    n_convs = sum(isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)) for m in model.modules())
    assert convert(model, q=q) is model
    assert not any(isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)) for m in model.modules())
    assert sum(isinstance(m, (SelfONN1d, SelfONNTranspose1d)) for m in model.modules()) == n_convs
    assert all(m.q == q for m in model.modules() if isinstance(m, (SelfONN1d, SelfONNTranspose1d)))
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)


def test_converted_model_fine_tunes_the_higher_orders() -> None:
    torch.manual_seed(0)
    model = convert(TinyWaveUNet(), q=3)
    layer = model.down[1]
    in_g = layer.in_channels
    assert torch.count_nonzero(layer.weight[:, in_g:]) == 0  # higher orders start at zero
    x = torch.rand(4, 1, 64) * 2 - 1
    target = torch.sin(3 * x)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = F.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert torch.count_nonzero(layer.weight[:, in_g:]) > 0
    assert losses[-1] < losses[0]


def test_weight_placement_is_the_power_one_slice() -> None:
    torch.manual_seed(0)
    conv, convt = nn.Conv1d(3, 4, 5), nn.ConvTranspose1d(3, 4, 5, bias=False)
    new, new_t = convert(conv, q=2), convert(convt, q=2)
    assert isinstance(new, SelfONN1d) and isinstance(new_t, SelfONNTranspose1d)  # a bare conv returns the new layer
    assert torch.equal(new.weight[:, :3], conv.weight) and torch.equal(new.bias, conv.bias)
    assert torch.equal(new_t.weight[:3], convt.weight) and new_t.bias is None
    assert torch.count_nonzero(new.weight[:, 3:]) == 0 and torch.count_nonzero(new_t.weight[3:]) == 0


def test_grouped_convs() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 4, 3, groups=2), nn.ConvTranspose1d(4, 4, 3, groups=4))
    x = torch.randn(1, 4, 12)
    before = model(x)
    torch.testing.assert_close(convert(model, q=1)(x), before, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"0: cannot convert a grouped conv \(groups=2\) to q=2"):
        convert(nn.Sequential(nn.Conv1d(4, 4, 3, groups=2)), q=2)


def test_shared_convs_stay_shared_and_flags_carry_over() -> None:
    conv = nn.Conv1d(2, 2, 3, padding=1)
    conv.weight.requires_grad_(False)
    model = nn.Sequential(conv, nn.Tanh(), conv).train(False)
    convert(model, q=2, backend="torch")
    assert model[0] is model[2] and isinstance(model[0], SelfONN1d)
    assert model[0].backend == "torch" and not model[0].training
    assert not model[0].weight.requires_grad and model[0].bias.requires_grad
    assert convert(model, q=3)[0].q == 2  # already Self-ONN layers are left alone


def test_bad_calls() -> None:
    with pytest.raises(ValueError, match="q must be >= 1"):
        convert(nn.Conv1d(1, 1, 1), q=0)
    with pytest.raises(TypeError, match="needs an nn.Module"):
        convert("model", q=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="run one forward pass"):
        convert(nn.Sequential(nn.LazyConv1d(4, 3)), q=2)
