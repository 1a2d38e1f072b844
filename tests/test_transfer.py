"""Transfer learning on an image folder: writing the folder, caching features, fitting the head,
and the errors a user's own folder can cause. A tiny base (one convolution) keeps the tests
fast; one test nests the real EfficientNet-Lite0 base and runs Grad-CAM through it."""

import keras
import numpy as np
import pytest

import course_utils as cu
from course_utils import transfer
from course_utils.errors import CourseError

SIZE = 40
NAMES = ("blue", "red")


def _tiny_base():
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv")(inputs)
    return keras.Model(inputs, x, name="tiny_base")


def _colours(n_per_class=(8, 8), seed=0):
    """Noisy images, reddish for class 1 and bluish for class 0: separable by colour."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(n_per_class)), n_per_class)
    images = rng.uniform(0.2, 0.5, (len(labels), SIZE, SIZE, 3)).astype(np.float32)
    images[labels == 0, ..., 2] += 0.4
    images[labels == 1, ..., 0] += 0.4
    return images, labels


@pytest.fixture
def base():
    keras.utils.set_random_seed(0)
    return _tiny_base()


@pytest.fixture
def folder(tmp_path):
    images, labels = _colours()
    transfer.write_image_folder(tmp_path / "set", images, labels, NAMES)
    return tmp_path / "set"


def test_a_written_folder_reads_back_as_the_arrays(tmp_path):
    images, labels = _colours((3, 2))
    paths = transfer.write_image_folder(tmp_path / "f", images, labels, NAMES)
    assert [p.parent.name for p in paths] == ["blue"] * 3 + ["red"] * 2
    back = cu.data.load_image_folder(tmp_path / "f")
    assert back.class_names == NAMES
    np.testing.assert_array_equal(back.labels, labels)
    np.testing.assert_allclose(back.images, images, atol=0.5 / 255 + 1e-6)   # 8-bit PNG


def test_writing_refuses_a_full_folder_bad_labels_and_bad_names(folder, tmp_path):
    images, labels = _colours((2, 2))
    with pytest.raises(CourseError, match="not empty"):
        transfer.write_image_folder(folder, images, labels, NAMES)
    with pytest.raises(CourseError, match="class names"):
        transfer.write_image_folder(tmp_path / "a", images, labels + 1, NAMES)
    with pytest.raises(CourseError, match="distinct"):
        transfer.write_image_folder(tmp_path / "b", images, labels, ("x", "x"))
    with pytest.raises(CourseError, match="one per image"):
        transfer.write_image_folder(tmp_path / "c", images, labels[:3], NAMES)


def test_cached_features_are_the_pooled_output_of_the_base(folder, base):
    data, cached = transfer.cache_features(folder, base)
    want = base.predict(data.images, verbose=0).mean(axis=(1, 2))
    np.testing.assert_allclose(cached.features, want, rtol=1e-5, atol=1e-6)
    assert cached.class_names == NAMES and len(cached.labels) == 16


def test_the_head_learns_and_the_model_nests_the_frozen_base(folder, base):
    before = [w.copy() for w in base.get_weights()]
    data, cached = transfer.cache_features(folder, base)
    result = transfer.train_head(cached, base)
    model = result.model
    assert model.get_layer("tiny_base") is base and not base.trainable
    for a, b in zip(before, base.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # the model's logits are the head applied to the cached features
    kernel, bias = model.get_layer("logits").get_weights()
    logits = cu.models.predict_logits(model, data.images)
    np.testing.assert_allclose(logits, cached.features @ kernel + bias, rtol=1e-4, atol=1e-4)
    assert cu.models.accuracy(model, data.images[result.val], data.labels[result.val]) == 1.0
    # and a method of the course accepts it
    maps = cu.cam.grad_cam(model, data.images[:2])
    assert maps.shape == (2, SIZE, SIZE) and np.isfinite(maps).all()


def test_the_split_keeps_each_class_in_validation():
    labels = np.repeat([0, 1, 2], [20, 8, 2])
    train, val = transfer.split(labels, 0.25, seed=1)
    assert np.bincount(labels[val]).tolist() == [5, 2, 1]
    assert sorted(np.r_[train, val].tolist()) == list(range(30))
    with pytest.raises(CourseError, match="at least two"):
        transfer.split(np.array([0, 0, 1]), 0.25)


def test_a_folder_with_one_class_is_refused(tmp_path, base):
    images, labels = _colours((4,))
    transfer.write_image_folder(tmp_path / "one", images, labels, ("only",))
    with pytest.raises(CourseError, match="one class"):
        transfer.cache_features(tmp_path / "one", base)
    with pytest.raises(CourseError, match="two classes"):
        transfer.build_classifier(base, 1)


def test_images_too_small_for_the_network_are_refused(tmp_path, base):
    images, labels = _colours((2, 2))
    transfer.write_image_folder(tmp_path / "small", images[:, :20, :20], labels, NAMES)
    with pytest.raises(CourseError, match="20×20 pixels"):
        transfer.cache_features(tmp_path / "small", base)


def test_a_folder_changed_after_caching_is_refused(folder, base):
    data, cached = transfer.cache_features(folder, base)
    (folder / "red" / "red_0015.png").unlink()
    with pytest.raises(CourseError, match="changed after"):
        transfer.train_head(cached, base)


def test_unbalanced_classes_are_named_and_counted_per_class():
    text = transfer.balance_report(np.repeat([0, 1], [30, 5]), NAMES)
    assert text.startswith("Unbalanced") and "6×" in text and "per-class" in text
    assert transfer.balance_report(np.repeat([0, 1], [6, 5]), NAMES).startswith("Classes of")
    matrix = transfer.confusion_matrix([0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 0, 1], 3)
    assert matrix.tolist() == [[3, 1, 0], [1, 1, 0], [0, 0, 0]]
    acc = transfer.per_class_accuracy(matrix)
    assert acc[:2].tolist() == [0.75, 0.5] and np.isnan(acc[2])


def test_marker_ratio_known_answers():
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, 0, 0] = 1.0                       # everything on a one-pixel mask: 16× its area
    maps[1] = 1.0                             # spread evenly: 1
    masks = np.zeros((2, 4, 4), bool)
    masks[:, 0, 0] = True
    np.testing.assert_allclose(transfer.marker_ratio(maps, masks), [16, 1])


def test_the_exercise_check_tells_right_from_wrong(capsys):
    from course_utils.metrics import energy

    transfer.check_marker_exercise(transfer.marker_ratio)
    assert capsys.readouterr().out.startswith("correct")
    transfer.check_marker_exercise(energy)
    assert "divide by the mask's share" in capsys.readouterr().out
    transfer.check_marker_exercise(lambda m, k: transfer.marker_ratio(np.abs(m), k))
    assert "absolute value" in capsys.readouterr().out
    transfer.check_marker_exercise(lambda m, k: np.zeros(1))
    assert "one number per map" in capsys.readouterr().out


def test_the_lite0_base_nests_and_grad_cam_reaches_inside():
    base = transfer.lite0_base(64)
    model = transfer.build_classifier(base, 3)
    assert cu.cam.last_conv_layer(model) == "head_conv"
    maps = cu.cam.grad_cam(model, np.full((1, 64, 64, 3), 0.5, np.float32), 0)
    assert maps.shape == (1, 64, 64) and np.isfinite(maps).all()
