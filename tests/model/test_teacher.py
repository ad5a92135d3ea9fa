"""The WaveNet teacher: incremental generation == teacher-forced forward, sampling modes, config."""

import dataclasses

import pytest
import torch

from core.excitation import excitation as excitation_signal
from model.teacher import PRESETS, TeacherConfig, TeacherWaveNet, preset

HOP = 40  # a short hop keeps the autoregressive loops in these tests small


def _model(**overrides) -> TeacherWaveNet:
    torch.manual_seed(0)
    return TeacherWaveNet(preset("tiny", hop_length=HOP, **overrides)).eval()


def _mel(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 80, frames, generator=g) * 2.0 - 5.0  # (B, n_mels, F)


def _excitation(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """(B, 3, frames*HOP): the excitation of a random F0 contour with voiced and unvoiced frames."""
    g = torch.Generator().manual_seed(seed)
    f0 = (torch.rand(batch, frames, generator=g) * 170 + 80) * (torch.rand(batch, frames, generator=g) < 0.7)
    return torch.from_numpy(excitation_signal(f0.numpy(), HOP, 16_000))


def _perturb_excitation(model: TeacherWaveNet, seed: int = 0) -> TeacherWaveNet:
    """Non-zero excitation weights (they start at zero, where the excitation changes nothing)."""
    g = torch.Generator().manual_seed(seed)
    params = list(model.excitation_conv.parameters())
    if model.stack.excitation_proj is not None:  # the per-layer excitation
        params += list(model.stack.excitation_proj.parameters())
    with torch.no_grad():
        for p in params:
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    return model


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


@pytest.mark.parametrize("frames", [3, 11])
@pytest.mark.parametrize("input_kernel", [1, 2])
@pytest.mark.parametrize("layers", [False, True], ids=["input-excitation", "per-layer-excitation"])
def test_incremental_generation_equals_teacher_forced_forward_with_excitation(frames, input_kernel, layers):
    """The same parity with a non-zero excitation and non-zero excitation weights: ``step`` takes
    exc_t of the very sample it predicts, as the teacher-forced pass does (no shift); with
    ``excitation_layers`` also through every residual layer's conditioning."""
    model = _perturb_excitation(_model(input_kernel=input_kernel, n_speakers=2, excitation_layers=layers))
    mel, exc = _mel(2, frames), _excitation(2, frames)  # (B, n_mels, F), (B, 3, T)
    assert exc[:, 2].any() and not exc[:, 2].all()  # voiced and unvoiced samples
    speaker = torch.tensor([0, 1])
    audio, means, log_scales = model.generate(
        mel, speaker, temperature=0.3, seed=7, return_params=True, excitation=exc
    )
    assert audio.std() > 0
    with torch.no_grad():
        mean, log_scale = model(audio, mel, speaker, excitation=exc)
        shifted = torch.roll(exc, 1, dims=2)  # the excitation one sample late: a different model input
        mean_shifted, _ = model(audio, mel, speaker, excitation=shifted)
        mean_zero, _ = model(audio, mel, speaker)  # None = unvoiced (zeros)
        mean_zero_exc, _ = model(audio, mel, speaker, excitation=torch.zeros_like(exc))
    torch.testing.assert_close(means, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_scales, log_scale, rtol=1e-5, atol=1e-5)
    # the checks can fail: a shifted or absent excitation changes the prediction
    assert (mean_shifted - means).abs().max() > 1e-3
    assert (mean_zero - means).abs().max() > 1e-3
    assert torch.equal(mean_zero, mean_zero_exc)


def test_excitation_starts_at_zero_and_is_conditioning():
    """Zero-initialised: a fresh teacher ignores the excitation; with weights, excitation[t] changes
    the prediction of sample t itself (not t + 1), and a wrong shape is refused."""
    model = _model()
    assert model.cfg.excitation_channels == 3
    assert not model.excitation_conv.weight.any() and not model.excitation_conv.bias.any()
    mel, exc = _mel(1, 3), _excitation(1, 3, seed=1)
    audio = torch.randn(1, 3 * HOP, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        assert torch.equal(model(audio, mel, excitation=exc)[0], model(audio, mel)[0])
        _perturb_excitation(model)
        bumped = exc.clone()
        t0 = 50
        bumped[:, :, t0] += 1.0
        m1, _ = model(audio, mel, excitation=exc)
        m2, _ = model(audio, mel, excitation=bumped)
    assert torch.equal(m1[:, :t0], m2[:, :t0])
    assert not torch.allclose(m1[:, t0], m2[:, t0])
    with pytest.raises(ValueError, match="excitation must have shape"):
        model(audio, mel, excitation=exc[:, :, :-1])
    with pytest.raises(ValueError, match="excitation must have shape"):
        model.generate(mel, excitation=exc[:, :2])


def test_per_layer_excitation_starts_at_zero_and_reaches_every_layer():
    """excitation_layers adds a zero-initialised (E -> L*2G) projection: with it at zero the teacher
    computes exactly what the same weights without it do (so --init can add it to a trained one);
    with weights, the excitation changes the prediction even when the input path ignores it, and
    the channels-last training path agrees with the Conv1d path (what ONNX export traces)."""
    from model.wavenet import Layout

    plain = _perturb_excitation(_model())
    layered = _model(excitation_layers=True)
    proj = layered.stack.excitation_proj
    assert proj is not None and not proj.weight.any() and not proj.bias.any()
    assert proj.weight.shape == (layered.stack.cond_size, 3, 1)
    missing = layered.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["stack.excitation_proj.bias", "stack.excitation_proj.weight"]
    mel, exc = _mel(2, 3), _excitation(2, 3, seed=2)
    audio = torch.randn(2, 3 * HOP, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        assert torch.equal(layered(audio, mel, excitation=exc)[0], plain(audio, mel, excitation=exc)[0])
        nn_zero = layered.excitation_conv
        nn_zero.weight.zero_()
        nn_zero.bias.zero_()  # the input path now ignores the excitation ...
        g = torch.Generator().manual_seed(3)
        proj.weight.add_(0.5 * torch.randn(proj.weight.shape, generator=g))
        m_exc, _ = layered(audio, mel, excitation=exc)
        m_none, _ = layered(audio, mel, excitation=torch.zeros_like(exc))
        m_reference, _ = layered(audio, mel, excitation=exc, layout=Layout.REFERENCE)
    assert (m_exc - m_none).abs().max() > 1e-3  # ... and the layers still hear it
    torch.testing.assert_close(m_reference, m_exc, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="excitation_layers needs"):
        TeacherConfig(excitation_channels=0, excitation_layers=True)
    saved = dataclasses.asdict(plain.cfg)
    del saved["excitation_layers"]  # a config saved before it existed
    assert TeacherConfig.from_dict(saved).excitation_layers is False


def test_mel_only_teacher_and_old_configs():
    """excitation_channels=0: no excitation conv, any excitation is ignored; a config saved before
    the field existed loads as mel-only."""
    model = _model(excitation_channels=0)
    assert model.excitation_conv is None
    assert not any("excitation" in n for n in model.state_dict())
    mel = _mel(1, 2)
    a = model.generate(mel, seed=3)
    assert torch.equal(a, model.generate(mel, seed=3, excitation=_excitation(1, 2)))
    saved = dataclasses.asdict(preset("tiny"))
    del saved["excitation_channels"]
    assert TeacherConfig.from_dict(saved).excitation_channels == 0
    with pytest.raises(ValueError):
        TeacherConfig(excitation_channels=-1)


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
        _perturb_excitation(model)
        m_exc, _, _ = model.step(torch.ones(2, 1), c_t, state, torch.ones(2, 3))
        m_none, _, _ = model.step(torch.ones(2, 1), c_t, state)
        m_zero, _, _ = model.step(torch.ones(2, 1), c_t, state, torch.zeros(2, 3))
    assert mean.shape == (2,) and log_scale.shape == (2,)
    assert not torch.allclose(m_exc, m_none) and torch.equal(m_none, m_zero)
    assert [q.shape for q in new_state] == [q.shape for q in state]
    assert torch.equal(new_state[0][:, :, -1], torch.ones(2, 1))  # newest input at the end of the queue


def test_past_noise_corrupts_the_past_only():
    """forward(past_noise=s) == predict() on the shifted audio plus that noise (same RNG draw); the
    noise changes every prediction, off (0) is the plain teacher forcing."""
    import torch.nn.functional as F

    model = _model(excitation_channels=3)
    mel, exc = _mel(1, 4), _excitation(1, 4)
    audio = torch.randn(1, 4 * HOP) * 0.1
    with torch.no_grad():
        clean = model(audio, mel, None, exc)
        torch.manual_seed(7)
        noisy = model(audio, mel, None, exc, past_noise=0.05)
        torch.manual_seed(7)
        x_in = F.pad(audio[:, :-1], (1, 0)) + 0.05 * torch.randn(1, 4 * HOP)
        by_hand = model.predict(x_in, cond_frames=model.frame_conditioning(mel, None), excitation=exc)
        assert torch.equal(model(audio, mel, None, exc, past_noise=0.0)[0], clean[0])
    torch.testing.assert_close(noisy, by_hand)
    assert not torch.allclose(noisy[0], clean[0])


# ------------------------------------------------------------------ linear prediction (issue 38)


def _lp_model(**overrides) -> TeacherWaveNet:
    return _model(lpc_order=8, excitation_channels=3, **overrides)


def test_levinson_solves_the_normal_equations():
    from model.lpc import levinson

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 4000, generator=g, dtype=torch.float64)
    x = torch.cumsum(x, -1) * 0.1 + x  # coloured: a non-trivial predictor
    p = 6
    r = torch.stack([(x[:, : x.shape[1] - k] * x[:, k:]).sum(-1) for k in range(p + 1)], -1)  # (4, p+1)
    a = levinson(r)  # (4, p)
    for b in range(4):
        toeplitz = torch.stack([torch.stack([r[b, abs(i - j)] for j in range(p)]) for i in range(p)])
        want = torch.linalg.solve(toeplitz, -r[b, 1:])
        torch.testing.assert_close(a[b], want, rtol=1e-8, atol=1e-10)


def test_lpc_from_mel_predicts_a_resonant_signal():
    """An AR(2) resonance at 1 kHz: LPC from its log-mel predicts it far better than nothing."""
    import numpy as np

    from model.data.config import AudioConfig
    from model.data.features import log_mel, mel_filterbank
    from model.lpc import LPCFromMel, lp_predict, prediction_gain_db

    cfg = AudioConfig()
    rng = np.random.default_rng(0)
    n = 200 * 40
    e = rng.standard_normal(n) * 0.01
    rho, w = 0.97, 2 * np.pi * 1000 / 16000
    x = np.zeros(n)
    for t in range(2, n):
        x[t] = 2 * rho * np.cos(w) * x[t - 1] - rho**2 * x[t - 2] + e[t]
    x = (x / np.abs(x).max() * 0.5).astype(np.float32)
    mel = torch.from_numpy(log_mel(x, cfg)[:, :40])[None]  # (1, 80, 40)
    a = LPCFromMel(mel_filterbank(cfg), cfg.n_fft, cfg.sample_rate, 16)(mel)  # (1, 16, 40)
    xt = torch.from_numpy(x)[None]
    pred = lp_predict(torch.nn.functional.pad(xt[:, :-1], (1, 0)), a, cfg.hop_length)  # (1, T)
    gain = prediction_gain_db(xt[:, 400:], pred[:, 400:])
    assert gain > 10.0
    # negative check: the same prediction one sample off (the past not shifted) is far worse
    wrong = lp_predict(xt, a, cfg.hop_length)
    assert prediction_gain_db(xt[:, 400:], wrong[:, 400:]) < gain - 6.0


@pytest.mark.parametrize("input_kernel", [1, 2])
def test_lp_teacher_incremental_equals_teacher_forced(input_kernel):
    model = _perturb_excitation(_lp_model(input_kernel=input_kernel))
    frames = 4
    mel, exc = _mel(1, frames), _excitation(1, frames)
    audio = torch.tanh(torch.randn(1, frames * HOP, generator=torch.Generator().manual_seed(1)) * 0.3)
    with torch.no_grad():
        mean, _ = model(audio, mel, excitation=exc)  # (1, T)
        c = model.stack.upsampler(model.frame_conditioning(mel))  # (1, C, T)
        a = model.frame_lpc(mel)  # (1, p, F)
        state = model.init_state(1)
        x_prev, means = torch.zeros(1, 1), []
        for t in range(audio.shape[1]):
            mu, _, state = model.step(x_prev, c[:, :, t], state, exc[:, :, t], a[:, :, t // HOP])
            means.append(mu)
            x_prev = audio[:, t : t + 1]
    torch.testing.assert_close(torch.stack(means, 1), mean, rtol=1e-5, atol=1e-6)
    # the LP term is really in the mean: without it the step's mean differs
    no_lp = mean - __import__("model.lpc", fromlist=["lp_predict"]).lp_predict(
        torch.nn.functional.pad(audio[:, :-1], (1, 0)), a, HOP
    )
    assert (no_lp - mean).abs().max() > 1e-3


def test_lp_teacher_generates_and_needs_its_lpc():
    """(Its ONNX export: tests/export/test_lp_teacher.py.)"""
    model = _lp_model()
    audio = model.generate(_mel(1, 2), excitation=_excitation(1, 2), seed=0)
    assert audio.shape == (1, 2 * HOP) and torch.isfinite(audio).all()
    with pytest.raises(ValueError, match="lpc"):
        model.predict(torch.zeros(1, HOP), cond_frames=model.frame_conditioning(_mel(1, 1)))
    assert _model().lpc is None and "lpc" not in dict(_model().named_buffers())


def test_fp32_io_keeps_the_mean_in_fp32_under_bf16_autocast():
    mel, exc = _mel(1, 2), _excitation(1, 2)
    audio = torch.zeros(1, 2 * HOP)
    for fp32_io, dtype in ((True, torch.float32), (False, torch.bfloat16)):
        model = _model(excitation_channels=3, fp32_io=fp32_io)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            mean, _ = model(audio, mel, excitation=exc)
        assert mean.dtype == dtype
