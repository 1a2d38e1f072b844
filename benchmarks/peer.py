"""The course's occlusion next to a peer TensorFlow library's, on the same work, in one run.

    pip install --no-deps --target /tmp/peer "Xplique==1.4.0" deprecated wrapt \
        "opencv-python-headless<4.11"
    PYTHONPATH=/tmp/peer python -m benchmarks.peer

The peer is xplique's ``Occlusion`` (Fel et al., the DEEL project), the TensorFlow library
whose occlusion takes a patch size and a stride like the course's. It is not a course
dependency: its 1.x metadata asks for TensorFlow < 2.16 and its 2.x for numpy >= 2, so it is
installed beside the course without its dependencies, for this measurement only.

Both explain the same logit (the course's logits view of the model) of 64 images with a grey
8×8 patch at stride 4 (225 positions), in batches of 128. The bound is the same number of forward
passes at the model's best batched throughput (see ``benchmarks.run``). The two maps are
compared too: xplique adds the drops of the patches covering a pixel, the course averages them,
so xplique's map is the course's times the number of covering patches.
"""

from __future__ import annotations

import numpy as np

import course_utils as cu
from benchmarks.run import FORWARD, best_times, bound_functions, bound_run, load_model

PATCH, STRIDE, GREY, N_IMAGES, BATCH = 8, 4, 0.5, 64, 128


def peer_occlusion(model, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """xplique's occlusion maps of the logits, float32 (N, H, W)."""
    from xplique.attributions import Occlusion

    explainer = Occlusion(cu.logits_model(model), batch_size=BATCH, patch_size=PATCH,
                          patch_stride=STRIDE, occlusion_value=GREY)
    one_hot = np.eye(model.output_shape[-1], dtype=np.float32)[targets]
    return np.asarray(explainer.explain(images, one_hot))[..., 0]


def covering_patches(size: int) -> np.ndarray:
    """How many patch positions cover each pixel, (size, size)."""
    masks = cu.occlusion.patch_masks((size, size), PATCH, STRIDE)
    return masks.sum(axis=0)


def main() -> None:
    cu.setup(seed=0)
    model, name = load_model()
    images = cu.make_shapes(N_IMAGES, seed=100).images
    targets = model.predict(images, verbose=0).argmax(axis=1)
    course = cu.occlusion.occlusion(model, images, targets, patch=PATCH, stride=STRIDE,
                                    fill=GREY, score="logit_drop", batch_size=BATCH)
    peer = peer_occlusion(model, images, targets)
    scaled = course * covering_patches(images.shape[1])
    agree = np.corrcoef(scaled.ravel(), peer.ravel())[0, 1]
    print(f"model: {name}; {N_IMAGES} images, patch {PATCH}, stride {STRIDE}, grey fill")
    print(f"maps: correlation {agree:.4f}, largest difference {np.abs(scaled - peer).max():.2e}")

    passes = len(cu.occlusion.positions(images.shape[1], PATCH, STRIDE)) ** 2 + 1
    bound = bound_run(bound_functions(model)[FORWARD], images, passes)
    course_s, bound_s = best_times(
        lambda: cu.occlusion.occlusion(model, images, targets, patch=PATCH, stride=STRIDE,
                                       fill=GREY, score="logit_drop", batch_size=BATCH), bound)
    peer_s, bound_again = best_times(lambda: peer_occlusion(model, images, targets), bound)
    bound_s = min(bound_s, bound_again)
    print(f"bound ({passes} x forward per image): {bound_s:.2f} s")
    print(f"course occlusion: {course_s:.2f} s, {course_s / bound_s:.2f}x the bound")
    print(f"xplique Occlusion: {peer_s:.2f} s, {peer_s / bound_s:.2f}x the bound")


if __name__ == "__main__":
    main()
