"""pytest plugin (``-p _pytest_slow_first``, ``bench/`` on the path): the GPU round's slow tests run first,
one per pytest-xdist worker.

``$GPU_ROUND_SLOW_FIRST`` holds a JSON list of node-id substrings, slowest kind first. The tests
matching one move to the front, in that order (then in collection order); the rest keep theirs. A
deadline that cuts the run then cuts short tests, not the whole-trainer ones begun last (round 2:
the trainer's --cuda-graph tests were scheduled last and two of them never started).

Under pytest-xdist (``$PYTEST_XDIST_WORKER_COUNT`` workers) the slow tests are also spread: `--dist
worksteal` hands each worker a contiguous share of the collection and lets idle workers take the
back half of a busy one's queue, so each share starts with its own slow tests (round robin). A
worker thus runs at most one of the first ``workers`` slow tests, while the short tests behind them
are taken by the others. (Under `--dist load` the shares' starts are ~20 items apart, more than its
first chunks of ~4, so there too the slow tests start on different workers.) Every worker computes
the same order, as xdist requires.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def shares(n: int, workers: int) -> list[int]:
    """The sizes of the contiguous shares xdist's worksteal scheduler first sends to ``workers`` idle
    workers out of ``n`` tests (each gets what is left divided by the workers still to serve)."""
    out, left = [], n
    for i in range(workers):
        out.append(left // (workers - i))
        left -= out[-1]
    return out


def slow_first(items: Sequence[T], ids: Sequence[str], patterns: Sequence[str], workers: int = 0) -> list[T]:
    """``items`` (node ids ``ids``) reordered: those matching ``patterns`` first (by the first pattern
    each matches, then as collected); with ``workers`` > 1 each worksteal share starts with its slow ones."""
    rank = {}
    for i, nodeid in enumerate(ids):
        hit = next((k for k, p in enumerate(patterns) if p in nodeid), None)
        if hit is not None:
            rank[i] = hit
    slow = [items[i] for i in sorted(rank, key=lambda i: (rank[i], i))]
    fast = [it for i, it in enumerate(items) if i not in rank]
    if workers <= 1 or not slow:
        return slow + fast
    out: list[T] = []
    left_over: list[T] = []  # slow tests beyond their share's size (only with more slow tests than room)
    rest = deque(fast)
    for w, size in enumerate(shares(len(items), workers)):
        own = slow[w::workers]
        out += own[:size]
        left_over += own[size:]
        out += [rest.popleft() for _ in range(min(size - len(own[:size]), len(rest)))]
    return out + left_over + list(rest)


def pytest_collection_modifyitems(session, config, items) -> None:  # noqa: ARG001
    raw = os.environ.get("GPU_ROUND_SLOW_FIRST")
    if not raw:
        return
    patterns = json.loads(raw)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    items[:] = slow_first(items, [it.nodeid for it in items], patterns, workers)
