"""Text -> sentences -> phoneme ids: the one definition, used by the server's engine
(``service.engine``), ``parawave synth`` (``model.synth.text_to_mel``) and evaluation alike, so the
same text is cut and spoken the same way everywhere.

    text --split_sentences--> sentences (raw, with their character spans)
         --normalize--> spoken words --phonemize--> IPA --SymbolTable.encode--> ids (pad dropped)

Sentences are split on the text as written, then each is normalized: the splitter knows
abbreviations as written ("Main St. They" ends a sentence after "St."), which normalization would
have turned into words first. A sentence with no letter or digit, or no phoneme left, is dropped.

Input with markup (SSML, inline ``[word](/IPA/)``, a lexicon, normalization options) goes through
:func:`prepare_markup` (``model.text.markup``), whose sentences carry their own rate, pitch and
pauses. Both raise :class:`TextError` when nothing is left to speak.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.text.g2p import phonemize
from model.text.lexicon import Lexicon
from model.text.markup import MarkupError, has_markup, plan, spoken
from model.text.normalize import NormalizationOptions, normalize
from model.text.sentences import locate_sentence, split_sentences
from model.text.symbols import SymbolTable

NOTHING_TO_SPEAK = "the input has nothing to speak after text normalization"


class TextError(ValueError):
    """The text cannot be spoken: nothing left after normalization, or invalid markup (with where)."""


@dataclass(frozen=True)
class Sentence:
    text: str  # as split from the input
    span: tuple[int, int]  # [start, end) in the input
    ids: np.ndarray  # (L,) int64 phoneme ids, L >= 1
    normalized: str = ""  # what normalize() made of `text`
    phonemes: str = ""  # what the ids encode, one code point per id ("" when they differ)
    # markup (SSML prosody and breaks): on top of the request's speed and pitch, and silences around it
    rate: float = 1.0
    pitch: float = 0.0  # semitones
    pause_before: float = 0.0  # seconds
    pause_after: float = 0.0  # seconds


def _ids(table: SymbolTable, phonemes: str) -> list[int]:
    return [i for i in table.encode(phonemes) if i != table.pad_id]


def prepare_text(text: str, table: SymbolTable) -> list[Sentence]:
    """Sentences of plain ``text`` with their phoneme ids; sentences with nothing to say are
    dropped. TextError when nothing at all is left."""
    out: list[Sentence] = []
    pos = 0
    for s in split_sentences(text):
        span = locate_sentence(text, s, pos)
        pos = max(pos, span[1])
        normalized = normalize(s)
        phonemes = phonemize(normalized)
        ids = _ids(table, phonemes)
        if not any(ch.isalnum() for ch in s) or not ids:
            continue
        if len(ids) != len(phonemes):
            phonemes = ""
        out.append(Sentence(s, span, np.asarray(ids, dtype=np.int64), normalized, phonemes))
    if not out:
        raise TextError(NOTHING_TO_SPEAK)
    return out


def needs_markup(text: str, lexicon: Lexicon | None, options: NormalizationOptions | None) -> bool:
    """Whether ``text`` goes through :func:`prepare_markup` (SSML, inline phonemes, a lexicon, options)."""
    return bool(lexicon) or (options is not None and not options.is_default) or has_markup(text)


def prepare_markup(
    text: str,
    table: SymbolTable,
    lexicon: Lexicon | None = None,
    options: NormalizationOptions | None = None,
) -> list[Sentence]:
    """:func:`prepare_text` for input with markup (``model.text.markup``: SSML, inline phonemes,
    lexicon entries, normalization options): sentences with their own rate, pitch and pauses.
    TextError (with the position) on invalid markup, or when nothing is left to speak."""
    try:
        said = spoken(plan(text), table, lexicon, options)
    except MarkupError as exc:
        raise TextError(str(exc)) from None
    out = [
        Sentence(
            s.text,
            s.span,
            np.asarray(_ids(table, s.phonemes), np.int64),
            rate=s.rate,
            pitch=s.pitch,
            pause_before=s.pause_before,
            pause_after=s.pause_after,
        )
        for s in said
    ]
    if not out:
        raise TextError(NOTHING_TO_SPEAK)
    return out


def prepare(
    text: str,
    table: SymbolTable,
    lexicon: Lexicon | None = None,
    options: NormalizationOptions | None = None,
) -> list[Sentence]:
    """``text`` -> its sentences: through :func:`prepare_markup` when it needs it, else
    :func:`prepare_text`."""
    if needs_markup(text, lexicon, options):
        return prepare_markup(text, table, lexicon, options)
    return prepare_text(text, table)
