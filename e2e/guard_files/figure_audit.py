"""IPython start-up file: record every figure a notebook shows that lacks axis labels or a title.

e2e/offline_guard.py copies this file into a temporary IPython profile's ``startup`` folder.
Whatever shows a figure in a notebook (``plt.show()``, the inline backend's end-of-cell flush,
``display(fig)``, ``savefig``) renders it through ``FigureCanvasBase.print_figure``, so the audit
wraps that one method and inspects the figure just before it is drawn, while it still exists.
Each rendered figure becomes one JSON line in the file named by ``E2E_FIGURE_LOG``, with its
problems (an empty list when it is fine), so a test can also tell that the audit ran at all.

The rule, per visible axes (colorbars and axes drawn with ``axis("off")`` excepted): an x label
and a y label (its own, a shared neighbour's, or the figure's ``supxlabel``/``supylabel``), and a
title (its own or the figure's ``suptitle``).
"""

import json
import os

import matplotlib.backend_bases


def _text(artist):
    return artist.get_text().strip() if artist is not None else ""


def _shared_label(ax, which):
    group = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    getter = "get_xlabel" if which == "x" else "get_ylabel"
    return any(getattr(other, getter)().strip() for other in group.get_siblings(ax))


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
