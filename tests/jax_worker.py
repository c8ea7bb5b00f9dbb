"""Worker for tests/test_scale_out_jax.py: training on 2 JAX devices or 2 processes.

JAX fixes its devices when it starts, and ``jax.distributed`` must be initialised before any
computation, so each scale-out run is a process of its own (started by
:mod:`child_processes`, with ``KERAS_BACKEND=jax`` and ``JAX_ENABLE_X64=1``):

* ``python jax_worker.py devices OUT.json CASE...`` (with
  ``XLA_FLAGS=--xla_force_host_platform_device_count=2``) trains each case on one device, then
  under ``keras.distribution.DataParallel`` over both (the one-device references only once);
* ``python jax_worker.py process HOST:PORT ID OUT.json CASE...``, once per process with one
  device each, trains each case under ``DataParallel`` over both processes, this one feeding its
  consecutive half of every global batch.

The cases (:data:`CASES`): the optimizer wrappers (SoftBatch, clipping included, Lookahead,
Keras's own accumulation, and their big-batch references) on an MLP 6-8-2 in float32, from
NumPy's initial weights; the multi-gradient skeleton (the probe rule of ``probe_method.py`` on
both routes) and the adaptive controller on an MLP 5-8-1 in float64. Each run is saved as its
final weights, flattened, and its per-epoch logs, in one JSON file.
"""

from __future__ import annotations

import course_lib  # noqa: F401  (quiet TensorFlow, should anything import it)

import json
import sys
from collections.abc import Callable

import numpy as np

PROCESSES = 2
MICRO = 16
STEPS = 4
_rng = np.random.default_rng(0)
X = _rng.normal(size=(128, 6)).astype("float32")
Y = _rng.normal(size=(128, 2)).astype("float32")
_init = np.random.default_rng(42)
INITIAL_WEIGHTS = [
    _init.uniform(-0.6, 0.6, size=(6, 8)).astype("float32"),
    np.zeros(8, "float32"),
    _init.uniform(-0.6, 0.6, size=(8, 2)).astype("float32"),
    np.zeros(2, "float32"),
]
_steps_rng = np.random.default_rng(1)
STEP_X = _steps_rng.normal(size=(32, 5))
STEP_Y = STEP_X[:, :1] * 2 - STEP_X[:, 1:2]
STEP_BATCH = 8

#: Each wrapper case: its global batch size. SoftBatch and Keras's accumulation run
#: micro-batches of 16 (4 make a group of 64); the big batches are their one-device references.
WRAPPER_CASES: dict[str, int] = {
    "soft_batch:adam": MICRO,
    "soft_batch:adam_clipnorm": MICRO,
    "soft_batch:sgd_global_clipnorm": MICRO,
    "lookahead:adam": MICRO,
    "keras_accumulation:adam": MICRO,
    "big_batch:adam": MICRO * STEPS,
    "big_batch:adam_clipnorm": MICRO * STEPS,
    "big_batch:sgd_global_clipnorm": MICRO * STEPS,
}
#: Each training-step case: (method's routes, route, settings).
STEP_CASES: dict[str, tuple[str, str, dict]] = {
    "probe": ("probe_method", "clean", {"reach": 0.05}),
    "probe_injected": ("probe_method", "intrusive", {"reach": 0.05}),
    "adaptive": (
        "course_lib.runge_kutta",
        "clean",
        {"tableau": "bogacki_shampine", "adaptive": {"rtol": 1e-4, "atol": 1e-6}},
    ),
}
CASES = [*WRAPPER_CASES, *STEP_CASES]
#: Cases trained on one device only: the references.
REFERENCES = [case for case in CASES if case.startswith("big_batch:")]


def process_shard(process_id: int) -> Callable[[np.ndarray, int], np.ndarray]:
    """Process ``process_id``'s part of every global batch: its consecutive half of the rows."""

    def shard(array: np.ndarray, global_batch: int) -> np.ndarray:
        half = global_batch // PROCESSES
        batches = array.reshape(-1, global_batch, *array.shape[1:])
        return batches[:, process_id * half : (process_id + 1) * half].reshape(-1, *array.shape[1:])

    return shard


def _wrapper_model(case: str) -> tuple:
    from course_lib.lookahead import Lookahead
    from course_lib.soft_batch import SoftBatch

    import keras

    inner = {
        "adam": lambda: keras.optimizers.Adam(0.01),
        "adam_clipnorm": lambda: keras.optimizers.Adam(0.01, clipnorm=0.05),
        "sgd_global_clipnorm": lambda: keras.optimizers.SGD(0.1, global_clipnorm=0.05),
    }
    kind, _, name = case.partition(":")
    optimizer = {
        "soft_batch": lambda: SoftBatch(inner[name](), steps=STEPS),
        "lookahead": lambda: Lookahead(inner[name](), sync_period=STEPS),
        "keras_accumulation": lambda: keras.optimizers.Adam(
            0.01, gradient_accumulation_steps=STEPS
        ),
        "big_batch": inner[name],
    }[kind]()
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(2)]
    )
    model.set_weights(INITIAL_WEIGHTS)
    model.compile(optimizer=optimizer, loss="mse")
    return model, X, Y, WRAPPER_CASES[case]


def _step_model(case: str) -> tuple:
    """No BatchNormalization: under ``DataParallel`` on JAX, Keras's own step with it already
    differs from one device (by 5e-3 here), so it would test Keras, not the step."""
    import importlib

    import keras

    from multi_gradient_routes import on_route

    module, route, settings = STEP_CASES[case]
    course_lib.set_seed(11)
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    outputs = keras.layers.Dense(1)(hidden)
    compile_settings = {"optimizer": keras.optimizers.SGD(0.2), "loss": "mse", "metrics": ["mae"]}
    model = on_route(
        importlib.import_module(module).ROUTES, route, inputs, outputs, compile_settings, **settings
    )
    return model, STEP_X, STEP_Y, STEP_BATCH


def train(case: str, process_id: int | None = None) -> dict:
    """Two epochs of ``case``, unshuffled: the final weights, flattened, and the per-epoch logs.

    With ``process_id``, this process feeds its half of every global batch.
    """
    import keras

    dtype = "float32" if case in WRAPPER_CASES else "float64"
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    build = _wrapper_model if case in WRAPPER_CASES else _step_model
    model, x, y, batch = build(case)
    if process_id is not None:
        shard = process_shard(process_id)
        x, y, batch = shard(x, batch), shard(y, batch), batch // PROCESSES
    history = model.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0)
    weights = np.concatenate([np.asarray(w, "float64").ravel() for w in model.get_weights()])
    return {
        "weights": weights.tolist(),
        "logs": {k: [float(v) for v in values] for k, values in history.history.items()},
    }


def _devices(cases: list[str]) -> dict:
    import jax
    import keras

    assert len(jax.devices()) == 2, "start with XLA_FLAGS=--xla_force_host_platform_device_count=2"
    single = {case: train(case) for case in cases}
    keras.backend.clear_session()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    parallel = {case: train(case) for case in cases if case not in REFERENCES}
    return {"devices": len(jax.devices()), "single": single, "parallel": parallel}


def _processes(coordinator: str, process_id: int, cases: list[str]) -> dict:
    import jax
    import keras

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(coordinator, num_processes=PROCESSES, process_id=process_id)
    distribution = keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    parallel = {case: train(case, process_id) for case in cases}
    return {"devices": len(jax.devices()), "processes": jax.process_count(), "parallel": parallel}


def main(argv: list[str]) -> int:
    if argv[:1] == ["devices"] and len(argv) > 2:
        runs, outfile = _devices(argv[2:]), argv[1]
    elif argv[:1] == ["process"] and len(argv) > 4:
        runs, outfile = _processes(argv[1], int(argv[2]), argv[4:]), argv[3]
    else:
        print(
            "usage: jax_worker.py devices OUT.json CASE... | process HOST:PORT ID OUT.json CASE...",
            file=sys.stderr,
        )
        return 2
    with open(outfile, "w") as out:
        json.dump(runs, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
