"""Self-checks for the exercises of notebook 06 (do Runge–Kutta optimizers overfit?).

* :data:`paired_interval`: the mean of per-seed differences and the half-width of its 95 % t
  interval, pairing runs by seed.
* :data:`momentum_effect` (transfer): the controls' idea on another optimizer. Heavy-ball
  momentum also changes two things at once, the method and the effective step size; the learner
  picks the SGD run that has the same effective step and compares seed by seed.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect

import math
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------------


def paired_interval_solution(method: dict[int, float], control: dict[int, float]) -> tuple:
    """Mean of method − control over the seeds both have, and the 95 % t half-width."""
    from scipy import stats

    seeds = sorted(set(method) & set(control))
    differences = np.array([method[s] - control[s] for s in seeds])
    sd = differences.std(ddof=1)  # the spread of the differences, not of each method
    half_width = stats.t.ppf(0.975, len(seeds) - 1) * sd / math.sqrt(len(seeds))
    return float(differences.mean()), float(half_width)


def momentum_effect_solution(runs: list[dict], learning_rate: float, momentum: float) -> float:
    """Momentum's gap minus SGD's at the same effective step h/(1−β), averaged over seeds."""
    effective = learning_rate / (1.0 - momentum)  # a steady gradient moves it h·(1 + β + β² …)

    def gaps(optimizer: str, rate: float, beta: float) -> dict[int, float]:
        return {
            run["seed"]: run["gap"]
            for run in runs
            if run["optimizer"] == optimizer
            and math.isclose(run["learning_rate"], rate, rel_tol=1e-9)
            and math.isclose(run["momentum"], beta, abs_tol=1e-12)
        }

    treated = gaps("momentum", learning_rate, momentum)
    control = gaps("SGD", effective, 0.0)
    seeds = sorted(set(treated) & set(control))
    return float(np.mean([treated[s] - control[s] for s in seeds]))


# --------------------------------------------------------------------------------------------
# Synthetic study results the checks run on (what a study like notebook 06's would record)
# --------------------------------------------------------------------------------------------


def _seed_gaps(seeds: list[int], offset: float, rng: np.random.Generator) -> dict[int, float]:
    """Gaps that share a large per-seed part (as paired runs do) plus a little of their own."""
    shared = {s: 0.05 + 0.02 * math.sin(3.7 * s) for s in seeds}
    return {s: shared[s] + offset + 0.002 * rng.standard_normal() for s in seeds}


def interval_problem() -> tuple[dict[int, float], dict[int, float]]:
    """Method and control gaps by seed: seed order differs, and one seed has no control run."""
    rng = np.random.default_rng(6)
    control = _seed_gaps([4, 1, 7, 2, 9, 5], 0.0, rng)
    method = _seed_gaps([7, 3, 2, 9, 4, 1, 5], 0.004, rng)
    return method, control


def momentum_runs(learning_rate: float, momentum: float) -> list[dict[str, Any]]:
    """Runs of SGD at three learning rates and of momentum; the gap grows with the effective step.

    Momentum's gap equals that of SGD at its effective step h/(1−β), seed by seed, plus 0.001:
    the naive comparison (SGD at the same h) shows a large "momentum effect" that is the step.
    """
    rng = np.random.default_rng(14)
    seeds = [3, 0, 4, 1, 2]
    effective = learning_rate / (1.0 - momentum)
    rates = {
        "same h": learning_rate,
        "h·(1+β)": learning_rate * (1.0 + momentum),
        "h/(1−β)": effective,
    }
    runs = []
    for label, rate in rates.items():
        step_part = 0.3 * rate / effective  # a larger step trains further: a larger gap
        for seed, gap in _seed_gaps(seeds, step_part * 0.1, rng).items():
            run = {"optimizer": "SGD", "learning_rate": round(rate, 12), "momentum": 0.0}
            runs.append({**run, "seed": seed, "gap": gap, "_label": label})
    control = {r["seed"]: r["gap"] for r in runs if r.pop("_label") == "h/(1−β)"}
    for seed in [2, 4, 0, 3]:  # seed 1 has no momentum run
        run = {"optimizer": "momentum", "learning_rate": learning_rate, "momentum": momentum}
        runs.append({**run, "seed": seed, "gap": control[seed] + 0.001})
    return runs


#: (learning rate, momentum) pairs the momentum check runs.
MOMENTUM_CASES = ((0.01, 0.9), (0.02, 0.5))


# --------------------------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------------------------


def _pair(result: Any) -> tuple[float, float]:
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise Incorrect("return a pair (mean difference, half-width of the 95 % interval).")
    return float(result[0]), float(result[1])


def _check_paired_interval(answer: Any) -> str:
    from scipy import stats

    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    method, control = interval_problem()
    mean, half = _pair(answer(dict(method), dict(control)))
    want_mean, want_half = paired_interval_solution(method, control)
    seeds = sorted(set(method) & set(control))
    if not math.isclose(mean, want_mean, rel_tol=1e-9, abs_tol=1e-12):
        pairs = zip(method.values(), control.values(), strict=False)  # as a zip of lists would
        by_position = np.mean([a - b for a, b in pairs])
        if math.isclose(mean, by_position, rel_tol=1e-9):
            raise Incorrect("you paired the runs by their position; pair them by seed.")
        if math.isclose(mean, -want_mean, rel_tol=1e-9):
            raise Incorrect("the difference is method − control, not control − method.")
        raise Incorrect(
            f"the mean difference should be {want_mean:.5f} (over the {len(seeds)} seeds both "
            f"have), got {mean:.5f}."
        )
    differences = np.array([method[s] - control[s] for s in seeds])
    n = len(seeds)
    slips = {
        "the interval of paired runs comes from the spread of their differences; you used the "
        "spreads of the two methods, as if the runs were independent": stats.t.ppf(0.975, 2 * n - 2)
        * math.sqrt(
            np.var([method[s] for s in seeds], ddof=1) / n
            + np.var([control[s] for s in seeds], ddof=1) / n
        ),
        "with a handful of seeds the 95 % factor is Student's t with n − 1 degrees of freedom, "
        "not the normal 1.96": 1.96 * differences.std(ddof=1) / math.sqrt(n),
        "use the sample standard deviation (ddof=1)": stats.t.ppf(0.975, n - 1)
        * differences.std(ddof=0)
        / math.sqrt(n),
    }
    for message, value in slips.items():
        if math.isclose(half, value, rel_tol=1e-6):
            raise Incorrect(message + ".")
    if not math.isclose(half, want_half, rel_tol=1e-6):
        raise Incorrect(f"the half-width should be {want_half:.5f}, got {half:.5f}.")
    return f"mean {mean:+.4f} ± {half:.4f}: the interval of paired differences."


def _check_momentum_effect(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    for learning_rate, momentum in MOMENTUM_CASES:
        runs = momentum_runs(learning_rate, momentum)
        got = float(answer([dict(r) for r in runs], learning_rate, momentum))
        want = momentum_effect_solution(runs, learning_rate, momentum)
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            continue
        naive = (
            "you compared with SGD at the same learning rate: that difference mixes the method "
            "with its larger effective step"
        )
        one_step = "h·(1+β) counts only the next step's share of a gradient; add up all of them"
        for rate, why in ((learning_rate, naive), (learning_rate * (1 + momentum), one_step)):
            wrong = _effect_against(runs, learning_rate, momentum, rate)
            if math.isclose(got, wrong, rel_tol=1e-6):
                raise Incorrect(f"{why}.")
        if math.isclose(got, -want, rel_tol=1e-6):
            raise Incorrect("the effect is momentum − control, not control − momentum.")
        raise Incorrect(
            f"with h = {learning_rate} and β = {momentum} the effect should be {want:+.5f}, got "
            f"{got:+.5f}. Pair the runs by seed, over the seeds both optimizers have."
        )
    return "you compared momentum with SGD at its effective step, seed by seed."


def _effect_against(runs: list[dict], learning_rate: float, momentum: float, rate: float) -> float:
    """Momentum's gap minus SGD's at ``rate`` (a wrong control), paired by seed."""
    control = {
        r["seed"]: r["gap"]
        for r in runs
        if r["optimizer"] == "SGD" and math.isclose(r["learning_rate"], rate, rel_tol=1e-9)
    }
    treated = {r["seed"]: r["gap"] for r in runs if r["optimizer"] == "momentum"}
    seeds = sorted(set(control) & set(treated))
    return float(np.mean([treated[s] - control[s] for s in seeds]))


paired_interval = Exercise(
    title="The 95 % interval of a paired comparison",
    checker=_check_paired_interval,
    hint=(
        "Keep only the seeds both dictionaries have and work with their differences from then "
        "on: one list of numbers, its mean, its sample standard deviation. Which distribution "
        "gives the 95 % factor for so few numbers (scipy.stats)?"
    ),
    solution=paired_interval_solution,
)

momentum_effect = Exercise(
    title="The momentum effect, against the right control",
    checker=_check_momentum_effect,
    hint=(
        "A gradient that stays the same from step to step: how far does heavy-ball momentum "
        "move the weights per step once its velocity has settled? Sum the series. That step "
        "size is the SGD run to compare with; then pair by seed as in exercise 1. Compare "
        "learning rates with math.isclose, not ==."
    ),
    solution=momentum_effect_solution,
)

__all__ = ["momentum_effect", "paired_interval"]
