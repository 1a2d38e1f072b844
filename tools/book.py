"""Build the course as a book site from the notebooks' stored outputs (no re-execution).

    python tools/book.py                 # -> _build/book/html/index.html
    python tools/book.py --out DIR

The notebooks are rendered as they were stored and checked by nbval, so the site shows exactly
what a student sees. Sphinx with myst-nb and the Sphinx Book Theme: myst-nb renders notebooks
without running them, Sphinx's autodoc turns course_utils' docstrings into one page per module
(Google-style docstrings through napoleon, equations as ``:math:``), and the theme gives the
navigation and search that Jupyter Book sites have. MathJax is served from the site itself (the
npm package ``mathjax@3``, fetched once into ``_build/cache``), so the site works offline.

The landing page, the gallery, "Explaining your own model" and "Running the course" are cut from
README.md at build time, so the README stays the one place those texts are written.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
MATHJAX = "mathjax@3.2.2"
sys.path.insert(0, str(ROOT / "tools"))
from colab_setup import colab_link, repository_url  # noqa: E402

CONF = '''\
project = "Seeing inside CNNs"
author = "The course authors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
myst_enable_extensions = ["dollarmath", "amsmath"]
nb_execution_mode = "off"               # render the stored outputs that nbval checked
nb_ipywidgets_js = {}                   # no widget manager from a CDN: see static_widgets
mathjax_path = "mathjax/tex-chtml.js"   # served by the site: no CDN
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_theme = "sphinx_book_theme"
html_title = "Seeing inside CNNs"
html_theme_options = {"repository_url": REPO, "use_repository_button": True,
                      "show_toc_level": 2}
html_context = {"default_mode": "light"}
autodoc_member_order = "bysource"
autodoc_mock_imports = []
exclude_patterns = ["_build"]
suppress_warnings = ["myst.header", "misc.highlighting_failure"]
'''
# A 3x3 grid of squares, one lit: a feature map with its strongest unit.
FAVICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 3 3">
<rect width="3" height="3" fill="#000004"/><rect x="1" y="1" width="1" height="1" fill="#fcffa4"/>
<rect x="2" y="1" width="1" height="1" fill="#bc3754"/></svg>
"""


def readme_sections(text: str) -> dict[str, str]:
    """README.md cut at its level-2 headings: {heading: body}; the text above them is ''."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    sections = {"": parts[0]}
    sections.update({parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)})
    return sections


def site_markdown(text: str, repo: str) -> str:
    """README Markdown rewritten for the site: lectures and gallery images by their site paths,
    other repository files by their address, and no badge images (they would be fetched from
    another host)."""
    text = re.sub(r"\[!\[([^\]]*)\]\([^)]*\)\]\(([^)]*)\)", r"[\1](\2)", text)
    text = re.sub(r"\]\(notebooks/([^)]+\.ipynb)\)", r"](lectures/\1)", text)
    text = re.sub(r"\]\(docs/gallery/([^)]+)\)", r"](gallery/\1)", text)
    text = re.sub(r"\]\((?!https?://|#|lectures/|gallery/)([^)]+)\)",
                  lambda m: f"]({repo}/blob/main/{m.group(1)})", text)
    # `01_saliency_maps` in a table cell -> a link to the lecture page.
    return re.sub(r"^\| `(\d\d_\w+)` \|", r"| [\1](lectures/\1.ipynb) |", text, flags=re.M)


def lecture_title(path: Path) -> str:
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            first = "".join(cell["source"]).strip().splitlines()[0]
            return first.lstrip("# ").strip()
    return path.stem


def mathjax(cache: Path) -> Path:
    """The MathJax 3 distribution (es5/), unpacked from the npm registry's tarball once."""
    target = cache / "mathjax"
    if (target / "tex-chtml.js").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    if shutil.which("npm") is None:
        raise SystemExit("tools/book.py needs npm (Node.js) once, to fetch MathJax for the site.")
    name = subprocess.run(["npm", "pack", MATHJAX, "--silent"], cwd=cache, check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]
    with tarfile.open(cache / name) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("package/es5/")]
        tar.extractall(cache, members=members, filter="data")
    shutil.rmtree(target, ignore_errors=True)
    (cache / "package" / "es5").rename(target)
    shutil.rmtree(cache / "package", ignore_errors=True)
    return target


WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "An interactive panel: its sliders and menus work when the notebook runs"


def static_widgets(text: str, name: str, repo: str) -> str:
    """The notebook `text` with each widget's stored output (a Python repr such as
    ``VBox(children=(IntSlider(...`` when no widget manager runs) replaced by a line that says
    where the widget works."""
    nb = json.loads(text)
    note = (f"*{WIDGET_NOTE}, in JupyterLab or [on Colab]({colab_link(repo, name)}); this static "
            "page cannot run it.*")
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            if WIDGET_MIME in output.get("data", {}):
                output["data"] = {"text/markdown": note}
    return json.dumps(nb)


def stage(src: Path) -> None:
    """Write the book's sources into `src`: conf.py, pages cut from the README, the notebooks."""
    repo = repository_url(ROOT)
    shutil.rmtree(src, ignore_errors=True)
    (src / "lectures").mkdir(parents=True)
    (src / "api").mkdir()
    shutil.copytree(ROOT / "docs" / "gallery", src / "gallery")
    shutil.copytree(mathjax(BUILD / "cache"), src / "_static" / "mathjax")
    (src / "_static" / "favicon.svg").write_text(FAVICON)
    (src / "conf.py").write_text(f"REPO = {repo!r}\n" + CONF)

    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for nb in notebooks:
        (src / "lectures" / nb.name).write_text(static_widgets(nb.read_text(), nb.name, repo))
    modules = sorted(p.stem for p in (ROOT / "course_utils").glob("*.py")
                     if not p.stem.startswith("_"))
    for name in modules:
        (src / "api" / f"{name}.md").write_text(
            f"# course_utils.{name}\n\n```{{eval-rst}}\n.. automodule:: course_utils.{name}\n"
            "   :members:\n```\n")

    readme = readme_sections((ROOT / "README.md").read_text())
    intro = readme[""].split("\n", 1)[1]        # without the README's own title
    landing = ["# Seeing inside CNNs", intro]
    for heading in ("Learn: the student path", "Teach: the instructor path", "The lecture map"):
        landing += [f"## {heading}", readme[heading]]
    toc = ["```{toctree}\n:caption: Lectures\n:maxdepth: 1\n"]
    toc += [f"lectures/{nb.stem}" for nb in notebooks]
    toc += ["```\n", "```{toctree}\n:caption: Using the course\n:maxdepth: 1\n", "gallery"]
    pages = {"gallery": ("What each lecture produces", ["What each lecture produces"]),
             "own_model": ("Explaining your own model", ["Explaining your own model"]),
             "running": ("Running the course", ["Two commands", "Colab", "Troubleshooting",
                                                "Licences"])}
    for page, (title, headings) in pages.items():
        present = [h for h in headings if h in readme]
        if not present:
            continue
        body = [f"# {title}"]
        for h in present:
            body += [readme[h]] if len(present) == 1 else [f"## {h}", readme[h]]
        (src / f"{page}.md").write_text(site_markdown("\n".join(body), repo))
        if page != "gallery":
            toc.append(page)
    toc += ["```\n", "```{toctree}\n:caption: course_utils\n:maxdepth: 1\n"]
    toc += [f"api/{name}" for name in modules] + ["```\n"]
    (src / "index.md").write_text(site_markdown("\n".join(landing), repo) + "\n"
                                  + "\n".join(toc))


def build(out: Path = BUILD / "book") -> Path:
    """Stage the sources in `out`/src and build the HTML site into `out`/html; return its path."""
    src, html = out / "src", out / "html"
    stage(src)
    # Sphinx's warnings (a docstring's broken markup, an ambiguous reference) also go to a file,
    # which tests/test_book.py requires to be empty.
    subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "2",
                    "-w", str(out / "warnings.txt"), str(src), str(html)], check=True)
    return html


def site_pages(html: Path) -> list[Path]:
    """The site's HTML pages, without the theme's template fragments in ``_static``."""
    return sorted(p for p in html.rglob("*.html") if "_static" not in p.relative_to(html).parts)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUILD / "book")
    html = build(parser.parse_args(argv).out)
    print(f"{html / 'index.html'}: {len(site_pages(html))} pages")


if __name__ == "__main__":
    main(sys.argv[1:])
