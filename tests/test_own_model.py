"""A student's own Keras classifier: every method gives the right result or a CourseError with a
sentence they can act on (issue 16). The models here are tiny; tests/test_zoo.py runs the methods
on keras.applications architectures."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import course_utils as cu
from course_utils import cam, features, gradients, models

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


# --- 3. the default Grad-CAM layer: the maps that reach the classifier --------------------------

def test_the_default_layer_is_after_the_residual_add_and_the_concatenation():
    inputs = keras.Input((SIDE, SIDE, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    branch = layers.Conv2D(8, 1, name="branch")(x)
    added = layers.ReLU(name="after_add")(layers.Add()([x, branch]))
    sep = layers.SeparableConv2D(8, 3, padding="same", name="sep")(added)
    joined = layers.Concatenate(name="joined")([sep, layers.Conv2D(4, 1, name="side")(added)])
    model = _head(inputs, joined)
    assert cam.default_cam_layer(model) == "joined" == cam.cam_head(model)[0]
    assert "sep" in models.conv_layer_names(model)          # a separable conv is a conv
    want = cam.cam(model, X, 1, upsample=False)
    got = cam.grad_cam(model, X, 1, relu=False, upsample=False) * SIDE * SIDE
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    residual = _head(inputs, added)
    assert cam.default_cam_layer(residual) == "after_add"


# --- 4. class model visualization with an exactly-zero gradient ----------------------------------

def test_a_zero_gradient_at_the_grey_start_is_said_not_returned():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIDE, SIDE, 3))
    x = layers.Rescaling(2.0, offset=-1.0)(inputs)          # grey 0.5 -> 0
    x = layers.Conv2D(8, 3, padding="same", activation="relu", use_bias=False)(x)
    model = _head(inputs, x)
    with pytest.raises(cu.CourseError, match="exactly zero.*noise=0.1"):
        features.class_model(model, [0], steps=3)
    moved = features.class_model(model, [0], steps=3, noise=0.1)
    assert moved.shape == (1, SIDE, SIDE, 3) and np.isfinite(moved).all()


# --- 5. a failed download -----------------------------------------------------------------------

def test_a_download_that_fails_after_the_check_is_a_course_error(monkeypatch):
    def fails(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- "
                        "[Errno 111] Connection refused")
    monkeypatch.setattr(models, "_require_download", lambda files, timeout: None)
    monkeypatch.setattr(keras.applications, "MobileNetV2", fails)
    with pytest.raises(cu.CourseError, match="download did not go through.*efficientnet_lite0"):
        cu.load_imagenet_model("mobilenet_v2")


# --- models the methods cannot take apart: a CourseError that says what to do -------------------

def _small():
    inputs, z = _trunk()
    return keras.Model(inputs, layers.Softmax()(z))


class Net(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv, self.gap, self.dense = (layers.Conv2D(4, 3), layers.GlobalAveragePooling2D(),
                                           layers.Dense(3))

    def call(self, x):
        return self.dense(self.gap(self.conv(x)))


EVERY_METHOD = {
    "logits_model": lambda m: cu.logits_model(m),
    "saliency": lambda m: gradients.saliency(m, X),
    "SmoothGrad": lambda m: gradients.smoothgrad(m, X, n_samples=2),
    "guided backprop": lambda m: gradients.guided_backprop(m, X),
    "CAM": lambda m: cam.cam(m, X),
    "Grad-CAM": lambda m: cam.grad_cam(m, X),
    "occlusion": lambda m: cu.occlusion.occlusion(m, X, patch=8, stride=8),
    "RISE": lambda m: cu.perturbation.rise(m, X, n_masks=4),
    "LIME": lambda m: cu.perturbation.lime(m, X[:1], n_samples=10),
    "class model": lambda m: features.class_model(m, [0], steps=1),
    "channel visualization": lambda m: features.channel_visualization(m, "c1", 0, steps=1),
    "dataset search": lambda m: features.dataset_search(m, X, "c1", 0, k=1),
    "deep dream": lambda m: cu.dream.deep_dream(m, X[0], "c1", octaves=1, steps_per_octave=1),
    "deletion curve": lambda m: cu.metrics.deletion_curve(m, X, X[..., 0], n_steps=2),
}


def _two_outputs():
    inputs, z = _trunk()
    return keras.Model(inputs, [z, layers.Softmax()(z)])


def _unbuilt():
    return keras.Sequential([layers.Conv2D(4, 3), layers.GlobalAveragePooling2D(),
                             layers.Dense(3)])


BAD_MODELS = {
    "subclassed": (Net, "subclassed keras.Model.*functional API"),
    "unbuilt Sequential": (_unbuilt, "not built yet.*keras.Input"),
    "two outputs": (_two_outputs, "one output.*outputs\\[0\\]"),
    "None": (lambda: None, "must be a Keras model"),
    "a string": (lambda: "shapes_cnn", "must be a Keras model.*load_course_model"),
}


@pytest.mark.parametrize("bad", BAD_MODELS)
@pytest.mark.parametrize("method", EVERY_METHOD)
def test_a_model_the_methods_cannot_take_apart_is_a_course_error(bad, method):
    build, words = BAD_MODELS[bad]
    with pytest.raises(cu.CourseError, match=words):
        EVERY_METHOD[method](build())


@pytest.mark.parametrize("method", ["class model", "channel visualization", "dataset search"])
def test_a_model_of_any_input_size_is_told_to_fix_one(method):
    inputs = keras.Input((None, None, 3))
    x = layers.Conv2D(4, 3, name="c1")(inputs)
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(cu.CourseError, match="any size.*keras.Input\\(\\(64, 64, 3\\)\\)"):
        EVERY_METHOD[method](model)


def test_cam_under_mixed_precision_gives_float32_maps():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _small()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for method in (cam.cam, cam.grad_cam):
        maps = method(model, X)
        assert maps.dtype == np.float32 and maps.shape == (2, SIDE, SIDE)
        assert np.isfinite(maps).all()


def test_the_input_layer_is_not_a_grad_cam_layer():
    model = _small()
    with pytest.raises(cu.CourseError, match="'image'|model's input"):
        cam.grad_cam(model, X, layer=model.layers[0].name)


# --- bad arguments ------------------------------------------------------------------------------

BATCHED = {
    "saliency": lambda m, b: gradients.saliency(m, X, batch_size=b),
    "SmoothGrad": lambda m, b: gradients.smoothgrad(m, X, n_samples=2, batch_size=b),
    "CAM": lambda m, b: cam.cam(m, X, batch_size=b),
    "occlusion": lambda m, b: cu.occlusion.occlusion(m, X, patch=8, stride=8, batch_size=b),
    "RISE": lambda m, b: cu.perturbation.rise(m, X, n_masks=4, batch_size=b),
    "LIME": lambda m, b: cu.perturbation.lime(m, X[:1], n_samples=10, batch_size=b),
    "dataset search": lambda m, b: features.dataset_search(m, X, "c1", 0, k=1, batch_size=b),
    "deletion curve": lambda m, b: cu.metrics.deletion_curve(m, X, X[..., 0], batch_size=b),
    "predict_logits": lambda m, b: models.predict_logits(m, X, batch_size=b),
}


@pytest.mark.parametrize("batch_size", [0, -2, 1.5, "64"])
@pytest.mark.parametrize("method", BATCHED)
def test_a_bad_batch_size_is_a_course_error(method, batch_size):
    with pytest.raises(cu.CourseError, match="batch_size must be a whole number"):
        BATCHED[method](_small(), batch_size)


FILLS = {
    "occlusion fill": lambda m, v: cu.occlusion.occlusion(m, X, patch=8, stride=8, fill=v),
    "RISE fill": lambda m, v: cu.perturbation.rise(m, X, n_masks=4, fill=v),
    "deletion baseline": lambda m, v: cu.metrics.deletion_curve(m, X, X[..., 0], baseline=v),
    "insertion start": lambda m, v: cu.metrics.insertion_curve(m, X, X[..., 0], start=v),
    "LIME hide_color": lambda m, v: cu.perturbation.lime(m, X[:1], n_samples=10, hide_color=v),
}


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", FILLS)
def test_a_nan_or_infinite_fill_is_a_course_error(where, value):
    with pytest.raises(cu.CourseError, match="finite number"):
        FILLS[where](_small(), value)


def test_other_bad_arguments_are_course_errors():
    model = _small()
    with pytest.raises(cu.CourseError, match="layers must be a layer's name"):
        cu.dream.deep_dream(model, X[0], 3)
    for value_range in ("imagenet", (1, 0), (0, np.nan), 5):
        with pytest.raises(cu.CourseError, match="value_range must be \\(low, high\\)"):
            gradients.saliency(model, X, value_range=value_range)
        with pytest.raises(cu.CourseError, match="value_range must be \\(low, high\\)"):
            cu.ascent.Settings(value_range=value_range)


@pytest.mark.parametrize(("channels", "fix"), [(1, "np.repeat"), (4, "alpha"),
                                               (2, "takes 3 channel")])
def test_a_wrong_channel_count_is_not_told_to_resize(channels, fix):
    x = np.full((1, SIDE, SIDE, channels), 0.5, np.float32)
    with pytest.raises(cu.CourseError, match=f"expects 16×16×3.*are 16×16×{channels}.*{fix}") as e:
        gradients.saliency(_small(), x)
    assert "Resize" not in str(e.value)


@pytest.mark.parametrize("layer", ["logits", "probs", "gap"])
def test_a_deconvnet_projection_from_the_head_names_the_layer(cnn, layer):
    with pytest.raises(cu.CourseError,
                       match=f"{layer!r} is a .*The deconvnet can project from: conv1, pool1"):
        cu.deconvnet.project(cnn, cu.make_shapes(1).images, layer, 0)


# --- loaders ------------------------------------------------------------------------------------

@pytest.fixture
def data_copy(tmp_path):
    import shutil
    for f in models.DATA_DIR.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


@pytest.mark.parametrize("text", ["not json {", "[1, 2]", '{"model": {}}', '{"models": 3}'])
def test_a_damaged_manifest_is_a_course_error(data_copy, text):
    (data_copy / "manifest.json").write_text(text)
    with pytest.raises(cu.CourseError, match="manifest.*damaged.*git checkout"):
        cu.load_course_model("shapes_cnn", data_dir=data_copy)


def test_a_truncated_weights_file_with_a_matching_checksum_says_damaged(data_copy):
    import json
    path = data_copy / "shapes_cnn.keras"
    path.write_bytes(path.read_bytes()[:1000])
    manifest = json.loads((data_copy / "manifest.json").read_text())
    manifest["models"]["shapes_cnn"]["sha256"] = models.file_sha256(path)
    (data_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(cu.CourseError, match="damaged.*truncated") as e:
        cu.load_course_model("shapes_cnn", data_dir=data_copy)
    assert "not found" not in str(e.value).lower()


@pytest.mark.parametrize("size", [0, -3, (64, 0), 2.5, "64"])
def test_a_bad_image_folder_size_is_a_course_error(tmp_path, size):
    with pytest.raises(cu.CourseError, match="size must be a positive int"):
        cu.data.load_image_folder(tmp_path, size=size)


def test_a_grey_png_with_alpha_loads_with_to_rgb(tmp_path):
    import skimage.io
    (tmp_path / "a").mkdir()
    grey_alpha = np.dstack([np.full((8, 10), 100, np.uint8), np.full((8, 10), 255, np.uint8)])
    skimage.io.imsave(tmp_path / "a" / "g.png", grey_alpha, check_contrast=False)
    folder = cu.data.load_image_folder(tmp_path, to_rgb=True)
    assert folder.images.shape == (1, 8, 10, 3)
    np.testing.assert_allclose(folder.images[0], 100 / 255, atol=1e-6)
