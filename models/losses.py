"""Op-GAN losses: LSGAN adversarial terms plus the seed's temporal (L1) and spectral (log-power L1) terms.

    D:  MSE(D(clean), 1) + MSE(D(G(x)), 0)
    G:  MSE(D(G(x)), 1) + lambda_t * L1(G(x), clean)
                        + lambda_s * L1(log10(S(G(x)) + eps), log10(S(clean) + eps))

S is the power spectrogram (Hann window, n_fft 256, hop 128). Everything is computed in float32 so
the losses stay the same under bf16 autocast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

N_FFT = 256
HOP = 128
SPEC_EPS = 1e-6


def power_spectrogram(x: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """|STFT|^2 of (B, 1, L) or (B, L) audio -> (B, n_fft // 2 + 1, frames), float32."""
    x = x.float().reshape(x.shape[0], -1)
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop, window=window, center=True, return_complex=True)
    return spec.real.square() + spec.imag.square()


def spectral_l1(est: torch.Tensor, ref: torch.Tensor, eps: float = SPEC_EPS) -> torch.Tensor:
    """Mean |log10(S(est)+eps) - log10(S(ref)+eps)|."""
    return F.l1_loss(torch.log10(power_spectrogram(est) + eps), torch.log10(power_spectrogram(ref) + eps))


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
    d_fake: torch.Tensor, est: torch.Tensor, ref: torch.Tensor, lambda_t: float, lambda_s: float,
    lambda_adv: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total generator loss and its detached parts (for logging)."""
    adv = g_adversarial(d_fake)
    tl1 = temporal_l1(est, ref)
    total = lambda_adv * adv + lambda_t * tl1
    parts = {"g_adv": adv.detach(), "g_l1": tl1.detach()}
    if lambda_s:
        sl1 = spectral_l1(est, ref)
        total = total + lambda_s * sl1
        parts["g_spec"] = sl1.detach()
    return total, parts
