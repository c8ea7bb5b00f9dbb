"""Data-parallel training on JAX, over 2 devices or 2 processes, for tests/test_scale_out_jax.py.

JAX fixes its devices when it starts, and ``jax.distributed`` must be initialised before any
computation, so each scale-out run needs a fresh process: the tests start this file as a
worker (``python tests/jax_scale_out.py devices OUT.npz`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``, or ``... process COORDINATOR ID OUT.npz``
once per process) and compare what it saved with a one-device run of the same cases, which
:func:`train` gives in the test process itself.

The problem is the one of ``tests/test_soft_batch.py``: an MLP 6-8-2 on fixed random data,
micro-batches of 16 (SoftBatch, Keras's built-in accumulation) or batches of 16 (Lookahead),
without shuffling. Initial weights come from NumPy, so every process starts from the same ones.
"""

from __future__ import annotations

import course_lib  # noqa: F401  (quiet TensorFlow, should anything import it)

import os
import sys
from collections.abc import Callable

import numpy as np

MICRO = 16
STEPS = 4
PROCESSES = 2
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


def _optimizer(case: str):
    from course_lib.lookahead import Lookahead
    from course_lib.soft_batch import SoftBatch

    import keras

    inner = {
        "adam": lambda: keras.optimizers.Adam(0.01),
        "adam_clipnorm": lambda: keras.optimizers.Adam(0.01, clipnorm=0.05),
        "sgd_global_clipnorm": lambda: keras.optimizers.SGD(0.1, global_clipnorm=0.05),
    }
    kind, _, name = case.partition(":")
    if kind == "soft_batch":
        return SoftBatch(inner[name](), steps=STEPS)
    if kind == "lookahead":
        return Lookahead(inner[name](), sync_period=STEPS)
    if kind == "keras_accumulation":
        return keras.optimizers.Adam(0.01, gradient_accumulation_steps=STEPS)
    if kind == "big_batch":
        return inner[name]()
    raise ValueError(f"unknown case {case!r}")


#: Each case: (optimizer kind:inner, global batch size). SoftBatch and Keras's accumulation run
#: micro-batches of 16 (4 make a group of 64); the big batch is their one-device reference.
CASES: dict[str, int] = {
    "soft_batch:adam": MICRO,
    "soft_batch:adam_clipnorm": MICRO,
    "soft_batch:sgd_global_clipnorm": MICRO,
    "lookahead:adam": MICRO,
    "keras_accumulation:adam": MICRO,
    "big_batch:adam": MICRO * STEPS,
    "big_batch:adam_clipnorm": MICRO * STEPS,
    "big_batch:sgd_global_clipnorm": MICRO * STEPS,
}


#: What the workers train: the wrappers (clipping included) and Keras's accumulation on devices;
#: the wrappers across processes. Their references, the big batches, train on one device only.
DEVICE_CASES = [case for case in CASES if not case.startswith("big_batch:")]
PROCESS_CASES = [case for case in DEVICE_CASES if not case.startswith("keras_accumulation:")]


def train(case: str, shard: Callable[[np.ndarray, int], np.ndarray] | None = None) -> np.ndarray:
    """Two epochs of ``case`` from the shared initial weights; the final weights, flattened.

    ``shard(array, global_batch)`` gives this process's rows of every global batch (multi-process
    runs); ``None`` feeds the whole arrays.
    """
    import keras

    batch = CASES[case]
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(2)]
    )
    model.set_weights(INITIAL_WEIGHTS)
    model.compile(optimizer=_optimizer(case), loss="mse")
    x, y, local_batch = X, Y, batch
    if shard is not None:
        x, y, local_batch = shard(X, batch), shard(Y, batch), batch // PROCESSES
    model.fit(x, y, batch_size=local_batch, epochs=2, shuffle=False, verbose=0)
    return np.concatenate([w.ravel() for w in model.get_weights()])


def process_shard(process_id: int) -> Callable[[np.ndarray, int], np.ndarray]:
    """Process ``process_id``'s part of every global batch: its consecutive half of the rows."""

    def shard(array: np.ndarray, global_batch: int) -> np.ndarray:
        half = global_batch // PROCESSES
        batches = array.reshape(-1, global_batch, *array.shape[1:])
        return batches[:, process_id * half : (process_id + 1) * half].reshape(-1, *array.shape[1:])

    return shard


def _devices_worker(outfile: str) -> None:
    import jax
    import keras

    assert len(jax.devices()) == PROCESSES, f"expected 2 devices, got {jax.devices()}"
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    np.savez(outfile, **{case: train(case) for case in DEVICE_CASES}, devices=len(jax.devices()))


def _process_worker(coordinator: str, process_id: int, outfile: str) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras

    keras.distribution.initialize(coordinator, num_processes=PROCESSES, process_id=process_id)
    distribution = keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    weights = {case: train(case, process_shard(process_id)) for case in PROCESS_CASES}
    np.savez(outfile, **weights, devices=len(jax.devices()), processes=jax.process_count())


def main(argv: list[str]) -> int:
    os.environ["KERAS_BACKEND"] = "jax"
    if argv[:1] == ["devices"] and len(argv) == 2:
        _devices_worker(argv[1])
    elif argv[:1] == ["process"] and len(argv) == 4:
        _process_worker(argv[1], int(argv[2]), argv[3])
    else:
        print(
            "usage: jax_scale_out.py devices OUT.npz | process HOST:PORT ID OUT.npz",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
