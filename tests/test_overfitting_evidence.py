"""The overfitting study's evidence and figures, drawn from a result file: the verdicts come back
from the readings, each sentence appears under the condition that makes it true, and the figures
keep their text readable and mark what lies off their scale. No training: synthetic runs and the
committed result file."""

from __future__ import annotations

from course_lib.studies import overfitting_evidence as evidence
from course_lib.studies.overfitting import RK23, RK23_FIXED, SGD_AT_RK23
from course_lib.studies.overfitting_report import build_result, draw_curves, draw_forest
from course_lib.studies.regimes import Regime
from course_lib.studies.results import Result, load_result

import math

import matplotlib
from synthetic_runs import one_curve_runs

matplotlib.use("Agg")

METHODS = ("SGD", RK23, SGD_AT_RK23, RK23_FIXED)


def _runs(further=0.5, extra=0.0, diverge=(), seeds=8, first=1):
    """:func:`one_curve_runs`, with the methods in ``diverge`` ending above ln 10 on the seeds
    from ``first``."""
    runs = one_curve_runs(seeds, further, extra)
    for r in runs:
        if r.method in diverge and r.seed >= first:
            r.train_loss[-1] = r.val_loss[-1] = 50.0
    return runs


def _result(runs, name="test regime"):
    regime = Regime("test", name, "does it?", {"methods": METHODS}, short="test")
    tables, values = build_result([regime], {"test": runs})
    return Result("overfitting", "s", "c", "m", "today", tables, values)


def test_the_verdicts_in_a_result_file_follow_from_its_readings():
    for runs in (_runs(), _runs(extra=0.4), _runs(diverge=(RK23,))):
        result = _result(runs)
        assert evidence.verdict_rows_from(result) == result.table("verdicts").records()


def test_the_committed_result_files_verdicts_follow_from_its_readings():
    result = load_result("overfitting")
    assert evidence.verdict_rows_from(result) == result.table("verdicts").records(), (
        "docs/results/overfitting.json: its verdicts differ from its readings under today's rule; "
        "re-run python benchmarks/overfitting.py"
    )
    assert evidence.harness_rows_from(result) == result.table("harness").records()
    # Holm's family in the file is the rule's: matched validation readings of the verdicts'
    # comparisons, and nothing descriptive carries a corrected reading.
    for r in evidence.study_readings(result):
        member = r["point"] == "matched" and r["metric"] != "train_loss"
        member &= r["comparison"].differs != "step size"
        assert (r["role"] != "descriptive") == member, r
        assert (r["corrected"] is None) == (not member), r


def test_training_further_reads_as_such_beside_a_refuted_verdict():
    lines = evidence.regime_evidence(_result(_runs()), "test")
    text = "\n".join(lines)
    assert "**As stated: refuted**" in text
    assert "worse by ≥ δ, after training further" in text
    # The sentence names the method that ended worse after training further, and no other.
    assert (
        "RK23 adaptive ends worse than SGD (uncorrected) after training further, yet matched "
        "with SGD at the same training loss its corrected validation readings are within δ or "
        "better: that end difference is how far it trained, not a worse fit by δ." in text
    )
    # The effects are given with their intervals and where the match was read.
    assert "matched at training loss" in text and " ± " in text


def test_training_further_is_read_per_method_at_matched_loss():
    # Worse by δ at matched loss too: said so, not "how far it trained".
    text = evidence.regime_evidence(_result(_runs(extra=0.4)), "test")[-1]
    assert text == (
        "**Reading it**: RK23 adaptive ends worse than SGD (uncorrected) after training "
        "further, and matched with SGD at the same training loss it still reads worse by at "
        "least δ (corrected)."
    )
    # Seeds that scatter at matched loss (mean 0, wide interval): neither shown nor excluded.
    runs = one_curve_runs(8, further=0.5)
    offsets = [0.3, -0.3, 0.25, -0.25, 0.2, -0.2, 0.1, -0.1]
    for r in runs:
        if r.method == RK23:
            r.val_loss = [v + offsets[r.seed] for v in r.val_loss]
    text = evidence.regime_evidence(_result(runs), "test")[-1]
    assert text == (
        "**Reading it**: RK23 adaptive ends worse than SGD (uncorrected) after training "
        "further; matched with SGD at the same training loss, its corrected readings neither "
        "show a worse fit by δ nor exclude one, so that end difference alone does not show a "
        "worse fit."
    )


def test_a_supported_verdict_names_the_readings_that_carried_it():
    text = "\n".join(evidence.regime_evidence(_result(_runs(extra=0.4)), "test"))
    assert "**As stated: supported**" in text
    assert "Worse by at least δ at matched training loss: RK23 adaptive − SGD at its steps" in text
    assert "how far they trained" not in text
    # Its ground is every seed, read near SGD's final training loss: nothing narrows it.
    assert "8 pairs)" in text and "far past" not in text and "left out" not in text


def test_a_supported_verdict_read_far_below_sgd_on_surviving_seeds_says_so():
    # RK23 and its replay train a thousand times lower than SGD, and the replay diverges on
    # seeds 5 to 7: the order-only reading that carries the verdict is read where SGD never
    # trained, on the 5 seeds where both runs survived.
    runs = one_curve_runs(8, further=0.5, extra=0.4)
    for r in runs:
        if r.method in (RK23, SGD_AT_RK23):
            r.train_loss = [loss * 1e-3 for loss in r.train_loss]
        if r.method == SGD_AT_RK23 and r.seed >= 5:
            r.train_loss[-1] = r.val_loss[-1] = 50.0
    result = _result(runs)
    assert result.table("verdicts").records()[0]["from the order"] == "supported"
    text = "\n".join(evidence.regime_evidence(result, "test"))
    said = "both runs trained far past where SGD at h ended; 5 pairs, 3 left out by a diverged run"
    assert said in text
    line = evidence.regime_line(result, "test")
    assert "worse by ≥ δ in RK23 adaptive − SGD at its steps (matched at training loss" in line
    assert said in line


def test_failures_name_the_runs_their_steps_and_the_empty_comparisons():
    text = "\n".join(evidence.regime_evidence(_result(_runs(diverge=(RK23,))), "test"))
    assert "RK23 adaptive diverged on 7 of 8 seeds (its median accepted step 0.3, 1 × h" in text
    assert "(one pair, no interval)" in text
    assert "failed outright" not in text
    # Every seed diverged: no pair at all, said as such, and no effect invented.
    text = "\n".join(evidence.regime_evidence(_result(_runs(diverge=(RK23,), first=0)), "test"))
    assert "RK23 adaptive diverged on 8 of 8 seeds" in text
    empty = "No readings at all (a run of every pair diverged): RK23 adaptive − SGD; RK23 adaptive"
    assert empty + " − SGD at its steps." in text
    assert "RK23 adaptive − SGD: no pairs (a run of every pair diverged)" in text
    assert "The adaptive optimizers failed outright here" in text


def test_the_family_sentence_counts_the_readings_left_out_of_holms_family():
    result = _result(_runs(diverge=(RK23,)))
    family = result.values["family"]
    assert family["one pair"] > 0
    sentence = evidence.family_sentence(result)
    assert f"{family['one pair']} one pair" in sentence
    assert f"{family['statements']} statements" in sentence


def _texts(figure):
    return [t for t in figure.findobj(matplotlib.text.Text) if t.get_text().strip()]


def test_the_figures_text_is_at_least_9_points_at_a_width_of_10_inches():
    # A notebook shows a figure at most about 10 inches wide: a wider one is scaled down, and
    # its 9-point text with it.
    result = load_result("overfitting")
    for figure in (draw_forest(result), draw_forest(result, "end"), draw_curves(result)):
        small = [(t.get_text(), t.get_fontsize()) for t in _texts(figure) if t.get_fontsize() < 9]
        assert not small, small
        assert figure.get_figwidth() <= 10.0
        matplotlib.pyplot.close(figure)


def _reading(mean, half, role="descriptive", corrected=None):
    from course_lib.studies.overfitting import COMPARISONS

    return {
        "comparison": COMPARISONS[2],
        "mean": mean,
        "half_width": half,
        "delta": 1.0,
        "pairs": 6,
        "role": role,
        "corrected": corrected,
    }


def _edge_marks(ax):
    """(marker, x) of every triangle drawn on ``ax``."""
    return sorted(
        (line.get_marker(), float(line.get_xdata()[0]))
        for line in ax.get_lines()
        if line.get_marker() in ("<", ">")
    )


def test_the_forest_plot_marks_every_clipped_end_of_an_interval():
    from course_lib.studies.overfitting_plots import FOREST_LIMIT, _forest_row

    # The round-2 case: mean +6.9 δ, interval −6.5 δ … +20.3 δ. Both ends lie off the frame:
    # the right one under the large triangle of the mean, the left one a small triangle of its
    # own, and the label gives the mean to one decimal.
    figure, ax = matplotlib.pyplot.subplots()
    _forest_row(ax, _reading(6.9, 13.4), 0)
    assert _edge_marks(ax) == [("<", -FOREST_LIMIT), (">", FOREST_LIMIT), (">", FOREST_LIMIT)]
    assert "+6.9" in [t.get_text() for t in ax.texts]
    # A mean inside with one end beyond: that end only.
    ax.clear()
    _forest_row(ax, _reading(4.0, 3.0, "Holm's family", "higher, size not resolved"), 0)
    assert _edge_marks(ax) == [(">", FOREST_LIMIT)]
    # Nothing beyond: no triangle.
    ax.clear()
    _forest_row(ax, _reading(1.0, 0.5), 0)
    assert _edge_marks(ax) == []
    matplotlib.pyplot.close(figure)


def test_a_clipped_ends_triangle_stays_clear_of_a_mean_just_inside_the_edge():
    # The full study's long arm: mean +5.83 δ, interval to +6.79 δ. The triangle of the clipped
    # end must not sit under the dot (5-point markers: their centres at least 5 points apart).
    from course_lib.studies.overfitting_plots import FOREST_LIMIT, _forest_row

    figure, ax = matplotlib.pyplot.subplots(figsize=(3.0, 1.0))
    ax.set_xlim(-FOREST_LIMIT - 4.5, FOREST_LIMIT + 4.5)
    _forest_row(ax, _reading(5.83, 0.96, "Holm's family", "higher, ≥ δ"), 0)
    figure.canvas.draw()
    (triangle,) = [line for line in ax.get_lines() if line.get_marker() == ">"]
    (dot,) = [line for line in ax.get_lines() if line.get_marker() == "o"]
    at = triangle.get_transform().transform((FOREST_LIMIT, 0))[0]
    mean = dot.get_transform().transform((5.83, 0))[0]
    assert (at - mean) * 72 / figure.dpi >= 5.0
    matplotlib.pyplot.close(figure)


def test_the_curve_legend_draws_every_fixed_step_line_as_plain_dashes():
    # A dash offset keeps RK45's fixed-step line in RK23's gaps on the plot; in a short legend
    # handle it would read as dash-dot, a style the key does not name.
    from course_lib.studies.overfitting import RK45_FIXED
    from course_lib.studies.overfitting_plots import curve_legend

    figure, ax = matplotlib.pyplot.subplots()
    for method in ("SGD", RK23_FIXED, RK45_FIXED):
        ax.plot([1, 2], [1, 2], label=method)
    curve_legend(figure, ["SGD", RK23_FIXED, RK45_FIXED])
    handles = {h.get_label(): h for h in figure.legends[0].legend_handles}
    for method in (RK23_FIXED, RK45_FIXED):
        offset, pattern = handles[method]._unscaled_dash_pattern
        assert offset == 0 and pattern, (method, offset, pattern)
    matplotlib.pyplot.close(figure)


def test_the_forest_plot_draws_family_readings_as_dots_and_descriptive_ones_as_ticks():
    from course_lib.studies.overfitting_plots import _forest_row

    figure, ax = matplotlib.pyplot.subplots()
    _forest_row(ax, _reading(2.0, 0.5, "Holm's family", "higher, ≥ δ"), 0)
    _forest_row(ax, _reading(2.0, 0.5, "Holm's family", "not resolved"), 1)
    _forest_row(ax, _reading(2.0, 0.5), 2)
    marks = [line for line in ax.get_lines() if line.get_marker() in ("o", "|")]
    assert [line.get_marker() for line in marks] == ["o", "o", "|"]
    assert marks[0].get_markerfacecolor() != "white" and marks[1].get_markerfacecolor() == "white"
    matplotlib.pyplot.close(figure)


def test_the_forest_plot_scales_a_single_pair_by_delta_and_marks_it_off_scale():
    # One pair left: no interval, a point. Far beyond ±6 δ it is drawn at the edge with its
    # value in units of δ (not in raw units, not as an interval).
    runs = _runs(further=0.5, extra=3.0, diverge=(RK23,))
    result = _result(runs)
    readings = evidence.study_readings(result)
    lonely = next(
        r
        for r in readings
        if r["pairs"] == 1 and r["point"] == "matched" and r["metric"] == "val_loss"
    )
    from course_lib.studies.overfitting_plots import _in_delta

    value = lonely["mean"] / lonely["delta"]
    expected = "×" + (f"{value:+.2f}" if abs(value) < 10 else _in_delta(value))
    assert abs(lonely["mean"] / lonely["delta"]) > 6
    figure = draw_forest(result)
    assert expected in [t.get_text() for t in _texts(figure)]
    # A cross at the edge, not the triangle of a measured mean: one pair has no interval.
    crosses = [line for ax in figure.axes for line in ax.get_lines() if line.get_marker() == "x"]
    assert any(abs(line.get_xdata()[0]) == 6.0 for line in crosses)
    matplotlib.pyplot.close(figure)


def test_the_forest_plot_lists_comparisons_without_pairs_instead_of_drawing_them():
    result = _result(_runs(diverge=(RK23, SGD_AT_RK23), first=0))
    readings = evidence.study_readings(result)
    empty = {r["comparison"].short for r in readings if r["pairs"] == 0}
    assert empty == {
        "RK23 adaptive − SGD",
        "RK23 adaptive − SGD at its steps",
        "SGD at RK23's steps − SGD",
    }
    figure = draw_forest(result)
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels == ["test: RK23 fixed − SGD"]
    note = figure.get_supxlabel()
    assert note.startswith("Not drawn, no pairs") and all(name in note for name in empty)
    matplotlib.pyplot.close(figure)


def test_an_empty_reading_has_no_effect_to_show():
    r = {"pairs": 0, "mean": math.nan, "half_width": math.nan, "corrected": "too few pairs"}
    assert evidence.effect(r) == "no pairs"


def test_the_tolerance_arms_share_their_sgd_and_fixed_step_runs():
    # docs/overfitting.md says the two tolerance arms' SGD and fixed-step runs are the same (rtol
    # is the controller's only): the committed file must show it.
    from course_lib.studies.overfitting import RK45_FIXED

    result = load_result("overfitting")
    rows = {
        key: {row["method"]: row for row in result.table(f"epochs_{key}").records()}
        for key in ("rtol_0001", "rtol_01")
    }
    for method in ("SGD", RK23_FIXED, RK45_FIXED):
        assert rows["rtol_0001"][method] == rows["rtol_01"][method], method


def test_the_curves_colour_each_method_as_the_course_does_and_tell_rows_by_line_style():
    from course_lib.plots import METHOD_COLOURS
    from course_lib.studies.overfitting import RK45, RK45_FIXED
    from course_lib.studies.overfitting_plots import plot_curves

    methods = ["SGD", RK23_FIXED, RK45_FIXED, RK23, RK45, SGD_AT_RK23]
    entry = {"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.9], "val_accuracy": [0.5, 0.6]}
    figure, (ax_loss, ax_accuracy) = matplotlib.pyplot.subplots(1, 2)
    plot_curves({"epochs": [1, 2], "methods": {m: entry for m in methods}}, ax_loss, ax_accuracy)
    lines = {line.get_label(): line for line in ax_accuracy.get_lines()}
    expected = {
        "SGD": "gradient descent",
        RK23_FIXED: "bogacki_shampine",
        RK23: "bogacki_shampine",
        RK45_FIXED: "dormand_prince",
        RK45: "dormand_prince",
    }
    for label, method in expected.items():
        colour = matplotlib.colors.to_rgb(lines[label].get_color())
        assert colour == matplotlib.colors.to_rgb(METHOD_COLOURS[method]), label
    # Fixed and adaptive share a colour, so their line styles differ; the adaptive line is drawn
    # before its fixed twin, which is dashed, so where the two coincide both stay visible.
    assert lines[RK23].get_linestyle() == "-"
    patterns = {m: lines[m]._unscaled_dash_pattern for m in (RK23, RK23_FIXED, SGD_AT_RK23)}
    assert len(set(map(str, patterns.values()))) == 3  # three rows, three line styles
    order = [line.get_label() for line in ax_accuracy.get_lines()]
    assert order.index(RK23) < order.index(RK23_FIXED)
    matplotlib.pyplot.close(figure)


def test_the_curves_legend_lists_only_the_methods_drawn():
    """A method without a line (diverged, or not in the regime) is not in the legend or its key."""
    from course_lib.studies.overfitting import RK45
    from course_lib.studies.overfitting_plots import curve_legend, plot_curves

    entry = {"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.9], "val_accuracy": [0.5, 0.6]}
    empty = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    curves = {"epochs": [1, 2], "methods": {"SGD": entry, RK23: entry, RK45: empty}}
    figure, (ax_loss, ax_accuracy) = matplotlib.pyplot.subplots(1, 2)
    plot_curves(curves, ax_loss, ax_accuracy)
    curve_legend(figure, ["SGD", RK23, RK45])
    legend = figure.legends[0]
    assert [text.get_text() for text in legend.get_texts()] == ["SGD", RK23]
    assert "brown" not in legend.get_title().get_text()
    assert "dashed" not in legend.get_title().get_text()  # no fixed-step line drawn
    matplotlib.pyplot.close(figure)


def test_each_regimes_validation_loss_has_an_axis_of_its_own():
    # The long arm drives training loss to about 1e-16; on a shared axis the validation curves
    # (0.15 to 0.7) were squeezed into a few pixels. Each row: training loss, validation loss,
    # validation accuracy, the validation axis spanning the validation curves only.
    result = load_result("overfitting")
    figure = draw_curves(result, ["long"])
    ax_train, ax_validation, ax_accuracy = figure.axes
    assert [ax.get_title() for ax in figure.axes] == [
        "training loss",
        "validation loss",
        "validation accuracy",
    ]
    curves = result.values["regimes"]["long"]["curves"]["methods"]
    lowest_val = min(min(e["val_loss"]) for e in curves.values() if e["val_loss"])
    lowest_train = min(min(e["train_loss"]) for e in curves.values() if e["train_loss"])
    assert ax_validation.get_ylim()[0] > lowest_val / 2
    assert ax_train.get_ylim()[0] <= lowest_train
    matplotlib.pyplot.close(figure)


def test_a_curve_title_says_how_many_runs_each_thinned_line_averages():
    from course_lib.studies.overfitting_report import curve_note

    result = _result(_runs(diverge=(RK23,)))  # RK23 adaptive diverged on seeds 1 to 7
    note = curve_note(result.values["regimes"]["test"])
    assert note == "7 of 32 runs diverged, left out; of 8 runs, left to draw: RK23 adaptive 1"
