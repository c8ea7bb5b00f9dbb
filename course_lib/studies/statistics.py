"""Paired differences over seeds, and what a study may claim from many of them at once.

A seed fixes a run's initial weights and batch order, so ``method − control`` on the same seed
is the method's effect alone, and the mean of those differences over n seeds has Student's t
interval mean ± t(1 − α/2, n − 1)·s/√n (notebook 06 builds it). Three statements can be read
from one interval, each against a threshold of its own:

* **resolved** (:func:`classify`): the interval excludes 0, the difference is *higher* or
  *lower*; otherwise it is *within seed spread*;
* **smaller than δ** (:func:`size_class` ``"< δ"``): the interval lies inside ±δ;
* **at least δ** (``"≥ δ"``): it lies wholly beyond +δ or −δ; otherwise it *straddles δ*.

The words are kept apart on purpose: *within seed spread* and *straddles δ* describe one
interval; a reading's tests, corrected or not, *resolve* a direction or a size or leave it *not
resolved* (:func:`reading`); *supported*, *refuted* and *undecided* are reserved for the
verdicts of :mod:`course_lib.studies.regimes`, which combine many readings.

Each statement is a test, and :class:`PairedTest` gives the p-value of each: the smallest α at
which the (1 − α) interval makes the statement (at α = 0.05, the 95 % interval's reading).
A study that reads many such intervals at 95 % makes some false statements by chance, so the
statements a decision rests on form one family, fixed before any number, and :func:`holm`
adjusts their p-values (Holm 1979): a statement survives when its adjusted p-value is below α,
which keeps the chance of *any* false statement in the family at α or less, whatever the
dependence between readings. The uncorrected reading is the 95 % interval itself, shown beside;
a reading outside the family is only that, descriptive. (Which readings form the overfitting
study's family: :func:`course_lib.studies.regimes.family_member`.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The level of every reading: 95 % intervals, a family-wise error of 5 %.
ALPHA = 0.05
#: What a reading with fewer than two paired differences says: nothing (it has no interval).
TOO_FEW = "too few pairs"


def confidence_interval(
    differences: Sequence[float], level: float = 1 - ALPHA
) -> tuple[float, float]:
    """Mean of paired differences and the half-width of its t interval (NaN if fewer than 2)."""
    from scipy import stats

    values = np.asarray(differences, dtype=np.float64)
    if values.size < 2:
        return (float(values.mean()) if values.size else math.nan), math.nan
    half = (
        stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    )
    return float(values.mean()), float(half)


def classify(mean: float, half_width: float) -> str:
    """ "higher" or "lower" when the interval excludes 0 (resolved), else "within seed spread"."""
    if not math.isfinite(half_width):
        return "too few runs"
    if mean - half_width > 0:
        return "higher"
    if mean + half_width < 0:
        return "lower"
    return "within seed spread"


def size_class(mean: float, half_width: float, delta: float) -> str:
    """Where the interval lies against the meaningful effect ±``delta``.

    ``"< δ"``: inside (−δ, δ), the effect is smaller than δ; ``"≥ δ"``: wholly beyond δ on
    one side, at least δ; ``"straddles δ"``: it reaches across +δ or −δ, the seeds cannot tell.
    """
    if not math.isfinite(half_width):
        return "straddles δ"
    if -delta < mean - half_width and mean + half_width < delta:
        return "< δ"
    if mean - half_width >= delta or mean + half_width <= -delta:
        return "≥ δ"
    return "straddles δ"


@dataclass(frozen=True)
class PairedTest:
    """The per-seed differences of one reading, and the p-value of each statement about them.

    ``p_zero``: the mean difference is not 0 (the two-sided t test). ``p_within(δ)``: it lies
    inside ±δ (two one-sided tests, doubled). ``p_beyond(δ)``: it lies beyond +δ or −δ (the
    one-sided test on the side of the mean, doubled). Each equals the smallest α at which the
    (1 − α) t interval makes that statement, so at 0.05 they read exactly as the 95 % interval
    does (:func:`classify`, :func:`size_class`). With fewer than 2 differences every p is 1.
    """

    differences: tuple[float, ...]

    @classmethod
    def of(cls, differences: Sequence[float]) -> PairedTest:
        return cls(tuple(float(d) for d in differences))

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences)) if self.n else math.nan

    @property
    def standard_error(self) -> float:
        if self.n < 2:
            return math.nan
        return float(np.std(self.differences, ddof=1) / math.sqrt(self.n))

    def half_width(self, alpha: float = ALPHA) -> float:
        return confidence_interval(self.differences, 1 - alpha)[1]

    def _tail(self, shift: float, upper: bool) -> float:
        """P(T ≥ t) or P(T ≤ t) for t = (mean − shift)/se, T Student's t with n − 1 d.o.f."""
        from scipy import stats

        se = self.standard_error
        if self.n < 2:
            return 1.0
        if se == 0:  # every seed gave the same difference
            return 0.0 if (self.mean > shift if upper else self.mean < shift) else 1.0
        t = (self.mean - shift) / se
        return float(stats.t.sf(t, self.n - 1) if upper else stats.t.cdf(t, self.n - 1))

    def p_zero(self) -> float:
        return min(1.0, 2 * min(self._tail(0.0, upper=True), self._tail(0.0, upper=False)))

    def p_within(self, delta: float) -> float:
        above_minus = self._tail(-delta, upper=True)  # mean > −δ
        below_plus = self._tail(delta, upper=False)  # mean < +δ
        return min(1.0, 2 * max(above_minus, below_plus))

    def p_beyond(self, delta: float) -> float:
        above_plus = self._tail(delta, upper=True)  # mean > +δ
        below_minus = self._tail(-delta, upper=False)  # mean < −δ
        return min(1.0, 2 * min(above_plus, below_minus))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given.

    Sort the m p-values, multiply the i-th smallest by m − i + 1, cap at 1, and carry the
    running maximum (an adjusted p-value never falls below a smaller p-value's). A hypothesis
    is rejected at family-wise level α when its adjusted p-value is below α.
    """
    values = np.asarray(p_values, dtype=np.float64)
    if values.ndim != 1 or np.any(np.isnan(values)) or np.any((values < 0) | (values > 1)):
        raise ValueError("p_values must be a list of numbers in [0, 1].")
    m = values.size
    order = np.argsort(values, kind="stable")
    scaled = np.minimum(1.0, values[order] * (m - np.arange(m)))
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def reading(test: PairedTest, delta: float, adjusted: dict[str, float] | None = None) -> str:
    """What a reading's tests resolve, in words: direction, then size against δ.

    With ``adjusted`` (the Holm-adjusted ``{"zero", "within", "beyond"}`` p-values) it reads the
    corrected statements; without, the 95 % interval's. The words name tests, not the shape of
    one interval, so that a corrected reading beside its uncorrected interval never seems to
    contradict it: "higher, ≥ δ", "lower, < δ", "< δ, sign not resolved", "higher, size not
    resolved", "not resolved"; with fewer than two differences, "too few pairs" (no interval,
    no statement).
    """
    if test.n < 2:
        return TOO_FEW
    p = adjusted or {
        "zero": test.p_zero(),
        "within": test.p_within(delta),
        "beyond": test.p_beyond(delta),
    }
    direction = "higher" if test.mean > 0 else "lower"
    if p["beyond"] < ALPHA:
        return f"{direction}, ≥ δ"
    resolved = p["zero"] < ALPHA
    if p["within"] < ALPHA:
        return f"{direction}, < δ" if resolved else "< δ, sign not resolved"
    return f"{direction}, size not resolved" if resolved else "not resolved"


def direction(test: PairedTest) -> str:
    """What the 95 % interval alone says of a difference without a δ (a descriptive reading):
    "higher" or "lower" when it excludes 0, else "not resolved"; "too few pairs" with fewer
    than two differences."""
    if test.n < 2:
        return TOO_FEW
    if test.p_zero() >= ALPHA:
        return "not resolved"
    return "higher" if test.mean > 0 else "lower"


def says_smaller_than_delta(said: str) -> bool:
    """Whether a reading in words (:func:`reading`) resolves the size as smaller than δ."""
    return said.endswith(", < δ") or said.startswith("< δ")


def resolves_direction(said: str) -> bool:
    """Whether a reading in words (:func:`reading`) resolves a direction: higher or lower."""
    return said.startswith(("higher", "lower"))
