"""The exercises of notebook 01 pass on their solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nb01
from course_lib.landscapes import Quadratic, gradient_descent

import numpy as np

TILTED = np.array([[3.0, 1.0], [1.0, 2.0]])


def test_closed_form_solution_equals_the_loop():
    p0 = np.array([-5.0, -2.0])
    got = nb01.closed_form_iterate_solution(np.diag([2.0, 4.0]), p0, 0.1, 20)
    # The known per-step factors 0.8 and 0.6 (KERAS3_NOTES, "Runge–Kutta facts").
    np.testing.assert_allclose(got, [-5.0 * 0.8**20, -2.0 * 0.6**20], rtol=1e-12)
    p0 = np.array([1.5, -2.0])
    got = nb01.closed_form_iterate_solution(TILTED, p0, 0.2, 12)
    looped = gradient_descent(Quadratic(TILTED), p0, 0.2, 12)[-1]
    np.testing.assert_allclose(got, looped, rtol=1e-12)


def test_closed_form_check_both_ways():
    assert nb01.closed_form_iterate.check(nb01.closed_form_iterate_solution).correct

    def eigen_route(A, p0, h, n):  # another correct answer: the eigenvectors of A
        values, vectors = np.linalg.eigh(A)
        return vectors @ ((1 - h * values) ** n * (vectors.T @ p0))

    assert nb01.closed_form_iterate.check(eigen_route).correct
    entrywise = nb01.closed_form_iterate.check(lambda A, p0, h, n: (np.eye(2) - h * A) ** n @ p0)
    assert entrywise.status == "incorrect" and "every entry" in entrywise.message
    one_minus = nb01.closed_form_iterate.check(lambda A, p0, h, n: (1 - h * A) ** n @ p0)
    assert one_minus.status == "incorrect" and "every entry" in one_minus.message

    def exact(A, p0, h, n):
        values, vectors = np.linalg.eigh(A)
        return vectors @ (np.exp(-n * h * values) * (vectors.T @ p0))

    flow = nb01.closed_form_iterate.check(exact)
    assert flow.status == "incorrect" and "exact flow" in flow.message
    diagonal = nb01.closed_form_iterate.check(
        lambda A, p0, h, n: (1 - h * np.diag(A)) ** n * p0  # the notebook's bowl, copied
    )
    assert diagonal.status == "incorrect" and "diagonal" in diagonal.message
    uphill = nb01.closed_form_iterate.check(
        lambda A, p0, h, n: np.linalg.matrix_power(np.eye(2) + h * A, n) @ p0
    )
    assert uphill.status == "incorrect" and "grows" in uphill.message
    off_by_one = nb01.closed_form_iterate.check(
        lambda A, p0, h, n: np.linalg.matrix_power(np.eye(2) - h * A, n + 1) @ p0
    )
    assert off_by_one.status == "incorrect" and "differs" in off_by_one.message


def test_the_tilted_cases_tell_a_matrix_power_from_an_entrywise_one():
    """The check's cases must make the entrywise power visible (else it cannot fail it)."""
    A, p0, h, n = nb01._CASES[0]
    assert np.abs(A - np.diag(np.diag(A))).max() > 0
    right = nb01.closed_form_iterate_solution(A, p0, h, n)
    assert np.abs((np.eye(2) - h * A) ** n @ p0 - right).max() > 1e-3


def test_fastest_learning_rate_is_the_best_constant_rate():
    """Brute force over a grid of h: no rate shrinks the slower coordinate faster."""
    for a1, a2 in [(2.0, 4.0), (1.0, 10.0), (7.0, 0.5)]:
        best = nb01.fastest_learning_rate_solution(a1, a2)
        grid = np.linspace(1e-3, 2 / max(a1, a2), 20001)
        slower = np.maximum(np.abs(1 - grid * a1), np.abs(1 - grid * a2))
        assert abs(grid[np.argmin(slower)] - best) < 1e-3
        # and gradient descent with it really converges faster than at nearby rates
        bowl = Quadratic.diagonal(a1, a2)
        size = {
            h: np.abs(gradient_descent(bowl, [1.0, 1.0], h, 50)[-1]).max()
            for h in (0.9 * best, best, 1.1 * best)
        }
        assert size[best] < min(size[0.9 * best], size[1.1 * best])


def test_fastest_learning_rate_check_both_ways():
    assert nb01.fastest_learning_rate.check(nb01.fastest_learning_rate_solution).correct
    assert nb01.fastest_learning_rate.check(lambda a1, a2: 1 / np.mean([a1, a2])).correct
    one_step = nb01.fastest_learning_rate.check(lambda a1, a2: 1 / max(a1, a2))
    assert one_step.status == "incorrect" and "lands on 0" in one_step.message
    edge = nb01.fastest_learning_rate.check(lambda a1, a2: 2 / max(a1, a2))
    assert edge.status == "incorrect" and "edge of divergence" in edge.message
    flat = nb01.fastest_learning_rate.check(lambda a1, a2: 1 / min(a1, a2))
    assert flat.status == "incorrect" and "flat coordinate" in flat.message
    half = nb01.fastest_learning_rate.check(lambda a1, a2: 1 / (a1 + a2))
    assert half.status == "incorrect" and "shrink by a factor" in half.message
    assert nb01.fastest_learning_rate.check(lambda a1, a2: "0.33").status == "incorrect"


def test_not_attempted_and_non_callable():
    def starter(*args):
        raise NotImplementedError

    for exercise in (nb01.closed_form_iterate, nb01.fastest_learning_rate):
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
    """A hint guides; the matrix power, the rate 2/(a1 + a2) and the update line are answers."""
    hints = {
        nb01.closed_form_iterate: ["matrix_power", "I - h", "eigh", "@"],
        nb01.fastest_learning_rate: ["2 /", "2/", "a1 + a2", "a1+a2", "mean"],
        nb01.nesterov_path: ["μ·v - η·g", "mu * v - ", "p + "],
    }
    for exercise, answers in hints.items():
        for answer in answers:
            assert answer not in exercise._hint, f"{exercise.title}: hint contains {answer!r}"
