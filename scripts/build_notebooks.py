"""Build the notebooks in notebooks/ from their Python sources and execute them in place.

Each notebook's source is ``notebooks/NN_name.py`` in the percent format (``# %%``
starts a code cell, ``# %% [markdown]`` a markdown cell whose lines are comments), a
real Python file that ruff checks and jupytext reads.

python scripts/build_notebooks.py                               # all, full settings
python scripts/build_notebooks.py 03_plug_and_play_digits      # one notebook
NUMPYRO_DIFFUSION_SMALL=1 python scripts/build_notebooks.py     # quick check
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
_CELL = re.compile(r"^# %%(?: \[(markdown)\])?[^\n]*$", re.MULTILINE)


def read_cells(source: str) -> list[tuple[str, str]]:
    """``(kind, text)`` pairs of a percent-format source."""
    marks = list(_CELL.finditer(source))
    cells = []
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following is not None else len(source)
        body = source[mark.end() : end].strip("\n")
        if mark.group(1) == "markdown":
            body = "\n".join(re.sub(r"^# ?", "", line) for line in body.splitlines())
            cells.append(("markdown", body))
        else:
            cells.append(("code", body))
    return cells


def build_notebook(source: Path, execute: bool = True) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(text)
        if kind == "markdown"
        else nbformat.v4.new_code_cell(text)
        for kind, text in read_cells(source.read_text())
    ]
    if execute:
        NotebookClient(
            nb,
            timeout=1200,
            kernel_name="python3",
            resources={"metadata": {"path": str(source.parent)}},
        ).execute()
    return nb


def main(names: list[str]) -> None:
    sources = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if names:
        sources = [s for s in sources if s.stem in {Path(n).stem for n in names}]
    for source in sources:
        path = source.with_suffix(".ipynb")
        nbformat.write(build_notebook(source), path)
        print("executed", path, file=sys.stderr)


if __name__ == "__main__":
    os.chdir(NOTEBOOKS)
    main(sys.argv[1:])
