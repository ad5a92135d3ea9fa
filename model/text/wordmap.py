"""Where each written word of a sentence is in its phoneme string (for word timestamps).

The front end turns a sentence into phonemes in two steps that both lose the word boundaries of
the text as typed: ``normalize`` rewrites tokens ("$19.99" -> "nineteen dollars and ninety nine
cents", "Mrs." -> "Missus"), and espeak-ng merges function words into their neighbours ("of the"
-> "ʌvðə", "that it" -> "ðˌɐɾɪt"). :func:`word_spans` recovers the mapping without changing what is
spoken (the sentence's own normalization and phoneme string are what the acoustic model reads):

1. written tokens (runs of non-space characters, punctuation around them dropped) with their
   character offsets in the input;
2. written tokens -> the sentence's normalized words: each token normalized alone, the flattened
   result matched to the sentence's normalization with :class:`difflib.SequenceMatcher` (equal
   runs map one to one; a replaced run is shared out in order);
3. normalized words -> phoneme code points: each word phonemized alone (one espeak call for the
   sentence), and those strings matched character by character to the sentence's phoneme string,
   so a merged "ʌvðə" splits into "ʌv" and "ðə". Unmatched code points go to the word before them.

Both per-token normalizations and per-word phonemizations are cached (the same words keep coming
back): ~3 ms per sentence cold on the 2-core box, a fraction of that once the words have been seen.

The phoneme string is indexed per code point, as ``SymbolTable.encode`` maps it to ids: a word's
``phonemes`` range is the range of the acoustic model's inputs (and so of its ``durations``) that
speak it. Tokens with nothing to say (a lone "&" that normalization kept as a word says "and";
a lone "--" says nothing) get no span.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from model.text.g2p import _get, _lock
from model.text.normalize import normalize

# characters stripped from the ends of a written token for its display form and span
_EDGE_PUNCT = "\"'“”‘’«»()[]{}<>.,;:!?…—–-*_"
_PAUSES = ",.;:!?"
CACHE_SIZE = 1 << 16  # tokens and words remembered (the same words come back all the time)


@dataclass(frozen=True)
class WordSpan:
    """One written word of a sentence and what speaks it."""

    text: str  # as written, punctuation around it stripped ("$19.99", "Oswald")
    start: int  # [start, end) character offsets of ``text`` in the input
    end: int
    spoken: tuple[str, ...]  # its words after normalization ("nineteen", "dollars", ...)
    phonemes: tuple[int, int]  # [start, end) code-point range in the sentence's phoneme string


def _tokens(text: str, span: tuple[int, int]) -> list[tuple[str, int, int]]:
    """Written tokens inside ``text[span]``: (display text, start, end) in input offsets."""
    out = []
    for m in re.finditer(r"\S+", text[span[0] : span[1]]):
        raw = m.group()
        lead = len(raw) - len(raw.lstrip(_EDGE_PUNCT))
        core = raw.strip(_EDGE_PUNCT)
        if re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", core) and raw[lead + len(core) :].startswith("."):
            core += "."  # an initialism keeps its last period ("U.S.", "p.m.")
        if not core:
            continue
        a = span[0] + m.start() + lead
        out.append((core, a, a + len(core)))
    return out


def _spoken(normalized: str) -> list[str]:
    return [w for w in re.sub(f"[{re.escape(_PAUSES)}]", " ", normalized).split() if w]


def _share(owners: list[int], targets: int) -> list[int]:
    """Share ``targets`` items out over ``owners`` in order (proportionally, at least one each while
    there are enough)."""
    if not owners:
        return []
    return [owners[min(len(owners) - 1, k * len(owners) // targets)] for k in range(targets)]


def _words_to_tokens(token_words: list[list[str]], spoken: list[str]) -> list[int]:
    """For each word of the sentence's normalization, the index of the written token saying it."""
    flat = [(t, w.lower()) for t, ws in enumerate(token_words) for w in ws]
    owner = [-1] * len(spoken)
    sm = SequenceMatcher(None, [w for _, w in flat], [w.lower() for w in spoken], autojunk=False)
    for op, a0, a1, b0, b1 in sm.get_opcodes():
        if op == "equal":
            for k in range(b1 - b0):
                owner[b0 + k] = flat[a0 + k][0]
        elif op in ("replace", "insert") and b1 > b0:
            tokens = sorted({flat[a][0] for a in range(a0, a1)})
            if not tokens:  # words normalization added: belong to the token before (or after)
                before = flat[a0 - 1][0] if a0 > 0 else None
                after = flat[a0][0] if a0 < len(flat) else None
                tokens = [before if before is not None else after] if flat else []
            for k, t in enumerate(_share(tokens, b1 - b0)):
                owner[b0 + k] = t
    # anything still unowned goes with its neighbour (keeps the order monotonic)
    for i in range(len(owner)):
        if owner[i] < 0:
            owner[i] = owner[i - 1] if i > 0 else 0
    for i in range(1, len(owner)):
        owner[i] = max(owner[i], owner[i - 1])
    return owner


def _phonemes_to_words(phonemes: str, word_phonemes: list[str]) -> list[int]:
    """For each code point of ``phonemes``, the index of the spoken word it belongs to (-1: a space
    or pause punctuation between words)."""
    keep = [i for i, c in enumerate(phonemes) if c != " " and c not in _PAUSES]
    ref = [(w, c) for w, p in enumerate(word_phonemes) for c in p if c != " " and c not in _PAUSES]
    owner = [-1] * len(phonemes)
    sm = SequenceMatcher(None, [c for _, c in ref], [phonemes[i] for i in keep], autojunk=False)
    for a, b, n in sm.get_matching_blocks():
        for k in range(n):
            owner[keep[b + k]] = ref[a + k][0]
    matched = [owner[i] for i in keep if owner[i] >= 0]
    if not matched:  # nothing in common: one word per espeak word chunk, in order
        chunk = 0
        for i, c in enumerate(phonemes):
            if c == " ":
                chunk += 1
            elif c not in _PAUSES:
                owner[i] = min(chunk, len(word_phonemes) - 1)
        return owner
    # unmatched code points at the start of an espeak word chunk (a stress mark) go to the next
    # matched code point's word in that chunk; the others to the word before them; the order stays
    # monotonic
    chunk_first: dict[int, int] = {}  # code point -> first matched owner in its chunk
    start = 0
    for i, c in enumerate(phonemes + " "):
        if c == " ":
            first = next((owner[j] for j in range(start, i) if owner[j] >= 0), -1)
            for j in range(start, i):
                chunk_first[j] = first
            start = i + 1
    prev = matched[0]
    lead = True  # no matched code point yet in this chunk
    for i in keep:
        if i == 0 or phonemes[i - 1] == " ":
            lead = True
        if owner[i] >= 0:
            lead = False
        elif lead and chunk_first.get(i, -1) >= 0:
            owner[i] = chunk_first[i]
        prev = max(prev, owner[i])
        owner[i] = prev
    return owner


_word_phonemes: dict[str, str] = {}  # word -> its phonemes alone (espeak's are fixed for the process)


def phonemize_words(words: list[str]) -> list[str]:
    """Each word phonemized on its own (one espeak call for those not seen before)."""
    new = sorted({w for w in words if w not in _word_phonemes})
    if new:
        with _lock:
            backend, separator = _get()
            out = backend.phonemize(new, separator=separator, strip=True, njobs=1)
        if len(_word_phonemes) > CACHE_SIZE:
            _word_phonemes.clear()
        _word_phonemes.update(zip(new, (" ".join(o.split()) for o in out), strict=True))
    return [_word_phonemes[w] for w in words]


@functools.lru_cache(maxsize=CACHE_SIZE)
def _token_spoken(token: str) -> tuple[str, ...]:
    """What ``normalize`` makes of one written token alone."""
    return tuple(_spoken(normalize(token)))


def word_spans(
    text: str,
    span: tuple[int, int],
    normalized: str,
    phonemes: str,
    word_phonemes: list[str] | None = None,
) -> list[WordSpan]:
    """The written words of the sentence at ``text[span[0]:span[1]]`` with their spoken words and
    phoneme ranges. ``normalized`` and ``phonemes`` are the sentence's ``normalize`` and
    ``phonemize`` outputs (what the model reads); ``word_phonemes``, each spoken word phonemized
    alone, is computed when not given. Tokens that say nothing are left out."""
    tokens = _tokens(text, span)
    spoken = _spoken(normalized)
    if not tokens or not spoken:
        return []
    owner_tok = _words_to_tokens([list(_token_spoken(t)) for t, _, _ in tokens], spoken)
    if word_phonemes is None:
        word_phonemes = phonemize_words(spoken)
    owner_word = _phonemes_to_words(phonemes, word_phonemes)
    ranges: dict[int, list[int]] = {}
    for i, w in enumerate(owner_word):
        if w >= 0:
            r = ranges.setdefault(w, [i, i + 1])
            r[0], r[1] = min(r[0], i), max(r[1], i + 1)
    out = []
    for t, (display, a, b) in enumerate(tokens):
        words = [w for w, o in enumerate(owner_tok) if o == t]
        if not words:
            continue
        rs = [ranges[w] for w in words if w in ranges]
        if rs:
            ph = (min(r[0] for r in rs), max(r[1] for r in rs))
        else:  # espeak said nothing for it: an empty range where it would be
            before = [r[1] for w, r in ranges.items() if w < words[0]]
            at = max(before) if before else 0
            ph = (at, at)
        out.append(WordSpan(display, a, b, tuple(spoken[w] for w in words), ph))
    # ranges may not overlap or go backwards
    fixed = []
    floor = 0
    for w in out:
        lo = max(w.phonemes[0], floor)
        hi = max(w.phonemes[1], lo)
        floor = hi
        fixed.append(WordSpan(w.text, w.start, w.end, w.spoken, (lo, hi)))
    return fixed
