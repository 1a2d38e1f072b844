"""The shapes generator, the photos and the image-folder loader."""

import time

import numpy as np
import pytest

import course_utils as cu
from course_utils import data

# Areas of the shapes in their unit frame (circumradius 1), from geometry.
EXPECTED_AREA = {
    "circle": np.pi * 0.85**2,
    "square": 1.4**2,
    "triangle": 3 * np.sqrt(3) / 4,                     # equilateral, circumradius 1
    "star": 5 * 0.45 * np.sin(np.pi / 5),               # 10 triangles (0, outer, inner)
    "cross": 2 * (0.56 * 1.9) - 0.56**2,                # two bars minus their overlap
    "ring": np.pi * (0.95**2 - 0.5**2),
}


@pytest.mark.parametrize("name", data.CLASS_NAMES)
def test_each_shape_has_its_geometric_area_and_fits_the_unit_disc(name):
    t = np.linspace(-1.2, 1.2, 1201, dtype=np.float32)
    u, v = np.meshgrid(t, t)
    inside = data._shape_mask(data.CLASS_NAMES.index(name), u, v)
    area = inside.mean() * (2.4**2)
    assert area == pytest.approx(EXPECTED_AREA[name], rel=0.01)
    assert np.hypot(u, v)[inside].max() <= 1.0 + 1e-3


@pytest.fixture(scope="module")
def shapes():
    return cu.make_shapes(600, seed=11)


def test_images_labels_masks_have_the_documented_types(shapes):
    assert shapes.images.shape == (600, 64, 64, 3) and shapes.images.dtype == np.float32
    assert shapes.images.min() >= 0 and shapes.images.max() <= 1
    assert shapes.labels.dtype == np.int64 and shapes.masks.dtype == bool
    assert np.bincount(shapes.labels).tolist() == [100] * 6       # balanced
    assert shapes.class_names == cu.CLASS_NAMES
    assert not shapes.cue_masks.any()                             # no cue unless asked


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = cu.make_shapes(50, seed=3), cu.make_shapes(50, seed=3), cu.make_shapes(50, seed=4)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)


def test_the_first_images_do_not_depend_on_how_many_are_made():
    assert np.array_equal(cu.make_shapes(30, seed=5).labels.size, 30)
    big, small = cu.make_shapes(2000, seed=5), cu.make_shapes(2000, seed=5, chunk=1000)
    assert np.array_equal(big.images, small.images)


def test_masks_cover_the_shape(shapes):
    """Inside the mask the image is one flat colour plus noise; the mask is not cut by the border
    and its area matches the shape's size range (22 to 40 pixels across)."""
    for image, mask in zip(shapes.images[:100], shapes.masks[:100], strict=True):
        inside = image[mask]
        assert inside.std(axis=0).max() < 0.075           # the pixel noise is at most 0.07
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    area = shapes.masks.sum(axis=(1, 2))
    assert area.min() > 0.35 * 11**2 and area.max() < np.pi * 20**2


def test_the_shape_stands_out_from_its_surroundings(shapes):
    from scipy.ndimage import binary_dilation

    contrasts = []
    for image, mask in zip(shapes.images, shapes.masks, strict=True):
        border = binary_dilation(mask, iterations=3) & ~mask
        contrasts.append(np.abs(image[mask].mean(0) - image[border].mean(0)).max())
    assert np.median(contrasts) > 0.25


def test_position_size_rotation_and_colour_vary(shapes):
    ys, xs = np.nonzero(shapes.masks.any(axis=0))
    assert xs.min() < 10 and xs.max() > 54 and ys.min() < 10 and ys.max() > 54
    colours = np.array([im[m].mean(0) for im, m in zip(shapes.images, shapes.masks, strict=True)])
    assert colours.std(axis=0).min() > 0.15
    squares = shapes[shapes.labels == cu.CLASS_NAMES.index("square")]
    bbox_fill = [m.sum() / ((np.ptp(np.nonzero(m)[0]) + 1) * (np.ptp(np.nonzero(m)[1]) + 1))
                 for m in squares.masks]
    assert min(bbox_fill) < 0.7 < max(bbox_fill)        # some squares are rotated, some are not


def test_the_distractor_is_drawn_outside_the_mask():
    with_bar = cu.make_shapes(200, seed=7)
    without = cu.make_shapes(200, seed=7, distractor=False)
    assert np.array_equal(with_bar.masks, without.masks)
    changed = np.abs(with_bar.images - without.images).max(axis=-1) > 0.2
    assert changed.any(axis=(1, 2)).mean() > 0.9                 # nearly every image has a bar
    assert not (changed & with_bar.masks).any()                  # and it is never in the mask


@pytest.mark.parametrize("cue, expected", [("class", "star only"), ("none", "nowhere"),
                                           ("other", "all but star"), ("all", "everywhere")])
def test_the_spurious_cue_goes_where_asked(cue, expected):
    s = cu.make_shapes(120, seed=8, cue_class="star", cue=cue)
    has = s.cue_masks.any(axis=(1, 2))
    star = s.labels == cu.CLASS_NAMES.index("star")
    want = {"star only": star, "nowhere": np.zeros_like(star), "all but star": ~star,
            "everywhere": np.ones_like(star)}[expected]
    assert np.array_equal(has, want)
    assert not (s.cue_masks & s.masks).any()
    assert (s.cue_masks[has].sum(axis=(1, 2)) == data.MARKER_SIZE**2).all()
    marked = np.append(s.images[s.cue_masks], 0.0)
    assert np.minimum(marked, 1 - marked).max() <= 0.125   # black or white, plus the noise


def test_ten_thousand_images_take_under_five_seconds():
    cu.make_shapes(100, seed=0)
    best = min(_timed(lambda: cu.make_shapes(10_000, seed=1)) for _ in range(3))
    assert best < 5.0, f"10,000 images took {best:.2f} s"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@pytest.mark.parametrize("kwargs, words", [
    ({"n": 0}, "positive"), ({"n": 5, "image_size": 16}, "at least 32"),
    ({"n": 5, "cue_class": "hexagon"}, "Unknown class"), ({"n": 5, "cue": "other"}, "cue_class"),
    ({"n": 5, "cue_class": "star", "cue": "sometimes"}, "cue must be"),
])
def test_bad_generator_arguments_are_explained(kwargs, words):
    with pytest.raises(cu.CourseError, match=words):
        cu.make_shapes(**kwargs)


def test_other_image_sizes_work():
    s = cu.make_shapes(12, seed=0, image_size=96)
    assert s.images.shape == (12, 96, 96, 3) and s.masks.any(axis=(1, 2)).all()


# --- photos ------------------------------------------------------------------------------------

def test_photos_load_at_the_requested_size():
    cat = cu.load_photo("cat", 224)
    assert cat.shape == (224, 224, 3) and cat.dtype == np.float32
    assert 0 <= cat.min() and cat.max() <= 1
    assert cu.load_photo("rocket", (120, 90)).shape == (120, 90, 3)
    assert cu.load_photos(size=64).shape == (len(data.PHOTOS), 64, 64, 3)


def test_photos_take_the_size_of_a_model():
    model = cu.models.build_course_cnn()
    assert cu.load_photo("coffee", model).shape == (64, 64, 3)


def test_every_photo_ships_with_an_installed_package_and_loads_as_rgb():
    for name in data.ALL_PHOTOS:
        photo = cu.load_photo(name, (48, 64))
        assert photo.shape == (48, 64, 3) and 0 <= photo.min() and photo.max() <= 1, name
    camera = cu.load_photo("camera", 32)                       # grayscale in scikit-image
    np.testing.assert_array_equal(camera[..., 0], camera[..., 2])
    assert set(data.PHOTOS) <= set(data.ALL_PHOTOS) == set(data.PHOTO_SOURCES)
    np.testing.assert_array_equal(cu.load_photo("stereo_motorcycle", 32),
                                  cu.load_photo("motorcycle", 32))


def test_an_unknown_photo_lists_the_known_ones():
    with pytest.raises(cu.CourseError, match="chelsea"):
        cu.load_photo("dog")


# --- image folders -----------------------------------------------------------------------------

def _write(path, array):
    import skimage.io

    path.parent.mkdir(parents=True, exist_ok=True)
    skimage.io.imsave(path, array, check_contrast=False)


def _rgb(h=20, w=30, value=100):
    return np.full((h, w, 3), value, np.uint8)


def test_an_image_folder_loads_with_labels_from_subfolders(tmp_path):
    _write(tmp_path / "measles" / "a.png", _rgb(value=10))
    _write(tmp_path / "healthy" / "b.png", _rgb(value=200))
    _write(tmp_path / "healthy" / "c.jpg", _rgb(value=200))
    (tmp_path / "healthy" / ".DS_Store").write_text("junk")
    folder = cu.data.load_image_folder(tmp_path)
    assert folder.class_names == ("healthy", "measles")
    assert folder.labels.tolist() == [0, 0, 1]
    assert folder.images.shape == (3, 20, 30, 3) and folder.images.dtype == np.float32
    assert folder.images[2].mean() == pytest.approx(10 / 255, abs=1e-3)
    assert cu.data.load_image_folder(tmp_path, size=16).images.shape == (3, 16, 16, 3)


@pytest.mark.parametrize("case, words", [
    ("missing", "not a folder"), ("no classes", "no class subfolders"),
    ("empty class", "is empty"), ("not an image", "not an image file"),
    ("corrupt image", "Could not read"), ("mixed sizes", "different sizes"),
    ("grayscale", "grayscale"),
])
def test_bad_image_folders_are_explained(tmp_path, case, words):
    root = tmp_path / "data"
    root.mkdir()
    _write(root / "a" / "ok.png", _rgb())
    if case == "missing":
        root = tmp_path / "nowhere"
    elif case == "no classes":
        root = tmp_path / "empty"
        root.mkdir()
    elif case == "empty class":
        (root / "b").mkdir()
    elif case == "not an image":
        (root / "a" / "notes.txt").write_text("hello")
    elif case == "corrupt image":
        (root / "a" / "broken.png").write_bytes(b"not really a png")
    elif case == "mixed sizes":
        _write(root / "a" / "big.png", _rgb(40, 40))
    elif case == "grayscale":
        _write(root / "a" / "gray.png", np.full((20, 30), 50, np.uint8))
    with pytest.raises(cu.CourseError, match=words):
        cu.data.load_image_folder(root)


def test_grayscale_images_load_with_to_rgb(tmp_path):
    _write(tmp_path / "a" / "gray.png", np.full((20, 30), 51, np.uint8))
    folder = cu.data.load_image_folder(tmp_path, to_rgb=True)
    assert folder.images.shape == (1, 20, 30, 3)
    assert np.allclose(folder.images, 0.2)
