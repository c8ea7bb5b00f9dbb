"""What a learner notices first: each notebook's frame, the README's map, exercises, figures.

Most checks read the stored files (fast). The figure check reads the audit that the browser pass
recorded (e2e/guard_files/figure_audit.py inspected every figure the kernel drew), so it judges
real figures, including those drawn by ``course_lib`` helpers, not code that merely looks right.
tests/test_notebook_hygiene.py, in the unit suite, already requires the title, the index link,
"What you will learn", Summary and Exercises; these checks go further.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from course_map import INDEX, NOTEBOOKS, ROOT, course_notebooks, linked_from_index  # noqa: E402
from offline_guard import GUARD_FILES  # noqa: E402

ALL = [path.name for path in course_notebooks()]
LESSONS = [name for name in ALL if name != INDEX.name]
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+\.ipynb)(?:#[^)]*)?\)")
# An exercise is checked by `.check(answer)` at the end of a lesson, or by `.use(answer)` where
# the lesson has the learner write its mechanism (the check, then the learner's or the library's
# version for the cells below).
_CHECK_CALL = re.compile(r"\b(nb(?:\d\d|A\d))\.([a-z_][a-z0-9_]*)\.(?:check|use)\(")


def _notebook(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _headings(notebook) -> list[str]:
    """Every level-2 heading of the markdown cells, in order."""
    return [
        line[3:].strip()
        for cell in notebook.cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("## ")
    ]


def _cells_after_heading(notebook, heading: str) -> list:
    """The cells from the one holding ``## heading`` to the end."""
    for position, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown" and f"## {heading}" in cell.source:
            return notebook.cells[position:]
    return []


def _course_order() -> list[str]:
    return [INDEX.name, *linked_from_index()]


# ---- every notebook's frame ------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_opens_with_title_goals_and_navigation(name):
    first = _notebook(name).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {name[:2]} · "), (
        f"{name}: the first cell must start with '# {name[:2]} · Title'"
    )
    assert "## What you will learn" in first.source, f"{name}: '## What you will learn' missing"
    order = _course_order()
    assert name in order, f"{name}: not linked from {INDEX.name}"
    position = order.index(name)
    links = {label.strip(): target for label, target in _LINK.findall(first.source)}
    expected = {"index": INDEX.name}
    if position > 0:
        expected["← previous"] = order[position - 1]
    if position < len(order) - 1:
        expected["next →"] = order[position + 1]
    for label, target in expected.items():
        assert links.get(label) == target, (
            f"{name}: the first cell needs [{label}]({target}), found links {links}"
        )


@pytest.mark.parametrize("name", ALL)
def test_ends_with_summary_then_exercises(name):
    headings = _headings(_notebook(name))
    assert "Summary" in headings and "Exercises" in headings, f"{name}: headings {headings}"
    assert headings[-2:] == ["Summary", "Exercises"], (
        f"{name}: end with '## Summary' then '## Exercises'; the last headings are {headings[-3:]}"
    )


@pytest.mark.parametrize("name", ALL)
def test_links_between_notebooks_lead_somewhere(name):
    text = "\n".join(c.source for c in _notebook(name).cells if c.cell_type == "markdown")
    broken = sorted(
        {target for _, target in _LINK.findall(text) if not (NOTEBOOKS / target).exists()}
    )
    assert not broken, f"{name}: links to notebooks that do not exist: {broken}"


# ---- the README -------------------------------------------------------------------------------


def test_readme_opens_with_what_the_course_is_for():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# "), "README.md: start with the course's title"
    opening = []
    for line in lines[1:]:
        if line.startswith("#"):
            break
        opening.append(line)
    words = " ".join(opening).split()
    assert len(words) >= 30, "README.md: say what the course is for before the first section"
    assert "course" in " ".join(words).lower()


def test_readme_lists_every_lesson_with_one_line_in_course_order():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("|") and "notebooks/" in line]
    listed = []
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        found = re.search(r"notebooks/((?:\d\d|A\d)_[a-z0-9_]+\.ipynb)", row)
        if not found:
            continue
        listed.append(found.group(1))
        description = cells[-1]
        assert len(description.split()) >= 3, f"README.md: {found.group(1)} needs a one-line note"
    assert listed == _course_order(), (
        f"README.md lists {listed}; the index's order is {_course_order()}"
    )
    assert set(listed) >= set(ALL), f"README.md misses {sorted(set(ALL) - set(listed))}"


# ---- exercises ---------------------------------------------------------------------------------


def _exercises(number: str) -> dict:
    from course_lib.checks import Exercise

    module = importlib.import_module(f"course_lib.checks.nb{number}")
    return {name: value for name, value in vars(module).items() if isinstance(value, Exercise)}


@pytest.mark.parametrize("name", ALL)
def test_every_exercise_has_a_check_a_hint_and_a_solution(name):
    number = name[:2]
    if importlib.util.find_spec(f"course_lib.checks.nb{number}") is None:
        pytest.fail(f"{name}: no course_lib/checks/nb{number}.py for its exercises")
    exercises = _exercises(number)
    assert exercises, f"course_lib.checks.nb{number} defines no Exercise"
    source = "\n".join(c.source for c in _notebook(name).cells if c.cell_type == "code")
    called = {(module, attr) for module, attr in _CHECK_CALL.findall(source)}
    for exercise_name, exercise in exercises.items():
        assert (f"nb{number}", exercise_name) in called, (
            f"{name}: never calls nb{number}.{exercise_name}.check(...) or .use(...)"
        )
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exercise.hint()
            exercise.solution()
        text = printed.getvalue()
        assert len(text.split("Solution:")[0].split()) > 3, f"nb{number}.{exercise_name}: no hint"
        assert "def " in text or "class " in text, f"nb{number}.{exercise_name}: no solution code"
    unknown = {attr for module, attr in called if module == f"nb{number}"} - set(exercises)
    assert not unknown, f"{name}: calls checks that nb{number} does not define: {unknown}"


@pytest.mark.parametrize("name", LESSONS)
def test_exercises_start_unattempted_and_say_how_to_get_help(name):
    section = _cells_after_heading(_notebook(name), "Exercises")
    text = "\n".join(c.source for c in section)
    assert ".hint()" in text and ".solution()" in text, (
        f"{name}: the Exercises section must mention .hint() and .solution()"
    )
    checks = [c for c in section if c.cell_type == "code" and _CHECK_CALL.search(c.source)]
    assert checks, f"{name}: the Exercises section has no check(...) cell"
    for cell in checks:
        assert "raise NotImplementedError" in cell.source, (
            f"{name}: starter code should raise NotImplementedError:\n{cell.source[:200]}"
        )
        shown = "".join(
            str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
            for o in cell.get("outputs", [])
        )
        assert "Not attempted" in shown, f"{name}: stored check output is {shown[:120]!r}"


# ---- figures -----------------------------------------------------------------------------------


def _load_figure_audit():
    spec = importlib.util.spec_from_file_location("figure_audit", GUARD_FILES / "figure_audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Loading it wraps print_figure in this process too: undo that, keep its functions.
    matplotlib.backend_bases.FigureCanvasBase.print_figure = module._print_figure
    return module


def test_the_figure_audit_catches_a_missing_label_and_title():
    audit = _load_figure_audit()
    figure, (left, right) = plt.subplots(1, 2, sharey=True)
    left.plot([0, 1]), right.plot([1, 0])
    assert audit.figure_problems(figure) == [
        "axes 1 has no title",
        "axes 1 has no x label",
        "axes 1 has no y label",
        "axes 2 has no title",
        "axes 2 has no x label",
        "axes 2 has no y label",
    ]
    left.set_xlabel("step"), right.set_xlabel("step"), left.set_ylabel("loss")
    figure.suptitle("Two panels")
    assert audit.figure_problems(figure) == []  # shared y label and a suptitle are enough
    image = figure.add_axes((0, 0, 0.1, 0.1))
    image.axis("off")
    assert audit.figure_problems(figure) == []  # an image panel needs no axis labels
    plt.close("all")


def test_the_figure_audit_catches_lines_that_cannot_be_seen():
    audit = _load_figure_audit()
    figure, ax = plt.subplots()
    ax.set(title="paths", xlabel="step", ylabel="loss")
    ax.plot([0, 1, 2], [1.0, 0.5, 0.25], label="SGD")
    ax.plot([0, 1, 2], [1.0, 0.5, 0.25], label="ours", linewidth=2)
    ax.plot([5, 6], [9, 9], label="far away")
    ax.set_xlim(0, 2), ax.set_ylim(0, 1)
    assert audit.figure_problems(figure) == [
        "axes 1: 'SGD' is hidden under 'ours'",
        "axes 1: 'far away' has no point inside the axes' limits",
    ]
    ax.lines[1].set_linestyle("--")  # dashed over solid: both stay visible
    ax.lines[2].remove()
    assert audit.figure_problems(figure) == []
    empty = figure.add_subplot(2, 1, 2)
    empty.set(title="nothing", xlabel="x", ylabel="y")
    assert audit.figure_problems(figure) == ["axes 2 shows nothing"]
    plt.close("all")


def test_the_figure_audit_catches_markers_covered_by_a_later_artist():
    audit = _load_figure_audit()
    figure, ax = plt.subplots()
    ax.set(title="iterates", xlabel="step", ylabel="loss")
    steps = np.linspace(0.0, 1.0, 30)
    ax.plot(steps, steps, "o", ms=3, color="tab:orange", label="Heun")
    ax.plot(steps, steps, lw=8, color="black", label="reference flow")
    assert audit.figure_problems(figure) == [
        "axes 1: 'Heun' is almost hidden by what is drawn after it (0% of it visible)"
    ]
    ax.lines[1].set_linewidth(1)  # thin and on top: the iterates stay visible
    assert audit.figure_problems(figure) == []
    ax.lines[1].set(linewidth=8, alpha=0.3)  # a wide but faint band: seen through
    assert audit.figure_problems(figure) == []
    plt.close("all")


def test_the_figure_audit_renders_a_panel_with_what_overlaps_it_only():
    """Many panels: each is judged with the axes over it (an inset covers), the layout kept."""
    audit = _load_figure_audit()
    figure, (left, right) = plt.subplots(1, 2, layout="constrained")
    steps = np.linspace(0.0, 1.0, 30)
    for ax in (left, right):
        ax.set(title="iterates", xlabel="step", ylabel="loss")
        ax.plot(steps, steps, "o", ms=3, color="tab:orange", label="Heun")
    right.plot(steps, steps, lw=8, color="black", label="reference flow")
    inset = left.inset_axes([0.0, 0.0, 1.0, 1.0])
    inset.set(title="zoom", xlabel="step", ylabel="loss")
    inset.plot([0, 1], [0, 1], color="black")
    inset.set_facecolor("white")
    engine = figure.get_layout_engine()
    problems = audit.figure_problems(figure)
    assert "axes 1: 'Heun' is almost hidden by what is drawn after it (0% of it visible)" in problems
    assert "axes 2: 'Heun' is almost hidden by what is drawn after it (0% of it visible)" in problems
    assert figure.get_layout_engine() is engine
    assert all(ax.get_visible() for ax in figure.axes)
    plt.close("all")


def test_the_figure_audit_holds_the_course_conventions():
    audit = _load_figure_audit()
    figure, ax = plt.subplots()
    ax.set(title="bowl", xlabel="$p_1$", ylabel="$p_2$")
    grid = np.linspace(-1.0, 1.0, 20)
    ax.contour(grid, grid, np.add.outer(grid**2, 4 * grid**2))
    ax.plot([0, 1], [0, 1], color="tab:red", label="Heun")
    ax.plot([0, 1], [1, 0], color="tab:red", label="SGD replaying RK23's steps")  # not judged
    ax.legend(fontsize=8)
    assert audit.figure_problems(figure) == [
        "axes 1: 'Heun' is a heun line: draw it in 'tab:orange', the course's colour for it",
        "axes 1 draws contours without equal aspect (ax.set_aspect('equal'))",
        "text under 9 pt: 'Heun', \"SGD replaying RK23's steps\"",
    ]
    ax.lines[0].set_color("tab:orange"), ax.set_aspect("equal"), ax.legend(fontsize=9)
    assert audit.figure_problems(figure) == []
    plt.close("all")


@pytest.mark.parametrize("name", ALL)
def test_every_figure_has_axis_labels_and_a_title(browser_runs, name):
    run = browser_runs(name)
    assert len(run.figures) >= sum(run.stored_images), (
        f"{name}: the audit saw {len(run.figures)} figures, the notebook stores "
        f"{sum(run.stored_images)}: is the audit loaded in the kernel?"
    )
    errors = [record for record in run.figures if "audit_error" in record]
    assert not errors, f"{name}: the figure audit failed: {errors}"
    bad = [
        f"cell {record['first_line']!r}, titles {record['titles']}: "
        + "; ".join(record["problems"])
        for record in run.figures
        if record["problems"]
    ]
    assert not bad, f"{name}: figures that miss a label or a title or hide a line:\n" + "\n".join(
        bad
    )


def test_course_map_finds_the_lessons():
    """The parametrisation above depends on it: an empty list would test nothing."""
    assert linked_from_index(), f"{INDEX.name} links no lesson"
    assert all(Path(NOTEBOOKS / name).suffix == ".ipynb" for name in linked_from_index())
