"""``parawave say`` and ``parawave bench`` on the committed tiny bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from service.audio import available_formats
from service.cli import app

VOICES = str(Path(__file__).resolve().parents[1] / "fixtures" / "voices")
runner = CliRunner()


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_say_writes_the_format_of_the_suffix(tmp_path, suffix):
    fmt = {".wav": "wav", ".flac": "flac", ".ogg": "opus", ".mp3": "mp3"}[suffix]
    if fmt not in available_formats():
        pytest.skip(f"this libsndfile cannot write {fmt}")
    out = tmp_path / f"out{suffix}"
    result = runner.invoke(
        app, ["say", "Hello there. Bye.", "-o", str(out), "--voices-dir", VOICES, "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    info = sf.info(str(out))
    assert info.samplerate == 16000 and info.frames > 0
    assert "RTF" in result.output


def test_say_teacher_speaker_speed(tmp_path):
    out = tmp_path / "t.wav"
    args = ["say", "Hi.", "-o", str(out), "--voices-dir", VOICES, "--model", "teacher", "--speaker", "beta"]
    result = runner.invoke(app, [*args, "--speed", "1.5"])
    assert result.exit_code == 0, result.output
    assert "teacher" in result.output and "tiny/beta" in result.output
    assert sf.info(str(out)).frames > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speaker", "nobody"], "no speaker 'nobody'"),
        (["--voice", "nope"], "no voice 'nope'"),
        (["--model", "both"], "--model must be student or teacher"),
        (["-o", "out.xyz"], "unknown audio suffix"),
    ],
)
def test_say_bad_options_are_one_line_errors(tmp_path, args, message):
    result = runner.invoke(app, ["say", "Hi.", "-o", str(tmp_path / "o.wav"), "--voices-dir", VOICES, *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("value", ["12.5", "-13", "nan", "inf"])
def test_say_pitch_out_of_range_is_one_line(tmp_path, value):
    out = tmp_path / "o.wav"
    result = runner.invoke(app, ["say", "Hi.", "-o", str(out), "--voices-dir", VOICES, f"--pitch={value}"])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: --pitch must be between -12 and 12 semitones, got ")
    assert not out.exists()


@pytest.mark.parametrize("value", ["-12", "12", "2.5"])
def test_say_pitch_in_range(tmp_path, value):
    out = tmp_path / "o.wav"
    result = runner.invoke(app, ["say", "Hi.", "-o", str(out), "--voices-dir", VOICES, f"--pitch={value}"])
    assert result.exit_code == 0, result.output
    assert sf.info(str(out)).frames > 0


def test_say_unspeakable_text(tmp_path):
    result = runner.invoke(app, ["say", "...", "-o", str(tmp_path / "o.wav"), "--voices-dir", VOICES])
    assert result.exit_code == 2 and "nothing to speak" in result.output


def test_say_without_a_bundle(tmp_path):
    result = runner.invoke(app, ["say", "Hi.", "-o", str(tmp_path / "o.wav"), "--voices-dir", str(tmp_path)])
    assert result.exit_code == 2 and "no voice bundle" in result.output


def test_bench_prints_every_measurement():
    result = runner.invoke(
        app, ["bench", "--voices-dir", VOICES, "--runs", "2", "--teacher-seconds", "0.1", "--batch", "1,2"]
    )
    assert result.exit_code == 0, result.output
    for row in (
        "text->audio RTF (acoustic+student)",
        "student samples/s (batch 1)",
        "student samples/s (batch 2)",
        "teacher samples/s (batch 1)",
        "student (batch 1) / teacher speed",
        "peak RSS",
        "CPUExecutionProvider",
    ):
        assert row in result.output, result.output


def test_bench_runs_without_torch_or_the_text_front_end(python_without):
    """A GPU host has onnxruntime but neither torch nor the text front end's packages: bench still
    measures the graphs (random phoneme ids stand in for the text)."""
    code = (
        "from service.cli import app\n"
        f"app(['bench', '--voices-dir', {VOICES!r}, '--runs', '1', '--teacher-seconds', '0.05'])\n"
    )
    out = python_without(code, blocked=("torch", "num2words", "phonemizer", "espeakng_loader"), timeout=180)
    assert out.returncode == 0, out.stderr
    assert "text front end unavailable" in out.stdout
    assert "ids->audio RTF (acoustic+student)" in out.stdout
    assert "student (batch 1) / teacher speed" in out.stdout


def test_say_speaks_a_blend(tmp_path):
    """--speaker takes a blend of the bundle's speakers; the file is the engine's blend for that seed."""
    import numpy as np

    from service.loading import load_engine
    from service.types import SynthesisRequest

    out = tmp_path / "b.wav"
    args = ["say", "Hello there.", "-o", str(out), "--voices-dir", VOICES, "--seed", "3"]
    result = runner.invoke(app, [*args, "--speaker", "alpha(1)+beta(3)"])
    assert result.exit_code == 0, result.output
    assert "voice tiny/alpha(1)+beta(3)" in result.output
    engine = load_engine(Path(VOICES), device="cpu")
    request = SynthesisRequest("Hello there.", "tiny", "alpha", seed=3, blend=(("alpha", 1.0), ("beta", 3.0)))
    want = np.concatenate([c.audio for c in engine.synthesize(request)])
    got, _ = sf.read(str(out), dtype="int16")  # 16-bit wav, written as round(x * 32767) (service.audio)
    np.testing.assert_allclose(got, np.round(np.clip(want, -1, 1) * 32767), atol=1)
    bad = runner.invoke(app, [*args, "--speaker", "alpha+nobody"])
    assert bad.exit_code == 2 and "unknown voice 'nobody' in the blend" in bad.output
