"""Runge–Kutta training steps: Heun (notebook 04) and any explicit tableau (notebook 05).

Gradient descent is Euler's method for the gradient flow dp/dt = −∇L(p). Higher-order solvers
(Heun, RK4, Dormand–Prince...) need the gradient at several points per step. A Keras optimizer's
``update_step`` sees one gradient, so these methods must own the *training step*: this module
runs the stages of a :class:`~course_lib.tableaux.ButcherTableau` on one mini-batch and hands the
combined gradient to the compiled optimizer. The idea comes from Su Jianlin, "Keras之小众需求:
自定义优化器" (kexue.fm, 2018), which built Keras 2's ``model.train_function`` by hand.

Two ways in:

* **Clean**: :class:`RungeKuttaModel` (functional API) and :class:`RungeKuttaSequential`, whose
  ``train_step`` runs the stages. They save and load as ``.keras`` files.
* **Intrusive**: :func:`inject_runge_kutta` makes an existing, compiled standard model's ``fit``
  use the multi-stage step without rebuilding it (the Keras 3 heir of the article's
  ``inject(model)``): it installs a new ``model.train_function``. ``model.compile(...)`` resets
  ``train_function`` and so undoes it, as does :func:`eject_runge_kutta`. The model stays a
  standard model: saving it saves the standard model (re-inject after loading).

One step, for stages i = 1..s, with h the optimizer's current learning rate (schedules give h):

1. snapshot the trainable weights p *by value* (copies, not references);
2. stage 1: loss, metrics' predictions and gradient g_1 at p (this is what ``fit`` logs: the
   loss and compiled metrics at the start point, as a standard step does);
3. stage i > 1: set the weights to p + h·Σ_j a_ij·k_j with k_j = −g_j, take g_i on the *same*
   mini-batch, with the non-trainable state (BatchNorm statistics, dropout seeds) put back to
   where it was before stage 1, so every stage evaluates the same function;
4. restore p exactly and the non-trainable state as stage 1 left it (so BatchNorm's moving
   statistics move once per step, from the start point);
5. ``optimizer.apply(Σ_i b_i·g_i)``.

With ``SGD(learning_rate=h)`` step 5 is p ← p − h·Σ b_i g_i: exactly the Runge–Kutta step of
size h (Heun: p − h/2·(g_1 + g_2)). With other optimizers the stages still use h = learning rate
to place the trial points, and the optimizer then treats Σ b_i g_i as "the gradient": momentum
averages these higher-order directions over steps and Adam rescales them per coordinate, so the
result is no longer a solver of the gradient flow but "the optimizer fed a better gradient
estimate of the flow over one step". The course uses SGD when it compares with the flow.

Under ``tf.distribute.MirroredStrategy`` each replica's gradient is a partial sum; the trial
points need the whole batch's gradient, so each stage's gradient is all-reduced before it is
used to build a trial point, and the logged loss is unscaled as Keras's own step does. The
combination Σ b_i g_i handed to the optimizer is the replica's own part: the optimizer sums it
across replicas itself. (A naive version uses the local gradient for the trial point and is
silently wrong.) ``jit_compile=True`` does not work under a strategy on CPU, for Keras's own
step as well; and Keras itself turns ``jit_compile=True`` off (with a warning) while TensorFlow's
op determinism is on, which ``course_lib.set_seed`` switches on.

The step size is checked (finite, > 0) when ``fit`` builds the train function and by
:func:`inject_runge_kutta`; a model without an optimizer is refused at the same points.

Adaptive step size (``adaptive=AdaptiveStepSize(...)``, tableaux with an embedded pair only): see
:mod:`course_lib.adaptive`. The step size is ``h = learning_rate × scale`` with ``scale`` a
variable that starts at 1 and the controller updates; the optimizer is given
``scale·Σ b_i g_i``, so ``SGD(learning_rate=h0)`` gives the adaptive method started at h0.
The logs gain ``"step_size"`` (the accepted h), ``"rejections"`` (retries in this step) and
``"error_norm"``; ``History`` keeps the last step's values per epoch, and
:class:`course_lib.adaptive.StepSizeLog` keeps every step's. Additions to the agreed API:
:func:`runge_kutta_train_step` (the step as a function), :func:`eject_runge_kutta`,
:func:`is_runge_kutta_injected`, ``adaptive=True`` as shorthand for the default settings, and
``RungeKuttaTrainStep.runge_kutta_tableau`` / ``runge_kutta_adaptive`` /
``runge_kutta_step_scale`` (adaptive only) as the models' attributes.
Under a distribution strategy the adaptive step needs one more idea. Its retries are a
``tf.while_loop`` whose every try all-reduces gradients, and TensorFlow cannot all-reduce inside
control flow that runs in a replica context (``merge_call`` raises). So the loop runs once, in
cross-replica context, and each try runs the stages on every replica from there: the pattern
``keras.optimizers.LossScaleOptimizer`` uses for its "apply only if finite" ``cond``. The result
equals one device (tested: same rejections, step sizes and weights).
"""

from __future__ import annotations

from course_lib.adaptive import AdaptiveStepSize, StepSizeError, as_adaptive
from course_lib.distribution import (
    first_replica,
    for_each_replica,
    in_cross_replica_context,
    replicas_in_sync,
    sum_replicas,
)
from course_lib.keras_internals import make_train_function
from course_lib.multi_gradient_step import (
    assign_all,
    check_injectable,
    forward,
    install_train_function,
    is_injected,
    remove_train_function,
    require_optimizer,
    snapshot,
    track_loss,
)
from course_lib.tableaux import TABLEAUX, ButcherTableau, get_tableau

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

__all__ = [
    "RungeKuttaModel",
    "RungeKuttaSequential",
    "RungeKuttaTrainStep",
    "eject_runge_kutta",
    "inject_runge_kutta",
    "is_runge_kutta_injected",
    "runge_kutta_train_step",
]

_STATE_ATTRIBUTE = "_runge_kutta_marker"
#: Log entry that tells the Python side a step used up its retries (removed before Keras sees it).
_FAILED = "_runge_kutta_step_failed"


# --------------------------------------------------------------------------------------------
# Checks that fail early with a clear message
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


def _check_optimizer(model: keras.Model, where: str) -> None:
    """Raise unless the model is compiled with a supported optimizer and a positive step size."""
    optimizer = require_optimizer(
        model, where, "the optimizer's learning rate is the Runge–Kutta step size h."
    )
    learning_rate = optimizer.learning_rate
    try:
        value = float(keras.ops.convert_to_numpy(learning_rate))
    except (TypeError, ValueError):
        return  # Symbolic (inside a trace): checked when fit starts.
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{where}: the optimizer's learning rate is {value!r}, but it is the Runge–Kutta "
            "step size h and must be a finite number > 0. Compile with, e.g., "
            "keras.optimizers.SGD(learning_rate=0.1)."
        )


# --------------------------------------------------------------------------------------------
# The training step
# --------------------------------------------------------------------------------------------


class _AdaptiveState:
    """The controller's variable: scale = h / learning_rate (starts at 1)."""

    def __init__(self, scale: keras.Variable) -> None:
        self.scale = scale


def _make_scale_variable() -> keras.Variable:
    return keras.Variable(1.0, dtype="float64", trainable=False, name="runge_kutta_step_scale")


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


def _stage_gradients(
    model: keras.Model,
    tableau: ButcherTableau,
    stages: int,
    variables: list,
    frozen: list,
    batch: tuple,
    start: list,
    frozen_before: list,
    first: tuple[list, list],
    step: tf.Tensor,
    reduce_all: bool,
) -> tuple[list, list]:
    """Gradients of every stage at its trial point for step size ``step``; runs per replica.

    ``first`` is stage 1's gradient as (this replica's part, the whole batch's). Returns both
    lists per stage: the replica's own parts (what the optimizer sums across replicas itself)
    and the whole batch's (what trial points and error estimates are built from). A stage's
    gradient is all-reduced only if a later trial point needs it, or always when
    ``reduce_all`` (the adaptive step builds its error estimate from every stage).
    """
    x, y, sample_weight = batch
    local, summed = [first[0]], [first[1]]
    for i in range(1, stages):
        assign_all(variables, _trial_point(start, summed, tableau.a[i][:i], step))
        assign_all(frozen, frozen_before)
        _, _, gradients = forward(model, x, y, sample_weight, variables)
        local.append(gradients)
        needed_later = any(tableau.a[j][i] != 0.0 for j in range(i + 1, stages))
        summed.append(sum_replicas(gradients) if needed_later or reduce_all else gradients)
    return local, summed


def runge_kutta_train_step(
    model: keras.Model,
    data: Any,
    tableau: str | ButcherTableau = "heun",
    adaptive: AdaptiveStepSize | None = None,
    state: _AdaptiveState | None = None,
) -> dict[str, Any]:
    """One Runge–Kutta training step of ``model`` on the mini-batch ``data``; returns the logs.

    This is the body of :meth:`RungeKuttaTrainStep.train_step` and of the function that
    :func:`inject_runge_kutta` installs. It must run inside Keras's train function (a replica
    context); see the module docstring for the algorithm.
    """
    tableau = get_tableau(tableau)
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    optimizer = model.optimizer
    variables = list(model.trainable_variables)
    own = set() if state is None else {id(state.scale)}
    frozen = [v for v in model.non_trainable_variables if id(v) not in own]

    start = snapshot(variables)
    frozen_before = snapshot(frozen)

    # Stage 1 at the start point p: this is what fit() reports.
    y_pred, loss, local_first = forward(model, x, y, sample_weight, variables)
    track_loss(model, loss, x)
    frozen_after = snapshot(frozen)
    stages = tableau.stages_needed(adaptive=adaptive is not None)

    if adaptive is None:
        needed = any(tableau.a[j][0] != 0.0 for j in range(1, stages))
        first_global = sum_replicas(local_first) if needed else local_first
        step = tf.cast(optimizer.learning_rate, "float64")
        local, _ = _stage_gradients(
            model,
            tableau,
            stages,
            variables,
            frozen,
            (x, y, sample_weight),
            start,
            frozen_before,
            (local_first, first_global),
            step,
            reduce_all=False,
        )
        assign_all(variables, start)
        assign_all(frozen, frozen_after)
        combined = [
            _weighted_sum(tableau.b, local, index, v.dtype) for index, v in enumerate(variables)
        ]
        optimizer.apply_gradients(zip(combined, variables, strict=True))
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    per_replica = (x, y, sample_weight, start, frozen_before, frozen_after, local_first)
    logs_extra = _adaptive_step(model, tableau, adaptive, state, variables, frozen, per_replica)
    logs = dict(model.compute_metrics(x, y, y_pred, sample_weight=sample_weight))
    logs.update(logs_extra)
    return logs


def _error_norm(start: list, new: list, error: list, adaptive: AdaptiveStepSize) -> tf.Tensor:
    """SciPy's RMS norm of ``error / (atol + rtol·max(|p|, |p_new|))`` over all parameters."""
    total = tf.constant(0.0, "float64")
    count = 0
    for p, q, e in zip(start, new, error, strict=True):
        if e is None:
            continue
        p = tf.cast(p, "float64")
        q = tf.cast(q, "float64")
        atol = tf.constant(adaptive.atol, "float64")
        rtol = tf.constant(adaptive.rtol, "float64")
        scale = atol + rtol * tf.maximum(tf.abs(p), tf.abs(q))
        total += tf.reduce_sum(tf.square(tf.cast(e, "float64") / scale))
        count += math.prod(p.shape) if p.shape.is_fully_defined() else 0
    if count == 0:
        return tf.constant(0.0, "float64")
    return tf.sqrt(total / count)


def _adaptive_step(
    model: keras.Model,
    tableau: ButcherTableau,
    adaptive: AdaptiveStepSize,
    state: _AdaptiveState,
    variables: list,
    frozen: list,
    per_replica: tuple,
) -> dict[str, tf.Tensor]:
    """Try the step, shrink h and retry on the same batch until the error estimate passes.

    Called per replica; ``per_replica`` holds this replica's (x, y, sample_weight, start,
    frozen_before, frozen_after, stage-1 gradient). The accept/reject loop is data-dependent
    control flow, and each try all-reduces its stages' gradients: TensorFlow cannot all-reduce
    inside control flow that runs in a replica context. So the loop runs *once*, in
    cross-replica context (``merge_call``), and each try runs the stages on every replica
    (``call_for_each_replica``), the pattern of ``keras.optimizers.LossScaleOptimizer``. Every
    replica holds the same all-reduced gradients, hence the same error norm and stage
    gradients, so the decisions are taken on replica 0's copy. On one device the same code runs
    with no merge at all.
    """
    optimizer = model.optimizer
    exponent = tf.constant(adaptive.exponent(tableau.order, tableau.embedded_order), "float64")
    safety = tf.constant(adaptive.safety, "float64")
    min_factor = tf.constant(adaptive.min_factor, "float64")
    max_factor = tf.constant(adaptive.max_factor, "float64")
    tiny = tf.constant(1e-300, "float64")
    one = tf.constant(1.0, "float64")
    error_weights = tableau.error_weights
    stages = tableau.stages_needed(adaptive=True)
    first_global = sum_replicas(per_replica[-1])  # outside control flow: a replica context is fine
    # Read once, before any update: h for every try, and the step size the logs report.
    learning_rate = tf.cast(optimizer.learning_rate, "float64")
    replicas = replicas_in_sync()
    has_gradient = [g is not None for g in per_replica[-1]]

    def attempt(
        scale, x, y, sample_weight, start, frozen_before, _, local_first, first_global, rate
    ):
        """One try with h = learning_rate·scale (per replica): error norm, stage gradients."""
        step = rate * scale
        _, summed = _stage_gradients(
            model,
            tableau,
            stages,
            variables,
            frozen,
            (x, y, sample_weight),
            start,
            frozen_before,
            (local_first, first_global),
            step,
            reduce_all=True,
        )
        new, error = [], []
        for index, value in enumerate(start):
            direction = _weighted_sum(tableau.b, summed, index, "float64")
            estimate = _weighted_sum(error_weights, summed, index, "float64")
            new.append(
                value
                if direction is None
                else tf.cast(tf.cast(value, "float64") - step * direction, value.dtype)
            )
            error.append(None if estimate is None else step * estimate)
        # Loop variables cannot be None: a variable without a gradient carries zeros.
        filled = [
            [tf.zeros_like(v) if g is None else g for g, v in zip(gradients, start, strict=True)]
            for gradients in summed
        ]
        return _error_norm(start, new, error, adaptive), filled

    def restore(start, frozen_after):
        assign_all(variables, start)
        assign_all(frozen, frozen_after)

    def apply(summed, scale):
        # Σ b_i·g_i is formed once, here, for the try that is applied (not in every try).
        # Notebook 05's adaptive runs are chaotic: moving this arithmetic elsewhere in the graph
        # changes its float32 rounding, and with it their recorded outputs.
        combined = [
            _weighted_sum(tableau.b, summed, index, v.dtype) for index, v in enumerate(variables)
        ]
        # Each replica hands the optimizer 1/replicas of the batch's direction: it sums them.
        factor = scale if replicas == 1 else scale / replicas
        gradients = [
            g * tf.cast(factor, g.dtype) if present else None
            for g, present in zip(combined, has_gradient, strict=True)
        ]
        optimizer.apply_gradients(zip(gradients, variables, strict=True))

    def decide(distribution, *inputs):
        """The accept/reject loop and the update, once for all replicas (cross-replica context).

        ``inputs`` are :func:`attempt`'s arguments after ``scale``, per replica.
        """
        _, _, _, start, _, frozen_after, _, _, _ = inputs

        def condition(tries, scale, accepted, norm, summed):
            return tf.logical_and(tf.logical_not(accepted), tries <= adaptive.max_rejections)

        def body(tries, scale, accepted, norm, summed):
            # On a retry, shrink the step from the last try's error norm (SciPy's rejection rule).
            # A non-finite norm (the try overflowed: NaN or inf) shrinks by min_factor, as
            # SciPy's max(MIN_FACTOR, nan) does; tf.maximum would carry the NaN into the step.
            shrink = tf.where(
                tf.math.is_finite(norm),
                tf.maximum(min_factor, safety * tf.pow(tf.maximum(norm, tiny), exponent)),
                min_factor,
            )
            scale = tf.where(tries > 0, scale * shrink, scale)
            norm, summed = first_replica(
                distribution, for_each_replica(distribution, attempt, scale, *inputs)
            )
            return tries + 1, scale, norm < one, norm, summed

        start_here = first_replica(distribution, start)
        tries, scale, accepted, norm, summed = tf.while_loop(
            condition,
            body,
            loop_vars=(
                tf.constant(0),
                tf.convert_to_tensor(state.scale.value),
                tf.constant(False),
                tf.constant(0.0, "float64"),
                [[tf.zeros_like(v) for v in start_here] for _ in range(stages)],
            ),
            maximum_iterations=adaptive.max_rejections + 1,
        )
        for_each_replica(distribution, restore, start, frozen_after)
        rejections = tries - 1

        # Grow (or, after a rejection, at most keep) the step for the next batch.
        grow = tf.where(
            norm == 0.0,
            max_factor,
            tf.minimum(max_factor, safety * tf.pow(tf.maximum(norm, tiny), exponent)),
        )
        grow = tf.where(rejections > 0, tf.minimum(grow, one), grow)

        def apply_step():
            for_each_replica(distribution, apply, summed, scale)
            state.scale.assign(scale * grow)
            return tf.constant(True)

        if adaptive.on_failure == "accept":
            # A failed last try is applied, unless it is not finite: that would be NaN weights.
            tf.cond(tf.math.is_finite(norm), apply_step, lambda: tf.constant(False))
        else:
            tf.cond(accepted, apply_step, lambda: tf.constant(False))
        return rejections, scale, accepted, norm

    rejections, scale, accepted, norm = in_cross_replica_context(
        decide, *per_replica, first_global, learning_rate
    )
    return {
        "step_size": learning_rate * scale,
        "rejections": rejections,
        "error_norm": norm,
        # A number, not a bool: under a strategy Keras averages every log across replicas.
        _FAILED: tf.cast(tf.logical_not(accepted), "float32"),
    }


# --------------------------------------------------------------------------------------------
# The train function around the step (shared by both routes)
# --------------------------------------------------------------------------------------------


def _build_train_function(
    model: keras.Model, step: Callable, adaptive: AdaptiveStepSize | None
) -> Callable:
    """Keras's own train-function machinery around ``step``, plus the adaptive failure policy."""
    inner = make_train_function(model, step)
    if adaptive is None:
        return inner

    def function(iterator):
        logs = dict(inner(iterator))
        if float(logs.pop(_FAILED)) > 0:
            if not math.isfinite(float(logs["error_norm"])):
                raise StepSizeError(
                    f"adaptive step: the error estimate was not finite (NaN or inf) in all "
                    f"{adaptive.max_rejections + 1} tries, down to step size "
                    f"{float(logs['step_size']):.3g}: the loss or its gradient is not finite at "
                    "the start of the step or at every trial point. The weights were left at the "
                    "start of the step. Check the data and the loss for NaN/inf values, or lower "
                    "the learning rate (the first step size)."
                )
            message = (
                f"adaptive step rejected {adaptive.max_rejections + 1} times (error norm "
                f"{float(logs['error_norm']):.3g}, last step size {float(logs['step_size']):.3g}, "
                f"rtol={adaptive.rtol}, atol={adaptive.atol})"
            )
            if adaptive.on_failure == "raise":
                raise StepSizeError(
                    f"{message}; the weights were left at the start of the step. Loosen "
                    "rtol/atol, raise max_rejections, lower the learning rate, or pass "
                    "AdaptiveStepSize(on_failure='accept')."
                )
            warnings.warn(
                f"{message}; applied the last try anyway (on_failure='accept').", stacklevel=2
            )
        return logs

    return function


class RungeKuttaTrainStep:
    """Mixin: a ``train_step`` that runs a Butcher tableau's stages on one mini-batch.

    Put it before the Keras model class (``class M(RungeKuttaTrainStep, keras.Model)``) and call
    :meth:`_configure_runge_kutta` in ``__init__``. See the module docstring for the step.
    """

    runge_kutta_tableau: ButcherTableau
    runge_kutta_adaptive: AdaptiveStepSize | None

    def _configure_runge_kutta(
        self,
        tableau: str | ButcherTableau | dict = "heun",
        adaptive: AdaptiveStepSize | bool | dict | None = None,
    ) -> None:
        """Set the tableau and the adaptive settings (and create the step-scale variable)."""
        tableau, adaptive = _resolve(tableau, adaptive)
        self.runge_kutta_tableau = tableau
        self.runge_kutta_adaptive = adaptive
        state = None
        if adaptive is not None:
            self.runge_kutta_step_scale = self.add_weight(
                shape=(),
                initializer="ones",
                dtype="float64",
                trainable=False,
                autocast=False,
                name="runge_kutta_step_scale",
            )
            state = _AdaptiveState(self.runge_kutta_step_scale)
        self._runge_kutta_state = state

    def train_step(self, data: Any) -> dict[str, Any]:
        return runge_kutta_train_step(
            self,
            data,
            self.runge_kutta_tableau,
            self.runge_kutta_adaptive,
            self._runge_kutta_state,
        )

    def make_train_function(self, force: bool = False):
        if self.train_function is not None and not force:
            return self.train_function
        _check_optimizer(self, f"{type(self).__name__}.fit")
        self.train_function = _build_train_function(
            self, self.train_step, self.runge_kutta_adaptive
        )
        return self.train_function

    def _runge_kutta_config(self) -> dict[str, Any]:
        tableau = self.runge_kutta_tableau
        named = TABLEAUX.get(tableau.name)
        return {
            "tableau": tableau.name if named == tableau else tableau.to_config(),
            "adaptive": None
            if self.runge_kutta_adaptive is None
            else self.runge_kutta_adaptive.to_config(),
        }


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
        self._configure_runge_kutta(tableau, adaptive)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(self._runge_kutta_config())
        return config


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
        self._configure_runge_kutta(tableau, adaptive)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(self._runge_kutta_config())
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects=None) -> RungeKuttaSequential:
        config = dict(config)
        tableau = config.pop("tableau", "heun")
        adaptive = config.pop("adaptive", None)
        model = super().from_config(config, custom_objects=custom_objects)
        model._configure_runge_kutta(tableau, adaptive)
        return model


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
    ``train_function`` is replaced by Keras's own train-function machinery wrapped around
    :func:`runge_kutta_train_step`. ``evaluate`` and ``predict`` are unchanged. Undo it with
    :func:`eject_runge_kutta` or by compiling again (``compile`` resets ``train_function``).
    The adaptive step scale lives outside the model, so saving an injected model saves the
    standard model; inject again after loading.
    """
    check_injectable(model, "inject_runge_kutta", RungeKuttaTrainStep, "its tableau")
    _check_optimizer(model, "inject_runge_kutta")
    tableau, adaptive = _resolve(tableau, adaptive)
    state = None
    if adaptive is not None:
        with model.distribute_strategy.scope():
            state = _AdaptiveState(_make_scale_variable())
    step = functools.partial(
        runge_kutta_train_step, model, tableau=tableau, adaptive=adaptive, state=state
    )
    marker = {"tableau": tableau, "adaptive": adaptive, "state": state}
    return install_train_function(
        model, _build_train_function(model, step, adaptive), _STATE_ATTRIBUTE, marker
    )


def is_runge_kutta_injected(model: keras.Model) -> bool:
    """Whether ``model.train_function`` is one installed by :func:`inject_runge_kutta`."""
    return is_injected(model, _STATE_ATTRIBUTE)


def eject_runge_kutta(model: keras.Model) -> keras.Model:
    """Undo :func:`inject_runge_kutta`: the next ``fit`` builds Keras's standard step again."""
    return remove_train_function(model, _STATE_ATTRIBUTE, "Runge–Kutta")
