"""G2P through the bundled espeak-ng (en-us, stress marks, punctuation kept)."""

import threading

from model.text import default_symbols, normalize, phonemize, text_to_ids
from model.text.g2p import espeak_version


def test_uses_a_working_bundled_espeak():
    major, minor, *_ = (int(x) for x in espeak_version().split("."))
    assert (major, minor) >= (1, 50)


def test_known_words():
    hello = phonemize("hello")
    assert hello.startswith("h")
    assert "l" in hello and "oʊ" in hello
    assert "ə" in hello or "ɛ" in hello
    assert "ˈ" in hello  # primary stress
    world = phonemize("world")
    assert world.startswith("w") and world.endswith("d")
    assert "ɜː" in world or "ɝ" in world
    assert "θ" in phonemize("think") and "ð" in phonemize("this")
    assert "ŋ" in phonemize("sing")


def test_words_are_separated_by_single_spaces():
    out = phonemize("the   quick brown\nfox")
    assert "  " not in out and "\n" not in out
    assert len(out.split(" ")) == 4


def test_punctuation_is_kept_in_place():
    out = phonemize("Hello, world! How are you? Fine; thanks: bye.")
    marks = [c for c in out if c in ",.!?;:"]
    assert marks == [",", "!", "?", ";", ":", "."]
    assert out.endswith(".")
    assert " ," not in out and " ." not in out


def test_deterministic():
    text = normalize("Dr. Smith paid $19.99 at 3 PM on January 5, 2020.")
    assert phonemize(text) == phonemize(text)


def test_empty_and_unspeakable_input():
    assert phonemize("") == ""
    assert phonemize("   ") == ""
    assert phonemize("...!?") == ""


def test_capital_a_as_a_letter_is_the_letter_name():
    assert "eɪ" in phonemize("Edwin A Walker").split()[1]
    assert phonemize("A J Hidell").split()[0] in ("ˈeɪ", "eɪ")
    assert phonemize("A dog barked").startswith("ɐ")  # the article stays an article


def test_thread_safe():
    sentences = [
        normalize(s)
        for s in (
            "The birch canoe slid on the smooth planks.",
            "Glue the sheet to the dark blue background.",
            "It is easy to tell the depth of a well.",
            "These days a chicken leg is a rare dish.",
            "Rice is often served in round bowls.",
        )
    ]
    expected = [phonemize(s) for s in sentences]
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            results[k] = [phonemize(s) for s in sentences * 3]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(4):
        assert results[k] == expected * 3


def test_default_symbols_cover_ordinary_english():
    table = default_symbols()
    text = normalize(
        "She sells sea shells by the seashore; the judge's pleasure was measured. "
        "Why? Because 1,234 people paid $5.50 each at 7:15 a.m. on Jan. 3rd, 1999!"
    )
    ids = table.encode(phonemize(text))
    assert table.unk_id not in ids


def test_text_to_ids():
    ids = text_to_ids("Dr. Smith paid $19.99 at 3 PM.")
    table = default_symbols()
    assert ids and all(isinstance(i, int) and 1 < i < len(table) for i in ids)
    assert table.decode(ids) == phonemize(normalize("Dr. Smith paid $19.99 at 3 PM."))
