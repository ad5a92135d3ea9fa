"""The WaveNet residual stack shared by the teacher and the student's IAF flows.

Pieces (each with a full-sequence ``forward`` and an incremental ``step`` that share the weights):

- :class:`CausalConv1d` -- dilated causal convolution. ``forward`` left-pads the whole sequence;
  ``step`` consumes one new input vector plus an explicit *queue* of the previous
  ``(kernel_size - 1) * dilation`` inputs and returns the output and the new queue (Fast WaveNet).
  The queue is an ordinary tensor passed in and out -- no hidden module state -- so the same step
  code runs in eager generation and can be traced into an ONNX step graph with explicit caches.
- :class:`ResidualLayer` -- gated ``tanh * sigmoid`` unit on (dilated conv + conditioning), a 1x1
  projection to residual and skip outputs, residual scaled by sqrt(1/2).
- :class:`WaveNetStack` -- the layers, per-layer conditioning, skip sum (or, with
  ``skip_channels=0``, the last residual output: the student's flows have no skip path).
- :class:`ConditioningNetwork` -- log-mel (+ global speaker embedding) -> features at frame rate.
- :class:`FrameUpsampler` -- frame rate -> sample rate.

Conditioning path (why it looks like this). WaveNet adds ``V_l c_t`` (a 1x1 projection of the
upsampled conditioning) to every layer's gate pre-activation. Done at the sample rate, that is
``n_mels x 2*gate`` multiply-adds per layer per *sample* -- measured to be a large share of a small
CPU student's cost. Here the per-layer projections are applied at the *frame* rate (hop = 200
samples per frame, so 200x fewer of them) and only their outputs are brought to the sample rate:

    mel (B, n_mels, F) --ConditioningNetwork (convs over frames)--> h (B, C, F)
      --one 1x1 conv = all layers' projections, at frame rate--> (B, L*2G, F)
      --FrameUpsampler (3-tap interpolation per output sample)--> (B, L*2G, F*hop), split per layer

The upsampler is linear, and linear maps commute with linear interpolation, so projecting before
upsampling computes exactly what projecting the upsampled features would -- the saving costs no
expressiveness. What the sample-rate path pays is 3 multiply-adds per channel per sample (or none
for ``nearest``) instead of C. Upsampling modes (``hop`` = the upsampling factor, asserted equal to
the feature hop wherever a model is built from an :class:`~model.data.config.AudioConfig`):

- ``nearest``: each frame's value repeated over its hop samples;
- ``linear``: linear interpolation between frame centres (frame f describes samples
  ``[f*hop, (f+1)*hop)`` and sits at their centre), i.e. a fixed depthwise transposed convolution
  with a triangular kernel of length 2*hop;
- ``learned``: the same 3-tap-per-phase kernel, shape (3, hop), as a trainable parameter
  initialised to ``linear`` -- a learned transposed convolution shared by all channels (600
  parameters at hop 200), still 3 multiply-adds per output sample.

Training layout (why the stack runs time-major). Today's CPU kernels for a *dilated* ``Conv1d`` in
(B, C, T) layout fall into ``aten::_slow_conv2d`` (im2col + small GEMMs, fp32 only): measured ~60 %
of a teacher training step. :meth:`WaveNetStack.forward` therefore transposes once to channels-last
(B, T, C) and computes each layer's dilated conv as one matmul per tap on a shifted *view* of the
left-padded input (``y = sum_j x[t - (k-1-j)*d] @ W_j``), the conditioning added in, the gate and the
1x1 projection on the same (B, T, C) tensors. Those matmuls are what ``torch.compile`` is fast at,
and the weights are the very ``Conv1d`` parameters ``step()`` uses (same names, same state_dict), so
incremental == parallel still holds in fp32. Under 16-bit autocast the dilated conv is instead the
backend's own convolution (oneDNN's bf16 kernels on CPU) on the same channels-last padded input:
no im2col copy forward, no shifted-slice sums backward (teacher64 step 1.18-1.19x in an in-process
A/B, 1.07x between two benchmark runs; the distillation step, whose frozen teacher needs no weight
gradients, unchanged).
Two more layout choices there, each measured on the teacher64 training step: the frame-rate
conditioning is computed as a (B, F, C) matmul (:func:`frame_projection`), so the compiled
upsampling reads each layer's slice along channels (1.10x); and the skip sum
``sum_l W_skip_l z_l`` is one matmul over the concatenated gate outputs after the last layer
instead of 20 skip projections accumulated in fp32 (1.07x; the last layer's residual projection,
which feeds nothing, is skipped too).
:func:`legacy_convolutions` switches back to the (B, C, T) ``Conv1d`` path (the benchmark's "old"),
which is also what ONNX export traces (unchanged graphs, Conv nodes for ONNX Runtime).

The ConditioningNetwork is non-causal over frames (kernel ``k``: ``(k // 2) * layers`` frames of
look-ahead), which is free for copy-synthesis and for the acoustic model's output.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "UPSAMPLE_MODES",
    "CausalConv1d",
    "ConditioningNetwork",
    "FrameUpsampler",
    "ResidualLayer",
    "WaveNetStack",
    "apply_weight_norm",
    "dilation_cycle",
    "frame_projection",
    "interpolation_kernel",
    "legacy_convolutions",
    "pointwise",
    "remove_weight_norm",
]

SQRT_HALF = math.sqrt(0.5)
UPSAMPLE_MODES = ("nearest", "linear", "learned")

_LEGACY = False  # True inside legacy_convolutions(): the (B, C, T) Conv1d path


@contextlib.contextmanager
def legacy_convolutions(enabled: bool = True) -> Iterator[None]:
    """Run :class:`WaveNetStack` forwards through the original (B, C, T) ``nn.Conv1d`` path (same
    weights). For benchmarks and tests comparing the two layouts; the default is channels-last."""
    global _LEGACY
    previous, _LEGACY = _LEGACY, enabled
    try:
        yield
    finally:
        _LEGACY = previous


def _channels_last() -> bool:
    """The channels-last path, except under ``legacy_convolutions`` and in ONNX export (the exported
    graphs keep their Conv nodes, which ONNX Runtime runs fast, and stay as they were)."""
    return not _LEGACY and not torch.onnx.is_in_onnx_export()


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype matmuls on ``x`` run in: autocast's when it is on for x's device, else x's."""
    if x.is_floating_point() and torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _full_precision(dtype: torch.dtype) -> bool:
    """fp32/fp64: the channels-last path computes what ``step()`` computes, the same products (the
    parity tests hold exactly); 16 bits (autocast) take the faster forms instead."""
    return dtype == torch.float32 or dtype == torch.float64


def speaker_embedding(table: nn.Embedding, speaker: Tensor) -> Tensor:
    """Speaker ids (B,) long -> their rows of ``table`` (B, D); speaker weights (B, S) float -> the
    weighted mix ``weights @ table.weight`` (B, D): a voice blend (one-hot weights give the rows
    exactly). The exported graphs take weights (``service.graphs``: bundle format 3)."""
    if speaker.is_floating_point():
        return speaker.reshape(-1, table.num_embeddings).to(table.weight.dtype) @ table.weight  # (B, D)
    return table(speaker.reshape(-1))  # (B, D)


def dilation_cycle(layers: int, cycles: int) -> tuple[int, ...]:
    """Dilations 1, 2, 4, ... restarting ``cycles`` times: ``layers=6, cycles=2`` -> (1, 2, 4, 1, 2, 4)."""
    if layers <= 0 or cycles <= 0 or layers % cycles:
        raise ValueError(f"layers ({layers}) must be a positive multiple of cycles ({cycles})")
    per_cycle = layers // cycles
    return tuple(2 ** (i % per_cycle) for i in range(layers))


def frame_projection(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """A 1x1 conv over frames, h (B, C_in, F) -> (B, C_out, F), weight (C_out, C_in, 1).

    In the channels-last path the result is computed as a matmul on (B, F, C_in) and returned as a
    (B, C_out, F) *view* of a (B, F, C_out) tensor: the per-layer conditioning the stack slices out
    of it is then contiguous in channels. A (B, C_out, F)-contiguous one is a gather (stride F) in
    every compiled kernel that upsamples it, forward and backward (measured: the whole teacher64
    step 1.10x faster this way). Same values either way; only the memory layout differs."""
    if not _channels_last():  # also what ONNX export traces (the graphs keep their Conv)
        return F.conv1d(h, weight.to(h.dtype), None if bias is None else bias.to(h.dtype))
    w = weight[:, :, 0].to(h.dtype)  # (C_out, C_in)
    y = F.linear(h.transpose(1, 2), w, None if bias is None else bias.to(h.dtype))  # (B, F, C_out)
    return y.transpose(1, 2)  # (B, C_out, F) view


def pointwise(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """A kernel-size-1 Conv1d applied to one time step: (B, C_in) -> (B, C_out)."""
    return F.linear(x, conv.weight[:, :, 0], conv.bias)


class CausalConv1d(nn.Conv1d):
    """Dilated causal convolution with a full-sequence ``forward`` and a one-sample ``step``.

    ``context = (kernel_size - 1) * dilation`` past inputs are needed besides the current one.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True
    ):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.context = (kernel_size - 1) * dilation

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, T) -> (B, C_out, T)
        return super().forward(F.pad(x, (self.context, 0)))

    def forward_tc(self, x: Tensor, add: Tensor | None = None) -> Tensor:
        """Channels-last: x (B, T, C_in) -> (B, T, C_out) [+ add (B, T, C_out)]. In fp32/fp64 one
        matmul over the taps of ``step`` (shifted views of the left-padded input, all samples at
        once); in 16 bits (autocast) the backend's dilated convolution on the same padded input."""
        dtype = _compute_dtype(x)
        T = x.shape[1]
        d = self.dilation[0]
        xp = F.pad(x.to(dtype), (0, 0, self.context, 0))  # (B, context + T, C_in)
        if _full_precision(dtype):
            # im2col on views: tap j of output t reads x[t - context + j*d]; one (k*C_in)-deep
            # matmul, the same products as step()'s (the fp32 parity tests hold exactly)
            k = self.kernel_size[0]
            u = torch.cat([xp.narrow(1, j * d, T) for j in range(k)], dim=-1)  # (B, T, k*C_in), tap-major
            w = self.weight.to(dtype).permute(0, 2, 1).reshape(self.out_channels, k * self.in_channels)
            y = F.linear(u, w)  # (B, T, C_out)
        else:
            # 16 bits: the backend's own dilated convolution (oneDNN on CPU) on a channels-last view
            # of the padded input, no im2col copy forward and no shifted-slice sums backward
            # (measured on the teacher64 step: 1.07-1.19x faster than the im2col matmul under bf16)
            xc = xp.transpose(1, 2).unsqueeze(2)  # (B, C_in, 1, context + T), channels-last strides
            y = F.conv2d(xc, self.weight.to(dtype).unsqueeze(2), None, dilation=(1, d))  # (B, C_out, 1, T)
            y = y.squeeze(2).transpose(1, 2)  # (B, T, C_out)
        if add is not None:
            y = y + add.to(dtype)
        if self.bias is not None:
            y = y + self.bias.to(dtype)
        return y

    def init_queue(self, batch: int, device=None, dtype=None) -> Tensor | None:
        """Zeros (B, C_in, context) -- what ``forward``'s left padding feeds the first outputs."""
        if self.context == 0:
            return None
        return torch.zeros(batch, self.in_channels, self.context, device=device, dtype=dtype)

    def step(
        self, x_t: Tensor, queue: Tensor | None, add: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """One output sample.

        x_t (B, C_in): the newest input; queue (B, C_in, context): the previous inputs, oldest first
        (None when context is 0); add (B, C_out) or None: added to the output (fused into the matmul).
        Returns y_t (B, C_out) and the new queue (B, C_in, context).
        """
        if self.context == 0:
            window = x_t.unsqueeze(-1)  # (B, C_in, 1)
            new_queue = None
        else:
            window = torch.cat([queue, x_t.unsqueeze(-1)], dim=-1)  # (B, C_in, context + 1)
            new_queue = window.narrow(2, 1, self.context)  # (B, C_in, context)
        dilation = self.dilation[0]
        taps = window if dilation == 1 else window[:, :, ::dilation]  # (B, C_in, k)
        if self.bias is not None:
            add = self.bias if add is None else add + self.bias
        # (B, C_in * k) @ (C_in * k, C_out): both flattened in (channel, tap) order
        y = F.linear(taps.reshape(x_t.shape[0], -1), self.weight.reshape(self.out_channels, -1), add)
        return y, new_queue  # (B, C_out)


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
    with weights that depend only on its phase within the frame. See the module docstring.
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

    def forward_tc(self, c: Tensor) -> Tensor:
        """Channels-last: c (B, F, C) frames (contiguous in C) -> (B, F*hop, C) samples."""
        B, n_frames, C = c.shape
        prev = torch.cat([c[:, :1], c[:, :-1]], dim=1)  # (B, F, C): c[f - 1], edge replicated
        nxt = torch.cat([c[:, 1:], c[:, -1:]], dim=1)  # (B, F, C): c[f + 1]
        k = self.kernel.to(c.dtype)  # (3, hop)
        # 3 multiply-adds per output, written elementwise so torch.compile fuses it into the gate
        up = (
            prev[:, :, None] * k[0, :, None] + c[:, :, None] * k[1, :, None] + nxt[:, :, None] * k[2, :, None]
        )  # (B, F, hop, C)
        return up.reshape(B, n_frames * self.hop_length, C)

    def frame(self, neighbours: Tensor) -> Tensor:
        """The hop samples of one frame, time-major for stepping: (B, C, 3) -> (hop, B, C)."""
        up = neighbours @ self.kernel.to(neighbours.dtype)  # (B, C, hop)
        return up.permute(2, 0, 1).contiguous()


class ConditioningNetwork(nn.Module):
    """log-mel (B, n_mels, F) [+ speaker id (B,)] -> conditioning features (B, channels, F), frame rate.

    The mel is normalised with fixed constants ``(mel - mel_mean) / mel_std``; a global speaker
    embedding (multi-speaker corpora) is broadcast over frames and concatenated to the input, so
    every layer's conditioning is speaker dependent (WaveNet's global conditioning). Then a conv
    and ``layers - 1`` pre-activation residual convs (LeakyReLU), non-causal, replicate padding.
    """

    def __init__(
        self,
        n_mels: int,
        channels: int,
        layers: int = 2,
        kernel_size: int = 3,
        n_speakers: int = 1,
        speaker_dim: int = 16,
        mel_mean: float = -4.0,
        mel_std: float = 4.0,
    ):
        super().__init__()
        if kernel_size % 2 != 1 or layers < 1:
            raise ValueError("conditioning kernel_size must be odd and layers >= 1")
        self.n_mels = n_mels
        self.mel_mean = mel_mean
        self.mel_std = mel_std
        self.speaker = nn.Embedding(n_speakers, speaker_dim) if n_speakers > 1 else None
        in_channels = n_mels + (speaker_dim if self.speaker is not None else 0)
        pad = kernel_size // 2
        self.input = nn.Conv1d(in_channels, channels, kernel_size, padding=pad, padding_mode="replicate")
        self.blocks = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=pad, padding_mode="replicate")
            for _ in range(layers - 1)
        )

    def forward(self, mel: Tensor, speaker: Tensor | None = None) -> Tensor:  # (B, n_mels, F) -> (B, C, F)
        if mel.shape[1] != self.n_mels:
            raise ValueError(f"expected {self.n_mels} mel bins, got mel of shape {tuple(mel.shape)}")
        x = (mel - self.mel_mean) / self.mel_std  # (B, n_mels, F)
        if self.speaker is not None:
            if speaker is None:
                raise ValueError("multi-speaker model: a speaker id per batch item is required")
            s = speaker_embedding(self.speaker, speaker)  # (B, D)
            x = torch.cat(
                [x, s.unsqueeze(-1).expand(-1, -1, x.shape[-1]).to(x.dtype)], dim=1
            )  # (B, n_mels + D, F)
        h = self.input(x)  # (B, C, F)
        for block in self.blocks:
            h = h + block(F.leaky_relu(h, 0.2))
        return h


def _gate(a: Tensor) -> Tensor:
    """``tanh(a_tanh) * sigmoid(a_sigmoid)`` of the two halves of a (B, T, 2G) -> (B, T, G).

    In fp32 exactly that (the channels-last path stays equal to ``step``). In 16 bits it is computed
    in fp32 (rounded once, at the end) with ``tanh(u) = 2 sigmoid(2u) - 1``: the same function to
    fp32 rounding (absolute error ~1e-7, far below bf16's 2^-9), and cheaper where the vectorised
    ``tanh`` is slow: on the 2-core AMD EPYC host ``torch.tanh`` costs ~10x ``torch.sigmoid`` per
    element (2.2 vs 0.23 ns), and the compiled teacher64 step got 1.16x faster with this form."""
    a_tanh, a_sigmoid = a.chunk(2, dim=-1)  # (B, T, G) each
    if _full_precision(a.dtype):
        return torch.tanh(a_tanh) * torch.sigmoid(a_sigmoid)
    t = 2.0 * torch.sigmoid(2.0 * a_tanh.float()) - 1.0  # (B, T, G) fp32: tanh(a_tanh)
    return (t * torch.sigmoid(a_sigmoid.float())).to(a.dtype)


def _linear_tc(z: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """(B, T, G) @ weight (N, G).T + bias in z's dtype: as ``step()`` computes it in fp32/fp64; in 16 bits
    the bias is added after the matmul, not by it: addmm first broadcast-copies the bias into its
    (B*T, N) output (measured: the whole teacher64 step 1.17x faster without), while a separate add
    is fused by torch.compile into the consumers."""
    w = weight.to(z.dtype)
    if _full_precision(z.dtype):
        return F.linear(z, w, bias)
    y = F.linear(z, w)
    return y if bias is None else y + bias.to(z.dtype)


class ResidualLayer(nn.Module):
    """Dilated causal conv -> (+ conditioning) -> tanh * sigmoid -> 1x1 -> residual (+x, * sqrt .5) and skip.

    The dilated conv has no bias when the layer is conditioned: the conditioning projection's bias
    plays that role (one fewer add per step).
    """

    def __init__(
        self,
        residual_channels: int,
        gate_channels: int,
        skip_channels: int,
        kernel_size: int,
        dilation: int,
        conditioned: bool,
    ):
        super().__init__()
        self.residual_channels = residual_channels
        self.gate_channels = gate_channels
        self.skip_channels = skip_channels
        self.conv = CausalConv1d(
            residual_channels, 2 * gate_channels, kernel_size, dilation, bias=not conditioned
        )
        self.out = nn.Conv1d(gate_channels, residual_channels + skip_channels, 1)

    def forward(self, x: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        # x (B, R, T); c (B, 2G, T) or None -> residual (B, R, T), skip (B, S, T)
        if _channels_last():
            res, skip = self.forward_tc(x.transpose(1, 2), None if c is None else c.transpose(1, 2))
            return res.transpose(1, 2), skip.transpose(1, 2)
        a = self.conv(x)  # (B, 2G, T)
        if c is not None:
            a = a + c
        a_tanh, a_sigmoid = a.chunk(2, dim=1)  # (B, G, T) each
        z = torch.tanh(a_tanh) * torch.sigmoid(a_sigmoid)  # (B, G, T)
        res, skip = self.out(z).split(
            (self.residual_channels, self.skip_channels), dim=1
        )  # (B, R, T), (B, S, T)
        return (x + res) * SQRT_HALF, skip

    def forward_tc(self, x: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        # channels-last: x (B, T, R) (fp32 stream); c (B, T, 2G) or None -> residual (B, T, R), skip (B, T, S)
        z = self.gate_tc(x, c)  # (B, T, G)
        res, skip = _linear_tc(z, self.out.weight[:, :, 0], self.out.bias).split(
            (self.residual_channels, self.skip_channels), dim=-1
        )  # (B, T, R), (B, T, S)
        return (x + res) * SQRT_HALF, skip  # the residual stream stays in x's dtype (fp32)

    def gate_tc(self, x: Tensor, c: Tensor | None) -> Tensor:
        """Channels-last: x (B, T, R), c (B, T, 2G) or None -> the gate's output z (B, T, G), in the
        compute dtype (what the 1x1 projection reads)."""
        return _gate(self.conv.forward_tc(x, c))  # (B, T, 2G) -> (B, T, G)

    def residual_tc(self, x: Tensor, z: Tensor) -> Tensor:
        """Channels-last: the residual half of the 1x1 projection only, x (B, T, R) + z (B, T, G) ->
        the next layer's input (B, T, R); the skip half is left to the stack (one matmul for all
        layers, see :meth:`WaveNetStack._forward_tc`)."""
        R = self.residual_channels
        res = _linear_tc(z, self.out.weight[:R, :, 0], self.out.bias[:R])  # (B, T, R)
        return (x + res) * SQRT_HALF

    def step(self, x_t: Tensor, c_t: Tensor | None, queue: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # x_t (B, R); c_t (B, 2G) or None; queue (B, R, context) -> residual (B, R), skip (B, S), new queue
        a, queue = self.conv.step(x_t, queue, add=c_t)  # (B, 2G)
        a_tanh, a_sigmoid = a.chunk(2, dim=1)  # (B, G) each
        z = torch.tanh(a_tanh) * torch.sigmoid(a_sigmoid)  # (B, G)
        res, skip = pointwise(self.out, z).split((self.residual_channels, self.skip_channels), dim=1)
        return (x_t + res) * SQRT_HALF, skip, queue


class WaveNetStack(nn.Module):
    """Residual layers with per-layer local conditioning.

    ``forward(x (B, R, T), cond_frames=(B, L*2G, F) | cond=(B, L*2G, T))`` returns the scaled skip
    sum (B, S, T), or the last residual output (B, R, T) when ``skip_channels == 0``.
    Per-layer conditioning comes from :meth:`frame_conditioning` (frame rate, all layers in one
    1x1 conv); ``cond_frames`` is upsampled one layer at a time inside ``forward`` (bounded memory
    in training), ``cond`` is already at the sample rate (e.g. a window of a precomputed one).

    With ``excitation_channels`` E > 0 a sample-rate signal (the teacher's F0 excitation) is added to
    every layer's conditioning as well, through one zero-initialised 1x1 conv E -> L*2G
    (``excitation_proj``, sliced per layer; ``forward(..., excitation=(B, E, T))``,
    ``step(..., exc_t=(B, E))``).

    Incremental: ``state = init_state(B)`` (one queue per layer), then per sample
    ``out_t, state = step(x_t (B, R), c_t (B, L*2G) | None, state)``.
    """

    def __init__(
        self,
        residual_channels: int,
        gate_channels: int,
        skip_channels: int,
        kernel_size: int,
        dilations: Sequence[int],
        cond_channels: int = 0,
        hop_length: int = 200,
        upsample: str = "linear",
        excitation_channels: int = 0,
    ):
        super().__init__()
        if kernel_size < 2:
            raise ValueError("the residual stack needs kernel_size >= 2")
        if excitation_channels and cond_channels <= 0:
            raise ValueError("a per-layer excitation needs a conditioned stack (cond_channels > 0)")
        self.residual_channels = residual_channels
        self.gate_channels = gate_channels
        self.skip_channels = skip_channels
        self.dilations = tuple(dilations)
        conditioned = cond_channels > 0
        self.layers = nn.ModuleList(
            ResidualLayer(residual_channels, gate_channels, skip_channels, kernel_size, d, conditioned)
            for d in self.dilations
        )
        n_cond = 2 * gate_channels * len(self.dilations)
        self.cond_proj = nn.Conv1d(cond_channels, n_cond, 1) if conditioned else None
        self.upsampler = FrameUpsampler(hop_length, upsample) if conditioned else None
        # sample-rate conditioning of every layer (the F0 excitation): E -> L*2G, zero-initialised
        # so that a stack gaining it computes what it did without; kept out of weight norm (0/0)
        self.excitation_proj = None
        if excitation_channels:
            self.excitation_proj = nn.Conv1d(excitation_channels, n_cond, 1)
            nn.init.zeros_(self.excitation_proj.weight)
            nn.init.zeros_(self.excitation_proj.bias)
            self.excitation_proj.no_weight_norm = True
        self._skip_scale = math.sqrt(1.0 / len(self.dilations))

    @property
    def cond_size(self) -> int:
        """Channels of the per-layer conditioning, all layers concatenated: L * 2G."""
        return 2 * self.gate_channels * len(self.layers)

    @property
    def receptive_field(self) -> int:
        """Samples an output depends on (including the current input)."""
        return 1 + sum(layer.conv.context for layer in self.layers)

    def frame_conditioning(self, h: Tensor) -> Tensor:
        """Conditioning features (B, C_cond, F) -> every layer's gate conditioning at frame rate (B, L*2G, F)."""
        if self.cond_proj is None:
            raise RuntimeError("this stack is unconditioned")
        if not _channels_last():  # the module call, not frame_projection's F.conv1d: the exported
            return self.cond_proj(h)  # graphs keep their initializer names, byte for byte (B, L*2G, F)
        return frame_projection(h, self.cond_proj.weight, self.cond_proj.bias)  # (B, L*2G, F) view

    def _excitation_slices(self, excitation: Tensor | None, T: int):
        """Check the per-layer excitation (B, E, T) and return each layer's (weight (2G, E), bias (2G,))
        of the projection, or None when the stack has none (an excitation given to it is an error)."""
        if self.excitation_proj is None:
            if excitation is not None:
                raise ValueError("this stack has no per-layer excitation")
            return None
        if excitation is None or excitation.shape[1:] != (self.excitation_proj.in_channels, T):
            got = None if excitation is None else tuple(excitation.shape)
            raise ValueError(
                f"excitation must have shape (B, {self.excitation_proj.in_channels}, {T}), got {got}"
            )
        size = 2 * self.gate_channels
        w = self.excitation_proj.weight[:, :, 0]  # (L*2G, E)
        b = self.excitation_proj.bias  # (L*2G,)
        return [(w[i * size : (i + 1) * size], b[i * size : (i + 1) * size]) for i in range(len(self.layers))]

    def forward(
        self,
        x: Tensor,
        cond_frames: Tensor | None = None,
        cond: Tensor | None = None,
        excitation: Tensor | None = None,
    ) -> Tensor:
        """x (B, R, T), cond_frames (B, L*2G, F) or cond (B, L*2G, T), excitation (B, E, T) exactly
        when the stack has a per-layer excitation -> (B, S | R, T)."""
        if (cond_frames is not None or cond is not None) != (self.cond_proj is not None):
            raise ValueError("conditioning must be given exactly when the stack is conditioned")
        if cond_frames is not None:
            hop = self.upsampler.hop_length
            if cond_frames.shape[-1] * hop != x.shape[-1]:
                raise ValueError(f"{cond_frames.shape[-1]} frames * hop {hop} != {x.shape[-1]} samples")
        elif cond is not None and cond.shape[-1] != x.shape[-1]:
            raise ValueError(f"conditioning has {cond.shape[-1]} samples, input {x.shape[-1]}")
        exc_w = self._excitation_slices(excitation, x.shape[-1])
        if _channels_last():
            return self._forward_tc(x, cond_frames, cond, excitation, exc_w)
        size = 2 * self.gate_channels
        skip = None
        for i, layer in enumerate(self.layers):
            c = None
            if cond_frames is not None:
                c = self.upsampler(cond_frames[:, i * size : (i + 1) * size])  # (B, 2G, T)
            elif cond is not None:
                c = cond[:, i * size : (i + 1) * size]  # (B, 2G, T)
            if exc_w is not None:
                w, b = exc_w[i]
                c = c + F.conv1d(
                    excitation.to(c.dtype), w.unsqueeze(-1).to(c.dtype), b.to(c.dtype)
                )  # (B, 2G, T)
            x, s = layer(x, c)
            if self.skip_channels:  # the sum is kept in fp32 under autocast
                skip = s.float() if skip is None else skip + s
        return x if skip is None else skip * self._skip_scale

    def _forward_tc(self, x: Tensor, cond_frames, cond, excitation, exc_w) -> Tensor:
        """``forward`` in channels-last: one transpose in, one out; (B, R, T) -> (B, S | R, T)."""
        size = 2 * self.gate_channels
        h = x.transpose(1, 2)  # (B, T, R)
        if cond_frames is not None:  # frame rate, small: contiguous in channels once for all layers
            cond_frames = cond_frames.transpose(1, 2).contiguous()  # (B, F, L*2G)
        if excitation is not None:
            excitation = excitation.transpose(1, 2)  # (B, T, E)
        zs = []  # every layer's gate output, for the skip sum
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            c = None
            if cond_frames is not None:
                c = self.upsampler.forward_tc(cond_frames[:, :, i * size : (i + 1) * size])  # (B, T, 2G)
            elif cond is not None:
                c = cond[:, i * size : (i + 1) * size].transpose(1, 2)  # (B, T, 2G)
            if exc_w is not None:
                w, b = exc_w[i]
                c = c + F.linear(excitation.to(c.dtype), w.to(c.dtype), b.to(c.dtype))  # (B, T, 2G)
            z = layer.gate_tc(h, c)  # (B, T, G)
            if self.skip_channels:
                zs.append(z)
                if i == last:  # the last residual output feeds nothing when there are skips
                    break
            h = layer.residual_tc(h, z)  # (B, T, R), fp32
        if not self.skip_channels:
            return h.transpose(1, 2)  # (B, R, T)
        # sum_l W_skip_l z_l + b_skip_l as one (L*G)-deep matmul on the concatenated gate outputs:
        # the same sum as step()'s, but no per-layer fp32 accumulation forward and no per-layer copy
        # of the skip gradient into each projection's output gradient backward (measured: the
        # teacher64 step 1.07x faster); the result is rounded once, then kept in fp32
        R = self.residual_channels
        zs = torch.cat(zs, dim=-1)  # (B, T, L*G)
        w = torch.cat([layer.out.weight[R:, :, 0] for layer in self.layers], dim=1)  # (S, L*G)
        b = torch.stack([layer.out.bias[R:] for layer in self.layers]).sum(0)  # (S,)
        y = F.linear(zs, w.to(zs.dtype))  # (B, T, S)
        if not _full_precision(y.dtype):
            y = y.float()  # the skip sum leaves the stack in fp32 under autocast, as it did
        skip = (y + b.to(y.dtype)) * self._skip_scale  # (B, T, S)
        return skip.transpose(1, 2)  # (B, S, T)

    def init_state(self, batch: int, device=None, dtype=None) -> list[Tensor]:
        """One zero queue per layer: [(B, R, context_l)]."""
        return [layer.conv.init_queue(batch, device, dtype) for layer in self.layers]

    def step(
        self, x_t: Tensor, c_t: Tensor | None, state: Sequence[Tensor], exc_t: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        # x_t (B, R); c_t (B, L*2G) or None; exc_t (B, E) exactly when the stack has a per-layer
        # excitation -> (B, S) skip sum or (B, R) last residual; new state
        if (exc_t is not None) != (self.excitation_proj is not None):
            raise ValueError("exc_t must be given exactly when the stack has a per-layer excitation")
        if exc_t is not None:
            c_t = c_t + pointwise(self.excitation_proj, exc_t.to(c_t.dtype))  # (B, L*2G)
        conds = (
            [None] * len(self.layers) if c_t is None else c_t.split(2 * self.gate_channels, dim=1)
        )  # (B, 2G) each
        skip = None
        new_state = []
        for i, layer in enumerate(self.layers):
            x_t, s, q = layer.step(x_t, conds[i], state[i])
            new_state.append(q)
            if self.skip_channels:
                skip = s if skip is None else skip + s
        return (x_t if skip is None else skip * self._skip_scale), new_state


def _weight_convs(module: nn.Module):
    """Every Conv1d/Linear except the zero-initialised ones marked ``no_weight_norm`` (0/0)."""
    return [
        m
        for m in module.modules()
        if isinstance(m, nn.Conv1d | nn.Linear) and not getattr(m, "no_weight_norm", False)
    ]


def apply_weight_norm(module: nn.Module) -> nn.Module:
    """Weight normalisation on every Conv1d/Linear weight (torch parametrizations)."""
    from torch.nn.utils.parametrizations import weight_norm

    for m in _weight_convs(module):
        weight_norm(m)
    return module


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Fold weight normalisation back into plain weights (before generation or export). In place."""
    from torch.nn.utils import parametrize

    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module
