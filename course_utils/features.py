"""What has the network learnt? Class model visualization, channel visualization, receptive
fields and dataset search.

- :func:`class_model`: the image that maximises a class's **unnormalised** score (the logit S_c,
  or its lead over the strongest rival class), minus λ‖I‖², by gradient ascent from a neutral
  grey image (Simonyan, Vedaldi & Zisserman 2014), with regularisers that make it readable: L2
  decay and blur (Yosinski et al. 2015), jitter (Mordvintsev et al. 2015; Olah et al. 2017).
- :func:`channel_visualization`: the same ascent on the mean activation of one conv channel.
- :func:`receptive_field`: which input pixels a unit of a layer can see, computed exactly from the
  layers' kernels, strides and padding.
- :func:`dataset_search`: the real images that excite a channel most, each cropped to the receptive
  field of its most active unit (Zeiler & Fergus 2014; the lecture's "dataset search").

The score is the logit, not the softmax probability: a probability can also be raised by
*lowering* the other classes' scores, and the picture would then show what the class is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from . import ascent
from .checks import as_image_batch, as_targets, check_batch_size
from .errors import CourseError
from .gradients import cached, pre_activation
from .models import (
    _contains,
    _rebuild,
    check_layer_name,
    check_model,
    conv_layer_names,
    feature_model,
    logits_model,
)

# Settings that make class-model images readable on the course CNN (notebook 05 shows each one's
# effect), and plain ascent for comparison.
PLAIN = ascent.Settings(step_size=0.02)
REGULARISED = ascent.Settings(step_size=0.02, decay=0.02, blur_sigma=0.5, blur_every=4,
                              jitter=2)


# --- finding layers and channels ----------------------------------------------------------------

def find_layer(model, name: str):
    """The layer called ``name``, also inside nested models (checked: a CourseError lists the
    layers if there is none)."""
    check_layer_name(model, name)
    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model) and _contains(layer, name):
            return find_layer(layer, name)
    raise AssertionError(name)  # unreachable: check_layer_name found it


def check_conv_layer(model, name: str) -> None:
    """Raise a CourseError unless ``name`` is a convolution layer, naming the ones there are."""
    check_layer_name(model, name)
    convs = conv_layer_names(model)
    if name not in convs:
        raise CourseError(f"Layer {name!r} is not a convolution layer; this needs one. The "
                          f"model's convolution layers are: {', '.join(convs)}.")


def channel_count(model, layer: str) -> int:
    """The number of channels (feature maps) of a layer's output."""
    return int(find_layer(model, layer).output.shape[-1])


def check_channels(model, layer: str, channels) -> np.ndarray:
    """Check channel indices of a conv layer; return them as int32 (N,)."""
    check_conv_layer(model, layer)
    c = np.atleast_1d(np.asarray(channels))
    n = channel_count(model, layer)
    if c.size == 0 or not np.issubdtype(c.dtype, np.integer) or c.ndim != 1:
        raise CourseError(f"channel must be an index (or a list of indices) into the {n} "
                          f"channels of {layer!r}; got {channels!r}.")
    if c.min() < 0 or c.max() >= n:
        bad = int(c.min() if c.min() < 0 else c.max())
        raise CourseError(f"Channel {bad} is out of range: layer {layer!r} has {n} channels, "
                          f"0..{n - 1}.")
    return c.astype(np.int32)


# --- the scores to ascend, and their compiled steps ---------------------------------------------

SCORES = ("margin", "logit")


def class_score(logits: tf.Tensor, targets: tf.Tensor, score: str = "margin") -> tf.Tensor:
    """The score of each target class, (N,), from the logits (N, classes).

    ``"logit"``: S_c, Simonyan et al.'s unnormalised class score. ``"margin"``: S_c minus the
    largest other logit, max_{k≠c} S_k: the class's lead over its strongest rival (still
    unnormalised, no softmax). Raising S_c alone can raise a rival class even more when the two
    share features; raising the margin cannot.
    """
    s_c = tf.gather(logits, targets, batch_dims=1)
    if score == "logit":
        return s_c
    rivals = tf.where(tf.one_hot(targets, tf.shape(logits)[1]) > 0, logits.dtype.min, logits)
    return s_c - tf.reduce_max(rivals, axis=1)


def check_score(score: str) -> str:
    """Return ``score``, or raise a CourseError naming the scores there are."""
    if score not in SCORES:
        raise CourseError(f"score must be one of {', '.join(map(repr, SCORES))}; got {score!r}.")
    return score


def class_step(model, score: str = "margin"):
    """The compiled ascent step on the class score of the target class (cached per model)."""
    def build():
        view = logits_model(model)
        return ascent.make_step(lambda x, t: class_score(view(x, training=False), t, score),
                                model.input_shape[-1], model.input_shape[1:3])
    return cached(model, ("ascent", "class", check_score(score)), build)


def layer_view(model, layer: str):
    """A view that outputs only ``layer``'s activations (the layers after it are not run)."""
    view = feature_model(model, [layer], logits=False)
    return keras.Model(view.inputs[0], view.outputs[0])


def pre_activation_view(model, layer: str):
    """A view that outputs a conv layer's values *before* its activation: z = x * W + b.

    A ReLU unit that is off has no gradient, so an ascent on its output cannot start; on z it
    can. For a layer inside a nested model, or one without an activation, the layer's output.
    """
    target = find_layer(model, layer)
    act = getattr(target, "activation", None)
    if target not in model.layers or getattr(act, "__name__", "linear") == "linear":
        return layer_view(model, layer)
    captured = {}

    def call(op, *args, **kwargs):
        if op is target:
            captured["z"] = pre_activation(op, args[0])
        return op(*args, **kwargs)

    rebuilt = _rebuild(model, call)
    return keras.Model(rebuilt.inputs[0], captured["z"])


LEAK = 0.1  # the slope below zero of the channel score: an off unit still has a gradient


def channel_step(model, layer: str):
    """The compiled ascent step on a channel's mean activation, with a leaky ReLU in place of the
    ReLU: mean(max(z, 0.1 z)) over the feature map, z the pre-activation. The ReLU's own output
    would give no gradient at all for a channel that is off everywhere on the start image; the
    leak lets it start. The target of each image is its channel. Cached per model and layer."""
    def build():
        view = pre_activation_view(model, layer)

        def score(x, targets):
            z = tf.gather(view(x, training=False), targets, axis=3, batch_dims=1)
            return tf.reduce_mean(tf.nn.leaky_relu(z, LEAK), axis=[1, 2])
        return ascent.make_step(score, model.input_shape[-1], model.input_shape[1:3])
    return cached(model, ("ascent", "channel", layer), build)


def neutral_start(model, n: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """n mid-grey images of the model's input size, plus uniform noise of +-``noise``."""
    shape = (n, *model.input_shape[1:])
    rng = np.random.default_rng(seed)
    return (ascent.NEUTRAL + rng.uniform(-noise, noise, shape)).astype(np.float32)


# --- class model and channel visualization ------------------------------------------------------

def check_input_size(model, what: str) -> None:
    """Raise a CourseError unless the model takes images of one fixed size."""
    check_model(model)
    if None in model.input_shape[1:]:
        raise CourseError(
            f"This model takes images of any size (input {model.input_shape}); {what} needs "
            "one fixed size. Give the model a fixed input: inputs = "
            "keras.Input((64, 64, 3)); fixed = keras.Model(inputs, model(inputs)).")


def check_moved(images: np.ndarray, start: np.ndarray, what: str) -> np.ndarray:
    """Return the ascent's images, or raise a CourseError for an image still exactly its start:
    the gradient was exactly zero there, and returning the start would look like a result."""
    still = [i for i in range(len(images)) if np.array_equal(images[i], start[i])]
    if still:
        raise CourseError(
            f"The gradient of the score of {what} {still[0]} is exactly zero at the start image, "
            "so the ascent cannot move (it would return the grey start). A model that maps grey "
            "to all zeros does this (e.g. Rescaling(2, offset=-1) first, then convolutions "
            "without bias before a ReLU). Start from noise instead: noise=0.1.")
    return images


def class_model_run(model, classes=None, *, score: str = "margin",
                    settings: ascent.Settings = REGULARISED, keep_every: int = 1,
                    noise: float = 0.0) -> ascent.Ascent:
    """A gradient-ascent run on class scores that keeps its trajectory (for sliders).

    Args:
        model: a classifier (Sequential, functional or nested) taking images in [0, 1].
        classes: class indices, one image per class (default: every class).
        score: ``"margin"`` (S_c - max_{k≠c} S_k) or ``"logit"`` (S_c); see :func:`class_score`.
        settings: the step size and regularisers (:class:`course_utils.ascent.Settings`).
        keep_every: store the images of every ``keep_every``-th step.
        noise: uniform noise of +-``noise`` on the grey start (0: plain grey).

    Returns:
        An :class:`~course_utils.ascent.Ascent` at step 0: ``run.image(200)`` runs 200 steps.
    """
    check_input_size(model, "class model visualization")
    n_classes = int(model.output_shape[-1])
    classes = np.arange(n_classes) if classes is None else np.atleast_1d(classes)
    targets = as_targets(classes, len(classes), n_classes)
    start = neutral_start(model, len(targets), noise)
    return ascent.Ascent(class_step(model, score), start, targets, settings,
                         keep_every=keep_every)


def class_model(model, classes=None, *, steps: int = 200, score: str = "margin",
                settings: ascent.Settings = REGULARISED, progress: bool = False,
                noise: float = 0.0) -> np.ndarray:
    """Class model visualization (Simonyan et al. 2014): for each class c, the image I that
    maximises an unnormalised class score minus λ‖I - 0.5‖², by gradient ascent from a grey
    image.

    Simonyan et al. maximise the logit S_c (``score="logit"``). On the course CNN, whose classes
    share parts, that also raises rival classes, often more than c (notebook 05 shows it); the
    default ``"margin"``, S_c - max_{k≠c} S_k, raises c's lead over its strongest rival instead.

    Args:
        model: a classifier taking images in [0, 1]; its weights are not changed.
        classes: class indices (default: every class, in order).
        steps: the number of ascent steps.
        score: ``"margin"`` or ``"logit"`` (see :func:`class_score`).
        settings: step size and regularisers; ``features.PLAIN`` for plain ascent.
        progress: show a progress bar (for long runs; not in checked notebook cells).
        noise: uniform noise of +-``noise`` on the grey start (0: plain grey, as the paper).

    Returns:
        float32 (N, H, W, C) in [0, 1], one image per class.

    Raises:
        CourseError: the gradient is exactly zero at the start (the ascent cannot move).
    """
    steps = ascent.check_steps(steps)
    run = class_model_run(model, classes, score=score, settings=settings, keep_every=steps,
                          noise=noise)
    return check_moved(run.image(steps, progress=progress), run.snapshots[0], "class")


def channel_run(model, layer: str, channels, *, settings: ascent.Settings = REGULARISED,
                noise: float = 0.1, keep_every: int = 1) -> ascent.Ascent:
    """A gradient-ascent run on the mean activation of conv channels (see :func:`channel_step`),
    one image per channel, from grey plus a little noise."""
    check_input_size(model, "channel visualization")
    channels = check_channels(model, layer, channels)
    start = neutral_start(model, len(channels), noise, settings.seed)
    return ascent.Ascent(channel_step(model, layer), start, channels, settings,
                         keep_every=keep_every)


def channel_visualization(model, layer: str, channels, *, steps: int = 200,
                          settings: ascent.Settings = REGULARISED,
                          progress: bool = False) -> np.ndarray:
    """Channel (filter) visualization: for each channel, the image that maximises the mean of its
    feature map (with a leaky ReLU, :func:`channel_step`), by the same regularised gradient
    ascent as :func:`class_model`.

    Args:
        model: a model with images in [0, 1]; its weights are not changed.
        layer: the name of a convolution layer.
        channels: a channel index or a list of them.
        steps, settings, progress: as in :func:`class_model`.

    Returns:
        float32 (N, H, W, C) in [0, 1], one image per channel.
    """
    steps = ascent.check_steps(steps)
    run = channel_run(model, layer, channels, settings=settings, keep_every=steps)
    return check_moved(run.image(steps, progress=progress), run.snapshots[0], "channel")


def probabilities(model, images: np.ndarray) -> np.ndarray:
    """The model's class probabilities for a batch, float32 (N, classes)."""
    logits = logits_model(model)(as_image_batch(images, model), training=False)
    return tf.nn.softmax(logits).numpy()


# --- receptive fields ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceptiveField:
    """Which input pixels a unit of a layer sees, per axis (rows, columns).

    Unit (i, j) of the layer's feature map sees rows ``start[0] + i·jump[0]`` to that plus
    ``size[0] - 1``, and likewise for columns; the parts outside the image are padding.

    Attributes:
        size: (height, width) of the field in pixels, padding included.
        jump: (rows, columns) of input pixels between neighbouring units (the product of the
            strides).
        start: where unit (0, 0)'s field begins (negative: it starts in the padding).
        grid: (height, width) of the layer's feature map.
        image: (height, width) of the input image.
    """

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[int, int]
    grid: tuple[int, int]
    image: tuple[int, int]

    def box(self, i: int, j: int, *, clip: bool = True) -> tuple[int, int, int, int]:
        """The field of unit (i, j) as (top, left, bottom, right), bottom/right excluded;
        clipped to the image unless ``clip=False``."""
        top, left = self.start[0] + i * self.jump[0], self.start[1] + j * self.jump[1]
        bottom, right = top + self.size[0], left + self.size[1]
        if not clip:
            return top, left, bottom, right
        return max(top, 0), max(left, 0), min(bottom, self.image[0]), min(right, self.image[1])


def _axis_step(start, size, jump, n, kernel, stride, padding):
    """One layer's effect on one axis: a window of ``kernel`` units, moved by ``stride``."""
    if padding == "same":
        n_out = math.ceil(n / stride)
        before = max((n_out - 1) * stride + kernel - n, 0) // 2   # TensorFlow pads less before
    else:
        n_out, before = (n - kernel) // stride + 1, 0
    return start - before * jump, size + (kernel - 1) * jump, jump * stride, n_out


def _apply_layer(layer, field: ReceptiveField) -> ReceptiveField:
    """The receptive field of a layer's output, given the field of its input."""
    if isinstance(layer, keras.layers.ZeroPadding2D):
        (top, bottom), (left, right) = layer.padding
        return ReceptiveField(
            field.size, field.jump, (field.start[0] - top * field.jump[0],
                                     field.start[1] - left * field.jump[1]),
            (field.grid[0] + top + bottom, field.grid[1] + left + right), field.image)
    if hasattr(layer, "pool_size") or hasattr(layer, "kernel_size"):
        if isinstance(layer, keras.layers.Conv2DTranspose) or len(layer.strides) != 2:
            raise CourseError(f"Layer {layer.name!r} ({type(layer).__name__}) is not a 2D "
                              "convolution or pooling; the receptive field walks only those.")
        kernel = getattr(layer, "pool_size", None) or layer.kernel_size
        dilation = getattr(layer, "dilation_rate", (1, 1))
        axes = [_axis_step(field.start[a], field.size[a], field.jump[a], field.grid[a],
                           dilation[a] * (kernel[a] - 1) + 1, layer.strides[a], layer.padding)
                for a in (0, 1)]
        start, size, jump, grid = (tuple(int(ax[k]) for ax in axes) for k in range(4))
        return ReceptiveField(size, jump, start, grid, field.image)
    return _elementwise(layer, field)


def _elementwise(layer, field: ReceptiveField) -> ReceptiveField:
    """Layers that keep every position where it is (activations, normalisation, add, ...)."""
    shape = tuple(layer.output.shape[1:3]) if len(layer.output.shape) == 4 else None
    if shape is None or (None not in shape and shape != field.grid):
        raise CourseError(f"Layer {layer.name!r} ({type(layer).__name__}) changes the spatial "
                          "layout in a way the receptive field does not follow (it is not a "
                          "convolution, pooling, padding or per-position layer).")
    return field


def _union(fields: list[ReceptiveField]) -> ReceptiveField:
    """The field of a layer that merges branches (Add, Concatenate): what any branch sees."""
    first = fields[0]
    if any(f.jump != first.jump or f.grid != first.grid for f in fields):
        raise CourseError("Branches with different strides meet here; the course's receptive "
                          "field does not handle that.")
    start = tuple(min(f.start[a] for f in fields) for a in (0, 1))
    end = tuple(max(f.start[a] + f.size[a] for f in fields) for a in (0, 1))
    size = tuple(e - s for s, e in zip(start, end, strict=True))
    return ReceptiveField(size, first.jump, start, first.grid, first.image)


def _compose(outer: ReceptiveField, inner: ReceptiveField) -> ReceptiveField:
    """The field of ``inner`` (relative to a nested model's input) in the outer image, when the
    nested model's input has the field ``outer``."""
    return ReceptiveField(
        tuple(outer.size[a] + (inner.size[a] - 1) * outer.jump[a] for a in (0, 1)),
        tuple(outer.jump[a] * inner.jump[a] for a in (0, 1)),
        tuple(outer.start[a] + inner.start[a] * outer.jump[a] for a in (0, 1)),
        inner.grid, outer.image)


def _tensor_field(tensor, image: tuple[int, int], memo: dict) -> ReceptiveField:
    """The field of a symbolic Keras tensor, walking back through the graph to the input."""
    key = id(tensor)
    if key not in memo:
        layer, node_index, index = tensor._keras_history
        parents = layer._inbound_nodes[node_index].input_tensors
        if not parents:  # the input layer: each pixel sees itself
            memo[key] = ReceptiveField((1, 1), (1, 1), (0, 0), image, image)
        else:
            field = _union([_tensor_field(p, image, memo) for p in parents])
            if isinstance(layer, keras.Model):
                inner = _tensor_field(layer.outputs[index], field.grid, {})
                memo[key] = _compose(field, inner)
            else:
                memo[key] = _apply_layer(layer, field)
    return memo[key]


def _layer_field(model, name: str, image: tuple[int, int]) -> ReceptiveField:
    for layer in model.layers:
        if layer.name == name:
            return _tensor_field(layer.output, image, {})
        if isinstance(layer, keras.Model) and _contains(layer, name):
            outer = _tensor_field(layer._inbound_nodes[0].input_tensors[0], image, {})
            return _compose(outer, _layer_field(layer, name, outer.grid))
    raise AssertionError(name)


def receptive_field(model, layer: str) -> ReceptiveField:
    """The exact receptive field of the units of a layer, from the kernels, strides, dilations
    and padding of every layer between the input and it.

    Per layer (per axis), with the input field's size r, jump j and start s, a window of k units
    (k = dilation·(kernel - 1) + 1), stride t, and p units of padding before the input:
    r ← r + (k - 1)·j, s ← s - p·j, j ← j·t. "same" padding pads
    max((ceil(n/t) - 1)·t + k - n, 0) units, the smaller half before (as TensorFlow does).
    Where branches meet (Add), a unit sees what any branch sees. A dilated convolution leaves
    holes in the field (pixels between its taps that it skips); the field is then the smallest
    box around what the unit sees.

    Args:
        model: a Keras model with a fixed input size (Sequential, functional or nested).
        layer: the name of a layer with feature maps (a convolution, typically).

    Returns:
        A :class:`ReceptiveField`.
    """
    check_layer_name(model, layer)
    image = tuple(model.input_shape[1:3])
    if None in image:
        raise CourseError("The receptive field needs a model with a fixed input size; this one "
                          f"takes {model.input_shape}.")
    return _layer_field(model, layer, image)


# --- dataset search ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchResult:
    """The top-k images of a channel.

    Attributes:
        layer, channel: the channel searched.
        indices: int (k,), indices of the images, most activating first.
        activations: float32 (k,), each image's largest activation of the channel.
        units: int (k, 2), (row, column) of that most active unit in the feature map.
        boxes: int (k, 4), its receptive field as (top, left, bottom, right), clipped.
        field: the layer's :class:`ReceptiveField`.
    """

    layer: str
    channel: int
    indices: np.ndarray
    activations: np.ndarray
    units: np.ndarray
    boxes: np.ndarray
    field: ReceptiveField


def channel_maxima_function(model, layers: tuple[str, ...]):
    """A compiled ``images -> [(max, argmax)] per layer``: for every channel, the largest
    activation over the feature map and where it is (flat index), each (N, C). Cached."""
    def build():
        view = feature_model(model, list(layers), logits=False)
        trunk = keras.Model(view.inputs[0], view.outputs[:len(layers)])

        @tf.function(input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])
        def maxima(x):
            outs = trunk(x, training=False)
            outs = outs if isinstance(outs, list | tuple) else [outs]
            flat = [tf.reshape(a, (tf.shape(a)[0], -1, a.shape[-1])) for a in outs]
            return [(tf.reduce_max(f, axis=1), tf.argmax(f, axis=1, output_type=tf.int32))
                    for f in flat]
        return maxima
    return cached(model, ("channel_maxima", layers), build)


def channel_maxima(model, images: np.ndarray, layers: list[str],
                   batch_size: int = 250) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each layer, every channel's largest activation per image and the unit where it is.

    Returns:
        {layer: (maxima float32 (N, C), units int (N, C, 2) as (row, column))}. The feature maps
        themselves are never kept (for conv1 and 3000 images they would fill 800 MB).
    """
    fn = channel_maxima_function(model, tuple(layers))
    batch_size = check_batch_size(batch_size)
    parts = [fn(tf.constant(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    result = {}
    for k, name in enumerate(layers):
        maxima = np.concatenate([p[k][0].numpy() for p in parts])
        flat = np.concatenate([p[k][1].numpy() for p in parts])
        width = int(find_layer(model, name).output.shape[2])
        result[name] = maxima, np.stack([flat // width, flat % width], axis=-1)
    return result


def top_k(maxima: np.ndarray, units: np.ndarray, field: ReceptiveField, layer: str,
          channel: int, k: int) -> SearchResult:
    """The k images whose channel ``channel`` is most active, from :func:`channel_maxima`."""
    order = np.argsort(-maxima[:, channel], kind="stable")[:k]
    chosen = units[order, channel]
    boxes = np.array([field.box(i, j) for i, j in chosen], dtype=int).reshape(-1, 4)
    return SearchResult(layer, int(channel), order, maxima[order, channel], chosen, boxes, field)


def dataset_search(model, images, layer: str, channel: int, *, k: int = 9,
                   batch_size: int = 250) -> SearchResult:
    """Dataset search: the k images that activate one channel of a conv layer the most, and
    where (the unit with the largest activation, and its receptive field).

    Args:
        model: a model with images in [0, 1].
        images: float32 (N, H, W, C) in [0, 1], e.g. ``cu.make_shapes(3000, seed=100).images``.
        layer: a convolution layer's name.
        channel: a channel index of that layer.
        k: how many images to return.
        batch_size: images per forward pass.

    Returns:
        A :class:`SearchResult`; :func:`crop_patches` cuts out the patches.
    """
    check_input_size(model, "dataset search")
    channel = int(check_channels(model, layer, channel)[0])
    x = as_image_batch(images, model)
    if int(k) != k or not 1 <= k <= len(x):
        raise CourseError(f"k must be a whole number from 1 to the number of images ({len(x)}); "
                          f"got {k!r}.")
    maxima, units = channel_maxima(model, x, [layer], batch_size)[layer]
    return top_k(maxima, units, receptive_field(model, layer), layer, channel, int(k))


def crop_patches(images: np.ndarray, result: SearchResult, fill: float = 0.5) -> np.ndarray:
    """Cut each top image's receptive-field patch, full size: the part of the field outside the
    image (the padding the unit sees) is filled with ``fill`` (grey).

    Returns:
        float32 (k, field height, field width, C).
    """
    f = result.field
    patches = np.full((len(result.indices), *f.size, images.shape[-1]), fill, np.float32)
    for n, (index, (i, j)) in enumerate(zip(result.indices, result.units, strict=True)):
        top, left, bottom, right = f.box(i, j, clip=False)
        t, l_, b, r = f.box(i, j)
        patches[n, t - top:b - top, l_ - left:r - left] = images[index, t:b, l_:r]
    return patches


# --- exercises ----------------------------------------------------------------------------------

def _verdict(ok: bool, hint: str) -> None:
    print("correct" if ok else f"not yet: {hint}")


def _field_with(stack, mistake: str = "") -> tuple[int, int]:
    """(size, jump) of a unit after ``stack`` of (kernel, stride) layers, or the answer with one
    named mistake."""
    size, jump = 1, 1
    for kernel, stride in stack:
        if mistake == "jump first":
            jump *= stride
        widen = {"kernel": kernel, "no jump": kernel - 1}.get(mistake, kernel - 1)
        if not (mistake == "pooling adds nothing" and kernel == stride):
            size += widen * (1 if mistake == "no jump" else jump)
        if mistake == "size times stride":
            size *= stride
        if mistake != "jump first":
            jump *= stride
    return size, jump


FIELD_HINTS = {
    "no jump": "a window of k units of the layer below spans more than k pixels once the units "
               "below are spread apart by earlier strides: count in pixels.",
    "kernel": "a window of k units reaches k - 1 units beyond the first: one pixel's field is 1 "
              "wide, and one 3-wide window over it is 3 wide, not 4.",
    "jump first": "a layer's own stride spaces the units *above* it; its window still spans the "
                  "units below at their old spacing.",
    "pooling adds nothing": "a 2 × 2 pooling is a window too: a pooled unit sees the fields of "
                            "two neighbouring units per axis, not one.",
    "size times stride": "a stride spreads the units apart; it does not stretch each field.",
}


def check_field_exercise(field_size_fn) -> None:
    """Check a student's ``field_size_fn(layers) -> (size, jump)`` for a stack of layers given as
    (kernel, stride) pairs (a 2 × 2 pooling is (2, 2)), starting from one pixel (size 1, jump 1).
    Names the mistake when it recognises one, without giving the recursion. Prints "correct" or
    "not yet: <hint>"."""
    cases = [((3, 1),), ((3, 1), (2, 2)), ((3, 1), (2, 2), (3, 1)), ((5, 2), (3, 2)),
             ((3, 1), (2, 2), (3, 1), (2, 2), (3, 1), (2, 2), (3, 1)), ((7, 2), (3, 2), (3, 1))]
    try:
        answers = [tuple(int(v) for v in field_size_fn(list(stack))) for stack in cases]
    except Exception as e:  # the student's code failed: say how, do not raise
        return _verdict(False, f"your function raised {type(e).__name__}: {e}")
    if answers == [_field_with(stack) for stack in cases]:
        return _verdict(True, "")
    for mistake, hint in FIELD_HINTS.items():
        if answers == [_field_with(stack, mistake) for stack in cases]:
            return _verdict(False, hint)
    stack, got = next((st, a) for st, a in zip(cases, answers, strict=True)
                      if a != _field_with(st))
    return _verdict(False, f"for the layers {list(stack)} the answer is not {got}. Work it out on "
                           "paper for two layers first: how many pixels apart are the units "
                           "after the first layer, and how many of them does the second layer's "
                           "window cover?")


def _search_with(maps: np.ndarray, k: int, mistake: str = ""):
    """(indices, rows, cols) of the top-k images of one channel's maps (N, h, w), or the answer
    with one named mistake."""
    n, h, w = maps.shape
    flat = maps.reshape(n, -1)
    score = flat.mean(1) if mistake == "mean" else flat.max(1)
    order = np.argsort(score if mistake == "ascending" else -score, kind="stable")[:k]
    where = flat[order].argmax(1)
    rows, cols = where // w, where % w
    return (order, cols, rows) if mistake == "swapped" else (order, rows, cols)


SEARCH_HINTS = {
    "mean": "rank each image by its *strongest* unit, not by the average over the map: a pattern "
            "that appears once should count fully.",
    "ascending": "the most activating image comes first: sort from the largest score down.",
    "swapped": "the row is the first index of a map and the column the second: check which one "
               "you took from the flat index.",
}


def check_search_exercise(my_search) -> None:
    """Check a student's dataset search ``my_search(maps, k) -> (indices, rows, cols)``: the k
    images whose channel map (N, h, w) has the largest maximum, most active first, and where that
    maximum is. Names the mistake when it recognises one. Prints "correct" or "not yet: <hint>"."""
    rng = np.random.default_rng(6)
    maps = rng.gamma(2.0, size=(12, 5, 7)).astype(np.float32)
    maps[3, 1, 5] = 30.0                 # one strong unit: its image must come first
    try:
        got = tuple(np.asarray(a).astype(int).ravel() for a in my_search(maps.copy(), 4))
    except Exception as e:  # the student's code failed: say how, do not raise
        return _verdict(False, f"your function raised {type(e).__name__}: {e}")

    def same(answer) -> bool:
        return len(got) == 3 and all(a.shape == b.shape and np.array_equal(a, b)
                                     for a, b in zip(got, answer, strict=True))
    if same(_search_with(maps, 4)):
        return _verdict(True, "")
    for mistake, hint in SEARCH_HINTS.items():
        if same(_search_with(maps, mistake=mistake, k=4)):
            return _verdict(False, hint)
    return _verdict(False, "return three arrays of length k: the images' indices, most active "
                           "first, and the row and the column of each one's strongest unit.")
