"""Self-checks for appendix A2 (the same optimizers on JAX): decisions written as selections.

* :data:`momentum_that_waits`: notebook 03's soft-batch momentum, written in the select form
  JAX's stateless step allows: every value computed, then ``ops.where`` keeps new or old.
* :data:`select_lookahead`: notebook 07's Lookahead (:class:`MySelectLookahead`), its
  synchronisation written in the same form, trained by ``fit`` and judged with notebook 07's
  :func:`course_lib.checks.lookahead_problem.judge_lookahead`.

The soft-batch check runs the learner's function compiled as the current backend's trainer
compiles a step (:func:`course_lib.stateless.compiled`), the Lookahead check runs ``fit``: on
JAX an ``ops.cond`` whose branch assigns fails in both, and the message says why.
``tests/test_checks_nbA2.py`` lists the wrong answers each check rejects.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect
from course_lib.checks.lookahead_problem import MyLookahead, judge_lookahead
from course_lib.checks.soft_batch_problem import (
    LEARNING_RATE,
    MOMENTUM,
    STEPS,
    judge_soft_momentum_step,
)
from course_lib.keras_internals import built_variables
from course_lib.stateless import compiled

import re
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

#: A terminal colour code, as Keras puts around names in some messages.
_ESCAPE_CODE = re.compile(r"\x1b\[[0-9;]*m")


# --------------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------------


def select_soft_momentum_step(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
    """One micro-batch of soft-batch SGD with momentum, as a selection of values.

    The new velocity and weight are computed on every micro-batch, as plain values; only the
    selection ``ops.where(is_update, new, old)`` is assigned, so between updates both variables
    are written with their old values, bit for bit.
    """
    accumulator.assign_add(gradient)
    count.assign_add(1)
    is_update = ops.equal(count.value, steps)
    new_velocity = momentum * velocity.value + accumulator.value / steps
    new_weight = weight.value - lr * new_velocity
    velocity.assign(ops.where(is_update, new_velocity, velocity.value))
    weight.assign(ops.where(is_update, new_weight, weight.value))
    accumulator.assign(ops.where(is_update, ops.zeros_like(accumulator.value), accumulator.value))
    count.assign(ops.where(is_update, 0, count.value))


class MySelectLookahead(MyLookahead):
    """Notebook 07's Lookahead with its two decisions written as selections: it runs on JAX."""

    @property
    def variables(self):  # JAX's trainer carries these values only: the inner optimizer's too
        return super().variables + self.inner.variables

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        weights = trainable_variables  # JAX's trainer passes none: those built on
        weights = built_variables(self) if weights is None else weights
        starting = ops.equal(self.count.value, 0)  # the start of a cycle, as a selection
        for slow, fast in zip(self.slow, weights, strict=True):
            slow.assign(ops.where(starting, fast.value, slow.value))
        self.inner.apply(grads, weights)  # the fast step
        self.count.assign_add(1)

        syncing = ops.equal(self.count.value, self.sync_period)
        for slow, fast in zip(self.slow, weights, strict=True):
            pulled = slow.value + self.slow_step_size * (fast.value - slow.value)
            slow.assign(ops.where(syncing, pulled, slow.value))
            fast.assign(ops.where(syncing, pulled, fast.value))
        self.count.assign(ops.where(syncing, 0, self.count.value))


# --------------------------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------------------------


def _run_compiled(step: Callable[..., None], variables: list[keras.Variable], *args: Any) -> None:
    """Run ``step`` compiled as fit would, with a message that names JAX's rule if it fails."""
    try:
        compiled(step, variables)(*args)
    except (Incorrect, NotImplementedError):
        raise
    except Exception as error:
        if keras.backend.backend() == "jax":
            raise Incorrect(
                f"your step failed when compiled as JAX's trainer compiles it "
                f"({type(error).__name__}). Inside that step a variable cannot be assigned in "
                "a branch that may not run: compute the new values, then assign a selection."
            ) from None
        raise


def _check_soft_momentum_step(step: Callable[..., Any]) -> str:
    weight, velocity = keras.Variable(1.0), keras.Variable(0.0)
    accumulator, count = keras.Variable(0.0), keras.Variable(0, dtype="int32")
    variables = [weight, velocity, accumulator, count]

    def one_micro_batch(gradient):
        step(weight, velocity, accumulator, count, gradient, STEPS, LEARNING_RATE, MOMENTUM)

    def run_micro_batch(gradient):
        _run_compiled(one_micro_batch, variables, ops.convert_to_tensor(gradient))

    judge_soft_momentum_step(run_micro_batch, weight, velocity, accumulator, count)
    return "weight and velocity move once every 4 micro-batches, in a compiled step."


def _check_select_lookahead(answer: Callable[..., Any]) -> str:
    try:
        return judge_lookahead(answer)
    except (Incorrect, NotImplementedError):
        raise
    except Exception as error:
        if keras.backend.backend() != "jax":
            raise
        if isinstance(error, TypeError) and "NoneType" in str(error):
            raise Incorrect(
                f"fit failed on JAX ({type(error).__name__}): JAX's trainer calls apply(grads) "
                "without the variables, so trainable_variables is None. Use the variables the "
                "optimizer was built on, as the skeleton's `weights` does."
            ) from None
        raise Incorrect(
            f"fit failed on JAX ({type(error).__name__}: {_first_line(error)}). In JAX's "
            "compiled step a variable cannot be assigned in a branch of ops.cond: compute the "
            "new values on every step, then assign ops.where(condition, new, old)."
        ) from None


def _first_line(error: Exception) -> str:
    """The first line of an error's own message (no Keras header, no colours), shortened."""
    lines = [
        line
        for line in (_ESCAPE_CODE.sub("", line).strip() for line in str(error).splitlines())
        if line and "Exception encountered" not in line
    ]
    text = lines[0] if lines else ""
    return text if len(text) <= 90 else text[:87] + "..."


def failure_summary(error: Exception, width: int = 60) -> str:
    """``"TypeError: <the message's first line>..."``, for printing what a failed ``fit`` raised.

    Keras wraps an error raised inside a layer or optimizer call in a header line ("Exception
    encountered when calling ...") and colours names with terminal escape codes; both go.
    """
    return f"{type(error).__name__}: {_first_line(error)[:width]}..."


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------

momentum_that_waits = Exercise(
    title="Momentum that waits, as a selection",
    checker=_check_soft_momentum_step,
    hint=(
        "Start from section 2's my_select_soft_sgd_step. Which two values does an update "
        "change now? Compute each new value from the old ones first, as a plain tensor, and "
        "assign only what ops.where picks; mind which velocity the weight's new value needs."
    ),
    solution=select_soft_momentum_step,
)

select_lookahead = Exercise(
    title="Lookahead's synchronisation, as a selection",
    checker=_check_select_lookahead,
    hint=(
        "Follow the start of the cycle just above: one boolean tensor says whether this step "
        "completes a cycle; compute the pulled weight from the values before anything is "
        "assigned; then assign to each of slow, fast and the count what ops.where picks."
    ),
    solution=MySelectLookahead,
)

__all__ = [
    "MySelectLookahead",
    "failure_summary",
    "momentum_that_waits",
    "select_lookahead",
    "select_soft_momentum_step",
]
