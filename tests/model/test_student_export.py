"""The student's forward is export-friendly: the bundle's exporter (dynamic time axis) gives a
graph that ONNX Runtime runs at other lengths with the same output (no loop over time, no
data-dependent control flow, noise as an input)."""

import numpy as np
import pytest
import torch

from bench.student_speed import export_onnx, randomize_heads
from export.onnx import example_excitation
from model.student import StudentIAF, preset
from service import graphs

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

HOP = 40


@pytest.mark.parametrize("n_speakers", [1, 3])
def test_onnx_export_runs_at_any_length_and_matches_torch(tmp_path, n_speakers):
    torch.manual_seed(0)
    model = randomize_heads(
        StudentIAF(preset("tiny", hop_length=HOP, n_speakers=n_speakers)), scale=0.3
    ).eval()
    path = tmp_path / "student.onnx"
    names = export_onnx(model, path)
    assert names == graphs.STUDENT.input_names == ["z", "mel", "speaker_weights", "excitation"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, frames in ((1, 3), (2, 11)):  # the traced length and another one
        g = torch.Generator().manual_seed(frames)
        z = torch.randn(batch, frames * HOP, generator=g)
        mel = torch.randn(batch, 80, frames, generator=g) * 2.0 - 5.0
        speaker = torch.arange(batch) % n_speakers
        exc = example_excitation(batch, frames, HOP, 16000, seed=frames)  # (B, 3, T)
        weights = np.eye(n_speakers, dtype=np.float32)[speaker.numpy()]  # (B, S) one-hot
        feeds = dict(zip(names, (z.numpy(), mel.numpy(), weights, exc.numpy()), strict=True))
        (audio,) = session.run(graphs.STUDENT.output_names, feeds)
        with torch.no_grad():
            expected = model(z, mel, speaker if n_speakers > 1 else None, excitation=exc)
        assert audio.shape == (batch, frames * HOP)
        np.testing.assert_allclose(audio, expected.numpy(), rtol=1e-4, atol=1e-5)
    assert not any(node.op_type in ("Loop", "Scan", "If") for node in onnx.load(str(path)).graph.node)
