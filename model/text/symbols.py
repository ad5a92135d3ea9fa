"""Phoneme symbol table: one id per Unicode code point.

The default inventory is fixed and append-only (ids are baked into trained models): id 0 is the
pad "_", id 1 the unknown symbol, then space and punctuation, then every IPA letter, stress mark and
diacritic espeak-ng can emit (generously: other languages' symbols too, so a foreign word that
espeak reads with its own phonemes still maps to real ids). Strings are encoded per code point, so
a multi-code-point phoneme like "oʊ" or "ɜː" is simply several ids; a code point outside the table
becomes the unknown id (logged once at debug level), never an error.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from typing import Any

log = logging.getLogger(__name__)

PAD = "_"
UNK = "\ufffd"  # the Unicode replacement character

_PUNCTUATION = " !'(),-.:;?\"«»“”¡¿—…"
_ASCII_LETTERS = "abcdefghijklmnopqrstuvwxyz"
# IPA letters not in ASCII: vowels, then consonants (pulmonic, non-pulmonic, affricate ligatures).
_IPA_VOWELS = "ɨʉɯɪʏʊøɘɵɤəɛœɜɞʌɔæɐɶɑɒᵻᵿɚɝ"
_IPA_CONSONANTS = "ʈɖɟɡɢʔɱɳɲŋɴʙʀⱱɾɽɸβθðʃʒʂʐçʝɣχʁħʕɦɬɮʋɹɻɰɭʎʟʍɥʜʢʡɕʑɺɧɫʘǀǃǂǁɓɗʄɠʛʧʤʦʣʨʥ"
# Length and stress, modifier letters, combining diacritics, tone/intonation arrows, ties.
_IPA_MARKS = (
    "ˈˌːˑ"
    "ʰʱʲʷˠˤⁿˡʼ˞ʴᵊᵑ"
    "\u0303\u0329\u032f\u032a\u0325\u032c\u0330\u033a\u033b\u031e\u031d\u031f\u0320\u0308\u033d\u031a\u0306"
    "↓↑→↗↘|‖"
    "\u0361\u035c‿"
)

DEFAULT_SYMBOLS: tuple[str, ...] = (
    PAD,
    UNK,
    *_PUNCTUATION,
    *_ASCII_LETTERS,
    *_IPA_VOWELS,
    *_IPA_CONSONANTS,
    *_IPA_MARKS,
    # append new symbols below this line only: existing ids must never change
)


class SymbolTable:
    """Maps phoneme strings to id lists and back. Immutable; compare with ``==``."""

    pad_id = 0
    unk_id = 1

    def __init__(self, symbols: Sequence[str]):
        symbols = tuple(symbols)
        if len(symbols) < 2 or symbols[0] != PAD or symbols[1] != UNK:
            raise ValueError(f"a symbol table starts with pad {PAD!r} and unk {UNK!r}")
        bad = [s for s in symbols if len(s) != 1]
        if bad:
            raise ValueError(f"symbols must be single code points, got {bad[:5]!r}")
        if len(set(symbols)) != len(symbols):
            dup = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ValueError(f"duplicate symbols: {dup!r}")
        self._symbols = symbols
        # pad and unk are never produced by encode(): a literal "_" in the input is unknown.
        self._ids = {s: i for i, s in enumerate(symbols) if i > 1}
        self._warned: set[str] = set()

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    def __len__(self) -> int:
        return len(self._symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SymbolTable) and other._symbols == self._symbols

    def __hash__(self) -> int:
        return hash(self._symbols)

    def __repr__(self) -> str:
        return f"SymbolTable({len(self)} symbols)"

    def encode(self, phonemes: str) -> list[int]:
        """Phoneme string -> ids, one per code point; unknown code points -> ``unk_id``."""
        ids = []
        for c in phonemes:
            i = self._ids.get(c)
            if i is None:
                i = self.unk_id
                if c not in self._warned:
                    self._warned.add(c)
                    log.debug("unknown phoneme symbol %r (U+%04X) -> unk", c, ord(c))
            ids.append(i)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> phoneme string. Padding is dropped; out-of-range ids decode as the unk symbol."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.pad_id:
                continue
            out.append(self._symbols[i] if 0 <= i < len(self._symbols) else UNK)
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"pad": PAD, "unk": UNK, "symbols": list(self._symbols)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SymbolTable:
        if d.get("pad", PAD) != PAD or d.get("unk", UNK) != UNK:
            raise ValueError("symbol table dict has a different pad/unk convention")
        return cls(d["symbols"])


@functools.cache
def default_symbols() -> SymbolTable:
    """The fixed default inventory (shared instance)."""
    return SymbolTable(DEFAULT_SYMBOLS)
