"""The text of a streaming Wyoming synthesis (``synthesize-start``, ``synthesize-chunk``...,
``synthesize-stop``), cut into sentences as they complete: each one goes to the engine as soon as the
next word shows it is over (``model.text.split_sentences`` on the text so far: every sentence but the
last one is complete).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque

__all__ = ["TextStream", "complete_sentences"]


def _at_end(text: str, sentence: str) -> int | None:
    """Where ``sentence`` (whitespace-normalized by split_sentences) starts, as the end of ``text``."""
    words = sentence.split()
    if not words:
        return None
    m = re.compile(r"\s+".join(re.escape(w) for w in words) + r"\s*\Z").search(text)
    return m.start() if m else None


def complete_sentences(text: str) -> tuple[list[str], str]:
    """``text`` received so far -> (its complete sentences, the rest, as received).

    Every sentence ``model.text.split_sentences`` finds but the last is complete: its end was decided
    with the next word in view ("Dr. Smith" stays whole). The last one may go on in the next chunk.
    """
    from model.text import split_sentences

    parts = split_sentences(text)
    if len(parts) < 2:
        return [], text
    start = _at_end(text, parts[-1])
    if start is None or start == 0:  # not found as typed (punctuation glued on): wait for more text
        return [], text
    return parts[:-1], text[start:]


class TextStream:
    """The text of one streaming synthesis: complete sentences queue up for the speaker."""

    def __init__(self) -> None:
        self.pending = ""  # received, not yet a complete sentence
        self._items: deque[str | None] = deque()  # complete sentences; None: the stream is over
        self._changed = asyncio.Event()

    def feed(self, text: str) -> None:
        if self._items and self._items[-1] is None:
            return
        self.pending += text
        done, self.pending = complete_sentences(self.pending)
        self._put(*done)

    def close(self) -> None:
        if self._items and self._items[-1] is None:
            return
        rest, self.pending = self.pending, ""
        self._put(*([rest] if rest.strip() else []), None)

    def _put(self, *items: str | None) -> None:
        self._items.extend(items)
        if items:
            self._changed.set()

    async def next_text(self, max_chars: int) -> str | None:
        """The next complete sentence and those waiting behind it (up to ``max_chars`` in all);
        None once the stream is over."""
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        if self._items[0] is None:
            return None
        text = self._items.popleft()
        assert text is not None
        while self._items and (nxt := self._items[0]) is not None and len(text) + 1 + len(nxt) <= max_chars:
            text += " " + nxt
            self._items.popleft()
        return text
