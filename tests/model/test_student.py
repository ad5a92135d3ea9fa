"""The IAF student: identity start, composed Gaussian == the flows, causality, one parallel pass, KL."""

import dataclasses

import pytest
import torch
from torch import nn

from model.distributions import gaussian_log_prob
from model.losses import distillation_kl
from model.student import PRESETS, IAFFlow, StudentConfig, StudentIAF, flow_dilations, preset
from model.teacher import TeacherWaveNet
from model.teacher import preset as teacher_preset
from model.wavenet import Layout

HOP = 40  # a short hop keeps these tests small


def _student(randomize: bool = True, dtype=torch.float32, **overrides) -> StudentIAF:
    torch.manual_seed(0)
    model = StudentIAF(preset("tiny", hop_length=HOP, **overrides)).to(dtype).eval()
    if randomize:  # a trained student is no identity: give every head real weights
        with torch.no_grad():
            for flow in model.flows:
                flow.head.weight.normal_(0.0, 0.3)
                flow.head.bias.normal_(0.0, 0.1)
    return model


def _mel(batch: int, frames: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 80, frames, generator=g) * 2.0 - 5.0).to(dtype)  # (B, n_mels, F)


def _noise(batch: int, samples: int, seed: int = 1, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed)).to(dtype)


def test_untrained_flows_are_the_identity():
    model = _student(randomize=False)
    z, mel = _noise(2, 6 * HOP), _mel(2, 6)
    with torch.no_grad():
        x, mean, log_scale = model(z, mel, return_params=True)
        for flow in model.flows:  # each flow alone, on any input
            y, mu, log_s = flow(z, model.frame_conditioning(mel)[:, : flow.stack.cond_size])
            assert torch.equal(y, z) and not mu.any() and not log_s.any()
    assert torch.equal(x, z)
    assert not mean.any() and not log_scale.any()
    # weight norm keeps the zero heads exactly zero
    wn = StudentIAF(preset("tiny", hop_length=HOP, weight_norm=True)).eval()
    with torch.no_grad():
        assert torch.equal(wn(z, mel, return_params=True)[0], z)


def test_composed_gaussian_matches_the_flows():
    model = _student(dtype=torch.float64)
    z, mel = _noise(2, 5 * HOP, dtype=torch.float64), _mel(2, 5, dtype=torch.float64)
    with torch.no_grad():
        x, mean, log_scale = model(z, mel, return_params=True)
        # compose by hand, flow by flow: x_k = x_{k-1} * s_k + mu_k
        cond = model.frame_conditioning(mel)
        xk, mus, log_ss = z, [], []
        for flow, c in zip(
            model.flows, cond.split([f.stack.cond_size for f in model.flows], dim=1), strict=True
        ):
            xk, mu, log_s = flow(xk, c)
            mus.append(mu)
            log_ss.append(log_s)
    torch.testing.assert_close(x, xk, rtol=0, atol=1e-12)
    # the total scale is the product of the flows' scales, the mean accumulates through them
    torch.testing.assert_close(log_scale, sum(log_ss), rtol=0, atol=1e-12)
    expected_mean = torch.zeros_like(z)
    for mu, log_s in zip(mus, log_ss, strict=True):
        expected_mean = expected_mean * log_s.exp() + mu
    torch.testing.assert_close(mean, expected_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(x, z * log_scale.exp() + mean, rtol=0, atol=1e-12)
    assert log_scale.abs().max() > 0.05 and mean.abs().max() > 0.05  # really not the identity
    # inference output = the same sample, clamped
    torch.testing.assert_close(model(z, mel), x.clamp(-1, 1))


def test_mean_and_scale_depend_on_past_noise_only_and_rf_is_exact():
    model = _student(dtype=torch.float64)
    rf = model.receptive_field
    T = 8 * HOP
    z, mel = _noise(1, T, dtype=torch.float64), _mel(1, 8, dtype=torch.float64)
    t = T - 20
    with torch.no_grad():
        x, mean, log_scale = model(z, mel, return_params=True)
        z2 = z.clone()
        z2[:, t] += 1.0
        x2, mean2, log_scale2 = model(z2, mel, return_params=True)
        # x[<t] and the Gaussian's parameters at t do not see z[t]; x[t] does, through the scale
        assert torch.equal(x2[:, :t], x[:, :t])
        assert torch.equal(mean2[:, : t + 1], mean[:, : t + 1])
        assert torch.equal(log_scale2[:, : t + 1], log_scale[:, : t + 1])
        torch.testing.assert_close(x2[:, t] - x[:, t], log_scale[:, t].exp(), rtol=1e-9, atol=1e-12)
        assert (x2[:, t + 1 :] != x[:, t + 1 :]).any()
        # receptive field: z[t - rf + 1] reaches x[t], z[t - rf] does not
        inside, outside = z.clone(), z.clone()
        inside[:, t - rf + 1] += 1.0
        outside[:, t - rf] += 1.0
        assert model(inside, mel, return_params=True)[0][:, t] != x[:, t]
        assert model(outside, mel, return_params=True)[0][:, t] == x[:, t]


def test_chunked_synthesis_with_context_frames_is_exact():
    model = _student(n_speakers=2, cond_layers=2, kernel_size=3, flow_layers=(3, 3), dilation_cycle=3)
    left, right = model.cfg.context_frames
    assert left >= 1 + (model.receptive_field - 1) // HOP and right >= 1
    n = 24
    z, mel, spk = _noise(1, n * HOP), _mel(1, n), torch.tensor([1])
    with torch.no_grad():
        full = model(z, mel, spk)
        for a, b in ((0, 5), (9, 14), (20, 24)):
            lo, hi = max(0, a - left), min(n, b + right)
            chunk = model(z[:, lo * HOP : hi * HOP], mel[:, :, lo:hi], spk)
            torch.testing.assert_close(chunk[:, (a - lo) * HOP : (b - lo) * HOP], full[:, a * HOP : b * HOP])
        # the margin is not padding: with two frames less of left context the samples change
        a, b, lo = 9, 14, 9 - left + 2
        short = model(z[:, lo * HOP : (b + right) * HOP], mel[:, :, lo : b + right], spk)
        assert not torch.allclose(short[:, (a - lo) * HOP : (b - lo) * HOP], full[:, a * HOP : b * HOP])


class _CallCounter(torch.overrides.TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def _count(model: StudentIAF, frames: int, layout: Layout) -> tuple[int, int]:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    conv_calls = [0]
    hooks = [m.register_forward_hook(lambda *_: conv_calls.__setitem__(0, conv_calls[0] + 1)) for m in convs]
    counter = _CallCounter()
    try:
        with torch.no_grad(), counter:
            model(_noise(1, frames * HOP), _mel(1, frames), return_params=True, layout=layout)
    finally:
        for h in hooks:
            h.remove()
    return conv_calls[0], counter.calls


def test_one_parallel_pass_whose_work_does_not_loop_over_time():
    model = _student()
    n_convs = sum(isinstance(m, nn.Conv1d) for m in model.modules())
    # the reference (B, C, T) layout calls every conv module
    short, long = (
        _count(model, 2, Layout.REFERENCE),
        _count(model, 40, Layout.REFERENCE),
    )  # 80 vs 1600 samples
    # every conv module runs exactly once, and the number of torch calls is independent of T: no
    # Python loop over samples or frames (it would multiply both counts by the length)
    assert short[0] == long[0] == n_convs - model.cfg.n_flows  # the cond projections run fused, once
    assert short[1] == long[1]
    # channels-last: the stacks use the weights
    short, long = _count(model, 2, Layout.CHANNELS_LAST), _count(model, 40, Layout.CHANNELS_LAST)
    assert short[1] == long[1]


def test_both_layouts_compute_the_same_student_and_gradients():
    """The channels-last layout that trains and the reference one that export traces: the same sample,
    Gaussian and gradients (speakers and excitation included), on the same weights."""
    model = _student(n_speakers=2).train()
    z, mel, exc = _noise(2, 4 * HOP), _mel(2, 4), torch.randn(2, 3, 4 * HOP)
    outs, grads = [], []
    for layout in (Layout.REFERENCE, Layout.CHANNELS_LAST):
        model.zero_grad()
        out = model(z, mel, torch.tensor([0, 1]), return_params=True, excitation=exc, layout=layout)
        sum(o.sum() * w for o, w in zip(out, (1.0, -0.5, 0.25), strict=True)).backward()
        outs.append([o.detach() for o in out])
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for new, old in zip(outs[1], outs[0], strict=True):
        torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-6)
    assert len(grads[1]) == len(grads[0]) == sum(1 for _ in model.parameters())
    for new, old in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(new, old, rtol=1e-4, atol=1e-5)


def test_speaker_conditioning_and_generate():
    model = _student(n_speakers=3)
    mel = _mel(1, 4).expand(2, -1, -1)
    z = _noise(1, 4 * HOP).expand(2, -1)
    with torch.no_grad():
        a = model(z, mel, torch.tensor([0, 2]))
        with pytest.raises(ValueError, match="speaker"):
            model(z, mel)
    assert not torch.allclose(a[0], a[1])
    # generate: seeded, reproducible, temperature 0 = the flows' path from zero noise
    g1 = model.generate(mel, torch.tensor([0, 1]), seed=3)
    g2 = model.generate(mel, torch.tensor([0, 1]), seed=3)
    assert g1.shape == (2, 4 * HOP) and torch.equal(g1, g2)
    assert g1.abs().max() <= 1.0
    zero = model.generate(mel, torch.tensor([0, 1]), temperature=0.0, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(zero, model(torch.zeros(2, 4 * HOP), mel, torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="frames"):
        model(_noise(1, 4 * HOP + 1), _mel(1, 4), torch.tensor([0]))


def test_kl_over_a_student_sample_matches_monte_carlo():
    """The distillation KL per step, computed from the student's reported Gaussian and the teacher's
    prediction on the student's own sample, equals E_q[log q(x_t) - log p(x_t)] estimated by
    re-running the student with only z[t] redrawn (x[<t], hence both Gaussians at t, stay fixed)."""
    torch.manual_seed(0)
    student = _student()
    teacher = TeacherWaveNet(teacher_preset("tiny", hop_length=HOP)).eval()
    with torch.no_grad():  # a teacher that is not trivially wide: shift its log-scales down
        teacher.head2.bias.copy_(torch.tensor([0.0, -2.0]))
    frames, n = 3, 4000
    z, mel = _noise(1, frames * HOP), _mel(1, frames)
    with torch.no_grad():
        x, mean_q, log_q = student(z, mel, return_params=True)
        mean_p, log_p = teacher(x, mel)
        kl, _ = distillation_kl(mean_q, log_q, mean_p, log_p)
        for t in (3, 61, frames * HOP - 5):
            zs = z.expand(n, -1).clone()
            zs[:, t] = torch.randn(n, generator=torch.Generator().manual_seed(t))
            xs, mq, lq = student(zs, mel.expand(n, -1, -1), return_params=True)
            xt = xs[:, t].double()  # samples of x[t] given z[<t]
            torch.testing.assert_close(mq[:, t], mean_q[:, t].expand(n), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(lq[:, t], log_q[:, t].expand(n), rtol=1e-5, atol=1e-6)
            m, s = float(mean_q[0, t]), float(log_q[0, t].exp())
            # the sample really has the reported Gaussian
            assert float(xt.mean()) == pytest.approx(m, abs=4 * s / n**0.5)
            assert float(xt.std()) == pytest.approx(s, rel=0.06)
            ls_q, ls_p = log_q[0, t].double(), log_p[0, t].double()
            log_ratio = gaussian_log_prob(xt, mean_q[0, t].double(), ls_q) - gaussian_log_prob(
                xt, mean_p[0, t].double(), ls_p
            )
            tol = 4 * float(log_ratio.std()) / n**0.5 + 1e-5
            assert float(log_ratio.mean()) == pytest.approx(float(kl[0, t]), abs=tol)
    assert (kl >= 0).all() and kl.max() > 0.1


def test_autocast_keeps_the_sample_and_its_gaussian_in_fp32():
    model = _student()
    z, mel = _noise(2, 3 * HOP), _mel(2, 3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        x, mean, log_scale = model(z, mel, return_params=True)
    assert x.dtype == mean.dtype == log_scale.dtype == torch.float32
    torch.testing.assert_close(x, z * log_scale.exp() + mean, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        x32, _, _ = model(z, mel, return_params=True)
    assert (x - x32).abs().max() < 0.1  # the bf16 stack is close to the fp32 one


def test_config_round_trip_and_validation():
    cfg = PRESETS["gpu"]
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.flow_layers == (10, 10, 10, 30) and cfg.residual_channels == 64 and cfg.n_flows == 4
    assert flow_dilations(12, 10) == (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1, 2)
    assert cfg.dilations(3)[-1] == 512 and len(cfg.dilations(3)) == 30
    with pytest.raises(ValueError):
        StudentConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError):
        StudentConfig(flow_layers=())
    with pytest.raises(ValueError):
        StudentConfig(upsample="cubic")
    assert dataclasses.replace(cfg, flow_layers=[2, 3]).flow_layers == (2, 3)
    # no skip outputs in the flows' stacks
    flow = IAFFlow(PRESETS["tiny"], 2)
    assert flow.stack.skip_channels == 0 and flow.head.out_channels == 2
