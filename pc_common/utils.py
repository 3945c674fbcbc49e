"""Device, seeding and quick mode: the knobs every notebook and script shares."""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

QUICK_ENV = "PC_QUICK"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, or ``cuda`` when available, else ``cpu``."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); returns a torch generator seeded the same way.

    On CPU, two runs with the same seed and thread count repeat bit for bit.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def quick_mode() -> bool:
    """True when ``PC_QUICK=1`` (set by ``make test``): notebooks then run a few tiny steps for nbval."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def results_dir(path: str | Path = "results") -> Path:
    """Where a notebook saves its figures and JSON: ``path`` on a full run (``make run``).

    In quick mode it is a fresh temporary folder instead, so that nbval (``make test``) never overwrites the
    committed results with the numbers of a few tiny steps.
    """
    if quick_mode():
        return Path(tempfile.mkdtemp(prefix="pc_quick_"))
    return Path(path)


def write_json(path: str | Path, data, indent: int = 1) -> Path:
    """Write ``data`` as JSON to ``path``, creating its folder (how every script saves its results)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent))
    return path
