"""The Op-GAN trainer: LSGAN + temporal/spectral L1, blind peak scaling, validation through
`opgan.enhance.enhance_clips`, atomic resumable checkpoints, DDP via torchrun, and on CUDA the whole
step replayed from one CUDA graph.

`python train.py` (or `opgan train`) calls :func:`main`; :func:`fit` runs one training from a
:class:`~opgan.config.TrainConfig`. The run folder `<runs_dir>/<name>/` holds `config.json`,
`last.pt` (full state, for `--resume`), `best.pt` (best validation score; loadable by
`opgan.enhance.load_restorer`), `metrics.jsonl` (every record), `metrics.csv` (one row per
validation) and `summary.json`.

This module is the trainer's public face; the parts live beside it:

- :mod:`opgan.train_cli`: the command line (`main`);
- :mod:`opgan.train_loop`: a run from start to finish (`fit`, `TrainResult`);
- :mod:`opgan.train_run`: the models, optimisers, checkpoints and the step (`build_models`,
  `precompile_passes`, `NonFiniteLossError`);
- :mod:`opgan.train_graph`: the step as one CUDA graph (whether, capture, replay);
- :mod:`opgan.train_data`: data, batch plan, crops and blind peak scaling (`blind_normalise`);
- :mod:`opgan.train_validate`: validation metrics and the selection score (`validate`);
- :mod:`opgan.train_rundir`: the run folder and its logs.
"""
from __future__ import annotations

from .train_cli import main
from .train_data import blind_normalise
from .train_loop import TrainResult, fit
from .train_rundir import RUN_FILES, VAL_COLUMNS
from .train_run import NonFiniteLossError, build_models, precompile_passes
from .train_validate import HARM_TOLERANCE_DB, validate

__all__ = ["HARM_TOLERANCE_DB", "NonFiniteLossError", "RUN_FILES", "TrainResult", "VAL_COLUMNS", "blind_normalise",
           "build_models", "fit", "main", "precompile_passes", "validate"]
