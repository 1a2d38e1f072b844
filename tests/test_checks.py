"""Bad input gets a sentence a student can act on, not a TensorFlow stack trace."""

import numpy as np
import pytest

import course_utils as cu
from course_utils.checks import as_image_batch, as_targets


@pytest.fixture(scope="module")
def model():
    return cu.models.build_course_cnn()


def test_one_image_becomes_a_batch_of_one(model):
    x = as_image_batch(np.zeros((64, 64, 3), np.float64), model)
    assert x.shape == (1, 64, 64, 3) and x.dtype == np.float32


@pytest.mark.parametrize("images, words", [
    (np.zeros((64, 64)), "one image \\(H, W, C\\) or a batch"),
    (np.zeros((2, 1, 64, 64, 3)), "one image \\(H, W, C\\) or a batch"),
    (np.zeros((0, 64, 64, 3)), "empty batch"),
    (np.zeros((2, 3, 64, 64)), "channels-first"),
    (np.full((2, 64, 64, 3), 200, np.uint8), "astype\\('float32'\\) / 255"),
    (np.full((2, 64, 64, 3), 200.0), "divide by 255"),
    (np.full((2, 64, 64, 3), -0.5), "must lie in \\[0, 1\\]"),
    (np.full((2, 64, 64, 3), np.nan), "NaN"),
    (np.zeros((2, 32, 32, 3)), "expects 64×64×3 images"),
    (np.zeros((2, 64, 64, 1)), "expects 64×64×3 images"),
    (np.array([["a"]]), "one image"),
])
def test_bad_images_are_explained(model, images, words):
    with pytest.raises(cu.CourseError, match=words):
        as_image_batch(images, model)


def test_any_finite_range_is_accepted_when_asked():
    x = as_image_batch(np.full((1, 8, 8, 3), -120.0), value_range=None)
    assert x.min() == -120


@pytest.mark.parametrize("target, words", [
    (6, "out of range"), (-1, "out of range"), ([0, 1, 2], "one per image"),
    (1.5, "integers"), ("star", "class_index"),
])
def test_bad_targets_are_explained(target, words):
    with pytest.raises(cu.CourseError, match=words):
        as_targets(target, n=2, n_classes=6)


def test_targets_broadcast_to_the_batch():
    assert as_targets(3, 4, 6).tolist() == [3, 3, 3, 3]
    assert as_targets(np.array([0, 5]), 2, 6).tolist() == [0, 5]
    assert as_targets(None, 2, 6) is None


def test_course_error_is_a_value_error():
    assert issubclass(cu.CourseError, ValueError)
