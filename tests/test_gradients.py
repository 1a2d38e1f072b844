"""Gradient saliency, SmoothGrad, guided backprop and deconvnet, with answers known in advance."""

import keras
import numpy as np
import pytest

import course_utils as cu
from course_utils import gradients


def _images(shape, low=0.0, high=1.0, seed=0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


# --- vanilla gradient: a linear model's saliency is its weights ----------------------------------

@pytest.mark.parametrize("activation", [None, "softmax"])
def test_the_gradient_of_a_linear_model_is_the_target_class_weights(activation):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(4, activation=activation)])
    w = model.layers[-1].kernel.numpy()                                    # (192, 4)
    x = _images((5, 8, 8, 3))
    targets = np.array([0, 1, 2, 3, 1])
    grads = gradients.saliency(model, x, targets, reduce="none")
    expected = w[:, targets].T.reshape(5, 8, 8, 3)                         # the logit's weights
    np.testing.assert_allclose(grads, expected, rtol=1e-5, atol=1e-6)
    maps = gradients.saliency(model, x, 2)
    np.testing.assert_allclose(maps, np.abs(w[:, 2]).reshape(8, 8, 3).max(-1)[None].repeat(5, 0),
                               rtol=1e-5, atol=1e-6)


def test_the_softmax_gradient_is_the_saturating_one():
    """dp_c/dx = p_c (w_c - sum_j p_j w_j): small when the model is sure; the logit's is not."""
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    w = model.layers[-1].kernel.numpy()
    x = _images((2, 4, 4, 1))
    p = model(x).numpy()
    got = gradients.saliency(model, x, 1, reduce="none", score="probability").reshape(2, -1)
    expected = p[:, 1:2] * (w[:, 1] - p @ w.T)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_the_channel_reductions(cnn, shapes):
    g = gradients.saliency(cnn, shapes.images, reduce="none")
    assert g.shape == (4, 64, 64, 3) and g.dtype == np.float32
    np.testing.assert_array_equal(gradients.saliency(cnn, shapes.images, reduce="abs"), np.abs(g))
    np.testing.assert_array_equal(gradients.saliency(cnn, shapes.images), np.abs(g).max(-1))
    np.testing.assert_allclose(gradients.saliency(cnn, shapes.images, reduce="sum"), g.sum(-1),
                               rtol=1e-6)


# --- guided backprop and deconvnet: the rules at the ReLUs, checked by hand --------------------

def _relu_then_dense():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Flatten()(keras.layers.ReLU()(inputs))
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_guided_backprop_differs_from_the_gradient_exactly_where_the_gates_disagree():
    """x -> ReLU -> dense: the gradient is [x > 0] w_c; guided keeps only w_c > 0 of it;
    deconvnet is max(w_c, 0) whatever x is."""
    model = _relu_then_dense()
    w = model.layers[-1].kernel.numpy()[:, 1].reshape(4, 4, 3)
    x = _images((2, 4, 4, 3), -1, 1)
    kw = {"reduce": "none", "value_range": None}
    vanilla = gradients.saliency(model, x, 1, **kw)
    guided = gradients.guided_backprop(model, x, 1, **kw)
    deconv = gradients.deconvnet(model, x, 1, **kw)
    np.testing.assert_allclose(vanilla, (x > 0) * w, atol=1e-7)
    np.testing.assert_allclose(guided, (x > 0) * np.maximum(w, 0), atol=1e-7)
    np.testing.assert_allclose(deconv, np.broadcast_to(np.maximum(w, 0), x.shape), atol=1e-7)
    disagree = (x > 0) & (w < 0)               # forward gate open, backward gate closed
    assert disagree.any() and ((x > 0) & (w > 0)).any()
    np.testing.assert_array_equal(guided != vanilla, disagree)


@pytest.mark.parametrize("hidden", ["dense_relu", "relu6_layer", "activation_relu"])
def test_the_rules_through_a_hidden_layer(hidden):
    """x -> dense W1 -> ReLU -> dense W2: the gradient is W1 (gate * g), g = W2[:, c]; guided:
    W1 (gate * max(g, 0)); deconvnet: W1 max(g, 0). For ReLU6 the gate also closes above 6."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((2, 2, 3))
    flat = keras.layers.Flatten()(inputs)
    first = keras.layers.Dense(16, activation="relu" if hidden == "dense_relu" else None,
                               kernel_initializer=keras.initializers.RandomNormal(stddev=4.0))
    h = first(flat)
    if hidden == "relu6_layer":
        h = keras.layers.ReLU(max_value=6.0)(h)
    elif hidden == "activation_relu":
        h = keras.layers.Activation("relu")(h)
    last = keras.layers.Dense(3)
    model = keras.Model(inputs, last(h))
    x = _images((3, 2, 2, 3))
    z = x.reshape(3, -1) @ first.kernel.numpy() + first.bias.numpy()
    gate = (z > 0) & ((z < 6) if hidden == "relu6_layer" else True)
    if hidden == "relu6_layer":
        assert (z > 6).any()                                              # the cap matters here
    w1, g = first.kernel.numpy(), last.kernel.numpy()[:, 2]
    expected = {"vanilla": (gate * g) @ w1.T, "guided": (gate * np.maximum(g, 0)) @ w1.T,
                "deconvnet": np.broadcast_to(np.maximum(g, 0) @ w1.T, (3, 12))}
    for rule, want in expected.items():
        got = gradients.input_gradients(model, x, 2, rule=rule).reshape(3, -1)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=rule)


def test_the_view_with_the_vanilla_rule_reproduces_the_gradient(cnn, shapes):
    """The stand-ins (linear part + ReLU) give the model's own forward pass and gradient."""
    view = gradients._with_rule(cu.logits_model(cnn), "vanilla")
    logits = cu.logits_model(cnn)(shapes.images).numpy()
    np.testing.assert_allclose(view(shapes.images).numpy(), logits, rtol=1e-5, atol=1e-5)
    import tensorflow as tf
    x = tf.constant(shapes.images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.reduce_sum(view(x)[:, 2])
    np.testing.assert_allclose(tape.gradient(score, x).numpy(),
                               gradients.input_gradients(cnn, shapes.images, 2), atol=1e-6)


def test_guided_backprop_leaves_the_model_unchanged(cnn, shapes):
    x = shapes.images
    before = cnn(x).numpy(), gradients.input_gradients(cnn, x)
    layers_before = [(layer.name, getattr(layer, "activation", None)) for layer in cnn.layers]
    guided = gradients.guided_backprop(cnn, x)
    gradients.deconvnet(cnn, x)
    assert not np.allclose(guided, np.abs(before[1]).max(-1))               # it did something
    np.testing.assert_array_equal(cnn(x).numpy(), before[0])
    np.testing.assert_array_equal(gradients.input_gradients(cnn, x), before[1])
    assert [(layer.name, getattr(layer, "activation", None)) for layer in cnn.layers] == \
        layers_before
    np.testing.assert_allclose(cnn(x).numpy().sum(-1), 1, rtol=1e-5)       # still softmax


def test_the_guided_view_has_the_same_forward_pass(cnn, shapes):
    for rule in ("guided", "deconvnet"):
        view = gradients.backprop_model(cnn, rule)
        np.testing.assert_allclose(view(shapes.images).numpy(),
                                   cu.logits_model(cnn)(shapes.images).numpy(), atol=1e-5)


# --- SmoothGrad ---------------------------------------------------------------------------------

def test_smoothgrad_without_noise_is_the_gradient(cnn, shapes):
    np.testing.assert_allclose(
        gradients.smoothgrad(cnn, shapes.images, noise=0.0, n_samples=3, reduce="none"),
        gradients.saliency(cnn, shapes.images, reduce="none"), rtol=1e-4, atol=1e-7)


def test_smoothgrad_is_seeded(cnn, shapes):
    x = shapes.images[:2]
    a = gradients.smoothgrad(cnn, x, n_samples=4, seed=1)
    np.testing.assert_array_equal(a, gradients.smoothgrad(cnn, x, n_samples=4, seed=1))
    assert not np.allclose(a, gradients.smoothgrad(cnn, x, n_samples=4, seed=2))


def test_smoothgrad_explains_the_class_of_the_clean_image(cnn, shapes):
    predicted = gradients.predicted_classes(cnn, shapes.images)
    np.testing.assert_array_equal(
        gradients.smoothgrad(cnn, shapes.images, n_samples=3),
        gradients.smoothgrad(cnn, shapes.images, predicted, n_samples=3))


# --- one calling convention: batch or single image; Sequential, nested -------------------------

METHODS = {
    "saliency": gradients.saliency,
    "smoothgrad": lambda m, x, t=None: gradients.smoothgrad(m, x, t, n_samples=3),
    "guided": gradients.guided_backprop,
    "deconvnet": gradients.deconvnet,
}


@pytest.mark.parametrize("name", METHODS)
def test_a_batch_and_single_images_give_the_same_maps(cnn, shapes, name):
    method = METHODS[name]
    batch = method(cnn, shapes.images[:3])
    assert batch.shape == (3, 64, 64) and batch.dtype == np.float32
    for i in range(3):
        single = method(cnn, shapes.images[i])
        assert single.shape == (1, 64, 64)
        np.testing.assert_allclose(single[0], batch[i], rtol=1e-4, atol=1e-6 * batch.max())


def course_cnn_variants(cnn):
    """The course CNN as a Sequential model and as a nested one, over the same layers."""
    sequential = keras.Sequential([keras.Input((64, 64, 3))] + cnn.layers[1:])
    body = keras.Model(cnn.input, cnn.get_layer("gap").output, name="body")
    nested = keras.Sequential([keras.Input((64, 64, 3)), body, cnn.get_layer("logits"),
                               cnn.get_layer("probs")])
    return {"sequential": sequential, "nested": nested}


@pytest.mark.parametrize("name", METHODS)
def test_sequential_and_nested_models_give_the_maps_of_the_flat_one(cnn, shapes, name):
    method, x = METHODS[name], shapes.images[:2]
    flat = method(cnn, x, 1)
    for kind, model in course_cnn_variants(cnn).items():
        np.testing.assert_allclose(method(model, x, 1), flat, rtol=1e-4, atol=1e-6 * flat.max(),
                                   err_msg=kind)


# --- bad input: a sentence to act on, before TensorFlow sees the data ---------------------------

@pytest.mark.parametrize("images, target, settings, message", [
    ((np.ones((2, 64, 64, 3)) * 255).astype(np.uint8), None, {}, "integers"),
    (np.ones((2, 64, 64, 3), np.float32) * 255, None, {}, "divide by 255"),
    (np.full((1, 64, 64, 3), np.nan, np.float32), None, {}, "NaN"),
    (np.zeros((2, 32, 32, 3), np.float32), None, {}, "expects 64×64×3"),
    (np.zeros((2, 64, 64, 1), np.float32), None, {}, "expects 64×64×3"),
    (np.zeros((2, 3, 64, 64), np.float32), None, {}, "channels-first"),
    (np.zeros((64, 64), np.float32), None, {}, "one image"),
    (np.zeros((2, 64, 64, 3), np.float32), 6, {}, "out of range"),
    (np.zeros((2, 64, 64, 3), np.float32), -1, {}, "out of range"),
    (np.zeros((2, 64, 64, 3), np.float32), 1.0, {}, "integers"),
    (np.zeros((2, 64, 64, 3), np.float32), "star", {}, "class_index"),
    (np.zeros((2, 64, 64, 3), np.float32), [0, 1, 2], {}, "one per image"),
    (np.zeros((2, 64, 64, 3), np.float32), None, {"reduce": "mean"}, "reduce must be one of"),
    (np.zeros((2, 64, 64, 3), np.float32), None, {"score": "softmax"}, "score must be one of"),
])
def test_bad_input_raises_a_course_error(cnn, images, target, settings, message):
    with pytest.raises(cu.CourseError, match=message):
        gradients.saliency(cnn, images, target, **settings)


def test_bad_settings_raise_course_errors(cnn, shapes):
    with pytest.raises(cu.CourseError, match="rule must be one of"):
        gradients.input_gradients(cnn, shapes.images, rule="guided-ish")
    with pytest.raises(cu.CourseError, match="n_samples"):
        gradients.smoothgrad(cnn, shapes.images, n_samples=0)
    with pytest.raises(cu.CourseError, match="noise"):
        gradients.smoothgrad(cnn, shapes.images, noise=-0.1)
    assert issubclass(cu.CourseError, ValueError)


# --- the exercise's self-check ------------------------------------------------------------------

def test_the_saliency_exercise_check(cnn, shapes, capsys):
    import tensorflow as tf

    def solution(model, x, c):
        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = cu.logits_model(model)(x)[:, c]
        return tape.gradient(score, x)

    def softmax_version(model, x, c):
        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = model(x)[:, c]
        return tape.gradient(score, x)

    def natural(model, x, c):                # no conversion: the check passes a tensor
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = cu.logits_model(model)(x)[:, c]
        return tape.gradient(score, x)

    def unwatched(model, x, c):
        with tf.GradientTape() as tape:
            score = cu.logits_model(model)(x)[:, c]
        return tape.gradient(score, x)

    def predicted_class(model, x, c):
        return gradients.input_gradients(model, np.asarray(x))

    x = shapes.images[:2]
    target = min(set(range(5)) - set(gradients.predicted_classes(cnn, x).tolist()))
    for fn, verdict in [(lambda m, x, c: None, "not yet: your function returns None"),
                        (solution, "correct"), (natural, "correct"),
                        (unwatched, "call tape.watch(x)"),
                        (predicted_class, "predicted class"),
                        (lambda m, x, c: np.zeros(x.shape), "all zeros"),
                        (lambda m, x, c: -solution(m, x, c), "sign is flipped"),
                        (softmax_version, "softmax probability"),
                        (lambda m, x, c: np.abs(solution(m, x, c)), "signed gradient"),
                        (lambda m, x, c: 1 / 0, "raised ZeroDivisionError")]:
        gradients.check_saliency_exercise(fn, cnn, x, target)
        assert verdict in capsys.readouterr().out


def test_the_smoothgrad_figure_shows_vanilla_beside_smoothgrad(cnn, shapes):
    from course_utils import widgets

    fig = widgets.smoothgrad_figure(cnn, shapes.images[0], noise=0.0, n_samples=2,
                                    mask=shapes.masks[0])
    vanilla, smooth = (np.asarray(ax.images[0].get_array()) for ax in fig.axes[1:3])
    np.testing.assert_allclose(smooth, vanilla, rtol=1e-5)    # no noise: SmoothGrad = vanilla
    assert len(fig.axes) == 5                                 # image, two maps, two colourbars
    assert len(fig.axes[1].collections) >= 1                  # the mask's outline
