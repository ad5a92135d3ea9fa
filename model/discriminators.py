"""Discriminators for the student's adversarial training (issue 37), sized for a CPU.

- :class:`PeriodDiscriminator` / multi-period (HiFi-GAN's MPD): the waveform (B, T) folded into
  (B, 1, T / p, p) for a period p, 2-D convs of kernel (k, 1) along the folded time axis, so each
  column sees every p-th sample (periodic structure: pitch pulses, their shapes).
- :class:`ResolutionDiscriminator` / multi-resolution (UnivNet's MRD): the log-magnitude
  spectrogram at one STFT resolution, 2-D convs over (frames, bins) (the texture of the spectrum:
  noise between harmonics, over-smoothed bands).

Every sub-discriminator returns its score map (B, N) and its intermediate feature maps (for the
feature-matching loss). The last conv (the score) runs in fp32 with autocast disabled; the hidden
convs follow autocast (bf16 on CPUs with bf16 units). Widths are one knob, ``channels`` (the first
layer's; later layers double up to ``4 * channels``), chosen by measurement on the 2-core EPYC
(recipes/reports/gan-ab/). Weight normalisation on every conv, as in HiFi-GAN / UnivNet.

The discriminators exist only in training: they are saved in the training checkpoint (its "aux"
section, with their optimiser) and never in "model"/"ema", which is all that export and inference read.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = [
    "DISC_KINDS",
    "DiscConfig",
    "MultiDiscriminator",
    "PeriodDiscriminator",
    "ResolutionDiscriminator",
]

DISC_KINDS = ("mpd", "mrd")
LEAK = 0.1


@dataclass(frozen=True)
class DiscConfig:
    kinds: tuple[str, ...] = ("mpd", "mrd")
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: int = 16  # first layer; then 2x, 4x, 4x
    resolutions: tuple[int, ...] = (512, 1024, 256)  # FFT sizes; hop fft/4, Hann window of the FFT
    mrd_channels: int = 16

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(DISC_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"disc kinds must be among {DISC_KINDS}, got {self.kinds}")
        if "mpd" in self.kinds and (not self.periods or min(self.periods) < 1 or self.mpd_channels < 1):
            raise ValueError("mpd needs periods >= 1 and mpd_channels >= 1")
        if "mrd" in self.kinds and (
            not self.resolutions or min(self.resolutions) < 16 or self.mrd_channels < 1
        ):
            raise ValueError("mrd needs FFT sizes >= 16 and mrd_channels >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DiscConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _score(conv: nn.Module, h: Tensor) -> Tensor:
    """The last conv in fp32 (autocast off): the scores the least-squares losses square."""
    with torch.autocast(device_type=h.device.type, enabled=False):
        return conv(h.float())


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's period discriminator: (B, T) -> score (B, N), features [(B, C, T/p/3^i, p)]."""

    def __init__(self, period: int, channels: int = 16, kernel: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        widths = [1, channels, 2 * channels, 4 * channels, 4 * channels]
        pad = (kernel // 2, 0)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (kernel, 1), (stride, 1), pad))
            for c_in, c_out in itertools.pairwise(widths)
        )
        self.convs.append(weight_norm(nn.Conv2d(widths[-1], widths[-1], (kernel, 1), 1, pad)))
        self.post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, (1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, t = x.shape
        p = self.period
        if t % p:
            x = F.pad(x, (0, p - t % p), mode="reflect")
        h = x.view(b, 1, -1, p)  # (B, 1, T/p, p)
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), LEAK)  # (B, C, T/p/3^i, p)
            feats.append(h)
        score = _score(self.post, h)  # (B, 1, T', p)
        feats.append(score)
        return score.flatten(1), feats


class ResolutionDiscriminator(nn.Module):
    """UnivNet-style resolution discriminator on one STFT: (B, T) -> score (B, N), features.

    Input: log-magnitude (floored at 1e-5) of the STFT with FFT ``n_fft``, hop n_fft/4, a Hann window
    of the FFT's length, fp32; as (B, 1, frames, bins). Convs of kernel (3, 9) with stride 2 along
    the bins, then (3, 3)."""

    def __init__(self, n_fft: int, channels: int = 16):
        super().__init__()
        self.n_fft = n_fft
        c = channels
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, c, (3, 9), 1, (1, 4))),
                weight_norm(nn.Conv2d(c, 2 * c, (3, 9), (1, 2), (1, 4))),
                weight_norm(nn.Conv2d(2 * c, 4 * c, (3, 9), (1, 2), (1, 4))),
                weight_norm(nn.Conv2d(4 * c, 4 * c, (3, 9), (1, 2), (1, 4))),
                weight_norm(nn.Conv2d(4 * c, 4 * c, (3, 3), 1, (1, 1))),
            ]
        )
        self.post = weight_norm(nn.Conv2d(4 * c, 1, (3, 3), 1, (1, 1)))

    def spectrogram(self, x: Tensor) -> Tensor:
        """(B, T) -> log |STFT| (B, 1, frames, bins), fp32."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.stft(
                x.float(),
                self.n_fft,
                hop_length=self.n_fft // 4,
                win_length=self.n_fft,
                window=self.window,
                center=True,
                return_complex=True,
            )  # (B, bins, frames)
            mag = torch.sqrt(torch.clamp(spec.real.square() + spec.imag.square(), min=1e-10))
            return torch.log(mag).transpose(1, 2).unsqueeze(1)  # (B, 1, frames, bins)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = self.spectrogram(x)
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), LEAK)  # (B, C, frames, bins / 2^i)
            feats.append(h)
        score = _score(self.post, h)
        feats.append(score)
        return score.flatten(1), feats


class MultiDiscriminator(nn.Module):
    """All sub-discriminators of a :class:`DiscConfig`: ``forward(x)`` (B, T) -> (scores, features),
    one entry per sub-discriminator (MPD periods first, then MRD resolutions)."""

    def __init__(self, cfg: DiscConfig):
        super().__init__()
        self.cfg = cfg
        subs: list[nn.Module] = []
        if "mpd" in cfg.kinds:
            subs += [PeriodDiscriminator(p, cfg.mpd_channels) for p in cfg.periods]
        if "mrd" in cfg.kinds:
            subs += [ResolutionDiscriminator(n, cfg.mrd_channels) for n in cfg.resolutions]
        self.discs = nn.ModuleList(subs)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        scores, feats = [], []
        for d in self.discs:
            s, f = d(x)
            scores.append(s)
            feats.append(f)
        return scores, feats


def names(cfg: DiscConfig) -> Sequence[str]:
    """Labels of the sub-discriminators in :class:`MultiDiscriminator`'s order (for logging)."""
    out = []
    if "mpd" in cfg.kinds:
        out += [f"mpd{p}" for p in cfg.periods]
    if "mrd" in cfg.kinds:
        out += [f"mrd{n}" for n in cfg.resolutions]
    return out
