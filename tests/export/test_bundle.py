"""Voice bundles: the committed fixture is current and verifies; broken bundles are refused with one
clear line; ``parawave export`` writes a loadable bundle from checkpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from service import bundle
from service.loading import load_engine
from service.sessions import CPU
from service.types import EngineLoadError, SynthesisRequest
from service.voice import Voice

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = FIXTURES / "voices" / "tiny"
sys.path.insert(0, str(FIXTURES))

import make_fixture_bundle  # noqa: E402

runner = CliRunner()


@pytest.fixture
def tiny_copy(tmp_path) -> Path:
    dst = tmp_path / "voices" / "tiny"
    shutil.copytree(TINY, dst)
    return dst


def test_fixture_bundle_is_small_and_verifies():
    manifest = bundle.load(TINY)
    assert manifest.name == "tiny" and manifest.speakers == ("alpha", "beta")
    assert manifest.models == ("student", "teacher")
    total = sum(p.stat().st_size for p in TINY.iterdir())
    assert total < 200_000, f"the fixture bundle grew to {total} bytes"
    assert set(manifest.provenance.parity) == {"acoustic", "student", "teacher_cond", "teacher_block"}
    assert max(manifest.provenance.parity.values()) < 1e-4


def test_exported_graphs_do_not_carry_the_torch_version():
    """The exporter's producer stamp ("pytorch", its version) is cleared: the fixture's rebuild (and
    its sha256) stays byte-identical under any torch that pyproject allows, as long as the graph does."""
    import onnx

    from export.onnx import export_teacher_cond

    for path in sorted(TINY.glob("*.onnx")):
        model = onnx.load(str(path))
        assert (model.producer_name, model.producer_version) == ("parawave", ""), path.name
    _, _, _, _, teacher = make_fixture_bundle.build_models(seed=0)
    fresh = export_teacher_cond(teacher)
    assert (fresh.producer_name, fresh.producer_version) == ("parawave", "")
    assert torch.onnx.producer_version.encode() not in fresh.SerializeToString()


def test_fixture_bundle_is_up_to_date(tmp_path):
    """Rebuilding with the script gives byte-identical files (rerun the script when it does not)."""
    out = subprocess.run(
        [sys.executable, str(FIXTURES / "make_fixture_bundle.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    fresh = bundle.load(tmp_path / "tiny").to_dict()
    committed = bundle.load(TINY).to_dict()
    # the parity errors are float rounding (they move with thread count and load): bounded, not equal
    fresh_parity, committed_parity = fresh["provenance"].pop("parity"), committed["provenance"].pop("parity")
    assert set(fresh_parity) == set(committed_parity) and max(fresh_parity.values()) < 1e-4
    assert fresh == committed, (
        "tests/fixtures/voices/tiny is stale: run .venv/bin/python tests/fixtures/make_fixture_bundle.py"
    )


def test_tampered_onnx_file_is_rejected(tiny_copy):
    path = tiny_copy / "student.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit of a weight
    path.write_bytes(bytes(data))
    with pytest.raises(EngineLoadError) as err:
        bundle.load(tiny_copy)
    message = str(err.value)
    assert "student.onnx" in message and "sha256" in message and "\n" not in message
    with pytest.raises(EngineLoadError, match="sha256"):
        load_engine(tiny_copy.parent, device="cpu", require_cuda=False)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(format_version=1), "format version 1"),
        (lambda d: d.pop("speakers"), "missing field 'speakers'"),
        (lambda d: d["files"].pop("acoustic"), "no acoustic model"),
        (lambda d: d["files"].pop("teacher_block"), "teacher needs both"),
        (lambda d: d["files"]["student"].update(path="../student.onnx"), "plain file name"),
        (lambda d: d["files"]["student"].update(path="nowhere.onnx"), "nowhere.onnx (student) is missing"),
        (lambda d: d.update(name="other"), "names the voice 'other'"),
        (lambda d: d.update(extra=1), "unknown fields ['extra']"),
        (lambda d: d.update(sample_rate=22050), "differs from audio.sample_rate"),
        (lambda d: d.update(inference={"teacher_temperature": 0}), "teacher_temperature must be in (0, 2]"),
        (lambda d: d.update(inference={"teacher_temperature": 2.5}), "teacher_temperature must be in (0, 2]"),
        (lambda d: d.update(inference={"teacher_temperature": "hot"}), "teacher_temperature must be in"),
        (lambda d: d.update(inference={"noise": 1}), "unknown fields ['noise']"),
        (
            lambda d: d.update(inference={"hd_model": "best"}),
            "hd_model must be one of ['teacher', 'student']",
        ),
    ],
)
def test_broken_manifest_is_rejected(tiny_copy, edit, expected):
    path = tiny_copy / "voice.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(EngineLoadError) as err:
        bundle.load(tiny_copy)
    assert expected in str(err.value)
    assert str(err.value).startswith(str(tiny_copy))


def test_unreadable_manifest_is_rejected(tiny_copy):
    (tiny_copy / "voice.json").write_text("{not json")
    with pytest.raises(EngineLoadError, match="not valid JSON"):
        bundle.load(tiny_copy)


def test_graph_with_the_wrong_interface_is_rejected(tiny_copy):
    """A file whose hash matches but which is the wrong graph for its role."""
    shutil.copy(tiny_copy / "teacher_cond.onnx", tiny_copy / "student.onnx")
    data = json.loads((tiny_copy / "voice.json").read_text())
    data["files"]["student"]["sha256"] = bundle.sha256_file(tiny_copy / "student.onnx")
    (tiny_copy / "voice.json").write_text(json.dumps(data))
    with pytest.raises(EngineLoadError, match="student graph inputs"):
        Voice.load(tiny_copy, [CPU])


def test_manifest_round_trip():
    manifest = bundle.load(TINY)
    assert bundle.VoiceBundle.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest


def test_audio_params_mirror_audio_config():
    from dataclasses import fields

    from model.data.config import AudioConfig

    assert [f.name for f in fields(bundle.AudioParams)] == [f.name for f in fields(AudioConfig)]
    assert bundle.AudioParams() == bundle.AudioParams(**AudioConfig().to_dict())


# -- parawave export -----------------------------------------------------------------------------------


def _checkpoint(path: Path, kind: str, model: torch.nn.Module, audio: dict, data: dict) -> Path:
    from model.checkpoint import save_checkpoint

    save_checkpoint(
        path,
        {
            "format": 1,
            "kind": kind,
            "step": 123,
            "model": model.state_dict(),
            "ema": None,
            "config": {"model": model.cfg.to_dict(), "audio": audio, "data": data},
            "metrics": {"loss": 1.5},
        },
    )
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    audio, table, acoustic, student, teacher = make_fixture_bundle.build_models(seed=3)
    folder = tmp_path_factory.mktemp("ckpt")
    speakers = make_fixture_bundle.SPEAKERS
    data = {"corpus": "/data/tiny", "speakers": speakers, "symbols": table.to_dict()}
    return {
        "acoustic": _checkpoint(folder / "a.pt", "acoustic", acoustic, audio.to_dict(), data),
        "student": _checkpoint(folder / "s.pt", "student", student, audio.to_dict(), {"speakers": ["x"]}),
        "teacher": _checkpoint(folder / "t.pt", "teacher", teacher, audio.to_dict(), data),
        "teacher_wrong_speakers": _checkpoint(
            folder / "t2.pt", "teacher", teacher, audio.to_dict(), {**data, "speakers": ["beta", "alpha"]}
        ),
    }


def test_export_command_writes_a_loadable_bundle(checkpoints, tmp_path):
    from service.cli import app

    args = ["export", "voice", "--name", "v1", "--out", str(tmp_path), "--fp16"]
    args += ["--acoustic", str(checkpoints["acoustic"]), "--student", str(checkpoints["student"])]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "student_fp16" in result.output and "max abs error" in result.output
    manifest = bundle.load(tmp_path / "v1")
    assert manifest.models == ("student",)
    assert manifest.files["student_fp16"].precision == "fp16"
    assert manifest.provenance.steps == {"acoustic": 123, "student": 123}
    assert manifest.provenance.metrics["acoustic"] == {"loss": 1.5}
    assert manifest.provenance.corpus == "/data/tiny"
    engine = load_engine(tmp_path, device="cpu", require_cuda=False)
    chunks = list(engine.synthesize(SynthesisRequest("Hi there.", "v1", "beta", seed=1)))
    assert len(chunks) == 1 and chunks[0].audio.size > 0
    # the same name again needs --overwrite
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "exists" in again.output


def test_export_command_writes_the_teacher_temperature(checkpoints, tmp_path):
    """--teacher-temperature lands in voice.json and is the loaded voice's default; out of range it is
    refused with one line and nothing is written. Without it the default is 1."""
    from service.cli import app

    base = ["export", "voice", "--out", str(tmp_path), "--acoustic", str(checkpoints["acoustic"])]
    base += ["--teacher", str(checkpoints["teacher"])]
    args = [*base, "--student", str(checkpoints["student"]), "--name", "t1", "--teacher-temperature", "0.7"]
    result = runner.invoke(app, [*args, "--hd-model", "student"])
    assert result.exit_code == 0, result.output
    inference = json.loads((tmp_path / "t1" / "voice.json").read_text())["inference"]
    assert inference == {"teacher_temperature": 0.7, "hd_model": "student"}
    voice = Voice.load(tmp_path / "t1", [CPU])
    assert voice.teacher_temperature == 0.7
    assert (voice.info.models, voice.info.hd_model) == (("student", "teacher"), "student")
    plain = runner.invoke(app, [*base, "--name", "t2"])
    assert plain.exit_code == 0, plain.output
    assert bundle.load(tmp_path / "t2").inference == bundle.InferenceParams(1.0, "teacher")
    assert Voice.load(tmp_path / "t2", [CPU]).info.hd_model == "teacher"
    wrong = runner.invoke(app, [*base, "--name", "t4", "--hd-model", "best"])
    assert wrong.exit_code == 2 and "hd_model must be one of" in wrong.output
    bad = runner.invoke(app, [*base, "--name", "t3", "--teacher-temperature", "3"])
    assert bad.exit_code == 2 and "teacher_temperature must be in (0, 2]" in bad.output
    assert "Traceback" not in bad.output
    assert not (tmp_path / "t3").exists() and not list(tmp_path.glob(".t3*"))


def test_export_command_refuses_inconsistent_checkpoints(checkpoints, tmp_path):
    from service.cli import app

    args = [
        "export",
        "voice",
        "--name",
        "v2",
        "--out",
        str(tmp_path),
        "--acoustic",
        str(checkpoints["acoustic"]),
    ]
    result = runner.invoke(app, [*args, "--teacher", str(checkpoints["teacher_wrong_speakers"])])
    assert result.exit_code == 2
    assert "same speakers in the same order" in result.output
    assert not (tmp_path / "v2").exists() and not list(tmp_path.glob(".v2*"))
    swapped = runner.invoke(
        app,
        [
            "export",
            "voice",
            "--name",
            "v3",
            "--out",
            str(tmp_path),
            "--acoustic",
            str(checkpoints["teacher"]),
            "--student",
            str(checkpoints["student"]),
        ],
    )
    assert swapped.exit_code == 2 and "expected 'acoustic'" in swapped.output
    novocoder = runner.invoke(app, args)
    assert novocoder.exit_code == 2 and "needs a vocoder" in novocoder.output


def test_export_check_command(tiny_copy):
    from service.cli import app

    ok = runner.invoke(app, ["export", "check", str(tiny_copy)])
    assert ok.exit_code == 0, ok.output
    assert "sha256 ok" in ok.output
    (tiny_copy / "acoustic.onnx").write_bytes(b"garbage")
    bad = runner.invoke(app, ["export", "check", str(tiny_copy)])
    assert bad.exit_code == 2 and "acoustic.onnx" in bad.output and "Traceback" not in bad.output


# -- student context: exact pieces ------------------------------------------------------------------


@pytest.fixture(scope="module")
def wide_voice(tmp_path_factory):
    """A bundle whose student sees several frames back (receptive field > 2 hops) and two
    conditioning layers, to check that the recorded context makes piecewise vocoding exact."""
    from export.bundle import ModelSource, student_context, write_bundle
    from model.student import StudentConfig, StudentIAF

    audio, table, acoustic, _, _ = make_fixture_bundle.build_models()
    torch.manual_seed(0)
    cfg = StudentConfig(
        n_mels=audio.n_mels,
        cond_channels=4,
        cond_layers=2,
        upsample="linear",
        flow_layers=(7, 7),
        dilation_cycle=7,
        residual_channels=4,
        gate_channels=4,
        kernel_size=3,
    )
    student = StudentIAF(cfg)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    assert cfg.receptive_field > 2 * cfg.hop_length
    out = tmp_path_factory.mktemp("wide")
    write_bundle(
        out,
        "wide",
        audio=audio.to_dict(),
        symbols=table.to_dict(),
        speakers=make_fixture_bundle.SPEAKERS,
        acoustic=ModelSource(acoustic),
        student=ModelSource(student.eval()),
        check=False,
    )
    voice = Voice.load(out / "wide", [CPU])
    assert voice.manifest.context["student"] == student_context(student)
    return voice


def test_student_pieces_equal_one_whole_run(wide_voice, monkeypatch):
    import numpy as np

    from core.excitation import excitation

    rng = np.random.default_rng(0)
    mel = rng.normal(-5.0, 1.5, (20, 23)).astype(np.float32)
    z = rng.standard_normal(23 * 200).astype(np.float32)
    f0 = np.where(np.arange(23) % 9 < 6, np.linspace(90.0, 180.0, 23), 0.0)  # voiced runs, a glide
    exc = excitation(f0, 200, 16000)  # (3, T): the phase of the whole utterance
    whole = wide_voice.student.run(
        z[None], mel[None], wide_voice.speaker_feed(wide_voice.student, [0]), exc[None]
    )[0][0]
    pieces = wide_voice.vocode_pieces(mel, 0, z, frames=4, excitation=exc)
    np.testing.assert_allclose(pieces, whole, atol=1e-5)
    assert np.array_equal(wide_voice.vocode([mel], [0], [z], [f0])[0], pieces)  # vocode: the same path
    silent = wide_voice.student.run(
        z[None], mel[None], wide_voice.speaker_feed(wide_voice.student, [0]), np.zeros_like(exc)[None]
    )[0][0]
    assert np.abs(silent - whole).max() > 1e-3  # the excitation matters to this student
    # the excitation's phase restarted in every piece (computed per piece) shows at the seams
    restarted = np.concatenate([excitation(f0[a : a + 4], 200, 16000) for a in range(0, 23, 4)], axis=1)
    assert np.abs(wide_voice.vocode_pieces(mel, 0, z, frames=4, excitation=restarted) - whole).max() > 1e-3
    z, exc = z, np.zeros_like(exc)  # the context checks below: unvoiced
    whole = wide_voice.student.run(
        z[None], mel[None], wide_voice.speaker_feed(wide_voice.student, [0]), exc[None]
    )[0][0]
    np.testing.assert_allclose(wide_voice.vocode_pieces(mel, 0, z, frames=4), whole, atol=1e-5)
    monkeypatch.setattr(wide_voice, "_context", (0, 0))  # without the context the seams show
    assert np.abs(wide_voice.vocode_pieces(mel, 0, z, frames=4) - whole).max() > 1e-3
    left, right = wide_voice.manifest.context["student"]
    monkeypatch.setattr(wide_voice, "_context", (left, right - 1))  # one look-ahead frame short
    assert np.abs(wide_voice.vocode_pieces(mel, 0, z, frames=4) - whole).max() > 1e-3
    monkeypatch.setattr(wide_voice, "_context", (left - 3, right))  # the receptive field cut
    assert np.abs(wide_voice.vocode_pieces(mel, 0, z, frames=4) - whole).max() > 1e-5
