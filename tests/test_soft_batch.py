"""SoftBatch (course_lib.soft_batch, notebook 03): each guarantee its docstring lists; clear errors.

Each training comparison uses a tiny MLP on fixed random data without shuffling, so the only
difference between two runs is how the gradients are grouped. Runs on TensorFlow and on JAX
(``jit_compile=True`` is XLA on both; scale-out on JAX: tests/test_scale_out_jax.py).
"""

from __future__ import annotations

from course_lib.lookahead import Lookahead
from course_lib.soft_batch import (
    LEFTOVER_POLICY,
    SoftBatch,
    select_soft_sgd_step,
    soft_sgd_step,
)

from collections.abc import Callable

import keras
import numpy as np
import pytest

from interruption import InterruptAt
from training_steps import manual_step

MICRO = 16
STEPS = 4
_rng = np.random.default_rng(0)
X = _rng.normal(size=(128, 6)).astype("float32")
Y = _rng.normal(size=(128, 2)).astype("float32")


def make_model() -> keras.Model:
    # Seeds only: the autouse fixture already turned op determinism on (and `xla_allowed` off).
    keras.utils.set_random_seed(42)
    return keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(2)]
    )


def flat(model: keras.Model) -> np.ndarray:
    return np.concatenate([w.ravel() for w in model.get_weights()])


def train(optimizer, batch_size, *, x=X, y=Y, epochs=2, jit_compile=False, callbacks=None):
    model = make_model()
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    assert model.jit_compile is jit_compile, "Keras fell back silently: the test would be void"
    model.fit(
        x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks
    )
    return model


def _schedule() -> keras.optimizers.schedules.LearningRateSchedule:
    # Drops after 2 *real* updates: a wrapper that counted micro-batches would drop 4x too early.
    return keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.1, 0.01])


INNER: dict[str, Callable[[], keras.optimizers.Optimizer]] = {
    "sgd": lambda: keras.optimizers.SGD(0.1),
    "momentum": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    "nesterov": lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.2),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.01),
    "adam_clipnorm": lambda: keras.optimizers.Adam(0.01, clipnorm=0.05),
    "sgd_global_clipnorm": lambda: keras.optimizers.SGD(0.1, global_clipnorm=0.05),
    "sgd_clipvalue": lambda: keras.optimizers.SGD(0.1, clipvalue=0.01),
    "sgd_schedule": lambda: keras.optimizers.SGD(_schedule(), momentum=0.5),
    "adam_schedule": lambda: keras.optimizers.Adam(
        keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.5)
    ),
}


# 0. The core on one number ---------------------------------------------------------------------
GRADIENTS = (1.0, 3.0, -2.0, 6.0, 0.5, 0.5, 1.5, 1.5)


def one_number_trajectory(step_function) -> np.ndarray:
    """The variable after each of GRADIENTS, starting at 1, steps=4, learning rate 0.1."""
    variable, accumulator = keras.Variable(1.0), keras.Variable(0.0)
    count = keras.Variable(0, dtype="int32")
    values = []
    for g in GRADIENTS:
        step_function(variable, accumulator, count, keras.ops.convert_to_tensor(g), 4, 0.1)
        values.append(np.float32(variable.numpy()))
    return np.array(values)


def test_the_select_form_moves_only_when_a_group_completes():
    values = one_number_trajectory(select_soft_sgd_step)
    first = np.float32(1.0) - np.float32(0.1) * np.float32(8.0) / np.float32(4.0)
    second = first - np.float32(0.1) * np.float32(4.0) / np.float32(4.0)
    np.testing.assert_array_equal(values, [1.0, 1.0, 1.0, first, first, first, first, second])


@pytest.mark.tensorflow_only("ops.cond with assignments in its branch runs on TensorFlow only")
def test_the_select_form_equals_the_cond_form_bit_for_bit():
    np.testing.assert_array_equal(
        one_number_trajectory(select_soft_sgd_step), one_number_trajectory(soft_sgd_step)
    )


# 1. Equal a real large batch -------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(INNER))
def test_equals_big_batch_without_xla(name):
    big = flat(train(INNER[name](), MICRO * STEPS))
    soft = flat(train(SoftBatch(INNER[name](), steps=STEPS), MICRO))
    np.testing.assert_allclose(soft, big, rtol=0, atol=1e-6)
    assert not np.allclose(big, flat(make_model()), atol=1e-3), "training did not move"


XLA_CASES = [
    "sgd",
    "momentum",
    "nesterov",
    "adam",
    "adamw",
    "rmsprop",
    "adam_clipnorm",
    "sgd_global_clipnorm",
    "sgd_schedule",
]


@pytest.mark.parametrize("name", XLA_CASES)
def test_equals_big_batch_with_xla(name, xla_allowed):
    big = flat(train(INNER[name](), MICRO * STEPS, jit_compile=True))
    soft = flat(train(SoftBatch(INNER[name](), steps=STEPS), MICRO, jit_compile=True))
    np.testing.assert_allclose(soft, big, rtol=0, atol=1e-6)


def test_clipping_is_active_so_the_clipped_comparisons_mean_something():
    clipped = flat(train(INNER["adam_clipnorm"](), MICRO * STEPS))
    plain = flat(train(INNER["adam"](), MICRO * STEPS))
    assert np.abs(clipped - plain).max() > 1e-3


def test_steps_1_is_the_inner_optimizer():
    plain = flat(train(keras.optimizers.Adam(0.01), MICRO))
    soft = flat(train(SoftBatch(keras.optimizers.Adam(0.01), steps=1), MICRO))
    np.testing.assert_allclose(soft, plain, rtol=0, atol=1e-7)


# 2. Count real updates ------------------------------------------------------------------------
def test_inner_counters_and_schedule_advance_once_per_real_update():
    optimizer = SoftBatch(INNER["sgd_schedule"](), steps=STEPS)
    train(optimizer, MICRO, epochs=2)  # 2 epochs x 8 micro-batches = 16 micro-batches
    assert int(optimizer.micro_batches.numpy()) == 16
    assert int(optimizer.iterations.numpy()) == 4
    assert int(optimizer.inner.iterations.numpy()) == 4
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    assert float(optimizer.inner._learning_rate(1)) == pytest.approx(0.1)


def test_keras_builtin_advances_the_schedule_per_micro_batch_and_differs():
    """The gap SoftBatch closes: Keras's own accumulation drops the rate 4x too early."""
    builtin = keras.optimizers.SGD(_schedule(), momentum=0.5, gradient_accumulation_steps=STEPS)
    keras_weights = flat(train(builtin, MICRO))
    big = flat(train(INNER["sgd_schedule"](), MICRO * STEPS))
    assert np.abs(keras_weights - big).max() > 1e-3


# 3. Untouched between updates -----------------------------------------------------------------
def _snapshot(variables) -> list[np.ndarray]:
    return [np.array(v.numpy(), copy=True) for v in variables]


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_non_update_steps_leave_model_and_inner_state_bit_identical(compiled):
    model = make_model()
    optimizer = SoftBatch(keras.optimizers.Adam(0.01, weight_decay=0.1), steps=STEPS)
    variables = model.trainable_variables
    optimizer.build(variables)
    step = manual_step(model, optimizer, compiled)
    watched = variables + optimizer.inner.variables
    before = _snapshot(watched)
    for k in range(STEPS - 1):
        step(X[k * MICRO : (k + 1) * MICRO], Y[k * MICRO : (k + 1) * MICRO])
        for old, new in zip(before, _snapshot(watched), strict=True):
            assert np.array_equal(old, new)
        assert int(optimizer.pending_micro_batches.numpy()) == k + 1
    assert any(np.abs(a.numpy()).max() > 0 for a in optimizer.accumulators)
    step(X[48:64], Y[48:64])
    changed = [not np.array_equal(o, n) for o, n in zip(before, _snapshot(watched), strict=True)]
    assert all(changed[: len(variables)]), "every weight moves on the update step"
    assert int(optimizer.pending_micro_batches.numpy()) == 0
    assert all(np.abs(a.numpy()).max() == 0 for a in optimizer.accumulators)


def test_fit_on_fewer_micro_batches_than_steps_does_not_move_the_weights():
    optimizer = SoftBatch(keras.optimizers.Adam(0.01), steps=STEPS)
    model = train(optimizer, MICRO, x=X[:48], y=Y[:48], epochs=1)
    assert np.array_equal(flat(model), flat(make_model()))
    assert int(optimizer.iterations.numpy()) == 0


# 4. Leftover policy: carry over ---------------------------------------------------------------
class PendingAtEpochEnd(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.pending: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.pending.append(int(self.model.optimizer.pending_micro_batches.numpy()))


def test_leftover_micro_batches_carry_over_into_the_next_epoch():
    assert "carry over" in LEFTOVER_POLICY
    x, y = X[:96], Y[:96]  # 6 micro-batches per epoch: one group and 2 left over
    seen = PendingAtEpochEnd()
    optimizer = SoftBatch(keras.optimizers.Adam(0.01), steps=STEPS)
    two_epochs = flat(train(optimizer, MICRO, x=x, y=y, epochs=2, callbacks=[seen]))
    assert seen.pending == [2, 0]
    assert int(optimizer.iterations.numpy()) == 3
    # Same as one epoch over the data twice, and as batch 64 over that: groups span the boundary.
    xx, yy = np.concatenate([x, x]), np.concatenate([y, y])
    one_epoch = flat(
        train(SoftBatch(keras.optimizers.Adam(0.01), steps=STEPS), MICRO, x=xx, y=yy, epochs=1)
    )
    big = flat(train(keras.optimizers.Adam(0.01), MICRO * STEPS, x=xx, y=yy, epochs=1))
    assert np.array_equal(two_epochs, one_epoch)
    np.testing.assert_allclose(two_epochs, big, rtol=0, atol=1e-6)


# 5. Survive an interruption -------------------------------------------------------------------
def test_keras_file_saved_mid_group_resumes_exactly(tmp_path):
    x, y = X[:96], Y[:96]
    uninterrupted = flat(
        train(SoftBatch(keras.optimizers.Adam(0.01), steps=STEPS), MICRO, x=x, y=y, epochs=2)
    )
    model = train(SoftBatch(keras.optimizers.Adam(0.01), steps=STEPS), MICRO, x=x, y=y, epochs=1)
    assert int(model.optimizer.pending_micro_batches.numpy()) == 2
    model.save(tmp_path / "mid_group.keras")
    keras.backend.clear_session()
    restored = keras.saving.load_model(tmp_path / "mid_group.keras")
    assert isinstance(restored.optimizer, SoftBatch)
    assert int(restored.optimizer.pending_micro_batches.numpy()) == 2
    assert int(restored.optimizer.inner.iterations.numpy()) == 1
    restored.fit(x, y, batch_size=MICRO, epochs=1, shuffle=False, verbose=0)
    assert np.array_equal(flat(restored), uninterrupted)


def test_backup_and_restore_mid_group_resumes_exactly(tmp_path):
    x, y = X[:96], Y[:96]
    uninterrupted = flat(
        train(SoftBatch(keras.optimizers.Adam(0.01), steps=STEPS), MICRO, x=x, y=y, epochs=3)
    )
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="simulated interruption"):
        train(
            SoftBatch(keras.optimizers.Adam(0.01), steps=STEPS),
            MICRO,
            x=x,
            y=y,
            epochs=3,
            callbacks=[backup, InterruptAt(epoch=1, batch=3)],
        )
    keras.backend.clear_session()
    resumed = train(
        SoftBatch(keras.optimizers.Adam(0.01), steps=STEPS),
        MICRO,
        x=x,
        y=y,
        epochs=3,
        callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))],
    )
    assert np.array_equal(flat(resumed), uninterrupted)


def test_model_checkpoint_weights_include_the_pending_group(tmp_path):
    x, y = X[:96], Y[:96]
    path = tmp_path / "epoch.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(str(path), save_weights_only=True)
    first = train(
        SoftBatch(keras.optimizers.Adam(0.01), steps=STEPS),
        MICRO,
        x=x,
        y=y,
        epochs=1,
        callbacks=[checkpoint],
    )
    pending = [a.numpy() for a in first.optimizer.accumulators]
    model = make_model()
    model.compile(optimizer=SoftBatch(keras.optimizers.Adam(0.01), steps=STEPS), loss="mse")
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    for saved, loaded in zip(pending, model.optimizer.accumulators, strict=True):
        assert np.array_equal(saved, loaded.numpy())
    assert int(model.optimizer.pending_micro_batches.numpy()) == 2


def test_config_round_trip_keeps_the_inner_optimizer():
    inner = keras.optimizers.AdamW(
        keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5), weight_decay=0.3, clipnorm=2.0
    )
    original = SoftBatch(inner, steps=3, name="soft")
    copy = SoftBatch.from_config(original.get_config())
    assert copy.steps == 3 and copy.name == "soft"
    assert type(copy.inner) is keras.optimizers.AdamW
    assert copy.inner.get_config() == inner.get_config()
    via_keras = keras.optimizers.deserialize(keras.optimizers.serialize(original))
    assert isinstance(via_keras, SoftBatch) and via_keras.get_config() == original.get_config()
    # The clipping is taken from inner at construction: SoftBatch clips, inner no longer does,
    # and the saved inner is the optimizer as it was handed over.
    clipping = {"clipnorm": 2.0, "global_clipnorm": None, "clipvalue": None}
    assert original.clipping == copy.clipping == clipping and inner.clipnorm is None
    assert original.get_config()["inner"]["config"]["clipnorm"] == 2.0


@pytest.mark.parametrize("wrapper", [SoftBatch, Lookahead], ids=["soft_batch", "lookahead"])
def test_a_wrapper_holds_its_state_and_inners_and_knows_its_variables(wrapper):
    """Its own map of the model's variables is not counted (or saved) as optimizer state."""
    model = make_model()
    optimizer = wrapper(keras.optimizers.Adam(0.01))
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(X[:MICRO], Y[:MICRO], batch_size=MICRO, verbose=0)
    own = {id(v) for v in optimizer.variables}
    assert own.isdisjoint(id(v) for v in model.trainable_variables)
    assert {id(v) for v in optimizer.inner.variables} <= own
    stranger = keras.Variable(np.zeros(2, "float32"))
    with pytest.raises(ValueError, match="was built on other variables than"):
        optimizer.apply([np.ones(2, "float32")], [stranger])


# 6. Scale out -----------------------------------------------------------------------------------
MIRRORED = "MirroredStrategy is TensorFlow's (JAX: tests/test_scale_out_jax.py)"


@pytest.mark.tensorflow_only(MIRRORED)
@pytest.mark.parametrize("name", ["adam", "adam_clipnorm", "sgd_global_clipnorm"])
def test_mirrored_strategy_equals_one_device(name, two_cpu_strategy):
    big = flat(train(INNER[name](), MICRO * STEPS))
    with two_cpu_strategy.scope():
        model = make_model()
        model.compile(optimizer=SoftBatch(INNER[name](), steps=STEPS), loss="mse")
    model.fit(X, Y, batch_size=MICRO, epochs=2, shuffle=False, verbose=0)
    assert model.distribute_strategy.num_replicas_in_sync == 2
    assert int(model.optimizer.iterations.numpy()) == 4
    np.testing.assert_allclose(flat(model), big, rtol=0, atol=1e-6)


@pytest.mark.tensorflow_only(MIRRORED)
def test_keras_clips_per_replica_so_the_clipped_mirrored_test_is_sensitive(two_cpu_strategy):
    """Plain Keras under the strategy clips each replica's half gradient: it drifts from one device.

    If this stops failing to match, Keras has fixed it and the test above no longer shows much.
    """
    one_device = flat(train(INNER["adam_clipnorm"](), MICRO * STEPS))
    with two_cpu_strategy.scope():
        model = make_model()
        model.compile(optimizer=INNER["adam_clipnorm"](), loss="mse")
    model.fit(X, Y, batch_size=MICRO * STEPS, epochs=2, shuffle=False, verbose=0)
    assert np.abs(flat(model) - one_device).max() > 1e-4


# 7. Reject bad input clearly ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("steps", "error"), [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_bad_steps_are_rejected(steps, error):
    with pytest.raises(error, match=r"steps must .* got"):
        SoftBatch(keras.optimizers.SGD(0.1), steps=steps)


def test_non_optimizers_and_nested_soft_batches_are_rejected():
    with pytest.raises(TypeError, match="inner must be a Keras optimizer.*'adam'"):
        SoftBatch("adam", steps=4)
    with pytest.raises(TypeError, match="inner is already a SoftBatch"):
        SoftBatch(SoftBatch(keras.optimizers.SGD(0.1), steps=2), steps=2)


def test_misplaced_or_conflicting_settings_are_rejected():
    with pytest.raises(ValueError, match=r"does not take \['clipnorm'\].*inner optimizer"):
        SoftBatch(keras.optimizers.SGD(0.1), steps=4, clipnorm=1.0)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=2"):
        SoftBatch(keras.optimizers.SGD(0.1, gradient_accumulation_steps=2), steps=4)
    used = keras.optimizers.SGD(0.1)
    used.build(make_model().trainable_variables)
    with pytest.raises(ValueError, match="already built"):
        SoftBatch(used, steps=4)
