"""The exercises of notebook 01 pass on their solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nb01
from course_lib.landscapes import Quadratic, gradient_descent

import numpy as np


def test_closed_form_solution_equals_the_loop():
    p0 = np.array([-5.0, -2.0])
    got = nb01.closed_form_iterate_solution(2.0, 4.0, p0, 0.1, 20)
    looped = gradient_descent(Quadratic.diagonal(2.0, 4.0), p0, 0.1, 20)[-1]
    np.testing.assert_allclose(got, looped, rtol=1e-12)
    # The known per-step factors 0.8 and 0.6 (KERAS3_NOTES, "Runge–Kutta facts").
    np.testing.assert_allclose(got, [-5.0 * 0.8**20, -2.0 * 0.6**20], rtol=1e-12)


def test_closed_form_check_both_ways():
    assert nb01.closed_form_iterate.check(nb01.closed_form_iterate_solution).correct
    exact = nb01.closed_form_iterate.check(
        lambda a1, a2, p0, h, n: np.exp(-n * h * np.array([a1, a2])) * p0
    )
    assert exact.status == "incorrect" and "exact flow" in exact.message
    uphill = nb01.closed_form_iterate.check(
        lambda a1, a2, p0, h, n: (1 + h * np.array([a1, a2])) ** n * p0
    )
    assert uphill.status == "incorrect" and "(1 - h·a)" in uphill.message
    off_by_one = nb01.closed_form_iterate.check(
        lambda a1, a2, p0, h, n: (1 - h * np.array([a1, a2])) ** (n + 1) * p0
    )
    assert off_by_one.status == "incorrect" and "differs" in off_by_one.message
    swapped = nb01.closed_form_iterate.check(
        lambda a1, a2, p0, h, n: (1 - h * np.array([a2, a1])) ** n * p0
    )
    assert swapped.status == "incorrect"


def test_stable_learning_rate_check_both_ways():
    assert nb01.largest_stable_learning_rate_solution(2.0, 4.0) == 0.5
    assert nb01.largest_stable_learning_rate.check(
        nb01.largest_stable_learning_rate_solution
    ).correct
    flat = nb01.largest_stable_learning_rate.check(lambda a1, a2: 2 / min(a1, a2))
    assert flat.status == "incorrect" and "flatter" in flat.message
    half = nb01.largest_stable_learning_rate.check(lambda a1, a2: 1 / max(a1, a2))
    assert half.status == "incorrect" and "twice" in half.message
    assert nb01.largest_stable_learning_rate.check(lambda a1, a2: "0.5").status == "incorrect"


def test_the_stability_bound_is_real():
    """Just below 2/max(a) gradient descent shrinks; just above it grows."""
    bowl = Quadratic.diagonal(2.0, 4.0)
    p0 = [1.0, 1.0]
    below = gradient_descent(bowl, p0, 0.49, 200)[-1]
    above = gradient_descent(bowl, p0, 0.51, 200)[-1]
    assert np.abs(below).max() < 1e-3 < 1e3 < np.abs(above).max()


def test_not_attempted_and_non_callable():
    def starter(*args):
        raise NotImplementedError

    for exercise in (nb01.closed_form_iterate, nb01.largest_stable_learning_rate):
        assert exercise.check(None).status == "not attempted"
        assert exercise.check(starter).status == "not attempted"
        wrong_type = exercise.check(0.5)
        assert wrong_type.status == "incorrect" and "function" in wrong_type.message
