"""nbval's sanitizer masks timings and addresses, and nothing a learner should see change."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

CONFIG = Path(__file__).with_name("nbval_sanitize.cfg")


def sanitize(text: str) -> str:
    parser = configparser.ConfigParser()
    parser.read(CONFIG, encoding="utf-8")
    for section in parser.sections():
        text = re.sub(parser[section]["regex"], parser[section]["replace"], text)
    return text


def test_keras_epoch_timings_are_masked():
    fast = "12/12 - 0s - 3ms/step - loss: 0.5432 - val_loss: 0.6000"
    slow = "12/12 - 1s - 41ms/step - loss: 0.5432 - val_loss: 0.6000"
    assert sanitize(fast) == sanitize(slow)


def test_keras2_epoch_timings_are_masked():
    # tf_keras (Keras 2, appendix A1) logs time per epoch and per sample.
    fast = "128/128 - 0s - loss: 0.6514 - 59ms/epoch - 458us/sample"
    slow = "128/128 - 1s - loss: 0.6514 - 2s/epoch - 9ms/sample"
    assert sanitize(fast) == sanitize(slow)
    assert "loss: 0.6514" in sanitize(fast)


def test_losses_and_accuracies_are_still_compared():
    a = "12/12 - 0s - 3ms/step - loss: 0.5432 - accuracy: 0.9100"
    b = "12/12 - 0s - 3ms/step - loss: 0.5433 - accuracy: 0.9100"
    assert sanitize(a) != sanitize(b)
    assert "0.9100" in sanitize(a)


def test_printed_step_times_and_addresses_are_masked():
    assert sanitize("Heun: 1.93 ms per step") == sanitize("Heun: 2.4 ms per step")
    assert sanitize("<object at 0x7f3a2c1b9d60>") == sanitize("<object at 0x7f00aa11bb22>")


def test_ordinary_numbers_survive():
    text = "max |Δw| = 0.00e+00 after 40 steps of 16 samples"
    assert sanitize(text) == text
