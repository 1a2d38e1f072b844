"""The Colab path: one address, generated setup cells and badges, an install that keeps numpy 2."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement

from tools import colab_install, colab_setup

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
URL = colab_setup.repository_url()
NOTEBOOKS = colab_setup.notebook_paths()


def test_the_address_is_written_once():
    """Only pyproject.toml and what is generated from it (the README's badges, the notebooks'
    setup cells and their student edition) hold the repository's address."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    holders = {p for p in tracked if (ROOT / p).is_file() and URL in (ROOT / p).read_text(
        errors="ignore")}
    generated = {p for p in holders if p == "README.md" or (
        p.endswith(".ipynb") and p.split("/")[0] in ("notebooks", "student"))}
    assert holders - generated == {"pyproject.toml"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_cell_is_the_generated_one(path):
    source = colab_setup.first_code_cell(nbformat.read(path, as_version=4)).source
    assert source == colab_setup.setup_cell(source, URL), \
        f"{path.name}: run `make colab-setup` (python tools/colab_setup.py sync)"


def test_readme_badges_are_the_generated_ones():
    text = (ROOT / "README.md").read_text()
    names = [p.name for p in NOTEBOOKS]
    assert text == colab_setup.readme_with_badges(text, URL, names), "run `make colab-setup`"
    for name in names:
        assert f"colab.research.google.com/github/{URL[19:]}/blob/main/notebooks/{name}" in text
        assert f"colab.research.google.com/github/{URL[19:]}/blob/main/student/{name}" in text


def test_sync_is_idempotent():
    source = "import course_utils as cu  # an older comment\nimport numpy as np\n\ncu.setup(seed=0)"
    once = colab_setup.setup_cell(source, URL)
    assert colab_setup.setup_cell(once, URL) == once
    assert once.endswith("import course_utils as cu  # first: it quiets TensorFlow before "
                         "TensorFlow starts\nimport numpy as np\n\ncu.setup(seed=0)")


def test_lines_above_the_course_import_are_kept_below_it():
    once = colab_setup.setup_cell("import time\nimport course_utils as cu\n\ncu.setup(seed=0)", URL)
    assert once.endswith("TensorFlow starts\nimport time\n\ncu.setup(seed=0)")
    assert colab_setup.setup_cell(once, URL) == once


def test_setup_cell_on_colab_clones_the_address_and_runs_the_installer(monkeypatch):
    """The header's Colab branch, run with a stand-in google.colab and no network."""
    calls = []
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    isdir = os.path.isdir
    monkeypatch.setattr("os.path.isdir", lambda p: False if p.startswith("/content/") else isdir(p))
    monkeypatch.setattr("subprocess.run", lambda cmd, check: calls.append(cmd))
    monkeypatch.setattr("runpy.run_path", lambda path: {"main": lambda argv: calls.append(path)})
    exec(colab_setup.setup_header(URL), {})
    clone = "/content/" + URL.rsplit("/", 1)[1]
    assert calls == [["git", "clone", "--quiet", "--depth=1", URL, clone],
                     f"{clone}/tools/colab_install.py"]


def test_setup_cell_off_colab_only_imports(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail("ran a command"))
    namespace = {}
    exec(colab_setup.setup_header(URL), namespace)
    assert namespace["cu"].__name__ == "course_utils"


def test_colab_installs_alibi_as_the_anchors_extra_pins_it():
    assert colab_install.alibi_requirement(PROJECT) in PROJECT["optional-dependencies"]["anchors"]
    assert colab_install.alibi_requirement(PROJECT).startswith("alibi==")


def test_installer_holds_the_installed_core_packages():
    held = colab_install.held_versions(PROJECT)
    import numpy
    import tensorflow
    assert held["numpy"] == numpy.__version__
    assert held["tensorflow"] == tensorflow.__version__


def test_colab_packages_satisfy_the_core_dependencies():
    """What Colab has (numpy 2, scikit-image 0.25, ...) is inside every core range, so the Colab
    install never has to replace it; the numpy<2 ceilings live in the `anchors` extra only. The
    one package the `colab` extra replaces is transformers (Colab's 5.x breaks alibi's import),
    as the README says."""
    lines = [line for line in (ROOT / "tests" / "colab_preinstalled.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    colab = {r.name.lower(): str(r.specifier)[2:] for r in map(Requirement, lines)
             if r.specifier and str(r.specifier).startswith("==")}
    assert colab["numpy"].startswith("2.")
    for requirement in map(Requirement, PROJECT["dependencies"]):
        if requirement.name.lower() in colab:
            assert requirement.specifier.contains(colab[requirement.name.lower()]), requirement
    replaced = {r.name.lower() for r in map(Requirement, PROJECT["optional-dependencies"]["colab"])
                if r.name.lower() in colab and not r.specifier.contains(colab[r.name.lower()])}
    assert replaced == {"transformers"}
    assert "Colab has transformers 5" in (ROOT / "README.md").read_text()
