"""Class activation maps: *where* in the image is the evidence for a class?

- :func:`cam`: CAM (Zhou et al. 2016), for a model that ends with global average pooling and one
  dense layer: the feature maps of the last conv layer, weighted by that dense layer's weights.
- :func:`grad_cam`: Grad-CAM (Selvaraju et al. 2017), for any layer with feature maps: the
  weights are the spatially averaged gradients of the class logit. For a GAP + dense model, at
  the layer CAM uses (its default layer, :func:`default_cam_layer`), it is CAM up to a positive
  factor.
- :func:`guided_grad_cam`: guided backpropagation times the upsampled Grad-CAM map.
- :func:`hires_cam`: HiResCAM (Draelos & Carin 2020): gradient times feature map at every
  position, without Grad-CAM's average (notebook 03 shows where the two differ).

Every map is computed from the logits (pre-softmax), returned at image resolution (N, H, W) by
default, or at the layer's resolution (N, h, w) with ``upsample=False``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from .checks import check_batch_size
from .errors import CourseError
from .gradients import (
    BATCH_SIZE,
    TARGET_SPEC,
    UNIT_RANGE,
    cached,
    class_score,
    guided_backprop,
    image_spec,
    in_batches,
    prepare,
    reduce_channels,
    resolve_targets,
)
from .models import check_layer_name, computes_softmax, conv_layer_names, feature_model

# --- which layer ------------------------------------------------------------------------------


def last_conv_layer(model) -> str:
    """The name of the model's last convolution layer (nested models included)."""
    names = conv_layer_names(model)
    if not names:
        raise CourseError("This model has no convolutional layer, so there are no feature maps "
                          "to weight; use a gradient method (cu.gradients.saliency) instead.")
    return names[-1]


POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)


def default_cam_layer(model) -> str:
    """Grad-CAM's default layer: the last layer whose output is the feature maps that reach the
    classifier's head.

    Walk back from the output past the head (softmax, dense, dropout, global pooling, flatten)
    to the first layer with feature maps (N, h, w, channels), whatever it is: MobileNetV2's
    ``"out_relu"`` and EfficientNet-Lite0's ``"head_relu"`` (after the last convolution's batch
    norm and ReLU6), ResNet50's ``"conv5_block3_out"`` (after the residual add), DenseNet121's
    ``"relu"`` (after the last concatenation), Xception's ``"block14_sepconv2_act"``, the
    course CNN's ``"conv4"``: the maps CAM weights, where the last convolution may be a branch
    before an add or a concatenation. A max or average pooling right before the head (VGG) is
    passed, to the finer maps it pools, as in the Grad-CAM paper.
    """
    for layer, shape in _layers_back(model):
        if len(shape) == 4 and isinstance(layer, keras.layers.Layer) \
                and not isinstance(layer, POOLING):
            return layer.name
    return last_conv_layer(model)        # raises: this model has no feature maps


def feature_map_layer(model, layer: str | None) -> str:
    """Check ``layer`` (default: :func:`default_cam_layer`) and return its name.

    A layer qualifies when its output is a stack of feature maps (N, h, w, channels): a
    convolution, or a pooling, normalisation or activation layer right after one (MobileNetV2's
    ``"out_relu"``, say).
    """
    if layer is None:
        return default_cam_layer(model)
    if not isinstance(layer, str):
        raise CourseError(f"layer must be a layer's name (a string); got {layer!r}.")
    check_layer_name(model, layer)
    shape = cached(model, ("output shape", layer),
                   lambda: tuple(feature_model(model, layer).outputs[0].shape))
    if len(shape) != 4:
        raise CourseError(
            f"Grad-CAM needs a convolutional layer, whose output is a stack of feature maps "
            f"(N, h, w, channels); {layer!r} outputs {shape}. This model's convolutional "
            f"layers are: {', '.join(conv_layer_names(model))}.")
    return layer


# --- CAM: global average pooling, then one dense layer ---------------------------------------


def _top_level_chain(model):
    """The model's top-level layers (and operations), output first, following first inputs,
    each with its output shape."""
    if isinstance(model, keras.Sequential):
        yield from ((layer, tuple(layer.output.shape)) for layer in model.layers[::-1])
        return
    tensor = model.outputs[0]
    while True:
        layer, node_index, _ = tensor._keras_history
        if isinstance(layer, keras.layers.InputLayer):
            return
        yield layer, tuple(tensor.shape)
        inputs = layer._inbound_nodes[node_index].input_tensors
        if not inputs:
            return
        tensor = inputs[0]


def _layers_back(model):
    """The model's layers from the output back, each with its output shape; a nested model is
    replaced by its own layers."""
    for layer, shape in _top_level_chain(model):
        if isinstance(layer, keras.Model):
            yield from _layers_back(layer)
        else:
            yield layer, shape


def _is_softmax(layer, width) -> bool:
    return not isinstance(layer, keras.layers.Dense) and computes_softmax(layer, width)


def cam_head(model) -> tuple[str, keras.layers.Dense]:
    """The parts CAM needs: the layer whose feature maps are pooled, and the dense layer.

    Accepts [feature maps] -> GlobalAveragePooling2D -> (Dropout) -> Dense -> (Softmax).

    Returns:
        (name of the layer before the pooling, the Dense layer).

    Raises:
        CourseError: for any other head, suggesting Grad-CAM.
    """
    chain = list(itertools.islice(_layers_back(model), 6))
    rest = [layer for layer, _ in chain if not isinstance(layer, keras.layers.Dropout)]
    if rest and _is_softmax(rest[0], chain[0][1][-1]):
        rest = rest[1:]
    if (len(rest) >= 3 and isinstance(rest[0], keras.layers.Dense)
            and getattr(rest[0].activation, "__name__", "") in ("linear", "softmax")
            and isinstance(rest[1], keras.layers.GlobalAveragePooling2D)
            and not rest[1].keepdims):
        return rest[2].name, rest[0]
    ending = " -> ".join(layer.name for layer, _ in chain[::-1])
    raise CourseError(
        "CAM needs a model that ends with global average pooling and one dense layer (the dense "
        f"weights are the CAM weights); this model ends with {ending}. Grad-CAM works with any "
        "head: cu.cam.grad_cam(model, images).")


def _finish(maps: tf.Tensor, relu: bool, size) -> tf.Tensor:
    """ReLU (optional) and bilinear upsampling to ``size`` (or None to keep the layer's)."""
    maps = tf.cast(maps, tf.float32)
    if relu:
        maps = tf.nn.relu(maps)
    if size is not None:
        maps = tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]
    return maps


def _output_size(images: np.ndarray, upsample: bool):
    return tuple(images.shape[1:3]) if upsample else None


def _cam_function(model, relu: bool, size):
    layer, dense = cam_head(model)
    view = feature_model(model, layer)

    @tf.function(input_signature=[image_spec(model), TARGET_SPEC])
    def class_activation_map(x, target):
        maps, logits = view(x, training=False)                             # (N, h, w, K)
        maps = tf.cast(maps, dense.kernel.dtype)                # float16 under mixed precision
        target = tf.where(target < 0, tf.argmax(logits, -1, output_type=tf.int32), target)
        weights = tf.gather(tf.transpose(dense.kernel), target)            # (N, K)
        return _finish(tf.einsum("nhwk,nk->nhw", maps, weights), relu, size)

    return class_activation_map


def cam(model, images, target=None, *, relu: bool = False, upsample: bool = True,
        batch_size: int = BATCH_SIZE, value_range=UNIT_RANGE) -> np.ndarray:
    r"""Class activation map (Zhou et al. 2016).

    For a model whose class score is a dense layer over the global average of the feature maps
    :math:`A_k` (h × w positions each),

    .. math:: S_c = \sum_k w_k^c \, \frac{1}{hw} \sum_{i,j} A_k(i, j) + b_c,

    the map is

    .. math:: M_c(i, j) = \sum_k w_k^c A_k(i, j):

    its mean over positions, plus :math:`b_c`, is :math:`S_c`.

    Args:
        model: a Keras classifier ending with global average pooling and one dense layer.
        images: float32 (N, H, W, C) or one image (H, W, C), in the model's input range.
        target: None (the predicted class), one class index, or one per image.
        relu: keep only the positive evidence (the paper keeps the sign; Grad-CAM applies it).
        upsample: return maps at image resolution (N, H, W), bilinear; else (N, h, w).
        batch_size: images per forward pass.
        value_range: the range the images must lie in, or None.

    Returns:
        float32 (N, H, W) maps, not normalised.

    Raises:
        CourseError: bad input, or a model with another head (use :func:`grad_cam`).
    """
    check_batch_size(batch_size)
    x, t = prepare(model, images, target, value_range)
    size = _output_size(x, upsample)
    fn = cached(model, ("cam", relu, size), lambda: _cam_function(model, relu, size))
    return in_batches(fn, x, t, batch_size)


# --- Grad-CAM and HiResCAM: weights from gradients ---------------------------------------------


def _gradient_cam_function(model, layer: str, average: bool, relu: bool, size):
    view = feature_model(model, layer)

    @tf.function(input_signature=[image_spec(model), TARGET_SPEC])
    def gradient_cam(x, target):
        with tf.GradientTape() as tape:
            tape.watch(x)                                 # so that frozen models work too
            maps, logits = view(x, training=False)        # (N, h, w, K), (N, classes)
            scores = class_score(logits, target)
        grads = tape.gradient(scores, maps)               # dS_c / dA_k(i, j)
        if average:                                       # Grad-CAM: one weight per channel
            grads = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        return _finish(tf.reduce_sum(grads * maps, axis=-1), relu, size)

    return gradient_cam


def _gradient_cam(model, images, target, layer, average, relu, upsample, batch_size,
                  value_range) -> np.ndarray:
    check_batch_size(batch_size)
    x, t = prepare(model, images, target, value_range)
    layer = feature_map_layer(model, layer)
    size = _output_size(x, upsample)
    key = ("gradient_cam", layer, average, relu, size)
    fn = cached(model, key, lambda: _gradient_cam_function(model, layer, average, relu, size))
    return in_batches(fn, x, t, batch_size)


def grad_cam(model, images, target=None, *, layer: str | None = None, relu: bool = True,
             upsample: bool = True, batch_size: int = BATCH_SIZE,
             value_range=UNIT_RANGE) -> np.ndarray:
    r"""Grad-CAM (Selvaraju et al. 2017).

    One weight per feature map :math:`A_k` (h × w positions), the mean of the class score's
    gradient over the positions; the map is the weighted sum of the feature maps, rectified:

    .. math::

        \alpha_k^c = \frac{1}{hw} \sum_{i,j} \frac{\partial S_c}{\partial A_k(i, j)}, \qquad
        L_c(i, j) = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A_k(i, j)\Big).

    Args:
        model: any Keras image classifier with a convolutional layer (not changed).
        images: float32 (N, H, W, C) or one image (H, W, C), in the model's input range.
        target: None (the predicted class), one class index, or one per image.
        layer: the name of a layer with feature maps (default: the maps that reach the head,
            :func:`default_cam_layer`).
        relu: apply the ReLU (the paper does; False shows the negative evidence too).
        upsample: return maps at image resolution (N, H, W), bilinear; else (N, h, w).
        batch_size: images per pass.
        value_range: the range the images must lie in, or None.

    Returns:
        float32 (N, H, W) maps, not normalised.
    """
    return _gradient_cam(model, images, target, layer, True, relu, upsample, batch_size,
                         value_range)


def hires_cam(model, images, target=None, *, layer: str | None = None, relu: bool = True,
              upsample: bool = True, batch_size: int = BATCH_SIZE,
              value_range=UNIT_RANGE) -> np.ndarray:
    r"""HiResCAM (Draelos & Carin 2020): Grad-CAM without the average over positions.

    .. math:: L_c(i, j) = \mathrm{ReLU}\Big(\sum_k \frac{\partial S_c}{\partial A_k(i, j)}
        \, A_k(i, j)\Big)

    Where the gradient is the same at every position (global average pooling right after the
    layer) it equals Grad-CAM; elsewhere it keeps where each gradient was. Same arguments and
    result as :func:`grad_cam`.
    """
    return _gradient_cam(model, images, target, layer, False, relu, upsample, batch_size,
                         value_range)


def guided_grad_cam(model, images, target=None, *, layer: str | None = None,
                    reduce: str = "max_abs", batch_size: int = BATCH_SIZE,
                    value_range=UNIT_RANGE) -> np.ndarray:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop times the Grad-CAM map.

    Guided backpropagation gives fine detail but is hardly class-specific; the upsampled Grad-CAM
    map is class-specific but coarse. Their pixel-wise product has both.

    Args:
        model, images, target, layer, batch_size, value_range: as :func:`grad_cam`.
        reduce: how to combine colour channels, see
            :func:`course_utils.gradients.reduce_channels` (``"none"``: (N, H, W, C)).

    Returns:
        float32 (N, H, W) maps (or (N, H, W, C)), not normalised.
    """
    x, t = prepare(model, images, target, value_range)
    t = resolve_targets(model, x, t)                        # the same class for both maps
    guided = guided_backprop(model, x, t, reduce="none", batch_size=batch_size,
                             value_range=value_range)
    coarse = grad_cam(model, x, t, layer=layer, batch_size=batch_size, value_range=value_range)
    return reduce_channels(guided * coarse[..., None], reduce)


# --- exercise -----------------------------------------------------------------------------------


def _reference_grad_cam(feature_maps: np.ndarray, grads: np.ndarray) -> np.ndarray:
    weights = grads.mean(axis=(0, 1))                       # (K,)
    return np.maximum((feature_maps * weights).sum(axis=-1), 0)


def check_grad_cam_exercise(my_grad_cam: Callable) -> None:
    """Self-check for notebook 03: ``my_grad_cam(feature_maps, gradients)`` with both (h, w, K)
    must return the Grad-CAM map (h, w). Prints "correct" or "not yet: <hint>"."""
    rng = np.random.default_rng(3)
    maps = np.maximum(rng.normal(size=(6, 5, 4)), 0).astype(np.float32)
    grads = (rng.normal(size=(6, 5, 4)) + rng.normal(size=4)).astype(np.float32)
    try:
        got = my_grad_cam(maps.copy(), grads.copy())
    except Exception as e:  # a student's bug: report it, do not crash the notebook
        print(f"not yet: your function raised {type(e).__name__}: {e}")
        return
    print(_grad_cam_verdict(got, maps, grads))


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-4, atol=1e-5)


def _grad_cam_verdict(got, maps: np.ndarray, grads: np.ndarray) -> str:
    want = _reference_grad_cam(maps, grads)
    if got is None:
        return "not yet: your function returns None; return the map, shape (h, w)."
    got = np.asarray(got, np.float32)
    if got.shape != want.shape:
        return (f"not yet: the map has one value per position, shape {want.shape}; yours is "
                f"{got.shape}. Sum the weighted feature maps over the channel axis (-1).")
    if _close(got, want):
        return "correct"
    if _close(got, (maps * grads.mean(axis=(0, 1))).sum(-1)):
        return "not yet: keep only the positive evidence: apply a ReLU (np.maximum(m, 0))."
    if _close(got, np.maximum((maps * grads).sum(-1), 0)):
        return ("not yet: that is HiResCAM (gradient times feature map at each position); "
                "Grad-CAM first averages each channel's gradient over the positions.")
    if _close(got, want * maps.shape[0] * maps.shape[1]):
        return "not yet: average the gradients over the positions (mean, not sum)."
    return ("not yet: weight each feature map A_k by the mean of its gradient over (i, j), sum "
            "over k, then apply a ReLU.")



# --- localization for free (Zhou et al. 2016, section 3) ----------------------------------------


def localize(maps: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Bounding boxes from maps, as Zhou et al. localise with CAM.

    Keep the pixels above ``threshold`` times the map's maximum, take the largest connected
    region of them, and return the box around it.

    Args:
        maps: (N, H, W) maps at image resolution (e.g. ``cam(...)``).
        threshold: a fraction of each map's maximum (Zhou et al. use 0.2).

    Returns:
        int boxes (N, 4): top, left, bottom, right, inclusive.
    """
    from skimage.measure import label

    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3:
        raise CourseError(f"localize takes maps (N, H, W); got shape {maps.shape}.")
    if not 0 <= threshold < 1:
        raise CourseError(f"threshold is a fraction of the map's maximum, 0 <= t < 1; got "
                          f"{threshold!r}.")
    boxes = np.zeros((len(maps), 4), np.int64)
    for n, m in enumerate(maps):
        regions = label(m > threshold * m.max()) if m.max() > 0 else np.zeros(m.shape, int)
        if regions.max() == 0:                                # nothing above: the whole image
            boxes[n] = (0, 0, m.shape[0] - 1, m.shape[1] - 1)
            continue
        largest = np.bincount(regions.ravel())[1:].argmax() + 1
        boxes[n] = mask_boxes((regions == largest)[None])[0]
    return boxes


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """The box around each mask (N, H, W): int (N, 4), top, left, bottom, right, inclusive."""
    masks = np.asarray(masks) > 0.5
    if not masks.any(axis=(1, 2)).all():
        raise CourseError("Every mask needs at least one pixel to have a box.")
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    return np.stack([rows.argmax(1), cols.argmax(1), rows.shape[1] - 1 - rows[:, ::-1].argmax(1),
                     cols.shape[1] - 1 - cols[:, ::-1].argmax(1)], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes (N, 4) and (N, 4) in pixels (inclusive corners): (N,)."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    top, left = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    bottom, right = np.minimum(a[:, 2], b[:, 2]), np.minimum(a[:, 3], b[:, 3])
    inter = np.clip(bottom - top + 1, 0, None) * np.clip(right - left + 1, 0, None)

    def area(box):
        return (box[:, 2] - box[:, 0] + 1) * (box[:, 3] - box[:, 1] + 1)

    return inter / (area(a) + area(b) - inter)


# --- a panel: layer × class ----------------------------------------------------------------------


class LayerClassPanel:
    """Two menus, layer and class, over one image's Grad-CAM map (notebook 03).

    Maps are computed once per (layer, class) and kept. Attributes: ``layer`` and ``cls`` (the
    menus; set ``.value`` from code), ``widget`` (display it), ``computed`` (maps made so far).
    """

    def __init__(self, model, image: np.ndarray, layers, class_names, mask=None):
        import ipywidgets as w

        self.model, self.image, self.mask = model, np.asarray(image, np.float32), mask
        self.layer = w.Dropdown(options=list(layers), value=list(layers)[-1],
                                description="layer")
        self.cls = w.Dropdown(options=[(name, k) for k, name in enumerate(class_names)],
                              description="class")
        self.class_names, self.maps = list(class_names), {}
        self.picture = w.Image(format="png")
        for menu in (self.layer, self.cls):
            menu.observe(self.update, names="value")
        self.widget = w.VBox([w.HBox([self.layer, self.cls]), self.picture])
        self.update()

    @property
    def computed(self) -> int:
        return len(self.maps)

    def update(self, change=None) -> None:
        import matplotlib.pyplot as plt

        from .plotting import figure_png, overlay

        key = (self.layer.value, self.cls.value)
        if key not in self.maps:
            self.maps[key] = grad_cam(self.model, self.image, self.cls.value,
                                      layer=self.layer.value)[0]
        fig, ax = plt.subplots(figsize=(3.2, 3.4))
        overlay(self.image, self.maps[key], ax, mask=self.mask, colorbar=True,
                title=f"Grad-CAM, {key[0]}: {self.class_names[key[1]]}")
        self.picture.value = figure_png(fig)
        plt.close(fig)
