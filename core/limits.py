"""The request limits: the one definition of what a speed, a pitch shift or a seed may be, and their
checks. The server (``service.routers.speech``'s schema, the engine, ``parawave say``), SSML prosody
(``model.text.ssml``) and the PyTorch acoustic model (``model.acoustic``, ``parawave synth``) all read
them from here, so a value one accepts the others accept too.

A failed check raises :class:`LimitError` (a ``ValueError``) with a message for the user; callers
turn it into their own error (the engine's ``InputError``, the CLI's one-line exit).
"""

from __future__ import annotations

import math

MIN_SPEED, MAX_SPEED = 0.25, 4.0  # speaking rate; > 1 is faster (durations divided by speed)
MIN_PITCH, MAX_PITCH = -12.0, 12.0  # semitones: the pitch shift (0 = the voice's own pitch)
MAX_SEED = 2**53 - 1  # numpy seeds are non-negative; exact in JSON numbers (and JavaScript)


class LimitError(ValueError):
    """A request value outside its limits (the message names the value and the limits)."""


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def speed_ok(speed: object) -> bool:
    """Whether ``speed`` is a finite number (not a bool) in MIN_SPEED..MAX_SPEED."""
    return _number(speed) and MIN_SPEED <= speed <= MAX_SPEED  # type: ignore[operator]


def pitch_ok(pitch: object) -> bool:
    """Whether ``pitch`` is a finite number of semitones (not a bool) in MIN_PITCH..MAX_PITCH."""
    return _number(pitch) and MIN_PITCH <= pitch <= MAX_PITCH  # type: ignore[operator]


def check_speed(speed: object) -> float:
    """``speed`` as a float; LimitError when it is not a number in MIN_SPEED..MAX_SPEED."""
    if not speed_ok(speed):
        raise LimitError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed!r}")
    return float(speed)  # type: ignore[arg-type]


def check_pitch(pitch: object) -> float:
    """``pitch`` as a float; LimitError when it is not a number of semitones in MIN_PITCH..MAX_PITCH."""
    if not pitch_ok(pitch):
        raise LimitError(f"pitch must be between {MIN_PITCH:g} and {MAX_PITCH:g} semitones, got {pitch!r}")
    return float(pitch)  # type: ignore[arg-type]


def check_prosody(speed: float, pitch: float, rate: float, shift: float, where: str) -> None:
    """Markup prosody (an SSML ``rate`` factor and ``shift`` semitones, at ``where`` in the input) on
    top of the request's ``speed`` and ``pitch``: LimitError when the sum leaves the limits."""
    if not MIN_SPEED <= speed * rate <= MAX_SPEED:
        raise LimitError(
            f"the prosody rate {rate:g} at {where} with speed {speed:g} gives "
            f"{speed * rate:g}, outside {MIN_SPEED}..{MAX_SPEED}"
        )
    if not MIN_PITCH <= pitch + shift <= MAX_PITCH:
        raise LimitError(
            f"the prosody pitch {shift:+g} st at {where} with pitch {pitch:g} gives "
            f"{pitch + shift:+g}, outside {MIN_PITCH:g}..{MAX_PITCH:g} semitones"
        )
