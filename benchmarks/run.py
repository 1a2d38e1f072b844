"""Time each explanation method against its lower bound, measured in the same run.

    python -m benchmarks            # every row, on 1 image and on a batch of 64
    python -m benchmarks --rows Grad-CAM "vanilla gradient" --sizes 1

The lower bound of a method is the least work it must do: one forward plus one backward pass of
the course model for a gradient method, n of them for a method that needs n (SmoothGrad), one
forward pass for CAM, n batched forward passes for a perturbation method. Both are timed after a
warm-up (tracing, first-call allocations), in turn, as the best of a few runs. The ratio
method / bound is what to compare across machines.

Later methods add a row to ``ROWS``: a name, a callable ``run(model, images)``, and its bound.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import course_utils as cu
from course_utils import cam, gradients, occlusion, perturbation

FORWARD, FORWARD_BACKWARD = "forward", "forward+backward"
BOUND_BATCH = 64  # images per pass when a bound needs many (SmoothGrad's default batch size)


@dataclass(frozen=True)
class Row:
    """One method to time.

    Attributes:
        name: the method's name in the table.
        run: ``run(model, images)`` computes its maps.
        bound: ``FORWARD`` or ``FORWARD_BACKWARD``: the kind of pass the method cannot avoid.
        passes: how many such passes per image (e.g. SmoothGrad's sample count).
    """

    name: str
    run: Callable
    bound: str = FORWARD_BACKWARD
    passes: int = 1


SMOOTHGRAD_SAMPLES = 10  # fewer than the default 25, to keep the run short; the ratio is alike

ROWS: list[Row] = [
    Row("vanilla gradient", gradients.saliency),
    Row(f"SmoothGrad (n={SMOOTHGRAD_SAMPLES})",
        lambda m, x: gradients.smoothgrad(m, x, n_samples=SMOOTHGRAD_SAMPLES),
        passes=SMOOTHGRAD_SAMPLES),
    Row("guided backprop", gradients.guided_backprop),
    Row("deconvnet", gradients.deconvnet),
    Row("CAM", cam.cam, FORWARD),
    Row("Grad-CAM", cam.grad_cam),
    Row("HiResCAM", cam.hires_cam),
    Row("guided Grad-CAM", cam.guided_grad_cam, passes=2),
    Row("occlusion (8/4)", lambda m, x: occlusion.occlusion(m, x, patch=8, stride=4), FORWARD,
        passes=15 * 15 + 1),
    Row("RISE (n=2000)", lambda m, x: perturbation.rise(m, x, n_masks=2000), FORWARD,
        passes=2000),
    Row("LIME (n=1000)", lambda m, x: perturbation.lime(m, x, n_samples=1000), FORWARD,
        passes=1000),
    Row("Anchors (default)", perturbation.anchors, FORWARD, passes=1000),
]


def best_times(first: Callable, second: Callable, *, warmup: int = 1, rounds: int = 7,
               budget: float = 3.0) -> tuple[float, float]:
    """The fastest of up to ``rounds`` runs of each function, after ``warmup`` untimed runs.

    The two are run in turn (first, second, first, ...) so that a change of load on a shared
    machine affects both alike. Stops after ``budget`` seconds, but not before two rounds.
    Returns (seconds of first, seconds of second).
    """
    for _ in range(warmup):
        first()
        second()
    times: tuple[list, list] = ([], [])
    start = time.perf_counter()
    while len(times[0]) < rounds and (len(times[0]) < 2 or time.perf_counter() - start < budget):
        for fn, store in zip((first, second), times, strict=True):
            t0 = time.perf_counter()
            fn()
            store.append(time.perf_counter() - t0)
    return min(times[0]), min(times[1])


def bound_functions(model) -> dict[str, Callable]:
    """Compiled passes of the model's logits view: {bound kind: fn(images)}."""
    import tensorflow as tf

    view = cu.logits_model(model)
    spec = gradients.image_spec(model)

    @tf.function(input_signature=[spec])
    def forward(x):
        return view(x, training=False)

    @tf.function(input_signature=[spec])
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(tf.reduce_max(view(x, training=False), axis=-1))
        return tape.gradient(score, x)

    return {FORWARD: forward, FORWARD_BACKWARD: forward_backward}


def bound_run(fn: Callable, images: np.ndarray, passes: int) -> Callable:
    """A callable doing ``passes`` passes over ``images``, batched by BOUND_BATCH."""
    import tensorflow as tf

    batch = tf.constant(np.tile(images, (passes, 1, 1, 1)))
    chunks = [batch[i:i + BOUND_BATCH] for i in range(0, len(batch), BOUND_BATCH)]
    return lambda: [fn(c).numpy() for c in chunks]


def load_model():
    """The trained course CNN, or the same architecture untrained (timings do not care)."""
    try:
        return cu.load_course_model("shapes_cnn"), "shapes_cnn (trained)"
    except cu.CourseError:
        return cu.models.build_course_cnn(), "course CNN (untrained: data/ has no weights yet)"


def benchmark(rows: list[Row], sizes: tuple[int, ...] = (1, 64)) -> list[dict]:
    """Time every row on batches of each size. Returns one dict per (row, size)."""
    model, _ = load_model()
    bounds = bound_functions(model)
    results = []
    for size in sizes:
        images = cu.make_shapes(size, seed=100).images
        for row in rows:
            bound = bound_run(bounds[row.bound], images, row.passes)
            seconds, bound_seconds = best_times(lambda row=row, x=images: row.run(model, x), bound)
            results.append({"method": row.name, "images": size, "time": seconds,
                            "bound": bound_seconds, "bound_kind": row.bound,
                            "passes": row.passes, "ratio": seconds / bound_seconds})
    return results


def format_table(results: list[dict]) -> str:
    """The results as a plain-text table."""
    lines = [f"{'method':<22} {'images':>6} {'time ms':>9} {'bound ms':>9} {'ratio':>6}  bound",
             "-" * 74]
    for r in results:
        kind = r["bound_kind"] if r["passes"] == 1 else f"{r['passes']} x {r['bound_kind']}"
        lines.append(f"{r['method']:<22} {r['images']:>6} {1e3 * r['time']:>9.2f} "
                     f"{1e3 * r['bound']:>9.2f} {r['ratio']:>6.2f}  {kind}")
    return "\n".join(lines)


def machine() -> str:
    """A one-line description of this machine and software."""
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    return (f"{platform.system()} {cpu}, {os.cpu_count()} CPU cores, Python "
            f"{platform.python_version()}, TensorFlow {tf.__version__}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", help="method names to time (default: all)")
    parser.add_argument("--sizes", nargs="*", type=int, default=[1, 64],
                        help="batch sizes (default: 1 64)")
    args = parser.parse_args(argv)
    cu.setup(seed=0)
    rows = [r for r in ROWS if not args.rows or r.name in args.rows]
    if not rows:
        raise SystemExit(f"No such rows; choose from: {', '.join(r.name for r in ROWS)}")
    _, model_name = load_model()
    print(f"model: {model_name}\nmachine: {machine()}\n")
    start = time.perf_counter()
    print(format_table(benchmark(rows, tuple(args.sizes))))
    print(f"\nbest of 2 to 7 runs after a warm-up, method and bound in turn; "
          f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
