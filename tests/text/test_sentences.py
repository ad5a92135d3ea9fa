"""Sentence splitting for streaming."""

import pytest

from model.text import normalize, split_sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Smith went home. He slept.", ["Dr. Smith went home.", "He slept."]),
        ("Pi is 3.14. Nice!", ["Pi is 3.14.", "Nice!"]),
        ("J. R. R. Tolkien wrote it. The end.", ["J. R. R. Tolkien wrote it.", "The end."]),
        ("The U.S. Army came. It left.", ["The U.S. Army came.", "It left."]),
        ("He lives in the U.S. The weather is fine.", ["He lives in the U.S.", "The weather is fine."]),
        ("Wait... what? Really?! Yes.", ["Wait... what?", "Really?!", "Yes."]),
        ("I bought pears, etc. and more.", ["I bought pears, etc. and more."]),
        ("Call me at 5 p.m. Then leave.", ["Call me at 5 p.m.", "Then leave."]),
        ("See No. 5 here. Mr. Jones agreed.", ["See No. 5 here.", "Mr. Jones agreed."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("Acme Inc. The company grew.", ["Acme Inc.", "The company grew."]),
        (
            "Edwin A. Walker lived here. Plan A. The best plan.",
            ["Edwin A. Walker lived here.", "Plan A.", "The best plan."],
        ),
        ("Line one\n\nLine two", ["Line one", "Line two"]),
        ("no final punctuation", ["no final punctuation"]),
        ("", []),
        ("   \n  ", []),
    ],
)
def test_split(text, expected):
    assert split_sentences(text) == expected


def test_split_normalized_text():
    words = normalize("Dr. Smith paid $19.99 at 3 p.m. Then he left. Mrs. Jones stayed.")
    assert split_sentences(words) == [
        "Doctor Smith paid nineteen dollars and ninety-nine cents at three PM.",
        "Then he left.",
        "Missus Jones stayed.",
    ]


def test_long_sentence_is_cut_at_pauses():
    clause = "the quick brown fox jumps over the lazy dog"
    text = ", ".join([clause] * 12) + "."
    chunks = split_sentences(text, max_chars=120)
    assert len(chunks) > 1
    assert all(len(c) <= 120 for c in chunks)
    assert all(c.endswith((",", ".")) for c in chunks)  # cut after commas, not inside words
    assert " ".join(chunks) == text


def test_long_run_without_punctuation_is_cut_at_spaces():
    text = " ".join(["word"] * 200)
    chunks = split_sentences(text, max_chars=50)
    assert all(0 < len(c) <= 50 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_unbreakable_token_is_hard_cut():
    chunks = split_sentences("x" * 130, max_chars=50)
    assert [len(c) for c in chunks] == [50, 50, 30]


def test_default_max_length():
    text = " ".join(["word"] * 400)
    assert all(len(c) <= 300 for c in split_sentences(text))


def test_rejects_tiny_max_chars():
    with pytest.raises(ValueError):
        split_sentences("hello", max_chars=5)


def test_a_month_abbreviation_before_a_number_is_not_a_sentence_end():
    assert split_sentences("We met on Jan. 5th, 2024. It rained.") == [
        "We met on Jan. 5th, 2024.",
        "It rained.",
    ]
    assert split_sentences("Due Sept. 30 at noon.") == ["Due Sept. 30 at noon."]
    assert "january" in normalize("We met on Jan. 5th, 2024.").lower()
    # a month's abbreviation before a capital still ends one
    assert split_sentences("I left in Dec. Then I came back.") == ["I left in Dec.", "Then I came back."]
