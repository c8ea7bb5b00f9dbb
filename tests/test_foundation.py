"""course_lib basics: offline data, toy losses with exact gradients, plots, the check contract."""

from __future__ import annotations

import course_lib
from course_lib.checks import Exercise, Incorrect, nb00
from course_lib.data import DATASETS, load_dataset, train_batches
from course_lib.landscapes import Quadratic, Rosenbrock, gradient_descent
from course_lib.plots import METHOD_COLOURS, method_colour, methods_named_in, plot_trajectories

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy.linalg import expm


def test_version_and_public_api():
    assert course_lib.__version__.count(".") == 2
    for name in course_lib.__all__:
        assert hasattr(course_lib, name), name


@pytest.mark.parametrize("name", DATASETS)
def test_datasets_load_offline_and_repeatably(name):
    first, second = load_dataset(name), load_dataset(name)
    assert first.x_train.dtype == np.float32
    assert (
        len(first.x_train) + len(first.x_val)
        == {"digits": 1797, "blobs": 1200, "linear": 512}[name]
    )
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_val, second.y_val)


def test_digits_pixels_are_scaled_and_all_classes_present():
    digits = load_dataset("digits")
    assert 0.0 <= digits.x_train.min() and digits.x_train.max() <= 1.0
    assert set(np.unique(digits.y_train)) == set(range(10))


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match=r"name='mnist'.*digits.*blobs.*linear"):
        load_dataset("mnist")


def test_bad_split_and_batch_size_are_rejected():
    with pytest.raises(ValueError, match="validation_fraction"):
        load_dataset("digits", validation_fraction=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        train_batches(np.zeros((4, 2)), np.zeros(4), 0)
    with pytest.raises(ValueError, match="same length"):
        train_batches(np.zeros((4, 2)), np.zeros(3), 2)
    assert [len(x) for x, _ in train_batches(np.zeros((5, 2)), np.zeros(5), 2)] == [2, 2, 1]


@pytest.mark.parametrize("landscape", [Quadratic(np.array([[3.0, 1.0], [1.0, 2.0]])), Rosenbrock()])
def test_gradients_match_finite_differences(landscape):
    rng = np.random.default_rng(0)
    for p in rng.normal(size=(5, 2)):
        numeric = np.array(
            [
                (landscape.value(p + e) - landscape.value(p - e)) / 2e-6
                for e in (np.array([1e-6, 0.0]), np.array([0.0, 1e-6]))
            ]
        )
        np.testing.assert_allclose(landscape.gradient(p), numeric, rtol=1e-5, atol=1e-4)


def test_quadratic_exact_flow_is_the_matrix_exponential():
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    bowl, p0 = Quadratic(A), np.array([-5.0, -2.0])
    times = np.array([0.0, 0.3, 2.0])
    expected = np.array([expm(-t * A) @ p0 for t in times])
    np.testing.assert_allclose(bowl.exact_flow(p0, times), expected, rtol=1e-12, atol=1e-12)


def test_gradient_descent_matches_the_known_contraction_factors():
    # On x² + 2y² with step 0.1, each step multiplies x by 0.8 and y by 0.6 (KERAS3_NOTES).
    path = gradient_descent(Quadratic.diagonal(), [-5.0, -2.0], 0.1, 20)
    np.testing.assert_allclose(path[-1], [-5.0 * 0.8**20, -2.0 * 0.6**20], rtol=1e-12)
    assert path.shape == (21, 2)


def test_landscapes_reject_bad_input():
    with pytest.raises(ValueError, match="symmetric"):
        Quadratic(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive definite"):
        Quadratic(np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="2×2"):
        Quadratic(np.eye(3))
    with pytest.raises(ValueError, match="last axis of length 2"):
        Rosenbrock().gradient(np.zeros(3))
    with pytest.raises(ValueError, match="learning_rate"):
        gradient_descent(Rosenbrock(), [0.0, 0.0], -0.1, 3)


def test_plot_trajectories_labels_everything():
    bowl = Quadratic.diagonal()
    ax = plot_trajectories(bowl, {"SGD": gradient_descent(bowl, [-5.0, -2.0], 0.1, 10)})
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert "SGD" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close("all")
    with pytest.raises(ValueError, match="trajectory 'bad'"):
        plot_trajectories(bowl, {"bad": np.zeros((3, 3))})


def test_plot_trajectories_marks_the_minimum_only_inside_the_frame():
    bowl = Quadratic.diagonal()
    path = {"SGD": gradient_descent(bowl, [-5.0, -2.0], 0.1, 10)}
    legend = lambda ax: [t.get_text() for t in ax.get_legend().get_texts()]  # noqa: E731
    assert "minimum" in legend(plot_trajectories(bowl, path))
    assert "minimum" not in legend(plot_trajectories(bowl, path, bounds=(-6.0, -1.0, -3.0, -1.0)))
    plt.close("all")


def test_plot_trajectories_keeps_the_course_colours_and_draws_references_on_top():
    bowl = Quadratic.diagonal()
    ax = plot_trajectories(
        bowl,
        {
            "SGD, η = 0.1": gradient_descent(bowl, [-5.0, -2.0], 0.1, 10),
            "reference flow": bowl.exact_flow([-5.0, -2.0], np.linspace(0, 1, 50)),
            "unnamed": gradient_descent(bowl, [-5.0, -2.0], 0.2, 10),
        },
    )
    sgd, reference, unnamed = ax.get_lines()[:3]
    assert sgd.get_color() == METHOD_COLOURS["gradient descent"]
    assert reference.get_color() == "black" and reference.get_marker() in ("None", None, "")
    assert reference.get_zorder() > sgd.get_zorder()
    assert unnamed.get_color() not in METHOD_COLOURS.values()  # matplotlib's cycle
    assert ax.get_aspect() == 1.0
    plt.close("all")


def test_a_method_is_recognised_in_a_label_most_specific_first():
    assert method_colour("heun") == METHOD_COLOURS["heun"]
    assert method_colour("Heun, h = 0.1") == METHOD_COLOURS["heun"]
    assert method_colour("momentum SGD") == METHOD_COLOURS["momentum"]
    assert method_colour("reference (Heun, h/10)") == "black"
    replaying = methods_named_in("SGD replaying RK23's steps")
    assert replaying == ["bogacki_shampine", "gradient descent"]
    assert methods_named_in("the same step, twice") == []  # "same" is not SAM
    assert methods_named_in("SAM, ρ = 0.2") == ["sam"]
    with pytest.raises(ValueError, match="METHOD_COLOURS"):
        method_colour("batch 64")


def test_check_contract_has_three_outcomes_and_never_raises():
    def checker(answer):
        if answer != 42:
            raise Incorrect(f"expected 42, got {answer}")
        return "right"

    exercise = Exercise(
        "Answer", checker, hint="six times seven", solution=test_version_and_public_api
    )
    assert exercise.check(42).status == "correct"
    assert exercise.check(41).status == "incorrect"
    assert "expected 42" in exercise.check(41).message
    assert exercise.check(None).status == "not attempted"

    def raises_not_implemented(answer):
        raise NotImplementedError

    assert Exercise("x", raises_not_implemented, "", None).check(1).status == "not attempted"

    def buggy(answer):
        return 1 / 0

    result = Exercise("x", buggy, "", None).check(1)
    assert result.status == "incorrect" and "ZeroDivisionError" in result.message


def test_use_hands_later_cells_the_learners_version_only_once_it_passes(capsys):
    def checker(answer):
        if answer() != 42:
            raise Incorrect(f"expected 42, got {answer()}")
        return "right"

    def library():
        return 42

    def blank():
        raise NotImplementedError

    exercise = Exercise("Answer", checker, hint="", solution=library)
    assert exercise.use(blank) is library
    shown = capsys.readouterr().out
    assert "Not attempted" in shown and "test_foundation" in shown and "until yours passes" in shown
    assert exercise.use(lambda: 41) is library
    assert "expected 42, got 41" in capsys.readouterr().out

    def mine():
        return 42

    assert exercise.use(mine) is mine
    assert "Later cells use your version." in capsys.readouterr().out
    drop_in = object()
    assert Exercise("Answer", checker, "", library, fallback=drop_in).use(blank) is drop_in


def test_warm_up_check_passes_the_solution_and_fails_known_wrong_answers():
    assert nb00.euler.check(nb00.euler_step).correct
    uphill = nb00.euler.check(lambda p, g, h: p + h * g)
    assert uphill.status == "incorrect" and "uphill" in uphill.message
    assert nb00.euler.check(lambda p, g, h: p - g).status == "incorrect"
    assert nb00.euler.check(42).status == "incorrect"


def test_set_seed_rejects_bad_seeds():
    with pytest.raises(ValueError, match="seed"):
        course_lib.set_seed(-1)
