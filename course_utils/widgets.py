"""Interactive panels: thin ipywidgets wrappers over pure functions that compute and draw.

The step-count sliders of notebooks 05 and 09 move along a *stored* gradient-ascent trajectory
(:class:`course_utils.ascent.Ascent`, :class:`course_utils.dream.Dream`): a step the run has
already passed is shown at once, a later one costs only the missing steps. Each (step size, blur)
setting keeps its own run, so going back to an earlier setting costs nothing either.

Only ipywidgets APIs that exist in both 7.7 and 8 are used.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np

from . import ascent, dream, features, gradients, perturbation
from .data import CLASS_NAMES
from .errors import CourseError
from .models import conv_layer_names
from .plotting import HEATMAP_CMAP, SIGNED_CMAP, figure_png, outline, show_image, show_segments

# --- pure functions: what a panel shows ------------------------------------------------------

def image_png(image: np.ndarray, scale: int = 4) -> bytes:
    """An image (H, W, 3) in [0, 1] as PNG bytes, each pixel drawn as a scale × scale block.

    Much faster than drawing a Matplotlib figure, so a slider answers at once.
    """
    from PIL import Image

    pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="png")
    return buffer.getvalue()


def side_by_side(*images: np.ndarray, gap: int = 2) -> np.ndarray:
    """Images of the same height, left to right, with a white gap between them."""
    spacer = np.ones((images[0].shape[0], gap, images[0].shape[2]), np.float32)
    parts = [part for image in images for part in (image, spacer)][:-1]
    return np.concatenate(parts, axis=1)


# --- runs cached per setting --------------------------------------------------------------------

class RunCache:
    """One run per setting, made on first use by ``make_run(step_size, blur_sigma)``.

    A run is an :class:`~course_utils.ascent.Ascent` or a :class:`~course_utils.dream.Dream`:
    anything with ``image(steps)`` and ``steps_run``.
    """

    def __init__(self, make_run: Callable):
        self.make_run = make_run
        self.runs: dict[tuple[float, float], object] = {}

    def get(self, step_size: float, blur_sigma: float):
        key = (round(float(step_size), 6), round(float(blur_sigma), 6))
        if key not in self.runs:
            self.runs[key] = self.make_run(*key)
        return self.runs[key]

    @property
    def steps_run(self) -> int:
        """Every ascent step computed, over all settings."""
        return sum(run.steps_run for run in self.runs.values())


# --- the panel ----------------------------------------------------------------------------------

class StepPanel:
    """Sliders for the step count, step size and blur, over runs that keep their trajectories.

    ``frame(run, steps)`` returns what to show after that many steps, as an image (H, W, 3) and
    a caption, computing it through ``run.image(steps)``; the panel calls it when a slider moves.
    After each update, ``shown`` holds the image shown and ``last_cost`` the number of ascent
    steps the move computed (0 when the run had already passed that step).

    Attributes:
        steps, step_size, blur: the sliders; set ``.value`` to move them from code.
        widget: the panel (display it, or call :meth:`show`).
    """

    def __init__(self, make_run: Callable, frame: Callable, *, steps: int = 100,
                 max_steps: int = 300, slider_step: int = 10, step_size: float = 0.02,
                 step_sizes: tuple[float, float, float] = (0.005, 0.05, 0.005),
                 blur_sigma: float = 0.5, scale: int = 4):
        import ipywidgets as w

        self.cache, self.frame, self.scale = RunCache(make_run), frame, scale
        self.steps = w.IntSlider(value=steps, min=0, max=max_steps, step=slider_step,
                                 description="steps", continuous_update=False)
        low, high, step = step_sizes
        self.step_size = w.FloatSlider(value=step_size, min=low, max=high, step=step,
                                       description="step size", readout_format=".3f",
                                       continuous_update=False)
        self.blur = w.FloatSlider(value=blur_sigma, min=0.0, max=ascent.MAX_SIGMA, step=0.25,
                                  description="blur σ", continuous_update=False)
        self.label = w.HTML()
        self.picture = w.Image(format="png")
        for slider in (self.steps, self.step_size, self.blur):
            slider.observe(self.update, names="value")
        self.widget = w.VBox([w.HBox([self.steps, self.step_size, self.blur]), self.picture,
                              self.label])
        self.shown, self.last_cost = None, 0
        self.update()

    @property
    def run(self):
        """The run of the current step size and blur."""
        return self.cache.get(self.step_size.value, self.blur.value)

    def update(self, change=None) -> None:
        """Show the current slider values (called whenever a slider moves)."""
        run, before = self.run, self.cache.steps_run
        self.shown, caption = self.frame(run, self.steps.value)
        self.last_cost = self.cache.steps_run - before
        self.picture.value = image_png(self.shown, self.scale)
        self.label.value = (f"{caption}. This move computed {self.last_cost} ascent steps "
                            f"({self.cache.steps_run} in all).")

    def show(self) -> None:
        """Display the panel in the notebook."""
        from IPython.display import display

        display(self.widget)


# --- SmoothGrad's noise and sample count (notebook 01) -----------------------------------------

def smoothgrad_figure(model, image: np.ndarray, *, noise: float = 0.1, n_samples: int = 25,
                      target=None, mask: np.ndarray | None = None, value_range=(0.0, 1.0)):
    """The image, its vanilla gradient map and its SmoothGrad map at one (noise, n_samples).

    Each map is clipped at its 99th percentile and has its own colourbar; ``mask`` (H, W), the
    object's ground truth, is outlined on both. Returns the figure.
    """
    vanilla = gradients.saliency(model, image, target, value_range=value_range)[0]
    smooth = gradients.smoothgrad(model, image, target, noise=noise, n_samples=n_samples,
                                  value_range=value_range)[0]
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 2.6), layout="constrained")
    show_image(image, axes[0], "image")
    for ax, m, title in [(axes[1], vanilla, "vanilla gradient"),
                         (axes[2], smooth, f"SmoothGrad, σ = {noise:.2f}, n = {n_samples}")]:
        shown = ax.imshow(np.minimum(m, np.percentile(m, 99)), cmap=HEATMAP_CMAP)
        fig.colorbar(shown, ax=ax, fraction=0.046, label="|∂S/∂x| (max over channels)")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        if mask is not None:
            outline(mask, ax)
    return fig


def smoothgrad_panel(model, image: np.ndarray, *, target=None, mask: np.ndarray | None = None,
                     noise: float = 0.1, n_samples: int = 25, value_range=(0.0, 1.0)):
    """Sliders for SmoothGrad's noise level σ and sample count n over :func:`smoothgrad_figure`.

    The figure is recomputed when a slider is released. Returns the ``interactive`` widget.
    """
    import ipywidgets as w

    def draw(noise: float, n_samples: int) -> None:
        smoothgrad_figure(model, image, noise=noise, n_samples=n_samples, target=target,
                          mask=mask, value_range=value_range)
        plt.show()

    return w.interact(draw, noise=w.FloatSlider(value=noise, min=0.0, max=0.5, step=0.025,
                                                continuous_update=False, description="σ"),
                      n_samples=w.IntSlider(value=n_samples, min=1, max=100,
                                            continuous_update=False, description="n"))


# --- LIME's segmentation and sample count (notebook 04) ----------------------------------------

def lime_figure(model, image: np.ndarray, *, segmentation="quickshift", n_samples: int = 1000,
                n_features: int = 5, seed: int = 0, target=None):
    """LIME at one setting: the numbered superpixels, their weights on a symmetric scale, and
    the superpixels with a positive weight among the ``n_features`` kept (the rest grey).
    Returns the figure."""
    result = perturbation.lime_explanation(model, image, target, n_samples=n_samples,
                                           n_features=n_features, segmentation=segmentation,
                                           seed=seed)
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 2.8), layout="constrained")
    show_segments(image, result.segments, axes[0],
                  f"{segmentation}: {result.segments.max() + 1} superpixels")
    limit = float(np.abs(result.map).max()) or 1.0
    shown = axes[1].imshow(result.map, cmap=SIGNED_CMAP, vmin=-limit, vmax=limit)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, label="weight")
    axes[1].set_title(f"LIME weights, {n_samples} samples", fontsize=9)
    axes[1].axis("off")
    kept = np.isin(result.segments, result.top)[..., None]
    show_image(np.where(kept, image, 0.5), axes[2], f"top: {result.top}")
    return fig


def lime_panel(model, image: np.ndarray, *, target=None, segmentation="quickshift",
               n_samples: int = 1000, n_features: int = 5):
    """A menu for LIME's segmentation and sliders for its sample count and number of features
    over :func:`lime_figure`, recomputed when a slider is released. Returns the widget."""
    import ipywidgets as w

    def draw(segmentation: str, n_samples: int, n_features: int) -> None:
        try:
            lime_figure(model, image, segmentation=segmentation, n_samples=n_samples,
                        n_features=n_features, target=target)
        except CourseError as error:            # e.g. more features than superpixels
            print(error)
            return
        plt.show()

    return w.interact(draw, segmentation=w.Dropdown(options=list(perturbation.SEGMENTATIONS),
                                                    value=segmentation,
                                                    description="segments"),
                      n_samples=w.IntSlider(value=n_samples, min=50, max=3000, step=50,
                                            continuous_update=False, description="samples"),
                      n_features=w.IntSlider(value=n_features, min=1, max=15,
                                             continuous_update=False, description="features"))


# --- the panels of notebooks 05 and 09 ----------------------------------------------------------

def class_model_panel(model, cls: int, *, steps: int = 100, max_steps: int = 300,
                      score: str = "margin", settings: ascent.Settings = features.REGULARISED,
                      class_names=CLASS_NAMES) -> StepPanel:
    """A step-count panel for the class model image of one class (notebook 05).

    The step size and blur sliders change ``settings``' step size and blur; the other
    regularisers (L2 decay, jitter) stay as in ``settings``.
    """
    def make_run(step_size: float, blur_sigma: float) -> ascent.Ascent:
        changed = settings.with_(step_size=step_size, blur_sigma=blur_sigma)
        return features.class_model_run(model, [cls], score=score, settings=changed)

    def frame(run: ascent.Ascent, n: int):
        image = run.image(n)[0]
        now = f", {score} {run.scores[n - 1, 0]:.1f}" if n > 0 else ""
        return image, f"{class_names[cls]} after {n} steps{now}"

    return StepPanel(make_run, frame, steps=steps, max_steps=max_steps,
                     step_size=settings.step_size, blur_sigma=settings.blur_sigma)


def dream_panel(model, image: np.ndarray, layers, *, octaves: int = 3,
                steps_per_octave: int = 40, steps: int | None = None,
                settings: ascent.Settings = dream.SETTINGS, **dream_options) -> StepPanel:
    """A step-count panel for Deep Dream on one image (notebook 09): the original and the dream
    side by side. The slider runs through all octaves, ``steps_per_octave`` steps each, and
    starts at ``steps`` (default: the end)."""
    def make_run(step_size: float, blur_sigma: float) -> dream.Dream:
        changed = settings.with_(step_size=step_size, blur_sigma=blur_sigma)
        return dream.Dream(model, image, layers, octaves=octaves,
                           steps_per_octave=steps_per_octave, settings=changed, **dream_options)

    def frame(run: dream.Dream, n: int):
        octave = min(n // steps_per_octave, octaves - 1) + 1
        return (side_by_side(image, run.image(n)),
                f"the image, and its dream after {n} of {run.total_steps} steps (octave {octave})")

    total = octaves * steps_per_octave
    scale = max(1, 256 // image.shape[0])
    return StepPanel(make_run, frame, steps=total if steps is None else steps, max_steps=total,
                     slider_step=max(steps_per_octave // 5, 1), step_size=settings.step_size,
                     step_sizes=(0.001, 0.01, 0.001), blur_sigma=settings.blur_sigma,
                     scale=scale)


# --- dataset search (notebook 06) ---------------------------------------------------------------

def draw_search(images: np.ndarray, result: features.SearchResult, labels=None, *,
                class_names=CLASS_NAMES, size: float = 1.1):
    """The top images of a channel, each with its unit's receptive field outlined (top row),
    and the field cut out (bottom row; grey where the field runs off the image).

    Returns:
        The figure.
    """
    patches = features.crop_patches(images, result)
    k = len(result.indices)
    fig, axes = plt.subplots(2, k, figsize=(size * k, 2 * size + 0.5), squeeze=False)
    for n, index in enumerate(result.indices):
        top, left, bottom, right = result.boxes[n]
        show_image(images[index], axes[0, n])
        axes[0, n].add_patch(plt.Rectangle((left - 0.5, top - 0.5), right - left, bottom - top,
                                           fill=False, color="red", lw=1.5))
        name = "" if labels is None else f"{class_names[labels[index]]}\n"
        axes[0, n].set_title(f"{name}{result.activations[n]:.1f}", fontsize=8)
        show_image(patches[n], axes[1, n])
    field = result.field
    fig.suptitle(f"{result.layer}, channel {result.channel}: top {k} of {len(images)} images; "
                 f"field {field.size[0]}×{field.size[1]} pixels", fontsize=9)
    fig.tight_layout()
    return fig


def search_panel(model, images: np.ndarray, labels=None, *, layers=None, k: int = 8):
    """Choose a conv layer and a channel; see its top-k images and their receptive fields.

    The largest activation of every channel of every layer is computed once, in one pass over
    the images, so moving the sliders costs no forward pass.
    """
    import ipywidgets as w

    layers = list(layers or conv_layer_names(model))
    maxima = features.channel_maxima(model, images, layers)
    fields = {name: features.receptive_field(model, name) for name in layers}
    layer = w.Dropdown(options=layers, value=layers[-1], description="layer")
    channel = w.IntSlider(value=0, min=0, max=maxima[layers[-1]][0].shape[1] - 1,
                          description="channel", continuous_update=False)

    def follow_layer(change):
        channel.max = maxima[change["new"]][0].shape[1] - 1

    layer.observe(follow_layer, names="value")

    picture = w.Image(format="png")

    def show(change=None):
        result = features.top_k(*maxima[layer.value], fields[layer.value], layer.value,
                                channel.value, k)
        fig = draw_search(images, result, labels)
        picture.value = figure_png(fig)
        plt.close(fig)

    for control in (layer, channel):
        control.observe(show, names="value")
    show()
    # An Image widget, not an Output widget: its picture is set directly, so it shows however
    # the update is triggered (an Output widget only captures during a cell's own execution).
    return w.VBox([w.HBox([layer, channel]), picture])


# --- the explorer of notebook 11 (its own module; imported last, so it may use this one) -------

from .explorer import explorer  # noqa: E402, F401
