"""One GPU round: everything a GPU machine's first call should measure, in one command (~8 min on an H200).

    python tools/gpu/gpu_round.py                  # writes $OUT (default ./bench-out)
    python tools/gpu/gpu_round.py --budget-s 300 --sections env,layers,train
    python tools/gpu/gpu_round.py --smoke          # CPU, tiny shapes, TRITON_INTERPRET=1: checks the script

Sections, in priority order (docs/kernels.md, "One GPU round"):

 1. env       GPU, clocks, torch / triton / cuDNN versions, TF32 flags
 2. tests     the CUDA tests: kernels, models, the trainer's --cuda-graph (pytest, first candidate configs, on
              pytest-xdist workers; log in tests.log; the trainer's need the carried wheels, --wheels)
 3. compile   every fused kernel variant the layers and train sections will launch, compiled at once on
              all CPUs (selfonn.kernels.precompile; a carried Triton cache makes it a lookup)
 4. layers    the 16 Op-GAN layer shapes x {fused, reference, compiled} x {fwd, fwd+bwd} x {tf32, bf16}:
              wall ms (CUDA events), device ms (CUDA-graph replay), host us per call (median of
              --host-calls calls; fused: with and without plans), peak MiB, saved MiB; the best
              baseline (the faster of the formulation and its compile) per layer; then the same for
              the dilated context candidate's 8 distinct layers (gen.ctx.d1 .. gen.ctx.d64, gen.ctx.proj),
              after every cell of the 16 (a deadline cuts them first; their rows carry their dilation)
 5. profile   torch.profiler per kernel: us, calls, attributed TFLOP/s; per layer TFLOP/s, GB/s, % roofline
 6. host      where a small layer's host time goes: each ingredient of a call timed alone (a torch launch,
              a Triton launch by binder and by the direct path, a no-op autograd Function) and the
              CPU-side profile of disc.3's fused and reference fwd+bwd (round 1: 400-900 us per call)
 7. autotune  autotune picks with every candidate's ms (grad_W: power and concat tiles side by side);
              per compiled Triton kernel registers, spills, shared memory, wgmma
 8. train     the Op-GAN training step (G+D, f=16, q=3, B=8, L=32000) on the fused kernels, selfonn's
              exact torch path and the FastONN formulation, each eager, captured in one CUDA graph and
              under torch.compile (tf32 first, then bf16, the unfolded up blocks and torch.compile's
              reduce-overhead mode, train.py --compile reduce-overhead): min / median / max of
              --train-steps steps, host ms per step, peak MiB
 9. knobs     fused fwd+bwd with the launcher's constants changed, beside the defaults: grad_x one pass
              per power (gen.up2, gen.down4, disc.3, gen.up4), grad_W on concat-channel tiles only (those,
              the single-channel layers and disc.2) or power tiles only (gen.up2, gen.down4, disc.3,
              disc.2), with loads a step ahead and 64-bit offsets (the first three), the grad_W split
              no finer than 16 or 1 steps and its serial tail (gen.down1/2, disc.1/2/3, disc.head),
              the single-channel backward in two launches or on the GEMM kernels (gen.down1,
              disc.1, gen.out_T, disc.head)
10. cache     the Triton cache entries this round compiled (binaries and metadata) as triton-cache.tar.gz
              (and .2, .3 parts of up to 15 MiB each), for the next round to carry

Baselines run as a user runs them at their best (``bench/_common.py``): ``cudnn.benchmark`` on and
``torch.compile(dynamic=False)``; the record's ``env`` says so (``cudnn_benchmark``, ``compile``).

Every section is written to ``$OUT/<date>-<gpu>.json`` and ``.md`` as soon as it ends (the layers
section after every layer), and runs under a deadline (a share of ``--budget-s`` plus what earlier
sections left unused, enforced with SIGALRM): a slow section is cut short and never loses the ones
before it. The main JSON's ``layers`` and ``train_step`` lists follow the schema of
``bench/results/*.json`` (rendered by ``bench/tables.py``). Nothing is committed.

This folder (``tools/gpu``) holds the GPU-machine tooling; it imports the measurement helpers of
``bench/`` (``_common``, ``_host_probe``, ``tables``), never the other way round.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gzip
import importlib.util
import io
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BENCH = ROOT / "bench"
SECTIONS = ("env", "tests", "compile", "layers", "profile", "host", "autotune", "train", "knobs", "cache")
#: share of --budget-s each section may use, plus whatever the sections before it left unused (the
#: cache section gets all that is left; the ones before it leave it its share). Set from round 2 (H200,
#: --budget-s 420, a carried 1418-variant cache), seconds used: env 0.05; tests 91.6, killed at its
#: deadline with 4 tests running and 3 never started; compile 10.9; layers 123, stopped with the fwd
#: tf32 compiled cells 9 short and fwd bf16 not begun (all of it: ~180, roughly); profile 3.3; host
#: 0.8; autotune 10.7; train 81.8 (its two reduce-overhead variants failed in their first steps;
#: working, ~+35); knobs 20.4; cache 68.8, stopped (it packed the whole cache: now only this round's
#: entries, ~10). So: tests 109 s (+ env's 4; the slow tests now start first), train 109 (+ what
#: profile, host and autotune leave, ~10), knobs 25, cache 13, and layers the rest, 126 s + carry: at
#: 420 s its last cells (fwd compiled, then fwd bf16) stay cut (by these estimates it gets ~136 s);
#: --budget-s 500 runs them all. Since then the train section times three backends, each eager, as one
#: CUDA graph and compiled (20 steps each): train 0.30 of the default 480 s (144 s), tests 0.24 (115).
SHARES = {"env": 0.01, "tests": 0.24, "compile": 0.03, "layers": 0.28, "profile": 0.01, "host": 0.01, "autotune": 0.03,
          "train": 0.30, "knobs": 0.06, "cache": 0.03}
#: kernel options the knobs section varies (fields of selfonn.kernels.Options), each
#: the round-1 setting or an alternative beside today's default: grad_x one pass per power (default: all
#: powers in one pass); grad_W on concat-channel tiles each column at its own power, or on
#: power tiles, every power of a column in one program (default:
#: the tuner times both kinds per shape and keeps the faster); the grad_W split fixed at no
#: finer than 4 (round 1's successor), 16 or 1 (batch, time) steps a program (default: at least 4, and
#: the tuner also times floors of 2 and 1 where that floor bounds the split, half and a quarter as many
#: splits where the SM count does, and keeps the fastest); its partials summed one at a time
#: (default: up to 32 per load); 64-bit element offsets (default: int32 where they fit); for
#: single-channel layers, the backward in two launches (dx, then grad_W on _dw_kernel) or in one
#: (default: both timed per shape, the faster kept), its dx taps unrolled (default: looped) and the
#: GEMM kernels instead of the thin ones; the GEMM forward as the transposed product W^T (x^p)^T, which
#: the offline sm_90 compile shows removing ptxas' serialisation of the forward's wgmma (C7515; default:
#: the powered tile in registers as wgmma's first operand; bench/kernel_stats.py). (Round 1 answered W
#: repack always / never and grad_W programs per SM 1 / 4: the defaults stay.)
KNOBS = {"dual_passes": {"dual_one_pass": False}, "dw_concat_tiles": {"dw_tiles": "concat"},
         "dw_pow_tiles": {"dw_tiles": "pow"},
         "dw_split_fixed": {"dw_split_steps": (), "dw_split_divs": ()},
         "dw_min_steps_16": {"dw_min_steps": 16, "dw_split_steps": (), "dw_split_divs": ()},
         "dw_min_steps_1": {"dw_min_steps": 1, "dw_split_steps": (), "dw_split_divs": ()},
         "tail_serial": {"tail_max_splits": 1}, "offsets_64": {"wide_offsets": True},
         "thin_split_bwd": {"thin_split_bwd": True}, "thin_one_launch": {"thin_split_bwd": False},
         "thin_bwd_unrolled": {"thin_bwd_tap_loop": False},
         "thin_off": {"thin": False}, "fwd_transposed": {"fwd_transposed": True}}
KNOB_LAYERS = ("gen.up2", "gen.down4", "disc.3")
THIN_KNOB_LAYERS = ("gen.down1", "disc.1", "gen.out_T", "disc.head")
#: layers whose grad_W split is bounded by the steps a program takes (round 1: 3 to 32 programs, ~6 us
#: a step on disc.2), not by the SM count
SPLIT_KNOB_LAYERS = ("gen.down1", "gen.down2", "disc.1", "disc.2", "disc.3", "disc.head")
#: the layers a knob runs on, where not KNOB_LAYERS
KNOB_ON = {"dual_passes": KNOB_LAYERS + ("gen.up4",), "dw_concat_tiles": KNOB_LAYERS + THIN_KNOB_LAYERS + ("disc.2",),
           "dw_pow_tiles": KNOB_LAYERS + ("disc.2",),  # single-channel layers tune only the first kind
           "dw_split_fixed": SPLIT_KNOB_LAYERS + ("gen.down4", "gen.up2"), "dw_min_steps_16": SPLIT_KNOB_LAYERS,
           "dw_min_steps_1": SPLIT_KNOB_LAYERS, "tail_serial": SPLIT_KNOB_LAYERS,
           "thin_split_bwd": THIN_KNOB_LAYERS, "thin_one_launch": THIN_KNOB_LAYERS, "thin_bwd_unrolled": THIN_KNOB_LAYERS,
           "thin_off": THIN_KNOB_LAYERS,
           # the generator layers whose GEMMs cuDNN beat in round 2 (its forwards: 1.3-2.5x cuDNN's fprop)
           "fwd_transposed": ("gen.up2", "gen.down4", "gen.down5", "gen.up3", "disc.3")}
_ALL_KNOB_LAYERS = frozenset(KNOB_LAYERS).union(*KNOB_ON.values())
DTYPES = ("tf32", "bf16")
#: torch.compile modes that wrap the compiled graphs in CUDA graphs (cudagraph trees)
CUDAGRAPH_COMPILE_MODES = ("reduce-overhead", "max-autotune")
LAYER_PROVIDERS = ("fused", "reference", "compiled")
#: dense peaks for the roofline (FLOP/s at tf32 and bf16, HBM bytes/s), matched on the device name
PEAKS = {"H100": (495e12, 990e12, 3.35e12), "H200": (495e12, 990e12, 4.8e12)}
MAX_TAR_BYTES = 15 * 2**20  # the device tool brings back files of at most 16 MiB


# ---- deadlines -----------------------------------------------------------------------------------


class BudgetExceeded(Exception):
    """Raised (by SIGALRM) inside whatever runs when a section's or a cell's deadline passes."""


_deadlines: list[float] = []


def _arm() -> None:
    if not _deadlines:
        signal.setitimer(signal.ITIMER_REAL, 0)
        return
    signal.setitimer(signal.ITIMER_REAL, max(min(_deadlines) - time.monotonic(), 1e-3))


def _on_alarm(signum, frame):  # noqa: ARG001
    raise BudgetExceeded("time budget exhausted")


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise BudgetExceeded in this block after ``seconds`` (nested deadlines: the earliest wins)."""
    if seconds <= 0:
        raise BudgetExceeded("no time left")
    outermost = not _deadlines
    previous = signal.signal(signal.SIGALRM, _on_alarm) if outermost else None
    _deadlines.append(time.monotonic() + seconds)
    _arm()
    try:
        yield
    finally:
        _deadlines.pop()
        _arm()
        if outermost:
            signal.signal(signal.SIGALRM, previous)


def _remaining() -> float:
    return min(_deadlines) - time.monotonic() if _deadlines else float("inf")


def _is_budget(exc: BaseException) -> bool:
    """BudgetExceeded, also when a library re-raised it as its own error (Triton's interpreter does)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, BudgetExceeded) or "BudgetExceeded" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


# ---- output --------------------------------------------------------------------------------------


class Record:
    """The round's JSON + markdown, rewritten atomically after every section (and every layer)."""

    def __init__(self, out: Path, name: str, header: dict[str, Any]) -> None:
        self.out = out
        self.json_path = out / f"{name}.json"
        self.md_path = out / f"{name}.md"
        self.data: dict[str, Any] = {**header, "sections": {}, "layers": [], "train_step": []}
        self.md: dict[str, str] = {}

    def section(self, name: str, status: str, seconds: float, note: str = "") -> None:
        entry = {"status": status, "seconds": round(seconds, 2)}
        self.data["sections"][name] = {**entry, "note": note} if note else entry

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.json_path, json.dumps(self.data, indent=1, default=str) + "\n")
        head = (f"# GPU round: {self.data['device']} ({self.data['date']})\n\n`{self.data['command']}`: torch "
                f"{self.data['torch']}, triton {self.data['triton']}\n\n| section | status | s |\n|---|---|---|\n")
        head += "".join(f"| {k} | {v['status']}{' (' + v['note'] + ')' if v.get('note') else ''} | {v['seconds']} |\n"
                        for k, v in self.data["sections"].items())
        _atomic_write(self.md_path, head + "\n" + "\n".join(self.md[k] for k in SECTIONS if k in self.md))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _md_table(head: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v).replace("|", "/")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _err(exc: BaseException) -> str:
    """``Type: message``; for an empty message (a bare ``assert``), where it was raised instead."""
    msg = str(exc).strip()
    if not msg:
        tb = traceback.extract_tb(exc.__traceback__)
        msg = f"(no message) at {Path(tb[-1].filename).name}:{tb[-1].lineno} in {tb[-1].name}" if tb else "(no message)"
    return f"{type(exc).__name__}: {msg}"[:400]


def _tb_tail(exc: BaseException, frames: int = 12, chars: int = 6000) -> str:
    """The last ``frames`` frames of ``exc``'s traceback (and of the exceptions it chains), for the record."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-frames))[-chars:]


# ---- measurement primitives ----------------------------------------------------------------------


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def wall_ms(step: Callable[[], None], device: str, repeats: int) -> float:
    """Median ms of one step: CUDA events on GPU (queue and launch gaps included), perf_counter on CPU."""
    from _common import call_ms

    return statistics.median(call_ms(step, device) for _ in range(repeats))


def wall_and_host(step: Callable[[], None], device: str, calls: int) -> tuple[dict[str, float], dict[str, float]]:
    """min / median / max of ``calls`` calls' wall ms and host ms (``_common.timed_calls``: each call
    on an idle device, so the host time is one call's enqueue time over many calls, not a mean of few)."""
    from _common import spread, timed_calls

    wall, host = timed_calls(step, device, calls)
    return spread(wall), spread(host)


def host_us(step: Callable[[], None], device: str, repeats: int) -> float:
    """Host microseconds per call: enqueue time, not waiting for the GPU (few calls: the launch queue never fills)."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    t = time.perf_counter() - t0
    _sync(device)
    return t / repeats * 1e6


def device_ms(step: Callable[[], None], device: str) -> float | None:
    """Median ms of one step replayed from a CUDA graph: device time without host launch cost."""
    if device != "cuda":
        return None
    import triton.testing

    return float(triton.testing.do_bench_cudagraph(step, rep=20, return_mode="median"))


@contextlib.contextmanager
def precision(dtype: str, device: str) -> Iterator[None]:
    """'tf32': fp32 tensors with TF32 allowed (PyTorch's conv default); 'bf16': autocast to bfloat16."""
    import torch

    if dtype == "bf16":
        with torch.autocast(device, dtype=torch.bfloat16):
            yield
    else:
        yield


def _under(dtype: str, device: str, fn: Callable) -> Callable:
    def run(*args):
        with precision(dtype, device):
            return fn(*args)

    return run


# ---- sections ------------------------------------------------------------------------------------


def section_env(rec: Record, args, ctx: dict) -> None:
    import torch

    env: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": ctx["triton_version"], "device": ctx["device_name"], "budget_s": args.budget_s, "smoke": args.smoke,
        # how the baselines ran: cuDNN's algorithms timed per shape, torch.compile specialised per shape
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "compile": {**ctx.get("baselines", {}).get("compile", {"backend": args.compile_backend}),
                    "train_modes": [None] + (["reduce-overhead"] if args.compile_backend == "inductor" else [])},
        "host_calls": args.host_calls, "train_steps": args.train_steps,
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET"), "triton_cache_dir": str(ctx["cache_dir"]),
        "tf32": {
            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, obj in (("cuda.matmul.fp32_precision", torch.backends.cuda.matmul),
                          ("cudnn.conv.fp32_precision", getattr(torch.backends.cudnn, "conv", None))):
            if obj is not None and hasattr(obj, "fp32_precision"):
                env["tf32"][name] = obj.fp32_precision
    if ctx["device"] == "cuda":
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                      "memory_gib": round(p.total_memory / 2**30, 1),
                      "l2_mib": round(getattr(p, "L2_cache_size", 0) / 2**20, 1) or None}
    env["nvidia_smi"] = _run_text(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,"
                                   "clocks.max.mem,power.draw,power.limit,temperature.gpu,persistence_mode",
                                   "--format=csv"], timeout=15)
    env["git"] = _run_text(["git", "-C", str(ROOT), "log", "-1", "--format=%H %s"], timeout=10)
    rec.data["env"] = env
    rows = [[k, v] for k, v in env.items() if not isinstance(v, dict)]
    rows += [[f"{k}.{kk}", vv] for k, v in env.items() if isinstance(v, dict) for kk, vv in v.items()]
    rec.md["env"] = "## Environment\n\n" + _md_table(["key", "value"], rows)


def _run_text(cmd: list[str], timeout: float) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({type(exc).__name__})"
    return (r.stdout.strip() or r.stderr.strip())[:2000]


#: node-id substrings of the tests section's slow tests, slowest kind first: they start first, one per
#: worker (tools/gpu/_pytest_slow_first.py). Round 2 (H200, 16 workers, 92 s deadline) scheduled them in
#: collection order: the trainer's --cuda-graph runs and test_models' whole-GAN bf16 test began last and
#: were cut, two trainer params never started; of the kernel tests, per the -v log, the single-channel
#: dispatch check (~13 s), torch.compile, a captured training step and each pinned single-channel
#: config (~8 s each, two cut; one ran 30 s) are the longest.
#: Every CUDA-graph training-step test goes first (``::test_cuda_graph``): the trainer captures its step
#: by default on CUDA, and these tests are what says it may.
SLOW_TESTS = ("tests/test_trainer.py::test_cuda_graph_on_the_gpu_matches_eager", "::test_cuda_graph",
              "tests/test_trainer.py::", "tests/test_models.py::", "::test_dispatch_picks_thin_kernels",
              "::test_torch_compile", "::test_each_thin_config[")


def _test_workers(requested: int) -> int:
    """pytest-xdist workers for the tests section: ``requested`` if >= 0, else one per CPU up to 16;
    0 (one process) without pytest-xdist (the GPU image has it)."""
    if importlib.util.find_spec("xdist") is None:
        return 0
    return requested if requested >= 0 else min(os.cpu_count() or 1, 16)


def _xdist_has_worksteal() -> bool:
    """pytest-xdist's --dist worksteal exists (3.2 on; the GPU image has 3.8)."""
    try:
        from importlib.metadata import version

        return tuple(int(p) for p in version("pytest-xdist").split(".")[:2]) >= (3, 2)
    except Exception:  # not installed, or a version string of another form
        return False


def section_tests(rec: Record, args, ctx: dict) -> None:
    # -v: one line per test, so a run the deadline kills still says which tests passed.
    # _pytest_failures: each failure's traceback lands in tests_failures.log at once (a cut run keeps them).
    tests, left_out = _runnable_tests(shlex.split(args.tests))
    # _pytest_slow_first: SLOW_TESTS first, spread over the workers (a deadline then cuts short tests).
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "_pytest_failures",
           "-p", "_pytest_slow_first", "--tb=short", *tests]
    # The CUDA tests need ~400 distinct kernel variants (first candidates only), ~0.5 s of compile
    # each: serially minutes, more than the section's share. Workers compile them side by side;
    # worksteal (pytest-xdist >= 3.2) lets idle workers take queued tests from busy ones, so a worker
    # on a long test holds no short ones back.
    workers = _test_workers(args.test_workers)
    if workers > 1 and not args.smoke:
        cmd += ["-n", str(workers)] + (["--dist", "worksteal"] if _xdist_has_worksteal() else [])
    # The tests check values, not speed: the first candidate config only (~10x fewer compiles than tuning).
    failures = rec.out / "tests_failures.log"
    failures.unlink(missing_ok=True)
    env = {**os.environ, "SELFONN_TUNE": "0", "SELFONN_FAILURE_LOG": str(failures),
           "GPU_ROUND_SLOW_FIRST": json.dumps(SLOW_TESTS),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    if args.smoke:
        cmd.append("--collect-only")  # the mechanism only: nested pytest runs are slow on a CPU
    else:
        cmd += ["--timeout", str(args.test_timeout_s)]
    timeout = max(_remaining() - 5, 5)
    t0 = time.perf_counter()
    out, rc = _run_group(cmd, env, timeout)
    if rc is None:
        out += f"\n[killed after {timeout:.0f} s: the section's deadline]\n"
    (rec.out / "tests.log").write_text(out)
    outcomes = r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)"
    counts = {k: int(n) for n, k in re.findall(outcomes, out)}
    collected = (re.search(r"(\d+)(?:/\d+)? tests? collected", out)
                 or re.search(r"\d+ workers? \[(\d+) items?\]", out))  # pytest-xdist's header
    if collected:
        counts["collected"] = int(collected.group(1))
    if rc is None:  # killed before pytest's summary: count the -v lines, name the tests it cut
        for word in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
            counts[word.lower()] = len(re.findall(rf"\b{word} tests/", out))
        counts["unfinished"] = _unfinished_tests(out)
        if collected:
            counts["not_started"] = max(counts["collected"] - len(counts["unfinished"])
                                        - sum(counts[w] for w in ("passed", "failed", "skipped", "error")), 0)
    if failures.exists():  # node ids may hold spaces: "test_each_thin_config[cuda-(64, 16, 4)]"
        counts["failed_nodes"] = re.findall(r"^==== (.+) \((?:setup|call|teardown)\)$", failures.read_text(),
                                            flags=re.M)
    rec.data["tests"] = {"command": "SELFONN_TUNE=0 " + " ".join(shlex.quote(c) for c in cmd), "returncode": rc,
                         "workers": workers, "left_out": left_out,
                         "counts": counts,
                         "seconds": round(time.perf_counter() - t0, 1), "tail": out[-3000:]}
    summary = out.strip().splitlines()[-1] if out.strip() else "(no output)"
    rec.md["tests"] = f"## CUDA kernel tests\n\n`{rec.data['tests']['command']}` -> rc {rc}: {summary}\n" + "".join(
        f"\nleft out: {why}\n" for why in left_out) + "".join(
        f"\ncut by the deadline: {n}\n" for n in counts.get("unfinished", []))
    if rc is None:  # the section says "stopped", as any other cut by its deadline (round 2's said "done")
        raise BudgetExceeded(f"pytest killed at the section's deadline ({timeout:.0f} s)")


def _run_group(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[str, int | None]:
    """``cmd``'s output (stderr into stdout) and return code, or None when it ran past ``timeout``: then
    it is killed with its whole process group, pytest-xdist's workers included (killing pytest alone
    can leave workers compiling and holding the GPU into the next sections)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return out, proc.returncode
    except BaseException as exc:  # the timeout, or the section's alarm
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            out, _ = proc.communicate(timeout=10)  # the rest of the output, to the pipe's end
        except subprocess.TimeoutExpired:  # a process outside the group holds the pipe
            proc.kill()
            out = ""
        if isinstance(exc, subprocess.TimeoutExpired):
            return out, None
        raise


_RESULT = r"(?:PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)"


def _unfinished_tests(out: str) -> list[str]:
    """The tests a killed ``pytest -v`` run had begun and not finished: with pytest-xdist, each test's
    node id is printed alone when it starts and again after ``[gwN] [ x%] PASSED`` when it ends;
    without it, a finished test's line ends with its outcome."""
    done = set(re.findall(rf"^\[gw\d+\] \[\s*\d+%\] {_RESULT} (tests/.+?) *$", out, flags=re.M))
    done |= set(re.findall(rf"^(tests/.+?) {_RESULT}\b", out, flags=re.M))
    started = [n for n in re.findall(r"^(tests/[^\n]+?::[^\n]+?) *$", out, flags=re.M)
               if not re.search(rf" {_RESULT}\b", n)]
    return [n for n in dict.fromkeys(started) if n not in done]


#: Test files that import more than torch + triton + numpy: the module each needs.
_TEST_NEEDS = {"tests/test_trainer.py": "soundfile"}


def _runnable_tests(items: list[str]) -> tuple[list[str], list[str]]:
    """The pytest arguments without test files whose imports this machine lacks (a collection error
    would stop the whole run), and why each was left out."""
    keep, left_out = [], []
    for item in items:
        need = _TEST_NEEDS.get(item)
        if need and importlib.util.find_spec(need) is None:
            left_out.append(f"{item} ({need} is not importable: carry .whl and pass --wheels)")
        else:
            keep.append(item)
    return keep, left_out


def _use_wheels(folder: Path) -> None:
    """Install carried wheels into /tmp/site (no index, no deps) and put it on the path of this process
    and its children: the GPU machines have torch and triton but none of our audio dependencies."""
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if not wheels:
        return
    site = Path(tempfile.gettempdir()) / "site"
    if not site.is_dir():
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                            "--target", str(site), *map(str, wheels)], capture_output=True, text=True)
        if r.returncode:
            print(f"[gpu_round] installing {folder}'s wheels failed: {r.stderr.strip()[-300:]}", file=sys.stderr)
            return
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()


def _layer_shapes(args) -> list:
    """The layers the round measures: the 16 Op-GAN layers, then the context candidate's (``gen.ctx.*``)
    unless --no-context-layers; --layers picks by name ('context': every context layer)."""
    from _common import is_context, opgan_layers

    layers = opgan_layers(args.length, args.filters, args.q, context=not args.no_context_layers or bool(args.layers))
    if args.layers:
        wanted = set(args.layers.split(","))
        layers = [la for la in layers if la.name in wanted or ("context" in wanted and is_context(la))]
    return layers


def _paper_then_context(layers: list) -> list[list]:
    """``layers`` split into the 16 Op-GAN layers and the context layers (each group only if not empty),
    in that order: a section measures every cell of the first before any of the second, so a deadline
    cuts the context rows, never the 16 whose totals older records are compared on."""
    from _common import is_context

    groups = [[la for la in layers if not is_context(la)], [la for la in layers if is_context(la)]]
    return [g for g in groups if g]


def measure_cell(layer, provider: str, mode: str, dtype: str, inputs, args, ctx: dict) -> dict[str, Any]:
    """Every number of one (layer, provider, mode, dtype) cell; errors are recorded, never raised."""
    from _common import PROVIDERS, make_step, peak_mib, saved_bytes

    device = ctx["device"]
    cell: dict[str, Any] = {}
    try:
        with deadline(args.cell_timeout_s):
            fn = _under(dtype, device, PROVIDERS[provider](layer))
            step = make_step(fn, inputs, mode)
            for _ in range(args.warmup):  # compile / autotune outside the timings
                step()
            _sync(device)
            # the headline cells (fwd+bwd, tf32) over --host-calls calls, the others over a quarter
            calls = args.host_calls if (mode, dtype) == ("fwd+bwd", "tf32") else max(args.repeats, args.host_calls // 4)
            wall, host = wall_and_host(step, device, calls)
            cell["ms"], cell["host_us"], cell["calls"] = wall["median"], host["median"] * 1e3, calls
            if provider == "fused":
                cell["host_us_no_plans"] = _host_us_without_plans(step, device, args.repeats)
            cell["peak_mib"] = peak_mib(step, device)
            if mode == "fwd+bwd":
                try:
                    cell["saved_mib"] = saved_bytes(fn, inputs) / 2**20
                except Exception as exc:  # compiled graphs may refuse saved-tensor hooks
                    cell["saved_mib_error"] = _err(exc)
            try:
                cell["device_ms"] = device_ms(step, device)
            except Exception as exc:
                if _is_budget(exc):
                    raise
                cell["device_ms_error"] = _err(exc)
    except Exception as exc:
        cell["error"] = _err(exc)
        if _is_budget(exc):
            cell["error"] = f"cell deadline ({args.cell_timeout_s} s) or section budget: {cell['error']}"
            if _remaining() <= 0:
                raise BudgetExceeded("section budget") from exc
    return cell


def _host_us_without_plans(step: Callable[[], None], device: str, repeats: int) -> float | None:
    """Host us per call with the kernels' plans off (every call rebuilds its launch arguments)."""
    if device != "cuda":
        return None
    with _knob({"plans": False}):
        step()  # the first call of a signature without plans may pass through Triton's binder
        return host_us(step, device, repeats)


def compile_work(args, ctx: dict) -> Callable[[], None]:
    """One fused fwd+bwd of every layer cell, one step of every eager fused train variant and every
    knobs cell: the launches the later sections make (compiled ones reach the same kernels); the context
    layers' last, as the layers section measures them last."""
    from _common import PROVIDERS, is_context, make_inputs, make_step

    device = ctx["device"]

    def fused_step(layer, dtype: str) -> None:
        make_step(_under(dtype, device, PROVIDERS["fused"](layer)), make_inputs(layer, args.batch, device), "fwd+bwd")()

    def run() -> None:
        groups = _paper_then_context(_layer_shapes(args))
        context = groups.pop() if groups and is_context(groups[-1][0]) else []
        for dtype in args.dtypes.split(","):
            for layer in groups[0] if groups else []:
                fused_step(layer, dtype)
        for v in _train_variants(args):
            if v["backend"] == "triton" and not v["compile"] and not v["graph"]:  # a graph replays the eager kernels
                train_step_fn("triton", v["dtype"], False, v["fold_upsample"], args, ctx)()
        if "knobs" in args.sections.split(","):
            for layer in _knob_layers(args):
                for patch in knobs_for(layer.name, args).values():
                    with _knob(patch):
                        fused_step(layer, "tf32")
        for dtype in args.dtypes.split(","):  # last: the compiles are submitted in this order
            for layer in context:
                fused_step(layer, dtype)

    return run


def section_compile(rec: Record, args, ctx: dict) -> None:
    """Compile what the later sections launch, all variants at once (their first calls then only tune)."""
    if os.environ.get("TRITON_INTERPRET") == "1" or ctx["device"] != "cuda":
        rec.data["compile"] = {"note": "nothing to compile: no GPU (the interpreter runs the kernels)"}
        rec.md["compile"] = "## Kernel compile\n\nnothing to compile: no GPU.\n"
        return
    from selfonn.kernels.precompile import precompile

    def cubins() -> int:
        return sum(1 for _ in ctx["cache_dir"].rglob("*.cubin")) if ctx["cache_dir"].is_dir() else 0

    before = cubins()
    report = precompile(compile_work(args, ctx))
    after = cubins()  # equal to `before`: every variant came from the (carried) cache
    rec.data["compile"] = {"variants": report.variants, "total": report.total, "seconds": round(report.seconds, 1),
                           "workers": report.workers, "failed": report.failed[:20], "cubins_before": before,
                           "compiled_here": after - before}
    rec.md["compile"] = (f"## Kernel compile\n\n{report.total} variants ({report.variants}) in {report.seconds:.1f} s "
                         f"on {report.workers} threads; {after - before} compiled here, the rest found in the "
                         f"Triton cache ({before} cubins before); {len(report.failed)} failed.\n")


def section_layers(rec: Record, args, ctx: dict) -> None:
    """Every (dtype, mode) in priority order; within one, the fused and reference cells of every layer
    first (seconds each), then torch.compile's (a compile each, ~10x longer): a section cut short by
    its deadline still holds the fused/reference ratio of every layer."""
    from _common import make_inputs, provider_available

    device = ctx["device"]
    providers = [p for p in args.providers.split(",") if p in LAYER_PROVIDERS]
    skipped = {p: provider_available(p, device) for p in providers}
    order = [(dt, mode) for mode in ("fwd+bwd", "fwd") for dt in args.dtypes.split(",")]
    passes = [("fused", "reference"), ("compiled",)]
    for layers, (dtype, mode) in ((g, o) for g in _paper_then_context(_layer_shapes(args)) for o in order):
        entries: dict[str, dict[str, Any]] = {}
        for wave in passes:
            for layer in layers:
                if _remaining() <= 1:
                    raise BudgetExceeded("section budget")
                entry = entries.get(layer.name)
                if entry is None:
                    entry = entries[layer.name] = _layer_entry(layer, mode, dtype, args)
                    rec.data["layers"].append(entry)
                inputs = make_inputs(layer, args.batch, device)
                for p in wave:
                    if p not in providers:
                        cell = {"error": "not asked"}
                    elif skipped[p]:
                        cell = {"error": f"skipped: {skipped[p]}"}
                    else:
                        cell = measure_cell(layer, p, mode, dtype, inputs, args, ctx)
                    errors = entry.setdefault("errors", {})
                    errors.pop(p, None)
                    for key in ("ms", "peak_mib", "device_ms", "host_us", "saved_mib"):
                        entry[key][p] = cell.get(key)
                    if "host_us_no_plans" in cell:
                        entry["host_us"]["fused_no_plans"] = cell["host_us_no_plans"]
                    if "calls" in cell:
                        entry.setdefault("calls", {})[p] = cell["calls"]
                    for key in ("error", "device_ms_error", "saved_mib_error"):
                        if key in cell:
                            errors[f"{p}.{key}" if key != "error" else p] = cell[key]
                if not entry.get("errors"):
                    entry.pop("errors", None)
                _set_best_baseline(entry)
                del inputs
                if device == "cuda":
                    import torch

                    torch.cuda.empty_cache()
                rec.md["layers"] = _layers_md(rec.data["layers"])
                rec.write()


def _layer_entry(layer, mode: str, dtype: str, args) -> dict[str, Any]:
    """A layers-section row before any cell is measured: every provider 'not reached' until it is.
    The shape holds ``dilation`` only where it is not 1 (rows of the paper's layers stay as they were)."""
    shape = {"kind": layer.kind, "c_in": layer.c_in, "c_out": layer.c_out, "k": layer.k, "stride": layer.stride,
             "padding": layer.padding, "L_in": layer.L_in, "q": layer.q, "batch": args.batch}
    if layer.dilation != 1:
        shape["dilation"] = layer.dilation
    return {
        "layer": layer.name, "mode": mode, "dtype": dtype, "shape": shape,
        "gflop": layer.fwd_flops(args.batch) * (3 if mode == "fwd+bwd" else 1) / 1e9,
        "ms": dict.fromkeys(LAYER_PROVIDERS), "peak_mib": {}, "device_ms": {}, "host_us": {}, "saved_mib": {},
        "errors": dict.fromkeys(LAYER_PROVIDERS, "not reached before the section's deadline"),
    }


def _set_best_baseline(entry: dict[str, Any]) -> None:
    """``entry["best_baseline"]``: per measure (wall ms, device ms), the faster of the formulation and its
    compile, named: what the fused kernels are held to."""
    from _common import best_baseline

    best = {}
    for key in ("ms", "device_ms"):
        name, value = best_baseline(entry.get(key) or {})
        if name:
            best[key] = {"provider": name, "value": value}
    if best:
        entry["best_baseline"] = best
    else:
        entry.pop("best_baseline", None)


def _layers_md(entries: list[dict]) -> str:
    head = ["layer", "mode", "dtype", "fused ms", "ref ms", "compiled ms", "best baseline ms", "best/fused",
            "fused dev ms", "ref dev ms", "compiled dev ms", "best dev/fused dev", "fused host us",
            "fused host us, no plans", "ref host us", "fused MiB", "ref MiB", "fused saved MiB", "ref saved MiB"]
    rows = []
    for e in entries:
        ms, dev = e["ms"], e["device_ms"]
        best = e.get("best_baseline", {})
        b_ms = best.get("ms", {}).get("value")
        b_dev = best.get("device_ms", {}).get("value")
        ratio = b_ms / ms["fused"] if ms.get("fused") and b_ms else None
        dev_ratio = b_dev / dev["fused"] if dev.get("fused") and b_dev else None
        rows.append([e["layer"], e["mode"], e["dtype"], ms.get("fused"), ms.get("reference"), ms.get("compiled"),
                     b_ms, ratio, dev.get("fused"), dev.get("reference"), dev.get("compiled"), dev_ratio,
                     e["host_us"].get("fused"),
                     e["host_us"].get("fused_no_plans"),
                     e["host_us"].get("reference"), e["peak_mib"].get("fused"), e["peak_mib"].get("reference"),
                     e["saved_mib"].get("fused"), e["saved_mib"].get("reference")])
    errors = [f"- {e['layer']} {e['mode']} {e['dtype']} {k}: {v}"
              for e in entries for k, v in e.get("errors", {}).items() if not v.startswith(("skipped", "not asked"))]
    return "## Layers\n\n" + _md_table(head, rows) + ("\nErrors:\n" + "\n".join(errors) + "\n" if errors else "")


#: name tokens that say which third of a conv's fwd+bwd work a kernel does (cuDNN's and ours)
_ROLES = (("wgrad", ("wgrad", "dw")), ("dgrad", ("dgrad", "dx")), ("fwd", ("fprop", "fwd", "forward")))


def _kernel_role(name: str) -> str | None:
    """'fwd', 'dgrad' or 'wgrad' from a kernel's name tokens ('_bwd_dx_kernel', 'sm90_xmma_wgrad_...'), else None.

    Whole tokens (prefixes for the long words), so 'index' is not 'dx'."""
    tokens = [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t]
    for role, keys in _ROLES:
        if any(t == k or (len(k) > 2 and t.startswith(k)) for t in tokens for k in keys):
            return role
    return None


def _min_bytes(layer, batch: int, mode: str, elem: int) -> float:
    """Least HBM traffic: read x, W and write y; the backward also reads x, W, dy and writes dx, dW."""
    x = batch * layer.c_in * layer.L_in
    y = batch * layer.c_out * layer.L_out
    w = layer.q * layer.c_in * layer.c_out * layer.k
    return elem * ((x + y + w) if mode == "fwd" else (3 * x + 2 * y + 3 * w))


def section_profile(rec: Record, args, ctx: dict) -> None:
    from torch.profiler import ProfilerActivity, profile

    from _common import PROVIDERS, make_inputs, make_step, provider_available

    device = ctx["device"]
    peaks = ctx["peaks"]
    out: list[dict] = []
    rec.data["profile"] = out
    activity = ProfilerActivity.CUDA if device == "cuda" else ProfilerActivity.CPU
    providers = [p for p in args.providers.split(",") if p in LAYER_PROVIDERS and not provider_available(p, device)]
    for layers in _paper_then_context(_layer_shapes(args)):
        for dtype, layer in ((dt, la) for dt in args.dtypes.split(",") for la in layers):
            inputs = make_inputs(layer, args.batch, device)
            for prov in providers:
                if _remaining() <= 1:
                    raise BudgetExceeded("section budget")
                row: dict[str, Any] = {"layer": layer.name, "provider": prov, "dtype": dtype, "mode": "fwd+bwd"}
                try:
                    with deadline(args.cell_timeout_s):
                        step = make_step(_under(dtype, device, PROVIDERS[prov](layer)), inputs, "fwd+bwd")
                        for _ in range(args.warmup):
                            step()
                        _sync(device)
                        with profile(activities=[activity]) as prof:
                            for _ in range(args.profile_iters):
                                step()
                            _sync(device)
                    row.update(_profile_rows(prof, layer, args, dtype, device, peaks))
                except Exception as exc:
                    row["error"] = _err(exc)
                    if _is_budget(exc) and _remaining() <= 0:
                        out.append(row)
                        raise BudgetExceeded("section budget") from exc
                out.append(row)
            del inputs
    rec.md["profile"] = _profile_md(out)


def _profile_rows(prof, layer, args, dtype: str, device: str, peaks) -> dict[str, Any]:
    fwd_flops = layer.fwd_flops(args.batch)
    kernels = []
    for ev in prof.key_averages():
        t = getattr(ev, "device_time_total", None) if device == "cuda" else ev.self_cpu_time_total
        if t is None:
            t = getattr(ev, "cuda_time_total", 0)
        if not t or (device != "cuda" and not ev.key.startswith("aten::")):
            continue
        us = t / args.profile_iters
        role = _kernel_role(ev.key)
        kernels.append({"kernel": ev.key[:160], "us": us, "calls": ev.count / args.profile_iters, "role": role,
                        "tflops": fwd_flops / (us * 1e-6) / 1e12 if role else None})
    kernels.sort(key=lambda k: -k["us"])
    total_us = sum(k["us"] for k in kernels)
    flops = 3 * fwd_flops
    nbytes = _min_bytes(layer, args.batch, "fwd+bwd", 2 if dtype == "bf16" else 4)
    res: dict[str, Any] = {"us": total_us, "kernels": kernels[:12], "gflop": flops / 1e9, "min_mb": nbytes / 1e6}
    if total_us:
        res["tflops"] = flops / (total_us * 1e-6) / 1e12
        res["gbps"] = nbytes / (total_us * 1e-6) / 1e9
        if peaks:
            flop_peak = peaks[1] if dtype == "bf16" else peaks[0]
            roof_us = max(flops / flop_peak, nbytes / peaks[2]) * 1e6
            res["roofline_us"] = roof_us
            res["pct_roofline"] = 100 * roof_us / total_us
    return res


def _profile_md(rows: list[dict]) -> str:
    lines = ["## Profiler (fwd+bwd, device time per step)\n"]
    summary = [[r["layer"], r["provider"], r["dtype"], r.get("us"), r.get("tflops"), r.get("gbps"),
                r.get("pct_roofline"), r.get("error")] for r in rows]
    lines.append(_md_table(["layer", "provider", "dtype", "us", "TFLOP/s", "GB/s", "% roofline", "error"], summary))
    for r in rows:
        if r.get("kernels"):
            lines.append(f"\n### {r['layer']} {r['provider']} {r['dtype']}\n")
            kernel_rows = [[k["kernel"][:90], k["us"], k["calls"], k["role"], k["tflops"]] for k in r["kernels"]]
            lines.append(_md_table(["kernel", "us", "calls", "role", "TFLOP/s (attributed)"], kernel_rows))
    return "\n".join(lines)


def _triton_objects() -> Iterator[tuple[str, Any]]:
    """(name, object) of every tuned Kernel / Autotuner / JITFunction reachable from the loaded selfonn.kernels modules."""
    seen: set[int] = set()

    def walk(name: str, obj: Any, depth: int = 0) -> Iterator[tuple[str, Any]]:
        if id(obj) in seen or depth > 3:
            return
        kind = type(obj).__name__
        if kind in ("Kernel", "Autotuner", "Heuristics", "JITFunction", "InterpretedFunction"):
            seen.add(id(obj))
            yield name, obj
            inner = getattr(obj, "fn", None)
            if inner is not None:
                yield from walk(name, inner, depth + 1)
        elif isinstance(obj, dict):
            for k, v in list(obj.items()):
                yield from walk(f"{name}[{k}]", v, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                yield from walk(f"{name}[{i}]", v, depth + 1)

    for mod_name, mod in list(sys.modules.items()):
        if mod_name.startswith("selfonn.kernels") and mod is not None:
            for attr, obj in list(vars(mod).items()):
                yield from walk(f"{mod_name.rsplit('.', 1)[-1]}.{attr}", obj)


def _compiled_kernels(jit_fn: Any) -> Iterator[Any]:
    """The CompiledKernel objects a JITFunction holds (its cache layout differs across Triton versions)."""
    for caches in getattr(jit_fn, "device_caches", {}).values():
        for part in caches if isinstance(caches, tuple) else (caches,):
            if isinstance(part, dict):
                for v in part.values():
                    if hasattr(v, "metadata") and hasattr(v, "asm"):
                        yield v


def _sass_has_wgmma(ck: Any) -> bool | None:
    """Whether a compiled kernel's SASS uses HGMMA (wgmma), for kernels loaded from a binary-only cache."""
    import triton

    cubin = ck.asm.get("cubin") if isinstance(ck.asm, dict) else None
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not cubin or not tool.exists():
        return None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = _run_text([str(tool), "-sass", f.name], timeout=30)
    return None if sass is None else "HGMMA" in sass


#: compiled kernels whose SASS the autotune section disassembles for wgmma when they carry no PTX
#: (a binary-only cache): ~0.1 s each, and the first round's ~650 used up the section's whole share
SASS_CHECKS = 24


#: the layer whose host path the host section profiles (a small one: its call is all host time)
HOST_LAYER = "disc.3"
HOST_CALLS = 200


def section_host(rec: Record, args, ctx: dict) -> None:
    """Where a small layer's host time goes on this machine: each ingredient of a call timed alone
    (``_host_probe``: interpreter, torch launch, Triton launch by binder and by selfonn's direct path,
    a no-op autograd Function), then the CPU-side profile of one layer's fused and reference fwd+bwd
    (self CPU time per op and step). Round 1 measured 400-900 us per fused call here against ~50 us
    for the same Python on a workstation; this says which part scales."""
    from torch.profiler import ProfilerActivity, profile

    from _common import PROVIDERS, make_inputs, make_step
    from _host_probe import probes

    device = ctx["device"]
    info: dict[str, Any] = {"calls": HOST_CALLS, "probes_us": {}, "layer": None, "cpu_profile": {}, "host_us": {}}
    rec.data["host"] = info
    for name, fn in probes(device).items():
        if _remaining() <= 1:
            raise BudgetExceeded("section budget")
        try:
            with deadline(args.cell_timeout_s):
                fn()
                _sync(device)
                info["probes_us"][name] = min(host_us(fn, device, HOST_CALLS) for _ in range(3))
        except Exception as exc:
            if _is_budget(exc):
                raise
            info["probes_us"][name] = None
            info.setdefault("errors", {})[name] = _err(exc)
        rec.md["host"] = _host_md(info)
    layers = [la for la in _layer_shapes(args) if la.name == HOST_LAYER] or _layer_shapes(args)[:1]
    if layers:
        layer = layers[0]
        info["layer"] = layer.name
        inputs = make_inputs(layer, args.batch, device)
        for prov in ("fused", "reference"):
            if _remaining() <= 1:
                raise BudgetExceeded("section budget")
            try:
                with deadline(args.cell_timeout_s):
                    step = make_step(_under("tf32", device, PROVIDERS[prov](layer)), inputs, "fwd+bwd")
                    for _ in range(max(args.warmup, 3)):
                        step()
                    info["host_us"][prov] = host_us(step, device, HOST_CALLS // 4)
                    iters = 20
                    _sync(device)
                    with profile(activities=[ProfilerActivity.CPU]) as prof:
                        for _ in range(iters):
                            step()
                        _sync(device)
                    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
                    info["cpu_profile"][prov] = [
                        {"op": e.key[:120], "calls": e.count / iters, "self_us": e.self_cpu_time_total / iters}
                        for e in rows[:14]]
            except Exception as exc:
                if _is_budget(exc):
                    raise
                info.setdefault("errors", {})[prov] = _err(exc)
            rec.md["host"] = _host_md(info)
        del inputs


def _host_md(info: dict) -> str:
    md = (f"## Host path\n\nEach probe alone, us per call (best of 3 x {info['calls']} calls, no waiting "
          "for the GPU):\n\n" + _md_table(["probe", "us"], [[k, v] for k, v in info["probes_us"].items()]))
    if info["layer"]:
        md += (f"\n{info['layer']} fwd+bwd host us: "
               + ", ".join(f"{p} {v:.0f}" for p, v in info["host_us"].items()) + "\n")
        for prov, rows in info["cpu_profile"].items():
            md += f"\n{prov}, self CPU us per step:\n\n" + _md_table(
                ["op", "calls", "self us"], [[r["op"], r["calls"], r["self_us"]] for r in rows])
    return md


def section_autotune(rec: Record, args, ctx: dict) -> None:  # noqa: ARG001
    picks: list[dict[str, Any]] = []
    kernels: list[dict[str, Any]] = []
    rec.data["autotune"] = {"picks": picks, "kernels": kernels}  # filled in place: a cut section keeps its part
    objects = list(_triton_objects())
    for name, obj in objects:  # the picks first: cheap, and what the next round's tuning starts from
        kind = type(obj).__name__
        if kind == "Kernel":  # selfonn.kernels._launch.Kernel: one pick per tune key
            picks.append({"kernel": name, "key": ["dtype, precision, geometry, channels, size bucket"],
                          "picks": {str(k): str(v) for k, v in getattr(obj, "tuned", {}).items()},
                          "tunes": getattr(obj, "n_tunes", None),
                          # each candidate's median ms (do_bench on the device): every config of every
                          # layer's launches side by side, what the next kernel change starts from
                          "timings": {str(k): [[str(c), None if ms == float("inf") else round(ms, 5)]
                                               for c, ms in v]
                                      for k, v in getattr(obj, "timings", {}).items()},
                          # grad_W: the fastest power-tile and concat-tile candidate of each key
                          "by_tile_kind": {str(k): kinds for k, v in getattr(obj, "timings", {}).items()
                                           if (kinds := _by_tile_kind(v))},
                          # grad_W: the fastest candidate per split floor, where finer splits were timed
                          "by_split": {str(k): floors for k, v in getattr(obj, "timings", {}).items()
                                       if (floors := _by_split(v))}})
        elif kind == "Autotuner":
            cache = getattr(obj, "cache", {}) or {}
            picks.append({"kernel": name, "key": list(getattr(obj, "keys", []) or []),
                          "picks": {str(k): str(v) for k, v in cache.items()}})
    sass_left = SASS_CHECKS
    for name, obj in objects:
        if type(obj).__name__ != "JITFunction":
            continue
        for ck in _compiled_kernels(obj):
            md = ck.metadata
            ptx = ck.asm.get("ptx", "") if isinstance(ck.asm, dict) else ""
            wgmma = None
            if ptx:
                wgmma = "wgmma" in ptx
            elif sass_left > 0:
                sass_left -= 1
                wgmma = _sass_has_wgmma(ck)
            kernels.append({"kernel": getattr(md, "name", name), "source": name,
                            "registers": getattr(ck, "n_regs", None), "spills": getattr(ck, "n_spills", None),
                            "shared_bytes": getattr(md, "shared", None),
                            "num_warps": getattr(md, "num_warps", None),
                            "num_stages": getattr(md, "num_stages", None), "wgmma": wgmma})
    from selfonn.kernels import selfonn_conv as sc

    # the single-channel backward's ways, timed per shape ("tuned"): one launch against two
    thin_split = [{"key": str(k), "one_launch_ms": round(t1, 5), "two_launches_ms": round(t2, 5),
                   "pick": "two launches" if sc._thin_split_picks.get(k) else "one launch"}
                  for k, (t1, t2) in sc._thin_split_timings.items()]
    note = "" if picks or kernels else (
        "no compiled Triton kernels (interpreter run)" if os.environ.get("TRITON_INTERPRET") == "1" else
        "no compiled Triton kernels found in selfonn.kernels")
    rec.data["autotune"] = {"picks": picks, "kernels": kernels, "thin_split_bwd": thin_split,
                            **({"note": note} if note else {})}
    md = "## Autotune and compiled kernels\n\n" + (note + "\n" if note else "")
    for p in picks:
        md += f"\n{p['kernel']} (key {', '.join(p['key'])}):\n\n"
        times = p.get("timings", {})
        kinds = p.get("by_tile_kind", {})
        floors = p.get("by_split", {})

        def sorted_ms(k: str) -> str:
            return " ".join(f"{ms:.4g}" for ms in sorted(ms for _, ms in times.get(k, []) if ms is not None))

        def tile_kinds(k: str) -> str | None:
            return " / ".join(f"{kinds[k].get(t, float('nan')):.4g}" for t in ("pow", "concat")) if k in kinds else None

        def splits(k: str) -> str | None:
            return " / ".join(f"{f}: {ms:.4g}" for f, ms in floors[k].items()) if k in floors else None

        md += _md_table(["key", "config", "candidates' ms, sorted", "best pow / concat tile ms",
                         "best ms per grad_W split floor"],
                        [[k, v, sorted_ms(k), tile_kinds(k), splits(k)] for k, v in p["picks"].items()])
    if thin_split:
        md += "\nSingle-channel backward, one launch against two (timed per shape):\n\n" + _md_table(
            ["key", "one launch ms", "two launches ms", "kept"],
            [[e["key"], e["one_launch_ms"], e["two_launches_ms"], e["pick"]] for e in thin_split])
    if kernels:
        md += "\n" + _md_table(["kernel", "regs", "spills", "shared B", "warps", "stages", "wgmma"],
                               [[k["kernel"][:70], k["registers"], k["spills"], k["shared_bytes"], k["num_warps"],
                                 k["num_stages"], k["wgmma"]] for k in kernels])
    rec.md["autotune"] = md


def _fastest_by(timings: list, label: Callable[[Any], str | None]) -> dict[str, float]:
    """{label: ms}: the fastest finite candidate per ``label(cfg)`` (None: not counted)."""
    best: dict[str, float] = {}
    for cfg, ms in timings:
        name = label(cfg)
        if name is not None and ms != float("inf"):
            best[name] = min(best.get(name, ms), ms)
    return best


def _by_tile_kind(timings: list) -> dict[str, float]:
    """{"pow": ms, "concat": ms}: the fastest finite candidate of each grad_W tile kind (configs with
    ``POW_TILES``), empty for other kernels."""
    def kind(cfg) -> str | None:
        kw = getattr(cfg, "kwargs", {})
        return None if "POW_TILES" not in kw else "pow" if kw["POW_TILES"] else "concat"

    return _fastest_by(timings, kind)


def _split_label(cfg) -> str:
    """A grad_W candidate's split setting: "default", "floor m" (at least m steps a program) or "1/k"
    (k times fewer splits)."""
    host = getattr(cfg, "host_kw", {})
    if "DW_MIN_STEPS" in host:
        return f"floor {host['DW_MIN_STEPS']}"
    return f"1/{host['DW_SPLIT_DIV']}" if "DW_SPLIT_DIV" in host else "default"


def _by_split(timings: list) -> dict[str, float]:
    """{"default": ms, "floor 2": ms, "1/4": ms, ...}: the fastest finite candidate per grad_W split
    setting (host settings), empty where no candidate carried one."""
    if all(_split_label(cfg) == "default" for cfg, _ in timings):
        return {}
    return _fastest_by(timings, _split_label)


#: the training step's backends: the fused kernels, selfonn's exact torch path, and the FastONN
#: formulation (``_common.formulation``: cat the powers, one cuDNN conv per layer)
TRAIN_BACKENDS = ("triton", "torch", "reference")


def _train_variants(args) -> list[dict[str, Any]]:
    """Every backend run each way a user trains, in priority order (a short budget cuts the last):
    tf32 eager, as one captured CUDA graph (host cost gone: what the kernels take) and under
    torch.compile; then bf16 eager and compiled; the unfolded up blocks; torch.compile's
    reduce-overhead mode (inductor's CUDA graphs: slowest to set up)."""
    backends = args.backends.split(",")
    dtypes = args.dtypes.split(",")
    low = [d for d in dtypes if d != "tf32"]
    eager = {"compile": False, "graph": False, "fold_upsample": True}
    compiled = {**eager, "compile": True}
    out = [{"backend": b, "dtype": "tf32", **eager} for b in backends] if "tf32" in dtypes else []
    if "tf32" in dtypes and not args.no_graph:
        out += [{"backend": b, "dtype": "tf32", **eager, "graph": True} for b in backends]
    if "tf32" in dtypes and not args.no_compile:
        out += [{"backend": b, "dtype": "tf32", **compiled} for b in backends]
    out += [{"backend": b, "dtype": d, **eager} for d in low for b in backends]
    if not args.no_compile:
        out += [{"backend": b, "dtype": d, **compiled} for d in low for b in backends]
    out += [{"backend": b, "dtype": "tf32", **eager, "fold_upsample": False} for b in backends if b != "reference"]
    # what `train.py --compile reduce-overhead` runs: inductor's CUDA graphs around G and D
    if "tf32" in dtypes and not args.no_compile and args.compile_backend == "inductor":
        out += [{"backend": b, "dtype": "tf32", **compiled, "compile_mode": "reduce-overhead"} for b in backends]
    return out


@contextlib.contextmanager
def _backend(name: str) -> Iterator[None]:
    """The models' Self-ONN layers on ``name``: a selfonn backend, or 'reference' (the FastONN formulation)."""
    import selfonn

    if name == "reference":
        from _common import formulation

        with formulation():
            yield
    else:
        with selfonn.use_backend(name):
            yield


def train_step_fn(backend: str, dtype: str, compile_: bool, fold: bool, args, ctx: dict,
                  graph: bool = False, compile_mode: str | None = None) -> Callable[[], None]:
    """One Op-GAN step as the trainer runs it: D on real + fake, then G on adversarial + L1 + spectral.
    ``graph``: ready for CUDA-graph capture (Adam state on the device, gradients zeroed in place)."""
    import torch

    from _common import COMPILE_SETTINGS
    from opgan.config import TrainConfig
    from opgan.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
    from opgan.models import losses as L

    device, cfg = ctx["device"], TrainConfig()
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(filters=args.train_filters, q=args.q), fold_upsample=fold).to(device)
    d = Discriminator(DiscriminatorConfig(filters=args.train_filters, q=args.q)).to(device)
    fused = device == "cuda"  # as the trainer steps Adam
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), capturable=graph, fused=fused)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), capturable=graph, fused=fused)
    gen = torch.Generator().manual_seed(1)
    y = ((torch.rand(args.train_batch, 1, args.train_length, generator=gen) * 2 - 1) * 0.5).to(device)
    x = (y + 0.1 * torch.randn(y.shape, generator=gen).to(device)).clamp(-1, 1)
    # dynamic=False: D sees two batch sizes (real + fake, then fake): specialised graphs for both, not a
    # symbolic batch dimension after the first recompile
    kw = {"backend": args.compile_backend, **COMPILE_SETTINGS, **({"mode": compile_mode} if compile_mode else {})}
    g_run = torch.compile(g, **kw) if compile_ else g
    d_run = torch.compile(d, **kw) if compile_ else d
    # Inductor's CUDA graphs (cudagraph trees) start a new generation, and reuse the memory of the
    # previous one's outputs, on a compiled call with no forward awaiting its backward. D's update runs
    # a backward between G's forward and G's backward, so by that rule D's second forward began a new
    # generation and overwrote `fake` while g_loss still had to read it (round 2: "accessing tensor
    # output of CUDAGraphs that has been overwritten by a subsequent run"). Marking each step's start,
    # as PyTorch documents for such loops, makes one step one generation: its outputs live until the
    # next step begins, and nothing of a step is kept past it.
    mark_step = compile_ and compile_mode in CUDAGRAPH_COMPILE_MODES

    def step() -> None:
        if mark_step:
            torch.compiler.cudagraph_mark_step_begin()
        with _backend(backend):
            with precision(dtype, device):
                fake = g_run(x)
            d.requires_grad_(True)
            with precision(dtype, device):
                scores = d_run(torch.cat([y, fake.detach()]))
            loss_d = L.d_loss(*scores.split(x.shape[0]))
            opt_d.zero_grad(set_to_none=not graph)
            loss_d.backward()
            opt_d.step()
            d.requires_grad_(False)
            with precision(dtype, device):
                d_fake = d_run(fake)
            loss_g, _ = L.g_loss(d_fake, fake, y, cfg.lambda_t, cfg.lambda_s, cfg.lambda_adv)
            opt_g.zero_grad(set_to_none=not graph)
            loss_g.backward()
            opt_g.step()

    return step


def _captured(step: Callable[[], None], warmup: int, reset_peak: bool = False) -> Callable[[], None]:
    """``step`` run ``warmup`` (at least 3: tuning, compiles, plans) times on a side stream, then
    captured in one CUDA graph; returns its replay. ``reset_peak``: the CUDA peak-memory count starts
    at the capture."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(max(warmup, 3)):
            step()
    torch.cuda.current_stream().wait_stream(side)
    if reset_peak:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def section_train(rec: Record, args, ctx: dict) -> None:
    import torch

    device = ctx["device"]
    for v in _train_variants(args):
        if _remaining() <= 1:
            raise BudgetExceeded("section budget")
        entry: dict[str, Any] = {**v, "ms": None, "peak_mib": None, "filters": args.train_filters, "q": args.q,
                                 "batch": args.train_batch, "length": args.train_length}
        if v["backend"] not in TRAIN_BACKENDS:
            entry["error"] = f"unknown backend (choose from {TRAIN_BACKENDS})"
        elif v["backend"] == "triton" and device != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            entry["error"] = "skipped: triton needs CUDA or TRITON_INTERPRET=1"
        elif v["graph"] and device != "cuda":
            entry["error"] = "skipped: CUDA graphs need CUDA"
        else:
            try:
                if v["compile"]:
                    # each compiled variant from scratch: no dynamo cache entries of the variants before
                    # (their guards are checked on every call) and fresh cudagraph trees (a variant that
                    # failed mid-step must not leave its generation to the next)
                    torch._dynamo.reset()
                with deadline(args.train_timeout_s if v["compile"] else args.cell_timeout_s):
                    step = train_step_fn(v["backend"], v["dtype"], v["compile"], v["fold_upsample"], args, ctx,
                                         graph=v["graph"], compile_mode=v.get("compile_mode"))
                    t0 = time.perf_counter()
                    if v["graph"]:
                        # The replay allocates nothing: its memory is the graph's private pool, taken
                        # while capturing, so the peak is counted from the capture on.
                        step = _captured(step, args.train_warmup, reset_peak=device == "cuda")
                    else:
                        for _ in range(args.train_warmup):
                            step()
                    _sync(device)
                    entry["warmup_s"] = round(time.perf_counter() - t0, 2)
                    if device == "cuda" and not v["graph"]:
                        torch.cuda.reset_peak_memory_stats()
                    wall, host = wall_and_host(step, device, args.train_steps)
                    entry.update(ms=wall["median"], ms_min=wall["min"], ms_max=wall["max"], steps=args.train_steps,
                                 host_ms=host["median"])
                    if device == "cuda":
                        entry["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
            except Exception as exc:
                entry["error"] = _err(exc)
                if _is_budget(exc):
                    if _remaining() <= 0:
                        rec.data["train_step"].append(entry)
                        raise BudgetExceeded("section budget") from exc
                else:  # where it was raised (round 2's reduce-overhead row on the torch backend: "AssertionError: ")
                    entry["traceback"] = _tb_tail(exc)
            finally:
                step = None  # the variant's models, optimisers and graphs go before the next one's
        rec.data["train_step"].append(entry)
        if device == "cuda":
            torch.cuda.empty_cache()
        rec.md["train"] = "## Op-GAN training step (G+D)\n\n" + _md_table(
            ["backend", "dtype", "compile", "CUDA graph", "fold_upsample", "median ms", "min ms", "max ms", "steps",
             "host ms", "peak MiB", "warmup s", "error"],
            [[e["backend"], e["dtype"], e.get("compile_mode") or e["compile"], e["graph"], e["fold_upsample"], e["ms"],
              e.get("ms_min"), e.get("ms_max"), e.get("steps"), e.get("host_ms"), e["peak_mib"], e.get("warmup_s"),
              e.get("error")] for e in rec.data["train_step"]])
        rec.write()


def _knob_layers(args) -> list:
    return [la for la in _layer_shapes(args) if la.name in _ALL_KNOB_LAYERS] or _layer_shapes(args)[:1]


def knobs_for(layer: str, args) -> dict[str, dict[str, Any]]:
    """The KNOBS variants measured on ``layer`` (a run limited to other layers measures all on its first)."""
    if not any(la.name in _ALL_KNOB_LAYERS for la in _layer_shapes(args)):
        return dict(KNOBS)
    return {k: v for k, v in KNOBS.items() if layer in KNOB_ON.get(k, KNOB_LAYERS)}


@contextlib.contextmanager
def _knob(patch: dict[str, Any]) -> Iterator[None]:
    """selfonn.kernels options changed as in ``patch`` inside (``selfonn.kernels.options``)."""
    from selfonn import kernels

    with kernels.options(**patch):
        yield


def section_knobs(rec: Record, args, ctx: dict) -> None:
    """Fused fwd+bwd (tf32) of a few layers with each launcher constant in KNOBS changed, beside the
    default in the same section: the constants are guesses made without a GPU."""
    from _common import make_inputs

    layers = _knob_layers(args)
    rows = rec.data["knobs"] = []
    for layer in layers:
        inputs = make_inputs(layer, args.batch, ctx["device"])
        for name, patch in {"default": {}, **knobs_for(layer.name, args)}.items():
            if _remaining() <= 1:
                raise BudgetExceeded("section budget")
            with _knob(patch):
                cell = measure_cell(layer, "fused", "fwd+bwd", "tf32", inputs, args, ctx)
            rows.append({"layer": layer.name, "variant": name, "set": patch, "ms": cell.get("ms"),
                         "device_ms": cell.get("device_ms"), "peak_mib": cell.get("peak_mib"),
                         "error": cell.get("error")})
            rec.md["knobs"] = "## Launcher constants (fused fwd+bwd, tf32)\n\n" + _md_table(
                ["layer", "variant", "ms", "device ms", "peak MiB", "error"],
                [[r["layer"], r["variant"], r["ms"], r["device_ms"], r["peak_mib"], r["error"]] for r in rows])
            rec.write()
        del inputs


#: what a Triton cache hit reads: the metadata, the binary and the group file naming them (the
#: sources and IRs beside them are for people; 3.6 skips a named file that is missing, but newer
#: Tritons (3.9 here) miss the whole entry, so the packed group files name only these)
CACHE_KEEP = (".json", ".cubin", ".hsaco")
#: triton-cache.tar.gz and up to two more parts (the device tool returns at most 8 files from $OUT)
MAX_CACHE_PARTS = 3


def section_cache(rec: Record, args, ctx: dict) -> None:  # noqa: ARG001
    """This round's new Triton cache entries as tarballs of at most MAX_TAR_BYTES (the device tool
    returns few, small files): their binaries and metadata, unpacked where they were written.

    Round 2 packed the whole cache, the carried 1418-variant pack (330 MB) included, at gzip's
    slowest level before checking the size: 69 s, stopped by the round's end, nothing saved. The
    carried entries are the next round's already; gzip level 6 is ~5x faster than 9 on cubins for 1%
    more bytes."""
    cache = ctx["cache_dir"]
    before = ctx.get("cache_entries_before", frozenset())
    entries = sorted(_cache_entries(cache) - before)
    info: dict[str, Any] = {"dir": str(cache), "carried_entries": len(before), "new_entries": len(entries),
                            "kept": list(CACHE_KEEP), "tars": []}
    rec.data["cache"] = info  # what there was, also when the section is cut short
    part: tuple[tarfile.TarFile, Any, Path] | None = None
    packed = nothing_kept = 0
    try:
        for i, entry in enumerate(entries):
            files = _entry_files(cache / entry)
            if not files:  # e.g. a launcher module: rebuilt where it is needed
                nothing_kept += 1
                continue
            if part is not None and part[1].tell() > MAX_TAR_BYTES - 2**20:  # ~1 MiB for what zlib holds back
                _close_part(*part, info)
                part = None
                if len(info["tars"]) == MAX_CACHE_PARTS:
                    info["error"] = (f"{len(entries) - i} new entries left out (a part holds "
                                     f"{MAX_TAR_BYTES >> 20} MiB, at most {MAX_CACHE_PARTS} parts)")
                    break
            if part is None:
                part = _open_part(rec.out, len(info["tars"]) + 1)
            for name, data in files:
                ti = tarfile.TarInfo(str(Path(cache.name) / entry / name))
                ti.size, ti.mtime = len(data), int(time.time())
                part[0].addfile(ti, io.BytesIO(data))
            packed += 1
        if part is None and not info["tars"]:
            part = _open_part(rec.out, 1)  # nothing new: an empty tarball still says the section ran
    except BaseException:
        if part is not None:  # cut mid-entry: drop the unfinished part rather than leave a broken tarball
            with contextlib.suppress(Exception):
                part[0].fileobj.close()
            part[1].close()
            part[2].with_suffix(".tmp").unlink(missing_ok=True)
            part = None
        raise
    finally:
        if part is not None:
            _close_part(*part, info)
        info.update(packed_entries=packed, entries_without_binaries=nothing_kept)
    rec.md["cache"] = (
        f"## Triton cache\n\n{len(entries)} entries new in `{cache}` ({len(before)} there before, carried) -> "
        f"{', '.join(t['tar'] for t in info['tars']) or '-'}: {packed} entries"
        f"{'; ' + info['error'] if 'error' in info else ''}. Their group files name absolute paths under "
        f"`{cache}`: unpack each part in `{cache.parent}` (over a carried cache there), e.g. into the cache "
        "tools/gpu/prewarm_cache.py packs, and carry that.\n")


def _open_part(out: Path, n: int) -> tuple[tarfile.TarFile, Any, Path]:
    """Part ``n``: triton-cache.tar.gz, then triton-cache.2.tar.gz, ... (written as .tmp until closed)."""
    dest = out / ("triton-cache.tar.gz" if n == 1 else f"triton-cache.{n}.tar.gz")
    raw = open(dest.with_suffix(".tmp"), "wb")  # noqa: SIM115 (closed by _close_part)
    tar = tarfile.open(fileobj=gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0), mode="w")
    return tar, raw, dest


def _entry_files(folder: Path) -> list[tuple[str, bytes]]:
    """One cache entry's files a hit reads (CACHE_KEEP), its group files naming only those."""
    out = []
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        if p.name.startswith("__grp__"):
            try:
                grp = json.loads(p.read_text())
                grp["child_paths"] = {k: v for k, v in grp["child_paths"].items() if Path(k).suffix in CACHE_KEEP}
                out.append((p.name, json.dumps(grp).encode()))
            except (ValueError, KeyError, AttributeError, OSError):
                continue  # not a group file Triton would use either
        elif p.suffix in CACHE_KEEP:
            out.append((p.name, p.read_bytes()))
    return out


def _close_part(tar: tarfile.TarFile, raw: Any, dest: Path, info: dict) -> None:
    """Finish one part and give it its name (a part cut short never sits in $OUT half written)."""
    tar.close()
    tar.fileobj.close()  # the GzipFile (tarfile leaves a fileobj it was given open): its trailer
    raw.close()
    os.replace(dest.with_suffix(".tmp"), dest)
    info["tars"].append({"tar": dest.name, "bytes": dest.stat().st_size})


RUNNERS = {"env": section_env, "tests": section_tests, "compile": section_compile, "layers": section_layers,
           "profile": section_profile, "host": section_host, "autotune": section_autotune, "train": section_train,
           "knobs": section_knobs, "cache": section_cache}


# ---- main ----------------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "bench-out"),
                    help="output folder (default $OUT or ./bench-out)")
    ap.add_argument("--budget-s", type=float, default=480,
                    help="global time guard for the whole round, seconds (default 480: with the install and the "
                         "process start the round ends inside a 10-minute call)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma list of " + ",".join(SECTIONS))
    ap.add_argument("--smoke", action="store_true", help="CPU end-to-end check: tiny shapes, TRITON_INTERPRET=1")
    ap.add_argument("--tests", default="tests/test_kernels_selfonn_conv.py tests/test_kernels_ops.py tests/test_models.py "
                                       "tests/test_trainer.py -k cuda",
                    help="pytest arguments of the tests section (test files whose imports are missing here, "
                         "e.g. the trainer's without soundfile: carry --wheels, are left out and said so)")
    ap.add_argument("--wheels", default=".whl",
                    help="a folder of carried wheels (tools/gpu/gpu_continue.sh prepare writes .whl: soundfile, "
                         "pystoi, ...) installed into /tmp/site for the tests when present")
    ap.add_argument("--test-timeout-s", type=int, default=120, help="pytest-timeout per test")
    ap.add_argument("--test-workers", type=int, default=-1,
                    help="pytest-xdist workers of the tests section (default: one per CPU up to 16 when "
                         "pytest-xdist is installed; 0: one process)")
    ap.add_argument("--triton-cache", default="",
                    help="a Triton cache to use: a folder or a .tar.xz / .tar.gz of one (tools/gpu/prewarm_cache.py --pack)")
    ap.add_argument("--layers", default="",
                    help="comma list of layer names, 'context' for every gen.ctx.* layer (default: the 16 Op-GAN "
                         "layers, then the dilated context candidate's 8)")
    ap.add_argument("--no-context-layers", action="store_true",
                    help="leave out the dilated context candidate's layers (gen.ctx.*) unless --layers names them")
    ap.add_argument("--providers", default=",".join(LAYER_PROVIDERS))
    ap.add_argument("--dtypes", default=",".join(DTYPES))
    ap.add_argument("--backends", default=",".join(TRAIN_BACKENDS),
                    help="train-step backends: triton (fused), torch (exact path), reference (FastONN formulation)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile train-step variants")
    ap.add_argument("--no-graph", action="store_true", help="skip the CUDA-graph train-step variants")
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--length", type=int, default=32000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--q", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10, help="least calls per layer cell")
    ap.add_argument("--host-calls", type=int, default=200,
                    help="timed calls per fwd+bwd tf32 layer cell (wall and host medians); other cells a quarter")
    ap.add_argument("--profile-iters", type=int, default=5)
    ap.add_argument("--cell-timeout-s", type=float, default=45, help="deadline of one layer cell / eager train step")
    ap.add_argument("--train-timeout-s", type=float, default=90, help="deadline of one compiled train-step variant")
    ap.add_argument("--train-filters", type=int, default=16)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-length", type=int, default=32000)
    ap.add_argument("--train-warmup", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=20, help="timed steps per variant (min / median / max)")
    args = ap.parse_args(argv)
    if args.smoke:  # tiny everything; the compile provider without a C++ toolchain
        # Triton's interpreter is slow: the layer with the shortest input at L=2688 and one dilated
        # context layer, and the train step on the torch backend only (the fused path is covered by the layer cells).
        for k, v in dict(budget_s=min(args.budget_s, 120), length=2688, batch=1, filters=2, q=2, warmup=0, repeats=1,
                         profile_iters=1, layers=args.layers or "disc.head,gen.ctx.d8", train_filters=1, train_batch=1,
                         train_length=2688, train_warmup=0, train_steps=2, host_calls=2, compile_backend="aot_eager",
                         backends="torch,reference", no_compile=True, no_graph=True,
                         tests="tests/test_public_api.py").items():
            setattr(args, k, v)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    return args


def _context(args) -> dict[str, Any]:
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    cache_dir = Path(os.environ.get("TRITON_CACHE_DIR") or Path.home() / ".triton" / "cache")
    peaks = next((v for k, v in PEAKS.items() if k in name), None)
    return {"device": device, "device_name": name, "triton_version": triton_version, "cache_dir": cache_dir,
            "peaks": peaks, "cache_entries_before": _cache_entries(cache_dir)}


def _cache_entries(cache: Path) -> frozenset[str]:
    """The Triton cache's entries (one folder per compiled variant, named by its key)."""
    return frozenset(p.name for p in cache.iterdir() if p.is_dir()) if cache.is_dir() else frozenset()


def _slug(name: str) -> str:
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w and w != "nvidia"]
    return words[0] if words else "unknown"


def _ensure_installed() -> None:
    """A bare GPU machine has torch and triton but not this project: install it editable, offline, and re-run.

    (selfonn.kernels and opgan.models exist only through the package-dir mapping of an install.)
    """
    import importlib.util

    try:
        missing = [m for m in ("selfonn.kernels", "opgan.models") if importlib.util.find_spec(m) is None]
    except ModuleNotFoundError:
        missing = ["selfonn"]
    if not missing:
        return
    if os.environ.get("GPU_ROUND_INSTALLED"):
        raise SystemExit(f"gpu_round: {missing} still not importable after installing {ROOT}")
    print(f"[gpu_round] {missing} not importable: pip install --no-deps --no-index -e {ROOT}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                    "-e", str(ROOT)], check=True)
    os.environ["GPU_ROUND_INSTALLED"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])


def _use_triton_cache(path: Path) -> None:
    """Point Triton at a carried cache (before it is imported); a .tar.xz / .tar.gz is unpacked beside
    itself once, its group files pointed at where their entries now are (``triton_pack.unpack``:
    Triton writes absolute paths, so a pack built in another folder would otherwise be compiled again)."""
    if path.is_file() and path.name.endswith((".tar.xz", ".txz", ".tar.gz", ".tgz")):
        sys.path.insert(0, str(HERE))
        from triton_pack import unpack

        try:
            path = unpack(path, path.parent, reuse=True)
        except ValueError as e:
            raise SystemExit(f"gpu_round: {e}") from None
    if not path.is_dir():
        raise SystemExit(f"gpu_round: --triton-cache {path}: no such folder, .tar.xz or .tar.gz")
    os.environ["TRITON_CACHE_DIR"] = str(path.resolve())
    print(f"[gpu_round] Triton cache: {path} ({sum(1 for _ in path.rglob('*.cubin'))} cubins)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    t_start = time.monotonic()
    args = _parse(argv)
    # every tune key is measured in this run (the autotune section records each candidate), never
    # taken from picks an earlier process kept on this machine
    os.environ["SELFONN_TUNE_CACHE"] = "0"
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before anything imports Triton
        # its own empty cache: a CPU smoke run must not tar up whatever the machine's Triton cache holds
        os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="gpu_round_smoke_cache_")
    elif args.triton_cache:
        _use_triton_cache(Path(args.triton_cache))
    if argv is None:  # run as a script: make the project importable first
        _ensure_installed()
    if not args.smoke:
        _use_wheels(ROOT / args.wheels)
    sys.path[:0] = [str(HERE), str(BENCH)]  # triton_pack; the measurement helpers (_common, tables, ...)
    import torch

    import _common

    _common.COMPILE_BACKEND["name"] = args.compile_backend
    ctx_baselines = _common.fair_baselines()  # cudnn.benchmark on before any conv runs
    if args.smoke:
        torch.set_num_threads(1)
    ctx = _context(args)
    ctx["baselines"] = ctx_baselines
    torch.backends.cuda.matmul.allow_tf32 = True  # 'tf32' rows: PyTorch's conv default, also for matmuls
    torch.backends.cudnn.allow_tf32 = True
    now = _dt.datetime.now(_dt.timezone.utc)
    out = Path(args.out)
    rec = Record(out, f"{now:%Y-%m-%d}-{_slug(ctx['device_name'])}", {
        "device": ctx["device_name"], "torch": torch.__version__, "triton": ctx["triton_version"],
        "date": now.isoformat(timespec="seconds"),
        "command": " ".join(["python", "tools/gpu/gpu_round.py", *(argv or sys.argv[1:])]),
        "smoke": args.smoke, "budget_s": args.budget_s,
        "installed_by_round": bool(os.environ.get("GPU_ROUND_INSTALLED")),
        "config": {"layers": {"batch": args.batch, "length": args.length, "filters": args.filters, "q": args.q},
                   "train": {"batch": args.train_batch, "length": args.train_length, "filters": args.train_filters,
                             "q": args.q}},
    })
    try:
        _run_sections(rec, args, ctx, t_start)
    finally:
        if args.smoke:
            shutil.rmtree(os.environ["TRITON_CACHE_DIR"], ignore_errors=True)
    from tables import schema_errors

    errs = schema_errors(rec.data)
    if errs:  # a bug here, not a GPU result: say so loudly but keep the files
        rec.data["schema_errors"] = errs
        rec.write()
        print(f"[gpu_round] the record breaks its schema: {errs[:3]}", file=sys.stderr)
    print(f"[gpu_round] wrote {rec.json_path} and {rec.md_path} in {time.monotonic() - t_start:.1f} s", file=sys.stderr)
    return 1 if errs else 0


def _run_sections(rec: Record, args, ctx: dict, t_start: float) -> None:
    """Each wanted section under its deadline; the record is written after every one."""
    wanted = [s for s in SECTIONS if s in args.sections.split(",")]
    global_end = t_start + args.budget_s
    carry = 0.0
    for name in wanted:
        share = SHARES[name] * args.budget_s + carry
        reserve = sum(SHARES[s] * args.budget_s for s in wanted[wanted.index(name) + 1:] if s == "cache")
        left = global_end - time.monotonic()
        allowed = left if name == "cache" else min(share, left - reserve)
        t0 = time.monotonic()
        status, note = "done", ""
        try:
            with deadline(max(allowed, 0)):
                RUNNERS[name](rec, args, ctx)
        except Exception as exc:  # one broken or slow section must not lose the others
            if _is_budget(exc):
                status, note = "stopped", f"budget of {max(allowed, 0):.0f} s used up"
            else:
                status, note = "failed", _err(exc)
                rec.data.setdefault("tracebacks", {})[name] = traceback.format_exc()[-4000:]
        spent = time.monotonic() - t0
        carry = max(share - spent, 0.0) if status == "done" else 0.0
        rec.section(name, status, spent, note)
        rec.write()
        print(f"[gpu_round] {name}: {status} in {spent:.1f} s {note}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
