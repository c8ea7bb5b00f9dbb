"""The exercises of notebook 05 pass on their solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nb05
from course_lib.landscapes import Rosenbrock, runge_kutta_step
from course_lib.tableaux import TABLEAUX, ButcherTableau, real_stability_limit

import dataclasses

import numpy as np
import pytest


def _not_implemented(*args):
    raise NotImplementedError


def test_three_eighths_solution_is_a_fourth_order_method():
    def field(p):  # a smooth nonlinear vector field
        return np.array([np.sin(p[0]) + p[1] ** 2, p[0] * p[1] + np.cos(p[1])])

    tableau = nb05.three_eighths_rule_solution()
    p = np.array([0.3, -0.7])
    differences = [
        np.abs(
            runge_kutta_step(field, p, tableau, h) - runge_kutta_step(field, p, TABLEAUX["rk4"], h)
        ).max()
        for h in (0.1, 0.05)
    ]
    # Two fourth-order methods differ by O(h^5) per step: halving h divides it by about 32.
    assert 0 < differences[0] < 1e-4
    assert 20 < differences[0] / differences[1] < 45


def test_three_eighths_checks():
    assert nb05.three_eighths_rule.check(nb05.three_eighths_rule_solution()).correct
    rk4 = nb05.three_eighths_rule.check(TABLEAUX["rk4"])
    assert rk4.status == "incorrect" and "RK4" in rk4.message
    assert nb05.three_eighths_rule.check(TABLEAUX["kutta3"]).status == "incorrect"
    lower_order = dataclasses.replace(nb05.three_eighths_rule_solution(), order=3)
    assert nb05.three_eighths_rule.check(lower_order).status == "incorrect"
    assert nb05.three_eighths_rule.check("three_eighths").status == "incorrect"
    assert nb05.three_eighths_rule.check(None).status == "not attempted"
    assert nb05.three_eighths_rule.check(_not_implemented).status == "not attempted"
    assert nb05.three_eighths_rule.check(nb05.three_eighths_rule_solution).correct


def test_stable_learning_rate_solution_values():
    assert nb05.stable_learning_rate_solution("euler", np.diag([1.0, 10.0])) == pytest.approx(0.2)
    rk4 = nb05.stable_learning_rate_solution("rk4", np.diag([1.0, 10.0]))
    assert rk4 == pytest.approx(real_stability_limit("rk4") / 10.0)
    assert 0.27 < rk4 < 0.29


def test_stable_learning_rate_checks():
    def smallest_eigenvalue(tableau, hessian):
        return real_stability_limit(tableau) / np.linalg.eigvalsh(hessian).min()

    def gradient_descent_limit(tableau, hessian):
        return 2.0 / np.linalg.eigvalsh(hessian).max()

    assert nb05.stable_learning_rate.check(nb05.stable_learning_rate_solution).correct
    result = nb05.stable_learning_rate.check(smallest_eigenvalue)
    assert result.status == "incorrect" and "largest eigenvalue" in result.message
    result = nb05.stable_learning_rate.check(gradient_descent_limit)
    assert result.status == "incorrect" and "2/λ_max" in result.message
    assert nb05.stable_learning_rate.check(_not_implemented).status == "not attempted"


def test_error_estimate_solution_is_the_difference_of_the_two_solutions():
    rosenbrock = Rosenbrock()
    p = np.array([-1.0, 1.5])
    tableau = TABLEAUX["bogacki_shampine"]
    embedded = ButcherTableau(name="embedded", c=tableau.c, a=tableau.a, b=tableau.b_hat, order=2)
    high = runge_kutta_step(rosenbrock.gradient, p, tableau, 1e-3)
    low = runge_kutta_step(rosenbrock.gradient, p, embedded, 1e-3)
    got = nb05.error_estimate_solution(rosenbrock.gradient, p, "bogacki_shampine", 1e-3)
    np.testing.assert_allclose(got, high - low, rtol=1e-6, atol=1e-15)


def test_error_estimate_checks():
    def wrong_sign(gradient, p, tableau, h):
        return -nb05.error_estimate_solution(gradient, p, tableau, h)

    def without_step_size(gradient, p, tableau, h):
        return nb05.error_estimate_solution(gradient, p, tableau, h) / h

    assert nb05.error_estimate.check(nb05.error_estimate_solution).correct
    result = nb05.error_estimate.check(wrong_sign)
    assert result.status == "incorrect" and "sign" in result.message
    assert nb05.error_estimate.check(without_step_size).status == "incorrect"
    assert nb05.error_estimate.check(_not_implemented).status == "not attempted"


def test_himmelblau_gradient_matches_finite_differences():
    def value(p):
        x, y = p
        return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2

    p = np.array([0.7, -1.3])
    step = 1e-6
    numeric = [(value(p + step * e) - value(p - step * e)) / (2 * step) for e in np.eye(2)]
    np.testing.assert_allclose(nb05.himmelblau_gradient(p), numeric, rtol=1e-7)
    assert np.allclose(nb05.himmelblau_gradient(np.array([3.0, 2.0])), 0.0)


def test_rk23_solution_takes_scipys_steps_and_rejects_the_first_try():
    for p0, first_step, steps, rtol, atol in nb05.RK23_CASES:
        point, sizes = nb05.rk23_adaptive_solution(
            nb05.himmelblau_gradient, np.array(p0), first_step, steps, rtol, atol
        )
        reference, reference_sizes = nb05.scipy_rk23_steps(
            nb05.himmelblau_gradient, p0, first_step, steps, rtol, atol
        )
        np.testing.assert_allclose(sizes, reference_sizes, rtol=1e-6)
        np.testing.assert_allclose(point, reference, atol=1e-7)
        # The first step size is too large for the tolerance: the controller had to retry.
        assert sizes[0] < first_step / 2


def _rk23_slip(**slip):
    def answer(gradient, p0, first_step, steps, rtol, atol):
        return nb05._rk23_variant(p0, first_step, steps, rtol, atol, **slip)

    return answer


def test_rk23_checks():
    assert nb05.rk23_adaptive.check(nb05.rk23_adaptive_solution).correct
    result = nb05.rk23_adaptive.check(_rk23_slip(exponent=-1.0 / 4.0))
    assert result.status == "incorrect" and "embedded order" in result.message
    result = nb05.rk23_adaptive.check(_rk23_slip(retry=False))
    assert result.status == "incorrect" and "retried" in result.message

    result = nb05.rk23_adaptive.check(_rk23_slip(low_order=True))
    assert result.status == "incorrect" and "third-order weights" in result.message

    def every_try_recorded(gradient, p0, first_step, steps, rtol, atol):
        point, sizes = nb05.rk23_adaptive_solution(gradient, p0, first_step, steps, rtol, atol)
        return point, [first_step, *sizes]

    result = nb05.rk23_adaptive.check(every_try_recorded)
    assert result.status == "incorrect" and "accepted" in result.message
    assert nb05.rk23_adaptive.check(_not_implemented).status == "not attempted"
    assert nb05.rk23_adaptive.check(None).status == "not attempted"
