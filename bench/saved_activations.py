"""Memory of one training step of the Op-GAN generator: what forward saves, and the peak.

    python bench/saved_activations.py                  # f=16, q=3, batch 8 x 32000 samples (the GPU round's step)
    python bench/saved_activations.py --filters 8 --batch 4

Runs ``G(x)`` forward and backward on the CPU with the exact torch path, once with the generator's
skip sharing (the default training forward) and once with a plain ``torch.cat``, and reports per
op type the distinct storages the autograd graph saved (walked after forward) and, where the C
library is glibc, the peak of the heap in use over forward + backward (``mallinfo2`` after every op,
with a fixed mmap threshold so every tensor is counted while it lives; after a warm-up step). The exact path saves what
the fused kernels save (each Self-ONN layer's input, not its power stack) but recomputes the power
stack in backward, so its peak is the torch backend's. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import ctypes.util
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import selfonn
from opgan.models import Generator, GeneratorConfig


def saved_by_node(out: torch.Tensor) -> dict[str, int]:
    """Bytes of the distinct storages the graph behind ``out`` saved, by the node type that saved each first."""
    seen: set[int] = set()
    owners: dict[str, int] = collections.defaultdict(int)
    stack, visited = [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        tensors = []
        for name in dir(node):
            if name.startswith("_saved_"):
                try:
                    v = getattr(node, name)
                except RuntimeError:  # freed, or not a tensor attribute
                    continue
                if isinstance(v, torch.Tensor):
                    tensors.append(v)
                elif isinstance(v, (tuple, list)):
                    tensors += [t for t in v if isinstance(t, torch.Tensor)]
        if hasattr(node, "saved_tensors"):  # custom autograd Functions
            tensors += list(node.saved_tensors)
        for t in tensors:
            st = t.untyped_storage()
            if st.data_ptr() not in seen:
                seen.add(st.data_ptr())
                owners[type(node).__name__] += st.nbytes()
        stack += [f for f, _ in node.next_functions]
    return dict(owners)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]


def _heap_meter():
    """A function returning the bytes glibc's heap has in use, or None without glibc's mallinfo2."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        info = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    info.restype = _MallInfo2
    libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD, fixed: freed big blocks go back at once

    def used() -> int:
        m = info()
        return m.hblkhd + m.uordblks

    return used


class _Peak(TorchDispatchMode):
    def __init__(self, used) -> None:
        super().__init__()
        self.used, self.peak = used, used()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, self.used())
        return out


def measure(g: Generator, x: torch.Tensor, sharing: bool, used) -> tuple[dict[str, int], int | None]:
    """(saved bytes by node type, peak heap bytes above the start or None) of one forward + backward."""
    forward = g if sharing else (lambda t: g._forward(t, lambda parts: torch.cat(parts, dim=1)))
    start = used() if used else 0
    mode = _Peak(used) if used else None
    with selfonn.use_backend("torch"), mode if mode is not None else contextlib.nullcontext():
        y = forward(x)
        saved = saved_by_node(y)
        y.square().mean().backward()
    g.zero_grad(set_to_none=True)
    return saved, (mode.peak - start if mode is not None else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--q", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=32000)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(filters=args.filters, q=args.q))
    x = torch.rand(args.batch, 1, args.length) * 2 - 1
    used = _heap_meter()
    measure(g, x, True, used)  # warm-up: first-use allocations stay out of the peaks
    rows = {"plain torch.cat": measure(g, x, False, used), "skip sharing (default)": measure(g, x, True, used)}
    kinds = sorted({k for saved, _ in rows.values() for k in saved})
    mib = 2.0**20
    print(f"Generator f={args.filters} q={args.q}, batch {args.batch} x {args.length}, forward + backward on the "
          f"CPU (exact path), MiB (`python bench/saved_activations.py`)\n")
    print("| forward | peak (glibc heap) | saved, total | " + " | ".join(f"saved by {k}" for k in kinds) + " |")
    print("|---|---|---|" + "---|" * len(kinds))
    for name, (saved, peak) in rows.items():
        cells = " | ".join(f"{saved.get(k, 0) / mib:.1f}" for k in kinds)
        peak_s = "-" if peak is None else f"{peak / mib:.1f}"
        print(f"| {name} | {peak_s} | {sum(saved.values()) / mib:.1f} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
