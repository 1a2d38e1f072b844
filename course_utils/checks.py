"""Input checks shared by every method: they turn a bad argument into a sentence a student can act
on, before TensorFlow sees the data and answers with a stack trace."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import CourseError


def _describe(shape) -> str:
    return "×".join(str(s) for s in shape)


def as_image_batch(images, model=None, *, value_range: tuple[float, float] | None = (0.0, 1.0),
                   name: str = "images") -> np.ndarray:
    """Check images and return them as a float32 batch (N, H, W, C).

    Args:
        images: one image (H, W, C) or a batch (N, H, W, C), as a NumPy array or tensor.
        model: if given, the images must match its input size and channel count.
        value_range: the (low, high) the values must lie in, or None to accept any finite value
            (e.g. after an ImageNet model's own preprocessing).
        name: the argument's name, for the messages.

    Returns:
        float32 array (N, H, W, C).

    Raises:
        CourseError: wrong rank, size or channels; uint8 or out-of-range values; NaN or inf.
    """
    value_range = check_value_range(value_range)
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise CourseError(f"{name} must be one image (H, W, C) or a batch (N, H, W, C); got an "
                          f"array of shape {x.shape}.")
    if x.shape[0] == 0:
        raise CourseError(f"{name} is an empty batch (shape {x.shape}).")
    if x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        raise CourseError(f"{name} look channels-first (shape {x.shape}); the course uses "
                          "channels-last (N, H, W, C): use np.transpose(images, (0, 2, 3, 1)).")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise CourseError(f"{name} must hold numbers; got dtype {x.dtype}.")
    if np.issubdtype(x.dtype, np.integer) and value_range == (0.0, 1.0):
        raise CourseError(f"{name} are integers (dtype {x.dtype}, values up to {x.max()}); this "
                          "function expects float32 in [0, 1]: use images.astype('float32') / 255.")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise CourseError(f"{name} contain NaN or infinite values; check how they were made.")
    if value_range is not None:
        lo, hi = value_range
        if x.min() < lo - 1e-4 or x.max() > hi + 1e-4:
            hint = " (0–255 values? divide by 255)" if x.max() > 2 else ""
            raise CourseError(f"{name} must lie in [{lo:g}, {hi:g}]; got values from "
                              f"{x.min():.3g} to {x.max():.3g}{hint}.")
    if model is not None:
        check_input_shape(x, model, name)
    return x


def check_value_range(value_range):
    """Return ``value_range``: None, or a pair of finite numbers (low, high) with low < high."""
    if value_range is None:
        return None
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise CourseError(f"value_range must be (low, high) with low < high, e.g. (0, 1), or None "
                          f"for images after a model's own preprocessing; got {value_range!r}.")
    return lo, hi


def check_batch_size(batch_size) -> int:
    """Return ``batch_size`` as an int; a CourseError unless it is a whole number >= 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
            or batch_size < 1:
        raise CourseError(f"batch_size must be a whole number of images, 1 or more (e.g. 64); "
                          f"got {batch_size!r}.")
    return int(batch_size)


def check_fill(fill, name: str = "fill") -> None:
    """Raise a CourseError for a number that is NaN or infinite (a fill, baseline or colour)."""
    if isinstance(fill, numbers.Real) and not math.isfinite(fill):
        raise CourseError(f"{name} must be a finite number (e.g. 0.5, grey) or a named fill; got "
                          f"{fill!r}, which would make every score NaN.")


def check_input_shape(x: np.ndarray, model, name: str = "images") -> None:
    """Raise a CourseError unless the batch ``x`` fits the model's input (H, W, C)."""
    from .models import check_model

    check_model(model, classifier=False)
    expected = tuple(model.input_shape[1:])
    if len(expected) != 3:
        raise CourseError(f"The course explains image models; this model's input shape is "
                          f"{model.input_shape}.")
    sizes_differ = any(w is not None and g != w for g, w in zip(x.shape[1:3], expected[:2],
                                                                  strict=True))
    channels_differ = expected[2] is not None and x.shape[3] != expected[2]
    if sizes_differ or channels_differ:
        wanted = _describe("?" if w is None else w for w in expected)
        hint = {(1, 3): "Make them RGB: np.repeat(images, 3, axis=-1).",
                (4, 3): "Drop the alpha channel: images[..., :3].",
                (3, 1): "Make them grey: images.mean(axis=-1, keepdims=True)."}
        fixes = (["Resize them, e.g. with cu.data.center_crop_resize(image, model)."]
                 if sizes_differ else [])
        if channels_differ:
            fixes.append(hint.get((x.shape[3], expected[2]),
                                  f"The model takes {expected[2]} channel(s), not {x.shape[3]}."))
        raise CourseError(f"This model expects {wanted} images (H×W×C); {name} are "
                          f"{_describe(x.shape[1:])}. {' '.join(fixes)}")


def as_targets(target, n: int, n_classes: int) -> np.ndarray | None:
    """Check class indices: None (use the predicted class), one int for all, or one per image.

    Returns:
        None, or an int32 array (n,).
    """
    if target is None:
        return None
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.integer):
        raise CourseError(f"target must be class indices (integers); got {target!r}. For a class "
                          "name, use cu.data.class_index(name).")
    t = np.broadcast_to(t, (n,)) if t.ndim == 0 else t
    if t.shape != (n,):
        raise CourseError(f"target must be one class index, or one per image ({n}); got shape "
                          f"{t.shape}.")
    if t.min() < 0 or t.max() >= n_classes:
        raise CourseError(f"target {int(t.min() if t.min() < 0 else t.max())} is out of range: "
                          f"this model has classes 0..{n_classes - 1}.")
    return t.astype(np.int32)
