"""Every analyst notebook runs top to bottom against the default simulated fleet's marts."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, default_fleet, monkeypatch):
    monkeypatch.setenv("FLEETLAKE_DATA_DIR", str(default_fleet))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_the_notebooks_are_found():
    assert NOTEBOOKS, "notebooks/ should hold the analyst notebooks"
