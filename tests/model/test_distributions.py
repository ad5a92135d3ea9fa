"""Per-sample Gaussians: log-prob, NLL, sampling, entropy, closed-form KL, the log-scale floor."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from model.distributions import (
    TEACHER_LOG_SCALE_MIN,
    floor_log_scale,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
    gaussian_nll,
    sample_gaussian,
    split_gaussian_params,
)


def _params(shape=(3, 50), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    mean = torch.randn(shape, generator=g, dtype=torch.float64) * 0.5
    log_scale = torch.rand(shape, generator=g, dtype=torch.float64) * 6 - 7  # [-7, -1]
    return x * 0.01 + mean, mean, log_scale


def test_log_prob_matches_torch_normal():
    x, mean, log_scale = _params()
    expected = Normal(mean, log_scale.exp()).log_prob(x)
    torch.testing.assert_close(gaussian_log_prob(x, mean, log_scale), expected)


def test_nll_reductions_and_mask():
    x, mean, log_scale = _params()
    elementwise = -Normal(mean, log_scale.exp()).log_prob(x)
    torch.testing.assert_close(gaussian_nll(x, mean, log_scale), elementwise.mean())
    torch.testing.assert_close(gaussian_nll(x, mean, log_scale, reduction="sum"), elementwise.sum())
    mask = torch.zeros_like(x)
    mask[:, :10] = 1
    torch.testing.assert_close(gaussian_nll(x, mean, log_scale, mask=mask), elementwise[:, :10].mean())
    with pytest.raises(ValueError):
        gaussian_nll(x, mean, log_scale, reduction="median")


def test_entropy_matches_torch_normal():
    _, mean, log_scale = _params()
    torch.testing.assert_close(gaussian_entropy(log_scale), Normal(mean, log_scale.exp()).entropy())


def test_kl_zero_for_identical_and_positive_otherwise():
    _, mean, log_scale = _params()
    assert gaussian_kl(mean, log_scale, mean, log_scale).abs().max() < 1e-12
    other_mean = mean + 0.01
    other_scale = log_scale + 0.3
    assert (gaussian_kl(mean, log_scale, other_mean, log_scale) > 0).all()
    assert (gaussian_kl(mean, log_scale, mean, other_scale) > 0).all()
    assert (gaussian_kl(mean, log_scale, other_mean, other_scale) > 0).all()


def test_kl_matches_torch_closed_form():
    _, mq, lq = _params(seed=1)
    _, mp, lp = _params(seed=2)
    expected = kl_divergence(Normal(mq, lq.exp()), Normal(mp, lp.exp()))
    torch.testing.assert_close(gaussian_kl(mq, lq, mp, lp), expected)


def test_kl_matches_monte_carlo_estimate():
    # KL(q||p) = E_q[log q(x) - log p(x)], estimated from 400k draws of q, for a few pairs
    g = torch.Generator().manual_seed(3)
    mq = torch.tensor([0.0, 0.3, -0.2, 0.01], dtype=torch.float64)
    lq = torch.tensor([-1.0, -2.0, -0.5, -6.0], dtype=torch.float64)
    mp = torch.tensor([0.5, 0.25, -0.2, 0.012], dtype=torch.float64)
    lp = torch.tensor([-0.5, -2.5, -1.0, -5.8], dtype=torch.float64)
    n = 400_000
    eps = torch.randn(n, 4, generator=g, dtype=torch.float64)
    x = mq + lq.exp() * eps  # (n, 4) samples of q
    log_ratio = gaussian_log_prob(x, mq, lq) - gaussian_log_prob(x, mp, lp)  # (n, 4)
    estimate = log_ratio.mean(0)
    stderr = log_ratio.std(0) / math.sqrt(n)
    exact = gaussian_kl(mq, lq, mp, lp)
    assert ((estimate - exact).abs() < 4 * stderr + 1e-6).all(), (estimate, exact, stderr)


def test_kl_finite_for_tiny_scales_and_differentiable():
    mq = torch.zeros(5, requires_grad=True)
    lq = torch.full((5,), -12.0, requires_grad=True)
    kl = gaussian_kl(mq, lq, torch.full((5,), 1e-6), torch.full((5,), -11.0))
    assert torch.isfinite(kl).all()
    kl.sum().backward()
    assert torch.isfinite(mq.grad).all() and torch.isfinite(lq.grad).all()


def test_sampling_moments_temperature_and_explicit_noise():
    g = torch.Generator().manual_seed(4)
    mean = torch.full((200_000,), 0.25)
    log_scale = torch.full((200_000,), math.log(0.1))
    x = sample_gaussian(mean, log_scale, generator=g)
    assert abs(float(x.mean()) - 0.25) < 0.002
    assert abs(float(x.std()) - 0.1) < 0.002
    x_half = sample_gaussian(mean, log_scale, temperature=0.5, generator=g)
    assert abs(float(x_half.std()) - 0.05) < 0.001
    assert torch.equal(sample_gaussian(mean, log_scale, temperature=0.0, generator=g), mean)
    noise = torch.randn(200_000, generator=g)
    torch.testing.assert_close(sample_gaussian(mean, log_scale, noise=noise), mean + 0.1 * noise)


def test_log_scale_floor_clamps_with_zero_gradient_below():
    assert TEACHER_LOG_SCALE_MIN == -7.0
    raw = torch.tensor([-10.0, -7.5, -7.0, -3.0, 1.0], requires_grad=True)
    floored = floor_log_scale(raw, TEACHER_LOG_SCALE_MIN)
    assert floored.tolist() == [-7.0, -7.0, -7.0, -3.0, 1.0]
    floored.sum().backward()
    assert raw.grad.tolist()[:2] == [0.0, 0.0] and raw.grad.tolist()[3:] == [1.0, 1.0]
    assert floor_log_scale(raw, None) is raw
    params = torch.stack([torch.zeros(2, 3), torch.full((2, 3), -9.0)], dim=1)  # (B, 2, T)
    mean, log_scale = split_gaussian_params(params, -7.0)
    assert mean.shape == (2, 3) and (log_scale == -7.0).all()
    with pytest.raises(ValueError):
        split_gaussian_params(torch.zeros(2, 3, 4))
