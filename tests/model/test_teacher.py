"""The WaveNet teacher: incremental generation == teacher-forced forward, sampling modes, config."""

import dataclasses

import pytest
import torch

from model.teacher import PRESETS, TeacherConfig, TeacherWaveNet, preset

HOP = 40  # a short hop keeps the autoregressive loops in these tests small


def _model(**overrides) -> TeacherWaveNet:
    torch.manual_seed(0)
    return TeacherWaveNet(preset("tiny", hop_length=HOP, **overrides)).eval()


def _mel(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 80, frames, generator=g) * 2.0 - 5.0  # (B, n_mels, F)


@pytest.mark.parametrize("frames", [3, 11])
@pytest.mark.parametrize(
    "overrides",
    [
        {},  # single speaker, kernel 2, input kernel 1, linear upsampling
        {
            "n_speakers": 3,
            "kernel_size": 3,
            "input_kernel": 2,
            "upsample": "learned",
            "layers": 6,
            "cycles": 2,
        },
    ],
    ids=["single-speaker", "multi-speaker"],
)
def test_incremental_generation_equals_teacher_forced_forward(frames, overrides):
    model = _model(**overrides)
    mel = _mel(2, frames)
    speaker = torch.tensor([0, overrides.get("n_speakers", 1) - 1])
    audio, means, log_scales = model.generate(mel, speaker, temperature=0.3, seed=7, return_params=True)
    assert audio.shape == (2, frames * HOP)
    assert audio.std() > 0  # really sampled
    with torch.no_grad():
        mean, log_scale = model(audio, mel, speaker)  # the sampled sequence, teacher forced
    torch.testing.assert_close(means, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_scales, log_scale, rtol=1e-5, atol=1e-5)


def test_speaker_changes_the_output():
    model = _model(n_speakers=2)
    mel = _mel(1, 4).expand(2, -1, -1)
    with torch.no_grad():
        audio = torch.zeros(2, 4 * HOP)
        mean, _ = model(audio, mel, torch.tensor([0, 1]))
    assert not torch.allclose(mean[0], mean[1])
    with pytest.raises(ValueError):
        model(audio, mel)  # multi-speaker model without speaker ids


def test_generation_is_reproducible_and_modes_differ():
    model = _model()
    mel = _mel(1, 3)
    a = model.generate(mel, seed=1)
    assert torch.equal(a, model.generate(mel, seed=1))
    assert not torch.equal(a, model.generate(mel, seed=2))
    greedy, means, _ = model.generate(mel, greedy=True, return_params=True)
    assert torch.equal(greedy, means.clamp(-1, 1))
    assert torch.equal(greedy, model.generate(mel, greedy=True))
    assert torch.equal(model.generate(mel, temperature=0.0, seed=5), greedy)
    noise = torch.randn(1, 3 * HOP, generator=torch.Generator().manual_seed(3))
    assert torch.equal(model.generate(mel, noise=noise), model.generate(mel, noise=noise))


def test_forward_is_shifted_teacher_forcing():
    # the prediction for sample t depends on samples < t only
    model = _model()
    mel = _mel(1, 4)
    audio = torch.randn(1, 4 * HOP) * 0.1
    bumped = audio.clone()
    t0 = 50
    bumped[:, t0] += 0.5
    with torch.no_grad():
        m1, _ = model(audio, mel)
        m2, _ = model(bumped, mel)
    assert torch.equal(m1[:, : t0 + 1], m2[:, : t0 + 1])
    assert not torch.allclose(m1[:, t0 + 1], m2[:, t0 + 1])
    with pytest.raises(ValueError):
        model(audio[:, :-1], mel)  # samples must be frames * hop


def test_log_scale_floor():
    model = _model()
    with torch.no_grad():
        model.head2.bias[1] = -100.0
        _, log_scale = model(torch.zeros(1, 2 * HOP), _mel(1, 2))
    assert (log_scale == model.cfg.log_scale_min).all() and model.cfg.log_scale_min == -7.0


def test_presets_and_config():
    for name, cfg in PRESETS.items():
        assert cfg.hop_length == 200 and cfg.sample_rate == 16_000, name
        assert TeacherWaveNet(cfg).receptive_field == cfg.receptive_field
    gpu = PRESETS["gpu"]
    assert gpu.layers == 24 and len(set(gpu.dilations)) == 8 and gpu.residual_channels == 128
    assert TeacherConfig.from_dict(dataclasses.asdict(gpu)) == gpu
    with pytest.raises(ValueError):
        TeacherConfig.from_dict({**dataclasses.asdict(gpu), "bogus": 1})
    with pytest.raises(ValueError):
        TeacherConfig(layers=10, cycles=3)
    with pytest.raises(ValueError):
        TeacherConfig(upsample="cubic")
    with pytest.raises(dataclasses.FrozenInstanceError):
        gpu.layers = 3


def test_step_state_is_explicit_tensors():
    model = _model(input_kernel=3)
    state = model.init_state(2)
    assert all(isinstance(q, torch.Tensor) for q in state)
    assert len(state) == 1 + model.cfg.layers  # input conv queue + one per layer
    assert [q.shape[-1] for q in state] == [2] + [d for d in model.cfg.dilations]  # kernel 2: context = d
    c_t = torch.zeros(2, model.stack.cond_size)
    with torch.no_grad():
        mean, log_scale, new_state = model.step(torch.ones(2, 1), c_t, state)
    assert mean.shape == (2,) and log_scale.shape == (2,)
    assert [q.shape for q in new_state] == [q.shape for q in state]
    assert torch.equal(new_state[0][:, :, -1], torch.ones(2, 1))  # newest input at the end of the queue
