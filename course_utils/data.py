"""The course's data: a generated shapes data set with ground-truth masks, a few real photos that
ship with installed packages (scikit-image, matplotlib, scikit-learn), and a loader for a
class-per-subfolder image folder.

The shapes data set is what every notebook runs on offline. Each 64×64 RGB image holds one shape
of a known class at a random position, size, rotation and colour, over a textured, noisy
background, next to a distractor (a thin bar) that is not a class shape. Because the generator
knows where it drew the shape, every image comes with a ground-truth mask: the course uses it to
*measure* whether an explanation points at the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import perturb
from .errors import CourseError

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
IMAGE_SIZE = 64
CUE_MODES = ("class", "none", "other", "all")
MARKER_SIZE = 6  # the spurious cue: a 6×6 black-and-white checkerboard in a corner


@dataclass(frozen=True)
class Shapes:
    """A batch of generated shapes.

    Attributes:
        images: float32 (N, S, S, 3), values in [0, 1].
        labels: int64 (N,), indices into ``class_names``.
        masks: bool (N, S, S), True on the pixels of the class shape (not the distractor).
        cue_masks: bool (N, S, S), True on the pixels of the spurious marker, if one was drawn.
        class_names: the names of the classes, in label order.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    cue_masks: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index) -> Shapes:
        """A subset, e.g. ``shapes[:8]`` or ``shapes[labels == 3]``."""
        return Shapes(self.images[index], self.labels[index], self.masks[index],
                      self.cue_masks[index], self.class_names)


def class_index(cls: int | str) -> int:
    """The label of a class given by name (``"star"``) or index (``3``)."""
    if isinstance(cls, str):
        if cls not in CLASS_NAMES:
            raise CourseError(f"Unknown class {cls!r}; the classes are {', '.join(CLASS_NAMES)}.")
        return CLASS_NAMES.index(cls)
    if not 0 <= int(cls) < len(CLASS_NAMES):
        raise CourseError(f"Class index {cls} is out of range 0..{len(CLASS_NAMES) - 1}.")
    return int(cls)


# --- the shapes, in a rotated frame where the shape fills the unit disc -----------------------

def _inside_regular_polygon(u, v, sides: int, apothem: float):
    """Inside a regular polygon with circumradius 1: inside every edge's half-plane."""
    inside = np.ones(u.shape, bool)
    for k in range(sides):
        a = np.pi / 2 + 2 * np.pi * k / sides
        inside &= u * np.cos(a) + v * np.sin(a) <= apothem
    return inside


def _inside_star(u, v, points: int = 5, inner: float = 0.45):
    """Inside a star polygon with outer radius 1 and inner radius ``inner``.

    Fold the angle into one half-spike, between an inner vertex (angle 0) and an outer one
    (angle pi/points); then the star's edge is the line between those two vertices.
    """
    half = np.pi / points
    phi = np.mod(np.arctan2(v, u) - np.pi / 2 + half, 2 * half)  # outer vertex up
    psi = np.abs(phi - half)                                       # 0 at the inner vertex
    r = np.hypot(u, v)
    nx, ny = np.sin(half), inner - np.cos(half)                    # normal of the edge line
    return r * (nx * np.cos(psi) + ny * np.sin(psi)) <= nx * inner


def _shape_mask(label: int, u, v):
    r = np.hypot(u, v)
    name = CLASS_NAMES[label]
    if name == "circle":
        return r <= 0.85
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.7
    if name == "triangle":
        return _inside_regular_polygon(u, v, 3, apothem=0.5)
    if name == "star":
        return _inside_star(u, v)
    if name == "cross":
        arm = 0.28
        au, av = np.abs(u), np.abs(v)
        return ((au <= arm) & (av <= 0.95)) | ((av <= arm) & (au <= 0.95))
    return (r >= 0.5) & (r <= 0.95)  # ring


def _rotated_frame(cx, cy, scale, angle, size: int):
    """Pixel-centre coordinates of every image, moved to (cx, cy), rotated and divided by scale.

    dx varies along x only and dy along y only, so they broadcast as (n, 1, W) and (n, H, 1).
    """
    t = np.arange(size, dtype=np.float32) + 0.5
    dx = (t[None, None, :] - cx[:, None, None]) / scale[:, None, None]
    dy = (t[None, :, None] - cy[:, None, None]) / scale[:, None, None]
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    return dx * c + dy * s, dy * c - dx * s


# --- backgrounds, distractor, marker ------------------------------------------------------------

def _upsample_matrix(coarse: int, size: int) -> np.ndarray:
    """Linear interpolation from ``coarse`` samples to ``size`` pixels: a (size, coarse) matrix."""
    pos = np.linspace(0, coarse - 1, size)
    lo = np.clip(np.floor(pos).astype(int), 0, coarse - 2)
    w = (pos - lo).astype(np.float32)
    m = np.zeros((size, coarse), np.float32)
    m[np.arange(size), lo] = 1 - w
    m[np.arange(size), lo + 1] = w
    return m


def _backgrounds(rng, n: int, size: int):
    """Muted base colour + smooth colour blotches + grey stripes. Returns images, base colours."""
    base = rng.uniform(0.15, 0.85, (n, 1, 1, 3)).astype(np.float32)
    m = _upsample_matrix(5, size)
    # Interpolation weights sum to 1, so the base colour can be added before upsampling.
    blotches = rng.normal(0, 0.12, (n, 5, 5, 3)).astype(np.float32) + base
    smooth = np.ascontiguousarray(np.einsum("ik,nklc,jl->nijc", m, blotches, m, optimize=True))
    t = np.arange(size, dtype=np.float32)
    beta = rng.uniform(0, np.pi, (n, 1, 1)).astype(np.float32)
    freq = rng.uniform(0.3, 1.2, (n, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    amp = rng.uniform(0.0, 0.1, (n, 1, 1)).astype(np.float32)
    along = freq * (t[None, None, :] * np.cos(beta) + t[None, :, None] * np.sin(beta)) + phase
    stripes = amp * np.sin(along)
    smooth += stripes[..., None]
    return smooth, base[:, 0, 0, :]


def _contrasting_colours(rng, background: np.ndarray) -> np.ndarray:
    """Random colours, pushed away from the background colour where they are too close to it."""
    colour = rng.uniform(0, 1, background.shape).astype(np.float32)
    close = np.linalg.norm(colour - background, axis=1) < 0.45
    push = np.where(background.mean(axis=1, keepdims=True) < 0.5, 0.45, -0.45)
    colour[close] = np.clip(colour[close] + push[close], 0, 1)
    return colour


def _distractor_centres(rng, cx, cy, radius, size: int, tries: int = 16):
    """For each image, a bar centre outside the shape: the first of ``tries`` random candidates
    at least ``radius + 4`` pixels from the shape's centre (or the farthest one)."""
    n = len(cx)
    cand = rng.uniform(6, size - 6, (n, tries, 2)).astype(np.float32)
    dist = np.hypot(cand[..., 0] - cx[:, None], cand[..., 1] - cy[:, None])
    ok = dist >= radius[:, None] + 4
    pick = np.where(ok.any(axis=1), ok.argmax(axis=1), dist.argmax(axis=1))
    chosen = cand[np.arange(n), pick]
    return chosen[:, 0], chosen[:, 1]


def _marker_corners(cx, cy, size: int):
    """Top-left (x, y) of the cue: the image corner farthest from the shape's centre."""
    lo, hi = 2, size - 2 - MARKER_SIZE
    corners = np.array([[lo, lo], [hi, lo], [lo, hi], [hi, hi]])
    centre = corners + MARKER_SIZE / 2
    far = np.argmax(np.hypot(centre[None, :, 0] - cx[:, None], centre[None, :, 1] - cy[:, None]), 1)
    return corners[far]


def _checkerboard() -> np.ndarray:
    """The cue's pattern: 2×2-pixel black and white squares."""
    i = np.arange(MARKER_SIZE) // 2
    return ((i[:, None] + i[None, :]) % 2 == 0).astype(np.float32)


def _cue_selection(labels, cue_class, cue: str):
    if cue not in CUE_MODES:
        raise CourseError(f"cue must be one of {', '.join(CUE_MODES)}; got {cue!r}.")
    if cue_class is None:
        if cue != "none" and cue != "class":
            raise CourseError(f"cue={cue!r} needs cue_class, the class the marker was drawn on.")
        return np.zeros(len(labels), bool)
    c = class_index(cue_class)
    return {"class": labels == c, "none": np.zeros(len(labels), bool),
            "other": labels != c, "all": np.ones(len(labels), bool)}[cue]


# --- the generator ------------------------------------------------------------------------------

def make_shapes(n: int, seed: int = 0, *, image_size: int = IMAGE_SIZE, distractor: bool = True,
                cue_class: int | str | None = None, cue: str = "class",
                chunk: int = 1000) -> Shapes:
    """Generate ``n`` shapes images, deterministically for a seed.

    Classes are balanced (``n // 6`` or one more of each) and shuffled. Every image has a
    textured, noisy background, one class shape at a random position, size (22 to 40 pixels
    across), rotation and colour, and, unless ``distractor=False``, a thin bar that belongs to no
    class.

    The optional spurious cue is a small checkerboard in a corner. With ``cue_class`` set, ``cue``
    says where it is drawn: ``"class"`` on every image of ``cue_class`` (how the cheating model is
    trained), ``"none"`` on no image, ``"other"`` on every image of the other classes, ``"all"`` on
    every image.

    Args:
        n: number of images.
        seed: the seed; the same seed gives the same images.
        image_size: side of the square images, in pixels (at least 32).
        distractor: draw the distractor bar.
        cue_class: the class (name or index) that carries the cue, or None for no cue.
        cue: where the cue is drawn, see above.
        chunk: images drawn at once, each chunk with its own seeded generator; chunks are drawn
            on two threads. Changing it changes the images.

    Returns:
        A :class:`Shapes` with images, labels, masks and cue masks.
    """
    from concurrent.futures import ThreadPoolExecutor

    if int(n) < 1:
        raise CourseError(f"n must be a positive number of images; got {n}.")
    if int(image_size) < 32:
        raise CourseError(f"image_size must be at least 32 pixels; got {image_size}.")
    n, size = int(n), int(image_size)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.int64)
    out = Shapes(np.empty((n, size, size, 3), np.float32), labels,
                 np.zeros((n, size, size), bool), np.zeros((n, size, size), bool))
    with_cue = _cue_selection(labels, cue_class, cue)

    def draw(start: int) -> None:
        part = slice(start, min(start + chunk, n))
        _render(np.random.default_rng([seed, start]), out, part, with_cue[part], distractor)

    with ThreadPoolExecutor(max_workers=2) as pool:  # NumPy releases the GIL: two cores work
        list(pool.map(draw, range(0, n, chunk)))
    perturb.perturb_images(out.images, seed if isinstance(seed, int) else 0)  # test-only; no-op
    return out


def _render(rng, out: Shapes, part: slice, with_cue, distractor: bool) -> None:
    """Draw the images ``out.images[part]`` (and their masks) in place."""
    labels = out.labels[part]
    n, size = len(labels), out.images.shape[1]
    scale = size / 64.0
    images, bg_colour = _backgrounds(rng, n, size)

    radius = rng.uniform(11, 20, n).astype(np.float32) * scale
    cx = rng.uniform(radius + 1, size - radius - 1).astype(np.float32)
    cy = rng.uniform(radius + 1, size - radius - 1).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)

    # The bar's parameters are drawn even when it is not painted, so that distractor=False
    # changes only the bar's pixels, not the random numbers of everything after it.
    bx, by = _distractor_centres(rng, cx, cy, radius, size)
    length = rng.uniform(6, 11, n).astype(np.float32) * scale
    bar_angle = rng.uniform(0, np.pi, n).astype(np.float32)
    bar_colour = _contrasting_colours(rng, bg_colour)
    if distractor:
        u, v = _rotated_frame(bx, by, length, bar_angle, size)
        bar = (np.abs(u) <= 1) & (np.abs(v) * length[:, None, None] <= scale)
        np.copyto(images, bar_colour[:, None, None, :], where=bar[..., None])

    u, v = _rotated_frame(cx, cy, radius, angle, size)
    masks = out.masks[part]
    for label in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(labels == label)
        masks[idx] = _shape_mask(label, u[idx], v[idx])
    colour = _contrasting_colours(rng, bg_colour)
    np.copyto(images, colour[:, None, None, :], where=masks[..., None])

    corners = _marker_corners(cx, cy, size)
    pattern = _checkerboard()[..., None]
    cue_masks = out.cue_masks[part]
    for i in np.flatnonzero(with_cue):
        x0, y0 = corners[i]
        box = (slice(y0, y0 + MARKER_SIZE), slice(x0, x0 + MARKER_SIZE))
        images[i][box] = pattern
        cue_masks[i][box] = True

    # Pixel noise, uniform with standard deviation sigma (much faster to draw than Gaussian),
    # drawn straight into the output to spare a large temporary array; then clip to [0, 1].
    sigma = rng.uniform(0.02, 0.07, (n, 1, 1, 1)).astype(np.float32)
    final = out.images[part]
    rng.random(dtype=np.float32, out=final)
    final -= np.float32(0.5)
    final *= sigma * np.float32(np.sqrt(12))
    final += images
    np.minimum(np.maximum(final, np.float32(0), out=final), np.float32(1), out=final)


# --- real photos ------------------------------------------------------------------------------

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # the default set; the cat is "chelsea"


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def _stereo_motorcycle() -> np.ndarray:
    import skimage.data

    return skimage.data.stereo_motorcycle()[0]          # the left view of the stereo pair


def _matplotlib_sample(filename: str) -> np.ndarray:
    import skimage.io
    from matplotlib import cbook

    return skimage.io.imread(cbook.get_sample_data(filename, asfileobj=False))


def _sklearn_sample(filename: str) -> np.ndarray:
    try:
        from sklearn.datasets import load_sample_image
    except ImportError as e:  # scikit-learn comes with lime, a course dependency
        raise CourseError("This photo ships with scikit-learn, which is not installed: "
                          "`pip install scikit-learn`.") from e
    return load_sample_image(filename)


# Every photo load_photo can open: name -> (the package it ships with, how to read it). All ship
# with scikit-image 0.22 and 0.25, matplotlib 3.10 and 3.11, scikit-learn 1.6 and 1.9 (checked on
# both of the course's stacks); "camera" is grayscale and comes back as RGB.
PHOTO_SOURCES = {
    "chelsea": ("scikit-image", lambda: _skimage_photo("chelsea")),
    "coffee": ("scikit-image", lambda: _skimage_photo("coffee")),
    "astronaut": ("scikit-image", lambda: _skimage_photo("astronaut")),
    "rocket": ("scikit-image", lambda: _skimage_photo("rocket")),
    "motorcycle": ("scikit-image", _stereo_motorcycle),
    "camera": ("scikit-image", lambda: _skimage_photo("camera")),
    "grace_hopper": ("matplotlib", lambda: _matplotlib_sample("grace_hopper.jpg")),
    "china": ("scikit-learn", lambda: _sklearn_sample("china.jpg")),
    "flower": ("scikit-learn", lambda: _sklearn_sample("flower.jpg")),
}
ALL_PHOTOS = tuple(PHOTO_SOURCES)
_PHOTO_ALIASES = {"cat": "chelsea", "stereo_motorcycle": "motorcycle"}


def _size_of(size) -> tuple[int, int]:
    """(height, width) from an int, a pair, or a Keras model (its input size)."""
    if hasattr(size, "input_shape"):
        shape = size.input_shape
        if None in shape[1:3]:
            raise CourseError("This model accepts any image size; pass size=(height, width).")
        return int(shape[1]), int(shape[2])
    pair = (size, size) if isinstance(size, int | np.integer) else tuple(np.atleast_1d(size))
    if len(pair) != 2 or not all(isinstance(s, int | np.integer) and not isinstance(s, bool)
                                 and s >= 1 for s in pair):
        raise CourseError(f"size must be a positive int, a (height, width) pair of them, or a "
                          f"model; got {size!r}.")
    return int(pair[0]), int(pair[1])


def center_crop_resize(image: np.ndarray, size) -> np.ndarray:
    """Crop the image's centre to the target aspect ratio, then resize (anti-aliased).

    Args:
        image: (H, W, 3) array, uint8 or float in [0, 1].
        size: int, (height, width) or a Keras model.

    Returns:
        float32 (height, width, 3) in [0, 1].
    """
    from skimage.transform import resize
    from skimage.util import img_as_float32

    h, w = _size_of(size)
    image = img_as_float32(image)
    ih, iw = image.shape[:2]
    if ih * w > iw * h:                       # too tall: crop rows
        ch = iw * h // w
        image = image[(ih - ch) // 2:(ih - ch) // 2 + ch]
    else:                                     # too wide: crop columns
        cw = ih * w // h
        image = image[:, (iw - cw) // 2:(iw - cw) // 2 + cw]
    return resize(image, (h, w), anti_aliasing=True).astype(np.float32)


def load_photo(name: str, size=224) -> np.ndarray:
    """A real photo that ships with an installed package, centre-cropped and resized.

    Args:
        name: one of ``ALL_PHOTOS`` (see ``PHOTO_SOURCES``; ``"cat"`` is accepted for
            ``"chelsea"``).
        size: int, (height, width), or a Keras model whose input size to use.

    Returns:
        float32 (height, width, 3) in [0, 1]. An ImageNet model may need its own preprocessing on
        top (see ``load_imagenet_model``).
    """
    key = _PHOTO_ALIASES.get(name, name)
    if key not in PHOTO_SOURCES:
        raise CourseError(f"Unknown photo {name!r}; choose one of {', '.join(ALL_PHOTOS)} "
                          "(or 'cat').")
    image = np.asarray(PHOTO_SOURCES[key][1]())
    if image.ndim == 2:                                  # grayscale: three equal channels
        image = np.repeat(image[..., None], 3, axis=-1)
    return center_crop_resize(image[..., :3], size)


def load_photos(names=PHOTOS, size=224) -> np.ndarray:
    """Several photos as one float32 batch (N, height, width, 3) in [0, 1]."""
    return np.stack([load_photo(n, size) for n in names])


# --- a class-per-subfolder image folder ---------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageFolder:
    """Images read from ``folder/<class>/<image>``.

    Attributes:
        images: float32 (N, H, W, 3) in [0, 1].
        labels: int64 (N,), indices into ``class_names``.
        class_names: the subfolder names, sorted.
        paths: the file of each image.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    paths: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.labels)


def _read_rgb(path: Path, to_rgb: bool) -> np.ndarray:
    import skimage.io
    from skimage.util import img_as_float32

    try:
        image = skimage.io.imread(path)
    except Exception as e:  # imageio raises many kinds of errors
        raise CourseError(f"Could not read {path} as an image ({type(e).__name__}). Remove it, or "
                          f"convert it to one of {', '.join(IMAGE_SUFFIXES)}.") from e
    if image.ndim == 3 and image.shape[-1] in (2, 4):
        image = image[..., :-1]                         # drop the alpha channel (grey or RGB)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 1):
        if not to_rgb:
            raise CourseError(f"{path} is a grayscale image; the models expect RGB. Pass "
                              "to_rgb=True to repeat its channel three times.")
        image = np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise CourseError(f"{path} has shape {image.shape}; expected an RGB image (H, W, 3).")
    return img_as_float32(image)


def load_image_folder(folder, size=None, *, to_rgb: bool = False) -> ImageFolder:
    """Load a class-per-subfolder data set, e.g. ``skin/Measles/img001.jpg``.

    This is how to bring your own data (the seed study's six skin-disease classes, say).
    Hidden files (``.DS_Store``) are skipped; any other file must be an image.

    Args:
        folder: the folder whose subfolders are the classes.
        size: resize every image (centre crop, then resize) to this int, (height, width) or
            model input size. None keeps the files' size, which must then be the same for all.
        to_rgb: accept grayscale images by repeating their channel; by default they are an error.

    Returns:
        An :class:`ImageFolder`.
    """
    if size is not None:
        _size_of(size)                                  # checked before any file is read
    root = Path(folder)
    if not root.is_dir():
        raise CourseError(f"{root} is not a folder. Give the folder that holds one subfolder per "
                          "class.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise CourseError(f"{root} holds no class subfolders; expected {root}/<class>/<image>.")
    images, labels, paths = [], [], []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir() if not p.name.startswith("."))
        if not files:
            raise CourseError(f"The class folder {class_dir} is empty; put its images there or "
                              "remove it.")
        for path in files:
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise CourseError(f"{path} is not an image file (by its name); the loader reads "
                                  f"{', '.join(IMAGE_SUFFIXES)}. Move it out of {root}.")
            image = _read_rgb(path, to_rgb)
            images.append(image if size is None else center_crop_resize(image, size))
            labels.append(label)
            paths.append(path)
    shapes = sorted({im.shape[:2] for im in images})
    if len(shapes) > 1:
        raise CourseError(f"The images in {root} have different sizes ({shapes[0]}, {shapes[-1]}, "
                          "...); pass size=(height, width) to resize them all.")
    return ImageFolder(np.stack(images), np.array(labels, np.int64),
                       tuple(p.name for p in class_dirs), tuple(paths))
