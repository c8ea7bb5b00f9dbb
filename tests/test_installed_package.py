"""course_lib installed, not cloned: its wheel, in a fresh environment, runs every recipe.

A learner takes the library home with ``pip install path/to/course``: a wheel of ``course_lib``
alone, with no notebook, docs page, test helper or repository path beside it. This test builds
that wheel from a copy of what the wheel is made of (pyproject.toml, README.md, course_lib/),
installs it (not editable) into a new virtual environment outside the checkout, and runs the
recipes of docs/recipes.md there, each on the backends it names, from a program that carries
their code (tests/recipes_page.py), in a folder of its own. The JAX run gets two CPU devices, so
the ``DataParallel`` recipe really splits its batches.

No network: the wheel is built with the shared environment's setuptools (no build isolation) and
installed with ``--no-index --no-deps``. The new environment reaches the pinned dependencies
through one line in a ``.pth`` file naming the shared environment's site-packages; Python only
appends that folder to ``sys.path`` and reads no ``.pth`` file inside it, so the editable
course_lib installed there is not importable, and the test checks that the one imported is the
installed copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from recipes_page import ROOT, program, read_page

#: What the wheel is built from (pyproject.toml names README.md as the package's readme).
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "course_lib")
TIMEOUT_S = 300


def _run(command: list, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _pip(python: Path | str, *arguments: object) -> list:
    """pip run by ``python``, offline, ignoring pip's configuration files and variables."""
    return [python, "-m", "pip", "--isolated", "--disable-pip-version-check", *arguments]


def _wheel(workspace: Path) -> Path:
    """``pip wheel`` of a copy of the package's sources (the build writes beside its sources)."""
    sources = workspace / "source"
    sources.mkdir()
    for name in PACKAGE_SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(ROOT / name, sources / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, sources / name)
    dist = workspace / "dist"
    build = ["wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation", "-w", dist]
    _run(_pip(sys.executable, *build, sources), cwd=workspace)
    [wheel] = dist.glob("course_lib-*.whl")
    return wheel


def _shared_site_packages() -> list[str]:
    """This environment's site-packages folders (one on Linux), where the pins are installed."""
    found = (str(Path(sysconfig.get_path(kind)).resolve()) for kind in ("purelib", "platlib"))
    return list(dict.fromkeys(found))


def _fresh_environment(workspace: Path, env: dict) -> Path:
    """A new venv whose site-packages also reaches the shared one's; returns its python."""
    venv = workspace / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=workspace)
    python = venv / "bin" / "python"
    ask = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(_run([python, "-c", ask], cwd=workspace, env=env).strip())
    shared = "\n".join(_shared_site_packages())
    (site / "shared_dependencies.pth").write_text(shared + "\n", encoding="utf-8")
    return python


def _imported_from(python: Path, cwd: Path, env: dict) -> tuple[Path, list[str]]:
    """Where ``python`` imports course_lib from, and its ``sys.path``."""
    ask = "import course_lib, json, sys; print(json.dumps([course_lib.__file__, sys.path]))"
    file, path = json.loads(_run([python, "-c", ask], cwd=cwd, env=env))
    return Path(file), path


def test_the_installed_wheel_runs_every_recipe_outside_the_checkout(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONNOUSERSITE"] = "1"
    wheel = _wheel(tmp_path)
    python = _fresh_environment(tmp_path, env)
    install = ["install", "--quiet", "--no-deps", "--no-index", "--ignore-installed", wheel]
    _run(_pip(python, *install), cwd=tmp_path, env=env)
    project = tmp_path / "project"  # the learner's own folder
    project.mkdir()

    file, path = _imported_from(python, project, env)
    assert file.is_relative_to(tmp_path / "env"), f"course_lib imported from {file}"
    shared = _shared_site_packages()
    in_checkout = [
        entry
        for entry in path
        if entry and entry not in shared and Path(entry).resolve().is_relative_to(ROOT.resolve())
    ]
    assert not in_checkout, f"the checkout is on the installed environment's path: {in_checkout}"

    setup, recipes = read_page()
    for backend in ("tensorflow", "jax"):
        script = project / f"recipes_on_{backend}.py"  # not jax.py: it would shadow JAX
        script.write_text(program(setup, recipes, backend), encoding="utf-8")
        settings = {"KERAS_BACKEND": backend}
        if backend == "jax":
            settings["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        printed = _run([python, script.name], cwd=project, env={**env, **settings})
        ran = [
            line[len("recipe ran: ") :]
            for line in printed.splitlines()
            if line.startswith("recipe ran: ")
        ]
        assert ran == [recipe.title for recipe in recipes if recipe.runs_on(backend)], printed
        if backend == "jax":
            assert "trained on 2 device(s)" in printed, printed
