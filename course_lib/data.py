"""Offline data sets for the course (used from notebook 02 on).

Nothing here downloads: ``digits`` ships inside scikit-learn's wheel, the others are generated
from a seed. Every loader returns float32 features and integer or float32 targets, split into
training and validation parts the same way each time. :func:`as_dataset` feeds ``fit`` batches in
a seeded order; :func:`quadratic_regression_data` builds a data set whose loss is a given
quadratic, so a Keras training step can be compared with a closed form.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

DATASETS: tuple[str, ...] = ("digits", "blobs", "linear")


class Dataset(NamedTuple):
    """A training/validation split, ready for ``model.fit(x_train, y_train, ...)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int | None


def load_dataset(name: str, *, validation_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """Load one of :data:`DATASETS`, shuffled with ``seed`` and split for validation.

    * ``"digits"``: 1,797 scanned 8×8 digits from scikit-learn, pixels scaled to [0, 1], 10 classes.
    * ``"blobs"``: 1,200 points in 2-D from three Gaussian clusters, 3 classes.
    * ``"linear"``: 512 points of a noisy linear regression with 8 inputs and 1 output.
    """
    if name not in DATASETS:
        raise ValueError(f"name={name!r} is not a known data set; choose one of {list(DATASETS)}.")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction={validation_fraction!r} must lie strictly between 0 and 1."
        )
    rng = np.random.default_rng(seed)
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.data / 16.0).astype(np.float32)
        y = digits.target.astype(np.int64)
        num_classes: int | None = 10
    elif name == "blobs":
        centres = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
        y = rng.integers(0, 3, size=1200)
        x = (centres[y] + rng.normal(scale=1.0, size=(1200, 2))).astype(np.float32)
        num_classes = 3
    else:
        x = rng.normal(size=(512, 8)).astype(np.float32)
        true_weights = rng.normal(size=(8, 1))
        y = (x @ true_weights + 0.1 * rng.normal(size=(512, 1))).astype(np.float32)
        num_classes = None
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    n_val = int(round(len(x) * validation_fraction))
    return Dataset(x[n_val:], y[n_val:], x[:n_val], y[:n_val], num_classes)


def train_batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, ...]]:
    """Split ``(x, y)`` into consecutive batches of ``batch_size`` (the last may be smaller)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer.")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}.")
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


def quadratic_regression_data(
    A: np.ndarray, dtype: str = "float32"
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs x and zero targets y such that a bias-free ``Dense(1)`` with weights p has MSE ½ pᵀAp.

    With n rows, MSE = pᵀ(xᵀx / n)p, so x = sqrt(n/2)·A^{1/2} with n = dim(A). Fit with
    ``batch_size=len(x)``: one batch is then exactly the quadratic, and SGD's step is Euler's.
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {A.shape}.")
    if not np.allclose(A, A.T):
        raise ValueError("A must be symmetric; use (A + A.T) / 2.")
    eigenvalues, vectors = np.linalg.eigh(A)
    if eigenvalues.min() <= 0:
        raise ValueError(
            f"A must be positive definite, its smallest eigenvalue is {eigenvalues.min():.3g}."
        )
    n = A.shape[0]
    root = (vectors * np.sqrt(eigenvalues)) @ vectors.T
    x = np.sqrt(n / 2.0) * root
    return x.astype(dtype), np.zeros((n, 1), dtype=dtype)


def as_dataset(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle_seed: int | None = None
) -> Any:
    """A ``tf.data.Dataset`` of batches, reshuffled every epoch when ``shuffle_seed`` is given.

    Feeding ``fit`` a dataset (with ``shuffle=False``) instead of arrays keeps the order under our
    control (a seed per run) and avoids the noise Keras's array adapter prints on stderr with
    this TensorFlow build. Autotuning is off: its thread can delay the end of ``fit``.
    """
    import tensorflow as tf

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer.")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}.")
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.batch(batch_size).with_options(options)
