"""The deconvnet: project one unit of a CNN back to pixel space (Zeiler & Fergus 2014).

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks" (ECCV 2014), attach a
"deconvnet" to a trained CNN to see what a unit responds to:

1. run the image forward up to the unit's layer, recording each max pooling's *switches* (where
   each maximum came from);
2. keep the unit's activation and set every other activation of that layer to zero;
3. go back down, layer by layer: un-ReLU (keep the positive part of the signal), a transposed
   convolution with the layer's own kernel, and unpooling with the recorded switches, down to
   the pixels.

Each step is one of notebook 07's (``course_utils.deconv``). A transposed convolution is the
gradient of a convolution with respect to its input, and unpooling with switches is the gradient
of max pooling, so the projection is the gradient of the unit with one change: at every ReLU the
deconvnet rule ``max(signal, 0)`` replaces ordinary backpropagation. ``rule="vanilla"`` and
``rule="guided"`` swap in the other two ReLU rules, and give the plain gradient and guided
backpropagation of the same unit (notebook 08 and the tests check both routes agree).

The projection handles the layers of the course CNN: ``InputLayer``, ``Conv2D`` with a ReLU (or no)
activation and ``MaxPooling2D`` with non-overlapping windows, in a single chain, and a
``Rescaling`` of the input (EfficientNet-Lite0's ``normalize``). Most networks built since 2014 are
not of its kind: EfficientNet-Lite0 has no max pooling (so no switches) and has depthwise
convolutions, batch norms, ReLU6 and skip connections. On it the deconvnet projects only from the
first convolution, and for any deeper layer a CourseError says why; :func:`unit_gradient` (the same
backward rules, as a gradient) works on any network.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from . import deconv
from .checks import as_image_batch
from .errors import CourseError
from .gradients import backprop_model, pre_activation, reduce_channels
from .models import check_layer_name

RULES = {"deconvnet": deconv.deconvnet_relu_backward,   # Zeiler & Fergus: positive signal
         "guided": deconv.guided_relu_backward,         # Springenberg et al.: both
         "vanilla": deconv.relu_backward}               # backpropagation: positive input


@dataclass(frozen=True)
class Step:
    """What the forward pass records at one layer, for the way back.

    Attributes:
        layer: the Keras layer (Conv2D, MaxPooling2D or Rescaling).
        input_shape: (N, H, W, C) of the layer's input: the shape the way back returns to.
        pre_activation: for a Conv2D, its output before the ReLU, z (the vanilla and guided
            rules look at it); None for the others.
        switches: for a MaxPooling2D, where each maximum came from (indices into the flattened
            input, see :func:`course_utils.deconv.max_pool_with_switches`); None for the others.
    """

    layer: keras.layers.Layer
    input_shape: tuple[int, ...]
    pre_activation: np.ndarray | None = None
    switches: np.ndarray | None = None


@dataclass(frozen=True)
class Units:
    """One unit per image: its channel, position and activation, each an array of shape (N,)."""

    channel: np.ndarray
    row: np.ndarray
    col: np.ndarray
    value: np.ndarray


# --- the layers the deconvnet handles ------------------------------------------------------------


def _relu_or_linear(layer) -> bool:
    return getattr(layer.activation, "__name__", "") in ("relu", "linear")


def _unhandled(layer) -> str | None:
    """Why the deconvnet cannot go back through ``layer``; None when it can."""
    if isinstance(layer, keras.layers.InputLayer | keras.layers.Rescaling):
        return None
    if type(layer) is keras.layers.Conv2D:
        if not _relu_or_linear(layer):
            return (f"Layer {layer.name!r} has the activation {layer.activation.__name__!r}; the "
                    "deconvnet's un-ReLU only undoes a ReLU (or no activation).")
        if max(layer.dilation_rate) > 1 or layer.groups > 1 or \
                layer.data_format != "channels_last":
            return (f"Layer {layer.name!r} is dilated, grouped or channels-first; the course's "
                    "deconvnet handles plain channels-last convolutions.")
        return None
    if isinstance(layer, keras.layers.MaxPooling2D):
        size, strides = layer.pool_size, layer.strides
        if size[0] != size[1] or tuple(strides) != tuple(size) or layer.padding != "valid":
            return (f"Pooling layer {layer.name!r} has pool_size {size}, strides {strides} and "
                    f"padding {layer.padding!r}; unpooling with switches here needs square "
                    "windows that do not overlap (strides = pool_size) and 'valid' padding.")
        return None
    return (f"The deconvnet goes back through Conv2D (ReLU), MaxPooling2D, Rescaling and the "
            f"input only; layer {layer.name!r} is a {type(layer).__name__}.")


# Parts of newer networks that Zeiler & Fergus's deconvnet never had, by Keras layer type.
NEWER_PARTS = {"DepthwiseConv2D": "depthwise convolutions",
               "BatchNormalization": "batch normalisation", "ReLU": "separate ReLU(6) layers",
               "Add": "skip connections (Add)"}


def _not_its_kind(model) -> str:
    """A sentence on what keeps ``model`` from the deconvnet as a whole ("" for the course CNN),
    and the gradient route that works on any network."""
    kinds = {type(layer).__name__ for layer in model.layers}
    reasons = [] if "MaxPooling2D" in kinds else ["no max pooling (so no switches to record)"]
    reasons += [what for kind, what in NEWER_PARTS.items() if kind in kinds]
    if not reasons:
        return ""
    return (f" This network is not of the deconvnet's kind: {'; '.join(reasons)}. The "
            "deconvnet's backward rule works on any network as a gradient: "
            "cu.deconvnet.unit_gradient(model, images, layer, channel) for one unit, "
            "cu.gradients.deconvnet(model, images) for a class.")


def projectable_layers(model) -> list[str]:
    """The Conv2D and MaxPooling2D layers the deconvnet can project from: those in the chain of
    handled layers the model starts with."""
    names, previous = [], None
    for layer in model.layers:
        chained = previous is None or isinstance(model, keras.Sequential) or \
            layer.input is previous.output
        if _unhandled(layer) is not None or not chained:
            break
        if isinstance(layer, keras.layers.Conv2D | keras.layers.MaxPooling2D):
            names.append(layer.name)
        previous = layer
    return names


def _check_handled(layer, model) -> None:
    """Raise a CourseError, saying why, unless the deconvnet can go back through ``layer``."""
    reason = _unhandled(layer)
    if reason is not None:
        raise CourseError(f"{reason}{_not_its_kind(model)} The deconvnet can project from: "
                          f"{', '.join(projectable_layers(model)) or 'no layer of this model'}.")


def layers_up_to(model, layer: str) -> list:
    """The model's layers from the input up to ``layer`` included, checked one by one.

    Args:
        model: a Keras model whose layers form a single chain (as the course CNN).
        layer: the name of a Conv2D or MaxPooling2D layer.

    Returns:
        The list of Keras layers, input first.

    Raises:
        CourseError: an unknown layer, a layer type the deconvnet does not handle (on the way or
            as the target), or a model that is not a single chain up to ``layer``.
    """
    check_layer_name(model, layer)
    target = next((current for current in model.layers if current.name == layer), None)
    if not isinstance(target, keras.layers.Conv2D | keras.layers.MaxPooling2D
                      | keras.layers.InputLayer | keras.layers.Rescaling):
        kind = "a layer inside a nested model" if target is None else \
            f"a {type(target).__name__} layer"
        where = projectable_layers(model)
        raise CourseError(
            f"The deconvnet projects the feature maps of a convolution or max-pooling layer; "
            f"{layer!r} is {kind}.{_not_its_kind(model)} "
            + (f"The deconvnet can project from: {', '.join(where)}." if where else
               "This model has no layer the deconvnet can project from."))
    chain = []
    for current in model.layers:
        _check_handled(current, model)
        if chain and not isinstance(model, keras.Sequential) and \
                current.input is not chain[-1].output:
            raise CourseError(f"Layer {current.name!r} does not take the output of "
                              f"{chain[-1].name!r}; the deconvnet needs a single chain of layers.")
        chain.append(current)
        if current.name == layer:
            break
    if not isinstance(chain[-1], keras.layers.Conv2D | keras.layers.MaxPooling2D):
        raise CourseError(f"{layer!r} is the input or its rescaling; project from a convolution "
                          f"or pooling layer: {', '.join(projectable_layers(model))}.")
    return chain


# --- the forward pass, recording what the way back needs -----------------------------------------


def forward_with_switches(model, images, layer: str) -> tuple[np.ndarray, list[Step]]:
    """Run the images forward up to ``layer``, recording each layer's input shape, each Conv2D's
    pre-activation and each max pooling's switches.

    Args:
        model: the course CNN (or any single chain of Conv2D/ReLU and MaxPooling2D layers,
            after an optional Rescaling of the input).
        images: float32 (N, H, W, 3) in [0, 1], or one image (H, W, 3).
        layer: the name of a Conv2D or MaxPooling2D layer.

    Returns:
        (activations of ``layer``, shape (N, h, w, C); the list of Steps, input side first).
    """
    x = as_image_batch(images, model)
    steps = []
    for current in layers_up_to(model, layer):
        if isinstance(current, keras.layers.MaxPooling2D):
            pooled, switches = deconv.max_pool_with_switches(x, current.pool_size[0])
            steps.append(Step(current, x.shape, switches=switches))
            x = pooled
        elif isinstance(current, keras.layers.Rescaling):
            steps.append(Step(current, x.shape))
            x = np.asarray(current(x))
        elif isinstance(current, keras.layers.Conv2D):
            z = pre_activation(current, tf.constant(x)).numpy()
            steps.append(Step(current, x.shape, pre_activation=z))
            x = np.maximum(z, 0.0) if current.activation.__name__ == "relu" else z
    return x, steps


# --- choosing the unit ---------------------------------------------------------------------------


def _per_image(value, n: int, name: str) -> np.ndarray:
    """One int for every image, or one per image, as an int array (n,)."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise CourseError(f"{name} must be one integer or one per image ({n}); got {value!r}.")
    return arr.astype(int)


def _check_channels(channels: np.ndarray, activations: np.ndarray, layer: str) -> None:
    n_channels = activations.shape[-1]
    bad = channels[(channels < 0) | (channels >= n_channels)]
    if bad.size:
        raise CourseError(f"Layer {layer!r} has {n_channels} channels, numbered 0 to "
                          f"{n_channels - 1}; got channel {bad[0]}.")


def strongest_position(activations: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """Where each image's channel is most active.

    Args:
        activations: (N, h, w, C).
        channels: (N,) one channel per image.

    Returns:
        int array (N, 2): (row, column) of the largest activation (the first one, if tied).
    """
    maps = activations[np.arange(len(activations)), :, :, channels]          # (N, h, w)
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    return np.stack(np.unravel_index(flat, maps.shape[1:]), axis=1)


def _positions(position, activations: np.ndarray, channels: np.ndarray, layer: str):
    if position is None:
        return strongest_position(activations, channels)
    pos = np.asarray(position)
    pos = np.broadcast_to(pos, (len(activations), 2)) if pos.shape == (2,) else pos
    h, w = activations.shape[1:3]
    if pos.shape != (len(activations), 2) or not np.issubdtype(pos.dtype, np.integer) or \
            (pos < 0).any() or (pos[:, 0] >= h).any() or (pos[:, 1] >= w).any():
        raise CourseError(f"position must be (row, column) inside the {h}×{w} maps of layer "
                          f"{layer!r} (rows 0 to {h - 1}, columns 0 to {w - 1}), one for all "
                          f"images or one per image; got {np.asarray(position).tolist()}.")
    return pos.astype(int)


def keep_one_unit(activations: np.ndarray, channels, positions, signal="activation") -> np.ndarray:
    """Zero every activation except one unit per image.

    Args:
        activations: (N, h, w, C).
        channels: (N,) the kept unit's channel in each image.
        positions: (N, 2) its (row, column).
        signal: ``"activation"`` keeps the unit's own value (Zeiler & Fergus); a number puts that
            number there instead (1.0 gives the gradient of the unit).

    Returns:
        float32 (N, h, w, C), zero except at the N kept units.
    """
    n = np.arange(len(activations))
    kept = np.zeros_like(activations, dtype=np.float32)
    index = (n, positions[:, 0], positions[:, 1], channels)
    kept[index] = activations[index] if signal == "activation" else float(signal)
    return kept


# --- the way back --------------------------------------------------------------------------------


def transposed_conv(signal: np.ndarray, step: Step) -> np.ndarray:
    """Send a signal back through a Conv2D: ``tf.nn.conv2d_transpose`` with the layer's own kernel,
    strides and padding, to the shape of the layer's input (the gradient of the convolution with
    respect to its input; the bias plays no part).

    Args:
        signal: (N, h, w, filters), in the layer's output space.
        step: the layer's Step.

    Returns:
        float32 (N, H, W, channels in), in the layer's input space.
    """
    layer = step.layer
    return tf.nn.conv2d_transpose(signal, layer.kernel, step.input_shape, layer.strides,
                                  layer.padding.upper()).numpy()


def backward(signal: np.ndarray, steps: list[Step], rule: str = "deconvnet") -> np.ndarray:
    """Go back down from a layer's output space to the pixels.

    For each recorded step, last first: a pooling layer unpools with its switches; a Conv2D
    applies the ReLU ``rule`` (un-ReLU for the deconvnet), then its transposed convolution; a
    Rescaling (x·scale + offset) multiplies by its scale.

    Args:
        signal: (N, h, w, C), in the output space of the last step's layer.
        steps: from :func:`forward_with_switches`.
        rule: ``"deconvnet"``, ``"guided"`` or ``"vanilla"``.

    Returns:
        float32 (N, H, W, 3), in pixel space.
    """
    for step in reversed(steps):
        if step.switches is not None:
            signal = deconv.unpool(signal, step.switches, step.input_shape)
        elif isinstance(step.layer, keras.layers.Rescaling):
            signal = signal * np.asarray(step.layer.scale, np.float32)  # the offset: like a bias
        else:
            if step.layer.activation.__name__ == "relu":
                signal = RULES[rule](signal, step.pre_activation).astype(np.float32)
            signal = transposed_conv(signal, step)
    return signal.astype(np.float32)


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise CourseError(f"rule must be one of {', '.join(map(repr, RULES))}; got {rule!r}.")


def project(model, images, layer: str, channel, *, position=None, rule: str = "deconvnet",
            signal="activation", reduce: str = "none") -> np.ndarray:
    """Project one unit of ``layer`` back to pixel space with a deconvnet (Zeiler & Fergus 2014).

    The images go forward to ``layer`` (switches recorded); in each image one unit of
    ``channel`` is kept (its strongest, or the one at ``position``) and all other activations
    of the layer are set to zero; the signal then goes back down through un-ReLU, transposed
    convolutions and unpooling with the switches.

    Args:
        model: the course CNN (a chain of Conv2D with ReLU and 2×2 MaxPooling2D layers).
        images: float32 (N, H, W, 3) in [0, 1], or one image (H, W, 3).
        layer: the name of a Conv2D (e.g. ``"conv3"``) or MaxPooling2D layer.
        channel: the unit's channel, one int for all images or one per image.
        position: None for the strongest unit of the channel in each image, or (row, column),
            one for all images or an array (N, 2).
        rule: the way back through each ReLU: ``"deconvnet"`` (un-ReLU), ``"guided"`` or
            ``"vanilla"`` (backpropagation).
        signal: ``"activation"`` (start from the unit's value, as the paper) or a number (1.0
            gives exactly the gradient of the unit under ``rule``).
        reduce: ``"none"`` for the signed (N, H, W, 3) projection, or ``"max_abs"``/``"sum"``/
            ``"abs"`` (see :func:`course_utils.gradients.reduce_channels`).

    Returns:
        float32 (N, H, W, 3) projections, or (N, H, W) maps when reduced.

    Raises:
        CourseError: an unknown layer, a layer type it does not handle, a channel or position out
            of range, an unknown rule, or images that do not fit the model.
    """
    _check_rule(rule)
    if not (signal == "activation" or isinstance(signal, int | float | np.number)):
        raise CourseError(f"signal must be 'activation' or a number such as 1.0; got {signal!r}.")
    activations, steps = forward_with_switches(model, images, layer)
    channels = _per_image(channel, len(activations), "channel")
    _check_channels(channels, activations, layer)
    positions = _positions(position, activations, channels, layer)
    top = keep_one_unit(activations, channels, positions, signal)
    return reduce_channels(backward(top, steps, rule), reduce)


# --- the strongest units, receptive fields --------------------------------------------------------


def strongest_units(model, images, layer: str, masks=None) -> Units:
    """In each image, the unit of ``layer`` with the largest activation, over all channels and
    positions (the first one, if tied).

    Args:
        model: the course CNN.
        images: float32 (N, H, W, 3) in [0, 1], or one image.
        layer: the name of a Conv2D or MaxPooling2D layer.
        masks: None, or bool (N, H, W) object masks: then only units whose receptive field is
            centred on the object count (the strongest unit *on the object*).

    Returns:
        Units, each field of shape (N,).
    """
    acts, _ = forward_with_switches(model, images, layer)
    n, h, w, c = acts.shape
    if masks is not None:
        centres = [_field_centre(model, layer, i) for i in range(max(h, w))]
        rows, cols = np.array(centres[:h])[:, 0], np.array(centres[:w])[:, 1]
        on_object = np.asarray(masks, bool)[:, rows][:, :, cols]           # (N, h, w)
        acts = np.where(on_object[..., None], acts, -np.inf)
    flat = acts.reshape(n, -1).argmax(axis=1)
    row, col, channel = np.unravel_index(flat, (h, w, c))
    return Units(channel, row, col, acts.reshape(n, -1)[np.arange(n), flat])


def _field_centre(model, layer: str, i: int) -> tuple[int, int]:
    """The pixel (row, column) at the centre of unit (i, i)'s receptive field (clipped)."""
    top, left, bottom, right = receptive_field(model, layer, i, i)
    return (top + bottom - 1) // 2, (left + right - 1) // 2


def _same_padding(n: int, kernel: int, stride: int) -> int:
    """Rows (or columns) TensorFlow's "same" padding adds before the input."""
    out = -(-n // stride)
    return max((out - 1) * stride + kernel - n, 0) // 2


def receptive_field(model, layer: str, row: int, col: int) -> tuple[int, int, int, int]:
    """The pixels a unit of ``layer`` can see: (top, left, bottom, right), bottom and right
    excluded, clipped to the image.

    Going up, each layer with kernel k and stride s widens the field by (k - 1) times the
    distance between neighbouring units below it, and multiplies that distance by s.

    Args:
        model: the course CNN.
        layer: a Conv2D or MaxPooling2D layer's name.
        row, col: the unit's position in the layer's maps.
    """
    chain = [c for c in layers_up_to(model, layer)          # a Rescaling moves no pixel
             if isinstance(c, keras.layers.Conv2D | keras.layers.MaxPooling2D)]
    h, w = chain[-1].output.shape[1:3]
    if not (0 <= row < h and 0 <= col < w):
        raise CourseError(f"({row}, {col}) is outside the {h}×{w} maps of layer {layer!r}.")
    size, jump, start = 1, 1, np.zeros(2)                 # field side, unit spacing, first pixel
    height, width = model.input_shape[1:3]
    for current in chain:
        if isinstance(current, keras.layers.MaxPooling2D):
            k, s, pad = current.pool_size[0], current.strides[0], 0
        else:
            k, s = current.kernel_size[0], current.strides[0]
            n_in = current.input.shape[1]
            pad = _same_padding(n_in, k, s) if current.padding == "same" else 0
        start, size, jump = start - pad * jump, size + (k - 1) * jump, jump * s
    top, left = int(start[0] + row * jump), int(start[1] + col * jump)
    return max(top, 0), max(left, 0), min(top + size, height), min(left + size, width)


# --- display -------------------------------------------------------------------------------------


def to_rgb(projection: np.ndarray, percentile: float = 100.0) -> np.ndarray:
    """A signed projection (H, W, 3) as an image for display: 0 is mid grey, and the given
    percentile of the absolute values goes to 0 or 1 (all channels scaled alike, so colours keep
    their sign). A percentile below 100 stretches the contrast: the few largest values saturate,
    and the weaker structure becomes visible."""
    peak = np.percentile(np.abs(projection[np.abs(projection).max(-1) > 0]), percentile) \
        if np.any(projection) else 0.0
    if peak <= 0:
        return np.full_like(projection, 0.5)
    return np.clip(0.5 + 0.5 * projection / peak, 0.0, 1.0)


def _box(ax, field, colour: str) -> None:
    top, left, bottom, right = field
    ax.add_patch(plt.Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                               ec=colour, lw=1.5))


LAYER_COLOURS = ("red", "orange", "cyan", "magenta", "lime", "yellow")


def strongest_units_figure(model, images, layers: list[str], titles=None, *, size: float = 1.15,
                           masks=None, percentile: float = 99.0):
    """For each image (one row): the image with each layer's field boxed; then, for each layer,
    the image patch its strongest unit sees and that unit's deconvnet projection in the patch,
    contrast-stretched to the ``percentile`` of its absolute values (see :func:`to_rgb`). With
    ``masks``, the strongest unit on the object (:func:`strongest_units`).

    Args:
        model: the course CNN.
        images: float32 (N, H, W, 3) in [0, 1].
        layers: conv or pool layer names, e.g. ``["conv1", "conv2", "conv3", "conv4"]``.
        titles: one label per image (e.g. its class), or None.

    Returns:
        The figure.
    """
    x = as_image_batch(images, model)
    fig, axes = plt.subplots(len(x), 1 + 2 * len(layers), squeeze=False,
                             figsize=(size * (1 + 2 * len(layers)), size * len(x) + 0.5))
    for j, name in enumerate(layers):
        units = strongest_units(model, x, name, masks)
        proj = project(model, x, name, units.channel, position=np.stack([units.row, units.col], 1))
        for i in range(len(x)):
            field = receptive_field(model, name, units.row[i], units.col[i])
            top, left, bottom, right = field
            _box(axes[i, 0], field, LAYER_COLOURS[j % len(LAYER_COLOURS)])
            axes[i, 1 + 2 * j].imshow(x[i, top:bottom, left:right])
            axes[i, 2 + 2 * j].imshow(to_rgb(proj[i][top:bottom, left:right], percentile))
            axes[i, 1 + 2 * j].set_title(f"{name} ch {units.channel[i]}: patch", fontsize=7,
                                         color=LAYER_COLOURS[j % len(LAYER_COLOURS)])
            axes[i, 2 + 2 * j].set_title("projection", fontsize=7)
    for i in range(len(x)):
        axes[i, 0].imshow(x[i])
        axes[i, 0].set_title(titles[i] if titles is not None else "image", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def unit_figure(model, image: np.ndarray, layer: str, channel: int, row: int, col: int, *,
                percentile: float = 99.0):
    """One unit's deconvnet and guided-backpropagation projections (the pure function behind
    notebook 08's panel): the image with the unit's field boxed, the patch, and the two
    projections in it, contrast-stretched. A channel or position beyond the layer's size is
    clipped to it (the title says which unit is shown).

    Returns:
        The figure.
    """
    x = as_image_batch(image, model)[:1]
    acts, _ = forward_with_switches(model, x, layer)
    h, w, c = acts.shape[1:]
    channel, row, col = min(int(channel), c - 1), min(int(row), h - 1), min(int(col), w - 1)
    field = receptive_field(model, layer, row, col)
    top, left, bottom, right = field
    fig, axes = plt.subplots(1, 4, figsize=(7.6, 2.3))
    axes[0].imshow(x[0])
    _box(axes[0], field, "red")
    axes[1].imshow(x[0, top:bottom, left:right])
    for ax, rule in zip(axes[2:], ("deconvnet", "guided"), strict=True):
        proj = project(model, x, layer, channel, position=(row, col), rule=rule)
        ax.imshow(to_rgb(proj[0, top:bottom, left:right], percentile))
        ax.set_title(f"{rule} projection", fontsize=8)
    axes[0].set_title(f"{layer} ch {channel} at ({row}, {col})\nactivation "
                      f"{acts[0, row, col, channel]:.1f}", fontsize=8)
    axes[1].set_title(f"its field, {bottom - top}×{right - left}", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


# --- the second route: the gradient of the unit ---------------------------------------------------


def unit_gradient(model, images, layer: str, channel, *, position=None,
                  rule: str = "deconvnet") -> np.ndarray:
    """The gradient of one unit of ``layer`` with respect to the pixels, by TensorFlow's autodiff,
    with every ReLU backpropagating by ``rule`` (:func:`course_utils.gradients.backprop_model`).

    The same unit as :func:`project` (its strongest, or ``position``). With ``signal=1.0``,
    ``project`` gives the same numbers: the two routes agree. Unlike :func:`project` it needs no
    switches, so it works on any network (EfficientNet-Lite0's depthwise convolutions, batch
    norms, ReLU6 and skip connections too) and any layer with feature maps.

    Returns:
        float32 (N, H, W, 3).
    """
    _check_rule(rule)
    view = backprop_model(model, rule, layer_names=[layer])
    x = tf.constant(as_image_batch(images, model))
    with tf.GradientTape() as tape:
        tape.watch(x)
        activations = view(x, training=False)[0]
        values = activations.numpy()
        if values.ndim != 4:
            raise CourseError(f"Layer {layer!r} outputs {values.shape[1:]}, not feature maps "
                              "(h, w, channels); choose a convolution layer.")
        channels = _per_image(channel, len(values), "channel")
        _check_channels(channels, values, layer)
        positions = _positions(position, values, channels, layer)
        one_hot = keep_one_unit(values, channels, positions, signal=1.0)    # picks the units
        units = tf.reduce_sum(activations * one_hot)
    return tape.gradient(units, x).numpy()


def print_agreement(a, b, label: str, tol: float = 1e-5) -> None:
    """Print whether two projections agree, relative to the larger of the two: the same words on
    every machine for float32 round-off, a rounded number when they really differ."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-30)
    err = float(np.abs(a - b).max() / scale)
    verdict = f"below {tol:.0e}: they agree" if err < tol else f"{err:.1g}: they differ"
    print(f"{label}: largest difference / largest value {verdict}")
