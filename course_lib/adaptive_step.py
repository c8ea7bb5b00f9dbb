"""The adaptive step-size controller inside a training step (notebook 05, appendix A3).

A Runge–Kutta method with an embedded pair (:mod:`course_lib.runge_kutta`) is its rule plus the
:class:`AdaptiveController` here, the one driver of the adaptive step on both backends:

1. **try**: ask the rule for a step of size h = learning_rate × scale and its error estimate,
   and take SciPy's error norm (:func:`course_lib.adaptive.error_norm`);
2. **retry**: shrink the scale and try again on the same batch until the norm is below 1 or the
   retries are used up (:func:`course_lib.adaptive.retry_until_accepted`, one ``while_loop``
   compiled into the step);
3. **accept and grow**: put the weights back, then, if the policy takes the last try, let the
   optimizer apply it and store the grown scale for the next batch, inside
   :func:`course_lib.distribution.run_if` (``ops.cond`` on TensorFlow, the update computed and
   selected on JAX, whose trainer applies the optimizer statelessly);
4. **raise**: on the Python side, after the train function returns, a step that used up its
   retries raises :class:`~course_lib.adaptive.StepSizeError` or warns
   (:meth:`AdaptiveController.check_logs`).

Under a ``LossScaleOptimizer`` (mixed precision) every try's gradients come unscaled from the
skeleton (:mod:`course_lib.multi_gradient_step.loss_scaling`). A try whose *loss* is not finite
somewhere is rejected and retried with a smaller step, as in float32: the point is at fault. But
a gradient that overflowed where the loss is finite (or at p) is the loss scale's doing: the
retries end, the step is skipped as a whole (weights, optimizer, non-trainable state and step
scale as they were) and the loss scale halves, as Keras's own step does; a skipped step is not
a failure, so nothing raises. If every try's loss is non-finite somewhere, the step fails as in
float32 (:class:`~course_lib.adaptive.StepSizeError` under both policies, nothing applied) and
is not counted as skipped; the loss scale still halves, by Keras's rule for a gradient that is
not finite.

Under ``tf.distribute.MirroredStrategy`` every try all-reduces gradients, which TensorFlow cannot
do inside control flow that runs in a replica context; so the loop runs once, in cross-replica
context, and each try runs on every replica from there (:mod:`course_lib.distribution`). Every
replica computes the same error norm from the same all-reduced gradients, so the decisions are
taken on replica 0's copy. On JAX those helpers are plain calls, and the decisions are float64
only in JAX's x64 mode, which the controller requires.
"""

from __future__ import annotations

from course_lib.adaptive import (
    AdaptiveStepSize,
    StepSizeError,
    error_norm,
    growth_factor,
    retry_until_accepted,
)
from course_lib.distribution import (
    first_replica,
    for_each_replica,
    in_cross_replica_context,
    run_if,
)
from course_lib.multi_gradient_step.loss_scaling import (
    RecordedTrialPoints,
    all_finite,
    kept_state,
    skip_logs,
    update_loss_scale,
)
from course_lib.multi_gradient_step.records import Rule, StepStart, TrialPoints
from course_lib.multi_gradient_step.step import apply_direction

import math
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import keras
from keras import ops

__all__ = ["FAILED_LOG", "AdaptiveController", "StepOutcome", "step_logs"]

#: Log entry that tells the Python side a step used up its retries (removed before Keras sees it).
FAILED_LOG = "_adaptive_step_failed"


class StepOutcome(NamedTuple):
    """The controlled step's result, as the logs report it."""

    rejections: Any
    scale: Any
    accepted: Any
    norm: Any
    #: Under loss scaling, whether the step was skipped for a gradient that is not finite.
    skipped: Any = None


def _require_float64(where: str) -> None:
    """The controller decides in float64; JAX has float64 only in its x64 mode."""
    if keras.backend.backend() != "jax":
        return
    import jax

    if not jax.config.jax_enable_x64:
        raise ValueError(
            f"{where}: the adaptive step's controller takes its accept/reject decisions in "
            "float64 (float32 round-off would move them), and JAX computes in float32 unless "
            "its x64 mode is on. Set JAX_ENABLE_X64=1 before JAX is imported (or call "
            "jax.config.update('jax_enable_x64', True) first); the model itself may stay float32."
        )


def _step_scale(model: keras.Model, intrusive: bool, where: str) -> keras.Variable:
    """h / learning_rate, 1 at first: a weight of ``model`` (saved with it), or a free variable.

    On JAX a free variable is refused: the trainer hands the step only the model's and the
    optimizer's variables, so the scale must be one of the model's weights.
    """
    settings = {"dtype": "float64", "trainable": False, "autocast": False}
    name = "runge_kutta_step_scale"
    if not intrusive:
        _require_float64(where)
        return model.add_weight((), initializer="ones", name=name, **settings)
    if keras.backend.backend() == "jax":
        raise ValueError(
            f"{where}: an adaptive Runge–Kutta step cannot be injected on the JAX backend: "
            "Keras's JAX trainer hands the step only the model's and the optimizer's "
            "variables, and the step-size scale of an injected step lives outside the model. "
            "Use RungeKuttaModel or RungeKuttaSequential (the scale is one of their weights), "
            "or inject a fixed step (adaptive=None)."
        )
    with model.distribute_strategy.scope():
        return keras.Variable(1.0, name=name, **settings)


@dataclass(frozen=True, eq=False)
class AdaptiveController:
    """The step-size controller of a training step (a ``Controller`` of the skeleton).

    It asks the rule for a step of size h = learning_rate × scale and its error estimate,
    shrinks and retries on the same batch until the error norm is below 1, then applies the
    accepted try (or, under ``on_failure="accept"``, the last finite one) and leaves the next
    batch's scale in its variable. Written once: under a TensorFlow distribution strategy the
    loop runs in cross-replica context and each try on every replica
    (:mod:`course_lib.distribution`); on JAX those helpers are plain calls.
    """

    settings: AdaptiveStepSize
    #: −1/(q+1), from the orders of the embedded pair.
    exponent: float
    #: h / learning_rate: 1 at first, then the controller's choice for the next batch.
    scale: keras.Variable

    @classmethod
    def create(
        cls,
        settings: AdaptiveStepSize,
        orders: tuple[int, int],
        model: keras.Model,
        intrusive: bool,
        where: str,
    ) -> AdaptiveController:
        """The controller for a pair of ``orders``; ``model`` owns its scale unless intrusive."""
        return cls(settings, settings.exponent(*orders), _step_scale(model, intrusive, where))

    @property
    def variables(self) -> list[keras.Variable]:
        return [self.scale]

    def step(self, rule: Rule, trial: TrialPoints, start: StepStart, model: keras.Model):
        """Try, shrink and retry on the same batch, then apply the step or keep the weights.

        Runs per replica; the decisions run once, in cross-replica context, and every replica
        computes the same error norm from the same whole-batch gradients, so they are taken on
        replica 0's copy. Ends in :func:`~course_lib.distribution.run_if`.
        """
        settings, exponent, scale = self.settings, self.exponent, self.scale
        present = [g is not None for g in start.gradients]
        variables = model.trainable_variables
        written = [*variables, *model.optimizer.variables, scale]
        scaling = start.loss_scale is not None

        def attempt(try_scale: Any, start: StepStart) -> tuple[Any, list]:
            h = ops.cast(start.learning_rate, "float64") * try_scale
            recorded = RecordedTrialPoints(trial) if scaling else trial
            direction = rule(recorded, start, h)
            estimate = direction.estimate
            norm = error_norm(start.weights, estimate.new_weights, estimate.error, settings)
            # Loop variables cannot be None: zeros stand in for a variable without a gradient.
            pairs = zip(direction.gradients, start.weights, strict=True)
            payload = [ops.zeros_like(p) if g is None else g for g, p in pairs]
            if not scaling:
                return norm, payload
            # A gradient that overflowed (at p, or where the loss is finite) ends the retries as
            # if accepted; the step is then skipped as a whole, and the loss scale lowered.
            overflowed = ops.logical_or(
                ops.logical_not(all_finite(model.optimizer, start.gradients)),
                recorded.scale_overflowed(model.optimizer),
            )
            return ops.where(overflowed, 0.0, norm), [*payload, overflowed]

        def apply(direction: list, try_scale: Any) -> None:
            # With SGD(learning_rate) the step is p − h·direction, h = learning_rate·scale.
            apply_direction(
                model,
                [
                    g * ops.cast(try_scale, g.dtype) if keep else None
                    for g, keep in zip(direction, present, strict=True)
                ],
            )

        def restore_kept(start: StepStart, finite: Any) -> None:
            trial.restore(kept_state(start, finite))

        def decide(distribution: Any, start: StepStart) -> StepOutcome:
            def attempt_everywhere(try_scale: Any) -> tuple[Any, list]:
                tried = for_each_replica(distribution, attempt, try_scale, start)
                return first_replica(distribution, tried)

            zeros = [ops.zeros(v.shape, v.dtype) for v in variables]
            if scaling:
                zeros.append(ops.convert_to_tensor(False))
            kept_scale = ops.copy(scale.value)
            last = retry_until_accepted(attempt_everywhere, kept_scale, zeros, settings, exponent)
            direction = last.payload[:-1] if scaling else last.payload
            rejections = last.tries - 1
            grow = growth_factor(last.norm, rejections > 0, settings, exponent)

            def apply_step() -> None:
                for_each_replica(distribution, apply, direction, last.scale)
                scale.assign(last.scale * grow)

            # A failed last try is applied under "accept", unless it is not finite: NaN weights.
            applied = ops.isfinite(last.norm) if settings.on_failure == "accept" else last.accepted
            if not scaling:
                for_each_replica(distribution, trial.restore, start)
                run_if(applied, apply_step, written)
                return StepOutcome(rejections, last.scale, last.accepted, last.norm)
            # Skipped: the scale overflowed. A direction that is not finite otherwise (the loss
            # was not finite at every try's trial point) is not applied, and fails as in float32.
            skipped = last.payload[-1]
            finite = ops.logical_and(
                ops.logical_not(skipped), all_finite(model.optimizer, direction)
            )
            for_each_replica(distribution, restore_kept, start, ops.logical_not(skipped))
            run_if(ops.logical_and(applied, finite), apply_step, written)
            update_loss_scale(model.optimizer, finite)
            # A skipped step reports the step size it leaves for the next one, and no estimate.
            return StepOutcome(
                ops.where(skipped, 0, rejections),
                ops.where(skipped, kept_scale, last.scale),
                last.accepted,
                ops.where(skipped, float("nan"), last.norm),
                skipped,
            )

        outcome = StepOutcome(*in_cross_replica_context(decide, start))
        return step_logs(outcome, ops.cast(start.learning_rate, "float64") * outcome.scale)

    def check_logs(self, logs: dict[str, Any]) -> None:
        """Raise :class:`StepSizeError` for a failed step, or warn under ``on_failure="accept"``."""
        if float(logs.pop(FAILED_LOG)) > 0:
            _fail(logs, self.settings)


def step_logs(outcome: StepOutcome, step_size: Any) -> dict[str, Any]:
    """The logs an adaptive step adds: ``step_size``, ``rejections``, ``error_norm``.

    Under loss scaling a skipped step is not a failure, and the skeleton counts it.
    """
    failed = ops.logical_not(outcome.accepted)
    if outcome.skipped is not None:
        failed = ops.logical_and(failed, ops.logical_not(outcome.skipped))
    logs = {
        "step_size": step_size,
        "rejections": outcome.rejections,
        "error_norm": outcome.norm,
        # A number, not a bool: under a strategy Keras averages every log across replicas.
        FAILED_LOG: ops.cast(failed, "float32"),
    }
    if outcome.skipped is not None:
        logs.update(skip_logs(ops.logical_not(outcome.skipped)))
    return logs


def _fail(logs: dict[str, Any], settings: AdaptiveStepSize) -> None:
    """Raise :class:`StepSizeError` for a failed step, or warn under ``on_failure="accept"``."""
    tries = settings.max_rejections + 1
    step_size = float(logs["step_size"])
    if not math.isfinite(float(logs["error_norm"])):
        raise StepSizeError(
            f"adaptive step: the error estimate was not finite (NaN or inf) in all {tries} tries, "
            f"down to step size {step_size:.3g}: the loss or its gradient is not finite at the "
            "start of the step or at every trial point. The weights were left at the start of "
            "the step. Check the data and the loss for NaN/inf values, or lower the learning "
            "rate (the first step size)."
        )
    message = (
        f"adaptive step rejected {tries} times (error norm {float(logs['error_norm']):.3g}, "
        f"last step size {step_size:.3g}, rtol={settings.rtol}, atol={settings.atol})"
    )
    if settings.on_failure == "raise":
        raise StepSizeError(
            f"{message}; the weights were left at the start of the step. Loosen rtol/atol, raise "
            "max_rejections, lower the learning rate, or pass "
            "AdaptiveStepSize(on_failure='accept')."
        )
    warnings.warn(f"{message}; applied the last try anyway (on_failure='accept').", stacklevel=4)
