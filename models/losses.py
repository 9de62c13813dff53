"""Op-GAN losses: LSGAN adversarial terms, the seed's temporal (L1) and spectral (log-power L1) terms,
and three optional terms that the shipped recipe uses against attenuation (docs/training.md).

    D:  MSE(D(clean), 1) + MSE(D(G(x)), 0)
    G:  lambda_adv * MSE(D(G(x)), 1) + lambda_t * L1(G(x), clean)
        + lambda_s * L1(log10(S(G(x)) + eps), log10(S(clean) + eps))          (seed)
        + lambda_mr * multi-resolution STFT loss (batch spectral convergence + log-magnitude L1)
        + lambda_sisdr * (-SI-SDR(G(x), clean) / 10)                          (shape, level-blind)
        + lambda_level * |10 log10(energy(G(x)) / energy(clean))| / 10      (level, shape-blind)
        + lambda_sdr * (-SDR(G(x), clean) / 10), SDR capped at sdr_cap_db    (the metric itself)

Why the last three: L1 and MSE reward shrinking an uncertain estimate towards zero, which is how the
seed's objective ends up attenuating (plain SDR then looks better while SI-SDR does not move). The
SI-SDR term rewards the right waveform whatever its gain and the level term pins the gain, so the
pair cannot be satisfied by turning the volume down. All dB terms are per clip, so a lightly
corrupted clip weighs as much as a heavy one: under L1, damaging a nearly clean input costs almost
nothing (its errors are small in absolute terms), which is how the seed's objective learns to harm
good inputs; in dB, losing 10 dB on a clean clip costs as much as gaining 10 dB on a noisy one. The dB terms are divided by 10 so that one
weight unit is about one "bel" and the weights sit on the same scale as the spectral term.

S is the power spectrogram (Hann window, n_fft 256, hop 128). Everything is computed in float32 so
the losses stay the same under bf16 autocast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

N_FFT = 256
HOP = 128
SPEC_EPS = 1e-6
#: (n_fft, hop) pairs of the multi-resolution STFT loss: 16-64 ms windows at 16 kHz.
MR_RESOLUTIONS: tuple[tuple[int, int], ...] = ((256, 64), (512, 128), (1024, 256))
_ENERGY_EPS = 1e-8


def power_spectrogram(x: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """|STFT|^2 of (B, 1, L) or (B, L) audio -> (B, n_fft // 2 + 1, frames), float32."""
    x = x.float().reshape(x.shape[0], -1)
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop, window=window, center=True, return_complex=True)
    return spec.real.square() + spec.imag.square()


def spectral_l1(est: torch.Tensor, ref: torch.Tensor, eps: float = SPEC_EPS) -> torch.Tensor:
    """Mean |log10(S(est)+eps) - log10(S(ref)+eps)|."""
    return F.l1_loss(torch.log10(power_spectrogram(est) + eps), torch.log10(power_spectrogram(ref) + eps))


def _magnitude(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    x = x.float().reshape(x.shape[0], -1)
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop, window=window, center=True, return_complex=True)
    return (spec.real.square() + spec.imag.square()).clamp_min(1e-10).sqrt()


#: Denominator floor of the spectral convergence, as the RMS of a white reference signal (-60 dBFS): a
#: batch of silent clean crops is measured against this level instead of against ~0.
SC_FLOOR_RMS = 1e-3


def spectral_convergence(e: torch.Tensor, r: torch.Tensor, n_fft: int, floor_rms: float = SC_FLOOR_RMS) -> torch.Tensor:
    """||R - E||_F / ||R||_F over the whole batch of (B, F, T) magnitudes (the field's definition: Parallel
    WaveGAN, denoiser, auraloss take the Frobenius norms of the batch tensor, not a mean of per-clip ratios).

    Why batch-level: a per-clip ratio divides by the clip's own energy, so one silent clean crop (a pause
    in speech, a fade) sends its ratio, and the loss, into the thousands. Over the batch, a silent crop only
    adds its error energy to the numerator. The denominator is floored at the norm a white signal at
    ``floor_rms`` would have (E|X|^2 = rms^2 * sum(hann^2) = rms^2 * 3 n_fft / 8 per bin), so a batch of
    silent crops stays bounded too.
    """
    floor = floor_rms * (r.numel() * 3 * n_fft / 8) ** 0.5
    return torch.linalg.vector_norm(r - e) / torch.linalg.vector_norm(r).clamp_min(floor)


def multi_resolution_stft(
    est: torch.Tensor, ref: torch.Tensor, resolutions: tuple[tuple[int, int], ...] = MR_RESOLUTIONS
) -> torch.Tensor:
    """Mean over resolutions of batch spectral convergence ||R|-|E||_F/||R||_F (see `spectral_convergence`)
    plus mean |log|E| - log|R||."""
    total = est.new_zeros((), dtype=torch.float32)
    for n_fft, hop in resolutions:
        e, r = _magnitude(est, n_fft, hop), _magnitude(ref, n_fft, hop)
        total = total + spectral_convergence(e, r, n_fft) + F.l1_loss(e.log(), r.log())
    return total / len(resolutions)


def si_sdr_db(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-clip SI-SDR in dB of (B, 1, L) or (B, L) signals (zero-mean, as opgan.metrics.si_sdr)."""
    e = est.float().reshape(est.shape[0], -1)
    r = ref.float().reshape(ref.shape[0], -1)
    e = e - e.mean(dim=1, keepdim=True)
    r = r - r.mean(dim=1, keepdim=True)
    alpha = (e * r).sum(1, keepdim=True) / (r.square().sum(1, keepdim=True) + _ENERGY_EPS)
    target = alpha * r
    noise = e - target
    return 10 * torch.log10((target.square().sum(1) + _ENERGY_EPS) / (noise.square().sum(1) + _ENERGY_EPS))


#: the SDR term saturates here, so an identity pair (infinite SDR) keeps a finite, flat loss
SDR_CAP_DB = 50.0


def sdr_db(est: torch.Tensor, ref: torch.Tensor, cap_db: float = SDR_CAP_DB) -> torch.Tensor:
    """Per-clip SDR 10 log10(sum ref^2 / sum (est - ref)^2) in dB, smoothly capped at `cap_db`."""
    e = est.float().reshape(est.shape[0], -1)
    r = ref.float().reshape(ref.shape[0], -1)
    num = r.square().sum(1) + _ENERGY_EPS
    return 10 * torch.log10(num / ((e - r).square().sum(1) + num * 10 ** (-cap_db / 10)))


def neg_sdr(est: torch.Tensor, ref: torch.Tensor, cap_db: float = SDR_CAP_DB) -> torch.Tensor:
    """-mean SDR / 10 (bels): per clip, so light and heavy inputs weigh alike; sensitive to gain.

    The cap bounds each clip's gradient (it grows as 1/error energy): with a high cap, nearly clean
    clips dominate a batch and learning stalls; ~30 dB keeps them protected without that."""
    return -sdr_db(est, ref, cap_db).mean() / 10


def neg_si_sdr(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """-mean SI-SDR / 10 (bels): lower is better, blind to the estimate's gain."""
    return -si_sdr_db(est, ref).mean() / 10


def level_db(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-clip energy ratio 10 log10(sum est^2 / sum ref^2) in dB (0 = the clean's level)."""
    e = est.float().reshape(est.shape[0], -1).square().sum(1)
    r = ref.float().reshape(ref.shape[0], -1).square().sum(1)
    return 10 * torch.log10((e + _ENERGY_EPS) / (r + _ENERGY_EPS))


def level_l1(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean |level error| / 10 (bels): penalises attenuation and gain alike, blind to waveform shape."""
    return level_db(est, ref).abs().mean() / 10


def temporal_l1(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean absolute sample error."""
    return F.l1_loss(est.float(), ref.float())


def d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN discriminator loss: real scores -> 1, fake scores -> 0."""
    d_real, d_fake = d_real.float(), d_fake.float()
    return F.mse_loss(d_real, torch.ones_like(d_real)) + F.mse_loss(d_fake, torch.zeros_like(d_fake))


def g_adversarial(d_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN generator term: fake scores -> 1."""
    d_fake = d_fake.float()
    return F.mse_loss(d_fake, torch.ones_like(d_fake))


def g_loss(
    d_fake: torch.Tensor | None, est: torch.Tensor, ref: torch.Tensor, lambda_t: float, lambda_s: float,
    lambda_adv: float = 1.0, lambda_mr: float = 0.0, lambda_sisdr: float = 0.0, lambda_level: float = 0.0,
    lambda_sdr: float = 0.0, sdr_cap_db: float = SDR_CAP_DB,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total generator loss and its detached parts (for logging). Terms with a zero weight are not
    computed (and `d_fake` may be None when `lambda_adv` is 0)."""
    total = est.new_zeros((), dtype=torch.float32)
    parts: dict[str, torch.Tensor] = {}
    terms = (
        ("g_adv", lambda_adv, lambda: g_adversarial(d_fake)),
        ("g_l1", lambda_t, lambda: temporal_l1(est, ref)),
        ("g_spec", lambda_s, lambda: spectral_l1(est, ref)),
        ("g_mr", lambda_mr, lambda: multi_resolution_stft(est, ref)),
        ("g_sisdr", lambda_sisdr, lambda: neg_si_sdr(est, ref)),
        ("g_level", lambda_level, lambda: level_l1(est, ref)),
        ("g_sdr", lambda_sdr, lambda: neg_sdr(est, ref, sdr_cap_db)),
    )
    for name, weight, fn in terms:
        if weight:
            value = fn()
            total = total + weight * value
            parts[name] = value.detach()
    return total, parts
