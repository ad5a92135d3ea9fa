"""AudioMeter: audio bytes and first-audio detection in wav/pcm bodies, in pieces of any size."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from service.audio import StreamEncoder, encode
from service.loadtest.meter import AudioMeter

RATE = 22050


def _audio(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _feed(meter: AudioMeter, data: bytes, size: int) -> list[int]:
    return [meter.feed(data[i : i + size]) for i in range(0, len(data), size)]


@pytest.mark.parametrize("piece", [1, 7, 44, 45, 4096])
def test_streamed_wav_counts_audio_after_the_header(piece):
    enc = StreamEncoder("wav", RATE)
    data = enc.write(_audio(0.5)) + enc.write(_audio(0.25)) + enc.close()
    meter = AudioMeter("wav")
    counts = _feed(meter, data, piece)
    assert meter.sample_rate == RATE
    assert meter.audio_bytes == len(data) - 44 == sum(counts)
    assert meter.audio_seconds == pytest.approx(0.75, abs=1 / RATE)
    first = next(i for i, n in enumerate(counts) if n)
    assert first * piece < 45 <= (first + 1) * piece  # the first audio byte is byte 45


def test_whole_wav_from_soundfile_with_extra_chunks_and_trailer():
    audio = _audio(0.3)
    data = encode(audio, RATE, "wav")
    # put a LIST chunk before data and a trailing chunk after it: neither is audio
    riff = data[:12]
    body = data[12:]
    info = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\0"  # odd size: padded to even
    data_at = body.index(b"data")
    data = riff + body[:data_at] + info + body[data_at:] + b"junk" + struct.pack("<I", 4) + b"1234"
    meter = AudioMeter("wav")
    _feed(meter, data, 10)
    assert meter.audio_bytes == 2 * len(audio)
    decoded, rate = sf.read(io.BytesIO(encode(audio, RATE, "wav")))
    assert meter.audio_seconds == pytest.approx(len(decoded) / rate)


def test_pcm_needs_the_rate_and_counts_everything():
    with pytest.raises(ValueError, match="sample rate"):
        AudioMeter("pcm")
    meter = AudioMeter("pcm", 16000)
    assert meter.feed(b"\0\0" * 8000) == 16000
    assert meter.audio_seconds == pytest.approx(0.5)


def test_rejects_what_it_cannot_measure():
    with pytest.raises(ValueError, match="wav or pcm"):
        AudioMeter("mp3")
    meter = AudioMeter("wav")
    with pytest.raises(ValueError, match="not a wav"):
        meter.feed(b"ID3\x04" + b"\0" * 20)
    float_wav = encode(_audio(0.1), RATE, "wav")
    float_wav = float_wav[:20] + struct.pack("<H", 3) + float_wav[22:]  # format tag 3 = IEEE float
    with pytest.raises(ValueError, match="not integer PCM"):
        AudioMeter("wav").feed(float_wav)
