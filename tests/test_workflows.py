"""The GitHub workflows cannot run here; they only call Makefile targets that do (make test runs
them all): this checks that they still do, and that the site folder they publish is the one
tools/book.py builds."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def _runs(workflow: str) -> list[str]:
    text = (WORKFLOWS / workflow).read_text()
    return [m.strip() for m in re.findall(r"^\s*- run: (.+)$", text, flags=re.M)]


def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))


def test_the_test_workflow_runs_what_ci_runs():
    assert _runs("test.yml") == ["make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    # on Debian 12 with Python 3.11, as here: `make browser` installs Debian's Chromium there
    assert re.search(r"^\s*container: python:3\.11-bookworm$", (WORKFLOWS / "test.yml").read_text(),
                     flags=re.M)


def test_the_pages_workflow_builds_the_book_and_publishes_its_folder():
    assert _runs("pages.yml") == ["make book"]
    text = (WORKFLOWS / "pages.yml").read_text()
    assert re.search(r"path: _build/book/html\b", text)
    assert "actions/deploy-pages" in text
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import book

    assert book.BUILD / "book" == ROOT / "_build" / "book"


def test_every_make_command_the_workflows_call_is_a_target():
    for workflow in ("test.yml", "pages.yml"):
        for command in _runs(workflow):
            target = command.split()[1]
            assert command.startswith("make ") and target in _make_targets(), (workflow, command)
