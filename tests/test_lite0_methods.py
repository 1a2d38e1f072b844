"""Every method of course_utils on EfficientNet-Lite0 (ImageNet weights, 224×224 photos).

Each method runs once through the course's one calling convention, ``method(model, images,
target=None, **settings)``, with settings small enough for seconds on 2 cores, in a module
fixture (tracing a view of Lite0 costs a second or two per method, so the maps are made once).
The tests then check them against answers known in advance: identities that hold for any
weights (CAM and Grad-CAM at the head, the backward rules at a ReLU6, RISE's formula, an
occlusion that hides nothing), and claims with a wide margin (a dream raises its score, an
ascent raises a class's margin). Where a number is compared, the tolerance is far above float32
round-off, so the tests pass on any CPU and under ``COURSE_PERTURB``.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import course_utils as cu
from course_utils import (
    cam,
    deconvnet,
    dream,
    features,
    gradients,
    lite0,
    metrics,
    occlusion,
    perturbation,
)

# The calling convention, with small settings: {name: (method, settings)}.
METHODS = {
    "saliency": (gradients.saliency, {}),
    "SmoothGrad": (gradients.smoothgrad, {"n_samples": 2}),
    "guided backprop": (gradients.guided_backprop, {}),
    "deconvnet rule": (gradients.deconvnet, {}),
    "CAM": (cam.cam, {"upsample": False}),                          # (1, 7, 7), signed
    "Grad-CAM": (cam.grad_cam, {"relu": False, "upsample": False}),
    "HiResCAM": (cam.hires_cam, {"relu": False, "upsample": False}),
    "guided Grad-CAM": (cam.guided_grad_cam, {}),
    "occlusion": (occlusion.occlusion, {"patch": 112, "stride": 56}),  # 10 forward passes
    "RISE": (perturbation.rise, {"n_masks": 16}),
    "LIME": (perturbation.lime, {"n_samples": 50, "segmentation": "slic"}),
    "Anchors": (perturbation.anchors, {"batch_size": 25}),          # about 300 images
}
RIVALS = [281, 967]              # tabby, espresso: classes whose margin the ascent raises
DREAM_LAYERS = ["block3a_expand_relu"]
SEARCH_LAYER, SEARCH_CHANNEL = "block3a_dwconv", 7     # depthwise 5×5, stride 2, "same"


@pytest.fixture(scope="module")
def model(lite0_net):
    return lite0_net.model


@pytest.fixture(scope="module")
def cat():
    return cu.load_photo("chelsea", 224)[None]


def _dream(model):
    """Deep Dream at 160×200 (the model itself takes 224×224 only), run to its last step."""
    run = dream.Dream(model, cu.load_photo("chelsea", (160, 200)), DREAM_LAYERS, octaves=2,
                      steps_per_octave=3)
    run.image(run.total_steps)
    return run


@pytest.fixture(scope="module")
def run(model, cat):
    """Every method once, on the cat unless said otherwise; and the weights before them all."""
    before = [w.copy() for w in model.get_weights()]
    maps = {name: method(model, cat, None, **settings)
            for name, (method, settings) in METHODS.items()}
    photos = cu.load_photos(["chelsea", "coffee", "rocket"], 224)
    maps["Grad-CAM map"] = cam.grad_cam(model, cat)          # traced by guided Grad-CAM
    maps["coffee"] = cam.grad_cam(model, photos[1:2])
    results = {
        "class model": features.class_model(model, [RIVALS[0]], steps=2),
        "channel visualization": features.channel_visualization(model, SEARCH_LAYER,
                                                                SEARCH_CHANNEL, steps=4),
        "margin ascent": cu.ascent.Ascent(
            features.class_step(model, "margin"), np.repeat(cat, len(RIVALS), 0),
            np.array(RIVALS), features.PLAIN.with_(step_size=0.002)).run_to(3),
        "Deep Dream": _dream(model),
        "dataset search": features.dataset_search(model, photos, SEARCH_LAYER, SEARCH_CHANNEL,
                                                  k=2),
        "deconvnet projection": deconvnet.project(model, cat, "stem_conv", 3, signal=1.0),
        "unit gradient": deconvnet.unit_gradient(model, cat, "stem_conv", 3),
        "deletion": [metrics.deletion_curve(model, photos[1:2], m, n_steps=8)
                     for m in (maps["coffee"], -maps["coffee"])],
        "insertion": [metrics.insertion_curve(model, photos[1:2], m, n_steps=8)
                      for m in (maps["coffee"], -maps["coffee"])],
        "cascade": metrics.randomization_cascade(model, cam.grad_cam, cat,
                                                 layers=["logits", "head_bn", "block7a_dwconv"]),
    }
    return {"before": before, "maps": maps, "results": results, "photos": photos}


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


# --- the calling convention ---------------------------------------------------------------------

@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_answers_through_the_calling_convention(run, name):
    m = run["maps"][name]
    coarse = METHODS[name][1].get("upsample") is False
    assert m.shape == ((1, 7, 7) if coarse else (1, 224, 224))
    assert m.dtype == np.float32 and np.isfinite(m).all() and np.abs(m).max() > 0


# --- gradients: the backward rules at a ReLU6 ---------------------------------------------------

@pytest.mark.parametrize("forward", [keras.layers.ReLU(max_value=6.0), keras.activations.relu6],
                         ids=["ReLU(max_value=6)", "relu6"])
def test_the_rules_treat_the_clip_at_six_as_the_relu_treats_zero(forward):
    z = tf.constant([-1.0, 0.5, 3.0, 5.9, 6.5, 9.0, 2.0])
    upstream = tf.constant([1.0, 1.0, -1.0, 2.0, 1.0, -3.0, 0.5])
    want = {"vanilla": [0, 1, -1, 2, 0, 0, 0.5],           # g where 0 < z < 6
            "guided": [0, 1, 0, 2, 0, 0, 0.5],             # max(g, 0) where 0 < z < 6
            "deconvnet": [1, 1, 0, 2, 1, 0, 0.5]}          # max(g, 0) wherever z is
    for rule, expected in want.items():
        with tf.GradientTape() as tape:
            tape.watch(z)
            y = gradients.relu_with_rule(z, forward, rule)
        np.testing.assert_array_equal(y, np.clip(z, 0, 6))
        np.testing.assert_array_equal(tape.gradient(y, z, output_gradients=upstream), expected,
                                      err_msg=rule)


@pytest.mark.parametrize("rule", gradients.RULES)
def test_each_rule_gives_the_known_gradient_at_the_head(model, cat, rule):
    """head_bn → head_relu (ReLU6) → gap (7×7) → dropout → logits: the gradient of the logit S_c
    with respect to head_bn's output z is w_c / 49 through each unit's ReLU6 by the rule."""
    view = gradients.backprop_model(model, rule, ["head_bn"])
    with tf.GradientTape() as tape:
        z, logits = view(tf.constant(cat), training=False)
        c = int(tf.argmax(logits[0]))
        score = logits[0, c]
    grad, z = tape.gradient(score, z).numpy(), z.numpy()
    w = model.get_layer("logits").kernel.numpy()[:, c] / 49
    open_ = (z > 0) & (z < 6)
    want = {"vanilla": w * open_, "guided": np.maximum(w, 0) * open_,
            "deconvnet": np.broadcast_to(np.maximum(w, 0), z.shape)}[rule]
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-9)
    clipped = z > 6                         # units past the clip: a ReLU6, not a ReLU
    assert clipped.sum() > 20
    if rule == "guided":
        assert grad.min() >= 0 and not grad[clipped].any()
    if rule == "deconvnet":
        assert grad.min() >= 0 and grad[clipped].any()


def test_the_rules_maps_differ_from_the_vanilla_gradient(run):
    """Measured correlations with the saliency map: guided 0.13, deconvnet 0.04."""
    vanilla = run["maps"]["saliency"]
    for rule in ("guided backprop", "deconvnet rule"):
        assert _corr(run["maps"][rule], vanilla) < 0.5, rule


def test_smoothgrad_without_noise_is_the_gradient(model, cat):
    plain = gradients.saliency(model, cat, reduce="none")
    smooth = gradients.smoothgrad(model, cat, noise=0.0, n_samples=2, reduce="none")
    np.testing.assert_allclose(smooth, plain, rtol=1e-4, atol=1e-5 * np.abs(plain).max())


# --- CAM, Grad-CAM, HiResCAM, guided Grad-CAM ---------------------------------------------------

def test_grad_cam_defaults_to_the_maps_that_reach_the_pooling(model, cnn):
    assert cam.cam_head(model)[0] == "head_relu"
    assert cam.default_cam_layer(model) == "head_relu"       # not head_conv, before BN + ReLU6
    assert cam.default_cam_layer(cnn) == "conv4"             # the course CNN: unchanged
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    bn_relu = keras.layers.ReLU(name="relu")(keras.layers.BatchNormalization(name="bn")(x))
    head = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(bn_relu))
    assert cam.default_cam_layer(keras.Model(inputs, head)) == "relu"
    pooled = keras.layers.Flatten()(keras.layers.MaxPooling2D(name="pool")(x))   # VGG-like
    assert cam.default_cam_layer(keras.Model(inputs, keras.layers.Dense(2)(pooled))) == "conv"


def test_cam_is_grad_cam_at_head_relu_times_the_number_of_positions(run):
    """GAP over 7×7, then dense (dropout is the identity at inference): dS_c/dA_k(i, j) = w_kc/49
    everywhere, so Grad-CAM's weights are CAM's over 49; Grad-CAM ran at its default layer."""
    cam_map, grad = run["maps"]["CAM"], run["maps"]["Grad-CAM"]
    np.testing.assert_allclose(grad * 49, cam_map, rtol=1e-4, atol=1e-5 * np.abs(cam_map).max())


def test_the_mean_of_cam_plus_the_bias_is_the_logit(run, model, cat):
    logits = cu.models.predict_logits(model, cat)[0]
    c = int(logits.argmax())
    bias = model.get_layer("logits").bias.numpy()[c]
    np.testing.assert_allclose(run["maps"]["CAM"].mean() + bias, logits[c], rtol=1e-4)


def test_hires_cam_is_grad_cam_right_before_global_average_pooling(run):
    grad = run["maps"]["Grad-CAM"]
    np.testing.assert_allclose(run["maps"]["HiResCAM"], grad, rtol=1e-4,
                               atol=1e-5 * np.abs(grad).max())


def test_guided_grad_cam_is_guided_backprop_times_grad_cam(run):
    want = run["maps"]["guided backprop"] * run["maps"]["Grad-CAM map"]
    np.testing.assert_allclose(run["maps"]["guided Grad-CAM"], want, rtol=1e-5,
                               atol=1e-6 * want.max())


# --- occlusion, RISE, LIME, Anchors ---------------------------------------------------------

def test_occluding_with_what_is_there_changes_nothing(model, cat):
    image = cat.copy()
    image[0, :112, :112] = 0.5                  # the patch at (0, 0) hides grey behind grey
    result = occlusion.occlusion_result(model, image, patch=112, stride=112, fill="grey")
    drops = np.abs(result.grid[0])
    assert drops[0, 0] < 1e-4 * drops.max() and drops.max() > 0.1
    masks = occlusion.patch_masks((224, 224), 112, 112)
    logits = occlusion.occluded_logits(model, cat[0], cat[0], masks)      # fill = the image
    clean = occlusion.forward_logits(model, cat)
    np.testing.assert_allclose(logits, np.repeat(clean, len(masks), 0), rtol=1e-5, atol=1e-4)


def test_rise_is_the_probability_weighted_mean_of_its_masks(run, model, cat):
    masks = perturbation.rise_masks((224, 224), 16, 0.5, 8, 0)[..., None]
    fill = cat.mean(axis=(1, 2), keepdims=True)
    p = perturbation.softmax(occlusion.forward_logits(model, cat * masks + fill * (1 - masks)))
    c = int(occlusion.forward_logits(model, cat).argmax())
    want = np.tensordot(p[:, c], masks[..., 0], axes=1) / (16 * 0.5)
    np.testing.assert_allclose(run["maps"]["RISE"][0], want, rtol=1e-3, atol=1e-6)


def test_lime_gives_one_weight_per_superpixel(run, cat):
    segments = perturbation.segment(cat[0], "slic")
    lime_map = run["maps"]["LIME"][0]
    assert all(np.ptp(lime_map[segments == k]) == 0 for k in range(segments.max() + 1))
    assert 1 <= len(np.unique(lime_map[lime_map != 0])) <= 5           # n_features = 5


def test_the_anchor_is_some_superpixels(run):
    anchor = run["maps"]["Anchors"][0]
    assert set(np.unique(anchor)) == {0.0, 1.0} and 0 < anchor.mean() < 1


# --- class model, the ascent engine, Deep Dream -------------------------------------------------

def test_the_ascent_raises_each_class_margin(run, model, cat):
    """Three plain steps of the class model's ascent (score: the margin over the strongest
    rival) from the photo. Measured: tabby -0.9 → 3.4, espresso -9.1 → -1.7, also under
    COURSE_PERTURB=1 and 2. (From the class model's grey start, Lite0's 1,000 logits lie within
    ±0.3 of each other and the margin first falls: a few steps show nothing there.)"""
    ascent_run = run["results"]["margin ascent"]
    targets = tf.constant(RIVALS)
    margin = [features.class_score(cu.logits_model(model)(ascent_run.image(s)), targets).numpy()
              for s in (0, 3)]
    assert np.all(margin[1] > margin[0] + 3)
    image = run["results"]["class model"]
    assert image.shape == (1, 224, 224, 3) and 0 <= image.min() and image.max() <= 1


def test_channel_visualization_raises_its_channel(run, model):
    """Four steps on a depthwise channel, from grey plus noise. Measured: its score (the mean of
    the leaky pre-activation) went from 0.18 to 1.43, also under COURSE_PERTURB=2."""
    view = features.pre_activation_view(model, SEARCH_LAYER)
    start = features.neutral_start(model, 1, noise=0.1, seed=features.REGULARISED.seed)
    before, after = (np.mean(tf.nn.leaky_relu(view(x)[..., SEARCH_CHANNEL], features.LEAK))
                     for x in (start, run["results"]["channel visualization"]))
    assert after > 3 * before > 0


def test_deep_dream_runs_at_other_sizes_and_raises_its_score(run, model):
    """The model takes 224×224 only; the dream runs a size-free view of its layers, here at
    114×143 and 160×200."""
    run_ = run["results"]["Deep Dream"]
    assert run_.sizes == [(114, 143), (160, 200)]
    assert model.input_shape == (None, 224, 224, 3)
    photo, dreamt = run_.base[0], run_.image(run_.total_steps)
    assert dreamt.shape == photo.shape and 0 <= dreamt.min() and dreamt.max() <= 1
    before, after = (dream.activation_score(model, x, DREAM_LAYERS) for x in (photo, dreamt))
    assert after > 1.05 * before


# --- dataset search and receptive fields --------------------------------------------------------

def test_dataset_search_finds_the_most_active_photos_and_units(run, model):
    result, photos = run["results"]["dataset search"], run["photos"]
    acts = features.layer_view(model, SEARCH_LAYER)(photos).numpy()[..., SEARCH_CHANNEL]
    peaks = acts.reshape(len(acts), -1).max(axis=1)
    np.testing.assert_array_equal(result.indices, np.argsort(-peaks, kind="stable")[:2])
    for index, (i, j) in zip(result.indices, result.units, strict=True):
        assert acts[index, i, j] == acts[index].max()
    field = features.receptive_field(model, SEARCH_LAYER)
    assert field.grid == (28, 28) and field.jump == (8, 8)
    assert features.crop_patches(photos, result).shape == (2, *field.size, 3)


@pytest.fixture(scope="module")
def positive_twin():
    """Lite0's graph with positive weights (every kernel averages its inputs, batch norms are
    the identity): a unit's deconvnet-rule gradient, which ignores the forward pass at each
    ReLU6, is then positive on exactly the pixels the unit sees."""
    twin = lite0.build_efficientnet_lite0()
    for layer in twin.layers:
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
            shape = layer.kernel.shape
            fan_in = np.prod(shape[:2]) * (1 if isinstance(layer, keras.layers.DepthwiseConv2D)
                                           else shape[2])
            layer.kernel.assign(np.full(shape, 1 / fan_in, np.float32))
    return twin


@pytest.mark.parametrize("layer", ["block2a_dwconv", "block3a_dwconv", "block4a_dwconv"])
def test_the_receptive_field_is_exact_for_strided_depthwise_layers(positive_twin, layer):
    """3×3 and 5×5 depthwise, stride 2, TensorFlow's "same" padding (one more row and column at
    the bottom and right), with the skip connections in between."""
    field = features.receptive_field(positive_twin, layer)
    h, w = field.grid
    units = np.array([(0, 0), (h // 2, w // 3), (h - 1, w - 1)])
    grads = deconvnet.unit_gradient(positive_twin, np.full((3, 224, 224, 3), 0.5, np.float32),
                                    layer, 0, position=units)
    for grad, (i, j) in zip(grads, units, strict=True):
        support = np.abs(grad).max(-1) > 0
        top, left, bottom, right = field.box(i, j)
        box = np.zeros((224, 224), bool)
        box[top:bottom, left:right] = True
        np.testing.assert_array_equal(support, box, err_msg=f"{layer} ({i}, {j})")


# --- the switch-based deconvnet -----------------------------------------------------------------

def test_the_deconvnet_projects_from_the_stem_as_the_gradient_does(run):
    """The only layer within its reach: the input's Rescaling, then a stride-2 "same" Conv2D."""
    projection = run["results"]["deconvnet projection"]
    np.testing.assert_allclose(projection, run["results"]["unit gradient"], rtol=1e-5,
                               atol=1e-6 * np.abs(projection).max())


@pytest.mark.parametrize("layer", ["stem_relu", "block2a_dwconv", "head_conv"])
def test_deeper_layers_get_a_course_error_that_says_why(model, cat, layer):
    with pytest.raises(cu.CourseError) as error:
        deconvnet.project(model, cat, layer, 0)
    for words in ("no max pooling", "depthwise convolutions", "batch normalisation",
                  "unit_gradient", "can project from: stem_conv."):
        assert words in str(error.value)


def test_the_unit_gradient_works_deeper_and_stays_in_the_field(model, cat):
    grad = deconvnet.unit_gradient(model, cat, SEARCH_LAYER, SEARCH_CHANNEL)
    acts = features.layer_view(model, SEARCH_LAYER)(cat).numpy()[0, ..., SEARCH_CHANNEL]
    i, j = np.unravel_index(acts.argmax(), acts.shape)
    top, left, bottom, right = features.receptive_field(model, SEARCH_LAYER).box(i, j)
    support = np.abs(grad[0]).max(-1) > 0
    assert support.any() and not support[:top].any() and not support[bottom:].any()
    assert not support[:, :left].any() and not support[:, right:].any()


# --- the metrics --------------------------------------------------------------------------------

def test_deletion_and_insertion_prefer_the_grad_cam_order_to_its_reverse(run):
    """Coffee (espresso, p ≈ 0.9): deleting the Grad-CAM pixels first loses the class fast,
    revealing them first restores it fast; the reverse order does neither. Measured areas:
    deletion 0.20 vs 0.76, insertion 0.82 vs 0.59."""
    deletion, reverse_deletion = (curve.area[0] for curve in run["results"]["deletion"])
    insertion, reverse_insertion = (curve.area[0] for curve in run["results"]["insertion"])
    assert deletion < reverse_deletion - 0.3 and insertion > reverse_insertion + 0.1


def test_pointing_game_and_energy_on_a_lite0_map(run):
    coffee_map = run["maps"]["coffee"]
    peak = coffee_map >= coffee_map.max()
    assert metrics.pointing_game(coffee_map, peak)[0]
    assert not metrics.pointing_game(coffee_map, ~peak)[0]
    np.testing.assert_allclose(metrics.energy(coffee_map, np.ones_like(peak)), 1.0)
    assert 0 < metrics.energy(coffee_map, coffee_map >= np.median(coffee_map))[0] <= 1


def test_the_randomisation_cascade_reinitialises_dense_batch_norm_and_depthwise(run):
    cascade = run["results"]["cascade"]
    assert cascade.steps == ["trained", "logits", "head_bn", "block7a_dwconv"]
    assert cascade.spearman[0, 0] == pytest.approx(1.0) and cascade.spearman[1, 0] < 0.9
    assert cascade.agreement[0] == 1.0


# --- last: the model after all of the above -----------------------------------------------------

def test_no_method_changes_the_model(run, model):
    """Every method above ran on this model (the module's tests run in order, this one last)."""
    after = model.get_weights()
    assert len(after) == len(run["before"])
    for a, b in zip(run["before"], after, strict=True):
        np.testing.assert_array_equal(a, b)
