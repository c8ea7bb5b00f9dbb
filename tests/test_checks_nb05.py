"""The exercises of notebook 05 pass on their solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nb05
from course_lib.landscapes import runge_kutta_step
from course_lib.tableaux import TABLEAUX, real_stability_limit

import dataclasses

import numpy as np
import pytest


def _not_implemented(*args):
    raise NotImplementedError


def test_second_order_solution_is_heun_midpoint_and_ralston_and_of_order_two():
    for c2, name in ((1.0, "heun"), (0.5, "midpoint"), (2.0 / 3.0, "ralston")):
        tableau = nb05.second_order_tableau_solution(c2)
        np.testing.assert_allclose(tableau.b, TABLEAUX[name].b, atol=1e-15)
        np.testing.assert_allclose(tableau.a, TABLEAUX[name].a, atol=1e-15)

    def field(p):  # a smooth nonlinear vector field
        return np.array([np.sin(p[0]) + p[1] ** 2, p[0] * p[1] + np.cos(p[1])])

    tableau, p = nb05.second_order_tableau_solution(0.3), np.array([0.3, -0.7])
    errors = [
        np.abs(
            runge_kutta_step(field, p, tableau, h) - runge_kutta_step(field, p, TABLEAUX["rk4"], h)
        ).max()
        for h in (0.02, 0.01)
    ]
    assert 6 < errors[0] / errors[1] < 10  # a local error of order h³: halving h divides it by 8


def test_second_order_checks():
    from course_lib.tableaux import ButcherTableau

    check = nb05.second_order_tableau.check
    assert check(nb05.second_order_tableau_solution).correct

    def heun_weights(c2):  # Heun's b for every c₂: fails the order-2 condition unless c₂ = 1
        return ButcherTableau(name="x", c=(0, c2), a=((0, 0), (c2, 0)), b=(0.5, 0.5), order=2)

    def trial_at_the_end(c2):  # the trial point always at h, only b moved
        b2 = 1 / (2 * c2)
        return ButcherTableau(name="x", c=(0, 1), a=((0, 0), (1, 0)), b=(1 - b2, b2), order=1)

    def first_order(c2):
        return dataclasses.replace(nb05.second_order_tableau_solution(c2), order=1)

    assert check(heun_weights).status == "incorrect"
    result = check(trial_at_the_end)
    assert result.status == "incorrect" and "a₂₁ = c₂" in result.message
    result = check(first_order)
    assert result.status == "incorrect" and "order 2" in result.message
    assert check(_not_implemented).status == "not attempted"
    assert check(None).status == "not attempted"


def test_stability_limit_solution_equals_the_librarys_roots():
    for name in nb05.STABILITY_CASES + ("midpoint", "ralston"):
        got = nb05.stability_limit_solution(name)
        assert got == pytest.approx(real_stability_limit(name), abs=1e-9)
    assert nb05._taylor_limit(5) == pytest.approx(3.2170, abs=1e-3)  # Dormand–Prince's is 3.307


def test_stability_limit_checks():
    check = nb05.stability_limit.check
    assert check(nb05.stability_limit_solution).correct

    def gradient_descents(tableau):
        return 2.0

    def taylor(tableau):
        return nb05._taylor_limit(tableau.order)

    def coarse(tableau):
        return round(real_stability_limit(tableau), 2)

    result = check(gradient_descents)
    assert result.status == "incorrect" and "gradient descent's limit" in result.message
    result = check(taylor)
    assert result.status == "incorrect" and "Taylor polynomial" in result.message
    result = check(coarse)
    assert result.status == "incorrect" and "bisection" in result.message
    assert check(_not_implemented).status == "not attempted"


def test_heun_euler_solution_estimates_heuns_error():
    pair = nb05.heun_euler_solution()
    assert pair.stages_needed(adaptive=True) == 2 and pair.error_weights == (-0.5, 0.5)


def test_heun_euler_checks():
    from course_lib.tableaux import InvalidTableauError

    check = nb05.heun_euler.check
    solution = nb05.heun_euler_solution()
    assert check(nb05.heun_euler_solution).correct and check(solution).correct
    swapped = dataclasses.replace(solution, b=(1.0, 0.0), b_hat=(0.5, 0.5), order=1)
    swapped = dataclasses.replace(swapped, embedded_order=2)
    result = check(swapped)
    assert result.status == "incorrect" and "step with the higher order" in result.message
    trial_slope = dataclasses.replace(solution, b_hat=(0.0, 1.0))
    result = check(trial_slope)
    assert result.status == "incorrect" and "slope at the start" in result.message
    with pytest.raises(InvalidTableauError):
        dataclasses.replace(solution, embedded_order=2)  # a learner's code raises this
    no_pair = TABLEAUX["heun"]
    assert check(no_pair).status == "incorrect"
    assert check(_not_implemented).status == "not attempted"


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
        calls = []

        def counted(p, calls=calls):
            calls.append(1)
            return nb05.himmelblau_gradient(p)

        point, sizes = nb05.rk23_adaptive_solution(
            counted, np.array(p0), first_step, steps, rtol, atol
        )
        want = nb05.scipy_rk23_evaluations(
            nb05.himmelblau_gradient, p0, first_step, steps, rtol, atol
        )
        assert len(calls) == want
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

    def without_reuse(gradient, p0, first_step, steps, rtol, atol):
        # SciPy's steps, but every stage of every try evaluated afresh (as training must).
        return nb05._rk23_variant(p0, first_step, steps, rtol, atol, gradient=gradient)

    result = nb05.rk23_adaptive.check(without_reuse)
    assert result.status == "incorrect" and "next step's first" in result.message
    assert nb05.rk23_adaptive.check(_not_implemented).status == "not attempted"
    assert nb05.rk23_adaptive.check(None).status == "not attempted"


# The stage loop, which the lesson has the learner write --------------------------------------


class _Stages(nb05.MyRungeKuttaModel):
    """The lesson's class with a stage loop that subclasses get wrong in one known way."""

    def trial(self, i, k, p, v, g, h):  # the right trial point: from p, row i of A
        row = self.tableau.a[i]
        return p - h * sum(row[j] * g[j][k] for j in range(i) if row[j] != 0)

    def stages(self, x, y, start, g1, h, count):
        variables, g = self.trainable_variables, [g1]
        for i in range(1, count):
            for k, (v, p) in enumerate(zip(variables, start, strict=True)):
                v.assign(self.trial(i, k, p, v, g, h))
            g.append(self.gradient_at(x, y)[0])
        for v, p in zip(variables, start, strict=True):
            v.assign(p)
        return g


class FromThePreviousTrialPoint(_Stages):
    def trial(self, i, k, p, v, g, h):
        row = self.tableau.a[i]
        return v - h * sum(row[j] * g[j][k] for j in range(i) if row[j] != 0)


class AlongTheLastGradient(_Stages):
    def trial(self, i, k, p, v, g, h):
        return p - h * self.tableau.c[i] * g[i - 1][k]


class PreviousRow(_Stages):
    def trial(self, i, k, p, v, g, h):
        row = self.tableau.a[i - 1]
        return p - h * sum(row[j] * g[j][k] for j in range(i) if row[j] != 0)


class StagesReversed(_Stages):
    def trial(self, i, k, p, v, g, h):
        row = self.tableau.a[i]
        return p - h * sum(row[j] * g[i - 1 - j][k] for j in range(i) if row[j] != 0)


class GradientBeforeTheMove(nb05.MyRungeKuttaModel):
    def stages(self, x, y, start, g1, h, count):
        variables, g = self.trainable_variables, [g1]
        for i in range(1, count):
            row = self.tableau.a[i]
            gradient = self.gradient_at(x, y)[0]  # the mistake: before the weights move
            for k, (v, p) in enumerate(zip(variables, start, strict=True)):
                v.assign(p - h * sum(row[j] * g[j][k] for j in range(i) if row[j] != 0))
            g.append(gradient)
        for v, p in zip(variables, start, strict=True):
            v.assign(p)
        return g


class NoRestore(_Stages):
    def stages(self, x, y, start, g1, h, count):
        g = super().stages(x, y, start, g1, h, count)
        for v, p, d in zip(self.trainable_variables, start, g[-1], strict=True):
            v.assign(p - h * d)  # leaves the weights away from p
        return g


class StagesNeededOnly(nb05.MyRungeKuttaModel):
    def stages(self, x, y, start, g1, h, count):
        return super().stages(x, y, start, g1, h, self.tableau.stages_needed())


class EqualWeights(nb05.MyRungeKuttaModel):
    def combine(self, weights, g):
        return [sum(g_i[k] for g_i in g) / len(g) for k in range(len(g[0]))]


class OwnWeights(nb05.MyRungeKuttaModel):
    def combine(self, weights, g):
        return super().combine(self.tableau.b, g)


class Starter(nb05.MyRungeKuttaModel):
    def stages(self, x, y, start, g1, h, count):
        raise NotImplementedError("the trial points, their gradients, then p restored")

    def combine(self, weights, g):
        raise NotImplementedError("Σ_i w_i g_i for each variable")


def test_stage_loop_check_passes_the_solution():
    result = nb05.stage_loop.check(nb05.MyRungeKuttaModel)
    assert result.correct, result


@pytest.mark.parametrize(
    ("wrong", "phrase"),
    [
        (FromThePreviousTrialPoint, "built from the previous trial point"),
        (AlongTheLastGradient, "along the last gradient only"),
        (PreviousRow, "was taken at p itself"),
        (StagesReversed, "wrong stages"),
        (GradientBeforeTheMove, "Assign them before taking the gradient"),
        (NoRestore, "not p ="),
        (StagesNeededOnly, "returned 3 stage gradients"),
        (EqualWeights, "weighs every stage equally"),
        (OwnWeights, "used the tableau's b"),
    ],
)
def test_stage_loop_check_names_the_mistake(wrong, phrase):
    result = nb05.stage_loop.check(wrong)
    assert result.status == "incorrect" and phrase in result.message, result


def test_stage_loop_not_attempted_and_not_a_model():
    assert nb05.stage_loop.check(Starter).status == "not attempted"
    assert nb05.stage_loop.check(None).status == "not attempted"
    assert nb05.stage_loop.check(nb05.rk23_adaptive_solution).status == "incorrect"
