"""Long-form speech to a file (``parawave say`` on a book): streamed, captioned, resumable.

The text (any length) is cut into blocks of whole sentences (:func:`blocks`, at most
:data:`BLOCK_CHARS` characters: the engine prepares a block's phonemes before speaking it), each
block is synthesized with word timestamps and its audio written to the output file at once, its
subtitle cues appended to the subtitle file. Memory stays that of one block, whatever the length.

Never losing what was written: a wav file's header is rewritten after every block (RIFF and data
sizes), so the file on disk is a complete, valid wav after each block even if the process is
killed; other formats are finalized when the run stops (Ctrl-C, SIGTERM: a KeyboardInterrupt here).
Resuming (wav and pcm): a sidecar ``<output>.progress.json`` records, after each block, the input's
hash, the blocks done and the audio and subtitle bytes written; ``resume=True`` cuts both files back
to that point and goes on from the next block. A finished run removes the sidecar.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from service.audio import StreamEncoder, to_pcm16, wav_stream_header
from service.timing import Timeline, cues, srt, webvtt
from service.types import InputError, SpeechEngine, SynthesisRequest

log = logging.getLogger(__name__)

BLOCK_CHARS = 1500  # characters per synthesis call (whole sentences; a longer sentence is its own block)
RESUMABLE = ("wav", "pcm")
SUBTITLE_SUFFIXES = {".srt": "srt", ".vtt": "vtt"}


def blocks(text: str, max_chars: int = BLOCK_CHARS) -> Iterator[tuple[int, int]]:
    """[start, end) character ranges of ``text``, each whole sentences (``model.text``'s split),
    together at most ``max_chars`` long unless one sentence is longer."""
    from model.text import split_sentences
    from model.text.sentences import locate_sentence

    pos = 0
    start = end = None
    for s in split_sentences(text):
        a, b = locate_sentence(text, s, pos)
        if b <= a:  # not found verbatim (glued punctuation): it stays inside the current block
            continue
        pos = b
        if start is None:
            start = a
        elif b - start > max_chars:
            yield start, end  # type: ignore[misc]
            start = a
        end = b
    if start is not None:
        yield start, end  # type: ignore[misc]


class WavWriter:
    """16-bit PCM wav written as it goes, its header patched after every :meth:`write`."""

    def __init__(self, path: Path, sample_rate: int, keep_samples: int | None = None) -> None:
        self.path = path
        self.sample_rate = sample_rate
        if keep_samples is None:
            self._f: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed by close())
            self._f.write(wav_stream_header(sample_rate))
            self.samples = 0
        else:  # resume: cut back to what the sidecar says was complete
            self._f = open(path, "r+b")  # noqa: SIM115
            self._f.truncate(44 + 2 * keep_samples)
            self._f.seek(0, os.SEEK_END)
            self.samples = keep_samples
        self._patch()

    def write(self, audio: np.ndarray) -> None:
        self._f.write(to_pcm16(audio))
        self.samples += len(audio)
        self._patch()

    def _patch(self) -> None:
        data = 2 * self.samples
        end = self._f.tell()
        self._f.seek(4)
        self._f.write(struct.pack("<I", min(36 + data, 0xFFFFFFFF)))
        self._f.seek(40)
        self._f.write(struct.pack("<I", min(data, 0xFFFFFFFF)))
        self._f.seek(end)
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class PcmWriter(WavWriter):
    """Raw s16le samples (no header)."""

    def __init__(self, path: Path, sample_rate: int, keep_samples: int | None = None) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self._f = open(path, "wb" if keep_samples is None else "r+b")  # noqa: SIM115
        if keep_samples is not None:
            self._f.truncate(2 * keep_samples)
            self._f.seek(0, os.SEEK_END)
        self.samples = keep_samples or 0

    def _patch(self) -> None:
        self._f.flush()


class SoundFileWriter:
    """flac through libsndfile on the file itself (its header is finalized on close)."""

    def __init__(self, path: Path, sample_rate: int, fmt: str) -> None:
        self._f = sf.SoundFile(path, "w", sample_rate, 1, format="FLAC", subtype="PCM_16")
        self.samples = 0

    def write(self, audio: np.ndarray) -> None:
        self._f.write(np.asarray(audio, np.float32))
        self._f.flush()
        self.samples += len(audio)

    def close(self) -> None:
        self._f.close()


class EncoderWriter:
    """mp3, opus, aac: the service's streaming encoder, its bytes appended as they come."""

    def __init__(self, path: Path, sample_rate: int, fmt: str) -> None:
        self._f = open(path, "wb")  # noqa: SIM115
        self._enc = StreamEncoder(fmt, sample_rate)
        self.samples = 0

    def write(self, audio: np.ndarray) -> None:
        self._f.write(self._enc.write(audio))
        self._f.flush()
        self.samples += len(audio)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # an interrupted encoder still closes its file
            self._f.write(self._enc.close())
        self._f.close()


def open_writer(path: Path, sample_rate: int, fmt: str, keep_samples: int | None = None):
    if fmt == "wav":
        return WavWriter(path, sample_rate, keep_samples)
    if fmt == "pcm":
        return PcmWriter(path, sample_rate, keep_samples)
    if fmt == "flac":
        return SoundFileWriter(path, sample_rate, fmt)
    return EncoderWriter(path, sample_rate, fmt)


@dataclass(frozen=True)
class Progress:
    """What a run has safely written (the resume sidecar)."""

    text_sha256: str
    settings: dict
    blocks_done: int
    samples: int
    subtitle_bytes: int
    cues: int

    @staticmethod
    def path_for(output: Path) -> Path:
        return output.with_name(output.name + ".progress.json")


@dataclass(frozen=True)
class Result:
    samples: int
    sample_rate: int
    blocks: int
    cues: int
    resumed_from: int  # blocks skipped because an earlier run wrote them


def speak_to_file(
    engine: SpeechEngine,
    text: str,
    request: SynthesisRequest,
    output: Path,
    fmt: str,
    subtitle_path: Path | None = None,
    resume: bool = False,
    on_progress: Callable[[int], None] | None = None,
    max_chars: int = BLOCK_CHARS,
) -> Result:
    """Speak ``text`` (``request`` gives voice, speed, ...; its text is replaced block by block) into
    ``output`` as it goes, with subtitles (``.srt``/``.vtt`` by suffix) beside it. ``on_progress``
    gets the input characters done so far after each sentence. ``resume``: go on from a sidecar
    left by an interrupted run over the same text and settings (wav/pcm), else start over."""
    sample_rate = next(v.sample_rate for v in engine.voices if v.name == request.voice)
    sub_fmt = SUBTITLE_SUFFIXES.get(subtitle_path.suffix.lower()) if subtitle_path else None
    settings = {
        "voice": request.voice,
        "speaker": request.speaker,
        "speed": request.speed,
        "pitch": request.pitch,
        "model": request.model,
        "seed": request.seed,
        "format": fmt,
        "subtitles": str(subtitle_path) if subtitle_path else None,
    }
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    side = Progress.path_for(output)
    done = _resume_point(side, sha, settings, output, subtitle_path) if resume and fmt in RESUMABLE else None
    ranges = list(blocks(text, max_chars))
    if not ranges:
        raise InputError("the input has nothing to speak after text normalization")
    writer = open_writer(output, sample_rate, fmt, done.samples if done else None)
    sub = None
    n_cues = done.cues if done else 0
    if subtitle_path is not None:
        sub = open(subtitle_path, "r+b" if done else "wb")  # noqa: SIM115
        if done:
            sub.truncate(done.subtitle_bytes)
            sub.seek(0, os.SEEK_END)
        elif sub_fmt == "vtt":
            sub.write(b"WEBVTT\n\n")
    first = done.blocks_done if done else 0
    if on_progress is not None and first:
        on_progress(ranges[first - 1][1])
    try:
        for k in range(first, len(ranges)):
            a, b = ranges[k]
            seed = None if request.seed is None else request.seed + k
            block = replace(request, text=text[a:b], seed=seed, timestamps=sub is not None)
            timeline = Timeline()
            timeline.seconds = writer.samples / sample_rate
            try:
                for chunk in engine.synthesize(block):
                    timeline.add(chunk)
                    writer.write(chunk.audio)
                    if on_progress is not None:
                        on_progress(a + chunk.span[1])
            except InputError as exc:  # a block with nothing to say (symbols only): the book goes on
                log.warning("characters %d-%d skipped: %s", a, b, exc)
            if sub is not None:
                words = [
                    replace(w, char_start=w.char_start + a, char_end=w.char_end + a) for w in timeline.words
                ]
                block_cues = cues(words, text, sentence_ends={e + a for e in timeline.sentence_ends})
                body = srt(block_cues, n_cues + 1) if sub_fmt == "srt" else webvtt(block_cues, header=False)
                sub.write(body.encode("utf-8"))
                sub.flush()
                n_cues += len(block_cues)
            if fmt in RESUMABLE:
                _save(side, Progress(sha, settings, k + 1, writer.samples, sub.tell() if sub else 0, n_cues))
    finally:
        writer.close()
        if sub is not None:
            sub.close()
    with contextlib.suppress(FileNotFoundError):
        side.unlink()
    if on_progress is not None:
        on_progress(len(text))
    if writer.samples == 0:
        raise InputError("the input has nothing to speak after text normalization")
    return Result(writer.samples, sample_rate, len(ranges), n_cues, first)


def _save(path: Path, progress: Progress) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(progress.__dict__))
    os.replace(tmp, path)  # atomic: a kill leaves the old or the new record, never half of one


def _resume_point(
    side: Path, sha: str, settings: dict, output: Path, subtitle_path: Path | None
) -> Progress | None:
    try:
        p = Progress(**json.loads(side.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if p.text_sha256 != sha or p.settings != settings or not output.exists():
        log.warning("%s: not the same text or settings; starting over", side)
        return None
    header = 44 if settings["format"] == "wav" else 0
    if output.stat().st_size < header + 2 * p.samples:
        return None
    if subtitle_path is not None and (
        not subtitle_path.exists() or subtitle_path.stat().st_size < p.subtitle_bytes
    ):
        return None
    return p
