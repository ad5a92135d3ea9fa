"""Lexicons, inline phonemes, normalization options and SSML at the text level (model.text.markup)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from model.text import default_symbols, normalize, phonemize
from model.text.lexicon import LexiconError, parse_lexicon
from model.text.markup import MarkupError, has_markup, plan, spoken
from model.text.normalize import NormalizationOptions
from model.text.ssml import is_ssml, parse_ssml
from service.cli import app

T = default_symbols()
LEX = "Kokoro\t/kˈOkəɹO/\nnginx   engine x\nUS\t/jˈuː ˈɛs/\nNew York\t/nˈuː jˈɔːɹk/\n"


def said(text: str, lexicon: str | None = None, **options):
    lex = parse_lexicon(lexicon, T) if lexicon is not None else None
    return spoken(plan(text), T, lex, NormalizationOptions(**options) if options else None)


# ------------------------------------------------------------------ lexicon


def test_lexicon_entries_fire_before_g2p_with_case_rules():
    (s,) = said("I run nginx for Kokoro in the US, not for us, in New  York.", LEX)
    assert "kˈoʊkəɹoʊ" in s.phonemes  # misaki's O written out
    assert "ˈɛndʒɪn ˈɛks" in s.phonemes  # the respelling went through G2P
    assert "jˈuː ˈɛs" in s.phonemes and "nˈuː jˈɔːɹk" in s.phonemes
    fired = [(f.text, f.entry.word) for f in s.fired]
    # "US" (capitalized entry) matches only "US", never "us"; the two-word entry matches across spaces
    assert fired == [("nginx", "nginx"), ("Kokoro", "Kokoro"), ("US", "US"), ("New  York", "New York")]
    text = "I run nginx for Kokoro in the US, not for us, in New  York."
    assert [text[a:b] for a, b in (f.span for f in s.fired)] == ["nginx", "Kokoro", "US", "New  York"]


def test_lowercase_entry_matches_any_case_but_only_whole_words():
    (s,) = said("KOKORO and kokoro but not Kokoros or nginx's.", "kokoro\t/kˈOkəɹO/\nnginx\tengine x\n")
    assert [f.text for f in s.fired] == ["KOKORO", "kokoro"]
    (plain,) = said("Kokoros")
    assert "kˈoʊkəɹoʊ" not in plain.phonemes


def test_lexicon_without_entries_changes_nothing():
    (s,) = said("Dr. Smith paid $5.", "")
    assert s.phonemes == phonemize(normalize("Dr. Smith paid $5."))


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "Kokoro\t/kˈ9/\n",
            r"<lexicon>:1: 'Kokoro' /kˈ9/: symbol '9' \(U\+0039\) not in the voice's symbol set",
        ),
        ("# c\n\nok\t/ok/\nbad\t/kə\n", r"<lexicon>:4: 'bad': phonemes go between two slashes"),
        ("one two three\n", r"<lexicon>:1: 'one': the respelling"),  # no tab: 'one' -> 'two three' is fine...
        ("x\t//\n", r"'x' //: empty phoneme string"),
        ("word\n", r"<lexicon>:1: expected"),
        (
            "a\t/ə/\nA\t/eɪ/\nb\t/b/\nB\t/bˈiː/\nb\t/bb/\n",
            r"<lexicon>:5: 'b' is already defined at <lexicon>:3",
        ),
    ],
)
def test_lexicon_errors_are_one_line_naming_the_entry(text, message):
    if text == "one two three\n":  # a respelling with a word in it is valid; check that instead
        assert parse_lexicon(text, T).lookup("one").respelling == "two three"
        return
    with pytest.raises(LexiconError, match=message) as info:
        parse_lexicon(text, T)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ inline phonemes


def test_inline_phonemes_are_spoken_verbatim_with_spans():
    text = "Hello [Kokoro](/kˈOkəɹO/) world. Second one."
    first, second = said(text)
    assert first.phonemes == "həlˈoʊ kˈoʊkəɹoʊ wˈɜːld."
    assert first.text == "Hello Kokoro world." and first.span == (0, 32)
    assert text[second.span[0] : second.span[1]] == "Second one."


@pytest.mark.parametrize(
    "text, position, message",
    [
        ("say [x](/abc and more", 4, "unclosed inline phonemes"),
        ("say x](/abc and more", 5, "unclosed inline phonemes"),
        ("say [x](/kˈ9/) now", 4, r"symbol '9'"),
        ("say [](/kə/) now", 4, "need the word"),
        ("say [x](//) now", 9, "empty phonemes"),
    ],
)
def test_invalid_inline_markup_says_where(text, position, message):
    with pytest.raises(MarkupError, match=message) as info:
        said(text)
    assert info.value.position == position
    assert f"at character {position}" in str(info.value)


def test_plain_brackets_are_not_markup():
    assert not has_markup("a [note] (see /usr/bin) and 3 < 4 > 2")
    (s,) = said("a [note] (see /usr/bin)")
    assert "nˈoʊt" in s.phonemes


# ------------------------------------------------------------------ normalization options


def test_normalization_switches():
    text = "Mail a.b@example.com, see www.example.com/docs, call 555-123-4567, walk 5 km."
    full = normalize(text)
    assert "at example dot com" in full and "W W W dot example" in full
    assert "five five five, one two three" in full and "five kilometers" in full
    off = normalize(text, NormalizationOptions(normalize=False))
    assert off == text  # as written: espeak-ng reads it
    no_units = normalize(text, NormalizationOptions(unit_normalization=False))
    assert "five km" in no_units and "kilometers" not in no_units
    no_urls = normalize(text, NormalizationOptions(url_normalization=False))
    assert "W W W" not in no_urls and "a dot b at example dot com" in no_urls
    no_mail = normalize(text, NormalizationOptions(email_normalization=False))
    assert "W W W dot example" in no_mail and "a dot b at example dot com" not in no_mail
    no_phone = normalize(text, NormalizationOptions(phone_normalization=False))
    assert "five five five, one two three" not in no_phone
    assert normalize(text, NormalizationOptions()) == full


def test_normalize_off_reaches_g2p():
    (s,) = said("Dr. Smith", normalize=False)
    (d,) = said("Dr. Smith")
    assert s.phonemes != d.phonemes and "dˈɑːktɚ" in d.phonemes


# ------------------------------------------------------------------ SSML


def test_only_input_starting_with_speak_is_ssml():
    assert is_ssml("<speak>hi</speak>") and is_ssml('  \n<speak version="1.1">hi</speak>')
    assert is_ssml('<?xml version="1.0"?><speak>hi</speak>')
    for text in ("hi <speak>x</speak>", "<speaker>hi", "<b>bold</b>", "3 < 4", "<speakers are loud"):
        assert not is_ssml(text)


def test_ssml_segments_breaks_prosody_and_say_as():
    text = (
        '<speak>Hello <break time="500ms"/> world. <prosody rate="slow" pitch="+2st">Slow and high.'
        '<prosody rate="200%" pitch="-10%">nested</prosody></prosody>'
        '<s><say-as interpret-as="characters">AB1</say-as> on <say-as interpret-as="date">12/25/2024</say-as>,'
        ' the <say-as interpret-as="ordinal">21</say-as> call <say-as interpret-as="telephone">555-1234</say-as>'
        ' for <say-as interpret-as="cardinal">1,234</say-as>.</s>'
        '<sub alias="World Wide Web">WWW</sub> <phoneme alphabet="ipa" ph="təmˈɑːtoʊ">tomato</phoneme>'
        '<break strength="strong"/></speak>'
    )
    out = said(text)
    assert [s.text for s in out[:4]] == ["Hello", "world.", "Slow and high.", "nested"]
    assert out[1].pause_before == pytest.approx(0.5)
    assert (out[2].rate, out[2].pitch) == (0.75, 2.0)
    assert out[3].rate == pytest.approx(1.5) and out[3].pitch == pytest.approx(
        2.0 + 12 * __import__("math").log2(0.9)
    )
    say = out[4]
    assert say.rate == 1.0 and say.pitch == 0.0
    assert say.phonemes.startswith("ˈeɪ bˈiː w")  # characters: A B one
    assert "dᵻsˈɛmbɚ twˈɛntifˈɪfθ, twˈɛnti twˈɛntifˈɔːɹ" in say.phonemes  # date
    assert "twˈɛntifˈɜːst" in say.phonemes and "fˈaɪv fˈaɪv fˈaɪv, wˈʌn tˈuː θɹˈiː fˈɔːɹ" in say.phonemes
    assert "θˈaʊzənd tˈuː hˈʌndɹɪd" in say.phonemes
    last = out[-1]
    assert last.phonemes.endswith("təmˈɑːtoʊ") and "wˈɜːld wˈaɪd wˈɛb" in last.phonemes
    assert last.pause_after == pytest.approx(0.75)
    assert text[out[0].span[0] : out[0].span[1]] == "Hello"


@pytest.mark.parametrize(
    "text, message",
    [
        ("<speak>hi <b>x</b></speak>", r"unsupported tag <b> .*at character 10"),
        ("<speak>hi <break/>", r"not well-formed XML: .*line 1, column 19"),
        (
            "<speak>\nline two <prosody volume='loud'>x</prosody></speak>",
            r"unsupported attribute 'volume'.*at character 17",
        ),
        ('<speak><break time="11s"/></speak>', r"longer than 10 s"),
        ('<speak><break time="soon"/></speak>', r"must be a time"),
        ('<speak><prosody rate="9">x</prosody></speak>', r"outside 0.25..4"),
        ('<speak><prosody pitch="+100Hz">x</prosody></speak>', r"pitch in Hz is not supported"),
        (
            '<speak><phoneme alphabet="x-sampa" ph="k">x</phoneme></speak>',
            r"alphabet 'x-sampa' is not supported",
        ),
        ('<speak><say-as interpret-as="cardinal">many</say-as></speak>', r"'many' is not a number"),
        ('<speak><say-as interpret-as="date">13/45/2020</say-as></speak>', r"month 1-12"),
        ('<speak><say-as interpret-as="verbatim">x</say-as></speak>', r"not supported"),
        ('<speak><sub alias="">x</sub></speak>', r"needs an alias"),
        ("<speak><speak>x</speak></speak>", r"<speak> inside <speak>"),
        ("<speak>" + "<s>" * 20 + "x" + "</s>" * 20 + "</speak>", r"nested deeper than 16"),
        ("<speak>" + '<break time="10s"/>' * 7 + "</speak>", r"add up to more than 60 s"),
        ("<speak>" + "<s>x</s>" * 1001 + "</speak>", r"more than 1000 elements"),
        ("<speak>x</speak> trailing", r"junk after document element"),
        (
            '<?xml version="1.0"?><!DOCTYPE speak [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
            "<speak>&b;</speak>",
            r"DTDForbidden",
        ),
        ('<!DOCTYPE speak SYSTEM "file:///etc/passwd"><speak>x</speak>', r"DTDForbidden"),
        ("<speak>&undefined;</speak>", r"undefined entity"),
        ('<speak><phoneme ph="kˈ9">x</phoneme></speak>', r"symbol '9'"),
    ],
)
def test_bad_ssml_is_an_error_with_a_position(text, message):
    with pytest.raises(MarkupError, match=message) as info:
        said(text)
    assert info.value.position is not None and 0 <= info.value.position <= len(text)


def test_entity_references_of_xml_are_fine():
    (s,) = said("<speak>Tom &amp; Jerry &lt;3</speak>")
    assert s.text == "Tom & Jerry <3"


def test_ssml_inline_phonemes_and_lexicon_inside():
    (s,) = said("<speak>Use [nginx](/ˈɛndʒɪn ˈɛks/) with Kokoro.</speak>", "kokoro\t/kˈOkəɹO/\n")
    assert "ˈɛndʒɪn ˈɛks" in s.phonemes and "kˈoʊkəɹoʊ" in s.phonemes
    assert [f.text for f in s.fired] == ["Kokoro"]


def test_parse_ssml_keeps_the_source_spans():
    text = '<speak>One. <break time="1s"/>Two words.</speak>'
    segs = parse_ssml(text)
    assert [s.pause for s in segs] == [0.0, 1.0]
    assert [text[p.span[0] : p.span[1]] for s in segs for p in s.pieces] == ["One. ", "Two words."]


# ------------------------------------------------------------------ CLI


def test_text_cli_shows_fired_entries_and_prosody(tmp_path):
    lex = tmp_path / "lex.txt"
    lex.write_text(LEX, encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["text", "--lexicon", str(lex), "Kokoro runs behind nginx."])
    assert result.exit_code == 0, result.output
    assert f"lexicon:   Kokoro -> /kˈoʊkəɹoʊ/  ({lex}:1)" in result.output
    assert f"lexicon:   nginx -> engine x  ({lex}:2)" in result.output
    result = runner.invoke(
        app, ["text", '<speak>Hi. <break time="300ms"/><prosody rate="fast">Quick.</prosody></speak>']
    )
    assert result.exit_code == 0, result.output
    assert "sentence 2: Quick.  [rate x1.3, pause before 0.3 s]" in result.output
    bad = tmp_path / "bad.txt"
    bad.write_text("Kokoro\t/kˈ9/\n", encoding="utf-8")
    result = runner.invoke(app, ["text", "--lexicon", str(bad), "x"])
    assert result.exit_code == 2 and f"{bad}:1: 'Kokoro' /kˈ9/: symbol '9'" in result.output
    result = runner.invoke(app, ["text", "<speak>x <foo/></speak>"])
    assert result.exit_code == 2 and "unsupported tag <foo>" in result.output
