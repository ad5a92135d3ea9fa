"""A linear-prediction teacher (issue 38, ``lpc_order > 0``) exports to the LP form of the teacher
graphs (``service.graphs``): PyTorch, the step graph, the block graph and the engine agree, the LP
term is really in them, and ``parawave export voice`` writes a bundle the server speaks with."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from export import onnx as onnx_export
from export import parity
from model.teacher import TeacherWaveNet
from model.teacher import preset as teacher_preset
from service import graphs
from service.sessions import CPU
from service.types import EngineLoadError
from service.voice import Voice

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import make_fixture_bundle  # noqa: E402

N_MELS = 20
ORDER = 8


def _perturbed(model: torch.nn.Module, seed: int, scale: float = 0.2) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    cfg = teacher_preset("tiny", n_mels=N_MELS, n_speakers=2, lpc_order=ORDER, input_kernel=2)
    return _perturbed(TeacherWaveNet(cfg), seed=5)


@pytest.fixture(scope="module")
def step(teacher):
    return onnx_export.export_teacher_step(teacher)


def test_lp_graphs_follow_the_lp_form_of_the_contract(teacher, step):
    cond = onnx_export.export_teacher_cond(teacher)
    block = onnx_export.export_teacher_block(teacher, step)
    n = len(teacher.init_state(1))  # input conv + 4 layers + the LP history
    assert [o.name for o in cond.graph.output] == ["cond", "lpc"]
    assert [i.name for i in step.graph.input] == graphs.teacher_step(n, lp=True).input_names
    step_names, block_names = (
        graphs.teacher_step(n, True).input_names,
        graphs.teacher_block(n, True).input_names,
    )
    assert step_names[:5] == ["x_prev", "cond_t", "exc_t", "lpc_t", "noise"]
    assert block_names[:5] == ["cond", "excitation", "lpc", "noise", "x_prev"]
    for role, graph in (("teacher_cond", cond), ("teacher_step", step), ("teacher_block", block)):
        sess = parity.session(graph)
        spec = graphs.spec_for(
            role, [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
        )
        assert graphs.is_lp(spec.input_names + spec.output_names)
        assert spec.mismatch(sess.get_inputs(), sess.get_outputs()) is None
        for value, t in zip(sess.get_inputs(), spec.inputs, strict=True):
            for axis in t.dynamic:
                assert isinstance(value.shape[axis], str), f"{role}.{t.name} axis {axis} is not dynamic"
    history = {i.name: i for i in block.graph.input}[f"state_{n - 1}"]  # (B, 1, p): the last cache
    assert [d.dim_value for d in history.type.tensor_type.shape.dim[1:]] == [1, ORDER]
    # the form without LP is the one it always was (byte-identical graphs: test_bundle's fixture check)
    old_step = ["x_prev", "cond_t", "exc_t", "noise", *graphs.state_names(3)]
    assert graphs.teacher_step(3).input_names == old_step
    assert graphs.spec_for("teacher_cond", ["mel", "speaker_weights"], ["cond"]) == graphs.TEACHER_COND


def test_lp_teacher_cond_matches_pytorch(teacher):
    result = parity.teacher_cond_parity(teacher, onnx_export.export_teacher_cond(teacher), frames=(1, 5, 19))
    print(result)
    assert sum("lpc" in case for case, _ in result.cases) == 4  # the coefficients are compared too
    assert result.max_abs < 1e-5


def test_lp_teacher_step_graph_reproduces_generate(teacher, step):
    result = parity.teacher_step_parity(teacher, step, frames=2, batch=2)
    print(result)
    assert result.max_abs < 1e-4


@pytest.mark.parametrize("unroll", [1, 4])
def test_lp_teacher_block_graph_reproduces_generate(teacher, step, unroll):
    block = onnx_export.export_teacher_block(teacher, step, unroll=unroll)
    result = parity.teacher_block_parity(teacher, block, frames=4)
    print(result)
    assert result.max_abs < 1e-4


def test_lp_graphs_without_the_lp_term_fail_parity(teacher, monkeypatch):
    """The parity checks catch graphs that drop the LP term (exported while ``lp_step`` predicts 0),
    and the block graph hears its lpc input: so the checks above can fail."""
    with monkeypatch.context() as m:
        m.setattr("model.teacher.lp_step", lambda history, a_t: torch.zeros_like(history[:, 0]))
        broken = onnx_export.export_teacher_step(teacher)
    with pytest.raises(parity.ParityError):
        parity.teacher_step_parity(teacher, broken, frames=2, batch=1)
    with pytest.raises(parity.ParityError):
        parity.teacher_block_parity(teacher, onnx_export.export_teacher_block(teacher, broken), frames=3)
    sess = parity.session(onnx_export.export_teacher_block(teacher))
    _, _, noise, exc, _, cond, lpc = parity._teacher_reference(teacher, 3, 1, seed=0)
    args = (cond.numpy(), exc.numpy(), noise.numpy(), teacher.cfg.hop_length, (3,))
    a = parity.run_teacher_block(sess, *args, lpc=lpc)
    assert np.abs(a - parity.run_teacher_block(sess, *args, lpc=np.zeros_like(lpc))).max() > 1e-3
    assert np.abs(a - parity.run_teacher_block(sess, *args, lpc=np.roll(lpc, 1, axis=2))).max() > 1e-3


# -- the bundle: parawave export voice, the engine, HTTP -------------------------------------------


def _checkpoint(path: Path, kind: str, model: torch.nn.Module, audio: dict, data: dict) -> Path:
    from model.checkpoint import save_checkpoint

    config = {"model": model.cfg.to_dict(), "audio": audio, "data": data}
    save_checkpoint(
        path,
        {"format": 1, "kind": kind, "step": 7, "model": model.state_dict(), "ema": None, "config": config},
    )
    return path


@pytest.fixture(scope="module")
def lp_voice(tmp_path_factory):
    """``parawave export voice`` of the fixture's acoustic model and a tiny LP teacher -> (voices
    folder, the teacher in PyTorch)."""
    from model.teacher import TeacherConfig
    from service.cli import app

    audio, table, acoustic, _, _ = make_fixture_bundle.build_models(seed=0)
    torch.manual_seed(1)
    teacher = TeacherWaveNet(
        TeacherConfig(
            sample_rate=audio.sample_rate, hop_length=audio.hop_length, n_mels=audio.n_mels,
            upsample="linear", n_speakers=2, speaker_dim=4, cond_channels=4, cond_layers=1,
            residual_channels=4, gate_channels=4, skip_channels=4, kernel_size=2, layers=2, cycles=1,
            lpc_order=ORDER, n_fft=audio.n_fft, fmin=audio.fmin, fmax=audio.fmax,
        )
    )  # fmt: skip
    teacher = _perturbed(teacher, seed=6, scale=0.1)
    with torch.no_grad():
        teacher.head2.bias[1] -= 3.0  # scale ~0.05: audio mostly inside (-1, 1), so the LP feedback shows
    folder = tmp_path_factory.mktemp("lp")
    data = {"corpus": "/data/tiny", "speakers": make_fixture_bundle.SPEAKERS, "symbols": table.to_dict()}
    a = _checkpoint(folder / "a.pt", "acoustic", acoustic, audio.to_dict(), data)
    t = _checkpoint(folder / "t.pt", "teacher", teacher, audio.to_dict(), data)
    out = folder / "voices"
    args = ["export", "voice", "--name", "lp", "--out", str(out), "--acoustic", str(a), "--teacher", str(t)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "teacher_block" in result.output and "max abs error" in result.output
    checked = CliRunner().invoke(app, ["export", "check", str(out / "lp")])
    assert checked.exit_code == 0 and "sha256 ok" in checked.output, checked.output
    return out, teacher


def test_engine_lp_teacher_equals_pytorch_generate(lp_voice):
    """The loaded bundle's teacher loop (LPC from the ONNX teacher_cond, fed per call to teacher_block,
    a few frames per call) reproduces ``TeacherWaveNet.generate`` on the voice's own mel and F0."""
    out, teacher = lp_voice
    voice = Voice.load(out / "lp", [CPU], teacher_frames_per_call=2)
    assert voice.teacher_loop is not None and voice.teacher_loop.lp
    ids = np.arange(3, 15, dtype=np.int64)
    mel, f0 = voice.features([ids], [1], [1.0])[0]  # (n_mels, F), (F,)
    pieces = list(voice.teacher(mel, 1, np.random.default_rng(3), temperature=1.0, f0=f0))
    got = np.concatenate([p for p, _ in pieces])
    F, hop = mel.shape[1], voice.hop
    rng = np.random.default_rng(3)  # the loop's noise: one draw per call of 2 frames
    noise = np.concatenate(
        [rng.standard_normal((1, min(2, F - f) * hop), dtype=np.float32) for f in range(0, F, 2)], axis=1
    )
    ref = teacher.generate(
        torch.from_numpy(mel)[None],
        torch.tensor([1]),
        noise=torch.from_numpy(noise),
        excitation=torch.from_numpy(voice.excitation(f0, F))[None],
    )[0].numpy()
    assert len(pieces) == (F + 1) // 2 and got.shape == ref.shape
    assert np.abs(ref).mean() > 0.01 and np.mean(np.abs(ref) >= 1.0) < 0.5  # not silence, not all clipped
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_reference_endpoint_speaks_with_the_lp_teacher(lp_voice):
    from fake_engine import make_settings, wait_for
    from fastapi.testclient import TestClient

    from service.app import create_app

    out, _ = lp_voice
    app = create_app(make_settings(voices_dir=out, device="cpu", max_batch=2))
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_for(lambda: c.get("/health/ready").status_code == 200, what="ready")
        body = {"input": "Hi there.", "voice": "beta", "response_format": "wav", "seed": 4}
        r = c.post("/v1/audio/speech/reference", json=body)
        assert r.status_code == 200, r.text
        assert r.headers["x-parawave-model"] == "teacher"
        audio, rate = sf.read(io.BytesIO(r.content), dtype="float32")
        assert rate == 16000 and audio.size > 0 and audio.size % 200 == 0 and np.abs(audio).max() > 0
        assert c.post("/v1/audio/speech/reference", json=body).content == r.content


def test_voice_with_mixed_teacher_graphs_is_refused(lp_voice, tmp_path):
    """An LP teacher_cond beside a teacher_block without LP (or the reverse) is one clear load error."""
    import shutil

    import onnx

    out, _ = lp_voice
    plain = make_fixture_bundle.build_models(seed=0)[4]  # the fixture's teacher, without LP
    dst = tmp_path / "lp"
    shutil.copytree(out / "lp", dst)
    onnx_export.save(onnx_export.export_teacher_block(plain), dst / "teacher_block.onnx")
    _rehash(dst)
    with pytest.raises(EngineLoadError, match="teacher_cond has the 'lpc' output but teacher_block lacks"):
        Voice.load(dst, [CPU])
    assert onnx.load(str(out / "lp" / "teacher_block.onnx")).graph.input[2].name == "lpc"


def _rehash(folder: Path) -> None:
    """Rewrite voice.json's sha256/bytes of every file (so the load gets past the integrity check)."""
    import hashlib
    import json

    manifest = json.loads((folder / "voice.json").read_text())
    for entry in manifest["files"].values():
        data = (folder / entry["path"]).read_bytes()
        entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (folder / "voice.json").write_text(json.dumps(manifest))
