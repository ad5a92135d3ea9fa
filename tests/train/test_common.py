"""Shared training infrastructure: schedule, EMA, --set, checkpoints, the loop (stop, save, resume)."""

import dataclasses
import math
import os
import signal
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from model.checkpoint import UserError, load_checkpoint, save_checkpoint
from model.train.config import TrainConfig, apply_overrides
from model.train.loop import LoopSettings, run_training, summary_table
from model.train.optim import EMA, lr_factor
from model.train.rundir import RunDir, prepare_run
from model.train.task import TrainTask


@dataclass(frozen=True)
class ToyModelConfig:
    features: int = 4
    hidden: tuple[int, int] = (8, 8)
    bias: bool = True


class ToyTask(TrainTask):
    """Linear regression y = x @ w on fixed random data; ``hook(step)`` runs inside the loss."""

    kind = "toy"

    def __init__(self, hook=None):
        torch.manual_seed(0)
        self.model = nn.Linear(4, 1)
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(256, 4, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.hook = hook
        self.calls = 0

    def config_dict(self):
        return {"model": {"features": 4}, "train": {}, "data": {"n": 256}}

    def train_batches(self, device):
        g = torch.Generator().manual_seed(2)
        while True:
            idx = torch.randint(0, 256, (16,), generator=g)
            yield {"x": self.x[idx], "y": self.y[idx]}

    def loss(self, model, batch):
        self.calls += 1
        if self.hook is not None:
            self.hook(self.calls)
        loss = (model(batch["x"]) - batch["y"]).square().mean()
        return loss, {"rmse": loss.detach().sqrt()}

    def validate(self, model, device):
        return {"loss": float((model(self.x) - self.y).square().mean())}


CFG = TrainConfig(
    steps=60,
    lr=0.1,
    grad_clip=100.0,
    warmup_steps=2,
    ema_decay=0.9,
    log_every=5,
    val_every=20,
    sample_every=-1,
)
CPU = torch.device("cpu")
QUIET = LoopSettings(progress=False)


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.55)
    assert lr_factor(110, cfg) == pytest.approx(0.1)
    assert lr_factor(500, cfg) == pytest.approx(0.1)
    assert lr_factor(50, dataclasses.replace(cfg, decay="constant")) == 1.0


def test_ema_update_and_copy():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, step=100)  # ramp (101/110) > 0.5: decay 0.5
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 0.5))
    target = nn.Linear(2, 1)
    ema.copy_to(target)
    assert torch.allclose(target.weight, torch.full((1, 2), 0.5))
    ema2 = EMA(model, decay=0.999)
    ema2.load_state_dict(ema.state_dict())
    assert torch.equal(ema2.shadow["weight"], ema.shadow["weight"])
    start = nn.Linear(2, 1)
    early = EMA(start, decay=0.999)  # at step 0 the ramp gives decay min(0.999, 1/10) = 0.1
    fresh = nn.Linear(2, 1)
    early.update(fresh, step=0)
    expected = 0.1 * start.weight.detach() + 0.9 * fresh.weight.detach()
    assert torch.allclose(early.shadow["weight"], expected)


def test_apply_overrides():
    sections = {"model": ToyModelConfig(), "train": TrainConfig()}
    out = apply_overrides(
        sections, ["lr=3e-4", "model.features=16", "hidden=4,5", "bias=false", "train.precision=fp32"]
    )
    assert out["train"].lr == 3e-4 and out["train"].precision == "fp32"
    assert out["model"] == ToyModelConfig(features=16, hidden=(4, 5), bias=False)
    assert sections["model"] == ToyModelConfig()  # inputs untouched (frozen)
    for bad in ["nope=1", "lr", "model.lr=1", "lr=fast", "bias=maybe", "decay=linear", "other.lr=1"]:
        with pytest.raises(UserError):
            apply_overrides(sections, [bad])
    both = {"a": ToyModelConfig(), "b": ToyModelConfig()}
    with pytest.raises(UserError, match="ambiguous"):
        apply_overrides(both, ["features=3"])


def test_checkpoint_roundtrip_is_weights_only(tmp_path):
    ckpt = {
        "kind": "toy",
        "step": 3,
        "model": nn.Linear(2, 2).state_dict(),
        "config": {"model": dataclasses.asdict(ToyModelConfig()), "train": TrainConfig().to_dict()},
    }
    path = tmp_path / "a" / "c.pt"
    save_checkpoint(path, ckpt)
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]  # no temp file left behind
    loaded = torch.load(path, weights_only=True)
    assert loaded["config"]["model"]["hidden"] == (8, 8)
    assert TrainConfig.from_dict(loaded["config"]["train"]) == TrainConfig()
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_training_loop_learns_saves_and_resumes(tmp_path):
    run = RunDir(tmp_path / "run")
    task = ToyTask()
    summary = run_training(task, CFG, run, device=CPU, settings=LoopSettings(max_steps=40, progress=False))
    assert summary["step"] == 40 and summary["stopped"] == "max_steps"
    losses = [loss for _, loss in summary["history"]]
    assert sum(losses[-5:]) / 5 < 0.1 * sum(losses[:5]) / 5
    assert run.last.is_file() and run.best.is_file() and run.config.is_file() and run.log_file.is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in run.tb.iterdir())
    ckpt = load_checkpoint(run.last)
    assert ckpt["step"] == 40 and ckpt["kind"] == "toy"
    assert set(ckpt) >= {"model", "ema", "optimizer", "scheduler", "scaler", "config", "versions", "metrics"}
    assert ckpt["versions"]["torch"] == str(torch.__version__)
    assert ckpt["scheduler"]["last_epoch"] == 40
    assert "toy" in summary_table(summary)

    with pytest.raises(UserError, match="--resume"):
        prepare_run(run.path, resume=False)
    _, resume_from = prepare_run(run.path, resume=True)
    task2 = ToyTask()
    summary2 = run_training(
        task2,
        CFG,
        run,
        device=CPU,
        resume_from=resume_from,
        settings=LoopSettings(max_steps=50, progress=False),
    )
    assert summary2["start_step"] == 40 and summary2["step"] == 50 and task2.calls == 10
    assert load_checkpoint(run.last)["step"] == 50
    # the optimizer's moments came back: its step count continues from 40
    state = load_checkpoint(run.last)["optimizer"]["state"]
    assert int(next(iter(state.values()))["step"]) == 50


def test_stop_on_keyboard_interrupt_and_sigterm_saves(tmp_path):
    def interrupt(call):
        if call == 4:
            raise KeyboardInterrupt

    run = RunDir(tmp_path / "int")
    summary = run_training(ToyTask(interrupt), CFG, run, device=CPU, settings=QUIET)
    assert summary["stopped"] == "interrupted" and summary["step"] == 3
    assert load_checkpoint(run.last)["step"] == 3

    def sigterm(call):
        if call == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    run = RunDir(tmp_path / "term")
    summary = run_training(ToyTask(sigterm), CFG, run, device=CPU, settings=QUIET)
    assert summary["stopped"] == "SIGTERM" and summary["step"] == 6  # finishes the step, then stops
    assert load_checkpoint(run.last)["step"] == 6
    assert signal.getsignal(signal.SIGTERM) == previous  # handler restored


def test_max_minutes_stops_and_nonfinite_steps_are_skipped(tmp_path):
    run = RunDir(tmp_path / "t")
    summary = run_training(
        ToyTask(), CFG, run, device=CPU, settings=LoopSettings(max_minutes=0.0, progress=False)
    )
    assert summary["stopped"] == "max_minutes" and summary["step"] == 0 and run.last.is_file()

    class NanOnce(ToyTask):
        def loss(self, model, batch):
            loss, metrics = super().loss(model, batch)
            return (loss * math.nan if self.calls == 2 else loss), metrics

    run = RunDir(tmp_path / "nan")
    task = NanOnce()
    summary = run_training(task, CFG, run, device=CPU, settings=LoopSettings(max_steps=5, progress=False))
    assert summary["step"] == 5 and task.calls == 6  # one skipped update
    assert all(math.isfinite(p.sum().item()) for p in task.model.parameters())


def test_sigterm_to_the_process_group_saves_with_dataloader_workers(tmp_path):
    """``kill -- -PGID`` (docker stop, a session's end, pkill -f) reaches the DataLoader workers
    too: they must leave it to the trainer, which finishes its step and saves."""
    import subprocess
    import sys
    import time

    from tone_corpus import write_tone_corpus

    corpus = write_tone_corpus(tmp_path / "tones", n_clips=4, speakers=("a",), seed=0)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "service.cli", "train", "teacher", "--data", str(corpus), "--out", str(out)]
    cmd += ["--preset", "tiny", "--set", "num_workers=1", "--set", "steps=1000000", "--device", "cpu"]
    cmd += ["--set", "checkpoint_minutes=0"]  # a checkpoint (and a "saved ... (step N)" log line) every step
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = out / "train.log"
    deadline = (
        time.monotonic() + 300
    )  # a deadline only against a hang: it passes or fails, never falls through
    # wait for the event itself: 3 steps done, the loader's worker feeding them
    while not (log.is_file() and "(step 3)" in log.read_text()):
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        assert time.monotonic() < deadline, "the trainer made no 3 steps"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, output[-3000:]
    assert "SIGTERM" in output and "DataLoader worker" not in output, output[-3000:]
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["step"] >= 3


def test_max_cpu_minutes_stops_on_the_process_cpu_clock(tmp_path):
    """The CPU budget reads an injected clock: here 10 CPU seconds per loss call, so a 1-minute budget
    stops after exactly 6 steps whatever the machine's speed or load; the CPU seconds are saved and
    summed over resumed invocations, each of which gets its own budget."""
    task = ToyTask()
    clock = lambda: 10.0 * task.calls  # noqa: E731
    run = RunDir(tmp_path / "cpu")
    summary = run_training(
        task,
        CFG,
        run,
        device=CPU,
        settings=LoopSettings(max_cpu_minutes=1.0, cpu_clock=clock, progress=False),
    )
    assert summary["stopped"] == "max_cpu_minutes" and summary["step"] == 6
    assert summary["cpu_seconds"] == 60.0 and "CPU minutes  1.0" in summary_table(summary)
    assert load_checkpoint(run.last)["metrics"]["cpu_seconds"] == 60.0
    again = run_training(
        task,
        CFG,
        run,
        device=CPU,
        resume_from=load_checkpoint(run.last),
        settings=LoopSettings(max_cpu_minutes=0.5, cpu_clock=clock, progress=False),
    )
    assert again["stopped"] == "max_cpu_minutes" and (again["start_step"], again["step"]) == (6, 9)
    assert load_checkpoint(run.last)["metrics"]["cpu_seconds"] == 90.0
    # no budget: the wall-clock and step limits as before
    plain = run_training(
        ToyTask(), CFG, RunDir(tmp_path / "p"), device=CPU, settings=LoopSettings(max_steps=8, progress=False)
    )
    assert plain["stopped"] == "max_steps" and plain["step"] == 8


@pytest.mark.parametrize("kind", ["student", "teacher"])
def test_max_cpu_minutes_on_the_command_line(monkeypatch, tmp_path, kind):
    from typer.testing import CliRunner

    from model.train import cli

    seen = []
    monkeypatch.setitem(cli.TRAINERS, kind, ("tests.train.test_common:_fake_trainer", "x"))
    monkeypatch.setattr(__import__("tests.train.test_common", fromlist=["x"]), "_SEEN", seen)
    out = CliRunner().invoke(
        cli.app,
        [kind, "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--max-cpu-minutes", "2.5"],
    )
    assert out.exit_code == 0, out.output
    assert seen[0].max_cpu_minutes == 2.5 and seen[0].max_minutes is None


_SEEN: list = []


def _fake_trainer(args):
    _SEEN.append(args)
    return None
