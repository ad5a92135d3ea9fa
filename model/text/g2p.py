"""Grapheme-to-phoneme conversion with espeak-ng (en-us), through phonemizer.

The espeak-ng library and its data come from the ``espeakng-loader`` wheel, so no system espeak is
needed (or used). The backend is built once, on first use (it copies and loads the shared library,
~0.1-0.5 s), and every call goes through one lock: espeak keeps global state and is not
thread-safe, and the server phonemizes from worker threads.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

log = logging.getLogger(__name__)

VOICE = "en-us"

_lock = threading.Lock()
_backend: Any = None
_separator: Any = None

# espeak reads a lone capital "A" between words as the article ("ɐ"), also when it is a spelled
# letter or an initial ("Edwin A Walker", "the N R A was"). Mid-sentence, a capital "A" after a word
# is almost always the letter; so is one followed by another single capital (initials: "A J Smith")
# or by a word an article never precedes ("A and B").
# "eh" is what espeak en-us reads as the letter name /eɪ/.
_LETTER_A = re.compile(
    r"(?:(?<=[\w'] )|(?:^|(?<=[,.;:!?] ))(?=A (?:[A-Z]\b|(?:and|or|is|was|to|through|plus|minus|equals)\b)))"
    r"A(?=[\s,.;:!?]|$)"
)


def _quiet_logger() -> logging.Logger:
    """phonemizer logs a warning for harmless things (language-switch flags it removes, word-count
    mismatches, backend start-up); keep only errors."""
    logger = logging.getLogger(__name__ + ".phonemizer")
    logger.setLevel(logging.ERROR)
    return logger


def _make_backend() -> tuple[Any, Any]:
    import espeakng_loader
    from phonemizer.backend import EspeakBackend
    from phonemizer.backend.espeak.wrapper import EspeakWrapper
    from phonemizer.separator import Separator

    # The bundled library and its data directory, never a system install: phoneme inventories
    # differ between espeak versions and a model is trained on one.
    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    backend = EspeakBackend(
        VOICE,
        preserve_punctuation=True,
        with_stress=True,
        language_switch="remove-flags",
        words_mismatch="ignore",
        logger=_quiet_logger(),
    )
    log.debug("espeak-ng %s loaded from %s", ".".join(map(str, backend.version())), EspeakWrapper.library())
    return backend, Separator(phone="", syllable="", word=" ")


def espeak_version() -> str:
    """Version of the bundled espeak-ng library (e.g. '1.52.0')."""
    with _lock:
        backend, _ = _get()
        return ".".join(map(str, backend.version()))


def _get() -> tuple[Any, Any]:
    global _backend, _separator
    if _backend is None:
        _backend, _separator = _make_backend()
    return _backend, _separator


def phonemize(text: str) -> str:
    """Normalized English -> IPA with stress marks; words separated by single spaces, the
    punctuation ``, . ? ! ; :`` kept in place. Empty or unspeakable input gives ''."""
    text = " ".join(text.split())
    if not any(c.isalnum() for c in text):
        return ""
    text = _LETTER_A.sub("eh", text)
    with _lock:
        backend, separator = _get()
        out = backend.phonemize([text], separator=separator, strip=True, njobs=1)
    result = " ".join(out[0].split()) if out else ""
    return re.sub(r"\s+([,.;:!?])", r"\1", result)
