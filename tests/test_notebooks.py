"""The notebooks run top to bottom (SAE_FAST=1: tiny configs) in a fresh kernel via nbclient."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_train_and_inspect.ipynb", "02_toy_superposition.ipynb",
                                           "03_polysemanticity_and_interference.ipynb"]


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """Environment for the kernels: fast mode, outputs in a temp dir, offline hub; restored after."""
    saved = {k: os.environ.get(k) for k in ("SAE_FAST", "SAE_NOTEBOOK_OUT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(SAE_FAST="1", SAE_NOTEBOOK_OUT=str(tmp_path_factory.mktemp("notebooks")),
                      HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    yield os.environ["SAE_NOTEBOOK_OUT"]
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, notebook_env):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError (with the cell's traceback) if any cell fails
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")   # every cell ran
