"""Self-checks for notebook 03 (soft batch): the wrapper's apply, a waiting momentum, a schedule.

* :data:`soft_batch`: the ``apply`` of the lesson's wrapper ``MySoftBatch``, which the learner
  writes: accumulate, decide with ``ops.cond``, apply the mean through the inner optimizer,
  reset. Judged micro-batch by micro-batch in a compiled step (the weights and the inner
  optimizer's state may move only on every 4th; a write in between is named, the ``K.switch``
  leak included), then in ``fit`` against a real batch of 64 with
  Adam and a learning-rate schedule.
* :data:`momentum_that_waits`: one micro-batch of soft-batch SGD with momentum whose velocity,
  like the weight, changes only on real updates (the fix of the notebook's ``K.switch`` demo):
  assignments under ``ops.cond``, or new values computed and only the selection assigned.
* :data:`builtin_schedule_rate`: predict, from Keras's source, the rate that the built-in
  ``gradient_accumulation_steps`` hands each real update; the check measures it on Keras itself.
* :data:`finite_steps_only`: a wrapper optimizer that lets the inner optimizer step only when
  every gradient is finite, what ``keras.optimizers.LossScaleOptimizer`` does around its skips.

Each check runs a small case whose answer is known; ``tests/test_checks_nb03.py`` lists the
known-wrong answers each one must reject.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.checks.soft_batch_problem import (
    LEARNING_RATE,
    MOMENTUM,
    STEPS,
    judge_soft_momentum_step,
)

import functools
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# --------------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------------


def soft_momentum_step(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
    """One micro-batch of soft-batch SGD with momentum: the velocity waits for the update too.

    Accumulating and counting happen on every micro-batch; the velocity and the weight move
    only inside the branch that ``ops.cond`` runs on every ``steps``-th one.
    """
    accumulator.assign_add(gradient)
    count.assign_add(1)

    def update():
        velocity.assign(momentum * velocity + accumulator / steps)
        weight.assign_sub(lr * velocity)
        accumulator.assign(ops.zeros_like(accumulator))
        count.assign(0)

    ops.cond(ops.equal(count, steps), update, lambda: None)


def builtin_schedule_rate_solution(schedule: Any, update: int, steps: int) -> float:
    """The rate Keras's built-in accumulation uses for real update ``update`` (from 0).

    The schedule reads the optimizer's micro-batch counter, which ``apply`` increments after the
    update: the update of a group happens on its last micro-batch, when steps·update + steps − 1
    micro-batches have gone before it.
    """
    return float(schedule(steps * update + steps - 1))


class FiniteStepsOnly(keras.optimizers.Optimizer):
    """Let ``inner`` step only when every gradient is finite; otherwise change nothing.

    This is the skip of ``keras.optimizers.LossScaleOptimizer`` without the loss scaling: one
    NaN or infinity anywhere would poison the weights and the inner optimizer's slots, so the
    whole step is dropped, inner's counter included.
    """

    def __init__(self, inner, name="finite_steps_only"):
        super().__init__(learning_rate=0.0, name=name)  # unused: the inner rate counts
        self.inner = inner

    def build(self, variables):
        super().build(variables)
        self.inner.build(variables)  # its slots exist from the wrapper's first call on

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        finite = ops.all(ops.stack([ops.all(ops.isfinite(g)) for g in grads]))
        ops.cond(finite, lambda: self.inner.apply(grads, trainable_variables), lambda: None)


class MySoftBatch(keras.optimizers.Optimizer):
    """Add up `steps` micro-batch gradients, then let `inner` take one step with their mean.

    The lesson's wrapper, its ``apply`` filled in: accumulate and count on every call; on every
    ``steps``-th, under ``ops.cond`` (which runs only the branch it takes), hand the mean
    gradient to ``inner.apply``, empty the sums and reset the counter.
    """

    def __init__(self, inner, steps=4, name="my_soft_batch"):
        super().__init__(learning_rate=0.0, name=name)  # unused: the inner rate counts
        self.inner = inner
        self.steps = steps

    def build(self, variables):
        super().build(variables)
        self.inner.build(variables)  # its slots exist from the wrapper's first call on
        self.sums = [self.add_variable_from_reference(v, name="gradient_sum") for v in variables]
        self.count = self.add_variable(shape=(), dtype="int32", initializer="zeros", name="count")

    def apply(self, grads, trainable_variables=None):
        if not self.built:  # the first call builds, as Keras's own apply does
            self.build(trainable_variables)
        for total, gradient in zip(self.sums, grads, strict=True):
            total.assign_add(gradient)
        self.count.assign_add(1)

        def update():
            mean = [total / self.steps for total in self.sums]
            self.inner.apply(mean, trainable_variables)
            for total in self.sums:
                total.assign(ops.zeros_like(total))
            self.count.assign(0)

        ops.cond(ops.equal(self.count, self.steps), update, lambda: None)


# --------------------------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------------------------


def _check_soft_momentum_step(step: Callable[..., Any]) -> str:
    import tensorflow as tf

    weight, velocity = tf.Variable(1.0), tf.Variable(0.0)
    accumulator, count = tf.Variable(0.0), tf.Variable(0)

    @tf.function
    def run(gradient):
        step(weight, velocity, accumulator, count, gradient, STEPS, LEARNING_RATE, MOMENTUM)

    judge_soft_momentum_step(
        lambda gradient: run(tf.constant(gradient)), weight, velocity, accumulator, count
    )
    return "weight and velocity move once every 4 micro-batches, with the mean gradient."


# The wrapper's apply ---------------------------------------------------------------------------

#: Eight micro-batch gradients for two variables (a 2-vector and a scalar): two groups of four.
_MICRO_BATCHES = (
    ([0.5, -1.0], 2.0),
    ([0.3, 0.2], -1.0),
    ([-0.4, 0.6], 0.5),
    ([1.2, -0.2], 1.5),
    ([0.1, 0.1], -0.5),
    ([-0.6, 0.9], 1.0),
    ([0.8, -0.3], 0.25),
    ([0.2, 0.4], -2.0),
)
_START = (np.array([1.0, -2.0], "float32"), np.array(0.5, "float32"))


def _micro_gradients(index: int) -> list[Any]:
    vector, scalar = _MICRO_BATCHES[index]
    return [ops.convert_to_tensor(np.array(vector, "float32")), ops.convert_to_tensor(scalar)]


def _momentum_sgd() -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(0.1, momentum=0.9)


def _big_batch_weights(groups: int, form: str = "mean") -> list[np.ndarray]:
    """The inner optimizer alone, one step per group of 4, with the group's mean (or a misreading).

    ``form``: "mean" (right), "sum" (the sum handed over as if it were the mean), "no reset"
    (each update averages every gradient so far, as if the sums were never emptied).
    """
    variables = [keras.Variable(value) for value in _START]
    optimizer = _momentum_sgd()
    for group in range(groups):
        first = 0 if form == "no reset" else 4 * group
        parts = [_micro_gradients(k) for k in range(first, 4 * group + 4)]
        totals = [sum(np.asarray(p[i]) for p in parts) for i in range(2)]
        scale = 1.0 if form == "sum" else 1.0 / 4
        optimizer.apply([ops.convert_to_tensor(t * scale) for t in totals], variables)
    return [v.numpy() for v in variables]


def _state(optimizer: keras.optimizers.Optimizer) -> dict[str, np.ndarray]:
    return {v.path: np.array(v.numpy()) for v in optimizer.variables}


def _moved(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> list[str]:
    return [
        f"{path} {_short(before[path])} → {_short(value)}"
        for path, value in after.items()
        if path in before and not np.array_equal(before[path], value)
    ]


def _short(value: np.ndarray) -> str:
    return np.array2string(np.asarray(value), precision=4, separator=", ")


def _make_wrapper(answer: Any, inner: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    optimizer = answer(inner, steps=4)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise Incorrect(
            f"{getattr(answer, '__name__', answer)}(inner, steps=4) must give a Keras optimizer "
            f"(a keras.optimizers.Optimizer subclass), got {type(optimizer).__name__}."
        )
    return optimizer


def _check_micro_batches(answer: Any) -> None:
    """Eight micro-batches in a graph without AutoGraph (as in fit): judge each one's writes.

    The inner optimizer is SGD with momentum: a call to it, even one whose result is thrown
    away, moves its iteration counter and its velocities, which is how a ``K.switch``-style
    leak shows when the weights themselves are selected back.
    """
    variables = [keras.Variable(value) for value in _START]
    inner = _momentum_sgd()
    optimizer = _make_wrapper(answer, inner)
    optimizer.build(variables)

    @tf.function(autograph=False)  # fit does not convert an optimizer's apply either
    def micro_step(vector, scalar):
        optimizer.apply([vector, scalar], variables)

    for k in range(len(_MICRO_BATCHES)):
        weights_before, inner_before = [v.numpy() for v in variables], _state(inner)
        try:
            micro_step(*_micro_gradients(k))
        except tf.errors.OperatorNotAllowedInGraphError:
            raise Incorrect(
                "inside a compiled step, as in fit, your apply decides with a Python if (or "
                "bool()) on a tensor, which has no value while the step is traced: decide with "
                "ops.cond(condition, update, lambda: None)."
            ) from None
        moved_weights = [
            i for i, v in enumerate(variables) if not np.array_equal(weights_before[i], v.numpy())
        ]
        moved_inner = _moved(inner_before, _state(inner))
        number = k + 1
        if number % 4:
            if moved_weights:
                raise Incorrect(
                    f"micro-batch {number} moved the weights; only every 4th micro-batch, the one "
                    "that completes a group, may: decide with ops.cond whether inner steps."
                )
            if moved_inner:
                raise Incorrect(
                    f"micro-batch {number} completes no group, and the weights stayed, but the "
                    f"inner optimizer's state moved ({'; '.join(moved_inner)}). That is the "
                    "K.switch leak of the lesson's demo: the update ran on every micro-batch and "
                    "only its result was selected. Call inner.apply only inside the branch that "
                    "ops.cond runs."
                )
            continue
        if not moved_weights:
            hint = (
                "is the counter compared with steps after this micro-batch is counted?"
                if number == 4
                else "was the counter reset to 0 after the update on micro-batch 4?"
            )
            raise Incorrect(
                f"micro-batch {number} completes a group of 4, but the weights did not move: {hint}"
            )
        got, groups = [v.numpy() for v in variables], number // 4
        expected = _big_batch_weights(groups)
        if all(np.allclose(g, e, atol=1e-6) for g, e in zip(got, expected, strict=True)):
            continue
        for form, message in _SOFT_BATCH_MISREADINGS.items():
            wrong = _big_batch_weights(groups, form)
            if all(np.allclose(g, e, atol=1e-6) for g, e in zip(got, wrong, strict=True)):
                raise Incorrect(f"after micro-batch {number}: {message}")
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            expect_close(
                f"variable {index} after micro-batch {number} (expected: SGD with momentum, "
                f"one step with the mean of each group of 4)",
                g,
                e,
            )


_SOFT_BATCH_MISREADINGS = {
    "sum": "the update used the sum of the 4 gradients, 4 times their mean: divide by steps.",
    "no reset": "the second update used all 8 gradients so far: empty the sums after each "
    "update (assign zeros), in the branch that ops.cond runs.",
}


def _fit_weights(optimizer: keras.optimizers.Optimizer, batch_size: int) -> list[np.ndarray]:
    """Two epochs of a tiny regression at ``batch_size``, unshuffled; the final weights."""
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(128, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0)
    return model.get_weights()


def _halving_adam() -> keras.optimizers.Optimizer:
    """Adam whose rate halves every 2 updates: a schedule run per micro-batch shows at once."""
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.5)
    return keras.optimizers.Adam(schedule)


@functools.cache
def _big_batch_fit() -> tuple[np.ndarray, ...]:
    """Adam with the schedule at batch 64: deterministic, so trained once per process."""
    return tuple(_fit_weights(_halving_adam(), batch_size=64))


def _check_big_batch(answer: Any) -> None:
    """In fit: 16 × 4 with Adam and a schedule equals batch 64, and inner counts 4 updates."""
    expected = _big_batch_fit()
    keras.backend.clear_session()
    inner = _halving_adam()
    got = _fit_weights(_make_wrapper(answer, inner), batch_size=16)
    updates = int(inner.iterations.numpy())
    if updates != 4:
        raise Incorrect(
            f"in fit, 16 micro-batches of 16 over two epochs should give the inner Adam 4 real "
            f"updates, but its iteration counter says {updates}."
        )
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        expect_close(
            f"weight {index} after fit at batch 16 × 4 (expected: Adam with the same schedule "
            "at batch 64)",
            g,
            e,
        )


def _check_soft_batch(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your class itself, got {type(answer).__name__}.")
    _check_micro_batches(answer)
    keras.backend.clear_session()
    _check_big_batch(answer)
    return (
        "only every 4th micro-batch writes the weights or the inner optimizer's state, with the "
        "mean gradient; in fit, 16 × 4 with Adam and a schedule equals batch 64."
    )


def _keras_builtin_rates(schedule: Any, steps: int, updates: int) -> list[float]:
    """The rate of each real update, measured on Keras's built-in accumulation itself.

    SGD on one scalar with gradient 1 on every micro-batch: the mean gradient is exactly 1, so
    an update moves the variable by exactly its rate (up to float32 rounding of the variable).
    """
    variable = keras.Variable(np.float32(0.0))
    optimizer = keras.optimizers.SGD(schedule, gradient_accumulation_steps=steps)
    rates = []
    for _ in range(updates):
        before = float(variable.numpy())
        for _ in range(steps):
            optimizer.apply([tf.constant(1.0)], [variable])
        rates.append(before - float(variable.numpy()))
    return rates


_SCHEDULE_MISREADINGS = {
    "per update": "this is the schedule at the update's own number, what a wrapper that counts "
    "real updates gives. The built-in hands its schedule another counter.",
    "group start": "this is the rate at the group's first micro-batch; the update happens "
    "later in the group, and the counter has moved on by then.",
    "one too far": "one micro-batch too far: when the update happens, has the counter already "
    "counted the micro-batch that triggers it?",
}


def _schedule_misreadings(schedule: Any, updates: int, steps: int) -> dict[str, list[float]]:
    return {
        "per update": [float(schedule(u)) for u in range(updates)],
        "group start": [float(schedule(steps * u)) for u in range(updates)],
        "one too far": [float(schedule(steps * (u + 1))) for u in range(updates)],
    }


def _check_builtin_schedule_rate(function: Callable[..., Any]) -> str:
    if not callable(function):
        raise Incorrect(f"pass your function itself, got {type(function).__name__}.")
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=5, decay_rate=0.5)
    updates = 4
    for steps in (4, 2, 3):
        measured = np.array(_keras_builtin_rates(schedule, steps, updates))
        got = np.array([float(function(schedule, u, steps)) for u in range(updates)])
        if np.allclose(got, measured, rtol=1e-5, atol=0):
            continue
        label = f"with steps={steps}, your rates for updates 0..{updates - 1} are {got.round(6)}"
        for form, wrong in _schedule_misreadings(schedule, updates, steps).items():
            if np.allclose(got, wrong, rtol=1e-6, atol=0):
                raise Incorrect(f"{label}: {_SCHEDULE_MISREADINGS[form]}")
        raise Incorrect(f"{label}; Keras's built-in used {measured.round(6)}.")
    return "you predicted every rate Keras's built-in accumulation uses, for 2, 3 and 4 steps."


#: Gradients for two variables (a 2-vector and a scalar), applied in order: a correct wrapper
#: takes the two finite steps and leaves everything untouched on the other two.
_GRADIENT_CASES = (
    ("finite", [[0.5, -1.0], 2.0]),
    ("NaN in the second variable's gradient only", [[0.3, 0.2], float("nan")]),
    ("an infinity in the first variable's gradient only", [[float("inf"), 0.1], -1.0]),
    ("finite", [[-0.2, 0.4], 0.5]),
)


def _make_optimizer(answer: Any, inner: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    optimizer = answer(inner)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise Incorrect(
            f"{getattr(answer, '__name__', answer)}(inner) must give a Keras optimizer (a "
            f"keras.optimizers.Optimizer subclass), got {type(optimizer).__name__}."
        )
    return optimizer


def _check_skips_bad_steps(answer: Any) -> None:
    """Apply four gradient lists in turn; compare with the inner optimizer alone on the good ones.

    Eagerly, so that each wrong answer gets a precise message; the fit below runs the wrapper
    inside the compiled training step, where a Python ``if`` on a tensor fails.
    """
    start = [np.array([1.0, -2.0], "float32"), np.array(0.5, "float32")]
    ours = [keras.Variable(value) for value in start]
    reference = [keras.Variable(value) for value in start]
    optimizer = _make_optimizer(answer, keras.optimizers.Adam(0.1))
    optimizer.build(ours)
    inner_alone = keras.optimizers.Adam(0.1)
    inner_alone.build(reference)

    for index, (label, gradients) in enumerate(_GRADIENT_CASES):
        gradients = [ops.convert_to_tensor(np.array(g, "float32")) for g in gradients]
        before = [v.numpy().copy() for v in ours]
        optimizer.apply(gradients, ours)
        after = [v.numpy() for v in ours]
        if label == "finite":
            inner_alone.apply(gradients, reference)
            for k, (got, expected) in enumerate(zip(after, reference, strict=True)):
                expect_close(
                    f"variable {k} after step {index + 1} (finite gradients: the inner Adam must "
                    "take its step, and be at the same point of its schedule as Adam alone)",
                    got,
                    expected.numpy(),
                )
        elif not all(np.array_equal(a, b) for a, b in zip(before, after, strict=True)):
            raise Incorrect(
                f"step {index + 1} had {label}, but the variables changed (to {after}); every "
                "gradient must be finite for a step to happen."
            )


def _nan_problem() -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Regression data in 6 batches of 16; batch 2 has a NaN input, batch 4 an infinite target."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    x[35, 1] = np.nan
    y[70, 0] = np.inf
    return x, y, [2, 4]


def _fit(optimizer: keras.optimizers.Optimizer, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return model.get_weights()


def _check_trains_through_bad_batches(answer: Any) -> None:
    """In fit, the wrapper must train as the inner optimizer would without the bad batches."""
    x, y, bad = _nan_problem()
    got = _fit(_make_optimizer(answer, keras.optimizers.Adam(0.01)), x, y)
    keep = np.concatenate([np.arange(16 * b, 16 * (b + 1)) for b in range(6) if b not in bad])
    keras.backend.clear_session()
    expected = _fit(keras.optimizers.Adam(0.01), x[keep], y[keep])
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        expect_close(
            f"weight {index} after fit (expected: Adam trained on the same data without the NaN "
            "and the infinite batch)",
            g,
            e,
        )


def _check_finite_steps_only(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your class itself, got {type(answer).__name__}.")
    _check_skips_bad_steps(answer)
    keras.backend.clear_session()
    _check_trains_through_bad_batches(answer)
    return (
        "your wrapper skips every step with a NaN or an infinity, inner's state included, and "
        "trains through bad batches as if they were not there."
    )


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------

soft_batch = Exercise(
    title="The soft-batch wrapper's apply",
    checker=_check_soft_batch,
    hint=(
        "Three parts, in order. Every call: add each gradient to its sum, count the call. Then "
        "a function `update` for the complete group: the mean of each sum goes to the inner "
        "optimizer's apply, then the sums and the counter start again from 0. Last, decide as "
        "the core on one number did: run `update` only when the counter has reached "
        "self.steps, and nothing otherwise. Why must the inner optimizer be called inside "
        "that branch, and not before it?"
    ),
    solution=MySoftBatch,
)

momentum_that_waits = Exercise(
    title="Momentum that waits for the update",
    checker=_check_soft_momentum_step,
    hint=(
        "Compare switch_style_step with my_soft_sgd_step. Which assignments must run on every "
        "micro-batch, and which only when the group is complete? In switch_style_step the "
        "velocity is assigned before anything is selected, and picking a value afterwards "
        "cannot undo an assignment. Either let those assignments run only in the branch that "
        "is taken, or compute every new value first and assign only what is picked."
    ),
    solution=soft_momentum_step,
)

builtin_schedule_rate = Exercise(
    title="Predict the built-in's schedule",
    checker=_check_builtin_schedule_rate,
    hint=(
        "The built-in asks its schedule for a rate with the optimizer's own step counter, which "
        "counts micro-batches. Read BaseOptimizer._backend_apply_gradients and apply (notebook "
        "01 printed their lines): on which micro-batch of a group is the update applied, and "
        "when does apply increment the counter, before or after?"
    ),
    solution=builtin_schedule_rate_solution,
)

finite_steps_only = Exercise(
    title="A wrapper that steps only on finite gradients",
    checker=_check_finite_steps_only,
    hint=(
        "Two questions. What must build do besides the base class's build, so that the inner "
        "optimizer's slots exist from the wrapper's first call on (look at MySoftBatch.build)? "
        "And how does code inside fit's compiled step choose, on a tensor, between stepping and "
        "doing nothing? The decision itself is one boolean for all gradients together: "
        "keras.ops has functions that test each element and that reduce a tensor of booleans."
    ),
    solution=FiniteStepsOnly,
)

__all__ = [
    "FiniteStepsOnly",
    "MySoftBatch",
    "builtin_schedule_rate",
    "builtin_schedule_rate_solution",
    "finite_steps_only",
    "momentum_that_waits",
    "soft_batch",
    "soft_momentum_step",
]
