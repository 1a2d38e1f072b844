"""The step-count panels of notebooks 05 and 09, driven from code: moving a slider forward costs
only the new steps, moving it back costs nothing, and the image shown changes."""

import io
import time

import matplotlib.pyplot as plt
import numpy as np
import pytest

import course_utils as cu
from course_utils import widgets


@pytest.fixture(scope="module")
def untrained():
    return cu.models.build_course_cnn()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_the_step_slider_keeps_the_trajectory(untrained):
    panel = widgets.class_model_panel(untrained, 2, steps=100)
    assert panel.last_cost == 100 and panel.cache.steps_run == 100
    at_100 = panel.shown.copy()
    panel.steps.value = 120
    assert panel.last_cost == 20                                 # 100 -> 120 costs 20 steps
    assert not np.array_equal(panel.shown, at_100)
    np.testing.assert_array_equal(panel.shown, panel.run.image(120)[0])
    panel.steps.value = 50
    assert panel.last_cost == 0 and panel.cache.steps_run == 120   # back: nothing computed
    np.testing.assert_array_equal(panel.shown, panel.run.image(50)[0])
    assert "computed 0 ascent steps" in panel.label.value


def test_each_setting_keeps_its_own_run(untrained):
    panel = widgets.class_model_panel(untrained, 0, steps=40)
    first = panel.shown.copy()
    panel.step_size.value = 0.04
    assert panel.last_cost == 40 and len(panel.cache.runs) == 2
    assert not np.array_equal(panel.shown, first)
    panel.blur.value = 1.0
    assert panel.last_cost == 40 and len(panel.cache.runs) == 3
    panel.step_size.value, panel.blur.value = 0.02, 0.5           # back to the first setting
    assert panel.last_cost == 0
    np.testing.assert_array_equal(panel.shown, first)


def test_a_twenty_step_move_answers_within_300_ms(untrained):
    panel = widgets.class_model_panel(untrained, 4, steps=100)
    times = []
    for target in (120, 140, 160):
        start = time.perf_counter()
        panel.steps.value = target
        times.append(time.perf_counter() - start)
        assert panel.last_cost == 20
    assert min(times) < 0.3


def test_the_dream_slider_runs_through_the_octaves(untrained):
    image = cu.make_shapes(1, seed=105).images[0]
    panel = widgets.dream_panel(untrained, image, "conv3", octaves=2, steps_per_octave=20)
    assert panel.steps.max == 40 and panel.last_cost == 40
    final = panel.shown.copy()
    panel.steps.value = 10
    assert panel.last_cost == 0 and not np.array_equal(panel.shown, final)
    panel.step_size.value = 0.005
    assert panel.last_cost == 10                  # a new setting: a new run, up to step 10 only
    panel.steps.value = 30
    assert panel.last_cost == 20                  # into the second octave: 20 more steps


def test_the_pure_rendering_functions():
    image = np.zeros((8, 6, 3), np.float32)
    image[2, 3] = 1.0
    png = widgets.image_png(image, scale=4)
    from PIL import Image
    decoded = np.asarray(Image.open(io.BytesIO(png)))
    assert decoded.shape == (32, 24, 3)
    assert decoded[8:12, 12:16].min() == 255 and decoded[:8].max() == 0
    both = widgets.side_by_side(image, image, gap=2)
    assert both.shape == (8, 14, 3) and np.all(both[:, 6:8] == 1)


def test_the_search_panel_follows_the_layer(untrained):
    shapes = cu.make_shapes(60, seed=107)
    panel = widgets.search_panel(untrained, shapes.images, shapes.labels, k=4)
    (layer, channel), picture = panel.children[0].children, panel.children[1]
    assert layer.value == "conv4" and channel.max == 127
    first = picture.value
    layer.value = "conv1"
    assert channel.max == 15
    channel.value = 7                                # redraws the picture itself
    assert channel.value == 7 and picture.value[:4] == b"\x89PNG" and picture.value != first
