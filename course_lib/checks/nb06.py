"""Self-checks for the exercises of notebook 06 (do Runge–Kutta optimizers overfit?).

* :data:`holm` (the mechanism of section 4): Holm's step-down adjusted p-values, in the order
  given; checked against the library's :func:`course_lib.studies.statistics.holm` on the
  textbook example and on cases that catch Bonferroni, a missing running maximum, and the
  step-up (Hochberg) order.
* :data:`crossing` (the mechanism of section 5): where a run's training loss first reaches a
  target, interpolated in log(loss) between two epochs: the matched-loss reading; checked
  against the library's :func:`course_lib.studies.readings.loss_crossing` on cases that catch
  interpolation in the loss itself, an off-by-one epoch, the last crossing instead of the first,
  and a target never reached.
* :data:`seeds_needed` (transfer): plan a study with the paired interval the lesson builds: how
  many seeds make the 95 % half-width smaller than the meaningful effect δ, given a pilot's
  per-seed differences.
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


def holm_solution(p_values: list[float]) -> list[float]:
    """Holm's adjusted p-values: the i-th smallest times m − i + 1, capped at 1, running max."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def crossing_solution(train_loss: list[float], target: float) -> float | None:
    """Where ``train_loss`` first reaches ``target``, as a fractional epoch index: between the
    last epoch above and the first at or below, linearly in log(loss); 0.0 when the first epoch
    is already there; None when it never gets there."""
    for index, loss in enumerate(train_loss):
        if loss <= target:
            if index == 0:
                return 0.0
            above = train_loss[index - 1]
            return index - 1 + math.log(above / target) / math.log(above / loss)
    return None


def seeds_needed_solution(pilot: list[float], delta: float) -> int:
    """The fewest seeds n ≥ 2 whose 95 % half-width t(0.975, n − 1)·s/√n is below ``delta``,
    with s the sample standard deviation of the pilot's per-seed differences."""
    from scipy import stats

    sd = float(np.std(pilot, ddof=1))
    n = 2
    while stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) >= delta:
        n += 1
    return n


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


#: Pilots the seeds check plans from: (per-seed differences, δ). The first is the live study's
#: size of problem (5 seeds, a half-width near δ); the others need few and many seeds.
SEEDS_CASES = (
    ([0.004, -0.006, 0.011, 0.002, -0.003], 0.0072),
    ([0.021, 0.034, 0.018, 0.029], 0.02),
    ([0.0012, -0.0031, 0.0024, 0.0005, -0.0018, 0.0027], 0.001),
)


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


#: p-values the Holm check runs: the textbook example, ties, a cap at 1, a case where the running
#: maximum matters and one where Hochberg's step-up order would reject more.
HOLM_CASES = (
    [0.01, 0.04, 0.03, 0.005],
    [0.001, 0.2, 0.001],
    [0.6, 0.5, 0.02],
    [0.012, 0.011, 0.04, 0.5],
    [0.04, 0.045, 0.03],
)

#: (training losses per epoch, target) the crossing check runs: halfway in log, an exact hit, the
#: first epoch, a loss that dips below and rises again (the first time counts), a run that
#: stopped (NaN after), and a target never reached.
CROSSING_CASES = (
    ([0.8, 0.4, 0.1, 0.05], 0.2),
    ([0.8, 0.4, 0.1, 0.05], 0.4),
    ([0.8, 0.4, 0.1, 0.05], 0.9),
    ([0.9, 0.5, 0.09, 0.3, 0.02], 0.1),
    ([1.2, 0.6, 0.3, math.nan, math.nan], 0.35),
    ([1.2, 0.6, 0.3], 0.1),
)

#: (learning rate, momentum) pairs the momentum check runs.
MOMENTUM_CASES = ((0.01, 0.9), (0.02, 0.5))


# --------------------------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------------------------


def _check_holm(answer: Any) -> str:
    from course_lib.studies.statistics import holm as library

    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    for p in HOLM_CASES:
        got = np.asarray(answer(list(p)), dtype=float)
        want = library(p)
        if got.shape == want.shape and np.allclose(got, want, rtol=1e-12, atol=0):
            continue
        m = len(p)
        if got.shape != want.shape:
            raise Incorrect(f"return one adjusted p-value per p-value ({m}), got {got.shape}.")
        if np.allclose(got, np.minimum(1.0, np.asarray(p) * m)):
            raise Incorrect(
                "that is Bonferroni: every p-value times m. Holm multiplies the smallest by m, "
                "the next by m − 1, and so on."
            )
        order = np.argsort(p)
        unmonotone = np.empty(m)
        unmonotone[order] = np.minimum(1.0, np.asarray(p)[order] * (m - np.arange(m)))
        if np.allclose(got, unmonotone):
            raise Incorrect(
                "an adjusted p-value must never be smaller than that of a smaller p-value: "
                "carry the running maximum along the sorted list."
            )
        if np.any(got > 1):
            raise Incorrect("cap each adjusted p-value at 1: it is a probability.")
        raise Incorrect(
            f"for p = {list(p)} Holm gives {want.round(4).tolist()}; you gave "
            f"{got.round(4).tolist()}. Keep the order the p-values came in."
        )
    return "your adjusted p-values equal Holm's: sorted, scaled by m − i + 1, running maximum."


def _check_crossing(answer: Any) -> str:
    from course_lib.studies.overfitting import RunRecord
    from course_lib.studies.readings import loss_crossing

    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    for losses, target in CROSSING_CASES:
        want = loss_crossing(RunRecord("SGD", 0, train_loss=list(losses)), target)
        got = answer(list(losses), target)
        if want is None:
            if got is not None:
                raise Incorrect(
                    f"{list(losses)} never reaches {target}: return None (there is no epoch to "
                    f"read), not {got!r}."
                )
            continue
        if got is None or isinstance(got, bool) or not isinstance(got, int | float | np.number):
            raise Incorrect(f"for {list(losses)} and {target} return a number, got {got!r}.")
        if math.isclose(float(got), want, rel_tol=1e-9, abs_tol=1e-12):
            continue
        first = next(i for i, loss in enumerate(losses) if loss <= target)
        if first > 0:
            above, below = losses[first - 1], losses[first]
            linear = first - 1 + (above - target) / (above - below)
            if math.isclose(float(got), linear, rel_tol=1e-9):
                raise Incorrect(
                    "you interpolated in the loss itself; late in training the loss falls "
                    "roughly geometrically, so interpolate in log(loss): log(above/target) / "
                    "log(above/below)."
                )
            if math.isclose(float(got), want + 1, rel_tol=1e-9):
                raise Incorrect(
                    "one epoch too late: the crossing lies between index i − 1 (above the "
                    "target) and i, so it is i − 1 plus the share."
                )
            if float(got) == first:
                raise Incorrect(
                    "that is the first epoch at or below the target; read between it and the "
                    "epoch before, interpolated in log(loss)."
                )
        raise Incorrect(
            f"for losses {list(losses)} and target {target} the crossing is at {want:.4f}; you "
            f"gave {float(got):.4f}. The first time the loss reaches the target counts."
        )
    return "your crossing is the library's: the first time, between two epochs, in log(loss)."


def _check_seeds_needed(answer: Any) -> str:
    from scipy import stats

    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    for pilot, delta in SEEDS_CASES:
        got = answer(list(pilot), delta)
        if isinstance(got, bool) or not isinstance(got, int | np.integer):
            raise Incorrect(f"return a whole number of seeds, got {got!r}.")
        want = seeds_needed_solution(pilot, delta)
        if got == want:
            continue
        sd, pilot_n = float(np.std(pilot, ddof=1)), len(pilot)
        normal = math.ceil((1.96 * sd / delta) ** 2)
        if got == normal and got < want:
            raise Incorrect(
                "with a handful of seeds the 95 % factor is Student's t with n − 1 degrees of "
                "freedom, not the normal 1.96: it is larger, so you need more seeds."
            )
        pilot_t = math.ceil((stats.t.ppf(0.975, pilot_n - 1) * sd / delta) ** 2)
        if got == pilot_t and got != want:
            raise Incorrect(
                "the factor t(0.975, n − 1) belongs to the study you plan, with n seeds, not to "
                f"the pilot's {pilot_n}: it shrinks as n grows."
            )
        if got == want - 1:
            raise Incorrect(
                f"with {got} seeds the half-width is still at least δ = {delta}: return the "
                "first n where it is below."
            )
        raise Incorrect(f"for δ = {delta} and this pilot, {want} seeds are needed; you gave {got}.")
    return "your plans match: the t factor of the planned study, the pilot's spread, below δ."


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


holm = Exercise(
    title="Holm's adjusted p-values",
    checker=_check_holm,
    hint=(
        "Sort the p-values, remembering where each came from. Multiply the smallest by m, the "
        "next by m − 1, ..., the largest by 1; cap at 1; then walk up the sorted list keeping "
        "the largest value so far. Put each back at its original position."
    ),
    solution=holm_solution,
)

crossing = Exercise(
    title="Where a run reaches a training loss",
    checker=_check_crossing,
    hint=(
        "Walk the losses until one is at or below the target (index i). If i is 0 there is "
        "nothing earlier: 0.0. Otherwise the target lies between losses[i − 1] and losses[i]: "
        "add to i − 1 the share log(above/target) / log(above/below). Never there: None."
    ),
    solution=crossing_solution,
)

seeds_needed = Exercise(
    title="How many seeds a comparison needs",
    checker=_check_seeds_needed,
    hint=(
        "The half-width of section 3 depends on n twice: through √n and through the t factor's "
        "degrees of freedom. Take the pilot's sample standard deviation once, then try n = 2, "
        "3, ... until the half-width drops below δ (scipy.stats.t.ppf)."
    ),
    solution=seeds_needed_solution,
)

momentum_effect = Exercise(
    title="The momentum effect, against the right control",
    checker=_check_momentum_effect,
    hint=(
        "Momentum's effective step is h/(1 − β) (the exercise says why): the SGD run at that "
        "learning rate is the control. Pair the two by seed, as section 3 does, over the seeds "
        "both have, and average the differences. Compare learning rates with math.isclose, "
        "not ==."
    ),
    solution=momentum_effect_solution,
)

__all__ = ["crossing", "holm", "momentum_effect", "seeds_needed"]
