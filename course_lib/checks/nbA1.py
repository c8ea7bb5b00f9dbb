"""Self-check for appendix A1 (Keras 2 time capsule): Lookahead's ops in the Keras 2 style.

The appendix measures the article's soft-batch flaw (an assignment built outside ``K.switch``
runs on every micro-batch) and fixes it. The exercise is a transfer: write the update ops of
Lookahead around plain SGD (notebook 07) for one variable in the same style, where the slow
weights must stay bit-identical between synchronisations. Any correct construction passes (a
value chosen by ``K.switch`` for one assignment, or assignments built inside branch functions).

The check builds the learner's ops in a private ``tf.Graph`` and runs them in a
``tf.compat.v1.Session``, so it works in the appendix's graph-mode kernel and in an ordinary
eager process (the tests). It uses TensorFlow and Keras 2 (``tf_keras``) only.
``tests/test_checks_nbA1.py`` lists the wrong answers it rejects.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close

from collections.abc import Callable
from typing import Any

#: The gradients fed one per step, the learning rate, and Lookahead's k and α for the check.
GRADIENTS = (1.0, 3.0, -2.0, 6.0, 0.5, 0.5, 1.5, 1.5)
LEARNING_RATE = 0.1
SYNC_PERIOD = 3
SLOW_STEP_SIZE = 0.3


def expected_lookahead_trajectory() -> tuple[list[float], list[float]]:
    """The weight and its slow copy after each step: Lookahead around SGD, both starting at 1.

    A fast step p ← p − lr·g every step; on every ``SYNC_PERIOD``-th step the slow copy moves
    a fraction α of the way to p, and p restarts from it.
    """
    fast, slow, weights, slows = 1.0, 1.0, [], []
    for step, gradient in enumerate(GRADIENTS, start=1):
        fast -= LEARNING_RATE * gradient
        if step % SYNC_PERIOD == 0:
            slow += SLOW_STEP_SIZE * (fast - slow)
            fast = slow
        weights.append(fast)
        slows.append(slow)
    return weights, slows


def lookahead_updates(p: Any, slow: Any, gradient: Any, is_sync: Any, lr: float, alpha: float):
    """One variable's Lookahead-around-SGD ops, Keras 2 style: values first, one write each.

    Both candidate values are computed on every step (harmless: computing is not assigning);
    ``K.switch`` chooses which value each variable is written with. On a step without a
    synchronisation ``slow`` is written with its own value, so it stays bit-identical. Every
    value is computed from the variables as they were before the step, and each assignment
    depends on them, so no write can overtake a read.
    """
    import tensorflow as tf
    from tf_keras import backend as K

    fast = p - lr * gradient  # the inner SGD's step
    synced = slow + alpha * (fast - slow)  # where a synchronisation puts both
    new_p = K.switch(is_sync, synced, fast)
    new_slow = K.switch(is_sync, synced, tf.identity(slow))
    return [K.update(p, new_p), K.update(slow, new_slow)]


def run_lookahead_updates(function: Callable[..., Any]) -> tuple[list[float], list[float]]:
    """Run ``function(p, slow, gradient, is_sync, lr, alpha)``'s ops over :data:`GRADIENTS`.

    Returns the weight and the slow copy after each step (both start at 1).
    """
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        p = tf.Variable(1.0, name="p")
        slow = tf.Variable(1.0, name="slow")
        gradient = tf.compat.v1.placeholder(tf.float32, (), name="gradient")
        is_sync = tf.compat.v1.placeholder(tf.bool, (), name="is_sync")
        updates = function(p, slow, gradient, is_sync, LEARNING_RATE, SLOW_STEP_SIZE)
        if isinstance(updates, tf.Tensor | tf.Operation):
            updates = [updates]
        if not isinstance(updates, list | tuple) or not updates:
            raise Incorrect(
                "return the list of update ops (as get_updates does), got "
                f"{type(updates).__name__}."
            )
        step = tf.group(*updates)
        weights, slows = [], []
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for k, value in enumerate(GRADIENTS, start=1):
                session.run(step, {gradient: value, is_sync: k % SYNC_PERIOD == 0})
                weight, slow_value = session.run([p, slow])
                weights.append(float(weight))
                slows.append(float(slow_value))
    return weights, slows


def _check_lookahead_updates(function: Callable[..., Any]) -> str:
    weights, slows = run_lookahead_updates(function)
    for k, (before, after) in enumerate(zip([1.0, *slows[:-1]], slows, strict=True), start=1):
        if k % SYNC_PERIOD and after != before:
            raise Incorrect(
                f"step {k} is not a synchronisation, yet the slow weight moved from "
                f"{before:.6f} to {after:.6f}: an assignment that K.switch receives as a "
                "finished tensor runs on every step. Is the K.update of slow built outside "
                "K.switch's branches?"
            )
    for k in range(SYNC_PERIOD, len(GRADIENTS) + 1, SYNC_PERIOD):
        if abs(weights[k - 1] - slows[k - 1]) > 1e-6:
            raise Incorrect(
                f"after the synchronisation of step {k} the weight is {weights[k - 1]:.6f} and "
                f"the slow weight {slows[k - 1]:.6f}: the fast weights must restart from the "
                "slow ones."
            )
    expected_weights, expected_slows = expected_lookahead_trajectory()
    expect_close("the slow weight after each step", slows, expected_slows)
    expect_close("the weight after each step", weights, expected_weights)
    return (
        "the weight takes a fast step every time; the slow weight moves only on the "
        "synchronisations and stays bit-identical in between."
    )


keras2_lookahead = Exercise(
    title="Lookahead in the Keras 2 style",
    checker=_check_lookahead_updates,
    hint=(
        "Before writing any K.update, write down as tensors the value p must hold after this "
        "step when is_sync is false, and when it is true; then the same for slow. Each of those "
        "values must be computed from p and slow as they were before the step. Then let each "
        "variable be assigned exactly once, in a way that section 3 showed cannot leak on the "
        "steps where it must not move."
    ),
    solution=lookahead_updates,
)

__all__ = [
    "GRADIENTS",
    "LEARNING_RATE",
    "SLOW_STEP_SIZE",
    "SYNC_PERIOD",
    "expected_lookahead_trajectory",
    "keras2_lookahead",
    "lookahead_updates",
    "run_lookahead_updates",
]
