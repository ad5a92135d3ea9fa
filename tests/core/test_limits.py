"""The request limits (core.limits): one definition, the checks every caller uses."""

from __future__ import annotations

import math

import pytest

from core.limits import (
    MAX_PITCH,
    MAX_SPEED,
    MIN_PITCH,
    MIN_SPEED,
    LimitError,
    check_pitch,
    check_prosody,
    check_speed,
    pitch_ok,
    speed_ok,
)


@pytest.mark.parametrize("speed", [MIN_SPEED, 1, 2.5, MAX_SPEED])
def test_speeds_within_the_limits_pass_as_floats(speed):
    assert check_speed(speed) == float(speed) and isinstance(check_speed(speed), float)


@pytest.mark.parametrize(
    "speed", [0.0, MIN_SPEED - 1e-9, MAX_SPEED + 1e-9, -1.0, math.nan, math.inf, True, "2", None]
)
def test_other_speeds_are_refused_with_the_limits_named(speed):
    assert not speed_ok(speed)
    with pytest.raises(LimitError, match=r"^speed must be between 0\.25 and 4\.0, got "):
        check_speed(speed)


@pytest.mark.parametrize("pitch", [MIN_PITCH, -3, 0, 7.5, MAX_PITCH])
def test_pitches_within_the_limits_pass(pitch):
    assert pitch_ok(pitch) and check_pitch(pitch) == float(pitch)


@pytest.mark.parametrize("pitch", [MIN_PITCH - 0.5, MAX_PITCH + 1e-6, math.nan, -math.inf, False, "1"])
def test_other_pitches_are_refused_with_the_limits_named(pitch):
    assert not pitch_ok(pitch)
    with pytest.raises(LimitError, match=r"^pitch must be between -12 and 12 semitones, got "):
        check_pitch(pitch)


def test_limit_errors_are_value_errors():
    """model.acoustic and `parawave synth` catch ValueError."""
    with pytest.raises(ValueError):
        check_speed(9.0)


def test_markup_prosody_is_checked_on_top_of_the_request():
    check_prosody(2.0, 6.0, 2.0, 6.0, "character 0")  # 4.0 and +12: at the limits
    with pytest.raises(LimitError, match=r"prosody rate 1.75 at character 3 with speed 4 gives 7, outside"):
        check_prosody(4.0, 0.0, 1.75, 0.0, "character 3")
    with pytest.raises(LimitError, match=r"prosody pitch \+6 st at character 5 with pitch 10 gives \+16"):
        check_prosody(1.0, 10.0, 1.0, 6.0, "character 5")
    with pytest.raises(LimitError, match=r"prosody pitch -6 st .* gives -18"):
        check_prosody(1.0, -12.0, 1.0, -6.0, "character 0")
