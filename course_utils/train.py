"""Train the shipped course models: ``python -m course_utils.train`` rebuilds ``data/``.

Each model is trained on freshly generated shapes (one seed for training, one for validation),
then measured on 2,000 test images of a seed used for nothing else, and written to ``data/`` with
its sha256 and accuracy in ``data/manifest.json``. With op determinism on, the same TensorFlow
version on the same kind of machine gives the same weights; elsewhere the accuracy is the same to
within a few tenths of a percent.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

from .data import make_shapes
from .errors import CourseError
from .models import CUE_CLASS, DATA_DIR, MANIFEST, accuracy, build_course_cnn, file_sha256
from .setup import setup

TRAIN_SEED, VAL_SEED, TEST_SEED = 1, 2, 2024  # the test seed is used for nothing else
RECIPES = {
    "shapes_cnn": {"cue_class": None, "n_train": 24_000, "epochs": 10},
    "shapes_cnn_cue": {"cue_class": CUE_CLASS, "n_train": 24_000, "epochs": 10},  # same recipe
    # Adebayo et al.'s data randomization test: labels shuffled, so there is nothing to learn but
    # the training images by heart; few images and many epochs let the network memorise them.
    "shapes_cnn_shuffled": {"shuffle_labels": True, "n_train": 512, "epochs": 50},
}


def cue_report(model, n: int = 2000) -> dict:
    """Accuracy of a model on test images with the cue where it was trained, nowhere, on the
    other classes' images."""
    return {f"test_accuracy_cue_{mode}": round(accuracy(
        model, *_xy(make_shapes(n, TEST_SEED, cue_class=CUE_CLASS, cue=mode))), 4)
        for mode in ("class", "none", "other")}


def _xy(shapes):
    return shapes.images, shapes.labels


def train(name: str, *, n_train: int, epochs: int, cue_class=None, shuffle_labels: bool = False,
          seed: int = 0, batch_size: int = 64, verbose: int = 2):
    """Train one course model and return it with its measured accuracy (a dict).

    ``shuffle_labels`` permutes the training labels (the data randomization test of Adebayo et
    al. 2018); its report adds the accuracy on those shuffled training labels (memorisation).
    """
    setup(seed)
    cue = "class" if cue_class is not None else "none"
    train_set = make_shapes(n_train, TRAIN_SEED, cue_class=cue_class, cue=cue)
    val_set = make_shapes(2000, VAL_SEED, cue_class=cue_class, cue=cue)
    x_train, y_train = _xy(train_set)
    if shuffle_labels:
        y_train = np.random.default_rng(seed).permutation(y_train)
    model = build_course_cnn(name=name)
    trainable = keras.Model(model.input, model.get_layer("logits").output)  # shares the layers
    steps_per_epoch = int(np.ceil(n_train / batch_size))
    # One epoch of linear warm-up to 2e-3, then cosine decay: without the warm-up a plain ReLU
    # network (no batch norm) can sit on the loss plateau ln(6) for epochs.
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=(epochs - 1) * steps_per_epoch, alpha=0.01,
        warmup_target=2e-3, warmup_steps=steps_per_epoch)
    trainable.compile(keras.optimizers.Adam(schedule),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=True)  # XLA: ~2x faster on CPU
    start = time.perf_counter()
    trainable.fit(x_train, y_train, batch_size=batch_size, epochs=epochs,  # shuffled: no val.
                  validation_data=None if shuffle_labels else _xy(val_set), verbose=verbose)
    report = {"train_seconds": round(time.perf_counter() - start, 1),
              "test_accuracy": round(accuracy(model, *_xy(make_shapes(2000, TEST_SEED))), 4)}
    if cue_class is not None:
        report |= cue_report(model)
    if shuffle_labels:
        report["train_accuracy_shuffled_labels"] = round(accuracy(model, x_train, y_train), 4)
    return model, report


def save(model, report: dict, data_dir: Path) -> dict:
    """Write ``<name>.keras`` and its manifest entry."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"{model.name}.keras"
    model.save(path)
    manifest_path = data_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
    entry = {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
             "test_seed": TEST_SEED, "test_images": 2000, **report,
             "keras": keras.__version__}
    manifest["models"][model.name] = entry
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return entry


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*RECIPES, "all"], default="all")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--epochs", type=int, help="override the recipe (for a quick try)")
    parser.add_argument("--n-train", type=int, help="override the recipe (for a quick try)")
    args = parser.parse_args(argv)
    for name in RECIPES if args.model == "all" else [args.model]:
        recipe = dict(RECIPES[name])
        recipe["epochs"] = args.epochs or recipe["epochs"]
        recipe["n_train"] = args.n_train or recipe["n_train"]
        if recipe["n_train"] < 64:
            raise CourseError("--n-train must be at least 64.")
        model, report = train(name, **recipe)
        entry = save(model, report, args.data_dir)
        print(name, json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
