"""Self-checks for appendix A1 (Keras 2 time capsule): fix the K.switch soft batch; name the heirs.

The notebook fixes the article's soft batch with branch functions; the first exercise asks for a
second fix, a ``K.update`` whose value ``K.switch`` selects. Any correct fix passes the check.

The first check builds the learner's ops in a private ``tf.Graph`` and runs them in a
``tf.compat.v1.Session``, so it works in the appendix's graph-mode kernel and in an ordinary
eager process (the tests). ``tests/test_checks_nbA1.py`` lists the wrong answers it rejects.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.checks.soft_batch_problem import (
    GRADIENTS,
    LEARNING_RATE,
    STEPS,
    expected_trajectory,
)
from course_lib.keras2.reference import value_select_soft_batch_updates

from collections.abc import Callable
from typing import Any


def run_soft_batch_updates(function: Callable[..., Any]) -> tuple[list[float], list[float]]:
    """Run ``function(p, accumulator, gradient, is_update, lr, steps)``'s ops over 8 gradients.

    Returns the weight and the accumulator after each micro-batch (p starts at 1, lr 0.1,
    steps 4).
    """
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        p = tf.Variable(1.0, name="p")
        accumulator = tf.Variable(0.0, name="accumulator")
        gradient = tf.compat.v1.placeholder(tf.float32, (), name="gradient")
        is_update = tf.compat.v1.placeholder(tf.bool, (), name="is_update")
        updates = function(p, accumulator, gradient, is_update, LEARNING_RATE, STEPS)
        if isinstance(updates, tf.Tensor | tf.Operation):
            updates = [updates]
        if not isinstance(updates, list | tuple) or not updates:
            raise Incorrect(
                "return the list of update ops (as get_updates does), got "
                f"{type(updates).__name__}."
            )
        step = tf.group(*updates)
        weights, accumulators = [], []
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for k, value in enumerate(GRADIENTS):
                session.run(step, {gradient: value, is_update: (k + 1) % STEPS == 0})
                weight, total = session.run([p, accumulator])
                weights.append(float(weight))
                accumulators.append(float(total))
    return weights, accumulators


def _check_soft_batch_updates(function: Callable[..., Any]) -> str:
    got, accumulators = run_soft_batch_updates(function)
    expected = expected_trajectory()
    for k, (before, after) in enumerate(zip([1.0, *got[:-1]], got, strict=True)):
        if (k + 1) % STEPS and after != before:
            raise Incorrect(
                f"micro-batch {k + 1} is not an update step, yet it moved the weight from "
                f"{before:.6f} to {after:.6f} (a leak of {abs(after - before):.3g}). Is the "
                "K.update of the weight built outside K.switch's branches?"
            )
    expect_close("the weight after each micro-batch", got, expected, atol=1e-6)
    running = 0.0
    for k, value in enumerate(GRADIENTS):
        running = 0.0 if (k + 1) % STEPS == 0 else running + value
        if abs(accumulators[k] - running) > 1e-6:
            raise Incorrect(
                f"after micro-batch {k + 1} the accumulator holds {accumulators[k]:.4f}, "
                f"expected {running:.4f}: add each gradient, and empty it on an update step."
            )
    return "the weight moves once every 4 micro-batches and is bit-identical in between."


fix_the_switch = Exercise(
    title="Fix the K.switch soft batch",
    checker=_check_soft_batch_updates,
    hint=(
        "Computing a value is harmless; assigning it is not. Ask what p must be written with on a "
        "micro-batch that is not an update so that it stays exactly as it was, and what it must "
        "be written with on an update. K.switch can choose between those two values before any "
        "assignment exists. Keep the tf.control_dependencies([total]) block: it makes the "
        "accumulator be read before anything overwrites it."
    ),
    solution=value_select_soft_batch_updates,
)

#: The Keras 3 names the second exercise accepts for each Keras 2 construct.
_HEIRS: dict[str, tuple[str, ...]] = {
    "get_updates": ("update_step",),
    "K.update": ("assign",),
    "K.switch": ("ops.cond", "cond"),
    "K.function": ("train_step",),
}


def _normalise(name: Any) -> str:
    text = str(name).strip().strip("`").replace("()", "")
    for prefix in ("keras.", "self.", "optimizer.", "variable.", "model."):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text.split("(")[0]


def _check_heirs(answer: Any) -> str:
    if callable(answer):  # the starter is a function, so that it can raise NotImplementedError
        answer = answer()
    if not isinstance(answer, dict):
        raise Incorrect(f"answer with a dict {{Keras 2 name: Keras 3 name}}, got {answer!r}.")
    missing = sorted(set(_HEIRS) - set(answer))
    if missing:
        raise Incorrect(f"the dict lacks the keys {missing}.")
    for old, accepted in _HEIRS.items():
        if _normalise(answer[old]) not in accepted:
            raise Incorrect(
                f"{old} → {answer[old]!r} is not its Keras 3 heir; see the table in section 5."
            )
    return "those are the four Keras 3 names the course teaches."


def heirs_solution() -> dict[str, str]:
    """The Keras 3 heir of each Keras 2 construct (the table of section 5)."""
    return {
        "get_updates": "update_step",
        "K.update": "assign",
        "K.switch": "ops.cond",
        "K.function": "train_step",
    }


name_the_heirs = Exercise(
    title="Name the Keras 3 heirs",
    checker=_check_heirs,
    hint=(
        "One is the method a Keras 3 optimizer overrides, one a method of the optimizer that "
        "writes a variable, one the keras.ops function that runs only the branch it takes, and "
        "one the keras.Model method that fit calls for each batch."
    ),
    solution=heirs_solution,
)

__all__ = ["fix_the_switch", "heirs_solution", "name_the_heirs", "run_soft_batch_updates"]
