"""``parawave eval``: metric functions on known inputs, pocketsphinx on real flite speech, and the
command end to end on the tiny random-weight fixture bundle and a flite-rendered corpus."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation import metrics as M
from service.cli import app

FLITE = shutil.which("flite")
needs_flite = pytest.mark.skipif(FLITE is None, reason="flite is not installed (apt-get install flite)")
FIXTURE_VOICES = Path(__file__).resolve().parents[1] / "fixtures" / "voices"
runner = CliRunner()

# (id, text, flite voice, bundle speaker, split); the fixture bundle's speakers are alpha and beta
CLIPS = [
    ("a1", "The cat sat on the mat.", "slt", "alpha", "test"),
    ("a2", "It is 2 o'clock.", "slt", "alpha", "test"),
    ("a3", "Good morning.", "slt", "alpha", "test"),  # beyond --limit 2
    ("b1", "Open the door, please.", "rms", "beta", "test"),
    ("b2", "We walked home.", "rms", "beta", "test"),
    ("t1", "Not a test clip.", "rms", "beta", "train"),
]


def flite_wav(text: str, voice: str, path: Path) -> Path:
    subprocess.run([FLITE, "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A 6-clip, 2-speaker LJSpeech-format corpus spoken by flite (16 kHz)."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "wavs").mkdir()
    from model.text import normalize

    meta, splits = [], []
    for clip_id, text, fv, speaker, split in CLIPS:
        flite_wav(text, fv, root / "wavs" / f"{clip_id}.wav")
        meta.append(f"{clip_id}|{text}|{normalize(text)}|{speaker}")
        splits.append(f"{clip_id}|{split}")
    (root / "metadata.csv").write_text("\n".join(meta) + "\n", encoding="utf-8")
    (root / "splits.csv").write_text("\n".join(splits) + "\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------- metrics


def test_words_normalizes_both_sides_alike():
    assert M.words("It is 2 o'clock!") == "it is two o'clock"
    assert M.words("Mr. Smith, 'quoted' — yes.") == "mister smith quoted yes"


def test_wer_of_known_strings():
    assert M.wer_of(["the cat sat"], ["the cat sat"]) == 0.0
    assert M.wer_of(["the cat sat"], ["The cat, sat."]) == 0.0  # case and punctuation ignored
    assert M.wer_of(["the cat sat"], ["the dog sat"]) == pytest.approx(1 / 3)
    # pooled over clips: (1 deletion + 2 deletions) / (3 + 2 words), not the mean of 1/3 and 1
    assert M.wer_of(["the cat sat", "a b"], ["the cat", ""]) == pytest.approx(3 / 5)
    assert M.wer_of(["two cats"], ["2 cats"]) == 0.0  # numbers as words on both sides
    assert np.isnan(M.wer_of([""], ["x"]))  # no reference words: NaN


def test_mcd_zero_for_identical_and_grows_with_noise():
    rng = np.random.default_rng(0)
    mel = rng.normal(-4.0, 1.5, size=(20, 50)).astype(np.float32)  # (n_mels, F)
    assert M.mcd(mel, mel) == 0.0
    small = M.mcd(mel, mel + 0.1 * rng.standard_normal(mel.shape))
    big = M.mcd(mel, mel + 1.0 * rng.standard_normal(mel.shape))
    assert 0.0 < small < big
    # a level change is c0 only, which MCD leaves out
    assert M.mcd(mel, mel + 3.0) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        M.mcd(mel, mel[:, :40])  # not frame-aligned


def test_mcd_formula_on_one_coefficient():
    # a pure c1 difference d: MCD = 10/ln10 * sqrt(2 d^2)
    n_mels, d = 20, 0.5
    basis = np.cos(np.pi * (np.arange(n_mels) + 0.5) / n_mels) * np.sqrt(2.0 / n_mels)  # ortho DCT-II row 1
    a = np.zeros((n_mels, 3))
    b = a + d * basis[:, None]
    assert M.mcd(b, a) == pytest.approx(10 / np.log(10) * np.sqrt(2) * d, rel=1e-6)


def test_duration_stats():
    s = M.duration_stats([1.0, 2.2, 3.0, 5.0], [1.0, 2.0, 3.3, 4.0])
    assert s["clips"] == 4
    assert s["within_15pct"] == pytest.approx(0.75)
    assert s["median_abs_rel_error"] == pytest.approx(np.median([0.0, 0.1, 0.3 / 3.3, 0.25]))


def test_speech_frames_leave_out_silence():
    mel = np.full((20, 10), np.log(1e-5))
    mel[:, 3:7] = -1.0
    assert M.speech_frames(mel).tolist() == [False] * 3 + [True] * 4 + [False] * 3


# ------------------------------------------------------------------------------------- ASR


@needs_flite
def test_pocketsphinx_understands_flite_and_not_noise(tmp_path):
    from model.data.audio import load_wav

    text = "The cat sat on the mat near the door."
    audio, sr = load_wav(flite_wav(text, "slt", tmp_path / "s.wav"))
    hyp = M.transcribe(audio, sr)
    assert M.wer_of([text], [hyp]) < 0.5, hyp
    # the same check fails on audio that does not say it (another sentence, and noise)
    other, sr2 = load_wav(flite_wav("Bring me seven yellow apples tomorrow.", "slt", tmp_path / "o.wav"))
    assert M.wer_of([text], [M.transcribe(other, sr2)]) >= 0.5
    noise = 0.1 * np.random.default_rng(0).standard_normal(sr).astype(np.float32)
    assert M.wer_of([text], [M.transcribe(noise, sr)]) >= 0.5
    # another rate is resampled to 16 kHz first
    from model.data.features import resample

    assert M.wer_of([text], [M.transcribe(resample(audio, sr, 22050), 22050)]) < 0.5


@needs_flite
def test_a_transcript_does_not_depend_on_what_was_transcribed_before(tmp_path):
    """The shared decoder's feature state is reset per utterance: the same clip read after a quiet
    sentence and loud noise gets the transcript it gets from a fresh decoder. (Without the reset the
    live cepstral mean carries over, and every one of these slightly noisy clips reads differently.)"""
    from model.data.audio import load_wav

    rng = np.random.default_rng(1)
    quiet, sr_q = load_wav(flite_wav("Bring me seven yellow apples tomorrow.", "slt", tmp_path / "q.wav"))
    history = [(0.02 * quiet, sr_q), (0.5 * rng.standard_normal(4 * 16000).astype(np.float32), 16000)]
    for i, (text, voice) in enumerate(
        [("The cat sat on the mat near the door.", "slt"), ("Open the door, please.", "rms")]
    ):
        audio, sr = load_wav(flite_wav(text, voice, tmp_path / f"s{i}.wav"))
        audio = audio + 0.01 * rng.standard_normal(len(audio)).astype(np.float32)
        M._decoder.cache_clear()
        fresh = M.transcribe(audio, sr)
        for x, rate in history:
            M.transcribe(x, rate)
        assert M.transcribe(audio, sr) == fresh, text


@needs_flite
def test_copy_metrics_perfect_for_the_recording_and_worse_for_noise(tmp_path):
    from model.data.audio import load_wav
    from model.data.config import AudioConfig
    from model.data.features import log_mel

    audio, sr = load_wav(flite_wav("Open the door, please.", "rms", tmp_path / "r.wav"))
    noisy = audio + 0.05 * np.random.default_rng(1).standard_normal(audio.shape).astype(np.float32)
    assert M.pesq_wb(audio, audio, sr) > 4.5 and M.stoi_of(audio, audio, sr) > 0.99
    assert M.pesq_wb(audio, noisy, sr) < 3.0 and M.stoi_of(audio, noisy, sr) < 0.95
    cfg = AudioConfig(n_mels=80)
    ref = log_mel(audio, cfg)  # (80, F)
    mask = M.speech_frames(ref)
    assert 0 < mask.sum() < mask.size  # flite's leading/trailing silence is left out
    assert M.mcd(log_mel(audio, cfg), ref, mask=mask) == 0.0
    assert M.mcd(log_mel(noisy, cfg), ref, mask=mask) > 1.0


# ------------------------------------------------------------------------------------- the command


def test_find_bundle_by_name_by_path_or_the_first(tmp_path, monkeypatch):
    from evaluation.errors import EvalError
    from evaluation.voices import find_bundle

    tiny = FIXTURE_VOICES / "tiny"
    assert find_bundle("tiny", FIXTURE_VOICES) == tiny
    monkeypatch.chdir(FIXTURE_VOICES.parent)
    assert find_bundle("voices/tiny", tmp_path).resolve() == tiny  # a bundle folder itself
    assert find_bundle(None, FIXTURE_VOICES) == min(p.parent for p in FIXTURE_VOICES.glob("*/voice.json"))
    with pytest.raises(EvalError, match=r"no voice 'nosuch' in .* \(voices: .*tiny"):
        find_bundle("nosuch", FIXTURE_VOICES)
    with pytest.raises(EvalError, match="no voice bundle in"):
        find_bundle(None, tmp_path)


@needs_flite
def test_eval_end_to_end(tmp_path, corpus):
    out = tmp_path / "eval"
    args = ["eval", "--voice", "tiny", "--voices-dir", str(FIXTURE_VOICES), "--data", str(corpus)]
    args += ["--limit", "2", "--teacher-limit", "1", "--out", str(out), "--seed", "3"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "| student |" in res.output and "Targets:" in res.output

    report = json.loads((out / "eval.json").read_text())
    assert set(report) == {"config", "summary", "targets", "clips", "files"}
    cfg = report["config"]
    for key in ("voice", "voice_json_sha256", "files_sha256", "steps", "corpus", "split", "clip_ids",
                "teacher_clip_ids", "seed", "versions", "asr", "mcd"):  # fmt: skip
        assert key in cfg, key
    assert cfg["voice"] == "tiny" and cfg["split"] == "test"
    assert cfg["clip_ids"] == ["a1", "a2", "b1", "b2"]  # 2 per speaker, test split only
    assert cfg["teacher_clip_ids"] == ["a1", "b1"]
    assert cfg["versions"]["pocketsphinx"]

    summary = report["summary"]
    assert set(summary["systems"]) == {"reference", "student", "teacher"}
    assert set(summary["speakers"]) == {"alpha", "beta"}
    ref, student, teacher = (summary["systems"][s] for s in ("reference", "student", "teacher"))
    assert (ref["clips"], student["clips"], teacher["clips"]) == (4, 4, 2)
    assert ref["wer"] < 0.5  # flite is understood; the random-weight voice is noise
    for key in (
        "wer",
        "pesq_wb",
        "stoi",
        "mcd_db",
        "rtf",
        "durations",
        "hnr_db",
        "copy_hnr_db",
        "f0_rmse_cents",
        "copy_wer",
    ):
        assert key in student and key in teacher, key
    assert student["mcd_db"] > 0 and 0 <= student["stoi"] <= 1 and student["rtf"] > 0
    assert student["copy_wer"] >= 0.5  # random weights vocode the recording's mel into noise too
    assert ref["hnr_db"] > 5  # flite's recordings are periodic; noise is not
    assert not student["copy_hnr_db"] > ref["hnr_db"]  # random weights: noise (or not measurable)
    assert 0 <= student["voicing_error"] <= 1
    assert set(student["durations"]) >= {"mean_abs_rel_error", "median_abs_rel_error", "within_15pct"}
    assert summary["teacher_clips"]["student"]["clips"] == 2
    assert [t["name"].split(" (")[0] for t in report["targets"]] == [
        "student WER - reference WER",
        "student PESQ-WB",
        "student STOI",
        "|student HNR - reference HNR|",
        "teacher PESQ-WB - student PESQ-WB",
    ]
    assert report["targets"][2]["pass"] is False  # noise is not intelligible

    clip = report["clips"][0]
    assert set(clip["transcripts"]) == {"reference", "student", "teacher"}
    assert set(clip["copy_transcripts"]) == {"student", "teacher"}
    assert clip["reference_seconds"] > 0.5

    md = (out / "eval.md").read_text()
    assert md in res.output
    for row in ("| reference |", "| student |", "| teacher |", "PASS" if "PASS" in md else "FAIL"):
        assert row in md
    for png in ("spectrograms.png", "durations.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    examples = sorted(p.name for p in (out / "examples").iterdir())
    assert "alpha_a1_reference.wav" in examples and "beta_b1_student_tts.wav" in examples
    assert "alpha_a1_student_copy.wav" in examples and len(examples) == 2 * 5

    # same seed, same numbers (noise is seeded per clip)
    again = tmp_path / "again"
    res2 = runner.invoke(app, [*args[:-4], "--teacher-limit", "0", "--out", str(again), "--seed", "3"])
    assert res2.exit_code == 0, res2.output
    r2 = json.loads((again / "eval.json").read_text())
    assert "teacher" not in r2["summary"]["systems"]
    assert r2["summary"]["systems"]["student"]["mcd_db"] == pytest.approx(student["mcd_db"])
    assert r2["summary"]["systems"]["student"]["stoi"] == pytest.approx(student["stoi"])


def one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        (["--voice", "nosuch"], "no voice 'nosuch'"),
        (["--voice", "tiny", "--data", "/nonexistent/corpus"], "no such folder"),
        (["--voice", "tiny", "--split", "val"], "'val' split has no clips"),
        (["--voice", "tiny", "--speakers", "gamma"], "--speakers gamma"),
    ],
)
def test_user_errors_are_one_line(tmp_path, extra, expect):
    corpus = tmp_path / "c"
    (corpus / "wavs").mkdir(parents=True)
    (corpus / "metadata.csv").write_text("x1|Hello.|Hello.|alpha\n")
    (corpus / "splits.csv").write_text("x1|test\n")
    args = ["eval", "--voices-dir", str(FIXTURE_VOICES), "--data", str(corpus), "--out", str(tmp_path / "o")]
    res = runner.invoke(app, args + extra)  # a later --data wins
    assert expect in one_line_error(res)


def test_missing_eval_packages_is_one_line(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pesq" else real(name, *a)
    )
    res = runner.invoke(app, ["eval", "--voice", "tiny", "--data", str(tmp_path)])
    assert "pesq" in one_line_error(res) and ".[eval]" in res.output
