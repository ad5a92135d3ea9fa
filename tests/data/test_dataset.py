"""TTS and vocoder datasets over a tiny synthetic corpus; collate functions; DataLoader workers."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from corpus_factory import make_corpus
from torch.utils.data import DataLoader

from model.data import features as F
from model.data.audio import load_wav
from model.data.config import AudioConfig
from model.data.corpus import CorpusError
from model.data.dataset import Corpus, TTSDataset, VocoderDataset, collate_tts, collate_vocoder

CFG = AudioConfig()
HOP = CFG.hop_length
# (id, text, samples): lengths that are not multiples of hop, one clip shorter than a window
CLIPS = [("rms_a", "one", 4_321), ("slt_a", "one", 6_050), ("rms_b", "two", 1_030), ("slt_b", "two", 9_999)]


def write_manifest(root, ids_of):
    lines = [
        json.dumps({"id": i, "speaker": i.split("_")[0], "split": "train", "phonemes": "x", "ids": ids})
        for i, ids in ids_of.items()
    ]
    (root / "phonemes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "symbols.json").write_text(json.dumps({"symbols": [str(k) for k in range(10)]}), encoding="utf-8")


@pytest.fixture
def corpus(tmp_path):
    root = make_corpus(
        tmp_path / "two",
        CLIPS,
        speakers=[c[0].split("_")[0] for c in CLIPS],
        splits={c[0]: "train" for c in CLIPS},
    )
    write_manifest(root, {"rms_a": [3, 4, 5], "slt_a": [3, 4, 5, 6, 7], "rms_b": [2], "slt_b": [9, 8, 7, 6]})
    return root


def full_clip(root, clip_id):
    audio, _ = load_wav(root / "wavs" / f"{clip_id}.wav")
    return F.log_mel(audio, CFG), audio


def test_corpus_speakers_and_ids(corpus):
    c = Corpus(corpus)
    assert c.speakers == ["rms", "slt"]
    assert [c.speaker_id(i) for i, _, _ in CLIPS] == [0, 1, 0, 1]
    assert c.ids("train") == [i for i, _, _ in CLIPS] and c.ids("val") == [] and c.ids(None) == c.ids("train")
    assert c.n_symbols == 10
    with pytest.raises(ValueError, match="unknown split"):
        c.ids("dev")


def test_tts_items(corpus):
    ds = TTSDataset(corpus, "train", CFG)
    assert len(ds) == len(CLIPS)
    for k, (clip_id, _, n) in enumerate(CLIPS):
        item = ds[k]
        frames = n // HOP
        assert item["id"] == clip_id
        assert item["phonemes"].dtype == torch.long and item["phonemes"].ndim == 1
        assert item["mel"].dtype == torch.float32 and item["mel"].shape == (CFG.n_mels, frames)
        assert item["audio"].dtype == torch.float32 and item["audio"].shape == (frames * HOP,)
        assert isinstance(item["speaker"], int) and item["speaker"] == ["rms", "slt"].index(clip_id[:3])
        mel, audio = full_clip(corpus, clip_id)
        np.testing.assert_array_equal(item["mel"].numpy(), mel)
        np.testing.assert_array_equal(item["audio"].numpy(), audio[: frames * HOP])
    assert ds[1]["phonemes"].tolist() == [3, 4, 5, 6, 7]
    # The mels are cached now: a second read gives identical arrays without recomputing.
    assert len(list(F.cache_dir(corpus, CFG).glob("*.npy"))) == len(CLIPS)
    np.testing.assert_array_equal(ds[0]["mel"].numpy(), np.load(F.mel_cache_path(corpus, "rms_a", CFG)))


def test_tts_needs_a_complete_manifest(corpus):
    (corpus / "phonemes.jsonl").unlink()
    with pytest.raises(CorpusError, match="parawave data manifest"):
        TTSDataset(corpus, "train", CFG)
    write_manifest(corpus, {"rms_a": [1]})
    with pytest.raises(CorpusError, match="3 clips missing"):
        TTSDataset(corpus, "train", CFG)
    # The vocoder does not need phonemes at all.
    assert len(VocoderDataset(corpus, "train", CFG, segment_frames=8)) == len(CLIPS)


def _window_start(full_audio, window_audio, seg):
    """The frame where ``window_audio`` sits in the clip (asserting it is frame-aligned)."""
    starts = [
        s
        for s in range(len(full_audio) // HOP - seg + 1)
        if np.array_equal(full_audio[s * HOP : (s + seg) * HOP], window_audio)
    ]
    assert len(starts) == 1
    return starts[0]


@pytest.mark.parametrize("seed", [None, 0, 7])
def test_vocoder_window_is_frame_aligned(corpus, seed):
    torch.manual_seed(0)
    seg = 12
    ds = VocoderDataset(corpus, "train", CFG, segment_frames=seg, seed=seed)
    starts = set()
    for _ in range(3):
        for k in (0, 1, 3):  # clips longer than the window
            item = ds[k]
            assert item["mel"].shape == (CFG.n_mels, seg) and item["mel"].dtype == torch.float32
            assert item["audio"].shape == (seg * HOP,) and item["audio"].dtype == torch.float32
            mel, audio = full_clip(corpus, ds.ids[k])
            s = _window_start(audio, item["audio"].numpy(), seg)
            # The mel window is the full clip's mel over exactly the frames of those samples.
            np.testing.assert_array_equal(item["mel"].numpy(), mel[:, s : s + seg])
            starts.add((k, s))
    if seed is None:
        assert len(starts) > 3  # fresh random windows
    else:
        assert len(starts) == 3  # the same window for an item every time


def test_vocoder_seed_changes_windows(corpus):
    picks = {
        seed: tuple(
            int(VocoderDataset(corpus, "train", CFG, 4, seed=seed)[3]["audio"][0] * 1e6) for _ in range(2)
        )
        for seed in range(6)
    }
    assert all(a == b for a, b in picks.values())
    assert len({a for a, _ in picks.values()}) > 1


def test_vocoder_pads_short_clips(corpus):
    seg = 16
    ds = VocoderDataset(corpus, "train", CFG, segment_frames=seg, seed=1)
    k = ds.ids.index("rms_b")  # 1030 samples: 5 frames
    item = ds[k]
    mel, audio = full_clip(corpus, "rms_b")
    assert mel.shape[1] == 5
    assert item["mel"].shape == (CFG.n_mels, seg) and item["audio"].shape == (seg * HOP,)
    np.testing.assert_array_equal(item["audio"][: 5 * HOP].numpy(), audio[: 5 * HOP])
    assert torch.all(item["audio"][5 * HOP :] == 0)
    np.testing.assert_array_equal(item["mel"][:, :5].numpy(), mel)
    assert torch.all(item["mel"][:, 5:] == np.float32(np.log(CFG.log_floor)))


def test_collate_tts_pads_and_reports_lengths(corpus):
    ds = TTSDataset(corpus, "train", CFG)
    items = [ds[k] for k in range(len(ds))]
    batch = collate_tts(items)
    B = len(items)
    frames = [n // HOP for _, _, n in CLIPS]
    assert batch["ids"] == [c[0] for c in CLIPS]
    assert batch["phonemes"].shape == (B, 5) and batch["phonemes"].dtype == torch.long
    assert batch["phoneme_lengths"].tolist() == [3, 5, 1, 4]
    assert batch["phonemes"][2].tolist() == [2, 0, 0, 0, 0]
    assert batch["mel"].shape == (B, CFG.n_mels, max(frames))
    assert batch["mel_lengths"].tolist() == frames
    assert batch["audio"].shape == (B, max(frames) * HOP)
    assert batch["audio_lengths"].tolist() == [f * HOP for f in frames]
    assert batch["speaker"].tolist() == [0, 1, 0, 1] and batch["speaker"].dtype == torch.long
    for i, item in enumerate(items):
        f = frames[i]
        assert torch.equal(batch["mel"][i, :, :f], item["mel"])
        assert torch.all(batch["mel"][i, :, f:] == np.float32(F.silence_value(CFG)))
        assert torch.equal(batch["audio"][i, : f * HOP], item["audio"])
        assert torch.all(batch["audio"][i, f * HOP :] == 0)
    assert torch.all(collate_tts(items, mel_pad_value=0.0)["mel"][2, :, frames[2] :] == 0)


def test_collate_vocoder(corpus):
    ds = VocoderDataset(corpus, "train", CFG, segment_frames=6, seed=0)
    batch = collate_vocoder([ds[k] for k in range(len(ds))])
    assert batch["mel"].shape == (len(ds), CFG.n_mels, 6)
    assert batch["audio"].shape == (len(ds), 6 * HOP)
    assert batch["speaker"].tolist() == [0, 1, 0, 1]
    assert torch.equal(batch["audio"][1], ds[1]["audio"])


def test_dataloader_with_workers(corpus):
    tts = TTSDataset(corpus, "train", CFG)
    voc = VocoderDataset(corpus, "train", CFG, segment_frames=8, seed=3)
    for ds in (tts, voc):
        assert len(pickle.dumps(ds)) < 100_000  # plain data: cheap to send to workers
    loader = DataLoader(tts, batch_size=2, num_workers=2, collate_fn=collate_tts)
    batches = list(loader)
    assert [b["ids"] for b in batches] == [["rms_a", "slt_a"], ["rms_b", "slt_b"]]
    assert batches[1]["mel_lengths"].tolist() == [1_030 // HOP, 9_999 // HOP]
    loader = DataLoader(voc, batch_size=4, num_workers=2, collate_fn=collate_vocoder)
    (vb,) = list(loader)
    assert vb["mel"].shape == (4, CFG.n_mels, 8) and vb["audio"].shape == (4, 8 * HOP)
    # Seeded windows are the same in workers as in the main process.
    assert torch.equal(vb["audio"][3], voc[3]["audio"])
