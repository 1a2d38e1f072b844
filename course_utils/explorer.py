"""The explorer (notebook 11): one image, one class, several explanation methods side by side.

Two pure functions do the work; the panel is a thin layer over them:

- :func:`explain` computes the class probabilities of one image and, for one class, the map of
  each chosen method with the time it took;
- :func:`draw_explanation` draws the image, each map over it (titled with its time) and the class
  probabilities as sorted bars.

The panel (:class:`Explorer`, made by :func:`explorer`, also ``cu.widgets.explorer``) chooses the
image (a test set, the sample photos, an uploaded file), the class (the predicted one unless told
otherwise) and the methods with their main settings. Nothing is computed twice: each method keeps
its compiled view of the model (see :func:`course_utils.gradients.cached`), and a
:class:`MapCache` keeps every map by (image, class, method, settings). So removing a method
computes nothing, changing one setting recomputes one map, and going back to an earlier choice
costs nothing. Like the occlusion panel, moves that arrive during a computation are coalesced:
the next update reads the controls' *latest* values. Works with ipywidgets 7.7 and 8.

Given no model, the panel opens on a real network, EfficientNet-Lite0 with its ImageNet weights
(``cu.load_imagenet_model("efficientnet_lite0")``, offline), with the sample photos. Any ImageNet
model from :func:`course_utils.load_imagenet_model` works too: pass it as it is, and the panel
feeds the model its preprocessed images and numbers and names the 1,000 classes ("134: crane",
"517: crane"). On such 224×224 images a pass costs far more than on the course's 64×64 shapes, so
the many-pass methods start with fewer passes there (see :data:`METHODS`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from . import cam, gradients, occlusion, perturbation
from .checks import as_image_batch, as_targets
from .data import ALL_PHOTOS, CLASS_NAMES, _size_of, center_crop_resize, load_photo, make_shapes
from .errors import CourseError
from .models import conv_layer_names, load_imagenet_model
from .occlusion_panel import LatestWins, _event_loop_schedule
from .plotting import HEATMAP_CMAP, SIGNED_CMAP, normalize_map, show_image
from .widgets import image_png

# --- the model, with how an image in [0, 1] becomes its input -----------------------------------


@dataclass(frozen=True)
class Classifier:
    """The model the explorer explains.

    Attributes:
        model: a Keras image classifier with a fixed input size (H, W, 3).
        class_names: one name per class.
        preprocess: None when the model takes images in [0, 1]; else a function from images in
            [0, 1] (N, H, W, 3) to the model's input (an ImageNet model's ``preprocess``).
    """

    model: object
    class_names: tuple[str, ...]
    preprocess: Callable | None = None

    @property
    def size(self) -> tuple[int, int]:
        """The model's input size (H, W)."""
        return tuple(int(s) for s in self.model.input_shape[1:3])

    @property
    def value_range(self):
        """The range the methods check the model input against (None after preprocessing)."""
        return gradients.UNIT_RANGE if self.preprocess is None else None

    def input(self, image: np.ndarray) -> np.ndarray:
        """One image (H, W, 3) in [0, 1] as the model's input, a batch of one."""
        x = np.asarray(image, np.float32)[None]
        return x if self.preprocess is None else np.asarray(self.preprocess(x), np.float32)

    def grey(self) -> float:
        """A mid-grey pixel (0.5 in [0, 1]) as the model sees it (a whole grey image goes
        through the preprocessing, which may check the image's size)."""
        return float(self.input(np.full((*self.size, 3), 0.5, np.float32)).mean())


def _imagenet_names(decode: Callable, n: int) -> tuple[str, ...]:
    """The class names of an ImageNet model, from its decoder (which needs the class index
    file); "class k" when it cannot be had."""
    try:
        ranked = decode(np.arange(n, dtype=np.float32)[None], top=n)[0]   # best (n - 1) first
    except CourseError:
        return tuple(f"class {k}" for k in range(n))
    return tuple(name for _, name, _ in reversed(ranked))


def as_classifier(model, class_names=None, preprocess: Callable | None = None) -> Classifier:
    """A :class:`Classifier` from a Keras model, or from what ``cu.load_imagenet_model`` returns.

    Args:
        model: a Keras classifier, an ``ImageNetModel``, or a :class:`Classifier` (returned as is).
        class_names: one name per class; default: the course's shape names for a six-class model,
            the ImageNet names for an ImageNet model, else "class 0", "class 1", ...
        preprocess: images in [0, 1] to the model's input (taken from an ImageNet model).

    Raises:
        CourseError: the model does not take fixed-size RGB images, or the names do not fit.
    """
    if isinstance(model, Classifier):
        return model
    if all(hasattr(model, a) for a in ("model", "preprocess", "decode")):     # an ImageNetModel
        preprocess = preprocess or model.preprocess
        n = int(model.model.output_shape[-1])
        class_names = class_names or _imagenet_names(model.decode, n)
        model = model.model
    shape = tuple(getattr(model, "input_shape", ()))
    if len(shape) != 4 or None in shape[1:] or shape[3] != 3:
        raise CourseError(f"The explorer needs a model that takes RGB images of one size "
                          f"(N, H, W, 3); this one takes {shape or 'no images'}.")
    n = int(model.output_shape[-1])
    if class_names is None:
        class_names = CLASS_NAMES if n == len(CLASS_NAMES) else [f"class {k}" for k in range(n)]
    if len(class_names) != n:
        raise CourseError(f"class_names must name the model's {n} classes; got "
                          f"{len(class_names)} names.")
    return Classifier(model, tuple(str(c) for c in class_names), preprocess)


# --- the methods it offers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One explanation method as the explorer offers it.

    Attributes:
        name: its label.
        run: ``run(classifier, image, target, **settings) -> map (H, W)``, ``image`` in [0, 1].
        defaults: ``defaults(side, layer) -> settings`` for images of ``side`` pixels and the
            model's last conv layer.
        sliders: ``sliders(side) -> {setting: (min, max, step)}`` for its integer settings (a
            ``layer`` setting gets a menu of the conv layers instead).
        passes: ``passes(size, settings) -> int``, the passes through the model one map takes.
        kind: what a pass is, ``"backward"`` (forward and backward) or ``"forward"``.
        extra: other work, named in the cost (LIME's superpixels).
        on: ticked when the panel opens (see :func:`default_methods`).
        slow: takes about a second or more at its default settings, even on the course's small
            images (the panel says so, and never computes it ahead of time).
        signed: its maps have a sign that matters (drawn blue-white-red around 0).
    """

    name: str
    run: Callable
    defaults: Callable[[int, str], dict] = lambda side, layer: {}
    sliders: Callable[[int], dict] = lambda side: {}
    passes: Callable[[tuple[int, int], dict], int] = lambda size, s: 1
    kind: str = "backward"
    extra: str = ""
    on: bool = False
    slow: bool = False
    signed: bool = False

    def cost(self, size: tuple[int, int], settings: dict) -> str:
        """The work one map takes, in words: "122 forward passes"."""
        n = self.passes(size, settings)
        words = f"{n:,} {self.kind} pass{'' if n == 1 else 'es'}"
        return f"{'slow: ' if self.slow else ''}{words}{self.extra}"


def _one(maps: np.ndarray) -> np.ndarray:
    return np.asarray(maps, np.float32)[0]


def _saliency(c: Classifier, image, target):
    return _one(gradients.saliency(c.model, c.input(image), target, value_range=c.value_range))


def _smoothgrad(c: Classifier, image, target, *, n_samples: int):
    return _one(gradients.smoothgrad(c.model, c.input(image), target, n_samples=n_samples,
                                     value_range=c.value_range))


def _grad_cam(c: Classifier, image, target, *, layer: str):
    return _one(cam.grad_cam(c.model, c.input(image), target, layer=layer,
                             value_range=c.value_range))


def _guided_backprop(c: Classifier, image, target):
    return _one(gradients.guided_backprop(c.model, c.input(image), target,
                                          value_range=c.value_range))


def _guided_grad_cam(c: Classifier, image, target, *, layer: str):
    return _one(cam.guided_grad_cam(c.model, c.input(image), target, layer=layer,
                                    value_range=c.value_range))


def _occlusion(c: Classifier, image, target, *, patch: int, stride: int):
    return _one(occlusion.occlusion(c.model, c.input(image), target, patch=patch, stride=stride,
                                    fill=c.grey(), value_range=c.value_range))


def _rise(c: Classifier, image, target, *, n_masks: int):
    return _one(perturbation.rise(c.model, c.input(image), target, n_masks=n_masks,
                                  value_range=c.value_range))


def _lime(c: Classifier, image, target, *, n_samples: int):
    segments = perturbation.segment(np.asarray(image, np.float32))   # on the image in [0, 1]
    return perturbation.lime_explanation(
        c.model, c.input(image), target, n_samples=n_samples, segmentation=lambda _: segments,
        hide_color=c.grey(), value_range=c.value_range).map


SMALL = occlusion.SMALL_SIDE  # the course's images, where every method not marked slow is cheap


def _samples(side: int, small: int, large: int) -> int:
    """``small`` samples (passes) on the course's images, ``large`` on larger ones."""
    return small if side <= SMALL else large


# At 224×224 on EfficientNet-Lite0, on 2 CPU cores shared with other work (load 2 to 3.5; the
# forward pass at 84 images/s), one map at the defaults took: saliency, Grad-CAM, guided backprop
# and guided Grad-CAM 0.03-0.1 s; SmoothGrad (10 samples) 0.4-0.5 s; occlusion (26 passes)
# 0.3-1.0 s; RISE (200 masks) 2-8 s; LIME (100 samples) 1.7-5 s. A method's first map also
# compiles its view of the model: 2-4 s, once.


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("saliency", _saliency, on=True),
    Method("SmoothGrad", _smoothgrad,
           defaults=lambda side, layer: {"n_samples": _samples(side, 25, 10)},
           sliders=lambda side: {"n_samples": (5, 100, 5)}, on=True,
           passes=lambda size, s: s["n_samples"]),
    Method("Grad-CAM", _grad_cam, defaults=lambda side, layer: {"layer": layer}, on=True),
    Method("guided backprop", _guided_backprop),
    Method("guided Grad-CAM", _guided_grad_cam, defaults=lambda side, layer: {"layer": layer},
           passes=lambda size, s: 2),
    Method("occlusion", _occlusion, on=True, signed=True,
           defaults=lambda side, layer: occlusion.default_settings(side),
           sliders=lambda side: {"patch": (2, side // 2, 1), "stride": (1, side // 2, 1)},
           passes=lambda size, s: occlusion.n_passes(size, s["patch"], s["stride"]),
           kind="forward"),
    Method("RISE", _rise, defaults=lambda side, layer: {"n_masks": _samples(side, 500, 200)},
           slow=True,
           sliders=lambda side: {"n_masks": (100, 4000, 100)},
           passes=lambda size, s: s["n_masks"], kind="forward"),
    Method("LIME", _lime, defaults=lambda side, layer: {"n_samples": _samples(side, 300, 100)},
           slow=True, signed=True,
           sliders=lambda side: {"n_samples": (50, 2000, 50)},
           passes=lambda size, s: s["n_samples"], kind="forward", extra=" + superpixels"),
)}


def method(name: str) -> Method:
    """The :class:`Method` called ``name``."""
    if name not in METHODS:
        raise CourseError(f"Unknown method {name!r}; the explorer offers {', '.join(METHODS)}.")
    return METHODS[name]


def cam_layers(model) -> list[str]:
    """Grad-CAM's layer choices: every convolution layer, then its default layer last
    (:func:`course_utils.cam.default_cam_layer`: EfficientNet-Lite0's ``head_relu``, the maps
    after ``head_conv``'s batch norm and ReLU6; the course CNN's ``conv4``)."""
    layers = conv_layer_names(model)
    if not layers:
        return []
    default = cam.default_cam_layer(model)
    return [name for name in layers if name != default] + [default]


def method_settings(c: Classifier, name: str, settings: dict | None = None) -> dict:
    """A method's full settings: its defaults for this model, updated by ``settings``."""
    layers = cam_layers(c.model)
    full = method(name).defaults(min(c.size), layers[-1] if layers else "")
    unknown = set(settings or {}) - set(full)
    if unknown:
        raise CourseError(f"{name} has no setting {', '.join(sorted(unknown))}; its settings "
                          f"are: {', '.join(full) or 'none'}.")
    return {**full, **(settings or {})}


def cheap(c: Classifier, name: str) -> bool:
    """Whether a method answers at once at its default settings: it is not slow and, for
    images larger than the course's (an ImageNet CNN), it takes at most two passes."""
    m = method(name)
    return not m.slow and (min(c.size) <= SMALL or m.passes(c.size, method_settings(c, name)) <= 2)


def default_methods(c: Classifier) -> list[str]:
    """The methods ticked when the panel opens: those marked ``on`` that are :func:`cheap`
    (saliency, SmoothGrad, Grad-CAM and occlusion on the course's model; saliency and Grad-CAM
    on an ImageNet CNN, where a hundred passes take seconds on a CPU)."""
    return [name for name, m in METHODS.items() if m.on and cheap(c, name)]


# --- the pure computation -----------------------------------------------------------------------


class MapCache:
    """Results by key, the ``size`` most recently used kept."""

    def __init__(self, size: int = 256):
        self.size, self.items = size, OrderedDict()

    def __contains__(self, key) -> bool:
        return key in self.items

    def get(self, key, make: Callable):
        """The stored result for ``key``, or ``make()`` stored under it."""
        if key in self.items:
            self.items.move_to_end(key)
        else:
            self.items[key] = make()
            if len(self.items) > self.size:
                self.items.popitem(last=False)
        return self.items[key]


def image_key(image: np.ndarray) -> str:
    """A short fingerprint of an image's pixels (its shape and bytes)."""
    image = np.ascontiguousarray(image, np.float32)
    return hashlib.sha1(repr(image.shape).encode() + image.tobytes()).hexdigest()[:16]


@dataclass
class Explanation:
    """What :func:`explain` found for one image.

    Attributes:
        probabilities: float32 (classes,), the softmax of the logits.
        target: the class the maps explain.
        maps: {method name: float32 (H, W) map}, not normalised, in the order asked.
        seconds: {method name: seconds its map took to compute}.
        computed: the methods this call computed (the others came from the cache).
    """

    probabilities: np.ndarray
    target: int
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    computed: list[str] = field(default_factory=list)

    @property
    def predicted(self) -> int:
        """The class with the highest probability."""
        return int(np.argmax(self.probabilities))


def _timed(run: Callable) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def explain(model, image: np.ndarray, target: int | None = None, methods=None, *,
            cache: MapCache | None = None) -> Explanation:
    """The class probabilities of one image and the maps of several methods for one class.

    Args:
        model: a Keras classifier, what ``cu.load_imagenet_model`` returns, or a
            :class:`Classifier`.
        image: one image (H, W, 3) in [0, 1], of the model's input size.
        target: the class to explain; None for the predicted class.
        methods: method names, or {name: settings} (missing settings take their defaults; see
            ``METHODS``); None for the methods the panel ticks first (:func:`default_methods`).
        cache: a :class:`MapCache` to reuse maps across calls with the same model (its keys
            do not name the model; the panel keeps one).

    Returns:
        An :class:`Explanation`.
    """
    c = as_classifier(model)
    image = as_image_batch(image, c.model, name="image")[0]
    if methods is None:
        methods = default_methods(c)
    if not isinstance(methods, dict):
        methods = dict.fromkeys(methods)
    cache, key = MapCache() if cache is None else cache, image_key(image)
    logits = cache.get((key, "logits"), lambda: occlusion.forward_logits(c.model, c.input(image)))
    probabilities = perturbation.softmax(logits)[0]
    t = int(np.argmax(probabilities)) if target is None else \
        int(as_targets(target, 1, len(probabilities))[0])
    result = Explanation(probabilities, t)
    for name, given in methods.items():
        settings = method_settings(c, name, given)
        done = (key, t, name, tuple(sorted(settings.items())))
        if done not in cache:
            result.computed.append(name)
        run = functools.partial(_timed, functools.partial(method(name).run, c, image, t,
                                                          **settings))
        try:
            result.maps[name], result.seconds[name] = cache.get(done, run)
        except CourseError as e:
            raise CourseError(f"{name}: {e}") from e
    return result


# --- the pure drawing ---------------------------------------------------------------------------


def _milliseconds(seconds: float) -> str:
    return f"{1e3 * seconds:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def overlay_rgb(image: np.ndarray, heatmap: np.ndarray, *, signed: bool = False,
                alpha: float = 0.5) -> np.ndarray:
    """A map blended over its image, as an RGB image (H, W, 3) in [0, 1].

    The map is normalised (:func:`course_utils.plotting.normalize_map`): to [0, 1] and coloured
    with ``plotting.HEATMAP_CMAP``, or, when ``signed``, to [-1, 1] around 0 and coloured with
    ``plotting.SIGNED_CMAP`` (blue below zero, white at zero, red above).
    """
    values = normalize_map(heatmap, symmetric=signed)
    cmap = matplotlib.colormaps[SIGNED_CMAP if signed else HEATMAP_CMAP]
    colours = cmap((values + 1) / 2 if signed else values)
    return ((1 - alpha) * np.clip(image, 0, 1) + alpha * colours[..., :3]).astype(np.float32)


def tiles(image: np.ndarray, result: Explanation) -> dict[str, np.ndarray]:
    """What the explorer shows: the image, then each map over it, as RGB images by name."""
    shown = {"image": np.clip(np.asarray(image, np.float32), 0, 1)}
    for name, heatmap in result.maps.items():
        signed = method(name).signed
        shown[name] = overlay_rgb(image, heatmap, signed=signed, alpha=0.6 if signed else 0.5)
    return shown


def title(name: str, result: Explanation, label: int | None = None, class_names=CLASS_NAMES,
          times: bool = True) -> str:
    """A tile's title: the true class over the image; the method and its time over a map."""
    if name == "image":
        return "image" if label is None else f"true: {class_names[label]}"
    return f"{name}, {_milliseconds(result.seconds[name])}" if times else name


def headline(result: Explanation, class_names=CLASS_NAMES) -> str:
    """Which class the maps explain, its probability, and what the model predicts."""
    c, p = result.target, result.probabilities[result.target]
    why = "predicted" if c == result.predicted else \
        f"the model predicts {class_names[result.predicted]}"
    return f"explaining {class_names[c]} (p = {p:.2f}, {why})"


def ranked(probabilities: np.ndarray, top: int = 6) -> list[int]:
    """The ``top`` most probable classes, most probable first."""
    return [int(k) for k in np.argsort(-probabilities, kind="stable")[:top]]


def draw_probabilities(probabilities: np.ndarray, target: int, class_names, ax=None,
                       top: int = 6):
    """The ``top`` class probabilities as sorted horizontal bars, the explained class in orange.

    Returns the axes.
    """
    ax = ax or plt.gca()
    order = ranked(probabilities, top)[::-1]                    # the most probable on top
    values = probabilities[order]
    ax.barh(range(len(order)), values,
            color=["tab:orange" if k == target else "tab:grey" for k in order])
    ax.set_yticks(range(len(order)), [class_names[k] for k in order], fontsize=8)
    for tick, k in zip(ax.get_yticklabels(), order, strict=True):
        if k == target:                                         # the explained class
            tick.set_color("tab:orange")
            tick.set_fontweight("bold")
    for y, p in enumerate(values):
        ax.text(min(p, 0.62) + 0.03, y, f"{p:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xticks([0, 0.5, 1])
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title("probability", fontsize=9)
    return ax


def draw_explanation(image: np.ndarray, result: Explanation, class_names=CLASS_NAMES, *,
                     label: int | None = None, times: bool = True, size: float = 1.9,
                     top: int = 6):
    """The explorer's view as a figure: the image, each map over it, the class probabilities.

    The tiles are those of the panel (:func:`tiles`); the maps are normalised for display.

    Args:
        image: the image (H, W, 3) in [0, 1] that ``result`` explains.
        result: what :func:`explain` returned.
        class_names: one name per class.
        label: the image's true class, if known (named over the image).
        times: put each method's time in its title (False for a figure that must not change).
        size: inches per tile.
        top: how many classes the probability bars show.

    Returns:
        The figure.
    """
    shown = tiles(image, result)
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(size * len(shown) + 2.4, size + 0.7),
                             layout="constrained",
                             gridspec_kw={"width_ratios": [1] * len(shown) + [1.3]})
    for ax, (name, rgb) in zip(axes, shown.items(), strict=False):
        show_image(rgb, ax)
        ax.set_title(title(name, result, label, class_names, times), fontsize=9)
    draw_probabilities(result.probabilities, result.target, class_names, axes[-1], top)
    fig.suptitle(headline(result, class_names), fontsize=10)
    return fig


def probability_html(probabilities: np.ndarray, target: int, class_names, top: int = 6) -> str:
    """The ``top`` class probabilities as HTML bars (the panel's bar chart), explained class in
    orange."""
    import html

    rows = []
    for k in ranked(probabilities, top):
        colour = "#ff7f0e" if k == target else "#999"
        width = max(1, round(120 * float(probabilities[k])))
        name = html.escape(class_names[k])
        if k == target:
            name = f'<b style="color:{colour}">{name}</b>'
        rows.append(f'<div style="display:flex;align-items:center;font-size:12px">'
                    f'<span style="width:110px;text-align:right;padding-right:6px">{name}</span>'
                    f'<span style="width:{width}px;height:11px;background:{colour}"></span>'
                    f'<span style="padding-left:4px">{probabilities[k]:.2f}</span></div>')
    return "<b>probability</b>" + "".join(rows)


# --- uploaded files -----------------------------------------------------------------------------


def uploaded_files(value) -> list[tuple[str, bytes]]:
    """The files in a ``FileUpload`` widget's value, as (name, content) pairs.

    ipywidgets 7.x holds ``{name: {"content": bytes, "metadata": {...}}}``; 8.x a tuple of
    ``{"name": ..., "content": memoryview, ...}``. Both give the same pairs here.
    """
    if isinstance(value, dict):
        return [(str(name), bytes(item["content"])) for name, item in value.items()]
    return [(str(item["name"]), bytes(item["content"])) for item in value]


def _rgb_pixels(picture, at_least: tuple[int, int]) -> np.ndarray:
    """A loaded Pillow image as float32 RGB (H, W, 3) in [0, 1], shrunk by a whole factor (box
    filter) while it stays at least ``at_least`` (height, width): a 12-megapixel photo would
    otherwise take seconds to resize."""
    if picture.mode in ("I", "F") or picture.mode.startswith("I;16"):     # 16-bit, float grey
        grey = np.asarray(picture, np.float32)
        top = 65535.0 if picture.mode.startswith("I;16") else max(float(grey.max()), 1.0)
        return np.repeat(np.clip(grey / top, 0, 1)[..., None], 3, axis=-1)
    rgb = picture.convert("RGB")                 # drops alpha; grey and palettes become RGB
    factor = min(rgb.height // at_least[0], rgb.width // at_least[1])
    if factor >= 2:
        rgb = rgb.reduce(factor)
    return np.asarray(rgb, np.float32) / 255.0


def decode_image(data: bytes, size, name: str = "the file") -> np.ndarray:
    """An uploaded image file as the model's input: RGB, centre-cropped, resized, in [0, 1].

    Alpha is dropped, grey becomes RGB, 16-bit and float images are scaled to [0, 1]. A large
    photo is first shrunk by a whole factor to at least 4 times the model's input size (JPEGs
    are decoded at that scale), then centre-cropped and resized with anti-aliasing.

    Args:
        data: the file's bytes (PNG, JPEG, GIF, BMP, TIFF, WebP ...).
        size: int, (height, width) or a Keras model (its input size).
        name: the file's name, for the message.

    Returns:
        float32 (height, width, 3) in [0, 1].

    Raises:
        CourseError: the bytes are not an image Pillow can read.
    """
    from PIL import Image

    h, w = _size_of(size)
    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.draft(None, (4 * w, 4 * h))       # JPEG: decode at a reduced scale (fast)
            picture.load()
            pixels = _rgb_pixels(picture, (4 * h, 4 * w))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise CourseError(f"Could not read {name} as an image ({type(e).__name__}: {e}). "
                          "Upload a PNG, JPEG, GIF, BMP, TIFF or WebP picture.") from e
    return center_crop_resize(pixels, (h, w))


# --- the panel ----------------------------------------------------------------------------------


def image_choices(c: Classifier, images=None, n: int = 16, seed: int = 1000):
    """The panel's test set: {label: (image, true class or None)}.

    ``images``: None (``n`` generated shapes, for a model that takes 64×64 images), a
    ``cu.make_shapes`` result (its labels are shown), or an array (N, H, W, 3) in [0, 1].
    """
    if images is None:
        if c.size != (64, 64) or len(c.class_names) != len(CLASS_NAMES):
            return {}
        images = make_shapes(n, seed=seed)
    labels = getattr(images, "labels", None)
    x = as_image_batch(getattr(images, "images", images), c.model)
    return {(f"test {i}" if labels is None else f"test {i} ({c.class_names[labels[i]]})"):
            (x[i], None if labels is None else int(labels[i])) for i in range(len(x))}


DEFAULT_MODEL = "efficientnet_lite0"   # the real network the panel opens on, offline


class Explorer:
    """Choose an image, a class and methods; see the maps, the probabilities and the times.

    Attributes:
        image, target, upload: the image and class menus and the upload button.
        rows: {method name: (checkbox, cost label, {setting: control})}.
        pictures: {"image" or method name: ``widgets.Image``} showing each tile as PNG.
        captions: {"image" or method name: ``widgets.HTML``}, the tiles' titles (with times).
        bars: the class probabilities; headline: which class the maps explain.
        status: what the last update computed and how long it took, or what went wrong.
        widget: the panel (display it, or call :meth:`show`).
        result: the last :class:`Explanation`; ``computations``: updates run so far;
        last_compute, last_draw: seconds the last update spent computing and drawing.
    """

    def __init__(self, model=None, images=None, *, class_names=None, preprocess=None,
                 methods=None, photos=ALL_PHOTOS,
                 schedule: Callable[[Callable], None] = _event_loop_schedule):
        import ipywidgets as w

        if model is None:
            model = load_imagenet_model(DEFAULT_MODEL)
        self.classifier = c = as_classifier(model, class_names, preprocess)
        self.schedule, self.cache = schedule, MapCache()
        self.sources = image_choices(c, images)
        self.sources.update({f"photo: {p}": (load_photo(p, c.model), None) for p in photos})
        if not self.sources:
            raise CourseError("The explorer has no image to show: pass images=... (N, H, W, 3) "
                              "in [0, 1], or keep the sample photos.")
        self.image = w.Dropdown(options=list(self.sources), description="image")
        self.target = w.Dropdown(options=[("predicted", -1)] + [   # numbered: two are "crane"
            (f"{k}: {name}", k) for k, name in enumerate(c.class_names)], value=-1,
            description="class")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="upload")
        self.upload.observe(self._uploaded, names="value")
        ticked = default_methods(c) if methods is None else \
            [method(n).name for n in methods]               # an unknown name fails here
        self.rows = {name: self._row(w, name, name in ticked) for name in METHODS}
        self.scale = max(1, 200 // min(c.size))
        self.pictures = {name: w.Image(format="png") for name in ["image", *METHODS]}
        self.captions = {name: w.HTML() for name in self.pictures}
        self.tiles = {name: w.VBox([self.captions[name], self.pictures[name]])
                      for name in self.pictures}
        self.bars, self.headline, self.status = w.HTML(), w.HTML(), w.HTML()
        self.gallery = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.widget = w.VBox([w.HBox([self.image, self.target, self.upload]), self.headline,
                              self.gallery, self.status,
                              *[w.HBox([box, cost, *controls.values()])
                                for box, cost, controls in self.rows.values()]])
        self.result, self.computations, self.last_compute, self.last_draw = None, 0, 0.0, 0.0
        self._pending = LatestWins(self.update, schedule)
        self._quiet, self._uploads = False, 0
        for control in (self.image, self.target, *self._method_controls()):
            control.observe(self._moved, names="value")
        self.update()
        self.schedule(self.warm_up)

    def _row(self, w, name: str, on: bool):
        """A method's checkbox, its cost label, and the controls of its settings."""
        m, c = method(name), self.classifier
        box = w.Checkbox(value=on, description=name, indent=False,
                         layout=w.Layout(width="140px"))
        controls = {}
        for setting, value in method_settings(c, name).items():
            if setting == "layer":
                controls[setting] = w.Dropdown(options=cam_layers(c.model), value=value,
                                               description="layer")
            else:
                low, high, step = m.sliders(min(c.size))[setting]
                controls[setting] = w.IntSlider(value=value, min=low, max=high, step=step,
                                                description=setting.replace("n_", ""),
                                                continuous_update=False)
        return box, w.HTML(layout=w.Layout(width="230px")), controls

    def _method_controls(self):
        for box, _, controls in self.rows.values():
            yield box
            yield from controls.values()

    @property
    def chosen(self) -> dict[str, dict]:
        """{method name: settings} of the ticked methods, in the panel's order."""
        return {name: {s: control.value for s, control in controls.items()}
                for name, (box, _, controls) in self.rows.items() if box.value}

    def _moved(self, change=None) -> None:
        if not self._quiet:                  # one update pending at most: later moves join it
            self._pending.request()

    def _uploaded(self, change) -> None:
        """Add the newest uploaded file to the image menu and show it, or say why it cannot."""
        files = uploaded_files(change["new"])
        if not files:
            return
        name, data = files[-1]
        try:
            image = decode_image(data, self.classifier.size, repr(name))
        except CourseError as e:
            self._say(str(e), error=True)
            return
        self._uploads += 1
        key = f"upload {self._uploads}: {name}"
        self.sources[key] = (image, None)
        self._quiet = True               # new options reset the menu (ipywidgets 8): not an update
        try:
            self.image.options = list(self.sources)
            self.image.value = key
        finally:
            self._quiet = False
        self._moved()

    def _say(self, text: str, error: bool = False) -> None:
        import html

        colour = "#b00020" if error else "#555"
        self.status.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def update(self) -> None:
        """Compute what the controls ask for (only what the cache lacks) and show it."""
        c = self.classifier
        for name, (_, cost, controls) in self.rows.items():
            settings = {s: control.value for s, control in controls.items()}
            cost.value = f"<small>{method(name).cost(c.size, settings)}</small>"
        image, label = self.sources[self.image.value]
        target = None if self.target.value < 0 else self.target.value
        start = time.perf_counter()
        try:
            result = explain(c, image, target, self.chosen, cache=self.cache)
        except CourseError as e:
            self._say(f"{e} Untick that method, or choose another image.", error=True)
            return
        self.last_compute = time.perf_counter() - start
        start = time.perf_counter()
        self._show(image, label, result)
        self.last_draw = time.perf_counter() - start
        self.result, self.computations = result, self.computations + 1
        done = ", ".join(f"{n} ({_milliseconds(result.seconds[n])})" for n in result.computed)
        self._say(f"This update computed {done or 'nothing: every map came from the cache'}; "
                  f"{_milliseconds(self.last_compute)} computing, "
                  f"{_milliseconds(self.last_draw)} drawing.")

    def _show(self, image: np.ndarray, label: int | None, result: Explanation) -> None:
        names = self.classifier.class_names
        shown = tiles(image, result)
        for name, rgb in shown.items():
            self.pictures[name].value = image_png(rgb, self.scale)
            self.captions[name].value = f"<b>{title(name, result, label, names)}</b>"
        self.gallery.children = [self.tiles[name] for name in shown] + [self.bars]
        self.bars.value = probability_html(result.probabilities, result.target, names)
        self.headline.value = f"<b>{headline(result, names)}</b>"

    def warm_up(self, max_layers: int = 8) -> None:
        """Compute, for the image and class shown, the maps of the :func:`cheap` methods, and
        Grad-CAM at every conv layer (if the model has at most ``max_layers``).

        The first map of a method, or of Grad-CAM at a new layer, compiles (traces) a view of the
        model, which takes about a second; done ahead, ticking the method later answers at once.
        The panel schedules this right after it is first shown.
        """
        c = self.classifier
        image, _ = self.sources[self.image.value]
        target = None if self.target.value < 0 else self.target.value
        layers = cam_layers(c.model)
        ahead = [[name] for name in METHODS if cheap(c, name)]
        ahead += [{"Grad-CAM": {"layer": layer}} for layer in layers] \
            if len(layers) <= max_layers else []
        for methods in ahead:
            try:
                explain(c, image, target, methods, cache=self.cache)
            except CourseError:         # it says so when ticked; nothing to prepare here
                pass

    def figure(self):
        """What the panel shows now, as a Matplotlib figure (:func:`draw_explanation`)."""
        image, label = self.sources[self.image.value]
        return draw_explanation(image, self.result, self.classifier.class_names, label=label)

    def show(self) -> None:
        """Display the panel in the notebook."""
        from IPython.display import display

        display(self.widget)


def explorer(model=None, images=None, **options) -> Explorer:
    """An :class:`Explorer` panel; displays it and returns it.

    Args:
        model: a Keras classifier that takes images in [0, 1], or what
            ``cu.load_imagenet_model`` returns (its preprocessing and class names are used);
            None for EfficientNet-Lite0 with its ImageNet weights (:data:`DEFAULT_MODEL`).
        images: the test set: None (16 generated shapes for a 64×64 model), a
            ``cu.make_shapes`` result, or an array (N, H, W, 3) in [0, 1].
        **options: ``class_names``, ``preprocess``, ``methods`` (the names ticked at first),
            ``photos`` (sample photo names; ``()`` for none).
    """
    panel = Explorer(model, images, **options)
    panel.show()
    return panel


# --- exercise -----------------------------------------------------------------------------------

EXERCISE_METHODS = ("saliency", "Grad-CAM", "guided backprop", "occlusion")


def class_correlations(model, images: np.ndarray, methods=EXERCISE_METHODS) -> dict[str, float]:
    """How little each method's map depends on the class: the correlation of an image's map for
    the predicted class with its map for each other class, averaged over classes and images.

    Near 1: the map hardly changes with the class; near 0 or below: it follows the class. The
    maps are kept (one cache per model), so asking again costs nothing.
    """
    # every image has the same number of other classes: the mean of the per-image means is the
    # mean over all (image, class) pairs
    return {name: float(np.mean([_image_class_correlations(model, image, name)
                                 for image in images])) for name in methods}


def _image_class_correlations(model, image: np.ndarray, method: str, *,
                              with_itself: bool = False) -> float:
    """One image's mean correlation of the predicted class's map with each other class's map."""
    cache = gradients.cached(model, ("explorer maps",), MapCache)
    predicted = explain(model, image, None, [method], cache=cache)
    values = []
    for c in range(len(predicted.probabilities)):
        if c == predicted.target and not with_itself:
            continue
        other = explain(model, image, c, [method], cache=cache)
        values.append(np.corrcoef(predicted.maps[method].ravel(),
                                  other.maps[method].ravel())[0, 1])
    return float(np.mean(values))


def check_class_exercise(my_class_correlation, model, images: np.ndarray) -> None:
    """Self-check for notebook 11: ``my_class_correlation(model, image, method)`` must return the
    mean correlation of the image's map for the predicted class with its map for each other
    class, for every method of ``EXERCISE_METHODS``. Prints "correct ..." or "not yet: <hint>"."""
    found = {}
    for method in EXERCISE_METHODS:
        for n, image in enumerate(images):
            want = _image_class_correlations(model, image, method)
            try:
                got = my_class_correlation(model, image, method)
            except Exception as e:  # a student's bug: report it, do not crash the notebook
                print(f"not yet: your function raised {type(e).__name__}: {e} ({method}, "
                      f"image {n}).")
                return
            if got is None:
                print("not yet: your function returns None; return one number, the mean "
                      "correlation.")
                return
            got = float(np.asarray(got).mean()) if np.size(got) == 1 else np.nan
            if abs(got - want) < 1e-3:
                found.setdefault(method, []).append(got)
                continue
            itself = _image_class_correlations(model, image, method, with_itself=True)
            if abs(got - itself) < 1e-3:
                print("not yet: leave out the predicted class itself: its map correlates 1 "
                      "with itself and pulls the mean up.")
            else:
                print(f"not yet: for {method} on image {n} the mean correlation is {want:.2f}; "
                      f"yours gives {got:.2f}. Compare the predicted class's map with the map of "
                      "each *other* class, one correlation per class, and average them.")
            return
    least = max(found, key=lambda m: np.mean(found[m]))
    print(f"correct: averaged over the images, {least} changes least with the class "
          f"(mean correlation {np.mean(found[least]):.2f}): it shows the image more than the "
          "class (notebook 03).")
