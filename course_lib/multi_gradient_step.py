"""Helpers for training steps that take several gradients per mini-batch (notebooks 04, 05 and 07).

A Keras optimizer's ``update_step`` sees one gradient. Heun and Runge–Kutta (notebooks 04–05)
and SAM (notebook 07) need the gradient at other points too, on the *same* mini-batch, so they
own the training step and share these pieces:

* :func:`forward`: the loss and its gradient at the current weights, as Keras's step takes them;
* :func:`snapshot` and :func:`assign_all`: move the weights to a trial point and back *by value*
  (a snapshot that kept references would "restore" weights that have already moved);
* :func:`batch_size_of`: the weight Keras gives a batch's loss in the logged running mean;
* :func:`require_optimizer`: such a step hands its result to the compiled optimizer;
* :func:`install_train_function`, :func:`is_injected` and :func:`remove_train_function`: the
  intrusive route, which swaps an existing compiled model's ``train_function`` for one built
  around the new step and tags it so that it can be recognised and removed again.

The idea of taking over the training step comes from Su Jianlin, "Keras之小众需求:自定义优化器"
(kexue.fm, 2018), which built Keras 2's ``model.train_function`` by hand.
"""

from __future__ import annotations

from course_lib.distribution import global_loss

from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf


def forward(model: keras.Model, x: Any, y: Any, sample_weight: Any, variables: list):
    """Predictions, loss and its gradient with respect to ``variables`` at the current weights."""
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
        )
    gradients = tape.gradient(loss, variables)
    return y_pred, loss, gradients


def track_loss(model: keras.Model, loss: Any, x: Any) -> None:
    """Add the batch's loss to the running mean that ``fit`` logs as ``loss``, as Keras's step does.

    The loss is the whole batch's (under a strategy each replica's is divided by the replicas),
    weighted by the number of examples.
    """
    tracker = next(metric for metric in model.metrics if metric.name == "loss")
    tracker.update_state(global_loss(loss), sample_weight=batch_size_of(x))


def assign_all(variables: Sequence, values: Sequence) -> None:
    """Set each variable to the matching value."""
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def snapshot(variables: Sequence) -> list[tf.Tensor]:
    """Copies of the variables' current values (by value: later assigns don't change them)."""
    return [tf.identity(v.value) for v in variables]


def batch_size_of(x: Any) -> tf.Tensor:
    """The number of examples in the batch ``x`` (its first non-empty input's first axis)."""
    return tf.shape(next(i for i in tf.nest.flatten(x) if i is not None))[0]


def require_optimizer(model: keras.Model, where: str, why: str) -> keras.optimizers.Optimizer:
    """Return the compiled optimizer, or raise a clear error if there is none or it scales the loss.

    ``why`` finishes the sentence "Call model.compile(...) first;" for the method at hand.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(model, "compiled", False):
        raise ValueError(
            f"{where}: model {getattr(model, 'name', model)!r} has no optimizer. Call "
            f"model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=...) first; "
            f"{why}"
        )
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        raise TypeError(
            f"{where}: LossScaleOptimizer (mixed precision) is not supported by a multi-gradient "
            "step: its extra evaluation points need unscaled gradients. Use a float32 or float64 "
            "policy."
        )
    return optimizer


def check_injectable(model: Any, where: str, own_class: type, own_setting: str) -> None:
    """Raise unless ``model`` is a standard Keras model that does not already own such a step."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{where}: model must be a keras.Model, got {type(model).__name__}; build and compile "
            "a Keras model first."
        )
    if isinstance(model, own_class):
        raise TypeError(
            f"{where}: model {model.name!r} is already a {type(model).__name__}; set "
            f"{own_setting} in its constructor instead of injecting."
        )


def install_train_function(
    model: keras.Model, function: Callable[[Any], dict], tag: str, value: Any
) -> keras.Model:
    """Install ``function`` (iterator -> logs) as ``model.train_function``, tagged with ``tag``.

    Build ``function`` with Keras's own machinery, ``model._make_function(step)``, so that
    ``steps_per_execution``, distribution and ``jit_compile`` behave as in a standard ``fit``.
    The tag lets :func:`is_injected` recognise it; ``compile()`` resets ``train_function`` and
    so removes it too.
    """

    def train_function(iterator):
        return function(iterator)

    setattr(train_function, tag, value)
    model.train_function = train_function
    return model


def is_injected(model: keras.Model, tag: str) -> bool:
    """Whether ``model.train_function`` was installed by :func:`install_train_function`."""
    return hasattr(getattr(model, "train_function", None), tag)


def remove_train_function(model: keras.Model, tag: str, what: str) -> keras.Model:
    """Undo :func:`install_train_function`: the next ``fit`` builds Keras's standard step again."""
    if not is_injected(model, tag):
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} has no injected {what} step (it was never "
            "injected, or compile() already removed it)."
        )
    model.train_function = None
    return model


__all__ = [
    "assign_all",
    "batch_size_of",
    "check_injectable",
    "forward",
    "install_train_function",
    "is_injected",
    "remove_train_function",
    "require_optimizer",
    "snapshot",
    "track_loss",
]
