"""The one trainer setup (model.train.setup) every trainer goes through: seeding once before the
model is built, the same --set guards and --init checks for every model kind, model_from_checkpoint,
and the training modules' imports (no config <-> rundir circle)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tone_corpus import write_tone_corpus

from model.checkpoint import UserError, load_checkpoint, model_from_checkpoint
from model.student import StudentConfig, StudentIAF
from model.train.config import TrainArgs
from tests.train.test_acoustic_train import write_phone_corpus

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"), n_clips=4, speakers=("lo", "hi"), seed=0)


@pytest.fixture(scope="module")
def phones(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phones") / "corpus"
    write_phone_corpus(root, n_clips=6)
    return root


def _trainer(kind: str):
    return __import__(f"model.train.{kind}", fromlist=["train"]).train


def _initial_weights(kind: str, corpus: Path, out: Path, sets=()) -> dict:
    """A fresh run of ``kind`` that takes no step: last.pt holds the weights the model was built with."""
    summary = _trainer(kind)(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=0, sets=sets))
    assert summary["step"] == 0
    return load_checkpoint(out / "checkpoints" / "last.pt")["model"]


@pytest.mark.parametrize("kind", ["teacher", "student", "acoustic"])
def test_initial_weights_depend_on_the_seed_only(kind, tones, phones, tmp_path):
    """Whatever ran before in the process (here: another global seed), a fresh run's model starts
    from the weights of its train.seed (the student used to start from torch's global state)."""
    corpus = phones if kind == "acoustic" else tones
    torch.manual_seed(1)
    first = _initial_weights(kind, corpus, tmp_path / "a")
    torch.manual_seed(2)
    torch.rand(1000)
    second = _initial_weights(kind, corpus, tmp_path / "b")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    other = _initial_weights(kind, corpus, tmp_path / "c", sets=("seed=7",))
    assert any(not torch.equal(first[k], other[k]) for k in first)  # the seed does reach the model


@pytest.mark.parametrize("kind", ["teacher", "student", "acoustic"])
def test_every_trainer_refuses_setting_what_the_corpus_and_audio_set(kind, tones, phones, tmp_path):
    corpus = phones if kind == "acoustic" else tones
    train = _trainer(kind)
    args = dict(data=corpus, out=tmp_path / "run", preset="tiny", max_steps=0)
    with pytest.raises(UserError, match=r"set audio\.n_mels instead"):
        train(TrainArgs(**args, sets=("model.n_mels=40",)))
    with pytest.raises(UserError, match=r"model\.n_speakers: set from the corpus"):
        train(TrainArgs(**args, sets=("model.n_speakers=5",)))
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize("kind", ["student", "acoustic"])
def test_init_from_a_checkpoint_of_other_speakers_is_a_clear_error(kind, phones, tmp_path):
    """--init is checked against the corpus the same way for every trainer (it used to be a
    state-dict size mismatch, a traceback, for these two)."""
    if kind == "acoustic":
        one, two = tmp_path / "one", tmp_path / "two"
        write_phone_corpus(one, n_clips=6, speakers=("low",))
        write_phone_corpus(two, n_clips=6, speakers=("low", "high"))
    else:
        one = write_tone_corpus(tmp_path / "one", n_clips=4, speakers=("lo",), seed=0)
        two = write_tone_corpus(tmp_path / "two", n_clips=4, speakers=("lo", "hi"), seed=0)
    train = _trainer(kind)
    train(TrainArgs(data=one, out=tmp_path / "src", preset="tiny", max_steps=0))
    init = tmp_path / "src" / "checkpoints" / "last.pt"
    with pytest.raises(
        UserError, match=r"--init .*: its speakers \['\w+'\] differ from the corpus' \['\w+', '\w+'\]"
    ):
        train(TrainArgs(data=two, out=tmp_path / "dst", preset="tiny", max_steps=0, init=init))
    with pytest.raises(UserError, match="--init starts a fresh run"):
        train(TrainArgs(data=one, out=tmp_path / "src", resume=True, init=init))


def test_model_from_checkpoint_builds_the_saved_kind_only(tones, tmp_path):
    weights = _initial_weights("student", tones, tmp_path / "s")
    ckpt = load_checkpoint(tmp_path / "s" / "checkpoints" / "last.pt")
    model = model_from_checkpoint(ckpt, "student", StudentConfig, StudentIAF, ema=False, for_inference=False)
    assert model.training and all(torch.equal(model.state_dict()[k], weights[k]) for k in weights)
    assert not model_from_checkpoint(ckpt, "student", StudentConfig, StudentIAF).training
    with pytest.raises(ValueError, match="holds a 'student' model, not a teacher"):
        model_from_checkpoint(ckpt, "teacher", StudentConfig, StudentIAF)


@pytest.mark.parametrize(
    ("module", "not_imported"),
    [("model.train.rundir", "model.train.config"), ("model.train.config", "model.train.rundir")],
)
def test_training_modules_import_without_a_circle(module, not_imported):
    code = f"import {module}, sys; assert {not_imported!r} not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
