r"""Gradient ascent on the input image: the one engine behind class model visualization, channel
visualization and Deep Dream.

Training changes the weights to lower a loss, with the image fixed. Here it is the other way round:
the weights stay fixed and the *image* changes, step by step, to raise a score (Simonyan et al.
2014; Yosinski et al. 2015; Mordvintsev et al. 2015). One step, from image x:

1. **jitter** (Mordvintsev et al. 2015; Olah et al. 2017): roll x by a random shift of up to
   ``jitter`` pixels (undone after the step), so that the image cannot fit the exact pixel grid;
2. **step** along the gradient g of the score, with **L2 decay**:

   .. math:: x \leftarrow x + \eta\, \frac{g}{\mathrm{mean}\,|g|} - \delta\, (x - 0.5)

   The gradient is divided by its mean magnitude, so that the step size η is "how far a pixel
   moves per step", whatever the score's scale. The decay δ pulls every pixel the fraction δ of
   the way back to the neutral grey 0.5 (Yosinski et al. 2015's L2 decay). It comes from Simonyan
   et al.'s penalty -λ‖x - 0.5‖²: *unnormalised* ascent with step η on S(x) - λ‖x - 0.5‖² is
   x ← x + η·g - 2ηλ·(x - 0.5), i.e. δ = 2ηλ. With the normalised gradient used here the two no
   longer match (δ = 2ηλ / mean|g|, which changes from step to step), so δ is the knob, not λ;
3. every ``blur_every`` steps, a **Gaussian blur** of width ``blur_sigma`` (removes the
   high-frequency patterns that raise the score but that no real image has);
4. **clip** to the valid range (the model never saw pixels outside [0, 1]).

The step is compiled once with ``tf.function``; its settings are tensors, so a new step size or
blur does not retrace it. The random shift of step t depends only on (seed, t), so a run continued
from step 100 to 120 gives exactly the images a run of 120 steps from scratch gives. :class:`Ascent`
keeps the trajectory, so asking for an earlier step costs nothing and a later one costs only the
missing steps.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import tensorflow as tf

from .checks import check_value_range
from .errors import CourseError

NEUTRAL = 0.5      # the neutral start, and where the L2 decay pulls: mid-grey
BLUR_RADIUS = 6    # the blur kernel has 2·6 + 1 taps, enough for a sigma up to 2
MAX_SIGMA = 2.0

# score_fn(images (N, H, W, C), targets (N,) int32) -> scores (N,): one score per image.
ScoreFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


# --- settings -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """The knobs of gradient ascent. The defaults are plain ascent: no regulariser at all.

    Attributes:
        step_size: η, how far (on average) a pixel moves per step, in the image's units.
        decay: δ, the L2 decay: each step also moves every pixel the fraction δ of the way back
            to grey (0.5); see the module docstring for how it relates to the penalty λ‖x - 0.5‖².
        blur_sigma: width (pixels) of the Gaussian blur; 0 for none.
        blur_every: blur after every ``blur_every``-th step.
        jitter: largest random shift (pixels) before each step; 0 for none.
        value_range: clip to this (low, high) after each step, or None for no clipping.
        seed: the seed of the random shifts.
    """

    step_size: float = 0.02
    decay: float = 0.0
    blur_sigma: float = 0.0
    blur_every: int = 4
    jitter: int = 0
    value_range: tuple[float, float] | None = (0.0, 1.0)
    seed: int = 0

    def __post_init__(self):
        check_settings(self)

    def with_(self, **changes) -> Settings:
        """A copy with some settings changed (checked)."""
        return check_settings(replace(self, **changes))


def check_settings(settings: Settings) -> Settings:
    """Raise a CourseError, with the valid range, for a setting out of range."""
    s = settings
    if not (isinstance(s.step_size, numbers.Real) and math.isfinite(s.step_size)
            and s.step_size > 0):
        raise CourseError(f"step_size must be a positive number (e.g. 0.02); got {s.step_size!r}.")
    if not 0 <= s.decay < 1:
        raise CourseError(f"decay (the L2 decay δ) must lie in [0, 1), e.g. 0.05; got "
                          f"{s.decay!r}.")
    if not 0 <= s.blur_sigma <= MAX_SIGMA:
        raise CourseError(f"blur_sigma must lie in [0, {MAX_SIGMA:g}] pixels; got "
                          f"{s.blur_sigma!r}.")
    if int(s.blur_every) != s.blur_every or s.blur_every < 1:
        raise CourseError(f"blur_every must be a whole number of steps, 1 or more; got "
                          f"{s.blur_every!r}.")
    if int(s.jitter) != s.jitter or s.jitter < 0:
        raise CourseError(f"jitter must be a whole number of pixels, 0 or more; got {s.jitter!r}.")
    check_value_range(s.value_range)
    return s


def check_steps(steps, name: str = "steps") -> int:
    """Return ``steps`` (a step count, or any count) as an int; a CourseError unless it is a
    whole number >= 1."""
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise CourseError(f"{name} must be a whole number, 1 or more; got {steps!r}.")
    return int(steps)


# --- the regularisers, as tensor operations -----------------------------------------------------

def gaussian_kernel(sigma: float, radius: int = BLUR_RADIUS) -> np.ndarray:
    """A 1D Gaussian of width ``sigma`` with 2·radius + 1 taps, summing to 1 (float32).

    ``sigma=0`` gives the identity kernel [0, ..., 0, 1, 0, ..., 0].
    """
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    if sigma <= 0:
        return (taps == 0).astype(np.float32)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_blur(images: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Blur each channel of (N, H, W, C) images with a separable 1D ``kernel``, reflecting the
    image at its borders (so the borders do not darken)."""
    radius = (kernel.shape[0] - 1) // 2
    channels = images.shape[-1]
    x = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    column = tf.tile(tf.reshape(kernel, (-1, 1, 1, 1)), (1, 1, channels, 1))
    x = tf.nn.depthwise_conv2d(x, column, (1, 1, 1, 1), "VALID")
    row = tf.tile(tf.reshape(kernel, (1, -1, 1, 1)), (1, 1, channels, 1))
    return tf.nn.depthwise_conv2d(x, row, (1, 1, 1, 1), "VALID")


def random_shift(seed: tf.Tensor, step: tf.Tensor, jitter: tf.Tensor) -> tf.Tensor:
    """The (dy, dx) roll of one step, each in [-jitter, jitter]; a function of (seed, step) only."""
    return tf.random.stateless_uniform((2,), seed=tf.stack([seed, step]), minval=-jitter,
                                       maxval=jitter + 1, dtype=tf.int32)


# --- one compiled step --------------------------------------------------------------------------

def make_step(score_fn: ScoreFn, channels: int, size: tuple[int, int] | None = None
              ) -> Callable:
    """Compile one ascent step for a score function (see the module docstring for the step).

    Args:
        score_fn: ``score_fn(images, targets) -> (N,)``, differentiable in the images.
        channels: the images' channel count.
        size: the images' (height, width), or None to accept any size (Deep Dream's octaves);
            a fixed size compiles a slightly faster step.

    Returns:
        ``step(x, targets, t, seed, step_size, decay, kernel, blur, jitter, low, high)``, all
        tensors, returning ``(new x, score of x)``. Compiled once: new settings do not retrace.
    """
    scalar = tf.TensorSpec((), tf.float32)
    integer = tf.TensorSpec((), tf.int32)
    height, width = size or (None, None)
    signature = [tf.TensorSpec((None, height, width, channels), tf.float32),
                 tf.TensorSpec((None,), tf.int32), integer, integer, scalar, scalar,
                 tf.TensorSpec((2 * BLUR_RADIUS + 1,), tf.float32), tf.TensorSpec((), tf.bool),
                 integer, scalar, scalar]

    @tf.function(input_signature=signature)
    def step(x, targets, t, seed, step_size, decay, kernel, blur, jitter, low, high):
        shift = random_shift(seed, t, jitter)
        x = tf.roll(x, shift, axis=[1, 2])
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = score_fn(x, targets)
            total = tf.reduce_sum(score)   # the images are independent: each gets its gradient
        g = tape.gradient(total, x)
        g = g / (tf.reduce_mean(tf.abs(g), axis=[1, 2, 3], keepdims=True) + 1e-8)
        x = x + step_size * g - decay * (x - NEUTRAL)
        x = tf.roll(x, -shift, axis=[1, 2])
        x = tf.cond(blur, lambda: gaussian_blur(x, kernel), lambda: x)
        return tf.clip_by_value(x, low, high), score

    return step


def step_arguments(settings: Settings) -> dict[str, tf.Tensor]:
    """The settings as the tensors the compiled step takes (all but x, targets, t and blur)."""
    low, high = settings.value_range or (-np.inf, np.inf)
    return {"seed": tf.constant(settings.seed, tf.int32),
            "step_size": tf.constant(settings.step_size, tf.float32),
            "decay": tf.constant(settings.decay, tf.float32),
            "kernel": tf.constant(gaussian_kernel(settings.blur_sigma)),
            "jitter": tf.constant(int(settings.jitter), tf.int32),
            "low": tf.constant(low, tf.float32), "high": tf.constant(high, tf.float32)}


# --- a run that keeps its trajectory ------------------------------------------------------------

class Ascent:
    """A gradient-ascent run that remembers where it has been.

    ``run.image(120)`` returns the images after 120 steps. If the run has already passed step
    120, the stored images are returned and no step is computed; otherwise the run continues from
    where it stopped, so going from 100 to 120 steps costs 20 steps. ``steps_run`` counts every
    step ever computed (the cost).

    Args:
        step: a compiled step from :func:`make_step`.
        start: the starting images, float32 (N, H, W, C).
        targets: int32 (N,), passed to the score function (a class or channel per image).
        settings: the :class:`Settings`.
        keep_every: store the images of every ``keep_every``-th step (1: all of them). An
            unstored step is recomputed from the last stored one before it.
    """

    def __init__(self, step: Callable, start: np.ndarray, targets: np.ndarray,
                 settings: Settings, *, keep_every: int = 1):
        self.settings = check_settings(settings)
        self.keep_every = check_steps(keep_every, "keep_every")
        # The concrete function of the compiled step, called with positional tensors: this skips
        # tf.function's argument matching, a fifth of the time of a step on a small model.
        self._step, self._args = step.get_concrete_function(), step_arguments(self.settings)
        self._blur = (tf.constant(False), tf.constant(True))
        self._targets = tf.constant(np.asarray(targets, np.int32))
        self._x = tf.constant(np.asarray(start, np.float32))
        self.snapshots = {0: self._x.numpy()}   # step -> images (N, H, W, C)
        self.score_history: list[np.ndarray] = []   # score_history[t]: scores of the images at t
        self.steps_done = 0
        self.steps_run = 0

    def _one_step(self, x: tf.Tensor, t: int) -> tuple[tf.Tensor, tf.Tensor]:
        blur = self.settings.blur_sigma > 0 and (t + 1) % self.settings.blur_every == 0
        a = self._args
        self.steps_run += 1
        return self._step(x, self._targets, tf.constant(t, tf.int32), a["seed"], a["step_size"],
                          a["decay"], a["kernel"], self._blur[blur], a["jitter"], a["low"],
                          a["high"])

    def run_to(self, steps: int, *, progress: bool = False) -> Ascent:
        """Continue the run until it has done ``steps`` steps (nothing if it already has)."""
        bar = _progress_bar(steps - self.steps_done) if progress else None
        while self.steps_done < steps:
            self._x, score = self._one_step(self._x, self.steps_done)
            self.score_history.append(score.numpy())
            self.steps_done += 1
            if self.steps_done % self.keep_every == 0 or self.steps_done == steps:
                self.snapshots[self.steps_done] = self._x.numpy()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return self

    def image(self, steps: int, *, progress: bool = False) -> np.ndarray:
        """The images after ``steps`` steps, float32 (N, H, W, C) (a copy: yours to change)."""
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
            raise CourseError(f"steps must be a whole number, 0 or more; got {steps!r}.")
        steps = int(steps)
        if steps > self.steps_done:
            self.run_to(steps, progress=progress)
        if steps in self.snapshots:
            return self.snapshots[steps].copy()
        t = max(s for s in self.snapshots if s < steps)
        x = tf.constant(self.snapshots[t])
        for u in range(t, steps):      # replay from the last stored step: exact, same shifts
            x, _ = self._one_step(x, u)
        return x.numpy()

    @property
    def scores(self) -> np.ndarray:
        """The score of the images at each step done, float32 (steps_done, N)."""
        n = len(self.snapshots[0])
        return np.array(self.score_history, np.float32).reshape(-1, n)


def _progress_bar(total: int):
    """A tqdm progress bar, or None when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="gradient ascent", leave=False)


def ascend(step: Callable, start: np.ndarray, targets: np.ndarray, steps: int,
           settings: Settings, *, progress: bool = False) -> Ascent:
    """Run ``steps`` steps of gradient ascent from ``start`` and return the :class:`Ascent`
    (its ``.image(steps)`` is the result; it can be continued)."""
    run = Ascent(step, start, targets, settings)
    return run.run_to(check_steps(steps), progress=progress)


# --- the exercise of notebook 05 ----------------------------------------------------------------

def blur_image(image: np.ndarray, sigma: float = 0.5) -> np.ndarray:
    """One image (H, W, C) blurred by :func:`gaussian_blur` (reflecting borders), as NumPy."""
    kernel = tf.constant(gaussian_kernel(sigma))
    return gaussian_blur(tf.constant(np.asarray(image, np.float32)[None]), kernel)[0].numpy()


def _reference_step(x, gradient, eta, delta, shift, blur, *, mistake: str = ""):
    """One regularised ascent step in NumPy, or the same step with one named mistake."""
    if mistake == "blur first":
        return _reference_step(blur(x), gradient, eta, delta, shift, lambda im: im)
    dy, dx = shift
    moved = x if mistake == "gradient before shift" else np.roll(x, (dy, dx), axis=(0, 1))
    g = gradient(moved)
    if mistake == "gradient before shift":
        g, moved = np.roll(g, (dy, dx), axis=(0, 1)), np.roll(x, (dy, dx), axis=(0, 1))
    scale = {"no normalisation": 1.0, "max": np.abs(g).max(),
             "norm": np.sqrt(np.sum(g ** 2))}.get(mistake, np.mean(np.abs(g)))
    sign = -1.0 if mistake == "descent" else 1.0
    centre = 0.0 if mistake == "decay to zero" else NEUTRAL
    decay = -delta if mistake == "decay away" else delta
    new = moved + sign * eta * g / scale - decay * (moved - centre)
    if mistake != "shift not undone":
        new = np.roll(new, (-dy, -dx), axis=(0, 1))
    if mistake != "no blur":
        new = blur(new)
    return new if mistake == "no clip" else np.clip(new, 0.0, 1.0)


STEP_HINTS = {
    "no normalisation": "divide the gradient by its mean absolute value, so that eta is how far "
                        "a pixel moves on average, whatever the score's scale.",
    "max": "normalise the gradient by its *mean* absolute value, not its largest one.",
    "norm": "normalise the gradient by its mean absolute value, not its L2 norm.",
    "descent": "this lowers the score: ascent moves the image *along* the gradient.",
    "decay to zero": "the L2 decay pulls every pixel towards grey (0.5), not towards black (0).",
    "decay away": "the decay must pull the pixels *towards* grey: check its sign.",
    "shift not undone": "roll the image back by the opposite shift after the step, or the "
                        "picture wanders a little further with every step.",
    "gradient before shift": "take the gradient at the shifted image: jitter means the network "
                             "sees the image moved.",
    "no blur": "apply the blur function to the result of the step.",
    "blur first": "blur after the step (and after undoing the shift), not before it.",
    "no clip": "clip the result to [0, 1], the range the network was trained on.",
}


def check_step_exercise(my_step) -> None:
    """Check a student's ascent step ``my_step(x, gradient, eta, delta, shift, blur)``.

    ``x`` is one image (H, W, 3) in [0, 1]; ``gradient(image)`` returns dS/dI at an image;
    ``shift`` is the jitter (dy, dx); ``blur(image)`` returns the blurred image. The step must
    roll x by the shift, move it by eta times the gradient over its mean absolute value, pull it
    the fraction delta back to grey, roll it back, blur it and clip it to [0, 1]. The check tries
    it on random images with a score whose gradient depends on the position, and names the
    mistake when it recognises one. Prints "correct" or "not yet: <hint>".
    """
    rng = np.random.default_rng(14)
    for _ in range(3):
        weights = rng.normal(size=(9, 9, 3))
        shift = (int(rng.integers(1, 4)), -int(rng.integers(1, 4)))
        args = (rng.uniform(0.05, 0.95, (9, 9, 3)), lambda im, w=weights: w * np.cos(3 * im) + w,
                float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.05, 0.2)), shift,
                lambda im: 0.5 * im + 0.25 * (np.roll(im, 1, axis=0) + np.roll(im, 1, axis=1)))
        try:
            got = np.asarray(my_step(*[a.copy() if isinstance(a, np.ndarray) else a
                                       for a in args]), np.float64)
        except Exception as e:  # the student's code failed: say how, do not raise
            return print(f"not yet: your function raised {type(e).__name__}: {e}")
        if got.shape != args[0].shape:
            return print(f"not yet: the step must return an image of the input's shape "
                         f"{args[0].shape}; got shape {got.shape}.")
        if np.allclose(got, _reference_step(*args), atol=1e-5):
            continue
        for mistake, hint in STEP_HINTS.items():
            if np.allclose(got, _reference_step(*args, mistake=mistake), atol=1e-5):
                return print(f"not yet: {hint}")
        return print("not yet: a step has these parts, in this order: roll by the shift; the "
                     "gradient at the rolled image; the move along it, normalised; the pull "
                     "towards grey; roll back; blur; clip to [0, 1].")
    print("correct")
