"""Occlusion sensitivity (Zeiler & Fergus 2014): hide part of the image, watch the class score.

A square patch (grey, the image's mean colour, or a blurred copy of the image) slides over the
image with a given stride. For every position p the occluded image goes through the model and
gives a score s(p) of the target class:

- ``"probability"``: p_c(occluded), the probability of the class (the lecture's map: *low* where
  the object is);
- ``"probability_drop"``: p_c(image) - p_c(occluded);
- ``"logit_drop"`` (default): S_c(image) - S_c(occluded), the drop of the pre-softmax score
  (*high* where the object is, like every other map of the course).

The scores form a coarse grid (one cell per patch position); the map at image resolution gives
each pixel the average of the scores of all patches covering it.

Speed: all occluded images of an image are built at once from a stack of binary masks,
``x * (1 - m) + fill * m``, and go through one compiled forward pass of the logits view in large
batches: never one ``predict`` per patch.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .checks import check_batch_size, check_fill
from .errors import CourseError
from .gradients import UNIT_RANGE, _check_choice, cached, image_spec, prepare
from .models import logits_model

FILLS = ("grey", "mean", "blur")
SCORES = ("logit_drop", "probability_drop", "probability")
# Occluded images per forward pass. On 2 CPU cores 128 made occlusion and RISE ~5% faster than
# 64 (each call's cost of making the images is spread over more), while the forward pass
# alone was within 1%.
BATCH_SIZE = 128


@dataclass
class OcclusionResult:
    """Occlusion sensitivity of a batch.

    Attributes:
        grid: float32 (N, rows, cols), one score per patch position.
        map: float32 (N, H, W), at image resolution (overlapping patches averaged).
        target: int32 (N,), the class explained for each image.
        passes: forward passes per image (every patch position, plus the unoccluded image).
    """

    grid: np.ndarray
    map: np.ndarray
    target: np.ndarray
    passes: int


# --- geometry -----------------------------------------------------------------------------------

def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_geometry(size: tuple[int, int], patch: int, stride: int) -> None:
    """Raise a CourseError unless ``patch`` and ``stride`` are valid for an image of ``size``."""
    smallest = min(size)
    if not _is_int(patch) or not 1 <= patch <= smallest:
        raise CourseError(f"patch must be a whole number of pixels from 1 to {smallest} (the "
                          f"image is {size[0]}×{size[1]}); got {patch!r}.")
    if not _is_int(stride) or not 1 <= stride <= smallest:
        raise CourseError(f"stride must be a whole number of pixels from 1 to {smallest}; "
                          f"got {stride!r}.")
    if stride > patch:
        raise CourseError(f"A stride of {stride} with a patch of {patch} leaves pixels that no "
                          "patch covers, which would get no value: make the stride at most the "
                          "patch.")


SMALL_SIDE = 64  # the course's images; larger ones (a 224 photo) get a coarser default grid


def default_settings(side: int) -> dict:
    """The default patch and stride for images of ``side`` pixels.

    On the course's 64×64 images, a patch of 1/8 of the side moved by 3/32 of it (8 and 6:
    122 passes). On larger ones (an ImageNet CNN, where a pass costs far more: EfficientNet-Lite0
    at 224 against the course CNN at 64), a coarse grid: a patch of 1/4 of the side moved by 3/16
    of it (56 and 42 at 224: 26 passes), so that a slider move answers in about a second.
    """
    if side <= SMALL_SIDE:
        return {"patch": side // 8, "stride": max(1, 3 * side // 32)}
    return {"patch": side // 4, "stride": 3 * side // 16}


def positions(length: int, patch: int, stride: int) -> list[int]:
    """Start offsets of the patch along one axis: 0, stride, 2·stride, ... and, if the last one
    stops short of the edge, one more flush with the edge, so every pixel is covered."""
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def n_passes(size: tuple[int, int], patch: int, stride: int) -> int:
    """Forward passes per image: one per patch position, plus one for the unoccluded image."""
    check_geometry(size, patch, stride)
    return len(positions(size[0], patch, stride)) * len(positions(size[1], patch, stride)) + 1


@functools.lru_cache(maxsize=32)
def patch_masks(size: tuple[int, int], patch: int, stride: int) -> np.ndarray:
    """Binary masks (rows·cols, H, W), float32: 1 inside the patch at each position, row-major."""
    h, w = size
    rows, cols = positions(h, patch, stride), positions(w, patch, stride)
    masks = np.zeros((len(rows), len(cols), h, w), np.float32)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            masks[i, j, r:r + patch, c:c + patch] = 1.0
    masks = masks.reshape(-1, h, w)
    masks.setflags(write=False)
    return masks


def upsample(grid: np.ndarray, size: tuple[int, int], patch: int, stride: int) -> np.ndarray:
    """Scores (N, rows, cols) to maps (N, H, W): each pixel the mean of the patches covering it."""
    masks = patch_masks(size, patch, stride).reshape(len(grid[0].ravel()), -1)
    flat = grid.reshape(len(grid), -1) @ masks / masks.sum(axis=0)
    return flat.reshape(len(grid), *size).astype(np.float32)


# --- the fill -----------------------------------------------------------------------------------

def fill_images(x: np.ndarray, fill, value_range=UNIT_RANGE, blur_sigma: float = 3.0):
    """What an occluded pixel shows, (N, H, W, C) float32.

    ``"grey"``: the middle of the value range (0.5 for [0, 1]; 0 when the range is None);
    ``"mean"``: each image's mean colour; ``"blur"``: a Gaussian-blurred copy of the image
    (sigma ``blur_sigma`` pixels); a number: that value everywhere.
    """
    check_fill(fill)
    if isinstance(fill, numbers.Real) and not isinstance(fill, bool):
        return np.full_like(x, float(fill))
    _check_choice("fill", fill, FILLS)
    if fill == "grey":
        grey = 0.0 if value_range is None else 0.5 * (value_range[0] + value_range[1])
        return np.full_like(x, grey)
    if fill == "mean":
        return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape).astype(np.float32)
    from scipy.ndimage import gaussian_filter

    if not 0 < blur_sigma <= 100:
        raise CourseError(f"blur_sigma must be a positive number of pixels; got {blur_sigma!r}.")
    return gaussian_filter(x, sigma=(0, blur_sigma, blur_sigma, 0), mode="nearest")


# --- the batched forward pass -------------------------------------------------------------------

def _occluded_logits_function(model):
    """A compiled ``(image, fill, masks) -> logits`` of ``image`` under each mask (M, classes)."""
    view = logits_model(model)
    one = tf.TensorSpec(model.input_shape[1:], tf.float32)
    mask_spec = tf.TensorSpec((None, *model.input_shape[1:3]), tf.float32)

    @tf.function(input_signature=[one, one, mask_spec])
    def occluded_logits(image, fill, masks):
        # image · (1 - m) + fill · m, written with one product: two whole-batch operations
        # instead of four (on 2 CPU cores, 0.07 instead of 0.09 ms per 64×64 image)
        return view(image[None] + (fill - image)[None] * masks[..., None], training=False)

    return occluded_logits


class PassCounter:
    """The number of images sent through the model inside a :func:`count_passes` block."""

    def __init__(self) -> None:
        self.passes = 0


_COUNTERS: list[PassCounter] = []


@contextlib.contextmanager
def count_passes() -> Iterator[PassCounter]:
    """Count the forward passes of occlusion, RISE, LIME, Anchors and the metrics' curves.

    Every image that goes through :func:`occluded_logits` or :func:`forward_logits` inside the
    block counts as one pass (gradient methods are not counted)::

        with cu.occlusion.count_passes() as counter:
            cu.perturbation.rise(model, image, n_masks=500)
        counter.passes      # 501: the masks, and the image itself for its predicted class
    """
    counter = PassCounter()
    _COUNTERS.append(counter)
    try:
        yield counter
    finally:
        _COUNTERS.remove(counter)


def _counted(n: int) -> None:
    for counter in _COUNTERS:
        counter.passes += n


def occluded_logits(model, image: np.ndarray, fill: np.ndarray, masks: np.ndarray,
                    batch_size: int = BATCH_SIZE) -> np.ndarray:
    """The logits of one image (H, W, C) occluded by each mask (M, H, W): (M, classes)."""
    fn = cached(model, ("occlusion",), lambda: _occluded_logits_function(model))
    batch_size = check_batch_size(batch_size)
    _counted(len(masks))
    parts = [fn(image, fill, masks[i:i + batch_size]).numpy()
             for i in range(0, len(masks), batch_size)]
    return np.concatenate(parts)


def forward_logits(model, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Logits of a checked batch (N, H, W, C) through the compiled logits view: (N, classes)."""
    def build():
        view = logits_model(model)
        return tf.function(lambda x: view(x, training=False), input_signature=[image_spec(model)])
    fn = cached(model, ("forward",), build)
    batch_size = check_batch_size(batch_size)
    _counted(len(images))
    return np.concatenate([fn(images[i:i + batch_size]).numpy()
                           for i in range(0, len(images), batch_size)])


def _scores(logits: np.ndarray, target: int, score: str) -> np.ndarray:
    """Row 0 of ``logits`` is the unoccluded image; returns the score of each other row."""
    if score == "logit_drop":
        return logits[0, target] - logits[1:, target]
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return p[1:, target] if score == "probability" else p[0, target] - p[1:, target]


# --- the method ---------------------------------------------------------------------------------

def occlusion_result(model, images, target=None, *, patch: int = 8, stride: int = 4,
                     fill="grey", score: str = "logit_drop", blur_sigma: float = 3.0,
                     batch_size: int = BATCH_SIZE, value_range=UNIT_RANGE) -> OcclusionResult:
    """Occlusion sensitivity as the coarse grid and the map at image resolution.

    Args: as :func:`occlusion`.

    Returns:
        An :class:`OcclusionResult` (grid, map, target, passes).
    """
    _check_choice("score", score, SCORES)
    check_batch_size(batch_size)
    x, t = prepare(model, images, target, value_range)
    size = x.shape[1:3]
    check_geometry(size, patch, stride)
    fills = fill_images(x, fill, value_range, blur_sigma)
    masks = patch_masks(size, patch, stride)
    masks = np.concatenate([np.zeros((1, *size), np.float32), masks])  # row 0: unoccluded
    rows, cols = len(positions(size[0], patch, stride)), len(positions(size[1], patch, stride))
    grid = np.empty((len(x), rows, cols), np.float32)
    for i in range(len(x)):
        logits = occluded_logits(model, x[i], fills[i], masks, batch_size)
        t[i] = int(logits[0].argmax()) if t[i] < 0 else t[i]
        grid[i] = _scores(logits, t[i], score).reshape(rows, cols)
    return OcclusionResult(grid, upsample(grid, size, patch, stride), t, len(masks))


def occlusion(model, images, target=None, *, patch: int = 8, stride: int = 4, fill="grey",
              score: str = "logit_drop", blur_sigma: float = 3.0, batch_size: int = BATCH_SIZE,
              value_range=UNIT_RANGE) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus 2014) at image resolution.

    Args:
        model: a Keras image classifier (not changed).
        images: float32 (N, H, W, C) or one image (H, W, C), in the model's input range.
        target: None (the predicted class), one class index, or one per image.
        patch: side of the square patch, in pixels (1 to the image size).
        stride: step between patch positions, in pixels (>= 1).
        fill: ``"grey"``, ``"mean"``, ``"blur"`` or a number (see :func:`fill_images`).
        score: ``"logit_drop"`` (default), ``"probability_drop"`` or ``"probability"`` (the
            lecture's probability map of the true class: low where it matters).
        blur_sigma: the blur of ``fill="blur"``, in pixels.
        batch_size: occluded images per forward pass.
        value_range: the range the images must lie in, or None.

    Returns:
        float32 (N, H, W): each pixel the mean score of the patch positions covering it.
    """
    return occlusion_result(model, images, target, patch=patch, stride=stride, fill=fill,
                            score=score, blur_sigma=blur_sigma, batch_size=batch_size,
                            value_range=value_range).map


def occlusion_reference(model, image: np.ndarray, target: int, patch: int, stride: int,
                        fill: float = 0.5) -> np.ndarray:
    """The slow way, for tests only: one ``predict`` per patch position. Returns the grid of
    logit drops (rows, cols)."""
    view = logits_model(model)
    base = view(image[None], training=False).numpy()[0, target]
    h, w = image.shape[:2]
    rows, cols = positions(h, patch, stride), positions(w, patch, stride)
    grid = np.empty((len(rows), len(cols)), np.float32)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            occluded = image.copy()
            occluded[r:r + patch, c:c + patch] = fill
            grid[i, j] = base - view(occluded[None], training=False).numpy()[0, target]
    return grid


# --- exercise -----------------------------------------------------------------------------------

def check_cost_exercise(answer, size: int = 64, patch: int = 16, stride: int = 8) -> None:
    """Self-check for notebook 02: how many forward passes does occlusion need for one image of
    ``size``×``size`` with this patch and stride (the unoccluded image included)?

    Prints "correct" or "not yet: <hint>".
    """
    want = n_passes((size, size), patch, stride)
    per_axis = len(positions(size, patch, stride))
    if answer is None:
        print("not yet: replace None by a number.")
    elif answer == want:
        print("correct")
    elif answer == want - 1:
        print("not yet: almost; add the one pass of the unoccluded image (the baseline score).")
    elif answer == per_axis:
        print("not yet: that is the number of positions along one axis; the patch visits every "
              "(row, column) pair.")
    else:
        print(f"not yet: count the start offsets 0, {stride}, {2 * stride}, ... up to "
              f"{size} - {patch} along one axis, square it, and add 1.")


def check_occlusion_exercise(my_occlusion, model, image: np.ndarray, target: int) -> None:
    """Self-check for notebook 02: ``my_occlusion(model, image, masks, c)`` must return, for each
    of M masks (M, H, W), the drop of the class-c logit when the masked pixels turn grey (0.5):
    ``S_c(x) - S_c(x·(1 - m) + 0.5·m)``, shape (M,).

    Prints "correct" or "not yet: <hint>" (never the code).
    """
    x, _ = prepare(model, image, None)
    x = x[0]
    masks = patch_masks(x.shape[:2], x.shape[0] // 4, x.shape[0] // 4)     # 16 positions
    try:
        got = my_occlusion(model, x, masks, target)
    except Exception as e:  # a student's bug: report it, do not crash the notebook
        print(f"not yet: your function raised {type(e).__name__}: {e}")
        return
    print(_occlusion_verdict(got, model, x, masks, target))


def _occlusion_verdict(got, model, x: np.ndarray, masks: np.ndarray, c: int) -> str:
    if got is None:
        return "not yet: your function returns None; return one number per mask."
    got = np.asarray(got, np.float64)
    if got.shape != (len(masks),):
        return (f"not yet: return one number per mask, shape ({len(masks)},); yours has shape "
                f"{got.shape}. Keep only the column of class c.")
    m = masks[..., None]
    clean = forward_logits(model, x[None])[0]

    def logits_of(images):
        return forward_logits(model, images.astype(np.float32))

    def close(want):
        return np.allclose(got, want, rtol=1e-3, atol=1e-3 * (np.abs(want).max() + 1e-6))

    grey = logits_of(x * (1 - m) + 0.5 * m)
    if close(clean[c] - grey[:, c]):
        return "correct"
    if close(grey[:, c] - clean[c]):
        return "not yet: the sign is flipped; the drop is the clean score minus the occluded one."
    if close(grey[:, c]):
        return ("not yet: that is the occluded score itself; subtract it from the score of the "
                "unoccluded image.")
    if close(clean[c] - logits_of(x * m + 0.5 * (1 - m))[:, c]):
        return ("not yet: your images keep the patch and grey out everything else; the mask is 1 "
                "where the pixels are hidden.")
    if close(clean[c] - logits_of(x * (1 - m))[:, c]):
        return "not yet: the hidden pixels must be grey (0.5), not black (0)."
    p = np.exp(grey - grey.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p0 = np.exp(clean - clean.max())
    p0 /= p0.sum()
    if close(p0[c] - p[:, c]) or close(p[:, c]):
        return ("not yet: that is the softmax probability; use the logits, "
                "cu.logits_model(model), as the course does.")
    return ("not yet: the values differ. Build every occluded image as x·(1 − m) + 0.5·m "
            "(the masks need a colour axis to broadcast), send them through the logits model "
            "with the clean image, and take class c's column.")

