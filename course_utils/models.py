"""Models: the course CNN and its shipped weights, ImageNet models, and views of any classifier
that reach its logits and its inner layers without changing it.

Two habits of the seed study are fixed here. It explained the softmax output (whose gradient
vanishes when the model is confident) and it swapped the last activation *in place*, which changed
the model for good. :func:`logits_model` builds a second model over the same layers instead: the
weights are shared, the original is untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from . import perturb
from .errors import CourseError


def _shipped_data_dir() -> Path:
    """The shipped models: the repository's ``data/`` (a clone, an editable install), or the copy
    a regular install (the Colab path) puts inside the package as ``course_utils/_data``."""
    here = Path(__file__).resolve().parent
    packaged = here / "_data"
    return packaged if packaged.is_dir() else here.parent / "data"


DATA_DIR = Path(os.environ.get("COURSE_DATA_DIR") or _shipped_data_dir())
MANIFEST = "manifest.json"

# The shipped models: how each was trained is in course_utils/train.py.
COURSE_MODELS = {
    "shapes_cnn": "the course CNN, trained on the shapes data set",
    "shapes_cnn_cue": "the same CNN trained with a spurious cue: a checkerboard on every star",
    "shapes_cnn_shuffled": "the same CNN trained on shuffled labels: it learnt no shapes",
}
CUE_CLASS = "star"


# --- the course CNN -----------------------------------------------------------------------------

def build_course_cnn(n_classes: int = 6, input_shape=(64, 64, 3), name: str = "shapes_cnn"):
    """The course CNN: four conv blocks, global average pooling, logits, softmax.

    conv1-conv3 (16, 32, 64 filters, ReLU, He initialisation) are each followed by 2×2 max
    pooling; conv4 (128 filters) keeps 8×8 maps for CAM and Grad-CAM. ``gap`` averages each map
    to one number, ``logits`` is a dense layer with no activation (the pre-softmax scores), and
    ``probs`` is a separate softmax layer, so the logits are reachable by name.
    """
    from keras import layers

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate((16, 32, 64), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                          kernel_initializer="he_normal", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Conv2D(128, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                      name="conv4")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    logits = layers.Dense(n_classes, name="logits")(x)
    probs = layers.Softmax(name="probs")(logits)
    return keras.Model(inputs, probs, name=name)


def file_sha256(path) -> str:
    """The sha256 of a file, as hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(data_dir=None) -> dict:
    """The manifest of shipped models: file, sha256, size and measured accuracy of each."""
    path = Path(data_dir or DATA_DIR) / MANIFEST
    if not path.exists():
        raise CourseError(f"The model manifest {path} is missing. Restore data/ from the "
                          "repository (git checkout -- data) or rebuild the models with "
                          "`python -m course_utils.train`.")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        manifest = e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise CourseError(f"The model manifest {path} is damaged (not JSON with a \"models\" "
                          "table). Restore it with `git checkout -- data/manifest.json`, or "
                          "rebuild the models with `python -m course_utils.train`.")
    return manifest


def load_course_model(name: str = "shapes_cnn", *, data_dir=None):
    """Load a shipped course model, after checking its file against the manifest's sha256.

    Args:
        name: ``"shapes_cnn"``, ``"shapes_cnn_cue"`` or ``"shapes_cnn_shuffled"``.
        data_dir: the folder with the weights and manifest (default: the repository's ``data/``).

    Returns:
        The Keras model (outputs class probabilities; see :func:`logits_model`).
    """

    if name not in COURSE_MODELS:
        raise CourseError(f"Unknown course model {name!r}; the course ships "
                          f"{', '.join(COURSE_MODELS)}. For an ImageNet model use "
                          "load_imagenet_model().")
    data_dir = Path(data_dir or DATA_DIR)
    entry = read_manifest(data_dir)["models"].get(name)
    rebuild = f"Rebuild it with `python -m course_utils.train --model {name}` (a few minutes)."
    if entry is None:
        raise CourseError(f"{name} is not in {data_dir / MANIFEST}. {rebuild}")
    path = data_dir / entry["file"]
    if not path.exists():
        raise CourseError(f"The weights file {path} is missing. {rebuild}")
    if file_sha256(path) != entry["sha256"]:
        raise CourseError(f"The weights file {path} is corrupted (its sha256 differs from the "
                          f"manifest's). Restore it with `git checkout -- {path.name}` in data/, "
                          f"or: {rebuild}")
    # The architecture comes from build_course_cnn, only the weights from the file. A .keras
    # file's config is written by the Keras that saved it, and an older Keras can refuse a newer
    # one's config (Colab's Keras 3.13 rejects the `input_axes` that 3.15 writes for He
    # initialisation), while the stored weights read the same in every Keras 3.
    model = build_course_cnn(name=name)
    try:
        model.load_weights(path)
    except Exception as e:  # a file that passed the hash check but Keras cannot read
        raise CourseError(f"Keras could not read {path} ({type(e).__name__}): the file is "
                          "damaged (truncated?) although its sha256 matches the manifest, so the "
                          "manifest was written for the damaged file. Restore both with `git "
                          f"checkout -- data`, or: {rebuild}") from e
    return perturb.perturb_model(model)  # a no-op unless the test-only COURSE_PERTURB is set


# --- views of a model: logits and inner layers ---------------------------------------------------

def check_model(model, *, classifier: bool = True) -> None:
    """Raise a CourseError unless ``model`` is a Keras classifier the course's methods can take
    apart: a built Sequential or functional model with one image input (N, H, W, C) and one
    output of class scores (N, classes) (any output when ``classifier`` is false: a base model
    nested inside a classifier)."""
    from keras.src.models.functional import Functional

    if hasattr(model, "model") and hasattr(model, "preprocess"):        # an ImageNetModel
        raise CourseError("Pass the Keras model itself (imagenet.model), and its preprocessed "
                          "images (imagenet.preprocess(images)) with value_range=None.")
    if not isinstance(model, keras.Model):
        raise CourseError(f"model must be a Keras model (keras.Model); got {type(model).__name__}"
                          f" {model!r:.60}. Load one, e.g. cu.load_course_model().")
    if isinstance(model, keras.Sequential):
        try:
            model.inputs                                    # noqa: B018  (fails when unbuilt)
        except (AttributeError, ValueError) as e:
            raise CourseError("This Sequential model is not built yet: it does not know its "
                              "input size. Start it with keras.Input((H, W, C)), or call "
                              "model.build((None, H, W, C)).") from e
    elif not isinstance(model, Functional):
        raise CourseError(
            f"{type(model).__name__} is a subclassed keras.Model: its layers are called inside "
            "its own call() and cannot be reached from outside, so neither the logits nor a "
            "layer's feature maps can be read. Write the same layers with the functional API "
            "(x = keras.Input(...); ...; keras.Model(inputs, outputs)) or as a Sequential; "
            "the trained weights can then be copied layer by layer (set_weights).")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise CourseError(f"The course's methods explain a classifier with one image input and "
                          f"one output; this model has {len(model.inputs)} input(s) and "
                          f"{len(model.outputs)} outputs. Make a one-output view, e.g. "
                          "keras.Model(model.inputs, model.outputs[0]).")
    if classifier and (len(model.input_shape) != 4 or len(model.output_shape) != 2):
        raise CourseError(f"The course explains image classifiers: images (N, H, W, C) in, "
                          f"class scores (N, classes) out; this model takes {model.input_shape} "
                          f"and gives {model.output_shape}.")


def _output_layer(model):
    """The layer (or operation) that produces the model's (single) output."""

    if isinstance(model, keras.Sequential):
        return model.layers[-1]
    return model.outputs[0]._keras_history[0]


def _contains(model, name: str) -> bool:

    return any(layer.name == name or (isinstance(layer, keras.Model) and _contains(layer, name))
               for layer in model.layers)


def _rebuild(model, call):
    """A new functional graph over the *same* layers (weights shared), in which every top-level
    layer call goes through ``call(layer, *args, **kwargs)``."""

    if isinstance(model, keras.Sequential):
        # Keras cannot re-trace a Sequential model with a hook, so call its layers in order.
        x = inputs = keras.Input(model.input_shape[1:])
        for layer in model.layers:
            x = call(layer, x)
        return keras.Model(inputs, x)
    return keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)


SOFTMAX_NAMES = ("softmax", "softmax_v2")  # keras.activations.softmax, tf.nn.softmax


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def computes_softmax(fn, width) -> bool:
    """Whether ``fn`` (a layer, a Lambda, an operation) maps scores z (N, width) to softmax(z):
    tried on random scores, so a softmax written by hand (``keras.ops.softmax(z)``,
    ``Lambda(lambda z: tf.nn.softmax(z))``) is recognised too."""
    if isinstance(fn, keras.layers.Softmax):
        return True
    act = getattr(fn, "activation", getattr(fn, "function", None))
    if getattr(act, "__name__", None) in SOFTMAX_NAMES:
        return True
    if not isinstance(width, int) or width < 2:
        return False
    z = np.random.default_rng(0).normal(0, 3, (2, width)).astype(np.float32)
    try:
        y = keras.ops.convert_to_numpy(fn(keras.ops.convert_to_tensor(z)))
    except Exception:  # not a function of one tensor of scores: not a softmax
        return False
    return y.shape == z.shape and np.allclose(y, _softmax(z), atol=1e-5)


def _logit_call(layer, x, **kwargs):
    """Call the model's last layer, without its softmax."""

    act = getattr(layer, "activation", None)
    act_name = getattr(act, "__name__", str(act))
    if not isinstance(layer, keras.layers.Dense) and computes_softmax(layer, x.shape[-1]):
        return x                                 # the softmax's input is the logits
    if act is None or act_name == "linear":
        return layer(x, **kwargs)                # already logits (checked by _check_logits)
    if act_name in SOFTMAX_NAMES and isinstance(layer, keras.layers.Dense):
        return DenseWithoutActivation(layer)(x)
    raise CourseError(f"The model's last layer {layer.name!r} ({type(layer).__name__}) ends "
                      f"with the activation {act_name!r}, not a softmax; the course explains "
                      "the pre-softmax scores (logits) of a classifier. Give a model that ends "
                      "with a Dense layer (no activation, or a softmax), optionally followed by "
                      "a Softmax layer.")


class DenseWithoutActivation(keras.layers.Layer):
    """x W + b with the kernel and bias of an existing Dense layer (shared, not copied)."""

    def __init__(self, dense, **kwargs):
        super().__init__(name=f"{dense.name}_logits", **kwargs)
        self.dense = dense

    def call(self, x):
        y = keras.ops.matmul(x, self.dense.kernel)
        return y + self.dense.bias if self.dense.use_bias else y


def _softmax_operation_input(model):
    """For a functional model whose output is a softmax *operation* (``keras.ops.softmax(z)``,
    not a layer, so a rebuilt graph cannot hook it): the tensor z; else None."""
    if isinstance(model, keras.Sequential):
        return None
    op, node_index, _ = model.outputs[0]._keras_history
    if isinstance(op, keras.layers.Layer):
        return None
    inputs = op._inbound_nodes[node_index].input_tensors
    if len(inputs) == 1 and computes_softmax(op, inputs[0].shape[-1]):
        return inputs[0]
    return None


def _with_outputs(model, names: list[str], logits: bool):
    """A model over the same layers whose outputs are [*activations of names, final output],
    the final output being the logits when ``logits`` is true."""

    check_model(model, classifier=False)
    before_softmax = _softmax_operation_input(model) if logits else None
    if before_softmax is not None:                  # drop the softmax operation
        model = keras.Model(model.inputs[0], before_softmax)
    last, captured = _output_layer(model), {}

    def call(layer, *args, **kwargs):
        inside = [n for n in names if isinstance(layer, keras.Model) and _contains(layer, n)]
        if inside or (layer is last and logits and isinstance(layer, keras.Model)):
            sub = _with_outputs(layer, inside, logits=logits and layer is last)
            outs = sub(*args, **kwargs)
            outs = outs if isinstance(outs, list | tuple) else [outs]
            captured.update(zip(inside, outs[:-1], strict=True))
            out = outs[-1]
        elif layer is last and logits:
            out = _logit_call(layer, *args, **kwargs)
        else:
            out = layer(*args, **kwargs)
        if layer.name in names:
            captured[layer.name] = out
        return out

    rebuilt = _rebuild(model, call)
    missing = [n for n in names if n not in captured]
    if missing:
        raise CourseError(f"{missing[0]!r} is the model's input (or a layer off the path from "
                          "input to output), not a layer with activations to read; name a layer "
                          "after it, e.g. one from cu.models.conv_layer_names(model).")
    outputs = [captured[n] for n in names] + [rebuilt.outputs[0]]
    return keras.Model(rebuilt.inputs[0], outputs if names else outputs[0])


def _check_logits(view, model):
    """Raise a CourseError if the "logits" of ``view`` are still probabilities: every row of its
    output, on two random images, is >= 0 and sums to 1 (a softmax hidden inside a layer)."""
    shape = [64 if s is None else s for s in view.input_shape[1:]]
    x = np.random.default_rng(0).uniform(0, 1, (2, *shape)).astype(np.float32)
    out = view(x, training=False)
    out = keras.ops.convert_to_numpy(out[-1] if isinstance(out, list | tuple) else out)
    if out.shape[-1] >= 2 and out.min() >= 0 and np.allclose(out.sum(axis=-1), 1, atol=1e-4):
        raise CourseError(
            f"The output of {model.name!r} is already a probability (each row sums to 1) and "
            "the course could not find the softmax to remove: it hides inside its last layer "
            f"({_output_layer(model).name!r}). The course explains pre-softmax scores (logits): "
            "end the model with Dense(classes) and a separate keras.layers.Softmax(), or give "
            "a model that outputs its logits.")
    return view


def layer_names(model) -> list[str]:
    """Every layer's name, nested models' layers included (after their model's name)."""

    names = []
    for layer in model.layers:
        names.append(layer.name)
        if isinstance(layer, keras.Model):
            names.extend(layer_names(layer))
    return names


def check_layer_name(model, name: str) -> None:
    """Raise a CourseError naming the layers that exist, unless ``name`` is one of them."""
    check_model(model, classifier=False)
    names = layer_names(model)
    if name not in names:
        shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
        raise CourseError(f"This model has no layer {name!r}. Its layers are: {shown}.")


def logits_model(model):
    """A view of a classifier that outputs its pre-softmax scores (logits).

    Works when the model ends with a softmax however it is written (a ``Softmax`` or
    ``Activation("softmax")`` layer, a ``Lambda`` or a ``keras.ops.softmax`` operation that
    computes one, a ``Dense`` layer with a softmax activation) or with no activation; a model
    whose output is still a probability after that raises a CourseError. For Sequential and
    functional models, and for models nested inside them (a ``keras.applications`` base inside a
    Sequential). The view shares the original's weights; the original is not changed.
    """
    check_model(model)
    return _check_logits(_with_outputs(model, [], logits=True), model)


def feature_model(model, layer_names_: list[str] | str, *, logits: bool = True):
    """A view that outputs the activations of some layers and then the logits.

    Args:
        model: any single-input Keras classifier (Sequential, functional, or with a nested base).
        layer_names_: one layer name or a list; a layer inside a nested model is named as is
            (e.g. ``"Conv_1"`` inside MobileNetV2).
        logits: end with the logits (True) or the model's own output (False).

    Returns:
        A Keras model: ``feats..., logits = view(images)``, weights shared with ``model``.
    """
    names = [layer_names_] if isinstance(layer_names_, str) else list(layer_names_)
    check_model(model, classifier=logits)
    for name in names:
        check_layer_name(model, name)
    view = _with_outputs(model, names, logits=logits)
    return _check_logits(view, model) if logits else view


CONV_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


def conv_layer_names(model) -> list[str]:
    """Names of the convolution layers (nested ones included), input to output."""

    names = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            names.extend(conv_layer_names(layer))
        elif isinstance(layer, CONV_LAYERS):
            names.append(layer.name)
    return names


PIXELS_PER_BATCH = 256 * 64 * 64   # 256 of the course's images; 20 at 224 × 224 px


def predict_logits(model, images, batch_size: int | None = None):
    """Logits of a batch, as a NumPy array (N, classes).

    ``batch_size`` (images per forward pass) defaults to about a million pixels' worth: 256
    images at 64 × 64 px, 20 at 224 × 224. A forward pass called eagerly keeps every layer's
    output until it ends, so a fixed 256 would need over 10 GB on EfficientNet-Lite0 at 224 px.
    """

    from .checks import as_image_batch, check_batch_size

    images = as_image_batch(images, model, value_range=None)
    if batch_size is None:
        batch_size = max(1, PIXELS_PER_BATCH // (images.shape[1] * images.shape[2]))
    batch_size, view = check_batch_size(batch_size), logits_model(model)
    return np.concatenate([view(images[i:i + batch_size], training=False).numpy()
                           for i in range(0, len(images), batch_size)])


def accuracy(model, images, labels) -> float:
    """Share of images whose highest logit is the label."""
    return float(np.mean(predict_logits(model, images).argmax(axis=1) == labels))


# --- ImageNet models ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageNetModel:
    """An ImageNet classifier with what it needs around it.

    Attributes:
        model: the Keras model (outputs softmax probabilities).
        preprocess: maps float images in [0, 1] (N, H, W, 3) to the model's input range.
        decode: maps a batch of scores to the top class names, [(class id, name, score), ...].
        input_size: (height, width).
    """

    model: object
    preprocess: object
    decode: object
    input_size: tuple[int, int]


IMAGENET = {  # name: (constructor, module, input side, weights file keras.applications caches)
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2", 224,
                     "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"),
    "xception": ("Xception", "xception", 299, "xception_weights_tf_dim_ordering_tf_kernels.h5"),
}
OFFLINE_IMAGENET = ("efficientnet_lite0",)  # weights from an installed package (course_utils.lite0)
WEIGHTS_HOST = ("storage.googleapis.com", 443)
CLASS_INDEX_FILE = "imagenet_class_index.json"


def _keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _require_download(files: list[str], timeout: float) -> None:
    """Fail fast, with a CourseError, when files must be downloaded and the host cannot be
    reached. Without this, an offline download can hang for minutes."""
    missing = [f for f in files if not (_keras_cache() / f).exists()]
    if not missing:
        return
    try:
        socket.create_connection(WEIGHTS_HOST, timeout=timeout).close()
    except OSError as e:
        raise CourseError(
            f"No network: the ImageNet weights ({missing[0]}) are not in {_keras_cache()} and "
            f"{WEIGHTS_HOST[0]} cannot be reached ({type(e).__name__}). Run this notebook where "
            "there is internet (Colab, a laptop online) once, or copy the file into that "
            "folder. The rest of the course runs offline on the shapes models.") from e


def _load_efficientnet_lite0(weights: str | None, size: int = 224) -> ImageNetModel:
    """EfficientNet-Lite0 from the installed weights package (no network), or random weights, for
    ``size``×``size`` images (the weights fit any size; 224 is the one it was trained at)."""
    from . import lite0
    from .checks import as_image_batch

    if weights not in ("imagenet", None):
        raise CourseError(f"weights must be 'imagenet' or None; got {weights!r}.")
    if weights is None:
        model = lite0.build_efficientnet_lite0((size, size, 3))
    else:  # perturb: a no-op unless testing
        model = perturb.perturb_model(lite0.load_efficientnet_lite0((size, size, 3)))

    def preprocess(images):
        """Checks images in [0, 1] of the model's size and returns them as they are (a float32
        batch): the model scales them itself, in its ``normalize`` layer."""
        return as_image_batch(images, model)

    return ImageNetModel(model, preprocess, lite0.decode, (size, size))


def load_imagenet_model(name: str = "mobilenet_v2", *, weights: str | None = "imagenet",
                        timeout: float = 5.0, size: int | None = None) -> ImageNetModel:
    """An ImageNet classifier, its preprocessing and its label decoder.

    ``"efficientnet_lite0"`` works offline: its weights come from an installed package and are
    converted at first use (see :mod:`course_utils.lite0`); it takes images in [0, 1], so its
    ``preprocess`` only checks them. The ``keras.applications`` models download their weights;
    offline, they raise a CourseError within ``timeout`` seconds (plus a little) instead of
    hanging. ``weights=None`` builds the same architecture with random weights and needs no
    network: the tests use it.

    Args:
        name: ``"efficientnet_lite0"`` (224×224, offline), ``"mobilenet_v2"`` (224×224, fast) or
            ``"xception"`` (299×299, as in the seed study).
        weights: ``"imagenet"`` or None.
        timeout: seconds to wait for the weights' host before giving up.
        size: EfficientNet-Lite0 only: build it for size×size images (default 224). A smaller
            size makes gradient ascent on the input cheaper (notebook 05).
    """
    import importlib

    if name in OFFLINE_IMAGENET:
        return _load_efficientnet_lite0(weights, 224 if size is None else int(size))
    if size is not None:
        raise CourseError(f"size is for efficientnet_lite0 only; {name} takes its own size.")
    if name not in IMAGENET:
        raise CourseError(f"Unknown ImageNet model {name!r}; choose one of "
                          f"{', '.join(OFFLINE_IMAGENET + tuple(IMAGENET))}.")
    constructor, module_name, side, weights_file = IMAGENET[name]
    module = importlib.import_module(f"keras.applications.{module_name}")
    if weights is not None:
        _require_download([weights_file, CLASS_INDEX_FILE], timeout)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(max(timeout, 30.0))  # a stalled download errors instead of hanging
    try:
        model = getattr(keras.applications, constructor)(weights=weights)
        if weights is not None:
            index_url = keras.applications.imagenet_utils.CLASS_INDEX_PATH
            keras.utils.get_file(CLASS_INDEX_FILE, index_url, cache_subdir="models")
    except Exception as e:  # keras.utils.get_file wraps a failed download in a bare Exception
        raise CourseError(f"Downloading the {name} weights failed ({type(e).__name__}: {e}). "
                          "The host answered, but the download did not go through (a proxy, a "
                          "firewall, a captive portal?). Check the network, or use "
                          "load_imagenet_model('efficientnet_lite0') or the shapes models, "
                          "which need none.") from e
    finally:
        socket.setdefaulttimeout(previous)

    def preprocess(images):
        """Images in [0, 1] to the model's input range ([-1, 1] for both models)."""
        return module.preprocess_input(np.asarray(images, np.float32) * 255.0)

    def decode(scores, top: int = 5):
        """The ``top`` classes of each image: [(class id, name, score), ...] per image."""
        _require_download([CLASS_INDEX_FILE], timeout)
        return module.decode_predictions(np.asarray(scores), top=top)

    return ImageNetModel(model, preprocess, decode, (side, side))
