"""Install the course on Colab: the course package and what Colab lacks, nothing Colab has.

Every notebook's setup cell runs this on Colab, from a shallow clone of the repository, inside the
running kernel (so what it prints shows in the notebook). ``make test-colab-stack`` runs the same
file on a Colab-like environment here, so the test goes through the very path students take.

What it does, and why:

1. ``pip install <clone>[colab]``, a regular (non-editable) install: the package lands in
   site-packages, which the running kernel already searches, so ``import course_utils`` works at
   once without a restart (an editable install is only seen by a kernel started after it). The
   shipped models travel inside the package (``course_utils/_data``). The core dependencies that
   are already installed (numpy 2, TensorFlow, Keras, scikit-image, ipywidgets, matplotlib) are
   held at their installed versions with a pip constraint: if anything asked pip to change them,
   the install stops with pip's message instead of replacing a package a kernel restart would be
   needed for. Missing ones (lime) and the ``colab`` extra (what alibi's AnchorImage imports) are
   installed.
2. ``pip install --no-deps alibi==…`` (the version of the ``anchors`` extra): alibi's metadata
   declares numpy<2, which would downgrade Colab's numpy; its AnchorImage runs on numpy 2.

    python tools/colab_install.py [--extras colab,test] [--reinstall]

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = "seeing-inside-cnns"


def _name(requirement: str) -> str:
    """The distribution name of a requirement string: "numpy>=1.26" -> "numpy"."""
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def read_project(root: Path = ROOT) -> dict:
    """The ``[project]`` table of the repository's pyproject.toml."""
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]


def held_versions(project: dict) -> dict[str, str]:
    """The core dependencies already installed, with their versions (pip must keep them)."""
    names = [_name(r) for r in project["dependencies"]]
    return {n: v for n in names if (v := _installed(n)) is not None}


def alibi_requirement(project: dict) -> str:
    """alibi's requirement as the ``anchors`` extra pins it, e.g. "alibi==0.9.6"."""
    return next(r for r in project["optional-dependencies"]["anchors"] if _name(r) == "alibi")


def _pip(*args: str) -> None:
    """Run pip quietly; on failure show its output and stop."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-5000:], done.stderr[-5000:], sep="\n")
        raise SystemExit(f"pip failed ({' '.join(args)}); its output is above.")


def install(root: Path = ROOT, extras: str = "colab", reinstall: bool = False) -> None:
    """Install the course from ``root`` (a clone) with ``extras``, and alibi without its deps."""
    project = read_project(root)
    if not reinstall and _installed(DIST) == project["version"] and _installed("alibi"):
        print(f"The course ({DIST} {project['version']}) is already installed.")
        return
    start = time.perf_counter()
    print("Installing the course and what this Python lacks (about a minute on Colab)...")
    held = held_versions(project)
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in held.items()))
        _pip("-c", str(constraints), f"{root}[{extras}]")
    _pip("--no-deps", alibi_requirement(project))
    importlib.invalidate_caches()  # the running kernel finds the new packages
    kept = ", ".join(f"{n} {v}" for n, v in held.items())
    print(f"Done in {time.perf_counter() - start:.0f} s (kept as installed: {kept}).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="colab",
                        help="extras of the course package to install (default: colab)")
    parser.add_argument("--reinstall", action="store_true",
                        help="install again even if this version is installed")
    args = parser.parse_args(argv)
    install(ROOT, args.extras, args.reinstall)


if __name__ == "__main__":
    main()
