"""The recipe's extra generator terms: multi-resolution STFT, SI-SDR and level, checked by hand values."""
import math

import numpy as np
import pytest
import torch

from opgan import metrics
from opgan.models import losses


def _ref(seed: int = 0, n: int = 8192) -> torch.Tensor:
    return torch.randn(2, 1, n, generator=torch.Generator().manual_seed(seed)) * 0.2


def test_si_sdr_matches_the_metric_and_ignores_gain():
    ref = _ref()
    est = ref + 0.1 * _ref(1)
    got = losses.si_sdr_db(est, ref)
    want = [metrics.si_sdr(e[0].numpy(), r[0].numpy()) for e, r in zip(est, ref)]
    assert got.tolist() == pytest.approx(want, abs=1e-3)
    # blind to the estimate's gain: the term cannot be gamed by attenuation (or rewarded for it)
    assert losses.neg_si_sdr(0.25 * est, ref).item() == pytest.approx(losses.neg_si_sdr(est, ref).item(), abs=1e-4)


def test_level_term_is_zero_at_the_clean_level_and_counts_decibels():
    ref = _ref()
    assert losses.level_l1(ref, ref).item() == pytest.approx(0.0, abs=1e-6)
    # half the amplitude = -6.02 dB = 0.602 bel, whatever the waveform
    assert losses.level_l1(0.5 * ref, ref).item() == pytest.approx(20 * math.log10(2) / 10, rel=1e-4)
    assert losses.level_l1(0.5 * _ref(5), ref).item() == pytest.approx(20 * math.log10(2) / 10, abs=0.05)
    assert losses.level_db(2 * ref, ref).tolist() == pytest.approx([20 * math.log10(2)] * 2, rel=1e-4)


def test_multi_resolution_stft_zero_on_match_and_grows_with_error():
    ref = _ref()
    assert losses.multi_resolution_stft(ref, ref).item() == pytest.approx(0.0, abs=1e-5)
    small = losses.multi_resolution_stft(ref + 0.01 * _ref(2), ref).item()
    large = losses.multi_resolution_stft(ref + 0.2 * _ref(2), ref).item()
    assert 0 < small < large
    # a pure gain error: spectral convergence = |1 - g|, log-magnitude term = |log g|
    g = 0.5
    want = (1 - g) + abs(math.log(g))
    assert losses.multi_resolution_stft(g * ref, ref).item() == pytest.approx(want, rel=1e-3)


def test_g_loss_adds_the_weighted_terms_and_skips_zero_weights():
    ref = _ref()
    est = (0.8 * ref + 0.05 * _ref(3)).requires_grad_(True)
    total, parts = losses.g_loss(None, est, ref, lambda_t=100.0, lambda_s=0.0, lambda_adv=0.0,
                                 lambda_mr=1.0, lambda_sisdr=0.5, lambda_level=2.0)
    assert set(parts) == {"g_l1", "g_mr", "g_sisdr", "g_level"}
    want = 100 * parts["g_l1"] + parts["g_mr"] + 0.5 * parts["g_sisdr"] + 2.0 * parts["g_level"]
    assert total.item() == pytest.approx(want.item(), rel=1e-6)
    total.backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0


def test_level_and_si_sdr_gradients_undo_attenuation():
    """One gradient step on SI-SDR + level from an attenuated copy moves the level towards the clean's."""
    ref = _ref()
    est = (0.5 * ref).clone().requires_grad_(True)
    loss = losses.neg_si_sdr(est, ref) + losses.level_l1(est, ref)
    loss.backward()
    with torch.no_grad():
        stepped = est - 0.05 * est.grad / est.grad.abs().max()
    before = losses.level_db(est.detach(), ref).abs().mean().item()
    after = losses.level_db(stepped, ref).abs().mean().item()
    assert after < before
    assert np.isfinite(after)


def test_sdr_term_matches_the_metric_and_stays_finite_on_identity():
    ref = _ref()
    est = ref + 0.1 * _ref(1)
    want = [metrics.sdr(e[0].numpy(), r[0].numpy()) for e, r in zip(est, ref)]
    assert losses.sdr_db(est, ref).tolist() == pytest.approx(want, abs=1e-2)  # the cap moves 20 dB by 0.004
    ident = losses.sdr_db(ref.clone().requires_grad_(True), ref)
    assert torch.allclose(ident, torch.full_like(ident, losses.SDR_CAP_DB), atol=1e-3)
    # attenuation costs: half the amplitude caps SDR at 6.02 dB
    assert losses.neg_sdr(0.5 * ref, ref).item() == pytest.approx(-20 * math.log10(2) / 10, rel=1e-3)
    total, parts = losses.g_loss(None, est, ref, 0.0, 0.0, lambda_adv=0.0, lambda_sdr=1.0)
    assert set(parts) == {"g_sdr"} and total.item() == pytest.approx(-np.mean(want) / 10, rel=1e-3)
