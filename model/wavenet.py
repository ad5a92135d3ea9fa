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
- :class:`~model.upsampling.FrameUpsampler` (:mod:`model.upsampling`) -- frame rate -> sample rate.

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
for ``nearest``) instead of C; the upsampling modes are told in :mod:`model.upsampling`.

Layouts (the caller chooses, :class:`Layout`). This module is the reference: (B, C, T) ``Conv1d``
modules, readable on their own, and what ONNX export traces (``layout=Layout.REFERENCE``: Conv
nodes, which ONNX Runtime runs fast, and graphs that stay as they were). Training runs the same
function time-major on the same parameters, ``layout=Layout.CHANNELS_LAST`` (the models' default),
through the kernels of :mod:`model.channels_last` (why they are faster is told there). ``step()``
has one form, used by generation and by the exported step graph.

The ConditioningNetwork is non-causal over frames (kernel ``k``: ``(k // 2) * layers`` frames of
look-ahead), which is free for copy-synthesis and for the acoustic model's output.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model import channels_last
from model.upsampling import FrameUpsampler

__all__ = [
    "CausalConv1d",
    "ConditioningNetwork",
    "Layout",
    "ResidualLayer",
    "WaveNetStack",
    "apply_weight_norm",
    "dilation_cycle",
    "frame_projection",
    "pointwise",
    "remove_weight_norm",
]

SQRT_HALF = math.sqrt(0.5)


class Layout(enum.Enum):
    """How :class:`WaveNetStack` (and the student's fused conditioning projection) compute their
    full-sequence forward; the weights, the values and ``step()`` are the same either way.

    - ``REFERENCE``: the (B, C, T) ``Conv1d`` modules of this file; what ONNX export traces.
    - ``CHANNELS_LAST``: :mod:`model.channels_last`, time-major, for training (faster there).
    """

    REFERENCE = "reference"
    CHANNELS_LAST = "channels_last"


def _check_traceable(layout: Layout) -> None:
    """Export traces the reference layout: its graphs have Conv nodes (and stay byte-identical)."""
    if layout is not Layout.REFERENCE and torch.onnx.is_in_onnx_export():
        raise RuntimeError(f"ONNX export traces Layout.REFERENCE, not {layout}: pass layout=Layout.REFERENCE")


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


def frame_projection(
    h: Tensor, weight: Tensor, bias: Tensor | None, layout: Layout = Layout.CHANNELS_LAST
) -> Tensor:
    """A 1x1 conv over frames, h (B, C_in, F) -> (B, C_out, F), weight (C_out, C_in, 1). Channels-last:
    the same values as a (B, C_out, F) view of a (B, F, C_out) tensor
    (:func:`model.channels_last.frame_projection`)."""
    _check_traceable(layout)
    if layout is Layout.CHANNELS_LAST:
        return channels_last.frame_projection(h, weight, bias)  # (B, C_out, F) view
    return F.conv1d(h, weight.to(h.dtype), None if bias is None else bias.to(h.dtype))  # (B, C_out, F)


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


class ConditioningNetwork(nn.Module):
    """log-mel (B, n_mels, F) [+ speaker id (B,)] -> conditioning features (B, channels, F), frame rate.

    The mel is normalised with fixed constants ``(mel - mel_mean) / mel_std``; a global speaker
    embedding (multi-speaker corpora) is broadcast over frames and concatenated to the input, so
    every layer's conditioning is speaker dependent (WaveNet's global conditioning). Then a conv
    and ``layers - 1`` pre-activation residual convs (LeakyReLU), non-causal, replicate padding.
    """

    @classmethod
    def from_config(cls, cfg) -> ConditioningNetwork:
        """From a vocoder config (teacher or student: the same ``n_mels``, ``cond_*``, speaker and mel
        normalisation fields)."""
        return cls(
            cfg.n_mels,
            cfg.cond_channels,
            cfg.cond_layers,
            cfg.cond_kernel,
            cfg.n_speakers,
            cfg.speaker_dim,
            cfg.mel_mean,
            cfg.mel_std,
        )

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
        a = self.conv(x)  # (B, 2G, T)
        if c is not None:
            a = a + c
        a_tanh, a_sigmoid = a.chunk(2, dim=1)  # (B, G, T) each
        z = torch.tanh(a_tanh) * torch.sigmoid(a_sigmoid)  # (B, G, T)
        res, skip = self.out(z).split(
            (self.residual_channels, self.skip_channels), dim=1
        )  # (B, R, T), (B, S, T)
        return (x + res) * SQRT_HALF, skip

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
        self.skip_scale = math.sqrt(1.0 / len(self.dilations))

    @property
    def cond_size(self) -> int:
        """Channels of the per-layer conditioning, all layers concatenated: L * 2G."""
        return 2 * self.gate_channels * len(self.layers)

    @property
    def receptive_field(self) -> int:
        """Samples an output depends on (including the current input)."""
        return 1 + sum(layer.conv.context for layer in self.layers)

    def frame_conditioning(self, h: Tensor, layout: Layout = Layout.CHANNELS_LAST) -> Tensor:
        """Conditioning features (B, C_cond, F) -> every layer's gate conditioning at frame rate (B, L*2G, F)."""
        if self.cond_proj is None:
            raise RuntimeError("this stack is unconditioned")
        _check_traceable(layout)
        if layout is Layout.CHANNELS_LAST:  # a (B, L*2G, F) view, contiguous in channels
            return channels_last.frame_projection(h, self.cond_proj.weight, self.cond_proj.bias)
        # the module call (not frame_projection's F.conv1d): the exported graphs keep their
        # initializer names, byte for byte
        return self.cond_proj(h)  # (B, L*2G, F)

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
        layout: Layout = Layout.CHANNELS_LAST,
    ) -> Tensor:
        """x (B, R, T), cond_frames (B, L*2G, F) or cond (B, L*2G, T), excitation (B, E, T) exactly
        when the stack has a per-layer excitation -> (B, S | R, T). ``layout``: see :class:`Layout`."""
        if (cond_frames is not None or cond is not None) != (self.cond_proj is not None):
            raise ValueError("conditioning must be given exactly when the stack is conditioned")
        if cond_frames is not None:
            hop = self.upsampler.hop_length
            if cond_frames.shape[-1] * hop != x.shape[-1]:
                raise ValueError(f"{cond_frames.shape[-1]} frames * hop {hop} != {x.shape[-1]} samples")
        elif cond is not None and cond.shape[-1] != x.shape[-1]:
            raise ValueError(f"conditioning has {cond.shape[-1]} samples, input {x.shape[-1]}")
        exc_w = self._excitation_slices(excitation, x.shape[-1])
        _check_traceable(layout)
        if layout is Layout.CHANNELS_LAST:
            return channels_last.stack_forward(self, x, cond_frames, cond, excitation, exc_w)
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
        return x if skip is None else skip * self.skip_scale

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
        return (x_t if skip is None else skip * self.skip_scale), new_state


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
