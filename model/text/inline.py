"""Inline markup and the types every markup parser builds: :class:`Piece` (text to normalize, or
verbatim phonemes), :class:`Segment` (a run of speech with one rate, pitch and the pause before it)
and :class:`MarkupError`. ``model.text.markup`` (planning, the lexicon, ``spoken()``) and
``model.text.ssml`` (the SSML subset) both build on this module, which imports neither.

Inline phonemes: ``[word](/IPA/)`` (see ``model.text.markup``); :func:`parse_inline` cuts a text at them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class MarkupError(ValueError):
    """Invalid markup in the input; ``position`` is the character offset (0-based) where it is."""

    def __init__(self, message: str, position: int | None = None):
        where = f" (at character {position})" if position is not None else ""
        super().__init__(message + where)
        self.position = position


@dataclass(frozen=True)
class Piece:
    text: str  # words to normalize and phonemize; for a phoneme piece, the words it says (display)
    span: tuple[int, int]  # [start, end) in the input
    phonemes: str | None = None  # verbatim IPA (unchecked until spoken()), or None for text
    source: str = ""  # where verbatim phonemes came from: "inline", "ssml", or a lexicon entry's file:line


@dataclass(frozen=True)
class Segment:
    pieces: tuple[Piece, ...]
    rate: float = 1.0  # duration scale factor on top of the request's speed (> 1 faster)
    pitch: float = 0.0  # semitones added to the request's pitch
    pause: float = 0.0  # seconds of silence before this segment's speech (a segment starts a sentence)


_INLINE = re.compile(r"\[(?P<word>[^\[\]\n]*)\]\(/(?P<ipa>[^/\n)]*)/\)")
_INLINE_OPEN = re.compile(r"\]\(/")


def parse_inline(text: str, offset: int = 0) -> list[Piece]:
    """Split ``text`` at inline ``[word](/IPA/)`` markup; ``offset``: where ``text`` starts in the input."""
    pieces: list[Piece] = []
    pos = 0
    for m in _INLINE.finditer(text):
        _check_between(text, pos, m.start(), offset)
        if m.start() > pos:
            pieces.append(Piece(text[pos : m.start()], (offset + pos, offset + m.start())))
        word = m.group("word").strip()
        if not word:
            raise MarkupError(
                "inline phonemes need the word they say: [word](/phonemes/)", offset + m.start()
            )
        if not m.group("ipa").strip():
            raise MarkupError(f"empty phonemes for [{word}]", offset + m.start("ipa"))
        pieces.append(Piece(word, (offset + m.start(), offset + m.end()), m.group("ipa"), "inline"))
        pos = m.end()
    _check_between(text, pos, len(text), offset)
    if pos < len(text):
        pieces.append(Piece(text[pos:], (offset + pos, offset + len(text))))
    return pieces


def _check_between(text: str, start: int, end: int, offset: int) -> None:
    m = _INLINE_OPEN.search(text, start, end)
    if m is not None:
        bracket = text.rfind("[", start, m.start())  # point at the markup's start when there is one
        raise MarkupError(
            "unclosed inline phonemes: write [word](/phonemes/) with the phonemes between two slashes",
            offset + (bracket if bracket >= 0 else m.start()),
        )
