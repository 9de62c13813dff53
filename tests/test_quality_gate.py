"""The quality gate: the shipped restorers must beat pinned floors on fixed, never-heard clips, and
an identity, an all-silent or a degraded restorer must fail the same gate."""
from __future__ import annotations

import math

import numpy as np
import pytest

from opgan import gate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def meta() -> dict:
    return gate.load_gate()


def _clips(meta: dict, kind: str) -> list[dict]:
    return [c for c in meta["clips"] if c["kind"] == kind]


def test_clip_set_covers_every_case_and_level(meta):
    floors = gate.floors_from(meta)
    for kind in ("speech", "music"):
        clips = _clips(meta, kind)
        cells = {(c["case"], c["level"]) for c in clips}
        for case in gate.CASES:
            for level in gate.LEVELS:
                if (case, level) != ("reverb", "light"):  # reverb alone never leaves a >= 15 dB input
                    assert (case, level) in cells, (kind, case, level)
        for c in clips:  # the stored pair is what the manifest says
            assert gate._level_of(c["sdr_in"]) == c["level"]
            assert c["corrupted"].shape == c["clean"].shape and c["sample_rate"] in (16000, 22050)
        f = floors[kind]  # floors can never let an identity model through, nor an attenuating one
        assert f.sdri >= gate.MIN_SDRI_DB and f.si_sdri >= gate.MIN_SI_SDRI_DB
        assert f.light_mean_sdri >= gate.LIGHT_MEAN_HARD_MIN_DB and f.light_worst_sdri >= gate.LIGHT_WORST_HARD_MIN_DB


@pytest.fixture(scope="module")
def shipped_outputs(meta) -> dict[str, dict[str, np.ndarray]]:
    """Each shipped model's output on its kind's gate clips (computed once, reused below)."""
    outs = {}
    for kind in ("speech", "music"):
        restore = gate._restorer_fn(kind)
        outs[kind] = {c["id"]: restore(c["corrupted"], c["sample_rate"]) for c in _clips(meta, kind)}
    return outs


@pytest.mark.parametrize("kind", ["speech", "music"])
def test_shipped_model_passes_the_gate(meta, shipped_outputs, kind):
    scores = gate.score_gate(lambda y, sr, _o=iter(shipped_outputs[kind].values()): next(_o), _clips(meta, kind))
    fails = gate.check_gate(scores, gate.floors_from(meta)[kind])
    assert not fails, f"shipped {kind} model: {fails}; scores {scores}"


@pytest.mark.parametrize("kind", ["speech", "music"])
@pytest.mark.parametrize("bad", ["identity", "silent", "attenuated", "noisy"])
def test_identity_silent_and_degraded_models_fail(meta, shipped_outputs, kind, bad):
    clips = _clips(meta, kind)
    outs = shipped_outputs[kind]
    rng = np.random.default_rng(0)

    def restore(y: np.ndarray, sr: int, it=iter(clips)) -> np.ndarray:
        out = outs[next(it)["id"]]
        if bad == "identity":
            return y.copy()
        if bad == "silent":
            return np.zeros_like(y)
        if bad == "attenuated":  # the failure the issue measured: everything ~6 dB too quiet
            return 0.5 * out
        rms = math.sqrt(float(np.mean(out.astype(np.float64) ** 2)))  # artefacts 20 dB below the signal
        return out + 0.1 * rms * rng.standard_normal(out.shape).astype(np.float32)

    scores = gate.score_gate(restore, clips)
    assert gate.check_gate(scores, gate.floors_from(meta)[kind]), f"{bad} {kind} passed: {scores}"


def test_pinned_floors_hold_targets_when_met_and_hard_limits_always():
    good = {"sdri": 2.0, "si_sdri": 1.5, "light_mean_sdri": 0.3, "light_worst_sdri": -0.2}
    assert gate.pin_floors(good) == gate.Floors(1.7, 1.2, gate.LIGHT_MEAN_FLOOR_DB, gate.LIGHT_WORST_FLOOR_DB)
    weak = {"sdri": 0.1, "si_sdri": 0.2, "light_mean_sdri": -1.6, "light_worst_sdri": -11.5}
    assert gate.pin_floors(weak) == gate.Floors(gate.MIN_SDRI_DB, gate.MIN_SI_SDRI_DB, -1.9, -11.8)
    bad = {"sdri": 1.0, "si_sdri": 1.0, "light_mean_sdri": -9.0, "light_worst_sdri": -30.0}
    f = gate.pin_floors(bad)
    assert (f.light_mean_sdri, f.light_worst_sdri) == (gate.LIGHT_MEAN_HARD_MIN_DB, gate.LIGHT_WORST_HARD_MIN_DB)
    assert gate.check_gate(bad, f)  # such a model cannot pin its way through


def test_check_gate_reports_each_missed_floor():
    floors = gate.Floors(sdri=1.0, si_sdri=0.5)
    ok = {"sdri": 1.2, "si_sdri": 0.6, "light_mean_sdri": 0.0, "light_worst_sdri": -1.0}
    assert gate.check_gate(ok, floors) == []
    bad = {"sdri": float("nan"), "si_sdri": -math.inf, "light_mean_sdri": -0.6, "light_worst_sdri": -3.5}
    msgs = gate.check_gate(bad, floors)
    assert len(msgs) == 4 and all("below its floor" in m for m in msgs)


def test_score_refuses_a_restorer_that_changes_length_or_returns_nan(meta):
    clips = _clips(meta, "speech")[:1]
    with pytest.raises(ValueError, match="shape"):
        gate.score_gate(lambda y, sr: y[:-1], clips)
    with pytest.raises(ValueError, match="non-finite"):
        gate.score_gate(lambda y, sr: np.full_like(y, np.nan), clips)


def test_ship_writes_the_restorer_part_and_names_its_run(tmp_path, monkeypatch):
    """`opgan gate ship` keeps what a restorer needs, blanks machine paths and names the folder the
    checkpoint came from as a record shows it (relative to the working folder, not absolute)."""
    from opgan.checkpoint import load_checkpoint

    src = gate.GATE_DIR.parent / "weights" / "speech.pt"
    monkeypatch.chdir(gate.GATE_DIR.parents[2])  # the repository root
    out = gate.ship("speech", src.resolve(), weights_dir=tmp_path)
    ckpt, shipped = load_checkpoint(src), load_checkpoint(out)
    assert out == tmp_path / "speech.pt" and "optimizer_g" not in shipped
    assert shipped["config"]["trained_from"] == f"opgan/assets/weights (opgan fetch sources), step {ckpt.get('step')}"
    assert all(shipped["config"][k] == "" for k in gate._LOCAL_FIELDS if k in shipped["config"])
