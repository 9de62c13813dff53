"""Dataset loaders: builder folders, .mat files, dynamic mixing, open_dataset, fetch without apt."""
import numpy as np
import pytest
import scipy.io
import soundfile as sf
import torch

from opgan.data.assets import default_rirs, default_sources, fixture_dir
from opgan.data.audio import AudioError
from opgan.data.builder import build
from opgan.data.datasets import DynamicRARDataset, MatRARDataset, RARFolderDataset, open_dataset


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("d") / "speech"
    build("speech", fixture_dir(), out, size=0.005, seed=1, rirs=default_rirs(), progress=False, splits=["val"])
    return out


def test_folder_dataset(built, tmp_path):
    ds = open_dataset(built, "val")
    assert isinstance(ds, RARFolderDataset) and len(ds) > 0 and ds.sample_rate == 16000
    y, x = ds[0]
    assert y.shape == x.shape == (1, 32000) and y.dtype == x.dtype == torch.float32
    assert not torch.equal(x, y) and torch.isfinite(y).all()
    assert len(open_dataset(built / "val")) == len(ds)
    # a wrong-rate clip is refused by name
    bad = tmp_path / "split"
    (bad / "clean").mkdir(parents=True)
    (bad / "corrupted").mkdir()
    sf.write(bad / "clean" / "a.wav", np.zeros(32000, np.float32), 16000)
    sf.write(bad / "corrupted" / "a.wav", np.zeros(32000, np.float32), 8000)
    sf.write(bad / "clean" / "b.wav", np.zeros(32000, np.float32), 16000)
    sf.write(bad / "corrupted" / "b.wav", np.zeros(32000, np.float32), 16000)
    ds = RARFolderDataset(bad, sample_rate=16000)
    with pytest.raises(AudioError, match="a.wav.*8000"):
        ds[0]


def test_mat_dataset(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.standard_normal((3, 320)).astype(np.float32)
    noisy = clean + 0.1
    p = tmp_path / "rar.mat"
    scipy.io.savemat(p, {"clear_sig": clean, "noisy_sig": noisy})
    ds = open_dataset(p)
    assert isinstance(ds, MatRARDataset) and len(ds) == 3
    y, x = ds[2]
    assert y.shape == (1, 320)
    np.testing.assert_allclose(x.numpy()[0], clean[2])
    np.testing.assert_allclose(y.numpy()[0], noisy[2])
    scipy.io.savemat(tmp_path / "nokey.mat", {"clear_sig": clean})
    with pytest.raises(AudioError, match="noisy_sig"):
        MatRARDataset(tmp_path / "nokey.mat")
    scipy.io.savemat(tmp_path / "nan.mat", {"clear_sig": clean, "noisy_sig": noisy * np.nan})
    with pytest.raises(AudioError, match="non-finite"):
        MatRARDataset(tmp_path / "nan.mat")
    (tmp_path / "junk.mat").write_bytes(b"\0" * 10)
    with pytest.raises(AudioError, match="junk.mat"):
        MatRARDataset(tmp_path / "junk.mat")


def test_mat_v73_needs_h5py(tmp_path):
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116, b" ")
    p = tmp_path / "v73.mat"
    p.write_bytes(header + b"\0" * 8 + b"\x00\x02" + b"IM" + b"\0" * 512)
    try:
        import h5py  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="h5py"):
            MatRARDataset(p)
    else:
        with pytest.raises(Exception):
            MatRARDataset(p)


def test_dynamic_dataset_is_deterministic_per_epoch():
    src = fixture_dir()
    ds = DynamicRARDataset(src / "speech" / "train", src / "background" / "train", 16000, length=4, seed=3,
                           rir_bank=default_rirs())
    a = [ds[i] for i in range(4)]
    b = [ds[i] for i in range(4)]
    for (y1, x1), (y2, x2) in zip(a, b):
        assert torch.equal(y1, y2) and torch.equal(x1, x2) and y1.shape == (1, 32000)
        assert torch.isfinite(y1).all()
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], a[0][0])
    ds.set_epoch(0)
    assert torch.equal(ds[0][0], a[0][0])
    cases = {DynamicRARDataset(src / "speech" / "train", src / "background" / "train", 16000, length=12,
                               seed=3, rir_bank=default_rirs()).sample(i)[2]["case"] for i in range(12)}
    assert "blend" in cases and len(cases) >= 3
    with pytest.raises(IndexError):
        ds.sample(4)


def test_open_dataset_dynamic_specs():
    ds = open_dataset(fixture_dir(), "test", kind="music", length=2)
    y, x = ds[1]
    assert ds.sample_rate == 22050 and y.shape == (1, 32000)
    assert "music:" in ds.sample(0)[2]["source"]
    d = open_dataset("default:speech", "val", length=6)
    val_speakers = {"ivrvoice_ru_f", "klettres_hu"}  # the shipped corpus: held-out voices of both sexes
    assert {d.sample(i)[2]["source"].split("/")[0] for i in range(6)} <= {f"speech:{s}" for s in val_speakers}
    with pytest.raises(FileNotFoundError):
        open_dataset(fixture_dir() / "nothing", "train")
    srcs = default_sources("speech")
    assert {p.parent.name for p in srcs["test"]} == {"june_f", "klettres_lt"}
    assert {p.parent.name for p in srcs["val"]} == val_speakers
    assert not {p.parent.name for p in srcs["train"]} & ({"june_f", "klettres_lt"} | val_speakers)


def test_fetch_without_apt(monkeypatch, tmp_path, capsys):
    import opgan.data.fetch as fetch

    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
    assert fetch.main(["--cache", str(tmp_path)]) == 2
    assert "apt-get" in capsys.readouterr().err


def test_dynamic_dataset_redraws_an_item_whose_audio_fails(monkeypatch):
    """A draw that fails on its audio is redrawn from the item's next stream (with a warning), so the
    item stays deterministic and a long run keeps going; when every draw fails, one AudioError."""
    from opgan.data import datasets as dmod

    src = fixture_dir()
    ds = DynamicRARDataset(src / "speech" / "train", src / "background" / "train", 16000, length=4, seed=3,
                           rir_bank=default_rirs())
    first = ds.sample(1)
    real = dmod.corrupt
    fails = {"n": 0}

    def flaky(clip, *a, **k):
        if fails["n"] < 2:
            fails["n"] += 1
            raise AudioError("corrupt: background excerpt from x is silent")
        return real(clip, *a, **k)

    monkeypatch.setattr(dmod, "corrupt", flaky)
    with pytest.warns(UserWarning, match="redrawing item 1"):
        y, x, rec = ds.sample(1)
    assert rec["redraws"] == 2 and np.isfinite(y).all() and not np.array_equal(x, first[1])
    fails["n"] = 0
    with pytest.warns(UserWarning):
        y2, x2, rec2 = ds.sample(1)  # the same item again: the same redraws, the same result
    assert np.array_equal(y, y2) and rec2 == rec
    monkeypatch.setattr(dmod, "corrupt", lambda *a, **k: (_ for _ in ()).throw(AudioError("always")))
    with pytest.warns(UserWarning), pytest.raises(AudioError, match="8 draws failed"):
        ds.sample(2)
    monkeypatch.setattr(dmod, "corrupt", real)
    assert all(np.array_equal(a, b) for a, b in zip(ds.sample(1)[:2], first[:2]))  # unchanged when nothing fails


def test_room_prob_keeps_a_recordings_room_in_input_and_target():
    """room_prob=1 puts every clean clip in a mild room that the target keeps (a "clean" item's input
    equals its target, and both differ from the dry draw); room_prob=0 draws exactly as before."""
    src = fixture_dir()
    kw = dict(length=3, seed=0, rir_bank=default_rirs(), cases=("clean", "awgn"))  # clean, clean, awgn
    dry = DynamicRARDataset(src / "speech" / "train", src / "background" / "train", 16000, **kw)
    off = DynamicRARDataset(src / "speech" / "train", src / "background" / "train", 16000, room_prob=0.0, **kw)
    roomy = DynamicRARDataset(src / "speech" / "train", src / "background" / "train", 16000, room_prob=1.0, **kw)
    for i in range(3):
        y0, x0, r0 = dry.sample(i)
        y1, x1, _ = off.sample(i)
        assert np.array_equal(y0, y1) and np.array_equal(x0, x1)
        y2, x2, r2 = roomy.sample(i)
        assert r2["case"] == r0["case"] and 0.2 <= r2["room_rt60_target"] <= 0.6 and 3 <= r2["room_drr_db"] <= 15
        assert not np.allclose(x2, x0, atol=1e-3)
        assert np.max(np.abs(x2)) == pytest.approx(np.max(np.abs(x0)), rel=1e-4)  # the room keeps the peak
        if r2["case"] == "clean":
            assert np.array_equal(y2, x2)
        else:
            assert r2["awgn_snr_db"] == r0["awgn_snr_db"]  # every other draw is the dry item's
    with pytest.raises(ValueError, match="room_prob"):
        DynamicRARDataset(src / "speech" / "train", src / "background" / "train", 16000, room_prob=1.5, **kw)
