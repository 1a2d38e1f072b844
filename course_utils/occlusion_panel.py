"""An ipywidgets panel for occlusion sensitivity: sliders for patch size, stride and fill.

The panel is a thin layer over two pure functions, :func:`compute` (what the panel computes on a
slider move) and :func:`draw_occlusion` (what it draws). Slider moves are coalesced, "latest
wins": a move only records that an update is due and asks the kernel's event loop to run one
update soon; moves that arrive before it runs are absorbed by that same update, which reads the
sliders' *current* values. So a burst of moves costs one computation, not a queue of them. The
sliders also send their value only on release (``continuous_update=False``).
Works with ipywidgets 7.7 and 8.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np

from . import occlusion as occ
from .data import CLASS_NAMES
from .errors import CourseError
from .plotting import figure_png

PANEL_PATCH, PANEL_STRIDE = 8, 6  # the default on 64×64 images: 122 forward passes per move
# On larger images (a 224 photo) the default is occlusion.default_settings(side): 56 and 42.


def compute(model, image: np.ndarray, target=None, *, patch: int = PANEL_PATCH,
            stride: int = PANEL_STRIDE, fill: str = "grey",
            score: str = "probability") -> occ.OcclusionResult:
    """What the panel computes on a slider move: occlusion of one image (H, W, C)."""
    return occ.occlusion_result(model, image, target, patch=patch, stride=stride, fill=fill,
                                score=score)


def draw_occlusion(image: np.ndarray, result: occ.OcclusionResult, *, patch: int, stride: int,
                   score: str = "probability", class_names=CLASS_NAMES):
    """The image with one patch drawn on it, the coarse grid, and the map over the image.

    Returns the figure.
    """
    c = int(result.target[0])
    label = {"probability": f"p({class_names[c]}) when occluded",
             "probability_drop": f"drop of p({class_names[c]})",
             "logit_drop": f"drop of the {class_names[c]} logit"}[score]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    axes[0].imshow(np.clip(image, 0, 1))
    axes[0].add_patch(plt.Rectangle((-0.5, -0.5), patch, patch, color="grey", alpha=0.9))
    axes[0].set_title(f"patch {patch}, stride {stride}")
    limits = {"vmin": 0, "vmax": 1} if score == "probability" else {}
    grid = axes[1].imshow(result.grid[0], cmap="viridis", **limits)
    axes[1].set_title(f"grid {result.grid.shape[1]}×{result.grid.shape[2]}")
    fig.colorbar(grid, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(np.clip(image, 0, 1))
    shown = axes[2].imshow(result.map[0], cmap="viridis", alpha=0.6, **limits)
    axes[2].set_title("map at image resolution")
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(label, fontsize=10)
    fig.tight_layout()
    return fig


def _event_loop_schedule(callback: Callable) -> None:
    """Run ``callback`` soon on the running event loop (the kernel's), or now if there is none."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        callback()
    else:
        loop.call_soon(callback)


class LatestWins:
    """Run ``callback`` once, soon, however many times :meth:`request` is called before it
    runs: slider moves that arrive while a computation is pending join it, and the callback
    then reads the controls' latest values (no queue of stale updates)."""

    def __init__(self, callback: Callable, schedule: Callable[[Callable], None]):
        self.callback, self.schedule, self.due = callback, schedule, False

    def request(self, change=None) -> None:
        if not self.due:
            self.due = True
            self.schedule(self._run)

    def _run(self) -> None:
        if self.due:
            self.due = False
            self.callback()


class OcclusionPanel:
    """Sliders for patch size and stride, a fill menu, the image, the map and the cost.

    ``patch`` and ``stride`` default to :func:`course_utils.occlusion.default_settings` for the
    image's size (8 and 6 on the course's 64×64 images; 56 and 42 on a 224 photo). Pass the
    model's ``class_names`` (an ImageNet model's 1,000) for the figure's titles.

    Attributes:
        patch, stride, fill: the controls; set ``.value`` to move them from code.
        widget: the panel (display it, or call :meth:`show`).
        computations: how many maps the panel has computed.
        last_seconds: how long the last computation took (the compute path, without drawing).
        result: the last :class:`~course_utils.occlusion.OcclusionResult`.
    """

    def __init__(self, model, image: np.ndarray, target=None, *, patch: int | None = None,
                 stride: int | None = None, fill: str = "grey", score: str = "probability",
                 class_names=CLASS_NAMES,
                 schedule: Callable[[Callable], None] = _event_loop_schedule):
        import ipywidgets as w

        self.model, self.image, self.target, self.score = model, np.asarray(image), target, score
        self.class_names, self.schedule = class_names, schedule
        size = min(self.image.shape[:2])
        default = occ.default_settings(size)      # 8 and 6 at 64; 56 and 42 on a 224 photo
        patch = default["patch"] if patch is None else patch
        stride = default["stride"] if stride is None else stride
        self.patch = w.IntSlider(value=patch, min=2, max=size // 2, description="patch",
                                 continuous_update=False)
        self.stride = w.IntSlider(value=stride, min=1, max=size // 2, description="stride",
                                  continuous_update=False)
        self.fill = w.Dropdown(options=list(occ.FILLS), value=fill, description="fill")
        self.label = w.HTML()
        self.output = w.Output()
        self.widget = w.VBox([w.HBox([self.patch, self.stride, self.fill]), self.label,
                              self.output])
        self.computations, self.last_seconds, self.result = 0, 0.0, None
        self._pending = LatestWins(self.update, schedule)
        for control in (self.patch, self.stride, self.fill):
            control.observe(self._pending.request, names="value")
        self.update()

    @property
    def settings(self) -> dict:
        """The current slider values."""
        return {"patch": self.patch.value, "stride": self.stride.value, "fill": self.fill.value}

    def update(self) -> None:
        """Compute and draw the map for the current slider values.

        The figure is put into the output widget's ``outputs`` directly: ``with self.output``
        captures only what the kernel sends on behalf of the request being run, and an update
        run later from the event loop (see :class:`LatestWins`) has none, so its figure was lost.
        """
        s = self.settings
        start = time.perf_counter()
        try:
            self.result = compute(self.model, self.image, self.target, score=self.score, **s)
        except CourseError as e:       # e.g. a stride larger than the patch: say so in the panel
            self.label.value = f"<b>{e}</b>"
            self.output.outputs = ()
            return
        self.last_seconds = time.perf_counter() - start
        self.computations += 1
        self.label.value = (f"patch {s['patch']}, stride {s['stride']}: "
                            f"<b>{self.result.passes} forward passes</b> "
                            f"(computed in {1e3 * self.last_seconds:.0f} ms)")
        fig = draw_occlusion(self.image, self.result, patch=s["patch"], stride=s["stride"],
                             score=self.score, class_names=self.class_names)
        png = base64.b64encode(figure_png(fig)).decode("ascii")
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/png": png, "text/plain": "the occlusion map"}},)
        plt.close(fig)

    def show(self) -> None:
        """Display the panel in the notebook."""
        from IPython.display import display

        display(self.widget)


def occlusion_panel(model, image: np.ndarray, target=None, **settings) -> OcclusionPanel:
    """An :class:`OcclusionPanel` for one image (H, W, C); displays it and returns it."""
    panel = OcclusionPanel(model, image, target, **settings)
    panel.show()
    return panel
