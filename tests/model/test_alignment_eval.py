"""The flite boundary check: IPA units, phone matching and boundary times on hand-made cases."""

import numpy as np
import pytest

from model.validation.alignment import (
    BoundaryResult,
    boundary_errors,
    ipa_units,
    match_phones,
    read_flite_durations,
    unit_end_frames,
)

PHONEMES = "həlˈoʊ wˈɜːld."
FLITE = "pau:0.100 hh:0.150 ax:0.200 l:0.300 ow:0.450 w:0.525 er:0.650 l:0.700 d:0.800 pau:1.000"
FRAME_S = 0.0125


def test_units_group_digraphs_and_marks():
    units = ipa_units(PHONEMES)
    assert [u.key for u in units] == ["h", "ə", "l", "oʊ", "w", "ɜː", "l", "d"]
    oo = units[3]
    assert (oo.first, oo.last) == (4, 5) and PHONEMES[3] == "ˈ"  # the stress mark is between units
    assert units[5].last == PHONEMES.index("ː")
    assert [u.key for u in ipa_units("tʃˈiːz, dʒˈæm")] == ["tʃ", "iː", "z", "dʒ", "æ", "m"]


def test_match_phones_skips_extra_and_missing_phones():
    units = ipa_units("kˈæt ɐ dˈɑːɡ")  # k ae t ax d aa g
    phones = ["k", "ae", "t", "d", "ao", "g", "z"]  # no article, another vowel, an extra phone
    pairs = match_phones(units, phones)
    assert [(units[u].key, phones[f]) for u, f in pairs] == [
        ("k", "k"),
        ("æ", "ae"),
        ("t", "t"),
        ("d", "d"),
        ("ɡ", "g"),
    ]


def durations_matching_flite() -> list[int]:
    """Per-symbol frames for PHONEMES whose unit boundaries land exactly on FLITE's end times."""
    # symbols h ə l ˈ o ʊ ␣ w ˈ ɜ ː l d . ; a stress mark or space (2 frames) is split between its
    # neighbours, so "l" ends 1 frame before the boundary l|oʊ at 24 frames (0.3 s)
    return [12, 4, 7, 2, 8, 2, 2, 4, 2, 7, 2, 4, 8, 16]


def test_perfect_alignment_gives_zero_error(tmp_path):
    path = tmp_path / "clip.txt"
    path.write_text(FLITE.replace(" ", "\n") + "\n")
    flite = read_flite_durations(path)
    assert flite[0] == ("pau", 0.1) and len(flite) == 10
    d = durations_matching_flite()
    ends = unit_end_frames(PHONEMES, d, ipa_units(PHONEMES)) * FRAME_S
    np.testing.assert_allclose(ends, [0.15, 0.2, 0.3, 0.45, 0.525, 0.65, 0.7, 0.8])
    res = boundary_errors(PHONEMES, d, flite, FRAME_S)
    assert res.n_matched == res.n_flite == res.n_units == 8
    assert res.summary()["mean_abs_ms"] == pytest.approx(0.0, abs=1e-9)


def test_shifted_alignment_error_is_measured():
    flite = [(t.split(":")[0], float(t.split(":")[1])) for t in FLITE.split()]
    d = durations_matching_flite()
    d[0] += 2  # 25 ms later from the first symbol on; the final pause absorbs it
    d[-1] -= 2
    res = boundary_errors(PHONEMES, d, flite, FRAME_S)
    assert res.summary()["mean_abs_ms"] == pytest.approx(25.0)
    assert res.summary()["within_20ms"] == 0.0


def test_gap_rules_spaces_split_punctuation_starts_pause():
    phonemes = "ab c, d"
    d = [2, 2, 4, 2, 6, 2, 2]  # a b ␣ c , ␣ d
    ends = unit_end_frames(phonemes, d, ipa_units(phonemes))
    assert ends.tolist() == [2, 6, 10, 20]  # b ends mid-space; c ends where "," starts
    with pytest.raises(ValueError, match="durations"):
        unit_end_frames(phonemes, d[:-1], ipa_units(phonemes))


def test_result_pooling():
    a = BoundaryResult([10.0, 30.0], 3, 3, 2)
    a.extend(BoundaryResult([20.0], 2, 4, 1))
    s = a.summary()
    assert s["mean_abs_ms"] == pytest.approx(20.0) and s["boundaries"] == 3
    assert s["matched_fraction"] == pytest.approx(3 / 7)
    assert np.isnan(BoundaryResult().summary()["mean_abs_ms"])
