"""The quadratic loss L(p) = ½ pᵀAp as a Keras loss, shared by the training-step tests.

A bias-free ``Dense`` on an input of ones outputs its kernel p, so with this loss a model's
training is the gradient flow of the quadratic, whose exact steps the tests know in closed form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

#: The matrix most tests use: symmetric, positive definite, not diagonal.
A = np.array([[2.0, 0.5], [0.5, 4.0]])
#: The start point p0 of every quadratic test.
P0 = np.array([-5.0, -2.0])


def quadratic_loss_for(matrix: np.ndarray) -> Callable[[Any, Any], Any]:
    """A Keras loss ½ pᵀAp, where the model's output is p (``y_true`` is ignored)."""

    def quadratic_loss(y_true, y_pred):
        A = keras.ops.convert_to_tensor(matrix, dtype=y_pred.dtype)
        return 0.5 * keras.ops.sum(keras.ops.matmul(y_pred, A) * y_pred, axis=-1)

    return quadratic_loss
