"""SSML, the subset that matters for a TTS request -> :class:`model.text.markup.Segment` s.

Input is SSML only when its first non-blank characters are ``<speak`` followed by ``>``, a blank or
``/`` (or an XML declaration ``<?xml`` / a ``<!DOCTYPE``, which then must lead to ``<speak>``), so
plain text that merely contains a ``<`` is never taken for SSML. It is parsed by expat
through defusedxml: a DTD, entity declarations and external references are refused (no entity
expansion, "billion laughs" or file inclusion), and any XML error is reported with its line, column
and character offset.

Supported (anything else is a :class:`~model.text.markup.MarkupError` naming the tag and where):

``<speak>``                  the root (its attributes, e.g. ``version``, ``xml:lang``, ``xmlns``, are ignored)
``<p>``, ``<s>``             paragraph / sentence: the text inside is its own sentence
``<break time strength>``    a pause: ``time`` "500ms" / "1.5s" (at most :data:`MAX_BREAK_S`), or
                             ``strength`` none / x-weak / weak / medium (the default) / strong / x-strong
                             (:data:`BREAK_STRENGTHS` seconds)
``<prosody rate pitch>``     ``rate``: x-slow / slow / medium / fast / x-fast / default
                             (:data:`RATES`), "150%" (of the normal rate), "+20%" / "-20%", or a factor "1.5";
                             ``pitch``: "+2st" / "-3st" (semitones), "+10%" / "-10%" (of the frequency), or
                             x-low / low / medium / high / x-high / default (:data:`PITCHES` semitones).
                             Nested prosody multiplies rates and adds pitches; the request's ``speed`` and
                             ``pitch`` apply on top.
``<phoneme alphabet="ipa" ph>``  say the element's text with the IPA in ``ph`` (the voice's symbols)
``<sub alias>``              say ``alias`` instead of the element's text
``<say-as interpret-as>``    ``characters`` (spell it), ``cardinal``, ``ordinal``, ``date`` (``format``
                             mdy / dmy / ymd / md / dm / my / ym / y; default mdy, or ymd when it starts
                             with four digits), ``telephone`` (digits in their groups)
"""

from __future__ import annotations

import math
import re
import xml.sax
import xml.sax.handler
from dataclasses import dataclass, field

from core.limits import MAX_PITCH, MAX_SPEED, MIN_SPEED
from model.text import numbers as nw
from model.text.inline import MarkupError, Piece, Segment, parse_inline
from model.text.normalize import MONTHS

MAX_BREAK_S = 10.0
MAX_TOTAL_PAUSE_S = 60.0
MAX_DEPTH = 16
MAX_ELEMENTS = 1000
BREAK_STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.2, "medium": 0.4, "strong": 0.75, "x-strong": 1.2}
RATES = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.3, "x-fast": 1.75}
PITCHES = {"x-low": -6.0, "low": -3.0, "medium": 0.0, "default": 0.0, "high": 3.0, "x-high": 6.0}
SAY_AS = ("characters", "spell-out", "cardinal", "number", "ordinal", "date", "telephone")
_ELEMENTS = {"speak", "p", "s", "break", "prosody", "phoneme", "sub", "say-as"}
_ATTRS = {
    "p": set(),
    "s": set(),
    "break": {"time", "strength"},
    "prosody": {"rate", "pitch"},
    "phoneme": {"alphabet", "ph"},
    "sub": {"alias"},
    "say-as": {"interpret-as", "format", "detail"},
}
_IGNORED_ATTRS = {"xml:lang", "xmlns"}
# <speak ...>, or an XML declaration / DOCTYPE before it (parsed, so that a DTD is refused, not read out)
_SSML_START = re.compile(r"\s*(?:<\?xml[\s?]|<!DOCTYPE\s|<speak(?=[\s>/]))")


def is_ssml(text: str) -> bool:
    """True when ``text`` starts (after blanks) with a ``<speak`` tag."""
    return _SSML_START.match(text) is not None


@dataclass
class _Open:
    name: str
    attrs: dict[str, str]
    start: int  # offset of the start tag
    text: list[str] = field(default_factory=list)  # character data inside (phoneme / sub / say-as)
    rate: float = 1.0
    pitch: float = 0.0


class _Handler(xml.sax.handler.ContentHandler):
    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self._locator = None
        self.stack: list[_Open] = []
        self.segments: list[Segment] = []
        self.pieces: list[Piece] = []
        self.pause = 0.0
        self.total_pause = 0.0
        self.elements = 0
        self._chars: list[str] = []
        self._chars_start: int | None = None

    # -- positions --------------------------------------------------------------------------------
    def setDocumentLocator(self, locator) -> None:
        self._locator = locator

    def offset(self) -> int:
        """The character offset in the source of the current event (expat columns count UTF-8 bytes)."""
        if self._locator is None:
            return 0
        line, col = self._locator.getLineNumber(), self._locator.getColumnNumber()
        return offset_of(self.source, self._line_starts, line, col)

    def fail(self, message: str, position: int | None = None) -> None:
        raise MarkupError(f"SSML: {message}", self.offset() if position is None else position)

    # -- structure --------------------------------------------------------------------------------
    @property
    def rate(self) -> float:
        return self.stack[-1].rate if self.stack else 1.0

    @property
    def pitch(self) -> float:
        return self.stack[-1].pitch if self.stack else 0.0

    def close_segment(self) -> None:
        """End the current run of speech (a pause, a prosody change, a sentence element)."""
        self.flush_text()
        if self.pieces:
            self.segments.append(Segment(tuple(self.pieces), self._seg_rate, self._seg_pitch, self.pause))
            self.pieces, self.pause = [], 0.0

    def open_segment(self) -> None:
        self._seg_rate, self._seg_pitch = self.rate, self.pitch

    def flush_text(self) -> None:
        if self._chars_start is None:
            return
        text, start = "".join(self._chars), self._chars_start
        self._chars, self._chars_start = [], None
        if not self.stack or self.stack[-1].name in ("phoneme", "sub", "say-as"):
            return
        if text.strip():
            end = self.offset()
            if end - start == len(text):  # the source text itself (no entity references in it)
                self.pieces.extend(parse_inline(text, start))
            else:
                self.pieces.extend(
                    Piece(p.text, (start, end), p.phonemes, p.source) for p in parse_inline(text)
                )
        elif self.pieces:
            self.pieces.append(Piece(" ", (start, start)))

    def startDocument(self) -> None:
        self._seg_rate, self._seg_pitch = 1.0, 0.0

    def startElement(self, name: str, attrs) -> None:
        self.flush_text()
        here = self.offset()
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            self.fail(f"more than {MAX_ELEMENTS} elements")
        if len(self.stack) >= MAX_DEPTH:
            self.fail(f"elements nested deeper than {MAX_DEPTH}")
        if not self.stack and name != "speak":
            self.fail(f"the root element must be <speak>, got <{name}>")
        if name not in _ELEMENTS:
            self.fail(f"unsupported tag <{name}> (supported: {', '.join(sorted(_ELEMENTS))})")
        if self.stack and name == "speak":
            self.fail("<speak> inside <speak>")
        parent = self.stack[-1].name if self.stack else None
        if parent in ("phoneme", "sub", "say-as"):
            self.fail(f"<{parent}> takes text only, got <{name}> inside it")
        a = {k: attrs.getValue(k) for k in attrs.getNames()}
        if name != "speak":
            extra = sorted(k for k in a if k not in _ATTRS[name] and k not in _IGNORED_ATTRS)
            if extra:
                self.fail(
                    f"<{name}> has unsupported attribute {extra[0]!r} (supported: {', '.join(sorted(_ATTRS[name])) or 'none'})"
                )
        node = _Open(name, a, here, rate=self.rate, pitch=self.pitch)
        if name in ("p", "s"):
            self.close_segment()
        elif name == "prosody":
            rate = _rate(a["rate"], self) if "rate" in a else 1.0
            pitch = _pitch(a["pitch"], self) if "pitch" in a else 0.0
            node.rate, node.pitch = self.rate * rate, self.pitch + pitch
            if not MIN_SPEED <= node.rate <= MAX_SPEED:
                self.fail(f"the combined prosody rate {node.rate:g} is outside {MIN_SPEED:g}..{MAX_SPEED:g}")
            if abs(node.pitch) > MAX_PITCH:
                self.fail(f"the combined prosody pitch {node.pitch:+g} st is outside ±{MAX_PITCH:g}")
            self.close_segment()
        elif name == "break":
            seconds = _break(a, self)
            self.close_segment()
            self.pause += seconds
            self.total_pause += seconds
            if self.total_pause > MAX_TOTAL_PAUSE_S:
                self.fail(f"the breaks add up to more than {MAX_TOTAL_PAUSE_S:g} s")
        elif name == "phoneme":
            if a.get("alphabet", "ipa").lower() != "ipa":
                self.fail(f'<phoneme> alphabet {a["alphabet"]!r} is not supported (use alphabet="ipa")')
            if not a.get("ph", "").strip():
                self.fail("<phoneme> needs a ph attribute with the IPA")
        elif name == "sub":
            if not a.get("alias", "").strip():
                self.fail("<sub> needs an alias attribute")
        elif name == "say-as":
            kind = a.get("interpret-as", "")
            if kind not in SAY_AS:
                self.fail(f"<say-as interpret-as={kind!r}> is not supported (supported: {', '.join(SAY_AS)})")
        self.stack.append(node)
        if name in ("speak", "p", "s", "prosody", "break"):
            self.open_segment()

    def endElement(self, name: str) -> None:
        self.flush_text()
        node = self.stack.pop()
        end = self.offset()
        # the end of the element: the end tag's offset plus its length (an empty element: its start tag's end)
        close = self.source.find(">", end)
        span = (node.start, close + 1 if close >= 0 else end)
        inner = "".join(node.text)
        if name == "phoneme":
            word = " ".join(inner.split()) or node.attrs["ph"]
            self.pieces.append(Piece(word, span, node.attrs["ph"], "ssml"))
        elif name == "sub":
            self.pieces.append(Piece(node.attrs["alias"], span))
        elif name == "say-as":
            words = _say_as(node.attrs["interpret-as"], node.attrs.get("format"), inner, node.start, self)
            self.pieces.append(Piece(f" {words} ", span))
        elif name in ("p", "s", "prosody"):
            self.close_segment()
            self.open_segment()
        elif name == "speak":
            self.close_segment()
            if self.pause:  # a trailing break: a segment with no speech, only its pause
                self.segments.append(Segment((), 1.0, 0.0, self.pause))
                self.pause = 0.0

    def characters(self, content: str) -> None:
        if self.stack and self.stack[-1].name in ("phoneme", "sub", "say-as"):
            self.stack[-1].text.append(content)
            return
        if self._chars_start is None:
            self._chars_start = self.offset()
        self._chars.append(content)

    def ignorableWhitespace(self, whitespace: str) -> None:
        self.characters(whitespace)


def offset_of(source: str, line_starts: list[int], line: int, col_bytes: int) -> int:
    """Line (1-based) and UTF-8 byte column (0-based) -> character offset in ``source``."""
    if line < 1 or line > len(line_starts):
        return len(source)
    start = line_starts[line - 1]
    end = line_starts[line] if line < len(line_starts) else len(source)
    prefix = source[start:end].encode("utf-8")[:col_bytes].decode("utf-8", "ignore")
    return start + len(prefix)


def _seconds(value: str, handler: _Handler, what: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s)\s*", value)
    if not m:
        handler.fail(f"{what} must be a time like '500ms' or '1.5s', got {value!r}")
    seconds = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    return seconds


def _break(a: dict[str, str], handler: _Handler) -> float:
    if "time" in a:
        seconds = _seconds(a["time"], handler, "<break time>")
        if seconds > MAX_BREAK_S:
            handler.fail(f"<break time={a['time']!r}> is longer than {MAX_BREAK_S:g} s")
        return seconds
    strength = a.get("strength", "medium")
    if strength not in BREAK_STRENGTHS:
        handler.fail(f"<break strength={strength!r}>: use one of {', '.join(BREAK_STRENGTHS)}")
    return BREAK_STRENGTHS[strength]


def _rate(value: str, handler: _Handler) -> float:
    v = value.strip().lower()
    if v in RATES:
        return RATES[v]
    m = re.fullmatch(r"([+-])?(\d+(?:\.\d+)?)(%)?", v)
    if not m:
        handler.fail(f"<prosody rate={value!r}>: use {', '.join(RATES)}, a percentage or a factor")
    sign, number, percent = m.groups()
    x = float(number)
    if percent and sign:  # relative change: "+20%" = 1.2
        rate = 1.0 + (x if sign == "+" else -x) / 100.0
    elif percent:  # "150%" of the normal rate
        rate = x / 100.0
    elif sign:
        handler.fail(f"<prosody rate={value!r}>: a relative rate is a percentage ('+20%')")
    else:
        rate = x
    if not (math.isfinite(rate) and MIN_SPEED <= rate <= MAX_SPEED):
        handler.fail(
            f"<prosody rate={value!r}> is outside {MIN_SPEED:g}..{MAX_SPEED:g} times the normal rate"
        )
    return rate


def _pitch(value: str, handler: _Handler) -> float:
    v = value.strip().lower()
    if v in PITCHES:
        return PITCHES[v]
    m = re.fullmatch(r"([+-]?)(\d+(?:\.\d+)?)(st|%|hz)", v)
    if not m:
        handler.fail(f"<prosody pitch={value!r}>: use '+2st', '-10%' or {', '.join(PITCHES)}")
    sign, number, unit = m.groups()
    x = float(number) * (-1.0 if sign == "-" else 1.0)
    if unit == "hz":
        handler.fail(
            f"<prosody pitch={value!r}>: pitch in Hz is not supported; use semitones ('+2st') or '%'"
        )
    if unit == "%":
        if not sign:
            handler.fail(f"<prosody pitch={value!r}>: a percentage pitch is relative ('+10%' or '-10%')")
        if x <= -100:
            handler.fail(f"<prosody pitch={value!r}> would leave no pitch")
        x = 12.0 * math.log2(1.0 + x / 100.0)
    if abs(x) > MAX_PITCH:
        handler.fail(f"<prosody pitch={value!r}> is outside ±{MAX_PITCH:g} semitones")
    return x


def _say_as(kind: str, fmt: str | None, text: str, start: int, handler: _Handler) -> str:
    raw = " ".join(text.split())
    if not raw:
        handler.fail(f"<say-as interpret-as={kind!r}> is empty", start)

    def bad(what: str) -> None:
        handler.fail(f"<say-as interpret-as={kind!r}>: {raw!r} is not {what}", start)

    if kind in ("characters", "spell-out"):
        out = []
        for c in raw:
            if c.isdigit():
                out.append(nw.digits(c))
            elif c.isalpha():
                out.append(c.upper())
            elif not c.isspace():
                out.append(c)
        return " ".join(out)
    if kind in ("cardinal", "number"):
        digits = raw.replace(",", "")
        if not re.fullmatch(r"-?\d+(?:\.\d+)?", digits):
            bad("a number")
        neg = digits.startswith("-")
        return ("minus " if neg else "") + nw.number(digits.lstrip("-"))
    if kind == "ordinal":
        m = re.fullmatch(r"(\d[\d,]*)(?:st|nd|rd|th)?", raw.lower())
        if not m:
            bad("an ordinal number")
        return nw.ordinal(int(m.group(1).replace(",", "")))
    if kind == "telephone":
        groups = re.findall(r"\d+", raw)
        if not groups or re.search(r"[^\d\s()+.\-]", raw):
            bad("a telephone number")
        lead = "plus " if raw.startswith("+") else ""
        return lead + ", ".join(nw.digits(g) for g in groups)
    return _date(raw, fmt, bad)


def _date(raw: str, fmt: str | None, bad) -> str:
    parts = re.split(r"[-/.\s]+", raw.strip())
    if not all(p.isdigit() for p in parts):
        bad("a date of numbers (e.g. 12/25/2024)")
    fmt = (fmt or ("ymd" if len(parts[0]) == 4 else "mdy")[: max(len(parts), 1)]).lower()
    if len(fmt) != len(parts) or set(fmt) - set("dmy") or len(set(fmt)) != len(fmt):
        bad(f"a date in the format {fmt!r}")
    value = dict(zip(fmt, (int(p) for p in parts), strict=True))
    words = []
    if "m" in value:
        if not 1 <= value["m"] <= 12:
            bad("a date (month 1-12)")
        words.append(MONTHS[value["m"] - 1])
    if "d" in value:
        if not 1 <= value["d"] <= 31:
            bad("a date (day 1-31)")
        words.append(nw.ordinal(value["d"]))
    if "y" in value:
        if words:
            words[-1] += ","
        words.append(nw.year(value["y"]))
    return " ".join(words)


def parse_ssml(text: str) -> list[Segment]:
    """SSML -> segments (MarkupError with the position on anything malformed or unsupported)."""
    from defusedxml import DefusedXmlException
    from defusedxml.sax import parseString

    handler = _Handler(text)
    try:
        parseString(
            text.encode("utf-8"), handler, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except MarkupError:
        raise
    except xml.sax.SAXParseException as exc:
        line, col = exc.getLineNumber(), exc.getColumnNumber()
        pos = offset_of(text, handler._line_starts, line, col)
        raise MarkupError(
            f"SSML is not well-formed XML: {exc.getMessage()} (line {line}, column {col + 1})", pos
        ) from None
    except DefusedXmlException as exc:
        raise MarkupError(
            f"SSML: {type(exc).__name__}: DTDs, entity declarations and external references are not allowed",
            handler.offset(),
        ) from None
    return handler.segments
