"""Build the course website from the stored notebooks: ``make site`` runs this.

    python book/build.py [--output build/book]

Jupyter Book 1.x (Sphinx) renders each notebook with the outputs it stores; nothing is
executed. The sources are staged in ``OUTPUT/source`` (the index, the lessons, the docs pages
they link, MathJax) so that Sphinx reads a small folder rather than the whole repository, and
the table of contents is written there from book/contents.py. The website lands in
``OUTPUT/_build/html``; open its ``index.html``. Every build starts from an empty OUTPUT, so
every warning is reported every time and no page of a removed lesson survives; Sphinx warnings
(a dead link, an unknown reference) fail the build.

Nothing here needs the network: MathJax is the copy that ``npm ci --prefix book`` installed
from the pinned book/package-lock.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
CONFIG = BOOK / "_config.yml"
MATHJAX = BOOK / "node_modules" / "mathjax" / "es5"
DEFAULT_OUTPUT = ROOT / "build" / "book"
#: Folders copied into the staged sources: the pages and what they show (images).
STAGED_FOLDERS = ("notebooks", "docs")
#: In the staged sources, html_static_path's folder (see _config.yml): book/static's files
#: (our CSS) and MathJax.
STATIC = "_site_static"


def _load_contents():
    """book/contents.py, loaded by path: book/ is a folder of scripts, not a package."""
    spec = importlib.util.spec_from_file_location("book_contents", BOOK / "contents.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


contents = _load_contents()


@dataclass(frozen=True)
class BuiltSite:
    """Where the website is, what it holds, and how long the build took."""

    html: Path
    pages: list[str]  # source paths, in reading order
    seconds: float


def require_mathjax() -> Path:
    """The installed MathJax, or a clear error saying how to install it."""
    if not (MATHJAX / "tex-mml-chtml.js").exists():
        raise SystemExit(
            f"MathJax is missing ({MATHJAX.relative_to(ROOT)}): run `make site`, which installs "
            "it with `npm ci --prefix book` from book/package-lock.json"
        )
    return MATHJAX


def stage(source: Path, parts: list) -> None:
    """Fill ``source`` with the pages, the generated table of contents, our CSS and MathJax."""
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    for folder in STAGED_FOLDERS:
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    shutil.copytree(BOOK / "static", source / STATIC)
    shutil.copytree(require_mathjax(), source / STATIC / "mathjax")
    toc = contents.table_of_contents(parts)
    (source / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False), encoding="utf-8")


def jupyter_book_command(source: Path, output: Path) -> list[str]:
    """``jupyter-book build`` with our config; warnings are errors, all of them listed."""
    return [
        str(Path(sys.executable).with_name("jupyter-book")),
        "build",
        str(source),
        "--config",
        str(CONFIG),
        "--toc",
        str(source / "_toc.yml"),
        "--path-output",
        str(output),
        "--builder",
        "html",
        "-W",
        "--keep-going",
        "--quiet",
    ]


def _build_environment() -> dict[str, str]:
    """Sphinx documents this checkout's course_lib (docs/api.md), on the course's backend."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "KERAS_BACKEND": "tensorflow"}


def build(output: Path = DEFAULT_OUTPUT) -> BuiltSite:
    """Build the website under ``output`` (emptied first); raise if Jupyter Book fails."""
    started = time.perf_counter()
    parts = contents.course_parts()
    if output.exists():
        shutil.rmtree(output)
    source = output / "source"
    source.mkdir(parents=True)
    stage(source, parts)
    done = subprocess.run(jupyter_book_command(source, output), cwd=ROOT, env=_build_environment())
    if done.returncode != 0:
        raise SystemExit(f"jupyter-book build failed (exit code {done.returncode}); see above")
    return BuiltSite(
        html=output / "_build" / "html",
        pages=contents.reading_order(parts),
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="build folder")
    try:
        site = build(parser.parse_args(argv).output.resolve())
    except FileNotFoundError as error:  # the index links a lesson that is not there
        raise SystemExit(f"make site: {error}") from None
    index = site.html / "index.html"
    shown = index.relative_to(ROOT) if index.is_relative_to(ROOT) else index
    print(f"site: {len(site.pages)} pages in {site.seconds:.1f} s; open {shown}")


if __name__ == "__main__":
    main()
