"""Losses of the student's probability density distillation (Parallel WaveNet / ClariNet).

- :func:`distillation_kl`: the closed-form KL(student || teacher) per time step between the Gaussian
  the student's flows imply for x[t] given z[<t] and the Gaussian the frozen teacher predicts for
  x[t] given the student's own x[<t] (one teacher-forced pass over the student's sample), with the
  teacher's log-scale floor, plus ClariNet's regulariser ``(log s_q - log s_p)^2`` that keeps the
  two scales close early in training (when the KL's gradient through the mean is tiny).
- :class:`MultiResolutionSTFTLoss`: spectral convergence + log-magnitude L1 at several FFT sizes
  (Parallel WaveGAN) and, optionally, Parallel WaveNet's power loss (time-averaged power spectrum),
  between the student's sample and the real audio of the same mel window. It keeps the sample's
  energy in the right bands, which the KL alone learns slowly (Parallel WaveNet reports whispering
  without it).

- :func:`lsgan_discriminator_loss`, :func:`lsgan_generator_loss`, :func:`feature_matching_loss`: the
  least-squares GAN losses (real -> 1, generated -> 0) and the L1 feature matching of the student's
  adversarial training (issue 37, :mod:`model.discriminators`), each averaged over the
  sub-discriminators (so a weight does not depend on how many there are).

Everything runs in fp32 with autocast disabled (log-spectra and KLs of 16-bit audio need it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from model.distributions import TEACHER_LOG_SCALE_MIN, floor_log_scale, gaussian_kl

__all__ = [
    "MultiResolutionSTFTLoss",
    "distillation_kl",
    "feature_matching_loss",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "stft_magnitude",
]


def distillation_kl(
    mean_q: Tensor,
    log_scale_q: Tensor,
    mean_p: Tensor,
    log_scale_p: Tensor,
    log_scale_min: float | None = TEACHER_LOG_SCALE_MIN,
) -> tuple[Tensor, Tensor]:
    """Per-sample KL(q || p) in nats and the log-scale regulariser, both (B, T) (reduce as you like).

    q = the student's Gaussian for x[t] (mean_q, log_scale_q, unfloored: the entropy term is what
    stops the student's scale from collapsing); p = the teacher's, its log-scale floored at
    ``log_scale_min`` as in the teacher's training (a no-op when the teacher already did it).
    Regulariser: ``(log_scale_q - floored log_scale_p)^2`` (ClariNet, weighted by lambda ~ 4).
    """
    with torch.autocast(device_type=mean_q.device.type, enabled=False):
        lq, lp = log_scale_q.float(), floor_log_scale(log_scale_p.float(), log_scale_min)
        kl = gaussian_kl(mean_q.float(), lq, mean_p.float(), lp)
        reg = (lq - lp).square()
    return kl, reg


def stft_magnitude(x: Tensor, n_fft: int, hop: int, win: int, window: Tensor) -> Tensor:
    """|STFT| of x (B, T) -> (B, n_fft // 2 + 1, frames), fp32, centred frames, floored at 1e-7 (so
    its square root and log keep finite gradients on digital silence)."""
    spec = torch.stft(
        x.float(), n_fft, hop_length=hop, win_length=win, window=window, center=True, return_complex=True
    )  # (B, n_fft//2+1, frames)
    power = spec.real.square() + spec.imag.square()
    return torch.sqrt(torch.clamp(power, min=1e-14))


class MultiResolutionSTFTLoss(nn.Module):
    """Sum over resolutions of ``sc_weight * SC + mag_weight * logmag + power_weight * power``, averaged
    over resolutions:

    - SC (spectral convergence): ``||  |Y| - |X|  ||_F / || |Y| ||_F`` per batch item, averaged;
    - logmag: mean ``| log|Y| - log|X| |`` over bins and frames (log floored at 1e-5 in magnitude);
    - power (Parallel WaveNet): the squared difference of the time-averaged power spectra, mean over
      bins, on ``log(1 + power)`` so loud low bands do not drown the rest (0 weight = off).

    Resolutions: FFT sizes ``ffts`` with hop = fft // 4 and a Hann window of the FFT's length.
    ``forward(x, y)`` (x = generated, y = reference, (B, T)) returns a dict of scalars: "loss" and
    the unweighted "sc", "logmag", "power" averages (for logging).
    """

    def __init__(
        self,
        ffts: Sequence[int] = (1024, 512, 256),
        sc_weight: float = 1.0,
        mag_weight: float = 1.0,
        power_weight: float = 0.0,
    ):
        super().__init__()
        if not ffts or min(ffts) < 8:
            raise ValueError(f"need at least one FFT size >= 8, got {tuple(ffts)}")
        self.ffts = tuple(int(n) for n in ffts)
        self.sc_weight = sc_weight
        self.mag_weight = mag_weight
        self.power_weight = power_weight
        for n in self.ffts:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def forward(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        if x.shape != y.shape or x.dim() != 2:
            raise ValueError(
                f"expected two (B, T) signals of one shape, got {tuple(x.shape)}, {tuple(y.shape)}"
            )
        if x.shape[-1] < max(self.ffts) // 2 + 1:
            raise ValueError(f"signal of {x.shape[-1]} samples is too short for FFT size {max(self.ffts)}")
        sc_sum = x.new_zeros((), dtype=torch.float32)
        mag_sum = torch.zeros_like(sc_sum)
        power_sum = torch.zeros_like(sc_sum)
        with torch.autocast(device_type=x.device.type, enabled=False):
            for n in self.ffts:
                window = getattr(self, f"window_{n}")
                mx = stft_magnitude(x, n, n // 4, n, window)  # (B, K, frames)
                my = stft_magnitude(y, n, n // 4, n, window)
                diff = torch.linalg.vector_norm(my - mx, dim=(1, 2))  # (B,)
                sc_sum = sc_sum + (diff / torch.linalg.vector_norm(my, dim=(1, 2)).clamp(min=1e-7)).mean()
                log_x = torch.log(torch.clamp(mx, min=1e-5))
                log_y = torch.log(torch.clamp(my, min=1e-5))
                mag_sum = mag_sum + (log_y - log_x).abs().mean()
                if self.power_weight:
                    px = torch.log1p(mx.square().mean(dim=-1))  # (B, K) time-averaged power
                    py = torch.log1p(my.square().mean(dim=-1))
                    power_sum = power_sum + (px - py).square().mean()
        k = len(self.ffts)
        sc, mag, power = sc_sum / k, mag_sum / k, power_sum / k
        loss = self.sc_weight * sc + self.mag_weight * mag + self.power_weight * power
        return {"loss": loss, "sc": sc.detach(), "logmag": mag.detach(), "power": power.detach()}


def lsgan_discriminator_loss(real: list[Tensor], fake: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Least-squares discriminator loss, mean over sub-discriminators of ``mean((1 - D(real))^2)``
    and of ``mean(D(fake)^2)``: returns (real term, fake term), fp32 scalars (their sum is the loss)."""
    if len(real) != len(fake) or not real:
        raise ValueError(f"need matching non-empty score lists, got {len(real)} and {len(fake)}")
    with torch.autocast(device_type=real[0].device.type, enabled=False):
        r = torch.stack([(1.0 - s.float()).square().mean() for s in real]).mean()
        f = torch.stack([s.float().square().mean() for s in fake]).mean()
    return r, f


def lsgan_generator_loss(fake: list[Tensor]) -> Tensor:
    """Least-squares generator loss: mean over sub-discriminators of ``mean((1 - D(G(z)))^2)``."""
    if not fake:
        raise ValueError("need at least one score map")
    with torch.autocast(device_type=fake[0].device.type, enabled=False):
        return torch.stack([(1.0 - s.float()).square().mean() for s in fake]).mean()


def feature_matching_loss(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """L1 feature matching: for each sub-discriminator the mean over its layers of
    ``mean |F_real - F_fake|`` (real features detached), then the mean over sub-discriminators."""
    if len(real) != len(fake) or not real:
        raise ValueError(f"need matching non-empty feature lists, got {len(real)} and {len(fake)}")
    with torch.autocast(device_type=fake[0][0].device.type, enabled=False):
        per_disc = []
        for fr, ff in zip(real, fake, strict=True):
            if len(fr) != len(ff):
                raise ValueError(f"feature lists differ in length: {len(fr)} vs {len(ff)}")
            layers = [(a.detach().float() - b.float()).abs().mean() for a, b in zip(fr, ff, strict=True)]
            per_disc.append(torch.stack(layers).mean())
        return torch.stack(per_disc).mean()
