"""Input markup -> spoken sentences: inline phonemes, SSML, lexicon entries, normalization options.

The plain path (``normalize`` -> ``phonemize``) sees one string. Markup cuts the input into
:class:`Segment` s (runs of speech with one rate and pitch, with a pause before them) made of
:class:`Piece` s: text to normalize and phonemize, or phonemes given verbatim (inline
``[word](/IPA/)``, an SSML ``<phoneme>``, a lexicon entry). :func:`plan` parses; :func:`spoken`
turns segments into :class:`SpokenSentence` s (phoneme strings, each with its rate, pitch and
pauses and the lexicon entries that fired), which the engine encodes and synthesizes row by row.

Inline phonemes (the convention Kokoro-FastAPI's users write): ``[Kokoro](/kˈoʊkəɹoʊ/)`` says the
bracketed word with those phonemes (the voice's symbol set; Kokoro's one-letter diphthongs, e.g.
``/kˈOkəɹO/``, are written out, see ``model.text.lexicon.MISAKI_DIPHTHONGS``). A ``](/`` that does not
close as ``/)``, or phonemes outside the symbol set, is a :class:`MarkupError` with the position.
SSML: only input whose first non-blank characters are ``<speak`` (``model.text.ssml``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from model.text.inline import MarkupError, Piece, Segment, parse_inline
from model.text.lexicon import Lexicon, LexiconMatch, check_phonemes
from model.text.normalize import NormalizationOptions
from model.text.sentences import locate_sentence
from model.text.ssml import is_ssml, parse_ssml
from model.text.symbols import SymbolTable


@dataclass(frozen=True)
class SpokenSentence:
    text: str  # the words (display form) of the sentence
    span: tuple[int, int]  # [start, end) in the input
    phonemes: str  # what is encoded
    rate: float = 1.0
    pitch: float = 0.0
    pause_before: float = 0.0  # seconds
    pause_after: float = 0.0  # seconds (the input's trailing pause, on its last sentence)
    fired: tuple[LexiconMatch, ...] = field(default=())


def has_markup(text: str) -> bool:
    """Whether ``text`` needs the markup path (SSML, or something that looks like inline phonemes)."""
    return is_ssml(text) or "](/" in text


def plan(text: str) -> list[Segment]:
    """Parse the input: SSML when it starts with ``<speak`` (after whitespace), else inline markup."""
    if is_ssml(text):
        return parse_ssml(text)
    return [Segment(tuple(parse_inline(text)))]


def apply_lexicon(pieces: Sequence[Piece], lexicon: Lexicon | None) -> tuple[list[Piece], list[LexiconMatch]]:
    """Text pieces with the lexicon's words cut out: phoneme entries become phoneme pieces, respellings
    text pieces with the respelled words. Returns the pieces and the matches (with input spans)."""
    if not lexicon:
        return list(pieces), []
    out: list[Piece] = []
    fired: list[LexiconMatch] = []
    for p in pieces:
        if p.phonemes is not None:
            out.append(p)
            continue
        pos = 0
        base = p.span[0]
        # spans map 1:1 only when the piece is the input's own text (not an SSML alias or say-as)
        literal = p.span[1] - p.span[0] == len(p.text)
        for m in lexicon.find(p.text):
            a, b = m.span
            if a > pos:
                out.append(Piece(p.text[pos:a], _sub(p, base, pos, a, literal)))
            span = _sub(p, base, a, b, literal)
            e = m.entry
            if e.phonemes is not None:
                out.append(Piece(m.text, span, e.phonemes, e.source))
            else:
                out.append(Piece(f" {e.respelling} ", span))
            fired.append(LexiconMatch(e, span, m.text))
            pos = b
        if pos < len(p.text):
            out.append(Piece(p.text[pos:], _sub(p, base, pos, len(p.text), literal)))
    return out, fired


def _sub(p: Piece, base: int, a: int, b: int, literal: bool) -> tuple[int, int]:
    return (base + a, base + b) if literal else p.span


_LEAD = re.compile(r"\s*([,.;:!?])")
_END = re.compile(r"[.!?…][\"'”’)\]]*\s*$")


def spoken(
    segments: Sequence[Segment],
    table: SymbolTable | None,
    lexicon: Lexicon | None = None,
    options: NormalizationOptions | None = None,
) -> list[SpokenSentence]:
    """Segments -> sentences with their phonemes (normalize + espeak-ng for text, verbatim phonemes
    checked against ``table``). Sentences with nothing to say are dropped (their pauses kept)."""
    from model.text.g2p import phonemize
    from model.text.normalize import normalize
    from model.text.sentences import split_sentences

    out: list[SpokenSentence] = []
    pending_pause = 0.0
    for seg in segments:
        pending_pause += seg.pause
        pieces, fired = apply_lexicon(seg.pieces, lexicon)
        groups: list[list[Piece]] = [[]]  # sentences of this segment, as pieces
        for p in pieces:
            if p.phonemes is not None:
                groups[-1].append(p)
                continue
            lead = _LEAD.match(p.text)  # a pause mark right after a phoneme piece: keep it
            if lead and groups[-1]:
                at = p.span[0] + lead.start(1)
                groups[-1].append(Piece("", (at, at + 1), lead.group(1), "text"))
                if lead.group(1) in ".!?":
                    groups.append([])
            parts = split_sentences(p.text) if re.search(r"\w", p.text) else []
            pos = 0
            for k, s in enumerate(parts):
                span = locate_sentence(p.text, s, pos)
                pos = max(pos, span[1])
                literal = p.span[1] - p.span[0] == len(p.text)
                groups[-1].append(Piece(s, _sub(p, p.span[0], span[0], span[1], literal)))
                if k < len(parts) - 1 or _END.search(p.text):
                    groups.append([])
        for g in groups:
            phon: list[str] = []
            for p in g:
                if p.phonemes is not None:
                    try:
                        phon.append(check_phonemes(p.phonemes, table))
                    except ValueError as exc:
                        raise MarkupError(f"phonemes for {p.text!r}: {exc}", p.span[0]) from None
                else:
                    phon.append(phonemize(normalize(p.text, options)))
            phonemes = re.sub(r"\s+([,.;:!?])", r"\1", " ".join(x for x in phon if x))
            if not any(c.isalpha() for c in phonemes):
                continue
            span = (min(p.span[0] for p in g), max(p.span[1] for p in g))
            text = re.sub(
                r"\s+([,.;:!?])", r"\1", " ".join(" ".join(p.text.split()) for p in g if p.text.strip())
            )
            mine = tuple(f for f in fired if span[0] <= f.span[0] and f.span[1] <= span[1])
            out.append(SpokenSentence(text, span, phonemes, seg.rate, seg.pitch, pending_pause, 0.0, mine))
            pending_pause = 0.0
    if out and pending_pause:
        last = out[-1]
        out[-1] = SpokenSentence(
            last.text,
            last.span,
            last.phonemes,
            last.rate,
            last.pitch,
            last.pause_before,
            pending_pause,
            last.fired,
        )
    return out
