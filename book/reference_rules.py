"""What course_lib's API reference holds, which lessons build each part, and its text rules.

The Sphinx extension book/course_lib_reference.py uses these; they need no Sphinx, so
tests/test_api_reference.py tests them on their own. The reference documents every module of
``course_lib.__all__`` but those in :data:`NOT_DOCUMENTED`, each named on docs/api.md by a
``course-lib-module`` directive, and every name the package re-exports
(:func:`exported_names`). Lessons are named by their ids ("03",
"A2"), as the docstrings name them: "notebook 05", "notebooks 04, 05, 07", "notebooks 01, 04–07"
(a range), "appendix A2", or a notebook's file name ("03_soft_batch",
"notebooks/00_index.ipynb"). A module's lessons are those its docstring's first paragraph names,
with those that the "Modules by notebook" list of course_lib/__init__.py gives it; that list also
names single functions (``environment.select_backend``: A2), which then have their own.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from pathlib import Path

PACKAGE = "course_lib"
#: Modules of ``course_lib.__all__`` that the reference leaves out, and why (the page says so).
NOT_DOCUMENTED = {
    "course_lib.keras2": "the Keras 2 appendix's code runs in a graph-mode process of its own",
}
_DIRECTIVE = re.compile(r"^\.\. course-lib-module:: (?P<module>\S+)\s*$", re.MULTILINE)
#: A lesson's id as the docstrings write it: "05", "A2".
_ID = r"(?:\d\d|A\d)"
#: "notebook 05", "notebooks 04, 05, 07", "notebooks 01, 04–07", "appendix A2": ids after a word.
_NAMED = re.compile(
    rf"\b(?P<word>notebooks?|appendix|appendices)\s+"
    rf"(?P<ids>{_ID}(?:(?:\s*,\s*|\s+and\s+|\s*[–-]\s*){_ID})*)\b"
)
#: "03_soft_batch", "notebooks/00_index.ipynb": a notebook's file name.
_STEM = re.compile(rf"(?<![\w/])(?:notebooks/)?(?P<stem>{_ID}_[a-z0-9_]+)(?:\.ipynb)?\b")
_ONE_ID = re.compile(_ID)
_INDEX_ENTRY = re.compile(rf"^\* (?P<id>{_ID}): (?P<names>.*)$")


def public_modules() -> list[str]:
    """The modules that ``course_lib.__all__`` names, as dotted names."""
    package = importlib.import_module(PACKAGE)
    return [f"{PACKAGE}.{name}" for name in package._MODULES]


def exported_names() -> dict[str, str]:
    """The names ``course_lib`` re-exports (not its modules) -> the module that defines each."""
    package = importlib.import_module(PACKAGE)
    modules = set(package._MODULES)
    found = {}
    for name in package.__all__:
        if name in modules or name.startswith("__"):
            continue
        value = getattr(package, name)
        found[name] = getattr(value, "__module__", None) or f"{PACKAGE}.{package._EXPORTS[name]}"
    return found


def documented_modules(page: str) -> list[str]:
    """The modules that a reference page's ``course-lib-module`` directives name, in order."""
    return _DIRECTIVE.findall(page)


def missing_modules(page: str) -> list[str]:
    """Public modules that the page neither documents nor excuses in :data:`NOT_DOCUMENTED`."""
    documented = set(documented_modules(page))
    return [m for m in public_modules() if m not in documented and m not in NOT_DOCUMENTED]


def notebook_docs(srcdir: Path) -> dict[str, str]:
    """Lesson id -> Sphinx docname of its notebook (``"03"`` -> ``"notebooks/03_soft_batch"``)."""
    found = {}
    for path in sorted((srcdir / "notebooks").glob("*_*.ipynb")):
        lesson = path.name.split("_", 1)[0]
        if re.fullmatch(_ID, lesson):
            found[lesson] = f"notebooks/{path.stem}"
    return found


def _expand(ids: str, known: Iterable[str]) -> list[str]:
    """The ids of "04, 05 and A2" or of a range "04–07" (the known lessons between)."""
    order = sorted(known)
    found: list[str] = []
    for part in re.split(r"\s*,\s*|\s+and\s+", ids):
        ends = _ONE_ID.findall(part)
        if len(ends) == 2 and ends[0] in order and ends[1] in order:
            found += order[order.index(ends[0]) : order.index(ends[1]) + 1]
        else:
            found += ends
    return found


def lessons_named_in(text: str, known: Iterable[str]) -> list[str]:
    """The lesson ids that ``text`` names, in the order it names them, each once."""
    known = list(known)
    found = []
    for match in _NAMED.finditer(text):
        found += _expand(match.group("ids"), known)
    found += [match.group("stem").split("_", 1)[0] for match in _STEM.finditer(text)]
    return [lesson for lesson in dict.fromkeys(found) if lesson in known]


def lessons_of_index(package_doc: str) -> dict[str, list[str]]:
    """course_lib/__init__.py's "Modules by notebook": dotted name -> the lesson ids listing it."""
    found: dict[str, list[str]] = {}
    for line in package_doc.splitlines():
        entry = _INDEX_ENTRY.match(line.strip())
        if entry:
            for name in re.findall(r"``([\w.]+)``", entry.group("names")):
                found.setdefault(f"{PACKAGE}.{name}", []).append(entry.group("id"))
    return found


def _link_ids(text: str, docs: dict[str, str]) -> str:
    """``text`` with each known lesson id replaced by a :doc: link to its page."""

    def link(match: re.Match) -> str:
        lesson = match.group(0)
        return f":doc:`{lesson} </{docs[lesson]}>`" if lesson in docs else lesson

    return _ONE_ID.sub(link, text)


def link_lessons(line: str, docs: dict[str, str]) -> str:
    """One line of reStructuredText with its notebook mentions as links, literals left alone."""
    parts = line.split("``")
    for index in range(0, len(parts), 2):  # even parts are outside ``literals``
        text = _NAMED.sub(
            lambda m: m.group(0).replace(m.group("ids"), _link_ids(m.group("ids"), docs)),
            parts[index],
        )
        parts[index] = _STEM.sub(
            lambda m: (
                f":doc:`{m.group(0)} </notebooks/{m.group('stem')}>`"
                if m.group("stem").split("_", 1)[0] in docs
                else m.group(0)
            ),
            text,
        )
    return "``".join(parts)


def outside_literal_blocks(lines: list[str], change: Callable[[str], str]) -> list[str]:
    """``change(line)`` for each line of reStructuredText outside a literal block (after ``::``)."""
    changed, literal_indent = [], None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None and line.strip() and indent <= literal_indent:
            literal_indent = None
        changed.append(line if literal_indent is not None else change(line))
        if literal_indent is None and line.rstrip().endswith("::"):
            literal_indent = indent
    return changed


def link_lessons_in_docstring(lines: list[str], docs: dict[str, str]) -> list[str]:
    """A docstring's lines with notebook mentions linked, outside literal blocks."""
    return outside_literal_blocks(lines, lambda line: link_lessons(line, docs))


def escape_bars(line: str) -> str:
    """``|a − b|`` as text: in prose a bar is an absolute value, not a substitution reference.

    Bars inside ``literals`` and the lines of a table or a line block are kept.
    """
    if line.lstrip().startswith(("| ", "+-", "+=")):
        return line
    parts = line.split("``")
    for index in range(0, len(parts), 2):
        parts[index] = re.sub(r"(?<!\\)\|", r"\\|", parts[index])
    return "``".join(parts)


def lessons_line(lessons: list[str], docs: dict[str, str]) -> list[str]:
    """The "Lessons:" paragraph that ends a module's or a name's entry (empty without lessons)."""
    links = [f":doc:`/{docs[lesson]}`" for lesson in lessons if lesson in docs]
    if not links:
        return []
    return ["", f"*{'Lesson' if len(links) == 1 else 'Lessons'}:* {', '.join(links)}"]


def _summary(module_doc: str) -> str:
    """A module docstring's first paragraph."""
    return module_doc.strip().split("\n\n", 1)[0]


class Lessons:
    """Which lessons build a module or a name, read once per build."""

    def __init__(self, srcdir: Path) -> None:
        self.docs = notebook_docs(srcdir)
        self.index = lessons_of_index(importlib.import_module(PACKAGE).__doc__ or "")

    def of_module(self, module_name: str) -> list[str]:
        doc = importlib.import_module(module_name).__doc__ or ""
        named = lessons_named_in(_summary(doc), self.docs)
        return self._ordered(named + self.index.get(module_name, []))

    def of_name(self, module_name: str, name: str) -> list[str]:
        return self.index.get(f"{module_name}.{name}") or self.of_module(module_name)

    def _ordered(self, lessons: list[str]) -> list[str]:
        order = list(self.docs)
        return sorted(dict.fromkeys(lessons), key=lambda lesson: order.index(lesson))
