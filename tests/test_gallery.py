"""The README's pictures exist, and each notebook the gallery names has the figure it picks."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import gallery  # noqa: E402  (tools/ is not a package)


def test_every_picture_the_readme_shows_exists():
    links = re.findall(r"\]\((docs/gallery/[^)]+\.png)\)", (ROOT / "README.md").read_text())
    assert len(links) == len(gallery.PICKS)
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_each_pick_is_a_stored_figure_of_its_notebook():
    for stem, index in gallery.PICKS.items():
        figures = gallery.figures(ROOT / "notebooks" / f"{stem}.ipynb")
        assert index < len(figures), f"{stem} stores {len(figures)} figures"
