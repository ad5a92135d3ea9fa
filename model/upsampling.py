"""Frame rate -> sample rate: the upsampling of the WaveNet stack's per-layer conditioning.

Why the conditioning is projected at the frame rate and only then upsampled: :mod:`model.wavenet`.
Every output sample is a weighted sum of its own frame and the two neighbours (edges replicate),
with weights that depend only on its phase within the frame: a (3, hop) kernel, 3 multiply-adds
per channel per sample. Modes (``hop`` = the upsampling factor, asserted equal to the feature hop
wherever a model is built from an :class:`~model.data.config.AudioConfig`):

- ``nearest``: each frame's value repeated over its hop samples;
- ``linear``: linear interpolation between frame centres (frame f describes samples
  ``[f*hop, (f+1)*hop)`` and sits at their centre), i.e. a fixed depthwise transposed convolution
  with a triangular kernel of length 2*hop;
- ``learned``: the same 3-tap-per-phase kernel, shape (3, hop), as a trainable parameter
  initialised to ``linear`` -- a learned transposed convolution shared by all channels (600
  parameters at hop 200), still 3 multiply-adds per output sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["UPSAMPLE_MODES", "FrameUpsampler", "interpolation_kernel"]

UPSAMPLE_MODES = ("nearest", "linear", "learned")


def interpolation_kernel(hop: int, mode: str) -> Tensor:
    """(3, hop) weights: output sample p of frame f = sum_j kernel[j, p] * c[f - 1 + j].

    ``linear`` places frame f's value at the centre of its samples, position f*hop + (hop-1)/2 in
    sample indices, and interpolates linearly between neighbouring centres.
    """
    if mode == "nearest":
        kernel = torch.zeros(3, hop)
        kernel[1] = 1.0
        return kernel
    if mode in ("linear", "learned"):
        delta = (
            torch.arange(hop, dtype=torch.float64) + 0.5
        ) / hop - 0.5  # (hop,) offset from centre, in frames
        prev = torch.clamp(-delta, min=0.0)
        nxt = torch.clamp(delta, min=0.0)
        return torch.stack([prev, 1.0 - prev - nxt, nxt]).float()  # (3, hop)
    raise ValueError(f"unknown upsampling mode {mode!r}; expected one of {UPSAMPLE_MODES}")


class FrameUpsampler(nn.Module):
    """Frame rate -> sample rate by a 3-tap per-phase interpolation: (B, C, F) -> (B, C, F*hop).

    Every output sample is a weighted sum of its own frame and the two neighbours (edges replicate),
    with weights that depend only on its phase within the frame (see the module docstring).
    """

    def __init__(self, hop_length: int, mode: str = "linear"):
        super().__init__()
        if hop_length <= 0:
            raise ValueError(f"hop_length must be positive, got {hop_length}")
        self.hop_length = hop_length
        self.mode = mode
        kernel = interpolation_kernel(hop_length, mode)  # (3, hop)
        if mode == "learned":
            self.kernel = nn.Parameter(kernel)
        else:
            self.register_buffer("kernel", kernel, persistent=False)

    @staticmethod
    def neighbours(c: Tensor) -> Tensor:
        """(B, C, F) -> (B, C, F, 3): [c[f-1], c[f], c[f+1]], edge frames replicated."""
        p = F.pad(c, (1, 1), mode="replicate")  # (B, C, F + 2)
        return torch.stack([p[..., :-2], p[..., 1:-1], p[..., 2:]], dim=-1)

    def forward(self, c: Tensor) -> Tensor:  # (B, C, F) -> (B, C, F*hop)
        B, C, n_frames = c.shape
        up = self.neighbours(c) @ self.kernel.to(c.dtype)  # (B, C, F, 3) @ (3, hop) -> (B, C, F, hop)
        return up.reshape(B, C, n_frames * self.hop_length)

    def frame(self, neighbours: Tensor) -> Tensor:
        """The hop samples of one frame, time-major for stepping: (B, C, 3) -> (hop, B, C)."""
        up = neighbours @ self.kernel.to(neighbours.dtype)  # (B, C, hop)
        return up.permute(2, 0, 1).contiguous()
