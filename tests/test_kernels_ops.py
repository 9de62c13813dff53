"""The fused kernels as torch.library ops (torch.compile, fake tensors) and the lean launcher's contract.

CPU runs go through the Triton interpreter; what needs a compiled kernel (direct launches, CUDA-graph
capture, inductor) is CUDA-only and skipped here with a reason.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import selfonn
from selfonn import reference_conv1d
from selfonn.kernels import _launch
from selfonn.kernels import _dispatch, gemm, grad_w
from selfonn.kernels import selfonn_conv as sc

pytestmark = pytest.mark.timeout(300)

CUDA_ONLY = pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                               reason="needs a CUDA device (compiled kernels, CUDA graphs, inductor)")

# (x shape, weight shape, geometry ints as in the op schema, output shape)
OP_CASES = {
    "conv_s2": ((2, 3, 13), (4, 9, 3), (2, 1, 1, 1, 1, 3, False, 0), (2, 4, 7)),
    "convT_s2_outpad": ((2, 3, 7), (9, 2, 4), (2, 1, 2, 1, 1, 3, True, 1), (2, 2, 14)),
    "conv_cin1_thin": ((2, 1, 21), (5, 3, 4), (4, 1, 1, 1, 1, 3, False, 0), (2, 5, 5)),
    "conv_groups2": ((1, 4, 9), (6, 6, 3), (1, 1, 1, 1, 2, 3, False, 0), (1, 6, 9)),
}


def _args(name: str, device: str, bias: bool = True, dtype=torch.float64):
    xs, ws, geom, _ = OP_CASES[name]
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(xs, generator=gen, dtype=dtype) * 2 - 1).to(device).requires_grad_(True)
    w = (torch.randn(ws, generator=gen, dtype=dtype) * 0.3).to(device).requires_grad_(True)
    c_out = ws[1] * geom[4] if geom[6] else ws[0]
    b = torch.randn(c_out, generator=gen, dtype=dtype).to(device).requires_grad_(True) if bias else None
    return (x, w, b, *geom)


def test_ops_are_registered():
    assert hasattr(torch.ops.selfonn, "fused_conv") and hasattr(torch.ops.selfonn, "fused_conv_backward")
    schema = str(torch.ops.selfonn.fused_conv.default._schema)
    assert "Tensor? bias" in schema and "bool transposed" in schema


@pytest.mark.parametrize("name", list(OP_CASES))
def test_fake_tensors_give_the_real_shapes(name):
    """register_fake: shapes (and dtypes) without running a kernel, as torch.compile traces them."""
    xs, ws, geom, out = OP_CASES[name]
    with FakeTensorMode():
        x, w = torch.empty(xs), torch.empty(ws)
        y = torch.ops.selfonn.fused_conv(x, w, None, *geom)
        dx, dw, db = torch.ops.selfonn.fused_conv_backward(torch.empty(out), x, w, *geom, True, True, False)
    assert tuple(y.shape) == out and y.dtype == torch.float32
    assert tuple(dx.shape) == xs and tuple(dw.shape) == ws and db.numel() == 0


@pytest.mark.parametrize("name", ["conv_s2", "convT_s2_outpad", "conv_cin1_thin"])
def test_opcheck(name, device):
    """torch.library.opcheck: schema, autograd registration, fake tensors, AOT dispatch (dynamic shapes)."""
    torch.library.opcheck(torch.ops.selfonn.fused_conv.default, _args(name, device))


@pytest.mark.parametrize("name", list(OP_CASES))
def test_library_op_matches_eager_path(name, device):
    """The op (what compiled graphs call) and the eager autograd.Function agree to the bit."""
    args = _args(name, device)
    x, w, b = args[:3]
    y_op = torch.ops.selfonn.fused_conv(*args)
    y_fn = sc._SelfONNFn.apply(x, w, b, sc._Geom(*(args[3:9]), args[10], args[9]))
    assert torch.equal(y_op, y_fn)
    gy = torch.rand_like(y_op)
    assert all(torch.equal(p, r) for p, r in zip(torch.autograd.grad(y_op, (x, w, b), gy),
                                                  torch.autograd.grad(y_fn, (x, w, b), gy)))


def test_library_op_saves_only_x_and_weight(device):
    args = _args("conv_s2", device)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        torch.ops.selfonn.fused_conv(*args)
    assert sorted(tuple(t.shape) for t in saved) == sorted([tuple(args[0].shape), tuple(args[1].shape)])


class _Net(torch.nn.Module):
    """Single-channel in (thin kernels), a GEMM layer, single-channel transposed out: as the Op-GAN G."""

    def __init__(self) -> None:
        super().__init__()
        self.a = selfonn.SelfONN1d(1, 4, 5, stride=2, padding=2, q=3, backend="triton")
        self.b = selfonn.SelfONN1d(4, 6, 3, padding=1, q=3, backend="triton")
        self.c = selfonn.SelfONNTranspose1d(6, 1, 6, stride=2, padding=2, q=3, backend="triton")

    def forward(self, x):
        return self.c(torch.tanh(self.b(torch.tanh(self.a(x)))))


def test_torch_compile_fullgraph(device):
    """torch.compile(model, fullgraph=True) traces selfonn's dispatch into one graph of opaque fused
    ops (AOTAutograd included, aot_eager backend on CPU) with the eager values and gradients."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    torch.manual_seed(0)
    net = _Net().double().to(device)
    x = torch.rand(2, 1, 32, dtype=torch.float64, device=device) * 2 - 1
    y0 = net(x)
    g0 = torch.autograd.grad(y0.square().sum(), list(net.parameters()))
    counter = CompileCounterWithBackend("aot_eager")
    y1 = torch.compile(net, backend=counter, fullgraph=True)(x)
    g1 = torch.autograd.grad(y1.square().sum(), list(net.parameters()))
    assert counter.frame_count == 1
    ops = [n.target for n in counter.graphs[0].graph.nodes if n.op == "call_function"]
    assert sum(t is torch.ops.selfonn.fused_conv for t in ops) == 3
    assert torch.equal(y0, y1)
    assert all(torch.equal(p, r) for p, r in zip(g0, g1))


@pytest.mark.timeout(600)
def test_generator_and_discriminator_compile_without_graph_breaks(device, one_thread):
    """The Op-GAN G and D on the fused backend: torch._dynamo.explain finds no graph break in either
    forward (one graph each), and each compiled forward + backward (fullgraph, aot_eager: the ops'
    fake and autograd registrations trace the backward) gives the eager output and gradients."""
    from opgan.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, min_discriminator_length

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(filters=2, q=2)).double().to(device)
    d = Discriminator(DiscriminatorConfig(filters=1, q=2)).double().to(device)
    x_g = (torch.rand(1, 1, 64, dtype=torch.float64) * 2 - 1).to(device)
    x_d = (torch.rand(1, 1, min_discriminator_length(), dtype=torch.float64) * 2 - 1).to(device)
    with selfonn.use_backend("triton"):
        for model, x in ((g, x_g), (d, x_d)):
            torch._dynamo.reset()
            explained = torch._dynamo.explain(model)(x)
            assert explained.graph_break_count == 0, explained.break_reasons
            assert explained.graph_count == 1
            y0 = model(x)
            g0 = torch.autograd.grad(y0.square().sum(), list(model.parameters()))
            torch._dynamo.reset()
            y1 = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
            g1 = torch.autograd.grad(y1.square().sum(), list(model.parameters()))
            torch.testing.assert_close(y1, y0)
            for a, b in zip(g1, g0):
                torch.testing.assert_close(a, b)
    torch._dynamo.reset()


# ---- the launcher: tune once per key, precision and size bucket in the key ----------------------


def _run_conv(device, L: int, cin: int = 3):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(2, cin, L, generator=gen, dtype=torch.float64) * 2 - 1).to(device).requires_grad_(True)
    w = (torch.randn(4, 3 * cin, 3, generator=gen, dtype=torch.float64) * 0.3).to(device).requires_grad_(True)
    y = sc.triton_selfonn_conv1d(x, w, None, 1, 1, 1, 1, 3)
    ref = reference_conv1d(x.detach(), w.detach(), None, 1, 1, 1, 1, 3)
    assert (y.detach() - ref).abs().max() < 1e-10
    y.sum().backward()
    return y


def test_tuning_runs_once_per_key_and_length_bucket(device, monkeypatch):
    """The first call for a key benchmarks the candidates; later calls, and lengths in the same
    power-of-two bucket, reuse the pick (variable-length audio does not re-tune)."""
    benched: list[tuple[str, _launch.Cfg]] = []

    def fake_bench(self, cfg, prepare):
        prepare(cfg)  # the argument builder must work for every candidate
        benched.append((self.name, cfg))
        return float(len(benched) % 3)  # an arbitrary but deterministic winner

    # A key with one candidate is kept untuned, so the kernels that must benchmark are the ones offered
    # several: all three under the interpreter; on a GPU this small fp64 layer fits one GEMM tile,
    # so there only grad_W (its split variants) has a choice.
    offered: set[str] = set()
    real_select = _launch.Kernel.select

    def select(self, tune_key, candidates, prepare):
        cands = candidates() if callable(candidates) else candidates
        if len(cands) > 1:
            offered.add(self.name)
        return real_select(self, tune_key, cands, prepare)

    monkeypatch.setattr(_launch.Kernel, "tuning_enabled", staticmethod(lambda: True))
    monkeypatch.setattr(_launch.Kernel, "_bench", fake_bench)
    monkeypatch.setattr(_launch.Kernel, "select", select)
    for k in sc._kernels.values():
        monkeypatch.setattr(k, "tuned", {})
        monkeypatch.setattr(k, "timings", {})
    for name, empty in (("_plan_sets", {}), ("_plan_opts", None), ("_plan_dict", {})):
        monkeypatch.setattr(_dispatch, name, empty)  # a signature an earlier test recorded would replay untuned
    _run_conv(device, 37)
    first = len(benched)
    assert {n for n, _ in benched} == offered and "dw" in offered
    if _launch.interpreting():
        assert offered == {"gather", "scatter", "dw"}
    for k in sc._kernels.values():  # every benchmarked candidate's time is kept beside the pick
        for key, cfg in k.tuned.items():
            times = k.timings[key]
            assert cfg == min(times, key=lambda ct: ct[1])[0] and all(c in (b for _, b in benched) for c, _ in times)
    _run_conv(device, 37)
    _run_conv(device, 45)  # same bucket (64)
    assert len(benched) == first
    _run_conv(device, 70)  # next bucket: tuned again
    assert len(benched) > first


def test_tune_keys_hold_precision_and_geometry(device, monkeypatch):
    """TF32 vs IEEE and the geometry constants reach the tune key of every kernel."""
    keys: dict[str, list[tuple]] = {}

    def record(self, dev, tune_key, candidates, prepare):
        keys.setdefault(self.name, []).append(tune_key)

    monkeypatch.setattr(_launch.Kernel, "__call__", record)
    x = torch.zeros(2, 3, 20, device=device)
    w = torch.zeros(4, 9, 3, device=device)
    for precision, stride in (("ieee", 2), ("tf32", 2), ("ieee", 3)):
        for mod in (gemm, grad_w):
            monkeypatch.setattr(mod, "_precision", lambda t, p=precision: p)
        g = sc._geom(stride, 1, 1, 1, 3)
        d = sc._dims(x, w, g)
        sc._forward(x, w, None, g)
        sc._backward(torch.zeros(2, 4, d.L_out, device=device), x, w, g, True, True, False)
    for name in ("gather", "scatter", "dw"):
        ieee, tf32, ieee_s3 = keys[name]
        assert "tf32" in repr(tf32) and "tf32" not in repr(ieee), name
        assert len({ieee, tf32, ieee_s3}) == 3, name


def test_launch_key_tracks_triton_specialisation():
    """A cached compiled kernel is reused only for the runtime ints and pointer alignment it was
    compiled for (everything Triton's specialisation can depend on)."""
    k = sc._kernel("dw")
    t = torch.zeros(64)
    args = {n: 7 for n in k.runtime_names} | {n: t for n in k.runtime_names if n.endswith("_ptr")}
    base = k.launch_key(args)
    assert k.launch_key(dict(args)) == base
    assert k.launch_key(args | {"sx_c": 16}) != base  # a stride
    assert k.launch_key(args | {"x_ptr": t[1:]}) != base  # a misaligned pointer
    assert k.launch_key(args | {"x_ptr": t[4:]}) == base  # still 16-byte aligned


def test_pin_overrides_and_restores():
    cfg = _launch.Cfg.of(BLOCK_T=16, BLOCK_N=16, BLOCK_R=16)
    k = sc._kernel("gather")
    with _launch.pin("gather", cfg):
        assert k.select(("any",), [sc._mm_configs()[0]], lambda c: ({}, 1)) is cfg
    assert "gather" not in _launch._pinned


def test_tuner_times_host_settings_like_blocks(monkeypatch):
    """Configs that differ only in a host setting (grad_W's split floor) are distinct candidates, timed
    side by side and the faster kept; the setting never joins the kernel's arguments."""
    base = _launch.Cfg.of(num_warps=4, BLOCK_T=16)
    finer = base.with_host(DW_MIN_STEPS=1)
    assert finer != base and finer.kwargs == base.kwargs == {"BLOCK_T": 16}
    assert finer.host_kw == {"DW_MIN_STEPS": 1} and finer.with_host(DW_MIN_STEPS=2).host_kw == {"DW_MIN_STEPS": 2}
    k = _launch.Kernel("probe", sc._kernel("dw").fn)
    monkeypatch.setattr(_launch.Kernel, "tuning_enabled", staticmethod(lambda: True))
    monkeypatch.setattr(_launch.Kernel, "_precompile", lambda self, cands, prepare: 0)
    monkeypatch.setattr(_launch.Kernel, "_bench", lambda self, cfg, prepare: 0.5 if cfg.host else 1.0)
    assert k.select(("key",), [base, finer], lambda c: ({}, 1)) is finer
    assert [c for c, _ in k.timings[("key",)]] == [base, finer]


def test_tuned_picks_are_kept_per_gpu_model_and_code(tmp_path, monkeypatch):
    """A pick benchmarked once is kept on disk, one file per GPU model and code version, and a new
    process takes it without benchmarking (and compiles only it) while it is still a candidate; a
    corrupt file is ignored; SELFONN_TUNE_CACHE=0 keeps nothing."""
    monkeypatch.setenv("SELFONN_TUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(_launch, "_device_tag", lambda: "GPU-A-sm90")
    monkeypatch.setattr(_launch.Kernel, "tuning_enabled", staticmethod(lambda: True))
    monkeypatch.setattr(_launch.Kernel, "_precompile", lambda self, cands, prepare: 0)
    benched = []

    def bench(self, cfg, prepare):
        benched.append(cfg)
        return 0.5 if cfg.host else 1.0

    monkeypatch.setattr(_launch.Kernel, "_bench", bench)
    base = _launch.Cfg.of(num_warps=4, BLOCK_T=16, POW_TILES=True)
    finer, other = base.with_host(DW_MIN_STEPS=1), _launch.Cfg.of(num_warps=8, BLOCK_T=32, POW_TILES=True)
    key = (torch.float32, "tf32", True, 3, (("IDX", 32),))

    def new_process() -> _launch.Kernel:
        monkeypatch.setattr(_launch, "_tune_cache", _launch.TuneCache())
        return _launch.Kernel("probe", sc._kernel("dw").fn)

    assert new_process().select(key, [base, finer], None) == finer and len(benched) == 2
    (kept,) = tmp_path.glob("tune-GPU-A-sm90-*.json")
    k = new_process()
    assert k.configs_to_compile(key, [base, finer]) == [finer]
    assert k.select(key, [base, finer], None) == finer and len(benched) == 2 and k.n_tunes == 0
    assert new_process().select(key, [base, other], None) == base and len(benched) == 4  # not a candidate now
    monkeypatch.setattr(_launch, "_device_tag", lambda: "GPU-B-sm80")
    assert new_process().select(key, [base, finer], None) == finer and len(benched) == 6  # another model
    assert len(list(tmp_path.glob("tune-*.json"))) == 2
    monkeypatch.setattr(_launch, "_device_tag", lambda: "GPU-A-sm90")
    kept.write_text("{not json")
    assert new_process().select(key, [base, finer], None) == finer and len(benched) == 8  # ignored, re-measured
    monkeypatch.setenv("SELFONN_TUNE_CACHE", "0")
    assert _launch.TuneCache().path() is None


def test_counters_buffer_grows_and_keeps_old_buffers(device):
    dev = torch.device(device)
    small = _launch.counters(dev, 10)
    assert small.dtype == torch.int32 and not small.any()
    big = _launch.counters(dev, small.numel() + 1)
    assert big.numel() > small.numel() and any(t is small for t in _launch._retired)
    assert _launch.counters(dev, 5) is big


# ---- CUDA only -----------------------------------------------------------------------------------


@CUDA_ONLY
def test_cuda_graph_capture_of_a_training_step():
    """Forward + backward + SGD of a fused-op model captured in one CUDA graph replays like eager."""
    torch.manual_seed(0)
    net = _Net().cuda()
    x = torch.rand(4, 1, 2048, device="cuda") * 2 - 1
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=False)
        loss = net(x).square().mean()
        loss.backward()
        opt.step()
        return loss

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):  # tune, compile and warm up outside the capture
            step()
    torch.cuda.current_stream().wait_stream(s)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss_g = step()
    net.load_state_dict(state)
    graph.replay()
    after_graph = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    loss_e = step()
    torch.testing.assert_close(loss_g, loss_e)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(after_graph[k], v)


@CUDA_ONLY
def test_torch_compile_inductor_cuda():
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = _Net().cuda()
    x = torch.rand(2, 1, 4096, device="cuda") * 2 - 1
    y0 = net(x)
    y1 = torch.compile(net, fullgraph=True)(x)
    torch.testing.assert_close(y1, y0, rtol=1e-4, atol=1e-4)


def test_launcher_falls_back_when_a_config_does_not_fit(monkeypatch):
    """A config the device rejects (shared memory) is skipped for the next candidate (compiled path)."""
    import triton

    def kernel(a_ptr, n, BLOCK: "tl.constexpr"):  # noqa: F821 - only the signature is read
        pass

    launched = []

    class FakeJit:
        fn = staticmethod(kernel)

        def __getitem__(self, grid):
            def run(**kw):
                if kw["BLOCK"] == 64:
                    raise triton.runtime.errors.OutOfResources(262144, 232448, "shared memory")
                launched.append(kw["BLOCK"])
            return run

    monkeypatch.setattr(_launch, "interpreting", lambda: False)
    k = _launch.Kernel("fake", FakeJit())
    k.direct_ok = False
    cands = [_launch.Cfg.of(BLOCK=64), _launch.Cfg.of(BLOCK=32)]
    k(torch.device("cpu"), ("key",), cands, lambda cfg: ({"a_ptr": None, "n": 1}, 1))
    assert launched == [32]
    assert k.runtime_names == ["a_ptr", "n"]


class _WarmupJit:
    """Stands in for a JITFunction: records warmup (compile-only) calls, from any thread."""

    def __init__(self):
        self.warmed: list[tuple[int, int]] = []

    @staticmethod
    def fn(a_ptr, n, BLOCK: "tl.constexpr"):  # noqa: F821, N803 - only the signature is read
        pass

    def warmup(self, grid, **kw):
        self.warmed.append((kw["BLOCK"], kw["num_warps"]))


def test_tuning_compiles_every_candidate_up_front(monkeypatch):
    """Before benchmarking, the candidates are compiled at once (warmup), each exactly once."""
    monkeypatch.setattr(_launch, "interpreting", lambda: False)
    jit = _WarmupJit()
    k = _launch.Kernel("fake", jit)
    cands = [_launch.Cfg.of(num_warps=w, BLOCK=b) for b, w in ((16, 4), (32, 4), (64, 8))]
    assert k._precompile(cands, lambda cfg: ({"a_ptr": None, "n": 1}, 3)) == 3
    assert sorted(jit.warmed) == [(16, 4), (32, 4), (64, 8)]
    monkeypatch.setenv("SELFONN_PAR_COMPILE", "0")
    assert k._precompile(cands, lambda cfg: ({"a_ptr": None, "n": 1}, 3)) == 0


def test_configs_to_compile_follow_what_select_would_run(monkeypatch):
    k = _launch.Kernel("fake_cfgs", _WarmupJit())
    cands = [_launch.Cfg.of(BLOCK=16), _launch.Cfg.of(BLOCK=32)]
    monkeypatch.setattr(_launch.Kernel, "tuning_enabled", staticmethod(lambda: True))
    assert k.configs_to_compile(("key",), lambda: cands) == cands  # all of them get benchmarked
    k.tuned[("key",)] = cands[1]
    assert k.configs_to_compile(("key",), cands) == [cands[1]]  # already tuned: the winner only
    with _launch.pin("fake_cfgs", cands[0]):
        assert k.configs_to_compile(("other",), cands) == [cands[0]]
    monkeypatch.setattr(_launch.Kernel, "tuning_enabled", staticmethod(lambda: False))
    assert k.configs_to_compile(("other",), cands) == [cands[0]]  # no tuning: the first candidate


def test_precompile_replaces_launches_with_compiles(monkeypatch):
    """Inside precompile a launch compiles the configs it would run and launches nothing."""
    from selfonn.kernels import precompile as pc

    monkeypatch.setattr(_launch, "interpreting", lambda: False)
    monkeypatch.setattr(_launch.Kernel, "tuning_enabled", staticmethod(lambda: True))
    jit = _WarmupJit()
    k = _launch.Kernel("fake_pc", jit)
    cands = [_launch.Cfg.of(BLOCK=16), _launch.Cfg.of(BLOCK=32)]
    report = pc.precompile(lambda: k(torch.device("cpu"), ("key",), cands, lambda cfg: ({"a_ptr": None, "n": 1}, 1)),
                           workers=1)
    assert sorted(jit.warmed) == [(16, 4), (32, 4)] and report.failed == []
    assert _launch._compile_hook is None  # restored
    with pytest.raises(ValueError, match="cuda:90"):
        pc.parse_target("sm90")


def test_parallel_compiles_never_leave_tritons_async_mode_on(monkeypatch):
    """A deadline (SIGALRM) or Ctrl-C while the pool is waited for must not leave Triton's async mode
    active: every later compile of the process would be queued on a shut-down pool."""
    import triton

    if not hasattr(triton, "AsyncCompileMode"):
        pytest.skip("this Triton has no AsyncCompileMode")
    from triton.runtime import _async_compile

    def interrupted(self, *exc):  # what an exception during Triton's own wait looks like
        raise KeyboardInterrupt

    monkeypatch.setattr(triton.AsyncCompileMode, "__exit__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with _launch.async_compiles(2) as on:
            assert on and _async_compile.active_mode.get() is not None
    assert _async_compile.active_mode.get() is None


def _old_patch_lang_tensor(tensor, scope):  # Triton 3.6's shape: int() of a one-element array
    scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data))


def test_interpreter_compat_squeezes_one_element_indices(monkeypatch):
    """With Triton <= 3.6's interpreter, loop bounds (one-element arrays) become ints the way Triton 3.8
    does it, so NumPy >= 2.4 (which refuses int() of a 1-D array) still runs the kernels."""
    import numpy as np
    from triton.runtime import interpreter

    monkeypatch.setattr(interpreter, "_patch_lang_tensor", _old_patch_lang_tensor)
    assert _launch._interpreter_numpy_compat()
    assert not _launch._interpreter_numpy_compat()  # once only

    class Scope:
        def set_attr(self, obj, name, value):
            setattr(obj, name, value)

    class Tensor:
        def __init__(self, data):
            self.handle = type("H", (), {"data": data})()

    interpreter._patch_lang_tensor(Tensor, Scope())
    assert range(Tensor(np.array([3], dtype=np.int32)))[-1] == 2


# ---- plans: a repeated call signature replays its bound launches -----------------------------------


@pytest.fixture
def compiled_path_on_cpu(monkeypatch):
    """The compiled-kernel host path (direct launches, plans) on CPU tensors, every launch logged
    instead of run (selfonn.kernels.dryrun)."""
    from selfonn.kernels.dryrun import dry_run

    monkeypatch.setenv("SELFONN_DIRECT_LAUNCH", "1")
    with dry_run() as log:
        yield log


PLAN_CASES = [  # (transposed, c_in, c_out, k, stride, padding, dilation, groups, output_padding, bias, grads)
    (False, 16, 32, 5, 2, 2, 1, 1, 0, True, "xwb"),
    (False, 1, 16, 4, 8, 1, 1, 1, 0, True, "xwb"),  # thin (C_in = 1)
    (False, 8, 1, 3, 1, 1, 1, 1, 0, False, "xw"),  # thin (C_out = 1)
    (True, 32, 16, 6, 2, 2, 1, 1, 0, True, "xwb"),
    (True, 16, 1, 6, 2, 2, 1, 1, 0, True, "wb"),  # thin transposed, frozen input
    (True, 6, 4, 4, 3, 1, 2, 2, 1, False, "xw"),
    (False, 6, 8, 3, 2, 2, 3, 2, 0, True, "x"),  # frozen weight and bias
]


@pytest.mark.parametrize("case", PLAN_CASES, ids=lambda c: "-".join(map(str, c)))
def test_plan_replays_the_launches_of_the_direct_path(compiled_path_on_cpu, case, kernel_options):
    """A call whose signature was seen before launches from its plan: the same kernels, grids and
    arguments (output and scratch buffers fresh, of the same shapes) as the full host path."""
    log = compiled_path_on_cpu
    transposed, c_in, c_out, k, s, p, dil, groups, op, has_bias, grads = case
    q, B, L = 3, 2, 4000  # long enough for split grad_W partials (scratch buffers)
    w_shape = (q * c_in, c_out // groups, k) if transposed else (c_out, q * c_in // groups, k)

    def call(x, w, b, dy):
        if transposed:
            y = sc.triton_selfonn_conv_transpose1d(x, w, b, s, p, op, groups, dil, q)
        else:
            y = sc.triton_selfonn_conv1d(x, w, b, s, p, dil, groups, q)
        wanted = [t for t, c in ((x, "x"), (w, "w"), (b, "b")) if c in grads and t is not None]
        torch.autograd.grad(y, wanted, dy)

    def fresh():
        x = torch.rand(B, c_in, L, dtype=torch.float64).requires_grad_("x" in grads)
        w = torch.randn(w_shape, dtype=torch.float64).requires_grad_("w" in grads)
        b = torch.randn(c_out, dtype=torch.float64).requires_grad_("b" in grads) if has_bias else None
        return x, w, b

    x, w, b = fresh()
    d = sc._dims(x, w, sc._geom(s, p, dil, groups, q, op, transposed))
    y_shape = (B, c_out, d.L_out)
    call(x, w, b, torch.randn(y_shape, dtype=torch.float64))  # records the plans
    assert log and all(kind == "jit" for kind, _, _ in log), log
    assert len(sc.plans()) == 2  # forward and backward

    def described(entries, known):
        out = []
        for _, grid, vals in entries:
            d = [known.get(v.data_ptr(), ("fresh", tuple(v.shape), v.stride(), v.dtype) if v.dim() > 1 else
                           ("buffer", v.dtype, v.numel())) if isinstance(v, torch.Tensor) else v for v in vals]
            out.append((grid, d))
        return out

    def fits(planned, full):
        """The same launches; a plan's 1-D buffers (grad_bias, scratch bound to the reused workspace,
        counters) of the same dtype and at least as large."""
        if len(planned) != len(full):
            return False
        for (g1, d1), (g2, d2) in zip(planned, full):
            if g1 != g2 or len(d1) != len(d2):
                return False
            for a, b in zip(d1, d2):
                if a != b and not (isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] == "buffer"
                                   and a[1] == b[1] and a[2] >= b[2]):
                    return False
        return True

    runs = {}
    for planned in (True, False):
        kernel_options(plans=planned)
        x2, w2, b2 = fresh()
        dy2 = torch.randn(y_shape, dtype=torch.float64)
        log.clear()
        call(x2, w2, b2, dy2)
        assert log and all(kind == "direct" for kind, _, _ in log), log  # nothing went through the binder
        known = {x2.data_ptr(): "x", w2.data_ptr(): "w", dy2.data_ptr(): "dy"}
        if b2 is not None:
            known[b2.data_ptr()] = "b"
        runs[planned] = described(log, known)
    assert fits(runs[True], runs[False]), (runs[True], runs[False])
    assert any("x" in d for _, d in runs[True])


def test_options_are_one_frozen_value_set_for_a_block():
    """selfonn.kernels.options(...) applies changes for a block on top of the value in force, nests,
    and restores; unknown names and bad values are refused; the value itself cannot be changed."""
    import dataclasses

    from selfonn import kernels

    before = kernels.get_options()
    with kernels.options(thin=False, dw_min_steps=2) as o:
        assert kernels.get_options() is o and not o.thin and o.dw_min_steps == 2 and o.plans == before.plans
        with kernels.options(thin=True):
            assert kernels.get_options().thin and kernels.get_options().dw_min_steps == 2
        assert kernels.get_options() is o
    assert kernels.get_options() is before
    with pytest.raises(TypeError, match="unknown kernel options"), kernels.options(prefetch=True):
        pass
    for bad in ({"dw_tiles": "fast"}, {"dw_min_steps": 0}, {"thin_split_bwd": "maybe"}, {"dw_split_divs": (0,)}):
        with pytest.raises(ValueError):
            kernels.Options(**bad)
    with pytest.raises(TypeError):
        kernels.Options(thin="yes")
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.thin = False  # type: ignore[misc]
    assert kernels.get_options() is before


def test_plans_are_kept_per_options_value(compiled_path_on_cpu):
    """A call under other options neither replays nor overwrites the plans of the defaults."""
    from selfonn import kernels

    x, w = torch.rand(1, 4, 64, dtype=torch.float64), torch.randn(8, 12, 3, dtype=torch.float64)
    sc.triton_selfonn_conv1d(x, w, None, 1, 1, 1, 1, 3)
    (plan,) = sc.plans().values()
    with kernels.options(dual_one_pass=False):
        assert sc.plans() == {}
        sc.triton_selfonn_conv1d(x, w, None, 1, 1, 1, 1, 3)
        (other,) = sc.plans().values()
        assert other is not plan
    assert list(sc.plans().values()) == [plan]


def test_operands_are_checked_once_per_call_signature(compiled_path_on_cpu, monkeypatch):
    """selfonn.functional hands the fused kernels its operand check: it runs on a signature's first
    call, not on the calls that replay that signature's plan, and bad operands (another bias dtype,
    another channel count) still fail with its own errors."""
    from selfonn import _args

    calls, lengths = [], []
    real, real_length = _args.check_operands, _args.check_transpose_length
    monkeypatch.setattr(_args, "check_operands", lambda *a, **k: calls.append(a[3:]) or real(*a, **k))
    monkeypatch.setattr(_args, "check_transpose_length", lambda *a: lengths.append(a[0]) or real_length(*a))
    x, w = torch.rand(1, 4, 64, dtype=torch.float64), torch.randn(8, 12, 3, dtype=torch.float64)
    b = torch.randn(8, dtype=torch.float64)
    for _ in range(3):
        selfonn.selfonn_conv1d(x, w, b, 1, 1, 1, 1, 3, backend="triton")
    assert calls == [(3, 1)]
    wt = torch.randn(12, 8, 3, dtype=torch.float64)  # the length check, too, runs once per signature
    for _ in range(3):
        selfonn.selfonn_conv_transpose1d(x, wt, b, 2, 1, 1, 1, 1, 3, backend="triton")
    assert lengths == [64] and len(calls) == 2
    with pytest.raises(ValueError, match="shorter than the kernel's span"):
        selfonn.selfonn_conv1d(x[..., :2], w, b, 1, 0, 1, 1, 3, backend="triton")
    with pytest.raises(ValueError, match="crops more than"):
        selfonn.selfonn_conv_transpose1d(x[..., :1], wt, b, 1, 2, 0, 1, 1, 3, backend="triton")
    with pytest.raises(TypeError, match="does not match bias dtype"):
        selfonn.selfonn_conv1d(x, w, b.float(), 1, 1, 1, 1, 3, backend="triton")
    with pytest.raises(ValueError, match="expected input with 4 channels"):
        selfonn.selfonn_conv1d(torch.rand(1, 5, 64, dtype=torch.float64), w, b, 1, 1, 1, 1, 3, backend="triton")
    with pytest.raises(ValueError, match="expected input with 4 channels"):  # before the length's own error
        selfonn.selfonn_conv1d(torch.rand(1, 5, 1, dtype=torch.float64), w, b, 1, 0, 1, 1, 3, backend="triton")


def test_plan_is_not_kept_when_two_roles_are_one_tensor(compiled_path_on_cpu):
    """Roles told apart by identity: a call passing one tensor twice must not bind later calls so."""
    t = torch.rand(3, 3, 3, dtype=torch.float64)
    sc.triton_selfonn_conv1d(t, t, None, 1, 1, 1, 1, 1)
    assert compiled_path_on_cpu and sc.plans() == {}


def test_plan_falls_back_on_other_alignment(compiled_path_on_cpu):
    log = compiled_path_on_cpu
    x = torch.rand(1, 4, 65, dtype=torch.float64)
    w = torch.randn(8, 12, 3, dtype=torch.float64)
    sc.triton_selfonn_conv1d(x[..., :64], w, None, 1, 1, 1, 1, 3)
    (plan,) = sc.plans().values()
    log.clear()
    assert plan.run({"x": x[..., 1:], "w": w, "y": torch.empty(1, 8, 64, dtype=torch.float64)}) is False
    assert log == []  # nothing launched
    sc.triton_selfonn_conv1d(x[..., 1:], w, None, 1, 1, 1, 1, 3)  # same signature, 8-byte offset
    assert [kind for kind, _, _ in log] == ["jit"]


def test_precompile_never_replays_a_plan(compiled_path_on_cpu):
    """Inside precompile (its compile hook set) a call compiles only, even when a plan for its
    signature exists."""
    log = compiled_path_on_cpu
    x, w = torch.rand(1, 4, 64, dtype=torch.float64), torch.randn(8, 12, 3, dtype=torch.float64)
    sc.triton_selfonn_conv1d(x, w, None, 1, 1, 1, 1, 3)
    sc.triton_selfonn_conv1d(x, w, None, 1, 1, 1, 1, 3)
    assert sc.plans() and [kind for kind, _, _ in log] == ["jit", "direct"]
    compiled = []
    saved, _launch._compile_hook = _launch._compile_hook, lambda k, cfgs, prepare: compiled.append(k.name)
    try:
        sc.triton_selfonn_conv1d(x, w, None, 1, 1, 1, 1, 3)
    finally:
        _launch._compile_hook = saved
    assert compiled == ["gather"] and len(log) == 2  # compiled, nothing launched


def test_plan_replay_failure_falls_back_and_turns_plans_off(compiled_path_on_cpu, monkeypatch, kernel_options):
    """A Triton whose launcher refuses the direct call: the call still runs (full path), plans go off."""
    log = compiled_path_on_cpu
    kernel_options(plans=True)
    x, w = torch.rand(1, 4, 64, dtype=torch.float64), torch.randn(8, 12, 3, dtype=torch.float64)
    sc.triton_selfonn_conv1d(x, w, None, 1, 1, 1, 1, 3)

    def refuse(ck, grid, vals):
        raise TypeError("launcher interface changed")

    monkeypatch.setattr(_launch, "run_compiled", refuse)
    for k in sc._kernels.values():
        monkeypatch.setattr(k, "direct_ok", False)  # the full path then goes through the JIT stand-in
    log.clear()
    sc.triton_selfonn_conv1d(x, w, None, 1, 1, 1, 1, 3)
    assert [kind for kind, _, _ in log] == ["jit"] and _dispatch._replay_ok is False
    monkeypatch.setattr(_dispatch, "_replay_ok", True)  # the process-wide switch the failure turned off


def test_inference_calls_skip_the_autograd_function():
    """No gradient can flow (no_grad, or no input requiring one): the bare forward, same values."""
    x, w, b, *geom = _args("conv_s2", "cpu")
    y = torch.ops.selfonn.fused_conv(x, w, b, *geom)
    assert y.grad_fn is not None
    with torch.no_grad():
        y_ng = sc.triton_selfonn_conv1d(x, w, b, 2, 1, 1, 1, 3)
    y_nr = sc.triton_selfonn_conv1d(x.detach(), w.detach(), b.detach(), 2, 1, 1, 1, 3)
    assert y_ng.grad_fn is None and y_nr.grad_fn is None
    assert torch.equal(y_ng, y.detach()) and torch.equal(y_nr, y.detach())
