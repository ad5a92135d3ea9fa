"""The residual stack: causal convs, frame-rate conditioning + upsampling, one code path for the
parallel forward and the incremental step."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from model import channels_last
from model.upsampling import FrameUpsampler, interpolation_kernel
from model.wavenet import (
    CausalConv1d,
    ConditioningNetwork,
    Layout,
    WaveNetStack,
    apply_weight_norm,
    dilation_cycle,
    frame_projection,
    remove_weight_norm,
)


def _run_steps(conv: CausalConv1d, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
    queue = conv.init_queue(x.shape[0])
    out = []
    for t in range(x.shape[-1]):
        y, queue = conv.step(x[:, :, t], queue, None if add is None else add[:, :, t])
        out.append(y)
    return torch.stack(out, dim=-1)


@pytest.mark.parametrize(
    ("kernel", "dilation", "bias"), [(1, 1, True), (2, 1, True), (2, 4, False), (3, 2, True)]
)
def test_causal_conv_step_equals_forward(kernel, dilation, bias):
    torch.manual_seed(0)
    conv = CausalConv1d(3, 5, kernel, dilation, bias=bias)
    x = torch.randn(2, 3, 23)
    add = torch.randn(2, 5, 23)
    with torch.no_grad():
        torch.testing.assert_close(_run_steps(conv, x), conv(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(_run_steps(conv, x, add), conv(x) + add, rtol=1e-5, atol=1e-6)
    assert conv.context == (kernel - 1) * dilation


def test_causal_conv_is_causal():
    torch.manual_seed(0)
    conv = CausalConv1d(2, 2, 3, dilation=3)
    x = torch.randn(1, 2, 30)
    x2 = x.clone()
    x2[:, :, 20] += 1.0
    with torch.no_grad():
        y, y2 = conv(x), conv(x2)
    assert torch.equal(y[:, :, :20], y2[:, :, :20])
    assert not torch.equal(y[:, :, 20], y2[:, :, 20])


def test_dilation_cycle():
    assert dilation_cycle(6, 2) == (1, 2, 4, 1, 2, 4)
    assert dilation_cycle(3, 1) == (1, 2, 4)
    with pytest.raises(ValueError):
        dilation_cycle(5, 2)


def test_linear_upsampling_matches_interpolate_and_nearest_matches_repeat():
    torch.manual_seed(0)
    c = torch.randn(2, 6, 7)  # (B, C, F)
    for hop in (4, 5, 200):
        linear = FrameUpsampler(hop, "linear")(c)
        expected = F.interpolate(c, scale_factor=hop, mode="linear", align_corners=False)
        torch.testing.assert_close(linear, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(FrameUpsampler(hop, "nearest")(c), c.repeat_interleave(hop, dim=-1))
        kernel = interpolation_kernel(hop, "linear")
        torch.testing.assert_close(kernel.sum(0), torch.ones(hop))
    with pytest.raises(ValueError):
        interpolation_kernel(4, "cubic")


def test_frame_rate_projection_commutes_with_upsampling():
    # the design claim: projecting at frame rate then upsampling == upsampling then projecting
    torch.manual_seed(0)
    h = torch.randn(2, 8, 9)  # (B, C, F)
    proj = torch.nn.Conv1d(8, 12, 1)
    for mode in ("nearest", "linear", "learned"):
        up = FrameUpsampler(16, mode)
        with torch.no_grad():
            torch.testing.assert_close(up(proj(h)), proj(up(h)), rtol=1e-5, atol=1e-5)


def test_upsampler_frame_matches_forward_and_learned_kernel_trains():
    torch.manual_seed(0)
    up = FrameUpsampler(10, "learned")
    c = torch.randn(1, 3, 5, requires_grad=True)
    full = up(c)  # (1, 3, 50)
    nb = up.neighbours(c)  # (1, 3, 5, 3)
    for f in range(5):
        torch.testing.assert_close(up.frame(nb[:, :, f]).permute(1, 2, 0), full[:, :, f * 10 : (f + 1) * 10])
    full.square().sum().backward()
    assert up.kernel.grad is not None and up.kernel.grad.abs().sum() > 0


def _stack_incremental(stack: WaveNetStack, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    state = stack.init_state(x.shape[0])
    out = []
    for t in range(x.shape[-1]):
        y, state = stack.step(x[:, :, t], None if cond is None else cond[:, :, t], state)
        out.append(y)
    return torch.stack(out, dim=-1)


@pytest.mark.parametrize("layout", list(Layout), ids=lambda layout: layout.value)
@pytest.mark.parametrize(
    ("kernel", "skip", "conditioned", "length"),
    [(2, 6, True, 40), (3, 6, True, 96), (3, 0, True, 40), (2, 6, False, 96), (3, 0, False, 40)],
)
def test_stack_incremental_equals_parallel(kernel, skip, conditioned, length, layout):
    # step() against the full-sequence forward in either layout: the reference one that export
    # traces and the channels-last one that trains
    torch.manual_seed(1)
    hop = 8
    stack = WaveNetStack(
        4, 5, skip, kernel, dilation_cycle(6, 2), cond_channels=3 if conditioned else 0, hop_length=hop
    )
    x = torch.randn(2, 4, length)
    with torch.no_grad():
        if conditioned:
            c_frames = stack.frame_conditioning(torch.randn(2, 3, length // hop), layout)  # (B, L*2G, F)
            parallel = stack(x, cond_frames=c_frames, layout=layout)
            cond = stack.upsampler(c_frames)  # (B, L*2G, T)
            torch.testing.assert_close(stack(x, cond=cond, layout=layout), parallel)
        else:
            cond = None
            parallel = stack(x, layout=layout)
        incremental = _stack_incremental(stack, x, cond)
    assert parallel.shape == (2, skip or 4, length)
    torch.testing.assert_close(incremental, parallel, rtol=1e-5, atol=1e-5)


def test_stack_receptive_field_is_exact():
    torch.manual_seed(0)
    stack = WaveNetStack(3, 3, 3, 3, dilation_cycle(4, 2))
    rf = stack.receptive_field
    assert rf == 1 + 2 * (1 + 2) * 2
    x = torch.randn(1, 3, 40)
    t = 39
    with torch.no_grad():
        base = stack(x)[:, :, t]
        inside, outside = x.clone(), x.clone()
        inside[:, :, t - rf + 1] += 1.0
        outside[:, :, t - rf] += 1.0
        assert not torch.allclose(stack(inside)[:, :, t], base)
        assert torch.equal(stack(outside)[:, :, t], base)


def test_stack_rejects_bad_conditioning():
    stack = WaveNetStack(2, 2, 2, 2, (1, 2), cond_channels=3, hop_length=4)
    x = torch.randn(1, 2, 16)
    with pytest.raises(ValueError):
        stack(x)  # conditioned stack without conditioning
    with pytest.raises(ValueError):
        stack(x, cond_frames=torch.randn(1, stack.cond_size, 3))  # 3 frames * 4 != 16 samples


def test_conditioning_network_speaker_dependence():
    torch.manual_seed(0)
    net = ConditioningNetwork(n_mels=5, channels=7, layers=2, n_speakers=3, speaker_dim=4)
    mel = torch.randn(2, 5, 6)
    with torch.no_grad():
        a = net(mel, torch.tensor([0, 0]))
        b = net(mel, torch.tensor([0, 2]))
    assert a.shape == (2, 7, 6)
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    with pytest.raises(ValueError):
        net(mel)  # multi-speaker needs ids
    with pytest.raises(ValueError):
        net(torch.randn(2, 4, 6), torch.tensor([0, 0]))  # wrong mel bins


def test_weight_norm_keeps_function_and_folds_away():
    torch.manual_seed(0)
    stack = WaveNetStack(3, 3, 3, 2, (1, 2), cond_channels=2, hop_length=4)
    x, h = torch.randn(1, 3, 16), torch.randn(1, 2, 4)
    with torch.no_grad():
        before = stack(x, cond_frames=stack.frame_conditioning(h))
        apply_weight_norm(stack)
        assert any("parametrizations" in k for k in stack.state_dict())
        normed = stack(x, cond_frames=stack.frame_conditioning(h))
        remove_weight_norm(stack)
        assert not any("parametrizations" in k for k in stack.state_dict())
        after = stack(x, cond_frames=stack.frame_conditioning(h))
    torch.testing.assert_close(normed, before, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("skip", [6, 0])
def test_channels_last_path_matches_conv1d_path_in_fp32(skip):
    # the fast (B, T, C) per-tap matmul path and the (B, C, T) Conv1d path: same function, same gradients
    torch.manual_seed(2)
    hop = 8
    stack = WaveNetStack(
        4, 5, skip, 3, dilation_cycle(6, 2), cond_channels=3, hop_length=hop, upsample="learned"
    )
    x = torch.randn(2, 4, 48, requires_grad=True)
    h = torch.randn(2, 3, 48 // hop)
    outs, grads = [], []
    for layout in (Layout.REFERENCE, Layout.CHANNELS_LAST):
        stack.zero_grad()
        x.grad = None
        y = stack(x, cond_frames=stack.frame_conditioning(h, layout), layout=layout)
        (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
        outs.append(y.detach())
        grads.append([x.grad.clone()] + [p.grad.clone() for p in stack.parameters()])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    for new, old in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(new, old, rtol=1e-4, atol=1e-5)


def test_frame_conditioning_is_channels_last_in_memory_in_the_channels_last_layout():
    # the upsampler's compiled kernels read each layer's slice of it along channels: a (B, C, F)-
    # contiguous tensor there is a stride-F gather per element (measured 1.10x on the teacher64 step)
    torch.manual_seed(3)
    stack = WaveNetStack(4, 5, 6, 3, dilation_cycle(4, 2), cond_channels=3, hop_length=8)
    h = torch.randn(2, 3, 7)
    old = stack.frame_conditioning(h, Layout.REFERENCE)  # (B, L*2G, F)
    new = stack.frame_conditioning(h, Layout.CHANNELS_LAST)
    assert new.shape == old.shape == (2, stack.cond_size, 7)
    assert old.is_contiguous() and not new.is_contiguous()
    assert new.transpose(1, 2).is_contiguous()  # (B, F, L*2G) in memory
    torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-6)
    w = stack.cond_proj.weight
    for layout in Layout:
        got = frame_projection(h, w, None, layout)
        torch.testing.assert_close(got, F.conv1d(h, w), rtol=1e-5, atol=1e-6)


def test_skip_sum_under_bf16_autocast_is_fp32_and_close_to_the_fp32_stack():
    # the channels-last skip sum is one bf16 matmul over all layers' gate outputs, rounded once:
    # it must leave the stack in fp32 and stay within bf16 rounding of the fp32 result
    torch.manual_seed(4)
    stack = WaveNetStack(8, 8, 8, 3, dilation_cycle(6, 2), cond_channels=4, hop_length=8)
    x = torch.randn(2, 8, 64)
    h = torch.randn(2, 4, 8)
    with torch.no_grad():
        ref = stack(x, cond_frames=stack.frame_conditioning(h))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = stack(x, cond_frames=stack.frame_conditioning(h))
    assert low.dtype == torch.float32
    assert (low - ref).abs().max() <= 0.05 * ref.abs().max()
    assert (low - ref).abs().max() > 0  # it did run in bf16


class _OpLog(TorchDispatchMode):
    """Records the aten ops a block of code runs."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dilation", [1, 4])
def test_dilated_conv_under_bf16_autocast_is_the_backend_convolution_and_close_to_fp32(dilation):
    # 16 bits: the backend's dilated convolution on the channels-last padded input (no im2col copy,
    # no shifted-slice sums backward); fp32 keeps the im2col matmul that is exact to step()
    torch.manual_seed(5)
    conv = CausalConv1d(6, 10, 3, dilation)
    x = torch.randn(2, 40, 6, requires_grad=True)  # (B, T, C_in)
    grad_out = torch.randn(2, 40, 10)
    ref = conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T, C_out): the Conv1d path, fp32
    ref_grads = torch.autograd.grad((ref * grad_out).sum(), [x, conv.weight])
    with torch.no_grad(), _OpLog() as log32:
        fp32 = channels_last.causal_conv(conv, x)
    assert "cat" in log32.ops and "convolution" not in log32.ops
    torch.testing.assert_close(fp32, ref.detach(), rtol=1e-5, atol=1e-6)
    with _OpLog() as log16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = channels_last.causal_conv(conv, x)
        grads = torch.autograd.grad((low.float() * grad_out).sum(), [x, conv.weight])
    assert "convolution" in log16.ops and "cat" not in log16.ops
    assert low.dtype == torch.bfloat16 and low.shape == (2, 40, 10)
    err = (low.float() - ref).abs().max()
    assert 0 < err <= 0.03 * ref.abs().max()  # bf16 rounding of the same function
    for g, r in zip(grads, ref_grads, strict=True):
        assert (g.float() - r).abs().max() <= 0.03 * r.abs().max()
