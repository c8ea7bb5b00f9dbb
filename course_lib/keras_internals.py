"""The private APIs that course_lib relies on, in one place, each with its reason.

Keras 3.15 offers no public way to do the few things in :data:`PRIVATE_APIS` and
:data:`JAX_PRIVATE_APIS`, so course_lib reaches into Keras here and nowhere else. A few private
names cannot live here, because the code that uses them must read as it stands in a notebook or
run where Keras 3 is not loaded; :data:`PRIVATE_APIS_ELSEWHERE` lists each, where and why.
``tests/test_keras_internals.py`` holds every module of the package to these lists.

Private APIs may change in any release without notice. The same test fails, naming them, when
the installed Keras is not the version pinned in ``pyproject.toml``: before moving the pin, read
each entry against the new Keras source, adapt this module, and run the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

__all__ = [
    "JAX_PRIVATE_APIS",
    "PRIVATE_APIS",
    "PRIVATE_APIS_ELSEWHERE",
    "built_variables",
    "hand_state_to_fit",
    "make_train_function",
    "micro_step_counter",
    "variable_index",
]

#: Each private API (or private behaviour repeated in course_lib) and why it is needed.
PRIVATE_APIS: dict[str, str] = {
    "Model._make_function": (
        "builds Keras's own train function (steps_per_execution, distribution, jit_compile) "
        "around another step: the multi-gradient skeleton's step, on both routes (the "
        "RungeKuttaModel/SAMModel subclasses and inject_runge_kutta/inject_sam)"
    ),
    "Optimizer._get_variable_index": (
        "finds a variable's slot inside update_step, as Keras's own optimizers do: "
        "MomentumSGD's velocity (the wrappers keep a map of their own)"
    ),
    "Optimizer._iterations": (
        "the counter BaseOptimizer.apply advances on every call; the wrappers advance it too, "
        "and SoftBatch reports it as micro_batches while iterations counts real updates"
    ),
    "Optimizer._trainable_variables": (
        "the variables an optimizer was built on, which JAX's trainer does not hand to apply: "
        "appendix A2's learner-built Lookahead reads them (course_lib's wrappers keep a map of "
        "their own)"
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


#: Private APIs used outside this module, by file (relative to ``course_lib/``), and why.
#: A name is an attribute (``_feed_inputs``) or a module (``tf_keras.src.backend``).
PRIVATE_APIS_ELSEWHERE: dict[str, dict[str, str]] = {
    "environment.py": {
        "sys._getframe": (
            "the import finder that keeps JAX out of a TensorFlow process must know which module "
            "imports JAX, and only CPython's frame API reads the importer off the call stack"
        ),
    },
    # The Keras 2 appendix (A1) runs in a graph-mode process without Keras 3: what it must use.
    "keras2/reference.py": {
        "tf_keras.src.optimizers.optimizer_v1": (
            "Keras 2's get_updates optimizers (optimizer_v1.Optimizer, SGD), the API the article "
            "wrote against; tf_keras's public optimizers are the later ones without get_updates"
        ),
        "tf_keras.src.backend": (
            "get_graph and symbolic_learning_phase: the graph and the learning-phase input that "
            "Keras 2's own _make_train_function builds a train function in, as inject_heun must"
        ),
        "_feed_inputs": "the inputs Keras 2's training loop feeds a train_function, in order",
        "_feed_targets": "the targets that follow them in the same call",
        "_feed_sample_weights": "the sample weights that follow the targets",
        "_collected_trainable_weights": "the weights a Keras 2 train_function updates",
        "_get_training_eval_metrics": "the metrics a Keras 2 train_function returns",
        "_call_result": "each metric's result tensor, which the train function fetches",
    },
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


def built_variables(optimizer: keras.optimizers.Optimizer) -> list[Any]:
    """The variables ``optimizer`` was built on, in build order (JAX's trainer passes none)."""
    return list(optimizer._trainable_variables)


def micro_step_counter(optimizer: keras.optimizers.Optimizer) -> keras.Variable:
    """The counter that ``BaseOptimizer.apply`` advances once per call."""
    return optimizer._iterations
