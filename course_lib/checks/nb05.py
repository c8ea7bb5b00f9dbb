"""Self-checks for the exercises of notebook 05 (Runge–Kutta optimizers).

* :data:`three_eighths_rule`: write Kutta's 3/8-rule as a :class:`ButcherTableau`.
* :data:`stable_learning_rate`: the largest stable learning rate of a method on a quadratic.
* :data:`error_estimate`: the embedded local-error estimate of one Runge–Kutta step.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.landscapes import Rosenbrock
from course_lib.tableaux import TABLEAUX, ButcherTableau, get_tableau, real_stability_limit

from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------------


def three_eighths_rule_solution() -> ButcherTableau:
    """Kutta's 3/8-rule: fourth order like RK4, with stages at t = 0, 1/3, 2/3, 1."""
    return ButcherTableau(
        name="three_eighths",
        c=(0.0, 1 / 3, 2 / 3, 1.0),
        a=(
            (0.0, 0.0, 0.0, 0.0),
            (1 / 3, 0.0, 0.0, 0.0),
            (-1 / 3, 1.0, 0.0, 0.0),
            (1.0, -1.0, 1.0, 0.0),
        ),
        b=(1 / 8, 3 / 8, 3 / 8, 1 / 8),
        order=4,
    )


def stable_learning_rate_solution(tableau: str, hessian: np.ndarray) -> float:
    """Stable while h·λ ≤ the method's real stability limit for every Hessian eigenvalue λ."""
    largest_eigenvalue = np.linalg.eigvalsh(np.asarray(hessian, dtype=np.float64)).max()
    return real_stability_limit(tableau) / largest_eigenvalue


def error_estimate_solution(gradient, p, tableau: str, learning_rate: float) -> np.ndarray:
    """p_new − p̂_new = −h·Σ_i (b_i − b̂_i)·g_i from the stages of one step."""
    t = get_tableau(tableau)
    a = np.array(t.a)
    gradients = []
    for i in range(t.stages):
        trial = p - learning_rate * sum((a[i, j] * gradients[j] for j in range(i)), 0.0 * p)
        gradients.append(gradient(trial))
    weights = np.array(t.b) - np.array(t.b_hat)
    return -learning_rate * sum(w * g for w, g in zip(weights, gradients, strict=True))


# --------------------------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------------------------


def _check_three_eighths(answer: Any) -> str:
    if callable(answer) and not isinstance(answer, ButcherTableau):
        answer = answer()  # the notebook passes a function that builds the tableau
    if not isinstance(answer, ButcherTableau):
        raise Incorrect(
            f"return a ButcherTableau (from course_lib.tableaux), got {type(answer).__name__}."
        )
    expected = three_eighths_rule_solution()
    if np.allclose(answer.b, TABLEAUX["rk4"].b) and np.allclose(answer.c, TABLEAUX["rk4"].c):
        raise Incorrect("this is the classic RK4 tableau; the 3/8-rule has c = (0, 1/3, 2/3, 1).")
    if answer.stages != 4:
        raise Incorrect(f"the 3/8-rule has 4 stages, your tableau has {answer.stages}.")
    expect_close("c", answer.c, expected.c, atol=1e-12)
    expect_close("A", answer.a, expected.a, atol=1e-12)
    expect_close("b", answer.b, expected.b, atol=1e-12)
    if answer.order != 4:
        raise Incorrect(f"the 3/8-rule is of order 4, your tableau says order={answer.order}.")
    return "your tableau is Kutta's 3/8-rule, and it passes the order-4 conditions."


def _check_stable_learning_rate(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    hessians = [np.diag([1.0, 10.0]), np.array([[3.0, 1.0], [1.0, 2.0]])]
    for name in ("euler", "heun", "rk4", "dormand_prince"):
        for hessian in hessians:
            expected = stable_learning_rate_solution(name, hessian)
            got = answer(name, hessian.copy())
            if not np.isscalar(got) and np.ndim(got) != 0:
                raise Incorrect(f"return one number, got {got!r}.")
            smallest = np.linalg.eigvalsh(hessian).min()
            if np.isclose(float(got), real_stability_limit(name) / smallest):
                raise Incorrect(
                    "you divided by the smallest eigenvalue: the stiffest direction (largest "
                    "eigenvalue) is the first to blow up."
                )
            if name != "euler" and np.isclose(float(got), 2.0 / np.linalg.eigvalsh(hessian).max()):
                if not np.isclose(expected, float(got)):
                    raise Incorrect(
                        f"for {name!r} you gave 2/λ_max, gradient descent's limit: use the "
                        "method's own limit, real_stability_limit(tableau)."
                    )
            expect_close(f"the stable learning rate of {name!r}", float(got), expected, atol=1e-9)
    return "your learning rates are the methods' limits divided by the largest eigenvalue."


def _check_error_estimate(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    rosenbrock = Rosenbrock()
    p = np.array([-1.0, 1.5])
    for name, h in (("bogacki_shampine", 1e-3), ("dormand_prince", 5e-4)):
        expected = error_estimate_solution(rosenbrock.gradient, p.copy(), name, h)
        got = np.asarray(answer(rosenbrock.gradient, p.copy(), name, h), dtype=np.float64)
        if got.shape == expected.shape and np.allclose(got, -expected, rtol=1e-9, atol=0):
            raise Incorrect("your estimate has the opposite sign: p_new − p̂_new, not p̂ − p.")
        expect_close(
            f"the error estimate of {name!r}", got, expected, atol=1e-9 * np.abs(expected).max()
        )
    return "your estimate equals −h·Σ(b_i − b̂_i)·g_i for both embedded pairs."


three_eighths_rule = Exercise(
    title="Write Kutta's 3/8-rule as a ButcherTableau",
    checker=_check_three_eighths,
    hint=(
        "c = (0, 1/3, 2/3, 1); rows of A: (1/3), (−1/3, 1), (1, −1, 1); b = (1/8, 3/8, 3/8, 1/8); "
        "A must be the full 4×4 matrix with zeros on and above the diagonal."
    ),
    solution=three_eighths_rule_solution,
)

stable_learning_rate = Exercise(
    title="The largest stable learning rate on a quadratic",
    checker=_check_stable_learning_rate,
    hint="real_stability_limit(tableau) is the limit of h·λ; which eigenvalue λ binds first?",
    solution=stable_learning_rate_solution,
)

error_estimate = Exercise(
    title="The embedded error estimate of one step",
    checker=_check_error_estimate,
    hint=(
        "Compute every stage gradient g_i as in a normal step, then combine them with the "
        "weights b − b_hat instead of b, times −h."
    ),
    solution=error_estimate_solution,
)

__all__ = ["error_estimate", "stable_learning_rate", "three_eighths_rule"]
