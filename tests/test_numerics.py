"""The test-only perturbation (course_utils/perturb.py) that stands in for another CPU."""

import numpy as np
import pytest

import course_utils as cu
from course_utils import perturb


@pytest.fixture
def no_perturbation(monkeypatch):
    monkeypatch.delenv(perturb.ENV, raising=False)


def test_unset_it_changes_nothing(no_perturbation):
    images = cu.make_shapes(3, seed=5).images
    assert perturb.setting() is None
    assert perturb.perturb_images(images) is images
    model = cu.models.build_course_cnn()
    before = [w.copy() for w in model.get_weights()]
    perturb.perturb_model(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


@pytest.mark.parametrize("value, expected", [("3", (3, 1e-6)), (" 7,1e-5 ", (7, 1e-5))])
def test_the_setting_is_a_seed_and_an_optional_scale(monkeypatch, value, expected):
    monkeypatch.setenv(perturb.ENV, value)
    assert perturb.setting() == expected


def test_set_it_moves_only_the_low_order_bits(monkeypatch, no_perturbation):
    clean_images = cu.make_shapes(4, seed=6).images
    model = cu.models.build_course_cnn()
    clean_weights = [w.copy() for w in model.get_weights()]
    monkeypatch.setenv(perturb.ENV, "1")
    images = cu.make_shapes(4, seed=6).images            # make_shapes applies it
    perturb.perturb_model(model)
    assert images.dtype == np.float32 and 0.0 <= images.min() and images.max() <= 1.0
    change = np.abs(images - clean_images)
    assert 0 < change.max() <= 1e-5 * clean_images.max()   # moved, by a few ulps at most
    for clean, moved in zip(clean_weights, model.get_weights(), strict=True):
        relative = np.abs(moved - clean) / np.maximum(np.abs(clean), 1e-30)
        assert relative.max() < 1e-5
    kernel = model.get_layer("conv1").kernel.numpy()
    assert not np.array_equal(kernel, clean_weights[0])


def test_the_same_seed_gives_the_same_perturbation(monkeypatch):
    monkeypatch.setenv(perturb.ENV, "2")
    a, b = cu.make_shapes(2, seed=8).images, cu.make_shapes(2, seed=8).images
    np.testing.assert_array_equal(a, b)
    monkeypatch.setenv(perturb.ENV, "3")
    assert not np.array_equal(a, cu.make_shapes(2, seed=8).images)


def test_a_loaded_course_model_is_perturbed(monkeypatch, no_perturbation):
    x = cu.make_shapes(4, seed=9).images
    clean = cu.models.predict_logits(cu.load_course_model("shapes_cnn"), x)
    monkeypatch.setenv(perturb.ENV, "1")
    moved = cu.models.predict_logits(cu.load_course_model("shapes_cnn"), x)
    assert not np.array_equal(clean, moved)
    np.testing.assert_allclose(moved, clean, rtol=1e-4, atol=1e-4)
