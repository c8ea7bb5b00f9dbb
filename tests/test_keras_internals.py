"""The private APIs course_lib relies on (course_lib.keras_internals).

They may change in any Keras release. These tests fail, naming them, when the installed Keras is
not the pinned one or no longer has them, and when any module of the package (the mechanisms,
the exercises' checks, the Keras 2 appendix, the studies) uses a private API that
keras_internals does not list, with its reason, for that module.
"""

from __future__ import annotations

from course_lib.keras_internals import JAX_PRIVATE_APIS, PRIVATE_APIS, PRIVATE_APIS_ELSEWHERE
from course_lib.soft_batch import clip_gradients

import ast
import tomllib
from pathlib import Path

import keras
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "course_lib"
MODULES = sorted(PACKAGE.rglob("*.py"))
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


@pytest.mark.jax_only("the JAX trainer's attributes exist on the JAX backend only")
def test_the_jax_trainers_private_apis_are_there(float64):
    """The attributes of a JAX model that has trained (see JAX_PRIVATE_APIS)."""
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((2, 1)), np.ones((2, 1)), verbose=0)
    missing = [name for name in JAX_PRIVATE_APIS if not hasattr(model, name.split(".")[1])]
    assert not missing, f"the installed Keras's JAX trainer lacks {missing}"


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


#: Attributes of Keras objects that course_lib has used or may be tempted to use, private or
#: undocumented: flagged on any object, ``self`` included (a subclass of a Keras class inherits
#: them).
KERAS_PRIVATE_ATTRIBUTES = {
    "_make_function",
    "_get_variable_index",
    "_iterations",
    "_trainable_variables",
    "_check_variables_are_known",
    "_clip_gradients",
    "_compute_loss",
    "_call_has_training_arg",
    "_loss_tracker",
    "_losses_override",
    "_tracker",
    "_jax_state",
    "_var_key",
    # Public by its name but undocumented: the JAX trainer's own loss-and-gradient helper, which
    # hands layer losses over through the private _losses_override. The JAX skeleton runs
    # Keras's public forward pass and compute_loss under a StatelessScope instead.
    "compute_loss_and_updates",
}
#: Namespaces whose modules are private: Keras 3's and Keras 2's sources, TensorFlow's.
PRIVATE_NAMESPACES = ("keras.src", "tf_keras.src", "tensorflow.python")


def private_uses(path: Path) -> list[tuple[int, str]]:
    """Code (not prose) in ``path`` that uses a private API: ``(line, name)`` pairs.

    A name is a module of a private namespace, an attribute with a leading underscore read off
    another object than ``self`` or ``cls`` (``sys._getframe``, ``model._feed_inputs``), or one of
    :data:`KERAS_PRIVATE_ATTRIBUTES` on any object.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and not node.attr.startswith("__"):
            value = node.value
            on_self = isinstance(value, ast.Name) and value.id in ("self", "cls")
            private = node.attr.startswith("_") and not on_self
            if node.attr in KERAS_PRIVATE_ATTRIBUTES or private:
                owner = f"{value.id}." if isinstance(value, ast.Name) and value.id == "sys" else ""
                found.append((node.lineno, owner + node.attr))
        modules = []
        if isinstance(node, ast.ImportFrom):
            modules = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        found += [
            (node.lineno, m)
            for m in modules
            if any(m == space or m.startswith(space + ".") for space in PRIVATE_NAMESPACES)
        ]
    return found


def _allowed(path: Path) -> set[str]:
    relative = path.relative_to(PACKAGE).as_posix()
    if relative == "keras_internals.py":
        return {name.split(".")[-1] for name in (*PRIVATE_APIS, *JAX_PRIVATE_APIS)}
    return set(PRIVATE_APIS_ELSEWHERE.get(relative, {}))


def test_every_private_api_the_package_uses_is_listed_for_its_module():
    """The mechanisms, the checks, the Keras 2 appendix, the environment, the studies."""
    unlisted = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in MODULES
        for line, name in private_uses(path)
        if name not in _allowed(path)
    ]
    assert not unlisted, (
        "private APIs that course_lib/keras_internals.py does not list for the module that uses "
        "them (move them into keras_internals with the reason, or list them in "
        "PRIVATE_APIS_ELSEWHERE, and in CONTRIBUTING.md):\n" + "\n".join(unlisted)
    )


def test_every_private_api_listed_elsewhere_is_used_where_it_is_listed():
    """A list that names what is no longer used would hide what is."""
    for relative, names in PRIVATE_APIS_ELSEWHERE.items():
        used = {name for _, name in private_uses(PACKAGE / relative)}
        assert set(names) <= used, f"{relative} no longer uses {sorted(set(names) - used)}"


def test_the_guard_sees_a_private_api():
    """Guards the guard: a private call written the usual ways is found."""
    sample = ROOT / "tests" / "test_keras_internals.py"
    found = {name for _, name in private_uses(sample)}
    assert "_clip_gradients" in found  # optimizer._clip_gradients, in the clipping test above


def test_tensorflow_internal_namespace_is_used_nowhere():
    internal = "tf." + "__internal__"
    paths = [
        *(ROOT / "course_lib").rglob("*.py"),
        *(ROOT / "tests").glob("*.py"),
        *(ROOT / "benchmarks").glob("*.py"),
    ]
    found = [str(p.relative_to(ROOT)) for p in paths if internal in p.read_text()]
    assert not found, f"{internal} (no stability promise) is used in {found}"
