"""Decoding the service's response bodies in tests: every format back to float audio and its rate."""

from __future__ import annotations

import io

import av
import numpy as np
import soundfile as sf


def decode_aac(data: bytes) -> tuple[np.ndarray, int]:
    """An ADTS (AAC) stream -> (T,) float32, sample rate (FFmpeg through PyAV)."""
    with av.open(io.BytesIO(data), format="adts") as f:
        rate = f.streams.audio[0].rate
        return np.concatenate([fr.to_ndarray().reshape(-1) for fr in f.decode(audio=0)]), rate


def decode(data: bytes, fmt: str, rate: int) -> tuple[np.ndarray, int]:
    """Response bytes in ``fmt`` -> (T,) float32, sample rate (``rate`` is what raw ``pcm`` is at)."""
    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0, rate
    if fmt == "aac":
        return decode_aac(data)
    with sf.SoundFile(io.BytesIO(data)) as f:
        return f.read(dtype="float32"), f.samplerate
