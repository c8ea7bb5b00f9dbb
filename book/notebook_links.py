"""Sphinx extension: under each lesson's title, the notebook it is made from and a Binder link.

A reader of the website sees the stored outputs only; the line tells where the runnable
notebook is (its path in the repository, linked) and opens it on Binder in JupyterLab, with the
same URL pattern as the README's badge. The theme's header buttons offer the same in drop-down
menus; the line is there because on a phone those are easy to miss.

The repository and Binder settings are the ones Jupyter Book passes to the theme from
book/_config.yml (``repository`` and ``launch_buttons``), so they are written once.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlparse

from docutils import nodes
from sphinx.application import Sphinx

CSS_CLASS = "notebook-links"


def notebook_urls(options: dict, notebook: str) -> tuple[str, str]:
    """The notebook's page in the repository and its Binder URL, from the theme's options.

    ``notebook`` is the path from the repository root, e.g. ``notebooks/01_x.ipynb``.
    """
    repository = options["repository_url"].rstrip("/")
    branch = options.get("repository_branch", "HEAD")
    binder = options["launch_buttons"]["binderhub_url"].rstrip("/")
    owner_and_name = urlparse(repository).path.strip("/")
    source = f"{repository}/blob/{branch}/{notebook}"
    return source, f"{binder}/v2/gh/{owner_and_name}/{branch}?urlpath=lab/tree/{notebook}"


def _link(text: str, url: str) -> nodes.reference:
    return nodes.reference("", text, refuri=url, internal=False)


def add_notebook_links(app: Sphinx, doctree: nodes.document) -> None:
    """Insert the line after the first title of a page whose source is a notebook."""
    docname = app.env.docname
    if PurePosixPath(str(app.env.doc2path(docname, base=False))).suffix != ".ipynb":
        return
    options = app.config.html_theme_options
    folder = options.get("path_to_docs", "").strip("/")
    notebook = str(PurePosixPath(folder, docname).with_suffix(".ipynb"))
    source, binder = notebook_urls(options, notebook)
    line = nodes.paragraph(classes=[CSS_CLASS])
    line += nodes.Text("This page shows the notebook ")
    line += _link(notebook, source)
    line += nodes.Text(" with its stored outputs. Run it: ")
    line += _link("open it on Binder", binder)
    line += nodes.Text(", or locally with ")
    line += nodes.literal("", "make lab")
    line += nodes.Text(".")
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None or not section.children or not isinstance(section[0], nodes.title):
        doctree.insert(0, line)
    else:
        section.insert(1, line)


def setup(app: Sphinx) -> dict:
    app.connect("doctree-read", add_notebook_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
