"""Audio encoding for HTTP responses (soundfile / libsndfile; torch-free).

Formats (OpenAI's names): ``wav`` (PCM 16-bit), ``pcm`` (raw s16le mono at the voice rate, which the
service states in ``X-Sample-Rate``), ``flac``, ``mp3`` (constant bit rate, so a streamed file's
length is right for every decoder) and ``opus`` (Ogg/Opus; Opus takes 8/12/16/24/48 kHz only, so
other rates are resampled to the next supported one). mp3 and opus need a libsndfile built with
them (>= 1.1 / 1.0.29); :func:`available_formats` says which ones this process can write.

Two ways to encode: :func:`encode` for a whole utterance, :class:`StreamEncoder` for chunks as
they are generated (``stream=true``): wav gets a header with unknown sizes (0xFFFFFFFF) followed by
PCM, mp3 and opus come out of an incremental libsndfile encoder. flac is the exception: a FLAC
stream whose header says "length unknown" is valid, but libsndfile (and so soundfile) cannot read
one, so a streamed flac is encoded whole once the audio is complete. ``aac`` (AAC-LC in ADTS frames,
streamable as they come) is encoded by FFmpeg through PyAV, since libsndfile has no AAC.
"""

from __future__ import annotations

import io
import math
import struct
from functools import cache

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

FORMATS: tuple[str, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")  # OpenAI's list, in its order

CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

# format -> (libsndfile major format, subtype, extra SoundFile arguments)
_SOUNDFILE: dict[str, tuple[str, str, dict]] = {
    "wav": ("WAV", "PCM_16", {}),
    "flac": ("FLAC", "PCM_16", {}),
    "mp3": ("MP3", "MPEG_LAYER_III", {"bitrate_mode": "CONSTANT", "compression_level": 0.5}),
    "opus": ("OGG", "OPUS", {}),
}

OPUS_RATES: tuple[int, ...] = (8000, 12000, 16000, 24000, 48000)
AAC_BITS_PER_SAMPLE = 4  # AAC-LC bit rate = 4 bits per input sample (64 kb/s at 16 kHz), at most 128 kb/s
UNKNOWN_SIZE = 0xFFFFFFFF


@cache
def available_formats() -> tuple[str, ...]:
    """The formats this process can encode, given the libsndfile it has."""
    majors = sf.available_formats()
    out = []
    for fmt in FORMATS:
        if fmt == "pcm" or (fmt == "aac" and _has_aac_encoder()):
            out.append(fmt)
            continue
        if fmt not in _SOUNDFILE:
            continue
        major, subtype, _ = _SOUNDFILE[fmt]
        if major in majors and subtype in sf.available_subtypes(major):
            out.append(fmt)
    return tuple(out)


def _has_aac_encoder() -> bool:
    try:
        import av
    except ImportError:
        return False
    return "aac" in av.codecs_available


def output_rate(fmt: str, sample_rate: int) -> int:
    """Sample rate of the encoded audio: the input rate, except Opus (next supported rate)."""
    if fmt != "opus" or sample_rate in OPUS_RATES:
        return sample_rate
    return next((r for r in OPUS_RATES if r >= sample_rate), OPUS_RATES[-1])


def to_pcm16(audio: np.ndarray) -> bytes:
    """float (T,) in [-1, 1] -> little-endian signed 16-bit bytes (clipped)."""
    x = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    return np.round(x * 32767.0).astype("<i2").tobytes()


def wav_stream_header(sample_rate: int, channels: int = 1, bits: int = 16) -> bytes:
    """A 44-byte PCM WAV header for a stream of unknown length (RIFF and data sizes 0xFFFFFFFF)."""
    block = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", UNKNOWN_SIZE)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, bits)
        + b"data"
        + struct.pack("<I", UNKNOWN_SIZE)
    )


def encode(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """A whole utterance (T,) float32 -> the bytes of a complete file in ``fmt``."""
    _check(fmt)
    if fmt == "pcm":
        return to_pcm16(audio)
    if fmt == "aac":
        enc = StreamEncoder(fmt, sample_rate)
        return enc.write(audio) + enc.close()
    rate = output_rate(fmt, sample_rate)
    if rate != sample_rate:
        audio = _resample(audio, sample_rate, rate)
    major, subtype, extra = _SOUNDFILE[fmt]
    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio, dtype=np.float32), rate, format=major, subtype=subtype, **extra)
    return buf.getvalue()


class StreamEncoder:
    """Incremental encoder: ``write(chunk)`` returns the bytes ready so far, ``close()`` the rest.

    The concatenation of everything returned is a playable file (wav: with unknown sizes in its
    header, which decoders accept for streams). flac is buffered and comes out of ``close()``.
    """

    def __init__(self, fmt: str, sample_rate: int) -> None:
        _check(fmt)
        self.fmt = fmt
        self.sample_rate = output_rate(fmt, sample_rate)
        self._resampler = (
            _StreamResampler(sample_rate, self.sample_rate) if self.sample_rate != sample_rate else None
        )
        self._header_sent = False
        self._sink: _Sink | None = None
        self._file: sf.SoundFile | None = None
        self._held: list[np.ndarray] = []  # flac: everything, encoded at close
        self._aac = _AacWriter(self.sample_rate) if fmt == "aac" else None
        if fmt in ("mp3", "opus"):
            major, subtype, extra = _SOUNDFILE[fmt]
            self._sink = _Sink()
            self._file = sf.SoundFile(
                self._sink, "w", self.sample_rate, 1, format=major, subtype=subtype, **extra
            )

    def write(self, audio: np.ndarray) -> bytes:
        audio = np.asarray(audio, dtype=np.float32)
        if self.fmt == "flac":
            self._held.append(audio)
            return b""
        if self._resampler is not None:
            audio = self._resampler.push(audio)
        return self._encode(audio)

    def close(self) -> bytes:
        if self.fmt == "flac":
            audio = np.concatenate(self._held) if self._held else np.zeros(0, np.float32)
            self._held = []
            return encode(audio, self.sample_rate, "flac")
        out = b""
        if self._resampler is not None:
            out += self._encode(self._resampler.flush())
        if self._aac is not None:
            out += self._aac.close()
        elif self._file is not None and self._sink is not None:
            self._file.close()
            out += self._sink.drain()
            self._file = None
        elif self.fmt == "wav" and not self._header_sent:
            out += self._encode(np.zeros(0, np.float32))
        return out

    def _encode(self, audio: np.ndarray) -> bytes:
        if self._aac is not None:
            return self._aac.write(audio)
        if self._file is not None and self._sink is not None:
            if len(audio):
                self._file.write(audio)
            return self._sink.drain()
        data = to_pcm16(audio)
        if self.fmt == "wav" and not self._header_sent:
            self._header_sent = True
            data = wav_stream_header(self.sample_rate) + data
        return data


class _AacWriter:
    """AAC-LC, mono, in an ADTS stream (self-delimiting frames: playable from any prefix), written
    by FFmpeg's native encoder through PyAV into a :class:`_Sink`."""

    def __init__(self, sample_rate: int) -> None:
        import av

        self._av = av
        self.sample_rate = sample_rate
        self._sink = _Sink()
        self._container = av.open(self._sink, "w", format="adts")
        self._stream = self._container.add_stream("aac", rate=sample_rate, layout="mono")
        self._stream.bit_rate = min(128_000, AAC_BITS_PER_SAMPLE * sample_rate)
        self._pts = 0
        self._closed = False

    def _mux(self, frame) -> bytes:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.drain()

    def write(self, audio: np.ndarray) -> bytes:
        if not len(audio):
            return b""
        planar = np.ascontiguousarray(np.clip(audio, -1.0, 1.0), dtype=np.float32)[None, :]  # (1, T)
        frame = self._av.AudioFrame.from_ndarray(planar, format="fltp", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += planar.shape[1]
        return self._mux(frame)

    def close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        out = self._mux(None)  # flush the encoder's look-ahead
        self._container.close()
        return out + self._sink.drain()


def _check(fmt: str) -> None:
    if fmt not in available_formats():
        raise ValueError(f"cannot encode {fmt!r} here (available: {', '.join(available_formats())})")


def _resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    g = math.gcd(rate_in, rate_out)
    return resample_poly(np.asarray(audio, dtype=np.float32), rate_out // g, rate_in // g).astype(np.float32)


class _StreamResampler:
    """Chunked polyphase resampling that matches ``resample_poly`` on the whole signal.

    Input is cut at multiples of ``down`` samples (so output offsets stay integral) and each
    segment is resampled with ``context`` samples of history on the left and held back until
    ``context`` samples of future exist on the right; ``context`` exceeds the filter's reach
    (10 * max(up, down) / up input samples for scipy's default window).
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        g = math.gcd(rate_in, rate_out)
        self.up, self.down = rate_out // g, rate_in // g
        reach = math.ceil(10 * max(self.up, self.down) / self.up) + 1
        self.context = self.down * math.ceil(reach / self.down)  # a multiple of down
        self._history = np.zeros(0, np.float32)  # committed input kept as left context
        self._pending = np.zeros(0, np.float32)  # input not yet resampled

    def push(self, audio: np.ndarray) -> np.ndarray:
        self._pending = np.concatenate([self._pending, audio.astype(np.float32)])
        n = (len(self._pending) - self.context) // self.down * self.down  # committable input
        if n <= 0:
            return np.zeros(0, np.float32)
        seg = np.concatenate([self._history, self._pending[: n + self.context]])
        y = resample_poly(seg, self.up, self.down)
        skip = len(self._history) * self.up // self.down
        out = y[skip : skip + n * self.up // self.down]
        self._history = np.concatenate([self._history, self._pending[:n]])[-self.context :]
        self._pending = self._pending[n:]
        return out.astype(np.float32)

    def flush(self) -> np.ndarray:
        if not len(self._pending):
            return np.zeros(0, np.float32)
        y = resample_poly(np.concatenate([self._history, self._pending]), self.up, self.down)
        skip = len(self._history) * self.up // self.down
        out = y[skip : skip + math.ceil(len(self._pending) * self.up / self.down)]
        self._pending = np.zeros(0, np.float32)
        return out.astype(np.float32)


class _Sink(io.RawIOBase):
    """A seekable in-memory file for libsndfile whose new bytes can be drained as they appear.

    Encoders may seek back at close to fill in header fields (total length, checksums); those
    late rewrites of bytes already drained are dropped, which leaves 'unknown' values that
    stream decoders accept.
    """

    def __init__(self) -> None:
        super().__init__()
        self._buf = bytearray()
        self._pos = 0
        self._sent = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        data = bytes(data)
        end = self._pos + len(data)
        if end > len(self._buf):
            self._buf.extend(b"\0" * (end - len(self._buf)))
        self._buf[self._pos : end] = data
        self._pos = end
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = len(self._buf) - self._pos
        data = bytes(self._buf[self._pos : self._pos + size])
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._buf)}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def drain(self) -> bytes:
        out = bytes(self._buf[self._sent :])
        self._sent = len(self._buf)
        return out
