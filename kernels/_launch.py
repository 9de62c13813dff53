"""Lean launching for the Self-ONN kernels: one tune per shape key, then a direct launch.

``triton.autotune`` re-runs its key function, pre-hooks and Triton's argument binder on every call
(tens of microseconds of Python for a kernel with ~40 arguments). Here each kernel is a
:class:`Kernel`: the first call for a *tune key* (geometry, channels, dtype, precision, a
power-of-two size bucket) benchmarks the candidate configs once (GPU only) and remembers the winner;
the first call for a *launch key* (tune key + the runtime ints + each pointer's 16-byte alignment,
i.e. everything Triton's specialisation can depend on) goes through the JIT once and keeps the
compiled kernel; every later call launches that compiled kernel directly (``CompiledKernel.run``),
skipping the binder. Lengths are ``do_not_specialize`` in every kernel but one (grad_W's reduction
length, whose 16-divisibility lets the contiguous operand's masked loads vectorise), and strides are
specialised (16-divisibility keeps vectorised loads), so a new length compiles at most a few variants
per bucket (``L % 16 == 0`` or not), each once; other new lengths cost one pass through the JIT's binder.

Programs are numbered on one 1-D index that :func:`fold_grid` spreads over CUDA grid axes 0 and 1
(axis 0 holds up to ``_GRID_X_MAX``): grid axes 1 and 2 are limited to 65535, so no kernel puts a
batch- or length-dependent count there.

Under ``TRITON_INTERPRET=1`` nothing is tuned or launched directly: the kernel runs through the
interpreter with the pinned config (:func:`pin`, for tests) or the smallest candidate.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import triton

log = logging.getLogger(__name__)

# CUDA's limits: grid axis 0 up to 2^31 - 1 blocks, axes 1 and 2 up to 65535 (patched by tests).
_GRID_X_MAX = 2**31 - 1
_GRID_YZ_MAX = 65535


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _interpreter_numpy_compat() -> bool:
    """Let Triton <= 3.6's interpreter run under NumPy >= 2.4 (torch 2.11's Triton with a new NumPy).

    Its scalars are one-element arrays and it turns them into loop bounds with ``int(array)``, which
    NumPy 2.4 refuses ("only 0-dimensional arrays can be converted"); Triton 3.8 squeezes first.
    Wraps the interpreter's tensor patching to squeeze the same way. True when it applied."""
    try:
        from triton.runtime import interpreter
    except ImportError:
        return False
    patch = getattr(interpreter, "_patch_lang_tensor", None)
    if patch is None or getattr(patch, "_selfonn_compat", False):
        return False
    try:
        if ".squeeze()" in inspect.getsource(patch):
            return False  # a Triton that already does it
    except (OSError, TypeError):
        return False

    def patched(tensor, scope) -> None:
        patch(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    patched._selfonn_compat = True
    interpreter._patch_lang_tensor = patched
    return True


if interpreting():
    _interpreter_numpy_compat()


def fold_grid(n_programs: int) -> tuple[int, int, int]:
    """A 3-D launch grid for ``n_programs`` programs numbered ``pid = pid_y * grid_x + pid_x``.

    Kernels read the index with ``_program_index()`` and return early when it is ``>= n_programs``
    (only the last row of a folded grid has such programs)."""
    if n_programs < 1:
        raise ValueError(f"a launch needs at least one program, got {n_programs}")
    gx = min(n_programs, _GRID_X_MAX)
    gy = -(-n_programs // gx)
    if gy > _GRID_YZ_MAX:
        raise ValueError(f"{n_programs} programs exceed the CUDA grid ({_GRID_X_MAX} x {_GRID_YZ_MAX})")
    return gx, gy, 1


@dataclass(frozen=True)
class Cfg:
    """One launch configuration: constexpr block sizes plus warps and pipeline stages.

    ``host``: settings the launcher reads and the kernel never sees (grad_W's split of its reduction
    over programs). The tuner times configs that differ only there side by side like any other; they
    share one compiled kernel, so they cost benchmark time, not compiles."""

    blocks: tuple[tuple[str, int], ...]
    num_warps: int = 4
    num_stages: int = 3
    host: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", dict(self.blocks))  # read on every launch
        object.__setattr__(self, "host_kw", dict(self.host))

    @staticmethod
    def of(num_warps: int = 4, num_stages: int = 3, **blocks: int) -> Cfg:
        return Cfg(tuple(sorted(blocks.items())), num_warps, num_stages)

    def with_host(self, **host: int) -> Cfg:
        """This config with launcher settings ``host`` added (replacing any of the same name)."""
        return replace(self, host=tuple(sorted({**self.host_kw, **host}.items())))

    def __getitem__(self, name: str) -> int:
        return self.kwargs[name]


# ---- tuned picks on disk ---------------------------------------------------------------------------
#
# A new process would benchmark every tune key's candidates again (an Op-GAN step: ~550 grad_W
# candidates a precision, seconds on the first step). Picks are kept per GPU model and code version
# (the kernel sources, torch and Triton) in one JSON file, and a pick is only used while it is still
# one of its key's candidates.


def tune_cache_dir() -> Path | None:
    """Where picks are kept: ``SELFONN_TUNE_CACHE`` (a folder; "0" or empty: nowhere), by default
    ``~/.cache/selfonn/tune``."""
    value = os.environ.get("SELFONN_TUNE_CACHE")
    if value is None:
        return Path.home() / ".cache" / "selfonn" / "tune"
    return Path(value) if value not in ("", "0") else None


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    """The kernel sources, torch and Triton: a pick is reused only with the code that measured it."""
    h = hashlib.sha256(f"{torch.__version__} {triton.__version__}".encode())
    for name in sorted(os.listdir(os.path.dirname(__file__))):
        if name.endswith(".py"):
            with open(os.path.join(os.path.dirname(__file__), name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:16]


def _device_tag() -> str:
    """The GPU model picks were measured on (one file per model)."""
    major, minor = torch.cuda.get_device_capability()
    name = "".join(ch if ch.isalnum() else "-" for ch in torch.cuda.get_device_name())
    return f"{name}-sm{major}{minor}"


def _cfg_json(cfg: Cfg) -> dict:
    return {"blocks": [list(b) for b in cfg.blocks], "num_warps": cfg.num_warps, "num_stages": cfg.num_stages,
            "host": [list(h) for h in cfg.host]}


def _cfg_from_json(d: dict) -> Cfg:
    return Cfg(tuple((str(k), v) for k, v in d["blocks"]), int(d["num_warps"]), int(d["num_stages"]),
               tuple((str(k), v) for k, v in d.get("host", [])))


class TuneCache:
    """Picks of :meth:`Kernel.select` on disk: ``{kernel: {repr(tune key): cfg}}`` in one file per GPU
    model and code version. Unreadable files and entries are ignored (tuning runs again); writes
    replace the file atomically, so concurrent processes lose at most each other's new picks."""

    def __init__(self) -> None:
        self._loaded: dict[Path, dict] = {}
        self._lock = threading.Lock()

    def path(self) -> Path | None:
        """This GPU model's file, None when off or without a CUDA device to name (or a home folder)."""
        try:
            folder = tune_cache_dir()
            if folder is None or not torch.cuda.is_available():
                return None
            return folder / f"tune-{_device_tag()}-{_code_version()}.json"
        except (RuntimeError, AssertionError, KeyError, OSError) as e:
            log.debug("selfonn.kernels: no tuning cache: %s", e)
            return None

    def _data(self, path: Path) -> dict:
        if path not in self._loaded:
            try:
                data = json.loads(path.read_text())
                self._loaded[path] = data if isinstance(data, dict) else {}
            except FileNotFoundError:
                self._loaded[path] = {}
            except (OSError, ValueError) as e:
                log.warning("selfonn.kernels: ignoring the tuning cache %s (%s)", path, e)
                self._loaded[path] = {}
        return self._loaded[path]

    def get(self, kernel: str, key: tuple) -> Cfg | None:
        path = self.path()
        if path is None:
            return None
        with self._lock:
            entry = self._data(path).get(kernel, {}).get(repr(key))
        try:
            return None if entry is None else _cfg_from_json(entry)
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, kernel: str, key: tuple, cfg: Cfg) -> None:
        path = self.path()
        if path is None:
            return
        with self._lock:
            data = self._data(path)
            data.setdefault(kernel, {})[repr(key)] = _cfg_json(cfg)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(data, indent=0, sort_keys=True))
                os.replace(tmp, path)
            except OSError as e:  # a read-only home: tuning still works, it is just not kept
                log.warning("selfonn.kernels: cannot keep tuned configs in %s (%s)", path, e)


_tune_cache = TuneCache()


# A call's work for one config: the kernel arguments (without the config's block sizes) and the
# number of programs. Called once per candidate while tuning and once per launch.
Prepare = Callable[[Cfg], tuple[dict, int]]
# The candidate configs of a call, built only when its tune key is new (pruning costs host time).
Candidates = Callable[[], Sequence[Cfg]]

_pinned: dict[str, Cfg] = {}


@contextlib.contextmanager
def async_compiles(workers: int) -> Iterator[bool]:
    """Inside: Triton JIT compiles (e.g. ``warmup``) go to a pool of ``workers`` threads; on exit they
    are waited for. Yields False (and compiles stay serial) without ``triton.AsyncCompileMode``.

    Triton resets its active mode at the end of ``AsyncCompileMode.__exit__``; an exception raised
    while that waits (a SIGALRM deadline, Ctrl-C) would skip the reset and leave every later compile
    of the process queued on a shut-down pool, so the reset is repeated here whatever happens."""
    mode_cls = getattr(triton, "AsyncCompileMode", None)
    if mode_cls is None:
        yield False
        return
    from triton.runtime import _async_compile

    pool = ThreadPoolExecutor(workers, thread_name_prefix="selfonn-compile")
    mode = mode_cls(pool, ignore_errors=True)
    try:
        with mode:
            yield True
    finally:
        if _async_compile.active_mode.get() is mode:
            _async_compile.active_mode.set(None)
        pool.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def pin(name: str, cfg: Cfg) -> Iterator[None]:
    """Force kernel ``name`` to run with ``cfg`` (no tuning, no cache): how tests reach every config."""
    previous = _pinned.get(name)
    _pinned[name] = cfg
    try:
        yield
    finally:
        if previous is None:
            _pinned.pop(name, None)
        else:
            _pinned[name] = previous


_PAR_COMPILE_MAX = 16  # compile threads per tune key (one per candidate at most)
# Benchmark time per candidate (ms of kernel time; do_bench also flushes L2 between runs). A key has
# up to ~50 candidates (grad_W's tiles x its split settings): 8 ms is still 25-160 runs of the
# 0.05-0.3 ms kernels the Op-GAN's layers launch, and a first step tunes in seconds, not a minute.
_BENCH_WARMUP_MS = 2
_BENCH_REP_MS = 8
_COMPILED_MAX = 4096  # launch-key entries kept per kernel (one per distinct stride set, e.g. length)


def _direct_enabled() -> bool:
    return os.environ.get("SELFONN_DIRECT_LAUNCH", "1") != "0"


class Kernel:
    """A ``@triton.jit`` kernel with per-key tuned configs and cached compiled kernels."""

    def __init__(self, name: str, fn) -> None:
        self.name = name
        self.fn = fn
        params = inspect.signature(getattr(fn, "fn", fn)).parameters
        self.arg_names = list(params)
        # Runtime (non-constexpr) arguments: the ones whose values Triton specialises on.
        self.runtime_names = [n for n, p in params.items() if "constexpr" not in str(p.annotation)]
        self.tuned: dict[tuple, Cfg] = {}
        # every benchmarked candidate's median ms per tune key (the GPU round records them)
        self.timings: dict[tuple, list[tuple[Cfg, float]]] = {}
        self.compiled: dict[tuple, object] = {}
        self._tensor_names: list[str] | None = None  # runtime arguments split by kind on the first launch
        self._int_names: list[str] = []
        self.direct_ok = _direct_enabled()
        self.n_tunes = 0  # how many keys were benchmarked (tests read it)

    # ---- config selection ------------------------------------------------------------------
    def select(self, tune_key: tuple, candidates: Candidates | Sequence[Cfg], prepare: Prepare) -> Cfg:
        pinned = _pinned.get(self.name)
        if pinned is not None:
            return pinned
        cfg = self.tuned.get(tune_key)
        if cfg is not None:
            return cfg
        candidates = candidates() if callable(candidates) else candidates
        if len(candidates) == 1:
            self.tuned[tune_key] = candidates[0]  # nothing to tune: keep it (pruning costs host time)
            return candidates[0]
        if not self.tuning_enabled():
            return candidates[0]
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            return candidates[0]  # no benchmarking inside a CUDA graph capture: heuristic pick, not cached
        kept = self._kept(tune_key, candidates)
        if kept is not None:
            self.tuned[tune_key] = kept
            return kept
        self._precompile(candidates, prepare)
        timings = [(self._bench(cfg, prepare), i) for i, cfg in enumerate(candidates)]
        best = candidates[min(timings)[1]]
        self.tuned[tune_key] = best
        self.timings[tune_key] = [(cfg, ms) for cfg, (ms, _) in zip(candidates, timings)]
        self.n_tunes += 1
        if min(timings)[0] != float("inf"):
            _tune_cache.put(self.name, tune_key, best)
        log.debug("selfonn.kernels: %s %s -> %s (%s)", self.name, tune_key, best, timings)
        return best

    def _kept(self, tune_key: tuple, candidates: Sequence[Cfg]) -> Cfg | None:
        """The pick an earlier process measured for this key on this GPU model and code (the tuning
        cache), if it is still one of the candidates."""
        cfg = _tune_cache.get(self.name, tune_key)
        return next((c for c in candidates if c == cfg), None) if cfg is not None else None

    def configs_to_compile(self, tune_key: tuple, candidates: Candidates | Sequence[Cfg]) -> list[Cfg]:
        """The configs a call with ``tune_key`` would compile: the pinned, tuned or kept one (the
        tuning cache), else what :meth:`select` would benchmark (every candidate) or pick (the first)."""
        pinned = _pinned.get(self.name) or self.tuned.get(tune_key)
        if pinned is not None:
            return [pinned]
        cands = list(candidates() if callable(candidates) else candidates)
        if not self.tuning_enabled():
            return cands[:1]
        kept = None if offline() else self._kept(tune_key, cands)
        return [kept] if kept is not None else cands

    @staticmethod
    def tuning_enabled() -> bool:
        """Benchmark candidates on a GPU unless ``SELFONN_TUNE=0`` (then: the first candidate)."""
        return not interpreting() and os.environ.get("SELFONN_TUNE", "1") != "0"

    def _precompile(self, candidates: Sequence[Cfg], prepare: Prepare) -> int:
        """Compile every candidate at once on a thread pool before benchmarking them one by one.

        Tuning compiles each candidate anyway; serially that is most of a first step's time on a GPU
        (about half a second per variant, up to 10 variants per key). Triton's compiler releases the
        GIL (MLIR passes, ptxas), so threads overlap: `python bench/compile_speed.py` gives 1.96x on
        2 CPUs for gen.up2's 27 fwd+bwd variants (23.3 s -> 11.9 s for sm_90).
        Needs ``triton.AsyncCompileMode`` (Triton >= 3.5); otherwise, or with ``SELFONN_PAR_COMPILE=0``,
        the benchmark compiles serially as before. Returns the number of variants submitted."""
        workers = min(len(candidates), os.cpu_count() or 1, _PAR_COMPILE_MAX)
        if workers < 2 or interpreting() or os.environ.get("SELFONN_PAR_COMPILE", "1") == "0":
            return 0
        submitted = 0
        try:
            with async_compiles(workers) as on:
                if not on:
                    return 0
                for cfg in candidates:
                    try:
                        self.warmup(cfg, prepare)
                        submitted += 1
                    except Exception as e:  # a variant that cannot compile is benchmarked as inf later
                        log.debug("selfonn.kernels: precompile of %s %s failed: %s", self.name, cfg, e)
        except RuntimeError as e:  # e.g. the caller already runs an AsyncCompileMode
            log.debug("selfonn.kernels: parallel precompile of %s skipped: %s", self.name, e)
        return submitted

    def warmup(self, cfg: Cfg, prepare: Prepare):
        """Compile, without launching, this kernel for ``cfg`` and a call's arguments. Returns Triton's
        compiled kernel (a future of it while an async compile mode is active)."""
        args, n = prepare(cfg)
        return self.fn.warmup(grid=fold_grid(n), **args, **cfg.kwargs, num_warps=cfg.num_warps,
                              num_stages=cfg.num_stages)

    def _bench(self, cfg: Cfg, prepare: Prepare) -> float:
        args, n = prepare(cfg)
        grid = fold_grid(n)
        kw = {**args, **cfg.kwargs, "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
        try:
            return bench_ms(lambda: self.fn[grid](**kw))
        except Exception as e:  # a config that does not fit the device (shared memory, registers)
            log.debug("selfonn.kernels: %s config %s failed: %s", self.name, cfg, e)
            return float("inf")

    # ---- launch ------------------------------------------------------------------------------
    def __call__(self, device: torch.device, tune_key: tuple, candidates: Candidates | Sequence[Cfg],
                 prepare: Prepare) -> None:
        if device.type == "cuda" and device.index is not None and device.index != torch.cuda.current_device():
            with torch.cuda.device(device):
                return self._launch(tune_key, candidates, prepare)
        return self._launch(tune_key, candidates, prepare)

    def _launch(self, tune_key: tuple, candidates: Candidates | Sequence[Cfg], prepare: Prepare) -> None:
        if _compile_hook is not None:  # selfonn.kernels.precompile: compile what this call would run, launch nothing
            _note(None)
            return _compile_hook(self, self.configs_to_compile(tune_key, candidates), prepare)
        cfg = self.select(tune_key, candidates, prepare)
        args, n = prepare(cfg)
        grid = fold_grid(n)
        if interpreting():
            # The interpreter drops unknown keywords silently; a compiled launch would reject them.
            given = set(args) | set(cfg.kwargs)
            if given != set(self.arg_names):
                raise TypeError(f"{self.name}: arguments {sorted(given ^ set(self.arg_names))} do not match the kernel")
            self.fn[grid](**args, **cfg.kwargs)
            _note(None)
            return
        launch_key = None
        if self.direct_ok and _pinned.get(self.name) is None:
            launch_key = (_current_device(), tune_key, cfg, *self.launch_key(args))
            ck = self.compiled.get(launch_key)
            if ck is not None and self._direct(ck, grid, args, cfg):
                _note((self, ck, grid, args, cfg))
                return
        try:
            ck = self._jit(grid, args, cfg)
        except triton.runtime.errors.OutOfResources as e:  # e.g. fp64 tiles past the shared memory
            cands = list(candidates() if callable(candidates) else candidates)
            later = cands[cands.index(cfg) + 1:] if cfg in cands else []
            if not later or _pinned.get(self.name) is not None:
                raise
            log.info("selfonn.kernels: %s %s does not fit (%s); trying the next config", self.name, cfg, e)
            self.tuned.pop(tune_key, None)
            return self._launch(tune_key, later, prepare)
        if launch_key is not None and ck is not None:
            ck = ck.result() if hasattr(ck, "result") else ck
            if hasattr(ck, "packed_metadata"):
                if len(self.compiled) >= _COMPILED_MAX:
                    self.compiled.clear()
                self.compiled[launch_key] = ck
                _note((self, ck, grid, args, cfg))
                return
        _note(None)

    def ordered(self, args: dict, cfg: Cfg) -> list:
        """Every argument of a launch, the config's block sizes included, in the kernel's signature order
        (what a compiled kernel's launcher takes)."""
        merged = {**args, **cfg.kwargs}
        return [merged[k] for k in self.arg_names]

    def _jit(self, grid: tuple, args: dict, cfg: Cfg):
        """Launch through Triton's JIT (binder, cache lookup, compile on a miss); returns the compiled kernel."""
        return self.fn[grid](**args, **cfg.kwargs, num_warps=cfg.num_warps, num_stages=cfg.num_stages)

    def launch_key(self, args: dict) -> tuple[tuple, tuple]:
        """What decides Triton's specialisation of a call: the runtime ints themselves (so a cached
        compiled kernel is reused only for the very values it was compiled for; a new length costs
        one pass through the JIT, never a compile by itself) and each pointer's 16-byte alignment."""
        if self._tensor_names is None:
            self._tensor_names = [k for k in self.runtime_names if isinstance(args[k], torch.Tensor)]
            self._int_names = [k for k in self.runtime_names if k not in self._tensor_names]
        ints = tuple(map(args.__getitem__, self._int_names))
        return ints, tuple([args[k].data_ptr() % 16 == 0 for k in self._tensor_names])

    def _direct(self, ck, grid, args: dict, cfg: Cfg) -> bool:
        """Launch a cached compiled kernel without Triton's binder (what ``JITFunction.run`` does
        after its cache hit). False (and direct launching off for this kernel) if this Triton
        does not have the expected launcher interface."""
        try:
            run_compiled(ck, grid, self.ordered(args, cfg))
            return True
        except (ImportError, AttributeError, TypeError, KeyError) as e:
            log.warning("selfonn.kernels: direct launch of %s unavailable (%s); using Triton's JIT path", self.name, e)
            self.direct_ok = False
            return False


def bench_ms(fn: Callable[[], None]) -> float:
    """Median device ms of ``fn`` (launches on the current stream) as the tuner times candidates."""
    return triton.testing.do_bench(fn, warmup=_BENCH_WARMUP_MS, rep=_BENCH_REP_MS, return_mode="median")


def run_compiled(ck, grid: tuple[int, int, int], vals: list) -> None:
    """Launch compiled kernel ``ck`` on the current stream with every argument in signature order
    (constexprs included), as ``JITFunction.run`` does after its cache hit."""
    knobs, driver = _runtime()
    stream = driver.active.get_current_stream(driver.active.get_current_device())
    enter = knobs.runtime.launch_enter_hook
    meta = ck.launch_metadata(grid, stream, *vals) if enter is not None else None
    ck.run(grid[0], grid[1], grid[2], stream, ck.function, ck.packed_metadata, meta, enter,
           knobs.runtime.launch_exit_hook, *vals)


# Set by selfonn.kernels.precompile while it runs: every launch calls it (kernel, configs, prepare) instead.
_compile_hook: Callable[[Kernel, list[Cfg], Prepare], None] | None = None
# Set by selfonn.kernels.precompile(target=...): compile for that GPU from CPU tensors, without one.
_offline_sms: int | None = None


def _current_device() -> int:
    return torch.cuda.current_device()


def offline() -> bool:
    """True while kernels are compiled for a GPU this process does not have (CPU tensors stand in)."""
    return _offline_sms is not None


_rt: tuple | None = None


def _runtime():
    """Triton's launch hooks and driver (``triton.knobs`` exists from Triton 3.4; older: no direct launch)."""
    global _rt
    if _rt is None:
        from triton import knobs
        from triton.runtime import driver

        _rt = (knobs, driver)
    return _rt


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of ``device`` (4 under the interpreter: enough to exercise splits;
    the target's count when compiling offline)."""
    if device.type != "cuda":
        return _offline_sms or 4
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


_sm_cache: dict[int, int] = {}


def _sm_count(index: int) -> int:
    if index not in _sm_cache:
        _sm_cache[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _sm_cache[index]


_counters: dict[torch.device, torch.Tensor] = {}
_retired: list[torch.Tensor] = []  # outgrown buffers stay alive: a captured CUDA graph may point at them


def counters(device: torch.device, n: int) -> torch.Tensor:
    """``n`` int32 arrival counters, all zero, for in-kernel ordered reductions.

    Kernels reset every counter they use before exiting, so one zeroed buffer per device is reused
    by every launch on that device's stream order. Inside a CUDA graph capture a buffer too small to
    reuse is allocated fresh (its zero fill becomes part of the graph) and not kept."""
    buf = _counters.get(device)
    if buf is not None and buf.numel() >= n:
        return buf
    fresh = torch.zeros(max(n, 1024), device=device, dtype=torch.int32)
    if not (device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
        if buf is not None:
            _retired.append(buf)
        _counters[device] = fresh
    return fresh


# ---- plans: a call signature's launches, bound once -----------------------------------------------
#
# Even the direct path rebuilds every launch's ~40 arguments per call (shapes, strides, block counts,
# split sizes), which costs more host time than a small layer's kernels take on the GPU. A *plan*
# records the launches one op call made (:func:`recording`) and keeps them as :class:`Bound` steps:
# every argument but the tensors fixed, each tensor argument named by the *role* it played in the
# call (``"x"``, ``"y"``, ...), a fresh scratch buffer or the arrival counters. A later call with the
# same signature (shapes, strides, dtypes, devices, options) fills in its own tensors and launches.

_tls = threading.local()  # .launches: the recording list of this thread; .scratch: ids of its scratch buffers


def _note(launch: tuple | None) -> None:
    """Record one launch (kernel, compiled kernel, grid, args, cfg), or None for one a plan cannot replay."""
    launches = getattr(_tls, "launches", None)
    if launches is not None:
        launches.append(launch)


@contextlib.contextmanager
def recording() -> Iterator[list]:
    """Inside: every kernel launch of this thread is appended to the yielded list (None where it
    cannot be replayed: the interpreter, a pinned config, precompile, a launch without a compiled kernel)."""
    previous = getattr(_tls, "launches", None)
    _tls.launches = []
    if previous is None:
        _tls.scratch = set()
    try:
        yield _tls.launches
    finally:
        _tls.launches = previous


@contextlib.contextmanager
def recording_paused() -> Iterator[None]:
    """Inside: this thread's launches join no recording (a launch path timed while a plan records)."""
    previous = getattr(_tls, "launches", None)
    _tls.launches = None
    try:
        yield
    finally:
        _tls.launches = previous


def scratch(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised work buffer a kernel fully writes before reading (split partials): a plan
    allocates a fresh one per call instead of binding this one."""
    t = torch.empty(numel, device=device, dtype=dtype)
    if getattr(_tls, "launches", None) is not None:
        _tls.scratch.add(id(t))
    return t


_workspaces: dict[tuple, torch.Tensor] = {}


def workspace(device: torch.device, dtype: torch.dtype, numel: int, slot: int) -> torch.Tensor:
    """A work buffer of at least ``numel`` elements that plans bind for good (slot ``slot`` of a launch:
    a launch's scratch buffers get distinct slots). Safe as the counters are: launches run in stream
    order and each fully writes its scratch before reading it. Outgrown buffers stay alive (plans and
    captured CUDA graphs point at them), so growth at least doubles; one grown inside a capture is
    not kept."""
    key = (device, dtype, slot)
    buf = _workspaces.get(key)
    if buf is not None and buf.numel() >= numel:
        return buf
    fresh = torch.empty(max(numel, 2 * buf.numel() if buf is not None else 1024), device=device, dtype=dtype)
    if not (device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
        if buf is not None:
            _retired.append(buf)
        _workspaces[key] = fresh
    return fresh


class Bound:
    """One recorded launch with everything but the call's own tensors fixed (a plan step). Its scratch
    buffers are bound to the shared :func:`workspace` and its arrival counters to the counters buffer
    of the time (kernels leave counters zero, and outgrown buffers are never freed)."""

    __slots__ = ("ck", "grid", "vals", "roles")

    def __init__(self, ck, grid: tuple, vals: list, roles: tuple) -> None:
        self.ck, self.grid, self.vals = ck, grid, vals
        self.roles = roles  # (position, index of the role in the plan's order): the call's own tensors

    @staticmethod
    def of(launch: tuple, roles: dict[str, torch.Tensor], order: tuple[str, ...]) -> Bound | None:
        """Bind a recorded launch to ``roles`` (numbered by their place in ``order``). None if one of
        its tensors is neither a role, nor the counters, nor :func:`scratch` (then a later call could
        not rebuild it)."""
        kernel, ck, grid, args, cfg = launch
        vals = kernel.ordered(args, cfg)
        by_id = {id(t): order.index(r) for r, t in roles.items() if t is not None}
        bound, slot = [], 0
        for i, v in enumerate(vals):
            if not isinstance(v, torch.Tensor):
                continue
            role = by_id.get(id(v))
            if role is not None:
                bound.append((i, role))
                vals[i] = None  # the template keeps no tensor of a call alive
            elif any(v is c for c in _counters.values()):
                pass  # the counters: kept as they are
            elif id(v) in getattr(_tls, "scratch", ()):
                vals[i] = workspace(v.device, v.dtype, v.numel(), slot)
                slot += 1
            else:
                return None
        return Bound(ck, grid, vals, tuple(bound))


class Plan:
    """The launches of one op call signature, replayed with another call's tensors.

    Roles are named when the plan is made (``order``) and passed by position when it runs. Valid for
    calls whose given tensors (roles not in ``fresh``: those the caller allocates anew) have the same
    16-byte alignment as the recorded ones (Triton specialises on it); :meth:`run` returns False,
    launching nothing, for any other call.

    A replay is one generated function (:meth:`_compile`): each launch's argument list is built in
    one expression from the call's tensors and the recorded constants, the alignment checked in one
    test. A small layer's whole replay then costs about a tenth of a no-op autograd call."""

    __slots__ = ("steps", "aligned", "device", "data", "order", "run_fn", "after")

    def __init__(self, steps: tuple[Bound, ...], aligned: tuple, device: torch.device, data,
                 order: tuple[str, ...]) -> None:
        self.steps, self.aligned, self.device, self.data, self.order = steps, aligned, device, data, order
        self.run_fn = self._compile()
        self.after: dict = {}  # plans of the calls that follow this one's (a forward's backward), by a short key

    @staticmethod
    def of(launches: list, roles: dict[str, torch.Tensor | None], device: torch.device, data=None,
           fresh: tuple[str, ...] = ()) -> Plan | None:
        """A plan from :func:`recording`'s list; None if a launch cannot be replayed or two roles
        are one tensor (a later call could bind them apart). ``roles``' order is the order
        :meth:`run` takes them in; ``fresh``: roles every call allocates itself (always 16-byte
        aligned, so not checked per call)."""
        order = tuple(roles)
        present = {r: t for r, t in roles.items() if t is not None}
        if not launches or any(rec is None for rec in launches):
            return None
        if len({id(t) for t in present.values()}) != len(present):
            return None
        steps = tuple(Bound.of(rec, present, order) for rec in launches)
        if any(b is None for b in steps):
            return None
        used = sorted({role for b in steps for _, role in b.roles})
        if any(roles[order[r]].data_ptr() % 16 for r in used if order[r] in fresh):
            return None  # an allocation that is not aligned: later calls could not be trusted to match
        aligned = tuple((r, roles[order[r]].data_ptr() % 16 == 0) for r in used if order[r] not in fresh)
        return Plan(steps, aligned, device, data, order)

    def _compile(self) -> Callable[[Sequence], bool]:
        """``run_fn(tensors)``: the replay as straight-line code (launches go through this module's
        ``run_compiled``, looked up per call, so a patched launcher is honoured)."""
        env: dict = {"L": __import__(__name__, fromlist=["_"])}
        lines = ["def run_fn(t):"]
        on = [f"t[{r}].data_ptr()" for r, ok in self.aligned if ok]
        off = [f"t[{r}].data_ptr()" for r, ok in self.aligned if not ok]
        if on:
            lines.append(f"    if ({' | '.join(on)}) & 15: return False")
        for p in off:
            lines.append(f"    if not {p} & 15: return False")
        if self.device.type == "cuda":
            env["index"] = self.device.index
            lines.append("    if L._current_device() != index: return False")
        for k, step in enumerate(self.steps):
            env[f"c{k}"], env[f"ck{k}"], env[f"g{k}"] = step.vals, step.ck, step.grid
            lines.append(f"    v = c{k}.copy()")
            lines += [f"    v[{i}] = t[{r}]" for i, r in step.roles]
            lines.append(f"    L.run_compiled(ck{k}, g{k}, v)")
        lines.append("    return True")
        exec("\n".join(lines), env)  # noqa: S102 - code built above from positions only
        return env["run_fn"]

    def run(self, tensors: Sequence[torch.Tensor | None] | dict[str, torch.Tensor | None]) -> bool:
        """Launch with ``tensors``, one per role in the plan's order (or a dict by role name)."""
        if isinstance(tensors, dict):
            tensors = tuple(tensors.get(r) for r in self.order)
        return self.run_fn(tensors)
