"""The overfitting study's harness: settings, labels, batches, the replay control, failures, rows.

TensorFlow only (tests/conftest.py): the harness trains Runge–Kutta steps; that it runs the
same on JAX is checked by tests/test_studies_overfitting_backends.py.
"""

from __future__ import annotations

from course_lib.data import load_dataset
from course_lib.studies import overfitting as study
from course_lib.studies.overfitting import (
    CHANCE_LOSS,
    METHODS,
    RK23,
    RK45,
    SGD_AT_RK23,
    SGD_AT_RK45,
    StudySettings,
    epoch_batches,
    flip_labels,
    train_method,
)
from course_lib.studies.readings import diverged_table, rows_table, stability_table, study_rows
from course_lib.tableaux import get_tableau

import math

import keras
import numpy as np
import pytest
from synthetic_runs import run


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _record(method, seed, train, val, gradients, **record):
    """A run with the given per-epoch training / validation losses and gradient counts."""
    return run(method, seed, train, val, gradients=gradients, **record)


# --- settings ------------------------------------------------------------------------------


def test_settings_name_what_is_wrong():
    with pytest.raises(ValueError, match="choose among"):
        StudySettings(methods=("SGD", "Adam"))
    with pytest.raises(ValueError, match=f"add '{RK45}' to methods"):
        StudySettings(methods=("SGD", SGD_AT_RK45))
    with pytest.raises(ValueError, match="learning_rate=0.0 must be a positive number"):
        StudySettings(learning_rate=0.0)
    with pytest.raises(ValueError, match="rtol=nan"):
        StudySettings(rtol=math.nan)
    with pytest.raises(ValueError, match="seeds=.* must be distinct"):
        StudySettings(seeds=(1, 1))
    with pytest.raises(ValueError, match="epochs=0 must be a positive integer"):
        StudySettings(epochs=0)
    with pytest.raises(ValueError, match="train_size=32 must be None"):
        StudySettings(train_size=32, batch_size=64)
    with pytest.raises(ValueError, match=r"label_noise=0.9 must lie in \[0, 0.9\)"):
        StudySettings(label_noise=0.9)


def test_a_replay_runs_after_its_source_whatever_the_order_given():
    settings = StudySettings(methods=(SGD_AT_RK45, "SGD", RK45))
    assert settings.ordered_methods() == ["SGD", RK45, SGD_AT_RK45]
    for label, method in METHODS.items():
        if method.replays is not None:
            assert list(METHODS).index(method.replays) < list(METHODS).index(label)


# --- what every method of a seed shares ------------------------------------------------------


def test_label_flipping_is_seeded_and_exact_in_count():
    labels = np.arange(500) % 10
    flipped = flip_labels(labels, 0.2, seed=3)
    changed = flipped != labels
    assert changed.sum() == 100  # exactly round(0.2 · 500), every one to another class
    assert set(np.unique(flipped)) <= set(range(10))
    assert np.array_equal(flip_labels(labels, 0.2, seed=3), flipped)  # the same seed, the same
    assert not np.array_equal(flip_labels(labels, 0.2, seed=4), flipped)
    assert flip_labels(labels, 0.0, seed=3).tolist() == labels.tolist()
    assert (flip_labels(labels[:7], 0.25, seed=0) != labels[:7]).sum() == 2  # round(1.75)
    # The wrong class carries no information: each of the 9 others comes up about equally.
    shift = (flip_labels(np.zeros(90_000, int), 1.0, seed=1)).astype(int)
    counts = np.bincount(shift, minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 0.9 * 10_000
    with pytest.raises(ValueError, match="fraction=1.5"):
        flip_labels(labels, 1.5, seed=0)


def test_a_noisy_regime_flips_training_labels_per_seed_and_never_validation(digits):
    settings = StudySettings(label_noise=0.2, train_size=128)
    x, y = study.training_set(settings, digits, seed=1)
    assert (y != digits.y_train[:128]).sum() == round(0.2 * 128)
    assert np.array_equal(x, digits.x_train[:128])
    assert not np.array_equal(study.training_set(settings, digits, seed=2)[1], y)


def test_every_run_of_a_seed_gets_the_same_batches_and_seeds_differ():
    x, y = np.arange(20.0)[:, None], np.arange(20)

    def labels(seed, epochs):
        return [b.tolist() for _, b in epoch_batches(x, y, 8, seed, epochs)]

    two = labels(0, 2)
    assert len(two) == 6 and [len(b) for b in two] == [8, 8, 4, 8, 8, 4]
    assert labels(0, 2) == two and labels(0, 1) == two[:3]  # a shorter run: the first epochs
    assert sorted(sum(two[:3], [])) == list(range(20))  # an epoch sees every example once
    assert two[:3] != two[3:]  # reshuffled every epoch
    assert labels(1, 1) != two[:3]  # another seed, another order


# --- the control: SGD replaying step sizes --------------------------------------------------


def test_the_replay_control_is_sgd_on_the_same_batches_with_the_source_steps(digits):
    settings = StudySettings(
        methods=("SGD", RK45, SGD_AT_RK45), seeds=(3,), epochs=2, train_size=128, learning_rate=0.3
    )
    (sgd,) = train_method("SGD", settings, digits)
    steps = 2 * 2  # 128 examples in batches of 64, two epochs
    # Replaying h at every step is plain SGD, to the last bit: same weights, same batches.
    constant = _record(RK45, 3, [], [], [], step_sizes=[0.3] * steps)
    (replay,) = train_method(SGD_AT_RK45, settings, digits, sources={3: constant})
    assert replay.train_loss == sgd.train_loss and replay.val_loss == sgd.val_loss
    assert replay.gradients == [2, 4]  # one gradient per step
    # Replaying twice the step is SGD at 2h.
    doubled = _record(RK45, 3, [], [], [], step_sizes=[0.6] * steps)
    (replay,) = train_method(SGD_AT_RK45, settings, digits, sources={3: doubled})
    (sgd_2h,) = train_method(
        "SGD", StudySettings(**{**vars(settings), "learning_rate": 0.6}), digits
    )
    assert replay.train_loss == sgd_2h.train_loss
    # A source that failed is replayed up to its first step that is not a number.
    failed = _record(RK45, 3, [], [], [], step_sizes=[0.6, math.inf, math.nan, 0.6])
    assert study.replayable(failed) == [0.6]
    with pytest.raises(ValueError, match="needs the runs of"):
        train_method(SGD_AT_RK45, settings, digits, sources={})


def test_a_study_replays_each_adaptive_run_and_counts_its_gradients(digits):
    settings = StudySettings(
        methods=("SGD", RK23, SGD_AT_RK23), seeds=(0,), epochs=1, train_size=128, learning_rate=0.3
    )
    sgd, adaptive, replay = study.run_overfitting_study(settings, digits)
    assert (sgd.method, adaptive.method, replay.method) == ("SGD", RK23, SGD_AT_RK23)
    assert len(adaptive.step_sizes) == 2 and replay.step_sizes == adaptive.step_sizes
    # Bogacki–Shampine with its error estimate: stage 1 once per step, 3 more stages per try.
    assert adaptive.gradients == [2 + 3 * (2 + sum(adaptive.rejections))]
    assert sgd.gradients == replay.gradients == [2]
    assert adaptive.forced == [0, 0]  # both steps passed the error test


def test_step_cost_counts_the_forward_passes_the_library_makes(float64):
    from course_lib.adaptive import AdaptiveStepSize, StepSizeLog
    from course_lib.runge_kutta import RungeKuttaSequential

    class CountCalls(keras.layers.Layer):
        """Counts training-mode calls in Python (the model runs eagerly)."""

        calls = 0

        def call(self, inputs, training=False):
            if training:
                CountCalls.calls += 1
            return inputs

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)), rng.integers(0, 2, size=32)
    for tableau, adaptive in (("dormand_prince", None), ("bogacki_shampine", None)) + (
        ("dormand_prince", AdaptiveStepSize(rtol=1e-4, atol=1e-6)),
    ):
        keras.utils.set_random_seed(1)
        model = RungeKuttaSequential(
            [keras.Input((3,)), CountCalls(), keras.layers.Dense(2)],
            tableau=tableau,
            adaptive=adaptive,
        )
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=1.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            run_eagerly=True,
        )
        log = StepSizeLog() if adaptive else None
        CountCalls.calls = 0
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[log] if log else [])
        stages = get_tableau(tableau).stages_needed(adaptive is not None)
        if adaptive is None:
            assert CountCalls.calls == 4 * study.step_cost(stages)
            assert study.step_cost(stages) == {"dormand_prince": 6, "bogacki_shampine": 3}[tableau]
        else:
            assert sum(log.rejections) > 0  # a large first step: some tries were retried
            expected = sum(study.step_cost(stages, r, adaptive=True) for r in log.rejections)
            assert CountCalls.calls == expected


def test_forced_acceptances_are_recorded(digits):
    settings = StudySettings(
        methods=(RK23,), seeds=(0,), epochs=1, train_size=128, rtol=1e-100, atol=1e-100
    )
    (run,) = train_method(RK23, settings, digits)
    # No try can pass such a tolerance: each step is applied after its 10 retries.
    assert run.rejections == [10, 10] and run.forced == [1, 1]
    assert run.gradients == [2 * study.step_cost(4, 10, adaptive=True)]


def test_after_training_the_mini_batch_quantities_match_a_direct_computation(digits, float64):
    import tensorflow as tf

    settings = StudySettings(methods=("SGD",), seeds=(0,), epochs=1, train_size=128)
    measurements = study.Measurements(settings, digits)
    model = keras.Sequential(study._layers(settings.hidden_units))
    model.set_weights(study.initial_weights(4, settings.hidden_units))
    labels = digits.y_train[:128]
    measured = measurements.after_training(model, labels)
    epoch = measurements.after_epoch(model, labels)

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def gradient(xb, yb):
        with tf.GradientTape() as tape:
            value = loss(yb, model(xb))
        return [g.numpy() for g in tape.gradient(value, model.trainable_variables)]

    def norm(arrays):
        return np.sqrt(sum(np.sum(a**2) for a in arrays))

    x = digits.x_train[:128].astype("float64")
    h, norms, shares = settings.learning_rate, [], []
    for first in (0, 64):
        xb, yb = x[first : first + 64], labels[first : first + 64]
        start = model.get_weights()
        g = gradient(xb, yb)
        model.set_weights([p - h * gi for p, gi in zip(start, g, strict=True)])
        g_trial = gradient(xb, yb)
        model.set_weights(start)
        sgd_step = [h * gi for gi in g]
        heun_step = [h / 2 * (a + b) for a, b in zip(g, g_trial, strict=True)]
        norms.append(norm(g) ** 2)
        shares.append(
            norm([a - b for a, b in zip(heun_step, sgd_step, strict=True)]) / norm(sgd_step)
        )
    assert measured["batch_gradient_norm_sq"] == pytest.approx(np.mean(norms), rel=1e-10)
    assert measured["step_correction"] == pytest.approx(np.mean(shares), rel=1e-10)
    assert measured["gradient_norm_sq"] == pytest.approx(norm(gradient(x, labels)) ** 2, rel=1e-10)
    logits = model(x).numpy()
    assert epoch["train_loss"] == pytest.approx(float(loss(labels, logits)), rel=1e-12)
    assert epoch["train_accuracy"] == np.mean(logits.argmax(-1) == labels)


def test_every_method_of_a_seed_sees_the_same_batches(digits):
    # At a tiny step Heun and SGD differ by O(h²); another batch order would differ by O(h).
    settings = StudySettings(methods=("SGD", "Heun"), seeds=(5,), epochs=2, train_size=128)
    settings = StudySettings(**{**vars(settings), "learning_rate": 1e-3})
    (sgd,) = train_method("SGD", settings, digits)
    (heun,) = train_method("Heun", settings, digits)
    moved = abs(sgd.train_loss[-1] - sgd.train_loss[0])
    assert abs(sgd.train_loss[-1] - heun.train_loss[-1]) < 1e-3 * moved


# --- divergence -----------------------------------------------------------------------------


def test_a_run_that_blows_up_is_stopped_marked_and_counted(digits):
    settings = StudySettings(methods=("SGD",), seeds=(0,), epochs=4, train_size=128)
    huge = StudySettings(**{**vars(settings), "learning_rate": 1e4})
    (run,) = train_method("SGD", huge, digits)
    assert all(math.isfinite(loss) for loss in run.train_loss) and run.diverged()
    overflow = StudySettings(**{**vars(settings), "learning_rate": 1e200})
    (run,) = train_method("SGD", overflow, digits)
    assert len(run.train_loss) == 4 and run.diverged()
    # The weights overflowed in the first epoch: training stopped, the other epochs are NaN.
    assert not math.isfinite(run.train_loss[0]) and all(map(math.isnan, run.train_loss[1:]))
    assert run.gradients == [2, 2, 2, 2]
    (row,) = study_rows([run], "epochs")
    assert row["diverged"] == 1 and row["diverged seeds"] == [0]
    assert row["train_loss"] == (None, None)


def test_a_run_blows_up_when_its_loss_climbs_back_above_its_first_epochs():
    calm = _record("SGD", 0, [1.0, 0.6, 0.7, 0.4], [1.1, 0.7, 0.8, 0.5], [1, 2, 3, 4])
    spike = _record("DP", 0, [1.0, 0.5, 1.4, 0.3], [1.1, 0.6, 1.6, 0.4], [1, 2, 3, 4])
    assert not calm.blew_up() and calm.largest_rise() == pytest.approx(0.1)
    assert spike.blew_up() and spike.largest_rise() == pytest.approx(0.9)
    assert not spike.blew_up(epoch=1) and spike.largest_rise(epoch=1) == 0.0
    assert spike.blew_up(epoch=2) and not spike.diverged()  # it recovered
    (row,) = study_rows([spike], "epochs")
    assert row["blew up"] == 1 and row["diverged"] == 0
    stability = stability_table([calm, spike]).records()
    assert [r["blew up"] for r in stability] == [0, 1]
    assert stability[1]["largest rise"] == pytest.approx(0.9)
    assert stability[0]["forced acceptances"] is None  # not adaptive
    adaptive = _record(
        "RK23", 0, [1.0, 0.5], [1.1, 0.6], [1, 2], forced=[0, 1, 0, 1, 1], step_sizes=[1, 2, 3]
    )
    (row,) = stability_table([adaptive]).records()
    assert (row["forced acceptances"], row["runs with one"], row["adaptive steps"]) == (3, 1, 5)
    assert row["median step size"] == 2


def test_divergence_means_non_finite_or_worse_than_a_uniform_guess():
    assert CHANCE_LOSS == pytest.approx(2.302585)
    runs = [
        _record("SGD", 0, [1.0, 0.5], [1.1, 0.6], [10, 20]),
        _record("SGD", 1, [1.0, 3.0], [1.1, 3.2], [10, 20]),
        _record("SGD", 2, [1.0, math.nan], [1.1, math.nan], [10, 20]),
        _record("SGD", 3, [1.0, 0.7], [1.1, 0.75], [10, 20]),
    ]
    assert [r.diverged() for r in runs] == [False, True, True, False]
    (row,) = study_rows(runs, "epochs")
    assert (row["runs"], row["diverged"], row["diverged seeds"]) == (4, 2, [1, 2])
    assert row["train_loss"][0] == pytest.approx(0.6)  # over the two that did not diverge
    assert row["gap"] == (pytest.approx(0.075), pytest.approx(np.std([0.1, 0.05], ddof=1)))
    table = diverged_table(runs)
    assert [r[:3] for r in table.rows] == [["SGD", 1, 2], ["SGD", 2, 2]]
    assert table.rows[1][3] is None  # NaN is stored as an empty cell, not as a number


# --- rows at equal gradient evaluations -----------------------------------------------------


def test_rows_at_equal_gradients_read_each_run_within_sgds_budget():
    runs = [
        _record("SGD", 0, [0.9, 0.6, 0.4], [1.0, 0.7, 0.5], [10, 20, 30]),
        _record("RK4", 0, [0.8, 0.5, 0.3], [0.9, 0.6, 0.45], [15, 30, 45]),
        _record("Costly", 0, [0.7, 0.4, 0.2], [0.8, 0.5, 0.4], [40, 80, 120]),
    ]
    sgd, rk4, costly = study_rows(runs, "gradients")
    assert sgd["epochs"] == [3] and sgd["gradients"] == [30]
    assert rk4["epochs"] == [2] and rk4["train_loss"][0] == 0.5  # 30 gradients: its 2nd epoch
    assert costly["not reached"] == 1 and costly["epochs"] == []
    assert costly["train_loss"] == (None, None)
    assert [r["epochs"] for r in study_rows(runs, "epochs")] == [[3], [3], [3]]
    with pytest.raises(ValueError, match="needs the SGD runs"):
        study_rows(runs[1:], "gradients")
    with pytest.raises(ValueError, match="'epochs' or 'gradients'"):
        study_rows(runs, "time")
    table = rows_table(study_rows(runs, "gradients"))
    assert table.records()[2]["not reached"] == 1 and table.records()[2]["train loss"] is None
