"""English text normalization: what a user types -> the words a speaker says.

``normalize(text)`` runs a fixed sequence of passes over the string. Earlier passes handle the most
specific patterns (URLs, money, times, dates) so later, more generic ones (plain numbers, symbols,
acronyms) only see what is left. The output keeps the writer's case for words (espeak uses case:
"US" is spelled, "us" is a word), writes every number in lowercase words, and keeps only the
punctuation that marks a pause: ``, . ? ! ; :`` plus apostrophes and hyphens inside words.

Anything we cannot say (emoji, CJK, control characters, stray symbols) is dropped, never raised.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from model.text import numbers as nw

# ----------------------------------------------------------------------------------------------
# shared word lists (also used by the sentence splitter)


def _words(s: str) -> frozenset[str]:
    return frozenset(s.split())


# Capitalized words that usually start a sentence. After an abbreviation whose period may or may
# not end the sentence ("Acme Inc." / "U.S."), a following word from this list means it does.
SENTENCE_STARTERS = _words(
    """The A An He She It They We I You This That These Those There Here In On At But And So Then
    When If As After Before His Her Its Their Our My Your What Why How Who Where Which Yes No Not
    For To Of With By From One Some All Many Most Each Every Also However Meanwhile Today Yesterday
    Tomorrow Now Later Still Although While Since Because Once Please Thanks Thank Let Do Did Does
    Is Are Was Were Will Would Can Could Should Never Always Only Even Just Finally First Next"""
)

# Titles before a name: the period never ends a sentence and is dropped.
TITLES: dict[str, str] = {
    "Mr": "Mister",
    "Mrs": "Missus",
    "Ms": "Miz",
    "Messrs": "Messieurs",
    "Dr": "Doctor",
    "Drs": "Doctors",
    "Prof": "Professor",
    "Rev": "Reverend",
    "Hon": "Honorable",
    "Gen": "General",
    "Col": "Colonel",
    "Capt": "Captain",
    "Lt": "Lieutenant",
    "Sgt": "Sergeant",
    "Maj": "Major",
    "Cpl": "Corporal",
    "Adm": "Admiral",
    "Cmdr": "Commander",
    "Gov": "Governor",
    "Sen": "Senator",
    "Rep": "Representative",
    "Pres": "President",
    "Supt": "Superintendent",
    "Fr": "Father",
    "St": "Saint",
    "Mt": "Mount",
    "Ft": "Fort",
}
# Titles also written without a period (British style).
_TITLES_NO_DOT = frozenset({"Mr", "Mrs", "Ms", "Dr", "St"})

# Other abbreviations written with a period; the period may end a sentence.
ABBREVIATIONS: dict[str, str] = {
    "Jr": "Junior",
    "Esq": "Esquire",
    "Sr": "Senior",
    "Inc": "Incorporated",
    "Ltd": "Limited",
    "Co": "Company",
    "Corp": "Corporation",
    "Bros": "Brothers",
    "Ave": "Avenue",
    "Blvd": "Boulevard",
    "Rd": "Road",
    "Ln": "Lane",
    "Hwy": "Highway",
    "Pkwy": "Parkway",
    "Dept": "Department",
    "dept": "department",
    "Univ": "University",
    "Assn": "Association",
    "Intl": "International",
    "Govt": "Government",
    "govt": "government",
    "approx": "approximately",
    "Approx": "Approximately",
    "etc": "et cetera",
    "vs": "versus",
    "esp": "especially",
    "incl": "including",
    "misc": "miscellaneous",
    "avg": "average",
    "cf": "compare",
    "viz": "namely",
    "yr": "year",
    "yrs": "years",
    "hr": "hour",
    "hrs": "hours",
}
# ... of which these are also recognised without a period.
_ABBR_NO_DOT = frozenset({"Inc", "Ltd", "Corp", "Jr", "Sr", "vs", "etc", "Bros", "Blvd", "Hwy", "Pkwy"})

# Abbreviations expanded only before a number ("No. 5", "p. 12").
NUMBER_ABBREVIATIONS: dict[str, str] = {
    "no": "number",
    "nos": "numbers",
    "p": "page",
    "pp": "pages",
    "fig": "figure",
    "figs": "figures",
    "vol": "volume",
    "ch": "chapter",
    "eq": "equation",
    "ext": "extension",
    "tel": "telephone",
    "ca": "circa",
    "art": "article",
    "sec": "section",
}

# Multi-letter dotted abbreviations.
_DOTTED: dict[str, str] = {
    "e.g.": "for example",
    "i.e.": "that is",
    "a.k.a.": "also known as",
    "et al.": "and others",
    "Ph.D.": "P H D",
    "w/o": "without",
}

MONTHS = (  # also model.text.ssml (say-as date)
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTH_ABBR = {m[:3]: i for i, m in enumerate(MONTHS, 1)} | {"Sept": 9}
_MONTH_NUM = {m: i for i, m in enumerate(MONTHS, 1)} | _MONTH_ABBR
_MONTH_RE = (
    r"(?P<mon>January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)(?P<mdot>\.)?"
)

# Words before a 4-digit number that make it a year ("in 1850", "since 1990", "the 1500 census").
_YEAR_CUES = _words(
    """in since by from until till to of year years circa around before after during between and or
    through early late mid the summer winter spring fall autumn than"""
) | {m.lower() for m in MONTHS}
_ERAS = re.compile(r"\s*(?:AD|BC|BCE|CE|A\.D\.|B\.C\.)(?![A-Za-z])")

# ----------------------------------------------------------------------------------------------
# helpers

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"


def _next_word(s: str, pos: int) -> str:
    m = re.match(r"\s*[\"'“‘(\[]*([A-Za-z][\w']*)", s[pos:])
    return m.group(1) if m else ""


def _prev_word(s: str, pos: int) -> str:
    m = re.search(r"([A-Za-z0-9][\w']*)[^\w]*$", s[:pos])
    return m.group(1) if m else ""


def _ends_sentence(s: str, pos: int, strict: bool = True) -> bool:
    """Does a period just before ``pos`` end a sentence? End of text, or a capital letter next
    (``strict``: and the next word is a typical sentence starter)."""
    rest = s[pos:]
    if not rest.strip():
        return True
    m = re.match(r"\s+[\"'“‘(\[]*([A-Z])", rest)
    if not m:
        return False
    if not strict:
        return True
    word = _next_word(s, pos)
    return word in SENTENCE_STARTERS and len(word) > 1


# ----------------------------------------------------------------------------------------------
# 1. unicode cleanup

_CHAR_MAP = {
    "‘": "'",
    "’": "'",
    "‚": "'",
    "‛": "'",
    "′": "'",
    "`": "'",
    "´": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "‟": '"',
    "″": '"',
    "«": '"',
    "»": '"',
    "‹": '"',
    "›": '"',
    "‐": "-",
    "‑": "-",
    "‒": "–",
    "―": "—",
    "−": "-",
    "…": "...",
    "№": " number ",
    "™": " ",
    "®": " ",
    "²": " squared ",
    "³": " cubed ",
    "¢": " cents ",
}
_VULGAR = {"½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅛": (1, 8), "⅜": (3, 8)}
_VULGAR |= {"⅝": (5, 8), "⅞": (7, 8), "⅕": (1, 5), "⅖": (2, 5), "⅗": (3, 5), "⅘": (4, 5), "⅙": (1, 6)}
_GREEK = {
    "α": "alpha",
    "β": "beta",
    "γ": "gamma",
    "δ": "delta",
    "ε": "epsilon",
    "θ": "theta",
    "λ": "lambda",
    "μ": "mu",
    "π": "pi",
    "σ": "sigma",
    "τ": "tau",
    "φ": "phi",
    "χ": "chi",
    "ψ": "psi",
    "ω": "omega",
    "Δ": "delta",
    "Σ": "sigma",
    "Ω": "omega",
    "Π": "pi",
    "Φ": "phi",
}


def _vulgar(m: re.Match[str]) -> str:
    num, den = _VULGAR[m.group(2)]
    if m.group(1):
        return f"{m.group(1)} and {_a_fraction(num, den)} "
    return f" {nw.fraction(num, den)} "


def _a_fraction(num: int, den: int) -> str:
    """'a half', 'a third', 'three quarters' (after 'and')."""
    words = nw.fraction(num, den)
    return "a " + words.split(" ", 1)[1] if num == 1 and " over " not in words else words


def _unicode(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    vulgar = "".join(_VULGAR)
    text = re.sub(rf"(\d+)?\s?([{vulgar}])", _vulgar, text)
    text = "".join(_CHAR_MAP.get(c, c) for c in text)
    text = unicodedata.normalize("NFKC", text)
    out = []
    for i, c in enumerate(text):
        if c.isascii():
            out.append(c if c.isprintable() or c in "\n\t" else " ")
            continue
        cat = unicodedata.category(c)
        if cat == "Nd":  # other scripts' digits -> ASCII
            out.append(str(unicodedata.decimal(c)))
        elif cat.startswith("Z") or cat in ("Cc", "Cf"):  # spaces, controls, zero-width
            out.append(" " if cat != "Cf" else "")
        elif c in _GREEK and not (_is_greek(text, i - 1) or _is_greek(text, i + 1)):
            out.append(f" {_GREEK[c]} ")
        elif ord(c) > 0x17F and "LATIN" in unicodedata.name(c, ""):
            # espeak knows Latin-1 and Latin Extended-A letters; it reads rarer ones ("ễ") as their
            # code point, so strip their accents ("e").
            base = "".join(b for b in unicodedata.normalize("NFKD", c) if not unicodedata.combining(b))
            out.append(base if base.isascii() else c)
        else:
            out.append(c)
    return "".join(out)


def _is_greek(text: str, i: int) -> bool:
    return 0 <= i < len(text) and "GREEK" in unicodedata.name(text[i], "")


# ----------------------------------------------------------------------------------------------
# 2. layout and shouting


def _layout(text: str) -> str:
    # A blank line ends a sentence; a single newline is just a space (hard-wrapped text).
    text = re.sub(r"([^\s.!?:;,])[ \t]*\n[ \t]*\n\s*", r"\1. ", text)
    text = re.sub(r"\s*\n\s*", " ", text)
    text = re.sub(r"^\s*(?:[-*•·]|\d{1,2}[.)])\s+", "", text)  # a leading list bullet
    return re.sub(r"[ \t]+", " ", text).strip()


_CAPS_WORD = re.compile(r"\b[A-Z][A-Z']+\b")
_KNOWN_ABBR = {k.upper() for k in (*TITLES, *ABBREVIATIONS)}


def _unshout(text: str) -> str:
    """In ALL-CAPS passages, turn words into Title case so espeak reads "IT" as a word rather than
    spelling it. Short uncommon words (FBI) and vowel-less ones (HTML) stay for the acronym pass."""

    def fix(chunk: str) -> str:
        caps = _CAPS_WORD.findall(chunk)
        lower = re.findall(r"\b\w*[a-z]\w*\b", chunk)
        if len(caps) < 3 or len(lower) * 3 > len(caps):
            return chunk

        def word(m: re.Match[str]) -> str:
            w = m.group()
            if (len(w) > 3 and re.search("[AEIOU]", w)) or w in _CAPS_WORDS or w in _KNOWN_ABBR:
                return w.capitalize()
            return w

        return _CAPS_WORD.sub(word, chunk)

    return "".join(fix(part) for part in re.split(r"((?<=[.!?])\s+)", text))


# ----------------------------------------------------------------------------------------------
# 3. URLs, e-mail addresses, phone numbers

_URL_SEP = {
    ".": " dot ",
    "/": " slash ",
    "-": " dash ",
    "_": " underscore ",
    ":": " colon ",
    "@": " at ",
    "=": " equals ",
    "&": " and ",
    "~": " tilde ",
    "+": " plus ",
    "#": " hash ",
    "%": " percent ",
    "?": " question mark ",
}
_TLDS = "com|org|net|edu|gov|io|ai|co|uk|us|de|fr|info|biz|app|dev|me|tv|ly|ca|au|eu|ru|jp|cn|in"
_URL_RE = re.compile(
    rf"\b(?i:https?://|ftp://|www\.)[^\s<>\"]+"
    rf"|\b[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*\.(?:{_TLDS})\b(?:/[^\s<>\"]*)?"
)
_EMAIL_RE = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _say_address(s: str) -> str:
    s = re.sub(r"^(?:https?|ftp)://", "", s, flags=re.IGNORECASE)
    s = re.split(r"[?#]", s, maxsplit=1)[0].rstrip("/")
    out = []
    for part in re.split(r"([./\-_:@=&~+#%?])", s):
        if part in _URL_SEP:
            out.append(_URL_SEP[part])
        elif part.lower() == "www":
            out.append(" W W W ")
        elif part:
            out.append(f" {part} ")
    return " ".join("".join(out).split())


def _urls(text: str) -> str:
    def email(m: re.Match[str]) -> str:
        return " " + _say_address(m.group()) + " "

    def url(m: re.Match[str]) -> str:
        s = m.group()
        trail = re.search(r"[.,;:!?)\]'\"]+$", s)
        tail = ""
        if trail:
            s, tail = s[: trail.start()], trail.group()
        return " " + _say_address(s) + tail

    text = _EMAIL_RE.sub(email, text)
    return _URL_RE.sub(url, text)


_PHONE_RE = re.compile(
    r"(?<![\w+])(?:(\+?1)[-. ]?)?(?:\((\d{3})\)\s?|(\d{3})[-. ])(\d{3})[-. ](\d{4})(?![\w-])|"
    r"(?<![\w.,-])(\d{3})-(\d{4})(?![\w-])"
)


def _phones(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        groups = [g for g in m.groups() if g]
        if groups[0] in ("1", "+1"):
            groups[0] = "1"
        return " " + ", ".join(nw.digits(g) for g in groups) + " "

    return _PHONE_RE.sub(repl, text)


# ----------------------------------------------------------------------------------------------
# 4. money

_CURRENCY = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
_SCALES = {"k": "thousand", "m": "million", "mm": "million", "mn": "million", "b": "billion"}
_SCALES |= {"bn": "billion", "t": "trillion", "tn": "trillion"}
_SCALE_RE = (
    r"(?:\s?(?P<sw>thousand|million|billion|trillion)\b|(?P<sa>[kKmMbBtT]|mm|MM|mn|bn|BN|Bn|tn)(?![\w]))"
)
_CUR = "[$£€¥₹]"


def _money(amount: str, cur: str, scale: str | None) -> str:
    one, many, sub_one, sub_many = _CURRENCY[cur]
    if scale:
        return f"{nw.number(amount)} {scale} {many}"
    whole, _, frac = amount.replace(",", "").partition(".")
    if (frac and len(frac) > 2) or (frac and sub_one is None):
        return f"{nw.number(amount)} {many}"
    w = int(whole or 0)
    c = int(frac.ljust(2, "0")) if frac else 0
    parts = []
    if w or not c:
        parts.append(f"{nw.cardinal(w)} {one if w == 1 else many}")
    if c:
        parts.append(f"{nw.cardinal(c)} {sub_one if c == 1 else sub_many}")
    return " and ".join(parts)


def _scale_of(m: re.Match[str]) -> str | None:
    if m.group("sw"):
        return m.group("sw")
    if m.group("sa"):
        return _SCALES[m.group("sa").lower()]
    return None


def _currency(text: str) -> str:
    def rng(m: re.Match[str]) -> str:
        scale = _scale_of(m)
        cur = m.group("cur")
        low = nw.number(m.group("a"))
        return f"{low} to {_money(m.group('b'), cur, scale)}"

    text = re.sub(
        rf"(?P<cur>{_CUR})\s?(?P<a>{_NUM})\s?(?:[-–]|to)\s?(?P=cur)?\s?(?P<b>{_NUM}){_SCALE_RE}?",
        rng,
        text,
    )

    def single(m: re.Match[str]) -> str:
        words = _money(m.group("num"), m.group("cur"), _scale_of(m))
        return (" minus " if m.group("neg") else " ") + words

    text = re.sub(rf"(?P<neg>(?<![\w])-)?(?P<cur>{_CUR})\s?(?P<num>{_NUM}){_SCALE_RE}?", single, text)
    text = re.sub(
        rf"(?<![\w.,])(?P<num>{_NUM})\s?(?P<cur>[€£¥₹$])(?![\w])",
        lambda m: " " + _money(m.group("num"), m.group("cur"), None),
        text,
    )
    return text


# ----------------------------------------------------------------------------------------------
# 5. times and dates


def _minutes(m: int) -> str:
    return "oh " + nw.cardinal(m) if m < 10 else nw.cardinal(m)


def _clock(h: int, m: int, s: int | None, ampm: str | None) -> str:
    if ampm:
        words = nw.cardinal(h if h != 0 else 12)
        if m:
            words += " " + _minutes(m)
        words += f" {ampm}"
    elif h == 0:
        words = "twelve" + (" " + _minutes(m) if m else "") + " AM"
    elif m == 0:
        words = nw.cardinal(h) + (" o'clock" if h <= 12 else " hundred")
    else:
        words = nw.cardinal(h) + " " + _minutes(m)
    if s:
        words += f" and {nw.cardinal(s)} second" + ("s" if s != 1 else "")
    return words


def _times(text: str) -> str:
    def ampm(m: re.Match[str]) -> str:
        h, mi = int(m.group(1)), int(m.group(2) or 0)
        if not (1 <= h <= 12 or h == 0) or mi > 59:
            return m.group()
        tag = "AM" if m.group(3) in "aA" else "PM"
        period = "." if m.group().endswith(".") and _ends_sentence(m.string, m.end(), strict=False) else ""
        return _clock(h, mi, None, tag) + period

    text = re.sub(r"(?<![\w:.])(\d{1,2})(?::(\d{2}))?\s?([AaPp])\.?[Mm]\b\.?", ampm, text)

    def clock(m: re.Match[str]) -> str:
        h, mi = int(m.group(1)), int(m.group(2))
        s = int(m.group(3)) if m.group(3) else None
        if h > 24 or mi > 59 or (s is not None and s > 59):
            return m.group()
        return _clock(h, mi, s, None)

    return re.sub(r"(?<![\w:.])(\d{1,2}):(\d{2})(?::(\d{2}))?(?![\w:]|\.\d)", clock, text)


def _year_words(y: str) -> str:
    if len(y) == 2:
        return ("oh " + nw.cardinal(int(y))) if y.startswith("0") and y != "00" else nw.cardinal(int(y))
    return nw.year(int(y))


def _month_period(m: re.Match[str]) -> str:
    """Keep the period of 'Jan.' when it ends the sentence."""
    if m.group("mdot") and m.end("mdot") == m.end() and _ends_sentence(m.string, m.end()):
        return "."
    return ""


_WEEKDAYS = {
    "Mon": "Monday",
    "Tue": "Tuesday",
    "Tues": "Tuesday",
    "Wed": "Wednesday",
    "Thu": "Thursday",
    "Thur": "Thursday",
    "Thurs": "Thursday",
    "Fri": "Friday",
    "Sat": "Saturday",
    "Sun": "Sunday",
}


def _dates(text: str) -> str:
    # "Mon., Feb. 3" / "Tue 5 May": weekday abbreviations only right before a date
    text = re.sub(
        rf"\b({'|'.join(_WEEKDAYS)})\.?(?=,?\s+(?:{_MONTH_RE}\s|\d))",
        lambda m: _WEEKDAYS[m.group(1)],
        text,
    )

    def mdy(m: re.Match[str]) -> str:
        day = int(m.group("day"))
        if not 1 <= day <= 31:
            return m.group()
        month = MONTHS[_MONTH_NUM[m.group("mon")] - 1]
        out = f"{month} {nw.ordinal(day)}"
        if m.group("year"):
            out += f"{m.group('sep').rstrip()} {_year_words(m.group('year'))}"
        return out + _month_period(m)

    text = re.sub(
        rf"\b{_MONTH_RE}\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?(?![\w:])(?:(?P<sep>,?\s+)(?P<year>\d{{4}})(?![\w]))?",
        mdy,
        text,
    )

    def dmy(m: re.Match[str]) -> str:
        day = int(m.group("day"))
        if not 1 <= day <= 31:
            return m.group()
        month = MONTHS[_MONTH_NUM[m.group("mon")] - 1]
        out = f"the {nw.ordinal(day)} of {month}"
        if m.group("year"):
            out += f"{m.group('sep').rstrip()} {_year_words(m.group('year'))}"
        return out + _month_period(m)

    text = re.sub(
        rf"(?<![\w.,])(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH_RE}(?![\w])"
        rf"(?:(?P<sep>,?\s+)(?P<year>\d{{4}})(?![\w]))?",
        dmy,
        text,
    )
    text = re.sub(
        rf"\b{_MONTH_RE}\s+(?P<year>\d{{4}})(?![\w])",
        lambda m: f"{MONTHS[_MONTH_NUM[m.group('mon')] - 1]} {_year_words(m.group('year'))}",
        text,
    )

    def numeric(y: str, mo: int, d: int, orig: str) -> str:
        if not (1 <= mo <= 12 and 1 <= d <= 31):
            return orig
        return f"{MONTHS[mo - 1]} {nw.ordinal(d)}, {_year_words(y)}"

    text = re.sub(
        r"(?<![\w.-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\w-])",
        lambda m: numeric(m.group(1), int(m.group(2)), int(m.group(3)), m.group()),
        text,
    )

    def us(m: re.Match[str]) -> str:
        a, b = int(m.group(1)), int(m.group(2))
        if a > 12 >= b:  # 25/12/2020 is day/month
            a, b = b, a
        return numeric(m.group(3), a, b, m.group())

    text = re.sub(r"(?<![\w/.])(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?![\w/])", us, text)
    text = re.sub(
        r"(?<![\w.])(\d{1,2})\.(\d{1,2})\.(\d{4})(?![\w]|\.\d)",
        lambda m: numeric(m.group(3), int(m.group(2)), int(m.group(1)), m.group()),
        text,
    )
    return text


# ----------------------------------------------------------------------------------------------
# 6. abbreviations


def _abbreviations(text: str) -> str:
    for k, v in _DOTTED.items():
        pat = re.escape(k)
        text = re.sub(
            rf"(?<![\w.]){pat}" + ("" if k[-1] == "." else r"\b"),
            lambda m, v=v: v + ("." if m.group().endswith(".") and _ends_sentence(m.string, m.end()) else ""),
            text,
            flags=re.IGNORECASE if k.islower() else 0,
        )

    # before a number: "No. 5", "pp. 10", "Fig. 3"
    keys = "|".join(sorted(NUMBER_ABBREVIATIONS, key=len, reverse=True))

    def numbered(m: re.Match[str]) -> str:
        word = NUMBER_ABBREVIATIONS[m.group(1).lower()]
        return (word.capitalize() if m.group(1)[0].isupper() else word) + " "

    text = re.sub(rf"\b({keys})\.\s*(?=#?\d)", numbered, text, flags=re.IGNORECASE)

    # titles before names, and the street / drive readings of St. and Dr.
    tkeys = "|".join(sorted(TITLES, key=len, reverse=True))

    def title(m: re.Match[str]) -> str:
        abbr, dot = m.group(1), m.group(2)
        cased = abbr[0].upper() + abbr[1:]
        if abbr not in TITLES and not (dot and cased in ("Mr", "Mrs", "Dr", "Prof")):  # "mr. smith"
            return m.group()
        if not dot and cased not in _TITLES_NO_DOT:
            return m.group()
        nxt = _next_word(m.string, m.end())
        prev = _prev_word(m.string, m.start())
        prev_is_place = bool(prev) and (prev[0].isupper() or prev[0].isdigit())
        if cased in ("St", "Dr") and (prev_is_place and not (nxt[:1].isupper() and nxt[1:2] != "")):
            word = "Street" if cased == "St" else "Drive"
            keep = dot and _ends_sentence(m.string, m.end())
            return word + ("." if keep else "")
        if not nxt or not (nxt[0].isupper() or dot):
            return m.group()
        word = TITLES[cased]
        return word if abbr[0].isupper() else word.lower()

    text = re.sub(rf"\b({tkeys})(\.)?(?![\w'])", title, text, flags=re.IGNORECASE)

    akeys = "|".join(sorted(ABBREVIATIONS, key=len, reverse=True))

    def other(m: re.Match[str]) -> str:
        abbr, dot, poss = m.group(1), m.group(2), m.group(3) or ""
        if not dot and abbr not in _ABBR_NO_DOT:
            return m.group()
        keep = dot and not poss and _ends_sentence(m.string, m.end())
        return ABBREVIATIONS[abbr] + poss + ("." if keep else "")

    text = re.sub(rf"\b({akeys})(\.)?('s)?(?![\w'])", other, text)

    # a.m. / p.m. without a time before them ("twelve thirty p.m.")
    text = re.sub(
        r"(?<![\w.])([AaPp])\.[Mm]\b\.?",
        lambda m: (
            f"{m.group(1).upper()}M"
            + ("." if m.group().endswith(".") and _ends_sentence(m.string, m.end(), strict=False) else "")
        ),
        text,
    )

    # dotted acronyms: U.S. -> U S, P.O. -> P O, LL.D. -> L L D
    def dotted(m: re.Match[str]) -> str:
        letters = " ".join(c.upper() for c in m.group() if c.isalpha())
        keep = m.group().endswith(".") and _ends_sentence(m.string, m.end())
        return letters + ("." if keep else "")

    text = re.sub(r"(?<![\w.])(?:[A-Za-z]|[A-Z]{2})(?:\.(?:[A-Za-z]|[A-Z]{2}))+\.?(?![\w])", dotted, text)

    # initials: "John F. Kennedy", "A. J. Hidell"
    def initial(m: re.Match[str]) -> str:
        return m.group(1) + ("." if _ends_sentence(m.string, m.end()) else "")

    return re.sub(r"(?<![\w.'])([A-Z])\.(?=\s+[A-Z])", initial, text)


# ----------------------------------------------------------------------------------------------
# 7. numbers with units, ranges, decades, ordinals, fractions

_UNITS: dict[str, tuple[str, str]] = {
    "km": ("kilometer", "kilometers"),
    "m": ("meter", "meters"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "mi": ("mile", "miles"),
    "ft": ("foot", "feet"),
    "yd": ("yard", "yards"),
    "yds": ("yard", "yards"),
    "kg": ("kilogram", "kilograms"),
    "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "kmh": ("kilometer per hour", "kilometers per hour"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
    "KB": ("kilobyte", "kilobytes"),
    "kB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "kW": ("kilowatt", "kilowatts"),
    "MW": ("megawatt", "megawatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "ms": ("millisecond", "milliseconds"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
    "min": ("minute", "minutes"),
    "mins": ("minute", "minutes"),
    "sec": ("second", "seconds"),
    "secs": ("second", "seconds"),
    "%": ("percent", "percent"),
}
_UNIT_RE = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))


def _units(text: str) -> str:
    text = re.sub(
        r"(?<![\w.])(\d+)'\s?(\d{1,2})(?:\"|'')",
        lambda m: (
            f"{nw.cardinal(int(m.group(1)))} {'foot' if m.group(1) == '1' else 'feet'} "
            f"{nw.cardinal(int(m.group(2)))} {'inch' if m.group(2) == '1' else 'inches'}"
        ),
        text,
    )

    def repl(m: re.Match[str]) -> str:
        one, many = _UNITS[m.group("unit")]
        num = m.group("num")
        sign = "minus " if m.group("neg") else ""
        words = sign + nw.number(num) + " " + (one if num == "1" and not sign else many)
        if m.group("a"):
            a = ("minus " if m.group("aneg") else "") + nw.number(m.group("a"))
            words = f"{a} to {words}"
        return " " + words + " "

    end = r"(?![\w/])"
    return re.sub(
        rf"(?:(?P<aneg>(?<![\w.])-)?(?P<a>{_NUM})\s?(?:-|–|to)\s?)?(?P<neg>(?<![\w.])-)?"
        rf"(?<![\w.])(?P<num>{_NUM})\s?(?P<unit>{_UNIT_RE}){end}(?:\.(?=\s+[a-z]))?",
        repl,
        text,
    )


def _is_year(s: str) -> bool:
    return len(s) == 4 and s.isdigit() and 1000 <= int(s) <= 2099


def _ranges(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        a, b = m.group(1), m.group(2)
        if _is_year(a) and (_is_year(b) or (len(b) == 2 and b.isdigit())):
            return f"{nw.year(int(a))} to {nw.year(int(b)) if len(b) == 4 else nw.cardinal(int(b))}"
        return f"{nw.number(a)} to {nw.number(b)}"

    text = re.sub(rf"(?<![\w.])({_NUM})\s?–\s?({_NUM})(?![\w]|\.\d)", repl, text)
    text = re.sub(rf"(?<![\w.-])({_NUM})-({_NUM})(?![\w-]|\.\d)", repl, text)
    # a spaced hyphen between numbers: subtraction in a formula, else a range
    op = "minus" if "=" in text else "to"
    return re.sub(rf"(?<![\w.])({_NUM}) - ({_NUM})(?![\w]|\.\d)", rf"\1 {op} \2", text)


def _decades_ordinals(text: str) -> str:
    def decade(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return nw.decade(n) if n % 10 == 0 else m.group()

    text = re.sub(r"(?<![\w'])'?(\d{2}|\d{4})'?s\b", decade, text)
    return re.sub(
        r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:st|nd|rd|th)\b",
        lambda m: nw.ordinal(int(m.group(1).replace(",", ""))),
        text,
        flags=re.IGNORECASE,
    )


_FIXED_PAIRS = {"24/7": "twenty-four seven", "9/11": "nine eleven", "50/50": "fifty fifty"}
# numbers said digit by digit
_DIGIT_NUMBERS = frozenset({"911", "999", "112"})


def _fractions(text: str) -> str:
    text = re.sub(
        r"(?<![\w/.])(\d+)\s+(\d+)/(\d+)(?![\w/]|\.\d)",
        lambda m: f"{nw.cardinal(int(m.group(1)))} and {_a_fraction(int(m.group(2)), int(m.group(3)))}",
        text,
    )

    def frac(m: re.Match[str]) -> str:
        if m.group() in _FIXED_PAIRS:
            return _FIXED_PAIRS[m.group()]
        return nw.fraction(int(m.group(1)), int(m.group(2)))

    text = re.sub(r"(?<![\w/.])(\d+)/(\d+)(?![\w/]|\.\d)", frac, text)
    text = re.sub(r"(?<=\d)\s?[x×]\s?(?=\d)", " by ", text)
    return re.sub(r"(?<![\w.])(\d+(?:\.\d+)?)[x×](?![\w])", lambda m: nw.number(m.group(1)) + " times", text)


# ----------------------------------------------------------------------------------------------
# 8. remaining numbers


_PLURAL_NOUNS = _words("people men women children persons feet teeth mice sheep fish deer cattle")
_NOT_PLURAL = _words("is was has as this its his us thus yes always perhaps")


def _year_context(s: str, start: int, end: int, n: int) -> bool:
    """Is this bare 4-digit number (1000-2099) a year? Yes after "in", "since", "the", a month...,
    or before "AD"/"BC"; no before a plural noun ("1999 soldiers"); otherwise yes."""
    if _prev_word(s, start).lower() in _YEAR_CUES or _ERAS.match(s, end):
        return True
    nxt = _next_word(s, end)
    if nxt[:1].islower() and (
        nxt in _PLURAL_NOUNS or (nxt.endswith("s") and not nxt.endswith("ss") and nxt not in _NOT_PLURAL)
    ):
        return False
    return n >= 1100


def _numbers(text: str) -> str:
    text = re.sub(r"#\s?(?=\d)", " number ", text)
    text = re.sub(r"(?:(?<=^)|(?<=[\s(\[\"]))[-](?=\.?\d)", "minus ", text)
    text = re.sub(r"(?:(?<=^)|(?<=[\s(\[\"]))[+](?=\.?\d)", "plus ", text)

    def repl(m: re.Match[str]) -> str:
        s = m.group()
        parts = s.split(".")
        if len(parts) > 2:  # version numbers, IP addresses
            return " point ".join(nw.number(p) if p else "" for p in parts)
        if s in _DIGIT_NUMBERS:
            return nw.digits(s)
        if _is_year(s) and _year_context(m.string, m.start(), m.end(), int(s)):
            return nw.year(int(s))
        return nw.number(s)

    return re.sub(r"(?<![\w.])(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)*|\.\d+)(?![\w])", repl, text)


def _split_alnum(text: str) -> str:
    text = re.sub(r"(?<=[A-Za-z])-(?=\d)|(?<=\d)-(?=[A-Za-z])", " ", text)
    return re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", text)


# ----------------------------------------------------------------------------------------------
# 9. roman numerals, acronyms

_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100}
_ROMAN_KEYWORDS = (
    "Chapter|Part|Volume|Book|Act|Scene|Section|Article|Phase|Episode|Level|Stage|Round|Class|Type"
    "|Title|Grade|Appendix|Psalm|Canto|Movement|War|Bowl|Apollo|Vatican|Gemini|Mark|Schedule"
)


def _roman_value(s: str) -> int | None:
    total, prev = 0, 0
    for c in reversed(s):
        v = _ROMAN_VALUES[c]
        total += -v if v < prev else v
        prev = max(prev, v)
    return total if _to_roman(total) == s else None


def _to_roman(n: int) -> str:
    out = []
    for v, sym in ((100, "C"), (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV")):
        while n >= v:
            out.append(sym)
            n -= v
    return "".join(out) + "I" * n


def _roman(text: str) -> str:
    def keyword(m: re.Match[str]) -> str:
        v = _roman_value(m.group(2))
        return f"{m.group(1)} {nw.cardinal(v)}" if v else m.group()

    text = re.sub(rf"\b({_ROMAN_KEYWORDS})\s+([IVXLC]+)\b", keyword, text)

    def name(m: re.Match[str]) -> str:
        v = _roman_value(m.group(2))
        if not v or m.group(1) in SENTENCE_STARTERS:
            return m.group()
        return f"{m.group(1)} the {nw.ordinal(v)}"

    return re.sub(r"\b([A-Z][a-z]+)\s+([IVX]{2,7})\b(?!['-]\w)", name, text)


# Short all-caps words that are ordinary English (emphasis: "I said NO"), read, not spelled.
_CAPS_WORDS = _words(
    """AM AN AS AT BE BY DO GO HE HI IF IN IS IT ME MY NO OF OH OK ON OR SO TO UP US WE YO
    ALL AND ANY ARE BAD BIG BUT BUY CAN DAY DID END FAR FEW FOR GET GOD GOT HAD HAS HER HEY HIM
    HIS HOT HOW ITS LET LOT LOW MAN MAY MEN NEW NOT NOW OFF OLD ONE OUR OUT OWN PUT RUN SAY SEE
    SET SHE SIT SUN TEN THE TOO TOP TRY TWO USE WAR WAS WAY WHO WHY WIN WON WOW YES YET YOU"""
) | {"PM"}  # "three PM": espeak reads it as the two letters already, as one word


def _acronyms(text: str) -> str:
    """Spell all-caps acronyms letter by letter: "FBI" -> "F B I". Conservative: only words with no
    vowel letter (HTML, TV), or of two or three letters that are not common words (CIA, EU, but not
    NOT or IT). Longer ones with vowels (NASA, NATO, UNESCO) are left to espeak, which reads
    pronounceable ones as words and spells the rest. Roman numerals are left alone."""

    def spell(m: re.Match[str]) -> str:
        word = m.group()
        vowel = re.search("[AEIOU]", word)
        if word in _CAPS_WORDS or (vowel and len(word) > 3) or re.fullmatch("[IVX]+", word):
            return word
        return " ".join(word)

    return re.sub(r"(?<![\w'-])[A-Z]{2,6}(?![\w-])", spell, text)


# ----------------------------------------------------------------------------------------------
# 10. symbols and punctuation

_SYMBOLS = {
    "&": " and ",
    "+": " plus ",
    "=": " equals ",
    "@": " at ",
    "%": " percent ",
    "°": " degrees ",
    "~": " about ",
    "<": " less than ",
    ">": " greater than ",
    "×": " times ",
    "÷": " divided by ",
    "±": " plus or minus ",
    "≈": " approximately ",
    "≠": " not equal to ",
    "≤": " less than or equal to ",
    "≥": " greater than or equal to ",
    "→": " to ",
    "§": " section ",
    "©": " copyright ",
    "•": ", ",
    "·": " ",
    "|": ", ",
    "\\": " ",
    "*": " ",
    "^": " ",
    "_": " ",
    "$": " dollars ",
    "£": " pounds ",
    "€": " euros ",
}


def _symbols(text: str) -> str:
    # AT&T, S&P: the letters around "&" are spelled
    text = re.sub(
        r"\b([A-Z]{1,3})\s?&\s?([A-Z]{1,3})\b",
        lambda m: f"{' '.join(m.group(1))} and {' '.join(m.group(2))}",
        text,
    )
    text = re.sub(r"(?<![\w])([A-G])#(?![\w])", r"\1 sharp", text)
    text = re.sub(r"(?<=[a-z]):(?=[a-z])", " ", text)
    text = re.sub(r"(?<![\w])w/(?=\s)", "with", text)
    text = re.sub(r"#(?=[A-Za-z])", " hashtag ", text)
    text = re.sub(r"\band/or\b", "and or", text)
    text = re.sub(r"(?<=[a-z])/(?=[a-z])", " or ", text)
    text = text.replace("/", " ")
    return "".join(_SYMBOLS.get(c, c) for c in text)


_PAUSE_RANK = {"?": 5, "!": 4, ".": 3, ";": 2, ":": 1, ",": 0}


def _is_speakable(c: str) -> bool:
    if c.isascii():
        return c.isalpha() or c in " ',.?!;:-"
    return c.isalpha() and "LATIN" in unicodedata.name(c, "")


def _punctuation(text: str) -> str:
    # ellipsis: a pause, or the end of the sentence
    text = re.sub(r"\.{2,}(?=[\s\"')\]]*$)", ".", text)
    text = re.sub(r"\.{2,}", ", ", text)
    # brackets -> pauses; quotes dropped
    text = re.sub(r"[(\[{]", ", ", text)
    text = re.sub(r"[)\]}]", ", ", text)
    text = text.replace('"', " ")
    # apostrophes only inside words
    text = re.sub(r"(?<![A-Za-z\u00c0-\u024f0-9])'|'(?![A-Za-z\u00c0-\u024f])", " ", text)
    # dashes: unspaced en dash between words reads "to"; others are a pause; hyphens join words
    text = re.sub(r"(?<=\w)–(?=\w)", " to ", text)
    text = re.sub(r"\s*(?:[–—]|--+)\s*|\s+-\s+", ", ", text)
    text = re.sub(r"(?<!\w)-+|-+(?!\w)", " ", text)
    text = text.replace("¡", " ").replace("¿", " ")
    text = "".join(c if _is_speakable(c) else " " for c in text)

    def collapse(m: re.Match[str]) -> str:
        marks = re.sub(r"\s", "", m.group())
        return max(marks, key=lambda c: _PAUSE_RANK[c])

    text = re.sub(r"\s*[,.;:!?](?:\s*[,.;:!?])*", collapse, text)
    text = re.sub(r"([,.;:!?])(?=[^\s,.;:!?])", r"\1 ", text)
    text = re.sub(r"^[\s,.;:!?]+", "", text)
    return " ".join(text.split())


# ----------------------------------------------------------------------------------------------

_PASSES: tuple[Callable[[str], str], ...] = (
    _unicode,
    _layout,
    _unshout,
    _urls,
    _phones,
    _currency,
    _times,
    _dates,
    _abbreviations,
    _units,
    _ranges,
    _decades_ordinals,
    _fractions,
    _split_alnum,
    _numbers,
    _roman,
    _acronyms,
    _symbols,
    _punctuation,
)


@dataclass(frozen=True)
class NormalizationOptions:
    """Which parts of :func:`normalize` run (the request's ``normalization_options``; field names as
    Kokoro-FastAPI's, so its users' requests work here). ``normalize=False``: only the Unicode
    clean-up and whitespace runs, and espeak-ng reads digits and symbols its own way."""

    normalize: bool = True
    unit_normalization: bool = True  # "5 km" -> "five kilometers" (off: the unit as written)
    url_normalization: bool = True  # "example.com/a" -> "example dot com slash a"
    email_normalization: bool = True  # "a.b@c.org" -> "a dot b at c dot org"
    phone_normalization: bool = True  # "555-123-4567" -> digits in groups

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_NORMALIZATION


DEFAULT_NORMALIZATION = NormalizationOptions()


def _addresses(text: str, urls: bool, emails: bool) -> str:
    """The URL/e-mail pass with either half switched off (an e-mail left alone is also kept away from
    the URL pattern, which would otherwise read its domain)."""
    if urls and emails:
        return _urls(text)
    if not urls and not emails:
        return text
    if emails:
        return _EMAIL_RE.sub(lambda m: " " + _say_address(m.group()) + " ", text)
    out, pos = [], 0
    for m in _EMAIL_RE.finditer(text):  # urls only: convert what lies between the e-mail addresses
        out.append(_urls(text[pos : m.start()]))
        out.append(m.group())
        pos = m.end()
    out.append(_urls(text[pos:]))
    return "".join(out)


def normalize(text: str, options: NormalizationOptions | None = None) -> str:
    """English written form -> spoken words with pause punctuation. Never raises on odd input.
    ``options`` switches passes off (default: all on)."""
    if not isinstance(text, str):
        raise TypeError(f"normalize() expects str, got {type(text).__name__}")
    if options is not None and not options.is_default:
        return _normalize_with(text, options)
    for step in _PASSES:
        text = step(text)
    return text


def _normalize_with(text: str, options: NormalizationOptions) -> str:
    if not options.normalize:
        return " ".join(_unicode(text).split())
    for step in _PASSES:
        if step is _urls:
            text = _addresses(text, options.url_normalization, options.email_normalization)
        elif (step is _phones and not options.phone_normalization) or (
            step is _units and not options.unit_normalization
        ):
            continue
        else:
            text = step(text)
    return text
