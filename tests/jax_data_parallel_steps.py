"""Worker for tests/test_jax_training_steps.py: multi-gradient steps on 2 JAX devices or processes.

JAX fixes its devices when it starts, and ``jax.distributed`` must be initialised before any
computation, so the test runs this file in processes of its own, with ``KERAS_BACKEND=jax`` and
``JAX_ENABLE_X64=1``:

* ``devices METHOD...`` (with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``) trains
  each method on one device, then under ``keras.distribution.DataParallel`` over two;
* ``process HOST:PORT ID METHOD...`` (once per process, one device each) trains each method
  under ``DataParallel`` over both processes, this one feeding its half of every global batch.

It prints one JSON object on its last line: per run (``single``, ``parallel``), per method, the
weights and the per-epoch logs.
"""

from __future__ import annotations

import course_lib
from course_lib.adaptive import AdaptiveStepSize
from course_lib.runge_kutta import RungeKuttaModel, inject_runge_kutta
from course_lib.sam import SAMModel, inject_sam

import json
import sys

import jax
import keras
import numpy as np

from jax_scale_out import PROCESSES, process_shard

#: The methods the test compares, by name: (model class, settings, injection after compile).
METHODS = {
    "heun": (RungeKuttaModel, {"tableau": "heun"}, None),
    "sam": (SAMModel, {"rho": 0.05}, None),
    "adaptive": (
        RungeKuttaModel,
        {"tableau": "bogacki_shampine", "adaptive": AdaptiveStepSize(rtol=1e-4, atol=1e-6)},
        None,
    ),
    "heun_injected": (None, {}, lambda model: inject_runge_kutta(model, "heun")),
    "sam_injected": (None, {}, lambda model: inject_sam(model, rho=0.05)),
}
BATCH = 8
_rng = np.random.default_rng(1)
X = _rng.normal(size=(32, 5))
Y = X[:, :1] * 2 - X[:, 1:2]


def train(name: str, process_id: int | None = None) -> dict:
    """Two epochs of 4 global batches of 8; the weights and the per-epoch logs.

    With ``process_id``, this process feeds its consecutive half of every global batch. No
    BatchNormalization: under ``DataParallel`` on JAX, Keras's own step with it already differs
    from one device (by 5e-3 here), so it would test Keras, not the step.
    """
    cls, settings, inject = METHODS[name]
    x, y, batch = X, Y, BATCH
    if process_id is not None:
        shard = process_shard(process_id)
        x, y, batch = shard(X, BATCH), shard(Y, BATCH), BATCH // PROCESSES
    course_lib.set_seed(11)
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    outputs = keras.layers.Dense(1)(hidden)
    model = (cls or keras.Model)(inputs=inputs, outputs=outputs, **settings)
    model.compile(optimizer=keras.optimizers.SGD(0.2), loss="mse", metrics=["mae"])
    if inject is not None:
        inject(model)
    history = model.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0)
    weights = [np.asarray(v.numpy()).tolist() for layer in model.layers for v in layer.weights]
    return {
        "weights": weights,
        "logs": {k: list(map(float, v)) for k, v in history.history.items()},
    }


def _devices(names: list[str]) -> dict:
    assert len(jax.devices()) == 2, "start with XLA_FLAGS=--xla_force_host_platform_device_count=2"
    single = {name: train(name) for name in names}
    keras.backend.clear_session()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    return {"single": single, "parallel": {name: train(name) for name in names}}


def _processes(coordinator: str, process_id: int, names: list[str]) -> dict:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(coordinator, num_processes=PROCESSES, process_id=process_id)
    distribution = keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    assert jax.process_count() == PROCESSES and len(jax.devices()) == PROCESSES
    return {"parallel": {name: train(name, process_id) for name in names}}


def main(argv: list[str]) -> int:
    keras.config.set_floatx("float64")
    if argv[:1] == ["devices"] and len(argv) > 1:
        runs = _devices(argv[1:])
    elif argv[:1] == ["process"] and len(argv) > 3:
        runs = _processes(argv[1], int(argv[2]), argv[3:])
    else:
        print(
            "usage: jax_data_parallel_steps.py devices METHOD... | process HOST:PORT ID METHOD...",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
