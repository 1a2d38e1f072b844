"""Black-box explanations by perturbation: RISE, and thin adapters over LIME and Anchors.

Each one hides parts of the image in many random ways and watches the prediction:

- :func:`rise` (Petsiuk, Das & Saenko 2018): random binary masks on a small grid, upsampled
  bilinearly with a random shift; the map is the average of the masks weighted by the class
  probability of the masked image;
- :func:`lime` (Ribeiro, Singh & Guestrin 2016) through the ``lime`` package: superpixels
  switched on and off at random, a weighted linear model fitted to the class probability; the
  weights of the superpixels are the explanation;
- :func:`anchors` (Ribeiro, Singh & Guestrin 2018) through alibi's ``AnchorImage``: the
  smallest set of superpixels that, kept while the rest is replaced, keeps the prediction with
  high probability (precision), and how often such samples occur (coverage).

Every model call is batched. alibi is imported only when :func:`anchors` runs (it takes seconds
to import).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .checks import check_batch_size, check_fill
from .errors import CourseError
from .gradients import UNIT_RANGE, _check_choice, prepare
from .occlusion import BATCH_SIZE, _is_int, fill_images, forward_logits, occluded_logits

SEGMENTATIONS = ("quickshift", "slic")
# scikit-image's SLIC settings of segment(image, "slic"): about 40 superpixels asked for, on a
# 64×64 shape or a 224×224 photo alike. Anchors takes the same dict as segmentation_kwargs, so
# that LIME and Anchors can share one segmentation and its superpixel numbers.
SLIC_SETTINGS = {"n_segments": 40, "compactness": 10, "sigma": 0.5, "start_label": 0}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, classes) logits, float32."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def _resolve(model, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Targets with -1 (predicted class) replaced, from one batched forward pass."""
    return np.where(t < 0, forward_logits(model, x).argmax(axis=1), t).astype(np.int32)


# --- RISE ---------------------------------------------------------------------------------------

def _check_rise(size, n_masks, keep, grid) -> None:
    if not _is_int(n_masks) or n_masks < 1:
        raise CourseError(f"n_masks must be a positive integer (RISE uses 1,000 to 8,000); "
                          f"got {n_masks!r}.")
    if not isinstance(keep, float | int) or not 0 < keep < 1:
        raise CourseError(f"keep (the probability of keeping a grid cell) must lie strictly "
                          f"between 0 and 1, e.g. 0.5; got {keep!r}.")
    if not _is_int(grid) or not 2 <= grid <= min(size):
        raise CourseError(f"grid (cells per side of the random mask) must be a whole number from "
                          f"2 to {min(size)}, e.g. 8; got {grid!r}.")


@functools.lru_cache(maxsize=2)
def rise_masks(size: tuple[int, int], n_masks: int = 2000, keep: float = 0.5, grid: int = 8,
               seed: int = 0) -> np.ndarray:
    """The random masks of RISE, float32 (n_masks, H, W) in [0, 1] (read-only, cached).

    1. Draw binary grids (grid × grid), each cell kept with probability ``keep``.
    2. Upsample each bilinearly to (grid + 1) × cell, where cell = ceil(H / grid).
    3. Crop H × W at a random shift of 0 to cell - 1 pixels in each direction.
    """
    import tensorflow as tf

    h, w = size
    cell_h, cell_w = -(-h // grid), -(-w // grid)
    rng = np.random.default_rng(seed)
    cells = (rng.random((n_masks, grid, grid, 1)) < keep).astype(np.float32)
    up = tf.image.resize(cells, ((grid + 1) * cell_h, (grid + 1) * cell_w), "bilinear")
    up = up.numpy()[..., 0]
    dy, dx = rng.integers(0, cell_h, n_masks), rng.integers(0, cell_w, n_masks)
    rows = (dy[:, None] + np.arange(h))[:, :, None]
    cols = (dx[:, None] + np.arange(w))[:, None, :]
    masks = up[np.arange(n_masks)[:, None, None], rows, cols].astype(np.float32)
    masks.setflags(write=False)
    return masks


def rise(model, images, target=None, *, n_masks: int = 2000, keep: float = 0.5, grid: int = 8,
         fill="mean", seed: int = 0, batch_size: int = BATCH_SIZE,
         value_range=UNIT_RANGE) -> np.ndarray:
    """RISE: Randomized Input Sampling for Explanation (Petsiuk, Das & Saenko 2018).

    S_c(pixel) = 1 / (n_masks · keep) · sum over masks M of p_c(x ⊙ M) · M(pixel):
    a pixel matters if the class probability is high whenever it is kept.

    Args:
        model: a Keras image classifier (not changed).
        images: float32 (N, H, W, C) or one image (H, W, C), in the model's input range.
        target: None (the predicted class), one class index, or one per image.
        n_masks: the number of random masks (forward passes per image).
        keep: the probability of keeping each grid cell.
        grid: cells per side of the small random grid (the resolution of the masks).
        fill: what a masked pixel shows: ``"mean"`` (the image's mean colour, the default: the
            paper multiplies mean-subtracted images by the mask, so its zero is the mean),
            ``"grey"``, ``"blur"`` or a number (0.0: black); see
            :func:`course_utils.occlusion.fill_images`.
        seed: the seed of the masks; the same masks are used for every image.
        batch_size: masked images per forward pass.
        value_range: the range the images must lie in, or None.

    Returns:
        float32 (N, H, W) maps, not normalised.
    """
    check_batch_size(batch_size)
    x, t = prepare(model, images, target, value_range)
    size = x.shape[1:3]
    _check_rise(size, n_masks, keep, grid)
    check_fill(fill)
    masks = rise_masks(tuple(size), int(n_masks), float(keep), int(grid), int(seed))
    hidden = 1.0 - masks                                 # occluded_logits hides where mask = 1
    flat = masks.reshape(len(masks), -1)
    t = _resolve(model, x, t)
    fills = fill_images(x, fill, value_range)
    out = np.empty(x.shape[:3], np.float32)
    for i in range(len(x)):
        p = softmax(occluded_logits(model, x[i], fills[i], hidden, batch_size))
        out[i] = (p[:, t[i]] @ flat).reshape(size) / (n_masks * keep)
    return out


# --- LIME ---------------------------------------------------------------------------------------

@dataclass
class LimeResult:
    """LIME's explanation of one image.

    Attributes:
        segments: int (H, W), the superpixel of each pixel.
        weights: float32 (n_superpixels,), the linear model's weight of each superpixel (0 for
            superpixels not among the ``n_features`` selected).
        top: the ids of the selected superpixels with a positive weight, strongest first.
        map: float32 (H, W), each pixel its superpixel's weight.
        target: the class explained.
    """

    segments: np.ndarray
    weights: np.ndarray
    top: list[int]
    map: np.ndarray
    target: int


def segment(image: np.ndarray, method="quickshift", seed: int = 0) -> np.ndarray:
    """Superpixels of one image (H, W, 3) in [0, 1], int (H, W) labelled 0..K-1.

    Quickshift's settings (a small kernel) suit 64×64 images, where they give about 10 to 30
    superpixels; SLIC (:data:`SLIC_SETTINGS`, about 40 asked for) suits photos too. ``method``
    may also be a function ``image -> labels (H, W)``.
    """
    from skimage.segmentation import quickshift, slic

    image = np.asarray(image, np.float64)
    if callable(method):
        labels = np.asarray(method(image))
    elif method == "quickshift":
        labels = quickshift(image, kernel_size=3, max_dist=10, ratio=0.5, rng=seed)
    else:
        _check_choice("segmentation", method, SEGMENTATIONS)
        labels = slic(image, **SLIC_SETTINGS)
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)


def _check_segments(segments: np.ndarray) -> None:
    if segments.max() < 1:
        raise CourseError("the segmentation gave a single superpixel, so there is nothing to "
                          "switch on and off; use an image with more structure, or the other "
                          f"segmentation ({' or '.join(SEGMENTATIONS)}).")


def probabilities_fn(model, batch_size: int = BATCH_SIZE) -> Callable[[np.ndarray], np.ndarray]:
    """``f(images) -> probabilities (N, classes)``, batched, for lime and alibi."""
    return lambda images: softmax(forward_logits(model, np.asarray(images, np.float32),
                                                 batch_size))



def _one_image(model, image, target, value_range, what: str):
    """``prepare`` for methods that explain a single image: LIME and Anchors."""
    x, t = prepare(model, image, target, value_range)
    if len(x) != 1:
        raise CourseError(f"{what} one image at a time; got a batch of {len(x)}.")
    return x, t


LIME_KERNEL_WIDTH = 0.25        # lime_image's default kernel width, for cosine distances


def lime_sample_weights(patterns, kernel_width: float = LIME_KERNEL_WIDTH) -> np.ndarray:
    r"""Steps 1 and 2 of :func:`lime_fit`: :math:`\pi_i = \sqrt{\exp(-d_i^2 / \sigma^2)}`
    for the cosine distance :math:`d_i` of each pattern to the all-ones pattern (the image)."""
    z = np.asarray(patterns, np.float64)
    norms = np.linalg.norm(z, axis=1) * np.sqrt(z.shape[1])
    cosine = np.divide(z.sum(axis=1), norms, out=np.zeros(len(z)), where=norms > 0)
    return np.sqrt(np.exp(-((1 - cosine) ** 2) / kernel_width**2))


def lime_fit(patterns, probs, *, kernel_width: float = LIME_KERNEL_WIDTH,
             alpha: float = 0.0) -> tuple[float, np.ndarray]:
    r"""LIME's weighted linear fit, written out (what ``lime`` does inside ``explain_instance``).

    1. the distance of each on/off pattern :math:`z_i` to the image itself (all ones) is the
       cosine distance :math:`d_i = 1 - \cos(z_i, \mathbf{1})`;
    2. each sample weighs :math:`\pi_i = \sqrt{\exp(-d_i^2 / \sigma^2)}`, with
       :math:`\sigma` = ``kernel_width`` (lime's kernel);
    3. :math:`(w_0, w)` minimise :math:`\sum_i \pi_i (p_i - w_0 - z_i \cdot w)^2 + \alpha
       \lVert w \rVert^2`: a weighted least-squares fit with an intercept (lime itself uses
       ridge regression, :math:`\alpha = 1`).

    Args:
        patterns: (n, K) 0/1, one row per sample, one column per superpixel.
        probs: (n,) the class probability of each sample.
        kernel_width: the kernel's width :math:`\sigma`.
        alpha: the ridge penalty :math:`\alpha` (0: plain weighted least squares).

    Returns:
        The intercept :math:`w_0` and the weights :math:`w` (K,), one per superpixel.
    """
    z = np.asarray(patterns, np.float64)
    p = np.asarray(probs, np.float64)
    pi = lime_sample_weights(z, kernel_width)
    z_mean, p_mean = pi @ z / pi.sum(), pi @ p / pi.sum()       # weighted means: the intercept
    zc, pc = z - z_mean, p - p_mean
    w = np.linalg.solve(zc.T @ (pi[:, None] * zc) + alpha * np.eye(z.shape[1]), zc.T @ (pi * pc))
    return float(p_mean - z_mean @ w), w


def lime_explanation(model, image, target=None, *, n_samples: int = 1000, n_features: int = 5,
                     segmentation="quickshift", hide_color: float = 0.5, seed: int = 0,
                     batch_size: int = 250, value_range=UNIT_RANGE) -> LimeResult:
    """LIME (Ribeiro et al. 2016) for one image, through ``lime.lime_image``.

    Args:
        model: a Keras image classifier (not changed).
        image: one image (H, W, 3) (or a batch of one), in the model's input range.
        target: None (the predicted class) or a class index.
        n_samples: random on/off patterns of the superpixels (forward passes).
        n_features: how many superpixels the linear model keeps.
        segmentation: ``"quickshift"``, ``"slic"`` or a function (see :func:`segment`).
        hide_color: the value of a switched-off superpixel (grey; lime's own default, each
            superpixel's mean colour, would hide nothing on one-coloured shapes).
        seed: seeds the segmentation and lime's sampling (``random_state``).
        batch_size: images per model call inside lime.
        value_range: the range the image must lie in, or None.

    Returns:
        A :class:`LimeResult`.
    """
    from lime.lime_image import LimeImageExplainer

    x, t = _one_image(model, image, target, value_range, "LIME explains")
    check_fill(hide_color, "hide_color")
    batch_size = check_batch_size(batch_size)
    if not _is_int(n_samples) or n_samples < 10:
        raise CourseError(f"n_samples must be a whole number of at least 10 (LIME's default "
                          f"is 1,000); got {n_samples!r}.")
    segments = segment(x[0], segmentation, seed)
    _check_segments(segments)
    n_segments = int(segments.max()) + 1
    if not _is_int(n_features) or not 1 <= n_features <= n_segments:
        raise CourseError(f"n_features must be a whole number from 1 to {n_segments} (the "
                          f"number of superpixels); got {n_features!r}.")
    c = int(_resolve(model, x, t)[0])
    explainer = LimeImageExplainer(random_state=seed, feature_selection="highest_weights")
    with _no_progress_bar():
        exp = explainer.explain_instance(
            x[0].astype(np.float64), probabilities_fn(model), labels=(c,), top_labels=None,
            hide_color=hide_color, num_features=n_features, num_samples=n_samples,
            batch_size=batch_size, segmentation_fn=lambda _: segments)
    weights = np.zeros(n_segments, np.float32)
    for k, wk in exp.local_exp[c]:
        weights[k] = wk
    top = [int(k) for k, wk in exp.local_exp[c] if wk > 0]
    return LimeResult(segments, weights, top, weights[segments], c)


@contextlib.contextmanager
def _no_progress_bar():
    """Silence lime's tqdm progress bar (a widget in notebooks, stderr elsewhere)."""
    import lime.lime_image

    shown = lime.lime_image.tqdm
    lime.lime_image.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        lime.lime_image.tqdm = shown


def lime(model, images, target=None, **settings) -> np.ndarray:
    """LIME weight maps, float32 (N, H, W): each pixel the weight of its superpixel.

    Args: as :func:`lime_explanation`, for a batch (one LIME run per image).
    """
    value_range = settings.get("value_range", UNIT_RANGE)
    x, t = prepare(model, images, target, value_range)
    return np.stack([lime_explanation(model, x[i], None if t[i] < 0 else int(t[i]),
                                      **settings).map for i in range(len(x))])


# --- Anchors ------------------------------------------------------------------------------------

@dataclass
class AnchorResult:
    """An anchor of one image.

    Attributes:
        mask: bool (H, W), the pixels of the anchor's superpixels.
        segments: int (H, W), the superpixel of each pixel.
        anchor: the ids of the anchor's superpixels.
        precision: how often the prediction stays the same when the anchor is kept (estimated).
        coverage: the share of random samples that contain the anchor.
        target: the predicted class the anchor explains.
    """

    mask: np.ndarray
    segments: np.ndarray
    anchor: list[int]
    precision: float
    coverage: float
    target: int


ANCHOR_SEGMENTS = {"n_segments": 15, "compactness": 20, "sigma": 0.5, "start_label": 0}


def anchor_explanation(model, image, *, threshold: float = 0.95, p_sample: float = 0.5,
                       segmentation_kwargs: dict | None = None, seed: int = 0,
                       batch_size: int = 100, coverage_samples: int = 10_000,
                       value_range=UNIT_RANGE) -> AnchorResult:
    """Anchors (Ribeiro et al. 2018) for one image, through alibi's ``AnchorImage``.

    Args:
        model: a Keras image classifier (not changed).
        image: one image (H, W, 3) in the model's input range. Anchors explain the predicted
            class.
        threshold: the precision the anchor must reach.
        p_sample: the probability of replacing each superpixel outside the anchor.
        segmentation_kwargs: SLIC settings; the default (15 segments) suits 64×64 images.
        seed: seeds alibi's sampling.
        batch_size: images per model call.
        coverage_samples: random samples from which the anchor's coverage is estimated (alibi's
            default, 10,000). alibi draws them as whole perturbed images at once: at 224 × 224
            px that is 6 GB in float32, and twice that while they are stacked; 1,000 samples
            need a tenth and still give the coverage to about ±3 points (95%).
        value_range: the range the image must lie in, or None.

    Returns:
        An :class:`AnchorResult`.
    """
    x, _ = _one_image(model, image, None, value_range, "Anchors explain")
    if not 0 < threshold < 1:
        raise CourseError(f"threshold must lie strictly between 0 and 1, e.g. 0.95; got "
                          f"{threshold!r}.")
    if not 0 < p_sample < 1:
        raise CourseError(f"p_sample must lie strictly between 0 and 1; got {p_sample!r}.")
    if not _is_int(coverage_samples) or coverage_samples < 100:
        raise CourseError(f"coverage_samples must be a whole number of samples, 100 or more (e.g. "
                          f"1000); got {coverage_samples!r}.")
    explainer = _anchor_explainer(model, x[0], segmentation_kwargs, seed)
    np.random.seed(seed)                                 # alibi samples with np.random
    quiet = logging.getLogger("alibi")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            exp = explainer.explain(x[0], threshold=threshold, p_sample=p_sample,
                                    batch_size=batch_size, coverage_samples=coverage_samples,
                                    seed=seed)
    finally:
        quiet.level = level
    segments = np.asarray(exp.segments)
    anchor = [int(k) for k in exp.data["raw"]["feature"]]
    return AnchorResult(np.isin(segments, anchor), segments, anchor, float(exp.precision),
                        float(exp.coverage), int(exp.data["raw"]["prediction"][0]))


def _anchor_explainer(model, image: np.ndarray, segmentation_kwargs, seed):
    """alibi's AnchorImage for ``image``: an absent superpixel shows the image's mean colour
    (alibi's default, each superpixel's own mean, hides nothing on one-coloured shapes; grey
    patches look like squares to the course CNN)."""
    try:
        from alibi.explainers import AnchorImage  # slow to import: only when used
    except ImportError as error:
        raise CourseError("Anchors needs alibi, which is not installed: pip install "
                          "'alibi==0.9.6' (the course's `anchors` extra; Business Source License "
                          "1.1, free for education and non-production use).") from error

    kwargs = dict(ANCHOR_SEGMENTS if segmentation_kwargs is None else segmentation_kwargs)
    background = np.broadcast_to(image.mean(axis=(0, 1)), (1, *image.shape)).astype(np.float32)
    with contextlib.redirect_stderr(io.StringIO()):
        return AnchorImage(probabilities_fn(model), image.shape, segmentation_fn="slic",
                           segmentation_kwargs=kwargs, seed=seed, images_background=background)


def anchors(model, images, target=None, **settings) -> np.ndarray:
    """Anchor masks as maps, float32 (N, H, W): 1 on the anchor, 0 elsewhere.

    Args: as :func:`anchor_explanation`; ``target`` must be None (the predicted class).
    """
    if target is not None:
        raise CourseError("Anchors explain the predicted class; leave target=None.")
    x, _ = prepare(model, images, None, settings.get("value_range", UNIT_RANGE))
    return np.stack([anchor_explanation(model, x[i], **settings).mask.astype(np.float32)
                     for i in range(len(x))])


# --- exercise -----------------------------------------------------------------------------------

def _lime_exercise_data():
    """Patterns, probabilities and the answers the self-check knows, right and wrong."""
    rng = np.random.default_rng(4)
    n = 80
    z = (rng.random((n, 6)) < 0.6).astype(np.float64)
    z[0] = 1                                             # the image itself comes first
    z[z.sum(axis=1) == 0, 0] = 1                         # no all-off pattern: its cosine is 0/0
    p = np.clip(0.1 + z @ np.array([0.3, -0.1, 0.2, 0.0, 0.25, 0.05])
                + 0.4 * z[:, 0] * z[:, 2] + 0.05 * rng.standard_normal(n), 0, 1)
    right = lime_fit(z, p)[1]

    def weighted(pi, intercept=True):
        x = np.hstack([np.ones((n, 1)), z]) if intercept else z
        return np.linalg.lstsq(x * np.sqrt(pi)[:, None], p * np.sqrt(pi), rcond=None)[0]

    kernel = lime_sample_weights(z) ** 2                              # exp(-d² / width²)
    off = 1 - z.mean(axis=1)                                          # the share switched off
    wrong = {
        "every sample weighs the same here; weight each by the kernel of its distance to the "
        "image, so that the samples close to it count more": weighted(np.ones(n))[1:],
        "your samples weigh exp(-d² / width²); lime's weight pi is the square root of that. "
        "(lstsq squares what multiplies a row: multiply each row, and p, by the square root of "
        "pi.)": weighted(kernel)[1:],
        "the fit needs an intercept w0 (a column of ones); without it the weights must also "
        "carry the probability every sample shares": weighted(np.sqrt(kernel), intercept=False),
        "the distance is the cosine distance between the pattern and the all-ones pattern, "
        "1 - cos(z, 1), not the share of superpixels switched off":
            weighted(np.sqrt(np.exp(-(off**2) / LIME_KERNEL_WIDTH**2)))[1:],
    }
    return z, p, right, wrong


def check_lime_fit_exercise(my_lime_fit: Callable) -> None:
    """Self-check for notebook 04: ``my_lime_fit(patterns, probs)`` must return LIME's weights,
    one per superpixel, from the weighted least-squares fit of :func:`lime_fit` (alpha = 0).

    ``patterns`` is (n, K) 0/1 with the image itself (all ones) first, ``probs`` (n,). Prints
    "correct" or "not yet: ..." with a hint that names the mistake, never the code.
    """
    z, p, right, wrong = _lime_exercise_data()
    try:
        got = my_lime_fit(z.copy(), p.copy())
    except Exception as e:  # a student's bug: report it, do not crash the notebook
        print(f"not yet: your function raised {type(e).__name__}: {e}")
        return
    if got is None:
        print("not yet: your function returns None; return one weight per superpixel.")
        return
    got = np.ravel(np.asarray(got, np.float64))
    if got.shape == (len(right) + 1,) and np.allclose(got[1:], right, atol=1e-6):
        print("not yet: return the weights only, without the intercept w0 in front.")
    elif got.shape != right.shape:
        print(f"not yet: return one weight per superpixel, shape {right.shape}; yours has shape "
              f"{got.shape}.")
    elif np.allclose(got, right, atol=1e-6):
        print("correct")
    else:
        hints = [hint for hint, answer in wrong.items() if np.allclose(got, answer, atol=1e-6)]
        print("not yet: " + (hints[0] if hints else "the weights differ from LIME's; check "
                             "the three steps: the cosine distance to the image, the kernel "
                             "weight of each sample, a weighted fit with an intercept."))
