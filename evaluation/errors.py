"""The one error type of ``parawave eval``."""

from __future__ import annotations


class EvalError(Exception):
    """Something the user must fix (voice, corpus, split, packages): one line, exit code 2."""
