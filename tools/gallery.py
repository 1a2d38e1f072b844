"""Small pictures for the README, cut from the figures the notebooks store (not redrawn).

    python tools/gallery.py          # writes docs/gallery/NN_name.png for each notebook in PICKS

Each notebook contributes one of its stored figures (the n-th PNG output, counted from 0), shrunk
to at most WIDTH pixels wide. Run it after re-executing the notebooks; the README links to the
files it writes, and tests/test_gallery.py checks that every link points to an existing file.
"""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import nbformat
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "gallery"
WIDTH = 420

# notebook stem -> which of its stored figures to show (0 = the first)
PICKS = {
    "00_course_setup": 0,
    "01_saliency_maps": 13,
    "02_occlusion_sensitivity": 1,
    "03_class_activation_maps": 7,
    "04_black_box_explanations": 6,
    "05_class_model_visualization": 6,
    "06_dataset_search": 9,
    "07_deconvolution_math": 2,
    "08_deconvnet_visualization": 2,
    "09_deep_dream": 3,
    "10_evaluating_explanations": 6,
    "11_explorer": 0,
    "12_more_attribution_methods": 1,
    "13_capstone_your_own_data": 3,
}


def figures(path: Path) -> list[bytes]:
    """The PNG outputs of a notebook, in order."""
    nb = nbformat.read(path, as_version=4)
    return [base64.b64decode(out["data"]["image/png"])
            for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]


def thumbnail(png: bytes, width: int = WIDTH) -> Image.Image:
    """The picture, shrunk to ``width`` pixels wide if it is wider."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)),
                             Image.LANCZOS)
    return image


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for stem, index in PICKS.items():
        path = ROOT / "notebooks" / f"{stem}.ipynb"
        if not path.exists():
            print(f"skip {stem}: no such notebook", file=sys.stderr)
            continue
        pngs = figures(path)
        if index >= len(pngs):
            raise SystemExit(f"{stem} stores {len(pngs)} figures; PICKS asks for number {index}")
        # 256 colours: a third of the bytes, and no visible change at this size
        thumbnail(pngs[index]).quantize(256).save(OUT / f"{stem}.png", optimize=True)
        print(f"docs/gallery/{stem}.png from figure {index} of {len(pngs)}")


if __name__ == "__main__":
    main()
