"""Time each explanation method against its lower bound, measured in the same run.

    python -m benchmarks            # every row at its sizes (most on 1 image and on 64)
    python -m benchmarks --rows Grad-CAM "vanilla gradient" --sizes 1
    python -m benchmarks --model efficientnet_lite0   # the real network on 224×224 photos
    PYTHONPATH=/tmp/peer python -m benchmarks.peer   # occlusion next to a peer library's

The lower bound of a method is the least work it must do: one forward plus one backward pass of
the course model for a gradient method, n of them for a method that needs n (SmoothGrad), one
forward pass for CAM, n batched forward passes for a perturbation method, n forward and backward
passes one after another for gradient ascent (each step needs the last). Both are timed after a
warm-up (tracing, first-call allocations), in turn, as the best of a few runs. The ratio
method / bound is what to compare across machines. Where an issue sets a target (a ratio, or
seconds per call), the table says whether the run met it.

A method adds a row to ``ROWS``: a name, a callable ``run(model, images)``, its bound, and its
target.
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
from course_utils import (
    attribution,
    cam,
    dream,
    features,
    gradients,
    lrp,
    occlusion,
    perturbation,
    widgets,
)

FORWARD, FORWARD_BACKWARD = "forward", "forward+backward"
BOUND_BATCH = 128  # images per pass when a bound needs many (forward: 1% faster than 64 on 2 cores)


@dataclass(frozen=True)
class Row:
    """One method to time.

    Attributes:
        name: the method's name in the table.
        run: ``run(model, images)`` computes its maps (or its pictures).
        bound: ``FORWARD``, ``FORWARD_BACKWARD``, or None when the number of passes is not
            known in advance (Anchors: it samples until it is sure).
        passes: how many such passes per image (e.g. SmoothGrad's sample count).
        sizes: the batch sizes the row runs at (rows that explain one image at a time, or that
            run on a fixed batch, run at one size).
        sequential: the passes must run one after another on the batch (gradient ascent: each
            step needs the previous one), so the bound runs them so too, not in large batches.
        target: what the issue asks of the row: a ratio to the bound (``"ratio"``) or a time in
            seconds per call (``"seconds"``), with ``limit`` its value; None for no target.
    """

    name: str
    run: Callable
    bound: str | None = FORWARD_BACKWARD
    passes: int = 1
    sizes: tuple[int, ...] = (1, 64)
    sequential: bool = False
    target: str | None = None
    limit: float = 0.0


SMOOTHGRAD_SAMPLES = 10  # fewer than the default 25, to keep the run short; the ratio is alike
ASCENT_STEPS, DREAM_STEPS, SLIDER_STEPS = 200, 50, 20
IG_STEPS = 16                 # notebook 12's step count: m forward+backward passes per image
SCORE_CAM_MAPS = 128          # conv4's feature maps: one forward pass each (plus one for the maps)


def class_model_run(model, images):
    """Class model visualization of every class (one image each), 200 steps."""
    return features.class_model(model, steps=ASCENT_STEPS)


def dream_octave(model, images):
    """One Deep Dream octave of 50 steps on one 64×64 image (layer conv3)."""
    return dream.deep_dream(model, images[0], "conv3", octaves=1, steps_per_octave=DREAM_STEPS)


_panels: dict[int, object] = {}


def slider_move(model, images):
    """The class-model panel's step slider moved 20 steps further: what the panel computes and
    draws. Each call moves it past where it has been, so every call computes 20 new steps."""
    panel = _panels.get(id(model))
    if panel is None:
        panel = _panels[id(model)] = widgets.class_model_panel(model, 0, steps=100,
                                                               max_steps=1_000_000)
    panel.steps.value += SLIDER_STEPS
    return panel.shown


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
        passes=15 * 15 + 1, target="ratio", limit=1.15),
    Row("RISE (n=2000)", lambda m, x: perturbation.rise(m, x, n_masks=2000), FORWARD,
        passes=2000, target="ratio", limit=1.15),
    Row("LIME (n=1000)", lambda m, x: perturbation.lime(m, x, n_samples=1000), FORWARD,
        passes=1000, sizes=(1,), target="seconds", limit=10.0),
    Row("Anchors (default)", perturbation.anchors, None, sizes=(1,), target="seconds",
        limit=10.0),
    Row(f"class model ({ASCENT_STEPS} steps)", class_model_run, passes=ASCENT_STEPS,
        sizes=(6,), sequential=True, target="seconds", limit=3.0),
    Row(f"Deep Dream octave ({DREAM_STEPS})", dream_octave, passes=DREAM_STEPS, sizes=(1,),
        sequential=True, target="seconds", limit=2.0),
    Row(f"step slider +{SLIDER_STEPS}", slider_move, passes=SLIDER_STEPS, sizes=(1,),
        sequential=True, target="seconds", limit=0.3),
    Row("gradient x input", attribution.gradient_x_input),
    Row(f"integrated gradients (m={IG_STEPS})",
        lambda m, x: attribution.integrated_gradients(m, x, steps=IG_STEPS), passes=IG_STEPS),
    Row(f"SmoothGrad² (n={SMOOTHGRAD_SAMPLES})",
        lambda m, x: attribution.smoothgrad_squared(m, x, n_samples=SMOOTHGRAD_SAMPLES),
        passes=SMOOTHGRAD_SAMPLES),
    Row(f"VarGrad (n={SMOOTHGRAD_SAMPLES})",
        lambda m, x: attribution.vargrad(m, x, n_samples=SMOOTHGRAD_SAMPLES),
        passes=SMOOTHGRAD_SAMPLES),
    Row("Grad-CAM++", attribution.grad_cam_plus_plus),
    Row("LayerCAM", attribution.layer_cam),
    Row(f"Score-CAM (conv4, K={SCORE_CAM_MAPS})", attribution.score_cam, FORWARD,
        passes=SCORE_CAM_MAPS + 1),
    Row("LRP (z+, z^B)", lambda m, x: lrp.lrp(m, x, rule="zplus")),
]


# The real network (EfficientNet-Lite0, 224×224 photos): the rows issue 13 asks for. Its bounds
# are the forward and forward+backward passes of Lite0 itself.
LITE0_OCCLUSION = (32, 16)          # patch and stride on a 224 photo: 13 × 13 + 1 passes
LITE0_RISE_MASKS = 500
LITE0_DREAM_STEPS = 20
LITE0_DREAM_LAYERS = ["block5c_expand_relu", "block6a_expand_relu"]
LITE0_ROWS: list[Row] = [
    Row("vanilla gradient", gradients.saliency, sizes=(1, 8)),
    Row("Grad-CAM (head_relu)", lambda m, x: cam.grad_cam(m, x, layer="head_relu"),
        sizes=(1, 8)),
    Row(f"occlusion ({LITE0_OCCLUSION[0]}/{LITE0_OCCLUSION[1]})",
        lambda m, x: occlusion.occlusion(m, x, patch=LITE0_OCCLUSION[0],
                                         stride=LITE0_OCCLUSION[1]), FORWARD,
        passes=occlusion.n_passes((224, 224), *LITE0_OCCLUSION), sizes=(1,), target="ratio",
        limit=1.15),
    Row(f"RISE (n={LITE0_RISE_MASKS})",
        lambda m, x: perturbation.rise(m, x, n_masks=LITE0_RISE_MASKS), FORWARD,
        passes=LITE0_RISE_MASKS, sizes=(1,), target="ratio", limit=1.15),
    Row(f"Deep Dream octave ({LITE0_DREAM_STEPS})",
        lambda m, x: dream.deep_dream(m, x[0], LITE0_DREAM_LAYERS, octaves=1,
                                      steps_per_octave=LITE0_DREAM_STEPS),
        passes=LITE0_DREAM_STEPS, sizes=(1,), sequential=True),
]
MODELS = ("shapes_cnn", "efficientnet_lite0")


def best_times(first: Callable, second: Callable, *, warmup: int = 1, rounds: int = 30,
               budget: float = 10.0) -> tuple[float, float]:
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


def bound_run(fn: Callable, images: np.ndarray, passes: int, sequential: bool = False
              ) -> Callable:
    """A callable doing ``passes`` passes over ``images``: in chunks of BOUND_BATCH images, or,
    if ``sequential``, one pass over the whole batch after another."""
    import tensorflow as tf

    if sequential:
        batch = tf.constant(images)
        return lambda: [fn(batch).numpy() for _ in range(passes)]
    batch = tf.constant(np.tile(images, (passes, 1, 1, 1)))
    chunks = [batch[i:i + BOUND_BATCH] for i in range(0, len(batch), BOUND_BATCH)]
    return lambda: [fn(c).numpy() for c in chunks]


def load_model():
    """The trained course CNN, or the same architecture untrained (timings do not care)."""
    try:
        return cu.load_course_model("shapes_cnn"), "shapes_cnn (trained)"
    except cu.CourseError:
        return cu.models.build_course_cnn(), "course CNN (untrained: data/ has no weights yet)"


def time_row(model, bounds: dict, row: Row, images: np.ndarray) -> dict:
    """Time one row on ``images`` against its bound (if it has one)."""
    method = lambda: row.run(model, images)  # noqa: E731
    if row.bound is None:
        seconds, _ = best_times(method, lambda: None)
        bound_seconds = float("nan")
    else:
        bound = bound_run(bounds[row.bound], images, row.passes, row.sequential)
        seconds, bound_seconds = best_times(method, bound)
    ratio = seconds / bound_seconds
    value = ratio if row.target == "ratio" else seconds
    return {"method": row.name, "images": len(images), "time": seconds, "bound": bound_seconds,
            "bound_kind": row.bound, "passes": row.passes, "sequential": row.sequential,
            "ratio": ratio, "target": row.target, "limit": row.limit,
            "met": None if row.target is None else bool(value <= row.limit)}


def _model_and_images(model_name: str):
    """The model to time and a function giving n images for it: the course CNN and shapes, or
    EfficientNet-Lite0 and 224×224 photos."""
    if model_name == "shapes_cnn":
        return load_model()[0], lambda n: cu.make_shapes(n, seed=100).images
    photos = cu.data.ALL_PHOTOS
    return (cu.load_imagenet_model(model_name).model,
            lambda n: cu.load_photos([photos[i % len(photos)] for i in range(n)], size=224))


def benchmark(rows: list[Row], sizes: tuple[int, ...] | None = None,
              model_name: str = "shapes_cnn") -> list[dict]:
    """Time every row at each of its sizes (only those in ``sizes``, if given), on the course
    CNN and shapes images, or on EfficientNet-Lite0 and 224×224 photos.

    Returns one dict per (row, size).
    """
    model, make_images = _model_and_images(model_name)
    bounds = bound_functions(model)
    results = []
    for size in sorted({n for row in rows for n in row.sizes}):
        if sizes is not None and size not in sizes:
            continue
        images = make_images(size)
        results += [time_row(model, bounds, row, images) for row in rows if size in row.sizes]
    return results


def _bound_text(r: dict) -> str:
    if r["bound_kind"] is None:
        return "none: the pass count is not known in advance"
    kind = r["bound_kind"] if r["passes"] == 1 else f"{r['passes']} x {r['bound_kind']}"
    return kind + (", in sequence" if r["sequential"] else "")


def _target_text(r: dict) -> str:
    if r["target"] is None:
        return ""
    goal = f"<= {r['limit']:.2f}x" if r["target"] == "ratio" else f"<= {r['limit']:g} s"
    return f"{goal} {'ok' if r['met'] else 'MISSED'}"


def format_table(results: list[dict]) -> str:
    """The results as a plain-text table."""
    lines = [f"{'method':<26} {'images':>6} {'time ms':>9} {'bound ms':>9} {'ratio':>6} "
             f"{'target':<14} bound", "-" * 100]
    for r in results:
        lines.append(f"{r['method']:<26} {r['images']:>6} {1e3 * r['time']:>9.1f} "
                     f"{1e3 * r['bound']:>9.1f} {r['ratio']:>6.2f} {_target_text(r):<14} "
                     f"{_bound_text(r)}")
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
    parser.add_argument("--sizes", nargs="*", type=int,
                        help="only these batch sizes (default: each row's own, 1 and 64 for most)")
    parser.add_argument("--model", choices=MODELS, default="shapes_cnn",
                        help="the course CNN on shapes (default) or the real network on photos")
    args = parser.parse_args(argv)
    cu.setup(seed=0)
    table = ROWS if args.model == "shapes_cnn" else LITE0_ROWS
    rows = [r for r in table if not args.rows or r.name in args.rows]
    if not rows:
        raise SystemExit(f"No such rows; choose from: {', '.join(r.name for r in table)}")
    model_name = load_model()[1] if args.model == "shapes_cnn" else args.model
    print(f"model: {model_name}\nmachine: {machine()}\n")
    start = time.perf_counter()
    print(format_table(benchmark(rows, tuple(args.sizes) if args.sizes else None, args.model)))
    print(f"\nbest of 2 to 30 runs (10 s per row) after a warm-up, method and bound in turn; "
          f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
