"""The overfitting study's statistics and verdicts: Holm, the paired tests, matched-loss readings,
the rule per regime, and what reaches the result file. No training: synthetic runs only."""

from __future__ import annotations

from course_lib.studies.overfitting import RK23, RK23_FIXED, SGD_AT_RK23
from course_lib.studies.readings import loss_crossing, matched_target, value_at_loss
from course_lib.studies.regimes import (
    AS_STATED,
    END_COLUMN,
    STEP_SIZE_COLUMN,
    Regime,
    at_the_end,
    correct,
    family_counts,
    family_member,
    harness_check,
    meaningful_effect,
    readings_from_table,
    readings_table,
    regime_readings,
    regimes,
    verdict,
    verdict_row,
    verdict_rows,
)
from course_lib.studies.results import Table
from course_lib.studies.statistics import (
    PairedTest,
    classify,
    confidence_interval,
    holm,
    reading,
    size_class,
)

import math

import numpy as np
import pytest
from synthetic_runs import one_curve_runs
from synthetic_runs import run as _run

# --- Holm ----------------------------------------------------------------------------------


def test_holm_on_the_textbook_example():
    # Holm (1979)'s procedure as textbooks show it: four hypotheses, α = 0.05. Sorted, the
    # p-values 0.005, 0.01, 0.03, 0.04 meet α/4, α/3, α/2, α: the first two are rejected, the
    # third is not (0.03 > 0.025), and the procedure stops there.
    p = [0.01, 0.04, 0.03, 0.005]
    adjusted = holm(p)
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert (adjusted < 0.05).tolist() == [True, False, False, True]
    # Bonferroni would reject only 0.005 (0.01 · 4 = 0.04 < 0.05 too): Holm never rejects less.
    assert ((np.array(p) * 4) < 0.05).sum() <= (adjusted < 0.05).sum()


def test_holm_keeps_the_order_caps_at_one_and_refuses_what_is_not_a_p_value():
    assert holm([0.5, 0.5, 0.5]).tolist() == [1.0, 1.0, 1.0]
    assert holm([0.02]).tolist() == [0.02]
    adjusted = holm([0.001, 0.2, 0.001])  # ties: both get the larger multiplier's running max
    assert adjusted.tolist() == pytest.approx([0.003, 0.2, 0.003])
    with pytest.raises(ValueError, match=r"numbers in \[0, 1\]"):
        holm([0.1, math.nan])
    with pytest.raises(ValueError, match=r"numbers in \[0, 1\]"):
        holm([1.2])


# --- the paired tests read exactly as the 95 % interval does -------------------------------


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
    test = PairedTest.of(differences)
    assert test.p_zero() == pytest.approx(stats.ttest_1samp(differences, 0).pvalue)


def test_each_p_value_is_below_005_exactly_when_the_95_percent_interval_says_so():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(3, 12))
        differences = rng.normal(rng.normal(0, 0.02), rng.uniform(0.001, 0.03), n)
        delta = float(rng.uniform(0.002, 0.04))
        test = PairedTest.of(differences)
        mean, half = confidence_interval(differences)
        assert (test.p_zero() < 0.05) == (classify(mean, half) != "within seed spread")
        assert (test.p_within(delta) < 0.05) == (size_class(mean, half, delta) == "< δ")
        assert (test.p_beyond(delta) < 0.05) == (size_class(mean, half, delta) == "≥ δ")


def test_a_reading_in_words_corrected_or_not():
    strong = PairedTest.of([0.05, 0.052, 0.049, 0.051, 0.05])
    assert reading(strong, delta=0.01) == "higher, ≥ δ"
    tiny = PairedTest.of([0.001, 0.0012, 0.0009, 0.0011, 0.001])
    assert reading(tiny, delta=0.01) == "higher, < δ"
    noise = PairedTest.of([0.001, -0.002, 0.0015, -0.001, 0.0005])
    assert reading(noise, delta=0.01) == "< δ, sign not resolved"
    assert reading(noise, delta=0.0001) == "not resolved"
    # Corrected: the same test, with p-values that no longer pass, says less.
    lost = {"zero": 0.2, "within": 0.3, "beyond": 0.4}
    assert reading(strong, 0.01, lost) == "not resolved"
    assert reading(strong, 0.01, {"zero": 0.01, "within": 1.0, "beyond": 0.3}) == (
        "higher, size not resolved"
    )
    # One difference has no interval: no statement at all.
    assert reading(PairedTest.of([0.3]), delta=0.01) == "too few pairs"
    # No reading uses a verdict's words.
    for said in (reading(t, 0.01) for t in (strong, tiny, noise)):
        assert not any(word in said for word in ("supported", "refuted", "undecided"))


# --- matched training loss ------------------------------------------------------------------


def test_matched_loss_reads_each_run_where_its_training_loss_first_reaches_the_target():
    run = _run("SGD", 0, [0.8, 0.4, 0.1, 0.05], [1.0, 0.9, 0.6, 0.7], [0.5, 0.6, 0.8, 0.7])
    assert loss_crossing(run, 0.4) == 1.0  # exactly the second epoch
    assert loss_crossing(run, 0.2) == pytest.approx(1.5)  # halfway from 0.4 to 0.1 in log
    assert value_at_loss(run, "val_loss", 0.2) == pytest.approx(0.75)
    assert value_at_loss(run, "val_accuracy", 0.2) == pytest.approx(0.7)
    assert value_at_loss(run, "train_loss", 0.2) == pytest.approx(0.2)
    assert loss_crossing(run, 2.0) == 0.0  # already there after the first epoch
    assert loss_crossing(run, 0.01) is None and value_at_loss(run, "val_loss", 0.01) is None
    # The first time counts: a loss that falls below the target and rises again is read there.
    bumpy = _run("SGD", 0, [0.5, 0.1, 0.6, 0.05], [1.0, 0.8, 1.2, 0.9])
    assert loss_crossing(bumpy, 0.1) == 1.0
    with pytest.raises(ValueError, match="positive training loss"):
        loss_crossing(run, 0.0)


def test_the_matched_target_is_the_lowest_loss_every_run_that_did_not_diverge_reached():
    runs = [
        _run("SGD", 0, [0.5, 0.1], [0.6, 0.5]),
        _run("RK23", 0, [0.5, 0.02], [0.6, 0.5]),
        _run("RK45", 0, [0.5, 3.0], [0.6, 3.0]),  # diverged: left out
    ]
    assert matched_target(runs) == 0.1
    assert all(loss_crossing(r, matched_target(runs)) is not None for r in runs[:2])
    # A run that fell to 0.05 and then blew up to 1.9 (not diverged): its lowest loss counts,
    # not its last, so the match stays where the runs had fitted something.
    blew_up = _run("Heun", 0, [0.5, 0.05, 1.9], [0.6, 0.5, 2.0])
    assert matched_target([*runs[:2], blew_up]) == 0.1
    assert loss_crossing(blew_up, 0.1) is not None
    with pytest.raises(ValueError, match="every run diverged"):
        matched_target(runs[2:])


# --- the rule per regime --------------------------------------------------------------------

REGIME = Regime("test", "test regime", "?", {"methods": ("SGD", RK23, SGD_AT_RK23, RK23_FIXED)})


def _study(effect_train, effect_val, effect_accuracy=0.0, seeds=8):
    """Runs of REGIME where RK23 (adaptive) differs from both its controls by the effects."""
    rng = np.random.default_rng(1)
    runs = []
    for seed in range(seeds):
        base = 0.3 + 0.05 * rng.standard_normal()
        val = 1.0 + 0.05 * rng.standard_normal()
        noise = lambda: 0.0005 * rng.standard_normal()  # noqa: E731
        train = np.geomspace(1.0, base, 10)
        for method in ("SGD", SGD_AT_RK23, RK23_FIXED):
            runs.append(_run(method, seed, train + noise(), np.full(10, val + noise())))
        rk23_train = train * math.exp(effect_train) + noise()
        rk23_val = np.full(10, val + effect_val + noise())
        rk23_accuracy = np.full(10, 0.9 + effect_accuracy)
        runs.append(_run(RK23, seed, rk23_train, rk23_val, rk23_accuracy))
    return runs


def _verdicts(runs):
    readings = regime_readings(REGIME, runs)
    correct(readings)
    (row,) = verdict_rows([REGIME], readings)
    return row, readings


def test_delta_is_a_tenth_of_sgds_final_validation_loss():
    runs = _study(0.0, 0.0)
    sgd = [r.val_loss[-1] for r in runs if r.method == "SGD"]
    assert meaningful_effect(runs) == pytest.approx(0.1 * np.mean(sgd))
    with pytest.raises(ValueError, match="needs SGD"):
        meaningful_effect([r for r in runs if r.method != "SGD"])


def test_the_claim_is_supported_only_where_validation_is_worse_by_delta_at_matched_loss():
    row, readings = _verdicts(_study(effect_train=-0.5, effect_val=0.3))
    assert row["as stated"] == "supported" and row["from the order"] == "supported"
    assert row[END_COLUMN] == "worse by ≥ δ, after training further"
    # Training further with validation no worse: harm excluded, not the claim.
    row, _ = _verdicts(_study(effect_train=-0.5, effect_val=0.0))
    assert row["as stated"] == "refuted" and row["from the order"] == "refuted"
    assert row[END_COLUMN] == "within δ or better"
    # Validation worse, but by less than δ (a tenth of about 1.0): refuted, not supported.
    row, _ = _verdicts(_study(effect_train=-0.5, effect_val=0.02))
    assert row["as stated"] == "refuted"


def _overfitting_runs(seeds=8, further=0.5, extra=0.0):
    return one_curve_runs(seeds, further, extra)


def test_training_further_on_the_same_curve_is_worse_at_the_end_but_not_at_matched_loss():
    # The case the article's wording invites: the adaptive runs end worse because they trained
    # further; at the same training loss they fit no worse. The verdict says refuted, and the
    # end of training is reported beside it, never as support.
    row, readings = _verdicts(_overfitting_runs())
    assert row[END_COLUMN] == "worse by ≥ δ, after training further"
    assert row["as stated"] == "refuted" and row["from the order"] == "refuted"
    # The same runs, worse by 0.4 at every training loss (δ ≈ 0.16): supported.
    row, _ = _verdicts(_overfitting_runs(extra=0.4))
    assert row["as stated"] == "supported"


def test_a_verdict_is_undecided_where_the_seeds_cannot_exclude_harm():
    # Two seeds whose validation differences disagree (+0.08, −0.06 against δ ≈ 0.1): the
    # interval, with t(0.975, 1) ≈ 12.7, reaches far beyond ±δ.
    runs = _study(effect_train=0.0, effect_val=0.0, seeds=2)
    for r in runs:
        if r.method == RK23:
            r.val_loss = [v + (0.08 if r.seed == 0 else -0.06) for v in r.val_loss]
    row, readings = _verdicts(runs)
    assert row["as stated"] == "undecided"
    assert verdict([], AS_STATED) == "not tested"


def test_the_end_of_training_names_a_resolved_worsening_whose_size_is_open():
    # Validation worse at the end, resolved, but its interval straddles δ: "worse, size not
    # resolved" (not "not resolved", and not "worse by ≥ δ"), after training further.
    rng = np.random.default_rng(7)
    runs = _study(effect_train=-0.5, effect_val=0.0, seeds=6)
    for r in runs:
        if r.method == RK23:
            r.val_loss[-1] += 0.1 + 0.05 * rng.standard_normal()  # δ ≈ 0.1
    row, readings = _verdicts(runs)
    (end,) = [
        r
        for r in readings
        if r["comparison"] == AS_STATED[0] and (r["point"], r["metric"]) == ("end", "val_loss")
    ]
    assert end["uncorrected"] == "higher, size not resolved"
    assert end["corrected"] is None  # descriptive: no corrected reading
    assert row[END_COLUMN] == "worse, size not resolved, after training further"
    assert at_the_end(readings) == row[END_COLUMN]


def test_the_step_size_column_is_descriptive():
    row, readings = _verdicts(_study(effect_train=-0.5, effect_val=0.0))
    step = [r for r in readings if r["comparison"].differs == "step size"]
    assert step and all(r["role"] == "descriptive" and r["corrected"] is None for r in step)
    assert row[STEP_SIZE_COLUMN] == "within δ or better"
    assert "from the step size" not in row  # no verdict for it


def test_holm_can_turn_an_uncorrected_verdict_undecided():
    # A validation effect just beyond δ in a small study: the 95 % interval reads "≥ δ",
    # corrected over the family it no longer does.
    rng = np.random.default_rng(5)
    runs = _study(effect_train=-0.5, effect_val=0.0, seeds=4)
    for r in runs:
        if r.method == RK23:
            r.val_loss = [v + 0.14 + 0.01 * rng.standard_normal() for v in r.val_loss]
    row, readings = _verdicts(runs)
    assert row["as stated, uncorrected"] == "supported"
    assert row["as stated"] != "supported"
    assert sum(r["corrected"] != r["uncorrected"] for r in readings) > 0


def test_holms_family_is_the_verdicts_readings_and_descriptive_readings_never_enter_it():
    # The family is fixed by the rule: the matched validation readings of the comparisons a
    # verdict reads (here RK23 − SGD, RK23 − SGD at its steps, RK23 fixed − SGD: 3 × 2 = 6
    # readings, 18 statements). Its Holm-adjusted p-values are Holm's over exactly those 18,
    # whatever the descriptive readings (the step size, the end of training) say.
    runs = _study(effect_train=-0.5, effect_val=0.3)
    readings = regime_readings(REGIME, runs)
    correct(readings)
    family = [r for r in readings if family_member(r)]
    assert len(family) == 6 and {r["point"] for r in family} == {"matched"}
    assert {r["metric"] for r in family} == {"val_loss", "val_accuracy"}
    assert all(r["comparison"].differs != "step size" for r in family)
    keys = ("zero", "within", "beyond")
    expected = holm([r["p"][k] for r in family for k in keys])
    got = [r["adjusted"][k] for r in family for k in keys]
    np.testing.assert_allclose(got, expected)
    descriptive = [r for r in readings if not family_member(r)]
    assert len(descriptive) == len(readings) - 6
    assert all(r["corrected"] is None and r["role"] == "descriptive" for r in descriptive)
    assert all(r["uncorrected"] for r in descriptive)  # read at 95 %, uncorrected
    counts = family_counts(readings)
    assert (counts["members"], counts["in family"], counts["statements"]) == (6, 6, 18)
    assert counts["descriptive"] == len(descriptive)


def test_readings_without_an_interval_stay_out_of_holms_family():
    runs = _study(effect_train=-0.5, effect_val=0.3)
    for r in runs:  # RK23 diverges on every seed but one: one pair left in its comparisons
        if r.method == RK23 and r.seed > 0:
            r.train_loss = [math.inf] * len(r.train_loss)
    readings = regime_readings(REGIME, runs)
    correct(readings)
    lonely = [r for r in readings if r["pairs"] == 1]
    assert lonely and all(r["uncorrected"] == "too few pairs" for r in lonely)
    assert all(r["corrected"] == "too few pairs" for r in lonely if family_member(r))
    counts = family_counts(readings)
    members = [r for r in readings if family_member(r)]
    assert counts["one pair"] == sum(r["pairs"] == 1 for r in members) == 4
    assert counts["in family"] == len(members) - 4 == 2  # RK23 fixed − SGD only
    assert counts["statements"] == 3 * counts["in family"]
    # The others are corrected as if the lonely readings did not exist.
    others = [dict(r) for r in readings if r["pairs"] >= 2]
    correct(others)
    kept = [r for r in readings if r["pairs"] >= 2 and family_member(r)]
    assert [r["adjusted"] for r in others if family_member(r)] == [r["adjusted"] for r in kept]
    (row,) = verdict_rows([REGIME], readings)
    assert row["as stated"] == "undecided"  # RK23 − SGD has no interval: harm not excluded


def test_the_harness_check_passes_fails_or_says_it_cannot_tell():
    sanity = Regime("sanity", "sanity", "?", {"methods": ("SGD", RK23_FIXED)}, harness_check=True)

    def check(extra, seeds=8):
        rng = np.random.default_rng(2)
        runs = []
        for seed in range(seeds):
            train = np.geomspace(1.0, 0.3 + 0.05 * rng.standard_normal(), 10)
            val = 1.0 + 0.05 * rng.standard_normal()
            runs.append(_run("SGD", seed, train, np.full(10, val)))
            runs.append(_run(RK23_FIXED, seed, train, np.full(10, val + extra(rng))))
        readings = regime_readings(sanity, runs)
        correct(readings)
        return harness_check(readings), readings

    said, readings = check(lambda rng: 0.001 * rng.standard_normal())
    assert said == "passed"
    assert verdict_rows([sanity], readings) == []  # a harness check is no verdict of the claim
    assert check(lambda rng: 0.5 + 0.001 * rng.standard_normal())[0] == "failed"
    assert check(lambda rng: 0.2 * rng.standard_normal(), seeds=3)[0] == "inconclusive"
    assert harness_check([]) == "not tested"


def test_the_verdicts_come_back_from_the_result_files_readings_table():
    for runs in (_study(-0.5, 0.3), _overfitting_runs(), _study(0.0, 0.0, seeds=2)):
        row, readings = _verdicts(runs)
        table = Table.from_json(readings_table(readings).to_json())
        back = readings_from_table(REGIME.key, table)
        assert verdict_row(REGIME.name, back) == row
        assert [r["corrected"] for r in back] == [r["corrected"] for r in readings]


def test_the_regimes_settings_reach_the_result_file():
    from course_lib.studies.overfitting_report import build_result

    arms = regimes("quick")
    records = {}
    for regime in arms:
        settings = regime.settings((0, 1, 2))
        runs = []
        for seed in settings.seeds:
            for method in settings.ordered_methods():
                runs.append(_run(method, seed, np.geomspace(1, 0.2, 4), [0.5] * 4))
        records[regime.key] = runs
    seconds = {"wall": {r.key: 1.0 for r in arms}, "cpu": {r.key: 2.0 for r in arms}}
    tables, values = build_result(arms, records, seconds)
    assert values["order"] == [r.key for r in arms]
    for regime in arms:
        recorded = values["regimes"][regime.key]["settings"]
        settings = regime.settings((0, 1, 2))
        for name in ("epochs", "learning_rate", "batch_size", "rtol", "atol", "label_noise"):
            assert recorded[name] == getattr(settings, name), (regime.key, name)
        assert recorded["methods"] == list(settings.methods)
        assert recorded["seeds"] == [0, 1, 2]
        assert f"readings_{regime.key}" in tables and f"epochs_{regime.key}" in tables
    claim_arms = [r.name for r in arms if not r.harness_check]
    assert [row[0] for row in tables["verdicts"].rows] == claim_arms
    assert [row[0] for row in tables["harness"].rows] == ["sanity: small step h = 0.03"]
    # Holm's family, fixed by the rule: in each of the six arms of the claim, the matched
    # validation loss and accuracy of its six verdict comparisons (2 as stated, 4 from the order:
    # every arm trains the fixed-step twins); in the sanity arm, those of its two order-only
    # comparisons. 6 × 12 + 4 = 76 readings, 228 statements (every reading here has 3 pairs).
    count = sum(len(tables[f"readings_{r.key}"].rows) for r in arms)
    assert values["family"]["readings"] == count
    assert values["family"]["members"] == values["family"]["in family"] == 76
    assert values["family"]["statements"] == 228
    assert values["family"]["descriptive"] == count - 76
    for regime in arms:
        roles = tables[f"readings_{regime.key}"].column("role")
        assert roles.count("Holm's family") == (4 if regime.harness_check else 12), regime.key
    assert values["regimes"]["long"]["aim"] == 1e-3
    assert values["regimes"]["sanity"]["harness_check"] is True
    assert values["regimes"]["noisy_labels"]["settings"]["label_noise"] == 0.2
    assert values["regimes"]["sanity"]["settings"]["learning_rate"] == 0.03


def test_readme_shows_the_verdicts_of_the_result_file():
    from course_lib.studies.results import ROOT, render_markdown

    text = (ROOT / "README.md").read_text()
    assert "<!-- result: overfitting verdict_summary -->" in text
    assert render_markdown(text, names=["overfitting"]) == text, (
        "README's verdicts differ from docs/results/overfitting.json: "
        "python benchmarks/overfitting.py --render"
    )
