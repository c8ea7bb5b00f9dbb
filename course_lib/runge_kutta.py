"""Runge–Kutta training steps: Heun (notebook 04) and any explicit tableau (notebooks 05, A3).

Gradient descent is Euler's method for the gradient flow dp/dt = −∇L(p). Heun, RK4 and
Dormand–Prince need the gradient at several points per step, so they own the training step
(:mod:`course_lib.multi_gradient_step` runs it; this module supplies the rule). One step of a
:class:`~course_lib.tableaux.ButcherTableau` (c, A, b) with s stages and step size h, the
optimizer's current learning rate (a schedule gives h):

1. g_1 = ∇L(p) at the start point p (the pass whose loss and metrics ``fit`` logs);
2. g_i = ∇L(p − h·Σ_{j<i} a_ij·g_j) for i = 2..s, on the *same* mini-batch (:func:`stages`);
3. the compiled optimizer applies the direction Σ_i b_i·g_i (:func:`runge_kutta_direction`).

With ``SGD(learning_rate=h)`` step 3 is p ← p − h·Σ_i b_i·g_i, exactly the Runge–Kutta step of
size h (Heun: p − h/2·(g_1 + g_2)). Another optimizer treats Σ_i b_i·g_i as "the gradient"
(momentum averages it, Adam rescales it), which no longer solves the flow. The rule is written
once in ``keras.ops``; every gradient it sees is the whole batch's, on either backend and under
any distribution.

With ``adaptive=AdaptiveStepSize(...)`` (a tableau with an embedded pair b̂) the step size is
h = learning_rate × scale, the same stages give the error estimate h·Σ_i (b_i − b̂_i)·g_i, and
the controller of :mod:`course_lib.adaptive_step` accepts the step or retries it on the same
batch with a smaller h. The logs gain ``step_size``, ``rejections`` and ``error_norm``.

Two ways in: :class:`RungeKuttaModel` and :class:`RungeKuttaSequential` (saved with their tableau
and adaptive settings), or :func:`inject_runge_kutta` on a compiled standard model, the Keras 3
heir of the ``inject(model)`` in Su Jianlin's "Keras之小众需求:自定义优化器" (kexue.fm, 2018).
Under a ``mixed_float16`` policy every stage's gradient is unscaled, and a step whose gradients
overflow is skipped and counted in the logs (``skipped_steps``), as
:mod:`course_lib.multi_gradient_step` describes (and :mod:`course_lib.adaptive_step`, for the
adaptive step).
"""

from __future__ import annotations

from course_lib.adaptive import AdaptiveStepSize, as_adaptive
from course_lib.adaptive_step import AdaptiveController
from course_lib.multi_gradient_step.records import (
    Direction,
    ErrorEstimate,
    Method,
    StepStart,
    TrialPoints,
)
from course_lib.multi_gradient_step.routes import MethodFamily, MethodSettings, routes
from course_lib.tableaux import TABLEAUX, ButcherTableau, get_tableau

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
from keras import ops

__all__ = [
    "ROUTES",
    "RUNGE_KUTTA",
    "RungeKuttaModel",
    "RungeKuttaSequential",
    "RungeKuttaSettings",
    "RungeKuttaTrainStep",
    "combination",
    "eject_runge_kutta",
    "inject_runge_kutta",
    "is_runge_kutta_injected",
    "runge_kutta_direction",
    "stages",
]


# --------------------------------------------------------------------------------------------
# The rule
# --------------------------------------------------------------------------------------------


def combination(weights: Sequence[float], stage_gradients: Sequence[list], index: int, dtype):
    """Σ_j w_j·g_j[index] in ``dtype`` over the stages with w_j ≠ 0 (None if no stage adds one).

    A ``None`` gradient (a variable the loss does not depend on) adds nothing.
    """
    total = None
    for weight, gradients in zip(weights, stage_gradients, strict=False):
        gradient = gradients[index]
        if weight == 0.0 or gradient is None:
            continue
        term = ops.convert_to_tensor(weight, dtype) * ops.cast(gradient, dtype)
        total = term if total is None else total + term
    return total


def stages(
    trial: TrialPoints, start: StepStart, tableau: ButcherTableau, count: int, step_size: Any
) -> list[list]:
    """The first ``count`` stages' gradients g_i = ∇L(p − h·Σ_{j<i} a_ij·g_j), h ``step_size``."""
    found = [start.gradients]
    for i in range(1, count):
        point = []
        for k, p in enumerate(start.weights):
            moved = combination(tableau.a[i][:i], found, k, p.dtype)
            point.append(p if moved is None else p - ops.cast(step_size, p.dtype) * moved)
        found.append(trial.gradients_at(start, point))
    return found


def _estimate(tableau: ButcherTableau, found: list[list], start: StepStart, step_size: Any):
    """The weights after the step and its local error, both formed in float64."""
    h = ops.cast(step_size, "float64")
    new, error = [], []
    for k, p in enumerate(start.weights):
        combined = combination(tableau.b, found, k, "float64")
        estimate = combination(tableau.error_weights, found, k, "float64")
        moved = None if combined is None else ops.cast(p, "float64") - h * combined
        new.append(p if moved is None else ops.cast(moved, p.dtype))
        error.append(None if estimate is None else h * estimate)
    return ErrorEstimate(new, error)


def runge_kutta_direction(
    trial: TrialPoints,
    start: StepStart,
    step_size: Any,
    *,
    tableau: ButcherTableau,
    estimate: bool = False,
) -> Direction:
    """Σ_i b_i·g_i for a step of ``step_size``, with the embedded pair's error if ``estimate``.

    Without an estimate only the stages the weights b need are evaluated (Bogacki–Shampine's
    fourth stage serves only b̂).
    """
    found = stages(trial, start, tableau, tableau.stages_needed(adaptive=estimate), step_size)
    direction = [combination(tableau.b, found, k, p.dtype) for k, p in enumerate(start.weights)]
    if not estimate:
        return Direction(direction)
    return Direction(direction, estimate=_estimate(tableau, found, start, step_size))


# --------------------------------------------------------------------------------------------
# The settings
# --------------------------------------------------------------------------------------------


def _check_step_size(model: keras.Model, where: str) -> None:
    """The learning rate is the step size h: a finite number > 0 (unless still symbolic)."""
    try:
        value = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except (TypeError, ValueError):
        return  # Symbolic (inside a trace): checked when fit starts.
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{where}: the optimizer's learning rate is {value!r}, but it is the Runge–Kutta "
            "step size h and must be a finite number > 0. Compile with, e.g., "
            "keras.optimizers.SGD(learning_rate=0.1)."
        )


@dataclass(frozen=True)
class RungeKuttaSettings(MethodSettings):
    """A Runge–Kutta method's settings: the tableau, and the adaptive controller's if any.

    ``tableau`` is a name of :data:`~course_lib.tableaux.TABLEAUX`, a
    :class:`~course_lib.tableaux.ButcherTableau` or its config; ``adaptive`` is None, True
    (SciPy's defaults), a dict or an :class:`~course_lib.adaptive.AdaptiveStepSize`, and needs
    a tableau with an embedded pair.
    """

    tableau: str | ButcherTableau | dict = "heun"
    adaptive: AdaptiveStepSize | bool | dict | None = None

    def __post_init__(self) -> None:
        tableau, adaptive = get_tableau(self.tableau), as_adaptive(self.adaptive)
        if adaptive is not None and not tableau.is_adaptive:
            adaptive_names = ", ".join(name for name, t in TABLEAUX.items() if t.is_adaptive)
            raise ValueError(
                f"adaptive step size needs a tableau with an embedded pair (b_hat), but "
                f"tableau={tableau.name!r} has none. Use one of: {adaptive_names}; or "
                "adaptive=None."
            )
        object.__setattr__(self, "tableau", tableau)
        object.__setattr__(self, "adaptive", adaptive)

    def method(self, model: keras.Model, intrusive: bool, where: str) -> Method:
        controller = None
        if self.adaptive is not None:
            orders = (self.tableau.order, self.tableau.embedded_order)
            controller = AdaptiveController.create(self.adaptive, orders, model, intrusive, where)
        rule = functools.partial(
            runge_kutta_direction, tableau=self.tableau, estimate=controller is not None
        )
        return Method(rule, controller, check=_check_step_size)

    def to_config(self) -> dict[str, Any]:
        named = TABLEAUX.get(self.tableau.name)
        return {
            "tableau": self.tableau.name if named == self.tableau else self.tableau.to_config(),
            "adaptive": None if self.adaptive is None else self.adaptive.to_config(),
        }


# --------------------------------------------------------------------------------------------
# The two ways in
# --------------------------------------------------------------------------------------------

RUNGE_KUTTA = MethodFamily(
    name="Runge–Kutta",
    class_prefix="RungeKutta",
    function_suffix="runge_kutta",
    settings=RungeKuttaSettings,
    setting="its tableau",
    needs_optimizer="the optimizer's learning rate is the Runge–Kutta step size h.",
    compile_hint="``SGD(learning_rate=h)`` for the Runge–Kutta method of step h (the adaptive "
    "step scale, with ``adaptive``, is a non-trainable weight saved with it)",
)


def _step_scale(model: keras.Model) -> keras.Variable:
    """h / learning_rate of the adaptive step (a non-trainable weight, saved with the model)."""
    controller = model.step_method.controller
    if controller is None:
        raise AttributeError("runge_kutta_step_scale exists only with adaptive=...")
    return controller.scale


#: The mixin, the two model classes and the injection, made by the skeleton's factory.
ROUTES = routes(RUNGE_KUTTA, runge_kutta_step_scale=property(_step_scale, doc=_step_scale.__doc__))
(
    RungeKuttaTrainStep,
    RungeKuttaModel,
    RungeKuttaSequential,
    inject_runge_kutta,
    is_runge_kutta_injected,
    eject_runge_kutta,
) = ROUTES
