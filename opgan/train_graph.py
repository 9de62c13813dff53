"""The training step as one CUDA graph: whether a run uses it, its capture, and its replays.

On a CUDA device a single-process eager run replays its whole step (G forward, the D and G updates,
Adam) from one CUDA graph by default: the host's launch cost of ~60 kernel launches a step goes.
`--no-cuda-graph` opts out; `--cuda-graph` insists (an error where it cannot apply). A step that
cannot be captured trains on eagerly, with a warning saying why.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from .config import ConfigError, TrainConfig
from .train_rundir import say

logger = logging.getLogger("opgan.train")

__all__ = ["StepGraph", "capture", "use_cuda_graph"]


def use_cuda_graph(cfg: TrainConfig, device: torch.device, world_size: int) -> tuple[bool, str]:
    """Whether this run replays its step from a CUDA graph, and why (the reason the trainer logs).

    ``cfg.cuda_graph``: 'auto' (the default: on for one eager CUDA process), 'on' (--cuda-graph: an
    error where it cannot apply) or 'off' (--no-cuda-graph)."""
    mode = cfg.cuda_graph
    if mode == "off":
        return False, "--no-cuda-graph"
    if not StepGraph.supported(device) or (mode == "auto" and device.type != "cuda"):
        if mode == "on":
            raise ConfigError(f"--cuda-graph needs a CUDA device (this run is on {device}); pass --no-cuda-graph")
        return False, f"the device is {device.type}, not CUDA"
    if world_size > 1:  # (TrainConfig.validate refuses --cuda-graph with torchrun)
        return False, f"{world_size} processes (DDP steps are not captured yet)"
    if cfg.compile:  # (TrainConfig.validate refuses --cuda-graph with --compile)
        return False, (f"--compile {cfg.compile} (its 'reduce-overhead' mode uses inductor's own CUDA graphs)")
    return True, "--cuda-graph" if mode == "on" else "the default on CUDA; --no-cuda-graph turns it off"


def capture(fn: Callable[[], torch.Tensor]) -> tuple[Callable[[], None], torch.Tensor]:
    """``fn`` captured in one CUDA graph (nothing runs yet): its replay and its (static) output.
    thread_local: the DataLoader's pin-memory thread allocates pinned buffers meanwhile, which the
    default global mode would count against the capture (and poison that thread with the error)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        out = fn()
    return graph.replay, out


class StepGraph:
    """A training step replayed from one CUDA graph.

    The first WARMUP steps run eagerly on a side stream (the fused kernels tune and cache their launch
    plans, Adam creates its state); the next one is captured with its batch in static input buffers
    and replayed; every later step copies its batch into those buffers and replays. Each replay is a
    real step: parameters, gradients and Adam state are the same tensors the eager step updates. If
    the capture fails the run goes on eagerly, with a warning saying why."""

    WARMUP = 3

    @staticmethod
    def supported(device: torch.device) -> bool:
        return device.type == "cuda"

    def __init__(self, body: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: torch.device) -> None:
        self.body, self.device = body, device
        self.calls = 0
        self.replay: Callable[[], None] | None = None
        self.failed = False

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.replay is None and not self.failed and self.calls > self.WARMUP:
            self.static_x, self.static_y = x.clone(), y.clone()
            try:
                self.replay, self.out = capture(lambda: self.body(self.static_x, self.static_y))
            except Exception as e:  # an op that cannot be captured: the run stays correct, only slower
                self.failed = True
                logger.warning("CUDA graph: capturing the training step failed (%s); training on eagerly "
                               "(--no-cuda-graph skips the attempt)",
                               str(e).splitlines()[0] if str(e) else type(e).__name__)
            else:
                say(f"[train] the training step is captured in a CUDA graph (after {self.WARMUP} eager steps)")
        if self.replay is not None and x.shape == self.static_x.shape and y.shape == self.static_y.shape:
            self.static_x.copy_(x)
            self.static_y.copy_(y)
            self.replay()
            return self.out
        return self._eager(x, y)

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The body run eagerly; on a side stream before the capture, as capture wants its warm-up."""
        if self.device.type != "cuda" or self.replay is not None or self.failed:
            return self.body(x, y)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            out = self.body(x, y)
        torch.cuda.current_stream(self.device).wait_stream(side)
        return out
