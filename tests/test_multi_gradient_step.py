"""The multi-gradient skeleton (course_lib.multi_gradient_step), once, through a probe rule.

What every method's training step inherits from the skeleton is tested here with the probe of
``probe_method.py``, the gradient at p − reach·g: its closed form on L(p) = ½ pᵀAp, Keras's own
step at reach 0, the logs at the start point, one mini-batch for every pass, BatchNorm's
statistics moved once, the two routes and their life cycle, saving, clear errors, mixed
precision (Keras's own loss-scaled step at reach 0, an overflow skipped as a whole), and, on
TensorFlow, MirroredStrategy equal to one device (DataParallel on JAX:
tests/test_scale_out_jax.py). Each rule is tested against its own closed form in its own file.
Runs on TensorFlow and on JAX.
"""

from __future__ import annotations

import course_lib
from course_lib import multi_gradient_step

import ast
import importlib.util
import inspect
from pathlib import Path

import keras
import numpy as np
import pytest
from probe_method import ROUTES as PROBE
from probe_method import ProbeSettings

from multi_gradient_routes import (
    assert_an_overflow_skips_the_whole_step,
    assert_equals_kerass_own_step,
    assert_mirrored_equals_one_device,
    dtype_policy,
    fit_steps,
    least_squares_data,
    least_squares_epoch,
    least_squares_gradient,
    p_of,
    quadratic_model,
)
from quadratic_problem import P0, A, quadratic_loss_for

BACKEND = keras.backend.backend()
REACH = 0.05
ROUTES = ["clean", "sequential", "intrusive"]


def probe_path(steps: int, h: float, reach: float) -> np.ndarray:
    """The closed form: p ← p − h·A·(I − reach·A)·p."""
    step = np.eye(2) - h * A @ (np.eye(2) - reach * A)
    return np.linalg.matrix_power(step, steps) @ P0


# ---------------------------------------------------------------------------------------------
# 1. The skeleton takes the rule's step
# ---------------------------------------------------------------------------------------------


def test_one_skeleton_per_backend_chosen_at_import():
    """Each backend's skeleton fills the same contract; this process runs its backend's."""
    backends = multi_gradient_step.BACKENDS
    assert multi_gradient_step._backend is importlib.import_module(backends[BACKEND])
    for name in backends.values():  # read, not imported: the other backend stays unloaded
        source = Path(importlib.util.find_spec(name).origin).read_text()
        defined = {
            node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)
        }
        assert {"train_step", "make_train_function", "after_each_step"} <= defined, name


@pytest.mark.parametrize("route", ROUTES)
def test_the_probe_equals_its_closed_form(float64, route):
    model = quadratic_model(PROBE, route, reach=REACH)
    fit_steps(model, 4)
    np.testing.assert_allclose(p_of(model), probe_path(4, 0.1, REACH), rtol=0, atol=1e-13)
    assert np.abs(p_of(model) - probe_path(4, 0.1, 0.0)).max() > 1e-2, "reach must matter here"


@pytest.mark.parametrize("jit", [False, True])
def test_with_and_without_xla(xla_allowed, jit):
    model = quadratic_model(PROBE, "clean", jit=jit, reach=REACH)
    fit_steps(model, 4)
    np.testing.assert_allclose(p_of(model), probe_path(4, 0.1, REACH), rtol=0, atol=4e-6)


def test_a_second_pass_at_p_is_kerass_own_step():
    """reach = 0: the rule's gradient is ∇L(p) again, and the step Keras's, bit for bit."""
    assert_equals_kerass_own_step(PROBE, reach=0.0)


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_logs_describe_the_start_point_and_carry_the_rules(route):
    """The logged loss and metric are those at p, as a standard step logs them."""
    model = quadratic_model(PROBE, route, metrics=["mae"], reach=REACH)
    ones, zeros = np.ones((1, 1)), np.zeros((1, 2))
    before = model.evaluate(ones, zeros, verbose=0, return_dict=True)
    history = model.fit(ones, zeros, epochs=1, verbose=0)
    assert before["loss"] == pytest.approx(0.5 * P0 @ A @ P0, rel=1e-6)
    assert history.history["loss"][0] == pytest.approx(before["loss"], rel=1e-6)
    assert history.history["mae"][0] == pytest.approx(before["mae"], rel=1e-6)
    assert history.history["probe_step_size"][0] == pytest.approx(0.1)
    after = model.evaluate(ones, zeros, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] - 10


def numpy_probe_epoch(params, x, y, batch, h, reach):
    for start in range(0, len(x), batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        ahead = params - reach * least_squares_gradient(params, xb, yb)
        params = params - h * least_squares_gradient(ahead, xb, yb)
    return params


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_every_pass_uses_the_same_mini_batch(float64, route):
    before, after = least_squares_epoch(PROBE, route, 0.05, reach=0.3)
    x, y = least_squares_data()
    expected = numpy_probe_epoch(before, x, y, 4, 0.05, 0.3)
    np.testing.assert_allclose(after, expected, rtol=0, atol=1e-12)


def test_batchnorm_statistics_move_once_per_step_from_the_start_point():
    """BatchNorm's moving statistics take one step (momentum 0.5), from p's batch statistics."""
    x, y = least_squares_data(8)
    course_lib.set_seed(3)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="features")(inputs)
    normalized = keras.layers.BatchNormalization(momentum=0.5, name="bn")(hidden)
    model = PROBE.model(inputs=inputs, outputs=keras.layers.Dense(1)(normalized), reach=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    features = keras.ops.convert_to_numpy(keras.Model(inputs, hidden)(x))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.5 * features.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), 0.5 + 0.5 * features.var(axis=0), rtol=1e-5
    )


# ---------------------------------------------------------------------------------------------
# 2. The routes: evaluate, predict, callbacks, saving, inject and eject
# ---------------------------------------------------------------------------------------------


def test_evaluate_predict_and_callbacks_work():
    model = quadratic_model(PROBE, "clean", reach=REACH)
    seen = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(float(logs["loss"]))
    )
    fit_steps(model, 3, callbacks=[callback], shuffle=False)
    assert len(seen) == 3 and seen[0] == pytest.approx(0.5 * P0 @ A @ P0, rel=1e-6)
    prediction = model.predict(np.ones((2, 1)), verbose=0)
    np.testing.assert_allclose(prediction, np.tile(p_of(model), (2, 1)), rtol=1e-6)
    loss = model.evaluate(np.ones((1, 1)), np.zeros((1, 2)), verbose=0)
    p = p_of(model)
    assert loss == pytest.approx(0.5 * p @ A @ p, rel=1e-5)


@pytest.mark.parametrize("route", ["clean", "sequential"])
def test_save_and_load_keeps_the_method_and_the_trajectory(tmp_path, route):
    model = quadratic_model(PROBE, route, reach=REACH)
    fit_steps(model, 1)
    model.save(tmp_path / "probe.keras")
    loaded = keras.saving.load_model(
        tmp_path / "probe.keras", custom_objects={"quadratic_loss": quadratic_loss_for(A)}
    )
    assert type(loaded) is type(model)
    assert loaded.probe_reach == REACH and loaded.step_settings == ProbeSettings(REACH)
    np.testing.assert_array_equal(p_of(loaded), p_of(model))
    fit_steps(model, 2)
    fit_steps(loaded, 2)
    np.testing.assert_allclose(p_of(loaded), p_of(model), rtol=0, atol=1e-7)
    np.testing.assert_allclose(p_of(loaded), probe_path(3, 0.1, REACH), rtol=0, atol=2e-6)


def test_recompiling_or_ejecting_undoes_the_injection():
    model = quadratic_model(PROBE, "intrusive", reach=REACH)
    assert PROBE.is_injected(model)
    fit_steps(model, 1)
    np.testing.assert_allclose(p_of(model), probe_path(1, 0.1, REACH), atol=2e-6)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=quadratic_loss_for(A))
    assert not PROBE.is_injected(model)
    moved = p_of(model)
    fit_steps(model, 1)
    np.testing.assert_allclose(p_of(model), moved - 0.1 * A @ moved, atol=2e-6)  # plain SGD
    PROBE.eject(PROBE.inject(model, reach=REACH))
    assert not PROBE.is_injected(model)
    with pytest.raises(ValueError, match="no injected probe step"):
        PROBE.eject(model)


def test_the_factory_names_what_it_makes():
    assert (PROBE.model.__name__, PROBE.sequential.__name__) == ("ProbeModel", "ProbeSequential")
    assert PROBE.inject.__name__ == "inject_probe" and PROBE.eject.__name__ == "eject_probe"
    assert list(inspect.signature(PROBE.inject).parameters) == ["model", "reach"]
    assert keras.saving.get_registered_name(PROBE.model) == "course_lib_tests>ProbeModel"


# ---------------------------------------------------------------------------------------------
# 3. Clear errors
# ---------------------------------------------------------------------------------------------


def test_models_without_an_optimizer_are_refused():
    """Both routes say that the model must be compiled first; injection needs a keras.Model."""
    inputs = keras.Input((1,))
    with pytest.raises(ValueError, match="has no optimizer.*compile"):
        PROBE.inject(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    with pytest.raises(TypeError, match="must be a keras.Model"):
        PROBE.inject("not a model")
    model = PROBE.model(inputs=inputs, outputs=keras.layers.Dense(2)(inputs))
    with pytest.raises((ValueError, RuntimeError), match="compile"):
        model.fit(np.ones((2, 1)), np.zeros((2, 2)), verbose=0)
    with pytest.raises(TypeError, match="already a ProbeModel"):
        PROBE.inject(model)


def test_a_fixed_loss_scale_factor_is_refused():
    """Only LossScaleOptimizer's dynamic scaling is supported; the error names the fix."""
    model = quadratic_model(PROBE, "plain")
    model.compile(optimizer=keras.optimizers.SGD(0.1, loss_scale_factor=128.0), loss="mse")
    with pytest.raises(ValueError, match="loss_scale_factor=128.0.*LossScaleOptimizer"):
        PROBE.inject(model)


# ---------------------------------------------------------------------------------------------
# 4. Mixed precision: loss scaling at every pass, a step with a non-finite gradient skipped
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_under_mixed_precision_a_second_pass_at_p_is_kerass_own_loss_scaled_step(route):
    """reach = 0 under mixed_float16: Keras's own step, bit for bit, through every skipped step
    and every change of the loss scale (it starts too high, halves three times, then grows)."""

    def run(routes, route, **settings):
        with dtype_policy("mixed_float16"):
            inner = keras.optimizers.SGD(0.1, momentum=0.5)
            optimizer = keras.optimizers.LossScaleOptimizer(inner, dynamic_growth_steps=2)
            model = quadratic_model(routes, route, optimizer=optimizer, **settings)
            history = fit_steps(model, 8, shuffle=False)
        return model, history.history

    model, logs = run(PROBE, route, reach=0.0)
    keras_model, keras_logs = run(None, "plain")
    np.testing.assert_array_equal(p_of(model), p_of(keras_model))
    assert logs["loss"] == keras_logs["loss"]
    for name in ("dynamic_scale", "step_counter", "iterations"):
        got, want = (getattr(m.optimizer, name).numpy() for m in (model, keras_model))
        assert got == want, name
    skipped = 8 - int(model.optimizer.iterations.numpy())
    assert skipped >= 3 and logs["skipped_steps"] == [skipped]
    assert float(model.optimizer.dynamic_scale.numpy()) > 2.0**15 / 2**skipped, "it must grow"


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_an_overflow_skips_the_whole_step(route):
    assert_an_overflow_skips_the_whole_step(PROBE, route, reach=0.5)


# ---------------------------------------------------------------------------------------------
# 5. MirroredStrategy equals one device (DataParallel on JAX: tests/test_scale_out_jax.py)
# ---------------------------------------------------------------------------------------------


@pytest.mark.tensorflow_only("MirroredStrategy is TensorFlow's")
@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_mirrored_strategy_equals_one_device(two_cpu_strategy, route):
    """The trial point is built from the whole batch's gradient, each replica applies its share,
    and the logged loss is the batch's."""
    assert_mirrored_equals_one_device(two_cpu_strategy, PROBE, route, reach=0.5)


@pytest.mark.tensorflow_only("MirroredStrategy is TensorFlow's")
def test_synchronized_batchnorm_under_mirrored_strategy_equals_one_device(two_cpu_strategy):
    """BatchNorm's all-reduce runs inside every pass; its statistics still move once."""
    assert_mirrored_equals_one_device(
        two_cpu_strategy, PROBE, "clean", atol=2e-6, batch_norm=True, reach=0.5
    )


@pytest.mark.tensorflow_only("MirroredStrategy is TensorFlow's")
def test_mixed_precision_under_mirrored_strategy_equals_one_device(two_cpu_strategy):
    """The decision is taken once, in cross-replica context. float16 rounds a batch and its
    halves differently, hence the tolerance; and each replica differentiates its share of the
    loss (half of it), so a scale that overflows one device may not overflow two: the scale
    starts low enough for neither to skip."""

    def scaled_sgd():
        return keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=64.0)

    with dtype_policy("mixed_float16"):
        assert_mirrored_equals_one_device(
            two_cpu_strategy, PROBE, "clean", atol=1e-3, optimizer=scaled_sgd, reach=0.5
        )
