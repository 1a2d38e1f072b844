"""More attribution methods (notebook 12): integrated gradients and its relatives, and the CAM
family beyond Grad-CAM.

Gradient methods (the pre-softmax score S_c, as everywhere in the course):

- :func:`integrated_gradients` (Sundararajan et al. 2017): the gradient averaged along the
  straight path from a baseline x' to the image x, times (x - x'). Its attributions add up to
  S_c(x) - S_c(x') (*completeness*), up to the error of the Riemann sum.
- :func:`gradient_x_input` (Shrikumar et al. 2016): the gradient times the image, IG's one-step
  relative (IG with a black baseline and one step at alpha = 1).
- :func:`smoothgrad_squared` and :func:`vargrad` (Hooker et al. 2019; Adebayo et al. 2018): the
  mean of the squared gradients, and their variance, over SmoothGrad's noisy copies.

Feature-map methods, at any layer with feature maps (the same layer choice as
:func:`course_utils.cam.grad_cam`):

- :func:`grad_cam_plus_plus` (Chattopadhay et al. 2018): Grad-CAM with per-position weights.
- :func:`score_cam` (Wang et al. 2020): each feature map, upsampled and scaled to [0, 1], masks
  the image; the class probability of the masked image is the map's weight. No gradients.
- :func:`layer_cam` (Jiang et al. 2021): the positive gradient times the feature map, at each
  position.

Every function follows the course's calling convention ``method(model, images, target=None,
**settings)`` and returns float32 (N, H, W) maps, not normalised.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from .cam import _finish, _output_size, feature_map_layer
from .errors import CourseError
from .gradients import (
    BATCH_SIZE,
    TARGET_SPEC,
    UNIT_RANGE,
    _check_choice,
    cached,
    class_score,
    image_spec,
    in_batches,
    input_gradients,
    prepare,
    reduce_channels,
    resolve_targets,
)
from .models import feature_model

BASELINES = ("black", "grey", "blurred", "noise")


# --- integrated gradients -----------------------------------------------------------------------

def make_baseline(images: np.ndarray, kind: str = "black", *, value_range=UNIT_RANGE,
                  blur_sigma: float = 5.0, seed: int = 0) -> np.ndarray:
    """IG's reference images x', one per image (N, H, W, C).

    Args:
        images: float32 (N, H, W, C).
        kind: ``"black"`` (the lowest value), ``"grey"`` (the middle of the range), ``"blurred"``
            (the image under a Gaussian blur of ``blur_sigma`` pixels: no edges, the same
            colours) or ``"noise"`` (uniform noise over the range, seeded).
        value_range: the images' (low, high); None means (0, 1) for the baselines.
        blur_sigma: the blur's standard deviation in pixels.
        seed: the seed of the noise baseline.
    """
    _check_choice("baseline", kind, BASELINES)
    lo, hi = value_range if value_range is not None else UNIT_RANGE
    if kind == "black":
        return np.full_like(images, lo)
    if kind == "grey":
        return np.full_like(images, (lo + hi) / 2)
    if kind == "noise":
        return np.random.default_rng(seed).uniform(lo, hi, images.shape).astype(np.float32)
    from scipy.ndimage import gaussian_filter
    return gaussian_filter(images, sigma=(0, blur_sigma, blur_sigma, 0)).astype(np.float32)


def riemann_alphas(steps: int) -> np.ndarray:
    r"""The :math:`m` points :math:`\alpha_k = (k - \tfrac12) / m`, :math:`k = 1, \dots, m`, of the
    midpoint Riemann sum on [0, 1].

    The midpoint rule's error shrinks as :math:`1/m^2` on a smooth path (the right-hand sum of the
    IG paper as :math:`1/m`); on a ReLU network's piecewise-linear path both settle as m grows.
    """
    if not (isinstance(steps, int | np.integer) and steps >= 1):
        raise CourseError(f"steps must be a positive integer (e.g. 32); got {steps!r}.")
    return ((np.arange(steps) + 0.5) / steps).astype(np.float32)


def _baseline_array(x: np.ndarray, baseline, value_range, seed: int) -> np.ndarray:
    if isinstance(baseline, str):
        return make_baseline(x, baseline, value_range=value_range, seed=seed)
    b = np.asarray(baseline, np.float32)
    if b.shape not in (x.shape, x.shape[1:]):
        raise CourseError(f"A baseline array must have the images' shape {x.shape} or one "
                          f"image's {x.shape[1:]}; got {b.shape}. Or pass one of {BASELINES}.")
    return np.broadcast_to(b, x.shape).astype(np.float32)


def integrated_gradients(model, images, target=None, *, baseline="black", steps: int = 32,
                         reduce: str = "sum", seed: int = 0, batch_size: int = BATCH_SIZE,
                         value_range=UNIT_RANGE) -> np.ndarray:
    r"""Integrated gradients (Sundararajan, Taly & Yan 2017).

    For an image :math:`x` and a baseline :math:`x'`, pixel by pixel (and channel by channel):

    .. math::

        \mathrm{IG}_i(x) &= (x_i - x'_i) \int_0^1
            \frac{\partial S_c}{\partial x_i}\big(x' + \alpha (x - x')\big)\, d\alpha \\
        &\approx (x_i - x'_i)\, \frac{1}{m} \sum_{k=1}^{m}
            \frac{\partial S_c}{\partial x_i}\big(x' + \alpha_k (x - x')\big),

    with the :math:`m` midpoints :math:`\alpha_k` of :func:`riemann_alphas`. Completeness:
    :math:`\sum_i \mathrm{IG}_i(x) = S_c(x) - S_c(x')` when the integral is exact.

    Args:
        model: a Keras image classifier (not changed).
        images: float32 (N, H, W, C) or one image (H, W, C).
        target: None (the class predicted for the image), one class index, or one per image.
        baseline: ``"black"``, ``"grey"``, ``"blurred"``, ``"noise"`` (:func:`make_baseline`) or
            an array of the images' shape.
        steps: m, the points of the Riemann sum: m forward and backward passes per image.
        reduce: how to combine the colour channels (``"sum"`` keeps completeness; ``"none"``
            returns (N, H, W, C)); see :func:`course_utils.gradients.reduce_channels`.
        seed: the seed of the noise baseline.
        batch_size: path points per backward pass.
        value_range: the range the images must lie in, or None.

    Returns:
        float32 (N, H, W) maps (or (N, H, W, C)), not normalised.
    """
    x, t = prepare(model, images, target, value_range)
    t = resolve_targets(model, x, t)
    base = _baseline_array(x, baseline, value_range, seed)
    alphas = riemann_alphas(steps)
    mean_grad = np.empty_like(x)
    for n in range(len(x)):                                   # one image's m path points at once
        path = base[n] + alphas[:, None, None, None] * (x[n] - base[n])
        grads = input_gradients(model, path, np.full(steps, t[n]), batch_size=batch_size,
                                value_range=None)
        mean_grad[n] = grads.mean(axis=0)
    return reduce_channels((x - base) * mean_grad, reduce)


def gradient_x_input(model, images, target=None, *, reduce: str = "sum",
                     batch_size: int = BATCH_SIZE, value_range=UNIT_RANGE) -> np.ndarray:
    r"""Gradient × input (Shrikumar et al. 2016): :math:`x_i \, \partial S_c / \partial x_i`,
    summed over the channels.

    IG with a black (zero) baseline and a single step at alpha = 1: exact for a linear model,
    where it is w_i x_i. Arguments and result as :func:`integrated_gradients`.
    """
    x, t = prepare(model, images, target, value_range)
    t = resolve_targets(model, x, t)
    return reduce_channels(x * input_gradients(model, x, t, batch_size=batch_size,
                                               value_range=value_range), reduce)


def noisy_gradients(model, images, target=None, *, noise: float = 0.1, n_samples: int = 25,
                    seed: int = 0, batch_size: int = BATCH_SIZE,
                    value_range=UNIT_RANGE) -> np.ndarray:
    """The gradients of SmoothGrad's noisy copies, float32 (n_samples, N, H, W, C).

    The same noise as :func:`course_utils.gradients.smoothgrad` (same seed, same patterns, sigma
    = ``noise`` times each image's value range), so their mean is SmoothGrad's signed mean.
    """
    if not (isinstance(n_samples, int | np.integer) and n_samples >= 1):
        raise CourseError(f"n_samples must be a positive integer; got {n_samples!r}.")
    if not 0 <= noise < 10:
        raise CourseError(f"noise is a share of the image's value range, e.g. 0.15; got {noise}.")
    x, t = prepare(model, images, target, value_range)
    t = resolve_targets(model, x, t)                         # chosen on the clean images
    sigma = noise * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))
    patterns = tf.random.stateless_normal((n_samples, *x.shape[1:]), seed=[seed, 0]).numpy()
    noisy = x[None] + sigma[None, :, None, None, None] * patterns[:, None]    # (k, N, H, W, C)
    grads = input_gradients(model, noisy.reshape(-1, *x.shape[1:]), np.tile(t, n_samples),
                            batch_size=batch_size, value_range=None)
    return grads.reshape(noisy.shape)


def smoothgrad_squared(model, images, target=None, *, noise: float = 0.1, n_samples: int = 25,
                       seed: int = 0, reduce: str = "sum", batch_size: int = BATCH_SIZE,
                       value_range=UNIT_RANGE) -> np.ndarray:
    r"""SmoothGrad² (Hooker et al. 2019): the mean square of the noisy gradients,

    .. math:: M = \frac{1}{n} \sum_{i=1}^{n} \Big(\frac{\partial S_c}{\partial x}(x + \epsilon_i)
        \Big)^2, \qquad \epsilon_i \sim \mathcal{N}(0, \sigma^2).

    Args: as :func:`course_utils.gradients.smoothgrad` (``reduce`` combines the channels of the
    non-negative per-channel result; ``"sum"`` by default). Returns float32 (N, H, W) maps.
    """
    grads = noisy_gradients(model, images, target, noise=noise, n_samples=n_samples, seed=seed,
                            batch_size=batch_size, value_range=value_range)
    return reduce_channels(np.mean(grads ** 2, axis=0), reduce)


def vargrad(model, images, target=None, *, noise: float = 0.1, n_samples: int = 25,
            seed: int = 0, reduce: str = "sum", batch_size: int = BATCH_SIZE,
            value_range=UNIT_RANGE) -> np.ndarray:
    r"""VarGrad (Adebayo et al. 2018; Hooker et al. 2019): the variance of the noisy gradients,

    .. math:: M = \frac{1}{n} \sum_{i=1}^{n} (g_i - \bar g)^2, \qquad
        g_i = \frac{\partial S_c}{\partial x}(x + \epsilon_i), \quad
        \bar g = \frac{1}{n} \sum_{i=1}^{n} g_i.

    Zero with one sample or no noise. Arguments and result as :func:`smoothgrad_squared`.
    """
    grads = noisy_gradients(model, images, target, noise=noise, n_samples=n_samples, seed=seed,
                            batch_size=batch_size, value_range=value_range)
    return reduce_channels(np.var(grads, axis=0), reduce)


# --- Grad-CAM++ and LayerCAM: weights from gradients, position by position --------------------

def _cam_weights_plus_plus(grads: tf.Tensor, maps: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++'s per-position weights alpha_kij = g^2 / (2 g^2 + sum_ab A_k(a, b) g^3),
    then w_k = sum_ij alpha_kij ReLU(g_kij) (Chattopadhay et al. 2018, Eq. 19 with exp(S))."""
    g2 = grads ** 2
    denominator = 2 * g2 + tf.reduce_sum(maps, axis=(1, 2), keepdims=True) * g2 * grads
    alphas = tf.math.divide_no_nan(g2, tf.where(denominator != 0, denominator, 1.0))
    return tf.reduce_sum(alphas * tf.nn.relu(grads), axis=(1, 2), keepdims=True)


def _gradient_map_function(model, layer: str, combine: Callable, size):
    view = feature_model(model, layer)

    @tf.function(input_signature=[image_spec(model), TARGET_SPEC])
    def gradient_map(x, target):
        with tf.GradientTape() as tape:
            tape.watch(x)
            maps, logits = view(x, training=False)
            scores = class_score(logits, target)
        grads = tape.gradient(scores, maps)
        return _finish(tf.reduce_sum(combine(grads, maps) * maps, axis=-1), True, size)

    return gradient_map


def _gradient_map(model, images, target, layer, name, combine, upsample, batch_size,
                  value_range) -> np.ndarray:
    x, t = prepare(model, images, target, value_range)
    layer = feature_map_layer(model, layer)
    size = _output_size(x, upsample)
    fn = cached(model, (name, layer, size),
                lambda: _gradient_map_function(model, layer, combine, size))
    return in_batches(fn, x, t, batch_size)


def grad_cam_plus_plus(model, images, target=None, *, layer: str | None = None,
                       upsample: bool = True, batch_size: int = BATCH_SIZE,
                       value_range=UNIT_RANGE) -> np.ndarray:
    r"""Grad-CAM++ (Chattopadhay et al. 2018).

    With :math:`g = \partial S_c / \partial A_k(i, j)` (:math:`S_c` the logit; the paper's
    :math:`\exp(S_c)` cancels in :math:`\alpha`):

    .. math::

        \alpha_k(i, j) = \frac{g^2}{2 g^2 + \sum_{a,b} A_k(a, b)\, g^3}, \qquad
        w_k = \sum_{i,j} \alpha_k(i, j)\, \mathrm{ReLU}(g),

        L_c = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big).

    Several objects of a class each get their own weight, where Grad-CAM's average lets the
    largest one dominate.

    Args and Returns: as :func:`course_utils.cam.grad_cam`.
    """
    return _gradient_map(model, images, target, layer, "grad_cam++", _cam_weights_plus_plus,
                         upsample, batch_size, value_range)


def layer_cam(model, images, target=None, *, layer: str | None = None, upsample: bool = True,
              batch_size: int = BATCH_SIZE, value_range=UNIT_RANGE) -> np.ndarray:
    r"""LayerCAM (Jiang et al. 2021): only the positive gradients, position by position,

    .. math:: L_c(i, j) = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}\Big(
        \frac{\partial S_c}{\partial A_k(i, j)}\Big) A_k(i, j)\Big).

    HiResCAM with only the positive gradients; at early layers it keeps fine detail that
    Grad-CAM's average over positions loses. Args and Returns: as
    :func:`course_utils.cam.grad_cam`.
    """
    return _gradient_map(model, images, target, layer, "layercam",
                         lambda g, a: tf.nn.relu(g), upsample, batch_size, value_range)


# --- Score-CAM: weights from forward passes -----------------------------------------------------

def _masks_function(model, layer: str, size):
    view = feature_model(model, layer)

    @tf.function(input_signature=[image_spec(model)])
    def masks(x):
        maps, logits = view(x, training=False)
        up = tf.image.resize(maps, size, method="bilinear")          # (N, H, W, K)
        lo = tf.reduce_min(up, axis=(1, 2), keepdims=True)
        hi = tf.reduce_max(up, axis=(1, 2), keepdims=True)
        return tf.math.divide_no_nan(up - lo, hi - lo), maps, tf.argmax(logits, -1, tf.int32)

    return masks


def _probability_function(model):
    from .models import logits_model
    view = logits_model(model)

    @tf.function(input_signature=[image_spec(model), TARGET_SPEC])
    def probability(x, target):
        return class_score(view(x, training=False), target, "probability")

    return probability


def score_cam(model, images, target=None, *, layer: str | None = None, upsample: bool = True,
              batch_size: int = BATCH_SIZE, value_range=UNIT_RANGE) -> np.ndarray:
    r"""Score-CAM (Wang et al. 2020), batched: one forward pass per feature map.

    :math:`H_k` is the feature map :math:`A_k`, upsampled to the image and scaled to [0, 1];
    its weight is the class probability of the image masked by it (the paper's softmax score,
    as its code does):

    .. math:: w_k = p_c(x \odot H_k), \qquad L_c = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big).

    Args: as :func:`course_utils.cam.grad_cam`; ``batch_size`` masked images per forward pass.
    K feature maps cost K forward passes per image.

    Returns:
        float32 (N, H, W) maps, not normalised.
    """
    x, t = prepare(model, images, target, value_range)
    layer = feature_map_layer(model, layer)
    masks_fn = cached(model, ("scorecam masks", layer, x.shape[1:3]),
                      lambda: _masks_function(model, layer, x.shape[1:3]))
    prob_fn = cached(model, ("probability",), lambda: _probability_function(model))
    size = _output_size(x, upsample)
    out = []
    for n in range(len(x)):
        masks, maps, predicted = (v.numpy() for v in masks_fn(x[n:n + 1]))
        target_n = predicted[0] if t[n] < 0 else t[n]
        masked = x[n] * np.moveaxis(masks[0], -1, 0)[..., None]      # (K, H, W, C)
        k = len(masked)
        weights = in_batches(prob_fn, masked, np.full(k, target_n, np.int32), batch_size)
        cam_map = tf.einsum("hwk,k->hw", maps[0], weights)[None]
        out.append(_finish(cam_map, True, size).numpy()[0])
    return np.stack(out).astype(np.float32)


# --- exercise: the Riemann sum of IG --------------------------------------------------------------

def check_integrated_gradients_exercise(my_ig: Callable, model, image, target: int,
                                        steps: int = 32) -> None:
    """Self-check for notebook 12: ``my_ig(model, image, baseline, target, steps)`` must return
    IG's attributions (H, W, C) for one image (H, W, C) and a black baseline.

    It is checked by completeness (the sum must be S_c(x) - S_c(x')) and against the course's
    :func:`integrated_gradients`. Prints "correct" or "not yet: <hint>".
    """
    x = prepare(model, image, target)[0][0]
    baseline = np.zeros_like(x)
    try:
        got = my_ig(model, x.copy(), baseline.copy(), target, steps)
    except Exception as e:  # a student's bug: report it, do not crash the notebook
        print(f"not yet: your function raised {type(e).__name__}: {e}")
        return
    print(_ig_verdict(got, model, x, target, steps))


def _ig_verdict(got, model, x: np.ndarray, target: int, steps: int) -> str:
    from .models import predict_logits

    if got is None:
        return "not yet: your function returns None; return the attributions, shape (H, W, C)."
    got = np.asarray(got, np.float32)
    if got.shape != x.shape:
        return (f"not yet: IG gives one value per pixel and channel, shape {x.shape}; yours is "
                f"{got.shape}. Average the m gradients over the steps only (axis 0).")
    logits = predict_logits(model, np.stack([x, np.zeros_like(x)]))
    gap = float(logits[0, target] - logits[1, target])
    want = integrated_gradients(model, x, target, steps=steps, reduce="none")[0]
    mean_grad = np.divide(want, x, out=np.zeros_like(x), where=x != 0)
    tolerance = 0.05 * abs(gap) + 1e-3
    if abs(float(got.sum()) - gap) <= tolerance:
        return (f"correct: your attributions sum to {got.sum():.2f}, and S_c(x) - S_c(x') = "
                f"{gap:.2f} (completeness)")

    def close(a):
        return np.allclose(got, a, rtol=0.05, atol=0.05 * np.abs(a).max() + 1e-6)

    if close(mean_grad):
        return "not yet: multiply the averaged gradient by (x - baseline), pixel by pixel."
    if close(want * steps):
        return ("not yet: the sum is m times too large: average the gradients over the steps "
                "(divide by m), do not just add them up.")
    if close(x * input_gradients(model, x, target)[0]):
        return ("not yet: that is gradient x input, the gradient at the image only; IG averages "
                "the gradients at the points baseline + alpha (x - baseline), alpha in (0, 1].")
    if close(-want):
        return "not yet: the sign is flipped; use (x - baseline), not (baseline - x)."
    return (f"not yet: your attributions sum to {got.sum():.2f}, but completeness says "
            f"S_c(x) - S_c(x') = {gap:.2f}. Take the gradients of the logit (not the "
            "probability) at baseline + alpha (x - baseline) for m values of alpha in (0, 1].")


# --- a figure for the interactive demo ------------------------------------------------------------

def ig_figure(model, image, target=None, *, baseline: str = "black", steps: int = 16,
              mask=None, class_names=None):
    """One image, its IG baseline and its IG map, with the completeness gap in the title.

    The pure function behind notebook 12's panel (baseline and step sliders).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from .models import predict_logits
    from .plotting import overlay, show_image

    x = prepare(model, image, target)[0]
    base = make_baseline(x, baseline)
    logits = predict_logits(model, np.concatenate([x, base]))
    c = int(logits[0].argmax()) if target is None else int(target)
    ig = integrated_gradients(model, x, c, baseline=base, steps=steps)[0]
    gap = logits[0, c] - logits[1, c]
    name = class_names[c] if class_names is not None else f"class {c}"
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 2.9))
    show_image(x[0], axes[0], f"image ({name})")
    show_image(np.clip(base[0], 0, 1), axes[1], f"baseline: {baseline}")
    overlay(x[0], ig, axes[2], mask=mask, symmetric=True, colorbar=True,
            title=f"IG, m = {steps}: sum {ig.sum():.2f} vs {gap:.2f}")
    fig.tight_layout()
    return fig
