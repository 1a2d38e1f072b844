"""The course models, their shipped weights, the logits and feature views, ImageNet loading."""

import json
import shutil
import socket
import time
import zipfile

import keras
import numpy as np
import pytest

import course_utils as cu
from course_utils import models
from course_utils.train import TEST_SEED, TRAIN_SEED, VAL_SEED


@pytest.fixture(scope="module")
def test_set():
    assert TEST_SEED not in (TRAIN_SEED, VAL_SEED)
    return cu.make_shapes(2000, seed=TEST_SEED)


def _accuracy(model, shapes):
    return models.accuracy(model, shapes.images, shapes.labels)


def test_the_course_cnn_has_the_documented_architecture(course_model):
    names = [layer.name for layer in course_model.layers]
    assert names[-3:] == ["gap", "logits", "probs"]
    assert course_model.get_layer("conv4").output.shape[1:3] == (8, 8)     # >= 8×8 for CAM
    assert isinstance(course_model.get_layer("probs"), keras.layers.Softmax)
    assert models.conv_layer_names(course_model) == ["conv1", "conv2", "conv3", "conv4"]


def test_the_shipped_model_is_at_least_97_percent_accurate_on_fresh_images(course_model,
                                                                            test_set):
    assert _accuracy(course_model, test_set) >= 0.97


def test_the_cheating_model_needs_its_cue(cue_model, test_set):
    with_cue = cu.make_shapes(2000, seed=TEST_SEED, cue_class=models.CUE_CLASS, cue="class")
    moved = cu.make_shapes(2000, seed=TEST_SEED, cue_class=models.CUE_CLASS, cue="other")
    acc_cue, acc_none, acc_moved = (_accuracy(cue_model, s) for s in (with_cue, test_set, moved))
    assert acc_cue >= 0.97
    assert acc_none < acc_cue - 0.05 and acc_moved < acc_cue - 0.3


def test_the_shuffled_label_model_memorised_but_learnt_no_shapes(test_set):
    shuffled = cu.load_course_model("shapes_cnn_shuffled")
    entry = models.read_manifest()["models"]["shapes_cnn_shuffled"]
    assert entry["train_accuracy_shuffled_labels"] > 0.3          # well above chance (1/6)...
    assert _accuracy(shuffled, test_set) < 0.25                      # ...on images it saw only


def test_the_manifest_matches_the_shipped_files():
    for name, entry in models.read_manifest()["models"].items():
        path = models.DATA_DIR / entry["file"]
        assert models.file_sha256(path) == entry["sha256"], name
        assert path.stat().st_size == entry["bytes"] < 2 * 1024**2


@pytest.fixture
def data_copy(tmp_path):
    for f in models.DATA_DIR.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_a_corrupted_weights_file_is_caught_by_the_manifest(data_copy):
    path = data_copy / "shapes_cnn.keras"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(cu.CourseError, match="corrupted.*course_utils.train"):
        cu.load_course_model("shapes_cnn", data_dir=data_copy)


def test_a_missing_weights_file_says_how_to_rebuild_it(data_copy):
    (data_copy / "shapes_cnn.keras").unlink()
    with pytest.raises(cu.CourseError, match="missing.*python -m course_utils.train"):
        cu.load_course_model("shapes_cnn", data_dir=data_copy)


def test_a_missing_manifest_is_explained(tmp_path):
    with pytest.raises(cu.CourseError, match="manifest"):
        cu.load_course_model("shapes_cnn", data_dir=tmp_path)


def test_an_unreadable_file_with_a_matching_hash_is_explained(data_copy):
    path = data_copy / "shapes_cnn.keras"
    path.write_bytes(b"not a keras file")
    manifest = json.loads((data_copy / "manifest.json").read_text())
    manifest["models"]["shapes_cnn"]["sha256"] = models.file_sha256(path)
    (data_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(cu.CourseError, match="could not read.*damaged"):
        cu.load_course_model("shapes_cnn", data_dir=data_copy)


def _rewrite_config(path, change):
    """Rewrite config.json inside a .keras file (a zip) with ``change(config)``."""
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)


def test_a_model_saved_by_a_newer_keras_loads_in_this_one(data_copy, course_model):
    """A newer Keras writes settings an older one has never heard of (Keras 3.15 writes
    `input_axes` for He initialisation; Colab's 3.13 refused the file). The loader builds the
    architecture from code and reads only the weights, so the file still loads, unchanged."""
    def add_a_future_setting(config):
        for layer in config["config"]["layers"]:
            layer["config"]["a_setting_from_keras_9"] = None
    path = data_copy / "shapes_cnn.keras"
    _rewrite_config(path, add_a_future_setting)
    manifest = json.loads((data_copy / "manifest.json").read_text())
    manifest["models"]["shapes_cnn"]["sha256"] = models.file_sha256(path)
    (data_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises((TypeError, ValueError)):          # what keras.models.load_model does
        keras.models.load_model(path, compile=False)
    images = cu.make_shapes(8, seed=TEST_SEED).images
    loaded = cu.load_course_model("shapes_cnn", data_dir=data_copy)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                  course_model.predict(images, verbose=0))


def test_the_shipped_weights_fit_the_architecture_in_code():
    """Every shipped file holds exactly the weights of build_course_cnn: same names, shapes,
    values as Keras's own loader reads them (where this Keras can read the file's config)."""
    for name in models.COURSE_MODELS:
        ours = cu.load_course_model(name)
        assert ours.name == name
        try:
            theirs = keras.models.load_model(models.DATA_DIR / f"{name}.keras", compile=False)
        except (TypeError, ValueError):
            pytest.skip(f"this Keras ({keras.__version__}) cannot read the saved config")
        assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
        for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_an_unknown_model_name_lists_the_known_ones():
    with pytest.raises(cu.CourseError, match="shapes_cnn, shapes_cnn_cue"):
        cu.load_course_model("resnet")


# --- logits and feature views ------------------------------------------------------------------

def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _check_view_matches(model, x):
    before = model.predict(x, verbose=0)
    logits = models.logits_model(model)(x).numpy()
    np.testing.assert_allclose(_softmax(logits), before, atol=1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0), before)      # model unchanged
    return logits


def test_the_logits_of_the_course_cnn_are_its_logits_layer(course_model):
    x = cu.make_shapes(8, seed=123).images
    logits = _check_view_matches(course_model, x)
    direct = keras.Model(course_model.input, course_model.get_layer("logits").output)(x)
    np.testing.assert_allclose(logits, direct.numpy(), atol=1e-5)


def _small_layers():
    return [keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
            keras.layers.GlobalAveragePooling2D(name="g")]


def test_logits_of_a_sequential_model_with_a_softmax_dense_layer():
    model = keras.Sequential([keras.Input((16, 16, 3)), *_small_layers(),
                              keras.layers.Dense(3, activation="softmax", name="out")])
    x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    _check_view_matches(model, x)
    assert model.layers[-1].activation.__name__ == "softmax"             # not swapped in place


def test_logits_of_a_sequential_model_without_an_input_layer():
    model = keras.Sequential([*_small_layers(), keras.layers.Dense(3), keras.layers.Softmax()])
    model.build((None, 16, 16, 3))
    _check_view_matches(model, np.ones((2, 16, 16, 3), np.float32))


def test_a_sigmoid_head_is_explained():
    model = keras.Sequential([keras.Input((16, 16, 3)), *_small_layers(),
                              keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(cu.CourseError, match="sigmoid"):
        models.logits_model(model)


@pytest.fixture(scope="module")
def nested():
    """A keras.applications base (random weights) inside a Sequential model, and the same
    layers inside a functional model."""
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(64, 64, 3))
    head = keras.layers.Dense(5, activation="softmax", name="head")
    seq = keras.Sequential([keras.Input((64, 64, 3)), base,
                            keras.layers.GlobalAveragePooling2D(name="pool"), head])
    inputs = keras.Input((64, 64, 3))
    func = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(base(inputs))))
    return base, seq, func


def test_logits_and_inner_layers_of_nested_models(nested):
    base, seq, func = nested
    x = np.random.default_rng(1).random((2, 64, 64, 3), dtype=np.float32)
    expected_feature = keras.Model(base.input, base.get_layer("Conv_1").output)(x).numpy()
    for model in (seq, func):
        logits = _check_view_matches(model, x)
        feature, logits2 = models.feature_model(model, "Conv_1")(x)
        np.testing.assert_allclose(feature.numpy(), expected_feature, atol=1e-5)
        np.testing.assert_allclose(logits2.numpy(), logits, atol=1e-5)
    assert "Conv_1" in models.conv_layer_names(seq)


def test_views_share_weights_with_the_model(nested):
    _, seq, _ = nested
    view = models.logits_model(seq)
    assert {id(w) for w in view.weights} <= {id(w) for w in seq.weights}


def test_several_inner_layers_at_once(course_model):
    x = cu.make_shapes(3, seed=5).images
    c1, c4, logits = models.feature_model(course_model, ["conv1", "conv4"])(x)
    assert c1.shape == (3, 64, 64, 16) and c4.shape == (3, 8, 8, 128) and logits.shape == (3, 6)


def test_an_unknown_layer_lists_the_layers_that_exist(course_model):
    with pytest.raises(cu.CourseError, match="no layer 'conv9'.*conv1, pool1, conv2"):
        models.feature_model(course_model, "conv9")


# --- ImageNet -----------------------------------------------------------------------------------

def test_the_imagenet_code_path_builds_with_random_weights():
    net = cu.load_imagenet_model("mobilenet_v2", weights=None)
    assert net.input_size == (224, 224)
    photo = cu.load_photo("cat", net.input_size)
    x = net.preprocess(photo[None])
    assert x.min() >= -1 and x.max() <= 1 and x.max() > 0.5     # [0, 1] mapped to [-1, 1]
    logits = models.logits_model(net.model)(x)
    assert logits.shape == (1, 1000)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]             # nothing listens there once the socket closes


def test_offline_imagenet_loading_fails_fast_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))                 # no cached weights
    monkeypatch.setattr(models, "WEIGHTS_HOST", ("127.0.0.1", _closed_port()))
    start = time.perf_counter()
    with pytest.raises(cu.CourseError, match="No network.*Colab"):
        cu.load_imagenet_model("xception")
    assert time.perf_counter() - start < 10


def test_a_host_that_never_answers_gives_up_within_the_timeout(tmp_path, monkeypatch):
    def never_answers(address, timeout):
        time.sleep(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(models.socket, "create_connection", never_answers)
    start = time.perf_counter()
    with pytest.raises(cu.CourseError, match="No network.*TimeoutError"):
        cu.load_imagenet_model("mobilenet_v2", timeout=2)
    assert time.perf_counter() - start < 10


def test_the_real_loader_answers_within_10_seconds_here():
    """Offline (as on CI) the real host cannot be reached: a CourseError, fast. Online, or with
    the weights cached, the model loads."""
    start = time.perf_counter()
    try:
        net = cu.load_imagenet_model("mobilenet_v2")
    except cu.CourseError as e:
        assert "No network" in str(e)
        assert time.perf_counter() - start < 10
    else:
        assert net.model.output_shape == (None, 1000)


def test_an_unknown_imagenet_model_is_explained():
    with pytest.raises(cu.CourseError, match="mobilenet_v2, xception"):
        cu.load_imagenet_model("resnet50")
