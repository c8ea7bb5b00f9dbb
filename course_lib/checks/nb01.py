"""Self-checks for the exercises of notebook 01 (gradient descent as the Euler method).

* :data:`closed_form_iterate`: the n-th gradient-descent iterate on a diagonal quadratic,
  without a loop: each coordinate is multiplied by (1 - h·a) per step.
* :data:`largest_stable_learning_rate`: the step size beyond which gradient descent diverges on
  the quadratic, although the exact gradient flow always converges.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.landscapes import Quadratic, gradient_descent

from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------------


def closed_form_iterate_solution(
    a1: float, a2: float, p0: np.ndarray, learning_rate: float, steps: int
) -> np.ndarray:
    """p_n of gradient descent on L = (a1·x² + a2·y²)/2: each step multiplies by (1 - h·a)."""
    factors = 1.0 - learning_rate * np.array([a1, a2])
    return factors**steps * np.asarray(p0, dtype=np.float64)


def largest_stable_learning_rate_solution(a1: float, a2: float) -> float:
    """|1 - h·a| < 1 for both curvatures a, i.e. h < 2 / max(a1, a2)."""
    return 2.0 / max(a1, a2)


# --------------------------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------------------------

_CASES = [
    (2.0, 4.0, np.array([-5.0, -2.0]), 0.1, 20),
    (1.0, 10.0, np.array([3.0, 1.0]), 0.15, 7),
    (0.5, 3.0, np.array([-1.0, 2.0]), 0.3, 1),
]


def _check_closed_form_iterate(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    for a1, a2, p0, h, n in _CASES:
        got = np.asarray(answer(a1, a2, p0.copy(), h, n), dtype=np.float64)
        label = f"your p_n for a=({a1}, {a2}), p0={p0.tolist()}, h={h}, n={n}"
        exact = Quadratic.diagonal(a1, a2).exact_flow(p0, [n * h])[0]
        if got.shape == exact.shape and np.allclose(got, exact, rtol=1e-9) and n > 1:
            raise Incorrect(
                f"{label} is the exact flow exp(-n·h·a)·p0: gradient descent's factor per step "
                "is (1 - h·a), not exp(-h·a)."
            )
        if got.shape == exact.shape and np.allclose(
            got, (1.0 + h * np.array([a1, a2])) ** n * p0, rtol=1e-9
        ):
            raise Incorrect(f"{label} grows: the step subtracts h·∇L, so the factor is (1 - h·a).")
        looped = gradient_descent(Quadratic.diagonal(a1, a2), p0, h, n)[-1]
        expect_close(label, got, looped, atol=1e-9 * max(1.0, float(np.abs(looped).max())))
    return "p_n = (1 - h·a)^n · p0, coordinate by coordinate: the same as n steps of the loop."


def _check_largest_stable_learning_rate(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    for a1, a2 in [(2.0, 4.0), (1.0, 10.0), (7.0, 0.5)]:
        got = answer(a1, a2)
        if isinstance(got, bool) or not isinstance(got, (int, float, np.floating)):
            raise Incorrect(f"return a number, got {type(got).__name__}.")
        expected = largest_stable_learning_rate_solution(a1, a2)
        if np.isclose(got, 2.0 / min(a1, a2)):
            raise Incorrect(
                f"for a=({a1}, {a2}) you used the flatter direction: the steeper one "
                "(the larger a) diverges first."
            )
        if np.isclose(got, 1.0 / max(a1, a2)):
            raise Incorrect(
                f"for a=({a1}, {a2}), h = 1/a is where the steep coordinate lands on 0 in one "
                "step; it still converges (oscillating) up to twice that."
            )
        expect_close(f"your largest stable learning rate for a=({a1}, {a2})", got, expected)
    return "gradient descent converges iff h < 2 / (largest curvature); the exact flow always does."


closed_form_iterate = Exercise(
    title="Gradient descent on the quadratic, in closed form",
    checker=_check_closed_form_iterate,
    hint="One step maps x to x - h·a1·x = (1 - h·a1)·x; what do n steps do?",
    solution=closed_form_iterate_solution,
)

largest_stable_learning_rate = Exercise(
    title="The largest stable learning rate",
    checker=_check_largest_stable_learning_rate,
    hint="Gradient descent converges when |1 - h·a| < 1 for every curvature a.",
    solution=largest_stable_learning_rate_solution,
)

__all__ = [
    "closed_form_iterate",
    "closed_form_iterate_solution",
    "largest_stable_learning_rate",
    "largest_stable_learning_rate_solution",
]
