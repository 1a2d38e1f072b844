"""The student edition (`make student`): up to date with notebooks/, and its stubs still run.

Each student notebook is executed top to bottom on a fresh kernel, and every exercise self-check
must print its "not yet" verdict (a "correct" would mean a solution was left in).
"""

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
STUDENT = ROOT / "student"
sys.path.insert(0, str(ROOT / "tools"))
import nbtool  # noqa: E402

CHECK_CALL = re.compile(r"\bcheck_\w+\(")


def test_student_edition_is_up_to_date(tmp_path):
    fresh = {p.name: p.read_bytes() for p in nbtool.write_student_edition(tmp_path)}
    committed = {p.name: p.read_bytes() for p in STUDENT.glob("*.ipynb")}
    stale = sorted(name for name in fresh.keys() | committed.keys()
                   if fresh.get(name) != committed.get(name))
    assert not stale, f"student/ is out of date ({', '.join(stale)}): run make student"


def test_drop_solutions_keeps_the_text_above_the_heading():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("answer = None"),
        nbformat.v4.new_markdown_cell("## Takeaways\n- one\n\n## Solutions\nThe exercise:"),
        nbformat.v4.new_code_cell("answer = 42")])
    assert nbtool.drop_solutions(nb)
    assert [c.source for c in nb.cells] == ["answer = None", "## Takeaways\n- one"]


def test_drop_solutions_drops_a_cell_that_starts_with_the_heading():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## Takeaways"),
        nbformat.v4.new_markdown_cell("## Solution\nsolved:"),
        nbformat.v4.new_code_cell("answer = 42")])
    assert nbtool.drop_solutions(nb)
    assert [c.source for c in nb.cells] == ["## Takeaways"]
    assert not nbtool.drop_solutions(nb)


def _output_text(cell) -> str:
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                   for o in cell.outputs)


@pytest.mark.parametrize("name", sorted(p.name for p in STUDENT.glob("*.ipynb")))
def test_student_notebook_runs_and_checks_say_not_yet(name):
    nb = nbformat.read(STUDENT / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(STUDENT)}}).execute()
    checks = [c for c in nb.cells if c.cell_type == "code" and CHECK_CALL.search(c.source)]
    instructor = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    if nbtool.drop_solutions(instructor):
        assert checks, f"{name} has a solution section but no exercise self-check"
    for cell in checks:
        assert _output_text(cell).startswith("not yet"), \
            f"{name}: the check in\n{cell.source}\nprinted {_output_text(cell)!r}"
