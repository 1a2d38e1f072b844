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


def test_anchor_coverage_is_a_share_of_the_coverage_samples(course_model):
    x = cu.make_shapes(1, seed=100).images[0]
    a = pt.anchor_explanation(course_model, x, seed=0, coverage_samples=200)
    assert a.coverage * 200 == pytest.approx(round(a.coverage * 200))    # k of the 200 samples
    for bad in (0, 50, 1.5, "1000"):
        with pytest.raises(cu.CourseError, match="coverage_samples must be"):
            pt.anchor_explanation(course_model, x, coverage_samples=bad)


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


# --- LIME's weighted fit, written out, and its exercise -----------------------------------------

def test_lime_fit_is_the_fit_lime_makes():
    """lime's own LimeBase, fed the same patterns and probabilities, gives the same weights."""
    from lime.lime_base import LimeBase
    from sklearn.linear_model import Ridge
    from sklearn.metrics import pairwise_distances

    z, p, _, _ = pt._lime_exercise_data()
    distances = pairwise_distances(z, z[:1], metric="cosine").ravel()
    base = LimeBase(lambda d: np.sqrt(np.exp(-(d**2) / pt.LIME_KERNEL_WIDTH**2)), random_state=0)
    intercept, pairs, _, _ = base.explain_instance_with_data(
        z, np.stack([1 - p, p], axis=1), distances, 1, z.shape[1], feature_selection="none",
        model_regressor=Ridge(alpha=1.0, fit_intercept=True))
    lime_weights = np.zeros(z.shape[1])
    for k, weight in pairs:
        lime_weights[k] = weight
    w0, w = pt.lime_fit(z, p, alpha=1.0)
    np.testing.assert_allclose(w, lime_weights, atol=1e-10)
    assert abs(w0 - intercept) < 1e-10


def test_lime_fit_recovers_a_linear_model_exactly():
    rng = np.random.default_rng(0)
    z = (rng.random((40, 5)) < 0.5).astype(float)
    z[0] = 1
    w0, w = pt.lime_fit(z, 0.2 + z @ np.array([0.1, -0.3, 0.0, 0.5, 0.2]))
    np.testing.assert_allclose(w, [0.1, -0.3, 0.0, 0.5, 0.2], atol=1e-10)
    assert abs(w0 - 0.2) < 1e-10


def _kernel(z):
    """exp(-d² / 0.25²) for the cosine distance d of each pattern to the all-ones one."""
    cosine = z.sum(1) / (np.linalg.norm(z, axis=1) * np.sqrt(z.shape[1]))
    return np.exp(-((1 - cosine) ** 2) / 0.25**2)


def _fit(z, p, weights, intercept=True):
    """Weighted least squares with numpy's lstsq: each row times the root of its weight."""
    x = np.hstack([np.ones((len(z), 1)), z]) if intercept else z
    root = np.sqrt(weights)
    solution = np.linalg.lstsq(x * root[:, None], p * root, rcond=None)[0]
    return solution[1:] if intercept else solution


def _lime_answer(z, p):
    """A student's right answer: lime's weight pi = sqrt(kernel), then a weighted fit."""
    return _fit(z, p, np.sqrt(_kernel(z)))


@pytest.mark.parametrize("answer, words", [
    (_lime_answer, "correct"),
    (lambda z, p: _lime_answer(z, p).astype(np.float32), "correct"),
    (lambda z, p: None, "returns None"),
    (lambda z, p: 1 / 0, "ZeroDivisionError"),
    (lambda z, p: np.zeros(3), "one weight per superpixel"),
    (lambda z, p: np.concatenate([[0.1], _lime_answer(z, p)]), "without the intercept"),
    (lambda z, p: _fit(z, p, np.ones(len(z))), "weighs the same"),
    (lambda z, p: _fit(z, p, _kernel(z)), "square root"),
    (lambda z, p: _fit(z, p, np.sqrt(_kernel(z)), intercept=False), "intercept"),
    (lambda z, p: _fit(z, p, np.sqrt(np.exp(-((1 - z.mean(1)) ** 2) / 0.25**2))),
     "cosine distance"),
    (lambda z, p: np.full(z.shape[1], 0.1), "check the three steps"),
], ids=["right", "float32", "None", "raises", "shape", "with w0", "unweighted", "no root",
        "no intercept", "share off", "other"])
def test_the_lime_exercise_check_names_each_mistake(capsys, answer, words):
    pt.check_lime_fit_exercise(answer)
    out = capsys.readouterr().out
    assert words in out and ("not yet" in out) == (words != "correct")


def test_the_lime_figure_numbers_the_superpixels_and_keeps_the_top_ones(course_model):
    import matplotlib.pyplot as plt

    image = cu.make_shapes(2, seed=100).images[1]
    fig = cu.widgets.lime_figure(course_model, image, segmentation="slic", n_samples=60,
                                 n_features=3)
    segments_ax, weights_ax, top_ax = fig.axes[:3]
    n = len(np.unique(pt.segment(image, "slic")))
    assert len(segments_ax.texts) == n and f"{n} superpixels" in segments_ax.get_title()
    limits = weights_ax.images[0].get_clim()
    assert -limits[0] == limits[1] > 0                       # a symmetric scale around zero
    assert top_ax.get_title().startswith("top: [")
    plt.close(fig)
