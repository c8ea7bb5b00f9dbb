"""Experiment harnesses: what the notebooks and benchmarks measure *with* the mechanisms.

The optimizers and training steps live one level up (one module per idea); this subpackage holds
the study runners, tables and timers built on them, so that a notebook and the benchmark that
runs the same study longer can never disagree:

* do Runge–Kutta optimizers overfit? (notebook 06, ``benchmarks/overfitting.py``):
  :mod:`~course_lib.studies.overfitting` trains the runs (on TensorFlow or JAX),
  :mod:`~course_lib.studies.readings` reads them (equal epochs, equal gradient evaluations,
  matched training loss), :mod:`~course_lib.studies.statistics` judges paired differences and
  corrects for their number (Holm), :mod:`~course_lib.studies.regimes` holds the arms and the
  verdict rule, :mod:`~course_lib.studies.overfitting_evidence` puts what carried each verdict
  into words, :mod:`~course_lib.studies.overfitting_report` and
  :mod:`~course_lib.studies.overfitting_plots` write the result file, page and figures;
* :mod:`course_lib.studies.beyond`: SGD, SAM and Lookahead on a 2-D landscape and on digits
  (notebook 07, ``benchmarks/beyond.py``);
* :mod:`course_lib.studies.timing`: the step timer the benchmarks share.
"""
