"""recipes/flite-voice.sh end to end at toy size: flite renders a few lines for two speakers, every
model trains a few steps, the export writes a bundle the runtime loads and speaks with, and the
evaluation writes its report. The real configurations differ only in the committed .env files."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "recipes" / "flite-voice.sh"
LINES = {
    "train": [
        "The quick brown fox jumps over the lazy dog.",
        "She sells sea shells by the sea shore.",
        "A stitch in time saves nine.",
        "Every cloud has a silver lining.",
    ],
    "val": ["Actions speak louder than words."],
    "test": ["Better late than never.", "Practice makes perfect."],
}

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    text = tmp_path / "text"
    text.mkdir(exist_ok=True)
    for split, lines in LINES.items():
        (text / f"{split}.txt").write_text(
            "".join(f"LJ9{split[:2]}-{i:04d}|{line}\n" for i, line in enumerate(lines)), encoding="utf-8"
        )
    env = dict(os.environ)
    env.update(
        PARAWAVE=f"{sys.executable} -m service.cli",
        TEXT_DIR=str(text),
        CORPUS=str(tmp_path / "corpus"),
        RUN=str(tmp_path / "run"),
        VOICES_DIR=str(tmp_path / "voices"),
        VOICE="toy",
        SPEAKERS="slt,rms",
        TRAIN_LINES="4",
        TEST_LINES="2",
        JOBS="2",
        ACOUSTIC_ARGS="--preset tiny --max-steps 2",
        TEACHER="1",
        DISTILL="1",
        TEACHER_ARGS="--preset tiny --max-steps 2",
        STUDENT_ARGS="--preset tiny --max-steps 2",
        EVAL_ARGS="--limit 1 --teacher-limit 1",
    )
    env.update(extra)
    return env


def _run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # ~1 minute: three trainers, two exports' parity checks, the evaluation
def test_every_stage_runs_and_the_bundle_speaks(tmp_path):
    env = _env(tmp_path)
    done = _run(env, "all")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    corpus = tmp_path / "corpus"
    meta = (corpus / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert len(meta) == 2 * sum(len(v) for v in LINES.values())  # every line, both speakers
    for model in ("acoustic", "teacher", "student"):
        assert (tmp_path / "run" / model / "checkpoints" / "last.pt").is_file(), model
    import torch

    student = torch.load(tmp_path / "run" / "student" / "checkpoints" / "last.pt", weights_only=True)
    assert "/teacher/checkpoints/" in student["config"]["teacher"]["path"]  # DISTILL=1: distilled

    from service.voice import Voice

    voice = Voice.load(tmp_path / "voices" / "toy")
    assert sorted(voice.speakers) == ["rms", "slt"] and {"student", "teacher"} <= set(voice.models)
    manifest = json.loads((tmp_path / "voices" / "toy" / "voice.json").read_text())
    assert manifest["provenance"]["steps"]["acoustic"] == 2
    report = json.loads((tmp_path / "run" / "eval" / "eval.json").read_text())
    assert report and (tmp_path / "run" / "eval" / "eval.md").is_file()

    # a stage reruns: training resumes from the saved step (and stops at --max-steps again)
    again = _run(env | {"ACOUSTIC_ARGS": "--preset tiny --max-steps 3"}, "acoustic")
    assert again.returncode == 0, again.stderr[-2000:]
    ckpt = torch.load(tmp_path / "run" / "acoustic" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 3
    mel = voice.mels([np.array([5, 6, 7, 8], np.int64)], [0], [1.0])[0]  # (n_mels, F)
    audio = voice.vocode([mel], [0], [np.zeros(mel.shape[1] * voice.hop, np.float32)])[0]
    assert audio.shape == (mel.shape[1] * voice.hop,) and np.isfinite(audio).all()


def test_spectral_only_profile_and_bad_usage(tmp_path):
    env = _env(tmp_path, TEACHER="0", DISTILL="0")
    assert _run(env, "corpus", "acoustic", "teacher", "student", "export").returncode == 0
    from service.voice import Voice

    voice = Voice.load(tmp_path / "voices" / "toy")
    assert "teacher" not in voice.models and "student" in voice.models
    student = json.loads((tmp_path / "voices" / "toy" / "voice.json").read_text())
    assert "teacher" not in student["provenance"]["steps"]

    # save / restore: the committed checkpoints continue a run on a fresh checkout
    env["CHECKPOINTS"] = str(tmp_path / "saved")
    assert _run(env, "save").returncode == 0
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["acoustic.pt", "student.pt"]
    shutil.rmtree(tmp_path / "run")
    assert _run(env, "restore").returncode == 0
    resumed = _run(env | {"STUDENT_ARGS": "--preset tiny --max-steps 3"}, "student")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert re.search(r"^steps\s+2 -> 3$", resumed.stdout, re.M), resumed.stdout

    bad = _run(env, "nonsense")
    assert bad.returncode == 2 and "unknown stage 'nonsense'" in bad.stderr
    assert _run(env, "--profile", "nope", "corpus").returncode == 2
    missing = _run(env | {"RUN": str(tmp_path / "empty")}, "export")
    assert missing.returncode != 0 and "run the 'acoustic' stage first" in missing.stderr
