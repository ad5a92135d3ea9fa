"""Number words for the normalizer: cardinals, ordinals, years, decades, decimals, fractions, digits.

All outputs are lowercase American English without "and" inside numbers ("one hundred five") and
without commas (a comma would be read as a pause). num2words provides the raw words.
"""

from __future__ import annotations

import re

from num2words import num2words

# Above this, numbers are read digit by digit (nobody says "four quadrillion ..." for an id).
MAX_CARDINAL = 10**15

_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_AND = re.compile(r"\band\s+")


def _clean(words: str) -> str:
    words = words.replace(",", "")
    words = _AND.sub("", words)
    return " ".join(words.split())


def digits(s: str) -> str:
    """'0471' -> 'zero four seven one' (non-digits are ignored)."""
    return " ".join(_DIGITS[int(c)] for c in s if c.isdigit())


def cardinal(n: int) -> str:
    """1234 -> 'one thousand two hundred thirty-four'; negatives get 'minus'."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n >= MAX_CARDINAL:
        return digits(str(n))
    return _clean(num2words(n))


def ordinal(n: int) -> str:
    """22 -> 'twenty-second'."""
    if n < 0:
        return "minus " + ordinal(-n)
    if n >= MAX_CARDINAL:
        return digits(str(n))
    return _clean(num2words(n, to="ordinal"))


def year(n: int) -> str:
    """How years are read: 1999 'nineteen ninety-nine', 1905 'nineteen oh five', 1900 'nineteen
    hundred', 2005 'two thousand five', 2010 'twenty ten'."""
    if n < 1000 or n > 9999:
        return cardinal(n)
    hi, lo = divmod(n, 100)
    if n % 1000 < 10 and hi % 10 == 0:  # 1000-1009, 2000-2009, ...
        return cardinal(n)
    if lo == 0:
        return cardinal(hi) + " hundred"
    if lo < 10:
        return cardinal(hi) + " oh " + cardinal(lo)
    return cardinal(hi) + " " + cardinal(lo)


def plural(word: str) -> str:
    """Plural of the last word of a number phrase: 'ninety' -> 'nineties', 'six' -> 'sixes'."""
    head, _, last = word.rpartition(" ")
    if last.endswith("y"):
        last = last[:-1] + "ies"
    elif last.endswith(("x", "s")):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def decade(n: int) -> str:
    """1990 -> 'nineteen nineties', 90 -> 'nineties', 2000 -> 'two thousands'."""
    return plural(year(n) if n >= 1000 else cardinal(n))


def number(s: str) -> str:
    """A written number: '1,234', '3.14', '.5', '007', '-2' -> words. Fraction digits one by one."""
    s = s.strip()
    sign = ""
    if s[:1] in "-−":
        sign, s = "minus ", s[1:]
    elif s[:1] == "+":
        sign, s = "plus ", s[1:]
    whole, _, frac = s.partition(".")
    whole = whole.replace(",", "")
    if not whole:
        words = ""
    elif len(whole) > 1 and whole.startswith("0"):
        words = digits(whole)
    else:
        words = cardinal(int(whole))
    if frac:
        words = (words + " point " if words else "point ") + digits(frac)
    return sign + words


_FRACTION_NAMES = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def fraction(num: int, den: int) -> str:
    """3/4 -> 'three quarters', 1/2 -> 'one half', 5/8 -> 'five eighths', 7/32 -> 'seven over thirty-two'."""
    if den == 0 or den > 20 or den == 1:
        return f"{cardinal(num)} over {cardinal(den)}"
    if den in _FRACTION_NAMES:
        one, many = _FRACTION_NAMES[den]
    else:
        one = ordinal(den)
        many = one + "s"
    return f"{cardinal(num)} {one if num == 1 else many}"
