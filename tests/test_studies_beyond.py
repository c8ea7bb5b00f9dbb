"""Notebook 07's harness: the sharp/flat landscape, the paths, the SAM objective, the tables."""

from __future__ import annotations

from course_lib.landscapes import Quadratic, SharpFlatLandscape, gradient_descent
from course_lib.studies.beyond import (
    ComparisonSettings,
    check_method_settings,
    comparison_table,
    differences_table,
    disc_offsets,
    fit_path,
    float64_keras,
    format_comparison,
    landscape_path,
    numpy_path,
    sam_objective,
    train_on_digits,
)
from course_lib.studies.results import load_result

import numpy as np
import pytest

LANDSCAPE = SharpFlatLandscape()
#: Notebook 07's demo: start, learning rate, steps, and the radii it plots.
START, RATE, STEPS, RADII = (-0.5, 0.5), 0.03, 250, (0.2, 0.3, 0.5)


def _finite_difference(function, points, step=1e-6):
    columns = []
    for axis in range(2):
        shift = np.zeros(2)
        shift[axis] = step
        columns.append((function(points + shift) - function(points - shift)) / (2 * step))
    return np.stack(columns, axis=-1)


# ---- the landscape ---------------------------------------------------------------------------


def test_gradient_and_hessian_match_finite_differences():
    points = np.random.default_rng(7).uniform(-1.5, 1.5, size=(20, 2))
    gradient = _finite_difference(LANDSCAPE.value, points)
    np.testing.assert_allclose(LANDSCAPE.gradient(points), gradient, atol=1e-7)
    hessian = _finite_difference(LANDSCAPE.gradient, points)  # rows: ∂g/∂x, ∂g/∂y
    np.testing.assert_allclose(LANDSCAPE.hessian(points), np.swapaxes(hessian, -1, -2), atol=1e-6)


def test_the_minima_are_critical_points_the_sharp_one_deeper_and_sharper():
    sharp, flat = LANDSCAPE.minimum, LANDSCAPE.flat_minimum
    for point in (sharp, flat):
        assert np.abs(LANDSCAPE.gradient(point)).max() < 1e-12
        assert np.linalg.eigvalsh(LANDSCAPE.hessian(point)).min() > 0
    assert sharp[0] < 0 < flat[0]
    assert LANDSCAPE.value(sharp) < LANDSCAPE.value(flat)
    assert LANDSCAPE.sharpness(sharp) > 10 * LANDSCAPE.sharpness(flat)
    # The sharpness across the valley is c(x) at the minima (c > the floor's own curvature).
    assert LANDSCAPE.sharpness(sharp) == pytest.approx(LANDSCAPE.curvature_across(sharp[0]))


def test_keras_loss_is_the_numpy_loss():
    import keras

    points = np.random.default_rng(3).uniform(-1.5, 1.5, size=(10, 2))
    keras_values = keras.ops.convert_to_numpy(
        LANDSCAPE.keras_loss(None, keras.ops.convert_to_tensor(points, dtype="float64"))
    )
    np.testing.assert_allclose(keras_values, LANDSCAPE.value(points), rtol=1e-14, atol=1e-15)


def test_basin_follows_the_gradient_flow_to_the_right_minimum():
    near = [LANDSCAPE.minimum + [0.05, 0.02], LANDSCAPE.flat_minimum + [-0.3, 0.2]]
    assert LANDSCAPE.basin(near).tolist() == ["sharp", "flat"]
    # Just either side of the pass (the saddle near x = 0.05 on the floor).
    assert LANDSCAPE.basin([[-0.2, 0.0], [0.3, 0.0]]).tolist() == ["sharp", "flat"]
    assert LANDSCAPE.basin(LANDSCAPE.flat_minimum) == "flat"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"barrier": 0.0}, "barrier"),
        ({"sharp_curvature": 1.0}, "sharp_curvature"),
        ({"narrowing_width": -1.0}, "narrowing_width"),
        ({"tilt": 0.2}, "tilt"),
    ],
)
def test_landscape_refuses_settings_without_two_minima(arguments, message):
    with pytest.raises(ValueError, match=message):
        SharpFlatLandscape(**arguments)


# ---- paths: the library's Keras classes against NumPy ------------------------------------------


@pytest.mark.parametrize(
    ("method", "settings"),
    [("SGD", {}), ("Lookahead", {}), ("SAM", {"rho": 0.3}), ("SAM", {"rho": 0.0})],
)
def test_keras_path_equals_the_numpy_reference_to_float64_round_off(method, settings):
    keras_path = landscape_path(LANDSCAPE, method, START, RATE, 40, **settings)
    reference = numpy_path(LANDSCAPE, method, START, RATE, 40, **settings)
    assert keras_path.shape == reference.shape == (41, 2)
    assert np.abs(keras_path - reference).max() < 1e-12


def test_fit_path_trains_any_optimizer_and_model_class_to_the_numpy_reference():
    from course_lib.sam import SAMModel

    import keras

    with float64_keras():
        plain = fit_path(LANDSCAPE, START, 30, keras.optimizers.SGD(RATE))
        sam = fit_path(LANDSCAPE, START, 30, keras.optimizers.SGD(RATE), SAMModel, rho=0.2)
    assert keras.config.floatx() == "float32"  # restored after the block
    assert np.abs(plain - numpy_path(LANDSCAPE, "SGD", START, RATE, 30)).max() < 1e-12
    assert np.abs(sam - numpy_path(LANDSCAPE, "SAM", START, RATE, 30, rho=0.2)).max() < 1e-12


def test_fit_path_refuses_an_optimizer_made_in_float32():
    import keras

    with pytest.raises(ValueError, match=r"set_floatx\('float64'\)"):
        fit_path(LANDSCAPE, START, 3, keras.optimizers.SGD(RATE))


@pytest.mark.parametrize("method", ["SAM", "Lookahead"])
def test_digits_runs_are_float64_whatever_the_default_float_type(method):
    """The notebook runs with float64 as Keras's default, the benchmark with float32: the same
    runs, down to the optimizer's learning rate (a float32 0.1 would be off by 1.5e-9)."""
    from course_lib.data import load_dataset

    import keras

    settings = ComparisonSettings(seeds=(3,), epochs=1)
    data = load_dataset("digits")
    outside_float32 = train_on_digits(method, settings, 3, data)
    assert keras.config.floatx() == "float32"
    learning_rate = outside_float32.optimizer.learning_rate
    assert keras.backend.standardize_dtype(learning_rate.dtype) == "float64"
    assert {keras.backend.standardize_dtype(w.dtype) for w in outside_float32.weights} == {
        "float64"
    }
    weights = [w.copy() for w in outside_float32.get_weights()]
    with float64_keras():
        outside_float64 = train_on_digits(method, settings, 3, data)
    for a, b in zip(weights, outside_float64.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert "float64" in settings.describe()


def test_numpy_path_against_closed_forms():
    bowl = Quadratic.diagonal(2.0, 2.0)  # ∇L = 2p, so g/‖g‖ = p/‖p‖
    p0 = np.array([3.0, -4.0])
    sgd = numpy_path(bowl, "SGD", p0, 0.1, 10)
    np.testing.assert_allclose(sgd, gradient_descent(bowl, p0, 0.1, 10), rtol=0, atol=0)
    expected, p = [p0], p0
    for _ in range(10):
        g = 2.0 * p  # the gradient; SAM adds ρ·g/(‖g‖ + 1e-12), then steps with ∇L there
        p = p - 0.1 * 2.0 * (p + 0.5 * g / (np.linalg.norm(g) + 1e-12))
        expected.append(p)
    np.testing.assert_allclose(numpy_path(bowl, "SAM", p0, 0.1, 10, rho=0.5), expected, rtol=1e-14)
    # α = 1 makes Lookahead the inner optimizer; k = 3 with α = 0.5 halves every third step.
    np.testing.assert_allclose(
        numpy_path(bowl, "Lookahead", p0, 0.1, 10, slow_step_size=1.0), sgd, rtol=1e-14
    )
    lookahead = numpy_path(bowl, "Lookahead", p0, 0.1, 3, sync_period=3)
    np.testing.assert_allclose(lookahead[-1], p0 + 0.5 * (sgd[3] - p0), rtol=1e-15)


def test_the_demo_ends_where_notebook_07_says():
    """Gradient descent and Lookahead in the sharp basin, SAM in the flat one for every radius."""
    for method in ("SGD", "Lookahead"):
        end = numpy_path(LANDSCAPE, method, START, RATE, STEPS)[-1]
        assert LANDSCAPE.basin(end) == "sharp", method
    for rho in RADII:
        end = numpy_path(LANDSCAPE, "SAM", START, RATE, STEPS, rho=rho)[-1]
        assert LANDSCAPE.basin(end) == "flat", rho
        assert np.linalg.norm(end - LANDSCAPE.flat_minimum) < 0.05, rho
    small = numpy_path(LANDSCAPE, "SAM", START, RATE, STEPS, rho=0.05)[-1]
    assert LANDSCAPE.basin(small) == "sharp"


# ---- the SAM objective -----------------------------------------------------------------------


def test_sam_objective_equals_the_closed_form_on_a_round_bowl():
    bowl = Quadratic.diagonal(3.0, 3.0)  # L = 1.5‖p‖², worst within ρ: 1.5(‖p‖ + ρ)²
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.3, -0.4], [-2.0, 1.5]])
    exact = 1.5 * (np.linalg.norm(points, axis=-1) + 0.25) ** 2
    found = sam_objective(bowl, points, 0.25)
    assert np.all(found <= exact + 1e-12)
    np.testing.assert_allclose(found, exact, rtol=1e-4)
    np.testing.assert_array_equal(sam_objective(bowl, points, 0.0), bowl.value(points))


def test_sam_objective_is_chunked_without_changing_a_value():
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 41), np.linspace(-0.5, 0.5, 21)), axis=-1)
    whole = sam_objective(LANDSCAPE, grid, 0.2, directions=36, rings=2)
    one_by_one = np.array(
        [[sam_objective(LANDSCAPE, p, 0.2, directions=36, rings=2) for p in row] for row in grid]
    )
    assert whole.shape == (21, 41)
    np.testing.assert_array_equal(whole, one_by_one)


def test_the_sharp_dip_is_gone_from_the_sam_objective_of_the_plotted_radii():
    x = np.linspace(LANDSCAPE.minimum[0], LANDSCAPE.flat_minimum[0], 101)
    floor = np.stack([x, np.zeros_like(x)], axis=-1)
    for rho in RADII:
        assert np.all(np.diff(sam_objective(LANDSCAPE, floor, rho)) < 0), rho
    assert not np.all(np.diff(sam_objective(LANDSCAPE, floor, 0.05)) < 0)


def test_disc_offsets_cover_the_disc():
    offsets = disc_offsets(0.5, directions=8, rings=4)
    assert offsets.shape == (1 + 8 * 4, 2)
    radii = np.linalg.norm(offsets, axis=-1)
    assert radii[0] == 0 and radii.max() == pytest.approx(0.5)
    np.testing.assert_allclose(np.unique(radii.round(12)), [0, 0.125, 0.25, 0.375, 0.5])


# ---- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"rho": -0.1}, "rho"),
        ({"rho": float("nan")}, "rho"),
        ({"sync_period": 0}, "sync_period"),
        ({"sync_period": 2.0}, "sync_period"),
        ({"slow_step_size": 0.0}, "slow_step_size"),
        ({"slow_step_size": 1.5}, "slow_step_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"seeds": (1, 1)}, "seeds"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_comparison_settings_name_the_bad_argument(arguments, message):
    with pytest.raises(ValueError, match=message):
        ComparisonSettings(**arguments)


def test_path_and_disc_arguments_are_checked():
    with pytest.raises(ValueError, match="method='Adam'"):
        numpy_path(LANDSCAPE, "Adam", START, RATE, 3)
    with pytest.raises(ValueError, match="learning_rate"):
        numpy_path(LANDSCAPE, "SGD", START, -0.1, 3)
    with pytest.raises(ValueError, match="steps"):
        landscape_path(LANDSCAPE, "SGD", START, RATE, -1)
    with pytest.raises(ValueError, match="rho"):
        check_method_settings(True, 5, 0.5)
    with pytest.raises(ValueError, match="directions"):
        disc_offsets(0.1, directions=0)
    with pytest.raises(ValueError, match="last axis of length 2"):
        sam_objective(LANDSCAPE, [1.0, 2.0, 3.0], 0.1)


# ---- tables ----------------------------------------------------------------------------------

RESULTS = {"SGD": [0.90, 0.94, 0.92], "SAM": [0.91, 0.93, 0.95], "Lookahead": [0.88, 0.94, 0.90]}


def test_comparison_table_holds_raw_values_and_renders_rounded():
    table = comparison_table(RESULTS)
    sgd = table.records()[0]
    assert sgd["method"] == "SGD" and sgd["gradients per step"] == 1 and sgd["seeds"] == 3
    assert sgd["val accuracy mean"] == pytest.approx(0.92)
    assert sgd["std over seeds"] == pytest.approx(0.02)
    assert (sgd["min"], sgd["max"]) == (0.90, 0.94)
    assert table.records()[1]["gradients per step"] == 2
    assert format_comparison(RESULTS).splitlines()[2] == (
        "| SGD | 1 | 3 | 0.9200 | 0.0200 | 0.9000 | 0.9400 |"
    )


def test_differences_table_pairs_the_seeds():
    rows = differences_table(RESULTS).records()
    assert [row["difference"] for row in rows] == ["SAM − SGD", "Lookahead − SGD"]
    sam = rows[0]  # differences +0.01, −0.01, +0.03
    assert sam["mean"] == pytest.approx(0.01)
    assert sam["standard error"] == pytest.approx(0.02 / np.sqrt(3))
    assert (sam["seeds better"], sam["worse"], sam["equal"]) == (2, 1, 0)
    lookahead = rows[1]  # −0.02, 0, −0.02
    assert (lookahead["seeds better"], lookahead["worse"], lookahead["equal"]) == (0, 2, 1)


def test_tables_refuse_unpaired_or_too_few_seeds():
    with pytest.raises(ValueError, match="same seeds"):
        comparison_table({"SGD": [0.9, 0.8], "SAM": [0.9]})
    with pytest.raises(ValueError, match="baseline='Adam'"):
        differences_table(RESULTS, baseline="Adam")
    with pytest.raises(ValueError, match="at least two seeds"):
        differences_table({"SGD": [0.9], "SAM": [0.8]})
    with pytest.raises(ValueError, match="empty"):
        comparison_table({})


def test_the_committed_result_file_has_both_tables_for_the_same_seeds():
    result = load_result("beyond")
    accuracy, differences = result.table("accuracy"), result.table("differences")
    assert accuracy.column("method") == ["SGD", "SAM", "Lookahead"]
    assert set(accuracy.column("seeds")) == {len(result.values["seeds"])}
    per_seed = result.values["per_seed_accuracy"]  # a JSON object: keys come back sorted
    recomputed = differences_table({m: per_seed[m] for m in accuracy.column("method")})
    assert recomputed.rows == differences.rows
