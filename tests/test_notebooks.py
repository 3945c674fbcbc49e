"""The committed notebooks show their figures: every cell that draws one holds it as an image output.

A reader on GitHub sees the saved outputs only. Executed under ``MPLBACKEND=Agg``, a notebook draws its figures
nowhere, so "Learning curves" stood above an empty cell; ``make run`` now executes with the inline backend. The
oracle is the notebook file itself: a cell whose source draws (``save_figure``, ``plt.subplots``, ``.plot(``, a
``plot_…`` helper) must carry an ``image/png`` output.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("*/*.ipynb"))
DRAWS = re.compile(r"\bsave_figure\(|\bplt\.(subplots|figure|show|imshow|plot)\(|\.plot\(|\.imshow\(|\bplot_\w+\(")


def test_the_notebooks_are_found():
    """The glob sees the tutorial's notebooks (a moved folder must not make the test below vacuous)."""
    assert {p.split("/")[0] for p in NOTEBOOKS} == {"PC_BP_Gradients", "classification", "compression"}


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_plotting_cells_have_images(path):
    """Each code cell that draws a figure has an image in its committed outputs."""
    cells = json.loads((ROOT / path).read_text(encoding="utf-8"))["cells"]
    missing = []
    for number, cell in enumerate(cells):
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or not DRAWS.search(source):
            continue
        if not any("image/png" in out.get("data", {}) for out in cell.get("outputs", [])):
            missing.append(f"cell {number}: {source.splitlines()[0][:60]}")
    assert not missing, f"{path}: figures not embedded (run `make run`): {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_kernelspec_is_the_installed_kernel(path):
    """Each notebook names the kernel that ``make`` installs (ipykernel's ``python3``) by its own display name.

    Why: JupyterLab rewrites a notebook whose kernelspec differs from the kernel it starts, so a reader who only
    opens a notebook would otherwise get a changed file (and a dirty ``git status``) from autosave. The oracle is the
    kernel.json that ipykernel installed into this environment.
    """
    installed = json.loads((Path(sys.prefix) / "share/jupyter/kernels/python3/kernel.json").read_text())
    spec = json.loads((ROOT / path).read_text(encoding="utf-8"))["metadata"]["kernelspec"]
    assert spec["name"] == "python3"
    assert spec["display_name"] == installed["display_name"]
    assert spec["language"] == installed["language"]
