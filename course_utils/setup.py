"""``setup(seed)``: one call at the top of every notebook."""

from __future__ import annotations

import logging
import os
import random
import sys
import warnings

import numpy as np

# Quiet TensorFlow's C++ logs and the oneDNN notice. These variables are read when TensorFlow is
# first imported, so they are set when course_utils is imported, before anything imports TF.
# oneDNN stays on (TensorFlow's default on x86): on the course's 2-core machine it gives 1.9x the
# forward and 2.6x the forward+backward throughput of the course CNN, and its results are the
# same bit for bit from run to run and at any thread count (python -m benchmarks.determinism).
_TF_IMPORTED_FIRST = "tensorflow" in sys.modules
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

PLOT_STYLE = {
    "figure.dpi": 80,
    "savefig.dpi": 80,
    "figure.figsize": (6.0, 4.0),
    "axes.grid": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "image.interpolation": "nearest",
    "image.cmap": "viridis",
}


def setup(seed: int = 0, *, deterministic: bool = True) -> None:
    """Make a notebook reproducible and quiet.

    Seeds Python, NumPy and TensorFlow/Keras with ``seed``, turns on TensorFlow's op determinism
    (the same inputs give the same numbers, run after run), silences TensorFlow's logs and
    warnings, and sets a clean Matplotlib style.

    Args:
        seed: the seed for every random generator.
        deterministic: turn on ``tf.config.experimental.enable_op_determinism``.
    """
    import keras
    import matplotlib as mpl
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)  # seeds Python, NumPy and TensorFlow together
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="keras")
    warnings.filterwarnings("ignore", module="tensorflow")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    mpl.rcParams.update(mpl.rcParamsDefault)
    mpl.rcParams.update(PLOT_STYLE)
    if _TF_IMPORTED_FIRST:
        print("Note: TensorFlow was imported before course_utils, so its start-up logs could not "
              "be silenced. Put `import course_utils as cu` before `import tensorflow`.")
