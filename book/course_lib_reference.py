"""Sphinx extension: the API reference of course_lib, generated from its docstrings (docs/api.md).

docs/api.md groups the modules in the course's order; for each it says, inside an ``eval-rst``
block, ``.. course-lib-module:: course_lib.soft_batch``. That directive documents the module
with autodoc (napoleon reads the numpy-style sections): its docstring, then every public class,
function and documented constant it defines, in source order. A name that ``course_lib``
re-exports is documented under that name (``course_lib.SoftBatch``), any other under its module
(``course_lib.plots.method_colour``); either way the page has an anchor with that dotted name,
and an exported name also answers to its module path (``#course_lib.soft_batch.SoftBatch``).

The lesson that builds a name is a link: each mention of a notebook in a module docstring
("notebook 05", "notebooks 04, 05, 07", "appendix A2", "03_soft_batch") becomes a link to its
page, and every module and name ends with a "Lessons:" line, from its module docstring's summary
and from the "Modules by notebook" list in course_lib/__init__.py (which also names single
functions, such as ``environment.select_backend`` for A2).

The anchors are registered as MyST link targets, so a lesson or a page links to a name with an
ordinary markdown link, ``[SoftBatch](../docs/api.md#course_lib.SoftBatch)``, which JupyterLab
opens as a file and the website as the reference; a link to a name the reference lacks fails the
build. The build fails too when a module of ``course_lib.__all__`` or an exported name has no
place on the page (book/reference_rules.py says what the page holds, and which modules it leaves
out, with the reason).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from reference_rules import (
    NOT_DOCUMENTED,
    PACKAGE,
    Lessons,
    escape_bars,
    exported_names,
    lessons_line,
    link_lessons_in_docstring,
    outside_literal_blocks,
    public_modules,
)

logger = logging.getLogger(__name__)


def _lessons(app: Sphinx) -> Lessons:
    if not hasattr(app, "_course_lib_lessons"):
        app._course_lib_lessons = Lessons(Path(app.srcdir))
    return app._course_lib_lessons


# ---- what a module documents -------------------------------------------------------------------


def _defines(module, name: str, value) -> bool:
    return getattr(value, "__module__", None) == module.__name__ and (
        inspect.isclass(value) or inspect.isfunction(value)
    )


def public_members(module_name: str) -> list[tuple[str, str, object]]:
    """``(name, kind, value)`` of a module's public classes, functions and documented constants.

    In source order. A module's ``__all__``, where it has one, decides what is public; else every
    name without a leading underscore that the module defines (not one it imports). A constant
    counts when a ``#:`` comment documents it.
    """
    module = importlib.import_module(module_name)
    analyzer = ModuleAnalyzer.for_module(module_name)
    analyzer.analyze()
    documented = {name for (scope, name) in analyzer.attr_docs if scope == ""}
    candidates = getattr(module, "__all__", None) or [n for n in vars(module) if n[0] != "_"]
    members = []
    for name in candidates:
        value = getattr(module, name, None)
        if _defines(module, name, value):
            kind = (
                "exception"
                if isinstance(value, type) and issubclass(value, BaseException)
                else ("class" if inspect.isclass(value) else "function")
            )
        elif name in documented and not inspect.ismodule(value):
            kind = "data"
        else:
            continue
        members.append((name, kind, value))
    order = analyzer.tagorder
    return sorted(members, key=lambda member: order.get(member[0], len(order)))


def _data_lines(public_name: str, module_name: str, name: str, value) -> list[str]:
    """``py:data`` for a constant: its ``#:`` comment, and its value or keys if they are short."""
    analyzer = ModuleAnalyzer.for_module(module_name)
    analyzer.analyze()
    module, _, short = public_name.rpartition(".")
    lines = [f".. py:data:: {short}", f"   :module: {module}"]
    shown = repr(value)
    if len(shown) <= 70:
        lines.append(f"   :value: {shown}")
    lines.append("")
    lines += [f"   {line}" for line in analyzer.attr_docs.get(("", name), [])]
    if isinstance(value, dict) and len(shown) > 70 and all(isinstance(k, str) for k in value):
        lines += ["", "   Keys: " + ", ".join(f"``{key}``" for key in value)]
    return lines


class CourseLibModule(SphinxDirective):
    """``.. course-lib-module:: course_lib.soft_batch``: the module and its public names."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module_name = self.arguments[0]
        lessons = _lessons(self.env.app)
        exported = exported_names()
        lines = [f".. automodule:: {module_name}", ""]
        for name, kind, value in public_members(module_name):
            public = (
                f"{PACKAGE}.{name}"
                if exported.get(name) == module_name
                else f"{module_name}.{name}"
            )
            if kind == "data":
                lines += _data_lines(public, module_name, name, value)
                lesson_line = lessons_line(lessons.of_name(module_name, name), lessons.docs)
                lines += [f"   {line}" if line else "" for line in lesson_line]
            else:
                lines.append(f".. auto{kind}:: {public}")
                if kind != "function":
                    lines.append("   :members:")
            lines.append("")
        self.env.note_dependency(importlib.import_module(module_name).__file__)
        self.env.course_lib_modules = {*getattr(self.env, "course_lib_modules", set()), module_name}
        content = StringList(lines, source=f"<course-lib-module {module_name}>")
        container = nodes.container(classes=["course-lib-module"])
        self.state.nested_parse(content, self.content_offset, container)
        _add_module_path_ids(container, exported)
        return container.children


def _add_module_path_ids(tree: nodes.Element, exported: dict[str, str]) -> None:
    """``course_lib.soft_batch.SoftBatch`` as a second anchor of ``course_lib.SoftBatch``."""
    for signature in tree.findall(addnodes.desc_signature):
        for node_id in list(signature["ids"]):
            name = node_id.removeprefix(f"{PACKAGE}.")
            if node_id.startswith(f"{PACKAGE}.") and name in exported:
                alias = f"{exported[name]}.{name}"
                if alias not in signature["ids"]:
                    signature["ids"].append(alias)


# ---- docstrings --------------------------------------------------------------------------------


def process_docstring(app: Sphinx, what: str, name: str, obj, options, lines: list[str]) -> None:
    """Link the notebooks a module docstring names; end modules and names with their lessons."""
    lessons = _lessons(app)
    lines[:] = outside_literal_blocks(lines, escape_bars)
    if what == "module":
        lines[:] = link_lessons_in_docstring(lines, lessons.docs)
        lines += lessons_line(lessons.of_module(name), lessons.docs)
    elif what in ("class", "exception", "function") and inspect.getmodule(obj) is not None:
        module_name = obj.__module__
        if name.count(".") <= module_name.count(".") + 1 and module_name.startswith(PACKAGE):
            lines += lessons_line(lessons.of_name(module_name, obj.__name__), lessons.docs)


def skip_member(app: Sphinx, what: str, name: str, obj, skip: bool, options) -> bool | None:
    """Leave out a named tuple's generated field accessors ("Alias for field number 0")."""
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


# ---- anchors as MyST link targets, and completeness --------------------------------------------


def register_link_targets(app: Sphinx, doctree: nodes.document) -> None:
    """Let ``[text](api.md#course_lib.SoftBatch)`` resolve: each object's or module's id becomes
    a MyST link target of its page (a module's id, ``module-course_lib.plots``, sits on the
    node after its target by then)."""
    ids = [
        node_id
        for node in doctree.findall(nodes.Element)
        for node_id in node.get("ids", [])
        if node_id.startswith((f"{PACKAGE}.", f"module-{PACKAGE}."))
    ]
    if ids:
        slugs = app.env.metadata[app.env.docname].setdefault("myst_slugs", {})
        for node_id in ids:
            slugs.setdefault(node_id, (0, node_id, node_id.removeprefix("module-")))


def check_completeness(app: Sphinx, env) -> None:
    """Warn (an error under ``-W``) about a public module or exported name the reference lacks."""
    documented = getattr(env, "course_lib_modules", set())
    if not documented:
        return  # a build without the reference page
    for module_name in public_modules():
        if module_name not in documented and module_name not in NOT_DOCUMENTED:
            logger.warning(
                f"the API reference has no '.. course-lib-module:: {module_name}' (docs/api.md): "
                "add it, or list the module in NOT_DOCUMENTED (book/reference_rules.py) with "
                "the reason"
            )
    objects = env.get_domain("py").objects
    for name in exported_names():
        if f"{PACKAGE}.{name}" not in objects:
            logger.warning(f"the API reference does not document the exported name {name!r}")


def merge_modules(app: Sphinx, env, docnames, other) -> None:
    env.course_lib_modules = {
        *getattr(env, "course_lib_modules", set()),
        *getattr(other, "course_lib_modules", set()),
    }


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx.ext.autodoc")
    app.setup_extension("sphinx.ext.napoleon")
    app.add_directive("course-lib-module", CourseLibModule)
    app.connect("autodoc-process-docstring", process_docstring)
    app.connect("autodoc-skip-member", skip_member)
    app.connect("doctree-read", register_link_targets)
    app.connect("env-check-consistency", check_completeness)
    app.connect("env-merge-info", merge_modules)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
