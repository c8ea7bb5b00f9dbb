"""course_lib: the finished implementations behind the course "Custom Optimizers in Keras".

Each notebook builds an idea in visible cells, then shows that its version equals the one here.
Import this package first in a notebook: it quiets TensorFlow before TensorFlow is loaded.

The public names below are re-exported lazily: ``course_lib.SoftBatch`` imports
``course_lib.soft_batch`` (and so TensorFlow) on first use, which keeps ``import course_lib``
fast and lets it run before TensorFlow is configured (the Keras 2 appendix disables eager
execution first).

Modules by notebook:

* 00: ``data``, ``checks``, ``environment``
* 01: ``landscapes``, ``plots``
* 02: ``optimizers``, ``handwritten``
* 03: ``soft_batch``
* 04: ``runge_kutta``, ``multi_gradient_step``
* 05: ``tableaux``, ``adaptive``, ``rk_experiments``
* 06: ``optimizer_wrapper``, ``lookahead``, ``sam``, ``beyond_experiments``
* A1: ``time_capsule``, ``keras2_reference`` (graph mode only: import it explicitly)
"""

from __future__ import annotations

from course_lib.environment import quiet_tensorflow, set_seed

import importlib
from typing import Any

quiet_tensorflow()

__version__ = "0.1.0"

#: Public name -> module that defines it.
_EXPORTS: dict[str, str] = {
    # Offline data and 2-D toy losses (00, 01)
    "load_dataset": "data",
    "Quadratic": "landscapes",
    "Rosenbrock": "landscapes",
    "gradient_descent": "landscapes",
    "plot_trajectories": "plots",
    # A minimal optimizer and hand-written gradients (02)
    "PlainSGD": "optimizers",
    "MomentumSGD": "optimizers",
    "handwritten_gradients": "handwritten",
    "tape_gradients": "handwritten",
    "train_softmax_regression": "handwritten",
    # Soft batch (03)
    "SoftBatch": "soft_batch",
    # Runge–Kutta training steps (04, 05)
    "ButcherTableau": "tableaux",
    "InvalidTableauError": "tableaux",
    "TABLEAUX": "tableaux",
    "get_tableau": "tableaux",
    "real_stability_limit": "tableaux",
    "stability_function": "tableaux",
    "RungeKuttaModel": "runge_kutta",
    "RungeKuttaSequential": "runge_kutta",
    "RungeKuttaTrainStep": "runge_kutta",
    "inject_runge_kutta": "runge_kutta",
    "eject_runge_kutta": "runge_kutta",
    "AdaptiveStepSize": "adaptive",
    "StepSizeError": "adaptive",
    "StepSizeLog": "adaptive",
    # The mechanisms reused (06)
    "Lookahead": "lookahead",
    "OptimizerWrapper": "optimizer_wrapper",
    "SAMModel": "sam",
    "SAMSequential": "sam",
    "inject_sam": "sam",
    "eject_sam": "sam",
}

_MODULES = ("adaptive", "checks", "data", "handwritten", "landscapes", "optimizers", "plots")
_MODULES += ("rk_experiments", "runge_kutta", "soft_batch", "tableaux", "time_capsule")
_MODULES += ("beyond_experiments", "lookahead", "multi_gradient_step", "optimizer_wrapper", "sam")
# keras2_reference is not listed: it needs a graph-mode (Keras 2) process; import it explicitly.

__all__ = ["__version__", "quiet_tensorflow", "set_seed", *_EXPORTS, *_MODULES]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"course_lib.{_EXPORTS[name]}"), name)
    elif name in _MODULES:
        value = importlib.import_module(f"course_lib.{name}")
    else:
        raise AttributeError(f"module 'course_lib' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
