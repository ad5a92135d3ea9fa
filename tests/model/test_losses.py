"""Distillation losses: the student's KL terms and the multi-resolution STFT loss."""

import itertools
import math

import pytest
import torch

from model.distributions import TEACHER_LOG_SCALE_MIN, gaussian_kl
from model.losses import MultiResolutionSTFTLoss, distillation_kl


def _signal(seconds: float = 0.25, sr: int = 16_000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(round(seconds * sr)) / sr
    tone = 0.3 * torch.sin(2 * math.pi * 220 * t) + 0.1 * torch.sin(2 * math.pi * 1250 * t)
    return (tone + 0.01 * torch.randn(t.shape, generator=g)).unsqueeze(0).repeat(2, 1)  # (2, T)


def test_distillation_kl_zero_for_identical_positive_otherwise_and_floors_the_teacher():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(2, 50, generator=g) * 0.1
    log_scale = torch.rand(2, 50, generator=g) * 4 - 6  # [-6, -2]
    kl, reg = distillation_kl(mean, log_scale, mean, log_scale)
    assert kl.abs().max() < 1e-6 and reg.abs().max() == 0
    kl, reg = distillation_kl(mean, log_scale, mean + 0.01, log_scale - 0.5)
    assert (kl > 0).all() and torch.allclose(reg, torch.full_like(reg, 0.25))
    # a teacher scale below the floor counts as the floor (as in the teacher's training), for both terms
    low = torch.full_like(log_scale, -9.0)
    kl_low, reg_low = distillation_kl(mean, log_scale, mean, low)
    floored = torch.full_like(log_scale, TEACHER_LOG_SCALE_MIN)
    torch.testing.assert_close(kl_low, gaussian_kl(mean, log_scale, mean, floored))
    torch.testing.assert_close(reg_low, (log_scale - TEACHER_LOG_SCALE_MIN).square())
    # gradients reach the student's parameters and (through the mean) the teacher's prediction
    mq, lq, mp = (v.clone().requires_grad_() for v in (mean, log_scale + 0.3, mean + 0.05))
    kl, reg = distillation_kl(mq, lq, mp, log_scale)
    (kl.mean() + reg.mean()).backward()
    assert mq.grad.abs().sum() > 0 and lq.grad.abs().sum() > 0 and mp.grad.abs().sum() > 0


def test_stft_loss_zero_for_identical_signals():
    loss = MultiResolutionSTFTLoss((512, 256, 64), power_weight=1.0)
    y = _signal()
    out = loss(y, y.clone())
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["sc"] == 0 and out["logmag"] == 0 and out["power"] == 0
    x = y.clone().requires_grad_()
    loss(x, y)["loss"].backward()  # finite gradients at the minimum, digital silence included
    assert torch.isfinite(x.grad).all()
    silence = torch.zeros(1, 2000, requires_grad=True)
    loss(silence, torch.zeros(1, 2000))["loss"].backward()
    assert torch.isfinite(silence.grad).all()


def test_stft_loss_positive_and_decreasing_as_signals_approach():
    loss = MultiResolutionSTFTLoss((512, 256, 64), power_weight=1.0)
    y = _signal()
    noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    values = {k: [] for k in ("loss", "sc", "logmag", "power")}
    for amount in (1.0, 0.3, 0.1, 0.03):
        out = loss(y + amount * noise, y)
        for k in values:
            values[k].append(float(out[k]))
    for k, v in values.items():
        assert all(a > b > 0 for a, b in itertools.pairwise(v)), (k, v)
    # gain errors are seen at every resolution, and in both directions
    assert float(loss(0.5 * y, y)["loss"]) > 0.5 and float(loss(2.0 * y, y)["loss"]) > 0.5
    # a different signal with the same energy is far away; a 1-sample shift is close
    other = 0.3 * torch.sin(torch.arange(y.shape[1]) * 0.9).expand_as(y)  # a 2.3 kHz tone
    assert float(loss(other, y)["loss"]) > 5 * float(loss(y.roll(1, dims=1), y)["loss"])


def test_stft_loss_weights_and_validation():
    y = _signal()
    x = y * 0.7
    sc_only = MultiResolutionSTFTLoss((256,), sc_weight=1.0, mag_weight=0.0)(x, y)
    both = MultiResolutionSTFTLoss((256,), sc_weight=1.0, mag_weight=2.0)(x, y)
    torch.testing.assert_close(sc_only["loss"], sc_only["sc"])
    torch.testing.assert_close(both["loss"], both["sc"] + 2.0 * both["logmag"])
    # 0.7 gain: SC = 0.3 exactly, log-magnitude error = |log 0.7| wherever the signal is above the floor
    assert float(sc_only["sc"]) == pytest.approx(0.3, rel=1e-3)
    assert float(both["logmag"]) == pytest.approx(-math.log(0.7), rel=0.05)
    with pytest.raises(ValueError):
        MultiResolutionSTFTLoss(())
    with pytest.raises(ValueError):
        MultiResolutionSTFTLoss((2048,))(torch.zeros(1, 500), torch.zeros(1, 500))
    with pytest.raises(ValueError):
        MultiResolutionSTFTLoss((256,))(torch.zeros(1, 500), torch.zeros(1, 600))
