r"""Layer-wise relevance propagation (Bach et al. 2015), with the rules of Montavon et al. 2019.

LRP starts from the class score, :math:`R = S_c` (the logit) at the output, and hands it back
layer by layer: each output :math:`j` gives its relevance :math:`R_j` to the inputs :math:`i` in
proportion to their contributions :math:`z_{ij} = a_i w_{ij}`, so that (for a rule that
*conserves*) every layer's relevances add up to the same total. For a layer computing
:math:`z_j = \sum_i a_i w_{ij} + b_j`:

.. math::

    R_i = a_i \sum_j \frac{\rho(w_{ij})\, R_j}{\epsilon + \sum_{i'} a_{i'} \rho(w_{i'j})
        + \rho(b_j)}

- ``"epsilon"``: :math:`\rho(w) = w`; :math:`\epsilon` = ``epsilon`` · sign(:math:`z_j`)
  absorbs weak, contradictory contributions (``epsilon=0``: LRP-0, which equals gradient ×
  input on a ReLU network);
- ``"gamma"``: :math:`\rho(w) = w + \gamma \max(w, 0)` (:math:`\gamma` = ``gamma``): favours
  positive contributions;
- ``"zplus"``: :math:`\rho(w) = \max(w, 0)`, no bias: only positive contributions
  (:math:`\alpha = 1, \beta = 0`);
- ``"alphabeta"``: :math:`R_i = \alpha R_i^+ - \beta R_i^-`, the positive and negative
  contributions redistributed separately (:math:`\alpha - \beta = 1` conserves).

At the input (pixels, not ReLU activations), ``input_rule``:

- ``"zb"``: the :math:`z^B` rule for pixels bounded by :math:`[l, h]` (the value range):
  :math:`z_{ij} = x_i w_{ij} - l\, w_{ij}^+ - h\, w_{ij}^-`;
- ``"flat"``: every input in the receptive field gets an equal share;
- ``None``: the same rule as the hidden layers.

Pooling and global average pooling pass relevance on in proportion to their inputs (LRP-0 on
the pooling as a linear map; max pooling gives it all to the maximum), ReLU and Flatten pass it
on unchanged. The rule is computed with the "gradient trick" of Montavon et al.:
:math:`s = R / z`, :math:`c = \partial (\sum_j z_j s_j) / \partial a`, :math:`R = a \odot c`,
with :math:`s` held constant.

The course covers chains of Conv2D and Dense layers (linear or ReLU activations), ReLU,
MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten and Dropout: the course CNN.
Other layers (batch norm, skip connections, depthwise convolutions) raise a CourseError.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .errors import CourseError
from .gradients import UNIT_RANGE, _check_choice, _is_relu, _is_relu_layer, prepare, resolve_targets

RULES = ("epsilon", "gamma", "zplus", "alphabeta")
INPUT_RULES = ("zb", "flat", None)
LINEAR = (keras.layers.Conv2D, keras.layers.Dense)
POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
           keras.layers.GlobalAveragePooling2D)
PASS_ON = (keras.layers.Flatten, keras.layers.Dropout)


def _is_softmax(layer) -> bool:
    return isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, keras.layers.Activation)
        and getattr(layer.activation, "__name__", "") == "softmax")


def lrp_layers(model) -> list:
    """The model's layers from input to logits, checked: a plain chain of layers LRP covers.

    Raises:
        CourseError: a layer LRP does not cover here, or a branch (a skip connection).
    """
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if layers and _is_softmax(layers[-1]):
        layers = layers[:-1]
    for previous, layer in zip([None, *layers], layers, strict=False):
        activation = getattr(layer, "activation", None)
        ok = (isinstance(layer, POOLING + PASS_ON) or _is_relu_layer(layer)
              or (isinstance(layer, LINEAR)
                  and not isinstance(layer, keras.layers.DepthwiseConv2D)
                  and (_is_relu(activation)
                       or getattr(activation, "__name__", "") == "linear")))
        if not ok:
            raise CourseError(
                f"LRP here covers Conv2D and Dense layers (linear or ReLU), ReLU, max/average "
                f"pooling, global average pooling, Flatten and Dropout; layer {layer.name!r} is a "
                f"{type(layer).__name__}. Use integrated gradients (cu.attribution) for this "
                "model.")
        if previous is not None and not isinstance(model, keras.Sequential):
            inputs = layer._inbound_nodes[0].input_tensors      # its call in the model itself
            if len(inputs) != 1 or inputs[0]._keras_history[0] is not previous:
                raise CourseError(f"LRP here needs a plain chain of layers; {layer.name!r} does "
                                  "not take the previous layer's output (a skip connection?).")
    return layers


def _rho(rule: str, gamma: float):
    if rule == "gamma":
        return lambda w: w + gamma * tf.nn.relu(w)
    if rule == "zplus":
        return tf.nn.relu
    return lambda w: w


def _linear(layer, a, kernel=None, bias: bool = True):
    """The linear part of ``layer`` on ``a``, with another kernel (and without bias if asked)."""
    if isinstance(layer, keras.layers.Dense):
        z = tf.matmul(a, layer.kernel if kernel is None else kernel)
    else:
        z = layer.convolution_op(a, layer.kernel if kernel is None else kernel)
    return z + layer.bias if bias and layer.use_bias else z


def _divide(r, z, epsilon: float):
    """s = R / (z + eps sign(z)), and 0 where z = 0."""
    z = z + epsilon * tf.sign(z)
    return tf.math.divide_no_nan(r, tf.where(z == 0, tf.ones_like(z), z)) * tf.cast(z != 0, r.dtype)


def _redistribute(forward, a, r, epsilon: float):
    """The gradient trick: R_in = a * d(sum z * stop(R / z)) / da, with z = forward(a)."""
    with tf.GradientTape() as tape:
        tape.watch(a)
        z = forward(a)
    s = tf.stop_gradient(_divide(r, z, epsilon))
    return a * tape.gradient(z, a, output_gradients=s)


def _hidden_rule(layer, a, r, rule, epsilon, gamma, alpha, beta):
    if rule == "alphabeta":
        positive = _redistribute(lambda v: _linear(layer, v, tf.nn.relu(layer.kernel), False),
                                 a, r, 1e-9)
        negative = _redistribute(lambda v: _linear(layer, v, -tf.nn.relu(-layer.kernel), False),
                                 a, r, 1e-9)
        return alpha * positive - beta * negative
    rho = _rho(rule, gamma)
    use_bias = rule != "zplus"

    def forward(v):
        z = _linear(layer, v, rho(layer.kernel), bias=False)
        if use_bias and layer.use_bias:
            z = z + rho(layer.bias)
        return z

    return _redistribute(forward, a, r, epsilon if rule == "epsilon" else 1e-9)


def _input_rule(layer, x, r, input_rule, value_range):
    if input_rule == "flat":
        ones = tf.ones_like(x)
        flat = tf.ones_like(layer.kernel)
        return _redistribute(lambda v: _linear(layer, v, flat, False), ones, r, 0.0)
    lo, hi = value_range if value_range is not None else UNIT_RANGE
    low, high = tf.fill(tf.shape(x), float(lo)), tf.fill(tf.shape(x), float(hi))
    plus, minus = tf.nn.relu(layer.kernel), -tf.nn.relu(-layer.kernel)
    with tf.GradientTape() as tape:
        tape.watch([x, low, high])
        z = (_linear(layer, x, None, False) - _linear(layer, low, plus, False)
             - _linear(layer, high, minus, False))
    s = tf.stop_gradient(_divide(r, z, 1e-9))
    gx, gl, gh = tape.gradient(z, [x, low, high], output_gradients=s)
    return x * gx + low * gl + high * gh


def relevances(model, images, target=None, *, rule: str = "epsilon", epsilon: float = 0.25,
               gamma: float = 0.25, alpha: float = 1.0, beta: float = 0.0,
               input_rule: str | None = "zb", value_range=UNIT_RANGE) -> list:
    """The relevance at every layer's input, from the output back to the pixels.

    Args: as :func:`lrp`.

    Returns:
        A list of (layer name, relevance at that layer's input, float32 (N, ...)), output first;
        the last entry is the pixels' relevance (N, H, W, C). The relevance given to the logits
        layer is its logit S_c (one-hot).
    """
    _check_choice("rule", rule, RULES)
    _check_choice("input_rule", input_rule, INPUT_RULES)
    if rule == "alphabeta" and not (alpha >= 1 and beta >= 0 and abs(alpha - beta - 1) < 1e-6):
        raise CourseError(f"alpha-beta needs alpha - beta = 1 with beta >= 0 (e.g. alpha=2, "
                          f"beta=1); got alpha={alpha}, beta={beta}.")
    if epsilon < 0 or gamma < 0:
        raise CourseError("epsilon and gamma must be >= 0.")
    layers = lrp_layers(model)
    x, t = prepare(model, images, target, value_range)
    t = resolve_targets(model, x, t)
    activations = [tf.constant(x)]                        # the input of each layer
    for layer in layers[:-1]:
        activations.append(layer(activations[-1], training=False))
    top = layers[-1]
    if not isinstance(top, keras.layers.Dense) or _is_relu(getattr(top, "activation", None)):
        raise CourseError(f"LRP starts from the logits: the last layer before the softmax must be "
                          f"a Dense layer without activation; {top.name!r} is not.")
    r = tf.one_hot(t, top.units) * _linear(top, activations[-1])       # R = S_c at the output
    out = []
    first = next(i for i, layer in enumerate(layers) if isinstance(layer, LINEAR))
    for i in range(len(layers) - 1, -1, -1):
        layer, a = layers[i], activations[i]
        if isinstance(layer, LINEAR) and i == first and input_rule is not None:
            r = _input_rule(layer, a, r, input_rule, value_range)
        elif isinstance(layer, LINEAR):
            r = _hidden_rule(layer, a, r, rule, epsilon, gamma, alpha, beta)
        elif isinstance(layer, POOLING):
            r = _redistribute(lambda v, layer=layer: layer(v), a, r, 1e-9)
        elif isinstance(layer, keras.layers.Flatten):
            r = tf.reshape(r, tf.shape(a))
        out.append((layer.name, r.numpy().astype(np.float32)))     # ReLU, Dropout: unchanged
    return out


def lrp(model, images, target=None, *, rule: str = "epsilon", epsilon: float = 0.25,
        gamma: float = 0.25, alpha: float = 1.0, beta: float = 0.0,
        input_rule: str | None = "zb", value_range=UNIT_RANGE) -> np.ndarray:
    """Layer-wise relevance propagation of the class logit to the pixels (Bach et al. 2015).

    Args:
        model: a Keras classifier made of the layers listed in the module's docstring (the
            course CNN).
        images: float32 (N, H, W, C) or one image (H, W, C), in ``value_range``.
        target: None (the predicted class), one class index, or one per image.
        rule: the rule of the hidden layers: ``"epsilon"``, ``"gamma"``, ``"zplus"`` or
            ``"alphabeta"`` (Montavon et al. 2019; see the module's docstring).
        epsilon: the stabiliser of the epsilon rule, in units of the pre-activations (0: LRP-0).
        gamma: the gamma rule's boost of positive weights.
        alpha, beta: the alpha-beta rule's weights of positive and negative contributions.
        input_rule: the rule at the first layer: ``"zb"`` (pixels bounded by ``value_range``),
            ``"flat"``, or None (the hidden layers' rule).
        value_range: the pixels' range (the z^B bounds), checked on the images.

    Returns:
        float32 (N, H, W): the relevance of each pixel, summed over its channels (one map per
        image).
    """
    return relevances(model, images, target, rule=rule, epsilon=epsilon, gamma=gamma,
                      alpha=alpha, beta=beta, input_rule=input_rule,
                      value_range=value_range)[-1][1].sum(axis=-1)
