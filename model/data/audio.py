"""Reading and writing wav files.

soundfile (libsndfile) is used when it can be imported; otherwise scipy.io.wavfile, so training on a
host that has only torch/numpy/scipy reads the same corpora. Both paths return the same thing:
float32 mono samples in [-1, 1] and the sample rate. Writes are PCM16 and atomic (temp file in the
same folder, then rename), so an interrupted writer never leaves a half-written wav behind.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

try:  # libsndfile may be missing (ImportError) or broken (OSError when loading the shared library)
    import soundfile as _sf
except (ImportError, OSError):
    _sf = None


def backend() -> str:
    """Name of the library used for wav I/O: "soundfile" or "scipy"."""
    return "soundfile" if _sf is not None else "scipy"


def _to_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM (any width scipy returns) or float samples -> float32 in [-1, 1]."""
    if data.dtype == np.uint8:  # 8-bit wav is unsigned with a 128 offset
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.integer):
        return (data.astype(np.float64) / float(-np.iinfo(data.dtype).min)).astype(np.float32)
    return data.astype(np.float32, copy=False)


def load_wav(path: str | os.PathLike, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read a wav file.

    Returns (audio, sample_rate): audio is float32 in [-1, 1], shape (T,) mixed down to mono by
    averaging the channels, or (T, C) when ``mono=False``. Raises on unreadable files.
    """
    if _sf is not None:
        data, sr = _sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    else:
        from scipy.io import wavfile

        sr, raw = wavfile.read(str(path))
        data = _to_float(raw)
        if data.ndim == 1:
            data = data[:, None]  # (T, 1)
    if mono:
        audio = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)  # (T,)
        return np.ascontiguousarray(audio, dtype=np.float32), int(sr)
    return np.ascontiguousarray(data, dtype=np.float32), int(sr)


def wav_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(sample_rate, frames, channels) without decoding the samples. Raises on unreadable files."""
    if _sf is not None:
        info = _sf.info(str(path))
        return int(info.samplerate), int(info.frames), int(info.channels)
    from scipy.io import wavfile

    sr, raw = wavfile.read(str(path), mmap=True)  # header parse + memory map, no decode
    channels = 1 if raw.ndim == 1 else raw.shape[1]
    return int(sr), int(raw.shape[0]), int(channels)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float samples -> int16, clipped to [-1, 1] first. Non-finite samples are an error."""
    audio = np.asarray(audio, dtype=np.float32)
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite samples")
    return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def save_wav(path: str | os.PathLike, audio: np.ndarray, sr: int) -> None:
    """Write mono float audio (T,) as 16-bit PCM, clipped to [-1, 1]; atomic replace of ``path``."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"save_wav expects mono audio of shape (T,), got {audio.shape}")
    pcm = to_pcm16(audio)  # (T,) int16
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")  # same folder: rename is atomic
    try:
        if _sf is not None:
            _sf.write(str(tmp), pcm, int(sr), subtype="PCM_16", format="WAV")
        else:
            from scipy.io import wavfile

            wavfile.write(tmp, int(sr), pcm)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
