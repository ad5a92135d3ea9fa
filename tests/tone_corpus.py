"""A tiny synthetic LJSpeech-format corpus of tones and sweeps, for the training and synthesis tests.

Each clip is a harmonic tone whose pitch glides between two random frequencies, with a smooth
amplitude envelope; each speaker has its own harmonic mix, so a multi-speaker corpus has audibly
different "voices". Deterministic for a given seed. numpy + the project's wav writer only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from model.data.audio import save_wav

__all__ = ["tone", "write_tone_corpus"]


def tone(
    seconds: float, sr: int, f_start: float, f_end: float, harmonics: np.ndarray, amplitude: float
) -> np.ndarray:
    """A pitch glide with the given harmonic amplitudes and a raised-cosine fade in/out: (T,) float32."""
    n = round(seconds * sr)
    t = np.arange(n) / sr
    freq = np.geomspace(f_start, f_end, n)  # (T,) Hz
    phase = 2 * np.pi * np.cumsum(freq) / sr  # (T,)
    wave = sum(a * np.sin((k + 1) * phase) for k, a in enumerate(harmonics))
    wave = wave / max(np.abs(wave).max(), 1e-9)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)  # 20 ms fades
    env = 0.5 - 0.5 * np.cos(np.pi * np.clip(fade, 0.0, 1.0))
    return (amplitude * env * wave).astype(np.float32)


def write_tone_corpus(
    path: str | os.PathLike,
    n_clips: int = 8,
    seconds: tuple[float, float] = (0.5, 1.0),
    speakers: tuple[str, ...] = ("tone",),
    sample_rate: int = 16_000,
    seed: int = 0,
    splits: dict[str, str] | None = None,
) -> Path:
    """Write ``<path>/metadata.csv`` (4 columns when several speakers) and ``<path>/wavs/*.wav``.

    ``splits`` ({id: split}) writes ``splits.csv``; by default the last clip is val, the rest train.
    Returns the corpus path.
    """
    path = Path(path)
    (path / "wavs").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mixes = {s: rng.uniform(0.1, 1.0, size=1 + i % 4) for i, s in enumerate(speakers)}
    lines, ids = [], []
    for i in range(n_clips):
        speaker = speakers[i % len(speakers)]
        clip_id = f"{speaker}_{i:04d}" if len(speakers) > 1 else f"clip{i:04d}"
        f0, f1 = rng.uniform(110.0, 330.0, size=2)
        audio = tone(
            float(rng.uniform(*seconds)), sample_rate, f0, f1, mixes[speaker], float(rng.uniform(0.2, 0.6))
        )
        save_wav(path / "wavs" / f"{clip_id}.wav", audio, sample_rate)
        text = f"tone {i} from {f0:.0f} to {f1:.0f} hertz"
        lines.append(f"{clip_id}|{text}|{text}" + (f"|{speaker}" if len(speakers) > 1 else ""))
        ids.append(clip_id)
    (path / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if splits is None:
        splits = {clip_id: ("val" if k == len(ids) - 1 else "train") for k, clip_id in enumerate(ids)}
    (path / "splits.csv").write_text("".join(f"{k}|{v}\n" for k, v in splits.items()), encoding="utf-8")
    return path
