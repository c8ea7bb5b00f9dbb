"""The API reference covers course_lib and links each part to its lessons (book/reference_rules.py).

The website's build (book/course_lib_reference.py, e2e/test_site.py) renders docs/api.md from
the docstrings; these tests pin down, without Sphinx, the rules that decide what the page holds
and how a docstring's mention of a notebook becomes a link.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = ROOT / "docs" / "api.md"


def _load_rules():
    spec = importlib.util.spec_from_file_location(
        "reference_rules", ROOT / "book" / "reference_rules.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


rules = _load_rules()
DOCS = {
    lesson: f"notebooks/{lesson}_x"
    for lesson in ["00", "01", "02", "03", "04", "05", "06", "07", "A1", "A2"]
}


def test_the_page_documents_every_public_module_or_says_why_not():
    page = API_PAGE.read_text(encoding="utf-8")
    documented = rules.documented_modules(page)
    assert rules.missing_modules(page) == []
    assert len(documented) == len(set(documented)), "a module documented twice"
    for module_name in documented:
        importlib.import_module(module_name)  # a typo would fail the build later
    for module_name in rules.NOT_DOCUMENTED:
        assert module_name not in documented
        assert f"`{module_name}`" in page, f"the page does not say why {module_name} is left out"


def test_missing_modules_names_a_public_module_the_page_forgot():
    page = API_PAGE.read_text(encoding="utf-8").replace(
        ".. course-lib-module:: course_lib.lookahead\n", ""
    )
    assert rules.missing_modules(page) == ["course_lib.lookahead"]


def test_every_exported_name_has_a_lesson_that_builds_it():
    lessons = rules.Lessons(ROOT)
    assert set(lessons.docs) >= {"00", "03", "07", "A2"}
    for name, module_name in rules.exported_names().items():
        found = lessons.of_name(module_name, name)
        assert found, f"course_lib.{name} ({module_name}): no lesson named in its module docstring"
        assert all(lesson in lessons.docs for lesson in found)
    assert lessons.of_name("course_lib.soft_batch", "SoftBatch") == ["03"]
    assert lessons.of_name("course_lib.environment", "select_backend") == ["A2"]
    assert lessons.of_module("course_lib.runge_kutta") == ["04", "05", "A3"]


@pytest.mark.parametrize(
    ("text", "lessons"),
    [
        ("Soft batch: accumulation (taught in 03_soft_batch).", ["03"]),
        ("One training step (notebooks 04, 05, 07).", ["04", "05", "07"]),
        ("Toy losses (notebooks 01, 04–07).", ["01", "04", "05", "06", "07"]),
        ("Helpers (notebooks 03 and 07), see appendix A2.", ["03", "07", "A2"]),
        ("The warm-up exercise in notebooks/00_index.ipynb.", ["00"]),
        ("Used from notebook 02 on.", ["02"]),
        ("nb03 checks, float64, 10 steps of notebook 99.", []),
    ],
)
def test_a_docstring_names_its_lessons(text, lessons):
    assert rules.lessons_named_in(text, DOCS) == lessons


def test_the_index_of_course_lib_lists_modules_and_single_names():
    index = rules.lessons_of_index(
        "Modules by notebook:\n\n* 03: ``optimizer_wrapper``, ``soft_batch``\n"
        "* A2: ``environment.select_backend``, ``stateless`` (the same on JAX)\n"
        "* 07: ``soft_batch``\n"
    )
    assert index == {
        "course_lib.optimizer_wrapper": ["03"],
        "course_lib.soft_batch": ["03", "07"],
        "course_lib.environment.select_backend": ["A2"],
        "course_lib.stateless": ["A2"],
    }


def test_mentions_become_links_and_literals_stay():
    line = "Heun (notebook 04), any tableau (notebooks 05–07); ``notebook 03`` stays; 03_x too."
    assert rules.link_lessons(line, DOCS) == (
        "Heun (notebook :doc:`04 </notebooks/04_x>`), any tableau (notebooks "
        ":doc:`05 </notebooks/05_x>`–:doc:`07 </notebooks/07_x>`); ``notebook 03`` stays; "
        ":doc:`03_x </notebooks/03_x>` too."
    )
    lines = ["Use it::", "", "    see notebook 03", "", "Then notebook 03."]
    assert rules.link_lessons_in_docstring(lines, DOCS) == [
        "Use it::",
        "",
        "    see notebook 03",
        "",
        "Then notebook :doc:`03 </notebooks/03_x>`.",
    ]


def test_bars_in_prose_are_text_and_tables_keep_theirs():
    assert rules.escape_bars("max |a − b| over ``|x|``") == r"max \|a − b\| over ``|x|``"
    assert rules.escape_bars("| a line block") == "| a line block"
    assert rules.escape_bars("+-----+") == "+-----+"


def test_the_lessons_line_links_each_lesson_page():
    assert rules.lessons_line(["03"], DOCS) == ["", "*Lesson:* :doc:`/notebooks/03_x`"]
    assert rules.lessons_line(["04", "05"], DOCS) == [
        "",
        "*Lessons:* :doc:`/notebooks/04_x`, :doc:`/notebooks/05_x`",
    ]
    assert rules.lessons_line([], DOCS) == []
