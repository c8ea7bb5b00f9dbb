"""The recipes of docs/recipes.md as programs: the page itself is what the tests run.

A recipe is a ``## `` section of the page with a line ``Runs on: TensorFlow, JAX.`` (the
backends it promises) and one or more ```` ```python ```` blocks, run in order in one namespace
after the blocks of the ``## Set-up`` section. :func:`read_page` reads them;
``tests/test_recipes.py`` runs each on the backends it names, in this process, and
``tests/test_installed_package.py`` runs them in a fresh environment where ``course_lib`` is an
installed package, through the self-contained program that :func:`program` writes. Code is
compiled under the page's name with its own line numbers, so a traceback points at the line of
docs/recipes.md that failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "recipes.md"
PAGE_NAME = "docs/recipes.md"
SETUP_TITLE = "Set-up"
#: How the page names a backend -> Keras's name for it.
BACKENDS = {"TensorFlow": "tensorflow", "JAX": "jax"}

_HEADING = re.compile(r"^## (?P<title>.+?)\s*$")
_RUNS_ON = re.compile(r"^Runs on: (?P<names>.+)\.\s*$")
_FENCE = re.compile(r"^(?P<fence>```+)\s*(?P<language>[\w-]*)")


@dataclass(frozen=True)
class Recipe:
    """One section of the page: its title, the backends it names, its code (page's line numbers)."""

    title: str
    backends: tuple[str, ...]
    code: str  # the section's python blocks, padded with empty lines to their place on the page

    def runs_on(self, backend: str) -> bool:
        return backend in self.backends


@dataclass
class _Section:
    title: str
    line: int
    backends: tuple[str, ...] | None = None
    blocks: list[tuple[int, str]] | None = None  # (first line of the code, code)


def _backends(names: str, line: int) -> tuple[str, ...]:
    found = []
    for name in re.split(r",\s*|\s+and\s+", names):
        if name not in BACKENDS:
            raise ValueError(
                f"{PAGE_NAME}:{line}: unknown backend {name!r} in 'Runs on:'; write one or more "
                f"of {', '.join(BACKENDS)}, separated by commas"
            )
        found.append(BACKENDS[name])
    return tuple(found)


def _sections(text: str) -> list[_Section]:
    """The page's ``## `` sections with their 'Runs on:' line and python blocks."""
    sections: list[_Section] = []
    fence: str | None = None  # the open code block's fence
    block: list[str] | None = None  # the open python block's lines
    block_start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if fence is not None:  # inside a code block
            if line.startswith(fence) and not line[len(fence) :].strip():
                if block is not None:
                    sections[-1].blocks.append((block_start, "\n".join(block)))
                fence = None
            elif block is not None:
                block.append(line)
            continue
        opening = _FENCE.match(line)
        if opening:
            fence = opening.group("fence")
            block = None
            if opening.group("language") == "python":
                if not sections:
                    raise ValueError(
                        f"{PAGE_NAME}:{number}: a python block before the first '## ' section "
                        "belongs to no recipe; move it into one (or into '## Set-up')"
                    )
                block, block_start = [], number + 1
            continue
        heading = _HEADING.match(line)
        if heading:
            sections.append(_Section(heading.group("title"), number, blocks=[]))
        elif (runs_on := _RUNS_ON.match(line)) and sections:
            sections[-1].backends = _backends(runs_on.group("names"), number)
    if fence is not None:
        raise ValueError(f"{PAGE_NAME}: a code block is never closed")
    return sections


def _padded(blocks: list[tuple[int, str]]) -> str:
    """The blocks joined, each starting on its own line number of the page."""
    lines: list[str] = []
    for first, code in blocks:
        lines += [""] * (first - 1 - len(lines))
        lines += code.splitlines()
    return "\n".join(lines) + "\n"


def read_page(text: str | None = None) -> tuple[str, list[Recipe]]:
    """``(set-up code, recipes)`` of the page (or of ``text``), checked for a clear shape.

    Every section with python code is a recipe that names its backends, except the set-up;
    a recipe without code or without a 'Runs on:' line is an error, so that nothing on the page
    escapes the tests.
    """
    if text is None:
        text = PAGE.read_text(encoding="utf-8")
    setup: str | None = None
    recipes = []
    for section in _sections(text):
        where = f"{PAGE_NAME}:{section.line} ({section.title!r})"
        if section.title == SETUP_TITLE:
            if not section.blocks:
                raise ValueError(f"{where}: the set-up section has no python block")
            setup = _padded(section.blocks)
        elif section.blocks and section.backends is None:
            raise ValueError(
                f"{where}: a recipe needs a line 'Runs on: TensorFlow, JAX.' naming the "
                "backends its code runs on"
            )
        elif section.backends is not None and not section.blocks:
            raise ValueError(f"{where}: names backends but has no python block to run")
        elif section.blocks:
            recipes.append(Recipe(section.title, section.backends, _padded(section.blocks)))
    if setup is None:
        raise ValueError(f"{PAGE_NAME}: no '## {SETUP_TITLE}' section with the recipes' set-up")
    return setup, recipes


def run(setup: str, recipe: Recipe) -> dict:
    """Run the set-up, then the recipe, in one fresh namespace; return that namespace."""
    namespace = {"__name__": "__main__"}
    exec(compile(setup, PAGE_NAME, "exec"), namespace)
    exec(compile(recipe.code, PAGE_NAME, "exec"), namespace)
    return namespace


_PROGRAM = '''"""The recipes of {page} for {backend}, with nothing but an installed course_lib."""

SETUP = {setup!r}
RECIPES = {recipes!r}

for title, code in RECIPES:
    namespace = {{"__name__": "__main__"}}
    exec(compile(SETUP, {page!r}, "exec"), namespace)
    exec(compile(code, {page!r}, "exec"), namespace)
    keras = namespace["keras"]
    if keras.backend.backend() == "jax":
        keras.distribution.set_distribution(None)
    keras.backend.clear_session()
    print(f"recipe ran: {{title}}", flush=True)
'''


def program(setup: str, recipes: list[Recipe], backend: str) -> str:
    """A self-contained Python program that runs the recipes naming ``backend``, one by one.

    It reads no file: the code is in the program, so it runs from any folder, and prints
    ``recipe ran: <title>`` after each recipe.
    """
    chosen = [(recipe.title, recipe.code) for recipe in recipes if recipe.runs_on(backend)]
    return _PROGRAM.format(page=PAGE_NAME, backend=backend, setup=setup, recipes=chosen)
