"""service.audio: every format decodes to the right rate and length, whole and streamed."""

import struct

import numpy as np
import pytest
from audio_decode import decode, decode_aac
from scipy.signal import resample_poly

from service.audio import (
    CONTENT_TYPES,
    StreamEncoder,
    _StreamResampler,
    available_formats,
    encode,
    output_rate,
    wav_stream_header,
)

FORMATS = [f for f in ("wav", "flac", "mp3", "opus", "aac", "pcm") if f in available_formats()]


def _signal(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * 330 * t) * np.hanning(len(t))).astype(np.float32)


def test_the_lossless_formats_and_aac_are_available():
    assert {"wav", "flac", "pcm", "aac"} <= set(available_formats())  # aac: PyAV, a dependency
    assert set(available_formats()) <= set(CONTENT_TYPES)


def test_aac_stream_is_adts_frames_from_the_first_chunk():
    """Each streamed piece is whole ADTS frames (sync word first): a client can play a prefix."""
    enc = StreamEncoder("aac", 16000)
    x = _signal(1.0, 16000)
    pieces = [enc.write(p) for p in np.array_split(x, 4)] + [enc.close()]
    assert all(p[:2] in (b"\xff\xf1", b"\xff\xf9") for p in pieces if p)
    y, rate = decode_aac(pieces[0] + pieces[1])  # a prefix decodes on its own
    assert rate == 16000 and len(y) > 0


@pytest.mark.parametrize("rate", [16000, 22050])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("streamed", [False, True])
def test_format_roundtrip(fmt, rate, streamed):
    x = _signal(1.0, rate)
    if streamed:
        enc = StreamEncoder(fmt, rate)
        data = b"".join(enc.write(part) for part in np.array_split(x, 7)) + enc.close()
    else:
        data = encode(x, rate, fmt)
    y, got_rate = decode(data, fmt, rate)
    assert got_rate == output_rate(fmt, rate)
    expected = len(x) * got_rate / rate
    # lossy codecs add encoder delay and padding (a streamed mp3 also a blank info frame): < 150 ms
    slack = 0 if fmt in ("wav", "flac", "pcm") else 0.15 * got_rate
    assert expected - 1 <= len(y) <= expected + slack + 1
    if fmt in ("wav", "flac", "pcm"):
        assert np.max(np.abs(y - x)) < 2e-4  # 16-bit quantization only
    else:
        assert 0.2 < np.max(np.abs(y)) < 0.6  # audio, not silence


def test_opus_rate_rule():
    assert output_rate("opus", 16000) == 16000
    assert output_rate("opus", 22050) == 24000
    assert output_rate("opus", 44100) == 48000
    assert output_rate("opus", 96000) == 48000
    assert output_rate("wav", 22050) == 22050


def test_wav_stream_header_fields():
    h = wav_stream_header(16000)
    assert len(h) == 44 and h[:4] == b"RIFF" and h[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", h[4:8])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", h[40:44])[0] == 0xFFFFFFFF
    fmt_tag, channels, rate, byte_rate, block, bits = struct.unpack("<HHIIHH", h[20:36])
    assert (fmt_tag, channels, rate, byte_rate, block, bits) == (1, 1, 16000, 32000, 2, 16)


def test_streamed_wav_first_bytes_come_with_the_first_chunk():
    enc = StreamEncoder("wav", 16000)
    first = enc.write(np.zeros(1600, np.float32))
    assert len(first) == 44 + 3200  # header + the chunk, nothing held back


def test_stream_resampler_matches_whole_signal():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(22050).astype(np.float32)
    r = _StreamResampler(22050, 24000)
    cuts = [1, 2, 500, 501, 4000, 12000]
    y = np.concatenate([r.push(p) for p in np.split(x, cuts)] + [r.flush()])
    ref = resample_poly(x, 160, 147)
    assert len(y) == len(ref)
    np.testing.assert_allclose(y, ref, atol=1e-4)


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="cannot encode"):
        encode(np.zeros(10, np.float32), 16000, "wma")
