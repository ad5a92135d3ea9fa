"""The student's adversarial training (issue 37) on the tiny synthetic corpus: a run with the
discriminators on trains them and logs every loss, resume restores their state exactly,
adv_weight=0 builds none (today's trainer), and neither training nor export puts them in the
student's weights."""

import sys
from pathlib import Path

import pytest
import torch
from tone_corpus import write_tone_corpus

from model.checkpoint import load_checkpoint
from model.student import StudentConfig, StudentIAF
from model.train import adversarial
from model.train import student as student_train
from model.train.config import TrainArgs
from model.train.student import StudentTrainConfig, train

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# tiny discriminators for the tiny preset's 4-frame windows (800 samples at hop 200)
ADV = (
    "adv_weight=1",
    "fm_weight=2",
    "disc_warmup=2",
    "adv_ramp=2",
    "disc_mpd_channels=4",
    "disc_mrd_channels=4",
    "disc_periods=2,3",
    "disc_resolutions=64,128",
    "sample_every=-1",
    "log_every=1",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"), n_clips=6, speakers=("lo", "hi"), seed=0)


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in tb.Scalars(tag)] for tag in tb.Tags()["scalars"]}


def test_adversarial_run_trains_the_discriminators_and_logs_every_loss(corpus, tmp_path):
    out = tmp_path / "gan"
    summary = train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=6, sets=ADV))
    assert summary["step"] == 6 and summary["stopped"] == "max_steps"
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    aux = ckpt["aux"]
    assert set(aux) == {"disc", "disc_config", "optimizer", "scheduler"}
    assert aux["scheduler"]["last_epoch"] == 6  # one discriminator update per step from disc_start=0
    assert aux["disc_config"]["periods"] == (2, 3) and aux["disc_config"]["mrd_channels"] == 4
    # the discriminators moved from their initialisation (built under the run's seed)
    from model.discriminators import MultiDiscriminator

    cfg = StudentTrainConfig(**_cfg(ADV))
    torch.manual_seed(cfg.seed)
    fresh = MultiDiscriminator(cfg.disc_config()).state_dict()
    assert fresh.keys() == aux["disc"].keys()
    assert any(not torch.equal(fresh[k], aux["disc"][k]) for k in fresh)
    # the student's weights are the student's only: the same keys as a bare student
    bare = StudentIAF(StudentConfig.from_dict(ckpt["config"]["model"])).state_dict().keys()
    assert ckpt["model"].keys() == bare and ckpt["ema"].keys() == bare
    scalars = _scalars(out)
    for tag in ("d_real", "d_fake", "d_loss", "adv", "fm", "adv_scale", "disc_lr", "stft", "loss"):
        assert f"train/{tag}" in scalars, (tag, sorted(scalars))
    # the warm-up: the student's adversarial terms start at step disc_warmup (global step 2 = the
    # third update, logged as step 3), ramped 0.5 then 1
    assert [s for s, _ in scalars["train/adv"]] == [3, 4, 5, 6]
    assert dict(scalars["train/adv_scale"]) == {1: 0.0, 2: 0.0, 3: 0.5, 4: 1.0, 5: 1.0, 6: 1.0}
    assert all(v >= 0 for _, v in scalars["train/d_loss"])
    assert "val/loss" in scalars and "val/adv" not in scalars  # validation stays STFT (+ KL)


def _cfg(sets) -> dict:
    """The tiny preset's train fields with ``sets`` applied (for rebuilding what a run used)."""
    from model.train.config import apply_overrides

    return apply_overrides({"train": student_train.TRAIN_PRESETS["tiny"]}, sets)["train"].__dict__


def test_resume_restores_the_discriminators_exactly(corpus, tmp_path):
    out = tmp_path / "gan"
    train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=3, sets=ADV))
    saved = load_checkpoint(out / "checkpoints" / "last.pt")["aux"]
    # a resume that takes no step saves what it loaded: the discriminators, their Adam moments and
    # their schedule come back bit for bit (a fresh discriminator would differ everywhere)
    train(TrainArgs(data=corpus, out=out, resume=True, max_steps=3))
    again = load_checkpoint(out / "checkpoints" / "last.pt")["aux"]
    assert again["disc"].keys() == saved["disc"].keys()
    assert all(torch.equal(again["disc"][k], saved["disc"][k]) for k in saved["disc"])
    assert again["scheduler"] == saved["scheduler"] and again["scheduler"]["last_epoch"] == 3
    s_opt, a_opt = saved["optimizer"], again["optimizer"]
    assert s_opt["param_groups"] == a_opt["param_groups"]
    for i, state in s_opt["state"].items():
        assert all(torch.equal(state[k], a_opt["state"][i][k]) for k in state)
    # and training continues from there: the schedule and Adam's step count go on
    train(TrainArgs(data=corpus, out=out, resume=True, max_steps=5))
    later = load_checkpoint(out / "checkpoints" / "last.pt")["aux"]
    assert later["scheduler"]["last_epoch"] == 5
    assert all(float(s["step"]) == 5.0 for s in later["optimizer"]["state"].values())
    # the discriminators' shape cannot change on resume
    from model.checkpoint import UserError

    with pytest.raises(UserError, match="discriminators"):
        train(TrainArgs(data=corpus, out=out, resume=True, max_steps=6, sets=("disc_mpd_channels=8",)))


def test_adv_weight_zero_builds_no_discriminator(corpus, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a discriminator was built with adv_weight=0")

    monkeypatch.setattr(adversarial, "MultiDiscriminator", refuse)
    out = tmp_path / "plain"
    sets = (*(s for s in ADV if not s.startswith("adv_weight")), "adv_weight=0")
    summary = train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=3, sets=sets))
    assert summary["step"] == 3
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert "aux" not in ckpt
    scalars = _scalars(out)
    assert not any(
        t.split("/")[1] in ("d_real", "d_fake", "d_loss", "adv", "fm", "adv_scale") for t in scalars
    )


def test_export_reads_the_student_weights_only(tmp_path):
    """A student checkpoint carrying discriminators ("aux") exports to the same bytes as without them,
    and its "model"/"ema" hold exactly the student's tensors."""
    from export.bundle import bundle_from_checkpoints
    from model.checkpoint import save_checkpoint
    from model.discriminators import DiscConfig, MultiDiscriminator

    sys.path.insert(0, str(FIXTURES))
    try:
        import make_fixture_bundle
    finally:
        sys.path.remove(str(FIXTURES))
    audio, table, acoustic, student, _ = make_fixture_bundle.build_models(seed=3)
    data = {"corpus": "/data/tiny", "speakers": make_fixture_bundle.SPEAKERS, "symbols": table.to_dict()}

    def ckpt(path, kind, model, extra=None):
        state = model.state_dict()
        save_checkpoint(
            path,
            {
                "format": 1,
                "kind": kind,
                "step": 7,
                "model": state,
                "ema": state,
                "config": {"model": model.cfg.to_dict(), "audio": audio.to_dict(), "data": data},
                "metrics": {"loss": 1.0},
                **(extra or {}),
            },
        )
        return path

    disc = MultiDiscriminator(DiscConfig(periods=(2,), mpd_channels=2, resolutions=(64,), mrd_channels=2))
    aux = {"aux": {"disc": disc.state_dict(), "optimizer": {}, "scheduler": {}}}
    a = ckpt(tmp_path / "a.pt", "acoustic", acoustic)
    with_disc = ckpt(tmp_path / "s_disc.pt", "student", student, aux)
    without = ckpt(tmp_path / "s.pt", "student", student)
    out1, _, _ = bundle_from_checkpoints(tmp_path / "v1", "v", acoustic=a, student=with_disc)
    out2, _, _ = bundle_from_checkpoints(tmp_path / "v2", "v", acoustic=a, student=without)
    graphs1 = sorted(p.name for p in out1.glob("*.onnx"))
    assert graphs1 == sorted(p.name for p in out2.glob("*.onnx")) and any("student" in g for g in graphs1)
    for name in graphs1:
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name
    import onnx

    student_graph = onnx.load(str(out1 / next(g for g in graphs1 if "student" in g)))
    assert not any("disc" in init.name for init in student_graph.graph.initializer)
