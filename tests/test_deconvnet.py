"""The deconvnet projection (course_utils.deconvnet): the two routes to the same answer agree."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import course_utils as cu
from course_utils import deconvnet as dn
from course_utils.gradients import backprop_model


@pytest.fixture(scope="module")
def images():
    return cu.make_shapes(3, seed=100).images


@pytest.fixture(scope="module")
def random_model():
    """A small random chain with a stride-2 'valid' convolution and a linear one."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="p1")(x)
    x = keras.layers.Conv2D(5, 3, strides=2, padding="valid", activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(6, 2, padding="same", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def reference_gradient(model, x, layer, channels, positions, rule):
    """d unit / d pixels by autodiff, the units picked with a one-hot mask (written here anew)."""
    view = backprop_model(model, rule, layer_names=[layer])
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        acts = view(x, training=False)[0]
        mask = np.zeros(acts.shape, np.float32)
        mask[np.arange(len(x)), positions[:, 0], positions[:, 1], channels] = 1.0
        unit = tf.reduce_sum(acts * mask)
    return tape.gradient(unit, x).numpy()


def assert_close(got, want):
    scale = np.abs(want).max()
    assert scale > 0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("rule", ["deconvnet", "guided", "vanilla"])
@pytest.mark.parametrize("layer", ["conv2", "pool2", "conv4"])
def test_projection_equals_gradient_with_the_same_rule(course_model, images, layer, rule):
    units = dn.strongest_units(course_model, images, layer)
    positions = np.stack([units.row, units.col], axis=1)
    got = dn.project(course_model, images, layer, units.channel, position=positions, rule=rule,
                     signal=1.0)
    assert got.shape == images.shape
    assert_close(got, reference_gradient(course_model, images, layer, units.channel, positions,
                                         rule))


def test_projection_from_the_activation_is_activation_times_gradient(course_model, images):
    units = dn.strongest_units(course_model, images, "conv3")
    got = dn.project(course_model, images, "conv3", units.channel)       # the paper's signal
    grad = dn.unit_gradient(course_model, images, "conv3", units.channel)
    assert_close(got, units.value[:, None, None, None] * grad)


@pytest.mark.parametrize("rule", ["deconvnet", "guided", "vanilla"])
@pytest.mark.parametrize("layer", ["c2", "c3"])
def test_random_model(random_model, layer, rule):
    x = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype(np.float32)
    units = dn.strongest_units(random_model, x, layer)      # active, so every rule passes it
    positions = np.stack([units.row, units.col], axis=1)
    got = dn.project(random_model, x, layer, units.channel, position=positions, rule=rule,
                     signal=1.0)
    assert_close(got, reference_gradient(random_model, x, layer, units.channel, positions, rule))


def test_sequential_model():
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((12, 12, 3)),
                              keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
                              keras.layers.MaxPooling2D(2),
                              keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    name = model.layers[2].name
    x = np.random.default_rng(1).uniform(size=(2, 12, 12, 3)).astype(np.float32)
    units = dn.strongest_units(model, x, name)
    positions = np.stack([units.row, units.col], axis=1)
    got = dn.project(model, x, name, units.channel, position=positions, signal=1.0)
    assert_close(got, reference_gradient(model, x, name, units.channel, positions, "deconvnet"))
    assert dn.receptive_field(model, name, 3, 3) == (3, 3, 11, 11)     # 3 + 1 + 2*2 = 8 pixels


def test_vanilla_rule_is_the_plain_gradient(course_model, images):
    view = cu.feature_model(course_model, ["conv3"])
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        unit = tf.reduce_sum(view(x, training=False)[0][:, 5, 8, 40])
    plain = tape.gradient(unit, x).numpy()
    got = dn.project(course_model, images, "conv3", 40, position=(5, 8), rule="vanilla",
                     signal=1.0)
    assert_close(got, plain)


def test_the_rules_give_different_pictures(course_model, images):
    maps = {rule: dn.project(course_model, images, "conv4", 0, rule=rule, signal=1.0)
            for rule in dn.RULES}
    assert not np.allclose(maps["deconvnet"], maps["guided"])
    assert not np.allclose(maps["guided"], maps["vanilla"])


def test_unpooling_uses_the_forward_switches(course_model, images):
    """A unit of pool1 goes back to its window's argmax in conv1, then spreads conv1's kernel."""
    channel, (i, j) = 5, (10, 12)
    conv1 = cu.feature_model(course_model, ["conv1"])(images, training=False)[0].numpy()
    kernel = course_model.get_layer("conv1").kernel.numpy()[:, :, :, channel]     # (3, 3, 3)
    got = dn.project(course_model, images, "pool1", channel, position=(i, j))
    for n in range(len(images)):
        window = conv1[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2, channel]
        r, c = np.unravel_index(window.argmax(), (2, 2))
        r, c = 2 * i + r, 2 * j + c
        want = np.zeros(images.shape[1:], np.float32)
        want[r - 1:r + 2, c - 1:c + 2] = window.max() * kernel     # "same" padding: offset -1
        assert_close(got[n], want)


def test_strongest_units_and_receptive_field(course_model, images):
    units = dn.strongest_units(course_model, images, "conv2")
    acts = cu.feature_model(course_model, ["conv2"])(images, training=False)[0].numpy()
    np.testing.assert_allclose(units.value, acts.reshape(len(images), -1).max(axis=1), rtol=1e-6)
    assert dn.receptive_field(course_model, "conv1", 5, 7) == (4, 6, 7, 9)
    assert dn.receptive_field(course_model, "conv4", 3, 3) == (9, 9, 47, 47)   # 38 × 38
    assert dn.receptive_field(course_model, "conv4", 0, 0) == (0, 0, 23, 23)   # clipped
    with pytest.raises(cu.CourseError, match="outside the 8×8 maps"):
        dn.receptive_field(course_model, "conv4", 8, 0)


def test_reduce(course_model, images):
    maps = dn.project(course_model, images, "conv2", 1, reduce="max_abs")
    assert maps.shape == images.shape[:3]


@pytest.mark.parametrize("kwargs, message", [
    ({"layer": "conv9", "channel": 0}, "no layer 'conv9'"),
    ({"layer": "gap", "channel": 0}, "GlobalAveragePooling2D"),
    ({"layer": "image", "channel": 0}, "is the input"),
    ({"layer": "conv2", "channel": 32}, "32 channels"),
    ({"layer": "conv2", "channel": -1}, "32 channels"),
    ({"layer": "conv2", "channel": 1.5}, "one integer"),
    ({"layer": "conv2", "channel": 0, "position": (32, 0)}, "32×32"),
    ({"layer": "conv2", "channel": 0, "rule": "smooth"}, "rule must be"),
    ({"layer": "conv2", "channel": 0, "signal": "one"}, "signal must be"),
])
def test_bad_input(course_model, images, kwargs, message):
    layer, channel = kwargs.pop("layer"), kwargs.pop("channel")
    with pytest.raises(cu.CourseError, match=message):
        dn.project(course_model, images, layer, channel, **kwargs)


def test_bad_images_and_unhandled_layers(course_model):
    with pytest.raises(cu.CourseError):
        dn.project(course_model, np.zeros((1, 32, 32, 3), np.float32), "conv1", 0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, activation="tanh", name="c")(inputs)
    tanh_model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(cu.CourseError, match="tanh"):
        dn.project(tanh_model, np.zeros((1, 8, 8, 3), np.float32), "c", 0)
    x = keras.layers.BatchNormalization(name="bn")(inputs)
    x = keras.layers.Conv2D(2, 3, activation="relu", name="c")(x)
    bn_model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(cu.CourseError, match="BatchNormalization"):
        dn.project(bn_model, np.zeros((1, 8, 8, 3), np.float32), "c", 0)


def test_the_strongest_unit_on_the_object_lies_on_it(course_model):
    model = course_model
    data = cu.make_shapes(3, seed=100)
    anywhere = dn.strongest_units(model, data.images, "conv3")
    on = dn.strongest_units(model, data.images, "conv3", data.masks)
    assert np.all(on.value <= anywhere.value + 1e-6)
    for i in range(3):
        top, left, bottom, right = dn.receptive_field(model, "conv3", on.row[i], on.col[i])
        assert data.masks[i, (top + bottom - 1) // 2, (left + right - 1) // 2]


def test_a_stretched_projection_saturates_only_the_largest_values():
    p = np.zeros((4, 4, 3), np.float32)
    p[0, 0] = 10.0
    p[1:, 1:] = np.linspace(-1, 1, 27).reshape(3, 3, 3)
    plain, stretched = dn.to_rgb(p), dn.to_rgb(p, 90)
    assert plain.max() == 1.0 and np.isclose(plain[3, 3, 2], 0.55)
    assert stretched.min() >= 0 and stretched.max() <= 1 and np.all(stretched[0, 0] == 1.0)
    assert stretched[3, 3, 2] > plain[3, 3, 2] + 0.2        # the weak values show
    assert np.all(dn.to_rgb(np.zeros((2, 2, 3))) == 0.5)


def test_the_unit_figure_clips_the_unit_to_the_layer(course_model):
    model = course_model
    import matplotlib.pyplot as plt
    fig = dn.unit_figure(model, cu.make_shapes(1, seed=100).images[0], "conv4", 999, 99, 99)
    assert "ch 127 at (7, 7)" in fig.axes[0].get_title()
    plt.close(fig)
