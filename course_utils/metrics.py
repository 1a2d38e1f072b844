"""Can we trust an explanation? Scores for saliency maps, each with a known right answer.

- :func:`pointing_game` (Zhang et al. 2016): does the map's highest point land on the object?
- :func:`energy` (Wang et al. 2020, the "energy-based pointing game" of Score-CAM): which share
  of the map's positive attribution lies on the object?
- :func:`deletion_curve` and :func:`insertion_curve` (Petsiuk, Das & Saenko 2018, the RISE
  paper): remove (or reveal) the pixels in the map's order and follow the class probability; the
  area under the curve is the score (deletion: lower is better; insertion: higher is better).
- :func:`road_curve` (Rong et al. 2022, ROAD): deletion with the removed pixels filled in from
  their neighbours (noisy linear imputation) instead of grey, so that the shape of the hole does
  not itself tell the model what was removed.
- :func:`faithfulness_correlation` (Bhatt et al. 2020): do the map's sums over random pixel
  subsets predict how much the logit drops when those pixels are removed?
- :func:`max_sensitivity` (Yeh et al. 2019): how much does the map change under a tiny noise?
- :func:`randomization_cascade` (Adebayo et al. 2018, "Sanity checks for saliency maps"):
  re-initialise the model's layers from the top down and measure how much the maps change. A map
  that stays the same when the model has forgotten everything does not explain the model.
  :func:`random_logit` (Sixt et al. 2020) asks the same of the class: does the map of another,
  random class differ?
- :func:`paired_interval`: two methods scored on the same images are compared image by image.

Maps are (N, H, W), one per image, as every method of the course returns them; masks are boolean
(N, H, W), True on the object (``cu.make_shapes(...).masks``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from .checks import check_batch_size
from .errors import CourseError
from .gradients import UNIT_RANGE, _check_choice, prepare
from .models import layer_names
from .occlusion import _is_int, fill_images, forward_logits
from .perturbation import softmax

BATCH_SIZE = 64  # perturbed images per forward pass


# --- checks -------------------------------------------------------------------------------------

def _shape(shape) -> str:
    return "×".join(str(s) for s in shape)


def as_maps(maps, name: str = "maps") -> np.ndarray:
    """Check maps and return them as float32 (N, H, W); one map (H, W) becomes a batch of one."""
    m = np.asarray(maps)
    if m.ndim == 2:
        m = m[None]
    if m.ndim == 4 and m.shape[-1] in (1, 3):
        raise CourseError(f"{name} must be one 2D map per image, (N, H, W); got {_shape(m.shape)} "
                          "with colour channels. Reduce them first, e.g. with "
                          "cu.gradients.reduce_channels(maps, 'max_abs').")
    if m.ndim != 3 or m.shape[0] == 0:
        raise CourseError(f"{name} must be a batch of 2D maps (N, H, W) or one map (H, W); got "
                          f"shape {m.shape}.")
    if not np.issubdtype(m.dtype, np.number) or np.issubdtype(m.dtype, np.complexfloating):
        raise CourseError(f"{name} must hold real numbers; got dtype {m.dtype}.")
    m = m.astype(np.float32, copy=False)
    if not np.isfinite(m).all():
        raise CourseError(f"{name} contain NaN or infinite values; check the method that made "
                          "them.")
    return m


def as_masks(masks, maps: np.ndarray, name: str = "masks") -> np.ndarray:
    """Check object masks against checked maps (N, H, W) and return them as bool (N, H, W).

    Every mask must mark at least one pixel: there must be an object to point at.
    """
    k = np.asarray(masks)
    k = k[None] if k.ndim == 2 else k
    if k.shape != maps.shape:
        raise CourseError(f"{name} and maps must have the same shape, one mask per map; got "
                          f"{name} {_shape(k.shape)} and maps {_shape(maps.shape)}. (A Grad-CAM "
                          "map at the layer's resolution needs upsample=True.)")
    if k.dtype != bool:
        if not np.isin(k, (0, 1)).all():
            raise CourseError(f"{name} must be boolean, True on the object (or 0/1); got values "
                              f"from {k.min():.3g} to {k.max():.3g}.")
        k = k.astype(bool)
    empty = np.flatnonzero(~k.any(axis=(1, 2)))
    if len(empty):
        raise CourseError(f"the mask of image {empty[0]} is empty; every image needs an object "
                          f"to point at ({len(empty)} empty mask(s)).")
    return k


# --- ground truth: the pointing game and the energy inside the mask -----------------------------

def peaks(maps) -> np.ndarray:
    """The (row, column) of each map's highest value, int (N, 2).

    Ties go to the first maximum in reading order (row by row), as ``np.argmax`` does.
    """
    m = as_maps(maps)
    flat = m.reshape(len(m), -1).argmax(axis=1)
    return np.stack(np.unravel_index(flat, m.shape[1:]), axis=1)


ZHANG_TOLERANCE = 15 / 224   # Zhang et al.'s 15 pixels, as a share of their 224-pixel images


def zhang_tolerance(size: int) -> float:
    """Zhang et al.'s 15-pixel tolerance scaled to an image side of ``size`` pixels (4.3 for 64)."""
    return ZHANG_TOLERANCE * size


def pointing_game(maps, masks, tolerance: float | str = 0) -> np.ndarray:
    """The pointing game (Zhang et al. 2016): does each map's peak land on the object?

    A hit when the highest pixel of the map lies within ``tolerance`` pixels of the object's
    mask (Zhang et al. use 15 pixels on 224×224 images, to forgive small misses at the object's
    edge; ``tolerance="zhang"`` scales that to these maps' size, see :func:`zhang_tolerance`).
    Ties go to the first maximum in reading order (see :func:`peaks`). A constant map has
    no peak and counts as a miss.

    Args:
        maps: float (N, H, W) (or one (H, W)); any range, only the position of the maximum counts.
        masks: bool (N, H, W), True on the object.
        tolerance: the largest distance in pixels from the peak to the object that still counts,
            or ``"zhang"``.

    Returns:
        bool (N,): one hit or miss per image; its mean is the pointing accuracy.
    """
    m = as_maps(maps)
    k = as_masks(masks, m)
    if tolerance == "zhang":
        tolerance = zhang_tolerance(max(m.shape[1:]))
    if not isinstance(tolerance, int | float) or not 0 <= tolerance < max(m.shape[1:]):
        raise CourseError(f"tolerance must be a distance in pixels from 0 to "
                          f"{max(m.shape[1:]) - 1}; got {tolerance!r}.")
    rows, cols = peaks(m).T
    if tolerance == 0:
        hits = k[np.arange(len(k)), rows, cols]
    else:
        from scipy.ndimage import distance_transform_edt

        hits = np.array([distance_transform_edt(~mask)[r, c] <= tolerance
                         for mask, r, c in zip(k, rows, cols, strict=True)])
    flat = m.reshape(len(m), -1)
    return hits & (flat.max(axis=1) > flat.min(axis=1))


def centre_map(height: int, width: int, sigma: float = 12.0) -> np.ndarray:
    """The centre prior: a Gaussian bump (sigma in pixels) in the middle of the image, float32
    (H, W). It sees neither image nor model: the baseline a pointing score must beat."""
    dy, dx = np.mgrid[0:height, 0:width] + 0.5
    dy, dx = dy - height / 2, dx - width / 2
    return np.exp(-(dy**2 + dx**2) / (2 * sigma**2)).astype(np.float32)


def centre_pointing(masks, tolerance: float | str = 0) -> np.ndarray:
    """The pointing game of the centre prior (:func:`centre_map`) on these masks, bool (N,)."""
    k = np.asarray(masks)
    k = k[None] if k.ndim == 2 else k
    return pointing_game(np.broadcast_to(centre_map(*k.shape[1:3]), k.shape), k, tolerance)


def energy(maps, masks) -> np.ndarray:
    """The share of each map's positive attribution that lies on the object.

    E = sum over the mask of max(M, 0) / sum over the image of max(M, 0): the "energy-based
    pointing game" of Score-CAM (Wang et al. 2020), with the object's mask in place of its
    bounding box. 1 means every bit of positive evidence is on the object; a map spread evenly
    scores the object's share of the image. Negative values (evidence against the class) do not
    count. A map with no positive value puts nothing on the object and scores 0.

    Args:
        maps: float (N, H, W) (or one (H, W)).
        masks: bool (N, H, W), True on the object.

    Returns:
        float32 (N,) in [0, 1].
    """
    m = as_maps(maps)
    k = as_masks(masks, m)
    positive = np.maximum(m, 0).astype(np.float64)
    total = positive.sum(axis=(1, 2))
    inside = (positive * k).sum(axis=(1, 2))
    return np.where(total > 0, inside / np.where(total > 0, total, 1), 0).astype(np.float32)


# --- deletion and insertion ---------------------------------------------------------------------

@dataclass
class Curve:
    """A deletion or insertion curve for each image.

    Attributes:
        fractions: float32 (S,), the share of the pixels removed (deletion) or revealed
            (insertion) at each step, from 0 to 1.
        probabilities: float32 (N, S), the softmax probability of the target class at each step.
        area: float32 (N,), the area under each curve (trapezoid rule over ``fractions``).
        target: int32 (N,), the class followed.
    """

    fractions: np.ndarray
    probabilities: np.ndarray
    area: np.ndarray
    target: np.ndarray


def pixel_ranks(maps: np.ndarray) -> np.ndarray:
    """The rank of each pixel in its map, int32 (N, H, W): 0 for the highest value.

    Ties keep reading order (a stable sort), so a map with plateaus gives a definite order.
    """
    flat = maps.reshape(len(maps), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None], axis=1)
    return ranks.reshape(maps.shape).astype(np.int32)


def _check_curve_input(model, images, maps, target, n_steps, value_range):
    x, t = prepare(model, images, target, value_range)
    m = as_maps(maps)
    if m.shape != x.shape[:3]:
        raise CourseError(f"maps must be one (H, W) map per image, {_shape(x.shape[:3])} for "
                          f"these images; got {_shape(m.shape)}. (Use upsample=True for CAMs.)")
    n_pixels = m.shape[1] * m.shape[2]
    if not _is_int(n_steps) or not 1 <= n_steps <= n_pixels:
        raise CourseError(f"n_steps must be a whole number from 1 to {n_pixels} (the number of "
                          f"pixels); got {n_steps!r}.")
    t = np.where(t < 0, forward_logits(model, x).argmax(axis=1), t).astype(np.int32)
    return x, m, t


def _curve(model, start: np.ndarray, end: np.ndarray, maps: np.ndarray, t: np.ndarray,
           n_steps: int, batch_size: int) -> Curve:
    """At step k, the first k/n_steps of the pixels in map order come from ``end``, the rest from
    ``start``. All steps of a chunk of images go through the model together."""
    batch_size = check_batch_size(batch_size)
    n, h, w = maps.shape
    counts = np.rint(np.arange(n_steps + 1) * (h * w / n_steps)).astype(np.int32)
    ranks = pixel_ranks(maps)
    probs = np.empty((n, n_steps + 1), np.float32)
    chunk = max(1, 4 * batch_size // (n_steps + 1))     # images whose steps are built at once
    for i in range(0, n, chunk):
        part = slice(i, i + chunk)
        swapped = ranks[part, None] < counts[None, :, None, None]           # (c, S, H, W)
        steps = np.where(swapped[..., None], end[part, None], start[part, None])
        logits = forward_logits(model, steps.reshape(-1, *start.shape[1:]), batch_size)
        p = softmax(logits).reshape(-1, n_steps + 1, logits.shape[-1])
        probs[part] = np.take_along_axis(p, t[part, None, None], axis=2)[..., 0]
    fractions = (counts / (h * w)).astype(np.float32)
    from scipy.integrate import trapezoid

    area = trapezoid(probs, fractions, axis=1).astype(np.float32)
    return Curve(fractions, probs, area, t)


def deletion_curve(model, images, maps, target=None, *, n_steps: int = 16, baseline="grey",
                   batch_size: int = BATCH_SIZE, value_range=UNIT_RANGE) -> Curve:
    """The deletion curve (Petsiuk, Das & Saenko 2018): delete the most important pixels first.

    The pixels are ordered by the map, highest first, and replaced by ``baseline`` in
    ``n_steps`` equal steps, until none of the image is left; at each step the softmax
    probability of the target class is measured. A faithful map removes the evidence first: the
    probability falls fast and the area under the curve is **small**.

    The baseline is grey (0.5) by default: the middle of the value range, as the course's
    occlusion and LIME use. The paper sets pixels to zero *after* ImageNet's mean subtraction,
    which is the mean colour of ImageNet, a grey too. Black (0.0) would paint new dark shapes
    where pixels are removed.

    Args:
        model: a Keras image classifier (not changed).
        images: float32 (N, H, W, C) or one image (H, W, C), in the model's input range.
        maps: float (N, H, W), one map per image, at image resolution.
        target: None (the class the model predicts for the image), one class index, or one
            per image.
        n_steps: the number of deletion steps; the curve has n_steps + 1 points.
        baseline: what a deleted pixel shows: ``"grey"``, ``"mean"`` (the image's mean colour),
            ``"blur"`` or a number (see :func:`course_utils.occlusion.fill_images`).
        batch_size: images per forward pass.
        value_range: the range the images must lie in, or None.

    Returns:
        A :class:`Curve`; ``curve.area`` is the deletion score (lower is better).
    """
    x, m, t = _check_curve_input(model, images, maps, target, n_steps, value_range)
    return _curve(model, x, fill_images(x, baseline, value_range), m, t, n_steps, batch_size)


def insertion_curve(model, images, maps, target=None, *, n_steps: int = 16, start="blur",
                    blur_sigma: float = 4.0, batch_size: int = BATCH_SIZE,
                    value_range=UNIT_RANGE) -> Curve:
    """The insertion curve (Petsiuk, Das & Saenko 2018): reveal the most important pixels first.

    Start from a blurred copy of the image, which carries (almost) no class evidence but no
    new shapes either, and put the original pixels back in the map's order, highest first, in
    ``n_steps`` equal steps. A faithful map restores the evidence first: the probability rises
    fast and the area under the curve is **large**.

    The paper blurs with a Gaussian of sigma 5 pixels on 224×224 images. On the 64×64 shapes,
    sigma 4 takes the course model's probability of the true class down to chance (0.18 for
    1/6 on 300 images; sigma 3 leaves 0.25), so that is the default.

    Args:
        model, images, maps, target, n_steps, batch_size, value_range: as
            :func:`deletion_curve`.
        start: the image to start from: ``"blur"`` (default), ``"grey"``, ``"mean"`` or a
            number.
        blur_sigma: the blur of ``start="blur"``, in pixels.

    Returns:
        A :class:`Curve`; ``curve.area`` is the insertion score (higher is better).
    """
    x, m, t = _check_curve_input(model, images, maps, target, n_steps, value_range)
    return _curve(model, fill_images(x, start, value_range, blur_sigma), x, m, t, n_steps,
                  batch_size)


# --- ROAD: deletion with the holes filled in from the neighbours --------------------------------

# ROAD's neighbours and weights (Rong et al. 2022): the 4 direct neighbours count twice as much
# as the 4 diagonal ones.
NEIGHBOURS = [((-1, 0), 1 / 6), ((1, 0), 1 / 6), ((0, -1), 1 / 6), ((0, 1), 1 / 6),
              ((-1, -1), 1 / 12), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((1, 1), 1 / 12)]


def linear_impute(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Fill the ``missing`` pixels of one image (H, W, C) from their neighbours (ROAD).

    Every missing pixel must equal the weighted average of its neighbours inside the image
    (:data:`NEIGHBOURS`), known or missing: one sparse linear system for all the missing
    pixels, solved for every channel at once. A smooth ramp is filled in exactly; a hole gets
    the colours around it, with no edge of its own. At least one pixel must be known.
    """
    from scipy.sparse import coo_matrix, diags
    from scipy.sparse.linalg import spsolve

    h, w, c = image.shape
    unknown = np.flatnonzero(missing)
    if len(unknown) == 0:
        return image.copy()
    if len(unknown) == h * w:
        raise CourseError("linear_impute needs at least one known pixel.")
    index = np.full(h * w, -1)
    index[unknown] = np.arange(len(unknown))
    flat = image.reshape(-1, c).astype(np.float64)
    r, col = np.divmod(unknown, w)
    total, rhs = np.zeros(len(unknown)), np.zeros((len(unknown), c))
    rows, cols, values = [], [], []
    for (dr, dc), weight in NEIGHBOURS:
        inside = (r + dr >= 0) & (r + dr < h) & (col + dc >= 0) & (col + dc < w)
        eq = np.flatnonzero(inside)                      # each equation has one such neighbour
        neighbour = (r[inside] + dr) * w + col[inside] + dc
        total[eq] += weight
        known = index[neighbour] < 0
        rhs[eq[known]] += weight * flat[neighbour[known]]
        rows.append(eq[~known])
        cols.append(index[neighbour[~known]])
        values.append(np.full((~known).sum(), -weight))
    a = coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(len(unknown), len(unknown))) + diags(total)
    filled = flat.copy()
    filled[unknown] = spsolve(a.tocsc(), rhs).reshape(len(unknown), c)
    return filled.reshape(h, w, c).astype(np.float32)


def road_curve(model, images, maps, target=None, *, fractions=(0.1, 0.3, 0.5, 0.7, 0.9),
               order: str = "most", noise: float = 0.01, seed: int = 0,
               batch_size: int = BATCH_SIZE, value_range=UNIT_RANGE) -> Curve:
    """ROAD, RemOve And Debias (Rong et al. 2022): deletion with a fill that gives nothing away.

    A grey hole has the shape of the map's top pixels: the model may read *that* shape rather than
    miss what was removed (Rong et al. show that a classifier can tell from the holes alone which
    method made them). ROAD fills the removed pixels by :func:`linear_impute` from their
    neighbours, plus Gaussian noise of standard deviation ``noise`` (ROAD's default 0.01), so
    that the hole carries no edges. ``order="most"`` removes the highest-ranked pixels first
    (MoRF: a faithful map makes the probability fall fast, a **small** area); ``"least"``
    removes the lowest first (LeRF: the probability should stay, a **large** area).

    Args:
        model, images, maps, target, batch_size, value_range: as :func:`deletion_curve`.
        fractions: the shares of pixels removed, each below 1 (some pixels must stay known);
            the curve starts at 0, the intact image.
        order: ``"most"`` (MoRF) or ``"least"`` (LeRF) relevant first.
        noise: the standard deviation of the noise added to the filled-in pixels.
        seed: seeds that noise.

    Returns:
        A :class:`Curve`; ``area`` is the mean probability over the curve (the trapezoid area
        divided by the largest fraction), so it lies in [0, 1] like deletion's.
    """
    fractions = np.asarray(fractions, np.float64)
    if fractions.ndim != 1 or not len(fractions) or not ((fractions > 0) & (fractions < 1)).all():
        raise CourseError(f"fractions must be shares of pixels between 0 and 1 (not 1 itself: "
                          f"some pixels must stay to fill from); got {fractions.tolist()}.")
    _check_choice("order", order, ("most", "least"))
    x, m, t = _check_curve_input(model, images, maps, target, 1, value_range)
    ranks = pixel_ranks(m if order == "most" else -m)
    n, h, w = m.shape
    counts = np.rint(fractions * h * w).astype(int)
    rng = np.random.default_rng(seed)
    steps = np.empty((n, len(counts) + 1, *x.shape[1:]), np.float32)
    steps[:, 0] = x
    for i in range(n):
        for s, count in enumerate(counts, start=1):
            missing = ranks[i] < count
            filled = linear_impute(x[i], missing)
            filled[missing] += noise * rng.standard_normal((missing.sum(), x.shape[-1]))
            steps[i, s] = filled if value_range is None else np.clip(filled, *value_range)
    logits = forward_logits(model, steps.reshape(-1, *x.shape[1:]), batch_size)
    p = softmax(logits).reshape(n, len(counts) + 1, -1)
    probs = np.take_along_axis(p, t[:, None, None], axis=2)[..., 0].astype(np.float32)
    f = np.concatenate([[0.0], fractions]).astype(np.float32)
    from scipy.integrate import trapezoid

    area = (trapezoid(probs, f, axis=1) / f[-1]).astype(np.float32)
    return Curve(f, probs, area, t)


# --- faithfulness correlation and max-sensitivity ----------------------------------------------

def faithfulness_correlation(model, images, maps, target=None, *, n_subsets: int = 64,
                             subset_size: int = 256, baseline="grey", seed: int = 0,
                             batch_size: int = BATCH_SIZE, value_range=UNIT_RANGE) -> np.ndarray:
    """Faithfulness correlation (Bhatt et al. 2020): does the map predict what removing costs?

    For ``n_subsets`` random sets S of ``subset_size`` pixels, remove S (set it to
    ``baseline``) and measure the drop of the target's logit, S_c(x) − S_c(x with S removed);
    the score is Pearson's correlation, over the subsets, between that drop and the map's sum
    over S. 1: the map's values add up to the model's reaction; 0: no relation. (Bhatt et al.
    take the model's output; the course explains the logit, so the logit it is.)

    Returns:
        float32 (N,), one correlation per image (0 when the map's sums or the drops are constant).
    """
    x, m, t = _check_curve_input(model, images, maps, target, 1, value_range)
    n, h, w = m.shape
    if not _is_int(subset_size) or not 1 <= subset_size < h * w:
        raise CourseError(f"subset_size must be a whole number of pixels from 1 to {h * w - 1}; "
                          f"got {subset_size!r}.")
    if not _is_int(n_subsets) or n_subsets < 3:
        raise CourseError(f"n_subsets must be a whole number, at least 3; got {n_subsets!r}.")
    rng = np.random.default_rng(seed)
    subsets = np.zeros((n, n_subsets, h * w), bool)
    for i in range(n):
        for s in range(n_subsets):
            subsets[i, s, rng.choice(h * w, subset_size, replace=False)] = True
    subsets = subsets.reshape(n, n_subsets, h, w)
    fill = fill_images(x, baseline, value_range)
    removed = np.where(subsets[..., None], fill[:, None], x[:, None])
    logits = forward_logits(model, np.concatenate([x, removed.reshape(-1, *x.shape[1:])]),
                            batch_size)
    score = logits[np.arange(len(logits)), np.concatenate([t, np.repeat(t, n_subsets)])]
    drops = score[:n, None] - score[n:].reshape(n, n_subsets)
    sums = (subsets * m[:, None]).sum(axis=(2, 3))
    return np.array([_pearson(a, b) for a, b in zip(sums, drops, strict=True)], np.float32)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def max_sensitivity(model, method: Callable, images, target=None, *, radius: float = 0.02,
                    n_samples: int = 8, seed: int = 0, value_range=UNIT_RANGE,
                    **settings) -> np.ndarray:
    """Max-sensitivity (Yeh et al. 2019): the largest change of the map under a tiny noise.

    ``n_samples`` times, add uniform noise in [−radius, radius] to every pixel value (clipped
    to the value range), explain the same class again, and take the largest relative change
    ‖M(x + ε) − M(x)‖ / ‖M(x)‖ (Frobenius norms). 0: the map ignores noise the model does not
    care about; large: the map is fragile. (The division makes methods with different scales
    comparable.)

    Returns:
        float32 (N,), one score per image (lower is better).
    """
    x, t = prepare(model, images, target, value_range)
    t = np.where(t < 0, forward_logits(model, x).argmax(axis=1), t).astype(np.int32)
    if not 0 < radius <= 1 or not _is_int(n_samples) or n_samples < 1:
        raise CourseError(f"radius must be in (0, 1] and n_samples a whole number ≥ 1; got "
                          f"{radius!r} and {n_samples!r}.")
    rng = np.random.default_rng(seed)
    m0 = as_maps(method(model, x, t, **settings)).astype(np.float64)
    norm = np.sqrt((m0**2).sum(axis=(1, 2)))
    worst = np.zeros(len(x))
    for _ in range(n_samples):
        noisy = x + rng.uniform(-radius, radius, x.shape).astype(np.float32)
        noisy = noisy if value_range is None else np.clip(noisy, *value_range)
        change = np.sqrt(((as_maps(method(model, noisy, t, **settings)) - m0)**2).sum(axis=(1, 2)))
        worst = np.maximum(worst, change / np.where(norm > 0, norm, 1))
    return worst.astype(np.float32)


# --- comparing two methods on the same images --------------------------------------------------

def paired_interval(a, b, confidence: float = 0.95) -> tuple[float, float, float]:
    """The mean of a − b over the same images, with its paired t confidence interval.

    Two methods scored on the same images share each image's difficulty; their difference,
    image by image, is far less noisy than two separate means. The gap is supported when the
    interval excludes 0.

    Returns:
        (mean difference, low, high).
    """
    from scipy.stats import t as student

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a - b if a.shape == b.shape else np.empty(0)
    if d.ndim != 1 or len(d) < 2:
        raise CourseError(f"paired_interval needs two scores per image for at least 2 images, "
                          f"as two arrays of the same length; got shapes {np.shape(a)} and "
                          f"{np.shape(b)}.")
    half = student.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


# --- the sanity check: randomise the model, from the top down ----------------------------------

@dataclass
class Cascade:
    """The maps of a model whose layers are re-initialised one by one, from the top down.

    Attributes:
        steps: the label of each step: ``"trained"``, then the name of the layer randomised last
            (step k has the top k layers randomised).
        maps: float32 (S, N, H, W), the maps at each step.
        spearman: float32 (S, N), the Spearman rank correlation of each map with the trained
            model's map of the same image (1 at step 0).
        spearman_abs: float32 (S, N), the same on absolute values, so that a map whose sign
            flips but whose magnitudes keep their order still counts as similar. Adebayo et al.
            report both.
        agreement: float32 (S,), the share of images whose predicted class is still the trained
            model's.
        target: int32 (N,), the class explained at every step (fixed on the trained model).
    """

    steps: list[str]
    maps: np.ndarray
    spearman: np.ndarray
    spearman_abs: np.ndarray
    agreement: np.ndarray
    target: np.ndarray


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each pair of maps, float32 (N,).

    Ranks with ties get their average rank, as in ``scipy.stats.spearmanr``. A constant map has
    no ranking: it correlates 1 with an identical map and 0 with any other.
    """
    from scipy.stats import spearmanr

    out = []
    for u, v in zip(a.reshape(len(a), -1), b.reshape(len(b), -1), strict=True):
        if np.ptp(u) == 0 or np.ptp(v) == 0:
            out.append(1.0 if np.array_equal(u, v) else 0.0)
        else:
            out.append(spearmanr(u, v).statistic)
    return np.array(out, np.float32)


def _find_layer(model, name: str):
    """The layer called ``name``, also inside nested models."""
    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model) and name in layer_names(layer):
            return _find_layer(layer, name)
    raise CourseError(f"This model has no layer {name!r}.")


def weighted_layers(model) -> list[str]:
    """The names of the layers with weights, from the output down (nested models included)."""
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            names.extend(weighted_layers(layer)[::-1])
        elif layer.weights:
            names.append(layer.name)
    return names[::-1]


def _initializer(layer, variable):
    """The layer's own initializer for one of its weights (``kernel_initializer`` for the
    kernel, ``gamma_initializer`` for a batch norm's gamma, ...)."""
    name = variable.name.split("/")[-1]
    for attribute in (f"{name}_initializer", f"{name.removesuffix('_kernel')}_initializer",
                      "depthwise_initializer"):
        if hasattr(layer, attribute):
            return getattr(layer, attribute)
    raise CourseError(f"The course does not know how to re-initialise the weight {name!r} of "
                      f"layer {layer.name!r}; leave this layer out of `layers`.")


def _layer_group(model, name: str) -> list[str]:
    """The layers one cascade step randomises: ``name``, or, for a pattern such as ``"block6*"``
    or ``"block[45]*"`` (``fnmatch``'s), every weighted layer it matches, from the output down."""
    from fnmatch import fnmatchcase

    if not any(c in name for c in "*?["):
        _find_layer(model, name)
        return [name]
    group = [n for n in weighted_layers(model) if fnmatchcase(n, name)]
    if not group:
        raise CourseError(f"No layer with weights matches {name!r} in this model.")
    return group


def reinitialize(layer, rng: np.random.Generator) -> None:
    """Draw new values for every weight of ``layer`` from its own initializer, seeded by ``rng``.

    He-normal kernels get new He-normal values, zero biases stay zero, as when the layer was
    built.
    """
    for variable in layer.weights:
        init = _initializer(layer, variable)
        config = init.get_config()
        if "seed" in config:
            config["seed"] = int(rng.integers(2**31))
        init = type(init).from_config(config)
        variable.assign(init(variable.shape, dtype=variable.dtype))


def randomization_cascade(model, method: Callable, images, target=None, *,
                          layers: list[str] | None = None, seed: int = 0,
                          **settings) -> Cascade:
    """The cascading model-parameter randomization test (Adebayo et al. 2018).

    The maps of the trained model are compared with the maps of a copy whose layers are
    re-initialised, one more at each step, from the output down (``logits``, then ``conv4``,
    ...), cumulatively. Each layer gets new values from its own initializer, as before training.
    If the maps hardly change while the model loses everything it learnt, the method shows the
    image (edges, say), not the model.

    The given model is never changed: the randomised model is a copy (``clone_model`` with the
    same weights). The class explained is fixed at each image's class on the trained model
    (or ``target``), so that every step explains the same class.

    Args:
        model: a trained Keras image classifier (not changed).
        method: an explanation method of the course, ``method(model, images, target,
            **settings) -> (N, H, W)``, e.g. ``cu.gradients.saliency``.
        images: float32 (N, H, W, C) or one image (H, W, C).
        target: None (the trained model's predicted class), one class index, or one per image.
        layers: the layers to randomise, in order (default: every layer with weights, from the
            output down; see :func:`weighted_layers`). A pattern (``"block6*"``,
            ``"block[45]*"``) is one step that randomises every weighted layer it matches (all of
            block 6 of EfficientNet-Lite0 at once).
        seed: seeds the new weights.
        **settings: passed on to ``method`` (``value_range`` too, if given).

    Returns:
        A :class:`Cascade`: the maps and their rank correlations with the trained model's,
        step by step.
    """
    x, t = prepare(model, images, target, settings.get("value_range", UNIT_RANGE))
    trained_logits = forward_logits(model, x)
    t = np.where(t < 0, trained_logits.argmax(axis=1), t).astype(np.int32)
    names = weighted_layers(model) if layers is None else list(layers)
    groups = [_layer_group(model, name) for name in names]               # checks every name
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    rng = np.random.default_rng(seed)
    maps, agreement = [], []
    for step, group in enumerate([[], *groups]):
        for name in group:
            reinitialize(_find_layer(copy, name), rng)
        maps.append(as_maps(method(copy, x, t, **settings),
                            f"the maps of step {step}"))
        agreement.append((forward_logits(copy, x).argmax(1) == trained_logits.argmax(1)).mean())
    maps = np.stack(maps)
    return Cascade(["trained", *names], maps,
                   np.stack([rank_correlation(maps[0], m) for m in maps]),
                   np.stack([rank_correlation(np.abs(maps[0]), np.abs(m)) for m in maps]),
                   np.array(agreement, np.float32), t)


def random_logit(model, method: Callable, images, target=None, *, seed: int = 0,
                 value_range=UNIT_RANGE, **settings) -> np.ndarray:
    """The random-logit test (Sixt et al. 2020): does the map change with the class explained?

    Each image is explained for its target class and for another class drawn at random; the
    score is the Spearman rank correlation of the two maps. A method that explains the class
    gives different maps (low ρ); a method that draws the image gives the same (ρ near 1).

    Returns:
        float32 (N,), one ρ per image (lower is better).
    """
    x, t = prepare(model, images, target, value_range)
    logits = forward_logits(model, x)
    t = np.where(t < 0, logits.argmax(axis=1), t).astype(np.int32)
    rng = np.random.default_rng(seed)
    shift = rng.integers(1, logits.shape[1], len(t))         # any class but the target
    other = ((t + shift) % logits.shape[1]).astype(np.int32)
    return rank_correlation(as_maps(method(model, x, t, **settings)),
                            as_maps(method(model, x, other, **settings)))


# --- exercise -----------------------------------------------------------------------------------

def check_pointing_game_exercise(my_pointing_game: Callable, maps, masks) -> None:
    """Self-check for notebook 10: ``my_pointing_game(maps, masks)`` must return one hit (True
    or False) per image, like :func:`pointing_game` with no tolerance.

    Prints "correct" or "not yet: <hint>".
    """
    m = as_maps(maps)
    k = as_masks(masks, m)
    try:
        got = my_pointing_game(m.copy(), k.copy())
    except Exception as e:  # a student's bug: report it, do not crash the notebook
        print(f"not yet: your function raised {type(e).__name__}: {e}")
        return
    print(_pointing_verdict(got, m, k))


def _pointing_verdict(got, maps: np.ndarray, masks: np.ndarray) -> str:
    want = pointing_game(maps, masks)
    if got is None:
        return "not yet: your function returns None; return one True/False per image."
    got = np.asarray(got)
    if got.shape != want.shape:
        hint = " (not their mean)" if got.ndim == 0 else ""
        return (f"not yet: return one hit per image{hint}, shape {want.shape}; yours has shape "
                f"{got.shape}.")
    if np.array_equal(got.astype(bool), want):
        return "correct"
    n = len(maps)
    flat = maps.reshape(n, -1)
    lowest = masks.reshape(n, -1)[np.arange(n), flat.argmin(axis=1)]
    if np.array_equal(got.astype(bool), lowest):
        return "not yet: that is the map's lowest point; take the highest (argmax)."
    r, c = np.unravel_index(flat.argmax(axis=1), maps.shape[1:])
    if np.array_equal(got.astype(bool), masks[np.arange(n), c % maps.shape[1],
                                              r % maps.shape[2]]):
        return ("not yet: row and column are swapped; np.unravel_index(i, (H, W)) gives "
                "(row, column), and masks are indexed masks[n, row, column].")
    return ("not yet: for each image take the flat index of the map's maximum "
            "(maps.reshape(N, -1).argmax(axis=1)), turn it into (row, column) with "
            "np.unravel_index, and look the pixel up in the mask.")

