"""The overfitting study's harness on the backend of this run (TensorFlow, and JAX in the JAX pass).

The full study runs on JAX (benchmarks/overfitting.py). Two things there differ from TensorFlow
and are checked on both: a replayed step size must reach the compiled step after it was traced
(on JAX a schedule's own variables would be frozen into it), and the measurements must be float64
on both (Keras's ``ops.mean`` on JAX computes a float64 mean in float32).
"""

from __future__ import annotations

from course_lib.data import load_dataset, quadratic_regression_data
from course_lib.studies.overfitting import (
    RK45,
    SGD_AT_RK45,
    ReplayedSGD,
    RunRecord,
    StudySettings,
    train_method,
)

import keras
import numpy as np
import pytest


def test_replayed_sgd_takes_exactly_the_replayed_steps_after_a_reload(float64):
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    x, y = quadratic_regression_data(A, dtype="float64")
    p0 = np.array([1.5, -2.0])
    optimizer = ReplayedSGD([0.1, 0.25, 0.05], length=8)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False)(inputs))
    model.compile(optimizer=optimizer, loss="mse")

    def run(step_sizes, count):
        model.layers[-1].kernel.assign(p0[:, None])
        model.optimizer.iterations.assign(0)
        model.fit(x, y, batch_size=2, epochs=count, shuffle=False, verbose=0)
        expected = p0
        for h in step_sizes:
            expected = expected - h * (A @ expected)  # Euler on L = ½ pᵀAp
        got = keras.ops.convert_to_numpy(model.layers[-1].kernel)[:, 0]
        np.testing.assert_allclose(got, expected, rtol=1e-12)

    run([0.1, 0.25, 0.05, 0.05], 4)  # after the list, the last step size is kept
    function = model.train_function
    optimizer.replay([0.2, 0.02])  # new steps after the first trace
    run([0.2, 0.02, 0.02], 3)
    assert model.train_function is function  # the same compiled step
    config = optimizer.get_config()
    assert (config["step_sizes"], config["length"]) == ([0.2, 0.02], 8)
    assert ReplayedSGD.from_config(config).get_config()["step_sizes"] == [0.2, 0.02]
    with pytest.raises(ValueError, match="3 step sizes do not fit in length=2"):
        ReplayedSGD([0.1], length=2).replay([0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="finite numbers > 0"):
        ReplayedSGD([0.1, -0.1])


def _cross_entropy(weights, x, labels):
    hidden = np.maximum(x @ weights[0] + weights[1], 0.0)
    logits = hidden @ weights[2] + weights[3]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels].mean(), np.mean(logits.argmax(1) == labels)


def test_a_run_measures_in_float64_and_its_replay_reaches_the_compiled_step(float64):
    digits = load_dataset("digits")
    settings = StudySettings(
        methods=("SGD", RK45, SGD_AT_RK45), seeds=(2,), epochs=2, train_size=128
    )
    models: dict = {}
    (sgd,) = train_method("SGD", settings, digits, models=models)
    model = next(iter(models.values()))
    weights = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    x, labels = digits.x_train[:128].astype("float64"), digits.y_train[:128]
    loss, accuracy = _cross_entropy(weights, x, labels)
    assert sgd.train_loss[-1] == pytest.approx(loss, rel=1e-12)
    assert sgd.train_accuracy[-1] == pytest.approx(accuracy, rel=1e-14)  # float32: 1e-8 off
    val_loss, val_accuracy = _cross_entropy(weights, digits.x_val.astype("float64"), digits.y_val)
    assert sgd.val_loss[-1] == pytest.approx(val_loss, rel=1e-12)
    assert sgd.val_accuracy[-1] == pytest.approx(val_accuracy, rel=1e-14)
    # The same compiled model replays twice h: SGD at 2h, not the steps it was traced with.
    doubled = RunRecord(RK45, 2, step_sizes=[2 * settings.learning_rate] * 4)
    (replay,) = train_method(SGD_AT_RK45, settings, digits, {2: doubled}, models=models)
    twice = StudySettings(**{**vars(settings), "learning_rate": 2 * settings.learning_rate})
    (sgd_2h,) = train_method("SGD", twice, digits)
    assert replay.train_loss == pytest.approx(sgd_2h.train_loss, rel=1e-12)
    assert replay.train_loss[-1] != pytest.approx(sgd.train_loss[-1], rel=1e-3)
