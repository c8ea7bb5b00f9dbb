"""IPython start-up file: record every figure a notebook shows that lacks axis labels or a title.

e2e/offline_guard.py copies this file into a temporary IPython profile's ``startup`` folder.
Whatever shows a figure in a notebook (``plt.show()``, the inline backend's end-of-cell flush,
``display(fig)``, ``savefig``) renders it through ``FigureCanvasBase.print_figure``, so the audit
wraps that one method and inspects the figure just before it is drawn, while it still exists.
Each rendered figure becomes one JSON line in the file named by ``E2E_FIGURE_LOG``, with its
problems (an empty list when it is fine), so a test can also tell that the audit ran at all.

The rules, per visible axes (colorbars and axes drawn with ``axis("off")`` excepted): an x label
and a y label (its own, a shared neighbour's, or the figure's ``supxlabel``/``supylabel``), and a
title (its own or the figure's ``suptitle``); the panel shows something (a line, a collection, an
image or a patch); every plotted line has a point inside the axes' limits, and no line is hidden
under a later one that draws the same points solid and at least as wide (give one of two
coinciding lines a dashed style or markers, and say in the text that they coincide).
"""

import json
import os

import matplotlib.backend_bases
import numpy as np


def _text(artist):
    return artist.get_text().strip() if artist is not None else ""


def _shared_label(ax, which):
    group = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    getter = "get_xlabel" if which == "x" else "get_ylabel"
    return any(getattr(other, getter)().strip() for other in group.get_siblings(ax))


def _line_data(line):
    x, y = line.get_xdata(orig=False), line.get_ydata(orig=False)
    try:
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    except (TypeError, ValueError):  # dates or categories: not checked
        return None


def _inside_limits(ax, data):
    x, y = data
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & np.isfinite(x) & np.isfinite(y)
    return bool(inside.any())


def _covers(upper, lower, upper_data, lower_data):
    """Whether ``upper`` draws exactly over ``lower``, hiding it."""
    if lower.get_marker() not in (None, "None", "", " ") or upper.get_linestyle() != "-":
        return False
    if lower.get_linestyle() not in ("-", "None") or upper.get_linewidth() < lower.get_linewidth():
        return False
    (ux, uy), (lx, ly) = upper_data, lower_data
    return (
        ux.shape == lx.shape
        and np.allclose(ux, lx, equal_nan=True)
        and np.allclose(uy, ly, rtol=1e-3, atol=0, equal_nan=True)
    )


def line_problems(ax, number):
    """Lines that cannot be seen: outside the limits, or drawn over by a later line."""
    problems = []
    lines = [(line, _line_data(line)) for line in ax.get_lines() if line.get_visible()]
    lines = [(line, data) for line, data in lines if data is not None and data[0].size]
    order = sorted(range(len(lines)), key=lambda i: (lines[i][0].get_zorder(), i))
    for rank, i in enumerate(order):
        line, data = lines[i]
        name = line.get_label() if not line.get_label().startswith("_") else f"line {i + 1}"
        if not _inside_limits(ax, data):
            problems.append(f"axes {number}: {name!r} has no point inside the axes' limits")
        for j in order[rank + 1 :]:
            if _covers(lines[j][0], line, lines[j][1], data):
                upper = lines[j][0].get_label()
                problems.append(f"axes {number}: {name!r} is hidden under {upper!r}")
                break
    return problems


def _shows_something(ax):
    return bool(ax.get_lines() or ax.collections or ax.images or ax.patches or ax.tables)


def figure_problems(figure):
    """What the figure lacks, as short sentences (empty when it is fine)."""
    problems = []
    suptitle = _text(getattr(figure, "_suptitle", None))
    supxlabel = _text(getattr(figure, "_supxlabel", None))
    supylabel = _text(getattr(figure, "_supylabel", None))
    for number, ax in enumerate(figure.axes, start=1):
        if not ax.get_visible() or ax.get_label() == "<colorbar>" or not ax.axison:
            continue
        title = any(ax.get_title(loc=loc).strip() for loc in ("left", "center", "right"))
        if not (title or suptitle):
            problems.append(f"axes {number} has no title")
        if not (supxlabel or _shared_label(ax, "x")):
            problems.append(f"axes {number} has no x label")
        if not (supylabel or _shared_label(ax, "y")):
            problems.append(f"axes {number} has no y label")
        if not _shows_something(ax):
            problems.append(f"axes {number} shows nothing")
        problems.extend(line_problems(ax, number))
    return problems


_print_figure = matplotlib.backend_bases.FigureCanvasBase.print_figure
_running_cell = {"first_line": None}


def _remember_cell(info):
    """pre_run_cell hook: which cell is running, for the record of its figures.

    (Its first line, not ``execution_count``: IPython has already moved that on by now.)
    """
    lines = (info.raw_cell or "").strip().splitlines()
    _running_cell["first_line"] = lines[0] if lines else ""


def _audited_print_figure(self, *args, **kwargs):
    try:
        problems = figure_problems(self.figure)
        log = os.environ.get("E2E_FIGURE_LOG")
        if log:
            record = {
                **_running_cell,
                "titles": [ax.get_title() for ax in self.figure.axes],
                "problems": problems,
            }
            with open(log, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")
    except Exception as error:  # the audit must never break the learner's figure
        log = os.environ.get("E2E_FIGURE_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as file:
                file.write(json.dumps({"audit_error": repr(error)}) + "\n")
    return _print_figure(self, *args, **kwargs)


matplotlib.backend_bases.FigureCanvasBase.print_figure = _audited_print_figure
try:
    from IPython import get_ipython

    get_ipython().events.register("pre_run_cell", _remember_cell)
except (ImportError, AttributeError):  # not in IPython (e.g. loaded by a unit test)
    pass
