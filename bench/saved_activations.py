"""What one training forward of the Op-GAN generator keeps for backward, by the op that keeps it.

    python bench/saved_activations.py                  # f=16, q=3, batch 8 x 32000 samples (the GPU round's step)
    python bench/saved_activations.py --filters 8 --batch 4

Walks the autograd graph of ``G(x)`` and sums the distinct storages its nodes saved, once with the
generator's skip sharing (the default training forward: each skip and up-block output saved only
inside its concatenation) and once with a plain ``torch.cat``. Runs on the CPU with the exact torch
path, which saves what the fused kernels save (each Self-ONN layer's input, not its power stack), so
the figures hold for both backends. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import collections
import sys

import torch

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
    rows = {}
    with selfonn.use_backend("torch"):
        rows["skip sharing (default)"] = saved_by_node(g(x))
        rows["plain torch.cat"] = saved_by_node(g._forward(x, lambda parts: torch.cat(parts, dim=1)))
    kinds = sorted({k for r in rows.values() for k in r})
    mib = 2.0**20
    print(f"Generator f={args.filters} q={args.q}, batch {args.batch} x {args.length}: MiB saved for backward "
          f"(`python bench/saved_activations.py`)\n")
    print("| forward | total | " + " | ".join(kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    for name, r in rows.items():
        cells = " | ".join(f"{r.get(k, 0) / mib:.1f}" for k in kinds)
        print(f"| {name} | {sum(r.values()) / mib:.1f} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
