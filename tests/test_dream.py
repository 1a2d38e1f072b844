"""Deep Dream: shape, range, the layer's activation, octaves, the trajectory, bad input."""

import time

import keras
import numpy as np
import pytest

import course_utils as cu
from course_utils import dream


@pytest.fixture(scope="module")
def untrained():
    return cu.models.build_course_cnn()


@pytest.fixture(scope="module")
def image():
    return cu.make_shapes(1, seed=104).images[0]


def test_the_dream_keeps_shape_and_range_and_raises_the_activation(untrained, image):
    dreamt = dream.deep_dream(untrained, image, "conv3", octaves=2, steps_per_octave=20)
    assert dreamt.shape == image.shape and dreamt.dtype == np.float32
    assert dreamt.min() >= 0 and dreamt.max() <= 1
    before = dream.activation_score(untrained, image, "conv3")
    assert dream.activation_score(untrained, dreamt, "conv3") > 1.5 * before
    assert np.abs(dreamt - image).mean() > 0.01


@pytest.mark.parametrize("layers, loss", [(["conv2", "conv4"], "mean"), ("conv1", "mean_square")])
def test_several_layers_and_both_losses(untrained, image, layers, loss):
    dreamt = dream.deep_dream(untrained, image, layers, octaves=1, steps_per_octave=10, loss=loss)
    assert (dream.activation_score(untrained, dreamt, layers, loss=loss)
            > dream.activation_score(untrained, image, layers, loss=loss))


def test_the_weights_are_untouched(untrained, image):
    before = [w.copy() for w in untrained.get_weights()]
    dream.deep_dream(untrained, image, ["conv3"], octaves=2, steps_per_octave=5)
    for a, b in zip(before, untrained.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_octaves_go_from_small_to_full_size():
    assert dream.octave_sizes(64, 64, 3, 1.4) == [(33, 33), (46, 46), (64, 64)]
    assert dream.octave_sizes(224, 160, 1, 1.4) == [(224, 160)]


def test_the_trajectory_runs_through_the_octaves_and_costs_only_new_steps(untrained, image):
    run = dream.Dream(untrained, image, "conv3", octaves=3, steps_per_octave=10)
    np.testing.assert_allclose(run.image(0), image, atol=0.02)   # the plain image, resized twice
    run.image(15)
    assert run.steps_run == 15 and len(run.runs) == 2        # octave 0 done, 5 steps of octave 1
    run.image(25)
    assert run.steps_run == 25                                # crossing an octave costs no extra
    run.image(12)
    assert run.steps_run == 25
    with pytest.raises(cu.CourseError, match="from 0 to 30"):
        run.image(31)
    final = run.image(30)
    again = dream.deep_dream(untrained, image, "conv3", octaves=3, steps_per_octave=10)
    np.testing.assert_array_equal(final, again)


def test_an_imagenet_architecture_dreams_at_any_size():
    # MobileNetV2 with random weights: the same code as with ImageNet weights, offline.
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))
    photo = cu.load_photo("chelsea", 96)
    before = [w.copy() for w in model.get_weights()[:4]]
    dreamt = dream.deep_dream(model, photo, ["block_3_expand_relu"], octaves=2,
                              steps_per_octave=3, input_range=(-1.0, 1.0))
    assert dreamt.shape == photo.shape and 0 <= dreamt.min() and dreamt.max() <= 1
    for a, b in zip(before, model.get_weights()[:4], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, words", [
    ({"layers": "gap"}, "no feature maps"),
    ({"layers": "logits"}, "no feature maps"),
    ({"layers": "conv7"}, "no layer 'conv7'"),
    ({"layers": []}, "at least one layer"),
    ({"octaves": 6}, "smallest octave would be 12×12 pixels; keep it at least 16"),
    ({"octaves": 0}, "octaves must be a whole number"),
    ({"steps_per_octave": 0}, "steps_per_octave must be a whole number"),
    ({"loss": "max"}, "loss must be one of"),
    ({"image": np.zeros((2, 64, 64, 3))}, "one image at a time"),
    ({"image": np.zeros((64, 64, 4))}, "3-channel"),
    ({"image": np.full((64, 64, 3), 2.0)}, r"must lie in \[0, 1\]"),
])
def test_bad_input_is_explained(untrained, image, kwargs, words):
    args = {"image": image, "layers": "conv3", **kwargs}
    with pytest.raises(cu.CourseError, match=words):
        dream.deep_dream(untrained, args.pop("image"), args.pop("layers"), **args)


def test_one_octave_of_fifty_steps_takes_under_two_seconds(untrained, image):
    dream.deep_dream(untrained, image, "conv4", octaves=1, steps_per_octave=2)   # trace
    start = time.perf_counter()
    dream.deep_dream(untrained, image, "conv4", octaves=1, steps_per_octave=50)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("answer,verdict", [
    (lambda d, p, n: dream.carry_detail(d, p, n), "correct"),
    (lambda d, p, n: np.clip(n + dream.resize(d - p, n.shape[1:3]), 0, 1), "correct"),
    (lambda d, p, n: dream.resize(d, n.shape[1:3]), "not yet: you enlarged the whole dreamt"),
    (lambda d, p, n: n + dream.resize(d - p, n.shape[1:3]), "not yet: some pixels are outside"),
    (lambda d, p, n: np.clip(n + dream.resize(p - d, n.shape[1:3]), 0, 1),
     "not yet: from 8×8 to 11×11 the result is off"),
    (lambda d, p, n: n + (d - p), "not yet: your function raised ValueError"),
    (lambda d, p, n: None, "not yet: your function returns None"),
])
def test_the_carry_exercise_check(answer, verdict, capsys):
    dream.check_carry_exercise(answer)
    assert capsys.readouterr().out.startswith(verdict)


def test_carry_detail_enlarges_only_the_added_detail():
    plain_next = np.full((1, 8, 8, 3), 0.5, np.float32)
    plain = np.full((1, 4, 4, 3), 0.5, np.float32)
    np.testing.assert_allclose(dream.carry_detail(plain, plain, plain_next), plain_next)
    brighter = plain + 0.25                            # a uniform detail stays uniform
    np.testing.assert_allclose(dream.carry_detail(brighter, plain, plain_next), 0.75, atol=1e-6)
    assert dream.carry_detail(brighter + 1, plain, plain_next).max() == 1.0     # clipped


def test_the_layer_panel_makes_one_dream_per_layer_and_keeps_it(untrained, image):
    panel = dream.LayerDreamPanel(untrained, image, ["conv2", "conv3"], octaves=2,
                                  steps_per_octave=4)
    first = panel.panel
    assert panel.widget.children[1] is first.widget and first.cache.steps_run == 8
    panel.choice.value = "conv3"
    assert set(panel.panels) == {"conv2", "conv3"} and panel.panel is not first
    panel.choice.value = "conv2"
    assert panel.panel is first and first.cache.steps_run == 8     # kept, nothing recomputed
