"""model.data.ingest and ``parawave data ingest``: every kind of problem is named, nothing crashes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy.io import wavfile
from typer.testing import CliRunner

from model.data.audio import save_wav
from model.data.ingest import IngestOptions, parse_metadata, validate_corpus
from service.cli import app

SR = 16_000
runner = CliRunner()


def voiced(seconds: float = 1.0, sr: int = SR, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """(T,) a tone plus noise: loud enough to be speech-like, far from full scale."""
    n = int(seconds * sr)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    return (amp * np.sin(2 * np.pi * (150 + 40 * seed) * t) + 0.02 * rng.standard_normal(n)).astype(
        np.float32
    )


def write_corpus(root, n=3, speakers=None, sr=SR):
    """A valid corpus of ``n`` one-second clips c0..c{n-1}; returns the metadata lines."""
    (root / "wavs").mkdir(parents=True)
    lines = []
    for i in range(n):
        save_wav(root / "wavs" / f"c{i}.wav", voiced(seed=i, sr=sr), sr)
        lines.append(f"c{i}|Text {i}.|Text {i}." + (f"|{speakers[i]}" if speakers else ""))
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return lines


def kinds(report):
    return {(p.where, p.kind) for p in report.problems}


def test_valid_corpus(tmp_path):
    write_corpus(tmp_path / "corp", n=3)
    report = validate_corpus(tmp_path / "corp")
    assert report.ok, report.problems
    assert report.problems == []
    assert report.clips == report.valid_clips == 3
    assert report.seconds == pytest.approx(3.0)
    assert report.sample_rates == {SR: 3}
    assert set(report.speakers) == {"corp"}  # single speaker: named after the folder
    assert report.speakers["corp"].clips == 3


def test_cli_names_missing_empty_and_malformed(tmp_path):
    root = tmp_path / "broken"
    lines = write_corpus(root, n=4)
    (root / "wavs" / "c1.wav").unlink()  # missing wav
    save_wav(root / "wavs" / "c2.wav", np.zeros(0, dtype=np.float32), SR)  # valid header, no samples
    lines.insert(2, "this line has no separators")  # malformed: becomes line 3
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")

    result = runner.invoke(app, ["data", "ingest", str(root), "--no-progress"])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "c1: missing_wav" in out
    assert "c2: empty_audio" in out
    assert "metadata.csv:3: field_count" in out
    assert "c0:" not in out and "c3:" not in out  # the good clips are not blamed
    assert "INVALID" in out

    as_json = runner.invoke(app, ["data", "ingest", str(root), "--json", "--no-progress"])
    assert as_json.exit_code == 1
    data = json.loads(as_json.stdout)
    assert data["ok"] is False and data["n_errors"] == 3
    assert {(p["where"], p["kind"]) for p in data["problems"]} == {
        ("c1", "missing_wav"),
        ("c2", "empty_audio"),
        ("metadata.csv:3", "field_count"),
    }
    assert data["clips"] == 4 and data["valid_clips"] == 2


def test_cli_valid_exit_zero_and_usage_errors(tmp_path):
    write_corpus(tmp_path / "ok", n=2)
    result = runner.invoke(app, ["data", "ingest", str(tmp_path / "ok"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "0 errors, 0 warnings: VALID" in result.output

    missing = runner.invoke(app, ["data", "ingest", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert "not a directory" in missing.output
    assert "Traceback" not in missing.output

    (tmp_path / "empty").mkdir()
    no_meta = runner.invoke(app, ["data", "ingest", str(tmp_path / "empty"), "--no-progress"])
    assert no_meta.exit_code == 1
    assert "missing_metadata" in no_meta.output


def test_metadata_line_problems(tmp_path):
    root = tmp_path / "m"
    write_corpus(root, n=2)
    meta = root / "metadata.csv"
    meta.write_bytes(
        meta.read_bytes()
        + b"c0|Again.|Again.\n"  # line 3: duplicate id
        + b"|No id.|No id.\n"  # 4: empty id
        + b"c9||\n"  # 5: empty text
        + b"../c1|Escape.|Escape.\n"  # 6: path in id
        + b"a|b|c|d|e\n"  # 7: too many fields
        + b"c8|\xff\xfe|x\n"  # 8: not UTF-8
        + b"c1-two|Only text\n"  # 9: two fields: usable, warned
    )
    rows, problems = parse_metadata(meta)
    got = {(p.where, p.kind, p.severity) for p in problems}
    assert got == {
        ("metadata.csv:3", "duplicate_id", "error"),
        ("metadata.csv:4", "empty_field", "error"),
        ("metadata.csv:5", "empty_field", "error"),
        ("metadata.csv:6", "bad_id", "error"),
        ("metadata.csv:7", "field_count", "error"),
        ("metadata.csv:8", "encoding", "error"),
        ("metadata.csv:9", "no_normalized_text", "warning"),
    }
    assert [r.id for r in rows] == ["c0", "c1", "c1-two"]
    assert rows[2].normalized == "Only text"
    report = validate_corpus(root)
    assert ("c1-two", "missing_wav") in kinds(report)  # the usable row is still checked
    assert "duplicate id" not in " ".join(p.message for p in report.problems if p.where == "c0")


def test_audio_problems(tmp_path):
    root = tmp_path / "a"
    write_corpus(root, n=1)
    wavs = root / "wavs"
    save_wav(wavs / "clipped.wav", np.clip(4 * voiced(seed=1), -1, 1), SR)
    save_wav(wavs / "rate.wav", voiced(sr=22_050), 22_050)
    save_wav(wavs / "silent.wav", np.zeros(SR, dtype=np.float32), SR)
    save_wav(wavs / "short.wav", voiced(0.2), SR)
    save_wav(wavs / "long.wav", voiced(3.0), SR)
    (wavs / "zero.wav").write_bytes(b"")
    (wavs / "corrupt.wav").write_bytes(b"RIFF" + bytes(range(200)))
    nan = voiced()
    nan[10] = np.nan
    wavfile.write(wavs / "nan.wav", SR, nan)  # float wav: NaN survives on disk
    wavfile.write(wavs / "stereo.wav", SR, np.stack([voiced(), voiced(seed=2)], axis=1))
    save_wav(wavs / "orphan.wav", voiced(), SR)
    ids = ["clipped", "rate", "silent", "short", "long", "zero", "corrupt", "nan", "stereo"]
    with open(root / "metadata.csv", "a") as f:
        f.writelines(f"{i}|x|x\n" for i in ids)

    report = validate_corpus(root, IngestOptions(max_seconds=2.0))
    by = {(p.where, p.kind): p.severity for p in report.problems}
    assert by == {
        ("clipped", "clipped_audio"): "error",
        ("rate", "sample_rate"): "error",
        ("silent", "silent_audio"): "error",
        ("short", "too_short"): "warning",
        ("long", "too_long"): "warning",
        ("zero", "empty_audio"): "error",
        ("corrupt", "unreadable_wav"): "error",
        ("nan", "nonfinite_audio"): "error",
        ("stereo", "multichannel"): "warning",
        ("orphan", "orphan_wav"): "warning",
    }
    assert report.valid_clips == 1 + 3  # c0, short, long, stereo
    assert report.sample_rates == {SR: 7, 22_050: 1}  # the 0-byte and corrupt files have no rate
    assert report.orphans == 1

    # the same rate is fine when it is the expected one; a mild peak is not clipping
    assert ("rate", "sample_rate") not in kinds(validate_corpus(root, IngestOptions(sample_rate=22_050)))
    assert ("c0", "clipped_audio") not in kinds(report)


def test_clip_fraction_threshold(tmp_path):
    root = tmp_path / "c"
    write_corpus(root, n=1)
    x = voiced()
    x[:8] = 1.0  # 8 of 16000 samples at full scale: 0.05 %
    save_wav(root / "wavs" / "c0.wav", x, SR)
    assert validate_corpus(root).ok
    assert ("c0", "clipped_audio") in kinds(validate_corpus(root, IngestOptions(max_clip_fraction=1e-4)))


def test_speakers_and_splits(tmp_path):
    root = tmp_path / "multi"
    write_corpus(root, n=4, speakers=["rms", "rms", "slt", "slt"])
    (root / "splits.csv").write_text("c0|train\nc1|val\nc2|dev\nzz|test\nc0|test\n")
    report = validate_corpus(root)
    assert {k: (v.clips, round(v.seconds, 3)) for k, v in report.speakers.items()} == {
        "rms": (2, 2.0),
        "slt": (2, 2.0),
    }
    assert report.splits_source == "splits.csv"
    assert report.splits == {"train": 3, "val": 1}  # c0, and c2/c3 unlisted count as train
    got = kinds(report)
    assert ("splits.csv:3", "unknown_split") in got
    assert ("splits.csv:5", "duplicate_id") in got
    assert ("zz", "split_unknown_id") in got
    assert ("c3", "split_missing") in got
    assert not report.ok

    result = runner.invoke(app, ["data", "ingest", str(root), "--no-progress"])
    assert "speaker rms: 2 clips" in result.output and "speaker slt: 2 clips" in result.output
    assert "splits (splits.csv): train 3, val 1, test 0" in result.output


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (apt-get install flite)")
def test_flite_render_is_valid(tmp_path):
    from model.data.render import render_corpus

    text = tmp_path / "val.txt"
    text.write_text("a1|The cat sat on the mat.\na2|Good morning, everyone.\n")
    render_corpus([text], ["rms"], tmp_path / "out", jobs=2, progress=False)
    report = validate_corpus(tmp_path / "out")
    assert report.ok, report.problems
    assert report.problems == []
    assert report.splits == {"val": 2}
