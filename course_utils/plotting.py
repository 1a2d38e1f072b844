"""Pure plotting functions: each one draws, and returns its figure or axes; nothing else.

Heatmaps are normalised here, for display only; the methods return raw maps. Their colours are
perceptually uniform ("inferno": dark = low, bright = high, the same step in value looks like the
same step in colour, and it survives printing in grey), or diverging around zero for signed maps
("RdBu_r": blue below zero, white at zero, red above). The rainbow "jet" map, once the default of
every saliency paper, invents edges where its hues change and hides them where they do not.
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np

HEATMAP_CMAP = "inferno"
SIGNED_CMAP = "RdBu_r"


def normalize_map(heatmap: np.ndarray, *, symmetric: bool = False) -> np.ndarray:
    """Scale a map for display: to [0, 1], or to [-1, 1] around 0 when ``symmetric``.

    A constant map becomes all zeros (nothing to show), never NaN.
    """
    h = np.asarray(heatmap, np.float32)
    if symmetric:
        peak = np.abs(h).max()
        return h / peak if peak > 0 else np.zeros_like(h)
    span = h.max() - h.min()
    return (h - h.min()) / span if span > 0 else np.zeros_like(h)


def show_image(image: np.ndarray, ax=None, title: str | None = None):
    """Draw one image (H, W, 3) in [0, 1] without ticks. Returns the axes."""
    ax = ax or plt.gca()
    image = np.asarray(image)
    ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else np.clip(image, 0, 1),
              cmap="gray" if image.shape[-1] == 1 else None)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def outline(mask: np.ndarray, ax=None, *, color: str = "white", linewidth: float = 1.2):
    """Draw the outline of a binary mask (H, W), e.g. a shapes image's object, on the axes."""
    ax = ax or plt.gca()
    mask = np.asarray(mask, np.float32)
    if mask.min() < 0.5 < mask.max():                       # an empty or full mask has no edge
        ax.contour(mask, levels=[0.5], colors=[color], linewidths=linewidth)
    return ax


def show_segments(image: np.ndarray, segments: np.ndarray, ax=None, title: str | None = None, *,
                  numbers: bool = True, fontsize: float = 7):
    """Draw an image with its superpixels outlined in yellow and numbered by their ids.

    A small image is enlarged (each pixel a block) before the outlines are drawn, so that they
    stay one screen pixel thin. Each number sits at the pixel of its superpixel farthest from
    the superpixel's border, inside it even when it is not convex. Returns the axes.
    """
    from scipy.ndimage import distance_transform_edt
    from skimage.segmentation import mark_boundaries

    segments = np.asarray(segments)
    h, w = segments.shape
    k = max(1, -(-256 // max(h, w)))                        # enlarge to at least 256 pixels
    big = np.repeat(np.repeat(np.clip(image, 0, 1), k, axis=0), k, axis=1)
    big_segments = np.repeat(np.repeat(segments, k, axis=0), k, axis=1)
    ax = ax or plt.gca()
    ax.imshow(mark_boundaries(big, big_segments, color=(1, 1, 0)),
              extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    if numbers:
        for label in np.unique(segments):
            depth = distance_transform_edt(np.pad(segments == label, 1))[1:-1, 1:-1]
            row, col = np.unravel_index(depth.argmax(), depth.shape)
            ax.text(col, row, str(label), color="black", fontsize=fontsize, ha="center",
                    va="center", bbox={"boxstyle": "round,pad=0.1", "fc": "white",
                                       "alpha": 0.7, "lw": 0})
    return ax


def overlay(image: np.ndarray, heatmap: np.ndarray, ax=None, *, alpha: float = 0.5,
            cmap: str | None = None, title: str | None = None, symmetric: bool = False,
            colorbar: bool = False, mask: np.ndarray | None = None):
    """Draw a heatmap over an image.

    Args:
        image: (H, W, 3) in [0, 1].
        heatmap: (h, w), any range; drawn stretched over the image (so a coarse 8×8 Grad-CAM
            map or an occlusion grid lines up with the pixels it covers).
        ax: the axes to draw on (default: the current ones).
        alpha: opacity of the heatmap.
        cmap: colour map; default ``HEATMAP_CMAP``, or ``SIGNED_CMAP`` when ``symmetric``.
        title: axes title.
        symmetric: scale to [-1, 1] around 0 (for signed maps) instead of to [0, 1].
        colorbar: add a colourbar for the (normalised) heatmap values.
        mask: an object mask (H, W) whose outline is drawn on top (the shapes' ground truth).

    Returns:
        The axes.
    """
    ax = show_image(image, ax, title)
    h, w = np.asarray(image).shape[:2]
    lo = -1 if symmetric else 0
    cmap = cmap or (SIGNED_CMAP if symmetric else HEATMAP_CMAP)
    mappable = ax.imshow(normalize_map(heatmap, symmetric=symmetric), cmap=cmap, alpha=alpha,
                         vmin=lo, vmax=1, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
                         interpolation="bilinear")
    if colorbar:
        ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04)
    if mask is not None:
        outline(mask, ax)
    return ax


def image_grid(images, titles=None, *, ncols: int = 8, size: float = 1.4, cmap: str | None = None,
               suptitle: str | None = None):
    """A grid of images (or 2D maps) with optional titles. Returns the figure.

    Args:
        images: a batch (N, H, W, 3) or (N, H, W), or a list of such arrays.
        titles: one title per image, or None.
        ncols: images per row.
        size: inches per image.
        cmap: colour map for 2D maps (e.g. masks).
        suptitle: a title over the whole grid.
    """
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        image = np.asarray(images[i])
        if image.ndim == 2:
            ax.imshow(image, cmap=cmap)
        else:
            show_image(image, ax)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def heatmap_row(image: np.ndarray, maps: dict, *, size: float = 2.0, cmap: str | None = None,
                alpha: float = 0.5, suptitle: str | None = None, mask: np.ndarray | None = None):
    """The image, then each named map over it, in one row. Returns the figure.

    Args:
        image: (H, W, 3) in [0, 1].
        maps: {title: heatmap (h, w)}.
        mask: an object mask (H, W), outlined on every map.
    """
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(size * (len(maps) + 1), size + 0.4))
    show_image(image, axes[0], "image")
    for ax, (title, heatmap) in zip(axes[1:], maps.items(), strict=True):
        overlay(image, heatmap, ax, cmap=cmap, alpha=alpha, title=title, mask=mask)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def confusion_matrix_plot(matrix: np.ndarray, class_names, ax=None, title: str | None = None):
    """Draw a confusion matrix (rows: true class, columns: predicted) with its counts."""
    ax = ax or plt.gca()
    ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > matrix.max() / 2 else "black")
    if title:
        ax.set_title(title)
    return ax


def figure_png(fig) -> bytes:
    """The figure as PNG bytes, at its own dpi (for widgets that show a picture)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    return buffer.getvalue()
