"""The website's table of contents follows the course: book/contents.py (used by `make site`).

The browser checks in e2e/test_site.py read the built pages; these tests pin down the rules that
decide which pages there are and in which order, on small made-up courses and on this one.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_contents():
    spec = importlib.util.spec_from_file_location("book_contents", ROOT / "book" / "contents.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


contents = _load_contents()


def _write_notebook(path: Path, *markdown: str, source_as_list: bool = False) -> None:
    cells = [
        {
            "cell_type": "markdown",
            "metadata": {},
            "source": text.splitlines(keepends=True) if source_as_list else text,
        }
        for text in markdown
    ]
    cells.append(
        {"cell_type": "code", "metadata": {}, "source": "x = '[no](../docs/code.md)'",
         "outputs": [], "execution_count": None}
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}), encoding="utf-8")


def test_this_course_is_the_index_then_its_lessons_in_its_order():
    course_map = contents.load_course_map()
    parts = contents.course_parts()
    order = contents.reading_order(parts)
    lessons = [f"notebooks/{name}" for name in course_map.linked_from_index()]
    assert lessons, "the index links no lesson"
    assert order[: len(lessons) + 1] == ["notebooks/00_index.ipynb", *lessons]
    assert all((ROOT / page).is_file() for page in order)
    assert [part.caption for part in parts][0] == "Lessons"


def test_a_new_lesson_takes_its_place_and_the_appendix_and_results_follow():
    lessons = [
        "notebooks/01_reading.ipynb",
        "notebooks/05_runge_kutta.ipynb",
        "notebooks/06_new_lesson.ipynb",
        "notebooks/07_beyond.ipynb",
        "notebooks/A1_keras2.ipynb",
    ]
    parts = contents.book_parts(lessons, ["docs/overfitting.md"])
    assert contents.table_of_contents(parts) == {
        "format": "jb-book",
        "root": "notebooks/00_index",
        "parts": [
            {
                "caption": "Lessons",
                "chapters": [
                    {"file": "notebooks/01_reading"},
                    {"file": "notebooks/05_runge_kutta"},
                    {"file": "notebooks/06_new_lesson"},
                    {"file": "notebooks/07_beyond"},
                ],
            },
            {"caption": "Appendix", "chapters": [{"file": "notebooks/A1_keras2"}]},
            {"caption": "Measured results", "chapters": [{"file": "docs/overfitting"}]},
        ],
    }
    assert contents.reading_order(parts) == [
        "notebooks/00_index.ipynb",
        *lessons,
        "docs/overfitting.md",
    ]


def test_the_library_pages_follow_the_appendix_and_are_never_measured_results():
    parts = contents.book_parts(
        ["notebooks/01_a.ipynb", "notebooks/A1_b.ipynb"],
        ["docs/api.md", "docs/overfitting.md"],  # a lesson links the reference
        ["docs/recipes.md", "docs/api.md"],
    )
    assert [(part.caption, part.pages) for part in parts] == [
        ("Lessons", ["notebooks/01_a.ipynb"]),
        ("Appendix", ["notebooks/A1_b.ipynb"]),
        ("course_lib in your project", ["docs/recipes.md", "docs/api.md"]),
        ("Measured results", ["docs/overfitting.md"]),
    ]


def test_this_site_has_the_recipes_then_the_reference_after_the_appendix():
    parts = contents.course_parts()
    order = contents.reading_order(parts)
    assert [page for page in order if page in contents.LIBRARY_PAGES] == [
        "docs/recipes.md",
        "docs/api.md",
    ]
    captions = [part.caption for part in parts]
    assert captions.index(contents.LIBRARY_CAPTION) == captions.index("Appendix") + 1


def test_docs_that_the_library_pages_link_join_the_site(tmp_path):
    _write_notebook(tmp_path / "notebooks" / "00_index.ipynb", "no links")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "recipes.md").write_text("[every name](api.md), [numbers](bench.md)", encoding="utf-8")
    (docs / "api.md").write_text("[recipes](recipes.md)", encoding="utf-8")
    (docs / "bench.md").write_text("a table", encoding="utf-8")
    parts = contents.site_parts([], tmp_path)
    assert [(part.caption, part.pages) for part in parts] == [
        ("course_lib in your project", ["docs/recipes.md", "docs/api.md"]),
        ("Measured results", ["docs/bench.md"]),
    ]


def test_no_results_part_without_linked_docs():
    parts = contents.book_parts(["notebooks/01_a.ipynb"], [])
    assert [part.caption for part in parts] == ["Lessons"]


def test_a_lesson_the_index_links_but_nobody_wrote_stops_the_build(tmp_path):
    (tmp_path / "01_here.ipynb").write_text("{}", encoding="utf-8")
    assert contents.lesson_paths(["01_here.ipynb"], tmp_path) == ["notebooks/01_here.ipynb"]
    with pytest.raises(FileNotFoundError, match=r"06_missing\.ipynb.*fix the link"):
        contents.lesson_paths(["01_here.ipynb", "06_missing.ipynb"], tmp_path)


def test_docs_pages_linked_from_lessons_are_found_through_each_other(tmp_path):
    _write_notebook(
        tmp_path / "notebooks" / "00_index.ipynb",
        "See [the study](../docs/study.md) and [the README](../README.md).",
        "Elsewhere: [web](https://example.org/docs/web.md), [gone](../docs/gone.md).",
        source_as_list=True,
    )
    _write_notebook(tmp_path / "notebooks" / "01_a.ipynb", "[table](../docs/study.md#table)")
    (tmp_path / "README.md").write_text("[c](CONTRIBUTING.md)", encoding="utf-8")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "study.md").write_text("![plot](study.png) and [more](more.md)", encoding="utf-8")
    (docs / "more.md").write_text('[back](study.md "the study")', encoding="utf-8")
    (docs / "code.md").write_text("only named inside a code cell", encoding="utf-8")
    found = contents.linked_docs(["notebooks/00_index.ipynb", "notebooks/01_a.ipynb"], tmp_path)
    assert found == ["docs/study.md", "docs/more.md"]


def test_markdown_of_reads_notebook_cells_and_markdown_files(tmp_path):
    _write_notebook(tmp_path / "a.ipynb", "# Title\n", "text", source_as_list=True)
    assert contents.markdown_of(tmp_path / "a.ipynb") == "# Title\n\ntext"
    (tmp_path / "b.md").write_text("plain", encoding="utf-8")
    assert contents.markdown_of(tmp_path / "b.md") == "plain"
