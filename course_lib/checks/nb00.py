"""Self-check for the warm-up exercise in notebooks/00_index.ipynb.

It shows how the course's exercises work: write the answer in the skeleton, let ``use`` check it
and hand it to the cells below (the library's ``euler_step`` until it passes), and ask for
``hint()`` or ``solution()`` when stuck; ``check`` alone gives the verdict without handing
anything on.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.landscapes import Quadratic

import numpy as np


def euler_step(p: np.ndarray, gradient: np.ndarray, step_size: float) -> np.ndarray:
    """One Euler step of the gradient flow dp/dt = -∇L(p): plain gradient descent."""
    return p - step_size * gradient


def _check_euler_step(answer) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    bowl = Quadratic.diagonal()
    p = np.array([-5.0, -2.0])
    got = answer(p, bowl.gradient(p), 0.1)
    expected = euler_step(p, bowl.gradient(p), 0.1)
    if np.allclose(got, p + 0.1 * bowl.gradient(p)):
        raise Incorrect("your step goes uphill: gradient descent subtracts the gradient.")
    expect_close("euler_step(p, ∇L(p), 0.1)", got, expected, atol=1e-12)
    return "one Euler step of the gradient flow is exactly one step of gradient descent."


euler = Exercise(
    title="Write one Euler step of the gradient flow",
    checker=_check_euler_step,
    hint="dp/dt = -∇L(p); Euler replaces dp/dt by (p_next - p) / step_size.",
    solution=euler_step,
)
