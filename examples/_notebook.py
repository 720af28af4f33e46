"""What both notebook generators (``_make_*.py``) share: the cells in order with stable ids, and running them."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
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


def main(
    build: Callable[[], nbformat.NotebookNode], notebook: Path, description: str, argv: list[str] | None = None
) -> int:
    """A generator's command line: writes ``build()``'s notebook to ``--out``, executed unless ``--no-execute``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=str(notebook), help="the notebook to write")
    parser.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not out.parent.is_dir():
        parser.error(f"--out: folder {str(out.parent)!r} does not exist")
    nbformat.write(build() if args.no_execute else execute(build()), out)
    print(f"wrote {out}")
    return 0
