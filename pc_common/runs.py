"""Run folders: where a long script keeps its checkpoints, so that a stopped run continues where it was.

A run folder holds ``run.json`` (the command that started the run, its settings, and whether it finished) and the
checkpoints of its training runs (:func:`pc_common.fit` with ``checkpoint=``, one file per training run, e.g.
``seed1/pc.pt``). Each checkpoint says how far its training run got, so the folder records where in its seeds,
rules or grid a script is: run again, a finished training run returns its history at once (from its checkpoint)
and an interrupted one continues. A script adopts it in a few lines::

    runs.add_arguments(parser)                       # --run-folder, --resume
    args = runs.parse_args(parser, argv)             # --resume FOLDER reads the command back from the folder
    folder = runs.RunFolder.open(args, "sweep", __file__, settings)
    with folder.stops():                             # Ctrl-C: saved; exits with the command that resumes
        ... fit(..., checkpoint=folder.path / f"seed{seed}" / f"{rule}.pt") ...
    folder.finish()

Starting a script again with the same settings (and so the same default folder) continues an unfinished run, and
starts a finished one afresh (its checkpoints are removed): results change with the code, and a finished folder
would otherwise hand back the old ones. ``--resume FOLDER`` continues (or, finished, reassembles) the run in
FOLDER with the command stored there; so does a job that ``torchrun --max-restarts N`` restarts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import distributed
from .utils import quick_mode, write_json

RUN_FILE = "run.json"
# Options that change no result: where things are written, what is shown, and the device (a run may continue on
# another one). They are not settings of a run, and a resumed run may give them anew.
NOT_SETTINGS = frozenset({"resume", "run_folder", "json", "merge", "progress", "device", "compile", "argv"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--run-folder`` and ``--resume`` to a script's parser."""
    parser.add_argument("--run-folder", type=Path, default=None,
                        help="where the checkpoints go, one per training run, written after every epoch (default: "
                             "runs/<script>-<hash of the settings>; under PC_QUICK=1 in the temporary folder)")
    parser.add_argument("--resume", type=Path, default=None, metavar="RUN_FOLDER",
                        help="continue the run in RUN_FOLDER with the command stored there (options given here are "
                             "added to it; those that change a result must agree)")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; with ``--resume FOLDER``, the command stored in FOLDER followed by ``argv``.

    Returns:
        the parsed options; ``argv`` holds the command line that started the run, and with ``--resume``,
        ``run_folder`` is FOLDER.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.resume is not None:
        try:
            stored = RunFolder.read(args.resume)["argv"]
        except FileNotFoundError as err:
            parser.error(str(err))
        args = parser.parse_args(stored + argv)
        args.run_folder, argv = args.resume, stored
    args.argv = argv
    return args


def settings_of(args: argparse.Namespace) -> dict:
    """The options of a script that make its results what they are: all but :data:`NOT_SETTINGS`."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in NOT_SETTINGS}


def default_path(name: str, settings: dict) -> Path:
    """``runs/<name>-<hash of settings>``: the same command finds its folder again, on every process of a
    ``torchrun`` job.

    In quick mode (``PC_QUICK=1``, ``make test``) the folder is in the temporary folder and belongs to this process
    (or ``torchrun`` job): tests write nothing into the checkout, and test sessions running at once never share one.
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    if quick_mode():
        job = os.environ.get("TORCHELASTIC_RUN_ID", str(os.getpid()))
        return Path(tempfile.gettempdir()) / "pc_runs" / f"{name}-{digest}-{job}"
    return Path("runs") / f"{name}-{digest}"


def part_checkpoint(checkpoints: Path | None, part: Path) -> Path | None:
    """The checkpoint of the training run whose result is the part file ``part``: ``<part's name>.pt`` in the folder
    ``checkpoints`` (a run folder); None when there is no folder (nothing is checkpointed)."""
    return None if checkpoints is None else Path(checkpoints) / f"{part.stem}.pt"


class RunFolder:
    """The folder of one long run: ``run.json`` and the checkpoints of its training runs.

    Attributes:
        path: the folder.
        resume_command: the shell command that continues the run.
        record: the contents of ``run.json``: ``script``, ``argv``, ``settings``, ``finished``.
    """

    def __init__(self, path: Path, record: dict):
        self.path, self.record = Path(path), record
        launcher = ["python"]
        if distributed.world_size() > 1:
            launcher = ["torchrun", "--standalone", f"--nproc_per_node={distributed.world_size()}"]
        self.resume_command = shlex.join([*launcher, record["script"], "--resume", str(self.path)])

    @staticmethod
    def read(path: str | Path) -> dict:
        """The ``run.json`` of the run folder ``path``.

        Raises:
            FileNotFoundError: when ``path`` holds no run.
        """
        file = Path(path) / RUN_FILE
        if not file.is_file():
            raise FileNotFoundError(f"{path} is not a run folder: it has no {RUN_FILE}")
        return json.loads(file.read_text())

    @classmethod
    def open(cls, args: argparse.Namespace, name: str, script: str | Path, settings: dict) -> RunFolder:
        """The run folder of a script's run: ``args.run_folder``, or :func:`default_path`.

        A new folder, or one whose run had finished (unless resumed), starts afresh; an unfinished run continues.
        Under ``torchrun`` every process opens the same folder and rank 0 writes it.

        Args:
            args: the options from :func:`parse_args` (``run_folder``, ``resume``, ``argv``).
            name: the script's short name, for the default folder.
            script: the script's file (``__file__``), for the command that resumes.
            settings: the options that make the results (:func:`settings_of`), stored and compared.

        Raises:
            ValueError: when the folder holds a run of other settings (naming the differences).
        """
        settings = json.loads(json.dumps(settings))  # as run.json gives it back (tuples are lists)
        path = Path(args.run_folder or default_path(name, settings))
        old = cls.read(path) if (path / RUN_FILE).is_file() else None
        distributed.barrier()  # every process has read the folder before rank 0 changes it
        if old is not None and old["settings"] != settings:
            differences = [f"{key}: {old['settings'].get(key)!r} there, {settings.get(key)!r} here"
                           for key in sorted(old["settings"].keys() | settings.keys())
                           if old["settings"].get(key) != settings.get(key)]
            raise ValueError(f"run folder {path} holds a run of other settings ({'; '.join(differences)}): resume "
                             "it with its own command, or choose another --run-folder")
        resume = args.resume is not None or distributed.restarted()
        fresh = old is None or (old["finished"] and not resume)
        script = os.path.relpath(script) if not os.path.relpath(script).startswith("..") else os.path.abspath(script)
        record = {"script": script, "argv": args.argv, "settings": settings,
                  "finished": not fresh and old["finished"]}
        folder = cls(path, record)
        if distributed.is_main():
            if fresh and old is not None:
                for checkpoint in path.rglob("*.pt"):  # only the checkpoints: the folder may hold other files
                    checkpoint.unlink()
            state = "a new run" if fresh else "finished: results from its checkpoints" if record["finished"] else \
                "continuing the unfinished run"
            print(f"run folder {path} ({state}); resume with: {folder.resume_command}", file=sys.stderr)
            write_json(path / RUN_FILE, record)
        distributed.barrier()
        return folder

    @contextmanager
    def stops(self) -> Iterator[None]:
        """Turn a stop (Ctrl-C, SIGTERM) into an exit with status 130 and a message that gives the resume command.

        A run stopped by :class:`~pc_common.training.StopRequests` was saved at a batch boundary; a plain
        ``KeyboardInterrupt`` (a second Ctrl-C, or under ``torchrun``) leaves the checkpoints of the last epochs.
        """
        try:
            yield
        except KeyboardInterrupt as stop:
            if distributed.is_main():
                print(f"\n{str(stop) or 'interrupted: the checkpoints of the epochs done are kept'}\n"
                      f"resume with:\n  {self.resume_command}", file=sys.stderr)
            sys.exit(130)

    def finish(self) -> None:
        """Record in ``run.json`` that the run has finished."""
        self.record["finished"] = True
        if distributed.is_main():
            write_json(self.path / RUN_FILE, self.record)
