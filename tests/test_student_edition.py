"""The student edition (`make student`): up to date with notebooks/, and its stubs still answer.

A student notebook is the instructor's code up to the "## Solution" heading. Rather than run every
student notebook again (about 14 minutes), the test checks that the code is that prefix and that
the instructor's stored outputs (which nbval checks) show every self-check above the heading
answering "not yet" to the stub.
"""

import re
import sys
from pathlib import Path

import nbformat
import pytest

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


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


# A notebook that read a path relative to its own folder would behave differently in student/.
RELATIVE_PATH = re.compile(r"""["'](\.\.?/|\.\.["'])|os\.getcwd|Path\.cwd|Path\(["']\.""")


@pytest.mark.parametrize("name", sorted(p.name for p in STUDENT.glob("*.ipynb")))
def test_student_notebook_is_the_instructors_without_solutions(name):
    """Static, so it costs no kernel time: the student notebook runs exactly the instructor's code
    up to its "## Solution" heading, in the same order. nbval runs the instructor's notebook and
    checks its stored outputs, so the student's stubs are checked there: every self-check above
    the heading must have stored a "not yet" verdict ("correct" would mean a solution was left in).
    """
    student = nbformat.read(STUDENT / name, as_version=4)
    instructor = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    code = _code(student)
    assert code == _code(instructor)[:len(code)], f"{name}: run make student"
    for source in code:
        assert not RELATIVE_PATH.search(source), \
            f"{name} reads a relative path (it differs in student/):\n{source}"
    checks = [c for c in instructor.cells[:_cell_index(instructor, len(code))]
              if c.cell_type == "code" and CHECK_CALL.search(c.source)]
    if nbtool.drop_solutions(nbformat.read(ROOT / "notebooks" / name, as_version=4)):
        assert checks, f"{name} has a solution section but no exercise self-check"
    for cell in checks:
        assert _output_text(cell).startswith("not yet"), \
            f"{name}: the check in\n{cell.source}\nstored {_output_text(cell)!r}"


def _cell_index(nb, n_code: int) -> int:
    """The index just past the ``n_code``-th code cell of ``nb``."""
    seen = 0
    for i, cell in enumerate(nb.cells):
        seen += cell.cell_type == "code"
        if seen == n_code:
            return i + 1
    return len(nb.cells)
