"""The notebook both generators (``_make_*.py``) write: cells in order, stable ids, no outputs."""

from __future__ import annotations

import nbformat


def build_notebook(cells: list[tuple[str, str]], **metadata) -> nbformat.NotebookNode:
    """A Python 3 notebook of ``(kind, source)`` cells, ``kind`` being "markdown" or "code"."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    notebook.metadata["language_info"] = {"name": "python"}
    notebook.metadata.update(metadata)
    for index, (kind, source) in enumerate(cells):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = make(source)
        cell["id"] = f"cell-{index:02d}"
        notebook.cells.append(cell)
    return notebook
