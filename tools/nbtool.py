"""Developer tool for the course notebooks (not needed by students).

    python tools/nbtool.py build SRC.py OUT.ipynb   # percent-format script -> notebook, executed
    python tools/nbtool.py execute NB.ipynb [...]   # re-execute on a fresh kernel, in place
    python tools/nbtool.py export NB.ipynb SRC.py   # notebook -> percent-format script, to edit
    python tools/nbtool.py student [OUT_DIR]        # notebooks/ -> student edition (student/)

In the percent format, ``# %%`` starts a code cell and ``# %% [markdown]`` a markdown cell whose
lines start with ``# ``. Executing stores the outputs nbval compares, with execution counts 1..N
and no volatile metadata (timestamps), so diffs stay reviewable.

The student edition is every notebook of ``notebooks/`` without its solutions (everything from
the "## Solution" heading on) and without outputs, for students to run themselves.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
ROOT = Path(__file__).resolve().parent.parent
SOLUTION_HEADING = re.compile(r"^## Solution", re.M)


def from_percent(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for chunk in re.split(r"^# %%", text, flags=re.M)[1:]:
        header, _, body = chunk.partition("\n")
        body = body.strip("\n")
        if "[markdown]" in header:
            lines = [re.sub(r"^# ?", "", line) for line in body.splitlines()]
            nb.cells.append(nbformat.v4.new_markdown_cell("\n".join(lines)))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(body))
    return nb


def to_percent(nb) -> str:
    parts = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            body = "\n".join(("# " + line).rstrip() for line in cell.source.splitlines())
            parts.append("# %% [markdown]\n" + body)
        else:
            parts.append("# %%\n" + cell.source)
    return "\n\n".join(parts) + "\n"


def clean(nb) -> None:
    nb.metadata = {"kernelspec": KERNEL, "language_info": {"name": "python"}}
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.pop("id", None)
    nb.nbformat, nb.nbformat_minor = 4, 4


def execute(nb, cwd: Path, timeout: int = 900) -> None:
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    clean(nb)


def drop_solutions(nb) -> bool:
    """Drop everything from the first markdown "## Solution…" heading on; True if there was one.

    The heading may start its own cell or end a cell (after the takeaways): the text above it in
    that cell is kept.
    """
    for i, cell in enumerate(nb.cells):
        match = SOLUTION_HEADING.search(cell.source) if cell.cell_type == "markdown" else None
        if match:
            cell.source = cell.source[:match.start()].rstrip()
            nb.cells = nb.cells[:i + bool(cell.source)]
            return True
    return False


def student_edition(path: Path):
    """The student edition of the notebook at ``path``: no solutions, no outputs, a note."""
    nb = nbformat.read(path, as_version=4)
    had_solutions = drop_solutions(nb)
    clean(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    link = f"[`notebooks/{path.name}`](../notebooks/{path.name})"
    note = (f"> **Student edition**: the exercise solutions are left out; they are in the "
            f"instructor edition, {link}." if had_solutions else
            f"> **Student edition** of {link} (this notebook has no exercise).")
    first = next(cell for cell in nb.cells if cell.cell_type == "markdown")
    title, _, rest = first.source.partition("\n")
    first.source = f"{title}\n\n{note}\n{rest}"
    return nb


def write_student_edition(out: Path, notebooks: Path = ROOT / "notebooks") -> list[Path]:
    """Write the student edition of every notebook in ``notebooks`` to ``out``, and nothing else."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.ipynb"):
        stale.unlink()
    written = []
    for path in sorted(notebooks.glob("*.ipynb")):
        nbformat.write(student_edition(path), out / path.name)
        written.append(out / path.name)
    return written


def main(argv: list[str]) -> None:
    command, *paths = argv
    if command == "build":
        src, out = Path(paths[0]), Path(paths[1])
        nb = from_percent(src.read_text())
        execute(nb, out.parent)
        nbformat.write(nb, out)
    elif command == "execute":
        for path in map(Path, paths):
            nb = nbformat.read(path, as_version=4)
            execute(nb, path.parent)
            nbformat.write(nb, path)
    elif command == "export":
        Path(paths[1]).write_text(to_percent(nbformat.read(paths[0], as_version=4)))
    elif command == "student":
        for path in write_student_edition(Path(paths[0]) if paths else ROOT / "student"):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
