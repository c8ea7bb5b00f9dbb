"""The article's Keras 2 optimizers, finished and tested (taught in A1_keras2_time_capsule).

Su Jianlin's "Keras之小众需求:自定义优化器" (kexue.fm, 2018) wrote optimizers for Keras 2:
``get_updates(loss, params)`` returning a list of ``K.update`` ops, a soft batch that chose
between branches with ``K.switch``, and a Heun method that replaced ``model.train_function``
with hand-built ``K.function`` s. Keras 2 survives as the ``tf_keras`` package, and its
``get_updates`` machinery still runs once eager execution is disabled. This module keeps our own
versions of those three ideas, so that the appendix notebook can compare each one with the
course's Keras 3 class (:mod:`course_lib.keras2.time_capsule` runs the Keras 3 side):

* :class:`GetUpdatesSGD`: plain or momentum SGD as a ``get_updates`` optimizer;
* :class:`ArticleSoftBatchSGD`: the soft batch in the article's style, which **leaks**: its
  weight update is built outside ``K.switch``'s branches, so it runs on every micro-batch;
* :class:`SoftBatchSGD`: the corrected soft batch, whose update is built inside the branch;
* :class:`SelectSoftBatchSGD`: the other correction, one assignment whose value ``K.switch`` picks;
* :func:`inject_heun`: the intrusive Heun step, two ``K.function`` calls as ``train_function``.

"In the article's style" means reconstructed from the article's prose: its code blocks did not
survive in the course's copy of the text. The prose describes an accumulator variable and a
condition that decides whether to update; the author's later correction
(https://kexue.fm/archives/6794) says the condition was a ``K.switch``, which computed both
branches: given two finished tensors, it only chooses which result to return.

**Graph mode only.** Importing this module does not change TensorFlow's mode, but everything it
builds needs a process in which eager execution was disabled before any TensorFlow work: call
:func:`enable_graph_mode` (or ``tf.compat.v1.disable_eager_execution()``) first, in a kernel or
process of its own. ``import tensorflow`` loads Keras 3 there too, but Keras 3 cannot train in
that process. Each builder checks the mode and raises a ``RuntimeError`` that says so, instead of
failing deep inside TensorFlow.

Run ``python -m course_lib.keras2.reference KIND[,KIND...] OUTFILE`` to train kinds of
:data:`KERAS2_KINDS` in a fresh graph-mode process (the tests do).
"""

from __future__ import annotations

from course_lib.keras2.time_capsule import KERAS2_KINDS, SharedProblem, shared_problem

import math
import sys
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras
from tf_keras import backend as K
from tf_keras.src import backend as keras2_internals  # get_graph, symbolic_learning_phase
from tf_keras.src.optimizers import optimizer_v1

__all__ = [
    "KERAS2_KINDS",
    "ArticleSoftBatchSGD",
    "article_soft_batch_updates",
    "soft_batch_updates",
    "value_select_soft_batch_updates",
    "GetUpdatesSGD",
    "SelectSoftBatchSGD",
    "SoftBatchSGD",
    "build_keras2_model",
    "enable_graph_mode",
    "inject_heun",
    "micro_batch_motion",
    "require_graph_mode",
    "train_keras2",
]

# --------------------------------------------------------------------------------------------
# Graph mode
# --------------------------------------------------------------------------------------------


def enable_graph_mode() -> None:
    """Disable eager execution for this whole process (Keras 2's ``get_updates`` needs it).

    Call it first, before any TensorFlow work, in a process that will never run Keras 3.
    """
    tf.compat.v1.disable_eager_execution()
    require_graph_mode("enable_graph_mode")


def require_graph_mode(where: str) -> None:
    """Raise a clear ``RuntimeError`` unless eager execution is disabled."""
    if tf.executing_eagerly():
        raise RuntimeError(
            f"{where} needs TensorFlow's graph mode (Keras 2's get_updates and K.function), but "
            "eager execution is on. In a fresh kernel or process, call "
            "course_lib.keras2.reference.enable_graph_mode() (or "
            "tf.compat.v1.disable_eager_execution()) before any TensorFlow work."
        )


# --------------------------------------------------------------------------------------------
# get_updates optimizers
# --------------------------------------------------------------------------------------------


def _check_rate(lr: Any) -> float:
    if isinstance(lr, bool) or not isinstance(lr, Real) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"lr={lr!r} must be a finite number >= 0; pass e.g. lr=0.1.")
    return float(lr)


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(
            f"steps={steps!r} must be a positive integer (micro-batches per real update); "
            "pass e.g. steps=4."
        )
    return steps


class GetUpdatesSGD(optimizer_v1.Optimizer):
    """SGD in Keras 2's style: ``get_updates`` returns the ops that one training step runs.

    p ← p - lr·g, or with ``momentum`` μ > 0: v ← μ·v - lr·g, p ← p + v. The same float
    operations in the same order as ``course_lib.PlainSGD`` / ``MomentumSGD`` in Keras 3.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, **kwargs: Any) -> None:
        require_graph_mode("GetUpdatesSGD")
        super().__init__(**kwargs)
        self.lr = _check_rate(lr)
        if isinstance(momentum, bool) or not isinstance(momentum, Real) or not 0 <= momentum < 1:
            raise ValueError(f"momentum={momentum!r} must lie in [0, 1); pass e.g. 0.9.")
        self.momentum = float(momentum)
        self.iterations = K.variable(0, dtype="int64", name="iterations")

    def get_updates(self, loss: tf.Tensor, params: Sequence[tf.Variable]) -> list:
        grads = self.get_gradients(loss, params)
        self.updates = [K.update_add(self.iterations, 1)]
        self.weights = [self.iterations]
        for p, g in zip(params, grads, strict=True):
            if self.momentum == 0.0:
                self.updates.append(K.update(p, p - self.lr * g))
                continue
            velocity = K.zeros(K.int_shape(p), dtype=p.dtype)
            self.weights.append(velocity)
            new_velocity = self.momentum * velocity - self.lr * g
            self.updates.append(K.update(velocity, new_velocity))
            self.updates.append(K.update(p, p + new_velocity))
        return self.updates

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "lr": self.lr, "momentum": self.momentum}


class _SoftBatchBase(optimizer_v1.Optimizer):
    """What both soft batches share: lr, steps, a micro-batch counter.

    A trap of Keras 2's graphs that both classes avoid: ops that touch the same variable run in
    whatever order their *data* dependencies allow. ``tf.zeros_like(total)`` needs only the
    shape of ``total``, known when the graph is built, so the reset of the accumulator need not
    wait for the accumulator to be read: without ``tf.control_dependencies([total])`` an update
    step used only the last micro-batch's gradient for some weights, on some runs and not on
    others (measured: two runs of the same script disagreed by up to 0.09).
    """

    def __init__(self, lr: float = 0.01, steps: int = 4, **kwargs: Any) -> None:
        require_graph_mode(type(self).__name__)
        super().__init__(**kwargs)
        self.lr = _check_rate(lr)
        self.steps = _check_steps(steps)
        self.iterations = K.variable(0, dtype="int64", name="micro_batches")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "lr": self.lr, "steps": self.steps}


def article_soft_batch_updates(
    p: tf.Variable, accumulator: tf.Variable, gradient: Any, is_update: Any, lr: float, steps: int
) -> list:
    """One variable's soft-batch ops in the article's style, with its flaw (kept to measure it).

    ``K.update(p, ...)`` is an op created *before* ``K.switch`` sees it. ``K.switch`` then only
    chooses which finished tensor to return; the assignment is already part of the training
    step and runs on every micro-batch, update step or not.
    """
    total = accumulator + gradient  # read the accumulator once...
    with tf.control_dependencies([total]):  # ...before anything below overwrites it
        stepped = K.update(p, p - lr * (total / steps))  # built out here: runs on every call!
        chosen = K.switch(is_update, stepped, p)
        reset_or_keep = K.switch(is_update, tf.zeros_like(total), total)
        return [chosen, K.update(accumulator, reset_or_keep)]


def soft_batch_updates(
    p: tf.Variable, accumulator: tf.Variable, gradient: Any, is_update: Any, lr: float, steps: int
) -> list:
    """One variable's soft-batch ops, corrected: the weight update is built inside a branch.

    Given callables, ``K.switch`` builds a ``tf.cond`` whose branch functions create their own
    ops, so the assignment exists only in the "update" branch and runs only when it is taken.
    On the other micro-batches ``p`` stays bit-identical; the accumulator gains ``gradient``.
    """
    total = accumulator + gradient  # read the accumulator once...

    def step() -> tf.Tensor:  # created inside the branch: runs only when the branch is taken
        return K.update(p, p - lr * (total / steps))

    def keep() -> tf.Tensor:
        return tf.identity(p)

    with tf.control_dependencies([total]):  # ...before anything below overwrites it
        chosen = K.switch(is_update, step, keep)
        reset_or_keep = K.switch(is_update, tf.zeros_like(total), total)
        return [chosen, K.update(accumulator, reset_or_keep)]


def value_select_soft_batch_updates(
    p: tf.Variable, accumulator: tf.Variable, gradient: Any, is_update: Any, lr: float, steps: int
) -> list:
    """A second correct fix: one ``K.update`` of ``p`` whose *value* ``K.switch`` selects.

    Both candidate values are computed on every micro-batch, which is harmless: computing is not
    assigning. On a non-update step ``p`` is written with its own value, so it stays
    bit-identical. (Costs one assignment per variable per micro-batch; the branch version does
    not.)
    """
    total = accumulator + gradient
    with tf.control_dependencies([total]):
        new_p = K.switch(is_update, p - lr * (total / steps), tf.identity(p))
        reset_or_keep = K.switch(is_update, tf.zeros_like(total), total)
        return [K.update(p, new_p), K.update(accumulator, reset_or_keep)]


class ArticleSoftBatchSGD(_SoftBatchBase):
    """The soft batch as the 2018 article built it (reconstructed): the weights move on every
    micro-batch.

    Built from :func:`article_soft_batch_updates`; see there for why it leaks.
    """

    variable_updates = staticmethod(article_soft_batch_updates)

    def get_updates(self, loss: tf.Tensor, params: Sequence[tf.Variable]) -> list:
        grads = self.get_gradients(loss, params)
        count = self.iterations + 1
        is_update = K.equal(count % self.steps, 0)
        self.updates = [K.update(self.iterations, count)]
        self.accumulators = [K.zeros(K.int_shape(p), dtype=p.dtype) for p in params]
        self.weights = [self.iterations, *self.accumulators]
        for p, g, accumulator in zip(params, grads, self.accumulators, strict=True):
            self.updates += self.variable_updates(p, accumulator, g, is_update, self.lr, self.steps)
        return self.updates


class SoftBatchSGD(ArticleSoftBatchSGD):
    """The corrected soft batch; equal to ``course_lib.SoftBatch(PlainSGD(lr), steps)``.

    The same ``get_updates`` as :class:`ArticleSoftBatchSGD`, with each variable's ops from
    :func:`soft_batch_updates`: the weights move only on every ``steps``-th micro-batch.
    """

    variable_updates = staticmethod(soft_batch_updates)


class SelectSoftBatchSGD(ArticleSoftBatchSGD):
    """The soft batch corrected the other way; bit-identical to :class:`SoftBatchSGD`.

    Each variable's ops come from :func:`value_select_soft_batch_updates`: one ``K.update`` of
    the weight on every micro-batch, with the value ``K.switch`` picks, its own between updates.
    The form Keras 3 needs on JAX (``ops.where``), where a branch cannot assign.
    """

    variable_updates = staticmethod(value_select_soft_batch_updates)


# --------------------------------------------------------------------------------------------
# The intrusive Heun step
# --------------------------------------------------------------------------------------------


def inject_heun(model: tf_keras.Model, learning_rate: float) -> tf_keras.Model:
    """Make a compiled Keras 2 model's ``fit`` take Heun steps; returns the model.

    As the article did, the step is two ``K.function`` calls (each one ``session.run``):

    1. at p: fetch the loss and metrics, store p and g1 = ∇L(p), move p to p - h·g1;
    2. at that trial point: g2 = ∇L, then p ← p_start - h·(g1/2 + g2/2).

    The pair is installed as ``model.train_function``, which Keras 2's training loop calls with
    the list ``inputs + targets + sample_weights (+ learning phase)``. Call it *after*
    ``compile`` (compiling resets ``train_function``). The compiled optimizer is not used.
    Both evaluations see the same mini-batch; a model with dropout would draw two masks.
    """
    require_graph_mode("inject_heun")
    if not isinstance(model, tf_keras.Model) or getattr(model, "optimizer", None) is None:
        raise ValueError(
            f"model must be a compiled tf_keras model, got {type(model).__name__} without an "
            "optimizer; call model.compile(optimizer=..., loss=...) first."
        )
    rate = _check_rate(learning_rate)
    inputs = model._feed_inputs + model._feed_targets + model._feed_sample_weights
    learning_phase = keras2_internals.symbolic_learning_phase()
    if not isinstance(learning_phase, int):  # as training_v1's _make_train_function does
        inputs += [learning_phase]
    params = model._collected_trainable_weights
    loss = model.total_loss
    metrics = [m._call_result for m in model._get_training_eval_metrics()]
    metrics = [m for m in metrics if m is not None]

    with keras2_internals.get_graph().as_default(), K.name_scope("heun"):
        grads = K.gradients(loss, params)
        starts = [K.zeros(K.int_shape(p), dtype=p.dtype) for p in params]
        firsts = [K.zeros(K.int_shape(p), dtype=p.dtype) for p in params]
        saved = [K.update(s, p) for s, p in zip(starts, params, strict=True)]
        saved += [K.update(f, g) for f, g in zip(firsts, grads, strict=True)]
        with tf.control_dependencies(saved):  # store p and g1 before p moves
            probes = [
                K.update(p, s - rate * g) for p, s, g in zip(params, starts, grads, strict=True)
            ]
        finals = [
            K.update(p, s - (0.5 * f + 0.5 * g) * rate)
            for p, s, f, g in zip(params, starts, firsts, grads, strict=True)
        ]
    first_stage = K.function(inputs, [loss, *metrics], updates=probes, name="heun_stage_1")
    second_stage = K.function(inputs, [loss], updates=finals, name="heun_stage_2")

    def heun_train_function(ins: list) -> list:
        outputs = first_stage(ins)  # loss and metrics at the start point, as fit reports them
        second_stage(ins)
        return outputs

    model.train_function = heun_train_function
    return model


# --------------------------------------------------------------------------------------------
# The shared problem, Keras 2 side
# --------------------------------------------------------------------------------------------


def build_keras2_model(problem: SharedProblem | None = None) -> tf_keras.Model:
    """The appendix's 4-8-1 tanh network in Keras 2, set to the shared initial weights."""
    require_graph_mode("build_keras2_model")
    problem = problem or shared_problem()
    model = tf_keras.Sequential(
        [
            tf_keras.Input((problem.x.shape[1],)),
            tf_keras.layers.Dense(problem.hidden_units, activation="tanh"),
            tf_keras.layers.Dense(1),
        ]
    )
    model.set_weights(problem.initial_weights)
    return model


def _optimizer_for(kind: str, problem: SharedProblem) -> optimizer_v1.Optimizer:
    rate, steps = problem.learning_rate, problem.soft_batch_steps
    factories: dict[str, Callable[[], optimizer_v1.Optimizer]] = {
        "sgd": lambda: GetUpdatesSGD(rate),
        "heun": lambda: GetUpdatesSGD(rate),  # compiled, then replaced by inject_heun
        "momentum": lambda: GetUpdatesSGD(rate, momentum=problem.momentum),
        "keras2_sgd": lambda: optimizer_v1.SGD(lr=rate),
        "soft_batch": lambda: SoftBatchSGD(rate, steps=steps),
        "select_soft_batch": lambda: SelectSoftBatchSGD(rate, steps=steps),
        "article_soft_batch": lambda: ArticleSoftBatchSGD(rate, steps=steps),
    }
    if kind not in factories:
        raise ValueError(f"kind={kind!r} is not a Keras 2 training; choose one of {KERAS2_KINDS}.")
    return factories[kind]()


def _compiled(
    kind: str | Callable[[], optimizer_v1.Optimizer], problem: SharedProblem
) -> tf_keras.Model:
    """A fresh graph, the shared model, compiled with the kind's (or the factory's) optimizer."""
    K.clear_session()  # before the optimizer exists: its variables belong to the new graph
    model = build_keras2_model(problem)
    optimizer = kind() if callable(kind) else _optimizer_for(kind, problem)
    model.compile(optimizer=optimizer, loss="mse")
    if kind == "heun":
        inject_heun(model, problem.learning_rate)
    return model


def train_keras2(kind: str, problem: SharedProblem | None = None) -> dict[str, np.ndarray]:
    """Train the shared problem with ``fit`` in Keras 2; the same result format as Keras 3's.

    Returns ``{"w0": ..., ..., "loss": per-epoch losses}``. Graph mode only.
    """
    require_graph_mode("train_keras2")
    problem = problem or shared_problem()
    model = _compiled(kind, problem)
    history = model.fit(
        problem.x,
        problem.y,
        batch_size=problem.batch_size,
        epochs=problem.epochs,
        shuffle=False,
        verbose=0,
    )
    result = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    result["loss"] = np.asarray(history.history["loss"], dtype=np.float64)
    return result


def micro_batch_motion(
    kind: str | Callable[[], optimizer_v1.Optimizer], problem: SharedProblem | None = None
) -> np.ndarray:
    """Max |Δw| over all weights caused by each micro-batch of one epoch (``train_on_batch``).

    ``kind`` is one of :data:`KERAS2_KINDS` or a function that makes a fresh optimizer (called
    after the session is cleared). For a correct soft batch the entries of the non-update
    micro-batches (all but every ``steps``-th) are exactly 0. Graph mode only.
    """
    require_graph_mode("micro_batch_motion")
    problem = problem or shared_problem()
    model = _compiled(kind, problem)
    before = np.concatenate([w.ravel() for w in model.get_weights()])
    motion = []
    for start in range(0, len(problem.x), problem.batch_size):
        batch = slice(start, start + problem.batch_size)
        model.train_on_batch(problem.x[batch], problem.y[batch])
        after = np.concatenate([w.ravel() for w in model.get_weights()])
        motion.append(float(np.max(np.abs(after - before))))
        before = after
    return np.asarray(motion)


def _main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(
            "usage: python -m course_lib.keras2.reference KIND[,KIND...] OUTFILE, KIND in "
            f"{list(KERAS2_KINDS)}",
            file=sys.stderr,
        )
        return 2
    kinds = argv[0].split(",")
    for kind in kinds:
        if kind not in KERAS2_KINDS:
            print(f"unknown kind {kind!r}; choose from {list(KERAS2_KINDS)}", file=sys.stderr)
            return 2
    enable_graph_mode()
    arrays = {}
    for kind in kinds:
        for name, value in train_keras2(kind).items():
            arrays[f"{kind}/{name}"] = value
        if "soft_batch" in kind:
            arrays[f"{kind}/motion"] = micro_batch_motion(kind)
    np.savez(argv[1], **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
