"""What every optimizer that wraps another optimizer shares (notebooks 03 and 07).

Some optimizers are not a new update rule but a policy *around* one: soft batch (notebook 03)
decides when the inner optimizer steps, Lookahead (notebook 07) pulls the inner optimizer's
weights back towards a slow copy every k steps. Both are Keras optimizers themselves, so that
``model.compile(optimizer=Wrapper(inner))`` works, and both must:

* take a *fresh* inner optimizer and refuse settings that belong to it (clipping, weight decay);
* build the inner optimizer on the model's variables when they are built, and list its
  variables after their own, so that a ``.keras`` file, a weights file or a ``BackupAndRestore``
  checkpoint saves and restores the whole state;
* hand the learning rate through to the inner optimizer (callbacks such as
  ``ReduceLROnPlateau`` set ``optimizer.learning_rate``);
* serialise the inner optimizer inside their own config.

:class:`OptimizerWrapper` does those, and its :meth:`~OptimizerWrapper.apply` is a template:
it resolves and checks the variables, finds their indices, calls the subclass's
:meth:`~OptimizerWrapper.apply_wrapped` with them, and counts the call. The indices come from the
wrapper's own map of the variables it was built on (a variable's position in that list), so it
needs no private Keras API to find a slot. A subclass supplies its own state (:meth:`build`),
that one method, and its config.
"""

from __future__ import annotations

from course_lib.distribution import require_replica_context
from course_lib.keras_internals import micro_step_counter
from course_lib.validation import require_fresh_optimizer

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import keras

__all__ = ["OptimizerWrapper"]


@dataclass(frozen=True, eq=False)
class _Slots:
    """The variables a wrapper was built on, and each one's slot: its position among them.

    A plain record on purpose: a list of variables set as an optimizer's attribute would be
    tracked by Keras as the optimizer's own variables, and saved with them.
    """

    variables: tuple
    index: Mapping[int, int]

    @classmethod
    def of(cls, variables: Sequence[keras.Variable]) -> _Slots:
        return cls(tuple(variables), {id(v): i for i, v in enumerate(variables)})


class OptimizerWrapper(keras.optimizers.Optimizer):
    """A Keras optimizer that owns an inner optimizer and delegates the real updates to it.

    Subclasses set :attr:`example`, create their own variables in :meth:`build` (after calling
    ``super().build``), and implement :meth:`apply_wrapped`.
    """

    #: A correct call of the subclass, quoted in its error messages.
    example: ClassVar[str] = ""

    def __init__(self, inner: keras.optimizers.Optimizer, name: str, **unexpected: Any) -> None:
        require_fresh_optimizer(inner, type(self), self.example)
        if unexpected:
            raise ValueError(
                f"{type(self).__name__} does not take {sorted(unexpected)}: set clipping, weight "
                f"decay and the learning rate on the inner optimizer, e.g. {self.example}."
            )
        super().__init__(learning_rate=0.0, name=name)
        self.inner = inner

    def build(self, variables: Sequence[keras.Variable]) -> None:
        """Build the base optimizer and ``inner`` on the same variables, and index them."""
        super().build(variables)
        self.inner.build(variables)
        self._slots = _Slots.of(variables)

    @property
    def variables(self) -> list[keras.Variable]:
        """Own variables followed by ``inner``'s, so that saving keeps both."""
        return super().variables + self.inner.variables

    @property
    def learning_rate(self) -> Any:
        return self.inner.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate: Any) -> None:
        self.inner.learning_rate = learning_rate

    def apply(self, grads: Sequence[Any], trainable_variables: Sequence[Any] | None = None) -> None:
        """Hand one step's gradients to :meth:`apply_wrapped`, then count the call.

        As Keras's own ``apply``: an empty list does nothing; the first call builds the
        optimizer on ``trainable_variables``, later calls may leave them out. It must run in a
        replica context (inside ``model.fit`` or ``strategy.run``).
        """
        grads = list(grads)
        if not grads:
            return
        variables = self._resolve_variables(trainable_variables)
        require_replica_context(f"{type(self).__name__}.apply()")
        indices = [self._slots.index[id(v)] for v in variables]
        self.apply_wrapped(grads, variables, indices)
        micro_step_counter(self).assign_add(1)

    def apply_wrapped(self, grads: list[Any], variables: list[Any], indices: list[int]) -> None:
        """What the wrapper does with one call's gradients.

        ``indices[k]`` is the position of ``variables[k]`` among the variables the optimizer
        was built on: the index of its slot in the subclass's own per-variable state.
        """
        raise NotImplementedError

    def _resolve_variables(self, trainable_variables: Sequence[Any] | None) -> list[Any]:
        """The variables of this call: given, or those built on; build on first use."""
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    f"{type(self).__name__}.apply(grads) needs trainable_variables on its first "
                    "call (or call optimizer.build(model.trainable_variables) first)."
                )
            return list(self._slots.variables)
        variables = list(trainable_variables)
        if not self.built:
            with keras.name_scope(self.name):
                self.build(variables)
            self.built = True
        unknown = [v.path for v in variables if id(v) not in self._slots.index]
        if unknown:
            raise ValueError(
                f"{type(self).__name__} was built on other variables than {unknown}: it keeps "
                "one slot per variable it was built on. Create a new optimizer for a new model."
            )
        return variables

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
