"""selfonn: Self-ONN (generative-neuron) 1-D layers, a drop-in for nn.Conv1d / nn.ConvTranspose1d.

    y = b + sum_{q=1..Q} conv(x**q, W_q)        (FastONN formulation and weight layout)

Importing this package never imports Triton; the fused kernels (``selfonn.kernels``) load only when a
call resolves to the ``'triton'`` backend.
"""

from ._version import __version__
from .backend import get_backend, set_backend, use_backend
from .convert import convert
from .functional import selfonn_conv1d, selfonn_conv_transpose1d
from .modules import SelfONN1d, SelfONNTranspose1d
from .reference import reference_conv1d, reference_conv_transpose1d

__all__ = [
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
