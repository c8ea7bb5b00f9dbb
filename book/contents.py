"""What the course website holds, in the order a learner reads it (used by book/build.py).

The index notebook is the map: its lesson links, first link first, are the book's chapters
(``e2e/course_map.py`` reads them; the browser tests use the same function). Lessons whose name
starts with a digit are "Lessons", those starting with a letter (``A1_...``) the "Appendix".
The library's own pages, the recipes and the API reference (:data:`LIBRARY_PAGES`), follow as
"course_lib in your project". Pages under ``docs/`` that a chapter or a library page links to
(directly or through another such page) close the book as "Measured results", so a link such as
``../docs/overfitting.md`` in a lesson leads to a page of the site instead of nowhere. Apart from
the library's pages nothing here is written by hand: a new lesson that the index links joins the
site in its place.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = "notebooks"
DOCS = "docs"
INDEX = f"{NOTEBOOKS}/00_index.ipynb"

LESSONS_CAPTION = "Lessons"
APPENDIX_CAPTION = "Appendix"
LIBRARY_CAPTION = "course_lib in your project"
RESULTS_CAPTION = "Measured results"
#: The library's pages in reading order: how to use it, then every name (the API reference).
LIBRARY_PAGES = (f"{DOCS}/recipes.md", f"{DOCS}/api.md")

# A markdown link or image target: the part before an optional "#anchor" or "title".
_LINK_TARGET = re.compile(r"\]\(\s*<?([^)\s>#]+)")


def load_course_map():
    """e2e/course_map.py, the one reader of the index's lesson links (loaded by path)."""
    spec = importlib.util.spec_from_file_location("course_map", ROOT / "e2e" / "course_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Part:
    """A captioned group of pages in the sidebar; pages are paths from the repository root."""

    caption: str
    pages: list[str]


def lesson_paths(names: list[str], notebooks: Path) -> list[str]:
    """The index's lesson names as paths from the root; one missing in ``notebooks`` is an error."""
    missing = [name for name in names if not (notebooks / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{INDEX} links to {missing}, which {NOTEBOOKS}/ does not hold: add the notebook or "
            "fix the link, so that the site has no dead link"
        )
    return [f"{NOTEBOOKS}/{name}" for name in names]


def markdown_of(path: Path) -> str:
    """The markdown a page shows: a notebook's markdown cells, or a markdown file's text."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return "\n".join(
            "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for cell in cells
            if cell["cell_type"] == "markdown"
        )
    return path.read_text(encoding="utf-8")


def linked_docs(pages: list[str], root: Path = ROOT) -> list[str]:
    """Markdown files under docs/ that ``pages`` link to, directly or through each other.

    First found first; a page's own links are followed before the next page's.
    """
    found: list[str] = []
    queue = list(pages)
    while queue:
        page = queue.pop(0)
        for target in _LINK_TARGET.findall(markdown_of(root / page)):
            if "://" in target or not target.endswith(".md"):
                continue
            resolved = (root / page).parent / target
            try:
                relative = resolved.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                continue  # outside the repository: Sphinx reports it as a dead link
            if relative.startswith(f"{DOCS}/") and relative not in found and resolved.exists():
                found.append(relative)
                queue.append(relative)
    return found


def _grouped(pages: list[str]) -> list[Part]:
    """Consecutive lessons of one kind (numbered lesson or lettered appendix) in one part."""
    parts: list[Part] = []
    for page in pages:
        caption = LESSONS_CAPTION if Path(page).name[0].isdigit() else APPENDIX_CAPTION
        if parts and parts[-1].caption == caption:
            parts[-1].pages.append(page)
        else:
            parts.append(Part(caption, [page]))
    return parts


def book_parts(lessons: list[str], docs: list[str], library: list[str] = ()) -> list[Part]:
    """The sidebar after the home page: lessons, appendix, the library, the measured results.

    A library page is never a measured result, even where a lesson links it.
    """
    parts = _grouped(lessons)
    if library:
        parts.append(Part(LIBRARY_CAPTION, list(library)))
    results = [page for page in docs if page not in library]
    if results:
        parts.append(Part(RESULTS_CAPTION, results))
    return parts


def site_parts(lessons: list[str], root: Path = ROOT) -> list[Part]:
    """The parts of a site made of ``lessons``: with the library's pages that exist, and every
    docs page that those or the index link to."""
    library = [page for page in LIBRARY_PAGES if (root / page).is_file()]
    return book_parts(lessons, linked_docs([INDEX, *lessons, *library], root), library)


def reading_order(parts: list[Part]) -> list[str]:
    """Every page, the home page first, as previous/next links walk them."""
    return [INDEX, *(page for part in parts for page in part.pages)]


def _docname(path: str) -> str:
    return str(Path(path).with_suffix("").as_posix())


def table_of_contents(parts: list[Part]) -> dict:
    """The ``_toc.yml`` structure of Jupyter Book 1.x (sphinx-external-toc, jb-book format)."""
    return {
        "format": "jb-book",
        "root": _docname(INDEX),
        "parts": [
            {"caption": part.caption, "chapters": [{"file": _docname(p)} for p in part.pages]}
            for part in parts
        ],
    }


def course_parts() -> list[Part]:
    """The parts of this repository's course, as the index and the lessons link them today."""
    course_map = load_course_map()
    lessons = lesson_paths(course_map.linked_from_index(), course_map.NOTEBOOKS)
    return site_parts(lessons)
