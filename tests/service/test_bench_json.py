"""``parawave bench --json`` on the committed tiny bundle: one JSON object on stdout with every field
of ``service/bench_report.py`` filled in, the progress lines on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service import bench_report
from service.cli import app

VOICES = str(Path(__file__).resolve().parents[1] / "fixtures" / "voices")
BENCH = ["bench", "--voices-dir", VOICES, "--runs", "2", "--teacher-seconds", "0.05", "--batch", "1,2"]


def test_bench_json_is_one_object_with_every_number():
    result = CliRunner().invoke(app, [*BENCH, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # the whole of stdout: no prose around it
    assert list(doc) == list(bench_report.FIELDS)
    assert [k for k, val in doc.items() if val is None] == []  # the tiny bundle has student and teacher
    assert doc["version"] == 1 and (doc["voice"], doc["speaker"]) == ("tiny", "alpha")
    assert doc["sample_rate"] == 16000 and doc["device"] == "cpu"
    assert doc["providers"] == {"student": "CPUExecutionProvider", "teacher": "CPUExecutionProvider"}
    assert doc["host"]["cpu_usable"] >= 1 and "gpus" in doc["host"] and "load" in doc["host"]
    assert doc["input"]["text_front_end"] is True and doc["input"]["audio_s"] > 0
    rtf = doc["rtf"]
    assert rtf["input"] == "text" and rtf["runs"] == 2
    assert 0 < rtf["best"] <= rtf["median"] and rtf["cpu_s_per_audio_s"] > 0
    assert 0 < rtf["ttfa_s"]["best"] <= rtf["ttfa_s"]["median"]
    student = doc["student"]
    assert [(s["precision"], s["batch"], s["served"]) for s in student] == [
        ("fp32", 1, True),
        ("fp32", 2, True),
    ]
    for s in student:
        assert s["samples_per_s"] >= s["median_samples_per_s"] > 0
        assert s["utterance_s"] == pytest.approx(doc["input"]["audio_s"], abs=0.02)
        # the rate is the batch's samples over the best time
        assert s["samples_per_s"] == pytest.approx(
            s["batch"] * s["utterance_s"] * 16000 / (s["best_ms"] / 1000)
        )
    teacher = doc["teacher"]
    assert teacher["audio_s"] == pytest.approx(0.05, abs=0.02) and teacher["samples_per_s"] > 0
    assert doc["student_over_teacher"]["ratio"] == pytest.approx(
        student[0]["samples_per_s"] / teacher["samples_per_s"]
    )
    assert doc["peak_rss_mib"] > 0
    assert "voice tiny/alpha" in result.stderr  # the human lines go to stderr


def test_bench_without_json_keeps_the_table():
    result = CliRunner().invoke(app, BENCH)
    assert result.exit_code == 0, result.output
    assert "text->audio first audio (TTFA)" in result.stdout and "peak RSS" in result.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)


def test_a_record_with_a_missing_or_unknown_field_is_refused():
    record = bench_report.new_record("v", "s", 16000, "cpu", {"student": "CPUExecutionProvider"})
    assert json.loads(bench_report.to_json(record))["student"] == []
    del record["teacher"]
    with pytest.raises(ValueError, match="missing \\['teacher'\\]"):
        bench_report.to_json(record)
    with pytest.raises(ValueError, match="unknown \\['extra'\\]"):
        bench_report.to_json({**bench_report.new_record("v", "s", 1, "cpu", {}), "extra": 1})


def test_bench_json_without_torch_or_the_text_front_end(python_without):
    """On a GPU host without the text front end, the numbers say that ids stood in for the text."""
    code = (
        "from service.cli import app\n"
        f"app(['bench', '--voices-dir', {VOICES!r}, '--runs', '1', '--teacher-seconds', '0', '--json'])\n"
    )
    out = python_without(code, blocked=("torch", "num2words", "phonemizer", "espeakng_loader"), timeout=180)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["input"]["text_front_end"] is False and doc["rtf"]["input"] == "ids"
    assert doc["teacher"] is None and doc["student_over_teacher"] is None
    assert doc["rtf"]["ttfa_s"]["best"] > 0
    assert "text front end unavailable" in out.stderr
