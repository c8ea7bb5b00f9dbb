"""Quiet, reproducible TensorFlow for every notebook and test (taught in 00_index).

TensorFlow reads its logging and oneDNN settings from environment variables once, when it is
first imported. `course_lib/__init__.py` therefore calls :func:`quiet_tensorflow` before it
imports anything that pulls TensorFlow in, so ``import course_lib`` as a notebook's first line is
enough. ``make lab``, ``make test`` and ``binder/start`` export the same variables, so a kernel
that imports TensorFlow first is quiet too.

TensorFlow is the course's backend; appendix A2 runs the same optimizers on JAX, and its kernel
calls :func:`select_backend` before Keras is imported, and a mechanism written per backend picks
its module with :func:`backend_module`. What one process cannot do together (train with Keras 2
in graph mode and with Keras 3, which needs eager execution; run a second Keras backend) runs in
a child process through :func:`run_module_in_subprocess`; :func:`no_retracing_warning` silences
one false alarm of TensorFlow's where many small functions are built on purpose.
"""

from __future__ import annotations

from course_lib.validation import require_choice, require_integer

import contextlib
import importlib
import importlib.abc
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Environment variables that make TensorFlow quiet and its CPU arithmetic repeatable.
TENSORFLOW_ENVIRONMENT: dict[str, str] = {
    # C++ log level 3: drop INFO, WARNING and ERROR lines. tf.data logs a harmless, timestamped
    # "NodeDef mentions attribute use_unbounded_threadpool" ERROR now and then when fit() reads
    # NumPy arrays; Python-side errors still raise as exceptions.
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # oneDNN prints a banner at import and reorders float sums from run to run.
    "TF_ENABLE_ONEDNN_OPTS": "0",
}


#: The Keras backends the course runs on (TensorFlow is the default).
SUPPORTED_BACKENDS: tuple[str, ...] = ("tensorflow", "jax")


def quiet_tensorflow() -> bool:
    """Set :data:`TENSORFLOW_ENVIRONMENT` unless the user chose other values.

    Returns ``False`` when TensorFlow was already imported: the settings then come too late for
    this process, and the caller may want to say so.
    """
    for name, value in TENSORFLOW_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    return "tensorflow" not in sys.modules


class _NoOptionalJax(importlib.abc.MetaPathFinder):
    """Refuse ``import jax`` to the two modules that load it only because it is installed.

    TensorFlow's ``tensorflow/lite/python/util.py`` (an optional ``jit`` for TFLite's converter)
    and Keras's ``keras/src/callbacks/orbax_checkpoint.py`` (a shim for JAX's monitoring API)
    import JAX whenever it is installed, inside ``try: ... except ImportError``, and both load at
    ``import keras``. Since the course installs JAX for appendices A2 and A3, every TensorFlow
    kernel would carry JAX along: about 0.14 GB of the 1 GB a Binder session is guaranteed. On
    the TensorFlow backend this finder makes those two imports fail as if JAX were absent; any
    other importer, a JAX-backend process, and any process that loaded JAX first get JAX as usual.
    """

    IMPORTERS = ("tensorflow.lite.python.util", "keras.src.callbacks.orbax_checkpoint")

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name != "jax" or os.environ.get("KERAS_BACKEND", "tensorflow") == "jax":
            return None
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_globals.get("__name__") in self.IMPORTERS:
                raise ImportError(f"course_lib keeps JAX out of {frame.f_globals['__name__']}")
            frame = frame.f_back
        return None


def keep_optional_jax_out() -> None:
    """Install :class:`_NoOptionalJax` once, before TensorFlow and Keras are imported."""
    if not any(isinstance(finder, _NoOptionalJax) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoOptionalJax())


class _DropRetracingWarning(logging.Filter):
    """Drop TensorFlow's "triggered tf.function retracing" warning, and only that one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def no_retracing_warning() -> Iterator[None]:
    """Silence TensorFlow's retracing warning inside the block; every other message still shows.

    TensorFlow counts traces per Python function, not per ``tf.function`` object: code that
    builds many small functions from one definition, each traced once (a check running several
    optimizers, a benchmark building dozens of models), looks to it like one function retracing.
    There the warning is a false positive; a real retrace outside such code still warns.
    """
    import tensorflow as tf

    logger, quiet = tf.get_logger(), _DropRetracingWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def set_seed(seed: int = 42) -> None:
    """Seed Python, NumPy and the Keras backend; on TensorFlow, ask for deterministic kernels.

    Call it before building each model, as the notebooks do, so that a cell re-run on its own
    gives the same numbers as a top-to-bottom run. (JAX's computations are deterministic on CPU
    without a switch.)

    Trap: while TensorFlow's op determinism is on, Keras quietly compiles ``jit_compile=True``
    models without XLA (it warns once). Code that must really run under XLA switches determinism
    off first, as the ``xla_allowed`` fixture in ``tests/conftest.py`` does.
    """
    require_integer(seed, "seed", minimum=0, example="set_seed(42)")
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def select_backend(backend: str) -> str:
    """Make Keras run on ``backend`` ("tensorflow" or "jax"); call it before importing Keras.

    Keras reads ``KERAS_BACKEND`` at its first import. ``keras.config.set_backend`` can switch a
    running process later, by reloading Keras's modules, but every Keras object made before the
    switch (layers, variables, tensors, the course's classes) is unusable afterwards. The course
    gives each backend a process of its own instead: this sets the variable, and raises if Keras
    is already loaded with another backend (restart the kernel, then call this first). Returns
    the backend.
    """
    require_choice(backend, "backend", SUPPORTED_BACKENDS)
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise RuntimeError(
                f"Keras is already imported and runs on {current!r}. The course runs each "
                "backend in a process of its own (keras.config.set_backend would reload Keras "
                "and leave every Keras object made so far unusable): restart the kernel and call "
                f"select_backend({backend!r}) before anything imports Keras."
            )
    os.environ["KERAS_BACKEND"] = backend
    return backend


def backend_module(modules: Mapping[str, str], what: str) -> Any:
    """Import the module of ``modules`` (backend name -> module) for the backend Keras runs on.

    Keras fixes its backend at its first import, so a mechanism with one implementation per
    backend chooses it once, at its own import, with this. ``what`` names the mechanism in the
    error raised for a backend the course does not support.
    """
    import keras

    backend = keras.backend.backend()
    if backend not in modules:
        raise ImportError(
            f"course_lib's {what} run on the {' and '.join(modules)} backends, but Keras runs on "
            f"{backend!r}. Set the environment variable KERAS_BACKEND=tensorflow (or jax) before "
            "Keras is imported."
        )
    return importlib.import_module(modules[backend])


def run_module_in_subprocess(
    module: str,
    kinds: Sequence[str],
    timeout: float = 300.0,
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``python -m module KIND[,KIND...] OUTFILE`` in a fresh process and load its results.

    For what one process cannot do together: train with Keras 2 in graph mode and with Keras 3
    (which needs eager execution), or run a second Keras backend. The module saves one ``.npz``
    with keys ``"KIND/NAME"``; this returns ``{kind: {name: array}}``. The child gets this
    interpreter, the course's quiet TensorFlow settings, ``environment`` on top, and this checkout
    of ``course_lib`` first on its path. A failure raises ``RuntimeError`` with the child's last
    lines of output, not a bare exit code.
    """
    import numpy as np

    kinds = list(kinds)
    root = str(Path(__file__).resolve().parent.parent)
    child = {**os.environ, **TENSORFLOW_ENVIRONMENT, **(environment or {})}
    child["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory() as folder:
        outfile = Path(folder) / "weights.npz"
        completed = subprocess.run(
            [sys.executable, "-m", module, ",".join(kinds), str(outfile)],
            env=child,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if completed.returncode != 0 or not outfile.exists():
            tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
            settings = "".join(f"{name}={value} " for name, value in (environment or {}).items())
            raise RuntimeError(
                f"`{settings}python -m {module} {','.join(kinds)}` failed (exit code "
                f"{completed.returncode}); its last output lines:\n{tail}"
            )
        results: dict[str, Any] = {kind: {} for kind in kinds}
        with np.load(outfile) as saved:
            for key in saved.files:
                kind, name = key.split("/", 1)
                results[kind][name] = saved[key]
    return results
