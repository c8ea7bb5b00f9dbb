"""course_lib.handwritten: the closed-form gradient equals autodiff, and trains the same way."""

from __future__ import annotations

from course_lib import handwritten
from course_lib.data import load_dataset

import math

import numpy as np
import pytest
import tensorflow as tf

DIGITS = load_dataset("digits")


def _batch(size: int = 96):
    return tf.constant(DIGITS.x_train[:size]), tf.constant(DIGITS.y_train[:size].astype(np.int32))


def test_handwritten_gradient_equals_the_tape():
    weights, bias = handwritten.init_parameters(64, 10, seed=1)
    weights.assign(weights * 100.0)  # far from the start: softmax no longer near uniform
    x, y = _batch()
    tape = handwritten.tape_gradients(weights, bias, x, y)
    hand = handwritten.handwritten_gradients(weights, bias, x, y)
    for got, expected in zip(hand, tape, strict=True):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=1e-6)
    assert float(tf.reduce_max(tf.abs(tape[0]))) > 1e-3  # not two zero gradients


def test_bias_gradient_at_zero_weights_has_a_closed_form():
    """With W = 0 and b = 0 every class gets 1/K, so ∂L/∂b = 1/K - (class frequencies)."""
    weights = tf.Variable(tf.zeros((64, 10)))
    bias = tf.Variable(tf.zeros(10))
    x, y = _batch(200)
    _, grad_b = handwritten.handwritten_gradients(weights, bias, x, y)
    frequencies = np.bincount(y.numpy(), minlength=10) / 200
    np.testing.assert_allclose(grad_b.numpy(), 0.1 - frequencies, atol=1e-7)


def test_gradient_works_inside_a_compiled_function():
    weights, bias = handwritten.init_parameters(64, 10)
    x, y = _batch()
    compiled = tf.function(handwritten.handwritten_gradients, jit_compile=True)
    for got, expected in zip(
        compiled(weights, bias, x, y), handwritten.tape_gradients(weights, bias, x, y), strict=True
    ):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-6)


def test_both_routes_train_to_the_same_weights_and_lower_the_loss():
    kwargs = {"epochs": 3, "batch_size": 128, "learning_rate": 0.5}
    x, y = DIGITS.x_train, DIGITS.y_train
    w_tape, b_tape, loss_tape = handwritten.train_softmax_regression(
        handwritten.tape_gradients, x, y, **kwargs
    )
    w_hand, b_hand, loss_hand = handwritten.train_softmax_regression(
        handwritten.handwritten_gradients, x, y, **kwargs
    )
    np.testing.assert_allclose(w_hand, w_tape, atol=1e-5)
    np.testing.assert_allclose(b_hand, b_tape, atol=1e-5)
    np.testing.assert_allclose(loss_hand, loss_tape, atol=1e-5)
    assert loss_tape == sorted(loss_tape, reverse=True)
    assert loss_tape[-1] < 0.5 * math.log(10)  # well below the loss of a uniform guess


def test_seconds_per_step_measures_every_pass():
    weights, bias = handwritten.init_parameters(64, 10)
    step = handwritten.make_sgd_step(handwritten.handwritten_gradients, weights, bias, 0.1)
    timings = handwritten.seconds_per_step(step, [_batch(32), _batch(32)], repeats=3)
    assert len(timings) == 3 and all(0 < t < 1 for t in timings)
    assert handwritten.median_steps_per_second(timings) == pytest.approx(1 / sorted(timings)[1])


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (((64, 10), (10,), (8, 63), (8,), "int32"), ValueError, r"x must have shape \(batch, 64\)"),
        (((64, 10), (9,), (8, 64), (8,), "int32"), ValueError, r"bias must have shape \(10,\)"),
        (((64, 10), (10,), (8, 64), (7,), "int32"), ValueError, "one integer label per row"),
        (((64, 10), (10,), (8, 64), (8, 10), "int32"), ValueError, "not one-hot rows"),
        (((64, 10), (10,), (8, 64), (8,), "float32"), TypeError, "integer class indices"),
    ],
)
def test_shape_errors_name_the_argument(arguments, error, message):
    w_shape, b_shape, x_shape, y_shape, y_dtype = arguments
    weights, bias = tf.Variable(tf.zeros(w_shape)), tf.Variable(tf.zeros(b_shape))
    x, y = tf.zeros(x_shape), tf.zeros(y_shape, dtype=y_dtype)
    for gradient_fn in (handwritten.tape_gradients, handwritten.handwritten_gradients):
        with pytest.raises(error, match=message):
            gradient_fn(weights, bias, x, y)


def test_bad_training_arguments():
    with pytest.raises(ValueError, match="learning_rate=-1"):
        handwritten.make_sgd_step(
            handwritten.tape_gradients, *handwritten.init_parameters(2, 2), -1
        )
    with pytest.raises(ValueError, match="batch_size=0"):
        handwritten.train_softmax_regression(
            handwritten.tape_gradients, DIGITS.x_train, DIGITS.y_train, batch_size=0
        )
    with pytest.raises(ValueError, match="integer class labels"):
        handwritten.train_softmax_regression(
            handwritten.tape_gradients, DIGITS.x_train, DIGITS.y_train.astype(float)
        )
    with pytest.raises(ValueError, match="num_classes=0"):
        handwritten.init_parameters(64, 0)
