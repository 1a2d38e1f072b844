"""RISE, LIME and Anchors: a toy model that looks at one quadrant, shapes and seeds, bad input."""

import keras
import numpy as np
import pytest

import course_utils as cu
from course_utils import perturbation as pt


def quadrant_model(size: int = 16):
    """Logit 0 = 3 x the mean of the top-left quadrant; logit 1 = 0."""
    x = keras.Input((size, size, 3))
    h = keras.layers.Cropping2D(((0, size // 2), (0, size // 2)))(x)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant([[1.0, 0.0]] * 3),
                           bias_initializer="zeros")(h)
    return keras.Model(x, h)


@pytest.fixture(scope="module")
def toy():
    return quadrant_model()


def test_rise_masks_follow_the_paper():
    masks = pt.rise_masks((64, 64), n_masks=500, keep=0.3, grid=8, seed=1)
    assert masks.shape == (500, 64, 64) and masks.dtype == np.float32
    assert 0 <= masks.min() and masks.max() <= 1
    assert abs(masks.mean() - 0.3) < 0.03                      # cells kept with probability 0.3
    assert len(np.unique(masks)) > 10                          # bilinear, not binary
    np.testing.assert_array_equal(masks, pt.rise_masks((64, 64), 500, 0.3, 8, 1))


def test_rise_recovers_the_region_the_model_uses(toy):
    x = np.full((1, 16, 16, 3), 0.8, np.float32)
    s = pt.rise(toy, x, 0, n_masks=1000, grid=4, fill=0.0, seed=0)[0]  # mean = x: use black
    assert s.shape == (16, 16)
    quadrants = [s[:8, :8], s[:8, 8:], s[8:, :8], s[8:, 8:]]
    means = [q.mean() for q in quadrants]
    assert means[0] > max(means[1:]) + 0.02                    # higher in the top-left quadrant
    assert s[:8, :8].max() == s.max()                          # and it peaks there


def test_rise_seeds_reproduce(course_model):
    x = cu.make_shapes(1, seed=110).images
    a = pt.rise(course_model, x, n_masks=200, seed=3)
    np.testing.assert_array_equal(a, pt.rise(course_model, x, n_masks=200, seed=3))
    assert not np.array_equal(a, pt.rise(course_model, x, n_masks=200, seed=4))


@pytest.mark.parametrize("settings, words", [
    ({"n_masks": 0}, "n_masks must be a positive integer"),
    ({"keep": 1.0}, "strictly between 0 and 1"),
    ({"grid": 1}, "from 2 to 64"),
    ({"grid": 4.5}, "grid"),
])
def test_rise_bad_settings(course_model, settings, words):
    with pytest.raises(cu.CourseError, match=words):
        pt.rise(course_model, cu.make_shapes(1, seed=111).images, **settings)


def test_lime_shapes_and_seed(course_model):
    x = cu.make_shapes(1, seed=112).images[0]
    a = pt.lime_explanation(course_model, x, n_samples=200, n_features=4, seed=5)
    b = pt.lime_explanation(course_model, x, n_samples=200, n_features=4, seed=5)
    assert a.map.shape == (64, 64) and a.segments.shape == (64, 64)
    assert a.map.dtype == np.float32 and 0 < len(a.top) <= 4
    np.testing.assert_array_equal(a.map, b.map)
    assert a.top == b.top
    maps = pt.lime(course_model, x[None], n_samples=200, n_features=4, seed=5)
    np.testing.assert_array_equal(maps[0], a.map)


def test_lime_bad_input(course_model):
    x = cu.make_shapes(1, seed=113).images[0]
    with pytest.raises(cu.CourseError, match="single superpixel"):
        pt.lime_explanation(course_model, x, segmentation=lambda im: np.zeros(im.shape[:2], int))
    with pytest.raises(cu.CourseError, match="n_features must be a whole number from 1"):
        pt.lime_explanation(course_model, x, n_features=0)
    with pytest.raises(cu.CourseError, match="n_samples"):
        pt.lime_explanation(course_model, x, n_samples=0)
    with pytest.raises(cu.CourseError, match="segmentation must be one of"):
        pt.lime_explanation(course_model, x, segmentation="watershed")


def test_anchors_one_small_case(course_model):
    x = cu.make_shapes(1, seed=100).images[0]
    a = pt.anchor_explanation(course_model, x, seed=0)
    b = pt.anchor_explanation(course_model, x, seed=0)
    assert a.mask.shape == (64, 64) and a.mask.dtype == bool and a.segments.shape == (64, 64)
    assert 0 <= a.coverage <= 1 and a.precision >= 0.9 and a.anchor
    assert a.anchor == b.anchor and a.precision == b.precision
    with pytest.raises(cu.CourseError, match="predicted class"):
        pt.anchors(course_model, x, target=1)


def test_anchors_without_alibi_say_how_to_install_it(course_model, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "alibi.explainers", None)      # as if alibi were absent
    image = cu.make_shapes(1, seed=3).images[0]
    with pytest.raises(cu.CourseError, match="Anchors needs alibi"):
        cu.perturbation.anchors(course_model, image)


# --- counting forward passes, and one segmentation for LIME and Anchors -------------------------

def test_the_pass_counter_counts_every_image_the_model_sees(toy):
    x = np.full((16, 16, 3), 0.8, np.float32)
    with cu.occlusion.count_passes() as outer:
        with cu.occlusion.count_passes() as rise_cost:
            pt.rise(toy, x, 0, n_masks=7, grid=4)
        result = cu.occlusion.occlusion_result(toy, x, 0, patch=8, stride=8)
    assert rise_cost.passes == 7 + 1                 # the masks, and the image for its class
    assert result.passes == 4 + 1 and outer.passes == 8 + 5
    with cu.occlusion.count_passes() as lime_cost:
        pt.lime_explanation(toy, x + np.linspace(0, 0.2, 16)[:, None, None], n_samples=20,
                            n_features=1, segmentation=lambda im: np.arange(256).reshape(16, 16)
                            // 64)
    assert lime_cost.passes == 20 + 1   # lime's samples (the image is the first), and the class
    pt.rise(toy, x, 0, n_masks=3, grid=4)
    assert outer.passes == 13                        # a closed block counts no more


def test_lime_and_anchors_share_the_slic_segmentation(course_model):
    image = cu.make_shapes(2, seed=100).images[1]
    lime_segments = pt.lime_explanation(course_model, image, n_samples=50,
                                        segmentation="slic").segments
    anchor = pt.anchor_explanation(course_model, image, segmentation_kwargs=pt.SLIC_SETTINGS)
    np.testing.assert_array_equal(anchor.segments, lime_segments)


def test_numbered_superpixels_sit_inside_their_superpixel():
    import matplotlib.pyplot as plt

    segments = np.zeros((40, 40), int)
    segments[:, 20:] = 1
    segments[10:30, 5:35] = 2                        # splits 0 and 1 into C shapes
    fig, ax = plt.subplots()
    cu.plotting.show_segments(np.full((40, 40, 3), 0.5), segments, ax)
    labels = {int(t.get_text()): t.get_position() for t in ax.texts}
    plt.close(fig)
    assert sorted(labels) == [0, 1, 2]
    for k, (col, row) in labels.items():
        assert segments[int(row), int(col)] == k
