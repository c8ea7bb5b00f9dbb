"""Stored notebooks must be complete, clean and re-runnable, as strict nbval expects."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NAME = re.compile(r"^(\d\d|A\d)_[a-z0-9_]+\.ipynb$")


def _code_cells(notebook):
    return [c for c in notebook.cells if c.cell_type == "code" and c.source.strip()]


def _expects_error(cell) -> bool:
    return "raises-exception" in cell.metadata.get("tags", [])


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_name_follows_the_course_pattern(notebook):
    path, _ = notebook
    assert NAME.match(path.name), f"{path.name}: name notebooks NN_topic.ipynb"


def test_every_code_cell_is_executed_in_order(notebook):
    path, nb = notebook
    counts = [c.execution_count for c in _code_cells(nb)]
    assert None not in counts, f"{path.name}: unexecuted code cells; run `make notebooks`"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: run top to bottom once"


def test_no_empty_code_cells(notebook):
    path, nb = notebook
    empty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not c.source.strip()]
    assert not empty, f"{path.name}: empty code cells at {empty}"


def test_no_unexpected_errors(notebook):
    path, nb = notebook
    failing = [
        c.execution_count
        for c in _code_cells(nb)
        if not _expects_error(c)
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not failing, f"{path.name}: error outputs in cells {failing}"


def test_no_machine_paths_or_stderr_noise_in_outputs(notebook):
    path, nb = notebook
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in _code_cells(nb)
        for o in c.outputs
    )
    for forbidden in (str(ROOT), "/root/", "/home/", "/tmp/", "site-packages/", "oneDNN"):
        assert forbidden not in text, f"{path.name}: outputs show {forbidden!r}"


def test_metadata_is_clean(notebook):
    path, nb = notebook
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path.name
    assert set(nb.metadata) <= {"kernelspec", "language_info"}, f"{path.name}: run make notebooks"
    for cell in nb.cells:
        assert set(cell.metadata) <= {"tags", "jupyter"}, f"{path.name}: stray cell metadata"
        assert set(cell.metadata.get("jupyter", {})) <= {"outputs_hidden"}, (
            f"{path.name}: only a solution's output is stored collapsed"
        )


def test_no_widget_view_is_stored_and_no_notebook_is_heavy(notebook):
    """A stored widget view names a kernel's model that is gone; an explorer stores its PNG."""
    path, nb = notebook
    views = [
        c.execution_count
        for c in _code_cells(nb)
        for o in c.outputs
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert not views, f"{path.name}: widget views stored in cells {views}; run make notebooks"
    megabytes = path.stat().st_size / 1e6
    assert megabytes <= 3.0, f"{path.name} is {megabytes:.1f} MB: keep animations small"


SOLUTION_CALL = re.compile(r"^([\w.]+)\.solution\(\)$")
USE_CALL = re.compile(r"([\w.]+)\.use\(")


def test_a_solution_in_a_lesson_is_one_click_away(notebook):
    """A ``.solution()`` cell is stored folded: in JupyterLab and on the website (hide-output).

    And a skeleton the learner fills in (``exercise.use(...)``, whose later cells fall back to
    the library) is followed at once by that exercise's solution cell.
    """
    path, nb = notebook
    cells = _code_cells(nb)
    for index, cell in enumerate(cells):
        source = cell.source.strip()
        if SOLUTION_CALL.match(source):
            assert "hide-output" in cell.metadata.get("tags", []), (
                f"{path.name}: tag the cell `{source}` hide-output (folded on the website)"
            )
            assert cell.metadata.get("jupyter", {}).get("outputs_hidden") is True, (
                f"{path.name}: store `{source}` with its output collapsed (outputs_hidden)"
            )
        for exercise in USE_CALL.findall(source):
            following = cells[index + 1].source.strip() if index + 1 < len(cells) else ""
            assert following == f"{exercise}.solution()", (
                f"{path.name}: after `{exercise}.use(...)` put a cell `{exercise}.solution()`"
            )


def test_lesson_structure(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert first.source.startswith(f"# {path.name[:2]} · "), f"{path.name}: title '# NN · ...'"
    assert "00_index.ipynb" in first.source, f"{path.name}: link back to the index"
    assert "## What you will learn" in first.source
    headings = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert any("## Summary" in h for h in headings), f"{path.name}: needs a Summary"
    assert any("## Exercises" in h for h in headings), f"{path.name}: needs Exercises"


def test_first_code_cell_imports_course_lib_first(notebook):
    path, nb = notebook
    first_line = _code_cells(nb)[0].source.strip().splitlines()[0]
    assert first_line == "import course_lib", f"{path.name}: start with `import course_lib`"


def test_index_and_readme_link_every_lesson():
    index = nbformat.read(ROOT / "notebooks" / "00_index.ipynb", as_version=4)
    index_text = "\n".join(c.source for c in index.cells)
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS[1:]:
        assert f"({path.name})" in index_text, f"00_index does not link {path.name}"
        assert f"notebooks/{path.name}" in readme, f"README does not list {path.name}"


def _reference_modules() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    return re.findall(r"course-lib-module:: (\S+)", text)


def test_a_lesson_links_the_reference_of_what_it_imports(notebook):
    """Issue 25: where a lesson imports the library's version, it links that part of the reference.

    ``python tools/link_reference.py`` writes the links; this test reads the imports itself.
    """
    path, nb = notebook
    modules = _reference_modules()
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    imported = [
        f"{module}.{name.strip().split(' as ')[0]}"
        for module, names in re.findall(r"^from (course_lib[\w.]*) import \(?([^)\n]+)", code, re.M)
        for name in names.split(",")
        if name.strip()
    ]
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    missing = []
    for name in imported:
        if name.startswith("course_lib.checks"):
            continue
        owners = [m for m in modules if name == m or name.startswith(m + ".")]
        if owners:
            anchor = "module-" + max(owners, key=len)
        elif name.count(".") == 1:
            anchor = name
        else:
            continue
        if f"](../docs/api.md#{anchor})" not in markdown:
            missing.append(anchor)
    assert not missing, (
        f"{path.name} imports course_lib names whose reference it does not link: "
        f"{sorted(set(missing))}; run `python tools/link_reference.py {path.relative_to(ROOT)}`"
    )
