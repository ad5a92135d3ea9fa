"""The text front end (torch-free; the server imports it).

normalize(text)        English as typed -> spoken words with pause punctuation
split_sentences(text)  sentences for streaming, long ones cut at pauses
phonemize(text)        normalized English -> IPA (espeak-ng en-us, stress marks, punctuation)
SymbolTable, default_symbols()   phoneme string <-> ids (pad 0, unk 1)
text_to_ids(text)      normalize -> phonemize -> encode

Markup (what the server speaks when the input has it): ``model.text.markup`` (inline ``[word](/IPA/)``,
segments with rate/pitch/pauses, ``spoken()``), ``model.text.ssml`` (the SSML subset, defusedxml),
``model.text.lexicon`` (pronunciation lexicons), ``normalize(text, NormalizationOptions(...))``.
"""

from __future__ import annotations

from model.text.g2p import phonemize
from model.text.normalize import normalize
from model.text.sentences import split_sentences
from model.text.symbols import SymbolTable, default_symbols

__all__ = ["SymbolTable", "default_symbols", "normalize", "phonemize", "split_sentences", "text_to_ids"]


def text_to_ids(text: str, table: SymbolTable | None = None) -> list[int]:
    """English text -> phoneme ids (normalize, phonemize, encode with ``table`` or the default)."""
    return (table or default_symbols()).encode(phonemize(normalize(text)))
