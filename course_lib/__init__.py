"""course_lib: the finished implementations behind the course "Custom Optimizers in Keras".

Each notebook builds an idea in visible cells, then shows that its version equals the one here.
Import this package first in a notebook: it quiets TensorFlow before TensorFlow is loaded.
"""

from course_lib.environment import quiet_tensorflow, set_seed

quiet_tensorflow()

# Everything below may import TensorFlow; the environment above is already in place.
from course_lib import data, landscapes, plots  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "data",
    "landscapes",
    "plots",
    "quiet_tensorflow",
    "set_seed",
]
