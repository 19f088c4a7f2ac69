"""The notebooks execute top to bottom (each in a fresh kernel, from the notebooks folder)."""

import glob
import os

import pytest

NB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NB_DIR, "*.ipynb")))
#: run by the fast suite: the main QM9 example; the others (15-47 s each) with -m slow. Notebook 05's functions are
#: covered by tests/test_forces.py and the `eqntk md17 --model energy-forces` test
FAST = {"01_qm9_kernel_regression.ipynb"}
PARAMS = [pytest.param(p, marks=() if os.path.basename(p) in FAST else pytest.mark.slow) for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", PARAMS, ids=os.path.basename)
def test_notebook_executes(path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": NB_DIR}}).execute()
