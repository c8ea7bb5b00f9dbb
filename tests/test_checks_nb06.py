"""The exercises of notebook 06 pass on their solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nb06

import math

import numpy as np
import pytest
from scipy import stats


def _not_implemented(*args):
    raise NotImplementedError


def test_paired_interval_solution_is_scipys_paired_t_interval():
    method, control = nb06.interval_problem()
    seeds = sorted(set(method) & set(control))
    assert len(seeds) == 6 and list(method) != seeds  # unordered, and one seed is unpaired
    differences = [method[s] - control[s] for s in seeds]
    low, high = stats.t.interval(
        0.95, len(seeds) - 1, loc=np.mean(differences), scale=stats.sem(differences)
    )
    mean, half = nb06.paired_interval_solution(method, control)
    assert (mean - half, mean + half) == (pytest.approx(low), pytest.approx(high))


def test_paired_interval_checks():
    check = nb06.paired_interval.check
    assert check(nb06.paired_interval_solution).correct

    def unpaired(method, control):
        seeds = sorted(set(method) & set(control))
        a, b = [method[s] for s in seeds], [control[s] for s in seeds]
        n = len(seeds)
        half = stats.t.ppf(0.975, 2 * n - 2) * math.sqrt(
            np.var(a, ddof=1) / n + np.var(b, ddof=1) / n
        )
        return np.mean(a) - np.mean(b), half

    def normal_factor(method, control):
        mean, half = nb06.paired_interval_solution(method, control)
        n = len(set(method) & set(control))
        return mean, half / stats.t.ppf(0.975, n - 1) * 1.96

    def by_position(method, control):
        differences = [a - b for a, b in zip(method.values(), control.values(), strict=False)]
        return np.mean(differences), 0.01

    def reversed_sign(method, control):
        return nb06.paired_interval_solution(control, method)

    result = check(unpaired)
    assert result.status == "incorrect" and "independent" in result.message
    result = check(normal_factor)
    assert result.status == "incorrect" and "Student's t" in result.message
    result = check(by_position)
    assert result.status == "incorrect" and "by seed" in result.message
    result = check(reversed_sign)
    assert result.status == "incorrect" and "method − control" in result.message
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
