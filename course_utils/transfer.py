"""Transfer learning on your own image folder: a frozen ImageNet network with a new head.

The recipe of the seed study (an ImageNet CNN, a new classifier on top, six classes in a folder)
in four calls, each checking what a user's own data can get wrong:

1. :func:`write_image_folder` writes arrays as ``folder/<class>/<image>.png`` (the course uses it
   to make a folder offline; your own data is such a folder already);
2. :func:`cache_features` reads the folder, runs the frozen base once per image and keeps the
   global-average-pooled features with a fingerprint of the folder's files;
3. :func:`train_head` fits a Dense + softmax head on the cached features (a logistic
   regression: a second, not the minutes a pass through the base per epoch would take) and
   refuses to train if the folder changed since the features were cached;
4. the result is one Keras model, ``image → base (nested) → gap → logits → probs``, that every
   method of the course accepts, with the base's own preprocessing inside it: the images you
   train on and the images you explain go through the same layers (the seed study explained
   images preprocessed differently from those it trained on).

Training on cached features is exact, not an approximation: the base is frozen and runs in
inference mode (batch norm with its stored statistics), so its pooled output for an image is the
same number at every epoch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from .checks import as_image_batch
from .data import IMAGE_SUFFIXES, ImageFolder, load_image_folder
from .errors import CourseError

MIN_SIDE = 32          # Lite0 halves the image five times: a smaller image leaves no 1×1 map
UNBALANCED_RATIO = 3   # largest class / smallest class from which the course says "unbalanced"


# --- a folder from arrays -----------------------------------------------------------------------

def write_image_folder(folder, images, labels, class_names) -> list[Path]:
    """Write images as PNG files in ``folder/<class name>/<class name>_<index>.png``.

    Args:
        folder: the folder to create; it must not exist or be empty.
        images: float (N, H, W, 3) in [0, 1].
        labels: int (N,), indices into ``class_names``.
        class_names: one name per class; each becomes a subfolder.

    Returns:
        The files written, in the order of ``images``.
    """
    from skimage.io import imsave
    from skimage.util import img_as_ubyte

    x = as_image_batch(images)
    y = np.asarray(labels)
    names = [str(n) for n in class_names]
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise CourseError(f"labels must be {len(x)} class indices, one per image; got shape "
                          f"{y.shape} of {y.dtype}.")
    if y.min() < 0 or y.max() >= len(names):
        raise CourseError(f"labels run from {y.min()} to {y.max()}, but there are "
                          f"{len(names)} class names.")
    bad = [n for n in names if not n or n.startswith(".") or "/" in n or "\\" in n]
    if bad or len(set(names)) != len(names):
        raise CourseError(f"Class names become folder names: they must be distinct, non-empty, "
                          f"without slashes or a leading dot; got {names}.")
    root = Path(folder)
    if root.exists() and any(root.iterdir()):
        raise CourseError(f"{root} exists and is not empty; choose a new folder, or empty it.")
    paths = []
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        path = root / names[label] / f"{names[label]}_{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        imsave(path, img_as_ubyte(np.clip(image, 0, 1)), check_contrast=False)
        paths.append(path)
    return paths


# --- what is in a folder -------------------------------------------------------------------------

def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def folder_fingerprint(folder) -> str:
    """A sha256 over the folder's image files: their paths and bytes. Any file added, removed,
    renamed or changed gives another fingerprint."""
    root = Path(folder)
    digest = hashlib.sha256()
    for path in _image_files(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def check_image_sizes(folder, min_side: int = MIN_SIDE) -> None:
    """Raise a CourseError if an image in the folder is smaller than ``min_side`` pixels.

    Only the files' headers are read (Pillow), so this is quick. An image blown up from a few
    pixels to 224 holds no more detail than before: the network sees a blur.
    """
    from PIL import Image

    for path in _image_files(Path(folder)):
        with Image.open(path) as image:
            width, height = image.size
        if min(width, height) < min_side:
            raise CourseError(f"{path} is {width}×{height} pixels; the network needs at least "
                              f"{min_side} on each side (it halves the image five times). Remove "
                              "the small images, or collect larger ones.")


def balance_report(labels, class_names) -> str:
    """One sentence on the class sizes; it says when they are unbalanced (≥ 3× apart), which is
    when the overall accuracy hides how the small classes do."""
    counts = np.bincount(np.asarray(labels), minlength=len(class_names))
    sizes = ", ".join(f"{n} {c}" for n, c in zip(class_names, counts, strict=True))
    big, small = int(np.argmax(counts)), int(np.argmin(counts))
    if counts[big] >= UNBALANCED_RATIO * counts[small]:
        return (f"Unbalanced classes ({sizes}): {class_names[big]} has "
                f"{counts[big] / counts[small]:.0f}× the images of {class_names[small]}. The "
                "overall accuracy mostly measures the large classes: read the per-class "
                "accuracy.")
    return f"Classes of similar sizes ({sizes})."


# --- the model ---------------------------------------------------------------------------------

def lite0_base(size: int = 224):
    """EfficientNet-Lite0 (ImageNet weights) up to its last convolution block, ``head_relu``
    (7×7×1280 at 224 px), as a Keras model named ``lite0_base``. It takes images in [0, 1]."""
    from . import perturb
    from .lite0 import load_efficientnet_lite0

    full = perturb.perturb_model(load_efficientnet_lite0((size, size, 3)))  # no-op unless testing
    return keras.Model(full.input, full.get_layer("head_relu").output, name="lite0_base")


def build_classifier(base, n_classes: int):
    """``image → base → gap → logits (Dense) → probs (Softmax)``, with ``base`` nested and frozen.

    Args:
        base: a Keras model from images to a feature map (H', W', C), e.g. :func:`lite0_base`.
        n_classes: the number of classes, at least 2.

    Returns:
        An uncompiled Keras model that outputs class probabilities.
    """
    if int(n_classes) < 2:
        raise CourseError(f"A classifier needs at least two classes; got {n_classes}. Put one "
                          "subfolder per class in the folder.")
    base.trainable = False
    inputs = keras.Input(base.input_shape[1:], name="image")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(base(inputs, training=False))
    logits = keras.layers.Dense(int(n_classes), name="logits")(x)
    return keras.Model(inputs, keras.layers.Softmax(name="probs")(logits), name="transfer")


# --- cached features ----------------------------------------------------------------------------

@dataclass(frozen=True)
class CachedFeatures:
    """The base's pooled features of every image of a folder.

    Attributes:
        features: float32 (N, C), the global average of the base's output.
        labels: int64 (N,).
        class_names: the subfolder names.
        folder: where the images were read.
        fingerprint: :func:`folder_fingerprint` when they were read.
    """

    features: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    folder: Path
    fingerprint: str = field(repr=False)


def cache_features(folder, base, *, batch_size: int = 32) -> tuple[ImageFolder, CachedFeatures]:
    """Read a class-per-subfolder folder at the base's input size and compute its features once.

    Args:
        folder: ``folder/<class>/<image>``, at least two classes.
        base: the frozen base (e.g. :func:`lite0_base`); its input size sets the image size.
        batch_size: images per forward pass.

    Returns:
        The images (to explain later) and their :class:`CachedFeatures`.
    """
    root = Path(folder)
    check_image_sizes(root)
    fingerprint = folder_fingerprint(root)
    data = load_image_folder(root, size=tuple(base.input_shape[1:3]))
    if len(data.class_names) < 2:
        raise CourseError(f"{root} holds one class ({data.class_names[0]}); a classifier needs "
                          "at least two subfolders, one per class.")
    maps = base.predict(data.images, batch_size=batch_size, verbose=0)
    features = np.asarray(maps, np.float32).mean(axis=(1, 2))
    return data, CachedFeatures(features, data.labels, data.class_names, root, fingerprint)


# --- training the head --------------------------------------------------------------------------

def split(labels, val_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split: the same share of each class in validation (at least one image).

    Returns:
        (train indices, validation indices), each sorted.
    """
    y = np.asarray(labels)
    if not 0 < val_fraction < 1:
        raise CourseError(f"val_fraction must lie between 0 and 1; got {val_fraction}.")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < 2:
            raise CourseError(f"Class {c} has {len(idx)} image; each class needs at least two "
                              "(one to train on, one to validate).")
        val.extend(idx[:max(1, round(val_fraction * len(idx)))])
    val = np.sort(np.array(val, np.int64))
    return np.setdiff1d(np.arange(len(y)), val), val


@dataclass
class Transfer:
    """A trained transfer-learning classifier and how it was trained.

    Attributes:
        model: ``image → base → gap → logits → probs``; every course method accepts it.
        train, val: indices into the folder's images.
        class_names: the classes, in label order.
    """

    model: keras.Model
    train: np.ndarray
    val: np.ndarray
    class_names: tuple[str, ...]


def fit_head(features, labels, n_classes: int, *, l2: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A softmax head fitted to features: multinomial logistic regression with an L2 penalty
    (scikit-learn's L-BFGS, run to a tight tolerance: the problem is strictly convex, so the
    answer is the one optimum, whatever the start; with scikit-learn's default tolerance the
    logits moved by 0.02 when the features moved in their last bits, enough to flip a
    prediction).

    Returns:
        (kernel (C, n_classes), bias (n_classes,)) for a Dense layer.
    """
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(labels)) != n_classes:
        raise CourseError(f"The training images hold {len(np.unique(labels))} of the "
                          f"{n_classes} classes; every class needs training images.")
    fit = LogisticRegression(C=1.0 / l2, tol=1e-10, max_iter=10_000).fit(features, labels)
    kernel, bias = fit.coef_.T, fit.intercept_
    if kernel.shape[1] == 1:      # two classes: scikit-learn keeps one logit, z for class 1
        kernel, bias = np.hstack([np.zeros_like(kernel), kernel]), np.r_[0.0, bias]
    return kernel.astype(np.float32), bias.astype(np.float32)


def train_head(cached: CachedFeatures, base, *, val_fraction: float = 0.25, l2: float = 1.0,
               seed: int = 0) -> Transfer:
    """Split the images, fit a Dense + softmax head on the training part's cached features and
    return the whole model.

    Args:
        cached: from :func:`cache_features`; its folder must not have changed since.
        base: the base the features came from; it is nested, frozen, in the returned model.
        val_fraction: the share of each class kept for validation.
        l2: the weight of the L2 penalty on the head's kernel.
        seed: the split's seed.

    Returns:
        A :class:`Transfer`.
    """
    if folder_fingerprint(cached.folder) != cached.fingerprint:
        raise CourseError(f"The images in {cached.folder} changed after their features were "
                          "cached: run cache_features again, then train.")
    train, val = split(cached.labels, val_fraction, seed)
    model = build_classifier(base, len(cached.class_names))
    weights = fit_head(cached.features[train], cached.labels[train], len(cached.class_names),
                       l2=l2)
    model.get_layer("logits").set_weights(list(weights))
    return Transfer(model, train, val, cached.class_names)


# --- how it does -------------------------------------------------------------------------------

def confusion_matrix(true, predicted, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (np.asarray(true), np.asarray(predicted)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """The share of each class's images predicted right (the confusion matrix's diagonal over its
    row sums); NaN for a class with no images."""
    rows = matrix.sum(axis=1)
    return np.where(rows > 0, np.diag(matrix) / np.maximum(rows, 1), np.nan)


# --- exercise -----------------------------------------------------------------------------------

def marker_ratio(maps, masks) -> np.ndarray:
    """Per image: the share of the map's positive energy on the mask, over the mask's share of
    the image. 1 is what a map spread evenly gets; 10 means ten times more than its area."""
    from .metrics import as_maps, as_masks, energy

    m = as_maps(maps)
    k = as_masks(masks, m)
    return energy(m, k) / k.mean(axis=(1, 2))


def check_marker_exercise(my_ratio) -> None:
    """Print whether ``my_ratio(maps, masks)`` computes :func:`marker_ratio`, and a hint if not."""
    rng = np.random.default_rng(3)
    maps = rng.normal(0, 1, (3, 16, 16)).astype(np.float32)
    maps[0, :4, :4] += 3
    masks = np.zeros((3, 16, 16), bool)
    masks[:, :4, :4] = True
    masks[2, :8, :8] = True
    want = marker_ratio(maps, masks)
    got = np.asarray(my_ratio(maps, masks), np.float64)
    if got.shape != want.shape:
        print(f"not yet: expected one number per map, shape {want.shape}; got shape {got.shape}.")
    elif np.allclose(got, want, rtol=1e-4):
        print("correct: the ratio of energy share to area share, per image.")
    elif np.allclose(got, want * masks.mean(axis=(1, 2)), rtol=1e-4):
        print("not yet: that is the share of the energy; divide by the mask's share of the image "
              "so that a map spread evenly scores 1.")
    elif np.allclose(got, [marker_ratio(np.abs(m)[None], k[None])[0]
                           for m, k in zip(maps, masks, strict=True)], rtol=1e-4):
        print("not yet: negative values count against the class, not for it: keep only the "
              "positive part (max(map, 0)), not the absolute value.")
    else:
        print("not yet: for each map, sum max(map, 0) on the mask, divide by its sum over the "
              "image, then divide by the mask's share of the pixels.")
