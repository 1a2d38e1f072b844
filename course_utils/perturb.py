"""A test-only setting that moves the low-order bits of the course's numbers, as another CPU does.

Two machines with different CPUs (cache sizes, vector widths) sum the same products in a different
order, so their float32 results differ in the last bits; iterative computations (gradient ascent,
Deep Dream, randomised cascades) can amplify that into a visible difference. On one machine that
spread is invisible, which is how an output that holds "here only" gets checked in.

Setting the environment variable ``COURSE_PERTURB`` to a seed (``COURSE_PERTURB=1``) multiplies
every weight of a loaded course model, and every image :func:`course_utils.make_shapes` makes, by
``1 + SCALE·noise`` with standard normal noise drawn from that seed. ``COURSE_PERTURB=1,1e-5``
chooses another scale. Unset (the default), nothing changes. The test suite runs every notebook
with it set, and every stored output must come out the same: an output that moves under a
perturbation this small depends on summation order, and would fail on somebody else's machine.
"""

from __future__ import annotations

import os

import numpy as np

ENV = "COURSE_PERTURB"
SCALE = 1e-6  # a few float32 ulps (the ulp of 1.0 is 1.2e-7)


def setting() -> tuple[int, float] | None:
    """The (seed, relative scale) asked for by ``COURSE_PERTURB``, or None when it is unset."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    seed, _, scale = value.partition(",")
    return int(seed), float(scale or SCALE)


def _factor(shape, rng: np.random.Generator, scale: float) -> np.ndarray:
    return (1.0 + scale * rng.standard_normal(shape)).astype(np.float32)


def perturb_model(model):
    """Multiply every weight of ``model`` by ``1 + scale·noise`` when ``COURSE_PERTURB`` is set."""
    spec = setting()
    if spec is not None:
        rng = np.random.default_rng(spec[0])
        for weight in model.weights:
            value = np.asarray(weight.numpy())
            if np.issubdtype(value.dtype, np.floating):
                weight.assign(value * _factor(value.shape, rng, spec[1]))
    return model


def perturb_images(images: np.ndarray, salt: int = 0) -> np.ndarray:
    """Multiply a float batch of images in [0, 1], in place, by ``1 + scale·noise`` (one noise
    pattern for every image, which keeps it cheap) and clip it to [0, 1], when ``COURSE_PERTURB``
    is set. Returns ``images``."""
    spec = setting()
    if spec is not None:
        rng = np.random.default_rng([spec[0], salt, 1])
        images *= _factor(images.shape[1:], rng, spec[1])
        np.clip(images, 0.0, 1.0, out=images)
    return images
