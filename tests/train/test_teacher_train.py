"""`parawave train teacher` on a tiny synthetic corpus: loss drops, resume, fresh-process loading, CLI."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tone_corpus import write_tone_corpus
from typer.testing import CliRunner

from model.checkpoint import UserError, load_checkpoint
from model.train.config import TrainArgs
from model.train.teacher import train

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"), n_clips=6, speakers=("lo", "hi"), seed=0)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "teacher"
    summary = train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=40, sets=("sample_every=0",)))
    return out, summary


def test_tiny_teacher_loss_drops(trained):
    out, summary = trained
    assert summary["step"] == 40
    losses = [loss for _, loss in summary["history"]]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.2, (first, last)
    assert summary["val"]["loss"] < losses[0]
    # run directory layout
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "checkpoints" / "best.pt").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["n_speakers"] == 2 and config["data"]["speakers"] == ["hi", "lo"]
    # trained with the tones' excitation: its zero-initialised conv has learned something
    assert config["model"]["excitation_channels"] == 3
    ema = load_checkpoint(out / "checkpoints" / "last.pt")["ema"]
    assert ema["excitation_conv.weight"].abs().max() > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(out / "tb"), size_guidance={"audio": 0, "images": 0, "scalars": 0}).Reload()
    tags = tb.Tags()
    assert {"train/loss", "train/lr", "train/grad_norm", "train/steps_per_s", "val/loss"} <= set(
        tags["scalars"]
    )
    assert {"sample/real", "sample/generated"} <= set(tags["audio"])
    assert "sample/mel" in tags["images"]
    assert tb.Scalars("train/loss")[-1].step == 40


def test_resume_continues_from_saved_step(corpus, tmp_path):
    out = tmp_path / "run"
    first = train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=4))
    assert first["step"] == 4 and load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4
    with pytest.raises(UserError, match="--resume"):
        train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=8))
    with pytest.raises(UserError, match=r"cannot change model\.layers"):
        train(TrainArgs(data=corpus, out=out, resume=True, max_steps=8, sets=("model.layers=8",)))
    second = train(
        TrainArgs(data=corpus, out=out, preset="tiny", resume=True, max_steps=8, sets=("lr=1e-3",))
    )
    assert second["start_step"] == 4 and second["step"] == 8 and len(second["history"]) == 4
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["step"] == 8 and ckpt["config"]["train"]["lr"] == 1e-3


def test_init_adds_a_per_layer_excitation_to_a_trained_teacher(trained, corpus, tmp_path):
    """--init with --set model.excitation_layers=true: a fresh run (step 0, its own schedule) from the
    trained teacher's EMA weights, whose first prediction is that teacher's exactly (the new
    projection starts at zero) and which then learns to use it."""
    from model.teacher import load_teacher, teacher_from_checkpoint

    init = trained[0] / "checkpoints" / "last.pt"
    out = tmp_path / "layered"
    sets = ("model.excitation_layers=true", "sample_every=0", "val_every=0")
    # step 0: the initialised model, before any update
    summary = train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=0, sets=sets, init=init))
    assert summary["step"] == 0
    before, _ = load_teacher(init)
    start = teacher_from_checkpoint(load_checkpoint(out / "checkpoints" / "last.pt"), ema=False)
    assert start.cfg.excitation_layers and start.cfg.layers == before.cfg.layers
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(1, before.cfg.n_mels, 3, generator=g) - 4.0
    audio = torch.randn(1, 3 * before.cfg.hop_length, generator=g) * 0.1
    exc = torch.rand(1, 3, audio.shape[-1], generator=g)
    speaker = torch.tensor([1])
    with torch.no_grad():
        torch.testing.assert_close(start(audio, mel, speaker, exc), before(audio, mel, speaker, exc))
    with pytest.raises(UserError, match="--init starts a fresh run"):
        train(TrainArgs(data=corpus, out=out, resume=True, max_steps=4, sets=sets, init=init))
    trained_more = train(
        TrainArgs(
            data=corpus,
            out=tmp_path / "layered2",
            preset="tiny",
            max_steps=10,
            sets=sets,
            init=init,
        )
    )
    assert trained_more["start_step"] == 0 and trained_more["step"] == 10
    ema = load_checkpoint(tmp_path / "layered2" / "checkpoints" / "last.pt")["ema"]
    assert ema["stack.excitation_proj.weight"].abs().max() > 0  # it learned to use the excitation


_FRESH = """
import sys, torch
from model.teacher import load_teacher
model, ckpt = load_teacher(sys.argv[1])
g = torch.Generator().manual_seed(0)
mel = torch.randn(1, model.cfg.n_mels, 3, generator=g) - 4.0
audio = torch.randn(1, 3 * model.cfg.hop_length, generator=g) * 0.1
with torch.no_grad():
    mean, log_scale = model(audio, mel, torch.tensor([1]))
print(ckpt["step"], repr(float(mean.double().sum())), repr(float(log_scale.double().sum())))
"""


def test_checkpoint_loads_in_fresh_process(trained):
    out, _ = trained
    path = out / "checkpoints" / "last.pt"
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH, str(path)], capture_output=True, text=True, timeout=300, cwd=Path.cwd()
    )
    assert proc.returncode == 0, proc.stderr
    step, mean_sum, scale_sum = proc.stdout.split()
    # the same computation here, from the checkpoint's EMA weights and config
    from model.teacher import TeacherConfig, TeacherWaveNet

    ckpt = torch.load(path, weights_only=True)
    model = TeacherWaveNet(TeacherConfig.from_dict(ckpt["config"]["model"])).eval()
    model.load_state_dict(ckpt["ema"])
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(1, model.cfg.n_mels, 3, generator=g) - 4.0
    audio = torch.randn(1, 3 * model.cfg.hop_length, generator=g) * 0.1
    with torch.no_grad():
        mean, log_scale = model(audio, mel, torch.tensor([1]))
    assert int(step) == 40
    assert float(mean_sum) == pytest.approx(float(mean.double().sum()), rel=1e-5, abs=1e-6)
    assert float(scale_sum) == pytest.approx(float(log_scale.double().sum()), rel=1e-5, abs=1e-6)


def test_train_cli(corpus, tmp_path):
    from service.cli import app

    out = tmp_path / "cli-run"
    args = [
        "train",
        "teacher",
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--max-steps",
        "2",
    ]
    result = runner.invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "2" in result.output and "checkpoint" in result.output
    assert (out / "checkpoints" / "last.pt").is_file()
    bad = runner.invoke(
        app, ["train", "teacher", "--data", str(corpus), "--out", str(tmp_path / "x"), "--set", "nope=1"]
    )
    assert bad.exit_code == 2 and "no such setting" in bad.output
    missing = runner.invoke(
        app, ["train", "teacher", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "y")]
    )
    assert missing.exit_code == 2 and "metadata.csv" in missing.output
    unknown = runner.invoke(
        app, ["train", "teacher", "--data", str(corpus), "--out", str(tmp_path / "z"), "--preset", "huge"]
    )
    assert unknown.exit_code == 2 and "unknown preset" in unknown.output


@pytest.mark.slow
def test_ddp_two_cpu_processes(corpus, tmp_path):
    # the same code path under torchrun (gloo on CPU): rank 0 saves, every rank steps together
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "model.train.cli"]
    cmd += ["teacher", "--data", str(corpus), "--out", str(out), "--preset", "tiny", "--max-steps", "4"]
    proc = subprocess.run([*cmd, "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("stopped by") == 1  # one summary, from rank 0
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4


def test_past_noise_applies_in_training_only(corpus):
    """The trainer's loss corrupts the teacher-forced past in train mode (the target stays the clean
    audio), never in eval mode (validation NLL is the clean-past NLL); negative noise is refused."""
    from model.data.config import AudioConfig
    from model.data.corpus import Corpus
    from model.teacher import preset
    from model.train.teacher import TRAIN_PRESETS, TeacherTask, TeacherTrainConfig

    with pytest.raises(ValueError, match="past_noise"):
        TeacherTrainConfig(past_noise=-0.1)
    audio_cfg = AudioConfig()
    cfg = dataclasses.replace(TRAIN_PRESETS["tiny"], past_noise=0.05)
    torch.manual_seed(0)
    task = TeacherTask(preset("tiny", excitation_channels=3), cfg, audio_cfg, Corpus(corpus))
    batch = next(task.train_batches(torch.device("cpu")))
    model = task.model
    with torch.no_grad():
        for p in model.parameters():  # an untrained teacher's zero-initialised head ignores its input
            p.normal_(0.0, 0.2)
    model.eval()
    with torch.no_grad():
        clean, _ = task.loss(model, batch)
        assert torch.equal(task.loss(model, batch)[0], clean)  # eval mode: deterministic, clean past
        model.train()
        torch.manual_seed(3)
        noisy, _ = task.loss(model, batch)
        torch.manual_seed(3)
        mean, log_scale = model(batch["audio"], batch["mel"], batch["speaker"], batch.get("excitation"), 0.05)
    from model.distributions import gaussian_nll

    torch.testing.assert_close(noisy, gaussian_nll(batch["audio"], mean, log_scale))  # clean target
    model.eval()
    with torch.no_grad():
        clean_mean, _ = model(batch["audio"], batch["mel"], batch["speaker"], batch.get("excitation"))
    assert not torch.equal(mean, clean_mean)  # the noise reached the past


def test_excitation_phase_reaches_the_training_windows(corpus):
    """excitation_phase="recording" gives the trainer phase-true windows (each row the recording
    excitation of its own audio and F0), "f0" the runtime's; anything else is refused."""
    import numpy as np

    from core.excitation import excitation
    from model.data.config import AudioConfig
    from model.data.corpus import Corpus
    from model.data.excitation import recording_excitation
    from model.teacher import preset
    from model.train.teacher import TRAIN_PRESETS, TeacherTask, TeacherTrainConfig

    with pytest.raises(ValueError, match="excitation_phase"):
        TeacherTrainConfig(excitation_phase="glottal")
    audio_cfg = AudioConfig()
    for phase, make in (
        ("recording", lambda f0, a: recording_excitation(f0, a, audio_cfg.hop_length, audio_cfg.sample_rate)),
        ("f0", lambda f0, a: excitation(f0, audio_cfg.hop_length, audio_cfg.sample_rate)),
    ):
        cfg = dataclasses.replace(TRAIN_PRESETS["tiny"], excitation_phase=phase)
        task = TeacherTask(preset("tiny", excitation_channels=3), cfg, audio_cfg, Corpus(corpus))
        batch = next(task.train_batches(torch.device("cpu")))
        assert batch["f0"].numpy().any()
        for row in range(batch["audio"].shape[0]):
            want = make(batch["f0"][row].numpy(), batch["audio"][row].numpy())
            np.testing.assert_array_equal(batch["excitation"][row].numpy(), want)
