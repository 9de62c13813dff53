"""One training run's state and its step: the models and optimisers a config describes, the
checkpoints they are saved to and resumed from, and the Op-GAN step (the D update, then the G update)
run eagerly or replayed from a CUDA graph (:mod:`opgan.train_graph`).
"""
from __future__ import annotations

import logging
import math
import random
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from selfonn.backend import resolve_backend
from selfonn.kernels import precompile as kernel_precompile
from torch import nn
from torch.utils.data import Dataset

from . import distrib
from .checkpoint import (FORMAT, CheckpointError, capture_rng, check_restorer, check_state, check_training_state,
                         fill_first_moments, load_checkpoint, restore_rng, save_checkpoint)
from .config import ConfigError, TrainConfig
from .enhance import enhance_clips, shipped_weights
from .models import Discriminator, DiscriminatorConfig, build_generator
from .models import losses as L
from .train_data import StepBatches, blind_normalise, crop
from .train_ema import WeightAverage
from .train_graph import StepGraph, use_cuda_graph
from .train_rundir import say
from .train_validate import validate

logger = logging.getLogger("opgan.train")

#: generator fields that change its forward but hold no weights: --init-from may change them
_WEIGHTLESS_FIELDS = ("gate_floor", "gate_leak")


@dataclass(frozen=True)
class _Addable:
    """A part of the generator --init-from may add to a model without it."""

    switch: str  # the config field that turns it on
    fields: tuple[str, ...]  # the config fields that shape only it
    prefix: str  # its weights' names in the state dict
    what: str


_ADDABLE = (_Addable("gate", ("gate",), "gate.", "a clip gate"),
            _Addable("df_order", ("df_order", "df_bins"), "df.", "a complex filter over frames"))

__all__ = ["NonFiniteLossError", "Run", "build_models", "precompile_passes"]


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/Inf; the run stopped and the last good checkpoint is kept."""


def build_models(cfg: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """The generator and discriminator a config describes (seeded by the caller)."""
    g = build_generator(cfg.generator_config())
    d = Discriminator(DiscriminatorConfig(filters=cfg.d_filters, q=cfg.discriminator_q()))
    return g, d


def precompile_passes(g: nn.Module, d: nn.Module, x: torch.Tensor, y: torch.Tensor, adversarial: bool,
                      autocast: Callable[[], Any] = nullcontext) -> Callable[[], None]:
    """What :meth:`Run.precompile_kernels` runs under selfonn.kernels.precompile: the passes a training
    step makes on the batch (x, y), as it makes them: G forward; when ``adversarial``, D on real + fake
    with its weights trainable (the D update), then D on fake with them frozen (the G update: D's
    backward there is grad_x only, other kernels than the update's); each backward (the caller drops
    the gradients). ``tools/gpu/prewarm_cache.py --training`` compiles the same passes offline, from CPU
    tensors, for a GPU's Triton cache."""

    def work() -> None:
        with autocast():
            fake = g(x)
        if not adversarial:
            fake.float().sum().backward()
            return
        with autocast():
            scores = d(torch.cat([y, fake.detach()]))
        scores.float().sum().backward()
        flags = [p.requires_grad for p in d.parameters()]
        d.requires_grad_(False)
        try:
            with autocast():
                out = d(fake)
            out.float().sum().backward()
        finally:
            for p, flag in zip(d.parameters(), flags):
                p.requires_grad_(flag)

    return work


def precompile_wanted(device: torch.device, world_size: int, x: torch.Tensor) -> bool:
    """Single-process CUDA runs of the fused backend compile their kernels before the first step."""
    return device.type == "cuda" and world_size == 1 and resolve_backend(None, x) == "triton"


def _resolve_weights(path: str) -> Path:
    """A checkpoint path, or the name of a shipped model ('speech', 'music', ...)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    shipped = shipped_weights()
    if path in shipped:
        return shipped[path]
    raise ConfigError(f"checkpoint {path!r} not found (a file, or one of the shipped models: {', '.join(shipped)})")


def _compiled(module: nn.Module, mode: str) -> nn.Module:
    """`module` itself ('' = eager), or torch.compile'd: an inductor mode, or 'aot_eager' (tracing only)."""
    if not mode:
        return module
    if mode == "aot_eager":
        return torch.compile(module, backend="aot_eager")
    return torch.compile(module, mode=mode)


def _portable(opt_state: dict) -> dict:
    """An optimiser state dict any run can load: a CUDA-graph run's lr tensor and capturable flag
    become the plain float and False, a CUDA run's fused flag the default (the loading run sets its
    own, see `Run._optimiser_mode`)."""
    for group in opt_state["param_groups"]:
        group["lr"] = float(group["lr"])
        group["capturable"] = False
        group["fused"] = None
    return opt_state


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _load_optimiser(opt: torch.optim.Optimizer, state: Any, where: Path, what: str) -> None:
    """Load an optimiser's saved state after checking it holds, for each parameter, tensors of that
    parameter's shape (Adam would load others and fail at its first step)."""
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict) \
            or not isinstance(state.get("param_groups"), list):
        raise CheckpointError(f"'{where}': {what} is not an optimiser state")
    state = fill_first_moments(state)  # a compact state (compact_training_state) dropped them
    params = [p for group in opt.param_groups for p in group["params"]]
    for pid, st in state["state"].items():
        if not isinstance(pid, int) or not 0 <= pid < len(params) or not isinstance(st, dict):
            raise CheckpointError(f"'{where}': {what} holds state for parameter {pid!r} this run does not have")
        for k, v in st.items():
            if k in ("exp_avg", "exp_avg_sq") and (not isinstance(v, torch.Tensor) or v.shape != params[pid].shape):
                raise CheckpointError(f"'{where}': {what} state of parameter {pid} does not fit this run's model")
    try:
        opt.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"'{where}': {what} does not fit this run's model "
                              f"({(str(e).strip().splitlines() or [''])[0][:200]})") from None


class Run:
    """State of one training run (models, optimisers, data plan, logs)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, info: distrib.DistInfo, device: torch.device,
                 train_set: Dataset, val_set: Dataset, ckpt: dict | None, sample_rate: int) -> None:
        self.cfg, self.run_dir, self.info, self.device = cfg, run_dir, info, device
        self.train_set, self.val_set, self.sample_rate = train_set, val_set, sample_rate
        _seed_all(cfg.seed)
        g, d = build_models(cfg)
        self.first: nn.Module | None = None
        self.first_cfg: dict | None = None
        if cfg.second_pass_of:
            self._load_first_pass(cfg.second_pass_of)
        self.g_raw, self.d_raw = g.to(device), d.to(device)
        self.use_graph, why = use_cuda_graph(cfg, device, info.world_size)
        if device.type == "cuda" or self.use_graph:
            say(f"[train] training step: {'one CUDA graph' if self.use_graph else 'eager'} ({why})")
        # (fused, capturable and the lr's form are set by _optimiser_mode below, after any checkpoint load)
        self.opt_g = torch.optim.Adam(self.g_raw.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.d_raw.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.step = 0
        self.train_s = 0.0
        self.best: dict[str, float] = {}
        self.best_step = -1
        self.last_val: dict[str, float] = {}
        self.first_pass_val: dict[str, float] = {}
        if ckpt is not None:
            self._load(ckpt)
        elif cfg.init_from:
            self._init_from(cfg.init_from)
        # the weight average starts at the weights the run starts from (or continues a saved one)
        self.ema = WeightAverage(self.g_raw, cfg.ema_decay) if cfg.ema_decay else None
        if self.ema is not None and ckpt is not None and "ema" in ckpt:
            self.ema.load(ckpt["ema"], run_dir / "last.pt")
        self._optimiser_mode()
        # torch.compile (--compile MODE): the training forwards only; validation and checkpoints use the
        # eager modules (same parameters). With the fused backend the Self-ONN layers are library ops
        # (selfonn::fused_conv), so a model compiles to one graph and CUDA graphs can capture it.
        g_fwd, self.d_fwd = _compiled(self.g_raw, cfg.compile), _compiled(self.d_raw, cfg.compile)
        self.g = distrib.wrap(g_fwd, device) if g_fwd is self.g_raw else g_fwd
        self.d = distrib.wrap(self.d_raw, device)
        if cfg.batch_size % info.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {info.world_size} processes")
        self.plan = StepBatches(len(train_set), cfg.batch_size, cfg.seed, info.rank, info.world_size)
        use_amp = cfg.bf16 and device.type == "cuda"
        # a captured step must not reuse autocast's cast cache across replays
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not self.use_graph)) \
            if use_amp else nullcontext
        self.graph = StepGraph(self._graph_body, device) if self.use_graph else None

    def _load_first_pass(self, path: str) -> None:
        """The frozen first-pass generator a second-pass run trains on the output of."""
        first = load_checkpoint(path)
        if first.get("second_pass"):
            raise ConfigError(f"{path} is already a two-pass model; pass its first pass instead")
        spec = check_restorer(first, path)
        self.first_cfg = spec.generator.config
        self.first = build_generator(self.first_cfg)
        self.first.load_state_dict(spec.generator.state)
        self.first_state = spec.generator.state
        self.first = self.first.to(self.device).eval().requires_grad_(False)

    def _optimiser_mode(self) -> None:
        """Adam as this run steps it: fused on CUDA; for a CUDA-graph step, `capturable` (its step counts on
        the device) and the lr a device tensor the graph reads (refilled before each replay); plain
        floats otherwise. Applied after a checkpoint load too, which brings back the saving run's settings."""
        capturable = self.use_graph and self.device.type == "cuda"
        fused = self.device.type == "cuda"  # 2 launches a step instead of the foreach path's ~8 (host-bound steps)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["capturable"] = capturable
                group["fused"] = fused or None
                lr = float(group["lr"])
                group["lr"] = torch.tensor(lr, device=self.device) if self.use_graph else lr
            for st in opt.state.values():
                if torch.is_tensor(st.get("step")):
                    st["step"] = st["step"].to(self.device if capturable or fused else "cpu", torch.float32)

    # -- checkpoints ----------------------------------------------------------------------------
    def _model_configs(self) -> tuple[dict, dict]:
        return self.g_raw.config.to_dict(), self.d_raw.config.to_dict()

    def payload(self, full: bool = True) -> dict[str, Any]:
        """best.pt's content (``full=False``: what restoring needs, the weight average when the run keeps
        one, as validated) or last.pt's (the raw weights and everything --resume needs, the average too)."""
        gcfg, dcfg = self._model_configs()
        config = {**self.cfg.to_dict(), "generator": gcfg, "discriminator": dcfg}
        g_state = (self.ema.model if self.ema is not None and not full else self.g_raw).state_dict()
        out: dict[str, Any] = {
            "format": FORMAT,
            "config": config,
            "generator": g_state,
            "sample_rate": self.sample_rate,
            "step": self.step,
            "metrics": {"last_val": dict(self.last_val), "best_val": dict(self.best), "best_step": self.best_step,
                        "first_pass_val": dict(self.first_pass_val)},
        }
        if self.first is not None:
            # load_restorer's layout: `generator` is the first pass, `second_pass` the one trained here.
            config["generator"] = self.first_cfg
            out["generator"] = self.first_state
            out["second_pass"] = {"config": {"generator": gcfg}, "generator": g_state}
        if full:
            out.update(discriminator=self.d_raw.state_dict(), opt_g=_portable(self.opt_g.state_dict()),
                       opt_d=_portable(self.opt_d.state_dict()), rng=capture_rng(), train_s=self.train_s)
            if self.ema is not None:
                out["ema"] = self.ema.state_dict()
        return out

    def _load(self, ckpt: dict) -> None:
        """Resume from last.pt: every field checked against this run's models before any is applied
        (a last.pt of another configuration is refused in one line, not a load_state_dict traceback)."""
        where = self.run_dir / "last.pt"
        state = check_training_state(ckpt, where)
        if self.first is not None:
            sp = ckpt.get("second_pass")
            if not isinstance(sp, dict) or "generator" not in sp:
                raise CheckpointError(f"'{where}' holds no second pass, but this run trains one")
            g_state = sp["generator"]
        else:
            g_state = ckpt["generator"]
        try:
            g_state = check_state(g_state, self.g_raw.state_dict(), where, "generator")
            d_state = check_state(ckpt["discriminator"], self.d_raw.state_dict(), where, "discriminator")
        except CheckpointError as e:
            raise CheckpointError(f"{e}: it was saved by another configuration than {self.run_dir / 'config.json'}'s")
        self.g_raw.load_state_dict(g_state)
        self.d_raw.load_state_dict(d_state)
        _load_optimiser(self.opt_g, ckpt["opt_g"], where, "opt_g")
        _load_optimiser(self.opt_d, ckpt["opt_d"], where, "opt_d")
        self.step = state.step
        self.train_s = state.train_s
        m = state.metrics
        self.last_val, self.best = dict(m.get("last_val", {})), dict(m.get("best_val", {}))
        self.best_step = int(m.get("best_step", -1))
        self.first_pass_val = dict(m.get("first_pass_val", {}))
        try:
            restore_rng(state.rng)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise CheckpointError(f"'{where}': its RNG state is malformed ({type(e).__name__})") from None

    def _init_from(self, path: str) -> None:
        """Warm start: weights from a checkpoint (a shipped model or a run's best/last.pt), with fresh
        optimisers at step 0. The generator's shape must match this config's; the gate's floor and leak
        (no weights of their own) may differ, e.g. to let a model trained with a high floor learn to
        close its gate on clean inputs; and a clip gate or a complex filter may be added to a model without
        one (the added part's weights start at their init: the filter's at zero, so the model's output is
        unchanged; the gate's open); every other weight loads."""
        where = _resolve_weights(path)
        src = load_checkpoint(where)
        spec = check_restorer(src, where)
        want = self.g_raw.config.to_dict()
        with torch.device("meta"):  # its config as this version writes it (checked and bounded above)
            built = build_generator(spec.generator.config).config
        have = built.to_dict()
        # parts that may be added to a model without them: their own weights start fresh, every other weight loads
        added = [part for part in _ADDABLE if want.get(part.switch) and not have.get(part.switch)]
        # to_dict leaves out fields at their defaults: a field either side names must match
        shaped = (have.keys() | want.keys()) - set(_WEIGHTLESS_FIELDS) - {f for part in added for f in part.fields}
        if any(have.get(k) != want.get(k) for k in shaped) or spec.second is not None:
            raise ConfigError(f"--init-from {path}: its generator {have} does not match this run's {want}")
        for k in _WEIGHTLESS_FIELDS:
            old, new = getattr(built, k, None), getattr(self.g_raw.config, k, None)
            if old != new:
                logger.info("--init-from %s: %s %s -> %s (this run's)", path, k, old, new)
        state = dict(spec.generator.state)
        for part in added:
            logger.info("--init-from %s: %s is added (its weights start at their init)", path, part.what)
            state.update({k: v for k, v in self.g_raw.state_dict().items() if k.startswith(part.prefix)})
        self.g_raw.load_state_dict(state)
        if "discriminator" in src:
            try:
                d_state = check_state(src["discriminator"], self.d_raw.state_dict(), where, "discriminator")
            except CheckpointError as e:
                raise ConfigError(f"--init-from {path}: its discriminator does not fit this run's: {e}") from None
            self.d_raw.load_state_dict(d_state)

    def save_last(self) -> None:
        if distrib.is_main():
            save_checkpoint(self.run_dir / "last.pt", self.payload(full=True))

    # -- one step -------------------------------------------------------------------------------
    def inputs(self, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A loader batch as the step takes it: cropped, on the device, (first pass applied,) peak-scaled."""
        x, y = crop(x, y, self.cfg.clip_len, self.cfg.seed, step, self.info.rank, self.info.world_size)
        x, y = x.to(self.device, non_blocking=True).float(), y.to(self.device, non_blocking=True).float()
        if self.first is not None:
            with torch.no_grad():
                x = enhance_clips(self.first, x)  # the second pass sees the first pass's output
        return blind_normalise(x, y)

    def learning_rate(self) -> float:
        """The lr of the next step: a pure function of (lr, lr_half_life, step), so resume replays it and
        a changed lr on --resume takes effect (the optimiser state keeps the old one otherwise)."""
        cfg = self.cfg
        return cfg.lr * 0.5 ** (self.step / cfg.lr_half_life) if cfg.lr_half_life else cfg.lr

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One discriminator step then one generator step; returns the detached losses.

        With lambda_adv == 0 the discriminator is neither run nor updated (a plain regression run).
        With a CUDA graph the same step runs as `_graph_body` (replayed from the graph after its
        warm-up); its losses are checked after the step, the eager step's before each update."""
        lr = self.learning_rate()
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                if torch.is_tensor(group["lr"]):
                    group["lr"].fill_(lr)
                else:
                    group["lr"] = lr
        if self.graph is not None:
            losses = self.graph(x, y).tolist()  # first: its first run names the losses
            vals = dict(zip(self.loss_names, losses))
            for which, key in (("discriminator", "d_loss"), ("generator", "g_loss")):
                if which == "generator" or self.cfg.lambda_adv > 0:
                    if not math.isfinite(vals[key]):
                        self._non_finite(which, vals[key])
        else:
            losses = self._step(x, y, in_place=False).tolist()  # first: the step names the losses
            vals = dict(zip(self.loss_names, losses))
        if self.ema is not None:
            self.ema.update(self.g_raw)
        return vals

    def _graph_body(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training step without a host sync, as a CUDA graph captures it: gradients zeroed in place
        (their tensors stay the graph's), no finiteness check inside."""
        return self._step(x, y, in_place=True)

    def _step(self, x: torch.Tensor, y: torch.Tensor, in_place: bool) -> torch.Tensor:
        """G forward, the D update (when adversarial), the G update; the losses stacked on the device,
        named in ``self.loss_names`` (set here: Python runs this at least once before any replay)."""
        with self.autocast():
            fake = self.g(x)
        adversarial = self.cfg.lambda_adv > 0
        loss_d = self._d_step(y, fake, in_place=in_place) if adversarial else fake.new_full((), float("nan"))
        loss_g, parts = self._g_step(y, fake, adversarial, in_place=in_place)
        self.loss_names = ["d_loss", "g_loss", *parts]
        return torch.stack([loss_d.detach().float(), loss_g.detach().float(), *(v.float() for v in parts.values())])

    def precompile_kernels(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Compile every fused-kernel variant a step launches, all at once, before the first step.

        A first step on a GPU otherwise compiles each layer's candidates key by key (minutes for an
        Op-GAN). One G forward/backward and the D passes run with launches replaced by compiles
        (selfonn.kernels.precompile); nothing is updated and their garbage gradients are dropped.
        Single-process CUDA runs with the fused backend only."""
        if not precompile_wanted(self.device, self.info.world_size, x):
            return
        try:
            report = kernel_precompile.precompile(
                precompile_passes(self.g_raw, self.d_raw, x, y, self.cfg.lambda_adv > 0, self.autocast))
        except Exception as e:  # never fatal: the first step compiles what is missing, key by key
            logger.warning("selfonn kernel precompile failed (%s); the first step compiles instead", e)
        else:
            say(f"[train] compiled {report.total} fused-kernel variants in {report.seconds:.1f} s on "
                f"{report.workers} threads")
        finally:
            for opt in (self.opt_g, self.opt_d):
                opt.zero_grad(set_to_none=True)

    def _d_step(self, y: torch.Tensor, fake: torch.Tensor, in_place: bool = False) -> torch.Tensor:
        """LSGAN discriminator update: real -> 1, fake -> 0 (one forward over both halves: one DDP reduction).
        ``in_place``: the captured step's form (gradients zeroed in place, no host-side check)."""
        self.d_raw.requires_grad_(True)
        with self.autocast():
            scores = self.d(torch.cat([y, fake.detach()]))
        d_real, d_fake = scores.split(y.shape[0])
        loss_d = L.d_loss(d_real, d_fake)
        self.opt_d.zero_grad(set_to_none=not in_place)
        loss_d.backward()
        if not in_place:
            self._check_finite("discriminator", loss_d)
        self.opt_d.step()
        return loss_d

    def _g_step(self, y: torch.Tensor, fake: torch.Tensor, adversarial: bool,
                in_place: bool = False) -> tuple[torch.Tensor, dict]:
        """Generator update: fool the (updated) D, plus the reconstruction terms the config weights.
        D's weights get no grads here, so the raw module is used and D's DDP reducer stays out."""
        cfg = self.cfg
        d_fake_g = None
        if adversarial:
            self.d_raw.requires_grad_(False)
            with self.autocast():
                d_fake_g = self.d_fwd(fake)
        loss_g, parts = L.g_loss(d_fake_g, fake, y, cfg.lambda_t, cfg.lambda_s, cfg.lambda_adv,
                                 cfg.lambda_mr, cfg.lambda_sisdr, cfg.lambda_level, cfg.lambda_sdr, cfg.sdr_cap_db)
        self.opt_g.zero_grad(set_to_none=not in_place)
        loss_g.backward()
        if not in_place:
            self._check_finite("generator", loss_g)
        self.opt_g.step()
        self.d_raw.requires_grad_(True)
        return loss_g, parts

    def _check_finite(self, which: str, loss: torch.Tensor) -> None:
        bad = distrib.any_flag(not bool(torch.isfinite(loss.detach()).item()), self.device)
        if bad:
            self._non_finite(which, loss.item())

    def _non_finite(self, which: str, value: float) -> None:
        last = self.run_dir / "last.pt"
        where = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"the {which} loss became non-finite ({value}) at step {self.step + 1}; training stopped "
            f"without saving this state; {where}. Try a lower --lr"
            + (" or --no-bf16" if self.cfg.bf16 else "")
            + " and --resume, or check the data for NaN/Inf samples"
        )

    # -- validation -----------------------------------------------------------------------------
    def restore_fn(self, raw: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
        """What validation restores with: the weight average when the run keeps one (unless ``raw``)."""
        g = self.ema.model if self.ema is not None and not raw else self.g_raw
        if self.first is None:
            return lambda x: enhance_clips(g, x)
        first = self.first
        return lambda x: enhance_clips(g, enhance_clips(first, x))

    def run_validation(self, raw: bool = False) -> dict[str, float]:
        self.g_raw.eval()
        try:
            res = validate(self.restore_fn(raw), self.val_set, self.device, self.sample_rate,
                           self.cfg.val_clips, self.cfg.batch_size, self.cfg.val_stoi)
        finally:
            self.g_raw.train()
        return res
