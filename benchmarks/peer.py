"""The course's methods next to peer TensorFlow libraries' on the same work, in one run.

    pip install --no-deps --target /tmp/peer "Xplique==1.4.0" "tf-keras-vis==0.8.7" \
        deprecated wrapt "opencv-python-headless<4.11"
    PYTHONPATH=/tmp/peer python -m benchmarks.peer

The peers are xplique (Fel et al., the DEEL project) and tf-keras-vis (Kubota). Neither is a
course dependency: xplique's 1.x metadata asks for TensorFlow < 2.16 and its 2.x for numpy >= 2,
so both are installed beside the course without their dependencies, for this measurement only.
tf-keras-vis 0.8.7 (the latest) runs on Keras 3 and TensorFlow 2.20 as it is; its other
dependencies (scipy, pillow, imageio, packaging) are the course's own.

**Occlusion** (xplique ``Occlusion``, whose occlusion takes a patch size and a stride like the
course's). Both explain the same logit (the course's logits view of the model) of 64 images with
a grey 8×8 patch at stride 4 (225 positions), in batches of 128. The bound is the same number of
forward passes at the model's best batched throughput (see ``benchmarks.run``). xplique adds the
drops of the patches covering a pixel, the course averages them, so xplique's map is the course's
times the number of covering patches.

**Notebook 12's methods**, on the first 24 of those images whose values span [0, 1] exactly,
explaining the predicted class's logit, with ``batch_size`` 64 (the course's default) on both
sides. Each pair prints its agreement (Pearson's correlation of the two maps, each flattened, so a
scale or an offset between them does not count: the mean over the images, and the lowest), the
time of each side and that of the bound of its row in ``benchmarks.run``. What differs, measured
(the numbers are those of 2026-12-05; the run prints its own):

- Integrated gradients, black baseline, m = 16 (xplique ``IntegratedGradients``, channels summed
  as the course does). xplique puts its m points at linspace(0, 1, m), both ends included, and
  averages by the trapezoid rule; the course takes the m midpoints (k - 1/2)/m. Same cost (m
  gradients), r = 0.9985. The course's gradients at xplique's points with its weights give
  xplique's maps to 1e-6 (printed), so the points are the whole difference; it vanishes as m
  grows (r = 0.9999 at m = 64, printed).
- SmoothGrad² and VarGrad, noise 0.1, n = 10 (xplique ``SquareGrad``, ``VarGrad``). xplique's
  ``noise`` is the standard deviation itself; the course's is a share of each image's value range:
  the same sigma on images spanning [0, 1], hence the choice of images. xplique draws its own
  noise (``tf.random.normal``, a new draw at every call), the course seeded patterns: at n = 10
  their maps agree (r about 0.84 and 0.81) only as well as the course's own maps with seeds 0 and
  1 do (0.83 and 0.80): the Monte Carlo error of ten samples, not a different definition. The
  printed ladder shows both rising together with n, to 0.987 and 0.986 at n = 160. xplique's
  VarGrad is the unbiased variance, n/(n - 1) times the course's (a scale).
- Grad-CAM++ and Score-CAM at conv4 (tf-keras-vis ``GradcamPlusPlus``, ``Scorecam``): r = 0.983
  upsampled, 0.9988 and 0.9948 at conv4's 8×8 (printed). tf-keras-vis upsamples with scipy's
  ``zoom`` (order 1, corners aligned), the course with ``tf.image.resize`` (pixel centres); the
  course's 8×8 maps zoomed the scipy way agree with tf-keras-vis's to 0.999 and 0.996. At 8×8,
  Grad-CAM++ differs by tf-keras-vis dividing the alphas by their sum over positions (as the
  authors' code does; the paper's equation, which the course follows, does not): numpy with that
  division gives its maps (r = 1.0). Score-CAM differs in its masks, zoomed the scipy way before
  the forward passes: numpy with scipy-zoomed masks gives its maps (r = 1.0), with
  ``tf.image.resize`` the course's; the lowest r (0.95 upsampled, 0.97 at 8×8) comes from them.
  tf-keras-vis's Grad-CAM++ map is exp(S_c) times larger (its score is exp(S_c): a scale, which
  would overflow float32 for a logit above 88; the largest here is 64). Its Score-CAM applies a
  softmax to the model's output, so it is given the logits, as the course's probability needs.

tf-keras-vis reads the feature layer's ``.output``, a tensor of the original model's graph, and
joins it to its model's outputs; the course's logits view is a new graph on a new input, and Keras
refuses the mix ("The name "image" is used 2 times in the model"), so tf-keras-vis gets the same
logits cut from the original graph (:func:`graph_logits_model`, the same numbers). Each peer gets
its model built once, as a user would: xplique traces its functions again for every new model
object (a view built inside the timed call cost 0.35 s more per ``Occlusion`` call on 16 images,
0.56 s per ``SquareGrad`` call). Grad-CAM++ may beat its bound (one forward and backward pass):
its backward pass stops at conv4, the bound's reaches the pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import course_utils as cu
from benchmarks.run import (
    FORWARD,
    IG_STEPS,
    ROWS,
    SMOOTHGRAD_SAMPLES,
    Row,
    best_times,
    bound_functions,
    bound_run,
    load_model,
)
from course_utils import attribution
from course_utils.gradients import BATCH_SIZE

PATCH, STRIDE, GREY, N_IMAGES, BATCH = 8, 4, 0.5, 64, 128
N_MAPS = 24        # images for notebook 12's methods: the first of the 64 spanning [0, 1]
NOISE = 0.1        # SmoothGrad's noise: 0.1 x the value range (course), sigma = 0.1 (xplique)
LAYER = "conv4"    # the course's CAM layer: 8×8, 128 feature maps
LADDER = (SMOOTHGRAD_SAMPLES, 4 * SMOOTHGRAD_SAMPLES, 16 * SMOOTHGRAD_SAMPLES)


# --- pure helpers --------------------------------------------------------------------------------

def map_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's correlation of each pair of maps, each flattened, float64 (N,).

    Invariant to a positive scale and an offset of either map; nan where a map is constant.
    """
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    norms = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / norms


def full_range(images: np.ndarray, value_range=(0.0, 1.0)) -> np.ndarray:
    """The images whose values span ``value_range`` exactly: there the course's noise (a share of
    each image's range) and xplique's (an absolute standard deviation) are the same."""
    lo, hi = value_range
    keep = (images.min(axis=(1, 2, 3)) == lo) & (images.max(axis=(1, 2, 3)) == hi)
    return images[keep]


def trapezoid_points(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """xplique's IG points, linspace(0, 1, m), and their trapezoid weights (the ends count half;
    they sum to 1). The course's are :func:`course_utils.attribution.riemann_alphas`, weight 1/m."""
    alphas = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    weights = np.full(steps, 1.0 / (steps - 1), np.float32)
    weights[[0, -1]] /= 2
    return alphas, weights


def covering_patches(size: int) -> np.ndarray:
    """How many patch positions cover each pixel, (size, size)."""
    masks = cu.occlusion.patch_masks((size, size), PATCH, STRIDE)
    return masks.sum(axis=0)


# --- the peers -----------------------------------------------------------------------------------

def graph_logits_model(model):
    """The logits (the course CNN's layer ``"logits"``) cut from the model's own graph, to which
    tf-keras-vis joins a layer's output."""
    import keras

    return keras.Model(model.inputs, model.get_layer("logits").output)


def one_hot(logits, targets: np.ndarray) -> np.ndarray:
    """xplique's targets: one row per image, float32 (N, classes)."""
    return np.eye(logits.output_shape[-1], dtype=np.float32)[targets]


def peer_occlusion(logits, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """xplique's occlusion maps of the logits, float32 (N, H, W)."""
    from xplique.attributions import Occlusion

    explainer = Occlusion(logits, batch_size=BATCH, patch_size=PATCH, patch_stride=STRIDE,
                          occlusion_value=GREY)
    return np.asarray(explainer.explain(images, one_hot(logits, targets)))[..., 0]


def peer_integrated_gradients(logits, images, targets, steps: int = IG_STEPS) -> np.ndarray:
    """xplique's integrated gradients from a black (zero) baseline, channels summed, (N, H, W)."""
    from xplique.attributions import IntegratedGradients

    explainer = IntegratedGradients(logits, batch_size=BATCH_SIZE, steps=steps,
                                    baseline_value=0.0, reducer="sum")
    return np.asarray(explainer.explain(images, one_hot(logits, targets)))[..., 0]


def peer_gradient_statistic(kind: str, logits, images, targets,
                            n_samples: int = SMOOTHGRAD_SAMPLES) -> np.ndarray:
    """xplique's ``SquareGrad`` or ``VarGrad`` with sigma = NOISE, channels summed, (N, H, W)."""
    from xplique import attributions

    explainer = getattr(attributions, kind)(logits, batch_size=BATCH_SIZE, nb_samples=n_samples,
                                            noise=NOISE, reducer="sum")
    return np.asarray(explainer.explain(images, one_hot(logits, targets)))[..., 0]


def peer_cam(kind: str, graph_logits, images, targets, upsample: bool = True) -> np.ndarray:
    """tf-keras-vis's ``GradcamPlusPlus`` or ``Scorecam`` at LAYER, not normalised, (N, H, W)
    (or conv4's (N, 8, 8) if not ``upsample``)."""
    import tf_keras_vis.gradcam_plus_plus
    import tf_keras_vis.scorecam
    from tf_keras_vis.utils.scores import CategoricalScore

    module = tf_keras_vis.scorecam if kind == "Scorecam" else tf_keras_vis.gradcam_plus_plus
    settings = {"batch_size": BATCH_SIZE} if kind == "Scorecam" else {}
    explainer = getattr(module, kind)(graph_logits, clone=False)
    return np.asarray(explainer(CategoricalScore(list(targets)), images, penultimate_layer=LAYER,
                                expand_cam=upsample, normalize_cam=False, **settings))


# --- occlusion -----------------------------------------------------------------------------------

def occlusion_report(model, name: str, logits) -> None:
    """The course's occlusion and xplique's on 64 images: maps and times."""
    images = cu.make_shapes(N_IMAGES, seed=100).images
    targets = model.predict(images, verbose=0).argmax(axis=1)
    course = cu.occlusion.occlusion(model, images, targets, patch=PATCH, stride=STRIDE,
                                    fill=GREY, score="logit_drop", batch_size=BATCH)
    peer = peer_occlusion(logits, images, targets)
    scaled = course * covering_patches(images.shape[1])
    agree = np.corrcoef(scaled.ravel(), peer.ravel())[0, 1]
    print(f"model: {name}; {N_IMAGES} images, patch {PATCH}, stride {STRIDE}, grey fill")
    print(f"maps: correlation {agree:.4f}, largest difference {np.abs(scaled - peer).max():.2e}")

    passes = len(cu.occlusion.positions(images.shape[1], PATCH, STRIDE)) ** 2 + 1
    bound = bound_run(bound_functions(model)[FORWARD], images, passes)
    course_s, bound_s = best_times(
        lambda: cu.occlusion.occlusion(model, images, targets, patch=PATCH, stride=STRIDE,
                                       fill=GREY, score="logit_drop", batch_size=BATCH), bound)
    peer_s, bound_again = best_times(lambda: peer_occlusion(logits, images, targets), bound)
    bound_s = min(bound_s, bound_again)
    print(f"bound ({passes} x forward per image): {bound_s:.2f} s")
    print(f"course occlusion: {course_s:.2f} s, {course_s / bound_s:.2f}x the bound")
    print(f"xplique Occlusion: {peer_s:.2f} s, {peer_s / bound_s:.2f}x the bound")


# --- notebook 12's methods -----------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    """A course method and a peer's on the same images and targets.

    Attributes:
        peer: the peer's library and class, as printed.
        row: the method's row in ``benchmarks.run`` (its name, bound and passes).
        course: ``course(images, targets)`` gives the course's maps (N, H, W).
        other: ``other(images, targets)`` gives the peer's.
    """

    peer: str
    row: Row
    course: Callable
    other: Callable


def run_row(prefix: str) -> Row:
    """The row of ``benchmarks.run`` whose name starts with ``prefix``."""
    return next(row for row in ROWS if row.name.startswith(prefix))


def pairs(model, logits, graph_logits) -> list[Pair]:
    """The five methods of notebook 12 that a peer has, with the course's settings."""
    return [
        Pair("xplique IntegratedGradients", run_row("integrated gradients"),
             lambda x, t: attribution.integrated_gradients(model, x, t, steps=IG_STEPS),
             lambda x, t: peer_integrated_gradients(logits, x, t)),
        Pair("xplique SquareGrad", run_row("SmoothGrad²"),
             lambda x, t: attribution.smoothgrad_squared(model, x, t, noise=NOISE,
                                                         n_samples=SMOOTHGRAD_SAMPLES),
             lambda x, t: peer_gradient_statistic("SquareGrad", logits, x, t)),
        Pair("xplique VarGrad", run_row("VarGrad"),
             lambda x, t: attribution.vargrad(model, x, t, noise=NOISE,
                                              n_samples=SMOOTHGRAD_SAMPLES),
             lambda x, t: peer_gradient_statistic("VarGrad", logits, x, t)),
        Pair("tf-keras-vis GradcamPlusPlus", run_row("Grad-CAM++"),
             lambda x, t: attribution.grad_cam_plus_plus(model, x, t, layer=LAYER),
             lambda x, t: peer_cam("GradcamPlusPlus", graph_logits, x, t)),
        Pair("tf-keras-vis Scorecam", run_row("Score-CAM"),
             lambda x, t: attribution.score_cam(model, x, t, layer=LAYER),
             lambda x, t: peer_cam("Scorecam", graph_logits, x, t)),
    ]


def compare(pair: Pair, bounds: dict, images: np.ndarray, targets: np.ndarray) -> dict:
    """The agreement of one pair's maps, and the best times of each side and of the bound."""
    r = map_agreement(pair.course(images, targets), pair.other(images, targets))
    bound = bound_run(bounds[pair.row.bound], images, pair.row.passes)
    course_s, bound_s = best_times(lambda: pair.course(images, targets), bound)
    peer_s, bound_again = best_times(lambda: pair.other(images, targets), bound)
    return {"method": pair.row.name, "peer": pair.peer, "r mean": np.nanmean(r),
            "r min": np.nanmin(r), "course": course_s, "other": peer_s,
            "bound": min(bound_s, bound_again),
            "bound kind": f"{pair.row.passes} x {pair.row.bound}"}


def format_pairs(results: list[dict]) -> str:
    """The comparisons as a plain-text table."""
    lines = [f"{'course method':<28} {'peer':<29} {'r mean':>6} {'r min':>6} {'course s':>8} "
             f"{'peer s':>7} {'bound s':>7}  bound", "-" * 118]
    for r in results:
        lines.append(f"{r['method']:<28} {r['peer']:<29} {r['r mean']:>6.4f} {r['r min']:>6.4f} "
                     f"{r['course']:>8.3f} {r['other']:>7.3f} {r['bound']:>7.3f}  "
                     f"{r['bound kind']} per image")
    return "\n".join(lines)


def trapezoid_ig(model, images: np.ndarray, targets: np.ndarray, steps: int) -> np.ndarray:
    """The course's gradients at xplique's IG points, averaged with its trapezoid weights (black
    baseline, channels summed), (N, H, W): xplique's definition on the course's gradients."""
    alphas, weights = trapezoid_points(steps)
    maps = []
    for x, t in zip(images, targets, strict=True):
        grads = cu.gradients.input_gradients(model, alphas[:, None, None, None] * x,
                                             np.full(steps, t), value_range=None)
        maps.append((x * np.tensordot(weights, grads, axes=1)).sum(axis=-1))
    return np.stack(maps)


def diagnostics(model, logits, graph_logits, images, targets) -> None:
    """The measurements behind the differences the table shows (see the module docstring)."""
    peer = peer_integrated_gradients(logits, images, targets)
    mine = trapezoid_ig(model, images, targets, IG_STEPS)
    print(f"IG: the course's gradients at xplique's {IG_STEPS} points (ends included, trapezoid "
          f"weights) vs xplique: r {map_agreement(mine, peer).mean():.6f}, largest difference "
          f"{np.abs(mine - peer).max():.1e} (maps up to {np.abs(peer).max():.1f})")
    for m in (4 * IG_STEPS, 16 * IG_STEPS):
        course = attribution.integrated_gradients(model, images, targets, steps=m)
        r = map_agreement(course, peer_integrated_gradients(logits, images, targets, m))
        print(f"IG with m = {m}: course (midpoints) vs xplique (trapezoid) r {r.mean():.4f}")
    print("SmoothGrad² and VarGrad: the course and xplique draw different noise (xplique anew at "
          "each call), so r is bounded by\nthe sampling error; r mean by sample count n, course "
          "vs xplique (course seed 0 vs seed 1):")
    for kind, method in (("SquareGrad", attribution.smoothgrad_squared),
                         ("VarGrad", attribution.vargrad)):
        cells = []
        for n in LADDER:
            seed0, seed1 = (method(model, images, targets, noise=NOISE, n_samples=n, seed=s)
                            for s in (0, 1))
            peer = peer_gradient_statistic(kind, logits, images, targets, n)
            cells.append(f"n={n}: {map_agreement(seed0, peer).mean():.4f} "
                         f"({map_agreement(seed0, seed1).mean():.4f})")
        print(f"  {kind:<10} " + ", ".join(cells))
    for kind, method in (("GradcamPlusPlus", attribution.grad_cam_plus_plus),
                         ("Scorecam", attribution.score_cam)):
        r = map_agreement(method(model, images, targets, layer=LAYER, upsample=False),
                          peer_cam(kind, graph_logits, images, targets, upsample=False))
        print(f"{kind} at {LAYER}'s resolution (no upsampling on either side): r mean "
              f"{np.nanmean(r):.4f}, min {np.nanmin(r):.4f}")


def attribution_report(model, logits) -> None:
    """Notebook 12's methods and the peers': agreement, times, and the diagnostics."""
    import keras

    keras.config.disable_interactive_logging()       # tf-keras-vis's Scorecam calls predict
    images = full_range(cu.make_shapes(N_IMAGES, seed=100).images)[:N_MAPS]
    targets = logits.predict(images, verbose=0).argmax(axis=1)
    graph_logits = graph_logits_model(model)
    bounds = bound_functions(model)
    print(f"\nnotebook 12's methods: {len(images)} of those images (values spanning [0, 1]), "
          f"their predicted classes; IG m = {IG_STEPS}, noise {NOISE} and n = "
          f"{SMOOTHGRAD_SAMPLES}, CAMs at {LAYER}; batches of {BATCH_SIZE}")
    results = [compare(p, bounds, images, targets) for p in pairs(model, logits, graph_logits)]
    print(format_pairs(results))
    print("r: Pearson's correlation of each image's two maps, flattened (mean, lowest); times: "
          "best of 2 to 30 runs after a warm-up, each side in turn with its bound\n")
    diagnostics(model, logits, graph_logits, images, targets)


def main() -> None:
    cu.setup(seed=0)
    model, name = load_model()
    logits = cu.logits_model(model)               # built once: xplique traces once per model
    occlusion_report(model, name, logits)
    attribution_report(model, logits)


if __name__ == "__main__":
    main()
