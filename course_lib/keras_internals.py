"""The private Keras APIs that course_lib relies on, in one place, each with its reason.

Keras 3.15 offers no public way to do the few things below, so course_lib reaches into Keras
here and nowhere else (``tests/test_keras_internals.py`` checks that no other module does).
Private APIs may change in any release without notice. The same test fails, naming them, when
the installed Keras is not the version pinned in ``pyproject.toml``: before moving the pin, read
each entry of :data:`PRIVATE_APIS` against the new Keras source, adapt this module, and run the
tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

__all__ = [
    "PRIVATE_APIS",
    "built_variables",
    "JAX_PRIVATE_APIS",
    "check_variables_are_known",
    "hand_state_to_fit",
    "make_train_function",
    "micro_step_counter",
    "variable_index",
]

#: Each private API (or private behaviour repeated in course_lib) and why it is needed.
PRIVATE_APIS: dict[str, str] = {
    "Model._make_function": (
        "builds Keras's own train function (steps_per_execution, distribution, jit_compile) "
        "around another step, for inject_runge_kutta and inject_sam"
    ),
    "Optimizer._get_variable_index": (
        "finds a variable's slot; the wrappers keep one accumulator or slow weight per variable, "
        "indexed as Keras indexes its own slots"
    ),
    "Optimizer._iterations": (
        "the counter BaseOptimizer.apply advances on every call; the wrappers advance it too, "
        "and SoftBatch reports it as micro_batches while iterations counts real updates"
    ),
    "Optimizer._trainable_variables": (
        "the variables an optimizer was built on, for apply(grads) without variables"
    ),
    "Optimizer._check_variables_are_known": (
        "Keras's own error for variables the optimizer was not built on"
    ),
    "Optimizer._clip_gradients": (
        "not called but repeated by SoftBatch, which clips the mean gradient once, after "
        "aggregation, exactly as the inner optimizer would"
    ),
}


#: Private APIs of one backend's trainer only, checked by that backend's tests.
JAX_PRIVATE_APIS: dict[str, str] = {
    "JAXTrainer._jax_state": (
        "the state fit writes back into the model's variables when it stops; a step that "
        "raises (the adaptive step's failure policy) hands fit its last state there, since the "
        "previous state was donated to the step and is gone"
    ),
}


def hand_state_to_fit(model: keras.Model, state: Sequence[Any]) -> None:
    """Make JAX's ``fit`` write ``state`` (trainable, non-trainable, optimizer, metric values)
    back into ``model``'s variables when it stops, as it does after a completed step."""
    names = ("trainable_variables", "non_trainable_variables", "optimizer_variables")
    model._jax_state = dict(zip((*names, "metrics_variables"), state, strict=True))


def make_train_function(model: keras.Model, step: Callable[[Any], dict]) -> Callable:
    """Keras's train function (iterator -> logs) around ``step`` instead of ``model.train_step``."""
    return model._make_function(step)


def variable_index(optimizer: keras.optimizers.Optimizer, variable: Any) -> int:
    """The position of ``variable`` among the variables ``optimizer`` was built on."""
    return optimizer._get_variable_index(variable)


def micro_step_counter(optimizer: keras.optimizers.Optimizer) -> keras.Variable:
    """The counter that ``BaseOptimizer.apply`` advances once per call."""
    return optimizer._iterations


def built_variables(optimizer: keras.optimizers.Optimizer) -> list[Any]:
    """The variables ``optimizer`` was built on, in build order."""
    return list(optimizer._trainable_variables)


def check_variables_are_known(
    optimizer: keras.optimizers.Optimizer, variables: Sequence[Any]
) -> None:
    """Raise Keras's own error unless ``optimizer`` was built on every one of ``variables``."""
    optimizer._check_variables_are_known(variables)
