"""Experiment harnesses: what the notebooks and benchmarks measure *with* the mechanisms.

The optimizers and training steps live one level up (one module per idea); this subpackage holds
the study runners, tables and timers built on them, so that a notebook and the benchmark that
runs the same study longer can never disagree:

* :mod:`course_lib.studies.overfitting`: do Runge–Kutta optimizers overfit? (notebook 06,
  ``benchmarks/overfitting.py``);
* :mod:`course_lib.studies.beyond`: SGD, SAM and Lookahead on a 2-D landscape and on digits
  (notebook 07, ``benchmarks/beyond.py``);
* :mod:`course_lib.studies.timing`: the step timer the benchmarks share.
"""
