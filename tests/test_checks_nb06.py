"""The exercises of notebook 06 pass on their solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nb06

import math

import numpy as np
import pytest
from scipy import stats


def _not_implemented(*args):
    raise NotImplementedError


def test_holm_checks():
    check = nb06.holm.check
    assert check(nb06.holm_solution).correct
    assert nb06.holm_solution([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])

    def bonferroni(p):
        return [min(1.0, x * len(p)) for x in p]

    def no_running_maximum(p):
        order = sorted(range(len(p)), key=lambda i: p[i])
        adjusted = [0.0] * len(p)
        for rank, i in enumerate(order):
            adjusted[i] = min(1.0, (len(p) - rank) * p[i])
        return adjusted

    def sorted_output(p):
        return sorted(nb06.holm_solution(p))

    result = check(bonferroni)
    assert result.status == "incorrect" and "Bonferroni" in result.message
    result = check(no_running_maximum)
    assert result.status == "incorrect" and "running maximum" in result.message
    result = check(sorted_output)
    assert result.status == "incorrect" and "order the p-values came in" in result.message
    assert check(_not_implemented).status == "not attempted"


def test_crossing_solution_is_the_first_crossing_interpolated_in_log_loss():
    # A closed form: from 0.4 to 0.1 the loss falls by a factor 4; 0.2 is a factor 2 below 0.4,
    # halfway in log, so the crossing is 1.5 (linear in the loss would give 1 + 2/3).
    assert nb06.crossing_solution([0.8, 0.4, 0.1, 0.05], 0.2) == pytest.approx(1.5)
    assert nb06.crossing_solution([0.8, 0.4, 0.1, 0.05], 0.4) == 1.0
    assert nb06.crossing_solution([0.8, 0.4], 0.9) == 0.0
    assert nb06.crossing_solution([0.8, 0.4], 0.1) is None
    assert nb06.crossing_solution([0.9, 0.5, 0.09, 0.3, 0.02], 0.1) < 2  # the first time


def test_crossing_checks():
    check = nb06.crossing.check
    assert check(nb06.crossing_solution).correct

    def linear(losses, target):
        for i, loss in enumerate(losses):
            if loss <= target:
                return 0.0 if i == 0 else i - 1 + (losses[i - 1] - target) / (losses[i - 1] - loss)
        return None

    def one_late(losses, target):
        found = nb06.crossing_solution(losses, target)
        return None if found is None else (found + 1 if found > 0 else found)

    def first_at_or_below(losses, target):
        return next((float(i) for i, loss in enumerate(losses) if loss <= target), None)

    def never_none(losses, target):
        found = nb06.crossing_solution(losses, target)
        return float(len(losses)) if found is None else found

    def last_crossing(losses, target):
        below = [i for i, loss in enumerate(losses) if loss <= target]
        if not below:
            return None
        i = max(j for j in below if j == 0 or losses[j - 1] > target)
        return nb06.crossing_solution(losses[i - 1 :], target) + i - 1 if i else 0.0

    result = check(linear)
    assert result.status == "incorrect" and "log(loss)" in result.message
    result = check(one_late)
    assert result.status == "incorrect" and "one epoch too late" in result.message
    result = check(first_at_or_below)
    assert result.status == "incorrect" and "epoch before" in result.message
    result = check(never_none)
    assert result.status == "incorrect" and "return None" in result.message
    result = check(last_crossing)
    assert result.status == "incorrect" and "first time" in result.message
    assert check(_not_implemented).status == "not attempted"
    # use() hands later cells the learner's version once it passes, the solution until then.
    assert nb06.crossing.use(_not_implemented) is nb06.crossing_solution


def test_seeds_needed_solution_is_the_first_n_whose_half_width_is_below_delta():
    for pilot, delta in nb06.SEEDS_CASES:
        n = nb06.seeds_needed_solution(pilot, delta)
        sd = np.std(pilot, ddof=1)

        def half(k, sd=sd):
            return stats.t.ppf(0.975, k - 1) * sd / math.sqrt(k)

        assert half(n) < delta and (n == 2 or half(n - 1) >= delta)
        # Differences with exactly that spread over n seeds resolve an effect of size δ.
        differences = np.linspace(-1, 1, n)
        differences = delta * 1.01 + differences / np.std(differences, ddof=1) * sd
        low, _ = stats.t.interval(
            0.95, n - 1, loc=np.mean(differences), scale=stats.sem(differences)
        )
        assert low > 0


def test_seeds_needed_checks():
    check = nb06.seeds_needed.check
    assert check(nb06.seeds_needed_solution).correct

    def normal_factor(pilot, delta):
        return math.ceil((1.96 * np.std(pilot, ddof=1) / delta) ** 2)

    def pilots_degrees_of_freedom(pilot, delta):
        factor = stats.t.ppf(0.975, len(pilot) - 1)
        return math.ceil((factor * np.std(pilot, ddof=1) / delta) ** 2)

    def last_n_still_too_wide(pilot, delta):
        return nb06.seeds_needed_solution(pilot, delta) - 1

    def as_float(pilot, delta):
        return float(nb06.seeds_needed_solution(pilot, delta))

    result = check(normal_factor)
    assert result.status == "incorrect" and "Student's t" in result.message
    result = check(pilots_degrees_of_freedom)
    assert result.status == "incorrect" and "the study you plan" in result.message
    result = check(last_n_still_too_wide)
    assert result.status == "incorrect" and "first n" in result.message
    result = check(as_float)
    assert result.status == "incorrect" and "whole number" in result.message
    assert check(_not_implemented).status == "not attempted"
    assert check(None).status == "not attempted"


def test_momentum_problem_hides_no_effect_behind_the_step_size():
    for learning_rate, momentum in nb06.MOMENTUM_CASES:
        runs = nb06.momentum_runs(learning_rate, momentum)
        effect = nb06.momentum_effect_solution(runs, learning_rate, momentum)
        naive = nb06._effect_against(runs, learning_rate, momentum, learning_rate)
        assert effect == pytest.approx(0.001)  # the method itself adds almost nothing
        assert naive > 5 * effect  # the naive comparison credits it with the step's effect


def test_momentum_effect_checks():
    check = nb06.momentum_effect.check
    assert check(nb06.momentum_effect_solution).correct

    def same_learning_rate(runs, learning_rate, momentum):
        return nb06._effect_against(runs, learning_rate, momentum, learning_rate)

    def one_step_of_momentum(runs, learning_rate, momentum):
        return nb06._effect_against(runs, learning_rate, momentum, learning_rate * (1 + momentum))

    def unpaired_means(runs, learning_rate, momentum):
        treated = [r["gap"] for r in runs if r["optimizer"] == "momentum"]
        effective = learning_rate / (1 - momentum)
        control = [
            r["gap"]
            for r in runs
            if r["optimizer"] == "SGD" and math.isclose(r["learning_rate"], effective)
        ]
        return np.mean(treated) - np.mean(control)  # includes the seed without a partner

    def reversed_sign(runs, learning_rate, momentum):
        return -nb06.momentum_effect_solution(runs, learning_rate, momentum)

    result = check(same_learning_rate)
    assert result.status == "incorrect" and "same learning rate" in result.message
    result = check(one_step_of_momentum)
    assert result.status == "incorrect" and "add up" in result.message
    result = check(unpaired_means)
    assert result.status == "incorrect" and "by seed" in result.message
    result = check(reversed_sign)
    assert result.status == "incorrect" and "momentum − control" in result.message
    assert check(_not_implemented).status == "not attempted"
