"""The excitation-follow bench's arithmetic (the synthesis itself runs on a trained voice)."""

import math

import numpy as np

from bench.excitation_follow import main, median_abs_cents, median_shift_cents


def test_shift_is_measured_on_frames_voiced_everywhere():
    ref = np.array([100.0, 100.0, 0.0, 100.0, 100.0])
    base = np.array([100.0, 110.0, 120.0, 0.0, 100.0])
    shifted = base * 2 ** (150 / 1200)
    shifted[0] = 0.0  # unvoiced here: left out
    cents, n = median_shift_cents(base, shifted, ref)
    assert n == 2 and math.isclose(cents, 150.0, abs_tol=1e-9)
    same, _ = median_shift_cents(base, base, ref)
    assert same == 0.0  # an output that ignores the excitation reads 0
    assert math.isnan(median_shift_cents(base, np.zeros(5), ref)[0])


def test_abs_error_is_the_median_of_absolute_cents():
    ref = np.full(4, 200.0)
    out = ref * 2 ** (np.array([-100.0, 100.0, -300.0, 0.0]) / 1200)
    assert math.isclose(median_abs_cents(out, ref), 100.0, abs_tol=1e-9)  # |.| first: not |median| = 50


def test_bad_models_is_a_one_line_error(capsys):
    assert main(["--models", "vocoder"]) == 2
    assert capsys.readouterr().out.startswith("error: --models")
