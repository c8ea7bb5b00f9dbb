"""Softmax regression trained with a hand-derived gradient or with tf.GradientTape (notebook 02).

The seed article (Su Jianlin, "Keras之小众需求:自定义优化器", kexue.fm 2018) suggests that for a
simple model one can write the gradient by hand instead of asking automatic differentiation for
it, and gain speed. Softmax regression is the smallest model where that gradient has a closed
form. With logits Z = XW + b, probabilities P = softmax(Z), one-hot labels Y and the mean
cross-entropy over N examples,

    ∂L/∂Z = (P - Y) / N,   ∂L/∂W = Xᵀ ∂L/∂Z,   ∂L/∂b = Σ_rows ∂L/∂Z.

This module holds both gradients, an SGD step that uses either one inside a ``tf.function``, and
the timing helper that ``benchmarks/handwritten_gradients.py`` and the notebook share. Whether
the hand-written route is faster is measured, not assumed: TensorFlow's fused cross-entropy
kernel already returns ∂L/∂Z as a by-product, so the tape has little left to save.
"""

from __future__ import annotations

from course_lib.validation import require_integer, require_number

import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

__all__ = [
    "GradientFn",
    "handwritten_gradients",
    "init_parameters",
    "make_sgd_step",
    "median_steps_per_second",
    "seconds_per_step",
    "softmax_regression_loss",
    "tape_gradients",
    "train_softmax_regression",
]

#: ``gradient_fn(weights, bias, x, y) -> (∂L/∂W, ∂L/∂b)``.
GradientFn = Callable[[tf.Variable, tf.Variable, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def _check_shapes(weights, bias, x, y) -> None:
    """Fail with a readable message before TensorFlow fails with a trace (static shapes only)."""
    w_shape, b_shape = tuple(weights.shape), tuple(bias.shape)
    x_shape, y_shape = tuple(x.shape), tuple(y.shape)
    if len(w_shape) != 2:
        raise ValueError(f"weights must be 2-D (features, classes), got shape {w_shape}.")
    if b_shape != (w_shape[1],):
        raise ValueError(
            f"bias must have shape ({w_shape[1]},) to match weights {w_shape}, got {b_shape}."
        )
    if len(x_shape) != 2 or x_shape[1] not in (None, w_shape[0]):
        raise ValueError(
            f"x must have shape (batch, {w_shape[0]}) to match weights {w_shape}, got {x_shape}."
        )
    if len(y_shape) != 1 or (None not in (x_shape[0], y_shape[0]) and y_shape[0] != x_shape[0]):
        raise ValueError(
            f"y must hold one integer label per row of x (shape ({x_shape[0]},)), got {y_shape}; "
            "pass class indices, not one-hot rows."
        )
    if tf.as_dtype(y.dtype).is_floating:
        raise TypeError(f"y must hold integer class indices, got dtype {y.dtype}.")


def init_parameters(
    num_features: int, num_classes: int, seed: int = 0
) -> tuple[tf.Variable, tf.Variable]:
    """Small random weights and zero bias, float32, the same for a given ``seed``."""
    require_integer(num_features, "num_features", minimum=1, example="num_features=64")
    require_integer(num_classes, "num_classes", minimum=1, example="num_classes=10")
    rng = np.random.default_rng(seed)
    weights = (0.01 * rng.standard_normal((num_features, num_classes))).astype(np.float32)
    return (
        tf.Variable(weights, name="weights"),
        tf.Variable(np.zeros(num_classes, np.float32), name="bias"),
    )


def softmax_regression_loss(weights, bias, x, y) -> tf.Tensor:
    """Mean cross-entropy of softmax(xW + b) against integer labels ``y``."""
    logits = tf.matmul(x, weights) + bias
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def tape_gradients(weights, bias, x, y) -> tuple[tf.Tensor, tf.Tensor]:
    """(∂L/∂W, ∂L/∂b) by automatic differentiation: the reference."""
    _check_shapes(weights, bias, x, y)
    with tf.GradientTape() as tape:
        loss = softmax_regression_loss(weights, bias, x, y)
    grad_w, grad_b = tape.gradient(loss, [weights, bias])
    return grad_w, grad_b


def handwritten_gradients(weights, bias, x, y) -> tuple[tf.Tensor, tf.Tensor]:
    """(∂L/∂W, ∂L/∂b) from the closed form: ∂L/∂Z = (softmax(Z) - onehot(y)) / N."""
    _check_shapes(weights, bias, x, y)
    logits = tf.matmul(x, weights) + bias
    probabilities = tf.nn.softmax(logits)
    one_hot = tf.one_hot(y, depth=tf.shape(weights)[1], dtype=probabilities.dtype)
    batch_size = tf.cast(tf.shape(x)[0], probabilities.dtype)
    grad_logits = (probabilities - one_hot) / batch_size
    return tf.matmul(x, grad_logits, transpose_a=True), tf.reduce_sum(grad_logits, axis=0)


def make_sgd_step(
    gradient_fn: GradientFn,
    weights: tf.Variable,
    bias: tf.Variable,
    learning_rate: float,
    *,
    jit_compile: bool = False,
) -> Callable[[tf.Tensor, tf.Tensor], None]:
    """A compiled ``step(x, y)`` that moves ``weights`` and ``bias`` by -η·gradient_fn(...).

    Both gradient routes are wrapped the same way, so a timing compares the gradients and
    nothing else.
    """
    if not callable(gradient_fn):
        raise TypeError(f"gradient_fn={gradient_fn!r} must be a function like tape_gradients.")
    require_number(
        learning_rate, "learning_rate", low=0.0, low_inclusive=False, example="learning_rate=0.5"
    )

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def step(x, y):
        grad_w, grad_b = gradient_fn(weights, bias, x, y)
        weights.assign_sub(learning_rate * grad_w)
        bias.assign_sub(learning_rate * grad_b)

    return step


def train_softmax_regression(
    gradient_fn: GradientFn,
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int = 10,
    learning_rate: float = 0.5,
    batch_size: int = 64,
    epochs: int = 5,
    seed: int = 0,
    jit_compile: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Train from :func:`init_parameters` with mini-batch SGD, in order (no shuffling).

    Returns the final weights, bias and the full-data loss after each epoch, so two gradient
    routes can be compared on the same path.
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (examples, features), got shape {x.shape}.")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"y must be {len(x)} integer class labels, got shape {y.shape} and dtype {y.dtype}."
        )
    require_integer(batch_size, "batch_size", minimum=1, example="batch_size=64")
    weights, bias = init_parameters(x.shape[1], num_classes, seed)
    step = make_sgd_step(gradient_fn, weights, bias, learning_rate, jit_compile=jit_compile)
    x_all, y_all = tf.constant(x), tf.constant(y.astype(np.int32))
    losses = []
    for _ in range(epochs):
        for start in range(0, len(x), batch_size):
            step(x_all[start : start + batch_size], y_all[start : start + batch_size])
        losses.append(float(softmax_regression_loss(weights, bias, x_all, y_all)))
    return weights.numpy(), bias.numpy(), losses


def seconds_per_step(
    step: Callable[[tf.Tensor, tf.Tensor], None],
    batches: Sequence[tuple[tf.Tensor, tf.Tensor]],
    *,
    repeats: int = 5,
) -> list[float]:
    """Wall-clock seconds per step, one figure per pass over ``batches`` (after a warm-up).

    Returns every pass, so the caller can take the median and alternate two candidates
    between passes: on a shared machine a slow moment then hurts both equally.
    """
    if not batches:
        raise ValueError("batches must hold at least one (x, y) pair.")
    require_integer(repeats, "repeats", minimum=1, example="repeats=5")
    x, y = batches[0]
    step(x, y)  # trace and compile outside the timing
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for x, y in batches:
            step(x, y)
        timings.append((time.perf_counter() - started) / len(batches))
    return timings


def median_steps_per_second(timings: Sequence[float]) -> float:
    """Steps per second from the median of :func:`seconds_per_step`'s passes."""
    return 1.0 / statistics.median(timings)
