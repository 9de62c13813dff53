"""The smallest Triton kernel, for timing a launch's host path (``bench/_host_probe.py``)."""

import triton
import triton.language as tl


@triton.jit
def fill_kernel(ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(ptr + offs, 0.0, mask=offs < n)
