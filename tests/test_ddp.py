"""DDP on CPU: two gloo processes (as torchrun would start them) stay in sync and match one process."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from _trainer_fixtures import make_tiny_rar  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(data: Path, runs: Path):
    from opgan.config import preset

    cfg = preset("tiny")
    cfg.data, cfg.runs_dir, cfg.batch_size, cfg.max_steps, cfg.threads = str(data), str(runs), 4, 3, 1
    return cfg


def _worker(rank: int, world: int, port: int, data: str, runs: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from opgan.trainer import fit

    res = fit(_cfg(Path(data), Path(runs)))
    torch.save({"g": res.generator.state_dict(), "d": res.discriminator.state_dict()}, Path(out) / f"rank{rank}.pt")


def _flags_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from opgan import distrib

    distrib.init("cpu")
    try:
        got = distrib.any_flags((rank == 0, False, True), "cpu"), distrib.any_flag(rank == 1, "cpu")
    finally:
        distrib.shutdown()
    torch.save(got, Path(out) / f"flags{rank}.pt")


@pytest.mark.timeout(120)
def test_flags_are_reduced_flag_by_flag_across_ranks(tmp_path):
    from opgan import distrib

    assert distrib.any_flags((True, False)) == (True, False)  # one process: the flags themselves
    mp.spawn(_flags_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        assert torch.load(tmp_path / f"flags{rank}.pt") == ((True, False, True), True)


@pytest.mark.timeout(180)
def test_ddp_two_processes_gloo(tmp_path):
    data = make_tiny_rar(tmp_path / "data")
    port = _free_port()
    mp.spawn(_worker, args=(2, port, str(data), str(tmp_path / "ddp"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for net in ("g", "d"):
        for k, v in r0[net].items():
            assert torch.equal(v, r1[net][k]), f"ranks diverged at {net}.{k}"
    assert (tmp_path / "ddp" / "tiny" / "last.pt").is_file()

    # One process with the same global batch sees the same data and averaged gradients.
    torch.set_num_threads(1)
    from opgan.trainer import fit

    single = fit(_cfg(data, tmp_path / "single"))
    worst = max((v - r0["g"][k]).abs().max().item() for k, v in single.generator.state_dict().items())
    moved = max((v - r0["g"][k]).abs().max().item() for k, v in
                __import__("opgan.trainer", fromlist=["x"]).build_models(_cfg(data, tmp_path))[0].state_dict().items())
    assert worst < 1e-4 < moved, (worst, moved)
