"""Sentence splitting for streaming synthesis.

``split_sentences`` cuts raw or normalized text into sentences without breaking at abbreviations
("Dr. Smith", "U.S. Army", "e.g. this"), initials ("J. R. R. Tolkien"), decimals ("3.14") or
ellipses inside a sentence, then cuts any sentence longer than ``max_chars`` at the best pause
(``; : ,`` then a space) so streaming chunks stay short.
"""

from __future__ import annotations

import re

from model.text.normalize import ABBREVIATIONS, MONTHS, NUMBER_ABBREVIATIONS, SENTENCE_STARTERS, TITLES

DEFAULT_MAX_CHARS = 300

# A candidate break: terminal punctuation, optional closing quotes/brackets, whitespace.
_BREAK = re.compile(r"([.!?…]+)([\"'”’)\]]*)(\s+)")
# "St." and "Dr." can end a sentence as Street / Drive.
_NEVER_FINAL = {t.lower() for t in TITLES} - {"st", "dr"} | {"e.g", "i.e", "vs", "cf", "viz", "a.k.a"}
_MAYBE_FINAL = {a.lower() for a in ABBREVIATIONS} | {"a.m", "p.m", "st", "dr"}
# "Jan. 5th": a month's abbreviation before a number is a date, not a sentence's end
_MONTH_ABBREVIATIONS = {m[:3].lower() for m in MONTHS} | {"sept"}


def _is_boundary(text: str, m: re.Match[str]) -> bool:
    punct = m.group(1)
    after = text[m.end() :]
    nxt = re.match(r"[\"'“‘(\[]*(\S+)", after)
    if not nxt:
        return True
    first = nxt.group(1)
    if punct[-1] in "!?…" or len(punct) > 1:  # "!", "?", "..." end a sentence before a capital
        return first[0].isupper() or first[0].isdigit()
    if not (first[0].isupper() or first[0].isdigit()):
        return False
    word = re.search(r"([\w.']+)$", text[: m.start(1)])
    token = word.group(1) if word else ""
    low = token.lower()
    next_word = re.match(r"[A-Za-z]+", first)
    starter = bool(next_word) and next_word.group() in SENTENCE_STARTERS and len(next_word.group()) > 1
    if low in _NEVER_FINAL:
        return False
    if (low in NUMBER_ABBREVIATIONS or low in _MONTH_ABBREVIATIONS) and first[0].isdigit():
        return False
    if re.fullmatch(r"[A-Za-z]", token):  # an initial: "John F. Kennedy"
        return starter
    if re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", token) or low in _MAYBE_FINAL:  # U.S. / Inc.
        return starter
    return True


def _split_long(sentence: str, max_chars: int) -> list[str]:
    out: list[str] = []
    rest = sentence.strip()
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        cut = -1
        for pattern in (r"[;:]\s", r",\s", r"\s"):
            hits = [m.end() for m in re.finditer(pattern, window) if m.end() >= max_chars // 3]
            if hits:
                cut = hits[-1]
                break
        if cut <= 0:
            cut = max_chars
        out.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        out.append(rest)
    return out


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Split ``text`` into sentences (each stripped, none empty, none longer than ``max_chars``)."""
    if max_chars < 20:
        raise ValueError("max_chars must be at least 20")
    sentences: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        start = 0
        for m in _BREAK.finditer(para):
            if _is_boundary(para, m):
                sentences.append(para[start : m.end()].strip())
                start = m.end()
        sentences.append(para[start:].strip())
    out: list[str] = []
    for s in sentences:
        if s and re.search(r"\w", s):
            out.extend(_split_long(s, max_chars))
        elif s and out:  # stray punctuation: glue it to the previous sentence
            out[-1] += s
    return out


def locate_sentence(text: str, sentence: str, start: int) -> tuple[int, int]:
    """Where ``sentence`` (whitespace-normalized by :func:`split_sentences`) is in ``text``, searching
    from ``start``: its [start, end) character span, or (start, start) when it is not found."""
    words = sentence.split()
    if words:
        m = re.compile(r"\s+".join(re.escape(w) for w in words)).search(text, start)
        if m:
            return m.start(), m.end()
    return start, start
