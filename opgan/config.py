"""Training configuration: one typed dataclass, named presets, and command-line overrides.

Every field can be set from the command line, either as `--field-name VALUE` (booleans:
`--flag/--no-flag`) or as `--set field=value`. The resolved config is saved as JSON beside each run
(`runs/<name>/config.json`) and inside every checkpoint, as plain data.
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import textwrap
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "TrainConfig", "PRESETS", "preset", "parse_args", "RESUMABLE_FIELDS"]


class ConfigError(ValueError):
    """A configuration that cannot run (unknown preset or field, bad value, missing data...)."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (defaults = the `default` preset)."""

    # --- run -----------------------------------------------------------------------------------
    name: str = "default"  # run name: outputs go to <runs_dir>/<name>/
    runs_dir: str = "runs"  # parent folder of all runs
    preset: str = "default"  # preset this config started from (informational)
    seed: int = 0  # seeds torch/numpy/python, the data order and the random crops
    val_seed: int = 1  # seeds the validation clips of dynamic sources (fixed, so runs of any seed compare)
    device: str = "auto"  # 'auto' (cuda when available), 'cpu', 'cuda', 'cuda:N'
    threads: int = 0  # CPU threads for torch (0 = torch's default: one per core)
    # --- data ----------------------------------------------------------------------------------
    data: str = ""  # dataset for opgan.data.open_dataset: RAR builder root, .mat file, or sources root; '' = default set
    val_data: str = ""  # separate validation set spec ('' = the val split of data; a lone .mat: its last 5%)
    data_kind: str = "speech"  # default set to build/reuse when data == '': 'speech' or 'music'
    data_root: str = "datasets"  # where the default set is built (and reused on later runs)
    data_size: str = "small"  # size of the default set: tiny | small | paper (Table 1) | a fraction in (0, 1]
    dynamic: bool = False  # train on DynamicRARDataset (fresh corruption every draw) from the shipped
    # recordings (data == '') or a sources root given as data; validation stays on the fixed val split
    dynamic_clips: int = 2000  # clips per "epoch" of dynamic mixing
    rirs: str = ""  # RIR bank (.npz, opgan.data.rir.RIRBank) for dynamic mixing ('' = the shipped 60-room bank)
    cases: str = ""  # dynamic mixing: 'case:weight,...' over blend, awgn, background, reverb, light, clean
    # ('' = the paper's composition: half blends, half single artifacts); validation keeps the paper's
    augment: bool = False  # dynamic mixing: speed, EQ, level and telephone/codec band limits on the clean clip
    group_weight: str = "uniform"  # dynamic mixing: draw speakers/tracks 'uniform' or 'sqrt' (by sqrt of minutes)
    reverb_target: str = "dry"  # dynamic mixing: the target of reverberant segments, 'dry' (paper) or 'early'
    # (keeps the RIR's first 50 ms of reflections: the model removes the late tail only; data.corrupt)
    room_prob: float = 0.0  # dynamic mixing: probability that the clean clip is first put in a mild room
    # (RT60 0.2-0.6 s), kept in input and target, so the model keeps a recording's own room (data.corrupt)
    reverb_min_rt60: float = 0.0  # dynamic mixing: the mildest added reverberation's RT60 in s (0 = the full
    # range from 0.2 s; e.g. 0.6 with room_prob keeps added reverberation heavier than a recording's own room)
    background_mix: str = ""  # dynamic mixing: 'ambience:w,music:w,speech:w,synthetic:w' draws the background's kind
    # by these weights ('' = one background file drawn uniformly: the kind with the most files dominates)
    clip_len: int = 32000  # training crop length in samples (multiple of 32; random crop of each clip)
    sample_rate: int = 0  # expected sample rate of the data in Hz (0 = whatever the dataset has)
    val_clips: int = 0  # validate on N evenly spaced validation clips (0 = all of them)
    workers: int = 0  # DataLoader worker processes (0 = load in the training process)
    # --- model ---------------------------------------------------------------------------------
    filters: int = 16  # f: generator widths f, 2f, 4f, 8f, 8f
    d_filters: int = 16  # discriminator widths f, 2f, 4f, 8f, 16f
    q: int = 3  # Self-ONN order of every layer (q=1: a plain CNN-GAN, as the paper's released code)
    residual: bool = False  # generator adds its input back (identity at init; not in the paper, see models)
    gate: bool = False  # residual generator scales its correction by a per-clip gate (see models.generator)
    gate_floor: float = 0.0  # gate never below this (0 = the shipped models' plain sigmoid; see models.generator)
    gate_leak: float = 0.0  # slope added to the gate's gradient so a shut gate can reopen (0 = plain sigmoid)
    activation: str = "tanh"  # generator nonlinearity: 'tanh' (paper) or 'prelu' (plain-conv control, with q=1)
    context: str = "none"  # 'dilated': residual dilated Self-ONN blocks at the generator's bottleneck
    context_blocks: int = 6  # dilated context: blocks with dilations 1..2**(n-1) (+-(2**n-1)*32 input samples)
    context_width: int = 0  # dilated context: channels inside each block (0 = the bottleneck's 8f)
    input_norm: bool = False  # generator sees each clip scaled to a fixed RMS (output scaled back): level-invariant
    arch: str = "unet"  # generator network: 'unet' (the paper's Self-ONN U-Net, shaped by the fields above),
    # 'demucs' (the learning ladder's reference model: the denoiser package's Demucs, shaped by the demucs_*
    # fields; the U-Net's fields are then unused. Needs: pip install --no-deps denoiser==0.1.5) or 'spectral'
    # (Self-ONN layers over STFT frames estimating a magnitude mask, shaped by the spectral_* fields and q)
    demucs_hidden: int = 8  # demucs: channels of its first level, doubling per level (the package's default: 48)
    demucs_depth: int = 5  # demucs: encoder/decoder levels (kernel 8, stride 4 each)
    demucs_resample: int = 4  # demucs: upsample the input by 1, 2 or 4 before its encoder (and back after)
    spectral_n_fft: int = 512  # spectral: STFT size (hop n_fft/4)
    spectral_hidden: int = 128  # spectral: channels of every layer between the spectrum and the mask
    spectral_blocks: int = 5  # spectral: residual dilated blocks over frames (dilations 1..2**(n-1))
    spectral_gate: bool = False  # spectral: scale the correction by a per-clip gate (so clean clips can pass)
    spectral_norm: bool = False  # spectral: LayerNorm each frame's channels before every tanh (keeps them unsaturated)
    spectral_df_order: int = 0  # spectral: frames of a complex filter added to the mask (odd; 0 = the mask alone)
    spectral_df_bins: int = 0  # spectral: the lowest bins that filter works on (0 = all)
    g_q: str = ""  # optional per-layer generator q: 10 comma-separated ints (overrides q)
    d_q: str = ""  # optional per-layer discriminator q: 6 comma-separated ints (overrides q)
    second_pass_of: str = ""  # checkpoint of a trained first-pass generator; train a second pass on its output
    init_from: str = ""  # start a new run from a checkpoint's generator (and discriminator, if it holds one)
    # of the same shape (its gate floor and leak may differ)
    # --- losses and optimisation ------------------------------------------------------------------
    lambda_t: float = 100.0  # weight of the temporal L1 term (paper: 100)
    lambda_s: float = 1.0  # weight of the log-power spectrogram L1 term (see docs/training.md ablation)
    lambda_adv: float = 1.0  # weight of the LSGAN generator term (paper: 1; 0 also skips the discriminator)
    lambda_mr: float = 0.0  # weight of the multi-resolution STFT term (not in the paper)
    lambda_sisdr: float = 0.0  # weight of the -SI-SDR/10 term (not in the paper; blind to gain)
    lambda_level: float = 0.0  # weight of the |output level - clean level|/10 dB term (not in the paper)
    lambda_sdr: float = 0.0  # weight of the -SDR/10 term, per clip (not in the paper)
    sdr_cap_db: float = 30.0  # the SDR term saturates here (bounds the pull of nearly clean clips)
    select_by: str = "sdr_gain"  # best.pt by validation 'sdr_gain' (the paper's) or 'score' (SI-SDR gain, do-no-harm)
    lr: float = 2e-4  # Adam learning rate (both networks); may change on --resume
    lr_half_life: int = 0  # halve the learning rate every N steps (0 = constant); may change on --resume
    ema_decay: float = 0.0  # validate and ship an exponential moving average of the generator's weights with
    # this decay per step (0 = off; 0.999 averages ~1000 steps); the raw weights are validated beside it
    beta1: float = 0.5  # Adam beta1
    beta2: float = 0.999  # Adam beta2
    batch_size: int = 8  # global batch (split evenly over DDP processes)
    max_steps: int = 1000  # stop after this many optimisation steps
    max_minutes: float = 0.0  # also stop after this many minutes of training in this session (since the
    # start or the --resume; validation excluded; 0 = none): a safety net, max_steps is the bound
    bf16: bool = False  # bf16 autocast for the forward passes (CUDA); losses stay float32
    backend: str = "auto"  # selfonn backend: 'auto' (Triton on CUDA), 'torch', 'triton'
    compile: str = ""  # torch.compile the training forwards: '' (eager), 'default', 'reduce-overhead'
    # (CUDA graphs), 'max-autotune', or 'aot_eager' (traces without inductor; for checks)
    cuda_graph: str = "auto"  # replay the whole eager training step (G forward, D and G updates, Adam)
    # from one CUDA graph after 3 warm-up steps, so the host's launch cost goes: 'auto' (on for one CUDA
    # process without compile), 'on' (--cuda-graph), 'off' (--no-cuda-graph); a failed capture trains eagerly
    # --- validation, checkpoints, logging ----------------------------------------------------------
    val_every: int = 250  # validate (and checkpoint) every N steps; always at the end
    ckpt_every: int = 250  # write last.pt every N steps (besides validations)
    log_every: int = 10  # average train losses over N steps per log record
    val_stoi: bool = True  # compute STOI in validation (slowest metric on CPU)
    tensorboard: bool = False  # also write TensorBoard events to <run>/tb (needs `tensorboard`)
    progress: bool = True  # show a tqdm progress bar

    # -------------------------------------------------------------------------------------------
    def generator_q(self) -> int | list[int]:
        return _parse_q_list(self.g_q, 10, "g_q") if self.g_q else self.q

    def generator_config(self) -> dict[str, Any]:
        """The generator's config (models.GeneratorConfig fields, models.DemucsConfig's for arch 'demucs',
        models.SpectralConfig's for 'spectral') as plain data."""
        if self.arch == "spectral":
            from opgan.models.spectral import SpectralConfig

            return SpectralConfig(n_fft=self.spectral_n_fft, hidden=self.spectral_hidden, blocks=self.spectral_blocks,
                                  q=self.q, gate=self.spectral_gate, norm=self.spectral_norm,
                                  df_order=self.spectral_df_order, df_bins=self.spectral_df_bins).to_dict()
        if self.arch == "demucs":
            from opgan.models.reference import DemucsConfig

            return DemucsConfig(hidden=self.demucs_hidden, depth=self.demucs_depth,
                                resample=self.demucs_resample).to_dict()
        return dict(filters=self.filters, q=self.generator_q(), residual=self.residual, gate=self.gate,
                    gate_floor=self.gate_floor, gate_leak=self.gate_leak, activation=self.activation,
                    context=self.context, context_blocks=self.context_blocks, context_width=self.context_width,
                    input_norm=self.input_norm)

    def discriminator_q(self) -> int | list[int]:
        return _parse_q_list(self.d_q, 6, "d_q") if self.d_q else self.q

    @staticmethod
    def world_size_hint() -> int:
        """Processes torchrun started (1 without it): read before any process group exists."""
        import os

        return int(os.environ.get("WORLD_SIZE", "1"))

    def case_mix(self) -> tuple[tuple[str, ...], tuple[float, ...]] | None:
        """`cases` parsed into (names, weights); None for the paper's default composition."""
        if not self.cases:
            return None
        from opgan.data.corrupt import ALL_CASES
        from opgan.data.sources import parse_weights

        try:
            mix = parse_weights(self.cases, ALL_CASES, "cases", "case")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return tuple(mix), tuple(mix.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config fields: {', '.join(unknown)}")
        cfg = cls(**{k: _coerce(k, v) for k, v in d.items()})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ConfigError for values that cannot work (before any data or model is built)."""
        if self.clip_len <= 0 or self.clip_len % 32:
            raise ConfigError(f"clip_len must be a positive multiple of 32, got {self.clip_len}")
        from opgan.models import min_discriminator_length

        if self.clip_len < min_discriminator_length():
            raise ConfigError(
                f"clip_len {self.clip_len} is too short: the discriminator needs at least "
                f"{min_discriminator_length()} samples (use >= {-(-min_discriminator_length() // 32) * 32})"
            )
        for k in ("filters", "d_filters", "q", "batch_size", "max_steps", "val_every", "ckpt_every",
                  "log_every", "dynamic_clips", "demucs_hidden", "demucs_depth", "spectral_hidden",
                  "spectral_blocks"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        for k in ("max_minutes", "lambda_t", "lambda_s", "lambda_adv", "lambda_mr", "lambda_sisdr", "lambda_level",
                  "lambda_sdr", "val_clips", "workers", "threads", "sample_rate"):
            if getattr(self, k) < 0:
                raise ConfigError(f"{k} must be >= 0, got {getattr(self, k)}")
        if self.gate and not self.residual:
            raise ConfigError("gate needs residual (it scales the correction the generator adds to its input)")
        if not 0 <= self.gate_floor < 1 or self.gate_leak < 0 or self.context_blocks < 1 or self.context_width < 0:
            raise ConfigError(f"need 0 <= gate_floor < 1, gate_leak >= 0, context_blocks >= 1 and context_width >= 0, "
                              f"got {self.gate_floor}, {self.gate_leak}, {self.context_blocks}, {self.context_width}")
        from opgan.models.generator import ACTIVATIONS, CONTEXTS

        if self.activation not in ACTIVATIONS or self.context not in CONTEXTS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)} and context one of "
                              f"{', '.join(CONTEXTS)}, got {self.activation!r}, {self.context!r}")
        self._check_arch()
        if self.lr_half_life < 0 or not self.sdr_cap_db > 0:
            raise ConfigError(f"need lr_half_life >= 0 and sdr_cap_db > 0, got {self.lr_half_life}, {self.sdr_cap_db}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"need 0 <= ema_decay < 1, got {self.ema_decay}")
        if not self.lr > 0 or not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:
            raise ConfigError(f"need lr > 0 and 0 <= betas < 1, got lr={self.lr}, betas=({self.beta1}, {self.beta2})")
        if self.data_kind not in ("speech", "music"):
            raise ConfigError(f"data_kind must be 'speech' or 'music', got {self.data_kind!r}")
        from opgan.data.sources import GROUP_WEIGHTS

        if self.group_weight not in GROUP_WEIGHTS:
            raise ConfigError(f"group_weight must be one of {', '.join(GROUP_WEIGHTS)}, got {self.group_weight!r}")
        from opgan.data.corrupt import REVERB_TARGETS, SEVERITY

        if self.reverb_target not in REVERB_TARGETS:
            raise ConfigError(f"reverb_target must be one of {', '.join(REVERB_TARGETS)}, got {self.reverb_target!r}")
        if self.background_mix:
            from opgan.data.sources import parse_background_mix

            try:
                parse_background_mix(self.background_mix)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if not 0.0 <= self.room_prob <= 1.0:
            raise ConfigError(f"room_prob must lie in [0, 1], got {self.room_prob}")
        lo, hi = SEVERITY.rt60_s
        if self.reverb_min_rt60 and not lo <= self.reverb_min_rt60 < hi:
            raise ConfigError(f"reverb_min_rt60 must be 0 (the full range) or lie in [{lo}, {hi}) s, got {self.reverb_min_rt60}")
        if not self.dynamic and (self.cases or self.augment or self.group_weight != "uniform" or self.reverb_target != "dry"
                                 or self.background_mix or self.room_prob or self.reverb_min_rt60):
            raise ConfigError("cases, augment, group_weight, reverb_target, reverb_min_rt60, room_prob and background_mix "
                              "shape dynamic mixing: add --dynamic")
        self.case_mix()
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"compile must be one of {', '.join(repr(m) for m in COMPILE_MODES)}, got {self.compile!r}")
        if self.compile and self.world_size_hint() > 1:
            raise ConfigError("--compile is not supported with DDP (torchrun) yet; run without it")
        self.cuda_graph = _graph_mode(self.cuda_graph)
        if self.cuda_graph == "on" and self.compile:
            raise ConfigError("--cuda-graph replays the eager step; with --compile use 'reduce-overhead' "
                              "(inductor's CUDA graphs) instead of both")
        if self.cuda_graph == "on" and self.world_size_hint() > 1:
            raise ConfigError("--cuda-graph is not supported with DDP (torchrun) yet; run without it")
        if self.select_by not in SELECT_BY:
            raise ConfigError(f"select_by must be one of {', '.join(SELECT_BY)}, got {self.select_by!r}")
        from selfonn.backend import BACKENDS

        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ConfigError(f"run name must be a plain folder name, got {self.name!r}")
        self.generator_q(), self.discriminator_q()  # parse errors surface now

    def _check_arch(self) -> None:
        """The generator network exists, and the reference model's package is installed when it is asked for."""
        from opgan.models import ARCHS
        from opgan.models.reference import RESAMPLES, ReferenceUnavailable, demucs_class

        if self.arch not in ARCHS:
            raise ConfigError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.arch == "spectral":
            from opgan.checkpoint import SPECTRAL_BOUNDS  # what a checkpoint may ask for

            for key in SPECTRAL_BOUNDS:
                lo, hi = SPECTRAL_BOUNDS[key]
                v = getattr(self, f"spectral_{key}")
                if not lo <= v <= hi or (key == "n_fft" and v % 4):
                    raise ConfigError(f"spectral_{key} must be from {lo} to {hi}" + (" and a multiple of 4" if
                                      key == "n_fft" else "") + f", got {v}")
            if self.spectral_df_order % 2 == 0 and self.spectral_df_order:
                raise ConfigError(f"spectral_df_order must be odd (frames centred on each one) or 0, "
                                  f"got {self.spectral_df_order}")
            if self.spectral_df_bins > self.spectral_n_fft // 2 + 1:
                raise ConfigError(f"spectral_df_bins must be at most n_fft/2 + 1 = {self.spectral_n_fft // 2 + 1}, "
                                  f"got {self.spectral_df_bins}")
            if self.g_q:
                raise ConfigError("g_q (per-layer q) is for the U-Net; the spectral generator takes one --q")
        if self.arch == "demucs":
            from opgan.checkpoint import DEMUCS_BOUNDS  # what a checkpoint may ask for, so every run can be reloaded

            if self.demucs_resample not in RESAMPLES:
                raise ConfigError(f"demucs_resample must be one of {', '.join(map(str, RESAMPLES))}, "
                                  f"got {self.demucs_resample}")
            for key in ("hidden", "depth"):
                lo, hi = DEMUCS_BOUNDS[key]
                if not lo <= getattr(self, f"demucs_{key}") <= hi:
                    raise ConfigError(f"demucs_{key} must be from {lo} to {hi}, got {getattr(self, f'demucs_{key}')}")
            try:
                demucs_class()
            except ReferenceUnavailable as e:
                raise ConfigError(str(e)) from None


def _graph_mode(value: Any) -> str:
    """cuda_graph as 'auto', 'on' or 'off' (a bool, or a yes/no word, from code or an older config.json)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip().lower()
    if text in GRAPH_MODES:
        return text
    if text in _TRUE or text in _FALSE:
        return "on" if text in _TRUE else "off"
    raise ConfigError(f"cuda_graph must be one of {', '.join(GRAPH_MODES)}, got {value!r}")


def _parse_q_list(text: str, n: int, what: str) -> list[int]:
    try:
        qs = [int(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{what} must be {n} comma-separated integers, got {text!r}") from None
    if len(qs) != n or min(qs) < 1:
        raise ConfigError(f"{what} must be {n} comma-separated integers >= 1, got {text!r}")
    return qs


_HINTS = typing.get_type_hints(TrainConfig)
#: torch.compile modes of --compile ('' = eager).
COMPILE_MODES = ("", "default", "reduce-overhead", "max-autotune", "aot_eager")
#: cuda_graph values: on for one eager CUDA process ('auto'), always ('on': an error where it cannot apply), never.
GRAPH_MODES = ("auto", "on", "off")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
#: Validation metrics best.pt may be chosen by (see opgan.trainer.validate).
SELECT_BY = ("sdr_gain", "score")


def _coerce(name: str, value: Any) -> Any:
    """Convert a string (CLI) or JSON value to the field's type, with a clear error."""
    typ = _HINTS[name]
    if name == "cuda_graph" and isinstance(value, bool):  # config.json of runs from before 'auto'
        return _graph_mode(value)
    if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    try:
        if typ is bool:
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return typ(value)
    except ValueError:
        pass
    raise ConfigError(f"field {name!r} expects {typ.__name__}, got {value!r}")


#: Fields that may change when a run is resumed: bookkeeping, where things are (so a run can continue on
#: another machine where the same sources live elsewhere, e.g. a GPU machine with a carried pack), how
#: it computes, and a schedule or curriculum step (learning rate, data mixture) that changes what is
#: trained from the resume on — those are logged as a "resume" record in metrics.jsonl. The models, the
#: objective and the seed cannot change.
RESUMABLE_FIELDS = frozenset(
    {"max_steps", "max_minutes", "val_every", "ckpt_every", "log_every", "workers", "progress",
     "tensorboard", "device", "threads", "val_stoi", "runs_dir", "data", "val_data", "rirs", "data_root",
     "init_from", "second_pass_of", "backend", "bf16", "lr", "lr_half_life", "ema_decay", "compile", "cuda_graph", "cases",
     "augment", "group_weight", "background_mix", "room_prob", "reverb_min_rt60"}
)

#: The recipe the measurements chose (docs/training.md, "The recipe"): a gated residual generator (gate
#: floored at 5 % with a leaky gradient since the shipped models, so it cannot shut for good),
#: the seed's 100·L1 plus a per-clip SDR term capped at 30 dB plus LSGAN, and dynamic mixing that
#: includes light and clean inputs (30 %: the ship suite ran with 15 %; the shipped runs moved to 30 %
#: when their light-input scores lagged, see their curves), augmentation and sqrt-balanced speakers;
#: best.pt by `score`.
RECIPE: dict[str, Any] = dict(
    residual=True, gate=True, gate_floor=0.05, gate_leak=0.01, lambda_t=100.0, lambda_s=0.0, lambda_sdr=1.0, sdr_cap_db=30.0, lambda_adv=1.0,
    dynamic=True, cases="blend:0.35,awgn:0.12,background:0.12,reverb:0.11,light:0.2,clean:0.1", augment=True,
    group_weight="sqrt", lr=5e-4, select_by="score",
)

# Presets: overrides of the dataclass defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # CPU-sized run of the recipe on dynamic mixing of the shipped recordings (validation on the
    # default RAR set's never-heard speakers), bounded by its 3000 steps (what a user gets does not
    # depend on how busy the machine is); the 60-minute cap is only a safety net.
    "default": dict(
        RECIPE, filters=8, d_filters=8, q=3, clip_len=4096, batch_size=8, max_steps=3000, max_minutes=60.0,
        val_every=250, ckpt_every=250, val_clips=48,
    ),
    # The q=1 ablation (plain CNN-GAN, as the seed's released code) at the default's size.
    "cnn": dict(
        RECIPE, name="cnn", filters=8, d_filters=8, q=1, clip_len=4096, batch_size=8, max_steps=3000,
        max_minutes=60.0, val_every=250, ckpt_every=250, val_clips=48,
    ),
    # The paper's configuration, the seed's objective and design: f=16, q=3, full 2 s clips,
    # Table-1 sized set, long GPU training.
    "paper": dict(
        name="paper", data_size="paper", filters=16, d_filters=16, q=3, clip_len=32000, batch_size=8,
        max_steps=200_000, val_every=2000, ckpt_every=1000, log_every=50, val_clips=0,
    ),
    # One large GPU: the recipe at the paper's width on full 2 s clips; bounded by --max-minutes.
    "gpu": dict(
        RECIPE, name="gpu", data_size="small", dynamic_clips=4000, workers=8, filters=16,
        d_filters=16, q=3, clip_len=32000, batch_size=8, max_steps=100_000, max_minutes=3.5,
        val_every=500, ckpt_every=500, log_every=50, val_clips=0,
    ),
    # The shipped CPU-trained models (opgan/assets/weights; training state in training/): the recipe at
    # f=8 on the fetched sources (`opgan fetch`) with a 300-room bank, one thread, continued across
    # sessions with --resume (see docs/training.md).
    "ship": dict(
        RECIPE, name="ship", dynamic_clips=2000, filters=8, d_filters=8, q=3, clip_len=8192, batch_size=8,
        max_steps=100_000, max_minutes=0.0, val_every=500, ckpt_every=250, val_clips=64, threads=1,
    ),
    # The first shipped models' recipe (seed objective, lr 2e-4, no gate): kept to reproduce the loss suite.
    "ship-v1": dict(
        name="ship-v1", dynamic=True, dynamic_clips=2000, filters=8, d_filters=8, q=3, residual=True,
        clip_len=8192, lr=2e-4, batch_size=8, max_steps=100_000, max_minutes=45.0, val_every=250,
        ckpt_every=250, val_clips=64, threads=1,
    ),
    # Seconds-sized smoke test (used by the tests): tiny widths and clips.
    "tiny": dict(
        name="tiny", filters=2, d_filters=2, q=2, clip_len=2688, batch_size=2, max_steps=4,
        val_every=2, ckpt_every=2, log_every=1, val_clips=2, val_stoi=False, progress=False,
    ),
}


def preset(name: str) -> TrainConfig:
    """The named preset as a TrainConfig."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    cfg = TrainConfig(**{**PRESETS[name], "preset": name})
    cfg.validate()
    return cfg


#: One line per preset for `train.py --help`: what it is, and how long it takes where that is known.
PRESET_HELP: dict[str, str] = {
    "default": "the recipe at f=8 on dynamic mixing of the shipped recordings, 3000 steps: minutes on an idle "
               "2-core CPU, much longer on a busy one (41 min in docs/results/default-run)",
    "cnn": "the default's size and recipe with q=1 (a plain CNN-GAN, as the paper's released code), 3000 steps of "
           "about 3/4 the default's time each",
    "paper": "the paper's configuration (f=16, q=3, 2 s clips, Table-1 sized set, 200000 steps): for a GPU "
             "(a step took 2.6 ms as one CUDA graph, 11.7 ms eager on an H200), impractical on a CPU",
    "gpu": "the recipe at the paper's width on 2 s clips for one GPU, capped at 3.5 minutes (--max-minutes)",
    "ship": "how the shipped models were trained: the recipe at f=8 on `opgan fetch` sources, one thread, "
            "100000 steps, resumable (--data ~/.cache/opgan)",
    "ship-v1": "the first shipped models' recipe (no gate, lr 2e-4), kept to reproduce the loss ablation",
    "tiny": "a smoke test of a few seconds (f=2, 4 steps; what the tests run)",
}

_EPILOG = """\
examples:
  python train.py                                  # the default run (see presets above)
  python train.py --preset tiny --name smoke       # a few seconds, to check an install
  python train.py --data ~/.cache/opgan --preset ship --max-steps 20000
  python train.py --name default --resume --max-steps 6000   # continue a run further
  python train.py --lr 1e-4 --set lambda_sdr=0.5 --no-val-stoi
  torchrun --nproc_per_node=2 train.py --preset paper --data PATH   # DDP, one process per GPU

Outputs go to <runs_dir>/<name>/ (best.pt, last.pt, metrics.csv, summary.json); restore with
`opgan restore --model runs/NAME/best.pt FILE`. Every field above may also be set with --set FIELD=VALUE.
"""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_help() -> dict[str, str]:
    """Each TrainConfig field's help text: the comment beside it in this file (and the comment lines
    that continue it), so the help and the code say the same thing."""
    try:
        lines = inspect.getsource(TrainConfig).splitlines()
    except (OSError, TypeError):  # no source (a frozen build): fields go without help
        return {}
    names = {f.name for f in fields(TrainConfig)}
    out: dict[str, str] = {}
    last = None
    for line in lines:
        m = re.match(r"^    (\w+): [^#]*?#\s?(.*)$", line)
        if m and m.group(1) in names:
            last = m.group(1)
            out[last] = m.group(2).strip()
        elif last and re.match(r"^    #(?!\s*---)", line):
            out[last] += " " + line.strip()[1:].strip()
        else:
            last = None
    return out


def build_parser() -> argparse.ArgumentParser:
    width = max(map(len, PRESETS))
    presets = "\n".join(textwrap.fill(PRESET_HELP.get(name, ""), 100, initial_indent=f"  {name:<{width}}  ",
                                       subsequent_indent=" " * (width + 4), break_on_hyphens=False)
                        for name in PRESETS)
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train an Op-GAN blind audio restorer (Self-ONN generator + discriminator).\n\n"
                    f"presets (--preset NAME; fields given after it override it):\n{presets}",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the presets and examples as written
    )
    p.add_argument("--preset", default="default", metavar="NAME",
                   help="start from a preset (listed above; default: default)")
    p.add_argument("--config", default=None, help="JSON file of field values (applied after the preset)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override any field")
    p.add_argument("--resume", action="store_true", help="continue the run in <runs_dir>/<name> from its last.pt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (as --no-progress) and no progress lines: warnings and errors only "
                        "(metrics.jsonl records everything)")
    g = p.add_argument_group("config fields (each overrides the preset; [default preset's value])")
    defaults = TrainConfig()
    helps = field_help()
    for f in fields(TrainConfig):
        if f.name == "preset":
            continue
        typ = _HINTS[f.name]
        text = helps.get(f.name, "").replace("%", "%%")
        help_ = f"{text} [{PRESETS['default'].get(f.name, getattr(defaults, f.name))!r}]".strip()
        if f.name == "cuda_graph":
            g.add_argument("--cuda-graph", dest=f.name, action="store_const", const="on", default=argparse.SUPPRESS,
                           help=help_)
            g.add_argument("--no-cuda-graph", dest=f.name, action="store_const", const="off",
                           default=argparse.SUPPRESS, help="train eagerly on CUDA too (cuda_graph=off)")
        elif typ is bool:
            g.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=help_)
        else:
            g.add_argument(_flag(f.name), dest=f.name, type=str, default=argparse.SUPPRESS,
                           metavar=typ.__name__.upper(), help=help_)
    return p


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, dict[str, Any], argparse.Namespace]:
    """Resolve preset -> --config JSON -> explicit flags -> --set. Returns (config, overrides, args).

    `overrides` holds only the fields the user set explicitly (needed to resume a run safely).
    """
    args = build_parser().parse_args(argv)
    base = preset(args.preset).to_dict()
    overrides: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError(f"--config file not found: {path}")
        try:
            loaded = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config {path} is not valid JSON: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {path} must hold a JSON object of field values")
        overrides.update(loaded)
    for f in fields(TrainConfig):
        if f.name in vars(args) and f.name != "preset":
            overrides[f.name] = getattr(args, f.name)
    for item in args.set:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        overrides[key] = value
    if args.quiet:  # the bar too (a resume without --quiet keeps it off: --progress brings it back)
        overrides["progress"] = False
    overrides.pop("preset", None)
    cfg = TrainConfig.from_dict({**base, **overrides})
    # A preset name doubles as the run name unless one was given.
    if "name" not in overrides and args.preset != "default" and "name" not in PRESETS[args.preset]:
        cfg.name = args.preset
    return cfg, {k: getattr(cfg, k) for k in overrides if k in _HINTS}, args

