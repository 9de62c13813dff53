"""`from_pretrained`: a shipped or trained restorer as one `nn.Module`, one line away.

    import opgan
    model = opgan.from_pretrained("speech")        # or "music", or a checkpoint path
    restored = model.restore(audio, sample_rate)   # numpy or torch; (T,), (C, T) or (T, C); any rate

`restore` is `opgan restore`'s inference path on an in-memory signal (`opgan.restore.restore_array`:
resample to the model's rate, overlap-add of 32000-sample windows with per-window blind gain through
`opgan.enhance.enhance_clips`, resample back, dry/wet); `forward` is the bare model-rate step on
(batch, 1, length) clips, differentiable, for use inside other models. The same loader
(`opgan.enhance.load_restorer`) reads the checkpoint, so every refusal it makes (pickled code, a
checkpoint of another format, missing fields) applies here too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor, nn

from .enhance import WINDOW, Restorer, enhance_clips, load_restorer

__all__ = ["PretrainedRestorer", "from_pretrained"]

Audio = Union[np.ndarray, Tensor]


class PretrainedRestorer(nn.Module):
    """An Op-GAN restorer (generator, and the optional second pass) with the rate it was trained at.

    Attributes: `sample_rate` (the model's rate, Hz), `name`, `config` (the checkpoint's config) and
    `metrics` (validation figures stored with it). Move it with `.to(device)` like any module.
    """

    def __init__(self, restorer: Restorer) -> None:
        super().__init__()
        self.generator = restorer.generator
        self.second = restorer.second  # None, or a generator trained on the first one's output
        self.sample_rate = int(restorer.sample_rate)
        self.name = restorer.name
        self.config = dict(restorer.config)
        self.metrics = dict(restorer.metrics)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, sample_rate={self.sample_rate}"

    def forward(self, x: Tensor) -> Tensor:
        """Restore (batch, 1, length) clips at `sample_rate` (per-clip blind gain, any length).

        Grad mode is the caller's: wrap it in `torch.inference_mode()` for inference, or let gradients
        flow to train something around it. For whole recordings at any rate use `restore`.
        """
        y = enhance_clips(self.generator, x)
        return y if self.second is None else enhance_clips(self.second, y)

    def restorer(self) -> Restorer:
        """The `opgan.enhance.Restorer` view of this module (shares its parameters and device)."""
        return Restorer(generator=self.generator, sample_rate=self.sample_rate, config=self.config,
                        second=self.second, metrics=self.metrics, name=self.name)

    def restore(self, audio: Audio, sample_rate: int, *, dry_wet: float = 1.0, overlap: float = 0.5,
                batch_size: int = 4) -> Audio:
        """Restore a recording of any length at `sample_rate`; returns it at that rate and in the same shape.

        `audio` is a numpy array or a torch tensor of shape (T,), (C, T) or (T, C) (the shorter axis,
        at most 64 long, is channels; each channel is restored on its own). Floats are full scale 1.0
        and a float array comes back float32; integer PCM (e.g. int16) is scaled for the model and
        returned in its own dtype. A tensor comes back as a tensor on its own device and dtype.
        `dry_wet` in [0, 1] mixes restored and input; `overlap` in (0, 1) is the window overlap
        (0.5: Hann 50 %, 0.25 is about 1.5x faster).
        Raises ValueError for NaN/Inf samples, a bad shape or dtype, or arguments out of range.
        """
        from .restore import restore_array  # soundfile/soxr only when a recording is restored

        if not 0.0 < float(overlap) < 1.0:
            raise ValueError(f"overlap must be within (0, 1), got {overlap}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
            raise ValueError(f"sample_rate must be an int (Hz), got {sample_rate!r}")
        hop = max(1, round(WINDOW * (1.0 - float(overlap))))
        tensor = audio if isinstance(audio, Tensor) else None
        x = tensor.detach().cpu().numpy() if tensor is not None else np.asarray(audio)
        if tensor is not None and tensor.dtype in (torch.float16, torch.bfloat16):
            x = tensor.detach().to(device="cpu", dtype=torch.float32).numpy()
        y = restore_array(x, int(sample_rate), self.restorer(), wet=dry_wet, batch_size=batch_size, hop=hop)
        if tensor is None:
            return y
        return torch.from_numpy(np.ascontiguousarray(y)).to(device=tensor.device, dtype=tensor.dtype)


def from_pretrained(name_or_path: str | Path = "speech", device: str | torch.device = "cpu") -> PretrainedRestorer:
    """Load `"speech"` (16 kHz), `"music"` (22.05 kHz) or a checkpoint path as an eval-mode `PretrainedRestorer`.

    The shipped weights are part of the package, so this works offline. Raises
    `opgan.checkpoint.CheckpointError` with a one-line reason for a file that cannot be used.
    """
    return PretrainedRestorer(load_restorer(name_or_path, device=device)).eval()
