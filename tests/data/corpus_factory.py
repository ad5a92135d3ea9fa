"""Tiny synthetic LJSpeech-format corpora for the data tests (numpy audio, no flite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.data.audio import save_wav


def tone(num_samples: int, sr: int = 16_000, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """(T,) float32: a sine plus a little noise, so every clip has distinct content."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(num_samples)).astype(np.float32)


def make_corpus(
    root: Path,
    clips: list[tuple[str, str, int]],
    speakers: list[str] | None = None,
    sr: int = 16_000,
    splits: dict[str, str] | None = None,
) -> Path:
    """Write ``root/metadata.csv`` + ``root/wavs/<id>.wav`` for (id, text, num_samples) clips.

    ``speakers`` (one per clip) adds the 4th metadata column; ``splits`` writes splits.csv.
    """
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (clip_id, text, n) in enumerate(clips):
        save_wav(root / "wavs" / f"{clip_id}.wav", tone(n, sr, freq=200.0 + 37.0 * k, seed=k), sr)
        line = f"{clip_id}|{text}|{text}"
        if speakers is not None:
            line += f"|{speakers[k]}"
        lines.append(line)
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if splits is not None:
        (root / "splits.csv").write_text("".join(f"{i}|{s}\n" for i, s in splits.items()), encoding="utf-8")
    return root
