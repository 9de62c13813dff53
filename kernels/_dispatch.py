"""One fused call's launches: the forward and backward of either layer kind on the kernel family its
shape takes, and the plans that replay a call signature's launches with only the tensors bound
(``_launch.Plan``). Plans are kept per options value (``_plan_sets``): switching options switches
dicts, so a plan key holds only what a call's launches depend on besides its tensors' addresses."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import torch

from . import _launch
from . import _options
from ._common import _dims, _Dims, _Geom, _opt, _use_thin
from ._options import Options
from .gemm import _gemm_weight, _mm
from .grad_w import _launch_dw
from .thin import _thin_bwd, _thin_bwd_split, _thin_fwd, _thin_split

log = logging.getLogger(__name__)

_PLANS_MAX = 4096
_plan_sets: dict[Options, dict[tuple, _launch.Plan]] = {}
_plan_opts: Options | None = None  # the options _plan_dict belongs to (compared by identity per call)
_plan_dict: dict[tuple, _launch.Plan] = {}
_replay_ok = True  # False once this Triton's launcher refused a direct call: plans off for the process


def plans() -> dict[tuple, _launch.Plan]:
    """The plans recorded under the current options (equal options share them)."""
    global _plan_opts, _plan_dict
    o = _options._current
    if o is not _plan_opts:
        _plan_dict = _plan_sets.setdefault(o, {})
        _plan_opts = o
    return _plan_dict


@contextlib.contextmanager
def plans_set_aside() -> Iterator[None]:
    """Inside: no plan recorded before is seen, and none recorded inside is kept afterwards."""
    global _plan_sets, _plan_opts, _plan_dict
    saved = _plan_sets, _plan_opts, _plan_dict
    _plan_sets, _plan_opts, _plan_dict = {}, None, {}
    try:
        yield
    finally:
        _plan_sets, _plan_opts, _plan_dict = saved


def _replaying() -> bool:
    """Whether plans may be replayed now: not while a config is pinned (tests) or precompile runs (its
    launches only compile). A plan exists only where launches were compiled and real (_recordable)."""
    return _options._current.plans and _replay_ok and not _launch._pinned and _launch._compile_hook is None


def _recordable() -> bool:
    """Plans are recorded only where launches are compiled and direct: not under the interpreter."""
    return not _launch.interpreting() and _launch._direct_enabled()


_REFUSED = (ImportError, AttributeError, TypeError, KeyError)  # what a launcher of another interface raises


def _replay(plan: _launch.Plan, tensors: tuple) -> bool:
    """Launch ``plan`` with this call's tensors; False (the caller takes the full path) if it does not
    fit them, or (plans then off for the process) if this Triton's launcher refuses the direct call."""
    try:
        return plan.run_fn(tensors)
    except _REFUSED as e:
        _refused(e)
        return False


def _refused(e: Exception) -> None:
    global _replay_ok
    _replay_ok = False
    log.warning("selfonn.kernels: plan replay unavailable (%r); launching through the full path", e)


def _keep(plans: dict, key: tuple, plan: _launch.Plan | None) -> _launch.Plan | None:
    """``plan`` kept under ``key`` (and returned), or None where it is not kept."""
    # Inside a CUDA graph capture an untuned key runs its first candidate, untuned: replaying that
    # forever would skip the tuning of the next eager call, so a plan recorded there is not kept.
    if plan is not None and not (plan.device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
        if len(plans) >= _PLANS_MAX:
            plans.clear()
        plans[key] = plan
        return plan
    return None


def _macs(d: _Dims) -> int:
    return d.B * d.L_out * d.C_out * d.CQG * d.K


def _packs(d: _Dims, g: _Geom) -> bool:
    """Whether the GEMM kernels get W repacked (a fresh tensor per call, so a plan role of its own)."""
    return not _use_thin(d, g) and _macs(d) >= _opt().pack_min_macs


def _recording(key: tuple | None):
    return _launch.recording() if key is not None else contextlib.nullcontext([])


_FRESH = ("y", "dx", "dw", "db", "wp")  # roles a call allocates itself (aligned: not checked per call)
_tf32 = torch._C._get_cudnn_allow_tf32  # torch.backends.cudnn.allow_tf32 without the module attribute lookup


def _forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, g: _Geom) -> torch.Tensor:
    """y of either layer kind. A call signature seen before replays its plan; the first records it."""
    return _forward_planned(x, weight, bias, g)[0]


def _forward_planned(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, g: _Geom,
                     validate: Callable[[], object] | None = None) -> tuple[torch.Tensor, _launch.Plan | None]:
    """(y, the plan it replayed or recorded, if any): the autograd Function hands the plan to its
    backward, which finds its own plan through it by a short key. ``validate`` (the caller's operand
    check) runs unless a plan replays: a plan is recorded only after it passed for that signature,
    and its key holds every property of the operands it checks (shapes, dtypes, devices)."""
    key = plan_dict = None
    o = _options._current
    if o.plans and _replay_ok and not _launch._pinned and _launch._compile_hook is None:  # _replaying()
        plan_dict = _plan_dict if o is _plan_opts else plans()
        # everything the launches depend on besides the tensors' addresses and the options
        key = (g, x.shape, x.stride(), x.dtype, x.device, weight.shape, weight.stride(), weight.dtype, weight.device,
               None if bias is None else (bias.shape, bias.stride(), bias.dtype, bias.device), _tf32())
        plan = plan_dict.get(key)
        if plan is not None:
            y_shape, packs, d = plan.data
            y = x.new_empty(*y_shape)  # ints: a Size or tuple argument costs the parser a microsecond more
            try:  # _replay inline
                if plan.run_fn((x, weight, bias, y, _gemm_weight(weight, d, g, _macs(d))[0] if packs else None)):
                    return y, plan
            except _REFUSED as e:
                _refused(e)
        elif not _recordable():
            key = None
    if validate is not None:
        validate()
    d = _dims(x, weight, g)
    if bias is not None and bias.shape[0] != d.C_out:
        raise ValueError(f"bias has {bias.shape[0]} entries, expected out_channels={d.C_out}")
    y = x.new_empty((d.B, d.C_out, d.L_out))
    with _recording(key) as launches:
        w = weight
        if _use_thin(d, g):
            _thin_fwd(x, weight, bias, y, d, g)
        else:
            w, sw = _gemm_weight(weight, d, g, _macs(d))
            kind = "scatter" if g.transposed else "gather"
            _mm(kind, x, w, sw, None, bias, y, L_A=d.L_in, L_OUT=d.L_out, N_OUT=d.OG, n_red=d.C_in,
                n_bg=d.B * g.groups, d=d, g=g, pow_a=True)
        plan = None
        if key is not None:  # roles in the order _replay passes them
            roles = {"x": x, "w": weight, "b": bias, "y": y, "wp": w if w is not weight else None}
            plan = _keep(plan_dict, key, _launch.Plan.of(launches, roles, x.device,
                                                         ((d.B, d.C_out, d.L_out), _packs(d, g), d), fresh=_FRESH))
    return y, plan


def _grads(x: torch.Tensor, weight: torch.Tensor, dy: torch.Tensor, C_out: int, need_x: bool, need_w: bool,
           need_b: bool):
    dx = torch.empty_like(x, memory_format=torch.contiguous_format) if need_x else None
    dw = torch.empty_like(weight, memory_format=torch.contiguous_format) if need_w else None
    db = dy.new_empty(C_out) if need_b else None
    return dx, dw, db


def _backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, g: _Geom, need_x: bool, need_w: bool,
              need_b: bool, fplan: _launch.Plan | None = None):
    """(dx, dW, dbias), None where not needed; dW in W's dtype, dbias in dy's. Plans as in _forward;
    ``fplan``, the plan of the forward this backward belongs to, holds this one's under a short key
    (``dy`` has the forward output's shape, ``x`` and ``W`` are the forward's own tensors)."""
    key = plan_dict = None
    o = _options._current
    if (need_x or need_w or need_b) and o.plans and _replay_ok and not _launch._pinned \
            and _launch._compile_hook is None:  # _replaying()
        short = (id(o), dy.stride(), dy.dtype, need_x, need_w, need_b, _tf32()) if fplan is not None else None
        linked = fplan.after.get(short) if fplan is not None else None
        if linked is not None and linked[0] is o:
            plan = linked[1]
        else:
            plan_dict = _plan_dict if o is _plan_opts else plans()
            key = (g, x.shape, x.stride(), x.dtype, x.device, weight.shape, weight.stride(), weight.dtype,
                   dy.shape, dy.stride(), dy.dtype, need_x, need_w, need_b, _tf32())
            plan = plan_dict.get(key)
            if plan is not None and fplan is not None:
                fplan.after[short] = (o, plan)  # the options value kept alive with its id
        if plan is not None:
            d, packs = plan.data
            dx = torch.empty_like(x, memory_format=torch.contiguous_format) if need_x else None
            dw = torch.empty_like(weight, memory_format=torch.contiguous_format) if need_w else None
            db = dy.new_empty(d.C_out) if need_b else None
            try:  # _replay inline
                if plan.run_fn((x, weight, dy, dx, dw, db, _gemm_weight(weight, d, g, _macs(d))[0] if packs else None)):
                    return dx, dw, db
            except _REFUSED as e:
                _refused(e)
        elif not _recordable():
            key = None
    d = _dims(x, weight, g)
    dx, dw, db = _grads(x, weight, dy, d.C_out, need_x, need_w, need_b)
    if not (need_x or need_w or need_b):
        return dx, dw, db
    with _recording(key) as launches:
        w = weight
        thin = _use_thin(d, g)
        if thin and _thin_split(dy, x, weight, dx, dw, db, d, g):
            _thin_bwd_split(dy, x, weight, dx, dw, db, d, g)
        elif thin:
            _thin_bwd(dy, x, weight, dx, dw, db, d, g)
        else:
            if need_x:
                w, sw = _gemm_weight(weight, d, g, _macs(d))
                kind = "gather" if g.transposed else "scatter"
                _mm(kind, dy, w, sw, x, None, dx, L_A=d.L_out, L_OUT=d.L_in, N_OUT=d.C_in, n_red=d.C_out, n_bg=d.B,
                    d=d, g=g, pow_a=False)
            if need_w or need_b:
                _launch_dw(x, dy, dw, db, d, g)
        if key is not None:  # roles in the order _replay passes them
            roles = {"x": x, "w": weight, "dy": dy, "dx": dx, "dw": dw, "db": db, "wp": w if w is not weight else None}
            plan = _keep(plan_dict, key, _launch.Plan.of(launches, roles, x.device, (d, need_x and _packs(d, g)),
                                                         fresh=_FRESH))
            if plan is not None and fplan is not None:
                fplan.after[(id(o), dy.stride(), dy.dtype, need_x, need_w, need_b, _tf32())] = (o, plan)
    return dx, dw, db
