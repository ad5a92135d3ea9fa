"""The fast training kernels of the WaveNet stack: :class:`~model.wavenet.WaveNetStack` computed
time-major, (B, T, C), on the very parameters of its ``Conv1d`` modules.

:mod:`model.wavenet` is the reference: (B, C, T) ``Conv1d`` modules, what ONNX export traces (Conv
nodes, which ONNX Runtime runs fast), and ``step()`` for incremental generation. The functions here
compute the same function for training; the caller picks them with
``layout=Layout.CHANNELS_LAST`` (the models' default; export passes ``Layout.REFERENCE``). They hold
no state and own no weights: every function takes the reference module whose parameters it reads
(same names, same state_dict), so incremental == parallel still holds in fp32 and checkpoints do
not know which layout trained them. ``tests/model/test_wavenet.py`` keeps the two layouts equal.

Why time-major. Today's CPU kernels for a *dilated* ``Conv1d`` in (B, C, T) layout fall into
``aten::_slow_conv2d`` (im2col + small GEMMs, fp32 only): measured ~60 % of a teacher training step.
:func:`stack_forward` therefore transposes once to channels-last (B, T, C) and computes each
layer's dilated conv as one matmul over the taps on shifted *views* of the left-padded input
(``y = sum_j x[t - (k-1-j)*d] @ W_j``, :func:`causal_conv`), the conditioning added in, the gate and
the 1x1 projection on the same (B, T, C) tensors. Those matmuls are what ``torch.compile`` is fast
at. Under 16-bit autocast the dilated conv is instead the backend's own convolution (oneDNN's bf16
kernels on CPU) on the same channels-last padded input: no im2col copy forward, no shifted-slice sums
backward (teacher64 step 1.18-1.19x in an in-process A/B, 1.07x between two benchmark runs; the
distillation step, whose frozen teacher needs no weight gradients, unchanged).

Two more layout choices, each measured on the teacher64 training step: the frame-rate conditioning
is computed as a (B, F, C) matmul (:func:`frame_projection`), so the compiled upsampling reads each
layer's slice along channels (1.10x); and the skip sum ``sum_l W_skip_l z_l`` is one matmul over the
concatenated gate outputs after the last layer instead of 20 skip projections accumulated in fp32
(1.07x; the last layer's residual projection, which feeds nothing, is skipped too).

In fp32/fp64 every function computes the products ``step()`` computes (the parity tests hold to
rounding); under 16-bit autocast they take the faster forms noted on each.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["causal_conv", "frame_projection", "gate", "stack_forward", "upsample"]

_SQRT_HALF = math.sqrt(0.5)  # the residual scaling of model.wavenet.ResidualLayer


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype matmuls on ``x`` run in: autocast's when it is on for x's device, else x's."""
    if x.is_floating_point() and torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _full_precision(dtype: torch.dtype) -> bool:
    """fp32/fp64: compute what ``step()`` computes, the same products (the parity tests hold
    exactly); 16 bits (autocast) take the faster forms instead."""
    return dtype == torch.float32 or dtype == torch.float64


def frame_projection(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """A 1x1 conv over frames, h (B, C_in, F) -> (B, C_out, F), weight (C_out, C_in, 1), computed as
    a matmul on (B, F, C_in) and returned as a (B, C_out, F) *view* of a (B, F, C_out) tensor.

    The per-layer conditioning the stack slices out of it is then contiguous in channels. A
    (B, C_out, F)-contiguous one is a gather (stride F) in every compiled kernel that upsamples it,
    forward and backward (measured: the whole teacher64 step 1.10x faster this way). Same values as
    the reference ``F.conv1d``; only the memory layout differs."""
    w = weight[:, :, 0].to(h.dtype)  # (C_out, C_in)
    y = F.linear(h.transpose(1, 2), w, None if bias is None else bias.to(h.dtype))  # (B, F, C_out)
    return y.transpose(1, 2)  # (B, C_out, F) view


def causal_conv(conv: nn.Conv1d, x: Tensor, add: Tensor | None = None) -> Tensor:
    """A :class:`~model.wavenet.CausalConv1d` on x (B, T, C_in) -> (B, T, C_out) [+ add (B, T, C_out)].

    In fp32/fp64 one matmul over the taps of ``step`` (shifted views of the left-padded input, all
    samples at once); in 16 bits (autocast) the backend's dilated convolution on the same padded
    input."""
    dtype = _compute_dtype(x)
    T = x.shape[1]
    d = conv.dilation[0]
    xp = F.pad(x.to(dtype), (0, 0, conv.context, 0))  # (B, context + T, C_in)
    if _full_precision(dtype):
        # im2col on views: tap j of output t reads x[t - context + j*d]; one (k*C_in)-deep
        # matmul, the same products as step()'s (the fp32 parity tests hold exactly)
        k = conv.kernel_size[0]
        u = torch.cat([xp.narrow(1, j * d, T) for j in range(k)], dim=-1)  # (B, T, k*C_in), tap-major
        w = conv.weight.to(dtype).permute(0, 2, 1).reshape(conv.out_channels, k * conv.in_channels)
        y = F.linear(u, w)  # (B, T, C_out)
    else:
        # 16 bits: the backend's own dilated convolution (oneDNN on CPU) on a channels-last view
        # of the padded input, no im2col copy forward and no shifted-slice sums backward
        # (measured on the teacher64 step: 1.07-1.19x faster than the im2col matmul under bf16)
        xc = xp.transpose(1, 2).unsqueeze(2)  # (B, C_in, 1, context + T), channels-last strides
        y = F.conv2d(xc, conv.weight.to(dtype).unsqueeze(2), None, dilation=(1, d))  # (B, C_out, 1, T)
        y = y.squeeze(2).transpose(1, 2)  # (B, T, C_out)
    if add is not None:
        y = y + add.to(dtype)
    if conv.bias is not None:
        y = y + conv.bias.to(dtype)
    return y


def upsample(upsampler: nn.Module, c: Tensor) -> Tensor:
    """A :class:`~model.upsampling.FrameUpsampler` on c (B, F, C) frames (contiguous in C) -> (B, F*hop, C)."""
    B, n_frames, C = c.shape
    prev = torch.cat([c[:, :1], c[:, :-1]], dim=1)  # (B, F, C): c[f - 1], edge replicated
    nxt = torch.cat([c[:, 1:], c[:, -1:]], dim=1)  # (B, F, C): c[f + 1]
    k = upsampler.kernel.to(c.dtype)  # (3, hop)
    # 3 multiply-adds per output, written elementwise so torch.compile fuses it into the gate
    up = (
        prev[:, :, None] * k[0, :, None] + c[:, :, None] * k[1, :, None] + nxt[:, :, None] * k[2, :, None]
    )  # (B, F, hop, C)
    return up.reshape(B, n_frames * upsampler.hop_length, C)


def gate(a: Tensor) -> Tensor:
    """``tanh(a_tanh) * sigmoid(a_sigmoid)`` of the two halves of a (B, T, 2G) -> (B, T, G).

    In fp32 exactly that (equal to ``step``). In 16 bits it is computed in fp32 (rounded once, at the
    end) with ``tanh(u) = 2 sigmoid(2u) - 1``: the same function to fp32 rounding (absolute error
    ~1e-7, far below bf16's 2^-9), and cheaper where the vectorised ``tanh`` is slow: on the 2-core
    AMD EPYC host ``torch.tanh`` costs ~10x ``torch.sigmoid`` per element (2.2 vs 0.23 ns), and the
    compiled teacher64 step got 1.16x faster with this form."""
    a_tanh, a_sigmoid = a.chunk(2, dim=-1)  # (B, T, G) each
    if _full_precision(a.dtype):
        return torch.tanh(a_tanh) * torch.sigmoid(a_sigmoid)
    t = 2.0 * torch.sigmoid(2.0 * a_tanh.float()) - 1.0  # (B, T, G) fp32: tanh(a_tanh)
    return (t * torch.sigmoid(a_sigmoid.float())).to(a.dtype)


def _linear(z: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """(B, T, G) @ weight (N, G).T + bias in z's dtype: as ``step()`` computes it in fp32/fp64; in 16 bits
    the bias is added after the matmul, not by it: addmm first broadcast-copies the bias into its
    (B*T, N) output (measured: the whole teacher64 step 1.17x faster without), while a separate add
    is fused by torch.compile into the consumers."""
    w = weight.to(z.dtype)
    if _full_precision(z.dtype):
        return F.linear(z, w, bias)
    y = F.linear(z, w)
    return y if bias is None else y + bias.to(z.dtype)


def _residual(layer: nn.Module, x: Tensor, z: Tensor) -> Tensor:
    """The residual half of a :class:`~model.wavenet.ResidualLayer`'s 1x1 projection only:
    x (B, T, R) + z (B, T, G) -> the next layer's input (B, T, R), in x's dtype (the fp32 stream);
    the skip half is left to :func:`stack_forward` (one matmul for all layers)."""
    R = layer.residual_channels
    res = _linear(z, layer.out.weight[:R, :, 0], layer.out.bias[:R])  # (B, T, R)
    return (x + res) * _SQRT_HALF


def stack_forward(
    stack: nn.Module,
    x: Tensor,
    cond_frames: Tensor | None,
    cond: Tensor | None,
    excitation: Tensor | None,
    exc_w: list[tuple[Tensor, Tensor]] | None,
) -> Tensor:
    """:meth:`WaveNetStack.forward <model.wavenet.WaveNetStack.forward>` (arguments already checked
    there; ``exc_w``: each layer's slice of the excitation projection) in channels-last: one
    transpose in, one out; x (B, R, T) -> (B, S | R, T)."""
    size = 2 * stack.gate_channels
    h = x.transpose(1, 2)  # (B, T, R)
    if cond_frames is not None:  # frame rate, small: contiguous in channels once for all layers
        cond_frames = cond_frames.transpose(1, 2).contiguous()  # (B, F, L*2G)
    if excitation is not None:
        excitation = excitation.transpose(1, 2)  # (B, T, E)
    zs = []  # every layer's gate output, for the skip sum
    last = len(stack.layers) - 1
    for i, layer in enumerate(stack.layers):
        c = None
        if cond_frames is not None:
            c = upsample(stack.upsampler, cond_frames[:, :, i * size : (i + 1) * size])  # (B, T, 2G)
        elif cond is not None:
            c = cond[:, i * size : (i + 1) * size].transpose(1, 2)  # (B, T, 2G)
        if exc_w is not None:
            w, b = exc_w[i]
            c = c + F.linear(excitation.to(c.dtype), w.to(c.dtype), b.to(c.dtype))  # (B, T, 2G)
        z = gate(causal_conv(layer.conv, h, c))  # (B, T, 2G) -> (B, T, G), compute dtype
        if stack.skip_channels:
            zs.append(z)
            if i == last:  # the last residual output feeds nothing when there are skips
                break
        h = _residual(layer, h, z)  # (B, T, R), fp32
    if not stack.skip_channels:
        return h.transpose(1, 2)  # (B, R, T)
    # sum_l W_skip_l z_l + b_skip_l as one (L*G)-deep matmul on the concatenated gate outputs:
    # the same sum as step()'s, but no per-layer fp32 accumulation forward and no per-layer copy
    # of the skip gradient into each projection's output gradient backward (measured: the
    # teacher64 step 1.07x faster); the result is rounded once, then kept in fp32
    R = stack.residual_channels
    zs = torch.cat(zs, dim=-1)  # (B, T, L*G)
    w = torch.cat([layer.out.weight[R:, :, 0] for layer in stack.layers], dim=1)  # (S, L*G)
    b = torch.stack([layer.out.bias[R:] for layer in stack.layers]).sum(0)  # (S,)
    y = F.linear(zs, w.to(zs.dtype))  # (B, T, S)
    if not _full_precision(y.dtype):
        y = y.float()  # the skip sum leaves the stack in fp32 under autocast, as it did
    skip = (y + b.to(y.dtype)) * stack.skip_scale  # (B, T, S)
    return skip.transpose(1, 2)  # (B, S, T)
