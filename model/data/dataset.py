"""PyTorch datasets over a corpus: (phoneme ids, mel, audio, speaker) for the acoustic model, and
frame-aligned random (mel, audio) windows for the vocoders.

Mels come from the per-clip cache (:func:`model.data.features.cached_log_mel`), computed and cached
on a miss. Everything a dataset holds is plain data (paths, dicts, a frozen config), so DataLoader
workers (num_workers > 0) get it by pickling; the collate functions are module-level.

Alignment contract: mel frame f covers audio samples ``[f*hop, (f+1)*hop)``; a clip of T samples
yields ``F = T // hop`` frames and its audio is trimmed to ``F*hop`` samples. A vocoder window of
frames ``[s, s+S)`` therefore comes with exactly samples ``[s*hop, (s+S)*hop)``.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from core.excitation import excitation as excitation_signal
from model.data.config import AudioConfig
from model.data.corpus import Corpus, CorpusError
from model.data.excitation import EXCITATION_PHASES, recording_excitation
from model.data.features import cached_log_mel, load_clip_audio, silence_value
from model.data.pitch import cached_f0

__all__ = [
    "Corpus",
    "TTSDataset",
    "VocoderDataset",
    "clip_excitation",
    "collate_tts",
    "collate_vocoder",
    "load_clip",
    "load_clip_f0",
]

log = logging.getLogger(__name__)

_DEFAULT_MEL_PAD = silence_value(AudioConfig())


def _as_corpus(corpus: Corpus | str | os.PathLike) -> Corpus:
    return corpus if isinstance(corpus, Corpus) else Corpus(corpus)


def load_clip(corpus: Corpus, clip_id: str, cfg: AudioConfig) -> tuple[np.ndarray, np.ndarray]:
    """(mel (n_mels, F) float32, audio (F*hop,) float32) of a clip; the mel from the cache."""
    audio = load_clip_audio(corpus.path, clip_id, cfg)
    n_frames = audio.shape[0] // cfg.hop_length
    audio = audio[: n_frames * cfg.hop_length]  # (F*hop,)
    mel = cached_log_mel(corpus.path, clip_id, lambda _id: audio, cfg, expected_frames=n_frames)
    return mel, audio


def load_clip_f0(corpus: Corpus, clip_id: str, cfg: AudioConfig, audio: np.ndarray) -> np.ndarray:
    """(F,) F0 in Hz per mel frame of a clip (0 = unvoiced), from the cache (``audio`` is the clip's
    trimmed audio, used on a cache miss)."""
    return cached_f0(
        corpus.path, clip_id, lambda _id: audio, cfg, expected_frames=audio.shape[0] // cfg.hop_length
    )


def clip_excitation(corpus: Corpus, clip_id: str, cfg: AudioConfig, frames: int) -> torch.Tensor:
    """(1, 3, frames*hop) excitation of a clip's first ``frames`` frames (TensorBoard samples)."""
    _, audio = load_clip(corpus, clip_id, cfg)
    f0 = load_clip_f0(corpus, clip_id, cfg, audio)[:frames]
    return torch.from_numpy(excitation_signal(f0, cfg.hop_length, cfg.sample_rate))[None]


class TTSDataset(Dataset):
    """Items: {"id": str, "phonemes": LongTensor (L,), "mel": FloatTensor (n_mels, F),
    "audio": FloatTensor (F*hop,), "speaker": int} and, with ``pitch``, "f0": FloatTensor (F,) Hz
    (0 = unvoiced). Needs the phoneme manifest."""

    def __init__(
        self, corpus: Corpus | str | os.PathLike, split: str | None, cfg: AudioConfig, pitch: bool = False
    ):
        self.corpus = _as_corpus(corpus)
        self.cfg = cfg
        self.pitch = pitch
        manifest = self.corpus.require_manifest()
        ids = self.corpus.ids(split)
        missing = [i for i in ids if i not in manifest]
        if missing:
            raise CorpusError(
                f"{self.corpus.path / 'phonemes.jsonl'}: {len(missing)} clips missing (e.g. {missing[0]!r}); "
                "rebuild it with `parawave data manifest`"
            )
        empty = [i for i in ids if not manifest[i]["ids"]]
        if empty:
            log.warning("skipping %d clips without phonemes (e.g. %s)", len(empty), empty[0])
        self.ids = [i for i in ids if manifest[i]["ids"]]
        self.phonemes = {i: manifest[i]["ids"] for i in self.ids}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        clip_id = self.ids[index]
        mel, audio = load_clip(self.corpus, clip_id, self.cfg)
        item = {
            "id": clip_id,
            "phonemes": torch.tensor(self.phonemes[clip_id], dtype=torch.long),  # (L,)
            "mel": torch.from_numpy(mel),  # (n_mels, F)
            "audio": torch.from_numpy(audio),  # (F*hop,)
            "speaker": self.corpus.speaker_id(clip_id),
        }
        if self.pitch:
            item["f0"] = torch.from_numpy(load_clip_f0(self.corpus, clip_id, self.cfg, audio))  # (F,)
        return item


class VocoderDataset(Dataset):
    """Items: {"id": str, "mel": FloatTensor (n_mels, S), "audio": FloatTensor (S*hop,), "speaker": int}
    with S = segment_frames: a window starting at a random frame s, the audio being exactly the
    samples of those frames. Clips shorter than S frames are padded at the end (audio with zeros,
    mel with the silence value log(log_floor)). No manifest needed.

    ``seed=None``: a fresh window every time (torch's RNG, which DataLoader seeds per worker);
    ``seed=int``: the window of item i depends only on (seed, i) -- for deterministic validation.
    ``excitation=True`` adds "f0": (S,) Hz and "excitation": (3, S*hop) computed from the window's
    F0 (:func:`core.excitation.excitation`; its phase starts at the window), or with
    ``excitation_phase="recording"`` phase-locked to the window's audio
    (:func:`model.data.excitation.recording_excitation`, training only).
    """

    def __init__(
        self,
        corpus: Corpus | str | os.PathLike,
        split: str | None,
        cfg: AudioConfig,
        segment_frames: int,
        seed: int | None = None,
        excitation: bool = False,
        excitation_phase: str = "f0",
    ):
        if segment_frames <= 0:
            raise ValueError(f"segment_frames must be positive, got {segment_frames}")
        if excitation_phase not in EXCITATION_PHASES:
            raise ValueError(f"excitation_phase must be one of {EXCITATION_PHASES}, got {excitation_phase!r}")
        self.excitation_phase = excitation_phase
        self.corpus = _as_corpus(corpus)
        self.cfg = cfg
        self.segment_frames = segment_frames
        self.seed = seed
        self.excitation = excitation
        self.ids = self.corpus.ids(split)

    def __len__(self) -> int:
        return len(self.ids)

    def _start(self, index: int, max_start: int) -> int:
        if max_start <= 0:
            return 0
        if self.seed is None:
            return int(torch.randint(0, max_start + 1, ()).item())
        return int(np.random.default_rng((self.seed, index)).integers(0, max_start + 1))

    def __getitem__(self, index: int) -> dict:
        clip_id = self.ids[index]
        mel, audio = load_clip(self.corpus, clip_id, self.cfg)
        f0 = load_clip_f0(self.corpus, clip_id, self.cfg, audio) if self.excitation else None
        hop, seg = self.cfg.hop_length, self.segment_frames
        n_frames = mel.shape[1]
        start = self._start(index, n_frames - seg)
        mel = mel[:, start : start + seg]  # (n_mels, <=S)
        audio = audio[start * hop : (start + seg) * hop]  # (<=S*hop,)
        if f0 is not None:
            f0 = f0[start : start + seg]  # (<=S,)
        if mel.shape[1] < seg:
            pad = seg - mel.shape[1]
            mel = np.pad(mel, ((0, 0), (0, pad)), constant_values=silence_value(self.cfg))
            audio = np.pad(audio, (0, seg * hop - audio.shape[0]))
            if f0 is not None:
                f0 = np.pad(f0, (0, pad))  # unvoiced
        item = {
            "id": clip_id,
            "mel": torch.from_numpy(np.ascontiguousarray(mel)),  # (n_mels, S)
            "audio": torch.from_numpy(np.ascontiguousarray(audio)),  # (S*hop,)
            "speaker": self.corpus.speaker_id(clip_id),
        }
        if f0 is not None:
            item["f0"] = torch.from_numpy(np.ascontiguousarray(f0))  # (S,)
            if self.excitation_phase == "recording":
                exc = recording_excitation(f0, audio, hop, self.cfg.sample_rate)  # (3, S*hop)
            else:
                exc = excitation_signal(f0, hop, self.cfg.sample_rate)  # (3, S*hop)
            item["excitation"] = torch.from_numpy(exc)
        return item


def collate_tts(batch: list[dict], mel_pad_value: float = _DEFAULT_MEL_PAD) -> dict:
    """Pad a list of TTSDataset items to the batch maximum.

    Returns {"ids": list[str], "phonemes": (B, L) long (pad 0), "phoneme_lengths": (B,),
    "mel": (B, n_mels, F) (pad ``mel_pad_value``, silence by default), "mel_lengths": (B,),
    "audio": (B, F*hop) (pad 0), "audio_lengths": (B,), "speaker": (B,) long}.
    """
    if not batch:
        raise ValueError("empty batch")
    B = len(batch)
    n_mels = batch[0]["mel"].shape[0]
    ph_len = torch.tensor([b["phonemes"].shape[0] for b in batch], dtype=torch.long)  # (B,)
    mel_len = torch.tensor([b["mel"].shape[1] for b in batch], dtype=torch.long)  # (B,)
    au_len = torch.tensor([b["audio"].shape[0] for b in batch], dtype=torch.long)  # (B,)
    phonemes = torch.zeros(B, int(ph_len.max()), dtype=torch.long)  # (B, L)
    mel = torch.full((B, n_mels, int(mel_len.max())), float(mel_pad_value), dtype=torch.float32)  # (B, C, F)
    audio = torch.zeros(B, int(au_len.max()), dtype=torch.float32)  # (B, T)
    for i, b in enumerate(batch):
        phonemes[i, : ph_len[i]] = b["phonemes"]
        mel[i, :, : mel_len[i]] = b["mel"]
        audio[i, : au_len[i]] = b["audio"]
    extra = {}
    if "f0" in batch[0]:
        f0 = torch.zeros(B, int(mel_len.max()), dtype=torch.float32)  # (B, F), pad unvoiced
        for i, b in enumerate(batch):
            f0[i, : mel_len[i]] = b["f0"]
        extra["f0"] = f0
    return {
        **extra,
        "ids": [b["id"] for b in batch],
        "phonemes": phonemes,
        "phoneme_lengths": ph_len,
        "mel": mel,
        "mel_lengths": mel_len,
        "audio": audio,
        "audio_lengths": au_len,
        "speaker": torch.tensor([b["speaker"] for b in batch], dtype=torch.long),
    }


def collate_vocoder(batch: list[dict]) -> dict:
    """Stack VocoderDataset items: {"ids", "mel": (B, n_mels, S), "audio": (B, S*hop), "speaker": (B,)}."""
    if not batch:
        raise ValueError("empty batch")
    extra = {}
    if "excitation" in batch[0]:
        extra["f0"] = torch.stack([b["f0"] for b in batch])  # (B, S)
        extra["excitation"] = torch.stack([b["excitation"] for b in batch])  # (B, 3, S*hop)
    return {
        **extra,
        "ids": [b["id"] for b in batch],
        "mel": torch.stack([b["mel"] for b in batch]),  # (B, n_mels, S)
        "audio": torch.stack([b["audio"] for b in batch]),  # (B, S*hop)
        "speaker": torch.tensor([b["speaker"] for b in batch], dtype=torch.long),
    }
