"""`parawave train acoustic` on a tiny synthetic corpus whose phonemes are tones of known duration."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from model.acoustic import acoustic_from_checkpoint
from model.data.audio import save_wav
from model.text import default_symbols
from model.train.acoustic import train
from model.train.common import TrainArgs, UserError, load_checkpoint
from service.cli import app

SR, HOP = 16_000, 200
PHONES = "abdefgiklm"  # one tone per symbol
FREQS = dict(
    zip(PHONES, [250.0, 400.0, 600.0, 850.0, 1150.0, 1500.0, 2000.0, 2600.0, 3300.0, 4200.0], strict=True)
)

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared CPU: one intra-op thread is many times faster than oversubscribed ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_phone_corpus(root: Path, n_clips: int = 12, speakers=("low", "high"), seed: int = 0) -> dict:
    """Clips of 3-6 "phonemes", each a tone held 3-8 frames. Returns {id: true frames per symbol}."""
    rng = np.random.default_rng(seed)
    table = default_symbols()
    (root / "wavs").mkdir(parents=True)
    meta, manifest, splits, truth = [], [], [], {}
    for k in range(n_clips):
        clip_id = f"c{k:03d}"
        speaker = speakers[k % len(speakers)]
        phones = "".join(rng.choice(list(PHONES), size=int(rng.integers(3, 7))))
        frames = rng.integers(3, 9, size=len(phones))
        gain = 0.2 if speaker == "low" else 0.4
        parts = []
        for p, f in zip(phones, frames, strict=True):
            t = np.arange(int(f) * HOP) / SR
            parts.append(gain * np.sin(2 * np.pi * FREQS[p] * t))
        audio = np.concatenate(parts) + 0.005 * rng.standard_normal(int(frames.sum()) * HOP)
        save_wav(root / "wavs" / f"{clip_id}.wav", audio.astype(np.float32), SR)
        split = "val" if k < 2 else "train"
        meta.append(f"{clip_id}|{phones}|{phones}|{speaker}")
        splits.append(f"{clip_id}|{split}")
        ids = table.encode(phones)
        manifest.append(
            {
                "id": clip_id,
                "speaker": speaker,
                "split": split,
                "text": phones,
                "phonemes": phones,
                "ids": ids,
            }
        )
        truth[clip_id] = frames.tolist()
    (root / "metadata.csv").write_text("\n".join(meta) + "\n")
    (root / "splits.csv").write_text("\n".join(splits) + "\n")
    (root / "phonemes.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    (root / "symbols.json").write_text(json.dumps(table.to_dict(), ensure_ascii=False))
    return truth


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phones") / "corpus"
    write_phone_corpus(root)
    return root


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "acoustic"
    summary = train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=40, sets=("sample_every=0",)))
    return out, summary


def test_tiny_acoustic_loss_drops(trained):
    out, summary = trained
    assert summary["step"] == 40
    losses = [loss for _, loss in summary["history"]]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    val = summary["val"]
    assert np.isfinite(val["loss"]) and val["total_duration_rel_err"] >= 0 and 0 <= val["within_15pct"] <= 1
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "checkpoints" / "best.pt").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["n_speakers"] == 2 and config["data"]["speakers"] == ["high", "low"]
    assert config["data"]["symbols"]["symbols"][:2] == ["_", "\ufffd"]
    events = list((out / "tb").iterdir())
    assert events and sum(p.stat().st_size for p in events) > 1000  # scalars + alignment/mel figures


def test_checkpoint_builds_an_inference_model(trained):
    out, _ = trained
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    model = acoustic_from_checkpoint(ckpt)
    assert model.mel_std.mean() != 1.0  # normalisation measured on the corpus and saved
    ids = torch.tensor([default_symbols().encode("abdk")])
    mel, durations = model.infer(ids, torch.tensor([4]), torch.tensor([1]), speed=1.0)
    assert mel.shape == (1, 80, int(durations.sum())) and torch.isfinite(mel).all()


def test_resume_continues_from_saved_step(corpus, tmp_path):
    out = tmp_path / "run"
    first = train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=3, sets=("sample_every=-1",)))
    assert first["step"] == 3
    with pytest.raises(UserError, match="--resume"):
        train(TrainArgs(data=corpus, out=out, preset="tiny", max_steps=6))
    with pytest.raises(UserError, match=r"cannot change model\.d_model"):
        train(TrainArgs(data=corpus, out=out, resume=True, max_steps=6, sets=("model.d_model=64",)))
    second = train(TrainArgs(data=corpus, out=out, resume=True, max_steps=6, sets=("bin_start=4",)))
    assert second["start_step"] == 3 and second["step"] == 6 and len(second["history"]) == 3
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["step"] == 6 and ckpt["config"]["train"]["bin_start"] == 4


def test_cli_reports_missing_manifest(tmp_path):
    (tmp_path / "c" / "wavs").mkdir(parents=True)
    (tmp_path / "c" / "metadata.csv").write_text("a|x|x\n")
    result = runner.invoke(
        app, ["train", "acoustic", "--data", str(tmp_path / "c"), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "phonemes.jsonl" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_learned_alignment_recovers_tone_durations(tmp_path):
    """Longer run: the hard alignment of the aligner matches the known tone durations."""
    root = tmp_path / "corpus"
    truth = write_phone_corpus(root, n_clips=24, seed=1)
    out = tmp_path / "run"
    train(
        TrainArgs(data=root, out=out, preset="tiny", max_steps=300, sets=("sample_every=-1", "val_every=0"))
    )
    model = acoustic_from_checkpoint(load_checkpoint(out / "checkpoints" / "last.pt"))
    from model.data.config import AudioConfig
    from model.data.dataset import TTSDataset, collate_tts

    ds = TTSDataset(root, "train", AudioConfig())
    errors = []
    with torch.no_grad():
        for i in range(len(ds)):
            b = collate_tts([ds[i]])
            res = model(b["phonemes"], b["phoneme_lengths"], b["mel"], b["mel_lengths"], b["speaker"])
            errors += np.abs(res["durations"][0].numpy() - np.asarray(truth[b["ids"][0]])).tolist()
    assert np.mean(errors) < 1.0, np.mean(errors)
