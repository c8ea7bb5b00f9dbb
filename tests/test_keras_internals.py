"""The private Keras APIs course_lib relies on (course_lib.keras_internals).

They may change in any Keras release. These tests fail, naming them, when the installed Keras is
not the pinned one or no longer has them, and when a module other than keras_internals reaches
into Keras's private API.
"""

from __future__ import annotations

from course_lib.keras_internals import PRIVATE_APIS
from course_lib.soft_batch import clip_gradients

import ast
import tomllib
from pathlib import Path

import keras
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MECHANISMS = sorted(
    p
    for p in [
        *(ROOT / "course_lib").glob("*.py"),
        *(ROOT / "course_lib" / "distribution").glob("*.py"),
    ]
    if p.name != "keras_internals.py"
)
_LISTED = "\n".join(f"  {name}: {why}" for name, why in PRIVATE_APIS.items())


def _pinned_keras() -> str:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["dependencies"] if d.startswith("keras==")]
    assert len(pins) == 1, f"expected one keras== pin in pyproject.toml, found {pins}"
    return pins[0].removeprefix("keras==")


def test_installed_keras_is_the_pinned_version():
    pinned = _pinned_keras()
    assert keras.__version__ == pinned, (
        f"Keras {keras.__version__} is installed but pyproject.toml pins {pinned}. course_lib "
        "relies on these private Keras APIs (course_lib/keras_internals.py); check each against "
        f"the installed Keras before moving the pin:\n{_LISTED}"
    )


def test_every_private_api_is_still_there():
    variable = keras.Variable(np.zeros(2, "float32"))
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build([variable])
    owners = {"Model": keras.Model, "Optimizer": optimizer}
    missing = [
        name for name in PRIVATE_APIS if not hasattr(owners[name.split(".")[0]], name.split(".")[1])
    ]
    assert not missing, f"the installed Keras lacks {missing}; course_lib uses:\n{_LISTED}"


@pytest.mark.parametrize(
    "setting", [{"clipnorm": 0.5}, {"global_clipnorm": 0.5}, {"clipvalue": 0.1}, {}]
)
def test_soft_batch_clips_as_keras_does(setting):
    """SoftBatch repeats Keras's clipping rules; they must give Keras's numbers exactly.

    On each backend: TensorFlow's optimizer clips by norm with ``tf.clip_by_norm``, JAX's with
    ``BaseOptimizer``'s own formula.
    """
    rng = np.random.default_rng(0)
    grads = [keras.ops.convert_to_tensor(rng.normal(size=shape)) for shape in ((3, 2), (2,))]
    optimizer = keras.optimizers.SGD(0.1, **setting)
    settings = {name: setting.get(name) for name in ("clipnorm", "global_clipnorm", "clipvalue")}
    for ours, theirs in zip(
        clip_gradients(grads, **settings), optimizer._clip_gradients(grads), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    if setting:
        assert any(
            not np.array_equal(np.asarray(g), np.asarray(c))
            for g, c in zip(grads, clip_gradients(grads, **settings), strict=True)
        ), "the setting must clip these gradients, or the comparison shows nothing"


#: Private attributes of Keras objects that course_lib has used or may be tempted to use.
_PRIVATE_ATTRIBUTES = {
    "_make_function",
    "_get_variable_index",
    "_iterations",
    "_trainable_variables",
    "_check_variables_are_known",
    "_clip_gradients",
    "_compute_loss",
    "_call_has_training_arg",
    "_loss_tracker",
    "_tracker",
}


def _reaches_into_keras(path: Path) -> list[str]:
    """Code (not prose) in ``path`` that uses a private Keras attribute or imports keras.src."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in _PRIVATE_ATTRIBUTES:
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
        modules = []
        if isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        found += [
            f"{path.name}:{node.lineno}: import {m}"
            for m in modules
            if m == "keras.src" or m.startswith("keras.src.")
        ]
    return found


def test_only_keras_internals_reaches_into_keras():
    """The mechanisms and the studies; the exercises' solutions mirror the notebooks' cells."""
    paths = MECHANISMS + sorted((ROOT / "course_lib" / "studies").glob("*.py"))
    found = [line for path in paths for line in _reaches_into_keras(path)]
    assert not found, (
        "private Keras APIs outside course_lib/keras_internals.py (move them there, with the "
        "reason, and list them in CONTRIBUTING.md):\n" + "\n".join(found)
    )


def test_tensorflow_internal_namespace_is_used_nowhere():
    internal = "tf." + "__internal__"
    paths = [
        *(ROOT / "course_lib").rglob("*.py"),
        *(ROOT / "tests").glob("*.py"),
        *(ROOT / "benchmarks").glob("*.py"),
    ]
    found = [str(p.relative_to(ROOT)) for p in paths if internal in p.read_text()]
    assert not found, f"{internal} (no stability promise) is used in {found}"
