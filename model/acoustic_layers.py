"""The acoustic model's building blocks (``model.acoustic``): masks, masked convolutions, a BiLSTM
that is exact on padded batches without ``pack_padded_sequence``, the length regulator and the
durations it is given at inference. No data-dependent Python control flow: all of it traces to ONNX.
"""

from __future__ import annotations

import torch
from torch import nn


def sequence_mask(lengths: torch.Tensor, max_len: int | torch.Tensor) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool, True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class ConvBlock(nn.Module):
    """Conv1d -> ReLU -> LayerNorm (over channels) -> dropout, masked; (B, C, T) -> (B, C_out, T)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dropout: float, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=dilation * (kernel // 2), dilation=dilation)
        self.norm = nn.LayerNorm(c_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # mask (B, 1, T)
        y = torch.relu(self.conv(x * mask))  # (B, C, T)
        y = self.norm(y.transpose(1, 2)).transpose(1, 2)
        return self.drop(y) * mask


class MaskedBiLSTM(nn.Module):
    """Bidirectional LSTM exact under right padding, without packing (traceable).

    The backward LSTM reads each sequence reversed within its own length, so padding never leaks
    into valid positions. (B, T, C_in) -> (B, T, 2 * hidden).
    """

    def __init__(self, c_in: int, hidden: int) -> None:
        super().__init__()
        self.fwd = nn.LSTM(c_in, hidden, batch_first=True)
        self.bwd = nn.LSTM(c_in, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        t = torch.arange(T, device=x.device)[None, :]  # (1, T)
        rev = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T), an involution
        idx = rev[:, :, None].expand(-1, -1, x.shape[2])  # (B, T, C_in)
        y_f, _ = self.fwd(x)  # (B, T, H)
        y_b, _ = self.bwd(torch.gather(x, 1, idx))  # (B, T, H) in reversed time
        y_b = torch.gather(y_b, 1, rev[:, :, None].expand(-1, -1, y_b.shape[2]))
        return torch.cat([y_f, y_b], dim=2)  # (B, T, 2H)


def length_regulate(
    h: torch.Tensor, durations: torch.Tensor, n_frames: torch.Tensor | int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Repeat phoneme vectors by their durations (cumsum + comparison, no Python loops).

    h: (B, L, C); durations: (B, L) non-negative ints (0 on padding). n_frames: output length
    (default: the largest total). Returns (frames (B, F, C), position features (B, F, 2): fraction
    of the way through the current phoneme and log(1 + its duration), frame lengths (B,)).
    """
    durations = durations.long()
    ends = torch.cumsum(durations, dim=1)  # (B, L)
    starts = ends - durations  # (B, L)
    totals = ends[:, -1]  # (B,)
    if n_frames is None:
        n_frames = totals.max()
    t = torch.arange(n_frames, device=h.device)[None, :, None]  # (1, F, 1)
    assign = (t >= starts[:, None, :]) & (t < ends[:, None, :])  # (B, F, L), one-hot per valid frame
    w = assign.to(h.dtype)
    frames = torch.bmm(w, h)  # (B, F, C)
    d = durations.to(h.dtype)[:, None, :]  # (B, 1, L)
    frac = (t.to(h.dtype) - starts[:, None, :].to(h.dtype) + 0.5) / d.clamp(min=1.0)  # (B, F, L)
    pos = torch.stack([(w * frac).sum(2), (w * torch.log(1.0 + d)).sum(2)], dim=2)  # (B, F, 2)
    return frames, pos, totals


def durations_from_log(
    log_dur: torch.Tensor, mask: torch.Tensor, speed: torch.Tensor | float
) -> torch.Tensor:
    """Predicted log(1 + frames) -> integer frames at ``speed`` (B, L), 0 on padding.

    Each phoneme is rounded on its own (half up) and keeps at least one frame (training never
    shows a phoneme shorter than one frame), so a speed of s gives round(d / s) frames, which is
    within one frame of d / s for every phoneme.
    """
    d = (torch.exp(log_dur) - 1.0).clamp(min=0.0)  # (B, L) frames at speed 1 (no expm1: ONNX)
    frames = torch.floor(d / speed + 0.5).clamp(min=1.0)  # (B, L)
    return (frames * mask.to(frames.dtype)).long()
