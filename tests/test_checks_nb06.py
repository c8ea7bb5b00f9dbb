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
