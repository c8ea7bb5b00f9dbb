"""Self-checks for notebook 05 (Runge–Kutta optimizers): the stage loop, and four for transfer.

* :data:`stage_loop`: the stage loop of the lesson's general-tableau ``train_step``, which the
  learner writes: ``stages`` (each trial point p − h·Σ_j a_ij·g_j from the copy of p, its gradient
  on the same batch, then p restored) and ``combine`` (Σ_i w_i·g_i, variable by variable). Called
  directly on notebook 04's quadratic, whose gradient Ap tells where each stage looked, so a
  wrong trial point is named (built from the previous trial point, along the last gradient only,
  with the previous stage's row of A, with the a_ij paired to the wrong stages, not moved at
  all); then trained in ``fit`` with Dormand–Prince on a small tanh network against the library.

The exercises at the end ask for transfer:

* :data:`second_order_tableau`: the two-stage second-order method with its second stage at c₂,
  derived from the order conditions (Heun, the midpoint rule and Ralston are three members).
* :data:`stability_limit`: the real stability limit of any explicit tableau, found from its
  own step on L = ½p², without the library's :func:`~course_lib.tableaux.real_stability_limit`.
* :data:`heun_euler`: the simplest embedded pair, Heun with Euler as its error estimate.
* :data:`rk23_adaptive`: Bogacki–Shampine with the adaptive controller, in NumPy, on Himmelblau's
  function (a loss the lessons do not use), re-using the "first same as last" stage as an ODE
  solver may: checked against SciPy's ``RK23``, step sizes and gradient evaluations.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close, heun_problem
from course_lib.data import quadratic_regression_data
from course_lib.environment import no_retracing_warning
from course_lib.landscapes import Rosenbrock, runge_kutta_step
from course_lib.tableaux import TABLEAUX, ButcherTableau, get_tableau, real_stability_limit

import functools
from typing import Any

import keras
import numpy as np
import tensorflow as tf

# --------------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------------


class MyRungeKuttaModel(keras.Model):
    """A functional model whose train_step runs the stages of a Butcher tableau.

    The lesson's class, its stage loop filled in: ``stages`` builds every trial point from the
    copy of p (never from where the previous stage left the weights), takes its gradient on the
    same batch and puts p back; ``combine`` weighs the stages, variable by variable.
    """

    def __init__(self, *args, tableau="rk4", **kwargs):
        super().__init__(*args, **kwargs)
        self.tableau = TABLEAUX[tableau]

    def gradient_at(self, x, y):
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        return tape.gradient(loss, self.trainable_variables), y_pred, loss

    def stages(self, x, y, start, g1, h, count):
        """g_1 .. g_count on one batch, stage i at p - h·Σ_j a_ij g_j; then p is restored."""
        variables, g = self.trainable_variables, [g1]
        for i in range(1, count):
            row = self.tableau.a[i]
            for k, (v, p) in enumerate(zip(variables, start, strict=True)):
                v.assign(p - h * sum(row[j] * g[j][k] for j in range(i) if row[j] != 0))
            g.append(self.gradient_at(x, y)[0])  # the same batch at every stage
        for v, p in zip(variables, start, strict=True):
            v.assign(p)  # back to p
        return g

    def combine(self, weights, g):
        """Σ_i w_i·g_i for each variable; ``weights`` may be longer than ``g``."""
        pairs = [(w, g_i) for w, g_i in zip(weights[: len(g)], g, strict=True) if w != 0]
        return [sum(w * g_i[k] for w, g_i in pairs) for k in range(len(g[0]))]

    def train_step(self, data):
        x, y = data[0], data[1]
        start = [tf.identity(v.value) for v in self.trainable_variables]  # copies of p
        g1, y_pred, loss = self.gradient_at(x, y)
        h = tf.cast(self.optimizer.learning_rate, start[0].dtype)
        g = self.stages(x, y, start, g1, h, self.tableau.stages_needed())
        self.optimizer.apply(self.combine(self.tableau.b, g), self.trainable_variables)
        for metric in self.metrics:  # loss and metrics at the start point p
            if metric.name == "loss":
                metric.update_state(loss, sample_weight=tf.shape(x)[0])  # as fit: by batch size
        return self.compute_metrics(x, y, y_pred)


def second_order_tableau_solution(c2: float) -> ButcherTableau:
    """Two stages, order 2, the second stage at time c₂·h: Σ b = 1 and b₂·c₂ = ½."""
    b2 = 1.0 / (2.0 * c2)
    return ButcherTableau(
        name=f"second order, c2 = {c2:g}",
        c=(0.0, c2),
        a=((0.0, 0.0), (c2, 0.0)),
        b=(1.0 - b2, b2),
        order=2,
    )


def stability_limit_solution(tableau: str | ButcherTableau) -> float:
    """The largest x with |R(−y)| ≤ 1 for all y in [0, x], R(−x) being one step's factor on
    L = ½p² (gradient p) with step x: found by scanning for the first growth, then bisecting."""
    tableau = get_tableau(tableau)

    def factor(x: float) -> float:  # one step of size x from p = 1
        return float(runge_kutta_step(lambda p: p, np.array([1.0]), tableau, x)[0])

    grid = np.arange(1, 2001) * 0.005  # up to x = 10
    first = next(x for x in grid if abs(factor(x)) > 1.0)
    low, high = first - 0.005, first
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if abs(factor(middle)) <= 1.0 else (low, middle)
    return low


def heun_euler_solution() -> ButcherTableau:
    """Heun (order 2) with Euler (order 1) from the same first stage as its error estimate."""
    return ButcherTableau(
        name="heun_euler",
        c=(0.0, 1.0),
        a=((0.0, 0.0), (1.0, 0.0)),
        b=(0.5, 0.5),
        order=2,
        b_hat=(1.0, 0.0),
        embedded_order=1,
    )


def himmelblau_gradient(p: np.ndarray) -> np.ndarray:
    """∇L of Himmelblau's function L(x, y) = (x² + y − 11)² + (x + y² − 7)² (four minima)."""
    x, y = np.asarray(p, dtype=np.float64)
    first, second = x**2 + y - 11.0, x + y**2 - 7.0
    return np.array([4.0 * x * first + 2.0 * second, 2.0 * first + 4.0 * y * second])


def rk23_adaptive_solution(
    gradient, p0, first_step: float, steps: int, rtol: float = 1e-3, atol: float = 1e-6
) -> tuple[np.ndarray, list[float]]:
    """``steps`` accepted Bogacki–Shampine steps of the gradient flow from ``p0``, with the
    controller of notebook 05 §6 (SciPy's): returns the last point and the accepted step sizes.

    One function throughout (no mini-batches), so the stages SciPy re-uses are re-used: stage 1
    is computed once per step (a retry starts from the same point), and the fourth stage of an
    accepted step, taken at the new point, is the next step's first ("first same as last").
    """
    t = get_tableau("bogacki_shampine")
    a = np.array(t.a)
    error_weights = np.array(t.error_weights)
    exponent = -1.0 / (t.embedded_order + 1)  # the error estimate is of order 2, not 3
    p = np.asarray(p0, dtype=np.float64)
    g_start = gradient(p)
    h, accepted = float(first_step), []
    while len(accepted) < steps:
        rejected = False
        while True:
            g: list[np.ndarray] = [g_start]
            for i in range(1, t.stages):  # the last stage is at p_new: its row of A is b
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
                p, h, g_start = p_new, h * factor, g[-1]  # first same as last
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


def scipy_rk23_evaluations(gradient, p0, first_step: float, steps: int, rtol, atol) -> int:
    """How many times SciPy's ``RK23`` evaluates the gradient for ``steps`` accepted steps."""
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
    for _ in range(steps):
        solver.step()
    return solver.nfev


# --------------------------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------------------------


# The stage loop --------------------------------------------------------------------------------

#: The step size of the stage checks, and the tableaux whose stages they call (with how many).
STAGE_RATE = 0.1
STAGE_CASES = (("kutta3", 3), ("bogacki_shampine", 4), ("dormand_prince", 7))


def _quadratic_model(answer: Any, tableau: str) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """The learner's class on notebook 04's quadratic: its gradient Ap says where it was taken."""
    x, y = quadratic_regression_data(heun_problem.A)
    inputs = keras.Input((2,))
    model = answer(
        inputs=inputs, outputs=keras.layers.Dense(1, use_bias=False)(inputs), tableau=tableau
    )
    if not isinstance(model, keras.Model):
        raise Incorrect(f"your class must make a keras.Model, got {type(model).__name__}.")
    model.compile(optimizer=keras.optimizers.SGD(STAGE_RATE), loss="mse")
    model.trainable_variables[0].assign(heun_problem.START[:, None].astype("float32"))
    return model, x, y


def _where_taken(gradients: list) -> np.ndarray:
    """The point at which a stage's gradient A·q of the quadratic was taken: q = A⁻¹·g."""
    return np.linalg.solve(heun_problem.A, np.asarray(gradients[0], np.float64)[:, 0])


def _stage_mistakes(i: int, a: np.ndarray, c: tuple, points: list, steps: list, h: float):
    """Where known mistakes put stage ``i`` (from 0): message → point. ``steps`` are g_j = A·q_j."""
    p = points[0]

    def moved(row, gradients=steps):
        return p - h * sum((row[j] * gradients[j] for j in range(i)), np.zeros(2))

    reversed_steps = steps[:i][::-1]
    return {
        "was taken at p itself: the weights never moved to the trial point. Assign them before "
        "taking the gradient, with stage i's own row of A, self.tableau.a[i].": p,
        "was taken where the previous stage looked: assign the new trial point before taking "
        "the gradient.": points[i - 1],
        "was taken at a point built from the previous trial point: every trial point is "
        "p − h·Σ_j a_ij·g_j, measured from p (the copies in `start`), not from where the "
        "previous stage left the weights.": points[i - 1]
        - h * sum((a[i, j] * steps[j] for j in range(i)), np.zeros(2)),
        "looked along the last gradient only, p − h·c_i·g_(i−1): a trial point combines every "
        "earlier stage, each g_j weighted by a_ij from row i of A.": p - h * c[i] * steps[i - 1],
        "used the previous stage's row of A: stage i (counted from 0, as in the loop) uses row "
        "self.tableau.a[i].": moved(a[i - 1]),
        "paired row i's coefficients with the wrong stages: a_ij multiplies g_j, the gradient "
        "of stage j.": moved(a[i], reversed_steps),
    }


def _check_stages(answer: Any, name: str, count: int) -> None:
    """Call ``stages`` eagerly and judge each stage's point, the count and the restore."""
    model, x, y = _quadratic_model(answer, name)
    tableau = get_tableau(name)
    a = np.array(tableau.a, dtype=np.float64)
    variables = model.trainable_variables
    start = [tf.identity(v.value) for v in variables]
    g1, _, _ = model.gradient_at(x, y)
    g = model.stages(x, y, start, g1, tf.constant(STAGE_RATE, "float32"), count)
    label = f"with {name} and count={count}"
    if not isinstance(g, list | tuple) or len(g) != count:
        got = len(g) if isinstance(g, list | tuple) else type(g).__name__
        raise Incorrect(
            f"{label}, stages returned {got} stage gradients: return exactly `count`, g1 "
            "included (the adaptive step of §6 asks for every stage, the fixed step for "
            "stages_needed())."
        )
    after = variables[0].numpy()[:, 0].astype(np.float64)
    p = heun_problem.START
    points, steps = [p], [heun_problem.A @ p]
    for i in range(1, count):
        point = _where_taken(g[i])
        expected = p - STAGE_RATE * sum((a[i, j] * steps[j] for j in range(i)), np.zeros(2))
        if not np.allclose(point, expected, rtol=1e-4, atol=1e-5):
            where = f"{label}, the gradient of stage {i + 1} (index {i} in the loop)"
            mistakes = _stage_mistakes(i, a, tableau.c, points, steps, STAGE_RATE)
            for message, wrong in mistakes.items():
                if np.allclose(point, wrong, rtol=1e-4, atol=1e-5):
                    raise Incorrect(f"{where} {message}")
            raise Incorrect(
                f"{where} was taken at {np.round(point, 5)}; the tableau puts it at "
                f"p − h·Σ_j a_ij·g_j = {np.round(expected, 5)}."
            )
        points.append(point)
        steps.append(heun_problem.A @ point)
    if not np.allclose(after, p, rtol=0, atol=1e-6):
        raise Incorrect(
            f"{label}, after stages() the weights are {np.round(after, 5)}, not p = {p}: put "
            "them back from `start` after the last stage, so that the optimizer steps from p."
        )


def _check_combine(answer: Any) -> None:
    """``combine`` on made-up stages: the weights it is given, variable by variable."""
    model, _, _ = _quadratic_model(answer, "bogacki_shampine")
    rng = np.random.default_rng(7)
    g = [
        [tf.constant(rng.normal(size=shape), "float32") for shape in ((2, 1), (3,))] for _ in "abc"
    ]
    for weights in ((0.25, -1.5, 0.0, 2.0), model.tableau.error_weights):
        got = model.combine(weights, g)
        expected = [
            sum(w * np.asarray(stage[k]) for w, stage in zip(weights, g, strict=False))
            for k in range(2)
        ]
        label = f"combine({tuple(round(w, 4) for w in weights)}, three stages)"
        if not isinstance(got, list | tuple) or len(got) != 2:
            raise Incorrect(f"{label} must return one tensor per variable (2 here), got {got!r}.")
        mean = [sum(np.asarray(stage[k]) for stage in g) / len(g) for k in range(2)]
        if all(np.allclose(a, b, atol=1e-6) for a, b in zip(got, mean, strict=True)):
            raise Incorrect(
                f"{label} weighs every stage equally: weight stage i by weights[i] (train_step "
                "passes the tableau's b, §6's error estimate b − b̂)."
            )
        own_b = [
            sum(w * np.asarray(stage[k]) for w, stage in zip(model.tableau.b, g, strict=False))
            for k in range(2)
        ]
        if all(np.allclose(a, b, atol=1e-6) for a, b in zip(got, own_b, strict=True)):
            raise Incorrect(
                f"{label} used the tableau's b, not the weights it was given: §6's adaptive step "
                "calls combine with other weights (b − b̂)."
            )
        for k, (a, b) in enumerate(zip(got, expected, strict=True)):
            expect_close(f"{label}, variable {k} (Σ_i weights[i]·g_i)", a, b, atol=1e-6)


def _tiny_network_weights(model_class: Any, **settings: Any) -> list[np.ndarray]:
    """Two full-batch steps of a 3-4-1 tanh network with SGD(0.3), compiled as fit compiles."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = np.sin(x.sum(axis=1, keepdims=True)).astype("float32")
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="tanh")(inputs)
    model = model_class(inputs=inputs, outputs=keras.layers.Dense(1)(hidden), **settings)
    model.compile(optimizer=keras.optimizers.SGD(0.3), loss="mse")
    with no_retracing_warning():
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return [v.numpy() for v in model.trainable_variables]


@functools.cache
def _library_dormand_prince() -> tuple[np.ndarray, ...]:
    from course_lib.runge_kutta import RungeKuttaModel

    keras.backend.clear_session()
    return tuple(_tiny_network_weights(RungeKuttaModel, tableau="dormand_prince"))


def _check_stage_loop(answer: Any) -> str:
    if not (isinstance(answer, type) and issubclass(answer, keras.Model)):
        raise Incorrect(
            f"pass your class (a keras.Model subclass) itself, got {type(answer).__name__}."
        )
    for name, count in STAGE_CASES:
        _check_stages(answer, name, count)
    _check_combine(answer)
    expected = _library_dormand_prince()
    keras.backend.clear_session()
    got = _tiny_network_weights(answer, tableau="dormand_prince")
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        expect_close(
            f"in fit, Dormand–Prince on a small tanh network, weight {index} after 2 steps "
            "(against the library's RungeKuttaModel)",
            a,
            b,
            atol=1e-5,
        )
    return (
        "every stage of Kutta's, Bogacki–Shampine's and Dormand–Prince's tableaux looks where "
        "its row of A says, p comes back, combine weighs what it is given, and in fit your step "
        "equals the library's."
    )


#: Where the second stage sits in the tableaux the first check builds (½: midpoint, 1: Heun,
#: ⅔: Ralston, and two the lessons do not name).
C2_CASES = (0.5, 1.0, 2.0 / 3.0, 0.25, 0.8)


def _check_second_order(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    for c2 in C2_CASES:
        got = answer(c2)
        if not isinstance(got, ButcherTableau):
            raise Incorrect(
                f"return a ButcherTableau (from course_lib.tableaux), got {type(got).__name__}."
            )
        expected = second_order_tableau_solution(c2)
        if got.stages != 2:
            raise Incorrect(f"the method has two stages; for c₂ = {c2:g} yours has {got.stages}.")
        if not np.isclose(got.a[1][0], c2, atol=1e-12):
            raise Incorrect(
                f"for c₂ = {c2:g} you set a₂₁ = {got.a[1][0]:g}: the second stage looks at time "
                "c₂·h along the first slope, so a₂₁ = c₂."
            )
        expect_close(f"c for c₂ = {c2:g}", got.c, expected.c, atol=1e-12)
        expect_close(f"b for c₂ = {c2:g}", got.b, expected.b, atol=1e-12)
        if got.order != 2:
            raise Incorrect(f"the method is of order 2, your tableau says order={got.order}.")
    return "your b solves Σ b = 1 and b₂·c₂ = ½ for every c₂: Heun, midpoint and Ralston included."


#: Tableaux whose stability limit the second check asks for (the library's as reference).
STABILITY_CASES = ("euler", "heun", "kutta3", "rk4", "bogacki_shampine", "dormand_prince")


def _taylor_limit(order: int) -> float:
    """The stability limit if R(z) were the Taylor polynomial of e^z to the method's order."""
    series = np.polynomial.Polynomial(
        [(-1.0) ** k / np.prod(range(1, k + 1)) for k in range(order + 1)]
    )
    roots = sorted(r.real for r in ((series - 1) * (series + 1)).roots() if abs(r.imag) < 1e-9)
    return next(r for r in roots if r > 1e-9)


def _check_stability_limit(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    for name in STABILITY_CASES:
        got = answer(get_tableau(name))
        if not np.isscalar(got) and np.ndim(got) != 0:
            raise Incorrect(f"return one number for {name!r}, got {got!r}.")
        got, expected = float(got), real_stability_limit(name)
        if abs(got - expected) < 1e-6:
            continue
        if name != "euler" and abs(got - 2.0) < 1e-6:
            raise Incorrect(
                f"for {name!r} you returned 2, gradient descent's limit: find where this "
                "method's own step starts to grow."
            )
        taylor = _taylor_limit(get_tableau(name).order)
        if abs(got - taylor) < 1e-6:
            raise Incorrect(
                f"for {name!r} you used the Taylor polynomial of e^(−x) to order "
                f"{get_tableau(name).order}; that is R only when the method has as many stages "
                "as its order. Take R from the tableau's own step."
            )
        if abs(got - expected) < 0.05:
            raise Incorrect(
                f"for {name!r} you found {got:.4f}, close to {expected:.6f}: narrow the boundary "
                "down (bisection) to within 1e-6."
            )
        raise Incorrect(f"the stability limit of {name!r} is {expected:.4f}, you found {got:.4f}.")
    return "your limits match the library's for every tableau, Dormand–Prince's 3.307 included."


def _check_heun_euler(answer: Any) -> str:
    if callable(answer) and not isinstance(answer, ButcherTableau):
        answer = answer()  # the notebook passes a function that builds the tableau
    if not isinstance(answer, ButcherTableau):
        raise Incorrect(
            f"return a ButcherTableau (from course_lib.tableaux), got {type(answer).__name__}."
        )
    expected = heun_euler_solution()
    if answer.b_hat is None:
        raise Incorrect("an embedded pair needs b_hat and embedded_order: the Euler weights.")
    if np.allclose(answer.b, expected.b_hat) and np.allclose(answer.b_hat, expected.b):
        raise Incorrect(
            "you step with Euler and estimate with Heun: step with the higher order, b = Heun's; "
            "b_hat is the lower-order solution the step is compared with."
        )
    if np.allclose(answer.b_hat, (0.0, 1.0)):
        raise Incorrect(
            "b_hat = (0, 1) steps with the slope at the trial point; Euler's step uses the slope "
            "at the start, the first stage."
        )
    expect_close("c", answer.c, expected.c, atol=1e-12)
    expect_close("A", answer.a, expected.a, atol=1e-12)
    expect_close("b", answer.b, expected.b, atol=1e-12)
    expect_close("b_hat", answer.b_hat, expected.b_hat, atol=1e-12)
    if (answer.order, answer.embedded_order) != (2, 1):
        raise Incorrect(
            f"Heun is of order 2 and Euler of order 1; yours says order={answer.order}, "
            f"embedded_order={answer.embedded_order}."
        )
    p, h, gradient = np.array([-1.0, 1.5]), 1e-3, Rosenbrock().gradient
    error = -h * sum(
        w * g
        for w, g in zip(answer.error_weights, _stage_gradients(gradient, p, answer, h), strict=True)
    )
    difference = runge_kutta_step(gradient, p, TABLEAUX["heun"], h) - runge_kutta_step(
        gradient, p, TABLEAUX["euler"], h
    )
    expect_close("the error estimate", error, difference, atol=1e-12)
    return "your pair's error estimate is exactly Heun's step minus Euler's."


def _stage_gradients(gradient, p: np.ndarray, tableau: ButcherTableau, h: float) -> list:
    a, g = np.array(tableau.a), []
    for i in range(tableau.stages):
        g.append(gradient(p - h * sum((a[i, j] * g[j] for j in range(i)), 0.0 * p)))
    return g


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
        calls = [0]

        def counted(p, calls=calls):
            calls[0] += 1
            return himmelblau_gradient(p)

        point, sizes = _as_steps(answer(counted, np.array(p0), first_step, steps, rtol, atol))
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
        evaluations = scipy_rk23_evaluations(himmelblau_gradient, p0, first_step, steps, rtol, atol)
        if calls[0] != evaluations:
            raise Incorrect(
                f"your steps are SciPy's, but from {p0} you evaluated the gradient {calls[0]} "
                f"times where SciPy needs {evaluations}: one function throughout, so a retry "
                "keeps stage 1, and an accepted step's last stage (at the new point) is the next "
                "step's first."
            )
    return (
        "your controller takes exactly SciPy's RK23 steps on Himmelblau's function, with "
        "SciPy's count of gradient evaluations."
    )


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


def _rk23_variant(
    p0, first_step, steps, rtol, atol, exponent=None, retry=True, low_order=False, gradient=None
):
    """The solution with one known slip (for the checker's diagnosis), every stage evaluated
    afresh in every try."""
    gradient = himmelblau_gradient if gradient is None else gradient
    t = get_tableau("bogacki_shampine")
    a = np.array(t.a)
    error_weights = np.array(t.error_weights)
    exponent = -1.0 / (t.embedded_order + 1) if exponent is None else exponent
    p = np.asarray(p0, dtype=np.float64)
    h, accepted, rejected = float(first_step), [], False
    while len(accepted) < steps:
        g: list[np.ndarray] = []
        for i in range(t.stages):
            g.append(gradient(p - h * sum((a[i, j] * g[j] for j in range(i)), 0.0 * p)))
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


stage_loop = Exercise(
    title="The stage loop of a Butcher tableau",
    checker=_check_stage_loop,
    hint=(
        "For stage i, every variable's trial value starts from its copy in `start`, never from "
        "the variable as the previous stage left it; row i of A says how much of each earlier "
        "g_j to step back by. Take the gradient only once the weights are there. When the loop "
        "is done, where must the weights be for the optimizer? In combine, each stage counts "
        "with its own weight."
    ),
    solution=MyRungeKuttaModel,
)

second_order_tableau = Exercise(
    title="The second-order two-stage method with its second stage at c₂",
    checker=_check_second_order,
    hint=(
        "The trial point of stage 2 sits at time c₂·h along the first slope, which fixes a₂₁. "
        "Then write the two order conditions as equations in b₁ and b₂ (c₁ = 0) and solve them."
    ),
    solution=second_order_tableau_solution,
)

stability_limit = Exercise(
    title="The real stability limit of any explicit tableau",
    checker=_check_stability_limit,
    hint=(
        "On L = ½p² the gradient is p, and one step of size x from p = 1 lands on R(−x): §2's "
        "rk_step computes it for any tableau. Walk x up until |R(−x)| first exceeds 1, then "
        "halve the last interval until it is narrower than 1e-9."
    ),
    solution=stability_limit_solution,
)

heun_euler = Exercise(
    title="Heun with Euler as its error estimate: an embedded pair",
    checker=_check_heun_euler,
    hint=(
        "Both solutions must come from the same two stage gradients. Which weights on g₁ and g₂ "
        "give Heun's step, and which give plain gradient descent from p?"
    ),
    solution=heun_euler_solution,
)

rk23_adaptive = Exercise(
    title="Bogacki–Shampine (RK23) with an adaptive step, on Himmelblau's function",
    checker=_check_rk23_adaptive,
    hint=(
        "One try is §2's step with TABLEAUX['bogacki_shampine'] plus the error estimate "
        "−h·Σ(b_i − b̂_i)·g_i from the same stages; then §6's controller, in NumPy. Keep the "
        "gradient at p from one try to the next, and after an accepted step start the next one "
        "from the gradient at the new point: which stage already is that gradient?"
    ),
    solution=rk23_adaptive_solution,
)

__all__ = [
    "MyRungeKuttaModel",
    "heun_euler",
    "rk23_adaptive",
    "second_order_tableau",
    "stability_limit",
    "stage_loop",
]
