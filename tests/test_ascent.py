"""The gradient-ascent engine: its regularisers, its trajectory, its speed, its checks."""

import time

import numpy as np
import pytest
import tensorflow as tf

import course_utils as cu
from course_utils import ascent, features


def _mean_red(x, targets):
    """A score with a known gradient: the mean of the red channel."""
    return tf.reduce_mean(x[..., 0], axis=[1, 2])


def _zero(x, targets):
    """A score that never changes, to see the regularisers alone."""
    return 0.0 * tf.reduce_mean(x, axis=[1, 2, 3])


@pytest.fixture(scope="module")
def red_step():
    return ascent.make_step(_mean_red, 3)


@pytest.fixture(scope="module")
def untrained():
    return cu.models.build_course_cnn()


def _start(n=1, seed=0, size=16):
    return np.random.default_rng(seed).uniform(0.3, 0.7, (n, size, size, 3)).astype(np.float32)


def test_the_ascent_raises_the_score_and_stays_in_range(red_step):
    run = ascent.ascend(red_step, _start(), np.zeros(1), 30, ascent.Settings(step_size=0.05))
    assert run.scores[-1, 0] > run.scores[0, 0] + 0.2
    assert np.all(np.diff(run.scores[:, 0]) >= 0)
    final = run.image(30)
    assert final.min() >= 0 and final.max() <= 1
    assert np.allclose(final[..., 1:], _start()[..., 1:])    # only the red channel counts


def test_l2_decay_pulls_the_image_to_grey():
    step = ascent.make_step(_zero, 3)
    run = ascent.ascend(step, _start(), np.zeros(1), 8, ascent.Settings(step_size=1e-6, decay=0.2))
    distance = [np.abs(run.image(t) - 0.5).mean() for t in range(9)]
    np.testing.assert_allclose(distance, distance[0] * 0.8 ** np.arange(9), rtol=1e-3)


def test_the_blur_smooths_and_keeps_the_mean():
    checker = (np.indices((16, 16)).sum(0) % 2).astype(np.float32)
    x = tf.constant(np.repeat(checker[None, :, :, None], 3, axis=-1))
    blurred = ascent.gaussian_blur(x, tf.constant(ascent.gaussian_kernel(1.0))).numpy()
    assert blurred.std() < 0.1 * x.numpy().std()
    assert abs(blurred.mean() - 0.5) < 0.02
    same = ascent.gaussian_blur(x, tf.constant(ascent.gaussian_kernel(0.0))).numpy()
    np.testing.assert_array_equal(same, x.numpy())
    assert abs(ascent.gaussian_kernel(0.7).sum() - 1) < 1e-6


def test_a_progress_bar_changes_nothing(red_step):
    quiet = ascent.ascend(red_step, _start(), np.zeros(1), 5, ascent.Settings()).image(5)
    shown = ascent.ascend(red_step, _start(), np.zeros(1), 5, ascent.Settings(), progress=True)
    np.testing.assert_array_equal(shown.image(5), quiet)


def test_blur_every_k_steps_only():
    step = ascent.make_step(_zero, 3)
    settings = ascent.Settings(step_size=1e-6, blur_sigma=1.0, blur_every=3)
    run = ascent.Ascent(step, _start(), np.zeros(1), settings)
    changes = [np.abs(run.image(t + 1) - run.image(t)).max() for t in range(6)]
    assert [c > 1e-3 for c in changes] == [False, False, True, False, False, True]


def test_the_jitter_is_seeded_bounded_and_undone():
    shifts = [ascent.random_shift(tf.constant(7), tf.constant(t), tf.constant(3)).numpy()
              for t in range(50)]
    assert np.abs(shifts).max() <= 3 and len({tuple(s) for s in shifts}) > 10
    again = ascent.random_shift(tf.constant(7), tf.constant(12), tf.constant(3)).numpy()
    np.testing.assert_array_equal(again, shifts[12])
    # with a score that ignores position, the rolls change nothing: they are undone each step
    step = ascent.make_step(_mean_red, 3)
    plain = ascent.ascend(step, _start(), np.zeros(1), 5, ascent.Settings()).image(5)
    rolled = ascent.ascend(step, _start(), np.zeros(1), 5, ascent.Settings(jitter=4)).image(5)
    np.testing.assert_allclose(plain, rolled, atol=1e-6)


def test_continuing_a_run_costs_only_the_missing_steps(untrained):
    run = features.class_model_run(untrained, [1])
    run.image(100)
    assert run.steps_run == 100
    later = run.image(120)
    assert run.steps_run == 120                      # 100 -> 120 cost 20 steps
    earlier = run.image(50)
    assert run.steps_run == 120                      # going back costs nothing
    fresh = features.class_model_run(untrained, [1])
    np.testing.assert_array_equal(fresh.image(120), later)   # same as a run from scratch
    np.testing.assert_array_equal(fresh.image(50), earlier)


def test_a_sparse_trajectory_replays_from_the_last_stored_step(untrained):
    dense = features.class_model_run(untrained, [3])
    sparse = features.class_model_run(untrained, [3], keep_every=10)
    sparse.image(40)
    assert sorted(sparse.snapshots) == [0, 10, 20, 30, 40]
    np.testing.assert_array_equal(sparse.image(25), dense.image(25))
    assert sparse.steps_run == 45                    # 40, then 5 replayed from step 20


def test_the_weights_are_untouched(untrained):
    before = [w.copy() for w in untrained.get_weights()]
    features.class_model(untrained, steps=20, settings=features.REGULARISED)
    features.channel_visualization(untrained, "conv2", [0, 5], steps=20)
    for a, b in zip(before, untrained.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("changes, words", [
    ({"step_size": 0}, "step_size"), ({"step_size": float("nan")}, "step_size"),
    ({"decay": -1}, "decay"), ({"decay": 1}, "decay"), ({"blur_sigma": 5}, "blur_sigma"),
    ({"blur_every": 0}, "blur_every"),
    ({"jitter": -2}, "jitter"), ({"jitter": 1.5}, "jitter")])
def test_bad_settings_are_refused(changes, words):
    with pytest.raises(cu.CourseError, match=words):
        ascent.Settings().with_(**changes)


@pytest.mark.parametrize("steps", [0, -5, 2.5, True, "10"])
def test_bad_step_counts_are_refused(untrained, steps):
    with pytest.raises(cu.CourseError, match="steps must be a whole number"):
        features.class_model(untrained, steps=steps)
    if steps != 0:
        with pytest.raises(cu.CourseError, match="steps must be a whole number, 0 or more"):
            features.class_model_run(untrained, [0]).image(steps)


def test_two_hundred_steps_take_under_three_seconds(untrained):
    features.class_model_run(untrained, [0]).image(2)          # trace once
    run = features.class_model_run(untrained, [0], keep_every=200)
    start = time.perf_counter()
    run.image(200)
    assert time.perf_counter() - start < 3.0


def test_a_slider_move_of_twenty_steps_takes_under_300_ms(untrained):
    run = features.class_model_run(untrained, [0])
    run.image(100)
    costs = []
    for target in (120, 140, 160):
        start = time.perf_counter()
        run.image(target)
        costs.append(time.perf_counter() - start)
    assert min(costs) < 0.3


def _student_step(mistake=""):
    """A student's answer to notebook 05's exercise: right, or with one mistake."""
    def step(x, gradient, eta, delta, shift, blur):
        dy, dx = shift
        moved = np.roll(x, (dy, dx), axis=(0, 1))
        g = gradient(x if mistake == "gradient before shift" else moved)
        if mistake == "gradient before shift":
            g = np.roll(g, (dy, dx), axis=(0, 1))
        scale = 1.0 if mistake == "raw" else np.mean(np.abs(g))
        moved = moved + eta * g / scale - delta * (moved - (0.0 if mistake == "black" else 0.5))
        new = moved if mistake == "stay shifted" else np.roll(moved, (-dy, -dx), axis=(0, 1))
        new = new if mistake == "no blur" else blur(new)
        return new if mistake == "no clip" else np.clip(new, 0, 1)
    return step


@pytest.mark.parametrize("mistake, words", [
    ("", "correct"), ("raw", "mean absolute value"), ("black", "towards grey"),
    ("stay shifted", "roll the image back"), ("gradient before shift", "shifted image"),
    ("no blur", "apply the blur"), ("no clip", "clip the result"),
])
def test_the_step_exercise_names_each_mistake(capsys, mistake, words):
    ascent.check_step_exercise(_student_step(mistake))
    out = capsys.readouterr().out
    assert words in out
    assert out.startswith("correct") == (mistake == "")


def test_the_step_exercise_survives_a_stub_and_a_crash(capsys):
    ascent.check_step_exercise(lambda x, gradient, eta, delta, shift, blur: x)
    ascent.check_step_exercise(lambda *args: 1 / 0)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("not yet: a step has these parts")
    assert "ZeroDivisionError" in out[1]


def test_the_numpy_blur_is_the_ascent_blur():
    image = np.random.default_rng(0).uniform(size=(8, 8, 3)).astype(np.float32)
    blurred = ascent.blur_image(image, 1.0)
    assert blurred.shape == image.shape and blurred.std() < image.std()
    assert np.isclose(blurred.mean(), image.mean(), atol=0.02)
