"""Deep Dream (Mordvintsev, Olah & Tyka 2015): start from a real image and change it, by gradient
ascent, so that some layers respond *more* to what they already see.

The score is the mean of the squared activations of the chosen layers (the original's "L2"
objective: a unit that is on is pushed further on) or their plain mean. The ascent is the course's
one engine (:mod:`course_utils.ascent`), with random rolls (jitter) and clipping to [0, 1].

**Octaves.** The image is dreamt at several scales, smallest first. At each octave the *detail*
the dream added so far (dream minus the plain image at that scale) is enlarged and added to the
image at the next scale, and the ascent continues there. Patterns grown at a small scale become
large structures in the final image; patterns grown at the full scale stay fine.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from . import ascent
from .checks import as_image_batch
from .errors import CourseError
from .features import find_layer
from .gradients import cached
from .models import check_layer_name, conv_layer_names, feature_model

LOSSES = ("mean_square", "mean")
MIN_SIDE = 16  # the smallest octave, in pixels: smaller images leave the deep layers no room
# A gentle dream: 0.003 per step (about 1 grey level of 255), three octaves of 40 steps.
SETTINGS = ascent.Settings(step_size=0.003, jitter=4)


# --- the score: activations of some layers, for images of any size ----------------------------

def check_dream_layers(model, layers) -> tuple[str, ...]:
    """Check the layer names (one or a list): each must exist and output feature maps."""
    names = (layers,) if isinstance(layers, str) else tuple(np.atleast_1d(layers).tolist())
    if not names:
        raise CourseError("Deep Dream needs at least one layer to amplify, e.g. layers='conv3'; "
                          "the names are in cu.models.layer_names(model).")
    if not all(isinstance(n, str) for n in names):
        raise CourseError(f"layers must be a layer's name or a list of names, e.g. 'conv3'; got "
                          f"{layers!r}. The names are in cu.models.layer_names(model).")
    for name in names:
        check_layer_name(model, name)
        if len(find_layer(model, name).output.shape) != 4:
            raise CourseError(f"Layer {name!r} has no feature maps to amplify; choose a layer "
                              f"with them, e.g. one of {', '.join(conv_layer_names(model))}.")
    return names


def dream_view(model, layers: tuple[str, ...]):
    """A view that outputs the activations of ``layers`` for images of *any* size (the octaves
    need that); it shares the model's layers and weights."""
    view = feature_model(model, list(layers), logits=False)
    trunk = keras.Model(view.inputs[0], view.outputs[:len(layers)])
    flexible = keras.Input((None, None, model.input_shape[-1]))
    return keras.models.clone_model(trunk, input_tensors=flexible, clone_function=lambda x: x)


def layer_score(activations, loss: str) -> tf.Tensor:
    """The dream objective per image: the sum over layers of the mean (of the squares) of the
    activations, shape (N,)."""
    total = 0.0
    for a in activations:
        a = tf.square(a) if loss == "mean_square" else a
        total += tf.reduce_mean(a, axis=list(range(1, len(a.shape))))
    return total


def dream_step(model, layers: tuple[str, ...], loss: str, input_range: tuple[float, float]):
    """The compiled ascent step of the dream objective (cached per model, layers and loss).

    ``input_range`` is the range the model expects: images in [0, 1] are mapped linearly onto it
    inside the step, e.g. (-1, 1) for MobileNetV2 and Xception.
    """
    def build():
        view = dream_view(model, layers)
        low, high = input_range

        def score(x, targets):
            acts = view(low + (high - low) * x, training=False)
            return layer_score(acts if isinstance(acts, list | tuple) else [acts], loss)
        return ascent.make_step(score, model.input_shape[-1])
    return cached(model, ("dream", layers, loss, tuple(input_range)), build)


def activation_score(model, image: np.ndarray, layers, *, loss: str = "mean_square",
                     input_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """The dream objective of one image (H, W, C) in [0, 1]: how strongly the layers respond."""
    names = check_dream_layers(model, layers)
    view = cached(model, ("dream_view", names), lambda: dream_view(model, names))
    low, high = input_range
    acts = view(tf.constant(low + (high - low) * image[None], tf.float32), training=False)
    return float(layer_score(acts if isinstance(acts, list | tuple) else [acts], loss)[0])


# --- octaves ------------------------------------------------------------------------------------

def octave_sizes(height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """The image sizes of the octaves, smallest first; the last is (height, width).

    Octave k of n has each side divided by scale^(n - 1 - k), rounded.
    """
    return [(round(height / scale ** (octaves - 1 - k)), round(width / scale ** (octaves - 1 - k)))
            for k in range(octaves)]


def resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (N, H, W, C) images (no change when the size is already right)."""
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    return tf.image.resize(images, size, method="bilinear").numpy()


def carry_detail(dreamt: np.ndarray, plain: np.ndarray, plain_next: np.ndarray) -> np.ndarray:
    """One octave step: the next octave's first image.

    Only the *detail* the dream added at this octave (``dreamt - plain``) is enlarged; it is
    added to the plain image at the next size, which keeps that size's own sharpness, and the
    sum is clipped to [0, 1]. Enlarging the whole dreamt image instead would blur the photo a
    little more at every octave.

    Args:
        dreamt, plain: (N, h, w, C), the dream at this octave and the plain image it started from.
        plain_next: (N, H, W, C), the plain image at the next octave's size.
    """
    return np.clip(plain_next + resize(dreamt - plain, plain_next.shape[1:3]), 0, 1)


class Dream:
    """A Deep Dream run over octaves that keeps its trajectory, like :class:`ascent.Ascent`.

    Step ``s`` of the whole run is step ``s - k·steps_per_octave`` of octave k. ``image(s)``
    returns the dream after s steps at full size (the plain image plus the detail added so far,
    enlarged); asking for a step already passed computes nothing, a later one only the missing
    steps. ``steps_run`` counts every step computed.

    Args:
        model: any Keras image model (its weights are not changed).
        image: one image (H, W, C) in [0, 1] (any size: the octaves need a size-free view).
        layers: a layer name or a list of them.
        octaves: how many scales; octave_scale: the ratio between neighbouring ones.
        steps_per_octave: ascent steps at each scale.
        settings: step size, jitter and the other regularisers (:class:`ascent.Settings`).
        loss: ``"mean_square"`` (as in the original) or ``"mean"``.
        input_range: the range the model expects its input in; the image stays in [0, 1].
        keep_every: store the images of every ``keep_every``-th step.
    """

    def __init__(self, model, image, layers, *, octaves: int = 3, octave_scale: float = 1.4,
                 steps_per_octave: int = 40, settings: ascent.Settings = SETTINGS,
                 loss: str = "mean_square", input_range: tuple[float, float] = (0.0, 1.0),
                 keep_every: int = 1):
        self.layers = check_dream_layers(model, layers)
        self.base = check_dream_image(model, image)
        self.octaves = ascent.check_steps(octaves, "octaves")
        if loss not in LOSSES:
            raise CourseError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}.")
        if not octave_scale >= 1:
            raise CourseError(f"octave_scale must be 1 or more (e.g. 1.4); got {octave_scale!r}.")
        self.sizes = octave_sizes(*self.base.shape[1:3], self.octaves, octave_scale)
        if min(self.sizes[0]) < MIN_SIDE:
            raise CourseError(f"The smallest octave would be {self.sizes[0][0]}×"
                              f"{self.sizes[0][1]} pixels; keep it at least {MIN_SIDE}: use "
                              "fewer octaves or a smaller octave_scale.")
        self.steps_per_octave = ascent.check_steps(steps_per_octave, "steps_per_octave")
        self.settings, self.keep_every = ascent.check_settings(settings), keep_every
        self._step = dream_step(model, self.layers, loss, tuple(input_range))
        self.runs: list[ascent.Ascent] = []

    @property
    def total_steps(self) -> int:
        return self.octaves * self.steps_per_octave

    @property
    def steps_run(self) -> int:
        return sum(run.steps_run for run in self.runs)

    def _plain(self, k: int) -> np.ndarray:
        return resize(self.base, self.sizes[k])

    def _start(self, k: int) -> np.ndarray:
        """Octave k's first image: the plain image at its size plus the enlarged detail."""
        if k == 0:
            return self._plain(0)
        return carry_detail(self.runs[k - 1].image(self.steps_per_octave), self._plain(k - 1),
                            self._plain(k))

    def _run(self, k: int) -> ascent.Ascent:
        while len(self.runs) <= k:
            n = len(self.runs)
            self.runs.append(ascent.Ascent(self._step, self._start(n), np.zeros(1, np.int32),
                                           self.settings.with_(seed=self.settings.seed + n),
                                           keep_every=self.keep_every))
        return self.runs[k]

    def image(self, steps: int) -> np.ndarray:
        """The dream after ``steps`` steps (0 to ``total_steps``), full size, (H, W, C)."""
        whole = isinstance(steps, int | np.integer) and not isinstance(steps, bool)
        if not whole or not 0 <= steps <= self.total_steps:
            raise CourseError(f"steps must be a whole number from 0 to {self.total_steps} "
                              f"({self.octaves} octaves × {self.steps_per_octave}); got {steps!r}.")
        k = min(steps // self.steps_per_octave, self.octaves - 1)
        x = self._run(k).image(steps - k * self.steps_per_octave)
        return carry_detail(x, self._plain(k), self.base)[0]


def check_dream_image(model, image) -> np.ndarray:
    """Check one image (H, W, C) or a batch of one, in [0, 1], with the model's channel count."""
    x = as_image_batch(image, None, value_range=(0.0, 1.0), name="image")
    if len(x) != 1:
        raise CourseError(f"Deep Dream takes one image at a time; got a batch of {len(x)}.")
    if x.shape[-1] != model.input_shape[-1]:
        raise CourseError(f"The model takes {model.input_shape[-1]}-channel images; the image "
                          f"has {x.shape[-1]} channels.")
    return x


def deep_dream(model, image, layers, *, octaves: int = 3, octave_scale: float = 1.4,
               steps_per_octave: int = 40, settings: ascent.Settings = SETTINGS,
               loss: str = "mean_square", input_range: tuple[float, float] = (0.0, 1.0)
               ) -> np.ndarray:
    """Deep Dream: amplify what the given layers see in ``image``, at several octaves.

    Args:
        model: any Keras image model; its weights are not changed.
        image: one image (H, W, C) in [0, 1].
        layers: a layer name, or a list of them (their objectives are added).
        octaves, octave_scale, steps_per_octave, settings, loss, input_range: see :class:`Dream`.

    Returns:
        The dreamt image, float32 (H, W, C) in [0, 1].
    """
    dream = Dream(model, image, layers, octaves=octaves, octave_scale=octave_scale,
                  steps_per_octave=steps_per_octave, settings=settings, loss=loss,
                  input_range=input_range, keep_every=steps_per_octave)
    return dream.image(dream.total_steps)


# --- exercise -----------------------------------------------------------------------------------

def check_carry_exercise(my_carry) -> None:
    """Check a student's ``my_carry(dreamt, plain, plain_next)`` against :func:`carry_detail`
    on three octave steps (batches of one image, one of them where clipping matters).
    Prints "correct" or "not yet: <hint>"."""
    rng = np.random.default_rng(9)
    for small, big in [(8, 11), (11, 16), (20, 40)]:
        plain_next = rng.uniform(0.2, 0.8, (1, big, big, 3)).astype(np.float32)
        plain = resize(plain_next, (small, small))
        dreamt = np.clip(plain + rng.normal(0, 0.15, plain.shape), 0, 1).astype(np.float32)
        if small == 20:                            # push some pixels over 1: clipping matters
            plain_next[:, :big // 2] = 0.98
        want = carry_detail(dreamt, plain, plain_next)
        try:
            got = my_carry(dreamt.copy(), plain.copy(), plain_next.copy())
        except Exception as e:  # the student's code failed: say how, do not raise
            print(f"not yet: your function raised {type(e).__name__}: {e} (from {small}×{small} "
                  f"to {big}×{big}).")
            return
        if got is None:
            print("not yet: your function returns None; return the next octave's first image.")
            return
        got = np.asarray(got, np.float32)
        if got.shape != want.shape:
            print(f"not yet: from {small}×{small} to {big}×{big} the result should have shape "
                  f"{want.shape}, the next octave's; yours has {got.shape}.")
            return
        if np.allclose(got, want, atol=1e-5):
            continue
        if np.allclose(got, resize(dreamt, (big, big)), atol=1e-5):
            print("not yet: you enlarged the whole dreamt image. The next octave should start "
                  "from the plain image at its own size, sharper than an enlarged small one, "
                  "plus only what the dream added.")
        elif np.allclose(np.clip(got, 0, 1), want, atol=1e-5):
            print("not yet: some pixels are outside [0, 1]; an image must stay in range.")
        else:
            print(f"not yet: from {small}×{small} to {big}×{big} the result is off by up to "
                  f"{np.abs(got - want).max():.2f}. Which image is the detail measured against, "
                  "and which one is it added to?")
        return
    print("correct")


class LayerDreamPanel:
    """A layer menu over notebook 09's step panel: one dream per layer, each kept once made.

    Attributes:
        choice: the menu; set ``.value`` to switch layers from code.
        panels: the step panels made so far, by layer.
        widget: the whole panel (display it).
    """

    def __init__(self, model, image: np.ndarray, layers, **panel_options):
        import ipywidgets as w

        from .widgets import dream_panel

        self._make = lambda layer: dream_panel(model, image, layer, **panel_options)
        self.choice = w.Dropdown(options=list(layers), description="layer")
        self.panels: dict = {}
        self.widget = w.VBox()
        self.choice.observe(self._show, names="value")
        self._show()

    @property
    def panel(self):
        """The step panel of the layer shown."""
        return self.panels[self.choice.value]

    def _show(self, change=None) -> None:
        if self.choice.value not in self.panels:
            self.panels[self.choice.value] = self._make(self.choice.value)
        self.widget.children = (self.choice, self.panel.widget)
