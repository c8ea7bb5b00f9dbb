"""Which notebooks make up the course, in the order a learner meets them (e2e tests).

The index notebook is the map: the lessons are the notebooks its markdown links to, in the order
of their first link. Tests are parametrised over the linked lessons that exist on disk, so a
lesson joins the end-to-end run as soon as it lands.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
INDEX = NOTEBOOKS / "00_index.ipynb"
_LESSON_LINK = re.compile(r"\]\(((?:\d\d|A\d)_[a-z0-9_]+\.ipynb)\)")


def markdown_text(path: Path) -> str:
    """All markdown cells of a notebook, joined."""
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")


def linked_from_index() -> list[str]:
    """Lesson file names that the index links to, first link first, without repeats."""
    names = _LESSON_LINK.findall(markdown_text(INDEX))
    return [name for name in dict.fromkeys(names) if name != INDEX.name]


def lessons_on_disk() -> list[str]:
    """The linked lessons that exist today."""
    return [name for name in linked_from_index() if (NOTEBOOKS / name).exists()]


def course_notebooks() -> list[Path]:
    """Every notebook in notebooks/, the index first."""
    return sorted(NOTEBOOKS.glob("*.ipynb"))
