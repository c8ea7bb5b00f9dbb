"""Runge–Kutta training steps: Heun (notebook 04) and any explicit tableau (notebook 05).

Gradient descent is Euler's method for the gradient flow dp/dt = −∇L(p). Heun, RK4 and
Dormand–Prince need the gradient at several points per step, so they own the training step
(:mod:`course_lib.multi_gradient_step` runs it; this module supplies the stages). One step of a
:class:`~course_lib.tableaux.ButcherTableau` (c, A, b) with s stages, h the optimizer's current
learning rate (a schedule gives h):

1. g_1 = ∇L(p) at the start point p (the pass whose loss and metrics ``fit`` logs);
2. g_i = ∇L(p − h·Σ_{j<i} a_ij·g_j) for i = 2..s, on the *same* mini-batch;
3. the compiled optimizer applies the direction Σ_i b_i·g_i.

With ``SGD(learning_rate=h)`` step 3 is p ← p − h·Σ_i b_i·g_i, exactly the Runge–Kutta step of
size h (Heun: p − h/2·(g_1 + g_2)). Another optimizer treats Σ_i b_i·g_i as "the gradient"
(momentum averages it, Adam rescales it), which no longer solves the flow. Under a distribution
strategy trial points use the whole batch's gradients; each replica applies its share.

With ``adaptive=AdaptiveStepSize(...)`` (a tableau with an embedded pair b̂) the step size is
h = learning_rate × scale, the same stages give the error estimate h·Σ_i (b_i − b̂_i)·g_i, and
:func:`course_lib.adaptive.controlled_step` accepts the step or retries it on the same batch with
a smaller h. The logs gain ``step_size``, ``rejections`` and ``error_norm``.

On Keras's JAX backend the same stages run as pure functions of the training state
(:func:`stateless_fixed_step_direction`, :func:`stateless_adaptive_direction`, driven by
:mod:`course_lib.jax_training_step`); the adaptive controller's retry loop is then one
``jax.lax.while_loop`` in the compiled step and needs JAX's x64 mode (its decisions are float64).

Two ways in: :class:`RungeKuttaModel` and :class:`RungeKuttaSequential` (saved with their tableau
and adaptive settings), or :func:`inject_runge_kutta` on a compiled standard model, the Keras 3
heir of the ``inject(model)`` in Su Jianlin's "Keras之小众需求:自定义优化器" (kexue.fm, 2018).
"""

from __future__ import annotations

from course_lib.adaptive import (
    AdaptiveStepSize,
    ControlledMethod,
    StepOutcome,
    as_adaptive,
    controlled_step,
    enforce_failure_policy,
    error_norm,
    growth_factor,
    retry_until_accepted,
    step_logs,
)
from course_lib.distribution import replicas_in_sync, sum_replicas
from course_lib.multi_gradient_step import (
    Direction,
    MultiGradientTrainStep,
    StepConfig,
    StepMethod,
    StepStart,
    TrialPoints,
    eject,
    inject,
    is_injected,
    multi_gradient_train_step,
)
from course_lib.tableaux import TABLEAUX, ButcherTableau, get_tableau

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import keras
from keras import ops

if keras.backend.backend() == "tensorflow":
    # The TensorFlow step; on JAX the stateless one (jax_training_step) runs without it.
    import tensorflow as tf

__all__ = [
    "RungeKuttaConfig",
    "RungeKuttaModel",
    "RungeKuttaSequential",
    "RungeKuttaTrainStep",
    "eject_runge_kutta",
    "inject_runge_kutta",
    "is_runge_kutta_injected",
    "runge_kutta_train_step",
    "stateless_adaptive_direction",
    "stateless_fixed_step_direction",
]


# --------------------------------------------------------------------------------------------
# The stages
# --------------------------------------------------------------------------------------------


def _weighted_sum(weights: Sequence[float], stage_gradients: Sequence[list], index: int, dtype):
    """Σ_j w_j·g_j[index] over the stages with w_j ≠ 0 (None if no stage contributes)."""
    total = None
    for weight, gradients in zip(weights, stage_gradients, strict=False):
        gradient = gradients[index]
        if weight == 0.0 or gradient is None:
            continue
        term = tf.constant(weight, dtype=dtype) * tf.cast(gradient, dtype)
        total = term if total is None else total + term
    return total


def _trial_point(start: list, stage_gradients: list, row: Sequence[float], step) -> list:
    """p + h·Σ_j a_ij·k_j = p − h·Σ_j a_ij·g_j for one stage's row of A."""
    points = []
    for index, value in enumerate(start):
        direction = _weighted_sum(row, stage_gradients, index, value.dtype)
        points.append(
            value if direction is None else value - tf.cast(step, value.dtype) * direction
        )
    return points


@dataclass(frozen=True)
class Stages:
    """The stages one step evaluates, and which of their gradients are all-reduced."""

    tableau: ButcherTableau
    #: How many stages: up to the last one with a weight (Bogacki–Shampine's 4th needs b̂).
    count: int
    #: All-reduce every stage's gradient (the error estimate combines them all), not only
    #: those that a later trial point is built from.
    reduce_all: bool

    def needs_sum(self, i: int) -> bool:
        """Whether stage ``i``'s gradient must be the whole batch's, not this replica's share."""
        later = range(i + 1, self.count)
        return self.reduce_all or any(self.tableau.a[j][i] != 0.0 for j in later)

    def gradients(
        self, trial: TrialPoints, start: StepStart, step: Any, first_summed: list
    ) -> tuple[list, list]:
        """Every stage's gradient for step size ``step`` (runs per replica).

        Returns the stages' gradients twice: this replica's shares (what the optimizer sums
        across replicas itself) and, where :meth:`needs_sum`, the whole batch's (what trial
        points and error estimates are built from). ``first_summed`` is stage 1's in the latter.
        """
        local, summed = [start.gradients], [first_summed]
        for i in range(1, self.count):
            gradients = trial.gradients_at(
                start, _trial_point(start.weights, summed, self.tableau.a[i][:i], step)
            )
            local.append(gradients)
            summed.append(sum_replicas(gradients) if self.needs_sum(i) else gradients)
        return local, summed


def fixed_step_direction(trial: TrialPoints, start: StepStart, stages: Stages) -> Direction:
    """The fixed step's rule: Σ_i b_i·g_i of this replica's stage gradients, h = learning rate."""
    step = tf.cast(trial.model.optimizer.learning_rate, "float64")
    first = sum_replicas(start.gradients) if stages.needs_sum(0) else start.gradients
    local, _ = stages.gradients(trial, start, step, first)
    b = stages.tableau.b
    return Direction([_weighted_sum(b, local, k, v.dtype) for k, v in enumerate(trial.variables)])


# --------------------------------------------------------------------------------------------
# The adaptive step
# --------------------------------------------------------------------------------------------


class AdaptiveInputs(NamedTuple):
    """One replica's inputs to the controlled step (tensors only)."""

    start: StepStart
    #: Stage 1's gradient, the whole batch's.
    first_summed: list
    #: The learning rate, read once: every try's h is ``rate × scale``.
    rate: Any


def _adaptive_try(
    trial: TrialPoints, stages: Stages, settings: AdaptiveStepSize, scale: Any, inputs: Any
) -> tuple[Any, list]:
    """One try with h = rate·scale: its error norm, and its stages' gradients (whole batch's).

    The new weights and the error estimate are formed in float64 for the norm; a variable
    without a gradient carries zeros, since loop variables cannot be ``None``.
    """
    step = inputs.rate * scale
    _, summed = stages.gradients(trial, inputs.start, step, inputs.first_summed)
    tableau, weights = stages.tableau, inputs.start.weights
    new, error = [], []
    for index, value in enumerate(weights):
        combined = _weighted_sum(tableau.b, summed, index, "float64")
        estimate = _weighted_sum(tableau.error_weights, summed, index, "float64")
        new.append(
            value
            if combined is None
            else tf.cast(tf.cast(value, "float64") - step * combined, value.dtype)
        )
        error.append(None if estimate is None else step * estimate)
    filled = [
        [tf.zeros_like(v) if g is None else g for g, v in zip(gradients, weights, strict=True)]
        for gradients in summed
    ]
    return error_norm(weights, new, error, settings), filled


def adaptive_direction(trial: TrialPoints, start: StepStart, config: RungeKuttaConfig) -> Direction:
    """The adaptive step's rule: the controller applies the accepted try itself."""
    tableau, settings = config.tableau, config.adaptive
    stages = Stages(tableau, tableau.stages_needed(adaptive=True), reduce_all=True)
    has_gradient = [g is not None for g in start.gradients]
    optimizer = trial.model.optimizer
    replicas = replicas_in_sync()

    def apply(summed: list, scale: Any, inputs: Any) -> None:
        # Σ_i b_i·g_i in the variables' dtype, as the fixed step forms it. Each replica hands
        # the optimizer 1/replicas of the batch's direction: the optimizer sums them.
        factor = scale if replicas == 1 else scale / replicas
        gradients = [
            _weighted_sum(tableau.b, summed, k, v.dtype) * tf.cast(factor, v.dtype)
            if present
            else None
            for k, (v, present) in enumerate(zip(trial.variables, has_gradient, strict=True))
        ]
        optimizer.apply_gradients(zip(gradients, trial.variables, strict=True))

    method = ControlledMethod(
        attempt=functools.partial(_adaptive_try, trial, stages, settings),
        restore=lambda inputs: trial.restore(inputs.start),
        apply=apply,
        initial_payload=lambda: [
            [tf.zeros(v.shape, v.dtype) for v in trial.variables] for _ in range(stages.count)
        ],
    )
    rate = tf.cast(optimizer.learning_rate, "float64")
    inputs = AdaptiveInputs(start, sum_replicas(start.gradients), rate)
    exponent = settings.exponent(tableau.order, tableau.embedded_order)
    outcome = controlled_step(method, inputs, config.scale, settings, exponent)
    return Direction(None, step_logs(outcome, rate * outcome.scale))


# --------------------------------------------------------------------------------------------
# The same rules on JAX: pure functions of the state (course_lib.jax_training_step)
# --------------------------------------------------------------------------------------------


def _combination(weights: Sequence[float], stage_gradients: Sequence[list], index: int, dtype):
    """Σ_j w_j·g_j[index] in ``dtype`` over the stages with w_j ≠ 0 (zeros if none).

    On JAX every variable has a gradient (zeros where the loss does not depend on it).
    """
    total = None
    for weight, gradients in zip(weights, stage_gradients, strict=False):
        if weight != 0.0:
            term = ops.cast(weight, dtype) * ops.cast(gradients[index], dtype)
            total = term if total is None else total + term
    return ops.zeros_like(stage_gradients[0][index], dtype) if total is None else total


def _stateless_stages(trial: Any, start: StepStart, tableau: ButcherTableau, count: int, step):
    """Every stage's gradient for step size ``step``: g_i = ∇L(p − step·Σ_{j<i} a_ij·g_j)."""
    stages = [start.gradients]
    for i in range(1, count):
        row = tableau.a[i][:i]
        point = [
            p - ops.cast(step, p.dtype) * _combination(row, stages, k, p.dtype)
            for k, p in enumerate(start.weights)
        ]
        stages.append(trial.gradients_at(start, point))
    return stages


def stateless_fixed_step_direction(trial: Any, start: StepStart, tableau: ButcherTableau) -> Any:
    """The fixed step's rule on JAX: Σ_i b_i·g_i, with h the state's learning rate."""
    from course_lib.jax_training_step import StatelessDirection

    stages = _stateless_stages(trial, start, tableau, tableau.stages_needed(), trial.learning_rate)
    return StatelessDirection(
        [_combination(tableau.b, stages, k, p.dtype) for k, p in enumerate(start.weights)]
    )


def _stateless_try(trial: Any, start: StepStart, config: RungeKuttaConfig, scale: Any):
    """One try with h = rate·scale: its error norm and its stages' gradients (the payload)."""
    tableau = config.tableau
    step = ops.cast(trial.learning_rate, "float64") * scale
    stages = _stateless_stages(trial, start, tableau, tableau.stages_needed(adaptive=True), step)
    new, error = [], []
    for index, value in enumerate(start.weights):
        combined = _combination(tableau.b, stages, index, "float64")
        new.append(ops.cast(ops.cast(value, "float64") - step * combined, value.dtype))
        error.append(step * _combination(tableau.error_weights, stages, index, "float64"))
    return error_norm(start.weights, new, error, config.adaptive), stages


def stateless_adaptive_direction(trial: Any, start: StepStart, config: RungeKuttaConfig) -> Any:
    """The adaptive step's rule on JAX: the controller's retry loop as one ``while_loop``.

    The same controller functions as on TensorFlow; the accepted try's direction
    Σ_i b_i·g_i·scale goes to the optimizer (with ``SGD(lr)`` that is h·Σ_i b_i·g_i), applied
    only if the policy takes it, and the scale for the next batch is a new value of its variable.
    """
    from course_lib.jax_training_step import StatelessDirection

    tableau, settings = config.tableau, config.adaptive
    exponent = settings.exponent(tableau.order, tableau.embedded_order)
    scale = trial.value_of(config.scale)
    zeros = [[ops.zeros_like(g) for g in start.gradients]] * tableau.stages_needed(adaptive=True)
    last = retry_until_accepted(
        functools.partial(_stateless_try, trial, start, config), scale, zeros, settings, exponent
    )
    rejections = last.tries - 1
    grow = growth_factor(last.norm, rejections > 0, settings, exponent)
    applied = ops.isfinite(last.norm) if settings.on_failure == "accept" else last.accepted
    gradients = [
        _combination(tableau.b, last.payload, k, p.dtype) * ops.cast(last.scale, p.dtype)
        for k, p in enumerate(start.weights)
    ]
    outcome = StepOutcome(rejections, last.scale, last.accepted, last.norm)
    new_scale = ops.where(applied, last.scale * grow, scale)
    rate = ops.cast(trial.learning_rate, "float64")
    return StatelessDirection(
        gradients, step_logs(outcome, rate * last.scale), applied, [(config.scale, new_scale)]
    )


# --------------------------------------------------------------------------------------------
# The settings
# --------------------------------------------------------------------------------------------


def _resolve(
    tableau: str | ButcherTableau | dict, adaptive: AdaptiveStepSize | bool | dict | None
) -> tuple[ButcherTableau, AdaptiveStepSize | None]:
    """Validate ``tableau`` and ``adaptive`` together."""
    tableau = get_tableau(tableau)
    adaptive = as_adaptive(adaptive)
    if adaptive is not None and not tableau.is_adaptive:
        adaptive_names = ", ".join(name for name, t in TABLEAUX.items() if t.is_adaptive)
        raise ValueError(
            f"adaptive step size needs a tableau with an embedded pair (b_hat), but "
            f"tableau={tableau.name!r} has none. Use one of: {adaptive_names}; or adaptive=None."
        )
    return tableau, adaptive


@dataclass(frozen=True, eq=False)
class RungeKuttaConfig(StepConfig):
    """A Runge–Kutta method's settings: the tableau, and the adaptive controller if any."""

    tableau: ButcherTableau
    adaptive: AdaptiveStepSize | None = None
    #: h / learning_rate, with ``adaptive`` only: 1 at first, then the controller's choice.
    scale: keras.Variable | None = None

    def direction_rule(self) -> Callable[[TrialPoints, StepStart], Direction]:
        if self.adaptive is None:
            stages = Stages(self.tableau, self.tableau.stages_needed(), reduce_all=False)
            return functools.partial(fixed_step_direction, stages=stages)
        if self.scale is None:
            raise ValueError(
                "an adaptive Runge–Kutta step needs its step-scale variable (float64, 1.0 at "
                "first): use RungeKuttaModel, RungeKuttaSequential or inject_runge_kutta."
            )
        return functools.partial(adaptive_direction, config=self)

    def stateless_direction_rule(self) -> Callable[[Any, StepStart], Any]:
        if self.adaptive is None:
            return functools.partial(stateless_fixed_step_direction, tableau=self.tableau)
        return functools.partial(stateless_adaptive_direction, config=self)

    def check_stateless_route(self, intrusive: bool, where: str) -> None:
        """On JAX, an adaptive step needs its scale in the model's state: the clean route."""
        if self.adaptive is not None and intrusive:
            raise ValueError(
                f"{where}: an adaptive Runge–Kutta step cannot be injected on the JAX backend: "
                "Keras's JAX trainer hands the step only the model's and the optimizer's "
                "variables, and the step-size scale of an injected step lives outside the model. "
                "Use RungeKuttaModel or RungeKuttaSequential (the scale is one of their weights), "
                "or inject a fixed step (adaptive=None)."
            )

    def own_variables(self) -> list:
        return [] if self.scale is None else [self.scale]

    def check_model(self, model: keras.Model, where: str) -> None:
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

    def finish_train_function(self, function: Callable, model: keras.Model) -> Callable:
        if self.adaptive is None:
            return function
        keep_state = None
        if not _on_tensorflow():
            from course_lib.jax_training_step import keep_state_of_failed_step

            keep_state = functools.partial(keep_state_of_failed_step, model)
        return enforce_failure_policy(function, self.adaptive, keep_state)

    def to_config(self) -> dict[str, Any]:
        named = TABLEAUX.get(self.tableau.name)
        return {
            "tableau": self.tableau.name if named == self.tableau else self.tableau.to_config(),
            "adaptive": None if self.adaptive is None else self.adaptive.to_config(),
        }


def _step_scale(owner: keras.Model | None = None) -> keras.Variable:
    """The adaptive step scale, 1 at first: a weight of ``owner`` (saved with it), or free."""
    settings = {"dtype": "float64", "trainable": False, "autocast": False}
    if owner is None:
        return keras.Variable(1.0, name="runge_kutta_step_scale", **settings)
    return owner.add_weight((), initializer="ones", name="runge_kutta_step_scale", **settings)


def _on_tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


def _require_float64_controller(where: str) -> None:
    """The controller decides in float64; JAX has float64 only in its x64 mode."""
    if _on_tensorflow():
        return
    import jax

    if not jax.config.jax_enable_x64:
        raise ValueError(
            f"{where}: the adaptive step's controller takes its accept/reject decisions in "
            "float64 (float32 round-off would move them), and JAX computes in float32 unless "
            "its x64 mode is on. Set JAX_ENABLE_X64=1 before JAX is imported (or call "
            "jax.config.update('jax_enable_x64', True) first); the model itself may stay float32."
        )


RUNGE_KUTTA = StepMethod(
    name="Runge–Kutta",
    tag="_runge_kutta_config",
    setting="its tableau",
    needs_optimizer="the optimizer's learning rate is the Runge–Kutta step size h.",
)


def runge_kutta_train_step(
    model: keras.Model,
    data: Any,
    tableau: str | ButcherTableau = "heun",
    adaptive: AdaptiveStepSize | None = None,
    step_scale: keras.Variable | None = None,
) -> dict[str, Any]:
    """One Runge–Kutta training step of ``model`` on the mini-batch ``data``; returns the logs.

    It must run inside Keras's train function (a replica context). An adaptive step also needs
    ``step_scale``, the float64 variable that holds h / learning_rate.
    """
    config = RungeKuttaConfig(*_resolve(tableau, adaptive), scale=step_scale)
    return multi_gradient_train_step(model, data, config.direction_rule(), config.own_variables())


# --------------------------------------------------------------------------------------------
# The clean route
# --------------------------------------------------------------------------------------------


class RungeKuttaTrainStep(MultiGradientTrainStep):
    """Mixin: a ``train_step`` that runs a Butcher tableau's stages on one mini-batch.

    Put it before the Keras model class (``class M(RungeKuttaTrainStep, keras.Model)``) and call
    ``self._configure_step(tableau=..., adaptive=...)`` in ``__init__``.
    """

    step_method = RUNGE_KUTTA
    step_defaults = {"tableau": "heun", "adaptive": None}

    def _step_config_for(
        self,
        tableau: str | ButcherTableau | dict = "heun",
        adaptive: AdaptiveStepSize | bool | dict | None = None,
    ) -> RungeKuttaConfig:
        tableau, adaptive = _resolve(tableau, adaptive)
        if adaptive is not None:
            _require_float64_controller(type(self).__name__)
        return RungeKuttaConfig(tableau, adaptive, None if adaptive is None else _step_scale(self))

    @property
    def runge_kutta_tableau(self) -> ButcherTableau:
        return self.step_config.tableau

    @property
    def runge_kutta_adaptive(self) -> AdaptiveStepSize | None:
        return self.step_config.adaptive

    @property
    def runge_kutta_step_scale(self) -> keras.Variable:
        """h / learning_rate of the adaptive step (a non-trainable weight, saved with the model)."""
        if self.step_config.scale is None:
            raise AttributeError("runge_kutta_step_scale exists only with adaptive=...")
        return self.step_config.scale


@keras.saving.register_keras_serializable(package="course_lib")
class RungeKuttaModel(RungeKuttaTrainStep, keras.Model):
    """A functional model trained by an explicit Runge–Kutta step (Heun by default).

    ``RungeKuttaModel(inputs=..., outputs=..., tableau="heun", adaptive=None)``; compile it with
    ``SGD(learning_rate=h)`` for the Runge–Kutta method of step h. Saves to ``.keras`` with its
    tableau and adaptive settings (and the adaptive step scale, a non-trainable weight).
    """

    def __init__(
        self,
        *args: Any,
        tableau: str | ButcherTableau | dict = "heun",
        adaptive: AdaptiveStepSize | bool | dict | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._configure_step(tableau=tableau, adaptive=adaptive)


@keras.saving.register_keras_serializable(package="course_lib")
class RungeKuttaSequential(RungeKuttaTrainStep, keras.Sequential):
    """A Sequential model trained by an explicit Runge–Kutta step (Heun by default).

    ``RungeKuttaSequential(layers, tableau="heun", adaptive=None)``; see :class:`RungeKuttaModel`.
    """

    def __init__(
        self,
        layers: list | None = None,
        tableau: str | ButcherTableau | dict = "heun",
        adaptive: AdaptiveStepSize | bool | dict | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(layers, **kwargs)
        self._configure_step(tableau=tableau, adaptive=adaptive)


# --------------------------------------------------------------------------------------------
# The intrusive route
# --------------------------------------------------------------------------------------------


def inject_runge_kutta(
    model: keras.Model,
    tableau: str | ButcherTableau | dict = "heun",
    adaptive: AdaptiveStepSize | bool | dict | None = None,
) -> keras.Model:
    """Make a compiled standard model's ``fit`` use the Runge–Kutta step; returns the model.

    Nothing is rebuilt: the model keeps its layers, weights, optimizer and metrics; only its
    ``train_function`` is replaced. ``evaluate`` and ``predict`` are unchanged. Undo it with
    :func:`eject_runge_kutta` or by compiling again. The adaptive step scale lives outside the
    model, so saving an injected model saves the standard model; inject again after loading.
    """
    tableau, adaptive = _resolve(tableau, adaptive)
    scale = None
    if adaptive is not None and isinstance(model, keras.Model) and _on_tensorflow():
        with model.distribute_strategy.scope():
            scale = _step_scale()
    config = RungeKuttaConfig(tableau, adaptive, scale)
    return inject(model, RUNGE_KUTTA, config, "inject_runge_kutta")


def is_runge_kutta_injected(model: keras.Model) -> bool:
    """Whether ``model.train_function`` is one installed by :func:`inject_runge_kutta`."""
    return is_injected(model, RUNGE_KUTTA)


def eject_runge_kutta(model: keras.Model) -> keras.Model:
    """Undo :func:`inject_runge_kutta`: the next ``fit`` builds Keras's standard step again."""
    return eject(model, RUNGE_KUTTA)
