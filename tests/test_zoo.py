"""The model zoo: every method on small keras.applications architectures (weights=None), each in
the three forms students bring (issue 16):

- "flat": the application itself, with its own top (``include_top=True``, 3 classes);
- "sequential": the base inside a Sequential with GAP -> Dense -> Softmax;
- "wrapper": a functional model Rescaling -> base -> GAP -> Dropout -> Dense(softmax).

Each method must give a finite map (N, H, W) (images for the visualizations) or a CourseError;
the model must be unchanged afterwards; the gradient maps must equal a hand-written GradientTape
gradient of the pre-softmax score; Grad-CAM at CAM's layer must equal CAM wherever CAM applies,
and that layer must be Grad-CAM's default, except on VGG16, whose base ends with a max pooling:
there the default is the finer maps it pools (block5_conv3), as in the Grad-CAM paper.
``make test`` runs the fast subset below; ``make test-zoo`` (pytest --zoo) all of it.
"""

import functools
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import course_utils as cu
from course_utils import cam, dream, features, gradients, metrics, occlusion, perturbation

# name: (constructor, side, extra arguments): the smallest input each allows, about 64 px.
ARCHITECTURES = {
    "MobileNetV2": (keras.applications.MobileNetV2, 64, {"alpha": 0.35}),
    "ResNet50": (keras.applications.ResNet50, 64, {}),
    "EfficientNetB0": (keras.applications.EfficientNetB0, 64, {}),
    "Xception": (keras.applications.Xception, 71, {}),
    "DenseNet121": (keras.applications.DenseNet121, 64, {}),
    "VGG16": (keras.applications.VGG16, 64, {}),
    "ConvNeXtTiny": (keras.applications.ConvNeXtTiny, 64, {}),
}
# In the default `make test`: MobileNetV2 in its three forms for the gradient and CAM checks, and
# every method on its functional-wrapper form; the rest only with --zoo (make test-zoo).
FAST = ("MobileNetV2",)
FAST_EVERY_METHOD = (("MobileNetV2", "wrapper"),)
FORMS = ("flat", "sequential", "wrapper")
CLASSES = 3


@functools.cache
def zoo_model(arch: str, form: str):
    """The architecture in one form, and the Dense layer that makes its logits."""
    build, side, extra = ARCHITECTURES[arch]
    keras.utils.set_random_seed(0)
    if form == "flat":
        model = build(weights=None, input_shape=(side, side, 3), classes=CLASSES, **extra)
        return model, model.layers[-1]
    base = build(weights=None, include_top=False, input_shape=(side, side, 3), **extra)
    dense = keras.layers.Dense(CLASSES, activation=None if form == "sequential" else "softmax")
    if form == "sequential":
        return keras.Sequential([keras.Input((side, side, 3)), base,
                                 keras.layers.GlobalAveragePooling2D(), dense,
                                 keras.layers.Softmax()]), dense
    inputs = keras.Input((side, side, 3))
    x = base(keras.layers.Rescaling(2.0, offset=-1.0)(inputs))
    x = keras.layers.Dropout(0.2)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, dense(x)), dense


def images(model, n: int = 2) -> np.ndarray:
    side = model.input_shape[1]
    return np.random.default_rng(1).uniform(0, 1, (n, side, side, 3)).astype(np.float32)


def hand_written_logit_gradient(model, dense, x, target: int) -> np.ndarray:
    """d(pre-softmax score)/dx by GradientTape: the features before the last Dense, times its
    kernel, plus its bias."""
    features_ = keras.Model(model.inputs[0], dense.input)
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = features_(x, training=False) @ dense.kernel + dense.bias
        score = logits[:, target]
    return tape.gradient(score, x).numpy()


def _a_conv_layer(model) -> str:
    return cu.models.conv_layer_names(model)[-1]


def _deep_dream(model, x):
    return dream.deep_dream(model, x[0], cam.default_cam_layer(model), octaves=1,
                            steps_per_octave=2)[None]


METHODS = {
    "saliency": lambda m, x: gradients.saliency(m, x, 1),
    "SmoothGrad": lambda m, x: gradients.smoothgrad(m, x, 1, n_samples=2),
    "guided backprop": lambda m, x: gradients.guided_backprop(m, x, 1),
    "deconvnet": lambda m, x: gradients.deconvnet(m, x, 1),
    "CAM": lambda m, x: cam.cam(m, x, 1),
    "Grad-CAM": lambda m, x: cam.grad_cam(m, x, 1),
    "HiResCAM": lambda m, x: cam.hires_cam(m, x, 1),
    "guided Grad-CAM": lambda m, x: cam.guided_grad_cam(m, x, 1),
    "occlusion": lambda m, x: occlusion.occlusion(m, x, 1, patch=32, stride=32),
    "RISE": lambda m, x: perturbation.rise(m, x, 1, n_masks=8),
    "LIME": lambda m, x: perturbation.lime(m, x[:1], 1, n_samples=10),
    "deletion curve": lambda m, x: metrics.deletion_curve(
        m, x, gradients.saliency(m, x, 1), 1, n_steps=2).probabilities,
    "class model": lambda m, x: features.class_model(m, [1], steps=2),
    "channel visualization": lambda m, x: features.channel_visualization(
        m, _a_conv_layer(m), [0], steps=2),
    "dataset search": lambda m, x: features.dataset_search(m, x, _a_conv_layer(m), 0, k=1).boxes,
    "deep dream": _deep_dream,
    "deconvnet projection": lambda m, x: cu.deconvnet.project(m, x[:1], _a_conv_layer(m), 0),
}


def _weights(model) -> list[np.ndarray]:
    return [w.numpy().copy() for w in model.weights]


def _params(fast=lambda arch, form: arch in FAST):
    return [pytest.param(a, f, marks=() if fast(a, f) else pytest.mark.zoo, id=f"{a}-{f}")
            for a in ARCHITECTURES for f in FORMS]


@pytest.mark.parametrize(("arch", "form"), _params(lambda a, f: (a, f) in FAST_EVERY_METHOD))
def test_every_method_is_right_or_a_clear_error(arch, form):
    model, dense = zoo_model(arch, form)
    x = images(model)
    before, out_before = _weights(model), model(x, training=False).numpy()
    table = {}
    for name, method in METHODS.items():
        start = time.perf_counter()
        try:
            result = np.asarray(method(model, x))
        except cu.CourseError as e:
            print(f"  {name}: {time.perf_counter() - start:.1f} s (error)")
            assert str(e)[-1] in ".)" and len(str(e)) > 40, str(e)    # a sentence, not a trace
            table[name] = f"clear error: {str(e)[:70]}"
            continue
        assert np.isfinite(result).all(), name
        if name not in ("class model", "channel visualization", "dataset search", "deep dream",
                        "deletion curve", "deconvnet projection"):
            assert result.shape == x.shape[:3] or result.shape == (1, *x.shape[1:3]), name
        table[name] = "right"
        print(f"  {name}: {time.perf_counter() - start:.1f} s")
    print(f"\nZOO {arch} {form}: " + "; ".join(f"{k}: {v}" for k, v in table.items()))
    for got, want in zip(_weights(model), before, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(model(x, training=False).numpy(), out_before)
    # every form has a ReLU-free or ReLU network; these two must never be refused:
    assert table["saliency"] == table["Grad-CAM"] == "right"


@pytest.mark.parametrize(("arch", "form"), _params())
def test_the_gradient_is_the_hand_written_logit_gradient(arch, form):
    model, dense = zoo_model(arch, form)
    x = images(model)
    want = hand_written_logit_gradient(model, dense, x, 1)
    got = gradients.saliency(model, x, 1, reduce="none")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    logits = cu.models.predict_logits(model, x)
    features_ = keras.Model(model.inputs[0], dense.input)(x, training=False)
    np.testing.assert_allclose(logits, features_ @ dense.kernel + dense.bias, atol=1e-4)


@pytest.mark.parametrize(("arch", "form"), _params())
def test_grad_cam_at_its_default_layer_is_cam(arch, form):
    model, _ = zoo_model(arch, form)
    x = images(model)
    try:
        cam_layer, _ = cam.cam_head(model)
    except cu.CourseError:
        assert arch in ("VGG16", "ConvNeXtTiny") and form == "flat"   # Flatten or LayerNorm head
        return
    if arch == "VGG16":   # a max pooling before the head: the default is the finer maps it pools
        assert (cam.default_cam_layer(model), cam_layer) == ("block5_conv3", "block5_pool")
    else:
        assert cam.default_cam_layer(model) == cam_layer
    want = cam.cam(model, x, 1, upsample=False)
    got = cam.grad_cam(model, x, 1, layer=cam_layer, relu=False, upsample=False)
    positions = want.shape[1] * want.shape[2]
    np.testing.assert_allclose(got * positions, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
