"""Integrated gradients, gradient x input, SmoothGrad², VarGrad, Grad-CAM++, Score-CAM and
LayerCAM, with answers known in advance."""

import contextlib
import io

import keras
import numpy as np
import pytest

import course_utils as cu
from course_utils import attribution as at
from course_utils import cam


def _linear_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(3, name="logits")])


def _images(n, shape=(4, 4, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype(np.float32)


# --- integrated gradients and gradient x input ---------------------------------------------------

@pytest.mark.parametrize("baseline", ["black", "grey", "noise"])
def test_ig_of_a_linear_model_is_x_minus_baseline_times_w(baseline):
    model, x = _linear_model(), _images(3)
    w = model.layers[-1].kernel.numpy()[:, 1].reshape(4, 4, 3)
    base = at.make_baseline(x, baseline)
    got = at.integrated_gradients(model, x, 1, baseline=baseline, steps=3, reduce="none")
    np.testing.assert_allclose(got, (x - base) * w, rtol=1e-5, atol=1e-6)


def test_gradient_x_input_of_a_linear_model_is_w_times_x():
    model, x = _linear_model(1), _images(2)
    w = model.layers[-1].kernel.numpy()[:, 2].reshape(4, 4, 3)
    np.testing.assert_allclose(at.gradient_x_input(model, x, 2), (x * w).sum(-1), rtol=1e-5,
                               atol=1e-6)


def test_ig_completeness_error_shrinks_with_the_steps(course_model):
    x = cu.make_shapes(3, seed=7).images
    logits = cu.models.predict_logits(course_model, np.concatenate([x, 0 * x]))
    c = logits[:3].argmax(1)
    gap = logits[np.arange(3), c] - logits[3 + np.arange(3), c]
    errors = []
    for steps in (1, 4, 16, 64):
        total = at.integrated_gradients(course_model, x, c, steps=steps).sum(axis=(1, 2))
        errors.append(np.abs(total - gap).max() / np.abs(gap).max())
    assert errors[-1] < 0.02 and errors[-1] < errors[0] / 5, errors
    assert errors[-1] <= errors[1], errors


def test_ig_accepts_every_baseline_and_an_array(course_model):
    x = cu.make_shapes(2, seed=3).images
    for kind in at.BASELINES:
        assert at.integrated_gradients(course_model, x, steps=2, baseline=kind).shape == (2, 64, 64)
    same = at.integrated_gradients(course_model, x, steps=2, baseline=np.zeros((64, 64, 3)))
    np.testing.assert_allclose(same, at.integrated_gradients(course_model, x, steps=2),
                               rtol=1e-6)
    blurred = at.make_baseline(x, "blurred")
    assert np.abs(blurred.mean(axis=(1, 2)) - x.mean(axis=(1, 2))).max() < 0.05
    with pytest.raises(cu.CourseError, match="baseline"):
        at.integrated_gradients(course_model, x, baseline="white")
    with pytest.raises(cu.CourseError, match="steps"):
        at.integrated_gradients(course_model, x, steps=0)


# --- SmoothGrad² and VarGrad ---------------------------------------------------------------------

def test_smoothgrad_squared_without_noise_is_the_squared_gradient(course_model):
    x = cu.make_shapes(2, seed=5).images
    g = cu.gradients.input_gradients(course_model, x)
    np.testing.assert_allclose(at.smoothgrad_squared(course_model, x, noise=0.0, n_samples=3),
                               (g ** 2).sum(-1), rtol=1e-4, atol=1e-9)
    assert np.abs(at.vargrad(course_model, x, noise=0.0, n_samples=3)).max() < 1e-8


def test_vargrad_with_one_sample_is_zero_and_the_mean_is_smoothgrads(course_model):
    x = cu.make_shapes(2, seed=6).images
    assert np.all(at.vargrad(course_model, x, n_samples=1) == 0)
    grads = at.noisy_gradients(course_model, x, noise=0.2, n_samples=5)
    smooth = cu.gradients.smoothgrad(course_model, x, noise=0.2, n_samples=5, reduce="none")
    np.testing.assert_allclose(grads.mean(0), smooth, rtol=1e-4, atol=1e-6)
    # second moment = variance + mean²
    np.testing.assert_allclose(
        at.smoothgrad_squared(course_model, x, noise=0.2, n_samples=5, reduce="none"),
        at.vargrad(course_model, x, noise=0.2, n_samples=5, reduce="none") + smooth ** 2,
        rtol=1e-3, atol=1e-9)


# --- Grad-CAM++, LayerCAM, Score-CAM: GAP + dense, computed by hand -----------------------------

def _head(model, x, c):
    maps, _ = cu.feature_model(model, "conv4")(x)
    return maps.numpy(), model.get_layer("logits").kernel.numpy()[:, c]


def test_layer_cam_on_gap_dense_is_cam_with_only_positive_weights(course_model):
    x, c = cu.make_shapes(4, seed=8).images, 2
    maps, w = _head(course_model, x, c)
    want = np.maximum((maps * np.maximum(w, 0) / 64).sum(-1), 0)       # dS/dA = w_k / (8 × 8)
    got = at.layer_cam(course_model, x, c, layer="conv4", upsample=False)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_grad_cam_plus_plus_on_gap_dense_by_hand(course_model):
    """g = w_k / Z everywhere, so alpha = 1 / (2 + S_k g) and w_k' = Z ReLU(g) / (2 + S_k g)."""
    x, c = cu.make_shapes(4, seed=9).images, 1
    maps, w = _head(course_model, x, c)
    g, total = w / 64, maps.sum(axis=(1, 2))                            # (K,), (N, K)
    denominator = 2 * g ** 2 + total * g ** 3
    alpha = np.where(denominator != 0, g ** 2 / np.where(denominator != 0, denominator, 1), 0)
    weights = 64 * alpha * np.maximum(g, 0)                             # (N, K)
    want = np.maximum(np.einsum("nhwk,nk->nhw", maps, weights), 0)
    got = at.grad_cam_plus_plus(course_model, x, c, upsample=False)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6 * want.max())


def test_score_cam_matches_a_loop_over_the_channels(course_model):
    x, c = cu.make_shapes(1, seed=10).images, 3
    maps, _ = cu.feature_model(course_model, "conv3")(x)
    maps = maps.numpy()[0]                                              # (16, 16, 64)
    weights = []
    for k in range(maps.shape[-1]):
        up = keras.ops.image.resize(maps[None, ..., k:k + 1], (64, 64)).numpy()[0]
        span = up.max() - up.min()
        mask = (up - up.min()) / span if span > 0 else np.zeros_like(up)
        probs = course_model(x * mask[None], training=False).numpy()
        weights.append(probs[0, c])
    want = np.maximum((maps * np.array(weights)).sum(-1), 0)
    got = at.score_cam(course_model, x, c, layer="conv3", upsample=False, batch_size=20)[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * want.max())


@pytest.mark.parametrize("method", [at.grad_cam_plus_plus, at.layer_cam, at.score_cam])
def test_cam_family_shapes_layers_and_errors(course_model, method):
    x = cu.make_shapes(2, seed=11).images
    assert method(course_model, x).shape == (2, 64, 64)
    assert method(course_model, x, layer="conv2", upsample=False).shape == (2, 32, 32)
    assert method(course_model, x[0]).dtype == np.float32
    with pytest.raises(cu.CourseError, match="conv1"):
        method(course_model, x, layer="gap")


def test_cam_family_on_shapes_beats_chance_as_grad_cam_does(course_model):
    s = cu.make_shapes(24, seed=12)
    share = s.masks.mean()                                 # the energy of a map spread evenly
    for method in (at.grad_cam_plus_plus, at.layer_cam, cam.grad_cam):
        maps = method(course_model, s.images)
        assert cu.metrics.pointing_game(maps, s.masks).mean() > 2 * share, method.__name__
        assert cu.metrics.energy(maps, s.masks).mean() > 1.5 * share, method.__name__


# --- the exercise: the check knows right from wrong ---------------------------------------------

def _right_ig(model, x, baseline, c, steps):
    import tensorflow as tf
    alphas = (np.arange(1, steps + 1) / steps).astype(np.float32)      # right Riemann sum
    path = tf.constant(baseline + alphas[:, None, None, None] * (x - baseline))
    with tf.GradientTape() as tape:
        tape.watch(path)
        score = cu.logits_model(model)(path)[:, c]
    return (x - baseline) * tape.gradient(score, path).numpy().mean(0)


def _verdict(fn, model, image, c):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        at.check_integrated_gradients_exercise(fn, model, image, c)
    return out.getvalue()


def test_the_ig_check_accepts_right_and_names_wrong_answers(course_model):
    image, c = cu.make_shapes(1, seed=13).images[0], 0
    assert _verdict(_right_ig, course_model, image, c).startswith("correct")

    def no_difference(m, x, b, k, s):
        return _right_ig(m, x, b, k, s) / np.where(x - b == 0, 1, x - b)

    def summed(m, x, b, k, s):
        return _right_ig(m, x, b, k, s) * s

    def flipped(m, x, b, k, s):
        return -_right_ig(m, x, b, k, s)

    def grad_input(m, x, b, k, s):
        return _right_ig(m, x, b, k, 1) * 0 + x * cu.gradients.input_gradients(m, x, k)[0]

    cases = {no_difference: "multiply", summed: "divide by m", flipped: "sign",
             grad_input: "gradient x input", lambda *a: None: "None",
             lambda *a: np.zeros((64, 64)): "shape", lambda *a: 1 / 0: "ZeroDivisionError"}
    for fn, hint in cases.items():
        verdict = _verdict(fn, course_model, image, c)
        assert verdict.startswith("not yet") and hint in verdict, (hint, verdict)


def test_the_default_target_is_the_predicted_class(course_model):
    x = cu.make_shapes(3, seed=14).images
    c = cu.models.predict_logits(course_model, x).argmax(1)
    for method in (at.gradient_x_input, at.integrated_gradients, at.smoothgrad_squared,
                   at.grad_cam_plus_plus, at.score_cam):
        np.testing.assert_allclose(method(course_model, x), method(course_model, x, c),
                                   rtol=1e-5, atol=1e-7, err_msg=method.__name__)
