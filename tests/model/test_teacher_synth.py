"""`parawave synth --model teacher`: copy-synthesis from a wav or a mel with a tiny checkpoint."""

from pathlib import Path

import numpy as np
import pytest
from tone_corpus import tone, write_tone_corpus
from typer.testing import CliRunner

from model.data.audio import load_wav, save_wav
from model.train.config import TrainArgs
from model.train.teacher import train
from service.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    corpus = write_tone_corpus(root / "corpus", n_clips=4, speakers=("a", "b"))
    train(TrainArgs(data=corpus, out=root / "run", preset="tiny", max_steps=3))
    return root / "run" / "checkpoints" / "last.pt"


def test_synth_from_wav_and_mel(checkpoint, tmp_path):
    wav = tmp_path / "in.wav"
    save_wav(
        wav, tone(0.1, 16_000, 150.0, 200.0, np.array([1.0, 0.5]), 0.4), 16_000
    )  # 1600 samples = 8 frames
    out = tmp_path / "out.wav"
    args = ["synth", "--model", "teacher", "--checkpoint", str(checkpoint), "--wav", str(wav), "-o", str(out)]
    result = runner.invoke(app, [*args, "--speaker", "b", "--seed", "3"])
    assert result.exit_code == 0, result.output
    audio, sr = load_wav(out)
    assert sr == 16_000 and audio.shape == (1600,) and np.abs(audio).max() > 0

    again = tmp_path / "again.wav"
    result = runner.invoke(app, [*args[:-1], str(again), "--speaker", "b", "--seed", "3"])
    assert result.exit_code == 0
    assert np.array_equal(load_wav(again)[0], audio)  # fixed seed -> same audio

    mel = tmp_path / "mel.npy"
    np.save(mel, np.full((80, 5), -6.0, dtype=np.float32))
    greedy = tmp_path / "greedy.wav"
    result = runner.invoke(
        app, ["synth", "--checkpoint", str(checkpoint), "--mel", str(mel), "-o", str(greedy), "--greedy"]
    )
    assert result.exit_code == 0, result.output
    assert load_wav(greedy)[0].shape == (1000,)


def test_synth_bad_input_is_one_line_error(checkpoint, tmp_path):
    out = str(tmp_path / "o.wav")
    cases = [
        (["--checkpoint", str(tmp_path / "missing.pt"), "--mel", "m.npy"], "not found"),
        (["--checkpoint", str(checkpoint)], "exactly one of"),
        (["--checkpoint", str(checkpoint), "--mel", str(tmp_path / "nope.npy")], "not found"),
        (["--checkpoint", str(checkpoint), "--model", "wavernn", "--mel", "m.npy"], "unknown --model"),
    ]
    bad_mel = tmp_path / "bad.npy"
    np.save(bad_mel, np.zeros((13, 4), dtype=np.float32))
    cases.append(
        (["--checkpoint", str(checkpoint), "--mel", str(bad_mel)], "expected a log-mel of shape (80")
    )
    good_mel = tmp_path / "good.npy"
    np.save(good_mel, np.zeros((80, 2), dtype=np.float32))
    cases.append(
        (["--checkpoint", str(checkpoint), "--mel", str(good_mel), "--speaker", "zz"], "unknown speaker")
    )
    for extra, message in cases:
        result = runner.invoke(app, ["synth", *extra, "-o", out])
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output, (extra, result.output)
        assert "Traceback" not in result.output
