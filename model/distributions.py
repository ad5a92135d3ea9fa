"""Per-sample Gaussian output distributions shared by the WaveNet teacher and the IAF student.

A distribution over a waveform is a pair of tensors of the same shape, ``(mean, log_scale)``, one
Gaussian per sample (ClariNet). Everything here is elementwise, takes and returns plain tensors
(no ``torch.distributions`` objects) so the same functions run in training, in incremental
generation and inside exported ONNX graphs.

The log-scale floor: a Gaussian density model of 16-bit audio can drive its scale towards zero on
digital silence and buy unbounded likelihood with it. ClariNet clamps ``log sigma`` at -7 for the
teacher (sigma >= 9.1e-4, about 30 LSB of 16-bit audio): :data:`TEACHER_LOG_SCALE_MIN`. The clamp is a
hard ``max``, so the gradient below the floor is zero -- the network is not rewarded for going
lower, which is the point.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "TEACHER_LOG_SCALE_MIN",
    "floor_log_scale",
    "gaussian_entropy",
    "gaussian_kl",
    "gaussian_log_prob",
    "gaussian_nll",
    "sample_gaussian",
    "split_gaussian_params",
]

TEACHER_LOG_SCALE_MIN = -7.0  # ClariNet's floor for the teacher's log sigma

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def floor_log_scale(log_scale: Tensor, minimum: float | None) -> Tensor:
    """``max(log_scale, minimum)`` (no-op for ``minimum=None``); zero gradient below the floor."""
    if minimum is None:
        return log_scale
    return torch.clamp(log_scale, min=minimum)


def split_gaussian_params(params: Tensor, log_scale_min: float | None = None) -> tuple[Tensor, Tensor]:
    """A network's 2-channel output (B, 2, T) -> mean (B, T), floored log-scale (B, T)."""
    if params.shape[1] != 2:
        raise ValueError(f"expected 2 channels (mean, log_scale), got shape {tuple(params.shape)}")
    mean, log_scale = params[:, 0], params[:, 1]  # (B, T) each
    return mean, floor_log_scale(log_scale, log_scale_min)


def gaussian_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """Elementwise log N(x; mean, exp(log_scale)^2) in nats."""
    z = (x - mean) * torch.exp(-log_scale)
    return -0.5 * z * z - log_scale - _HALF_LOG_2PI


def gaussian_nll(
    x: Tensor, mean: Tensor, log_scale: Tensor, mask: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Negative log-likelihood in nats per sample ("mean"), summed ("sum") or elementwise ("none").

    ``mask`` (same shape, 1 = counts) excludes padding from the reduction.
    """
    nll = -gaussian_log_prob(x, mean, log_scale)
    if reduction == "none":
        return nll if mask is None else nll * mask
    if mask is not None:
        nll = nll * mask
        total = nll.sum()
        return total if reduction == "sum" else total / mask.sum().clamp(min=1)
    if reduction == "sum":
        return nll.sum()
    if reduction == "mean":
        return nll.mean()
    raise ValueError(f"unknown reduction {reduction!r}")


def sample_gaussian(
    mean: Tensor,
    log_scale: Tensor,
    temperature: float = 1.0,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``mean + temperature * exp(log_scale) * eps`` with eps ~ N(0, 1) (``noise`` when given, which
    makes the draw an explicit input, e.g. for ONNX and reproducibility). ``temperature=0`` is the
    mean (greedy)."""
    if noise is None:
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + (temperature * noise) * torch.exp(log_scale)


def gaussian_entropy(log_scale: Tensor) -> Tensor:
    """Differential entropy of N(., exp(log_scale)^2) in nats, elementwise."""
    return log_scale + (0.5 + _HALF_LOG_2PI)


def gaussian_kl(mean_q: Tensor, log_scale_q: Tensor, mean_p: Tensor, log_scale_p: Tensor) -> Tensor:
    """Closed-form KL(q || p) between Gaussians, elementwise, in nats.

    KL = log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2. Written with
    ``exp(2 (log_scale_q - log_scale_p))`` so it stays finite when both scales are tiny. The
    student's distillation loss is this with q = student, p = teacher (ClariNet), usually with the
    teacher's log-scale floored as in training.
    """
    diff = log_scale_q - log_scale_p
    ratio = torch.exp(2.0 * diff)  # s_q^2 / s_p^2
    dm = (mean_q - mean_p) * torch.exp(-log_scale_p)  # (m_q - m_p) / s_p
    return -diff + 0.5 * (ratio + dm * dm - 1.0)
