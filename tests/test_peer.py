"""The pure helpers of benchmarks.peer (the peer libraries themselves are not needed)."""

import numpy as np

from benchmarks import peer
from course_utils import attribution


def test_map_agreement_ignores_scale_and_offset_per_map():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 8, 8))
    b = a * np.array([2.0, 1e20, 0.5])[:, None, None] + np.array([1.0, -3.0, 0.0])[:, None, None]
    np.testing.assert_allclose(peer.map_agreement(a, b), 1.0, atol=1e-12)
    np.testing.assert_allclose(peer.map_agreement(a, -a), -1.0, atol=1e-12)


def test_map_agreement_is_pearson_per_map_and_nan_for_a_constant_map():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 5, 4, 4)).astype(np.float32)
    want = [np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(peer.map_agreement(a, b), want, rtol=1e-6)
    flat = np.zeros((1, 4, 4))
    assert np.isnan(peer.map_agreement(flat, rng.normal(size=(1, 4, 4)))[0])


def test_full_range_keeps_the_images_spanning_zero_to_one():
    images = np.full((3, 2, 2, 3), 0.5, np.float32)
    images[0, 0, 0, 0], images[0, 1, 1, 2] = 0.0, 1.0            # spans [0, 1]
    images[1, 0, 0, 0], images[1, 1, 1, 2] = 0.0, 0.9            # does not reach 1
    images[2, 0, 0, 1], images[2, 1, 0, 0] = 1.0, 0.0            # spans [0, 1]
    kept = peer.full_range(images)
    assert len(kept) == 2
    np.testing.assert_array_equal(kept, images[[0, 2]])


def test_trapezoid_points_include_both_ends_and_integrate_exactly_a_line():
    alphas, weights = peer.trapezoid_points(5)
    np.testing.assert_allclose(alphas, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(weights, [0.125, 0.25, 0.25, 0.25, 0.125])
    assert abs(weights.sum() - 1) < 1e-6
    assert abs((weights * (3 * alphas + 1)).sum() - 2.5) < 1e-6       # integral of 3a + 1
    assert abs((weights * alphas ** 2).sum() - (1 / 3 + 1 / 96)) < 1e-6  # a^2: error h^2 / 6
    midpoints = attribution.riemann_alphas(5)                          # the course's: no ends
    assert midpoints.min() > 0 and midpoints.max() < 1
