"""The Op-GAN generator: a 1D U-Net of Self-ONN layers (the seed's design, q configurable per layer).

Shapes for the default f=16 on a (B, 1, 32000) clip:

    down  1->f->2f->4f->8f->8f   SelfONN1d k5 s2 p2 + tanh       32000 -> 16000 -> ... -> 1000
    up    8f->8f, 16f->4f, 8f->2f, 4f->f  nearest x2, SelfONN1d k5 s1 p2, InstanceNorm1d, tanh, concat skip
    out   SelfONNTranspose1d(2f -> 1, k6, s2, p2) + tanh                 16000 -> 32000

`residual=True` (not in the seed) adds the input back, `y = x + out(h)` without the final tanh, and
zero-initialises the output layer, so training starts from the identity instead of silence: on a
short CPU budget this is the difference between "beats the input" and "still learning to copy it".

Five stride-2 stages mean any length that is a multiple of 32 maps back to itself exactly.

Folded up blocks (``fold_upsample=True``, the default): a nearest x2 upsample followed by a k5 s1 p2
conv equals one stride-2 transposed conv (k6, p2) on the half-length input. With u[j] = h[j // 2]:

    y[2m]   = (W0+W1) h[m-1] + (W2+W3) h[m] + W4      h[m+1]
    y[2m+1] =  W0     h[m-1] + (W1+W2) h[m] + (W3+W4) h[m+1]

(the conv's zero padding u[-2], u[-1], u[2N], u[2N+1] is exactly h[-1], h[N] = 0). As a transposed conv
y[t] = sum_m h[m] V[t + 2 - 2m], V = (W4, W3+W4, W2+W3, W1+W2, W0+W1, W0): 6 taps per input sample instead
of 10 per pair of outputs, 40 % fewer multiply-adds. The powers commute with the duplication ((u**q)[j] =
(h**q)[j // 2], and 0**q = 0), so it holds term by term for Self-ONN. V is built from the stored ``conv.weight``
on every call: parameters, state-dict keys and checkpoints are those of the plain up block.
"""
from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfonn import SelfONN1d, SelfONNTranspose1d, selfonn_conv_transpose1d

from .shapes import CONTEXT_PREFIX, LayerShape, shape_of

#: Number of Self-ONN layers in the generator: 5 down + 4 up + 1 output.
N_GENERATOR_LAYERS = 10
#: Input lengths must be a multiple of this (five stride-2 stages).
LENGTH_MULTIPLE = 32


def _per_layer_q(q: int | list[int], n: int, what: str) -> list[int]:
    """Expand one q for every layer, or check a per-layer list (why: the issue asks q per layer)."""
    qs = [int(q)] * n if isinstance(q, int) else [int(v) for v in q]
    if len(qs) != n or any(v < 1 for v in qs):
        raise ValueError(f"{what}: q must be an int >= 1 or a list of {n} ints >= 1, got {q!r}")
    return qs


ACTIVATIONS = ("tanh", "prelu")
CONTEXTS = ("none", "dilated")
#: generator networks: the paper's Self-ONN U-Net, the field's reference model (models.reference), and a
#: Self-ONN mask estimator over STFT frames (models.spectral)
ARCHS = ("unet", "demucs", "spectral")


@dataclass
class GeneratorConfig:
    """Generator hyper-parameters (kept as plain data so checkpoints stay weights_only-loadable).

    Fields added after the first shipped models default to what those models compute, so a stored
    config without them (``from_dict``) builds the same network with the same output.
    """

    filters: int = 16  # f: channels of the first down layer; widths are f, 2f, 4f, 8f, 8f
    q: int | list[int] = 3  # Self-ONN order: one int, or 10 ints (5 down, 4 up, 1 output layer)
    residual: bool = False  # y = x + out(h) (identity at init) instead of the seed's y = tanh(out(h))
    gate: bool = False  # residual only: y = x + g * out(h), g in (0, 1) per clip from the encoder's statistics
    # g = floor + (1 - floor) * sigmoid(z): the correction always passes at least this fraction, so the
    # decoder keeps learning even while the gate is shut (0: the shipped models' plain sigmoid)
    gate_floor: float = 0.0
    # backward adds this slope to dg/dz (straight-through, the forward value is unchanged): a saturated
    # sigmoid's gradient vanishes and a shut gate could never reopen (0: plain sigmoid gradient)
    gate_leak: float = 0.0
    activation: str = "tanh"  # between layers: 'tanh' (the paper) or 'prelu' (the plain-conv control)
    context: str = "none"  # 'dilated': residual dilated Self-ONN blocks at the bottleneck (see _ContextBlock)
    context_blocks: int = 6  # dilated: blocks with dilations 1, 2, ..., 2**(n-1) (k3, so +-(2**n - 1) bottleneck samples)
    context_width: int = 0  # dilated: channels inside each block (0 = the bottleneck's 8f)
    # scale each clip to INPUT_RMS before the network and the output back by the same factor: the first
    # Self-ONN layer raises its raw input to powers 1..q, so without this what it computes depends on level
    input_norm: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data; the fields added after the first shipped models are left out while at their defaults,
        so a checkpoint of the paper's network stores the same config (and older readers can load it)."""
        d = asdict(self)
        return {k: v for k, v in d.items() if k not in _LATER_DEFAULTS or v != _LATER_DEFAULTS[k]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GeneratorConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        return cls(**d)


#: fields added after the first shipped models, with the defaults that reproduce those models
_LATER_DEFAULTS = dict(gate_floor=0.0, gate_leak=0.0, activation="tanh", context="none", context_blocks=6,
                       context_width=0, input_norm=False)
#: input_norm: the RMS every clip is scaled to (about speech at -20 dBFS, the level the recipe trains at),
#: and the RMS floor that keeps a silent clip from being amplified without bound
INPUT_RMS, INPUT_RMS_FLOOR = 0.1, 1e-3


def folded_upsample_weight(weight: torch.Tensor) -> torch.Tensor:
    """Transposed-conv weight (Q*in, out, 6) equal to nearest x2 upsample + conv k5 p2 with ``weight`` (out, Q*in, 5).

    V[k] = W[5-k] + W[4-k] with out-of-range taps zero (see the module docstring); differentiable, so the
    gradient lands on the stored k5 weight.
    """
    if weight.dim() != 3 or weight.shape[-1] != 5:
        raise ValueError(f"expected a k5 conv weight (out, Q*in, 5), got {tuple(weight.shape)}")
    pair_sums = F.pad(weight, (1, 0)) + F.pad(weight, (0, 1))  # [W0, W0+W1, W1+W2, W2+W3, W3+W4, W4]
    return pair_sums.flip(-1).transpose(0, 1)


class _Held:
    """A saved tensor, re-pointable (autograd unpacks whatever it holds when backward runs)."""

    __slots__ = ("t",)

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t


def _view_key(t: torch.Tensor) -> tuple:
    return (t.data_ptr(), t.dtype, tuple(t.shape), t.stride(), t.device)


class _SkipSharing:
    """Saved-tensor hooks that keep each skip and up-block output only inside its concatenation.

    ``cat([up(h), skip])`` copies two tensors autograd also saves on their own (tanh saves its
    output, the next down layer its input), so without this every up level holds its channels twice.
    Inside this context every saved tensor goes into a :class:`_Held`; :meth:`concat` re-points the
    holders of its parts at views of the concatenation, so the standalone parts are freed once forward
    ends (a part saved again later, while it is alive so its memory cannot have been reused, is saved
    as the view at once). In backward the concatenation is needed whole only until the node that made
    its first part has run; the skips' consumers (the down layers) run last, so at that point the
    skips move to copies of their own and the concatenation is freed, and the concatenation's gradient
    hands the skips a copy of their part (its view would keep the whole gradient alive as long).
    The same values, bit-identical gradients; `python bench/saved_activations.py` measures it.
    """

    def __init__(self) -> None:
        self._held: dict[tuple, list[_Held]] = {}
        self._views: dict[tuple, tuple[weakref.ref, torch.Tensor, list[_Held]]] = {}

    def pack(self, t: torch.Tensor) -> _Held:
        key = _view_key(t)
        alias = self._views.get(key)
        if alias is not None and alias[0]() is not None:
            held = _Held(alias[1])
            alias[2].append(held)
            return held
        held = _Held(t)
        self._held.setdefault(key, []).append(held)
        return held

    @staticmethod
    def unpack(held: _Held) -> torch.Tensor:
        return held.t

    def close(self) -> None:
        """Drop every reference this context holds. Autograd keeps each saved tensor's hooks (so this
        object) until its graph is freed: holders listed here would outlive the nodes that saved them
        and keep the concatenations alive through the whole backward."""
        self._held.clear()
        self._views.clear()

    def concat(self, parts: list[torch.Tensor]) -> torch.Tensor:
        out = torch.cat(parts, dim=1)
        offset, later = 0, []
        for i, part in enumerate(parts):
            view = out.narrow(1, offset, part.shape[1])
            key = _view_key(part)
            holders = self._held.pop(key, [])
            for held in holders:
                held.t = view
            self._views[key] = (weakref.ref(part), view, holders)
            if i:
                later.append((view, holders))
            offset += part.shape[1]
        first = parts[0].grad_fn
        if first is not None and later:
            first.register_hook(_handoff(later))
        if out.grad_fn is not None and later:
            out.grad_fn.register_hook(_own_grads)
        return out


def _handoff(later: list[tuple[torch.Tensor, list[_Held]]]):
    """A post-hook for the node that made a concatenation's first part: the later parts' holders move to
    copies, and the hook lets go of the concatenation (a hook lives as long as its graph)."""

    def hook(grad_inputs, grad_outputs):  # noqa: ARG001
        while later:
            view, holders = later.pop()
            if holders:
                own = view.clone()
                for held in holders:
                    held.t = own
        return None

    return hook


def _own_grads(grad_inputs, grad_outputs):  # noqa: ARG001
    """CatBackward post-hook: the skips get their gradient as a copy, not as a view of the whole one."""
    return (grad_inputs[0], *(None if g is None else g.contiguous() for g in grad_inputs[1:]))


def _activation(name: str, channels: int) -> nn.Module:
    """The nonlinearity between layers: the paper's tanh (bounds every Self-ONN input to [-1, 1], so its
    powers stay bounded), or a per-channel PReLU for the plain-conv control (q=1)."""
    if name == "tanh":
        return nn.Tanh()
    if name == "prelu":
        return nn.PReLU(channels)
    raise ValueError(f"generator activation must be one of {ACTIVATIONS}, got {name!r}")


class _ContextBlock(nn.Module):
    """h + proj(act(conv_d(act(h)))): a k3 Self-ONN conv with dilation d, then a zero-initialised 1x1 Self-ONN
    projection, so the block starts as the identity and the stack adds context without first unlearning it.
    The residual sum is not bounded, so each conv sees it through the activation first (with tanh, every
    Self-ONN input stays in [-1, 1] as in the rest of the U-Net).

    At the U-Net's bottleneck one sample is 32 input samples: n blocks with d = 1..2**(n-1) reach
    +-(2**n - 1) * 32 input samples (n=6: +-2016 = +-126 ms at 16 kHz) for a cost at 1/32 of the input rate.
    models.spectral stacks the same block over STFT frames.
    """

    def __init__(self, channels: int, width: int, dilation: int, q: int, activation: str) -> None:
        super().__init__()
        self.pre = _activation(activation, channels)
        self.conv = SelfONN1d(channels, width, 3, padding=dilation, dilation=dilation, q=q)
        self.act = _activation(activation, width)
        self.proj = SelfONN1d(width, channels, 1, q=q)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.proj(self.act(self.conv(self.pre(h))))


class _Up(nn.Module):
    """Nearest x2 upsample, Self-ONN conv, InstanceNorm, tanh (the skip concat happens in the U-Net).

    ``fold=True`` runs upsample + conv as one stride-2 transposed conv on the half-length input (exact,
    40 % fewer FLOPs; see the module docstring); the parameters are the same either way.
    """

    def __init__(self, cin: int, cout: int, q: int, fold: bool = True, activation: str = "tanh") -> None:
        super().__init__()
        self.fold = fold
        self.act = _activation(activation, cout)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        # No bias: the InstanceNorm right after removes it (its true gradient is zero, so Adam
        # would only random-walk it on rounding noise).
        self.conv = SelfONN1d(cin, cout, 5, stride=1, padding=2, q=q, bias=False)
        self.norm = nn.InstanceNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fold:
            c = self.conv
            y = selfonn_conv_transpose1d(
                x, folded_upsample_weight(c.weight), None, stride=2, padding=2, q=c.q, backend=c.backend
            )
        else:
            y = self.conv(self.up(x))
        return self.act(self.norm(y))

    def layer_shape(self, name: str, length: int) -> LayerShape:
        """The Self-ONN call this block makes on an input of ``length`` samples."""
        if not self.fold:
            return shape_of(name, self.conv, 2 * length)
        c = self.conv
        return LayerShape(name, "conv_transpose", c.in_channels, c.out_channels, 6, 2, 2, length, c.q)


class Generator(nn.Module):
    """(B, 1, L) -> (B, 1, L) restorer in [-1, 1]; L a multiple of 32.

    ``fold_upsample`` (not part of the config: it changes the arithmetic, not the model) runs each up
    block's upsample + conv as one transposed conv; outputs agree to float rounding either way.
    """

    #: read by `opgan.enhance.enhance_clips` to pad inputs to a valid length
    length_multiple = LENGTH_MULTIPLE

    def __init__(self, config: GeneratorConfig | None = None, fold_upsample: bool = True) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        f = self.config.filters
        if f < 1:
            raise ValueError(f"generator filters must be >= 1, got {f}")
        qs = _per_layer_q(self.config.q, N_GENERATOR_LAYERS, "generator")
        widths = [1, f, 2 * f, 4 * f, 8 * f, 8 * f]
        self.down = nn.ModuleList(
            SelfONN1d(widths[i], widths[i + 1], 5, stride=2, padding=2, q=qs[i]) for i in range(5)
        )
        # (in, out) of each up block; in = previous up output + its skip (except the first).
        ups = [(8 * f, 8 * f), (16 * f, 4 * f), (8 * f, 2 * f), (4 * f, f)]
        cfg = self.config
        if cfg.activation not in ACTIVATIONS or cfg.context not in CONTEXTS:
            raise ValueError(f"generator activation must be one of {ACTIVATIONS} and context one of {CONTEXTS}, "
                             f"got {cfg.activation!r}, {cfg.context!r}")
        if not 0 <= cfg.gate_floor < 1 or cfg.gate_leak < 0 or cfg.context_blocks < 1 or cfg.context_width < 0:
            raise ValueError(f"need 0 <= gate_floor < 1, gate_leak >= 0, context_blocks >= 1, context_width >= 0, got "
                             f"{cfg.gate_floor}, {cfg.gate_leak}, {cfg.context_blocks}, {cfg.context_width}")
        self.down_act = nn.ModuleList(_activation(cfg.activation, w) for w in widths[1:])
        self.context = None
        if cfg.context == "dilated":  # q of the bottleneck layer; width 8f unless given
            self.context = nn.Sequential(*(
                _ContextBlock(8 * f, cfg.context_width or 8 * f, 2**i, qs[4], cfg.activation)
                for i in range(cfg.context_blocks)
            ))
        self.up = nn.ModuleList(
            _Up(cin, cout, qs[5 + i], fold_upsample, cfg.activation) for i, (cin, cout) in enumerate(ups)
        )
        self.out = SelfONNTranspose1d(2 * f, 1, 6, stride=2, padding=2, q=qs[9])
        if self.config.residual:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        if self.config.gate and not self.config.residual:
            raise ValueError("gate=True needs residual=True (it scales the correction added to the input)")
        # Clip gate: mean and mean square over time of every encoder level (before any InstanceNorm
        # removes them) -> one logit. The decoder's InstanceNorm erases how loud and how noisy the clip
        # is; the gate keeps that view, so "this input is already clean, change nothing" is one
        # decision instead of something every output sample must learn.
        self.gate = nn.Linear(2 * sum(widths[1:]), 1) if self.config.gate else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"Generator expects (batch, 1, length), got {tuple(x.shape)}")
        if x.shape[-1] % LENGTH_MULTIPLE or x.shape[-1] == 0:
            raise ValueError(
                f"Generator input length must be a positive multiple of {LENGTH_MULTIPLE}, got {x.shape[-1]}"
            )
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():
            sharing = _SkipSharing()  # (torch.compile plans the concatenation's memory itself)
            try:
                with torch.autograd.graph.saved_tensors_hooks(sharing.pack, sharing.unpack):
                    return self._forward(x, sharing.concat)
            finally:
                sharing.close()
        return self._forward(x, lambda parts: torch.cat(parts, dim=1))

    def _forward(self, x: torch.Tensor, concat) -> torch.Tensor:
        if self.config.input_norm:  # level in, level out: the network sees every clip at INPUT_RMS
            scale = x.square().mean(-1, keepdim=True).sqrt().clamp_min(INPUT_RMS_FLOOR) / INPUT_RMS
            return self._network(x / scale, concat) * scale
        return self._network(x, concat)

    def _network(self, x: torch.Tensor, concat) -> torch.Tensor:
        skips = []
        h = x
        for layer, act in zip(self.down, self.down_act):
            h = act(layer(h))
            skips.append(h)
        if self.context is not None:
            h = self.context(h)
        # skips: d1 (f), d2 (2f), d3 (4f), d4 (8f), d5 (8f, the bottleneck = h)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            h = concat([block(h), skip])
        if self.gate is not None:
            stats = torch.cat([torch.cat([s.mean(-1), s.square().mean(-1)], dim=1) for s in skips], dim=1)
            return x + self.gate_value(self.gate(stats)).unsqueeze(-1) * self.out(h)
        if self.config.residual:
            return x + self.out(h)
        return torch.tanh(self.out(h))

    def gate_value(self, z: torch.Tensor) -> torch.Tensor:
        """The clip gate from its pre-activation ``z`` (the ``gate`` layer's output): sigmoid(z), floored at ``gate_floor`` and with ``gate_leak`` added to its gradient (see the config).

        With both 0 (the shipped models) this is exactly the plain sigmoid. Why: a sigmoid gate driven far
        negative passes neither the correction nor a gradient to its own input, so a model whose gate
        shut early can only copy its input for the rest of training. The floor keeps the correction path
        trained; the leak (z - z.detach() is exactly 0 forward) lets the gate's input learn to reopen.
        """
        g = torch.sigmoid(z)
        cfg = self.config
        if cfg.gate_leak:
            g = g + cfg.gate_leak * (z - z.detach())
        if cfg.gate_floor:
            g = cfg.gate_floor + (1 - cfg.gate_floor) * g
        return g

    def layer_shapes(self, length: int) -> list[LayerShape]:
        """Every Self-ONN call of one forward on a (B, 1, length) input, in call order.

        The context blocks' calls (``context='dilated'``) are named ``gen.ctx.d<dilation>`` (the k3 conv)
        and ``gen.ctx.proj`` (the 1x1 projection, the same shape in every block, so listed once a block).
        """
        shapes = []
        for i, layer in enumerate(self.down):
            shapes.append(shape_of(f"gen.down{i + 1}", layer, length))
            length = shapes[-1].L_out
        for block in self.context or ():  # length-preserving: padding = dilation, k = 3
            shapes.append(shape_of(f"{CONTEXT_PREFIX}d{block.conv.dilation[0]}", block.conv, length))
            shapes.append(shape_of(f"{CONTEXT_PREFIX}proj", block.proj, shapes[-1].L_out))
        for i, block in enumerate(self.up):
            shapes.append(block.layer_shape(f"gen.up{i + 1}", length))
            length = shapes[-1].L_out  # the skip concat keeps the length
        shapes.append(shape_of("gen.out_T", self.out, length))
        return shapes


def build_generator(config: dict[str, Any] | GeneratorConfig | None = None, fold_upsample: bool = True) -> nn.Module:
    """Build a generator from a plain dict (as stored in checkpoints) or a config object.

    A config naming ``arch`` 'demucs' builds the ladder's reference model (:mod:`.reference`, which needs
    the `denoiser` package), 'spectral' the STFT-mask Self-ONN (:mod:`.spectral`); any other config the
    paper's U-Net (whose configs name no arch).
    """
    from . import reference, spectral  # denoiser itself is imported only to build

    if isinstance(config, reference.DemucsConfig):
        return reference.DemucsGenerator(config)
    if isinstance(config, spectral.SpectralConfig):
        return spectral.SpectralGenerator(config)
    if config is None or isinstance(config, GeneratorConfig):
        return Generator(config, fold_upsample)
    d = dict(config)
    arch = d.pop("arch", "unet")
    if arch == reference.ARCH:
        return reference.DemucsGenerator(reference.DemucsConfig.from_dict({**d, "arch": arch}))
    if arch == spectral.ARCH:
        return spectral.SpectralGenerator(spectral.SpectralConfig.from_dict({**d, "arch": arch}))
    if arch != "unet":
        raise ValueError(f"generator arch must be one of {ARCHS}, got {arch!r}")
    return Generator(GeneratorConfig.from_dict(d), fold_upsample)
