"""Lookahead: a wrapper that pulls any Keras optimizer back towards slow weights (notebook 07).

Lookahead (Zhang, Lucas, Hinton and Ba, "Lookahead Optimizer: k steps forward, 1 step back",
NeurIPS 2019) keeps two copies of the weights. The *fast* weights are the model's: the inner
optimizer (SGD, Adam...) moves them as usual. Every k steps the *slow* weights take one step of
size α towards where the fast ones went, and the fast weights restart from there:

    slow ← slow + α·(fast − slow),   fast ← slow.

It needs no second gradient, only state that lives across steps, so it is a wrapper in the
sense of the soft batch of notebook 03 (after Su Jianlin, "Keras之小众需求:自定义优化器",
kexue.fm 2018): an optimizer around an optimizer, built on
:class:`course_lib.optimizer_wrapper.OptimizerWrapper`.

What :class:`Lookahead` guarantees (each is a test in ``tests/test_lookahead.py``):

* **The formula.** On a quadratic it equals a NumPy Lookahead around SGD (with momentum too; the
  inner optimizer's state carries on across synchronisations, as in the paper).
* **α = 1 is the inner optimizer.** ``Lookahead(inner, slow_step_size=1.0)`` follows ``inner``.
* **Survives an interruption.** The slow weights and the position in the cycle are optimizer
  variables: a ``.keras`` file or a ``BackupAndRestore`` checkpoint saved mid-cycle resumes
  exactly.
* **Scales out.** Under ``tf.distribute.MirroredStrategy`` the inner optimizer aggregates the
  gradients as usual, and the synchronisation runs once, in cross-replica context, on every
  replica's copy: the result equals one device. Under ``keras.distribution.DataParallel`` on
  JAX (devices or processes) it equals one device too.
* **Both backends.** On TensorFlow the start of a cycle and the synchronisation run under
  ``ops.cond``; on JAX, whose trainer applies the optimizer statelessly, they are computed on
  every step and selected with ``ops.where`` (:func:`course_lib.distribution.run_if`).
* **Clear errors** for ``sync_period < 1`` and ``slow_step_size`` outside (0, 1].

Slow weights are taken from the model at the start of every cycle (after a synchronisation they
equal the fast weights anyway). So no separate initialisation is needed, and weights loaded
into the model between cycles are where the next cycle starts.
"""

from __future__ import annotations

from course_lib.distribution import in_cross_replica_context, run_if, update
from course_lib.optimizer_wrapper import OptimizerWrapper
from course_lib.validation import require_integer, require_number

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops


def lookahead_interpolation(slow: Any, fast: Any, slow_step_size: float) -> Any:
    """The slow weights after a synchronisation: slow + α·(fast − slow).

    The one line that makes Lookahead; :class:`Lookahead` applies it to every variable, and the
    fast weights are then set to the result. Works on NumPy arrays and tensors alike.
    """
    return slow + slow_step_size * (fast - slow)


@keras.saving.register_keras_serializable(package="course_lib")
class Lookahead(OptimizerWrapper):
    """Let ``inner`` take ``sync_period`` fast steps, then move the slow weights towards them.

    Use it wherever Keras expects an optimizer::

        model.compile(optimizer=Lookahead(keras.optimizers.Adam(1e-3)), loss=...)

    Parameters
    ----------
    inner:
        A fresh (not yet built) Keras optimizer that takes the fast steps.
    sync_period:
        k, the number of fast steps per cycle (the paper uses 5 to 10).
    slow_step_size:
        α in (0, 1]: how far the slow weights move towards the fast ones (the paper uses 0.5).
        α = 1 makes Lookahead the inner optimizer unchanged.
    name:
        The optimizer's name; defaults to ``"lookahead"``.
    """

    example = "Lookahead(keras.optimizers.Adam(1e-3), sync_period=5, slow_step_size=0.5)"

    def __init__(
        self,
        inner: keras.optimizers.Optimizer,
        sync_period: int = 5,
        slow_step_size: float = 0.5,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(inner, name=name or "lookahead", **kwargs)
        self.sync_period = require_integer(
            sync_period,
            "sync_period",
            minimum=1,
            meaning="k, fast steps per cycle",
            example="sync_period=5",
        )
        self.slow_step_size = require_number(
            slow_step_size,
            "slow_step_size",
            low=0.0,
            high=1.0,
            low_inclusive=False,
            meaning="α: 0 would never move, above 1 overshoots the fast weights",
            example="slow_step_size=0.5",
        )

    # ------------------------------------------------------------------ state
    def build(self, variables: Sequence[keras.Variable]) -> None:
        """Build ``inner``, then create the slow weights and the position in the cycle."""
        super().build(variables)
        self._slow_weights = [
            self.add_variable_from_reference(variable, name="lookahead_slow")
            for variable in variables
        ]
        self._cycle_step = self.add_variable(
            shape=(), dtype="int", initializer="zeros", name="lookahead_cycle_step"
        )

    @property
    def slow_weights(self) -> list[keras.Variable]:
        """The slow weights, one per trainable variable (valid from the first step of a cycle)."""
        return list(self._slow_weights)

    @property
    def cycle_step(self) -> keras.Variable:
        """Fast steps taken in the current cycle (0 .. sync_period − 1)."""
        return self._cycle_step

    # ------------------------------------------------------------------ update
    def apply_wrapped(self, grads: list[Any], variables: list[Any], indices: list[int]) -> None:
        """One fast step of ``inner``; every ``sync_period``-th step, synchronise.

        The cycle's bookkeeping runs in cross-replica context, so that under MirroredStrategy
        the decision is taken once and every replica's copy of the weights moves the same way.
        """
        slow = [self._slow_weights[i] for i in indices]

        def start_cycle(distribution: Any) -> None:
            def copy_fast_to_slow() -> None:
                for s, fast in zip(slow, variables, strict=True):
                    update(distribution, s, lambda s_, f_: s_.assign(f_), fast.value)

            run_if(ops.equal(self._cycle_step.value, 0), copy_fast_to_slow, slow)

        def count_and_maybe_sync(distribution: Any) -> None:
            update(distribution, self._cycle_step, lambda c: c.assign_add(1))

            def synchronise() -> None:
                for s, fast in zip(slow, variables, strict=True):
                    update(distribution, fast, self._pull_fast, s.value)
                    update(distribution, s, lambda s_, f_: s_.assign(f_), fast.value)
                update(distribution, self._cycle_step, lambda c: c.assign(0))

            run_if(
                ops.greater_equal(self._cycle_step.value, self.sync_period),
                synchronise,
                [*variables, *slow, self._cycle_step],
            )

        in_cross_replica_context(start_cycle)
        self.inner.apply(grads, variables)
        in_cross_replica_context(count_and_maybe_sync)

    def _pull_fast(self, fast: Any, slow: Any) -> Any:
        """fast ← slow + α·(fast − slow), on one device's copy."""
        alpha = ops.convert_to_tensor(self.slow_step_size, dtype=fast.dtype)
        return fast.assign(lookahead_interpolation(slow, fast, alpha))

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        config = self._inner_config()
        config.update(sync_period=self.sync_period, slow_step_size=self.slow_step_size)
        return config


__all__ = ["Lookahead", "lookahead_interpolation"]
