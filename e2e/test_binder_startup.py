"""Binder's start-up, simulated: what mybinder.org does with binder/, in a fresh environment.

mybinder.org builds ``binder/environment.yml`` with conda, runs ``binder/postBuild`` from the
repository root, then starts every session through ``binder/start``. Here a fresh virtual
environment stands in for the conda one (no conda needed): it receives the file's pip list, then
``postBuild`` and ``start`` run exactly as written, with that environment first on PATH and
none of the variables that the Makefile exports, so ``start`` has to set them itself. Slow
(about two minutes: TensorFlow is unpacked into the new environment; pip's cache is reused).
"""

from __future__ import annotations

from course_lib.environment import TENSORFLOW_ENVIRONMENT

import os
import subprocess
import sys

import pytest
import yaml
from course_map import ROOT

BINDER = ROOT / "binder"
#: What binder/start must export: the values course_lib itself would set (the one source).
START_ENVIRONMENT = dict(TENSORFLOW_ENVIRONMENT)

SESSION_CHECK = """
import os, sys
from pathlib import Path
expected = {expected!r}
wrong = {{k: os.environ.get(k) for k, v in expected.items() if os.environ.get(k) != v}}
assert not wrong, f"binder/start did not set {{wrong}}"
import course_lib
assert Path(course_lib.__file__).resolve().is_relative_to(Path.cwd()), course_lib.__file__
import keras, tensorflow as tf
kernel_config = Path(sys.prefix, "etc", "ipython", "ipython_kernel_config.py")
assert kernel_config.exists(), f"postBuild did not install {{kernel_config}}"
course_lib.set_seed(42)
print(f"ok course_lib {{course_lib.__version__}} keras {{keras.__version__}} tf {{tf.__version__}}")
"""


def binder_pip_requirements() -> list[str]:
    """The ``pip:`` list of binder/environment.yml, as pip requirement strings."""
    spec = yaml.safe_load((BINDER / "environment.yml").read_text(encoding="utf-8"))
    for entry in spec["dependencies"]:
        if isinstance(entry, dict) and "pip" in entry:
            return [str(requirement) for requirement in entry["pip"]]
    raise AssertionError("binder/environment.yml has no pip: list")


def _run(command: list[str], env: dict[str, str], timeout: int) -> str:
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    shown = " ".join(command)[:200]
    assert done.returncode == 0, f"{shown} failed ({done.returncode}):\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def binder_env(tmp_path_factory) -> dict[str, str]:
    """A fresh venv with binder/environment.yml's pip list; the environment a session gets."""
    venv = tmp_path_factory.mktemp("binder") / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=120)
    # Nothing of this project's environment may leak in: no .venv on PATH, no exported TF_*.
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("PIP_", "HOME", "LANG", "LC_", "TMPDIR", "USER", "SSL_", "TERM"))
    }
    path = [str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]
    env = {**inherited, "PATH": os.pathsep.join(path), "VIRTUAL_ENV": str(venv)}
    _run(
        ["python", "-m", "pip", "install", "--quiet", "--no-compile", *binder_pip_requirements()],
        env,
        timeout=900,
    )
    return env


def test_the_pip_list_is_what_binder_installs():
    requirements = binder_pip_requirements()
    assert any(r.startswith("jupyterlab==") for r in requirements)
    assert any(r.startswith("keras==") for r in requirements)


def test_post_build_then_start_gives_a_working_session(binder_env):
    _run(["bash", str(BINDER / "postBuild")], binder_env, timeout=600)
    check = SESSION_CHECK.format(expected=START_ENVIRONMENT)
    output = _run(["bash", str(BINDER / "start"), "python", "-c", check], binder_env, timeout=300)
    assert "ok course_lib" in output
    assert "oneDNN" not in output, "TensorFlow's oneDNN banner: TF_ENABLE_ONEDNN_OPTS not set"


def test_start_runs_jupyterlab_with_the_python_kernel(binder_env):
    """binder/start must hand over to the command it is given: Binder passes jupyter lab."""
    pinned = next(r for r in binder_pip_requirements() if r.startswith("jupyterlab=="))
    version = _run(["bash", str(BINDER / "start"), "jupyter", "lab", "--version"], binder_env, 120)
    assert version.strip().splitlines()[-1] == pinned.split("==")[1]
    specs = _run(["bash", str(BINDER / "start"), "jupyter", "kernelspec", "list"], binder_env, 120)
    assert "python3" in specs
