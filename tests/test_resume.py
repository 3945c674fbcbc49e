"""Runs that resume: a run stopped anywhere (Ctrl-C, SIGKILL, a torchrun worker lost) and continued from its
checkpoints ends exactly where the same run uninterrupted ends; a checkpoint that cannot be trusted is refused.

The oracle is the uninterrupted run itself: on the CPU at one thread the same computations repeat bit for bit, so
everything a run records (weights, losses, accuracies, energies, γ, alarms, best epoch) must be equal, and only the
wall-clock seconds may differ. A resumed run that lost or repeated a batch, restarted the schedule, reshuffled the
batch order, forgot an adapted γ or the guard's running loss level would differ in some recorded digit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import make_mlp

import pc_common as pc
from classification import compare, depth, diagnose, regime, sequences, sweep
from compression import compare as compression_compare
from PC_BP_Gradients import depth_sweep
from pc_common import data as data_module
from pc_common import training
from pc_common.runs import RunFolder
from pc_common.training import RunInterrupted, RunSettings

ROOT = Path(__file__).resolve().parents[1]
# Two seeds × two rules of a small MLP, three epochs of 8 batches: a comparison of four runs that takes seconds.
COMPARE = ["--model", "mlp", "--width", "32", "--epochs", "3", "--seeds", "2", "--T", "3", "--max-batches", "8",
           "--batch-size", "64", "--device", "cpu", "--no-progress", "--no-compile"]
# γ far past 2/λ_max with adapt_step: the guard halves γ after every epoch with an energy rise, so a resumed run
# must carry the adapted γ, the guard's state and the alarms over; noise in the neurons' initialisation draws from
# torch's generator at every batch, and the cosine schedule counts every step.
SETTINGS = RunSettings("pc", epochs=3, optimizer="adamw", lr=3e-3, weight_decay=1e-4, schedule="cosine",
                       pc=pc.PCConfig(T=4, inference_lr=1.9, max_energy_rise=float("inf")), max_batches=6,
                       progress=False, adapt_step=True, splits=("val",))
pytestmark = pytest.mark.filterwarnings("ignore:PC inference crossed its stability bound:RuntimeWarning")


@pytest.fixture(scope="module")
def mnist5k_once():
    """compare.py loads mnist-5k at every call (seconds of text parsing): here it parses it once, as forked workers
    then do too."""
    parts = data_module._mnist5k()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data_module, "_mnist5k", lambda: parts)
        yield


@pytest.fixture
def one_thread():
    """Bit-for-bit comparisons hold at a fixed thread count: one, as in the subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(init_std: float = 0.1) -> torch.nn.Module:
    model = make_mlp(sizes=(784, 24, 16, 10), dtype=torch.float32, seed=5)
    for layer in pc.pc_layers(model):
        layer.init_std = init_std
    return model


def _data(digits: pc.Splits, loader: type[pc.TensorLoader] = pc.TensorLoader, **options) -> pc.Splits:
    """mnist-5k with a training loader of class ``loader`` (batches of 64 shuffled by its own seeded generator)."""
    train = loader(digits.train.x, digits.train.y, 64, True, torch.Generator().manual_seed(11), **options)
    return dataclasses.replace(digits, train=train)


def _run(data: pc.Splits, checkpoint: Path | None = None) -> dict:
    """Train from seed 3 (global generators included); everything recorded but seconds, and the weights."""
    pc.seed_everything(3)
    model = _model()
    history = pc.fit(model, data, SETTINGS, checkpoint=checkpoint)
    return {"epochs": [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs],
            "alarms": history.alarms, "best_epoch": history.best_epoch,
            "weights": [p.detach().clone() for p in model.parameters()], "torch_rng": torch.get_rng_state()}


def _assert_same(a: dict, b: dict) -> None:
    assert a["epochs"] == b["epochs"] and a["alarms"] == b["alarms"] and a["best_epoch"] == b["best_epoch"]
    assert all(torch.equal(p, q) for p, q in zip(a["weights"], b["weights"], strict=True))
    assert torch.equal(a["torch_rng"], b["torch_rng"])


class _CtrlCLoader(pc.TensorLoader):
    """A training loader that sends this process SIGINT (Ctrl-C) while it hands out batch ``batch`` of pass
    ``epoch`` (counted from 0): a stop request in the middle of an epoch, at a known batch."""

    def __init__(self, *args, epoch: int, batch: int):
        super().__init__(*args)
        self.at, self.passes = (epoch, batch), 0

    def __iter__(self):
        epoch, self.passes = self.passes, self.passes + 1
        for b, item in enumerate(super().__iter__()):
            if (epoch, b) == self.at:
                os.kill(os.getpid(), signal.SIGINT)
            yield item


def test_ctrl_c_saves_mid_epoch_and_the_run_continues_bit_for_bit(digits, tmp_path, one_thread):
    """Ctrl-C in epoch 2 saves the run at the batch boundary (epoch 1 done, 3 batches of epoch 2) and raises
    RunInterrupted naming the checkpoint; fit from it ends with the weights, records, γ, alarms and generator
    state of the uninterrupted run: nothing is lost, repeated or reshuffled, even part-way through an epoch."""
    reference = _run(_data(digits))
    assert len({e["inference_lr"] for e in reference["epochs"]}) == 3  # γ was halved after epochs 1 and 2
    file = tmp_path / "run.pt"
    with pytest.raises(RunInterrupted, match="run.pt") as stop:
        _run(_data(digits, _CtrlCLoader, epoch=1, batch=2), file)
    assert stop.value.checkpoint == file
    saved = torch.load(file, weights_only=True)["state"]
    assert (saved["epoch"], saved["batch"]) == (1, 3)
    _assert_same(_run(_data(digits), file), reference)
    # A finished run's checkpoint gives its result again without training.
    _assert_same(_run(_data(digits), file), reference)


def test_truncated_checkpoint_is_refused_naming_the_file(digits, tmp_path):
    """A checkpoint cut short (a crash mid-write on a file system without atomic renames, a copy interrupted) must
    never be used: the error names the file and says why."""
    file = tmp_path / "run.pt"
    pc.fit(_model(), _data(digits), SETTINGS, epochs=1, max_batches=1, checkpoint=file)
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(pc.CheckpointError, match=rf"{re.escape(str(file))}.*truncated"):
        pc.fit(_model(), _data(digits), SETTINGS, epochs=1, max_batches=1, checkpoint=file)


@pytest.mark.parametrize("change, named", [
    ({"model": lambda: make_mlp(sizes=(784, 20, 16, 10), dtype=torch.float32)}, "shapes"),
    ({"lr": 1e-2}, "run.lr"),
    ({"pc": pc.PCConfig(T=5)}, "run.pc.T"),
])
def test_checkpoint_of_another_model_or_run_is_refused(digits, tmp_path, change, named):
    """A checkpoint continues only the run that wrote it: another network or other settings would silently mix two
    runs into one result. The error names the file and what differs."""
    file = tmp_path / "run.pt"
    pc.fit(_model(), _data(digits), SETTINGS, epochs=1, max_batches=1, checkpoint=file)
    settings = {k: v for k, v in change.items() if k != "model"}
    model = change.get("model", _model)()
    with pytest.raises(pc.CheckpointError, match=rf"{re.escape(str(file))}.*{named}"):
        pc.fit(model, _data(digits), SETTINGS, epochs=1, max_batches=1, checkpoint=file, **settings)


def _strip_seconds(results: dict) -> dict:
    for rule in results.values():
        del rule["epoch_seconds"]
        for history in rule["history"]:
            for epoch in history["epochs"]:
                del epoch["seconds"]
    return results


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.01)


def _subprocess_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}


def test_comparison_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path, one_thread, mnist5k_once):
    """compare.py killed by SIGKILL (no chance to save) while seed 0's PC run trains, then resumed with --resume:
    seed 0's finished BP run is taken from its checkpoint, its PC run continues from the last epoch's checkpoint,
    seed 1 runs, and the results equal the uninterrupted comparison's in everything but seconds."""
    reference = compare.main([*COMPARE, "--run-folder", str(tmp_path / "reference"),
                              "--json", str(tmp_path / "reference.json")])
    folder = tmp_path / "run"
    job = subprocess.Popen([sys.executable, str(ROOT / "classification" / "compare.py"), *COMPARE,
                            "--run-folder", str(folder), "--json", str(tmp_path / "killed.json")],
                           env=_subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(folder / "seed0" / "pc.pt", job)
    job.send_signal(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL
    assert not RunFolder.read(folder)["finished"] and not (tmp_path / "killed.json").exists()
    resumed = compare.main(["--resume", str(folder), "--json", str(tmp_path / "resumed.json")])
    assert RunFolder.read(folder)["finished"]
    assert _strip_seconds(resumed) == _strip_seconds(reference)


def _reference_worker(rank: int, port: int, argv: list[str]) -> None:
    """One process of a two-process job without torchrun (what torchrun would set), for the reference."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", GLOO_SOCKET_IFNAME="lo")
    compare.main(argv)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process has gone
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds torchrun's workers in /proc (Linux)")
def test_torchrun_job_restarted_after_a_lost_worker_continues_by_itself(tmp_path, mnist5k_once):
    """A two-process torchrun job (gloo) loses a worker to SIGKILL while seed 0's PC run trains; torchrun
    --max-restarts 1 starts the job again with the same command, which continues from its run folder by itself and
    gives the results of the same two-process job uninterrupted."""
    argv = [*COMPARE, "--json", str(tmp_path / "reference.json"), "--run-folder", str(tmp_path / "reference")]
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_reference_worker, args=(_free_port(), argv), nprocs=2, join=True, start_method=method)
    reference = json.loads((tmp_path / "reference.json").read_text())

    folder = tmp_path / "run"
    job = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "--max-restarts=1", "--monitor-interval=0.2",
                            str(ROOT / "classification" / "compare.py"), *COMPARE, "--run-folder", str(folder),
                            "--json", str(tmp_path / "restarted.json")],
                           env=_subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(folder / "seed0" / "pc.pt", job)
    workers = [pid for pid in _children(job.pid) if "compare.py" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    assert "continuing the unfinished run" in err  # the second attempt continued from the run folder
    restarted = json.loads((tmp_path / "restarted.json").read_text())
    assert _strip_seconds(restarted) == _strip_seconds(reference)


def _args(folder: Path, resume: bool = False) -> Namespace:
    return Namespace(run_folder=folder, resume=folder if resume else None, argv=["--epochs", "2"])


def test_run_folder_of_other_settings_is_refused(tmp_path):
    """A run folder continues only the run it holds: another command's settings are refused, naming them."""
    RunFolder.open(_args(tmp_path), "test", __file__, {"epochs": 2, "lr": 1e-3})
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.001 there, 0.01 here\)"):
        RunFolder.open(_args(tmp_path), "test", __file__, {"epochs": 2, "lr": 1e-2})


def test_finished_run_starts_afresh_unless_resumed(tmp_path):
    """The same command again continues an unfinished run, but starts a finished one afresh (its checkpoints would
    otherwise hand back results of older code); --resume keeps a finished run's checkpoints."""
    settings = {"epochs": 2}
    checkpoint = tmp_path / "seed0" / "bp.pt"
    checkpoint.parent.mkdir()
    folder = RunFolder.open(_args(tmp_path), "test", __file__, settings)
    checkpoint.write_bytes(b"epoch 1")
    RunFolder.open(_args(tmp_path), "test", __file__, settings)
    assert checkpoint.exists()  # unfinished: continued
    folder.finish()
    RunFolder.open(_args(tmp_path, resume=True), "test", __file__, settings).finish()
    assert checkpoint.exists()  # finished and resumed: its results come from the checkpoints
    RunFolder.open(_args(tmp_path), "test", __file__, settings)
    assert not checkpoint.exists() and not RunFolder.read(tmp_path)["finished"]


def test_a_stop_exits_with_the_command_that_resumes(tmp_path, capsys):
    """A stopped script says how to continue: exit status 130 (as for Ctrl-C) and the --resume command."""
    folder = RunFolder.open(_args(tmp_path), "test", __file__, {"epochs": 2})
    with pytest.raises(SystemExit) as exit_info, folder.stops():
        raise RunInterrupted("PC run stopped (SIGINT)", tmp_path / "seed0" / "pc.pt")
    assert exit_info.value.code == 130
    message = capsys.readouterr().err
    assert "PC run stopped (SIGINT)" in message and f"--resume {tmp_path}" in message


# The other long scripts, each at a few batches of mnist-5k: two training runs of two epochs of three batches (regime:
# one), the training step at which Ctrl-C comes (in the last run's second epoch, after its first batch: two steps
# are left), and the checkpoints, one per training run.
SCRIPTS = {
    "sweep": (sweep.main, ["--dataset", "mnist-5k", "--only", "0", "3"], 10, ["point0/bp.pt", "point3/pc.pt"]),
    "diagnose": (diagnose.main, ["--dataset", "mnist-5k", "--only", "3", "4"], 10, ["recipe3/pc.pt", "recipe4/bp.pt"]),
    "regime": (regime.main, ["--dataset", "mnist-5k", "--steps", "1", "2"], 4, ["pc.pt"]),
    "compression": (compression_compare.main,
                    ["--dataset", "mnist-5k", "--model", "bp-ae", "pc-ae", "--latent", "4", "--seeds", "1",
                     "--subset", "100", "--batch-size", "32", "--no-compile"],
                    10, ["latent4_seed0/bp-ae.pt", "latent4_seed0/pc-ae.pt"]),
}
STEPS_LEFT = 2
TRAIN_STEP = training.train_step
SMALL = ["--epochs", "2", "--max-batches", "3", "--device", "cpu", "--no-progress"]
# What a run measures of the clock: the only things a resumed run may record differently.
TIMES = frozenset({"seconds", "cpu_seconds", "wall_seconds", "epoch_seconds", "train_seconds_per_epoch",
                   "test_seconds_per_batch", "train_cpu_seconds_per_epoch", "test_cpu_seconds_per_batch"})


def _without_times(results) -> str:
    """The results without the clock's readings, as JSON text (so that NaN equals NaN)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in TIMES}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(results), sort_keys=True)


def _count_steps(monkeypatch, ctrl_c_at: int | None = None, diverge_at: int | None = None) -> list[int]:
    """From now on, count the training steps of this process over all its training runs (the list grows by one per
    step), counted from 1. With ``ctrl_c_at``, Ctrl-C (SIGINT to this process) comes during that step: a stop
    request at a known batch of a known run, as a user's would come. With ``diverge_at``, that step raises
    FloatingPointError, as PC's inference does when its energy blows up."""
    steps = []

    def counted(*args, **kwargs):
        steps.append(len(steps) + 1)
        if steps[-1] == ctrl_c_at:
            os.kill(os.getpid(), signal.SIGINT)
        if steps[-1] == diverge_at:
            raise FloatingPointError("energy blew up (injected)")
        return TRAIN_STEP(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", counted)
    return steps


@pytest.mark.filterwarnings("ignore:PC training may be diverging:RuntimeWarning")
@pytest.mark.parametrize("script", SCRIPTS)
def test_script_stopped_mid_run_resumes_to_the_uninterrupted_result(script, tmp_path, monkeypatch, one_thread,
                                                                    mnist5k_once):
    """Each long script stopped by Ctrl-C part-way through a training run exits with status 130, its run folder
    unfinished; --resume takes the finished runs from their checkpoints (one per training run) and trains only the
    steps left of the stopped one, and the results equal the uninterrupted run's in everything but the clock's
    readings."""
    main, argv, step, checkpoints = SCRIPTS[script]
    reference = main([*argv, *SMALL, "--run-folder", str(tmp_path / "reference")])
    folder = tmp_path / "run"
    _count_steps(monkeypatch, ctrl_c_at=step)
    with pytest.raises(SystemExit) as stop:
        main([*argv, *SMALL, "--run-folder", str(folder)])
    assert stop.value.code == 130 and not RunFolder.read(folder)["finished"]
    steps = _count_steps(monkeypatch)
    resumed = main(["--resume", str(folder)])
    assert len(steps) == STEPS_LEFT and RunFolder.read(folder)["finished"]
    assert all((folder / name).is_file() for name in checkpoints)
    assert _without_times(resumed) == _without_times(reference)


def test_sequence_check_stopped_mid_run_writes_the_parts_of_the_uninterrupted_run(tmp_path, monkeypatch, one_thread):
    """classification/sequences.py run (BP and the first PC candidate, seed 0, three epochs of two batches) stopped by
    Ctrl-C in PC's second epoch after its first batch, then resumed with --resume: BP's part is kept and PC's run
    trains only its last three steps, and the parts equal those of the uninterrupted run in everything but the
    clock's readings."""
    argv = ["run", "--seeds", "0", "--only", "0", "1", "--max-batches", "2"]
    sequences.main([*argv, "--parts", str(tmp_path / "reference"), "--run-folder", str(tmp_path / "reference-run")])
    folder, parts = tmp_path / "run", tmp_path / "parts"
    _count_steps(monkeypatch, ctrl_c_at=9)
    with pytest.raises(SystemExit) as stop:
        sequences.main([*argv, "--parts", str(parts), "--run-folder", str(folder)])
    assert stop.value.code == 130 and len(list(parts.glob("*.json"))) == 1  # BP's part; PC's run was stopped
    steps = _count_steps(monkeypatch)
    sequences.main(["--resume", str(folder)])
    assert len(steps) == 3
    reference = sorted((tmp_path / "reference").glob("*.json"))
    assert [p.name for p in sorted(parts.glob("*.json"))] == [p.name for p in reference] and len(reference) == 2
    assert all((folder / f"{p.stem}.pt").is_file() for p in reference)
    for part in reference:
        assert _without_times(json.loads((parts / part.name).read_text())) == _without_times(json.loads(
            part.read_text()))


def test_sweep_point_that_diverges_after_a_resume_keeps_the_probes_of_the_epochs_before(tmp_path, monkeypatch,
                                                                                       one_thread, mnist5k_once):
    """A PC grid point that diverges in epoch 2 records the γλ_max probe of epoch 1 and an alarm at epoch 2. Stopped
    in epoch 2 before it diverges and resumed, the process that sees the divergence trained no whole epoch itself:
    the probe of epoch 1 comes from the checkpoint, and the row equals the uninterrupted sweep's."""
    argv = ["--dataset", "mnist-5k", "--only", "3", *SMALL]
    _count_steps(monkeypatch, diverge_at=5)  # epoch 2, batch 2
    reference = sweep.main([*argv, "--run-folder", str(tmp_path / "reference")])
    row = reference["runs"][0]
    assert len(row["gamma_lambda"]) == 1 and row["alarms"][0]["epoch"] == 2 and "diverged" in row
    folder = tmp_path / "run"
    _count_steps(monkeypatch, ctrl_c_at=4)  # saved after batch 1 of epoch 2
    with pytest.raises(SystemExit):
        sweep.main([*argv, "--run-folder", str(folder)])
    _count_steps(monkeypatch, diverge_at=1)  # the same step: batch 2 of epoch 2
    assert _without_times(sweep.main(["--resume", str(folder)])) == _without_times(reference)


def test_sequence_run_that_diverges_after_a_resume_names_its_epoch(tmp_path, monkeypatch, one_thread):
    """A sequence-check run that diverges in epoch 3 says so (``diverged_in_epoch``) also when the process that sees
    the divergence continued it from a checkpoint written in epoch 2: the epochs before count, whoever trained them."""
    argv = ["run", "--seeds", "0", "--only", "1", "--max-batches", "2"]
    _count_steps(monkeypatch, diverge_at=5)  # epoch 3, batch 1
    sequences.main([*argv, "--parts", str(tmp_path / "reference"), "--run-folder", str(tmp_path / "reference-run")])
    [part] = (tmp_path / "reference").glob("*.json")
    assert json.loads(part.read_text())["diverged_in_epoch"] == 3
    folder, parts = tmp_path / "run", tmp_path / "parts"
    _count_steps(monkeypatch, ctrl_c_at=3)  # saved after batch 1 of epoch 2
    with pytest.raises(SystemExit):
        sequences.main([*argv, "--parts", str(parts), "--run-folder", str(folder)])
    _count_steps(monkeypatch, diverge_at=2)  # the same step: batch 1 of epoch 3
    sequences.main(["--resume", str(folder)])
    assert _without_times(json.loads((parts / part.name).read_text())) == _without_times(json.loads(
        part.read_text()))


def _parts(folder: Path) -> dict[str, str]:
    """{name: contents without the clock's readings} of the JSON part files in ``folder``."""
    return {p.name: _without_times({k: v for k, v in json.loads(p.read_text()).items() if k != "seconds_per_epoch"})
            for p in sorted(folder.glob("*.json"))}


def test_depth_experiment_stopped_mid_run_writes_the_parts_of_the_uninterrupted_run(tmp_path, monkeypatch,
                                                                                   one_thread):
    """classification/depth.py run --quick (tuning, then BP and μPC at L = 3 and 4, two epochs of three batches)
    stopped by Ctrl-C in the last run's second epoch after its first batch, then resumed with --resume: the runs done
    keep their parts, the stopped one continues from the batch after the stop (two training steps and the
    measurement at initialisation are left), and every part equals the uninterrupted run's but for the seconds."""
    argv = ["run", "--quick", "--epochs", "2", "--methods", "bp", "mupc", "--device", "cpu"]
    calls, fill_grads = [], depth.fill_grads

    def counted(*args, ctrl_c_at=None):
        calls.append(len(calls) + 1)
        if len(calls) == ctrl_c_at:
            os.kill(os.getpid(), signal.SIGINT)
        return fill_grads(*args)

    monkeypatch.setattr(depth, "fill_grads", counted)
    depth.main([*argv, "--parts", str(tmp_path / "reference"), "--run-folder", str(tmp_path / "reference-run")])
    # Tuning: 8 settings × 3 batches; then per run 6 training steps and one measurement at initialisation.
    assert len(calls) == 8 * 3 + 4 * 7
    folder, parts = tmp_path / "run", tmp_path / "parts"
    calls.clear()
    monkeypatch.setattr(depth, "fill_grads", lambda *args: counted(*args, ctrl_c_at=8 * 3 + 3 * 7 + 4))
    with pytest.raises(SystemExit) as stop:
        depth.main([*argv, "--parts", str(parts), "--run-folder", str(folder)])
    assert stop.value.code == 130 and not RunFolder.read(folder)["finished"]
    [stopped] = [p for p in folder.glob("*.pt") if not (parts / f"{p.stem}.json").exists()]
    assert stopped.name.startswith("run_mupc_L4_")
    assert torch.load(stopped, weights_only=True)["state"]["loop"]["batch"] == 1  # saved part-way through epoch 2
    calls.clear()
    monkeypatch.setattr(depth, "fill_grads", counted)
    depth.main(["--resume", str(folder)])
    assert len(calls) == 2 + 1 and RunFolder.read(folder)["finished"]
    assert _parts(parts) == _parts(tmp_path / "reference") and len(_parts(parts)) == 8 + 4


def test_depth_controls_stopped_mid_run_write_the_parts_of_the_uninterrupted_run(tmp_path, monkeypatch, one_thread,
                                                                                 mnist5k_once):
    """PC_BP_Gradients/depth_sweep.py --controls (BP and the three PC settings at two hidden layers, seed 0, two
    epochs of three batches) stopped by Ctrl-C in the last run's second epoch after its first batch, then resumed
    with --resume: the parts done are kept, the stopped run trains only its two steps left, and every part equals
    the uninterrupted run's but for the seconds."""
    argv = ["--controls", "--depths", "2", "--seeds", "0", "--width", "8", "--epochs", "2", "--max-batches", "3",
            "--device", "cpu"]
    depth_sweep.main([*argv, "--parts", str(tmp_path / "reference"), "--json", str(tmp_path / "reference.json"),
                      "--run-folder", str(tmp_path / "reference-run")])
    folder, parts = tmp_path / "run", tmp_path / "parts"
    _count_steps(monkeypatch, ctrl_c_at=3 * 6 + 3 + 1)
    with pytest.raises(SystemExit) as stop:
        depth_sweep.main([*argv, "--parts", str(parts), "--json", str(tmp_path / "stopped.json"),
                          "--run-folder", str(folder)])
    assert stop.value.code == 130 and not RunFolder.read(folder)["finished"]
    assert len(list(parts.glob("*_d2_s0.json"))) == 3  # BP, today and beta0.01; equilibrium was stopped
    steps = _count_steps(monkeypatch)
    depth_sweep.main(["--resume", str(folder)])
    assert len(steps) == STEPS_LEFT and RunFolder.read(folder)["finished"]
    assert all((folder / f"{s}_d2_s0.pt").is_file() for s in ("bp", *depth_sweep.CONTROL_SETTINGS))
    assert _parts(parts) == _parts(tmp_path / "reference") and len(_parts(parts)) == 6  # settings, init, 4 runs
