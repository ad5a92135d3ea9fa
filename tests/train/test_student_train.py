"""`parawave train student` on a tiny synthetic corpus with a tiny trained teacher: distillation
lowers KL and STFT loss, resume, teacher checks, conditioning init, CLI and `synth --model student`."""

from pathlib import Path

import numpy as np
import pytest
import torch
from tone_corpus import write_tone_corpus
from typer.testing import CliRunner

from model.checkpoint import UserError, load_checkpoint
from model.data.audio import load_wav
from model.train.config import TrainArgs
from model.train.student import TRAIN_PRESETS, StudentTask, train
from model.train.teacher import train as train_teacher

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"), n_clips=6, speakers=("lo", "hi"), seed=0)


@pytest.fixture(scope="module")
def teacher(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "run"
    train_teacher(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=30))
    return out / "checkpoints" / "last.pt"


def test_distillation_lowers_kl_and_stft_and_resumes(corpus, teacher, tmp_path):
    out = tmp_path / "student"
    first = train(TrainArgs(data=corpus, out=out, preset="tiny", teacher=teacher, max_steps=1))
    assert first["step"] == 1
    second = train(
        TrainArgs(
            data=corpus,
            out=out,
            preset="tiny",
            teacher=teacher,
            resume=True,
            max_steps=30,
            sets=("sample_every=0",),
        )
    )
    assert second["start_step"] == 1 and second["step"] == 30 and len(second["history"]) == 29
    before, after = first["val"], second["val"]  # EMA student, the same val windows and noise
    assert after["kl"] < 0.5 * before["kl"], (before, after)
    assert after["stft"] < before["stft"] - 1.0 and after["sc"] < 0.75 * before["sc"], (before, after)
    assert after["loss"] < before["loss"]
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["kind"] == "student" and ckpt["step"] == 30
    assert ckpt["config"]["teacher"]["path"] == str(teacher) and ckpt["config"]["teacher"]["step"] == 30
    assert not any(
        k.startswith("teacher") for k in ckpt["model"]
    )  # the teacher is not saved with the student
    assert ckpt["config"]["model"]["n_speakers"] == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(out / "tb"), size_guidance={"audio": 0, "images": 0, "scalars": 0}).Reload()
    tags = tb.Tags()
    assert {"train/loss", "train/kl", "train/reg", "train/stft", "val/kl", "val/stft", "val/loss"} <= set(
        tags["scalars"]
    )
    assert {"sample/real", "sample/student"} <= set(tags["audio"]) and "sample/mel" in tags["images"]


def test_teacher_checks(corpus, teacher, tmp_path):
    with pytest.raises(UserError, match="not found"):
        train(TrainArgs(data=corpus, out=tmp_path / "b", preset="tiny", teacher=tmp_path / "none.pt"))
    out = tmp_path / "c"
    train(TrainArgs(data=corpus, out=out, preset="tiny", teacher=teacher, max_steps=1))
    with pytest.raises(UserError, match="not a teacher"):  # a student checkpoint is no teacher
        train(
            TrainArgs(data=corpus, out=tmp_path / "d", preset="tiny", teacher=out / "checkpoints" / "last.pt")
        )
    # another teacher (other architecture) cannot take over a student run
    other = tmp_path / "other-teacher"
    train_teacher(TrainArgs(data=corpus, out=other, preset="tiny", max_steps=1, sets=("model.layers=2",)))
    with pytest.raises(UserError, match="not the teacher"):
        train(
            TrainArgs(
                data=corpus, out=out, teacher=other / "checkpoints" / "last.pt", resume=True, max_steps=2
            )
        )
    with pytest.raises(UserError, match="audio"):
        train(
            TrainArgs(
                data=corpus, out=tmp_path / "e", preset="tiny", teacher=teacher, sets=("audio.fmax=7000",)
            )
        )


def test_spectral_only_without_teacher_then_distillation_from_its_weights(corpus, teacher, tmp_path):
    out = tmp_path / "spectral"
    sets = ("sample_every=0",)
    first = train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=1, sets=sets))
    second = train(TrainArgs(data=corpus, out=out, preset="tiny", resume=True, max_steps=40, sets=sets))
    assert second["start_step"] == 1 and second["step"] == 40
    before, after = first["val"], second["val"]
    assert "kl" not in after and "reg" not in after  # no teacher, no distillation terms
    assert after["stft"] < before["stft"] - 1.0 and after["loss"] == pytest.approx(after["stft"]), (
        before,
        after,
    )
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["config"]["teacher"]["path"] is None and ckpt["config"]["model"]["n_speakers"] == 2

    # a spectral-only run cannot be resumed as a distillation (and vice versa): --init starts one
    with pytest.raises(UserError, match="spectral-only"):
        train(TrainArgs(data=corpus, out=out, teacher=teacher, resume=True, max_steps=41))
    with pytest.raises(UserError, match="--init"):
        train(
            TrainArgs(
                data=corpus,
                out=out,
                resume=True,
                max_steps=41,
                init=out / "checkpoints" / "last.pt",
            )
        )
    with pytest.raises(UserError, match="not a student"):
        train(TrainArgs(data=corpus, out=tmp_path / "x", preset="tiny", teacher=teacher, init=teacher))

    distilled = tmp_path / "distilled"
    init = out / "checkpoints" / "last.pt"
    third = train(
        TrainArgs(
            data=corpus,
            out=distilled,
            preset="tiny",
            teacher=teacher,
            max_steps=1,
            sets=("lr=1e-12", *sets),  # ~no update: the validation is the spectral run's weights'
            init=init,
        )
    )
    assert third["start_step"] == 0 and "kl" in third["val"]
    assert third["val"]["stft"] == pytest.approx(after["stft"], rel=0.05)
    saved = load_checkpoint(distilled / "checkpoints" / "last.pt")
    assert saved["config"]["model"] == ckpt["config"]["model"]
    assert saved["config"]["teacher"]["path"] == str(teacher)
    with pytest.raises(UserError, match="pass it as --teacher"):
        train(TrainArgs(data=corpus, out=distilled, resume=True, max_steps=2))


def test_conditioning_starts_from_the_teachers_when_shapes_match(corpus, teacher):
    from model.data.config import AudioConfig
    from model.data.corpus import Corpus
    from model.student import preset
    from model.teacher import load_teacher

    t, _ = load_teacher(teacher)
    cfg = preset("tiny", n_speakers=2)
    task = StudentTask(cfg, TRAIN_PRESETS["tiny"], AudioConfig(), Corpus(corpus), t, {})
    assert task.cond_from_teacher
    for k, v in t.conditioning.state_dict().items():
        assert torch.equal(task.model.conditioning.state_dict()[k], v)
    other = StudentTask(
        preset("tiny", n_speakers=2, cond_channels=4),
        TRAIN_PRESETS["tiny"],
        AudioConfig(),
        Corpus(corpus),
        t,
        {},
    )
    assert not other.cond_from_teacher


@pytest.mark.parametrize("student_excitation", [3, 0])
def test_distillation_gives_the_teacher_the_batch_excitation(
    corpus, teacher, monkeypatch, student_excitation
):
    """Student and teacher see the same excitation, also when only the teacher is excited."""
    from model.data.config import AudioConfig
    from model.data.corpus import Corpus
    from model.student import preset
    from model.teacher import load_teacher

    t, _ = load_teacher(teacher)
    assert t.cfg.excitation_channels == 3
    cfg = preset("tiny", n_speakers=2, excitation_channels=student_excitation)
    task = StudentTask(cfg, TRAIN_PRESETS["tiny"], AudioConfig(), Corpus(corpus), t, {})
    assert task.excite
    batch = next(task.train_batches(torch.device("cpu")))
    assert batch["excitation"].shape == (batch["audio"].shape[0], 3, batch["audio"].shape[1])
    assert batch["excitation"][:, 2].any()  # the tones are voiced
    seen = []
    forward = t.forward

    def spy(x, mel, speaker=None, excitation=None):
        seen.append(excitation)
        return forward(x, mel, speaker, excitation)

    monkeypatch.setattr(t, "forward", spy)
    task.losses(task.model, batch)
    assert len(seen) == 1 and seen[0] is batch["excitation"]


def test_train_cli_and_synth_student(corpus, teacher, tmp_path):
    from service.cli import app

    out = tmp_path / "cli-run"
    args = ["train", "student", "--teacher", str(teacher), "--data", str(corpus), "--out", str(out)]
    result = runner.invoke(app, [*args, "--preset", "tiny", "--max-steps", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "checkpoint" in result.output and (out / "checkpoints" / "last.pt").is_file()
    missing = runner.invoke(app, [*args[:3], str(tmp_path / "nope.pt"), *args[4:-1], str(tmp_path / "x")])
    assert missing.exit_code == 2 and "not found" in missing.output

    wav_in = next((corpus / "wavs").glob("hi_*.wav"))
    wav_out = tmp_path / "student.wav"
    ckpt = out / "checkpoints" / "last.pt"
    synth = [
        "synth",
        "--model",
        "student",
        "--checkpoint",
        str(ckpt),
        "--wav",
        str(wav_in),
        "-o",
        str(wav_out),
    ]
    result = runner.invoke(app, [*synth, "--speaker", "hi", "--seed", "3"])
    assert result.exit_code == 0, result.output
    audio, sr = load_wav(wav_out)
    source, _ = load_wav(wav_in)
    assert sr == 16_000 and audio.shape[0] == (source.shape[0] // 200) * 200 and np.abs(audio).max() > 0
    wrong = runner.invoke(
        app,
        ["synth", "--model", "teacher", "--checkpoint", str(ckpt), "--wav", str(wav_in), "-o", str(wav_out)],
    )
    assert wrong.exit_code == 2 and "student" in wrong.output
