"""The overfitting study's figures: training and validation curves, and the forest plot.

Both draw from plain numbers (a study's records, or the curves and readings tables of the result
file), so notebook 06 draws the live study and the full one with the same code. One colour per
method, the same in every figure; SGD is black.
"""

from __future__ import annotations

from course_lib.studies.overfitting import (
    RK23,
    RK23_FIXED,
    RK45,
    RK45_FIXED,
    SGD_AT_RK23,
    SGD_AT_RK45,
)
from course_lib.studies.statistics import resolves_direction

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

#: One colour per method (the replay of an adaptive method shares its colour, dashed in curves).
METHOD_COLORS: dict[str, str] = {
    "SGD": "black",
    "Heun": "tab:olive",
    "RK4": "tab:brown",
    RK23_FIXED: "tab:cyan",
    RK45_FIXED: "tab:pink",
    RK23: "tab:blue",
    RK45: "tab:red",
    SGD_AT_RK23: "tab:purple",
    SGD_AT_RK45: "tab:orange",
}


def plot_curves(
    curves: Mapping[str, Any], ax_loss: Any, ax_accuracy: Any | None = None, title: str = ""
) -> None:
    """Training (dashed) and validation (solid) loss per method on log axes; validation
    accuracy on ``ax_accuracy``. ``curves`` is :func:`course_lib.studies.regimes.curves`."""
    epochs = curves["epochs"]
    for method, entry in curves["methods"].items():
        if not entry["train_loss"]:
            continue
        # SGD, the reference, is a wide pale band underneath: a method that matches it shows
        # as its own line inside the band instead of hiding it.
        style = _style(method)
        ax_loss.plot(epochs, entry["train_loss"], ls="--", **style)
        ax_loss.plot(epochs, entry["val_loss"], label=method, **style)
        if ax_accuracy is not None:
            ax_accuracy.plot(epochs, entry["val_accuracy"], label=method, **style)
    ax_loss.set_xscale("log")
    ax_loss.set_yscale("log")
    _plain_ticks(ax_loss.xaxis, ax_loss.yaxis)
    ax_loss.set_xlabel("epoch", fontsize=9)
    ax_loss.set_ylabel("loss (solid: validation,\ndashed: training)", fontsize=9)
    ax_loss.set_title(title, fontsize=10)
    ax_loss.tick_params(labelsize=9)
    if ax_accuracy is not None:
        ax_accuracy.set_xscale("log")
        _plain_ticks(ax_accuracy.xaxis)
        ax_accuracy.set_xlabel("epoch", fontsize=9)
        ax_accuracy.set_ylabel("validation accuracy", fontsize=9)
        ax_accuracy.tick_params(labelsize=9)


#: Markers of the fixed-step twins, placed at alternate points: where the two coincide (a small
#: step, where both follow the flow), each stays visible.
_MARKERS = {RK23_FIXED: ("o", (0, 6)), RK45_FIXED: ("s", (3, 6))}


def _style(method: str) -> dict[str, Any]:
    color = METHOD_COLORS.get(method, "grey")
    if method == "SGD":
        return {"color": color, "lw": 4.0, "alpha": 0.3, "zorder": 1}
    style = {"color": color, "lw": 1.2, "zorder": 2}
    if method in _MARKERS:
        marker, every = _MARKERS[method]
        style |= {"marker": marker, "ms": 3.5, "markevery": every, "markerfacecolor": "none"}
    return style


def _plain_ticks(*axes: Any) -> None:
    """Log axes ticked at 1, 2, 5 × 10ᵏ and labelled 0.2, 1, 50 rather than 10⁰ and crowded
    minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis in axes:
        low, high = axis.get_view_interval()
        few_decades = 0 < low and high / low < 30
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if few_decades else (1.0,)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())


def curve_legend(figure: Any, methods: Sequence[str]) -> None:
    """One legend for every panel, below them (outside the axes under constrained layout)."""
    handles = [plt.Line2D([], [], label=m, **_style(m)) for m in methods]
    where = "outside lower center" if figure.get_layout_engine() is not None else "lower center"
    figure.legend(handles=handles, loc=where, ncol=min(len(methods), 4), fontsize=9)


#: The panels of the forest plot: (point, metric, title, where harm lies); the verdict's first.
FOREST_PANELS: tuple[tuple[str, str, str, str], ...] = (
    ("matched", "val_loss", "validation loss,\nmatched training loss", "harm →"),
    ("matched", "val_accuracy", "validation accuracy,\nmatched training loss", "← harm"),
    ("end", "train_loss", "training loss,\nend of training", "← trained further"),
    ("end", "val_loss", "validation loss,\nend of training", "harm →"),
    ("end", "val_accuracy", "validation accuracy,\nend of training", "← harm"),
)
#: Where the forest plot's axes end, in units of δ: beyond, a point is drawn at the edge.
FOREST_LIMIT = 6.0


def _off_scale(ax: Any, value: float, y: float, color: str, filled: bool) -> None:
    """A value beyond ±FOREST_LIMIT: a triangle at the edge, pointing out, and the value."""
    side = 1.0 if value > 0 else -1.0
    ax.plot(
        side * FOREST_LIMIT,
        y,
        marker=">" if side > 0 else "<",
        ms=7,
        color=color,
        markerfacecolor=color if filled else "white",
        zorder=4,
    )
    text = f"{value:+.0f}" if abs(value) < 1000 else f"{value:+.0e}"
    ax.text(
        side * (FOREST_LIMIT + 0.5),
        y,
        text,
        fontsize=9,
        ha="left" if side > 0 else "right",
        va="center",
        color=color,
    )


def _forest_row(ax: Any, r: Mapping[str, Any], y: float) -> None:
    """One reading: its interval and mean in units of δ, clipped at the edges and marked."""
    color = METHOD_COLORS.get(r["comparison"].method, "grey")
    mean, half = r["mean"] / r["delta"], r["half_width"] / r["delta"]
    if r["pairs"] == 1:  # no interval: a cross at the one difference
        if abs(mean) > FOREST_LIMIT:
            _off_scale(ax, mean, y, color, filled=False)
        else:
            ax.plot(mean, y, "x", ms=6, mew=1.6, color=color, zorder=3)
        return
    low, high = mean - half, mean + half
    ax.plot(np.clip([low, high], -FOREST_LIMIT, FOREST_LIMIT), [y, y], color=color, lw=1.4)
    resolved = resolves_direction(r["corrected"])
    if abs(mean) > FOREST_LIMIT:
        _off_scale(ax, mean, y, color, filled=resolved)
        return
    for end in (low, high):
        if abs(end) > FOREST_LIMIT:
            ax.plot(
                np.sign(end) * FOREST_LIMIT,
                y,
                marker=">" if end > 0 else "<",
                ms=5,
                color=color,
                zorder=3,
            )
    ax.plot(
        mean,
        y,
        "o",
        ms=5,
        color=color,
        markerfacecolor=color if resolved else "white",
        zorder=3,
    )


def forest_plot(readings: Sequence[Mapping[str, Any]], regime_names: Mapping[str, str]) -> Any:
    """Paired differences in units of δ, one row per regime and comparison, one panel per reading.

    ``readings`` are the study's readings (:func:`course_lib.studies.regimes.regime_readings`
    after :func:`~course_lib.studies.regimes.correct`, or read back from the result file). Each
    bar is the uncorrected 95 % interval divided by the reading's δ, so the grey band ±1 is ±δ in
    every panel; a filled dot means the difference resolves a direction after Holm's correction,
    a hollow one that it does not; a cross is a reading with a single pair (no interval). What
    lies beyond ±:data:`FOREST_LIMIT` is drawn at the edge as a triangle pointing out, with its
    value. Comparisons without a single pair have no row: a note under the panels names them.
    """
    keys = list(dict.fromkeys((r["regime"], r["comparison"]) for r in readings))
    paired = {(r["regime"], r["comparison"]) for r in readings if r["pairs"] > 0}
    labels = [k for k in keys if k in paired]
    empty = [k for k in keys if k not in paired]
    figure, axes = plt.subplots(
        1,
        len(FOREST_PANELS),
        figsize=(2.3 * len(FOREST_PANELS) + 3.4, 0.24 * len(labels) + 2.3),
        sharey=True,
        layout="constrained",
    )
    positions = {label: len(labels) - 1 - i for i, label in enumerate(labels)}
    for ax, (point, metric, title, harm) in zip(axes, FOREST_PANELS, strict=True):
        ax.axvspan(-1, 1, color="0.88", zorder=0)
        ax.axvline(0, color="0.4", lw=0.8, zorder=1)
        for r in readings:
            key = (r["regime"], r["comparison"])
            if (r["point"], r["metric"]) == (point, metric) and key in positions:
                _forest_row(ax, r, positions[key])
        ax.set_xlim(-FOREST_LIMIT - 3.0, FOREST_LIMIT + 3.0)
        ax.set_xticks([-FOREST_LIMIT, -3, 0, 3, FOREST_LIMIT])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"difference / δ\n({harm})", fontsize=9)
        ax.tick_params(labelsize=9)
    axes[0].set_yticks(list(positions.values()))
    axes[0].set_yticklabels(
        [f"{regime_names.get(regime, regime)}: {c.short}" for regime, c in positions], fontsize=9
    )
    axes[0].set_ylim(-0.7, len(labels) - 0.3)
    for index in range(1, len(labels)):  # a thin line between regimes
        if labels[index][0] != labels[index - 1][0]:
            for ax in axes:
                ax.axhline(len(labels) - index - 0.5, color="0.6", lw=0.6)
    if empty:  # a figure-level label: constrained layout makes room for it
        figure.supxlabel(_empty_note(empty, keys, regime_names), fontsize=9)
    return figure


def _empty_note(
    empty: Sequence[tuple[str, Any]], keys: Sequence[tuple[str, Any]], names: Mapping[str, str]
) -> str:
    """Which comparisons have no row: by regime, "all N comparisons" or their names."""
    import textwrap

    parts = []
    for regime in dict.fromkeys(r for r, _ in empty):
        mine = [c for r, c in empty if r == regime]
        total = sum(r == regime for r, _ in keys)
        what = (
            f"all {total} comparisons" if len(mine) == total else ", ".join(c.short for c in mine)
        )
        parts.append(f"{names.get(regime, regime)}: {what}")
    text = "Not drawn, no pairs (a run of every pair diverged): " + "; ".join(parts) + "."
    return "\n".join(textwrap.wrap(text, 150))
