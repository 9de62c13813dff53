"""opgan.receptive: gradient-energy radius, support, MACs and the CLI, checked on stacks with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from opgan import receptive
from opgan.models import Generator, GeneratorConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _ones_stack() -> nn.Module:
    """k5 then k5 with dilation 2, all-ones weights: the middle output's input gradient is [1]*5 * [1,0]*4+[1]."""
    m = nn.Sequential(nn.Conv1d(1, 1, 5, padding=2, bias=False), nn.Conv1d(1, 1, 5, padding=4, dilation=2, bias=False))
    for c in m:
        nn.init.ones_(c.weight)
    return m


def test_energy_radius_of_a_known_conv_stack():
    kernel = np.convolve(np.ones(5), np.array([1, 0, 1, 0, 1, 0, 1, 0, 1.0]))  # 13 taps, radius 6
    energy = receptive.gradient_energy(_ones_stack(), 128, batch=1)
    centre = 64
    assert np.allclose(energy[centre - 6: centre + 7], kernel ** 2) and energy.sum() == pytest.approx((kernel ** 2).sum())
    share = np.array([(kernel[6 - r: 7 + r] ** 2).sum() for r in range(7)]) / (kernel ** 2).sum()
    assert receptive.energy_radius(energy, 0.9) == int(np.argmax(share >= 0.9))
    assert receptive.energy_radius(energy, 1.0) == 6
    assert receptive.support_radius(_ones_stack(), 64) == 6
    assert receptive.count_macs(_ones_stack(), 64) == 2 * 64 * 5
    with pytest.raises(ValueError, match="zero"):
        receptive.energy_radius(np.zeros(8), 0.9)


def test_generator_support_and_what_the_dilated_context_adds():
    """Five k5 s2 stages and the decoder reach +-126 input samples whatever the width; n dilated k3 blocks at
    the bottleneck (one sample = 32 input samples) add exactly (2**n - 1) * 32."""
    plain = Generator(GeneratorConfig(filters=2, q=2, residual=True, gate=True))
    ctx = Generator(GeneratorConfig(filters=2, q=2, residual=True, gate=True, context="dilated", context_blocks=3))
    assert receptive.support_radius(plain, 1024) == 126
    assert receptive.support_radius(ctx, 1024) == 126 + 7 * 32
    # the untrained residual model is measured with its zero-initialised output re-drawn (else no gradient)
    p = receptive.profile("plain", plain, 16000, length=2048)
    assert 0 < p.rf90 <= p.rf99 and p.params == sum(q.numel() for q in plain.parameters())


def test_macs_count_the_self_onn_power_stack():
    """q multiplies a Self-ONN layer's multiply-adds; the paper-shaped f=16 generator costs ~1 GMAC/s at 16 kHz."""
    g1, g3 = (Generator(GeneratorConfig(filters=2, q=q)) for q in (1, 3))
    m1, m3 = receptive.count_macs(g1, 2048), receptive.count_macs(g3, 2048)
    assert m3 == 3 * m1
    from opgan.models import opgan_layer_shapes

    want = sum(s.fwd_flops(1) for s in opgan_layer_shapes(32000, filters=16, q=3)[:10]) / 2  # 2 s of audio
    assert receptive.count_macs(Generator(GeneratorConfig(filters=16, q=3)), 32000) == pytest.approx(want)


def test_cli_prints_a_row_per_model_writes_its_record_and_rejects_bad_specs(capsys, tmp_path):
    import json

    from opgan import tables

    argv = ["tiny", "tiny:context=dilated,context_blocks=2", "--length", "1024", "--steps", "1", "--crop", "512",
            "--batch", "2", "--json", str(tmp_path / "r.json")]
    assert receptive.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| `tiny")]
    assert len(rows) == 2 and all(line.count("|") == 8 for line in rows)
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["command"].startswith("python -m opgan.receptive tiny") and len(rec["rows"]) == 2
    assert tables.receptive_rows(rec["rows"]) in out  # the docs table renders the record as the tool prints it
    assert rec["rows"][1]["support"] == 126 + 3 * 32 and rec["rows"][1]["ms_per_step"] > 0
    assert receptive.main(argv) == 2  # an existing record is not replaced without --overwrite
    assert receptive.main(["nosuchpreset"]) == 2
    assert receptive.main(["tiny:context=wide"]) == 2
    assert "context" in capsys.readouterr().err
