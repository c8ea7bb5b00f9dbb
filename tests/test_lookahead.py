"""Lookahead (course_lib.lookahead, notebook 07): the formula, resuming, MirroredStrategy, errors.

The reference is a NumPy Lookahead around Keras's SGD rule on L(p) = ½ pᵀAp, where the model's
only weight is p (a bias-free Dense on an input of ones). Training comparisons use a tiny MLP on
fixed random data without shuffling. Runs on TensorFlow and on JAX (scale-out on JAX:
tests/test_scale_out_jax.py).
"""

from __future__ import annotations

from course_lib.lookahead import Lookahead

import keras
import numpy as np
import pytest

from interruption import InterruptAt
from quadratic_problem import P0, A, quadratic_loss_for

_rng = np.random.default_rng(0)
X = _rng.normal(size=(96, 6)).astype("float32")
Y = _rng.normal(size=(96, 2)).astype("float32")


quadratic_loss = quadratic_loss_for(A)


def quadratic_model(optimizer, jit_compile=False) -> keras.Model:
    inputs = keras.Input((1,))
    layer = keras.layers.Dense(2, use_bias=False, name="p")
    model = keras.Model(inputs, layer(inputs))
    layer.kernel.assign(P0[None, :])
    model.compile(optimizer=optimizer, loss=quadratic_loss, jit_compile=jit_compile)
    assert model.jit_compile is jit_compile, "XLA silently off: use the xla_allowed fixture"
    return model


def fit_steps(model, steps: int) -> None:
    model.fit(np.ones((steps, 1)), np.zeros((steps, 2)), batch_size=1, verbose=0, shuffle=False)


def p_of(model) -> np.ndarray:
    return model.get_layer("p").kernel.numpy()[0].astype(np.float64)


def numpy_lookahead(steps, learning_rate, momentum, sync_period, alpha):
    """Lookahead around Keras's SGD rule (v ← μv − h·g, p ← p + v); returns fast and slow.

    The paper's update written out here, not the library's ``lookahead_interpolation``: a
    reference must not borrow the code it judges.
    """
    p, slow, velocity, cycle = P0.copy(), P0.copy(), np.zeros(2), 0
    for _ in range(steps):
        if cycle == 0:
            slow = p.copy()
        velocity = momentum * velocity - learning_rate * (A @ p)
        p = p + velocity
        cycle += 1
        if cycle == sync_period:
            slow = slow + alpha * (p - slow)
            p, cycle = slow.copy(), 0
    return p, slow


def make_mlp() -> keras.Model:
    keras.utils.set_random_seed(42)
    return keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(2)]
    )


def flat(model: keras.Model) -> np.ndarray:
    return np.concatenate([w.ravel() for w in model.get_weights()])


def train_mlp(optimizer, *, epochs=2, batch_size=16, callbacks=None) -> keras.Model:
    model = make_mlp()
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(
        X, Y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks
    )
    return model


# 1. The formula ----------------------------------------------------------------------------------
@pytest.mark.parametrize("momentum", [0.0, 0.5])  # exact in float32, as Keras keeps it
@pytest.mark.parametrize(("sync_period", "alpha"), [(3, 0.5), (1, 0.3), (4, 0.8)])
def test_equals_numpy_lookahead_on_a_quadratic(float64, momentum, sync_period, alpha):
    steps = 11  # ends mid-cycle for k = 3 and 4
    optimizer = Lookahead(keras.optimizers.SGD(0.05, momentum=momentum), sync_period, alpha)
    model = quadratic_model(optimizer)
    fit_steps(model, steps)
    fast, slow = numpy_lookahead(steps, 0.05, momentum, sync_period, alpha)
    np.testing.assert_allclose(p_of(model), fast, rtol=0, atol=1e-13)
    np.testing.assert_allclose(optimizer.slow_weights[0].numpy()[0], slow, rtol=0, atol=1e-13)
    assert int(optimizer.cycle_step.numpy()) == steps % sync_period
    # Guard: plain SGD ends measurably elsewhere, so the comparison above can fail.
    plain, _ = numpy_lookahead(steps, 0.05, momentum, 1, 1.0)
    assert np.abs(fast - plain).max() > 1e-3


def test_equals_numpy_lookahead_under_xla(xla_allowed):
    optimizer = Lookahead(keras.optimizers.SGD(0.05, momentum=0.5), sync_period=3)
    model = quadratic_model(optimizer, jit_compile=True)
    fit_steps(model, 8)
    fast, _ = numpy_lookahead(8, 0.05, 0.5, 3, 0.5)
    np.testing.assert_allclose(p_of(model), fast, rtol=0, atol=2e-6)


def test_slow_step_size_one_is_the_inner_optimizer():
    plain = flat(train_mlp(keras.optimizers.Adam(0.01)))
    wrapped = flat(train_mlp(Lookahead(keras.optimizers.Adam(0.01), 3, slow_step_size=1.0)))
    np.testing.assert_allclose(wrapped, plain, rtol=0, atol=1e-6)
    half = flat(train_mlp(Lookahead(keras.optimizers.Adam(0.01), 3, slow_step_size=0.5)))
    assert np.abs(half - plain).max() > 1e-3


def test_after_a_synchronisation_fast_equals_slow_and_the_cycle_restarts():
    optimizer = Lookahead(keras.optimizers.SGD(0.1), sync_period=3)
    model = train_mlp(optimizer, epochs=1, batch_size=32)  # exactly 3 steps: one cycle
    assert int(optimizer.cycle_step.numpy()) == 0
    assert int(optimizer.iterations.numpy()) == 3 == int(optimizer.inner.iterations.numpy())
    for fast, slow in zip(model.trainable_variables, optimizer.slow_weights, strict=True):
        np.testing.assert_array_equal(fast.numpy(), slow.numpy())


def test_learning_rate_is_the_inner_optimizers():
    optimizer = Lookahead(keras.optimizers.SGD(0.1))
    assert float(optimizer.learning_rate) == pytest.approx(0.1)
    optimizer.learning_rate = 0.02
    assert float(optimizer.inner.learning_rate) == pytest.approx(0.02)


# 2. Survive an interruption ---------------------------------------------------------------------
def test_keras_file_saved_mid_cycle_resumes_exactly(tmp_path):
    # 96 samples at batch 16: 6 steps per epoch, so with k = 4 epoch 1 ends 2 steps into a cycle.
    uninterrupted = flat(train_mlp(Lookahead(keras.optimizers.Adam(0.01), 4), epochs=2))
    model = train_mlp(Lookahead(keras.optimizers.Adam(0.01), 4), epochs=1)
    assert int(model.optimizer.cycle_step.numpy()) == 2
    model.save(tmp_path / "mid_cycle.keras")
    keras.backend.clear_session()
    restored = keras.saving.load_model(tmp_path / "mid_cycle.keras")
    assert isinstance(restored.optimizer, Lookahead)
    assert int(restored.optimizer.cycle_step.numpy()) == 2
    assert int(restored.optimizer.inner.iterations.numpy()) == 6
    restored.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert np.array_equal(flat(restored), uninterrupted)


def test_backup_and_restore_mid_cycle_resumes_exactly(tmp_path):
    uninterrupted = flat(train_mlp(Lookahead(keras.optimizers.Adam(0.01), 4), epochs=3))
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="simulated interruption"):
        train_mlp(
            Lookahead(keras.optimizers.Adam(0.01), 4),
            epochs=3,
            callbacks=[backup, InterruptAt(epoch=1, batch=3)],
        )
    keras.backend.clear_session()
    resumed = train_mlp(
        Lookahead(keras.optimizers.Adam(0.01), 4),
        epochs=3,
        callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))],
    )
    assert np.array_equal(flat(resumed), uninterrupted)


def test_config_round_trip_keeps_the_inner_optimizer():
    inner = keras.optimizers.AdamW(1e-3, weight_decay=0.3, clipnorm=2.0)
    original = Lookahead(inner, sync_period=7, slow_step_size=0.25, name="la")
    copy = keras.optimizers.deserialize(keras.optimizers.serialize(original))
    assert isinstance(copy, Lookahead) and copy.get_config() == original.get_config()
    assert (copy.sync_period, copy.slow_step_size, copy.name) == (7, 0.25, "la")
    assert type(copy.inner) is keras.optimizers.AdamW
    assert copy.inner.get_config() == inner.get_config()


# 3. Scale out ------------------------------------------------------------------------------------
@pytest.mark.tensorflow_only("MirroredStrategy is TensorFlow's (JAX: tests/test_scale_out_jax.py)")
def test_mirrored_strategy_equals_one_device(two_cpu_strategy):
    one_device = flat(train_mlp(Lookahead(keras.optimizers.Adam(0.01), 4), epochs=2))
    with two_cpu_strategy.scope():
        model = make_mlp()
        model.compile(optimizer=Lookahead(keras.optimizers.Adam(0.01), 4), loss="mse")
    model.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert model.distribute_strategy.num_replicas_in_sync == 2
    assert int(model.optimizer.cycle_step.numpy()) == 0  # 12 steps = 3 cycles
    np.testing.assert_allclose(flat(model), one_device, rtol=0, atol=1e-6)


# 4. Reject bad input clearly ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sync_period", "error"),
    [(0, ValueError), (-3, ValueError), (5.0, TypeError), (True, TypeError)],
)
def test_bad_sync_period_is_rejected(sync_period, error):
    with pytest.raises(error, match=r"sync_period must .* got"):
        Lookahead(keras.optimizers.SGD(0.1), sync_period=sync_period)


@pytest.mark.parametrize(
    ("alpha", "error"),
    [(0.0, ValueError), (1.5, ValueError), (-0.5, ValueError), (float("nan"), ValueError)]
    + [("0.5", TypeError), (None, TypeError)],
)
def test_bad_slow_step_size_is_rejected(alpha, error):
    with pytest.raises(error, match=r"slow_step_size must .* got"):
        Lookahead(keras.optimizers.SGD(0.1), slow_step_size=alpha)


def test_bad_inner_optimizers_are_rejected():
    with pytest.raises(TypeError, match="inner must be a Keras optimizer.*'sgd'"):
        Lookahead("sgd")
    with pytest.raises(TypeError, match="inner is already a Lookahead"):
        Lookahead(Lookahead(keras.optimizers.SGD(0.1)))
    used = keras.optimizers.SGD(0.1)
    used.build(make_mlp().trainable_variables)
    with pytest.raises(ValueError, match="already built"):
        Lookahead(used)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=2"):
        Lookahead(keras.optimizers.SGD(0.1, gradient_accumulation_steps=2))
    with pytest.raises(ValueError, match=r"does not take \['clipnorm'\]"):
        Lookahead(keras.optimizers.SGD(0.1), clipnorm=1.0)
