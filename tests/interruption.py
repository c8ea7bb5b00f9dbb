"""A callback that stops training mid-epoch, for the resume-after-interruption tests."""

from __future__ import annotations

import keras


class InterruptAt(keras.callbacks.Callback):
    """Raise ``RuntimeError("simulated interruption")`` after batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            raise RuntimeError("simulated interruption")
