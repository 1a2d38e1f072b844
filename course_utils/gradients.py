"""Gradient saliency: which pixels, changed a little, would change the class score the most?

Every method here backpropagates the **pre-softmax** score S_c (the logit) of a class c to the
input image and returns one map per image:

- :func:`saliency`: the vanilla gradient dS_c/dx (Simonyan et al. 2014), as the signed gradient,
  its absolute value, or the maximum of the absolute value over the colour channels;
- :func:`smoothgrad`: the same gradient averaged over noisy copies of the image (Smilkov et al.
  2017);
- :func:`guided_backprop` and :func:`deconvnet`: the same backward pass with another rule at
  every ReLU (Springenberg et al. 2015; Zeiler & Fergus 2014).

The model is never changed. The modified backward rules run in a *view* of the model
(:func:`backprop_model`) that calls the same layers (same weights) and replaces each ReLU by a
ReLU with the chosen backward rule. Views and their compiled ``tf.function`` are cached per model,
so a second call does not rebuild or retrace anything.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from .checks import as_image_batch, as_targets, check_batch_size
from .errors import CourseError
from .models import _rebuild, check_model, feature_model, logits_model

RULES = ("vanilla", "guided", "deconvnet")
REDUCTIONS = ("max_abs", "abs", "sum", "none")
SCORES = ("logit", "probability")
UNIT_RANGE = (0.0, 1.0)
BATCH_SIZE = 64  # images per pass: larger batches were no faster per image on a 2-core CPU


# --- the calling convention: check the input, cache compiled views -------------------------------

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached(model, key: tuple, build: Callable):
    """``build()`` once per model and key, then the stored result.

    The cache forgets a model when the model itself is deleted, so a new model never meets the
    views of an old one.
    """
    per_model = _CACHE.setdefault(model, {})
    if key not in per_model:
        per_model[key] = build()
    return per_model[key]


def n_classes(model) -> int:
    """The number of classes (the length of the model's output)."""
    return int(model.output_shape[-1])


def prepare(model, images, target, value_range=UNIT_RANGE) -> tuple[np.ndarray, np.ndarray]:
    """Check images and targets, as every method does before TensorFlow sees them.

    Returns:
        images as float32 (N, H, W, C), and targets as int32 (N,) where -1 means "the class the
        model predicts".
    """
    check_model(model)
    x = as_image_batch(images, model, value_range=value_range)
    t = as_targets(target, len(x), n_classes(model))
    return x, np.full(len(x), -1, np.int32) if t is None else t


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise CourseError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")


def class_score(logits: tf.Tensor, target: tf.Tensor, score: str = "logit") -> tf.Tensor:
    """The explained score of each image: its target's logit (or probability), shape (N,).

    A target of -1 stands for the class with the highest logit.
    """
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    target = tf.where(target < 0, predicted, target)
    values = tf.nn.softmax(logits) if score == "probability" else logits
    return tf.gather(values, target, batch_dims=1)


def image_spec(model) -> tf.TensorSpec:
    """A float32 batch of the model's input images, any batch size."""
    return tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)


TARGET_SPEC = tf.TensorSpec((None,), tf.int32)


def in_batches(fn: Callable, x: np.ndarray, t: np.ndarray, batch_size: int) -> np.ndarray:
    """``fn(x, t)`` on chunks of at most ``batch_size`` images, joined as one NumPy array."""
    batch_size = check_batch_size(batch_size)
    parts = [np.asarray(fn(x[i:i + batch_size], t[i:i + batch_size]))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def predicted_classes(model, images: np.ndarray) -> np.ndarray:
    """The class with the highest logit for each image of a checked batch, int32 (N,)."""
    def build():
        view = logits_model(model)
        return tf.function(lambda x: tf.argmax(view(x, training=False), -1, output_type=tf.int32),
                           input_signature=[image_spec(model)])
    return cached(model, ("predict",), build)(images).numpy()


def resolve_targets(model, images: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Targets from :func:`prepare` with every -1 replaced by the predicted class."""
    return np.where(t < 0, predicted_classes(model, images), t).astype(np.int32) \
        if (t < 0).any() else t


# --- ReLUs with another backward rule -----------------------------------------------------------

RELU_NAMES = ("relu", "relu6")


def _is_relu(fn) -> bool:
    return getattr(fn, "__name__", None) in RELU_NAMES


def _is_relu_layer(layer) -> bool:
    """A standalone ReLU: ``keras.layers.ReLU`` (any max_value) or ``Activation("relu")``."""
    return isinstance(layer, keras.layers.ReLU) or (
        isinstance(layer, keras.layers.Activation) and _is_relu(layer.activation))


def _has_relu_activation(layer) -> bool:
    """A layer such as ``Conv2D(..., activation="relu")``: a linear part, then a ReLU."""
    return not _is_relu_layer(layer) and _is_relu(getattr(layer, "activation", None))


def relu_with_rule(z: tf.Tensor, forward: Callable, rule: str) -> tf.Tensor:
    """``forward(z)`` (a ReLU) going forward; going back, the rule's gradient.

    With the upstream gradient g and the ReLU's own local slope relu'(z):

    - vanilla: g * relu'(z) (ordinary backpropagation);
    - guided: max(g, 0) * relu'(z): only positive gradients, only where the unit was active
      (Springenberg et al. 2015);
    - deconvnet: max(g, 0), whatever z was (Zeiler & Fergus 2014).

    relu'(z) is the forward function's own slope, so a ReLU6 also stops gradients above 6.
    """
    if rule == "vanilla":
        return forward(z)

    @tf.custom_gradient
    def rectify(z):
        def backward(upstream):
            positive = tf.nn.relu(upstream)
            if rule == "deconvnet":
                return positive
            with tf.GradientTape() as tape:
                tape.watch(z)
                y = forward(z)
            return tape.gradient(y, z, output_gradients=positive)
        return forward(z), backward

    return rectify(z)


def pre_activation(layer, x: tf.Tensor) -> tf.Tensor:
    """The linear part of a Dense or convolution layer, x * W + b without the activation,
    computed with the layer's own kernel and bias (shared, not copied; the layer is unchanged)."""
    if isinstance(layer, keras.layers.Dense):
        y = keras.ops.matmul(x, layer.kernel)
    elif isinstance(layer, keras.layers.DepthwiseConv1D | keras.layers.DepthwiseConv2D):
        y = keras.ops.depthwise_conv(x, layer.kernel, strides=layer.strides, padding=layer.padding,
                                     dilation_rate=layer.dilation_rate,
                                     data_format=layer.data_format)
    elif isinstance(layer, keras.layers.SeparableConv2D):
        y = keras.ops.separable_conv(x, layer.depthwise_kernel, layer.pointwise_kernel,
                                     strides=layer.strides, padding=layer.padding,
                                     dilation_rate=layer.dilation_rate,
                                     data_format=layer.data_format)
    else:
        y = layer.convolution_op(x, layer.kernel)
    if not layer.use_bias:
        return y
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return y + keras.ops.reshape(layer.bias, (1, -1) + (1,) * (len(y.shape) - 2))
    return y + layer.bias


LINEAR_PARTS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
                keras.layers.SeparableConv2D)


class ReLUWithRule(keras.layers.Layer):
    """Stands in for a layer with a ReLU in a view of the model: the same forward pass, with
    the ReLU's backward pass following ``rule``.

    The layer is a standalone ReLU (``ReLU``, ``Activation("relu")``), or a Dense/Conv layer
    with ``activation="relu"``, whose linear part is then computed by :func:`pre_activation`.
    """

    def __init__(self, layer, rule: str, **kwargs):
        super().__init__(name=f"{layer.name}_{rule}", **kwargs)
        self.layer, self.rule = layer, rule

    def call(self, x):
        if _is_relu_layer(self.layer):
            return relu_with_rule(x, self.layer, self.rule)
        z = pre_activation(self.layer, x)
        return relu_with_rule(z, self.layer.activation, self.rule)


def _with_rule(model, rule: str):
    """A view of ``model`` over the same layers, each ReLU replaced by a ReLUWithRule."""
    stand_ins: dict[int, Callable] = {}  # one per layer, even if a layer is called twice

    def stand_in(layer):
        if id(layer) not in stand_ins:
            if isinstance(layer, keras.Model):
                stand_ins[id(layer)] = _with_rule(layer, rule)
            else:
                stand_ins[id(layer)] = ReLUWithRule(layer, rule)
        return stand_ins[id(layer)]

    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.Model):
            return stand_in(layer)(*args, **kwargs)
        if _is_relu_layer(layer):
            return stand_in(layer)(args[0])
        if _has_relu_activation(layer):
            if not isinstance(layer, LINEAR_PARTS):
                raise CourseError(
                    f"Layer {layer.name!r} ({type(layer).__name__}) has a ReLU activation the "
                    "course cannot separate from it; guided backprop and deconvnet handle ReLUs "
                    "in Dense and Conv layers and standalone ReLU/Activation layers.")
            return stand_in(layer)(args[0])
        return layer(*args, **kwargs)

    return _rebuild(model, call)


# Activations the rules leave alone: linear, the softmax at the end, and the sigmoid gates of
# squeeze-and-excitation blocks (they scale feature maps rather than rectify them).
NOT_RECTIFIERS = ("linear", "softmax", "softmax_v2", "sigmoid", "hard_sigmoid")
ACTIVATION_OPS = ("relu", "relu6", "silu", "swish", "gelu", "elu", "selu", "leakyrelu", "softplus",
                  "tanh", "mish", "hardsilu", "hardswish", "celu", "glu", "sparseplus",
                  "squareplus", "softsign", "logsigmoid", "sigmoid", "hardsigmoid")


def _operations(model) -> list:
    """Every layer and operation of a model, nested models' included."""
    ops = model.layers if isinstance(model, keras.Sequential) else model.operations
    return [o for op in ops for o in ([op, *_operations(op)] if isinstance(op, keras.Model)
                                      else [op])]


def other_activations(model) -> dict[str, int]:
    """The nonlinearities of a model that are not ReLUs the rules can replace, counted by name:
    swish, GELU, ELU, leaky ReLU, ... and activations written as operations
    (``keras.ops.relu(x)``), which a view of the model cannot replace."""
    found: dict[str, int] = {}
    for op in _operations(model):
        if not isinstance(op, keras.layers.Layer):
            name = type(op).__name__.lower()
            name = f"keras.ops.{name} (an operation, not a layer)" if name in ACTIVATION_OPS \
                else None
        elif isinstance(op, keras.layers.ReLU) and float(op.negative_slope) != 0:
            name = "leaky ReLU"
        elif isinstance(op, keras.layers.LeakyReLU | keras.layers.ELU | keras.layers.PReLU):
            name = type(op).__name__
        else:
            act = getattr(op, "activation", None)
            name = getattr(act, "__name__", None)
            name = None if name is None or _is_relu(act) or name in NOT_RECTIFIERS else name
        if name:
            found[name] = found.get(name, 0) + 1
    return found


def check_relu_network(model, rule: str) -> None:
    """Guided backprop and deconvnet are rules *at ReLUs*: raise a CourseError for a model
    with other nonlinearities (EfficientNet's swish, ConvNeXt's GELU, LeakyReLU, ELU), where
    the rules are not defined, or with no ReLU at all (the result would be the vanilla
    gradient, silently)."""
    others = other_activations(model)
    relus = sum(_is_relu_layer(op) or _has_relu_activation(op) for op in _operations(model)
                if isinstance(op, keras.layers.Layer))
    method = ("Guided backprop (and guided Grad-CAM, built on it)" if rule == "guided"
              else "The deconvnet")
    if others or not relus:
        found = ", ".join(f"{name} ({n}×)" for name, n in others.items()) or "no ReLU"
        raise CourseError(
            f"{method} is defined for ReLU networks: it changes the backward pass at each ReLU "
            f"only. This model has {found}; there the rule is not defined and the map would be "
            "(partly) the plain gradient under another name. Use saliency, SmoothGrad or "
            "Grad-CAM, which hold for any activation.")


def backprop_model(model, rule: str = "vanilla", layer_names: list[str] | str | None = None):
    """A view of ``model`` whose ReLUs backpropagate by ``rule``; the model is not changed.

    The forward pass is exactly the model's. Only the gradients differ (see
    :func:`relu_with_rule`). ReLUs are found as standalone ``ReLU``/``Activation("relu")``
    layers (MobileNetV2's ``ReLU(6.)`` included) and as the ``activation="relu"`` of Dense and
    Conv layers, also inside nested models. A model with other nonlinearities (swish, GELU,
    leaky ReLU, ...) or none is refused for the guided and deconvnet rules, which are defined
    for ReLUs only (:func:`check_relu_network`).

    Args:
        model: a single-input Keras classifier (Sequential, functional or nested).
        rule: ``"vanilla"``, ``"guided"`` or ``"deconvnet"``.
        layer_names: None for a view that outputs the logits (N, classes); or layer names, for a
            view that outputs ``[*activations, logits]`` as :func:`course_utils.feature_model`.

    Returns:
        A Keras model sharing ``model``'s weights.
    """
    _check_choice("rule", rule, RULES)
    view = logits_model(model) if layer_names is None else feature_model(model, layer_names)
    if rule == "vanilla":
        return view
    check_relu_network(model, rule)
    return _with_rule(view, rule)


# --- input gradients ----------------------------------------------------------------------------

def _gradient_function(model, rule: str, score: str):
    """A compiled ``(images, targets) -> d score / d images`` for one model and rule."""
    view = backprop_model(model, rule)

    @tf.function(input_signature=[image_spec(model), TARGET_SPEC])
    def gradient(x, target):
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores = class_score(view(x, training=False), target, score)
        return tape.gradient(scores, x)

    return gradient


def input_gradients(model, images, target=None, *, rule: str = "vanilla", score: str = "logit",
                    batch_size: int = BATCH_SIZE, value_range=UNIT_RANGE) -> np.ndarray:
    """The signed gradient of each image's class score with respect to its pixels.

    Args:
        model: a Keras image classifier.
        images: float32 (N, H, W, C) or one image (H, W, C), in the model's input range.
        target: None (the predicted class), one class index, or one per image.
        rule: the backward rule at ReLUs: ``"vanilla"``, ``"guided"`` or ``"deconvnet"``.
        score: ``"logit"`` (the pre-softmax score S_c, the default of the whole course) or
            ``"probability"`` (the softmax output p_c, only to show why not to use it).
        batch_size: images per backward pass.
        value_range: the range the images must lie in; None to accept any finite values (e.g.
            after an ImageNet model's preprocessing).

    Returns:
        float32 (N, H, W, C), the same shape as the batch.
    """
    _check_choice("rule", rule, RULES)
    _check_choice("score", score, SCORES)
    check_batch_size(batch_size)
    x, t = prepare(model, images, target, value_range)
    fn = cached(model, ("gradient", rule, score), lambda: _gradient_function(model, rule, score))
    return in_batches(fn, x, t, batch_size)


def reduce_channels(grads: np.ndarray, reduce: str = "max_abs") -> np.ndarray:
    """Turn gradients (N, H, W, C) into maps.

    Args:
        grads: float (N, H, W, C).
        reduce: ``"max_abs"``: max over channels of :math:`|g|`, (N, H, W) (Simonyan et al. 2014);
            ``"sum"``: signed sum over channels, (N, H, W); ``"abs"``: :math:`|g|`, (N, H, W, C);
            ``"none"``: the signed gradient itself, (N, H, W, C).
    """
    _check_choice("reduce", reduce, REDUCTIONS)
    if reduce == "max_abs":
        return np.abs(grads).max(axis=-1)
    if reduce == "sum":
        return grads.sum(axis=-1)
    return np.abs(grads) if reduce == "abs" else grads


# --- the methods --------------------------------------------------------------------------------

def saliency(model, images, target=None, *, reduce: str = "max_abs", score: str = "logit",
             batch_size: int = BATCH_SIZE, value_range=UNIT_RANGE) -> np.ndarray:
    r"""Vanilla gradient saliency (Simonyan, Vedaldi & Zisserman 2014).

    :math:`M_{ij} = \max_{ch} |\partial S_c / \partial x_{ij,ch}|`, where :math:`S_c` is the
    **pre-softmax** score of class c: how much a small change of each pixel would change it.

    Args:
        model: a Keras image classifier (not changed).
        images: float32 (N, H, W, C) or one image (H, W, C), in the model's input range.
        target: None (the predicted class), one class index, or one per image.
        reduce: how to combine the channels, see :func:`reduce_channels` (``"none"`` gives the
            signed gradient (N, H, W, C), ``"abs"`` its absolute value).
        score: ``"logit"`` (default) or ``"probability"`` (only to show its saturation).
        batch_size: images per backward pass.
        value_range: the range the images must lie in, or None (see :func:`input_gradients`).

    Returns:
        float32 (N, H, W) maps (or (N, H, W, C) for ``"abs"`` and ``"none"``), not normalised.
    """
    _check_choice("reduce", reduce, REDUCTIONS)
    grads = input_gradients(model, images, target, score=score, batch_size=batch_size,
                            value_range=value_range)
    return reduce_channels(grads, reduce)


def guided_backprop(model, images, target=None, *, reduce: str = "max_abs",
                    batch_size: int = BATCH_SIZE, value_range=UNIT_RANGE) -> np.ndarray:
    """Guided backpropagation (Springenberg et al. 2015).

    The gradient of the class logit, except that every ReLU passes back only positive gradients,
    and only where it was active going forward: ``max(g, 0) * relu'(z)``. The maps are sharp and
    look like edges of the image; they are hardly class-specific (see notebook 03).

    Args and Returns: as :func:`saliency`. The model is not changed (see :func:`backprop_model`).
    """
    _check_choice("reduce", reduce, REDUCTIONS)
    grads = input_gradients(model, images, target, rule="guided", batch_size=batch_size,
                            value_range=value_range)
    return reduce_channels(grads, reduce)


def deconvnet(model, images, target=None, *, reduce: str = "max_abs",
              batch_size: int = BATCH_SIZE, value_range=UNIT_RANGE) -> np.ndarray:
    """The deconvnet backward pass (Zeiler & Fergus 2014), as a gradient with another rule.

    Every ReLU passes back ``max(g, 0)``, the rectified upstream signal, whether or not it was
    active going forward (the max-pooling "switches" are what backpropagation through max pooling
    does anyway). Notebook 08 builds the same projection step by step.

    Args and Returns: as :func:`saliency`. The model is not changed.
    """
    _check_choice("reduce", reduce, REDUCTIONS)
    grads = input_gradients(model, images, target, rule="deconvnet", batch_size=batch_size,
                            value_range=value_range)
    return reduce_channels(grads, reduce)


def _noisy_gradient_function(model):
    """A compiled ``(images, targets, sigmas, noise) -> summed gradients``.

    Each of the k noise patterns (k, H, W, C) is added to every image (scaled by its sigma), the
    k * N noisy images go through one batched backward pass, and the k gradients of each image
    are summed.
    """
    view = logits_model(model)
    spec = image_spec(model)

    @tf.function(input_signature=[spec, TARGET_SPEC, tf.TensorSpec((None,), tf.float32), spec])
    def noisy_gradient_sum(x, target, sigma, noise):
        k, n = tf.shape(noise)[0], tf.shape(x)[0]
        noisy = x[None] + sigma[None, :, None, None, None] * noise[:, None]     # (k, N, H, W, C)
        noisy = tf.reshape(noisy, tf.concat([[k * n], tf.shape(x)[1:]], 0))
        with tf.GradientTape() as tape:
            tape.watch(noisy)
            scores = class_score(view(noisy, training=False), tf.tile(target, [k]))
        grads = tape.gradient(scores, noisy)
        return tf.reduce_sum(tf.reshape(grads, tf.concat([[k], tf.shape(x)], 0)), axis=0)

    return noisy_gradient_sum


def smoothgrad(model, images, target=None, *, noise: float = 0.1, n_samples: int = 25,
               seed: int = 0, reduce: str = "max_abs", batch_size: int = BATCH_SIZE,
               value_range=UNIT_RANGE) -> np.ndarray:
    r"""SmoothGrad (Smilkov et al. 2017): the vanilla gradient averaged over noisy copies.

    .. math:: M = \mathrm{reduce}\Big(\frac{1}{n} \sum_{i=1}^{n}
        \frac{\partial S_c}{\partial x}(x + \epsilon_i)\Big), \qquad
        \epsilon_i \sim \mathcal{N}(0, \sigma^2),

    with :math:`\sigma` = ``noise`` · (max(x) - min(x)) for each image. The target class is
    chosen on the clean image. The noise patterns depend only on ``seed`` and ``n_samples``: an
    image gets the same map alone or in a batch.

    Args:
        model: a Keras image classifier (not changed).
        images: float32 (N, H, W, C) or one image (H, W, C).
        target: None (the predicted class), one class index, or one per image.
        noise: the noise level, as a share of each image's value range (the paper: 0.1-0.2).
        n_samples: the number of noisy copies (the paper: 50; 25 is enough here).
        seed: the seed of the noise.
        reduce: how to combine the channels of the averaged gradient, see :func:`reduce_channels`.
        batch_size: noisy images per backward pass.
        value_range: the range the images must lie in, or None.

    Returns:
        float32 (N, H, W) maps (or (N, H, W, C) for ``"abs"`` and ``"none"``), not normalised.
    """
    _check_choice("reduce", reduce, REDUCTIONS)
    if not (isinstance(n_samples, int | np.integer) and n_samples >= 1):
        raise CourseError(f"n_samples must be a positive integer; got {n_samples!r}.")
    if not 0 <= noise < 10:
        raise CourseError(f"noise is a share of the image's value range, e.g. 0.15; got {noise}.")
    batch_size = check_batch_size(batch_size)
    x, t = prepare(model, images, target, value_range)
    t = resolve_targets(model, x, t)                         # chosen on the clean images
    sigma = (noise * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))).astype(np.float32)
    patterns = tf.random.stateless_normal((n_samples, *x.shape[1:]), seed=[seed, 0])
    fn = cached(model, ("smoothgrad",), lambda: _noisy_gradient_function(model))
    mean = np.empty_like(x)
    for i in range(0, len(x), batch_size):                  # a chunk of images ...
        part = slice(i, i + batch_size)
        per_call = max(1, batch_size // len(x[part]))       # ... and of noise patterns
        total = sum(fn(x[part], t[part], sigma[part], patterns[k:k + per_call]).numpy()
                    for k in range(0, n_samples, per_call))
        mean[part] = total / n_samples
    return reduce_channels(mean, reduce)


# --- exercise -----------------------------------------------------------------------------------

def check_saliency_exercise(my_gradient: Callable, model, images, target: int = 0) -> None:
    """Self-check for notebook 01: ``my_gradient(model, x, c)`` must return dS_c/dx.

    Prints "correct" or "not yet: <hint>".
    """
    x = as_image_batch(images, model)
    want = input_gradients(model, x, target)
    try:   # a tensor, as a GradientTape can watch it (a NumPy array it cannot)
        got = my_gradient(model, tf.convert_to_tensor(x), target)
    except Exception as e:  # a student's bug: report it, do not crash the notebook
        print(f"not yet: your function raised {type(e).__name__}: {e}")
        return
    print(_saliency_verdict(got, want, model, x, target))


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return np.allclose(a, b, rtol=1e-3, atol=1e-4 * (np.abs(b).max() + 1e-12))


def _saliency_verdict(got, want: np.ndarray, model, x: np.ndarray, target: int) -> str:
    if got is None:
        return ("not yet: your function returns None. Return the tape's gradient; it is None "
                "when the tape did not watch x (call tape.watch(x) before computing the score).")
    got = np.asarray(got, np.float32)
    if got.shape != want.shape:
        return (f"not yet: the gradient has the shape of the images {want.shape}; yours is "
                f"{got.shape}. Do not reduce the channels or the batch.")
    if _close(got, want):
        return "correct"
    if _close(got, input_gradients(model, x, target, score="probability")):
        return ("not yet: that is the gradient of the softmax probability; explain the "
                "pre-softmax score: use cu.logits_model(model)(x)[:, c].")
    if _close(got, np.abs(want)):
        return "not yet: return the signed gradient; the absolute value comes later."
    if _close(got, -want):
        return "not yet: the sign is flipped; differentiate the score itself, not -score."
    if not np.any(got):
        return ("not yet: your gradient is all zeros; is the score computed from x inside the "
                "tape, by the model (not from a copy made before the tape started)?")
    if _close(got, input_gradients(model, x, None)):
        return ("not yet: that is the gradient of each image's predicted class; explain class "
                "c, the argument, in every image.")
    return ("not yet: the values differ from dS_c/dx. Watch x with the tape, compute the logits "
            "with cu.logits_model(model) inside the tape, and take the column of class c.")
