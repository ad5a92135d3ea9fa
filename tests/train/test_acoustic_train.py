"""`parawave train acoustic` on a tiny synthetic corpus whose phonemes are sounds of known duration."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from model.acoustic import acoustic_from_checkpoint
from model.checkpoint import UserError, load_checkpoint
from model.data.audio import save_wav
from model.text import default_symbols
from model.train.acoustic import train
from model.train.config import TrainArgs
from service.cli import app

SR, HOP = 16_000, 200
PHONES = "abdefgiklm"  # one synthetic "vowel" per symbol
F0 = {"low": 120.0, "high": 210.0}  # Hz per speaker


def formant_envelopes(seed: int = 123) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A spectral envelope per phone (three random formants over 0-8 kHz): broadband, speech-like."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 8000.0, 801)
    env = {}
    for p in PHONES:
        centres, widths, gains = rng.uniform(200, 6000, 3), rng.uniform(150, 600, 3), rng.uniform(0.5, 1, 3)
        bumps = gains[:, None] * np.exp(-0.5 * ((grid - centres[:, None]) / widths[:, None]) ** 2)
        env[p] = bumps.sum(0) + 0.02
    return grid, env


runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write_phone_corpus(
    root: Path, n_clips: int = 12, speakers=("low", "high"), seed: int = 0, frame_range=(3, 9)
) -> dict:
    """Clips of 3-6 "phonemes", each a harmonic sound (the speaker's f0, the phone's formants) held
    frame_range[0] .. frame_range[1] - 1 frames. Returns {id: true frames per symbol}."""
    rng = np.random.default_rng(seed)
    table = default_symbols()
    grid, env = formant_envelopes()
    (root / "wavs").mkdir(parents=True)
    meta, manifest, splits, truth = [], [], [], {}
    for k in range(n_clips):
        clip_id = f"c{k:03d}"
        speaker = speakers[k % len(speakers)]
        n_phones = int(rng.integers(3, 7))
        phones = str(rng.choice(list(PHONES)))
        while len(phones) < n_phones:  # no symbol twice in a row
            p = str(rng.choice(list(PHONES)))
            phones += p if p != phones[-1] else ""
        frames = rng.integers(*frame_range, size=len(phones))
        f0 = F0.get(speaker, 150.0)
        harmonics = np.arange(1, int(7800 // f0) + 1)[:, None]  # (H, 1)
        parts = []
        for p, f in zip(phones, frames, strict=True):
            t = np.arange(int(f) * HOP)[None, :] / SR  # (1, T)
            amp = np.interp(harmonics[:, 0] * f0, grid, env[p])[:, None]  # (H, 1)
            parts.append((amp * np.sin(2 * np.pi * f0 * harmonics * t)).sum(0))
        audio = np.concatenate(parts)
        audio = 0.3 * audio / np.abs(audio).max() + 0.002 * rng.standard_normal(audio.shape[0])
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
def test_learned_alignment_recovers_known_durations(tmp_path):
    """Longer run (~1 min): the aligner's hard alignment finds the known phone boundaries.

    Limits of this synthetic check: every boundary is an abrupt switch, which the 50 ms analysis
    window smears over ~4 frames (MAS on per-clip oracle templates is off by ~1 frame per phone),
    and the learned boundaries come out 1-2 frames early (the onset of the next sound shows in the
    log-mel before the switch). Hence the loose bounds; the real check is the flite comparison.
    """
    from model.data.config import AudioConfig
    from model.data.dataset import TTSDataset, collate_tts

    root = tmp_path / "corpus"
    truth = write_phone_corpus(root, n_clips=80, seed=1, frame_range=(4, 15))
    out = tmp_path / "run"
    sets = ("sample_every=-1", "val_every=0", "steps=400", "batch_size=8", "bin_start=200")
    train(TrainArgs(data=root, out=out, preset="tiny", max_steps=400, sets=sets))
    model = acoustic_from_checkpoint(load_checkpoint(out / "checkpoints" / "last.pt"))
    ds = TTSDataset(root, "train", AudioConfig(), pitch=True)
    errors, even, boundaries = [], [], []
    with torch.no_grad():
        for i in range(len(ds)):
            b = collate_tts([ds[i]])
            res = model(
                b["phonemes"], b["phoneme_lengths"], b["mel"], b["mel_lengths"], b["speaker"], f0=b["f0"]
            )
            true = np.asarray(truth[b["ids"][0]])
            learned = res["durations"][0].numpy()
            errors += np.abs(learned - true).tolist()
            even += np.abs(np.diff(np.round(np.linspace(0, true.sum(), len(true) + 1))) - true).tolist()
            boundaries += (np.cumsum(learned)[:-1] - np.cumsum(true)[:-1]).tolist()
    errors, boundaries = np.asarray(errors), np.abs(boundaries)
    assert errors.mean() < 0.8 * np.mean(even), (errors.mean(), np.mean(even))
    assert (boundaries <= 2).mean() > 0.8, (boundaries <= 2).mean()


def tiny_teacher_checkpoint(path: Path, speakers: list[str]) -> Path:
    """An untrained tiny WaveNet teacher saved like the trainer saves it (enough to vocode)."""
    from dataclasses import replace

    from model.data.config import AudioConfig
    from model.teacher import PRESETS, TeacherWaveNet

    torch.manual_seed(0)
    cfg = replace(PRESETS["tiny"], n_speakers=len(speakers))
    teacher = TeacherWaveNet(cfg)
    ckpt = {
        "kind": "teacher",
        "step": 0,
        "model": teacher.state_dict(),
        "ema": None,
        "config": {"model": cfg.to_dict(), "audio": AudioConfig().to_dict(), "data": {"speakers": speakers}},
    }
    torch.save(ckpt, path)
    return path


def test_synth_text_through_acoustic_and_teacher(trained, tmp_path):
    out, _ = trained
    acoustic = out / "checkpoints" / "last.pt"
    teacher = tiny_teacher_checkpoint(tmp_path / "teacher.pt", ["high", "low"])
    wav = tmp_path / "out.wav"
    args = ["synth", "--text", "Add dough.", "--acoustic", str(acoustic), "--checkpoint", str(teacher)]
    result = runner.invoke(app, [*args, "--speaker", "low", "--greedy", "-o", str(wav)])
    assert result.exit_code == 0, result.output
    from model.data.audio import load_wav

    audio, sr = load_wav(wav)
    assert sr == SR and audio.shape[0] > 0 and audio.shape[0] % HOP == 0
    # speed 2 gives about half the frames (at least one frame per phoneme)
    fast = tmp_path / "fast.wav"
    result = runner.invoke(app, [*args, "--speed", "2", "--greedy", "-o", str(fast)])
    assert result.exit_code == 0, result.output
    assert load_wav(fast)[0].shape[0] < audio.shape[0]
    # user errors: one line, exit 2
    for extra, message in [
        (["--speed", "9"], "speed"),
        (["--speaker", "nobody"], "unknown speaker"),
        (["--mel", str(tmp_path / "x.npy")], "not both"),
    ]:
        result = runner.invoke(app, [*args, *extra, "-o", str(tmp_path / "bad.wav")])
        assert result.exit_code == 2 and message in result.output, result.output
    result = runner.invoke(app, ["synth", "--text", "Hi.", "--checkpoint", str(teacher), "-o", str(wav)])
    assert result.exit_code == 2 and "--acoustic" in result.output
    result = runner.invoke(app, [*args[:3], "--acoustic", str(teacher), "-c", str(teacher), "-o", str(wav)])
    assert result.exit_code == 2 and "not an acoustic model" in result.output
