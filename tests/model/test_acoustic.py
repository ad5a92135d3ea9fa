"""Acoustic model: length regulator, speed control, shapes, determinism, padding exactness."""

import math

import pytest
import torch

from core.limits import check_speed
from model.acoustic import (
    PRESETS,
    AcousticConfig,
    AcousticModel,
    acoustic_from_checkpoint,
    acoustic_losses,
)
from model.acoustic_layers import MaskedBiLSTM, durations_from_log, length_regulate

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_model(n_speakers: int = 2, seed: int = 0, **overrides) -> AcousticModel:
    torch.manual_seed(seed)
    return AcousticModel(AcousticConfig.preset("tiny", n_symbols=30, n_speakers=n_speakers, **overrides))


def batch(B: int = 3, L: int = 9, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([L, L - 3, 2][:B])
    ids = torch.randint(2, 30, (B, L), generator=g)
    ids[torch.arange(L)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def test_length_regulate_repeats_and_positions():
    h = torch.arange(8.0).view(2, 4, 1)  # (B=2, L=4, C=1): values 0..3 and 4..7
    d = torch.tensor([[2, 0, 3, 1], [1, 1, 0, 0]])
    frames, pos, lens = length_regulate(h, d)
    assert lens.tolist() == [6, 2] and frames.shape == (2, 6, 1)
    assert frames[0, :, 0].tolist() == [0, 0, 2, 2, 2, 3]
    assert frames[1, :2, 0].tolist() == [4, 5] and frames[1, 2:].abs().sum() == 0  # padding stays 0
    expected = torch.repeat_interleave(h[0, :, 0], d[0])
    torch.testing.assert_close(frames[0, :, 0], expected)
    # fraction through the phoneme and log(1 + duration)
    torch.testing.assert_close(pos[0, 2:5, 0], torch.tensor([0.5, 1.5, 2.5]) / 3)
    torch.testing.assert_close(pos[0, :2, 1], torch.full((2,), math.log(3.0)))


def test_durations_at_speed_two_are_half_within_one_frame():
    g = torch.Generator().manual_seed(0)
    d = torch.rand(5, 40, generator=g) * 30  # frames at speed 1
    mask = torch.ones(5, 40, dtype=torch.bool)
    mask[1, 30:] = False
    log_d = torch.log1p(d)
    d1 = durations_from_log(log_d, mask, 1.0)
    d2 = durations_from_log(log_d, mask, 2.0)
    assert (d1[mask] >= 1).all() and (d1[~mask] == 0).all() and (d2[~mask] == 0).all()
    assert ((d2 - d1 / 2).abs()[mask] <= 1.0).all()
    n = mask.sum(1)
    assert ((d2.sum(1) - d1.sum(1) / 2).abs() <= n).all()
    # speed 0.5 doubles, speed 4 quarters (each phoneme keeps at least one frame)
    d05 = durations_from_log(log_d, mask, 0.5)
    assert ((d05 - (2 * d).clamp(min=1)).abs()[mask] <= 0.5 + 1e-4).all()
    d4 = durations_from_log(log_d, mask, 4.0)
    assert ((d4 - (d / 4).clamp(min=1)).abs()[mask] <= 1.0).all()


def test_model_speed_two_halves_the_frames():
    model = tiny_model()
    with torch.no_grad():  # durations of ~12 frames per phoneme, so speed matters
        model.dur_out.bias.fill_(math.log(13.0))
    ids, lengths = batch()
    speaker = torch.tensor([0, 1, 1])
    mel1, d1 = model.infer(ids, lengths, speaker, speed=1.0)
    mel2, d2 = model.infer(ids, lengths, speaker, speed=2.0)
    f1, f2 = d1.sum(1), d2.sum(1)
    assert (f1 > 5 * lengths).all()
    assert ((f2 - f1 / 2).abs() <= lengths).all()
    assert mel1.shape[2] == int(f1.max()) and mel2.shape[2] == int(f2.max())


@pytest.mark.parametrize("speed", [0.0, 0.2, 4.01, -1.0, float("nan"), float("inf"), "2", True, None])
def test_bad_speed_rejected(speed):
    model = tiny_model()
    ids, lengths = batch()
    with pytest.raises(ValueError, match="speed"):
        model.infer(ids, lengths, torch.tensor([0, 1, 1]), speed=speed)
    with pytest.raises(ValueError, match=r"0\.25 and 4\.0"):
        check_speed(speed if isinstance(speed, float) else 9.0)


@pytest.mark.parametrize("speed", [0.25, 1, 4.0])
def test_speed_limits_accepted(speed):
    assert check_speed(speed) == float(speed)


def test_forward_and_infer_shapes_two_speakers():
    model = tiny_model()
    ids, lengths = batch()
    B, L = ids.shape
    mel = torch.randn(B, 80, 40) - 4
    mel_lens = torch.tensor([40, 31, 5])
    speaker = torch.tensor([0, 1, 0])
    f0 = torch.where(torch.arange(40)[None] % 7 < 4, 120.0, 0.0).expand(B, 40)  # (B, F) voiced runs
    with pytest.raises(ValueError, match="f0"):
        model(ids, lengths, mel, mel_lens, speaker)  # a pitch model trains on the target F0
    out = model(ids, lengths, mel, mel_lens, speaker, f0=f0)
    assert out["lf0_pred"].shape == (B, 40) and out["voiced_logit"].shape == (B, 40)
    assert out["mel_post"].shape == (B, 80, 40) and out["log_dur"].shape == (B, L)
    assert out["attn_soft"].shape == (B, 40, L) and out["attn_hard"].shape == (B, 40, L)
    assert out["durations"].sum(1).tolist() == mel_lens.tolist()
    assert (out["durations"][torch.arange(L)[None] >= lengths[:, None]] == 0).all()
    losses = acoustic_losses(out, lengths, mel_lens, 1.0)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    mel_out, durations = model.infer(ids, lengths, speaker, 1.0)
    assert mel_out.shape == (B, 80, int(durations.sum(1).max())) and durations.shape == (B, L)
    # frames past an utterance's end are silence
    f = durations.sum(1)
    shortest = int(f.argmin())
    assert (mel_out[shortest, :, int(f[shortest]) :] == model.cfg.mel_floor).all()
    # the speaker changes the output
    other, _ = model.infer(ids, lengths, 1 - speaker, 1.0)
    assert other.shape != mel_out.shape or not torch.allclose(other, mel_out)
    with pytest.raises(ValueError, match="speaker"):
        model.infer(ids, lengths, torch.tensor([0, 2, 0]), 1.0)


def test_infer_is_deterministic_and_batch_independent():
    model = tiny_model(dropout=0.3)
    with torch.no_grad():
        model.dur_out.bias.fill_(math.log(4.0))
    model.train()  # infer must switch dropout off by itself ...
    ids, lengths = batch()
    speaker = torch.tensor([1, 0, 1])
    a, da = model.infer(ids, lengths, speaker, 1.0)
    b, db = model.infer(ids, lengths, speaker, 1.0)
    assert torch.equal(a, b) and torch.equal(da, db)
    assert model.training  # ... and restore the mode
    # padding does not leak: each utterance alone gives the same mel as in the padded batch
    for i in range(3):
        n = int(lengths[i])
        single, ds = model.infer(ids[i : i + 1, :n], lengths[i : i + 1], speaker[i : i + 1], 1.0)
        assert torch.equal(ds[0], da[i, :n])
        f = int(ds.sum())
        torch.testing.assert_close(single[0], a[i, :, :f], atol=1e-5, rtol=1e-5)


def test_masked_bilstm_matches_packed_lstm():
    torch.manual_seed(0)
    lstm = MaskedBiLSTM(5, 4)
    ref = torch.nn.LSTM(5, 4, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name, p in lstm.fwd.named_parameters():
            getattr(ref, name).copy_(p)
        for name, p in lstm.bwd.named_parameters():
            getattr(ref, name + "_reverse").copy_(p)
    x = torch.randn(3, 7, 5)
    lengths = torch.tensor([7, 4, 1])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    y_ref, _ = torch.nn.utils.rnn.pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=7)
    y = lstm(x, lengths)
    valid = torch.arange(7)[None] < lengths[:, None]
    torch.testing.assert_close(y[valid], y_ref[valid])


def test_config_presets_and_checkpoint_roundtrip():
    for name in PRESETS:
        AcousticConfig.preset(name)
    with pytest.raises(ValueError, match="unknown acoustic preset"):
        AcousticConfig.preset("huge")
    cfg = AcousticConfig.preset("tiny", n_symbols=30, n_speakers=2, dec_dilations=(1, 2))
    assert AcousticConfig.from_dict({**cfg.to_dict(), "dec_dilations": [1, 2]}) == cfg
    model = tiny_model()
    ckpt = {
        "kind": "acoustic",
        "config": {"model": model.cfg.to_dict()},
        "model": model.state_dict(),
        "ema": None,
    }
    loaded = acoustic_from_checkpoint(ckpt)
    ids, lengths = batch()
    speaker = torch.tensor([0, 1, 1])
    assert torch.equal(loaded.infer(ids, lengths, speaker)[0], model.infer(ids, lengths, speaker)[0])
    with pytest.raises(ValueError, match="not an acoustic model"):
        acoustic_from_checkpoint({**ckpt, "kind": "teacher"})


def test_generate_exports_to_onnx_with_dynamic_length_and_speed(tmp_path):
    """The inference core traces to one ONNX graph (issue 6 exports it) that matches PyTorch."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")

    import numpy as np

    model = tiny_model(dec_lstm=True).eval()
    with torch.no_grad():
        model.dur_out.bias.fill_(math.log(6.0))

    from export.onnx import export_acoustic, save
    from service import graphs

    ids, lengths = batch()
    speaker = torch.tensor([0, 1, 1])
    path = save(export_acoustic(model), tmp_path / "acoustic.onnx")  # the bundle's exporter
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model.eval()
    for n, speed in [(1, 1.0), (3, 2.0)]:  # batch of one and a padded batch of three
        pitch = np.full(n, 2.0, np.float32)
        values = (
            ids[:n].numpy(),
            lengths[:n].numpy(),
            np.eye(model.cfg.n_speakers, dtype=np.float32)[speaker[:n].numpy()],  # (B, S) one-hot weights
            np.full(n, speed, np.float32),
            pitch,
        )
        feeds = dict(zip(graphs.ACOUSTIC.input_names, values, strict=True))  # the graph contract
        mel, durations, frames, f0 = session.run(graphs.ACOUSTIC.output_names, feeds)
        ref_mel, ref_dur, ref_frames, ref_f0 = model.generate(
            ids[:n], lengths[:n], speaker[:n], torch.tensor(speed), torch.from_numpy(pitch)
        )
        np.testing.assert_allclose(f0, ref_f0.detach().numpy(), rtol=1e-4)
        np.testing.assert_array_equal(durations, ref_dur.numpy())
        np.testing.assert_array_equal(frames, ref_frames.numpy())
        np.testing.assert_allclose(mel, ref_mel.detach().numpy(), atol=1e-4)


def test_text_to_mel_uses_the_checkpoint_symbols():
    from model.synth import text_to_mel
    from model.text import default_symbols

    table = default_symbols()
    torch.manual_seed(0)
    model = AcousticModel(AcousticConfig.preset("tiny", n_symbols=len(table), n_speakers=2))
    ckpt = {"config": {"data": {"symbols": table.to_dict()}}}
    mel, info = text_to_mel(model, ckpt, "Hello world. It is 2 o'clock!", speaker=1, speed=1.0)
    assert len(info) == 2 and info[0]["text"] == "Hello world." and "two" in info[1]["text"]
    assert mel.shape == (80, sum(i["frames"] for i in info))
    assert all(i["frames"] >= len(table.encode(i["phonemes"])) for i in info)  # >= 1 frame per symbol
    with pytest.raises(ValueError, match="nothing to speak"):
        text_to_mel(model, ckpt, " ... ", speaker=0)
    with pytest.raises(ValueError, match="speed"):
        text_to_mel(model, ckpt, "Hi.", speed=5.0)
    with pytest.raises(ValueError, match="phoneme ids"):
        model.infer(torch.tensor([[3, len(table)]]), torch.tensor([2]), torch.tensor([0]))
