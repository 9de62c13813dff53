"""Fused Triton kernels of the Self-ONN layers (``selfonn.kernels.selfonn_conv``) and their host-side
options (:func:`options`, importable without Triton)."""

from ._options import Options, get_options, options

__all__ = ["Options", "get_options", "options"]
