"""The article's ideas in Keras 2 beside the course's Keras 3 (appendix A1).

* :mod:`course_lib.keras2.time_capsule`: the problem both Keras versions train, the Keras 3 side,
  and the subprocess runner that trains Keras 3 where a graph-mode kernel cannot;
* :mod:`course_lib.keras2.reference`: the Keras 2 optimizers and train functions themselves; it
  needs a process in Keras 2's graph mode, so import it explicitly there.
"""
