"""The two ways to install the course name the same packages with the same ranges."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The local stack (numpy 1, `pip check` clean): the core dependencies and these extras. The Colab
# stack (numpy 2) takes the `colab` extra instead of `anchors` (tests/test_colab_setup.py).
LOCAL_EXTRAS = ("anchors", "lab", "test", "book")
LOCAL_INSTALL = f".[{','.join(LOCAL_EXTRAS)}]"


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return set(project["dependencies"]).union(*(extras[name] for name in LOCAL_EXTRAS))


def _environment_pip_requirements() -> set[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:") + 1
    reqs = {re.sub(r'^\s*- "?|"?\s*$', "", line) for line in lines[start:]
            if line.strip() and not line.strip().startswith("#")}
    return {r for r in reqs if not r.startswith("-e ")}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower()


def test_environment_and_pyproject_name_the_same_packages():
    assert {_name(r) for r in _environment_pip_requirements()} == \
        {_name(r) for r in _pyproject_requirements()}


def test_environment_and_pyproject_give_the_same_ranges():
    assert _environment_pip_requirements() == _pyproject_requirements()


def test_environment_uses_python_311_and_installs_this_package():
    text = (ROOT / "environment.yml").read_text()
    assert "python=3.11" in text
    assert f'"-e {LOCAL_INSTALL}"' in text


def test_make_installs_the_local_stack_and_checks_it():
    makefile = (ROOT / "Makefile").read_text()
    assert f'pip install -e "{LOCAL_INSTALL}"' in makefile
    assert "pip check" in makefile


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_alibi_imports_after_the_install():
    from alibi.explainers import AnchorImage  # noqa: F401  (needs click, transformers<5)


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def test_make_test_runs_the_newest_tensorflow_allowed_and_colabs():
    """`make test` runs on two stacks, and they are the two TensorFlow versions the range is for:
    the local stack (numpy 1) the newest the range allows, the Colab stand-in (numpy 2) Colab's."""
    import numpy
    import tensorflow

    ceiling = re.search(r'"tensorflow>=[\d.]+,<(\d+)\.(\d+)"',
                        (ROOT / "pyproject.toml").read_text())
    newest = (int(ceiling[1]), int(ceiling[2]) - 1)
    colab = _minor(re.search(r"^tensorflow==([\d.]+)$", (ROOT / "tests" / "colab_preinstalled.txt")
                             .read_text(), flags=re.M)[1])
    assert colab < newest, "the range should reach past Colab's version only where it is tested"
    running = _minor(tensorflow.__version__)
    if int(numpy.__version__.split(".")[0]) < 2:
        assert running == newest, (
            f"the local stack has TensorFlow {tensorflow.__version__}, not the newest the range "
            f"allows ({newest[0]}.{newest[1]}): `rm {ROOT}/.venv/.installed && make install`")
    else:
        assert running == colab, f"the Colab stand-in has TensorFlow {tensorflow.__version__}"


def test_make_install_upgrades_tensorflow_to_the_top_of_the_range():
    assert "--upgrade tensorflow keras" in (ROOT / "Makefile").read_text()
