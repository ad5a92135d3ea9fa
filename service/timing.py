"""Word and phoneme timestamps from the acoustic model's durations, and subtitles from them.

Exact, not estimated: the acoustic graph decides every phoneme's length (``durations`` (B, L),
frames per input phoneme, already divided by the request's speed), the mel has exactly
``sum(durations)`` frames and the vocoders make ``hop`` samples per frame. So phoneme ``i`` of a
sentence sounds from ``cumsum(durations)[i - 1] * hop`` to ``cumsum(durations)[i] * hop`` samples
of that sentence's audio; pitch changes no length. Pause punctuation and the spaces between words
are phonemes with durations of their own, so the pauses between words and sentences are where the
model put them. Which phonemes speak which written word comes from the text front end
(``model.text.wordmap``).

The engine attaches timings to its :class:`~service.types.AudioChunk` s relative to each chunk's
first sample; :class:`Timeline` adds up the chunks' lengths to give seconds of the whole response,
which is what the HTTP API and ``parawave say`` report. Subtitles (:func:`cues`, :func:`srt`,
:func:`webvtt`) are built from those absolute word timings.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from service.types import AudioChunk, PhonemeTiming, WordTiming

STRESS = "ˈˌ"  # attach to the symbol after them
MAX_LINE_CHARS = 42  # subtitle lines (the usual broadcast guideline)
MAX_LINES = 2
MAX_CUE_SECONDS = 7.0
MIN_SILENCE_CONTRAST = 1.0  # natural-log mel units (~4.3 dB) below the sentence's median to be silence


def phoneme_edges(durations: np.ndarray, seconds_per_frame: float) -> np.ndarray:
    """(L,) frames per phoneme -> (L + 1,) boundaries in seconds from the sentence's start."""
    d = np.asarray(durations, dtype=np.int64).reshape(-1)  # (L,)
    return np.concatenate([[0], np.cumsum(d)]).astype(np.float64) * seconds_per_frame  # (L + 1,)


def speech_bounds(mel: np.ndarray, durations: np.ndarray) -> tuple[int, int]:
    """Frames [onset, offset) where the sentence's first and last phonemes really sound.

    The acoustic model has no boundary tokens: the silence before a sentence's first sound (and
    after its last, when no pause mark ends it) belongs to its first (last) phoneme, which it
    learned from recordings that begin and end in silence, so that phoneme lasts ~0.25 s of which
    most is silence. Where the sound starts is read from the model's own mel (n_mels, F): going back
    from the first phoneme's last frame, the first frame at silence level (a frame's mean log-mel no
    more than 30% of the way from the phoneme's quietest frame to the sentence's median, which must
    be at least MIN_SILENCE_CONTRAST above it) ends the
    silence; the same forward through the last phoneme. At least one frame stays with each phoneme."""
    d = np.asarray(durations, dtype=np.int64).reshape(-1)  # (L,)
    frames = int(d.sum())
    if frames == 0 or len(d) == 0:
        return 0, frames
    energy = np.asarray(mel, dtype=np.float64)[:, :frames].mean(axis=0)  # (F,)
    median = float(np.median(energy))

    def silent(lo: int, hi: int) -> np.ndarray:  # (hi - lo,) True where at silence level
        seg = energy[lo:hi]
        floor = float(seg.min())
        if median - floor < MIN_SILENCE_CONTRAST:  # nothing here is quieter than speech
            return np.zeros(len(seg), bool)
        return seg <= floor + 0.3 * (median - floor)

    first = int(d[0])
    onset = 0
    if first > 1:
        quiet = np.flatnonzero(silent(0, first - 1))
        onset = int(quiet[-1]) + 1 if len(quiet) else 0
    last = int(d[-1])
    offset = frames
    if last > 1 and len(d) > 1:
        lo = frames - last
        quiet = np.flatnonzero(silent(lo + 1, frames))
        offset = lo + 1 + int(quiet[0]) if len(quiet) else frames
    return onset, offset


def _is_modifier(c: str) -> bool:
    """A length mark, diacritic or modifier letter: part of the symbol before it."""
    return c not in STRESS and unicodedata.category(c) in ("Mn", "Lm", "Sk")


def phoneme_groups(phonemes: str) -> list[tuple[int, int]]:
    """[start, end) code-point ranges of the phonemes of ``phonemes``: a base symbol with the stress
    marks before it and the modifiers after it (affricates stay two symbols, as the table has them)."""
    groups: list[tuple[int, int]] = []
    i, n = 0, len(phonemes)
    while i < n:
        j = i
        while j < n and phonemes[j] in STRESS:
            j += 1
        j = min(j + 1, n)
        while j < n and _is_modifier(phonemes[j]):
            j += 1
        groups.append((i, j))
        i = j
    return groups


def sentence_timings(
    words: Iterable,
    phonemes: str,
    durations: np.ndarray,
    seconds_per_frame: float,
    bounds: tuple[int, int] | None = None,
) -> tuple[list[WordTiming], list[PhonemeTiming]]:
    """One sentence's timings in seconds from its first sample. ``words``: ``model.text.wordmap``
    ``WordSpan`` s (phoneme ranges index ``phonemes``, one code point per acoustic input);
    ``durations`` (L,) frames per code point, L == len(phonemes); ``bounds``: :func:`speech_bounds`
    (the first phoneme starts at the onset, the last ends at the offset; the silences around them
    are given as pause phonemes " "). The space between two words is an input of its own, with a
    duration the model learned (the transition from one word to the next: 4-8 frames, 50-100 ms, in
    the flite voice); the words meet in its middle. Pause marks (, . ; ...) stay outside words."""
    edges = phoneme_edges(durations, seconds_per_frame)  # (L + 1,)
    if len(edges) != len(phonemes) + 1:
        raise ValueError(f"{len(edges) - 1} durations for {len(phonemes)} phoneme symbols")
    total = edges[-1]
    lead = trail = None
    if bounds is not None:
        onset, offset = bounds[0] * seconds_per_frame, bounds[1] * seconds_per_frame
        if 0 < onset < edges[1]:
            lead, edges[0] = onset, onset
        if edges[-2] < offset < total:
            trail, edges[-1] = offset, offset
    n = len(phonemes)

    def start_of(a: int) -> float:  # a word after a space begins in the space's middle
        return float((edges[a - 1] + edges[a]) / 2 if 0 < a < n and phonemes[a - 1] == " " else edges[a])

    def end_of(b: int) -> float:  # and ends in the middle of the space after it
        return float((edges[b] + edges[b + 1]) / 2 if 0 < b < n and phonemes[b] == " " else edges[b])

    out_words = [
        WordTiming(
            w.text,
            start_of(w.phonemes[0]),
            max(start_of(w.phonemes[0]), end_of(w.phonemes[1])),
            w.start,
            w.end,
            phonemes[w.phonemes[0] : w.phonemes[1]],
        )
        for w in words
    ]
    out_phonemes = [
        PhonemeTiming(phonemes[a:b], float(edges[a]), float(edges[b])) for a, b in phoneme_groups(phonemes)
    ]
    if lead is not None:
        out_phonemes.insert(0, PhonemeTiming(" ", 0.0, float(lead)))
    if trail is not None:
        out_phonemes.append(PhonemeTiming(" ", float(trail), float(total)))
    return out_words, out_phonemes


def shift(items: Sequence, seconds: float) -> list:
    """Timings moved by ``seconds`` (WordTiming / PhonemeTiming, anything with start and end)."""
    return [replace(t, start=t.start + seconds, end=t.end + seconds) for t in items]


class Timeline:
    """Chunk-relative timings -> seconds of the response, as chunks come (in order)."""

    def __init__(self) -> None:
        self.seconds = 0.0  # audio before the next chunk
        self.samples = 0
        self.words: list[WordTiming] = []
        self.sentence_ends: set[int] = set()  # input offsets where the engine's sentences end

    def add(self, chunk: AudioChunk) -> tuple[list[WordTiming], list[PhonemeTiming]]:
        """The chunk's words and phonemes in response seconds (the words are also kept)."""
        words = shift(chunk.words, self.seconds)
        phonemes = shift(chunk.phonemes, self.seconds)
        self.seconds += chunk.duration
        self.samples += len(chunk.audio)
        self.sentence_ends.add(chunk.span[1])
        self.words.extend(words)
        return words, phonemes


# ------------------------------------------------------------------------------------- subtitles


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    lines: tuple[str, ...]  # at most MAX_LINES of at most MAX_LINE_CHARS (unless a word is longer)


def _written(text: str, w: WordTiming) -> str:
    """The word as written, with the punctuation attached to it (quotes, commas, periods)."""
    a, b = w.char_start, w.char_end
    if not (0 <= a <= b <= len(text)) or text[a:b] != w.word:
        return w.word
    while a > 0 and not text[a - 1].isspace():
        a -= 1
    while b < len(text) and not text[b].isspace():
        b += 1
    return text[a:b]


def _lines(words: Sequence[str], width: int) -> tuple[str, ...]:
    """One line when it fits, else two as even as they can be (each within ``width`` if possible)."""
    one = " ".join(words)
    if len(one) <= width or len(words) < 2:
        return (one,)
    best: tuple[int, int] | None = None
    for k in range(1, len(words)):
        a, b = len(" ".join(words[:k])), len(" ".join(words[k:]))
        score = (max(a, b) > width, max(a, b))
        if best is None or score < best:
            best, cut = score, k
    return (" ".join(words[:cut]), " ".join(words[cut:]))


def cues(
    words: Sequence[WordTiming],
    text: str,
    max_line: int = MAX_LINE_CHARS,
    max_lines: int = MAX_LINES,
    max_seconds: float = MAX_CUE_SECONDS,
    sentence_ends: Iterable[int] | None = None,
) -> list[Cue]:
    """Subtitle cues from response-time word timings: a cue ends at a sentence's end, at a pause
    (, ; :) once it fills a line, or before it would overflow ``max_lines`` lines of ``max_line``
    characters or last longer than ``max_seconds``. ``text`` is the input the words point into;
    ``sentence_ends``, input offsets where sentences end (``Timeline.sentence_ends``: the engine's
    sentence split, which knows "Mrs." from an end), else a word ending in . ! ? ends one."""
    ends = sorted(sentence_ends) if sentence_ends is not None else None

    def ends_sentence(k: int, written: str) -> bool:
        if ends is None:
            return written.rstrip("\"'”’)]").endswith((".", "!", "?", "…"))
        lo = words[k].char_end
        hi = words[k + 1].char_start if k + 1 < len(words) else len(text) + 1
        i = bisect.bisect_left(ends, lo)
        return i < len(ends) and ends[i] < max(hi, lo + 1)

    def fits(written: list[str]) -> bool:  # on max_lines lines of max_line characters at most
        lines = _lines(written, max_line)
        return len(lines) <= max_lines and all(len(line) <= max_line for line in lines)

    out: list[Cue] = []
    cur: list[tuple[str, WordTiming]] = []

    def flush() -> None:
        if cur:
            out.append(Cue(cur[0][1].start, cur[-1][1].end, _lines([s for s, _ in cur], max_line)))
            cur.clear()

    for k, w in enumerate(words):
        s = _written(text, w)
        if cur and (not fits([x for x, _ in cur] + [s]) or w.end - cur[0][1].start > max_seconds):
            flush()
        cur.append((s, w))
        length = len(" ".join(x for x, _ in cur))
        bare = s.rstrip("\"'”’)]")
        if ends_sentence(k, s) or (bare.endswith((",", ";", ":", "—")) and length >= max_line):
            flush()
    flush()
    return out


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(cue_list: Sequence[Cue], first_index: int = 1) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    return "".join(
        f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n" + "\n".join(c.lines) + "\n\n"
        for i, c in enumerate(cue_list, first_index)
    )


def webvtt(cue_list: Sequence[Cue], header: bool = True) -> str:
    """WebVTT: the ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues (text with ``-->``
    made safe and ``&``/``<`` escaped, as the format asks)."""

    def safe(line: str) -> str:
        return re.sub(r"-->", "->", line.replace("&", "&amp;").replace("<", "&lt;"))

    body = "".join(
        f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n" + "\n".join(safe(x) for x in c.lines) + "\n\n"
        for c in cue_list
    )
    return ("WEBVTT\n\n" if header else "") + body


SUBTITLE_FORMATS = {"srt": srt, "vtt": webvtt}


def subtitles(
    words: Sequence[WordTiming], text: str, fmt: str, sentence_ends: Iterable[int] | None = None
) -> str:
    """``words`` (response seconds) as an ``srt`` or ``vtt`` file (see :func:`cues`)."""
    return SUBTITLE_FORMATS[fmt](cues(words, text, sentence_ends=sentence_ends))
