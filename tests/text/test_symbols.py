"""Phoneme symbol table: fixed ids, padding, unknowns, serialization."""

import json

import pytest

from model.text import SymbolTable, default_symbols, phonemize
from model.text.symbols import DEFAULT_SYMBOLS, PAD, UNK

# The inventory as first released. Ids are baked into trained models: symbols may only be
# appended after this prefix, never inserted, removed or reordered.
FROZEN_PREFIX = (
    "_\ufffd !'(),-.:;?\"«»“”¡¿—…abcdefghijklmnopqrstuvwxyz"
    "ɨʉɯɪʏʊøɘɵɤəɛœɜɞʌɔæɐɶɑɒᵻᵿɚɝ"
    "ʈɖɟɡɢʔɱɳɲŋɴʙʀⱱɾɽɸβθðʃʒʂʐçʝɣχʁħʕɦɬɮʋɹɻɰɭʎʟʍɥʜʢʡɕʑɺɧɫʘǀǃǂǁɓɗʄɠʛʧʤʦʣʨʥ"
    "ˈˌːˑʰʱʲʷˠˤⁿˡʼ˞ʴᵊᵑ"
    "\u0303\u0329\u032f\u032a\u0325\u032c\u0330\u033a\u033b\u031e\u031d\u031f\u0320\u0308\u033d\u031a\u0306"
    "↓↑→↗↘|‖\u0361\u035c‿"
)


def test_ids_are_stable():
    assert "".join(DEFAULT_SYMBOLS[: len(FROZEN_PREFIX)]) == FROZEN_PREFIX
    assert len(DEFAULT_SYMBOLS) >= len(FROZEN_PREFIX)


def test_pad_and_unk():
    t = default_symbols()
    assert t.pad_id == 0 and t.symbols[0] == PAD == "_"
    assert t.unk_id == 1 and t.symbols[1] == UNK
    assert len(t) == len(DEFAULT_SYMBOLS) > 150


def test_round_trip_real_phonemes():
    t = default_symbols()
    p = phonemize("The quick brown fox, naturally, jumped over the lazy dog!")
    ids = t.encode(p)
    assert len(ids) == len(p)  # one id per code point
    assert t.unk_id not in ids and t.pad_id not in ids
    assert t.decode(ids) == p


def test_multi_code_point_phonemes_encode_per_code_point():
    t = default_symbols()
    assert t.encode("oʊ") == [t.encode("o")[0], t.encode("ʊ")[0]]
    assert t.encode("ɜː") == [t.encode("ɜ")[0], t.encode("ː")[0]]


def test_unknown_symbols_map_to_unk_and_never_raise():
    t = default_symbols()
    ids = t.encode("a☃b😀")
    assert ids == [t.encode("a")[0], t.unk_id, t.encode("b")[0], t.unk_id]
    assert t.encode("_") == [t.unk_id]  # a literal underscore is not padding
    assert t.encode("") == []


def test_decode_drops_padding_and_marks_bad_ids():
    t = default_symbols()
    ids = t.encode("hi")
    assert t.decode([0, *ids, 0, 0]) == "hi"
    assert t.decode([*ids, 10_000, -3]) == "hi" + UNK + UNK


def test_dict_round_trip():
    t = default_symbols()
    d = json.loads(json.dumps(t.to_dict()))
    back = SymbolTable.from_dict(d)
    assert back == t and back.symbols == t.symbols
    assert back.encode("həlˈoʊ") == t.encode("həlˈoʊ")


def test_custom_table_and_validation():
    t = SymbolTable([PAD, UNK, "a", "b"])
    assert len(t) == 4 and t.encode("abc") == [2, 3, 1]
    assert "a" in t and "c" not in t
    with pytest.raises(ValueError):
        SymbolTable(["a", UNK, "b"])  # pad must come first
    with pytest.raises(ValueError):
        SymbolTable([PAD, UNK, "a", "a"])  # duplicates
    with pytest.raises(ValueError):
        SymbolTable([PAD, UNK, "oʊ"])  # one code point per symbol
    with pytest.raises(ValueError):
        SymbolTable.from_dict({"pad": "<pad>", "unk": UNK, "symbols": [PAD, UNK]})
