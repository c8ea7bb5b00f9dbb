"""Worker for tests/test_jax_training_steps.py: multi-gradient steps on 1 and 2 JAX devices.

JAX fixes its devices when it starts, so the test runs this file in a process of its own with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``, ``KERAS_BACKEND=jax`` and
``JAX_ENABLE_X64=1``. It trains the same small MLP on one device and under
``keras.distribution.DataParallel`` over two, for each method named on the command line, and
prints one JSON object: per method, the weights and the logs of both runs.
"""

from __future__ import annotations

import course_lib
from course_lib.adaptive import AdaptiveStepSize
from course_lib.runge_kutta import RungeKuttaModel
from course_lib.sam import SAMModel

import json
import sys

import jax
import keras
import numpy as np

#: The methods the test compares, by name: (model class, settings).
METHODS = {
    "heun": (RungeKuttaModel, {"tableau": "heun"}),
    "sam": (SAMModel, {"rho": 0.05}),
    "adaptive": (
        RungeKuttaModel,
        {"tableau": "bogacki_shampine", "adaptive": AdaptiveStepSize(rtol=1e-4, atol=1e-6)},
    ),
}


def train(name: str) -> dict:
    """Two epochs of 4 batches of 8; the weights and the per-epoch logs.

    No BatchNormalization: under ``DataParallel`` on JAX, Keras's own step with it already
    differs from one device (by 5e-3 here), so it would test Keras, not the step.
    """
    cls, settings = METHODS[name]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 5))
    y = x[:, :1] * 2 - x[:, 1:2]
    course_lib.set_seed(11)
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    outputs = keras.layers.Dense(1)(hidden)
    model = cls(inputs=inputs, outputs=outputs, **settings)
    model.compile(optimizer=keras.optimizers.SGD(0.2), loss="mse", metrics=["mae"])
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    weights = [np.asarray(v.numpy()).tolist() for layer in model.layers for v in layer.weights]
    return {
        "weights": weights,
        "logs": {k: list(map(float, v)) for k, v in history.history.items()},
    }


def main(names: list[str]) -> None:
    keras.config.set_floatx("float64")
    assert len(jax.devices()) == 2, "start with XLA_FLAGS=--xla_force_host_platform_device_count=2"
    single = {name: train(name) for name in names}
    keras.backend.clear_session()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    parallel = {name: train(name) for name in names}
    print(json.dumps({"single": single, "parallel": parallel}))


if __name__ == "__main__":
    main(sys.argv[1:])
