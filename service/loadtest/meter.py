"""Count the audio in a (streamed) wav or pcm response as its bytes arrive.

``AudioMeter("wav").feed(piece)`` returns how many *audio* bytes ``piece`` carried: the RIFF header
and any chunk before ``data`` are skipped, so the first non-zero return marks the first audio byte
(time to first audio), and ``audio_seconds`` is the length of what was received. Works for
streamed wav (data size 0xFFFFFFFF) and whole files, in pieces of any size. ``pcm`` is the server's
raw s16le mono at the rate stated in its ``X-Sample-Rate`` header.
"""

from __future__ import annotations

import struct

UNKNOWN_SIZE = 0xFFFFFFFF
MAX_HEADER_BYTES = 1 << 16  # a wav header (fmt + optional chunks) is far smaller


class AudioMeter:
    def __init__(self, fmt: str, sample_rate: int | None = None) -> None:
        if fmt not in ("wav", "pcm"):
            raise ValueError(f"can only measure wav or pcm audio, not {fmt!r}")
        if fmt == "pcm" and not sample_rate:
            raise ValueError("pcm needs the sample rate (the X-Sample-Rate header)")
        self.fmt = fmt
        self.sample_rate = sample_rate
        self.channels = 1
        self.sample_width = 2  # bytes per sample
        self.audio_bytes = 0
        self.total_bytes = 0
        self._header = bytearray()
        self._in_data = fmt == "pcm"
        self._data_left: int | None = None  # bytes left in the data chunk; None = unbounded stream

    def feed(self, piece: bytes) -> int:
        """Take the next bytes of the body; return how many of them are audio."""
        self.total_bytes += len(piece)
        if not self._in_data:
            self._header += piece
            start = self._parse_header()
            if start is None:
                return 0
            piece = bytes(self._header[start:])
            self._header.clear()
        n = len(piece) if self._data_left is None else min(len(piece), self._data_left)
        if self._data_left is not None:
            self._data_left -= n
        self.audio_bytes += n
        return n

    @property
    def audio_seconds(self) -> float:
        if not self.sample_rate:
            return 0.0
        frames = self.audio_bytes // (self.channels * self.sample_width)
        return frames / self.sample_rate

    def _parse_header(self) -> int | None:
        """Offset of the first audio byte in the buffered header, or None while incomplete."""
        buf = self._header
        if len(buf) > MAX_HEADER_BYTES:
            raise ValueError("no 'data' chunk in the first 64 KiB: not a PCM wav stream")
        if len(buf) < 12:
            return None
        if buf[:4] != b"RIFF" or buf[8:12] != b"WAVE":
            raise ValueError("not a wav stream (no RIFF/WAVE header)")
        pos = 12
        while len(buf) >= pos + 8:
            chunk_id = bytes(buf[pos : pos + 4])
            (size,) = struct.unpack("<I", buf[pos + 4 : pos + 8])
            if chunk_id == b"data":
                if self.sample_rate is None:
                    raise ValueError("wav 'data' chunk before its 'fmt ' chunk")
                self._in_data = True
                self._data_left = None if size == UNKNOWN_SIZE else size
                return pos + 8
            if chunk_id == b"fmt ":
                if len(buf) < pos + 8 + 16:
                    return None
                tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", buf[pos + 8 : pos + 24])
                if tag not in (1, 0xFFFE) or bits % 8:
                    raise ValueError(f"wav is not integer PCM (format tag {tag}, {bits} bits)")
                self.channels, self.sample_rate, self.sample_width = channels, rate, bits // 8
            pos += 8 + size + (size & 1)  # chunks are word-aligned
        return None
