"""The student's discriminators (issue 37): shapes, fp32 scores under bf16 autocast, gradients to the
input, config checks; the least-squares GAN and feature-matching losses on known values."""

import pytest
import torch

from model.discriminators import (
    DiscConfig,
    MultiDiscriminator,
    PeriodDiscriminator,
    ResolutionDiscriminator,
    names,
)
from model.losses import feature_matching_loss, lsgan_discriminator_loss, lsgan_generator_loss


@pytest.mark.parametrize("period", [2, 3, 5, 7, 11])
def test_period_discriminator_shapes(period):
    torch.manual_seed(0)
    d = PeriodDiscriminator(period, channels=4)
    x = torch.randn(3, 4000)
    score, feats = d(x)
    rows = -(-4000 // period)  # the waveform padded to a whole number of periods, folded
    widths = [4, 8, 16, 16, 16, 1]
    assert len(feats) == 6 and [f.shape[1] for f in feats] == widths
    for i, f in enumerate(feats[:4]):
        rows = (rows + 2 * 2 - 5) // 3 + 1  # kernel 5, stride 3, padding 2
        assert f.shape == (3, widths[i], rows, period), (i, f.shape)
    assert feats[4].shape[2:] == feats[3].shape[2:] == feats[5].shape[2:]
    assert score.shape == (3, rows * period)


@pytest.mark.parametrize("n_fft", [256, 512, 1024])
def test_resolution_discriminator_shapes(n_fft):
    torch.manual_seed(0)
    d = ResolutionDiscriminator(n_fft, channels=4)
    x = torch.randn(2, 4000)
    spec = d.spectrogram(x)
    frames, bins = 4000 // (n_fft // 4) + 1, n_fft // 2 + 1
    assert spec.shape == (2, 1, frames, bins)
    score, feats = d(x)
    widths = [4, 8, 16, 16, 16, 1]
    assert [f.shape[1] for f in feats] == widths
    b = bins
    for i, f in enumerate(feats[:4]):
        if i > 0:
            b = (b + 2 * 4 - 9) // 2 + 1  # kernel 9, stride 2, padding 4 along the bins
        assert f.shape == (2, widths[i], frames, b), (i, f.shape)
    assert score.shape == (2, frames * b)


def test_multi_discriminator_order_fp32_scores_and_gradients():
    torch.manual_seed(0)
    cfg = DiscConfig(periods=(2, 3), mpd_channels=4, resolutions=(128, 256), mrd_channels=4)
    d = MultiDiscriminator(cfg)
    assert names(cfg) == ["mpd2", "mpd3", "mrd128", "mrd256"]
    assert [type(s).__name__ for s in d.discs] == ["PeriodDiscriminator"] * 2 + [
        "ResolutionDiscriminator"
    ] * 2
    x = torch.randn(2, 1000, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores, feats = d(x)
    assert len(scores) == len(feats) == 4
    assert all(s.dtype == torch.float32 for s in scores)  # the score conv runs in fp32
    assert feats[0][0].dtype == torch.bfloat16  # the hidden convs follow autocast
    lsgan_generator_loss(scores).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    only_mrd = MultiDiscriminator(DiscConfig(kinds=("mrd",), resolutions=(128,), mrd_channels=2))
    assert len(only_mrd.discs) == 1


def test_disc_config_checks():
    with pytest.raises(ValueError, match="kinds"):
        DiscConfig(kinds=("msd",))
    with pytest.raises(ValueError, match="kinds"):
        DiscConfig(kinds=())
    with pytest.raises(ValueError, match="periods"):
        DiscConfig(periods=())
    with pytest.raises(ValueError, match="FFT"):
        DiscConfig(resolutions=(8,))


def test_lsgan_losses_known_values():
    real = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5]])]  # (1 - s)^2: means 0.5, 0.25
    fake = [torch.tensor([[0.0, 2.0]]), torch.tensor([[-1.0]])]  # s^2: means 2.0, 1.0
    r, f = lsgan_discriminator_loss(real, fake)
    assert r.item() == pytest.approx((0.5 + 0.25) / 2)
    assert f.item() == pytest.approx((2.0 + 1.0) / 2)
    assert lsgan_generator_loss(fake).item() == pytest.approx(((1 + 1) / 2 + 4) / 2)  # (1 - s)^2
    perfect = lsgan_discriminator_loss([torch.ones(2, 3)], [torch.zeros(2, 3)])
    assert perfect[0].item() == 0.0 and perfect[1].item() == 0.0
    assert lsgan_generator_loss([torch.ones(4, 5)]).item() == 0.0
    with pytest.raises(ValueError):
        lsgan_discriminator_loss(real, fake[:1])


def test_feature_matching_known_value_and_real_side_detached():
    real = [
        [torch.zeros(1, 2), torch.ones(1, 1, 2)],  # layer L1 means: 1.0 and 0.5 -> 0.75
        [torch.full((2,), 3.0, requires_grad=True)],  # 1.0
    ]
    fake = [
        [torch.ones(1, 2, requires_grad=True), torch.tensor([[[1.0, 0.0]]], requires_grad=True)],
        [torch.full((2,), 2.0, requires_grad=True)],
    ]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx((0.75 + 1.0) / 2)
    loss.backward()
    assert real[1][0].grad is None and fake[1][0].grad is not None  # only the generated side learns
    assert feature_matching_loss(real, real).item() == 0.0
    with pytest.raises(ValueError):
        feature_matching_loss(real, [fake[0], fake[0]])
