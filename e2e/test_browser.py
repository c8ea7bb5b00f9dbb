"""The course in a real browser: JupyterLab served from this environment, driven by Chromium.

For the index and each lesson it links to (e2e/conftest.py runs each once): open the index,
click the lesson's link, clear the stored outputs, run every cell from the *Run* menu. Then the
page must show every code cell executed, no error output (except in cells tagged
``raises-exception``), each figure stored in the notebook rendered as an image, and progress
from every long cell. A screenshot of each notebook goes to test-artifacts/e2e/.
"""

from __future__ import annotations

import nbformat
import pytest
from browser_pass import run_in_browser
from course_map import INDEX, NOTEBOOKS, lessons_on_disk

#: A cell that runs longer than this must print progress (e.g. fit with verbose=2). The Setup
#: cell is exempt: importing TensorFlow takes seconds and has nothing to report.
LONG_CELL_S = 10.0

NOTEBOOK_NAMES = [INDEX.name, *lessons_on_disk()]


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_every_cell_runs_without_error(browser_runs, name):
    run = browser_runs(name)
    errors = [
        f"cell {c.index} ({c.first_line!r}): {'; '.join(c.errors)}"
        for c in run.cells
        if c.errors and "raises-exception" not in c.tags
    ]
    unexecuted = [c.index for c in run.cells if c.execution_count is None and c.source.strip()]
    assert not errors, f"{name}: error outputs in the browser:\n" + "\n".join(errors)
    assert not unexecuted, f"{name}: cells never ran after Run All: {unexecuted}"


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_every_stored_figure_renders(browser_runs, name):
    run = browser_runs(name)
    assert len(run.cells) == len(run.stored_images), f"{name}: the page shows other cells"
    missing = [
        f"cell {cell.index} ({cell.first_line!r}): {cell.images_rendered} of {stored} images"
        for cell, stored in zip(run.cells, run.stored_images, strict=True)
        if cell.images_rendered < stored
    ]
    assert not missing, f"{name}: stored figures that did not render:\n" + "\n".join(missing)


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_a_screenshot_shows_the_notebook(browser_runs, name):
    run = browser_runs(name)
    assert run.screenshots, f"{name}: no screenshot"
    for path in run.screenshots:
        assert path.stat().st_size > 10_000, f"{path.name}: suspiciously small, blank page?"


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_long_cells_show_progress(browser_runs, name):
    run = browser_runs(name)
    timed = [c for c in run.cells[1:] if c.seconds is not None]
    assert timed, f"{name}: JupyterLab recorded no cell timings (recordTiming setting)"
    silent = [
        f"cell {c.index} ({c.first_line!r}) ran {c.seconds:.0f} s, printed {c.stream_lines} lines"
        for c in timed
        if c.seconds > LONG_CELL_S and c.stream_lines < 2
    ]
    assert not silent, f"{name}: long cells that show no progress:\n" + "\n".join(silent)


def stored_explorers(name: str) -> int:
    """How many explorers (course_lib.explorers) the notebook file shows."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    return sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if str(output.get("data", {}).get("text/plain", "")).startswith("Explorer (")
    )


LESSONS_WITH_EXPLORERS = [name for name in NOTEBOOK_NAMES if stored_explorers(name)]


def test_two_lessons_have_an_explorer():
    assert len(LESSONS_WITH_EXPLORERS) >= 2, LESSONS_WITH_EXPLORERS


@pytest.mark.parametrize("name", LESSONS_WITH_EXPLORERS)
def test_moving_an_explorers_slider_redraws_its_figure(browser_runs, name):
    run = browser_runs(name)
    assert len(run.explorers) == stored_explorers(name), f"{name}: explorers on the page"
    for explorer in run.explorers:
        assert explorer["before"] and explorer["after"] != explorer["before"], (name, explorer)


def test_the_checks_catch_an_error_and_an_unlabelled_figure(browser, lab, guard, artifacts):
    """The checks above must be able to fail: run a notebook that is broken on purpose."""
    explorer = (
        "def draw(h):\n"
        "    fig, ax = plt.subplots()\n"
        "    ax.set(title='line', xlabel='x', ylabel='y', ylim=(0, 1))\n"
        "    ax.plot([0, 1], [0, {height}])\n"
        "    return fig\n"
        "explore(draw, h=ipywidgets.FloatSlider(value=0.5, min=0, max=1, step=0.1))"
    )
    cells = [
        "import matplotlib.pyplot as plt\nprint('one')\nprint('two')",
        "fig, ax = plt.subplots()\nax.plot([0, 1])\nplt.show()",
        "import ipywidgets\nfrom course_lib.explorers import explore\n"
        + explorer.format(height="h"),
        explorer.format(height="0.5"),  # ignores its slider: the check must see no redraw
        "raise ValueError('broken on purpose')",
        "print('never runs')",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    name = "e2e_selftest_broken.ipynb"
    content = nbformat.from_dict(notebook)
    lab.api(f"contents/notebooks/{name}", "PUT", {"type": "notebook", "content": content})
    try:
        run = run_in_browser(browser, lab, guard, name, artifacts, via_index=False)
    finally:
        lab.api(f"contents/notebooks/{name}", "DELETE")
    assert [c.execution_count for c in run.cells] == [1, 2, 3, 4, 5, None]
    assert run.cells[4].errors == ["ValueError: broken on purpose"]
    assert run.cells[0].stream_lines == 2, run.cells[0]
    assert run.cells[1].images_rendered == 1
    assert run.figures[0]["problems"] == [
        "axes 1 has no title",
        "axes 1 has no x label",
        "axes 1 has no y label",
    ]
    assert run.figures[0]["first_line"] == "fig, ax = plt.subplots()"
    assert all(not record["problems"] for record in run.figures[1:]), run.figures
    moved, frozen = run.explorers
    assert moved["after"] != moved["before"] and frozen["after"] == frozen["before"]
