"""Device, seeding and quick mode: the knobs every notebook and script shares; files written whole.

A result or a checkpoint is written to a temporary file in its folder and renamed into place (``os.replace``, atomic
on POSIX and Windows within one file system), so a crash or a full disk leaves either the previous file or the new
one, never a truncated one.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

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


def write_whole(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file whole: ``write(f)`` fills a temporary file in the same folder, which then replaces ``path``.

    The temporary file is flushed to disk before the rename, so that a machine stopped right after it finds the new
    file complete. If ``write`` raises, the temporary file is removed and ``path`` is untouched.

    Args:
        path: the file to (re)write; its folder is created if needed.
        write: fills the binary file object it is given.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # In the same folder, so that the rename stays within one file system (and is atomic); hidden, and unique to
    # this process and call.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, data, indent: int = 1) -> Path:
    """Write ``data`` as JSON to ``path`` whole (:func:`write_whole`), creating its folder: how every script saves
    its results."""
    text = json.dumps(data, indent=indent).encode()
    return write_whole(path, lambda f: f.write(text))


CHECKPOINT_FORMAT = 1  # raised whenever what a checkpoint holds changes meaning


class CheckpointError(ValueError):
    """A checkpoint that must not be used: unreadable (truncated), of another format, or of another model or run."""


def describe_model(model: torch.nn.Module) -> dict[str, Any]:
    """What a checkpoint of ``model``'s weights belongs to: its class and the name and shape of every parameter and
    buffer (``state_dict`` order).

    Combine it with the run's settings for the ``belongs_to`` of :func:`save_checkpoint`.
    """
    kind = type(model)
    return {"model": f"{kind.__module__}.{kind.__qualname__}",
            "shapes": {name: list(t.shape) for name, t in model.state_dict().items()}}


def save_checkpoint(path: str | Path, obj, belongs_to: dict[str, Any]) -> Path:
    """Save ``obj`` with ``torch.save``, written whole (:func:`write_whole`), with the checkpoint format and what it
    belongs to.

    Args:
        path: the checkpoint file.
        obj: what to save (state dicts, histories, RNG states): tensors, numbers, strings, None and lists, tuples
            and dicts of them, which :func:`load_checkpoint` reads back without running code from the file.
        belongs_to: what the checkpoint is of, e.g. ``{**describe_model(model), "settings": ...}``; plain values.
            :func:`load_checkpoint` refuses the file unless its ``expected`` equals this.

    Returns:
        ``path`` as a Path.
    """
    record = {"format": CHECKPOINT_FORMAT, "belongs_to": belongs_to, "state": obj}
    return write_whole(path, lambda f: torch.save(record, f))


def load_checkpoint(path: str | Path, expected: dict[str, Any], map_location=None):
    """The object saved by :func:`save_checkpoint` at ``path``, if it is a whole checkpoint of this format that
    belongs to ``expected``.

    Args:
        path: the checkpoint file.
        expected: what the checkpoint must belong to (compared with the ``belongs_to`` it was saved with).
        map_location: as for ``torch.load`` (e.g. ``"cpu"``).

    Returns:
        the saved ``obj``.

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        CheckpointError: naming the file and why: it cannot be read (truncated, or not a checkpoint), it is of
            another checkpoint format, or it belongs to another model or run (the entries that differ).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        # weights_only: a checkpoint holds data only, and loading one must not run code from the file.
        record = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever the reader says, the file cannot be used
        raise CheckpointError(f"checkpoint {path} cannot be read: it is truncated or not a checkpoint "
                              f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''})"
                              ) from err
    if not (isinstance(record, dict) and record.keys() == {"format", "belongs_to", "state"}):
        raise CheckpointError(f"{path} is not a checkpoint written by save_checkpoint")
    if record["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {record['format']}, and this version of pc_common reads "
                              f"format {CHECKPOINT_FORMAT}")
    if record["belongs_to"] != expected:
        differences = _differences(record["belongs_to"], expected)
        more = f"; and {len(differences) - 4} more" if len(differences) > 4 else ""
        raise CheckpointError(f"checkpoint {path} belongs to another model or run: "
                              + "; ".join(differences[:4]) + more)
    return record["state"]


_MISSING = "(missing)"


def _differences(saved, expected, where: str = "") -> list[str]:
    """Where two nested dicts differ, as ``"key.subkey: saved …, expected …"`` lines."""
    if not (isinstance(saved, dict) and isinstance(expected, dict)):
        return [f"{where or 'belongs_to'}: saved {saved!r}, expected {expected!r}"]
    lines = []
    for key in list(saved) + [k for k in expected if k not in saved]:
        a, b = saved.get(key, _MISSING), expected.get(key, _MISSING)
        if a != b:
            lines += _differences(a, b, f"{where}.{key}" if where else str(key))
    return lines
