"""Self-checks for the exercises of notebook 01 (gradient descent as the Euler method).

* :data:`closed_form_iterate`: the n-th gradient-descent iterate on a *tilted* quadratic
  ½ pᵀAp (A symmetric, not diagonal), without a loop over the steps. The notebook shows only the
  diagonal bowl, where each coordinate has its own factor; here the coordinates interact, so the
  learner has to see one step as a matrix.
* :data:`fastest_learning_rate`: the constant learning rate that makes gradient descent on a
  diagonal quadratic converge fastest. The notebook shows where it oscillates and where it
  diverges; the best rate in between has to be derived from the per-step factors.
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
    A: np.ndarray, p0: np.ndarray, learning_rate: float, steps: int
) -> np.ndarray:
    """p_n of gradient descent on L = ½ pᵀAp: each step multiplies p by the matrix I − h·A."""
    A = np.asarray(A, dtype=np.float64)
    step = np.eye(len(A)) - learning_rate * A
    return np.linalg.matrix_power(step, steps) @ np.asarray(p0, dtype=np.float64)


def fastest_learning_rate_solution(a1: float, a2: float) -> float:
    """The h that minimises the slower factor max(|1 − h·a1|, |1 − h·a2|): 2 / (a1 + a2).

    Below it the flat direction's factor 1 − h·a_min is the larger one and shrinks as h grows;
    above it the steep direction's |1 − h·a_max| is, and grows. They meet where
    1 − h·a_min = h·a_max − 1.
    """
    return 2.0 / (a1 + a2)


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

# (A, p0, learning rate, steps): tilted bowls (the coordinates interact) and the notebook's own.
_CASES = [
    (np.array([[3.0, 1.0], [1.0, 2.0]]), np.array([1.5, -2.0]), 0.2, 12),
    (np.array([[5.0, -2.0], [-2.0, 1.0]]), np.array([1.0, 1.0]), 0.15, 7),
    (np.diag([2.0, 4.0]), np.array([-5.0, -2.0]), 0.1, 20),
    (np.array([[1.0, 0.5], [0.5, 3.0]]), np.array([-1.0, 2.0]), 0.3, 1),
]


def _closed_form_misreadings(A, p0, h, n) -> dict[str, np.ndarray]:
    """Known wrong answers, to name the mistake when an answer matches one."""
    identity = np.eye(len(A))
    eigenvalues, vectors = np.linalg.eigh(A)
    return {
        "entry by entry": (identity - h * A) ** n @ p0,
        "entry by entry, 1 - h·A": (1.0 - h * A) ** n @ p0,
        "exact flow": vectors @ (np.exp(-n * h * eigenvalues) * (vectors.T @ p0)),
        "diagonal only": (1.0 - h * np.diag(A)) ** n * p0,
        "uphill": np.linalg.matrix_power(identity + h * A, n) @ p0,
    }


_CLOSED_FORM_MESSAGES = {
    "entry by entry": "`**` on a NumPy array raises every entry to the power n; n steps multiply "
    "p by the matrix n times, which is a matrix power.",
    "entry by entry, 1 - h·A": "`**` on a NumPy array raises every entry to the power n, and "
    "1 - h·A subtracts from every entry (the off-diagonal ones too); one step multiplies p by a "
    "matrix, and n steps by its matrix power.",
    "exact flow": "this is the exact flow exp(-n·h·A)·p0: gradient descent takes n Euler steps, "
    "each with a factor that is only the start of that exponential.",
    "diagonal only": "you used only A's diagonal: its off-diagonal entries couple x and y, so "
    "the coordinates no longer move independently.",
    "uphill": "your iterate grows: the step subtracts h·∇L.",
}


def _check_closed_form_iterate(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    for A, p0, h, n in _CASES:
        got = np.asarray(answer(A.copy(), p0.copy(), h, n), dtype=np.float64)
        label = f"your p_n for A={A.tolist()}, p0={p0.tolist()}, h={h}, n={n}"
        looped = gradient_descent(Quadratic(A), p0, h, n)[-1]
        tolerance = 1e-9 * max(1.0, float(np.abs(looped).max()))
        if got.shape == looped.shape and np.allclose(got, looped, rtol=0, atol=tolerance):
            continue
        for form, wrong in _closed_form_misreadings(A, p0, h, n).items():
            if got.shape == wrong.shape and np.allclose(got, wrong, rtol=1e-9, atol=1e-12):
                raise Incorrect(f"{label}: {_CLOSED_FORM_MESSAGES[form]}")
        expect_close(label + " (against n steps of the loop)", got, looped, atol=tolerance)
    return "p_n = (I - h·A)^n · p0, a matrix power: the same as n steps of the loop."


def _slower_factor(h: float, a1: float, a2: float) -> float:
    return max(abs(1.0 - h * a1), abs(1.0 - h * a2))


def _fastest_rate_message(got: float, a1: float, a2: float) -> str | None:
    """Say which known wrong rule ``got`` follows, if any."""
    steep, flat = max(a1, a2), min(a1, a2)
    rules = [
        (
            1.0 / steep,
            "with h = 1/(larger curvature) the steep coordinate lands on 0 in one step, but the "
            "flat one then shrinks only by 1 - h·a_flat per step: a larger h helps it, up to the "
            "point where the steep one's factor grows past it again.",
        ),
        (
            2.0 / steep,
            "at h = 2/(larger curvature) the steep coordinate's factor is -1: it never shrinks. "
            "That is the edge of divergence, not the fastest rate.",
        ),
        (
            1.0 / flat,
            "with h = 1/(smaller curvature) the flat coordinate lands on 0, but the steep one's "
            "factor 1 - h·a_steep is then far from 0 (or below -1).",
        ),
        (2.0 / flat, "at h = 2/(smaller curvature) the steep coordinate diverges."),
    ]
    for rule, message in rules:
        if np.isclose(got, rule):
            return message
    return None


def _check_fastest_learning_rate(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    # (1, 10) first: there the four wrong rules below give four different rates.
    for a1, a2 in [(1.0, 10.0), (7.0, 0.5), (2.0, 4.0), (3.0, 3.0)]:
        got = answer(a1, a2)
        if isinstance(got, bool) or not isinstance(got, (int, float, np.floating)):
            raise Incorrect(f"return a number, got {type(got).__name__}.")
        expected = fastest_learning_rate_solution(a1, a2)
        if np.isclose(got, expected, rtol=1e-9, atol=0):
            continue
        label = f"for a=({a1}, {a2}) your h = {float(got):.4g}"
        message = _fastest_rate_message(float(got), a1, a2)
        if message is not None:
            raise Incorrect(f"{label}: {message}")
        raise Incorrect(
            f"{label} makes the slower coordinate shrink by a factor "
            f"{_slower_factor(float(got), a1, a2):.4g} per step; another h gets it down to "
            f"{_slower_factor(expected, a1, a2):.4g}."
        )
    return (
        "h = 2/(a1 + a2): both coordinates then shrink by the same factor, "
        "(a_max - a_min)/(a_max + a_min), the best a constant learning rate can do."
    )


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
    title="Gradient descent on a tilted bowl, in closed form",
    checker=_check_closed_form_iterate,
    hint="Write one step p ← p - h·∇L(p) with ∇L(p) = A·p as one matrix times p. What do n "
    "steps multiply p by? Careful: NumPy's ** acts on each entry of an array separately.",
    solution=closed_form_iterate_solution,
)

fastest_learning_rate = Exercise(
    title="The fastest constant learning rate",
    checker=_check_fastest_learning_rate,
    hint="Sketch |1 - h·a1| and |1 - h·a2| against h on one plot. Gradient descent converges "
    "as fast as the larger of the two lets it: for which h is the larger one smallest?",
    solution=fastest_learning_rate_solution,
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
    "fastest_learning_rate",
    "fastest_learning_rate_solution",
    "nesterov_path",
    "nesterov_path_solution",
]
