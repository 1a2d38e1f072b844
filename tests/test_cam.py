"""CAM, Grad-CAM, HiResCAM and guided Grad-CAM, with answers known in advance."""

import keras
import numpy as np
import pytest

import course_utils as cu
from benchmarks import run
from course_utils import cam, gradients


def _corr(a, b):
    return np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]


def pointing_game(maps, masks):
    """Share of maps whose highest value lies inside the object's mask."""
    peaks = maps.reshape(len(maps), -1).argmax(axis=1)
    return float(masks.reshape(len(masks), -1)[np.arange(len(masks)), peaks].mean())


# --- CAM and Grad-CAM agree on a GAP + dense model ----------------------------------------------

def test_cam_and_grad_cam_agree_up_to_a_positive_scale(course_model):
    x = cu.make_shapes(16, seed=101).images
    coarse_cam = cam.cam(course_model, x, upsample=False)                       # (N, 8, 8)
    coarse_grad = cam.grad_cam(course_model, x, relu=False, upsample=False)
    np.testing.assert_allclose(coarse_grad * 64, coarse_cam, rtol=1e-4,           # 1/Z, Z = 8×8
                               atol=1e-5 * np.abs(coarse_cam).max())
    full_cam, full_grad = cam.cam(course_model, x, relu=True), cam.grad_cam(course_model, x)
    assert _corr(full_cam, full_grad) > 0.99
    for a, b in zip(full_cam, full_grad, strict=True):
        assert _corr(a, b) > 0.99 or a.max() == b.max() == 0


def test_the_mean_of_cam_plus_the_bias_is_the_logit(cnn, shapes):
    """Zhou et al.: S_c = sum_k w_k^c mean(A_k) + b_c = mean(M_c) + b_c."""
    logits = cu.logits_model(cnn)(shapes.images).numpy()
    bias = cnn.get_layer("logits").bias.numpy()
    for c in range(6):
        maps = cam.cam(cnn, shapes.images, c, upsample=False)
        np.testing.assert_allclose(maps.mean(axis=(1, 2)) + bias[c], logits[:, c], rtol=1e-4,
                                   atol=1e-5)


def test_hires_cam_is_grad_cam_right_before_global_average_pooling(cnn, shapes):
    kw = {"relu": False, "upsample": False}
    np.testing.assert_allclose(cam.hires_cam(cnn, shapes.images, **kw),
                               cam.grad_cam(cnn, shapes.images, **kw), rtol=1e-4, atol=1e-6)
    early_h = cam.hires_cam(cnn, shapes.images, layer="conv3", **kw)
    early_g = cam.grad_cam(cnn, shapes.images, layer="conv3", **kw)
    assert early_h.shape == early_g.shape == (4, 16, 16)
    assert not np.allclose(early_h, early_g)


def test_the_maps_have_the_documented_shapes(cnn, shapes):
    assert cam.grad_cam(cnn, shapes.images).shape == (4, 64, 64)
    assert cam.grad_cam(cnn, shapes.images, upsample=False).shape == (4, 8, 8)
    assert cam.grad_cam(cnn, shapes.images, layer="conv2", upsample=False).shape == (4, 32, 32)
    assert cam.grad_cam(cnn, shapes.images[0]).shape == (1, 64, 64)
    assert cam.cam(cnn, shapes.images).dtype == np.float32
    assert (cam.grad_cam(cnn, shapes.images) >= 0).all()


def test_guided_grad_cam_is_guided_backprop_times_grad_cam(cnn, shapes):
    x, t = shapes.images, np.array([0, 1, 2, 3])
    expected = (gradients.guided_backprop(cnn, x, t, reduce="none")
                * cam.grad_cam(cnn, x, t)[..., None])
    np.testing.assert_allclose(cam.guided_grad_cam(cnn, x, t, reduce="none"), expected,
                               rtol=1e-5, atol=1e-9)
    assert cam.guided_grad_cam(cnn, x, t).shape == (4, 64, 64)


# --- one calling convention: batch or single; Sequential, nested --------------------------------

METHODS = {"cam": cam.cam, "grad_cam": cam.grad_cam, "hires_cam": cam.hires_cam,
           "guided_grad_cam": cam.guided_grad_cam,
           "grad_cam_conv2": lambda m, x, t=None: cam.grad_cam(m, x, t, layer="conv2")}


@pytest.mark.parametrize("name", METHODS)
def test_a_batch_and_single_images_give_the_same_maps(cnn, shapes, name):
    batch = METHODS[name](cnn, shapes.images[:3], 2)
    for i in range(3):
        np.testing.assert_allclose(METHODS[name](cnn, shapes.images[i], 2)[0], batch[i],
                                   rtol=1e-4, atol=1e-6 * np.abs(batch).max())


@pytest.mark.parametrize("name", METHODS)
def test_sequential_and_nested_models_give_the_maps_of_the_flat_one(cnn, shapes, name):
    sequential = keras.Sequential([keras.Input((64, 64, 3))] + cnn.layers[1:])
    body = keras.Model(cnn.input, cnn.get_layer("gap").output, name="body")
    nested = keras.Sequential([keras.Input((64, 64, 3)), body, cnn.get_layer("logits"),
                               cnn.get_layer("probs")])
    flat = METHODS[name](cnn, shapes.images[:2])
    for kind, model in {"sequential": sequential, "nested": nested}.items():
        np.testing.assert_allclose(METHODS[name](model, shapes.images[:2]), flat, rtol=1e-4,
                                   atol=1e-6 * np.abs(flat).max(), err_msg=kind)


def test_a_nested_mobilenet_gives_the_maps_of_the_flat_one():
    """MobileNetV2 (ReLU6 layers, batch norm, depthwise convs, residual adds) inside a
    Sequential, against the same layers wired as one functional model. (Grad-CAM inside a nested
    model is checked on the course CNN above: tracing MobileNetV2 takes seconds per method.)"""
    keras.utils.set_random_seed(5)
    base = keras.applications.MobileNetV2(weights=None, include_top=False, alpha=0.35,
                                          input_shape=(32, 32, 3))
    gap, dense = keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, activation="softmax")
    nested = keras.Sequential([keras.Input((32, 32, 3)), base, gap, dense])
    flat = keras.Model(base.input, dense(gap(base.output)))
    assert cam.last_conv_layer(nested) == cam.last_conv_layer(flat) == "Conv_1"
    assert cam.cam_head(nested) == cam.cam_head(flat) == ("out_relu", dense)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    kw = {"reduce": "none", "value_range": None}
    got, want = (gradients.guided_backprop(m, x, 1, **kw) for m in (nested, flat))
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    inner = next(layer for layer in gradients.backprop_model(nested, "guided").layers
                 if isinstance(layer, keras.Model))
    stand_ins = [layer for layer in inner.layers if isinstance(layer, gradients.ReLUWithRule)]
    relus = [layer for layer in base.layers if isinstance(layer, keras.layers.ReLU)]
    assert len(stand_ins) == len(relus) > 30                     # every ReLU6 of MobileNetV2


# --- bad input ----------------------------------------------------------------------------------

def test_grad_cam_on_a_layer_without_feature_maps_names_the_conv_layers(cnn, shapes):
    for layer in ("gap", "logits"):
        with pytest.raises(cu.CourseError, match="conv1, conv2, conv3, conv4"):
            cam.grad_cam(cnn, shapes.images, layer=layer)


def test_an_unknown_layer_lists_the_layers(cnn, shapes):
    with pytest.raises(cu.CourseError, match="no layer 'conv5'.*conv4, gap"):
        cam.grad_cam(cnn, shapes.images, layer="conv5")
    with pytest.raises(cu.CourseError, match="layer's name"):
        cam.grad_cam(cnn, shapes.images, layer=3)


def test_cam_needs_global_average_pooling_and_one_dense_layer():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Dense(3, name="head")(keras.layers.Flatten(name="flatten")(x))
    model = keras.Model(inputs, x)
    images = np.zeros((1, 16, 16, 3), np.float32)
    with pytest.raises(cu.CourseError, match="flatten -> head.*grad_cam"):
        cam.cam(model, images)
    assert cam.grad_cam(model, images).shape == (1, 16, 16)     # Grad-CAM takes any head


def test_a_model_without_conv_layers_is_refused_by_grad_cam():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    with pytest.raises(cu.CourseError, match="no convolutional layer"):
        cam.grad_cam(model, np.zeros((8, 8, 3), np.float32))


@pytest.mark.parametrize("method", [cam.cam, cam.grad_cam, cam.guided_grad_cam])
@pytest.mark.parametrize("images, target, message", [
    ((np.ones((1, 64, 64, 3)) * 255).astype(np.uint8), None, "integers"),
    (np.zeros((1, 60, 64, 3), np.float32), None, "expects 64×64×3"),
    (np.zeros((1, 64, 64, 3), np.float32), 7, "out of range"),
    (np.zeros((1, 64, 64, 3), np.float32), 2.5, "integers"),
])
def test_bad_input_raises_a_course_error(cnn, method, images, target, message):
    with pytest.raises(cu.CourseError, match=message):
        method(cnn, images, target)


# --- the trained model: Grad-CAM points at the object -------------------------------------------

def test_grad_cam_points_at_the_object_far_more_often_than_chance(course_model):
    """The strict pointing game: the peak must fall inside the shape's own mask (a ring's hole,
    or the pixel just outside an edge, is a miss). Chance is the mask's share, about 0.1."""
    test = cu.make_shapes(200, seed=102)
    chance = test.masks.mean()
    for name, maps in {"Grad-CAM": cam.grad_cam(course_model, test.images),
                       "CAM": cam.cam(course_model, test.images),
                       "HiResCAM conv3": cam.hires_cam(course_model, test.images, layer="conv3"),
                       "guided Grad-CAM": cam.guided_grad_cam(course_model, test.images)}.items():
        hit = pointing_game(maps, test.masks)
        assert hit > max(0.4, 3 * chance), (name, hit, chance)


def test_grad_cam_is_class_specific_and_guided_backprop_is_not(course_model):
    """Explaining another class than the shown one: Grad-CAM's map changes (or empties);
    guided backprop's hardly does (Nie et al. 2018)."""
    test = cu.make_shapes(12, seed=103)

    def similarity(method):
        own = method(course_model, test.images, test.labels)
        return np.mean([_corr(a, b) if b.std() > 0 else 0.0
                        for shift in range(1, 6)
                        for a, b in zip(own, method(course_model, test.images,
                                                    (test.labels + shift) % 6), strict=True)])

    grad_cam, guided = similarity(cam.grad_cam), similarity(gradients.guided_backprop)
    assert grad_cam < 0.4 < 0.8 < guided, (grad_cam, guided)


# --- the exercise's self-check, and the benchmark harness ---------------------------------------

def test_the_grad_cam_exercise_check(capsys):
    def solution(maps, grads):
        return np.maximum((maps * grads.mean(axis=(0, 1))).sum(axis=-1), 0)

    for fn, verdict in [(lambda m, g: None, "returns None"), (solution, "correct"),
                        (lambda m, g: (m * g.mean(axis=(0, 1))).sum(-1), "ReLU"),
                        (lambda m, g: np.maximum((m * g).sum(-1), 0), "HiResCAM"),
                        (lambda m, g: m.mean(-1), "not yet")]:
        cam.check_grad_cam_exercise(fn)
        assert verdict in capsys.readouterr().out


def test_the_benchmark_runs_a_row():
    rows = [row for row in run.ROWS if row.name == "Grad-CAM"]
    (result,) = run.benchmark(rows, sizes=(1,))
    assert result["time"] > 0 and result["bound"] > 0
    assert "Grad-CAM" in run.format_table([result])


# --- localization for free, and the layer × class panel ----------------------------------------


def test_localize_boxes_the_largest_region_above_the_threshold():
    m = np.zeros((1, 10, 10), np.float32)
    m[0, 2:5, 3:7] = 1.0                                      # the largest region
    m[0, 8, 8] = 0.9                                          # a single bright pixel elsewhere
    m[0, 0, 0] = 0.1                                          # below 20% of the maximum
    np.testing.assert_array_equal(cu.cam.localize(m), [[2, 3, 4, 6]])
    assert cu.cam.localize(np.zeros((1, 4, 4))).tolist() == [[0, 0, 3, 3]]   # empty: all of it


def test_mask_boxes_and_iou_have_known_answers():
    masks = np.zeros((2, 8, 8))
    masks[0, 1:3, 1:3] = 1
    masks[1, 4:8, 0:2] = 1
    boxes = cu.cam.mask_boxes(masks)
    np.testing.assert_array_equal(boxes, [[1, 1, 2, 2], [4, 0, 7, 1]])
    np.testing.assert_allclose(cu.cam.box_iou(boxes, boxes), [1.0, 1.0])
    np.testing.assert_allclose(cu.cam.box_iou(np.array([[0, 0, 1, 1]]), np.array([[1, 1, 2, 2]])),
                               [1 / 7])                      # 1 pixel shared of 4 + 4 - 1
    assert cu.cam.box_iou(np.array([[0, 0, 0, 0]]), np.array([[5, 5, 6, 6]]))[0] == 0
    with pytest.raises(cu.CourseError, match="at least one pixel"):
        cu.cam.mask_boxes(np.zeros((1, 4, 4)))


def test_the_layer_class_panel_computes_each_map_once(course_model, shapes):
    panel = cu.cam.LayerClassPanel(course_model, shapes.images[0], ["conv3", "conv4"],
                                   cu.CLASS_NAMES, mask=shapes.masks[0])
    first = panel.picture.value
    assert first[:4] == b"\x89PNG" and panel.computed == 1
    panel.cls.value = 2
    panel.layer.value = "conv3"
    assert panel.computed == 3 and panel.picture.value != first
    panel.layer.value = "conv4"
    assert panel.computed == 3                               # (conv4, 2) was made before
    np.testing.assert_allclose(panel.maps[("conv4", 2)],
                               cu.cam.grad_cam(course_model, shapes.images[0], 2)[0], rtol=1e-5)
