"""Text normalization: a table of written inputs and the exact words a speaker would say."""

import random
import re

import pytest

from model.text import normalize

CASES = [
    # cardinals, negatives, decimals, leading zeros
    ("I have 3 apples.", "I have three apples."),
    ("It costs 1,234 points.", "It costs one thousand two hundred thirty-four points."),
    ("A population of 7,900,000,000", "A population of seven billion nine hundred million"),
    ("It was -5 outside.", "It was minus five outside."),
    ("Pi is 3.14.", "Pi is three point one four."),
    ("Add 0.5 or .5 cups", "Add zero point five or point five cups"),
    ("Agent 007", "Agent zero zero seven"),
    ("version 1.2.3", "version one point two point three"),
    # ordinals
    ("He came 1st and she came 22nd.", "He came first and she came twenty-second."),
    ("the 3rd and 101st floors", "the third and one hundred first floors"),
    # money
    (
        "Dr. Smith paid $19.99 at 3 PM.",
        "Doctor Smith paid nineteen dollars and ninety-nine cents at three PM.",
    ),
    ("It costs $1.", "It costs one dollar."),
    ("only $0.50 now", "only fifty cents now"),
    ("a $1,000,000 prize", "a one million dollars prize"),
    ("£10 or €3.50", "ten pounds or three euros and fifty cents"),
    ("a £1.01 stamp", "a one pound and one penny stamp"),
    ("They raised $5M.", "They raised five million dollars."),
    ("worth $2.5 billion", "worth two point five billion dollars"),
    ("between $10-20", "between ten to twenty dollars"),
    ("It is 20€.", "It is twenty euros."),
    # percentages
    ("50% off", "fifty percent off"),
    ("up 12.5% today", "up twelve point five percent today"),
    ("rates of 5-10%", "rates of five to ten percent"),
    # times
    ("at 3 PM", "at three PM"),
    ("at 3pm", "at three PM"),
    ("meet at 7:15", "meet at seven fifteen"),
    ("wake at 7:15 a.m. sharp", "wake at seven fifteen AM sharp"),
    ("It left at 5 p.m. Then it rained.", "It left at five PM. Then it rained."),
    ("at 12:00", "at twelve o'clock"),
    ("at 00:30", "at twelve thirty AM"),
    ("at 7:05", "at seven oh five"),
    ("the 14:45 train", "the fourteen forty-five train"),
    # years and decades
    ("in 1999", "in nineteen ninety-nine"),
    ("in 2005", "in two thousand five"),
    ("in 1905", "in nineteen oh five"),
    ("by 1900", "by nineteen hundred"),
    ("It was 1850.", "It was eighteen fifty."),
    ("There were 1999 soldiers.", "There were one thousand nine hundred ninety-nine soldiers."),
    ("the 2010s and the 1990s", "the twenty tens and the nineteen nineties"),
    ("the '80s and the 1800s", "the eighties and the eighteen hundreds"),
    ("from 1990–1995", "from nineteen ninety to nineteen ninety-five"),
    ("ages 18-25", "ages eighteen to twenty-five"),
    ("in 476 AD", "in four hundred seventy-six A D"),
    # dates
    ("on January 5, 2020", "on January fifth, twenty twenty"),
    ("on 5 Jan", "on the fifth of January"),
    ("due 2020-01-05", "due January fifth, twenty twenty"),
    ("born 1/5/2020", "born January fifth, twenty twenty"),
    ("born 25/12/2020", "born December twenty-fifth, twenty twenty"),
    ("on Mon., Feb. 3", "on Monday, February third"),
    ("in May 2020", "in May twenty twenty"),
    ("March 3rd, 2021", "March third, twenty twenty-one"),
    # abbreviations
    ("Mr. and Mrs. Smith met Ms. Jones.", "Mister and Missus Smith met Miz Jones."),
    ("Prof. Lee and Dr. Who", "Professor Lee and Doctor Who"),
    ("John Smith Jr. and Sr. Smith", "John Smith Junior and Senior Smith"),
    ("He lives at St. Louis.", "He lives at Saint Louis."),
    ("He lives on Main St.", "He lives on Main Street."),
    ("at 42nd St. today", "at forty-second Street today"),
    ("Mulholland Dr. is long", "Mulholland Drive is long"),
    ("apples, pears, etc.", "apples, pears, et cetera."),
    ("cats vs. dogs", "cats versus dogs"),
    ("fruit, e.g. apples", "fruit, for example apples"),
    ("one thing, i.e. this", "one thing, that is this"),
    ("see No. 5", "see Number five"),
    ("his/her", "his or her"),
    ("I said no. 5 people came", "I said number five people came"),
    ("approx. 10 people", "approximately ten people"),
    ("Acme Inc. and Foo Ltd. and Bar Co.", "Acme Incorporated and Foo Limited and Bar Company."),
    ("Acme Inc. The firm grew.", "Acme Incorporated. The firm grew."),
    ("the U.S. Army", "the U S Army"),
    ("John F. Kennedy", "John F Kennedy"),
    ("Maj. Gen. Edwin A. Walker", "Major General Edwin A Walker"),
    ("read pp. 10-20", "read pages ten to twenty"),
    # units
    ("ran 5 km in 20 min", "ran five kilometers in twenty minutes"),
    ("a 1 kg bag and 3 cm", "a one kilogram bag and three centimeters"),
    ("at 60 mph", "at sixty miles per hour"),
    ("It is -3°C or 27°F.", "It is minus three degrees Celsius or twenty-seven degrees Fahrenheit."),
    ("He is 6'2\" tall", "He is six feet two inches tall"),
    # symbols
    ("salt & pepper", "salt and pepper"),
    ("2 + 2 = 4", "two plus two equals four"),
    ("meet @ home", "meet at home"),
    ("ranked #1", "ranked number one"),
    ("AT&T", "A T and T"),
    ("C# and C++", "C sharp and C plus plus"),
    ("and/or", "and or"),
    ("a 4x4 grid, 10x faster", "a four by four grid, ten times faster"),
    ("1/2 cup and 3 1/2 miles", "one half cup and three and a half miles"),
    ("24/7 support", "twenty-four seven support"),
    # unicode quotes, dashes, ellipsis, whitespace
    ("“Hello,” she said.", "Hello, she said."),
    ("It’s John’s", "It's John's"),
    ("Wait — what?", "Wait, what?"),
    ("Monday–Friday", "Monday to Friday"),
    ("Wait... what?", "Wait, what?"),
    ("I don't know…", "I don't know."),
    ("  lots   of \t space\n here ", "lots of space here"),
    ("Really?!!", "Really?"),
    ("(in short) yes", "in short, yes"),
    ("well-known rock 'n' roll", "well-known rock n roll"),
    # acronyms and case
    ("The FBI and NASA", "The F B I and NASA"),
    ("HTML and the TV", "H T M L and the T V"),
    ("I said NOT now", "I said NOT now"),
    ("I LOVE THE FBI", "I Love The F B I"),
    ("COVID-19 and MP3", "COVID nineteen and M P three"),
    # roman numerals
    ("Henry VIII ruled", "Henry the eighth ruled"),
    ("Chapter IV", "Chapter four"),
    ("World War II", "World War two"),
    # URLs, e-mail, phone numbers
    ("Visit www.example.com today", "Visit W W W dot example dot com today"),
    ("see https://example.org/docs.", "see example dot org slash docs."),
    ("Mail john.doe@example.com now", "Mail john dot doe at example dot com now"),
    ("Call 555-123-4567.", "Call five five five, one two three, four five six seven."),
    # things we cannot say are dropped
    ("I ❤️ 日本 emoji 😀!", "I emoji!"),
    ("tab\x00and\x07bell\u200b", "tab and bell"),
    ("naïve café", "naïve café"),
    ("α and β", "alpha and beta"),
    ("", ""),
]


@pytest.mark.parametrize(("written", "spoken"), CASES, ids=[c[0][:40] for c in CASES])
def test_normalize_table(written, spoken):
    assert normalize(written) == spoken


def test_table_is_large_and_unique():
    inputs = [c[0] for c in CASES]
    assert len(inputs) >= 50
    assert len(set(inputs)) == len(inputs)


def test_idempotent_on_table_outputs():
    for _, spoken in CASES:
        assert normalize(spoken) == spoken


_SPOKEN = re.compile(r"^[^\W\d_]*(?:[ ',.?!;:-][^\W\d_]*)*$")


def test_random_junk_never_raises_and_stays_speakable():
    rng = random.Random(0)
    pieces = [
        *"aZ09 .,;:!?'\"-–—()$£€%&@#+=/\\*^_~<>|°…“”\n\t",
        "😀",
        "日",
        "\u200b",
        "\x00",
        "½",
        "²",
        "٣",
        "\u0301",
        "Dr.",
        "3 PM",
        "$5M",
        "1990–1995",
        "U.S.",
        "12/25/2020",
        "1,234.5",
        "www.x.com",
    ]
    for _ in range(300):
        s = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        out = normalize(s)
        assert _SPOKEN.match(out), (s, out)
        assert out == out.strip() and "  " not in out


def test_rejects_non_string():
    with pytest.raises(TypeError):
        normalize(None)  # type: ignore[arg-type]
