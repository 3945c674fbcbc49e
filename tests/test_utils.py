"""Tests of pc_common.utils: results and checkpoints are written whole, and a checkpoint is used only if it is whole,
of this format, and of the model and run that load it."""

from __future__ import annotations

import builtins
import errno
import io
import json

import pytest
import torch
from torch import nn

import pc_common.utils
from pc_common.utils import CheckpointError, describe_model, load_checkpoint, save_checkpoint, write_json


class FullDisk:
    """A file open for writing that takes ``room`` more bytes, then raises as a full disk does: a crash mid-write."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data) -> int:
        if len(data) > self.room:
            self.file.write(data[: self.room])
            self.file.flush()
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def fill_the_disk(monkeypatch) -> None:
    """From now on (until ``monkeypatch.undo()``), every file opened for writing takes 100 bytes, then raises."""
    real_open = builtins.open

    def failing_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return FullDisk(f, 100) if any(c in mode for c in "wxa") else f

    monkeypatch.setattr(builtins, "open", failing_open)
    monkeypatch.setattr(io, "open", failing_open)  # pathlib opens files through io.open


def new_results() -> dict:
    return {"accuracy": [0.5 + i / 1000 for i in range(200)], "rule": "pc"}


def test_write_json_writes_the_file_and_nothing_else(tmp_path):
    """The JSON reads back as written, in a folder created for it, with no temporary file left beside it."""
    path = write_json(tmp_path / "results" / "run.json", new_results())
    assert json.loads(path.read_text()) == new_results()
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]


def test_a_crash_while_writing_json_leaves_the_previous_results(tmp_path, monkeypatch):
    """A script that dies while it saves its results (a full disk, a preempted machine) must not leave a truncated
    JSON where the last complete results were: the reader finds the previous file whole."""
    path = tmp_path / "run.json"
    path.write_bytes(json.dumps({"accuracy": [0.1]}).encode())  # before the disk filled up
    fill_the_disk(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        write_json(path, new_results())
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"accuracy": [0.1]}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def chain(error: BaseException):
    """The error and the errors it was raised from or during."""
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def model_and_run(in_features: int = 4, T: int = 8) -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    model = nn.Linear(in_features, 3)
    return model, {**describe_model(model), "settings": {"T": T, "rule": "pc"}}


def checkpoint(model: nn.Module) -> dict:
    return {"model": model.state_dict(), "epoch": 3, "history": {"loss": [1.0, 0.5]}}


def test_a_checkpoint_reads_back_as_saved(tmp_path):
    """A checkpoint of the same model and run gives back the saved weights exactly, and nothing else is left."""
    model, run = model_and_run()
    path = save_checkpoint(tmp_path / "run" / "last.pt", checkpoint(model), run)
    state = load_checkpoint(path, run)
    assert state["epoch"] == 3 and state["history"] == {"loss": [1.0, 0.5]}
    assert all(torch.equal(state["model"][k], v) for k, v in model.state_dict().items())
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_a_crash_while_saving_a_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch):
    """A run killed while it saves its checkpoint must resume from the previous one, not find a broken file."""
    model, run = model_and_run()
    path = save_checkpoint(tmp_path / "last.pt", checkpoint(model), run)
    saved = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    fill_the_disk(monkeypatch)
    with pytest.raises(Exception) as error:  # torch.save reports the full disk as a RuntimeError, chained
        save_checkpoint(path, checkpoint(model), run)
    assert any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain(error.value))
    monkeypatch.undo()
    state = load_checkpoint(path, run)
    assert torch.equal(state["model"]["weight"], saved)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_truncated_checkpoint_is_refused_by_name(tmp_path):
    """A checkpoint cut short (copied in part, written by an older writer that crashed) must never be used."""
    model, run = model_and_run()
    path = save_checkpoint(tmp_path / "last.pt", checkpoint(model), run)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated") as error:
        load_checkpoint(path, run)
    assert str(path) in str(error.value)


def test_a_checkpoint_of_another_model_or_run_is_refused_by_name(tmp_path):
    """Resuming from the checkpoint of another model, or of the same model with other settings, would train a
    different run silently: the error names the file and what differs."""
    model, run = model_and_run()
    path = save_checkpoint(tmp_path / "last.pt", checkpoint(model), run)
    _, other_model = model_and_run(in_features=5)
    with pytest.raises(CheckpointError, match=r"another model or run: shapes\.weight: saved \[3, 4\], expected \[3, 5\]"
                       ) as error:
        load_checkpoint(path, other_model)
    assert str(path) in str(error.value)
    _, other_run = model_and_run(T=16)
    with pytest.raises(CheckpointError, match=r"settings\.T: saved 8, expected 16") as error:
        load_checkpoint(path, other_run)
    assert str(path) in str(error.value)


def test_a_checkpoint_of_another_format_is_refused_by_name(tmp_path, monkeypatch):
    """A checkpoint of another format may mean something else under the same keys: refused, naming the format."""
    model, run = model_and_run()
    monkeypatch.setattr(pc_common.utils, "CHECKPOINT_FORMAT", pc_common.utils.CHECKPOINT_FORMAT + 1)
    path = save_checkpoint(tmp_path / "last.pt", checkpoint(model), run)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="format") as error:
        load_checkpoint(path, run)
    assert str(path) in str(error.value)


def test_a_file_that_is_no_checkpoint_is_refused_by_name(tmp_path):
    """A plain torch.save file (a bare state_dict) records neither format nor owner: it is not taken on trust."""
    model, run = model_and_run()
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="not a checkpoint") as error:
        load_checkpoint(path, run)
    assert str(path) in str(error.value)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt", run)
