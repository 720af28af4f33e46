"""What both notebook generators (``_make_*.py``) share: the cells in order with stable ids, and running them."""

from __future__ import annotations

import os
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]


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


def execute(notebook: nbformat.NotebookNode, timeout: int = 600) -> nbformat.NotebookNode:
    """Runs ``notebook`` in place, in a fresh kernel started in ``examples/`` that imports this checkout's adamjax."""
    env_backup = dict(os.environ)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    for key in [k for k in os.environ if k.startswith("JAX_")]:
        del os.environ[key]
    try:
        client = nbclient.NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(ROOT / "examples")}},
        )
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    return notebook
