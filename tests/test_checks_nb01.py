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


def _momentum_loop(update):
    """A learner's loop around one update rule ``update(p, v, g, gradient, h, mu) -> (p, v)``."""

    def path(gradient, p0, learning_rate, momentum, steps):
        p, v = np.array(p0, dtype=float), np.zeros(len(p0))
        points = [p.copy()]
        for _ in range(steps):
            p, v = update(p, v, gradient(p), gradient, learning_rate, momentum)
            points.append(p.copy())
        return np.array(points)

    return path


def _nesterov_as_keras(p, v, g, gradient, h, mu):
    v = mu * v - h * g
    return p + mu * v - h * g, v  # reassociated: equal to Keras's within round-off


def _classic(p, v, g, gradient, h, mu):
    v = mu * v - h * g
    return p + v, v


def _old_velocity(p, v, g, gradient, h, mu):
    return p + mu * v - h * g, mu * v - h * g  # comes to classic momentum


def _no_gradient_term(p, v, g, gradient, h, mu):
    v = mu * v - h * g
    return p + mu * v, v


def _look_ahead_gradient(p, v, g, gradient, h, mu):
    v = mu * v - h * gradient(p + mu * v)
    return p + v, v


def _sign_error(p, v, g, gradient, h, mu):
    v = mu * v + h * g
    return p + mu * v + h * g, v


def test_nesterov_solution_equals_keras():
    A, p0, h, mu, n = nb01._NESTEROV_CASES[1]
    got = nb01.nesterov_path_solution(lambda p: A @ p, p0, h, mu, n)
    np.testing.assert_allclose(got, nb01._keras_nesterov_points(A, p0, h, mu, n), atol=1e-13)
    classic = _momentum_loop(_classic)(lambda p: A @ p, p0, h, mu, n)
    assert np.abs(got - classic).max() > 1e-3  # the two methods really differ on this case


def test_nesterov_check_both_ways():
    assert nb01.nesterov_path.check(nb01.nesterov_path_solution).correct
    assert nb01.nesterov_path.check(_momentum_loop(_nesterov_as_keras)).correct
    classic = nb01.nesterov_path.check(_momentum_loop(_classic))
    assert classic.status == "incorrect" and "classic momentum" in classic.message
    old = nb01.nesterov_path.check(_momentum_loop(_old_velocity))
    assert old.status == "incorrect" and "classic momentum" in old.message
    alone = nb01.nesterov_path.check(_momentum_loop(_no_gradient_term))
    assert alone.status == "incorrect" and "μ·v alone" in alone.message
    look_ahead = nb01.nesterov_path.check(_momentum_loop(_look_ahead_gradient))
    assert look_ahead.status == "incorrect" and "look-ahead point" in look_ahead.message
    sign = nb01.nesterov_path.check(_momentum_loop(_sign_error))
    assert sign.status == "incorrect" and "differs" in sign.message
    last_only = nb01.nesterov_path.check(lambda *args: nb01.nesterov_path_solution(*args)[-1])
    assert last_only.status == "incorrect" and "return all" in last_only.message


def test_nesterov_not_attempted_and_non_callable():
    def starter(gradient, p0, learning_rate, momentum, steps):
        raise NotImplementedError

    assert nb01.nesterov_path.check(starter).status == "not attempted"
    assert nb01.nesterov_path.check(None).status == "not attempted"
    assert nb01.nesterov_path.check(np.zeros(2)).status == "incorrect"


def test_hints_do_not_state_the_answers():
    """A hint guides; the factor (1 - h·a), the bound 2/a and the update line are the answers."""
    hints = {
        nb01.closed_form_iterate: ["1 - h", "(1 - h·a", "**"],
        nb01.largest_stable_learning_rate: ["2 /", "2/", "|1 - h·a| < 1"],
        nb01.nesterov_path: ["μ·v - η·g", "mu * v - ", "p + "],
    }
    for exercise, answers in hints.items():
        for answer in answers:
            assert answer not in exercise._hint, f"{exercise.title}: hint contains {answer!r}"
