"""notebooks/quickstart.ipynb executed by a real Jupyter kernel (nbclient + ipykernel, this venv's Python): a
search from Python, its trials table, the learning curves inline, the champion predicting five images. The
committed notebook carries no outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
CELL_TIMEOUT_S = 300  # one cell (the search) at most; the whole notebook ran in about a minute here


def test_the_committed_notebook_has_no_outputs() -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"cells {dirty} carry outputs: clear them (Jupyter: Edit > Clear Outputs of All Cells) and commit"


@pytest.mark.ray
def test_the_notebook_runs_green_in_a_real_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(NOTEBOOK.parents[1]), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.kernel_manager_class.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no inline figure (learning curves, images)"
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("trial_id" in h for h in html), "no trials table"
    assert (tmp_path / ".raymlops" / "mlflow.db").exists()  # tracked beside the notebook, as the docs say
