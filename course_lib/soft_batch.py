"""Soft batch: gradient accumulation around any Keras optimizer (taught in 03_soft_batch).

A model that fits only 16 examples in memory can still be optimised as if its batch were 64:
compute the gradient of each batch of 16, add it to an accumulator, and let the optimizer take
one real step, with the mean of the accumulated gradients, every fourth batch. The idea comes
from Su Jianlin, "Keras之小众需求:自定义优化器", kexue.fm 2018; the author later withdrew his
first version because ``K.switch`` computed both branches, so whatever was assigned inside them
(the weights in appendix A1's rebuild, the velocity in notebook 03's demo) moved on the
"skipped" micro-batches as well. :class:`SoftBatch` lets its branch write only where it is
taken: with ``ops.cond`` on TensorFlow, which runs only that branch; on JAX, whose trainer
applies the optimizer statelessly, by computing the update always and selecting new or old
values with ``ops.where``
(:func:`course_lib.distribution.run_if`; appendix A2 builds both forms).

What :class:`SoftBatch` guarantees (each is a test in ``tests/test_soft_batch.py``):

* **Equal to a real large batch.** ``SoftBatch(inner, steps=k)`` at batch ``b`` gives the weights
  of ``inner`` at batch ``k * b`` (equal micro-batches, no BatchNorm or Dropout), within float
  round-off, for every Keras optimizer, with clipping and weight decay set on ``inner``.
* **Counts real updates.** ``inner`` is called once per real update, so its ``iterations``,
  Adam's bias correction and any learning-rate schedule advance once per update, not once per
  micro-batch (Keras's built-in ``gradient_accumulation_steps`` advances schedules per
  micro-batch).
* **Untouched between updates.** On a micro-batch that does not complete a group, the model's
  variables and ``inner``'s variables are not written at all; only the accumulators and the
  two counters change.
* **Leftovers are carried over** (the policy, see :data:`LEFTOVER_POLICY`).
* **Survives an interruption.** Accumulators and counters are optimizer variables, so a
  ``.keras`` file or a ``BackupAndRestore`` checkpoint saved mid-group resumes exactly.
* **Scales out.** Under ``tf.distribute.MirroredStrategy`` each micro-batch gradient is summed
  across replicas *before* it is accumulated, and clipping acts on the aggregated mean gradient,
  as on one device. (Keras itself clips per replica before aggregation.) Under
  ``keras.distribution.DataParallel`` on JAX, over devices or processes, the step sees the
  global batch's gradient and equals one device too.

The same guarantees hold on the TensorFlow and the JAX backends; the tests run on both.
"""

from __future__ import annotations

from course_lib.distribution import (
    for_each_replica,
    in_cross_replica_context,
    replicas_in_sync,
    run_if,
    sum_replicas,
    update,
)
from course_lib.keras_internals import micro_step_counter
from course_lib.optimizer_wrapper import OptimizerWrapper
from course_lib.validation import require_integer

import functools
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

#: What happens to a group that is not complete when an epoch ends.
LEFTOVER_POLICY = (
    "carry over: micro-batches left in the accumulators at the end of an epoch stay there and "
    "are completed by the first micro-batches of the next epoch. Every real update therefore "
    "averages exactly `steps` micro-batches (the same effective batch size, the same gradient "
    "noise), and no data is dropped or over-weighted. Training that ends mid-group leaves "
    "`pending_micro_batches` gradients unapplied; make the number of micro-batches a multiple "
    "of `steps` to avoid that."
)

#: The inner optimizer's clipping settings, which SoftBatch applies itself (see ``__init__``).
_CLIPPING_ATTRIBUTES = ("clipnorm", "global_clipnorm", "clipvalue")


@keras.saving.register_keras_serializable(package="course_lib")
class SoftBatch(OptimizerWrapper):
    """Accumulate ``steps`` micro-batch gradients, then let ``inner`` take one step with their mean.

    Use it wherever Keras expects an optimizer::

        model.compile(optimizer=SoftBatch(keras.optimizers.Adam(1e-3), steps=4), loss=...)
        model.fit(x, y, batch_size=16)  # optimises like batch_size=64

    Set clipping (``clipnorm``, ``global_clipnorm``, ``clipvalue``), ``weight_decay`` and
    learning-rate schedules on ``inner``: they act once per real update, on the mean gradient.
    Create the wrapper inside ``strategy.scope()`` when you train under a distribution strategy,
    as with any Keras optimizer; on JAX, call ``keras.distribution.set_distribution`` before
    creating the model and the wrapper.

    Parameters
    ----------
    inner:
        A fresh (not yet built) Keras optimizer that takes the real steps.
    steps:
        How many micro-batches make one real update; ``steps=1`` is ``inner`` unchanged.
    name:
        The optimizer's name; defaults to ``"soft_batch"``.
    """

    example = "SoftBatch(keras.optimizers.Adam(1e-3, clipnorm=1.0), steps=4)"

    def __init__(
        self,
        inner: keras.optimizers.Optimizer,
        steps: int = 4,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(inner, name=name or "soft_batch", **kwargs)
        self.steps = _validate_steps(steps)
        # SoftBatch clips once, the mean gradient after aggregation, with inner's settings;
        # inner, which sees only that clipped mean, must not clip it again.
        self._clipping = {name: getattr(inner, name) for name in _CLIPPING_ATTRIBUTES}
        for name in _CLIPPING_ATTRIBUTES:
            setattr(inner, name, None)

    # ------------------------------------------------------------------ state
    def build(self, variables: Sequence[keras.Variable]) -> None:
        """Build ``inner``, then one accumulator per trainable variable and the group counter.

        Everything is an optimizer variable, so saving the model saves a half-filled group.
        """
        super().build(variables)
        self._accumulators = [
            self.add_variable_from_reference(variable, name="soft_batch_accumulator")
            for variable in variables
        ]
        self._pending = self.add_variable(
            shape=(), dtype="int", initializer="zeros", name="pending_micro_batches"
        )

    @property
    def iterations(self) -> keras.Variable:
        """Real updates taken so far (``inner.iterations``); see :attr:`micro_batches`."""
        return self.inner.iterations

    @property
    def micro_batches(self) -> keras.Variable:
        """Micro-batches seen so far, applied or pending."""
        return micro_step_counter(self)

    @property
    def pending_micro_batches(self) -> keras.Variable:
        """Micro-batches in the accumulators, waiting for their group to complete (0..steps-1)."""
        return self._pending

    @property
    def clipping(self) -> dict[str, Any]:
        """The inner optimizer's clipping settings, which SoftBatch applies to the mean gradient."""
        return dict(self._clipping)

    @property
    def accumulators(self) -> list[keras.Variable]:
        """The running sums of the gradients of the pending micro-batches."""
        return list(self._accumulators)

    # ------------------------------------------------------------------ update
    def apply_wrapped(self, grads: list[Any], variables: list[Any], indices: list[int]) -> None:
        """Add this micro-batch's gradients; every ``steps``-th call, take one real step.

        Under a distribution strategy the gradients are first summed across replicas (each
        replica's loss is already divided by the number of replicas), so the accumulator holds
        the same global gradient on every replica. The decision to update is then made once,
        in cross-replica context. Only the gradients differ between replicas; the indices and
        the variables are the same Python objects everywhere and are bound, not handed over.
        """
        accumulate = functools.partial(self._accumulate, indices, variables)
        in_cross_replica_context(accumulate, sum_replicas(grads))

    def _accumulate(
        self,
        indices: list[int],
        variables: list[Any],
        distribution: Any,
        grads: list[Any],
    ) -> None:
        """Add to the accumulators and count; take the real step when the group is complete."""
        for g, i in zip(grads, indices, strict=True):
            if g is not None:
                update(distribution, self._accumulators[i], self.assign_add, g)
        update(distribution, self._pending, lambda count: count.assign_add(1))

        def real_step() -> None:
            for_each_replica(distribution, self._apply_mean_gradient, indices, grads, variables)
            for accumulator in self._accumulators:
                update(distribution, accumulator, lambda a: a.assign(ops.zeros(a.shape, a.dtype)))
            update(distribution, self._pending, lambda count: count.assign(0))

        written = [*variables, *self.inner.variables, *self._accumulators, self._pending]
        run_if(ops.greater_equal(self._pending.value, self.steps), real_step, written)

    def _apply_mean_gradient(
        self, indices: Sequence[int], grads: Sequence[Any], trainable_variables: Sequence[Any]
    ) -> None:
        """One real step of ``inner`` with the clipped mean of the accumulated gradients.

        Runs per replica. ``inner``'s clipping happens here, on the global mean gradient, and
        only here (``inner`` was handed over without it): exactly once, after aggregation.
        ``inner`` sums the gradients across replicas again, so each replica hands it
        ``mean / replicas``.
        """
        accumulators = [self._accumulators[i] for i in indices]
        mean = [
            None if g is None else ops.divide(a.value, ops.cast(self.steps, a.dtype))
            for g, a in zip(grads, accumulators, strict=True)
        ]
        present = [k for k, g in enumerate(mean) if g is not None]
        clipped = clip_gradients([mean[k] for k in present], **self._clipping)
        for k, g in zip(present, clipped, strict=True):
            mean[k] = g
        replicas = replicas_in_sync()
        if replicas > 1:
            mean = [None if g is None else g / replicas for g in mean]
        self.inner.apply(mean, trainable_variables)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """The inner optimizer as it was handed over (its clipping included) and ``steps``."""
        config = self._inner_config()
        config["inner"]["config"].update(self._clipping)
        return {**config, "steps": self.steps}


def soft_sgd_step(
    variable: Any,
    accumulator: Any,
    count: Any,
    gradient: Any,
    steps: int,
    learning_rate: float,
) -> None:
    """One micro-batch of soft-batch SGD, the core of :class:`SoftBatch` in a few lines.

    Add ``gradient`` to ``accumulator`` and count it; when ``steps`` gradients are in, step
    ``variable`` with their mean and empty the accumulator. ``ops.cond`` runs only the branch it
    takes, so on the other micro-batches ``variable`` is not written at all (``K.switch`` in the
    Keras 2 version computed both). Notebook 03 writes it on one number (``my_soft_sgd_step``)
    and checks it against this one; its first exercise asks for the momentum version.
    TensorFlow only: on JAX a traced branch cannot assign variables (see
    :func:`select_soft_sgd_step`).
    """
    accumulator.assign_add(gradient)
    count.assign_add(1)

    def update() -> None:
        variable.assign_sub(learning_rate * accumulator / steps)
        accumulator.assign(ops.zeros(accumulator.shape, accumulator.dtype))
        count.assign(0)

    ops.cond(ops.equal(count, steps), update, lambda: None)


def select_soft_sgd_step(
    variable: Any,
    accumulator: Any,
    count: Any,
    gradient: Any,
    steps: int,
    learning_rate: float,
) -> None:
    """:func:`soft_sgd_step` in the form JAX allows: compute both outcomes, select one.

    Every micro-batch computes the stepped value, then assigns ``ops.where(is_update, stepped,
    old)`` to each variable. Both "branches" are evaluated, as with ``K.switch``, but they are
    pure values: what is written on a non-update micro-batch is the old value, bit for bit. It
    runs on both backends, on ``keras.Variable`` arguments (``ops.where`` reads their
    ``.value``), and equals :func:`soft_sgd_step` bit for bit; appendix A2 builds it.
    """
    accumulator.assign_add(gradient)
    count.assign_add(1)
    is_update = ops.equal(count.value, steps)
    stepped = variable.value - learning_rate * accumulator.value / steps
    variable.assign(ops.where(is_update, stepped, variable.value))
    accumulator.assign(ops.where(is_update, ops.zeros_like(accumulator.value), accumulator.value))
    count.assign(ops.where(is_update, 0, count.value))


def _validate_steps(steps: Any) -> int:
    return require_integer(
        steps,
        "steps",
        minimum=1,
        meaning="micro-batches per real update",
        example="steps=4 to train at batch 16 as if it were 64",
    )


def clip_gradients(
    grads: Sequence[Any], clipnorm: Any, global_clipnorm: Any, clipvalue: Any
) -> list[Any]:
    """Clip ``grads`` as a Keras 3.15 optimizer with these settings clips them.

    The rules of ``BaseOptimizer._clip_gradients``, at most one of them, in this order:
    ``clipnorm`` clips each tensor by its own norm (:func:`clip_by_norm`, the operations of the
    backend's optimizer); ``global_clipnorm`` scales every tensor by one factor from their joint
    norm, a NaN factor when that norm is not finite (Keras's ``clip_by_global_norm``, the same
    operations); ``clipvalue`` clips each entry.
    """
    if clipnorm and clipnorm > 0:
        return [clip_by_norm(g, clipnorm) for g in grads]
    if global_clipnorm and global_clipnorm > 0:
        norm = ops.sqrt(ops.sum(ops.stack([ops.sum(ops.square(g)) for g in grads])))
        scale = global_clipnorm * ops.minimum(1.0 / norm, 1.0 / global_clipnorm)
        scale = scale + (norm - norm)  # NaN unless the norm is finite
        return [g * scale for g in grads]
    if clipvalue and clipvalue > 0:
        return [ops.clip(g, -clipvalue, clipvalue) for g in grads]
    return list(grads)


def clip_by_norm(values: Any, clipnorm: float) -> Any:
    """``values`` scaled to a norm of at most ``clipnorm``, as this backend's Keras optimizer does.

    TensorFlow's optimizer calls ``tf.clip_by_norm``; the others use ``BaseOptimizer``'s formula,
    repeated here with the same operations in the same order (a zero tensor stays zero).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.clip_by_norm(values, clipnorm)
    l2sum = ops.sum(ops.square(values), None, keepdims=True)
    positive = l2sum > 0
    l2sum_safe = ops.where(positive, l2sum, ops.ones_like(l2sum))
    l2norm = ops.where(positive, ops.sqrt(l2sum_safe), l2sum)
    scaled = ops.convert_to_tensor(ops.multiply(values, clipnorm))
    return scaled / ops.maximum(l2norm, clipnorm)


__all__ = [
    "LEFTOVER_POLICY",
    "SoftBatch",
    "clip_by_norm",
    "clip_gradients",
    "select_soft_sgd_step",
    "soft_sgd_step",
]
