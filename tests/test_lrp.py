"""LRP: conservation layer by layer, and LRP-0 = gradient x input on a ReLU network."""

import keras
import numpy as np
import pytest

import course_utils as cu
from course_utils import attribution, lrp


@pytest.fixture(scope="module")
def batch(course_model):
    x = cu.make_shapes(3, seed=21).images
    logits = cu.models.predict_logits(course_model, x)
    return x, logits.argmax(1), logits.max(1)


def _sums(entries):
    return {name: r.reshape(len(r), -1).sum(1) for name, r in entries}


@pytest.mark.parametrize("settings", [{"rule": "zplus", "input_rule": "zb"},
                                      {"rule": "zplus", "input_rule": "flat"},
                                      {"rule": "alphabeta", "alpha": 2.0, "beta": 1.0}])
def test_conserving_rules_keep_the_logit_at_every_layer(course_model, batch, settings):
    x, c, logit = batch
    sums = _sums(lrp.relevances(course_model, x, c, **settings))
    assert list(sums)[0] == "logits" and list(sums)[-1] == "conv1"
    for name, total in sums.items():
        np.testing.assert_allclose(total, logit, rtol=1e-3, err_msg=name)


def test_lrp0_loses_exactly_what_the_biases_take(course_model, batch):
    """Sum R_in = sum_j R_j (z_j - b_j) / z_j at every Conv/Dense layer; pooling conserves."""
    x, c, logit = batch
    entries = lrp.relevances(course_model, x, c, rule="epsilon", epsilon=0.0, input_rule=None)
    layers = {layer.name: layer for layer in lrp.lrp_layers(course_model)}
    inputs = {}
    a = x
    for layer in lrp.lrp_layers(course_model):
        inputs[layer.name] = a
        a = layer(a).numpy()
    r_out = np.eye(6)[c] * logit[:, None]
    for name, r_in in entries:
        layer = layers[name]
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            z = cu.gradients.pre_activation(layer, inputs[name]).numpy()
            bias_share = np.where(z != 0, r_out * layer.bias.numpy() / np.where(z != 0, z, 1), 0)
            want = (r_out - bias_share).reshape(len(x), -1).sum(1)
        else:
            want = r_out.reshape(len(x), -1).sum(1)
        np.testing.assert_allclose(r_in.reshape(len(x), -1).sum(1), want, rtol=1e-3,
                                   atol=1e-4 * np.abs(logit).max(), err_msg=name)
        r_out = r_in


def test_lrp0_is_gradient_times_input_on_a_relu_network(course_model, batch):
    x, c, _ = batch
    got = lrp.lrp(course_model, x, c, rule="epsilon", epsilon=0.0, input_rule=None)
    want = attribution.gradient_x_input(course_model, x, c)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def test_every_rule_gives_maps_and_the_epsilon_rule_is_smoother(course_model, batch):
    x, c, _ = batch
    for rule in lrp.RULES:
        maps = lrp.lrp(course_model, x, c, rule=rule)
        assert maps.shape == (3, 64, 64) and maps.dtype == np.float32 and np.isfinite(maps).all()
    zero = lrp.lrp(course_model, x, c, epsilon=0.0)
    large = lrp.lrp(course_model, x, c, epsilon=5.0)
    assert np.abs(large).sum() < np.abs(zero).sum()          # epsilon absorbs relevance


def test_layers_lrp_does_not_cover_raise_a_course_error(course_model, batch):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization(), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    with pytest.raises(cu.CourseError, match="BatchNormalization"):
        lrp.lrp(model, np.zeros((8, 8, 3), np.float32))
    inputs = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    y = keras.layers.Add()([inputs, y])
    branchy = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(y)))
    with pytest.raises(cu.CourseError, match="Add"):
        lrp.lrp(branchy, np.zeros((8, 8, 3), np.float32))
    with pytest.raises(cu.CourseError, match="alpha - beta = 1"):
        lrp.lrp(course_model, batch[0], rule="alphabeta", alpha=1.0, beta=1.0)
    with pytest.raises(cu.CourseError, match="rule"):
        lrp.lrp(course_model, batch[0], rule="z")
