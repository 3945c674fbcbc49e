"""pc_common/cli.py and the scripts: a bad number or device is a one-line argparse error, never a traceback.

A newcomer's first mistake (``--epochs 0``, ``--device cuda`` on a laptop) used to end in an IndexError or a
15-line CUDA traceback. Every value is now checked where it is parsed; the oracle is argparse's contract: exit code
2, and an ``error: argument --name: …`` line on stderr.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from classification import benchmark, diagnose, sweep
from classification import compare as classification_compare
from compression import compare as compression_compare
from PC_BP_Gradients import gradcheck
from pc_common import cli

ROOT = Path(__file__).resolve().parents[1]

SCRIPTS = {
    "classification/compare.py": classification_compare.main,
    "classification/benchmark.py": benchmark.main,
    "classification/diagnose.py": diagnose.main,
    "classification/sweep.py": sweep.main,
    "compression/compare.py": compression_compare.main,
    "PC_BP_Gradients/gradcheck.py": gradcheck.main,
}
# The bad values of the issue, per script: (arguments, the option the error must name).
BAD_VALUES = {
    "classification/compare.py": [
        (["--epochs", "0"], "--epochs"), (["--seeds", "0"], "--seeds"), (["--batch-size", "0"], "--batch-size"),
        (["--T", "-1"], "--T"), (["--inference-lr", "0"], "--inference-lr"), (["--momentum", "1"], "--momentum"),
        (["--lr-pc", "nan"], "--lr-pc"), (["--hidden", "two"], "--hidden"), (["--text-chars", "-5"], "--text-chars"),
        (["--output-precision", "-1"], "--output-precision"), (["--max-batches", "0"], "--max-batches"),
        (["--weight-decay", "-1e-4"], "--weight-decay"), (["--width", "0"], "--width"),
    ],
    "classification/benchmark.py": [
        (["--repeats", "0"], "--repeats"), (["--T", "-1"], "--T"), (["--batch-size", "0"], "--batch-size"),
        (["--threads", "0"], "--threads"),
    ],
    "classification/diagnose.py": [
        (["--epochs", "0"], "--epochs"), (["--seed", "-1"], "--seed"), (["--max-batches", "0"], "--max-batches"),
        (["--only", "99"], "--only"),
    ],
    "classification/sweep.py": [(["--epochs", "0"], "--epochs"), (["--only", "2", "-1"], "--only")],
    "compression/compare.py": [
        (["--epochs", "0"], "--epochs"), (["--seeds", "0"], "--seeds"), (["--batch-size", "0"], "--batch-size"),
        (["--T", "-1"], "--T"), (["--latent", "0"], "--latent"), (["--lr", "0"], "--lr"),
        (["--inference-lr", "-0.1"], "--inference-lr"), (["--momentum", "-0.5"], "--momentum"),
        (["--max-batches", "0"], "--max-batches"),
    ],
    "PC_BP_Gradients/gradcheck.py": [],
}
CASES = [(script, args, option) for script, cases in BAD_VALUES.items() for args, option in cases] + [
    (script, ["--device", "gpu0"], "--device") for script in SCRIPTS
]


def parse_error(main, argv, capsys) -> str:
    """Run ``main(argv)``, which must stop at parsing with exit code 2; returns its stderr."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(("script", "args", "option"), CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_values_are_one_line_errors(script, args, option, capsys):
    """Each bad value stops the script before any work, with one error line naming the option."""
    err = parse_error(SCRIPTS[script], args, capsys)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"argument {option}:" in errors[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "message"), [
    (["--task", "shakespeare", "--model", "mlp"], "--task shakespeare needs --model rnn or lstm"),
    (["--task", "shakespeare", "--model", "lstm", "--loss", "mse"], "use --loss ce"),
])
def test_options_that_do_not_go_together(args, message, capsys):
    """classification/compare.py: a task with a model or loss it cannot use is a parse error too (exit code 2)."""
    err = parse_error(classification_compare.main, args, capsys)
    assert message in err.strip().splitlines()[-1]


@pytest.mark.parametrize("script", SCRIPTS)
def test_cuda_without_a_gpu_says_so_and_suggests_cpu(script, capsys, monkeypatch):
    """``--device cuda`` on a machine without CUDA names the cause and the fix (CUDA hidden, so it holds on a GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = parse_error(SCRIPTS[script], ["--device", "cuda"], capsys)
    assert "argument --device: cuda: CUDA is not available" in err and "use --device cpu" in err


def test_missing_cuda_index_names_the_devices_there(monkeypatch):
    """``cuda:3`` on a one-GPU machine lists the devices that exist."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(argparse.ArgumentTypeError, match=r"1 CUDA device\(s\), cuda:0 … cuda:0"):
        cli.device("cuda:3")


def test_device_auto_and_explicit():
    """``auto`` is the core's own choice (``pick_device``); an existing device comes back as its canonical name."""
    assert cli.device("auto") == str(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    assert cli.device("cpu") == "cpu"


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        (cli.positive_int, {"1": 1, "12": 12}, ["0", "-3", "1.5", "x", ""]),
        (cli.non_negative_int, {"0": 0, "7": 7}, ["-1", "2.0", "x"]),
        (cli.positive_float, {"0.5": 0.5, "3e-3": 3e-3, "50": 50.0}, ["0", "-1e-9", "nan", "inf", "x"]),
        (cli.non_negative_float, {"0": 0.0, "2e-5": 2e-5}, ["-1e-9", "inf", "x"]),
        (cli.fraction, {"0": 0.0, "0.9": 0.9}, ["1", "1.5", "-0.1", "nan", "x"]),
    ],
)
def test_number_types(kind, good, bad):
    """Each type accepts exactly its stated range (worked by hand) and refuses the rest with ArgumentTypeError."""
    for text, value in good.items():
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_states_each_default_once(script, capsys):
    """``--help`` never prints "(default: None)" nor two defaults for one option (the formatter's contract)."""
    with pytest.raises(SystemExit) as stop:
        SCRIPTS[script](["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "(default: None)" not in text
    for option in re.split(r"\n(?=  -)", text):  # one entry per option, its wrapped help lines included
        assert option.count("default") <= 1, option


def test_progress_bars_only_on_a_terminal(monkeypatch):
    """With neither flag, bars are drawn only when stderr is a terminal; ``--progress`` forces them."""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert cli.show_progress(None) is False and cli.show_progress(True) is True
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert cli.show_progress(None) is True and cli.show_progress(False) is False


def test_compression_compare_has_no_progress():
    """compression/compare.py takes the same ``--progress`` / ``--no-progress`` as classification/compare.py."""
    assert compression_compare.parse_args(["--no-progress"]).progress is False
    assert compression_compare.parse_args(["--progress"]).progress is True
    assert compression_compare.parse_args([]).progress is None


def test_benchmark_says_one_thread(monkeypatch, capsys):
    """The summary line reads "1 thread", not "1 threads" (the benchmark itself is stubbed: only printing)."""
    setting = {"model": "mlp", "activation": "gelu", "dataset": "mnist-5k", "batch_size": 128, "T": 8,
               "device": "cpu", "threads": 1, "train_samples": 3500, "repeats": 1}
    fake = {"setting": setting, "seconds": {"bp": {"eager": 1.0}, "pc": {"eager": 3.0}}, "ratio": {"eager": 3.0},
            "flop_ratio": 2.5}
    monkeypatch.setattr(benchmark, "benchmark", lambda *args, **kwargs: fake)
    benchmark.main(["--threads", "1", "--model", "mlp", "--no-compile"])
    assert "(1 thread)" in capsys.readouterr().out


def test_piped_output_has_no_progress_bar_escapes(tmp_path):
    """Run as a script with stderr piped (as into a log file): no carriage returns or escape codes from tqdm."""
    cmd = [sys.executable, str(ROOT / "classification" / "compare.py"), "--epochs", "1", "--seeds", "1", "--T", "1",
           "--max-batches", "2", "--device", "cpu", "--no-compile"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b[" not in done.stderr


def test_bad_value_as_a_script_prints_no_traceback(tmp_path):
    """The same check end to end, as a reader runs it: exit code 2 and the usage and error lines only."""
    cmd = [sys.executable, str(ROOT / "compression" / "compare.py"), "--epochs", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "compare.py: error: argument --epochs: must be at least 1, got 0"
