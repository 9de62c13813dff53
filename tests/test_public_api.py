"""Pins selfonn's public surface (docs/ARCHITECTURE.md) and keeps `import selfonn` light."""

from __future__ import annotations

import inspect
import subprocess
import sys

import selfonn
import torch

PUBLIC = [
    "SelfONN1d",
    "SelfONNTranspose1d",
    "convert",
    "get_backend",
    "reference_conv1d",
    "reference_conv_transpose1d",
    "selfonn_conv1d",
    "selfonn_conv_transpose1d",
    "set_backend",
    "use_backend",
]


def test_all_is_pinned() -> None:
    assert sorted(selfonn.__all__) == PUBLIC
    assert all(hasattr(selfonn, name) for name in PUBLIC)


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_signatures() -> None:
    # nn.Conv1d's / nn.ConvTranspose1d's parameters in their order, then q and backend keyword-only
    for ours, theirs in ((selfonn.SelfONN1d, torch.nn.Conv1d), (selfonn.SelfONNTranspose1d, torch.nn.ConvTranspose1d)):
        sig = inspect.signature(ours).parameters
        assert _params(ours) == _params(theirs) + ["q", "backend"]
        assert [n for n, p in sig.items() if p.kind is inspect.Parameter.KEYWORD_ONLY] == ["q", "backend"]
    assert _params(selfonn.SelfONNTranspose1d.forward) == ["self", "x", "output_size"]
    assert _params(selfonn.selfonn_conv1d) == [
        "x", "weight", "bias", "stride", "padding", "dilation", "groups", "q", "backend",
    ]
    assert _params(selfonn.selfonn_conv_transpose1d) == [
        "x", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation", "q", "backend",
    ]
    assert _params(selfonn.reference_conv1d) == _params(selfonn.selfonn_conv1d)[:-1]
    assert _params(selfonn.reference_conv_transpose1d) == _params(selfonn.selfonn_conv_transpose1d)[:-1]
    assert _params(selfonn.convert) == ["module", "q", "backend"]


def test_import_does_not_pull_in_triton_or_kernels() -> None:
    code = (
        "import sys, selfonn, torch\n"
        "selfonn.SelfONN1d(2, 2, 3, q=2)(torch.randn(1, 2, 8))\n"
        "bad = [m for m in sys.modules if m == 'triton' or m.startswith(('triton.', 'selfonn.kernels', 'opgan'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
