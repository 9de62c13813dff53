"""Shared pytest setup (keep small)."""

import os

import torch

# Triton reads TRITON_INTERPRET when it is first imported: set it before any test imports the kernels,
# so on CPU-only machines the Triton kernels run in the interpreter.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Tests never read or write the user's kernel tuning cache (~/.cache/selfonn/tune): a test that tunes
# measures here and now; the tuning cache tests point it at their own folder.
os.environ["SELFONN_TUNE_CACHE"] = "0"


# ---- Kernel tests (tests/test_kernels_*.py): devices, tolerances, NaN-poisoned buffers ----------

import pytest  # noqa: E402

TRITON_INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"

# Max |actual - expected| allowed, as a multiple of (1 + max |expected|), against a float64 reference
# on inputs in [-1, 1] (audio range). Chosen from measured errors with about 10x headroom.
KERNEL_TOLERANCE = {
    torch.float64: 1e-10,  # interpreter and GPU (IEEE fp64 FMA); measured ~1e-15
    torch.float32: 1e-5,  # tl.dot with input_precision="ieee"; measured ~1e-7
    "tf32": 5e-3,  # fp32 with TF32 allowed (torch.backends.cudnn.allow_tf32)
    torch.bfloat16: 3e-2,  # autocast: x, W cast to bf16, powers and accumulation fp32
    torch.float16: 5e-3,  # autocast fp16
}

KERNEL_DEVICES = [
    pytest.param(
        "cpu",
        marks=pytest.mark.skipif(
            not TRITON_INTERPRETING, reason="CPU kernel runs need TRITON_INTERPRET=1 (set when no CUDA)"
        ),
    ),
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available() or TRITON_INTERPRETING,
            reason="no CUDA device (or TRITON_INTERPRET=1): compiled-kernel cases skipped",
        ),
    ),
]


@pytest.fixture(params=KERNEL_DEVICES)
def device(request) -> str:
    """'cpu' (Triton interpreter) when interpreting, 'cuda' (compiled kernels) when a GPU is present."""
    return request.param


@pytest.fixture
def poison_empty(monkeypatch):
    """Fill fresh float buffers from torch.empty / empty_like / Tensor.new_empty with NaN, so an element a kernel
    forgets to write fails the comparison loudly instead of passing on leftover memory."""
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def _poison(t):
        if t.is_floating_point():
            t.fill_(float("nan"))
        return t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: _poison(real_empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: _poison(real_empty_like(*a, **k)))
    real_new_empty = torch.Tensor.new_empty
    monkeypatch.setattr(torch.Tensor, "new_empty", lambda self, *a, **k: _poison(real_new_empty(self, *a, **k)))


@pytest.fixture
def kernel_tol() -> dict:
    """The dtype -> tolerance table above (fixtures, because test modules cannot import conftest)."""
    return KERNEL_TOLERANCE


@pytest.fixture
def one_thread():
    """Pin torch to one CPU thread for a test (small models: threads only add contention on 2 cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def push_in_blocks():
    """Feed (C, T) audio to a streaming object (`push(block) -> out`, `flush() -> out`) in random
    block sizes up to `max_block` and return the concatenated output (streaming == one-shot checks)."""
    import numpy as np

    def run(stream, x, rng, max_block: int):
        parts, i = [], 0
        while i < x.shape[1]:
            n = int(rng.integers(1, max_block))
            parts.append(stream.push(x[:, i : i + n]))
            i += n
        parts.append(stream.flush())
        return np.concatenate(parts, axis=1)

    return run


@pytest.fixture
def kernel_options():
    """``kernel_options(thin=False, ...)``: selfonn.kernels options for the rest of the test (each call
    applies on top of the previous ones; all undone at teardown)."""
    import contextlib

    from selfonn import kernels

    with contextlib.ExitStack() as stack:
        yield lambda **changes: stack.enter_context(kernels.options(**changes))
