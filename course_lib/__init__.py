"""course_lib: the finished implementations behind the course "Custom Optimizers in Keras".

Each notebook builds an idea in visible cells, then shows that its version equals the one here.
Import this package first in a notebook: it quiets TensorFlow before TensorFlow is loaded.

The public names below are re-exported lazily: ``course_lib.SoftBatch`` imports
``course_lib.soft_batch`` (and so TensorFlow) on first use, which keeps ``import course_lib``
fast and lets it run before TensorFlow is configured (the Keras 2 appendix disables eager
execution first).

Modules by notebook:

* 00: ``data``, ``checks``, ``claims``, ``environment``
* 01: ``landscapes``, ``plots`` (figures, and ``plots.animate``: the motion the lessons play),
  ``explorers`` (sliders that redraw a figure in the live notebook; 01, 05)
* 02: ``optimizers``, ``handwritten``
* 03: ``optimizer_wrapper``, ``soft_batch``
* 04: ``runge_kutta``, ``multi_gradient_step`` (the skeleton every training-step method shares)
* 05: ``tableaux``, ``adaptive``, ``adaptive_step``
* 06: ``studies.overfitting``
* 07: ``lookahead``, ``sam``, ``studies.beyond``
* A2: ``environment.select_backend``, ``stateless``, ``backend_comparison`` (the same optimizers
  on JAX)
* A3: ``multi_gradient_step.jax_backend`` (Heun, Runge–Kutta and SAM as stateless training
  steps on JAX)
* A1: ``keras2.time_capsule``, ``keras2.reference`` (graph mode only: import it explicitly)

Shared by the mechanisms: ``distribution`` (the cross-replica helpers), ``validation`` (argument
checks) and ``keras_internals`` (the only module that uses Keras's private API). The experiment
harnesses (study runners, tables, timers) live in the subpackage ``studies``, the appendix's
Keras 2 code in ``keras2``.
"""

from __future__ import annotations

from course_lib.environment import (
    keep_optional_jax_out,
    quiet_tensorflow,
    select_backend,
    set_seed,
)

import importlib
from typing import Any

quiet_tensorflow()
keep_optional_jax_out()

__version__ = "0.1.0"

#: Public name -> module that defines it.
_EXPORTS: dict[str, str] = {
    # Claims that cannot drift: a sentence checked against its numbers (every notebook)
    "claim": "claims",
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
    # The mechanisms reused (07)
    "Lookahead": "lookahead",
    "OptimizerWrapper": "optimizer_wrapper",
    "SAMModel": "sam",
    "SAMSequential": "sam",
    "inject_sam": "sam",
    "eject_sam": "sam",
}

_MODULES = ("adaptive", "checks", "claims", "data", "handwritten", "landscapes", "optimizers")
_MODULES += ("plots", "runge_kutta", "soft_batch", "tableaux", "lookahead", "sam")
_MODULES += ("multi_gradient_step", "optimizer_wrapper", "studies", "keras2")
_MODULES += ("distribution", "keras_internals", "validation", "stateless", "backend_comparison")
_MODULES += ("adaptive_step", "explorers")
# keras2.reference is not importable here: it needs a graph-mode (Keras 2) process.

__all__ = ["__version__", "quiet_tensorflow", "select_backend", "set_seed", *_EXPORTS, *_MODULES]


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
