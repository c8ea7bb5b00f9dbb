"""What every optimizer that wraps another optimizer needs (notebooks 03 and 07).

Some optimizers are not a new update rule but a policy *around* one: soft batch (notebook 03)
decides when the inner optimizer steps, Lookahead (notebook 07) pulls the inner optimizer's
weights back towards a slow copy every k steps. Both are Keras optimizers themselves, so that
``model.compile(optimizer=Wrapper(inner))`` works, and both must:

* take a *fresh* inner optimizer and build it on the model's variables when they are built;
* list the inner optimizer's variables after their own, so that a ``.keras`` file, a weights
  file or a ``BackupAndRestore`` checkpoint saves and restores the whole state;
* hand the learning rate through to the inner optimizer (callbacks such as
  ``ReduceLROnPlateau`` set ``optimizer.learning_rate``);
* serialise the inner optimizer inside their own config.

:class:`OptimizerWrapper` does those; subclasses override ``apply`` (and ``build`` to add their
own state). :func:`validate_inner` is the shared check of the inner optimizer.
"""

from __future__ import annotations

from course_lib.validation import require_fresh_optimizer

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf


def validate_inner(inner: Any, wrapper: type, example: str) -> None:
    """Raise a clear error unless ``inner`` is a fresh, unscaled, non-accumulating optimizer.

    ``wrapper`` is the wrapping class (an ``inner`` of that class is refused); ``example`` is a
    correct call of it.
    """
    require_fresh_optimizer(inner, wrapper, example)


class OptimizerWrapper(keras.optimizers.Optimizer):
    """A Keras optimizer that owns an inner optimizer and delegates the real updates to it.

    Subclasses create their own variables in :meth:`build` (after calling ``super().build``)
    and override ``apply``. Call :meth:`_prepare_apply` at the start of ``apply``.
    """

    def __init__(self, inner: keras.optimizers.Optimizer, name: str) -> None:
        super().__init__(learning_rate=0.0, name=name)
        self.inner = inner

    def build(self, variables: Sequence[keras.Variable]) -> None:
        """Build the base optimizer and ``inner`` on the same variables."""
        super().build(variables)
        self.inner.build(variables)

    @property
    def variables(self) -> list[keras.Variable]:
        """Own variables followed by ``inner``'s, so that saving keeps both."""
        return self._variables + self.inner.variables

    @property
    def learning_rate(self) -> Any:
        return self.inner.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate: Any) -> None:
        self.inner.learning_rate = learning_rate

    def _prepare_apply(
        self, grads: Sequence[Any], trainable_variables: Sequence[Any] | None
    ) -> tuple[list[Any], list[Any]]:
        """Resolve the variables, build on first use, and insist on a replica context.

        Returns the gradients and variables as lists.
        """
        grads = list(grads)
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    f"{type(self).__name__}.apply(grads) needs trainable_variables on its first "
                    "call (or call optimizer.build(model.trainable_variables) first)."
                )
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        if not self.built:
            with keras.name_scope(self.name):
                self.build(trainable_variables)
            self.built = True
        self._check_variables_are_known(trainable_variables)
        if tf.distribute.get_replica_context() is None:
            raise ValueError(
                f"{type(self).__name__}.apply() must be called in a replica context (inside "
                "strategy.run or model.fit), not in a cross-replica context."
            )
        return grads, trainable_variables

    def scale_loss(self, loss: Any) -> Any:
        return loss

    def finalize_variable_values(self, var_list: Sequence[keras.Variable]) -> None:
        self.inner.finalize_variable_values(var_list)

    def _inner_config(self) -> dict[str, Any]:
        return {"name": self.name, "inner": keras.saving.serialize_keras_object(self.inner)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> OptimizerWrapper:
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(
            config.pop("inner"), custom_objects=custom_objects
        )
        return cls(inner, **config)


__all__ = ["OptimizerWrapper", "validate_inner"]
