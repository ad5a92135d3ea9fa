"""`python -m model.validation.nll`: the teacher's NLL on fixed windows of each split (the generalisation
gap), against an independent per-window computation, and its one-line CLI errors."""

from pathlib import Path

import pytest
import torch
from tone_corpus import write_tone_corpus

from model.data.config import AudioConfig
from model.data.corpus import Corpus
from model.data.dataset import VocoderDataset
from model.distributions import gaussian_nll
from model.teacher import TeacherWaveNet, preset
from model.train.config import TrainArgs
from model.train.teacher import train
from model.validation import nll

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    ids = [f"{s}_{i:04d}" for i, s in zip(range(10), ["lo", "hi"] * 5, strict=True)]
    splits = {i: ("val" if n in (4, 9) else "train") for n, i in enumerate(ids)}
    return write_tone_corpus(
        tmp_path_factory.mktemp("tones"), n_clips=10, speakers=("lo", "hi"), splits=splits
    )


@pytest.fixture(scope="module")
def checkpoint(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "teacher"
    train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=3, sets=("sample_every=0",)))
    return out / "checkpoints" / "last.pt"


def test_even_indices_spread_over_the_split():
    assert nll.even_indices(10, 3) == [0, 4, 9]
    assert nll.even_indices(5, 1) == [0]
    assert nll.even_indices(4, 10) == [0, 1, 2, 3]
    assert nll.even_indices(0, 3) == [] and nll.even_indices(3, 0) == []
    picked = nll.even_indices(1000, 300)
    assert len(picked) == 300 and picked[0] == 0 and picked[-1] == 999


def _excited_model() -> TeacherWaveNet:
    torch.manual_seed(0)
    model = TeacherWaveNet(preset("tiny", n_speakers=2)).eval()
    with torch.no_grad():  # the zero-initialised heads (output, excitation) made non-zero: every input counts
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("phase", ["f0", "recording"])
def test_split_nll_equals_the_windows_scored_one_by_one(corpus, phase):
    model = _excited_model()
    audio_cfg, data = AudioConfig(), Corpus(corpus)
    got = nll.split_nll(
        model, data, "train", audio_cfg, frames=6, clips=5, batch_size=2, excitation_phase=phase
    )
    dataset = VocoderDataset(corpus, "train", audio_cfg, 6, seed=0, excitation=True, excitation_phase=phase)
    chosen = nll.even_indices(len(dataset), 5)
    total, count, per = 0.0, 0, {name: [0.0, 0] for name in data.speakers}
    with torch.no_grad():
        for i in chosen:
            item = dataset[i]
            audio = item["audio"][None]  # (1, T)
            speaker = torch.tensor([item["speaker"]])
            mean, log_scale = model(audio, item["mel"][None], speaker, item["excitation"][None])
            window = float(gaussian_nll(audio, mean, log_scale, reduction="sum"))
            total, count = total + window, count + audio.numel()
            acc = per[data.speakers[item["speaker"]]]
            acc[0], acc[1] = acc[0] + window, acc[1] + audio.numel()
    assert got["clips"] == len(chosen) == 5 and got["samples"] == count
    assert got["nll"] == pytest.approx(total / count, rel=1e-5)
    assert set(got["speakers"]) == set(per) == {"lo", "hi"}  # chosen across the split: both speakers
    for name, (t, c) in per.items():
        assert got["speakers"][name] == pytest.approx(t / c, rel=1e-5), name
    # a different window seed scores other windows: the seed is honoured
    other = nll.split_nll(
        model, data, "train", audio_cfg, frames=6, clips=5, batch_size=2, seed=1, excitation_phase=phase
    )
    assert other["nll"] != pytest.approx(got["nll"], rel=1e-6)


def test_split_nll_scores_the_excitation_phase_it_is_given(corpus):
    model, audio_cfg, data = _excited_model(), AudioConfig(), Corpus(corpus)
    f0, true = (
        nll.split_nll(
            model, data, "train", audio_cfg, frames=6, clips=5, batch_size=2, excitation_phase=phase
        )
        for phase in ("f0", "recording")
    )
    assert f0["samples"] == true["samples"]  # the same windows...
    assert f0["nll"] != pytest.approx(true["nll"], rel=1e-6)  # ...under a different excitation
    with pytest.raises(ValueError, match="excitation_phase"):
        nll.split_nll(model, data, "train", audio_cfg, frames=6, clips=5, excitation_phase="random")


def test_cli_scores_with_the_phase_the_checkpoint_was_trained_with(corpus, tmp_path, capsys):
    out = tmp_path / "teacher"
    sets = ("sample_every=0", "excitation_phase=recording")
    train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=2, sets=sets))
    ckpt = out / "checkpoints" / "last.pt"
    base = [
        "--checkpoint",
        str(ckpt),
        "--data",
        str(corpus),
        "--clips",
        "3",
        "--frames",
        "6",
        "--splits",
        "val",
    ]

    def val_row(*extra) -> tuple[str, float]:
        assert nll.main([*base, *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        return lines[0], float(lines[2].split("\t")[3])

    head, trained = val_row()
    assert head.endswith("recording-phase excitation")
    assert val_row("--excitation-phase", "recording") == (head, trained)
    head_f0, runtime = val_row("--excitation-phase", "f0")
    assert head_f0.endswith("f0-phase excitation") and runtime != pytest.approx(trained, rel=1e-6)
    assert nll.main([*base, "--excitation-phase", "pulse"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --excitation-phase") and err.count("\n") == 1


def test_cli_prints_each_split_and_the_gap(checkpoint, corpus, capsys):
    assert (
        nll.main(["--checkpoint", str(checkpoint), "--data", str(corpus), "--clips", "3", "--frames", "6"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("teacher step 3,")
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[2:]}
    assert set(rows) == {"train", "val", "gap (val - train)"}
    assert lines[1].split("\t")[4:] == ["nll hi", "nll lo"]
    assert rows["train"][1] == "3" and rows["val"][1] == "2"  # the val split has 2 clips
    assert all(float(v) < 100 for v in rows["val"][4:6])  # one lo and one hi val clip
    gap = float(rows["gap (val - train)"][-1])
    assert gap == pytest.approx(float(rows["val"][3]) - float(rows["train"][3]), abs=2e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--splits", "dev"], "unknown split"),
        (["--clips", "0"], "must be positive"),
        (["--splits", "test"], "has no clips"),
    ],
)
def test_cli_errors_are_one_line(checkpoint, corpus, capsys, args, message):
    assert nll.main(["--checkpoint", str(checkpoint), "--data", str(corpus), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_cli_rejects_a_missing_checkpoint(corpus, tmp_path, capsys):
    assert nll.main(["--checkpoint", str(tmp_path / "none.pt"), "--data", str(corpus)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
