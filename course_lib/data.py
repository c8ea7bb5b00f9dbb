"""Offline data sets for the course (used from notebook 02 on).

Nothing here downloads: ``digits`` ships inside scikit-learn's wheel, the others are generated
from a seed. Every loader returns float32 features and integer or float32 targets, split into
training and validation parts the same way each time.
"""

from __future__ import annotations

from typing import NamedTuple

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
