"""Self-checks for the exercises of notebook 01 (gradient descent as the Euler method).

* :data:`closed_form_iterate`: the n-th gradient-descent iterate on a diagonal quadratic,
  without a loop: each coordinate is multiplied by (1 - h·a) per step.
* :data:`largest_stable_learning_rate`: the step size beyond which gradient descent diverges on
  the quadratic, although the exact gradient flow always converges.
* :data:`nesterov_path`: Keras's ``SGD(momentum=μ, nesterov=True)`` predicted from its source as a
  NumPy loop. The notebook shows ``update_step`` but never states the Nesterov update as a loop,
  so the answer has to be read off the code; the check runs ``keras.optimizers.SGD`` itself.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.landscapes import Quadratic, gradient_descent

from collections.abc import Callable
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


def nesterov_path_solution(
    gradient: Callable[[np.ndarray], np.ndarray],
    p0: np.ndarray,
    learning_rate: float,
    momentum: float,
    steps: int,
) -> np.ndarray:
    """The points of ``keras.optimizers.SGD(learning_rate, momentum, nesterov=True)``.

    Keras updates the velocity first (v ← μ·v − η·g, g taken at the current p), then moves p
    by μ·v − η·g with the *new* v: the look-ahead is folded into the update, so the gradient is
    never taken at a shifted point.
    """
    p = np.array(p0, dtype=np.float64)
    velocity = np.zeros_like(p)
    points = [p.copy()]
    for _ in range(steps):
        g = gradient(p)
        velocity = momentum * velocity - learning_rate * g
        p = p + (momentum * velocity - learning_rate * g)
        points.append(p.copy())
    return np.array(points)


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


def _keras_nesterov_points(
    A: np.ndarray, p0: np.ndarray, learning_rate: float, momentum: float, steps: int
) -> np.ndarray:
    """What Keras itself does: SGD(nesterov=True) on a float64 variable, gradient A·p."""
    import keras
    import tensorflow as tf

    point = keras.Variable(np.array(p0, dtype=np.float64), dtype="float64")
    optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, nesterov=True)
    points = [point.numpy()]
    for _ in range(steps):
        optimizer.apply([tf.constant(A @ point.numpy())], [point])
        points.append(point.numpy())
    return np.array(points)


def _nesterov_variants(gradient, p0, h, mu, n) -> dict[str, np.ndarray]:
    """Known misreadings of the update, to name them when an answer matches one."""
    results: dict[str, list[np.ndarray]] = {}
    for form in ("classic", "no gradient term", "look-ahead gradient"):
        p, v = np.array(p0, dtype=np.float64), np.zeros(len(p0))
        points = [p.copy()]
        for _ in range(n):
            if form == "look-ahead gradient":  # Sutskever et al.: g at p + μv, then p + v
                v = mu * v - h * gradient(p + mu * v)
                p = p + v
            elif form == "no gradient term":  # p + μ·v, the look-ahead alone
                v = mu * v - h * gradient(p)
                p = p + mu * v
            else:  # classic momentum, p + v (also what p + μ·v_old − η·g comes to)
                v = mu * v - h * gradient(p)
                p = p + v
            points.append(p.copy())
        results[form] = points
    return {form: np.array(points) for form, points in results.items()}


_NESTEROV_MESSAGES = {
    "classic": "this is classic momentum (p ← p + v; using the velocity from before its "
    "update comes to the same). With nesterov=True Keras adds something else to the variable: "
    "read the branch `if self.nesterov:` again, and note which m it reads.",
    "no gradient term": "your variable moves by μ·v alone; the Nesterov branch adds a "
    "second term to it.",
    "look-ahead gradient": "you take the gradient at the look-ahead point p + μ·v "
    "(Sutskever et al.'s form). Keras never evaluates a gradient there: `update_step` only "
    "receives the gradient at the current variable, and folds the look-ahead into the update.",
}

# (A, p0, learning rate, momentum, steps). Learning rates and momenta are exact in float32:
# Keras rounds both through float32 even for a float64 variable, and the check compares to 1e-12.
_NESTEROV_CASES = [
    (np.diag([2.0, 4.0]), np.array([-5.0, -2.0]), 0.125, 0.75, 12),
    (np.array([[3.0, 1.0], [1.0, 2.0]]), np.array([1.0, -3.0]), 0.0625, 0.875, 9),
]


def _check_nesterov_path(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    for A, p0, h, mu, n in _NESTEROV_CASES:

        def gradient(p, A=A):
            return A @ np.asarray(p, dtype=np.float64)

        label = f"your points for p0={p0.tolist()}, learning_rate={h}, momentum={mu}"
        got = np.asarray(answer(gradient, p0.copy(), h, mu, n), dtype=np.float64)
        if got.shape != (n + 1, 2):
            raise Incorrect(
                f"{label} have shape {got.shape}; return all {n + 1} points (p0 first), one "
                "row each."
            )
        expected = _keras_nesterov_points(A, p0, h, mu, n)
        scale = max(1.0, float(np.abs(expected).max()))
        if np.allclose(got, expected, rtol=0, atol=1e-12 * scale):
            continue
        for form, points in _nesterov_variants(gradient, p0, h, mu, n).items():
            if np.allclose(got, points, rtol=0, atol=1e-12 * scale):
                raise Incorrect(f"{label}: {_NESTEROV_MESSAGES[form]}")
        expect_close(f"{label} (against keras.optimizers.SGD(nesterov=True))", got, expected)
        raise Incorrect(
            f"{label} are close to Keras's but not equal to round-off; compare your update "
            "line by line with update_step."
        )
    return "your loop takes the same steps as keras.optimizers.SGD(momentum=μ, nesterov=True)."


closed_form_iterate = Exercise(
    title="Gradient descent on the quadratic, in closed form",
    checker=_check_closed_form_iterate,
    hint="The two coordinates do not interact. Write one step for x alone: x is multiplied by "
    "a number that depends on h and a1 only. What does repeating that n times give?",
    solution=closed_form_iterate_solution,
)

largest_stable_learning_rate = Exercise(
    title="The largest stable learning rate",
    checker=_check_largest_stable_learning_rate,
    hint="Use your answer to exercise 1: for which h does the factor that multiplies a "
    "coordinate at every step shrink it, whatever its sign? Which coordinate fails first?",
    solution=largest_stable_learning_rate_solution,
)

nesterov_path = Exercise(
    title="Nesterov momentum as Keras runs it",
    checker=_check_nesterov_path,
    hint="Follow the `m is not None` branch of update_step with nesterov=True, one assign at a "
    "time, and keep the velocity m as a second NumPy array that starts at zero. Two questions "
    "decide the answer: where is the gradient taken, and does the variable's update read m "
    "before or after m is reassigned?",
    solution=nesterov_path_solution,
)

__all__ = [
    "closed_form_iterate",
    "closed_form_iterate_solution",
    "largest_stable_learning_rate",
    "largest_stable_learning_rate_solution",
    "nesterov_path",
    "nesterov_path_solution",
]
