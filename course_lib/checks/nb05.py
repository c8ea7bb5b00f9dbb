"""Self-checks for the exercises of notebook 05 (Runge–Kutta optimizers).

* :data:`three_eighths_rule`: write Kutta's 3/8-rule as a :class:`ButcherTableau`.
* :data:`stable_learning_rate`: the largest stable learning rate of a method on a quadratic.
* :data:`error_estimate`: the embedded local-error estimate of one Runge–Kutta step.
* :data:`rk23_adaptive`: Bogacki–Shampine with the adaptive controller, written in NumPy, on
  Himmelblau's function (a loss the lessons do not use), checked against SciPy's ``RK23``.
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


def himmelblau_gradient(p: np.ndarray) -> np.ndarray:
    """∇L of Himmelblau's function L(x, y) = (x² + y − 11)² + (x + y² − 7)² (four minima)."""
    x, y = np.asarray(p, dtype=np.float64)
    first, second = x**2 + y - 11.0, x + y**2 - 7.0
    return np.array([4.0 * x * first + 2.0 * second, 2.0 * first + 4.0 * y * second])


def rk23_adaptive_solution(
    gradient, p0, first_step: float, steps: int, rtol: float = 1e-3, atol: float = 1e-6
) -> tuple[np.ndarray, list[float]]:
    """``steps`` accepted Bogacki–Shampine steps of the gradient flow from ``p0``, with the
    controller of notebook 05 §6 (SciPy's): returns the last point and the accepted step sizes."""
    t = get_tableau("bogacki_shampine")
    a = np.array(t.a)
    error_weights = np.array(t.error_weights)
    exponent = -1.0 / (t.embedded_order + 1)  # the error estimate is of order 2, not 3
    p = np.asarray(p0, dtype=np.float64)
    h, accepted = float(first_step), []
    while len(accepted) < steps:
        rejected = False
        while True:
            g: list[np.ndarray] = []
            for i in range(t.stages):
                g.append(gradient(p - h * sum((a[i, j] * g[j] for j in range(i)), 0.0 * p)))
            p_new = p - h * sum(b_i * g_i for b_i, g_i in zip(t.b, g, strict=True))
            error = -h * sum(w * g_i for w, g_i in zip(error_weights, g, strict=True))
            scale = atol + rtol * np.maximum(np.abs(p), np.abs(p_new))
            norm = float(np.sqrt(np.mean((error / scale) ** 2)))
            if norm < 1.0:
                factor = 10.0 if norm == 0.0 else min(10.0, 0.9 * norm**exponent)
                if rejected:
                    factor = min(1.0, factor)  # no growth right after a rejection
                accepted.append(h)
                p, h = p_new, h * factor
                break
            h *= max(0.2, 0.9 * norm**exponent)  # retry the same step, smaller
            rejected = True
    return p, accepted


def scipy_rk23_steps(
    gradient, p0, first_step: float, steps: int, rtol: float = 1e-3, atol: float = 1e-6
) -> tuple[np.ndarray, list[float]]:
    """SciPy's ``RK23`` on dp/dt = −∇L(p): the reference the exercise is checked against."""
    from scipy.integrate import RK23

    solver = RK23(
        lambda _, p: -gradient(p),
        0.0,
        np.asarray(p0, dtype=np.float64),
        t_bound=np.inf,
        first_step=first_step,
        rtol=rtol,
        atol=atol,
    )
    sizes = []
    for _ in range(steps):
        before = solver.t
        solver.step()
        sizes.append(solver.t - before)
    return solver.y, sizes


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


#: Settings the RK23 check runs: (start, first step, accepted steps, rtol, atol). The first step
#: is too large on purpose, so the controller must reject and retry.
RK23_CASES = (
    ((0.0, 0.0), 0.1, 25, 1e-3, 1e-6),
    ((-1.0, 3.5), 0.02, 30, 1e-4, 1e-7),
)


def _as_steps(result: Any) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise Incorrect("return a pair (last point, list of accepted step sizes).")
    point = np.asarray(result[0], dtype=np.float64)
    sizes = np.asarray(result[1], dtype=np.float64)
    if point.shape != (2,) or sizes.ndim != 1:
        raise Incorrect(
            f"return (a point of shape (2,), a 1-D list of step sizes), got shapes "
            f"{point.shape} and {sizes.shape}."
        )
    return point, sizes


def _check_rk23_adaptive(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    for p0, first_step, steps, rtol, atol in RK23_CASES:
        point, sizes = _as_steps(
            answer(himmelblau_gradient, np.array(p0), first_step, steps, rtol, atol)
        )
        want_point, want_sizes = scipy_rk23_steps(
            himmelblau_gradient, p0, first_step, steps, rtol, atol
        )
        if sizes.size != steps:
            raise Incorrect(
                f"from {p0} you returned {sizes.size} step sizes for {steps} accepted steps: "
                "record a step only when it is accepted."
            )
        if not np.allclose(sizes, want_sizes, rtol=1e-6, atol=0):
            first = int(np.argmax(~np.isclose(sizes, want_sizes, rtol=1e-6, atol=0)))
            raise Incorrect(
                f"from {p0} (first step {first_step}, rtol {rtol}), accepted step {first} is "
                f"{sizes[first]:.6g} but SciPy's RK23 takes {want_sizes[first]:.6g}"
                + (" (the steps before agree)." if first else ".")
                + _rk23_diagnosis(p0, first_step, steps, rtol, atol, sizes)
            )
        if not np.allclose(point, want_point, rtol=0, atol=1e-7):
            raise Incorrect(
                f"from {p0} your last point {np.round(point, 6)} differs from SciPy's "
                f"{np.round(want_point, 6)}."
                + _rk23_diagnosis(p0, first_step, steps, rtol, atol, sizes, point)
            )
    return "your controller takes exactly SciPy's RK23 steps on Himmelblau's function."


def _rk23_diagnosis(
    p0, first_step, steps, rtol, atol, sizes: np.ndarray, point: np.ndarray | None = None
) -> str:
    """Name a known slip when the learner's step sizes equal that slip's."""
    slips = {
        " The controller's exponent is −1/(q̂+1) with q̂ the order of the error estimate "
        "(the embedded order, 2 here), not the method's order 3.": {"exponent": -1.0 / 4.0},
        " A rejected try must be retried on the same step with a smaller h; you moved on.": {
            "retry": False
        },
        " Step with the third-order weights b; b̂ only serves the error estimate.": {
            "low_order": True
        },
    }
    for message, change in slips.items():
        wrong_point, wrong = _rk23_variant(p0, first_step, steps, rtol, atol, **change)
        same_steps = len(wrong) == sizes.size and np.allclose(wrong, sizes, rtol=1e-6, atol=0)
        if same_steps and (point is None or np.allclose(point, wrong_point, atol=1e-7)):
            return message
    return " Compare your error norm and your step-size factor with §6."


def _rk23_variant(p0, first_step, steps, rtol, atol, exponent=None, retry=True, low_order=False):
    """The solution with one known slip (for the checker's diagnosis)."""
    t = get_tableau("bogacki_shampine")
    a = np.array(t.a)
    error_weights = np.array(t.error_weights)
    exponent = -1.0 / (t.embedded_order + 1) if exponent is None else exponent
    p = np.asarray(p0, dtype=np.float64)
    h, accepted, rejected = float(first_step), [], False
    while len(accepted) < steps:
        g: list[np.ndarray] = []
        for i in range(t.stages):
            g.append(himmelblau_gradient(p - h * sum((a[i, j] * g[j] for j in range(i)), 0.0 * p)))
        p_new = p - h * sum(b_i * g_i for b_i, g_i in zip(t.b, g, strict=True))
        error = -h * sum(w * g_i for w, g_i in zip(error_weights, g, strict=True))
        scale = atol + rtol * np.maximum(np.abs(p), np.abs(p_new))
        norm = float(np.sqrt(np.mean((error / scale) ** 2)))
        if low_order:
            p_new = p - h * sum(b_i * g_i for b_i, g_i in zip(t.b_hat, g, strict=True))
        if norm < 1.0 or not retry:
            factor = 10.0 if norm == 0.0 else min(10.0, 0.9 * norm**exponent)
            factor = min(1.0, factor) if rejected else factor
            accepted.append(h)
            p, h, rejected = p_new, h * factor, False
        else:
            h *= max(0.2, 0.9 * norm**exponent)
            rejected = True
    return p, accepted


three_eighths_rule = Exercise(
    title="Write Kutta's 3/8-rule as a ButcherTableau",
    checker=_check_three_eighths,
    hint=(
        "ButcherTableau takes name, c, a, b and order. The rows of A in the text are only the "
        "entries below the diagonal: a must be the full 4×4 matrix, zeros on and above it."
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
        "p_new and p̂_new come from the same stage gradients; only the weights that combine "
        "them differ (b and b_hat). Write both as p minus h times a weighted sum, and subtract."
    ),
    solution=error_estimate_solution,
)

rk23_adaptive = Exercise(
    title="Bogacki–Shampine (RK23) with an adaptive step, on Himmelblau's function",
    checker=_check_rk23_adaptive,
    hint=(
        "One try is §2's step with TABLEAUX['bogacki_shampine'] plus exercise 3's error "
        "estimate from the same stages. Then the controller of §6: an RMS norm, a test against 1, "
        "a factor from the norm. Two questions decide whether you match SciPy: which order goes "
        "into the exponent, and what happens to the step size and to p when a try fails?"
    ),
    solution=rk23_adaptive_solution,
)

__all__ = ["error_estimate", "rk23_adaptive", "stable_learning_rate", "three_eighths_rule"]
