"""course_lib.optimizers: bit-identity with keras.optimizers.SGD, serialisation, clear errors.

Runs on TensorFlow and on JAX: on each backend ours and Keras's SGD are compared at the same
``jit_compile`` setting (TensorFlow: graph or XLA; JAX: op by op or jitted).
"""

from __future__ import annotations

import course_lib
from course_lib.data import load_dataset
from course_lib.optimizers import MomentumSGD, PlainSGD

import collections
import math

import keras
import numpy as np
import pytest

if keras.backend.backend() == "tensorflow":
    from tensorflow.python.framework import config as tf_config

DIGITS = load_dataset("digits")
X, Y = DIGITS.x_train[:192], DIGITS.y_train[:192]


def _small_model() -> keras.Model:
    course_lib.set_seed(42)  # note: this switches op determinism on again
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def _train(optimizer, *, jit_compile: bool, epochs: int = 2, strategy=None) -> list[np.ndarray]:
    """Fit the same small model from the same seed; return its weights."""
    tensorflow = keras.backend.backend() == "tensorflow"
    determinism = tensorflow and tf_config.is_op_determinism_enabled()
    if strategy is None:
        model = _small_model()
    else:
        with strategy.scope():
            model = _small_model()
    if tensorflow and not determinism:
        tf_config.disable_op_determinism()  # set_seed re-enabled it; keep XLA available
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if strategy is None:
        model.compile(optimizer=optimizer, loss=loss, jit_compile=jit_compile)
    else:
        with strategy.scope():
            model.compile(optimizer=optimizer, loss=loss, jit_compile=jit_compile)
    # Guard against a silent downgrade: a jit case must really run under XLA.
    assert model.jit_compile == jit_compile
    model.fit(X, Y, batch_size=32, epochs=epochs, shuffle=False, verbose=0)
    return [weight.numpy() for weight in model.weights]


def _max_difference(first: list[np.ndarray], second: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(a - b))) for a, b in zip(first, second, strict=True))


CASES = {
    "plain": (lambda: PlainSGD(0.1), lambda: keras.optimizers.SGD(0.1)),
    "momentum0": (lambda: MomentumSGD(0.1, momentum=0.0), lambda: keras.optimizers.SGD(0.1)),
    "momentum0.9": (
        lambda: MomentumSGD(0.1, momentum=0.9),
        lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    ),
    "nesterov": (
        lambda: MomentumSGD(0.1, momentum=0.9, nesterov=True),
        lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bit_identical_to_keras_sgd_without_jit(case):
    ours, keras_own = CASES[case]
    assert (
        _max_difference(_train(ours(), jit_compile=False), _train(keras_own(), jit_compile=False))
        == 0.0
    )


@pytest.mark.parametrize("case", list(CASES))
def test_bit_identical_to_keras_sgd_with_jit(case, xla_allowed):
    ours, keras_own = CASES[case]
    assert (
        _max_difference(_train(ours(), jit_compile=True), _train(keras_own(), jit_compile=True))
        == 0.0
    )


def _traced_step_ops(optimizer) -> collections.Counter:
    """The operation types of one training step as TensorFlow traces it, counted."""
    import tensorflow as tf

    model = _small_model()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    x, y = tf.constant(X[:32]), tf.constant(Y[:32])
    graph = tf.function(lambda a, b: model.train_step((a, b))).get_concrete_function(x, y).graph
    return collections.Counter(op.type for op in graph.get_operations())


@pytest.mark.tensorflow_only("counts the operations of TensorFlow's traced graph")
@pytest.mark.parametrize("case", list(CASES))
def test_the_traced_step_is_kerass_operation_for_operation(case):
    """The same program, not only the same numbers: no cast, copy or read more than Keras's.

    So a step of ours costs what Keras's costs (benchmarks/backends.py times them).
    """
    ours, keras_own = CASES[case]
    assert _traced_step_ops(ours()) == _traced_step_ops(keras_own())


def test_training_moves_the_weights_and_lowers_the_loss():
    """Bit-identity alone would also hold for two optimizers that do nothing."""
    model = _small_model()
    model.compile(
        optimizer=MomentumSGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(X, Y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert losses == sorted(losses, reverse=True)
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.tensorflow_only("MirroredStrategy is TensorFlow's (JAX: tests/test_scale_out_jax.py)")
def test_bit_identical_under_mirrored_strategy(two_cpu_strategy):
    with two_cpu_strategy.scope():  # optimizer variables must be created under the strategy
        ours = MomentumSGD(0.1, momentum=0.9, nesterov=True)
        theirs = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)
    weights_ours = _train(ours, jit_compile=False, strategy=two_cpu_strategy)
    weights_theirs = _train(theirs, jit_compile=False, strategy=two_cpu_strategy)
    assert _max_difference(weights_ours, weights_theirs) == 0.0


@pytest.mark.parametrize(
    ("nesterov", "expected"),
    [
        # v1 = -0.1, p1 = 0.9; v2 = 0.9·(-0.1) - 0.1 = -0.19, p2 = 0.71
        (False, [0.9, 0.71]),
        # p1 = 1 + 0.9·(-0.1) - 0.1 = 0.81; p2 = 0.81 + 0.9·(-0.19) - 0.1 = 0.539
        (True, [0.81, 0.539]),
    ],
)
def test_momentum_matches_the_closed_form(nesterov, expected):
    variable = keras.Variable([1.0])
    optimizer = MomentumSGD(0.1, momentum=0.9, nesterov=nesterov)
    got = []
    for _ in range(2):
        optimizer.apply([np.ones(1, np.float32)], [variable])
        got.append(float(variable.numpy()[0]))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert int(optimizer.iterations.numpy()) == 2


def test_slots_one_velocity_per_variable_and_none_without_momentum():
    variables = [
        keras.Variable(np.zeros((3, 2), np.float32)),
        keras.Variable(np.zeros(2, np.float32)),
    ]
    with_momentum = MomentumSGD(0.1, momentum=0.9)
    with_momentum.build(variables)
    assert [tuple(v.shape) for v in with_momentum.velocities] == [(3, 2), (2,)]
    without = MomentumSGD(0.1, momentum=0.0)
    without.build(variables)
    assert without.velocities == []
    plain = PlainSGD(0.1)
    plain.build(variables)
    # Only the iteration counter and the learning rate: no slots.
    assert len(plain.variables) == len(keras.optimizers.SGD(0.1).variables) == 2


def test_get_config_round_trip():
    optimizer = MomentumSGD(0.05, momentum=0.8, nesterov=True, clipnorm=1.0, name="mine")
    config = optimizer.get_config()
    assert config["momentum"] == 0.8 and config["nesterov"] is True
    assert config["learning_rate"] == pytest.approx(0.05)
    restored = MomentumSGD.from_config(config)
    assert restored.get_config() == config
    plain = PlainSGD(0.3)
    assert PlainSGD.from_config(plain.get_config()).get_config() == plain.get_config()


def test_get_config_round_trip_with_a_schedule():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    optimizer = MomentumSGD(schedule, momentum=0.5)
    restored = MomentumSGD.from_config(optimizer.get_config())
    assert isinstance(restored.learning_rate, type(optimizer.learning_rate))
    assert restored.get_config() == optimizer.get_config()


def test_registered_as_serializable():
    assert keras.saving.get_registered_name(PlainSGD) == "course_lib>PlainSGD"
    assert keras.saving.get_registered_name(MomentumSGD) == "course_lib>MomentumSGD"


@pytest.mark.parametrize(
    "make",
    [lambda: MomentumSGD(0.05, momentum=0.9, nesterov=True), lambda: PlainSGD(0.05)],
    ids=["momentum_sgd", "plain_sgd"],
)
def test_save_and_load_keeps_the_optimizer_state(make, tmp_path):
    model = _small_model()
    model.compile(
        optimizer=make(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(X, Y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    # Load without custom_objects: the registration alone must find the class.
    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    # Compare in build order: the loaded model's layers get new names, so the paths differ.
    saved_state = [v.numpy() for v in model.optimizer.variables]
    loaded_state = [v.numpy() for v in loaded.optimizer.variables]
    assert len(saved_state) == len(loaded_state) == len(model.optimizer.variables)
    assert int(loaded.optimizer.iterations.numpy()) == 6  # 192 / 32 steps
    if isinstance(model.optimizer, MomentumSGD):
        assert len(loaded.optimizer.velocities) == 4
        velocities = [v.numpy() for v in loaded.optimizer.velocities]
        assert all(np.abs(v).max() > 0 for v in velocities)  # the state is not just zeros
    for saved, restored in zip(saved_state, loaded_state, strict=True):
        np.testing.assert_array_equal(restored, saved)
    # Training on from the saved state continues exactly as the original model does.
    model.fit(X, Y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    loaded.fit(X, Y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    assert (
        _max_difference([w.numpy() for w in model.weights], [w.numpy() for w in loaded.weights])
        == 0.0
    )


@pytest.mark.parametrize(
    ("make", "error", "names"),
    [
        (lambda: PlainSGD(learning_rate=-0.1), ValueError, "learning_rate=-0.1"),
        (lambda: PlainSGD(learning_rate=math.nan), ValueError, "learning_rate=nan"),
        (lambda: MomentumSGD(learning_rate=math.inf), ValueError, "learning_rate=inf"),
        (lambda: PlainSGD(learning_rate="0.1"), TypeError, "learning_rate='0.1'"),
        (lambda: MomentumSGD(momentum=1.0), ValueError, "momentum=1.0"),
        (lambda: MomentumSGD(momentum=-0.5), ValueError, "momentum=-0.5"),
        (lambda: MomentumSGD(momentum=math.nan), ValueError, "momentum=nan"),
        (lambda: MomentumSGD(momentum="0.9"), TypeError, "momentum='0.9'"),
        (lambda: MomentumSGD(momentum=0.0, nesterov=True), ValueError, "nesterov=True"),
        (lambda: MomentumSGD(nesterov="yes"), TypeError, "nesterov='yes'"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_argument(make, error, names):
    with pytest.raises(error, match=names.replace("(", r"\(")) as caught:
        make()
    assert "pass e.g." in str(caught.value) or "True or False" in str(caught.value)


def test_bad_config_is_rejected_on_load_too():
    config = MomentumSGD(0.1, momentum=0.9).get_config()
    config["momentum"] = 1.5
    with pytest.raises(ValueError, match="momentum=1.5"):
        MomentumSGD.from_config(config)


def test_integer_learning_rate_is_accepted_as_float():
    """Keras's own SGD rejects learning_rate=1; ours converts it."""
    assert PlainSGD(learning_rate=1).get_config()["learning_rate"] == 1.0
