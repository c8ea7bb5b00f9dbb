"""The pins live in pyproject.toml; the conda and Binder files must say exactly the same."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from child_processes import run_python

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pip_section(path: Path) -> list[str]:
    environment = yaml.safe_load(path.read_text())
    pip_lists = [item["pip"] for item in environment["dependencies"] if isinstance(item, dict)]
    assert len(pip_lists) == 1, f"{path.name} must have exactly one pip: section"
    return pip_lists[0]


def test_every_pyproject_dependency_is_pinned_exactly():
    project = _pyproject()["project"]
    requirements = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    unpinned = [r for r in requirements if "==" not in r.split(";")[0]]
    assert not unpinned, f"pin these with ==: {unpinned}"


def test_binder_environment_repeats_the_runtime_and_lab_pins():
    project = _pyproject()["project"]
    expected = project["dependencies"] + project["optional-dependencies"]["lab"]
    assert _pip_section(ROOT / "binder" / "environment.yml") == expected


def test_local_conda_environment_repeats_every_pin():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    expected = project["dependencies"] + extras["lab"] + extras["test"]
    assert _pip_section(ROOT / "environment.yml") == expected


def test_conda_files_ask_for_the_same_python():
    def python_of(path: Path) -> str:
        deps = yaml.safe_load(path.read_text())["dependencies"]
        return next(d for d in deps if isinstance(d, str) and d.startswith("python"))

    assert python_of(ROOT / "environment.yml") == python_of(ROOT / "binder" / "environment.yml")
    minimum = _pyproject()["project"]["requires-python"].removeprefix(">=")
    assert python_of(ROOT / "environment.yml") == f"python={minimum}"


@pytest.mark.parametrize("script", ["postBuild", "start"])
def test_binder_scripts_are_executable_bash(script):
    path = ROOT / "binder" / script
    assert os.access(path, os.X_OK), f"binder/{script} must be executable (chmod +x)"
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_post_build_stops_on_errors_and_installs_course_lib():
    text = (ROOT / "binder" / "postBuild").read_text()
    assert "set -e" in text
    assert "pip install --no-deps -e ." in text


def test_binder_start_sets_tensorflow_environment_and_runs_its_command():
    probe = (
        "import os, sys; "
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], os.environ['TF_ENABLE_ONEDNN_OPTS']); "
        "sys.exit(7)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    result = subprocess.run(
        [str(ROOT / "binder" / "start"), "python3", "-c", probe],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.stdout.split() == ["3", "0"]
    assert result.returncode == 7, "binder/start must exec its arguments (exit code passes through)"


def test_environment_variables_agree_everywhere():
    from course_lib.environment import TENSORFLOW_ENVIRONMENT

    start = (ROOT / "binder" / "start").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for name, value in TENSORFLOW_ENVIRONMENT.items():
        assert f"export {name}={value}" in start
        assert f"export {name} := {value}" in makefile


def test_readme_badge_opens_the_index_in_jupyterlab():
    readme = (ROOT / "README.md").read_text()
    assert "mybinder.org/v2/" in readme
    assert "urlpath=lab/tree/notebooks/00_index.ipynb" in readme


def test_ci_runs_the_readme_test_command_then_the_browser_tests():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make lab" in readme
    assert readme.index("make lab") < readme.index("mybinder.org")
    commands = [
        line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == ["make test", "make e2e"]


def test_no_deps_pins_are_exact_and_installed_without_the_full_tensorflow():
    import importlib.metadata as metadata

    sys.path.insert(0, str(ROOT / "tools"))
    from pins import pins

    no_deps = pins("no-deps")
    assert no_deps and all("==" in r for r in no_deps)
    for requirement in no_deps:
        name, version = requirement.split("==")
        assert metadata.version(name) == version, f"{name} is not installed at {version}"
    # The point of --no-deps: the CPU wheel stays the only TensorFlow.
    if sys.platform != "darwin":
        with pytest.raises(metadata.PackageNotFoundError):
            metadata.version("tensorflow")


def test_keras2_imports_beside_tensorflow_cpu():
    probe = (
        "import tensorflow as tf, tf_keras, keras; "
        "print(tf.__version__, tf_keras.__version__, keras.__version__.split('.')[0])"
    )
    result = run_python(probe, backend="tensorflow")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["2.21.0", "2.21.0", "3"]


def test_scripts_install_the_no_deps_pins():
    assert "tools/pins.py no-deps" in (ROOT / "Makefile").read_text()
    assert "tools/pins.py no-deps" in (ROOT / "binder" / "postBuild").read_text()
