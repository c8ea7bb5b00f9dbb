"""docs/ holds measured tables, never hand-pasted ones, and no stray tracebacks."""

from __future__ import annotations

from course_lib.studies.results import DOCS_DIR, RESULTS_DIR, marked_blocks, render_markdown

import json
import re

import pytest

DOCS = sorted(DOCS_DIR.glob("*.md"))


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_every_marked_table_equals_its_result_file(path):
    text = path.read_text()
    assert render_markdown(text) == text, (
        f"{path.name}: a table differs from its result file; rerun its benchmark or "
        "`python -c 'from course_lib.studies.results import update_docs; update_docs()'`"
    )


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_docs_hold_no_tracebacks_or_error_output(path):
    text = path.read_text()
    found = re.findall(r"Traceback \(most recent call last\)|Event loop is closed|\w+Error: ", text)
    assert not found, f"{path.name}: stray error output {found}; fix the script that printed it"


def test_every_result_file_is_shown_somewhere():
    shown = {name for path in DOCS for name, _, _ in marked_blocks(path.read_text())}
    for path in sorted(RESULTS_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        assert data["name"] == path.stem
        assert path.stem in shown, f"{path.name} is written but no docs table shows it"


_TEST_REFERENCE = re.compile(r"`(?:(tests/test_\w+\.py))?::(test_\w+)`")


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_every_test_a_page_names_exists(path):
    """`tests/test_x.py::test_y` (and a following `::test_z`, same file) names a real test."""
    module, missing = None, []
    for named_module, name in _TEST_REFERENCE.findall(path.read_text()):
        module = named_module or module
        assert module is not None, f"{path.name}: `::{name}` before any tests/...py:: reference"
        source = (DOCS_DIR.parent / module).read_text()
        if not re.search(rf"^\s*def {name}\(", source, flags=re.MULTILINE):
            missing.append(f"{module}::{name}")
    assert not missing, f"{path.name} names tests that do not exist: {missing}"
