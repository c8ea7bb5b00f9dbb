"""The overfitting study's harness: settings, the replay control, rows, pairs, divergence."""

from __future__ import annotations

from course_lib.data import load_dataset, quadratic_regression_data
from course_lib.studies import overfitting as study
from course_lib.studies.overfitting import (
    CHANCE_LOSS,
    METHODS,
    ReplayedSteps,
    RunRecord,
    StudySettings,
    classify,
    confidence_interval,
    diverged_table,
    effects_table,
    paired_effects,
    rows_table,
    shows_article_pattern,
    study_rows,
    train_method,
    verdict,
)
from course_lib.tableaux import get_tableau

import math

import keras
import numpy as np
import pytest

DP = "Dormand–Prince, adaptive"
SGD_AT_DP = "SGD at Dormand–Prince's adaptive steps"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _record(method, seed, train, val, gradients, **extra):
    """A run with the given per-epoch training / validation losses."""
    return RunRecord(
        method=method,
        seed=seed,
        train_loss=list(train),
        val_loss=list(val),
        train_accuracy=[0.9] * len(train),
        val_accuracy=[0.8] * len(train),
        gradient_norm_sq=[0.1] * len(train),
        gradients=list(gradients),
        **extra,
    )


# --- settings ------------------------------------------------------------------------------


def test_settings_name_what_is_wrong():
    with pytest.raises(ValueError, match="choose among"):
        StudySettings(methods=("SGD", "Adam"))
    with pytest.raises(ValueError, match=f"add '{DP}' to methods"):
        StudySettings(methods=("SGD", SGD_AT_DP))
    with pytest.raises(ValueError, match="learning_rate=0.0 must be a positive number"):
        StudySettings(learning_rate=0.0)
    with pytest.raises(ValueError, match="learning_rate=nan"):
        StudySettings(learning_rate=math.nan)
    with pytest.raises(ValueError, match="seeds=.* must be distinct"):
        StudySettings(seeds=(1, 1))
    with pytest.raises(ValueError, match="epochs=0 must be a positive integer"):
        StudySettings(epochs=0)
    with pytest.raises(ValueError, match="train_size=32 must be None"):
        StudySettings(train_size=32, batch_size=64)


def test_a_replay_runs_after_its_source_whatever_the_order_given():
    settings = StudySettings(methods=(SGD_AT_DP, "SGD", DP))
    assert settings.ordered_methods() == ["SGD", DP, SGD_AT_DP]
    for label, method in METHODS.items():
        if method.replays is not None:
            assert list(METHODS).index(method.replays) < list(METHODS).index(label)


# --- the control: SGD replaying step sizes --------------------------------------------------


def test_sgd_with_replayed_steps_takes_exactly_those_steps(float64):
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    x, y = quadratic_regression_data(A, dtype="float64")
    p0 = np.array([1.5, -2.0])
    steps = [0.1, 0.25, 0.05]
    schedule = ReplayedSteps(steps, length=8)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")

    def run(step_sizes, count):
        model.layers[-1].kernel.assign(p0[:, None])
        model.optimizer.iterations.assign(0)
        model.fit(x, y, batch_size=2, epochs=count, shuffle=False, verbose=0)
        expected = p0
        for h in step_sizes:
            expected = expected - h * (A @ expected)  # Euler on L = ½ pᵀAp
        np.testing.assert_allclose(model.layers[-1].kernel.numpy()[:, 0], expected, rtol=1e-12)

    run(steps + [0.05], 4)  # after the list, the last step size is kept
    function = model.train_function
    schedule.replay([0.2, 0.02])
    run([0.2, 0.02, 0.02], 3)
    assert model.train_function is function  # new steps, same traced function
    assert schedule.get_config() == {"step_sizes": [0.2, 0.02], "length": 8}


def test_replayed_steps_refuse_what_cannot_be_a_step_size():
    with pytest.raises(ValueError, match="finite numbers > 0"):
        ReplayedSteps([0.1, -0.1])
    with pytest.raises(ValueError, match="finite numbers > 0"):
        ReplayedSteps([])
    schedule = ReplayedSteps([0.1], length=2)
    with pytest.raises(ValueError, match="3 step sizes do not fit in length=2"):
        schedule.replay([0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="finite numbers > 0"):
        schedule.replay([math.inf])


def test_the_replay_control_is_sgd_on_the_same_batches_with_the_source_steps(digits):
    settings = StudySettings(
        methods=("SGD", DP, SGD_AT_DP), seeds=(3,), epochs=2, train_size=128, learning_rate=0.3
    )
    (sgd,) = train_method("SGD", settings, digits)
    steps = 2 * 2  # 128 examples in batches of 64, two epochs
    # Replaying h at every step is plain SGD, to the last bit: same weights, same batches.
    constant = _record(DP, 3, [], [], [], step_sizes=[0.3] * steps)
    (replay,) = train_method(SGD_AT_DP, settings, digits, sources={3: constant})
    assert replay.train_loss == sgd.train_loss and replay.val_loss == sgd.val_loss
    assert replay.gradients == [2, 4]  # one gradient per step
    # Replaying twice the step is SGD at 2h.
    doubled = _record(DP, 3, [], [], [], step_sizes=[0.6] * steps)
    (replay,) = train_method(SGD_AT_DP, settings, digits, sources={3: doubled})
    (sgd_2h,) = train_method(
        "SGD", StudySettings(**{**vars(settings), "learning_rate": 0.6}), digits
    )
    assert replay.train_loss == sgd_2h.train_loss
    with pytest.raises(ValueError, match="needs the runs of"):
        train_method(SGD_AT_DP, settings, digits, sources={})


def test_every_run_of_a_seed_gets_the_same_batches_and_seeds_differ(digits):
    settings = StudySettings(seeds=(0, 1), epochs=2, train_size=128)
    batches = study.shuffled_batches(settings, digits, runs=2)

    def labels(dataset):  # the labels in batch order, epoch after epoch
        return [np.concatenate([y.numpy() for _, y in dataset]) for _ in range(settings.epochs)]

    first, second = labels(batches[0][0]), labels(batches[0][1])
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], first[1])  # reshuffled every epoch
    assert not np.array_equal(first[0], labels(batches[1][0])[0])  # another seed, another order
    used = {0: [], 1: batches[1]}
    with pytest.raises(ValueError, match=r"no dataset left for seeds \[0\].*runs="):
        train_method("SGD", settings, digits, batches=used)


def test_a_study_trains_each_seed_as_a_run_of_its_own_would(digits):
    settings = StudySettings(methods=("SGD",), seeds=(0, 1), epochs=2, train_size=128)
    in_study = study.run_overfitting_study(settings, digits)
    for seed, run in zip(settings.seeds, in_study, strict=True):
        alone = StudySettings(**{**vars(settings), "seeds": (seed,)})
        (own,) = train_method("SGD", alone, digits)
        assert own.train_loss == run.train_loss and own.val_loss == run.val_loss


def test_a_study_replays_each_adaptive_run_and_counts_its_gradients(digits):
    settings = StudySettings(
        methods=("SGD", DP, SGD_AT_DP), seeds=(0,), epochs=1, train_size=128, learning_rate=0.3
    )
    sgd, adaptive, replay = study.run_overfitting_study(settings, digits)
    assert (sgd.method, adaptive.method, replay.method) == ("SGD", DP, SGD_AT_DP)
    assert len(adaptive.step_sizes) == 2 and replay.step_sizes == adaptive.step_sizes
    # Dormand–Prince with its error estimate: stage 1 once per step, 6 more stages per try.
    assert adaptive.gradients == [2 + 6 * (2 + sum(adaptive.rejections))]
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
        methods=(DP,), seeds=(0,), epochs=1, train_size=128, rtol=1e-100, atol=1e-100
    )
    (run,) = train_method(DP, settings, digits)
    # No try can pass such a tolerance: each step is applied after its 10 retries.
    assert run.rejections == [10, 10] and run.forced == [1, 1]
    assert run.gradients == [2 * study.step_cost(7, 10, adaptive=True)]


def test_after_training_the_mini_batch_quantities_match_a_direct_computation(digits, float64):
    import tensorflow as tf

    settings = StudySettings(methods=("SGD",), seeds=(0,), epochs=1, train_size=128)
    evaluator = study._Evaluator(settings, digits)
    model = keras.Sequential(study._layers(settings.hidden_units))
    model.set_weights(study.initial_weights(4, settings.hidden_units))
    measured = evaluator.after_training(model)

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    h, norms, shares = settings.learning_rate, [], []
    for first in (0, 64):
        xb = digits.x_train[first : first + 64].astype("float64")
        yb = digits.y_train[first : first + 64]

        def gradient(model=model, xb=xb, yb=yb):
            with tf.GradientTape() as tape:
                value = loss(yb, model(xb))
            return [g.numpy() for g in tape.gradient(value, model.trainable_variables)]

        start = model.get_weights()
        g = gradient()
        model.set_weights([p - h * gi for p, gi in zip(start, g, strict=True)])
        g_trial = gradient()
        model.set_weights(start)
        sgd_step = [h * gi for gi in g]
        heun_step = [h / 2 * (a + b) for a, b in zip(g, g_trial, strict=True)]
        norm = lambda arrays: np.sqrt(sum(np.sum(a**2) for a in arrays))  # noqa: E731
        norms.append(norm(g) ** 2)
        shares.append(
            norm([a - b for a, b in zip(heun_step, sgd_step, strict=True)]) / norm(sgd_step)
        )
    assert measured["batch_gradient_norm_sq"] == pytest.approx(np.mean(norms), rel=1e-10)
    assert measured["step_correction"] == pytest.approx(np.mean(shares), rel=1e-10)


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
    stability = study.stability_table([calm, spike]).records()
    assert [r["blew up"] for r in stability] == [0, 1]
    assert stability[1]["largest rise"] == pytest.approx(0.9)
    assert stability[0]["forced acceptances"] is None  # not adaptive
    adaptive = _record("RK23", 0, [1.0, 0.5], [1.1, 0.6], [1, 2], forced=[0, 1, 0, 1, 1])
    (row,) = study.stability_table([adaptive]).records()
    assert (row["forced acceptances"], row["runs with one"], row["adaptive steps"]) == (3, 1, 5)


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


# --- paired effects and the verdict ---------------------------------------------------------


def test_the_interval_is_the_paired_t_interval():
    from scipy import stats

    differences = [0.01, 0.03, -0.005, 0.02, 0.012]
    mean, half = confidence_interval(differences)
    low, high = stats.t.interval(
        0.95, len(differences) - 1, loc=np.mean(differences), scale=stats.sem(differences)
    )
    assert mean == pytest.approx(np.mean(differences))
    assert (mean - half, mean + half) == (pytest.approx(low), pytest.approx(high))
    assert classify(mean, half) == "within seed spread"
    assert classify(0.02, 0.01) == "higher" and classify(-0.02, 0.01) == "lower"
    assert classify(*confidence_interval([0.3])) == "too few runs"


def test_sizes_are_judged_by_where_the_interval_lies_against_delta():
    size_class = study.size_class
    assert size_class(0.004, 0.003, 0.01) == "< δ"  # resolved, yet smaller than δ
    assert size_class(-0.004, 0.005, 0.01) == "< δ"
    assert size_class(0.02, 0.005, 0.01) == "≥ δ" and size_class(-0.02, 0.005, 0.01) == "≥ δ"
    assert size_class(0.008, 0.004, 0.01) == "undecided"  # straddles +δ
    assert size_class(0.0, 0.02, 0.01) == "undecided"  # wider than ±δ
    assert size_class(0.1, math.nan, 0.01) == "undecided"
    runs = [
        _record("SGD", 0, [0.5], [0.6], [10]),
        _record("SGD", 1, [0.5], [0.8], [10]),
        _record("SGD", 2, [math.nan], [math.nan], [10]),  # diverged: not in δ
        _record("Heun", 0, [0.5], [0.9], [10]),
    ]
    assert study.meaningful_effect(runs) == pytest.approx(0.1 * 0.2)
    with pytest.raises(ValueError, match="needs SGD"):
        study.meaningful_effect(runs[3:])


def _pairs(method, control, deltas_train, deltas_val, base=0.5):
    runs = []
    for seed, (dt, dv) in enumerate(zip(deltas_train, deltas_val, strict=True)):
        shift = 0.01 * seed  # seeds differ a lot; the pairs share the seed's shift
        runs.append(_record(control, seed, [base + shift], [base + 0.1 + shift], [10]))
        runs.append(_record(method, seed, [base + shift + dt], [base + 0.1 + shift + dv], [10]))
    return runs


def test_pairs_compare_runs_of_the_same_seed_and_leave_out_diverged_ones():
    runs = _pairs("Heun", "SGD", [-0.05, -0.06, -0.04, -0.05], [0.03, 0.02, 0.04, 0.03])
    runs.append(_record("SGD", 9, [0.5], [0.6], [10]))
    runs.append(_record("Heun", 9, [math.nan], [math.nan], [10]))
    (effect,) = paired_effects(runs, [("Heun", "SGD", "order")])
    assert effect["pairs"] == 4 and effect["excluded"] == 1
    assert effect["train_loss"][0] == pytest.approx(-0.05)
    assert effect["gap"][0] == pytest.approx(0.08)
    assert effect["train_loss"][2] == "lower" and effect["val_loss"][2] == "higher"
    assert shows_article_pattern(effect)
    assert verdict([effect]) == {
        "order: gap higher": ["Heun"],
        "order: article's pattern": ["Heun"],
    }
    assert verdict([effect], delta=0.01)["order: gap ≥ δ"] == ["Heun"]
    assert verdict([effect], delta=1.0)["order: gap < δ"] == ["Heun"]
    row = effects_table([effect], delta=0.01).records()[0]
    assert row["article's pattern"] == "yes" and row["gap"] == "higher"
    assert (row["train"], row["val"], row["gap vs δ"]) == ("lower", "higher", "≥ δ")
    text = study.format_effects_table([effect], delta=0.01)
    assert "(lower, ≥ δ)" in text and "(higher, ≥ δ)" in text


def test_a_lower_training_loss_alone_is_not_the_articles_pattern():
    runs = _pairs("RK4", "SGD", [-0.05, -0.06, -0.04, -0.05], [-0.03, -0.035, -0.025, -0.03])
    (effect,) = paired_effects(runs, [("RK4", "SGD", "order")])
    assert effect["val_loss"][2] == "lower" and not shows_article_pattern(effect)
    assert verdict([effect]) == {"order: gap higher": ["RK4"]}
    # Comparisons whose runs are missing are skipped, not reported empty.
    assert paired_effects(runs, [("Heun", "SGD", "order")]) == []
