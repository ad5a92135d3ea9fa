"""`python -m bench.train_speed`: every case builds and takes a training step on both paths
(the benchmark must keep running as the models change: the acoustic preset became pitch-aware)."""

import math

import pytest
import torch

from bench import train_speed as ts
from model.acoustic import PRESETS as ACOUSTIC_PRESETS
from model.teacher import preset

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_step(case, path) -> float:
    model, extra = case.build()
    runner = ts.Runner(case, path, model, extra)
    with torch.no_grad(), ts.autocast_context(torch.device("cpu"), path.precision):
        loss = float(case.loss(runner.call, runner.extra, runner.helpers, path.layout))
    before = [p.detach().clone() for p in runner.params]
    runner.step()
    # the step trained: every weight that got a gradient moved (Adam), and some did
    got_grad = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in runner.params]
    moved = [not torch.equal(b, p.detach()) for b, p in zip(before, runner.params, strict=True)]
    assert sum(got_grad) > len(runner.params) // 2, f"{sum(got_grad)} of {len(runner.params)} got a gradient"
    assert moved == got_grad
    return loss


@pytest.mark.parametrize("path", [ts.OLD, ts.NEW_ACOUSTIC], ids=lambda p: p.name)
def test_acoustic_case_trains_the_pitch_aware_preset(path):
    assert ACOUSTIC_PRESETS["cpu"].pitch  # so the case must hand the model a target F0
    case = ts.acoustic_case(batch=2, phonemes=12, frames=48)
    _, extra = case.build()
    assert "f0" in extra["batch"] and (extra["batch"]["f0"] == 0).any() and (extra["batch"]["f0"] > 0).any()
    assert math.isfinite(_one_step(case, path))


def test_teacher_case_steps_on_the_old_path():
    case = ts.teacher_case("tiny", preset("tiny"), batch=1, samples=800)
    assert math.isfinite(_one_step(case, ts.OLD))
