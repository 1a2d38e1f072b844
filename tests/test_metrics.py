"""Metrics: a toy model whose evidence region is known, hand-checked curve areas, the sanity check
on a copy of the course model, and bad input."""

import keras
import numpy as np
import pytest
from scipy.stats import spearmanr

import course_utils as cu
from course_utils import metrics

SIZE = 16
REGION = (slice(4, 8), slice(8, 12))          # the 4×4 square the toy model looks at


def sigmoid(z: float) -> float:
    return 1 / (1 + np.exp(-z))


def region_model():
    """Logit 0 = 16 × (mean of REGION over all channels − 0.625); logit 1 = 0.

    So p(class 0) = sigmoid(6) on an all-white region, sigmoid(-2) on a grey (0.5) one.
    """
    x = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Cropping2D(((4, SIZE - 8), (8, SIZE - 12)))(x)   # rows 4-7, columns 8-11
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant([[16 / 3, 0]] * 3),
                           bias_initializer=keras.initializers.Constant([-10.0, 0.0]))(h)
    return keras.Model(x, h)


@pytest.fixture(scope="module")
def toy():
    return region_model()


def region_mask(n: int = 1) -> np.ndarray:
    mask = np.zeros((n, SIZE, SIZE), bool)
    mask[:, REGION[0], REGION[1]] = True
    return mask


def test_toy_model_looks_at_its_region(toy):
    x = np.full((2, SIZE, SIZE, 3), 0.5, np.float32)
    x[0, REGION[0], REGION[1]] = 1.0
    x[1, :4] = 1.0                                              # outside the region: no effect
    logits = toy.predict(x, verbose=0)
    np.testing.assert_allclose(logits[:, 0], [6.0, -2.0], atol=1e-5)


# --- the pointing game and energy ---------------------------------------------------------------

def test_perfect_map_wins_the_pointing_game():
    rng = np.random.default_rng(0)
    masks = random_square_masks(rng, 50)
    noisy = masks + 0.1 * rng.random(masks.shape)               # the object, a little noise
    assert metrics.pointing_game(masks.astype(np.float32), masks).all()
    assert metrics.pointing_game(noisy, masks).all()
    assert not metrics.pointing_game(1.0 - noisy, masks).any()   # peak always off the object


def random_square_masks(rng, n: int, size: int = 32) -> np.ndarray:
    masks = np.zeros((n, size, size), bool)
    for mask in masks:
        side = rng.integers(3, 12)
        r, c = rng.integers(0, size - side, 2)
        mask[r:r + side, c:c + side] = True
    return masks


def test_random_maps_score_chance():
    rng = np.random.default_rng(1)
    masks = random_square_masks(rng, 4000)
    maps = rng.random(masks.shape).astype(np.float32)
    share = masks.mean()                                        # the chance of a random peak
    assert abs(metrics.pointing_game(maps, masks).mean() - share) < 0.015
    assert abs(metrics.energy(maps, masks).mean() - share) < 0.005


def test_pointing_game_ties_tolerance_and_flat_maps():
    mask = np.zeros((8, 8), bool)
    mask[5:, 0] = True                                          # 5 rows below (0, 0)
    peak_top_left = np.zeros((8, 8), np.float32)
    peak_top_left[0, 0] = 1.0
    for tolerance, hit in [(0, False), (4.9, False), (5, True), (7, True)]:
        assert metrics.pointing_game(peak_top_left, mask, tolerance=tolerance)[0] == hit
    tie = np.zeros((8, 8), np.float32)
    tie[6, 0] = tie[7, 0] = 1.0                                 # both on the object
    tie[7, 7] = 1.0                                             # off it, but later in reading order
    assert metrics.pointing_game(tie, mask)[0]
    np.testing.assert_array_equal(metrics.peaks(tie), [[6, 0]])
    tie[2, 3] = 1.0                                             # first in reading order, off it
    assert not metrics.pointing_game(tie, mask)[0]
    assert not metrics.pointing_game(np.ones((8, 8)), mask)[0]  # a flat map points nowhere
    assert not metrics.pointing_game(np.ones((8, 8)), mask, tolerance=3)[0]


def test_energy_known_answers():
    mask = region_mask()
    assert metrics.energy(mask.astype(np.float32), mask)[0] == 1.0
    assert metrics.energy(np.ones((SIZE, SIZE)), mask)[0] == pytest.approx(16 / 256)
    signed = np.where(mask, 2.0, -5.0)                          # negative evidence does not count
    assert metrics.energy(signed, mask)[0] == 1.0
    assert metrics.energy(-np.ones((SIZE, SIZE)), mask)[0] == 0.0
    half = np.zeros((SIZE, SIZE))
    half[4, 8], half[0, 0] = 3.0, 1.0
    assert metrics.energy(half, mask)[0] == pytest.approx(0.75)


# --- deletion and insertion ---------------------------------------------------------------------

def test_deletion_area_by_hand(toy):
    x = np.ones((1, SIZE, SIZE, 3), np.float32)
    best = region_mask().astype(np.float32)
    curve = metrics.deletion_curve(toy, x, best, 0, n_steps=16)   # 16 pixels a step: the region
    np.testing.assert_allclose(curve.fractions, np.arange(17) / 16)
    np.testing.assert_allclose(curve.probabilities[0], [sigmoid(6)] + [sigmoid(-2)] * 16,
                               rtol=1e-5)
    assert curve.area[0] == pytest.approx((sigmoid(6) / 2 + 15.5 * sigmoid(-2)) / 16, rel=1e-5)
    worst = metrics.deletion_curve(toy, x, 1 - best, 0, n_steps=16)  # the region goes last
    assert worst.area[0] == pytest.approx((15.5 * sigmoid(6) + sigmoid(-2) / 2) / 16, rel=1e-5)
    # 8 pixels a step: the ties go in reading order, so rows 4 and 5 of the region go first.
    half = metrics.deletion_curve(toy, x, best, 0, n_steps=32)
    np.testing.assert_allclose(half.probabilities[0, :3], [sigmoid(6), sigmoid(2), sigmoid(-2)],
                               rtol=1e-5)
    assert half.area[0] == pytest.approx(
        (sigmoid(6) / 2 + sigmoid(2) + 30.5 * sigmoid(-2)) / 32, rel=1e-5)


def test_insertion_area_by_hand(toy):
    x = np.ones((1, SIZE, SIZE, 3), np.float32)
    best = region_mask().astype(np.float32)
    curve = metrics.insertion_curve(toy, x, best, 0, n_steps=16, start=0.5)
    np.testing.assert_allclose(curve.probabilities[0], [sigmoid(-2)] + [sigmoid(6)] * 16,
                               rtol=1e-5)
    assert curve.area[0] == pytest.approx((sigmoid(-2) / 2 + 15.5 * sigmoid(6)) / 16, rel=1e-5)


def test_insertion_starts_blurred_and_ends_at_the_image(course_model):
    shapes = cu.make_shapes(2, seed=120)
    maps = np.random.default_rng(0).random((2, 64, 64))
    curve = metrics.insertion_curve(course_model, shapes.images, maps, n_steps=4)
    blurred = cu.occlusion.fill_images(shapes.images, "blur", blur_sigma=4.0)
    p = cu.perturbation.softmax(cu.models.predict_logits(course_model,
                                                         np.concatenate([blurred, shapes.images])))
    t = p[2:].argmax(axis=1)                                    # the class of the original image
    np.testing.assert_array_equal(curve.target, t)
    np.testing.assert_allclose(curve.probabilities[:, 0], p[[0, 1], t], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(curve.probabilities[:, -1], p[[2, 3], t], rtol=1e-4, atol=1e-6)


def test_perfect_map_beats_random_maps(toy):
    rng = np.random.default_rng(2)
    x = rng.uniform(0.5, 1.0, (20, SIZE, SIZE, 3)).astype(np.float32)
    best = np.repeat(region_mask(), 20, axis=0) + 0.01 * rng.random((20, SIZE, SIZE))
    random = rng.random((20, SIZE, SIZE))
    deletion = [metrics.deletion_curve(toy, x, m, 0).area.mean() for m in (best, random)]
    insertion = [metrics.insertion_curve(toy, x, m, 0, start=0.5).area.mean()
                 for m in (best, random)]
    assert deletion[0] < deletion[1] - 0.3                      # best: lower deletion area
    assert insertion[0] > insertion[1] + 0.3                    # best: higher insertion area


def test_curves_are_batched_like_single_images(toy):
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 1.0, (5, SIZE, SIZE, 3)).astype(np.float32)
    maps = rng.random((5, SIZE, SIZE))
    batch = metrics.deletion_curve(toy, x, maps, 0, n_steps=8, batch_size=7)
    one = metrics.deletion_curve(toy, x[3], maps[3], 0, n_steps=8)
    np.testing.assert_allclose(batch.probabilities[3], one.probabilities[0], rtol=1e-5)


def test_pixel_ranks():
    ranks = metrics.pixel_ranks(np.array([[[0.5, 2.0], [0.5, -1.0]]]))
    np.testing.assert_array_equal(ranks, [[[1, 0], [2, 3]]])   # ties in reading order


# --- the sanity check ---------------------------------------------------------------------------

def test_rank_correlation():
    rng = np.random.default_rng(4)
    a, b = rng.random((2, 3, 8, 8))
    want = [spearmanr(u.ravel(), v.ravel()).statistic for u, v in zip(a, b, strict=True)]
    np.testing.assert_allclose(metrics.rank_correlation(a, b), want, rtol=1e-5)
    np.testing.assert_allclose(metrics.rank_correlation(a, a), 1.0)
    np.testing.assert_allclose(metrics.rank_correlation(a, -a), -1.0)
    flat = np.zeros((1, 8, 8))
    assert metrics.rank_correlation(flat, flat)[0] == 1.0       # the same (constant) map
    assert metrics.rank_correlation(flat, a[:1])[0] == 0.0      # no ranking in common


def test_reinitialize_uses_the_layers_own_initializers():
    dense = keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(2.0),
                               bias_initializer=keras.initializers.Constant(-1.0))
    dense.build((None, 4))
    dense.set_weights([np.zeros((4, 3)), np.zeros(3)])
    metrics.reinitialize(dense, np.random.default_rng(0))
    np.testing.assert_array_equal(dense.kernel.numpy(), 2.0)
    np.testing.assert_array_equal(dense.bias.numpy(), -1.0)
    conv = keras.layers.Conv2D(64, 3, kernel_initializer="he_normal")
    conv.build((None, 8, 8, 32))
    metrics.reinitialize(conv, np.random.default_rng(0))
    assert conv.kernel.numpy().std() == pytest.approx(np.sqrt(2 / (9 * 32)), rel=0.1)


def test_cascade_on_a_copy(course_model):
    before = [w.copy() for w in course_model.get_weights()]
    shapes = cu.make_shapes(6, seed=121)
    cascade = metrics.randomization_cascade(course_model, cu.gradients.saliency, shapes.images)
    assert cascade.steps == ["trained", "logits", "conv4", "conv3", "conv2", "conv1"]
    assert cascade.maps.shape == (6, 6, 64, 64)
    np.testing.assert_array_equal(cascade.maps[0], cu.gradients.saliency(course_model,
                                                                          shapes.images))
    np.testing.assert_array_equal(cascade.spearman[0], 1.0)
    np.testing.assert_array_equal(cascade.spearman_abs[0], 1.0)
    assert cascade.agreement[0] == 1.0 and cascade.agreement[-1] < 1.0  # predictions changed
    assert cascade.spearman[-1].mean() < 0.9
    for w, w0 in zip(course_model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(w, w0)                    # the model itself is untouched


def test_cascade_is_seeded_and_keeps_the_target(course_model):
    x = cu.make_shapes(2, seed=122).images
    run = [metrics.randomization_cascade(course_model, cu.cam.grad_cam, x, 3, layers=["logits"],
                                         seed=s) for s in (0, 0, 1)]
    np.testing.assert_array_equal(run[0].maps, run[1].maps)
    assert not np.array_equal(run[0].maps[1], run[2].maps[1])
    np.testing.assert_array_equal(run[0].target, [3, 3])


def test_weighted_layers(course_model, toy):
    assert metrics.weighted_layers(course_model) == ["logits", "conv4", "conv3", "conv2", "conv1"]
    nested = keras.Sequential([keras.Input((SIZE, SIZE, 3)), toy])
    assert metrics.weighted_layers(nested) == [toy.layers[-1].name]


# --- the exercise -------------------------------------------------------------------------------

def _student_answers():
    def right(maps, masks):
        flat = maps.reshape(len(maps), -1).argmax(axis=1)
        rows, cols = np.unravel_index(flat, maps.shape[1:])
        return masks[np.arange(len(maps)), rows, cols]

    def swapped(maps, masks):
        rows, cols = np.unravel_index(maps.reshape(len(maps), -1).argmax(axis=1), maps.shape[1:])
        return masks[np.arange(len(maps)), cols, rows]

    return [(right, "correct"), (lambda m, k: right(m, k).mean(), "not their mean"),
            (lambda m, k: right(-m, k), "lowest point"), (swapped, "swapped"),
            (lambda m, k: None, "returns None"), (lambda m, k: 1 / 0, "ZeroDivisionError"),
            (lambda m, k: np.ones(len(m), bool), "for each image take")]


@pytest.mark.parametrize("answer, words", _student_answers())
def test_pointing_game_exercise(capsys, answer, words):
    rng = np.random.default_rng(5)
    masks = random_square_masks(rng, 40)
    maps = 0.02 * masks + rng.random(masks.shape)             # peaks on and off the object
    metrics.check_pointing_game_exercise(answer, maps, masks)
    out = capsys.readouterr().out
    assert words in out and (words == "correct") == out.startswith("correct")


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("maps, masks, words", [
    (np.zeros((2, 8, 8, 3)), np.ones((2, 8, 8), bool), "Reduce them first"),
    (np.zeros(8), np.ones(8, bool), "batch of 2D maps"),
    (np.zeros((2, 8, 8)), np.ones((2, 4, 4), bool), "same shape"),
    (np.zeros((2, 8, 8)), np.full((2, 8, 8), 0.5), "must be boolean"),
    (np.zeros((2, 8, 8)), np.zeros((2, 8, 8), bool), "image 0 is empty"),
    (np.full((1, 8, 8), np.nan), np.ones((1, 8, 8), bool), "NaN"),
    (np.full((1, 8, 8), "a"), np.ones((1, 8, 8), bool), "real numbers"),
])
def test_bad_maps_and_masks(maps, masks, words):
    for score in (metrics.pointing_game, metrics.energy):
        with pytest.raises(cu.CourseError, match=words):
            score(maps, masks)


def test_bad_tolerance():
    with pytest.raises(cu.CourseError, match="tolerance must be a distance in pixels from 0 to 7"):
        metrics.pointing_game(np.ones((8, 8)), np.ones((8, 8), bool), tolerance=-1)


def test_bad_curve_input(toy):
    x = np.ones((2, SIZE, SIZE, 3), np.float32)
    maps = np.ones((2, SIZE, SIZE))
    with pytest.raises(cu.CourseError, match="one \\(H, W\\) map per image, 2×16×16"):
        metrics.deletion_curve(toy, x, maps[:1], 0)
    with pytest.raises(cu.CourseError, match="n_steps must be a whole number from 1 to 256"):
        metrics.insertion_curve(toy, x, maps, 0, n_steps=0)
    with pytest.raises(cu.CourseError, match="must lie in"):
        metrics.deletion_curve(toy, 255 * x, maps, 0)
    with pytest.raises(cu.CourseError, match="fill must be one of"):
        metrics.deletion_curve(toy, x, maps, 0, baseline="white")


def test_bad_cascade_input(toy):
    x = np.ones((1, SIZE, SIZE, 3), np.float32)
    with pytest.raises(cu.CourseError, match="no layer 'conv9'"):
        metrics.randomization_cascade(toy, cu.gradients.saliency, x, layers=["conv9"])
    with pytest.raises(cu.CourseError, match="colour channels"):
        metrics.randomization_cascade(toy, cu.gradients.saliency, x, reduce="none")


# --- the pointing game's tolerance and the centre prior ----------------------------------------

def test_zhang_tolerance_and_centre_prior():
    assert metrics.zhang_tolerance(224) == pytest.approx(15)
    assert metrics.zhang_tolerance(64) == pytest.approx(15 * 64 / 224)          # 4.29 pixels
    masks = np.zeros((2, 64, 64), bool)
    masks[:, 40:50, 40:50] = True
    maps = np.zeros((2, 64, 64), np.float32)
    maps[0, 36, 45] = 1                          # 4 pixels above the object: within 4.29
    maps[1, 35, 45] = 1                          # 5 pixels above: outside
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks, "zhang"), [True, False])
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks), [False, False])
    centre = np.zeros((2, 64, 64), bool)
    centre[0, 28:36, 28:36] = True               # on the centre
    centre[1, :8, :8] = True                     # in a corner
    np.testing.assert_array_equal(metrics.centre_pointing(centre), [True, False])
    assert metrics.centre_map(64, 64).argmax() == 31 * 64 + 31      # the 4 middle pixels tie


# --- ROAD ---------------------------------------------------------------------------------------

def test_linear_imputation_fills_a_ramp_exactly():
    rows, cols = np.mgrid[0:12, 0:10].astype(np.float32)
    ramp = np.stack([0.1 * rows, 0.05 * cols + 0.2, 0.3 + 0.02 * (rows - cols)], axis=-1)
    missing = np.zeros((12, 10), bool)
    missing[3:9, 2:7] = True       # a hole inside: each pixel is the mean of symmetric neighbours
    filled = metrics.linear_impute(ramp, missing)
    np.testing.assert_allclose(filled, ramp, atol=1e-5)
    missing[0, :4] = missing[:5, -1] = True      # on the edges the neighbours are one-sided:
    hole = np.where(missing[..., None], 0.0, np.full_like(ramp, 0.7))   # exact for a constant
    np.testing.assert_allclose(metrics.linear_impute(hole, missing), 0.7, atol=1e-5)
    with pytest.raises(cu.CourseError, match="known pixel"):
        metrics.linear_impute(ramp, np.ones((12, 10), bool))


def test_road_by_hand(toy):
    x = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    x[0, REGION[0], REGION[1]] = 1.0
    perfect = region_mask().astype(np.float32)
    most = metrics.road_curve(toy, x, perfect, 0, fractions=(0.1, 0.5), noise=0)
    # the 16 region pixels go first and are filled from the grey around them: logit 6 → −2
    np.testing.assert_allclose(most.probabilities[0], sigmoid(np.array([6, -2, -2])), atol=1e-5)
    np.testing.assert_allclose(most.fractions, [0, 0.1, 0.5])
    want = (0.1 * (sigmoid(6) + sigmoid(-2)) / 2 + 0.4 * sigmoid(-2)) / 0.5
    np.testing.assert_allclose(most.area, [want], atol=1e-5)
    least = metrics.road_curve(toy, x, perfect, 0, fractions=(0.5, 0.9), order="least")
    np.testing.assert_allclose(least.probabilities[0], sigmoid(6), atol=1e-5)  # region kept
    noisy = metrics.road_curve(toy, x, perfect, 0, fractions=(0.1,), noise=0.01)
    assert abs(noisy.probabilities[0, 1] - sigmoid(-2)) < 0.02
    with pytest.raises(cu.CourseError, match="between 0 and 1"):
        metrics.road_curve(toy, x, perfect, 0, fractions=(0.5, 1.0))


# --- faithfulness correlation, max-sensitivity, random logit ----------------------------------

def linear_model(seed: int = 0, n_classes: int = 2):
    """logits = W · image (flattened), W drawn at random."""
    x = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Flatten()(x)
    dense = keras.layers.Dense(n_classes, use_bias=False)
    out = dense(h)
    w = np.random.default_rng(seed).normal(size=(SIZE * SIZE * 3, n_classes)).astype(np.float32)
    dense.set_weights([w])
    return keras.Model(x, out), w.reshape(SIZE, SIZE, 3, n_classes)


def test_faithfulness_correlation_of_a_linear_model():
    model, w = linear_model()
    x = np.random.default_rng(1).random((2, SIZE, SIZE, 3)).astype(np.float32)
    exact = (w[..., 0] * (x - 0.5)).sum(axis=-1)          # each pixel's share of the logit drop
    got = metrics.faithfulness_correlation(model, x, exact, 0, n_subsets=20, subset_size=30)
    np.testing.assert_allclose(got, 1, atol=1e-4)
    flipped = metrics.faithfulness_correlation(model, x, -exact, 0, n_subsets=20, subset_size=30)
    np.testing.assert_allclose(flipped, -1, atol=1e-4)
    flat = metrics.faithfulness_correlation(model, x, np.ones_like(exact), 0, n_subsets=20,
                                            subset_size=30)
    np.testing.assert_array_equal(flat, 0)                 # the sums never vary
    with pytest.raises(cu.CourseError, match="subset_size"):
        metrics.faithfulness_correlation(model, x, exact, 0, subset_size=SIZE * SIZE)


def test_max_sensitivity_known_answers():
    model, _ = linear_model()
    x = np.full((2, SIZE, SIZE, 3), 0.5, np.float32)
    # the saliency of a linear model is its weights, whatever the noise
    assert metrics.max_sensitivity(model, cu.gradients.saliency, x, 0).max() < 1e-6

    def brightness(m, images, t):
        return images.mean(axis=-1)

    got = metrics.max_sensitivity(model, brightness, x, 0, radius=0.02, n_samples=4)
    # every pixel moves by at most 0.02 on a map of 0.5: at most 0.04 relative, and not 0
    assert (got > 0.005).all() and (got <= 0.04 + 1e-6).all()


def test_random_logit_known_answers():
    model, w = linear_model(n_classes=2)
    x = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)

    def ignores_class(m, images, t):
        return images.mean(axis=-1) + np.arange(SIZE)[None, None, :]

    assert metrics.random_logit(model, ignores_class, x, 0)[0] == pytest.approx(1)
    got = metrics.random_logit(model, cu.gradients.saliency, x, 0)        # the other class: 1
    want = spearmanr(np.abs(w[..., 0]).max(-1).ravel(), np.abs(w[..., 1]).max(-1).ravel())
    assert got[0] == pytest.approx(want.statistic, abs=1e-5)


def test_paired_interval_is_scipys_paired_t():
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(0)
    a, b = rng.random(30), rng.random(30) + 0.1
    mean, low, high = metrics.paired_interval(a, b)
    ci = ttest_rel(a, b).confidence_interval(0.95)
    assert mean == pytest.approx((a - b).mean())
    assert (low, high) == pytest.approx((ci.low, ci.high))
    with pytest.raises(cu.CourseError, match="two scores per image"):
        metrics.paired_interval(a, b[:1])


def test_cascade_steps_by_prefix(toy):
    def names_of(m, x, t):
        return np.zeros((len(x), SIZE, SIZE), np.float32)

    c = metrics.randomization_cascade(toy, names_of, np.full((1, SIZE, SIZE, 3), 0.5, np.float32),
                                      0, layers=["dense*"])
    assert c.steps == ["trained", "dense*"] and c.maps.shape == (2, 1, SIZE, SIZE)
    with pytest.raises(cu.CourseError, match="matches 'conv9\\*'"):
        metrics.randomization_cascade(toy, names_of, np.zeros((1, SIZE, SIZE, 3), np.float32),
                                      0, layers=["conv9*"])
