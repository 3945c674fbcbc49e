"""Command-line helpers shared by the scripts: argparse types that refuse bad values with a one-line error.

A bad value (``--epochs 0``, ``--T -1``, ``--device cuda`` on a machine without a GPU) then stops the script
at parsing, with argparse's usage line, an ``error: argument --epochs: …`` line and exit code 2, instead of a
traceback from deep inside training.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from .utils import pick_device


def _number(text: str, kind: type, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer n ≥ 1."""
    value = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer n ≥ 0."""
    value = _number(text, int, "an integer ≥ 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number x > 0."""
    value = _number(text, float, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value:g}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number x ≥ 0."""
    value = _number(text, float, "a number ≥ 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value:g}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1), e.g. a momentum."""
    value = _number(text, float, "a number in [0, 1)")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value:g}")
    return value


def device(text: str) -> str:
    """argparse type: ``auto`` (``cuda`` when available, else ``cpu``) or a device that this machine has.

    Returns the device as a string (``"cpu"``, ``"cuda:1"``, …), so that it goes into JSON as it is.
    """
    if text == "auto":
        return str(pick_device())
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        # Checked here because the first CUDA call would otherwise fail mid-run with a long driver traceback.
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available here; use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise argparse.ArgumentTypeError(
                f"{text}: this machine has {count} CUDA device(s), cuda:0 … cuda:{count - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        try:
            torch.empty(0, device=dev)
        except RuntimeError:
            message = f"{text}: not available on this machine; use --device cpu"
            raise argparse.ArgumentTypeError(message) from None
    return str(dev)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default once: appended unless the help text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """Adds ``--progress`` / ``--no-progress``; with neither, bars only on a terminal (:func:`show_progress`)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: only when stderr is a terminal)")


def show_progress(flag: bool | None) -> bool:
    """Whether to draw progress bars: ``flag`` when given, else only on a terminal.

    Piped into a file, a bar's carriage returns and escape codes would fill the file with partial lines.
    """
    return sys.stderr.isatty() if flag is None else flag
