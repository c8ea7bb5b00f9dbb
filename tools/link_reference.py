"""Link each notebook to the API reference of the course_lib modules it imports.

Issue 25 asks that a lesson link the library's reference where it imports the library's version.
This tool reads a notebook's imports (``from course_lib.soft_batch import SoftBatch``), finds the
documented module each one belongs to (the longest ``course-lib-module`` of docs/api.md that
prefixes it; a name re-exported by the package itself links to its own anchor), and writes one
bullet at the end of the notebook's Summary list:

    - [API reference](../docs/api.md): [`course_lib.soft_batch`](../docs/api.md#module-…), …

Run it after adding or removing an import: ``python tools/link_reference.py [notebooks…]``.
Only Markdown changes, so the notebook needs no re-execution. tests/test_notebook_hygiene.py
checks that every import is linked.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "api.md"
BULLET_START = "- [API reference](../docs/api.md):"
#: The exercises' checks are the notebook's own machinery, not a library the learner takes home.
NOT_LINKED = ("course_lib.checks",)


def documented_modules(reference: Path = REFERENCE) -> list[str]:
    """The modules docs/api.md documents, each an anchor ``module-<dotted name>``."""
    return re.findall(r"course-lib-module:: (\S+)", reference.read_text(encoding="utf-8"))


def imported_names(notebook) -> list[str]:
    """Dotted names a notebook imports from course_lib (``course_lib.soft_batch.SoftBatch``)."""
    names = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics: no imports of ours there
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_lib"):
                names += [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names += [a.name for a in node.names if a.name.startswith("course_lib.")]
    return list(dict.fromkeys(names))


def anchor_of(name: str, modules: list[str]) -> str | None:
    """The reference anchor for an imported name, or None where the reference has none."""
    if name.startswith(NOT_LINKED):
        return None
    owners = [m for m in modules if name == m or name.startswith(m + ".")]
    if owners:
        return "module-" + max(owners, key=len)
    if name.count(".") == 1:  # re-exported by the package: documented under its own name
        return name
    return None


def required_anchors(notebook, modules: list[str]) -> list[str]:
    """Every anchor the notebook must link, in the order of its imports."""
    anchors = (anchor_of(name, modules) for name in imported_names(notebook))
    return list(dict.fromkeys(a for a in anchors if a))


def reference_bullet(anchors: list[str]) -> str:
    links = ", ".join(
        f"[`{anchor.removeprefix('module-')}`](../docs/api.md#{anchor})" for anchor in anchors
    )
    return f"{BULLET_START} {links}."


def _summary_cell(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and "## Summary" in cell.source:
            return cell
    raise ValueError("the notebook has no '## Summary' cell: add one (CONTRIBUTING.md), then rerun")


def with_bullet(summary: str, bullet: str) -> str:
    """The summary text with the reference bullet as the last item of its list."""
    lines = [line for line in summary.split("\n") if not line.startswith(BULLET_START)]
    start = next(i for i, line in enumerate(lines) if line.startswith("## Summary"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    last_item = max(
        (i for i in range(start, end) if lines[i].startswith(("- ", "  "))), default=start
    )
    return "\n".join(lines[: last_item + 1] + [bullet] + lines[last_item + 1 :])


def link(path: Path, modules: list[str]) -> bool:
    """Write the bullet into ``path``'s summary; True when the file changed."""
    notebook = nbformat.read(path, as_version=4)
    anchors = required_anchors(notebook, modules)
    if not anchors:
        return False
    cell = _summary_cell(notebook)
    new = with_bullet(cell.source, reference_bullet(anchors))
    if new == cell.source:
        return False
    cell.source = new
    nbformat.write(notebook, path)
    return True


def main(paths: list[str]) -> None:
    modules = documented_modules()
    targets = [Path(p) for p in paths] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in targets:
        if link(path, modules):
            print(f"linked: {path.name}")


if __name__ == "__main__":
    main(sys.argv[1:])
