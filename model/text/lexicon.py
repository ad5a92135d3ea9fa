"""Pronunciation lexicons: a user's word -> phonemes (or word -> respelling) list, applied before G2P.

File format (UTF-8 text; ``#`` starts a comment line; blank lines are skipped)::

    # word<TAB or spaces>/IPA/        phonemes, in the voice's symbol set, between slashes
    Kokoro      /kˈoʊkəɹoʊ/
    nginx       engine x              a respelling: said as if that text were written
    New York<TAB>/nˈuː jˈɔːɹk/        an entry of several words needs a TAB before its value

Case rules: an entry written all in lowercase matches the word in any case (``kokoro`` matches
"Kokoro" and "KOKORO"); an entry with a capital letter matches only that exact spelling (``US``
matches "US", never "us"). Entries match whole words (not inside a longer word, nor across an
apostrophe: ``nginx`` does not fire on "nginx's"); where two entries match at one place the longer one wins.
They are matched on the text as written, before normalization, so an entry for "Dr" sees "Dr" and an
entry for "NASA" fires before the acronym rule would spell it out.

Phonemes are checked when the lexicon loads: every code point must be in the voice's symbol table
(``model.text.symbols``), else :class:`LexiconError` names the file, line and entry. Kokoro's
(misaki's) one-letter diphthongs are accepted and written out: A = eɪ, I = aɪ, O = oʊ, W = aʊ,
Y = ɔɪ, Q = əʊ (see :func:`check_phonemes`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from model.text.symbols import SymbolTable

# Kokoro-FastAPI / misaki write diphthongs as one capital letter; espeak-ng (and our tables) as two.
MISAKI_DIPHTHONGS = {"A": "eɪ", "I": "aɪ", "O": "oʊ", "W": "aʊ", "Y": "ɔɪ", "Q": "əʊ"}
MAX_PHONEMES = 200  # one entry's phoneme string, at most


class LexiconError(ValueError):
    """A lexicon file or entry is invalid (one line, naming the entry)."""


@dataclass(frozen=True)
class LexiconEntry:
    word: str  # as written in the file (case kept)
    phonemes: str | None  # IPA in the symbol set (diphthong shorthands written out), or None
    respelling: str | None  # text said instead of the word, or None
    source: str  # "<file>:<line>"

    @property
    def case_sensitive(self) -> bool:
        return self.word != self.word.lower()

    @property
    def value(self) -> str:
        return f"/{self.phonemes}/" if self.phonemes is not None else (self.respelling or "")


@dataclass(frozen=True)
class LexiconMatch:
    entry: LexiconEntry
    span: tuple[int, int]  # [start, end) in the text searched
    text: str  # the words as they were written there


def check_phonemes(ipa: str, table: SymbolTable | None) -> str:
    """IPA as a user writes it -> the phoneme string to encode: misaki's one-letter diphthongs written
    out, whitespace collapsed. ValueError (a short reason) when it is empty, too long or has a code
    point the table lacks. ``table`` None: no symbol check."""
    out = "".join(MISAKI_DIPHTHONGS.get(c, c) for c in " ".join(ipa.split()))
    if not out:
        raise ValueError("empty phoneme string")
    if len(out) > MAX_PHONEMES:
        raise ValueError(f"phoneme string longer than {MAX_PHONEMES} symbols")
    if table is not None:
        bad = sorted({c for c in out if c != " " and c not in table})
        if bad:
            listed = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in bad[:5])
            raise ValueError(f"symbol{'s' if len(bad) > 1 else ''} {listed} not in the voice's symbol set")
    return out


_LINE = re.compile(r"^(?P<word>[^\t]+?)\t+(?P<value>.+)$|^(?P<word2>\S+)\s+(?P<value2>.+)$")


class Lexicon:
    """Entries by word; :meth:`find` locates them in a text. Immutable."""

    def __init__(self, entries: Iterable[LexiconEntry] = ()):
        self._exact: dict[str, LexiconEntry] = {}
        self._folded: dict[str, LexiconEntry] = {}
        for e in entries:
            if e.case_sensitive:
                self._exact[e.word] = e
            else:
                self._folded[e.word.lower()] = e
        words = sorted({*self._exact, *self._folded}, key=len, reverse=True)  # longest first
        self._pattern = (
            re.compile(
                r"(?<![\w'’])(?:"
                + "|".join(r"\s+".join(re.escape(w) for w in word.split()) for word in words)
                + r")(?![\w'’])",
                re.IGNORECASE,
            )
            if words
            else None
        )

    @property
    def entries(self) -> list[LexiconEntry]:
        return [*self._exact.values(), *self._folded.values()]

    def __len__(self) -> int:
        return len(self._exact) + len(self._folded)

    def __bool__(self) -> bool:
        return len(self) > 0

    def lookup(self, written: str) -> LexiconEntry | None:
        """The entry for ``written`` (whitespace-normalized) under the case rules, or None."""
        key = " ".join(written.split())
        return self._exact.get(key) or self._folded.get(key.lower())

    def find(self, text: str) -> Iterator[LexiconMatch]:
        """Non-overlapping matches in ``text``, left to right."""
        if self._pattern is None:
            return
        pos = 0
        while (m := self._pattern.search(text, pos)) is not None:
            entry = self.lookup(m.group())
            if entry is None:  # matched a case-sensitive entry in another case: try one character on
                pos = m.start() + 1
                continue
            yield LexiconMatch(entry, (m.start(), m.end()), m.group())
            pos = m.end()

    def merged(self, other: Lexicon) -> Lexicon:
        """This lexicon with ``other``'s entries added; ``other`` wins where both have a word."""
        mine = {(e.word if e.case_sensitive else e.word.lower()): e for e in self.entries}
        mine |= {(e.word if e.case_sensitive else e.word.lower()): e for e in other.entries}
        return Lexicon(mine.values())


def parse_lexicon(text: str, table: SymbolTable | None, source: str = "<lexicon>") -> Lexicon:
    """Parse a lexicon file's text; LexiconError (one line: ``source:line: 'word': reason``)."""
    entries: dict[str, LexiconEntry] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line.strip(" "))
        if not m:
            raise LexiconError(
                f"{source}:{n}: expected 'word<TAB>/phonemes/' or 'word<TAB>respelling', got {line!r}"
            )
        word = " ".join((m.group("word") or m.group("word2")).split())
        value = (m.group("value") or m.group("value2")).strip()
        where = f"{source}:{n}"
        if not re.search(r"\w", word):
            raise LexiconError(f"{where}: {word!r}: an entry must be a word")
        if value.startswith("/"):
            if len(value) < 2 or not value.endswith("/"):
                raise LexiconError(f"{where}: {word!r}: phonemes go between two slashes, got {value!r}")
            try:
                entry = LexiconEntry(word, check_phonemes(value[1:-1], table), None, where)
            except ValueError as exc:
                raise LexiconError(f"{where}: {word!r} {value}: {exc}") from None
        else:
            if not re.search(r"\w", value):
                raise LexiconError(f"{where}: {word!r}: the respelling {value!r} has no word in it")
            entry = LexiconEntry(word, None, " ".join(value.split()), where)
        key = word if entry.case_sensitive else word.lower()
        if key in entries:
            raise LexiconError(f"{where}: {word!r} is already defined at {entries[key].source}")
        entries[key] = entry
    return Lexicon(entries.values())


def load_lexicon(path: str | Path, table: SymbolTable | None) -> Lexicon:
    """Read and check a lexicon file against ``table`` (LexiconError, one line, when it cannot)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LexiconError(f"cannot read lexicon {path}: {exc}") from None
    return parse_lexicon(text, table, str(path))
