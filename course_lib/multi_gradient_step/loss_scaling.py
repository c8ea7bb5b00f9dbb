"""Mixed precision in a multi-gradient step: the loss scaled at every pass, a bad step skipped.

Under a ``mixed_float16`` policy ``compile`` wraps the optimizer in Keras's
``keras.optimizers.LossScaleOptimizer``. Keras's own one-gradient step multiplies the loss by
the optimizer's dynamic scale before differentiating (so that small float16 gradients do not
underflow), and the optimizer divides the gradients by it again, skips the step if one is not
finite (and halves the scale), and doubles the scale after ``dynamic_growth_steps`` good steps.
A multi-gradient step builds its trial points from gradients, so every pass must hand the rule
*unscaled* gradients, and the decision belongs to the whole step. This module, used by both
backends' skeletons and by the adaptive controller, does it once, in ``keras.ops``:

1. :func:`loss_scale` reads the scale once per step (``None`` without a
   ``LossScaleOptimizer``: then nothing here runs, and the float32 step is unchanged);
   :func:`scaled` and :func:`unscaled` are what every pass does with it;
2. :class:`RecordedTrialPoints` keeps every loss and gradient a rule takes, and
   :func:`all_finite` asks ``LossScaleOptimizer.check_finite`` about the gradients at once (the
   adaptive controller also asks whether an overflow was the scale's doing: a finite loss with
   a gradient that is not; where the loss itself is not finite it rejects the try instead);
3. :func:`apply_unless_skipped`: if every gradient was finite, the optimizer *inside* the
   ``LossScaleOptimizer`` applies the unscaled direction; if not, nothing is applied (the
   weights, the optimizer's variables and, by :func:`kept_state`, the non-trainable state stay
   as they were before the step); either way :func:`update_loss_scale` moves the scale by
   ``LossScaleOptimizer``'s own rule, in cross-replica context under a TensorFlow strategy.
   (Keras's own step lets BatchNorm's moving statistics take the skipped batch's step; here
   they stay, since a batch that overflowed may also have moved them to values that are not
   finite.)

Each step's logs carry :data:`SKIPPED_LOG` (1 for a skipped step); each backend's train function
turns it into ``skipped_steps`` (:data:`SKIPPED_STEPS`), the steps skipped since the train
function was made (by ``compile`` or an injection), which ``History`` keeps epoch by epoch.
"""

from __future__ import annotations

from course_lib.distribution import (
    first_replica,
    for_each_replica,
    in_cross_replica_context,
    run_if,
)
from course_lib.multi_gradient_step.records import StepStart, TrialPoints

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
from keras import ops

__all__ = [
    "SKIPPED_LOG",
    "SKIPPED_STEPS",
    "RecordedTrialPoints",
    "all_finite",
    "apply_unless_skipped",
    "kept_state",
    "loss_scale",
    "scaled",
    "scales_loss",
    "skip_logs",
    "unscaled",
    "update_loss_scale",
]

#: Log entry of one step: 1 if it was skipped (the backends' train functions replace it).
SKIPPED_LOG = "_loss_scale_skipped"
#: Log entry of the train function: the steps skipped since it was made.
SKIPPED_STEPS = "skipped_steps"


def scales_loss(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether the step must scale the loss for ``optimizer`` (a ``LossScaleOptimizer``)."""
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def loss_scale(model: keras.Model) -> Any:
    """The loss scale of this step (read once, before the first pass), or ``None``.

    Builds the ``LossScaleOptimizer`` if it is not yet (on TensorFlow without a strategy, Keras
    builds it while the step is first traced, in ``apply``, which the skeleton never calls).
    """
    optimizer = model.optimizer
    if not scales_loss(optimizer):
        return None
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    return ops.convert_to_tensor(optimizer.dynamic_scale)


def scaled(loss: Any, scale: Any) -> Any:
    """The loss a pass differentiates: ``loss × scale`` (``loss`` itself without a scale), as
    ``LossScaleOptimizer.scale_loss`` computes it."""
    return loss if scale is None else ops.multiply(loss, scale)


def unscaled(gradients: Sequence[Any], scale: Any) -> list:
    """The gradients of the unscaled loss, from those of :func:`scaled` (``None`` stays), divided
    as ``LossScaleOptimizer.apply`` divides them."""
    if scale is None:
        return list(gradients)
    return [None if g is None else ops.divide(g, scale) for g in gradients]


def all_finite(optimizer: keras.optimizers.LossScaleOptimizer, *gradients: Sequence[Any]) -> Any:
    """Whether every gradient of every list is finite: ``LossScaleOptimizer.check_finite``."""
    return optimizer.check_finite([g for group in gradients for g in group])


@dataclass(frozen=True, eq=False)
class RecordedTrialPoints:
    """A backend's trial points that keep every loss and gradient they hand a rule, to check
    them after the rule has run (in the same trace)."""

    trial: TrialPoints
    #: The gradients of every pass, in order.
    taken: list = field(default_factory=list)
    #: The whole batch's loss of every pass.
    losses: list = field(default_factory=list)

    def gradients_at(self, start: StepStart, point: Sequence[Any]) -> list:
        loss, gradients = self.loss_and_gradients_at(start, point)
        return gradients

    def loss_and_gradients_at(self, start: StepStart, point: Sequence[Any]) -> tuple[Any, list]:
        loss, gradients = self.trial.loss_and_gradients_at(start, point)
        self.losses.append(loss)
        self.taken.append(gradients)
        return loss, gradients

    def restore(self, start: StepStart) -> None:
        self.trial.restore(start)

    def scale_overflowed(self, optimizer: keras.optimizers.LossScaleOptimizer) -> Any:
        """Whether a pass had a finite loss but a gradient that is not: the loss scale's doing.

        (Where the loss itself is not finite, the point is at fault, not the scale.)
        """
        overflowed = ops.convert_to_tensor(False)
        for loss, gradients in zip(self.losses, self.taken, strict=True):
            bad = ops.logical_and(
                ops.all(ops.isfinite(loss)), ops.logical_not(all_finite(optimizer, gradients))
            )
            overflowed = ops.logical_or(overflowed, bad)
        return overflowed


def kept_state(start: StepStart, finite: Any) -> StepStart:
    """``start`` with the non-trainable state a step keeps: the first pass's, or on a skip the
    state from before it (BatchNorm's statistics do not move on a skipped step)."""
    batch, weights, before, after, gradients, rate, scale = start
    kept = [ops.where(finite, a, b) for a, b in zip(after, before, strict=True)]
    return StepStart(batch, weights, before, kept, gradients, rate, scale)


def update_loss_scale(optimizer: keras.optimizers.LossScaleOptimizer, finite: Any) -> None:
    """``LossScaleOptimizer``'s rule after one step, written with ``ops.where``.

    A skipped step halves the scale and restarts the count of good steps; the
    ``dynamic_growth_steps``-th good step in a row doubles it and restarts the count.
    """
    counter, scale = optimizer.step_counter.value, optimizer.dynamic_scale.value
    grow = ops.logical_and(finite, ops.equal(counter, optimizer.dynamic_growth_steps - 1))
    new_scale = ops.where(
        grow,
        ops.multiply(scale, 2.0),
        ops.where(finite, scale, ops.multiply(scale, 0.5)),
    )
    counting = ops.logical_and(finite, ops.logical_not(grow))
    optimizer.dynamic_scale.assign(new_scale)
    optimizer.step_counter.assign(ops.where(counting, counter + 1, ops.zeros_like(counter)))


def apply_unless_skipped(
    model: keras.Model, gradients: Sequence[Any], finite: Any, apply: Callable[[list], None]
) -> None:
    """``apply(gradients)`` (the inner optimizer's step) only if ``finite``; then the scale moves.

    Runs the decision once, in cross-replica context, as ``LossScaleOptimizer`` does: ``apply``
    runs on every replica, under :func:`~course_lib.distribution.run_if`.
    """
    optimizer = model.optimizer
    written = [*model.trainable_variables, *optimizer.inner_optimizer.variables]

    def decide(distribution: Any, gradients: list, finite: Any) -> None:
        finite = first_replica(distribution, finite)
        run_if(finite, lambda: for_each_replica(distribution, apply, gradients), written)
        update_loss_scale(optimizer, finite)

    in_cross_replica_context(decide, list(gradients), finite)


def skip_logs(finite: Any) -> dict[str, Any]:
    """The log entry of one step: 1 if it was skipped, else 0."""
    return {SKIPPED_LOG: ops.cast(ops.logical_not(finite), "int32")}
