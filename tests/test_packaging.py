"""`pip install .` ships pc_common alone, declares what it imports, and works in a fresh virtual environment.

Why: a user who adds the core to their own project must get a package named ``pc_common`` (no top-level
``classification`` or ``compression`` to clash with theirs) that brings torch, NumPy and tqdm with it. The oracles
are the wheel itself (its file list and its METADATA) and pc_common's own source (every module it imports).
The build and the install are offline: no build isolation, no dependencies fetched.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy
import pytest
import torch
import tqdm

ROOT = Path(__file__).resolve().parents[1]


def _setuptools_builds_wheels() -> bool:
    """setuptools ≥ 70.1 builds wheels by itself (requirements.txt pins it; older ones need the `wheel` package)."""
    import setuptools

    return tuple(int(p) for p in re.findall(r"\d+", setuptools.__version__)[:2]) >= (70, 1)


pytestmark = pytest.mark.skipif(not _setuptools_builds_wheels(), reason="needs setuptools >= 70.1 (requirements.txt)")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of what it needs (pyproject.toml, README.md, LICENSE, pc_common/).

    Built from a copy so that setuptools writes no build/ or egg-info into the checkout.
    """
    src, dist = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "pc_common", src / "pc_common", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(dist), str(src)], check=True, capture_output=True, timeout=120)
    (path,) = dist.glob("*.whl")
    return path


def _requirements(wheel: Path) -> dict[str, str]:
    """Requires-Dist of the wheel: {distribution name: its marker ('' for a core dependency)}."""
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    found = {}
    for line in re.findall(r"^Requires-Dist: (.+)$", metadata, re.M):
        name = re.match(r"[A-Za-z0-9_.-]+", line).group(0).lower()
        found[name] = line.split(";", 1)[1].strip() if ";" in line else ""
    return found


def test_wheel_holds_only_pc_common(wheel):
    """Every file of the wheel is under pc_common/ or its own .dist-info: no generic top-level names."""
    with zipfile.ZipFile(wheel) as z:
        tops = {name.split("/")[0] for name in z.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"pc_common"}
    assert "pc_common/cli.py" in zipfile.ZipFile(wheel).namelist()


def test_every_third_party_import_is_declared(wheel):
    """Each module that pc_common imports, outside the standard library, is a Requires-Dist of the wheel.

    Oracle: the import statements of pc_common's source (parsed, not run), against the wheel's METADATA.
    The core ones (imported when ``import pc_common`` runs) must be unconditional dependencies.
    """
    imported = set()
    for path in (ROOT / "pc_common").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "pc_common"}
    declared = _requirements(wheel)
    assert third_party <= declared.keys(), f"imported but not declared: {third_party - declared.keys()}"
    for core in ("torch", "numpy", "tqdm", "matplotlib"):
        assert declared[core] == "", f"{core} must be a core dependency, not {declared[core]!r}"


def test_installs_and_runs_in_a_fresh_venv(wheel, tmp_path):
    """pip installs the wheel into a new venv, where pc_common imports from the venv and a PC step runs.

    The venv sees the existing torch, NumPy and tqdm through a .pth file (nothing is downloaded), and not the
    checkout: ``classification`` must not import there. Oracle for the step: fixed-prediction PC at γ = 1 and
    T = 1 (the number of value nodes) gives BP's gradient, here torch.autograd on the batch-mean ½‖y − ŷ‖².
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    shared = {str(Path(module.__file__).parents[1]) for module in (torch, numpy, tqdm)}
    (site / "shared_torch.pth").write_text("\n".join(sorted(shared)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True, timeout=120)
    script = """
import importlib.util, torch, pc_common as pc
assert pc.__file__.startswith(SITE), pc.__file__
assert importlib.util.find_spec("classification") is None
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), pc.PCLayer(), torch.nn.Linear(4, 2)).double()
x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
(0.5 * (y - model(x)).pow(2).sum(1)).mean().backward()
expected = [p.grad.clone() for p in model.parameters()]
model.zero_grad()
pc.infer(model, x, y, "mse", pc.PCConfig(T=1, inference_lr=1.0, fixed_prediction=True))
for p, g in zip(model.parameters(), expected):
    torch.testing.assert_close(p.grad, g, rtol=0, atol=1e-12)
print("ok")
""".replace("SITE", repr(str(site)))
    # -I: no PYTHONPATH, no user site, and not the working directory (a checkout) on sys.path.
    done = subprocess.run([str(python), "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
