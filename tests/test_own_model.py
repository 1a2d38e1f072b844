"""A student's own Keras classifier: every method gives the right result or a CourseError with a
sentence they can act on (issue 16). The models here are tiny; tests/test_zoo.py runs the methods
on keras.applications architectures."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import course_utils as cu
from course_utils import cam, gradients

SIDE = 16
X = np.random.default_rng(0).uniform(0, 1, (2, SIDE, SIDE, 3)).astype(np.float32)


def _trunk(activation="relu"):
    """image -> conv -> conv -> GAP -> Dense(3) (the logits), as (input, logits)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIDE, SIDE, 3))
    x = layers.Conv2D(8, 3, padding="same", activation=activation, name="c1")(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation=activation, name="c2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return inputs, layers.Dense(3, name="scores")(x)


def _logit_gradient(logits_net, x, target):
    """A hand-written GradientTape gradient of the target's pre-softmax score."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = logits_net(x)[:, target]
    return tape.gradient(score, x).numpy()


# --- 1. a softmax written as an operation -------------------------------------------------------

def _softmax_endings():
    inputs, z = _trunk()
    reference = keras.Model(inputs, z)
    yield "keras.ops.softmax", keras.Model(inputs, keras.ops.softmax(z)), reference
    yield "Lambda(tf.nn.softmax)", keras.Model(
        inputs, layers.Lambda(lambda t: tf.nn.softmax(t))(z)), reference
    yield "Activation(tf.nn.softmax)", keras.Model(
        inputs, layers.Activation(tf.nn.softmax)(z)), reference
    dense = keras.Sequential([keras.Input((SIDE, SIDE, 3)), layers.Conv2D(4, 3),
                              layers.GlobalAveragePooling2D(),
                              layers.Dense(3, activation=tf.nn.softmax)])
    yield "Dense(activation=tf.nn.softmax)", dense, keras.Model(
        dense.inputs[0], dense.layers[-1].input @ dense.layers[-1].kernel
        + dense.layers[-1].bias)


def test_a_softmax_written_as_an_operation_is_removed_from_the_logit_view():
    for _, model, reference in _softmax_endings():
        np.testing.assert_allclose(cu.logits_model(model)(X).numpy(), reference(X).numpy(),
                                   atol=1e-5)
        got = gradients.saliency(model, X, 1, reduce="none")
        np.testing.assert_allclose(got, _logit_gradient(reference, X, 1), atol=1e-6)


def test_a_softmax_the_course_cannot_remove_is_refused():
    inputs, z = _trunk()
    tempered = keras.Model(inputs, layers.Lambda(lambda t: keras.ops.softmax(2 * t))(z))
    with pytest.raises(cu.CourseError, match="already a probability.*Softmax"):
        cu.logits_model(tempered)
    with pytest.raises(cu.CourseError, match="already a probability"):
        cam.grad_cam(tempered, X)
    sigmoid = keras.Model(inputs, layers.Activation("sigmoid")(z))
    with pytest.raises(cu.CourseError, match="'sigmoid', not a softmax"):
        cu.logits_model(sigmoid)


# --- 2. guided backprop and deconvnet need ReLUs ------------------------------------------------

def _head(inputs, x):
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3)(x))


def _non_relu_models():
    for activation in ("swish", "gelu", "elu", "tanh"):
        yield activation, _head(*_trunk_maps(activation))
    for layer in (layers.LeakyReLU(0.1), layers.ELU(), layers.PReLU(), layers.ReLU(
            negative_slope=0.1)):
        inputs, x = _trunk_maps(None)
        yield type(layer).__name__, _head(inputs, layer(x))
    inputs, x = _trunk_maps(None)
    yield "keras.ops.relu", _head(inputs, keras.ops.relu(x))
    yield "no activation", _head(*_trunk_maps(None))


def _trunk_maps(activation):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIDE, SIDE, 3))
    return inputs, layers.Conv2D(8, 3, padding="same", activation=activation)(inputs)


@pytest.mark.parametrize("method", [gradients.guided_backprop, gradients.deconvnet,
                                    cam.guided_grad_cam])
def test_the_relu_rules_refuse_a_network_without_relus(method):
    for name, model in _non_relu_models():
        match = ("defined for ReLU networks.*" +
                 ("no ReLU" if name == "no activation" else "") + ".*Use saliency")
        with pytest.raises(cu.CourseError, match=match):
            method(model, X)


def test_a_relu_network_with_sigmoid_gates_keeps_the_relu_rules():
    """A squeeze-and-excitation gate (sigmoid) scales maps; it is not a rectifier."""
    inputs, x = _trunk_maps("relu")
    gate = layers.Dense(8, activation="sigmoid")(layers.GlobalAveragePooling2D()(x))
    model = _head(inputs, x * layers.Reshape((1, 1, 8))(gate))
    guided = gradients.guided_backprop(model, X)
    assert guided.shape == (2, SIDE, SIDE) and np.isfinite(guided).all()
    assert not np.allclose(guided, gradients.saliency(model, X))
