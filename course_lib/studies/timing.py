"""Wall-clock time per training step, the one timer the notebooks and benchmarks share."""

from __future__ import annotations

import time

import keras
import numpy as np

__all__ = ["StepTimer"]


class StepTimer(keras.callbacks.Callback):
    """Wall-clock time of each training step; :attr:`median_ms` skips the first (tracing) steps."""

    def __init__(self, skip: int = 2) -> None:
        super().__init__()
        self.skip = skip
        self.seconds: list[float] = []
        self._started = 0.0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)

    @property
    def median_ms(self) -> float:
        kept = self.seconds[self.skip :] or self.seconds
        if not kept:
            raise ValueError("StepTimer saw no training step; pass it to fit(callbacks=[...]).")
        return 1000.0 * float(np.median(kept))
