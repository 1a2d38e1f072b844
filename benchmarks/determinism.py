"""What the determinism settings cost: forward and forward+backward throughput of the course CNN.

    python -m benchmarks.determinism

Each setting runs in a fresh process, because TensorFlow reads oneDNN's and the thread pools'
settings once, when it starts. The settings:

- op determinism: ``tf.config.experimental.enable_op_determinism()``, which ``cu.setup`` turns on
  (``cu.setup(seed, deterministic=False)`` leaves it off);
- oneDNN: ``TF_ENABLE_ONEDNN_OPTS`` (on unless the environment sets it to 0; TensorFlow's default);
- threads: TensorFlow's default pools, or one thread (``TF_NUM_INTRAOP_THREADS=1
  TF_NUM_INTEROP_THREADS=1``).

Each pass is timed as in ``python -m benchmarks`` (best of several runs after a warm-up), on
128 shapes images at once (the batch occlusion and RISE use) and on one image (a gradient map).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
SETTINGS = [  # (label, op determinism, environment)
    ("course default: determinism on, oneDNN on", True, {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    ("determinism off, oneDNN on", False, {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    ("determinism on, oneDNN off", True, {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    ("determinism off, oneDNN off", False, {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    ("determinism on, oneDNN on, 1 thread", True, {"TF_ENABLE_ONEDNN_OPTS": "1", **ONE_THREAD}),
    ("determinism on, oneDNN off, 1 thread", True, {"TF_ENABLE_ONEDNN_OPTS": "0", **ONE_THREAD}),
]
BATCH = 128


def measure(deterministic: bool) -> dict:
    """Throughputs in this process: images per second for each pass and batch size."""
    import tensorflow as tf

    import course_utils as cu
    from benchmarks.run import FORWARD, FORWARD_BACKWARD, best_times, bound_functions

    cu.setup(seed=0, deterministic=deterministic)
    model = cu.load_course_model("shapes_cnn")
    passes = bound_functions(model)
    out = {}
    for n in (BATCH, 1):
        x = tf.constant(cu.make_shapes(n, seed=100).images)
        t_fwd, t_both = best_times(lambda x=x: passes[FORWARD](x).numpy(),
                                   lambda x=x: passes[FORWARD_BACKWARD](x).numpy(), budget=8.0)
        out[f"forward {n}"] = n / t_fwd
        out[f"forward+backward {n}"] = n / t_both
    return out


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(measure(sys.argv[2] == "1")))
        return
    header = (f"{'setting':<52} {'fwd img/s':>10} {'f+b img/s':>10} {'fwd 1 ms':>9} "
              f"{'f+b 1 ms':>9}")
    print(f"course CNN, batch {BATCH} (img/s) and one image (ms)\n{header}\n{'-' * len(header)}")
    for label, deterministic, env in SETTINGS:
        child = subprocess.run([sys.executable, "-m", "benchmarks.determinism", "--child",
                                "1" if deterministic else "0"], env={**os.environ, **env},
                               capture_output=True, text=True, check=True)
        r = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{label:<52} {r[f'forward {BATCH}']:>10.0f} {r[f'forward+backward {BATCH}']:>10.0f}"
              f" {1e3 / r['forward 1']:>9.2f} {1e3 / r['forward+backward 1']:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
