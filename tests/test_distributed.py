"""Data parallelism: two processes (gloo, CPU) train exactly as one process trains on the global batch.

PC fills ``.grad`` without ``backward()``, so DistributedDataParallel's averaging hooks would never fire and each
process would silently train on its own share. The oracle here is a single-process run on the full global batches,
in float64: the two-process weights and every reported metric must equal it to round-off, and a run without the
gradient average (the naive data-parallel run) must not.
"""

from __future__ import annotations

import os
import socket
from unittest import mock

import pytest
import torch
import torch.multiprocessing as mp
from conftest import relative_error
from torch import nn

import pc_common as pc
from pc_common import distributed

WORLD = 2
# 16 training samples in batches of 5: every batch splits unevenly (2 + 3) and the last batch of 1 leaves one
# process an empty share. Evaluation batches of 4 on 7 samples: 2 + 2, then 1 + 2.
N_TRAIN, BATCH, N_EVAL, EVAL_BATCH, EPOCHS = 16, 5, 7, 4, 2
RULES = {
    "bp": None,
    "pc": pc.PCConfig(T=4, inference_lr=0.1, momentum=0.5),
    "pc-fixed-prediction": pc.PCConfig(T=3, inference_lr=1.0, fixed_prediction=True),
}
TOLERANCE = 1e-12
# Fixed-prediction inference is not gradient descent on F, so its energy trace may rise; the divergence guard's
# warning says nothing about what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:PC training may be diverging:RuntimeWarning")


def _splits() -> pc.Splits:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N_TRAIN + 2 * N_EVAL, 6, generator=g, dtype=torch.float64)
    y = (x[:, :3] + 0.5 * x[:, 3:]).argmax(1)  # learnable labels: validation improves, the last epoch is kept
    parts = [slice(0, N_TRAIN), slice(N_TRAIN, N_TRAIN + N_EVAL), slice(N_TRAIN + N_EVAL, None)]
    train, val, test = (pc.TensorLoader(x[s], y[s], EVAL_BATCH) for s in parts)
    train.batch_size, train.shuffle, train.generator = BATCH, True, torch.Generator().manual_seed(0)
    return pc.Splits("random", train, val, test, (6,), 3)


def _train(config: pc.PCConfig | None) -> dict:
    """Train a small float64 MLP with ``fit``; return its final weights and its per-epoch records."""
    pc.seed_everything(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), pc.PCLayer(), nn.Linear(5, 4), nn.Tanh(), pc.PCLayer(),
                          nn.Linear(4, 3)).double()
    history = pc.fit(model, _splits(), "bp" if config is None else "pc", epochs=EPOCHS, lr=0.05,
                     pc=config or pc.PCConfig(), progress=False)
    return {"weights": [p.detach().clone() for p in model.parameters()], "epochs": history.epochs,
            "best_epoch": history.best_epoch}


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    # What torchrun would set; the rendezvous and gloo's transport stay on the loopback interface.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD), GLOO_SOCKET_IFNAME="lo")
    assert distributed.init("cpu") == torch.device("cpu") and distributed.world_size() == WORLD
    try:
        results = {name: _train(config) for name, config in RULES.items()}
        with mock.patch.object(distributed, "average_gradients", lambda params, count: None):
            results["naive"] = _train(RULES["pc"])
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    finally:
        distributed.finish()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, list[dict]]:
    """(single-process results, [results of rank 0, rank 1]) of the same training runs."""
    out = tmp_path_factory.mktemp("distributed")
    # Forked workers inherit the imported torch (a spawned one imports it again: seconds per process); each worker
    # sets one thread before any work, as DataLoader's forked workers do.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True, start_method=method)
    reference = {name: _train(config) for name, config in RULES.items()}
    return reference, [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def _error(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return relative_error(torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b]))


@pytest.mark.parametrize("rule", list(RULES))
def test_two_processes_train_as_one(runs, rule):
    """Sharded batches + share-weighted gradient average = the single-process step on the global batch."""
    reference, ranks = runs
    assert reference[rule]["best_epoch"] == EPOCHS - 1  # the compared weights went through every step
    for result in ranks:
        assert _error(result[rule]["weights"], reference[rule]["weights"]) <= TOLERANCE
        for got, want in zip(result[rule]["epochs"], reference[rule]["epochs"], strict=True):
            for key, value in want.items():
                if key != "seconds":
                    assert got[key] == pytest.approx(value, rel=TOLERANCE, abs=0), key


def test_naive_data_parallel_fails_the_comparison(runs):
    """Each process on its own share's gradient (what DDP does to PC): the weights leave the reference."""
    reference, ranks = runs
    assert _error(ranks[0]["naive"]["weights"], reference["pc"]["weights"]) > 1e-6
    assert _error(ranks[0]["naive"]["weights"], ranks[1]["naive"]["weights"]) > 1e-6


def test_sharding_covers_each_batch_once():
    """The shares of W processes are disjoint, contiguous and cover the batch, sizes differing by at most one."""
    for size in range(9):
        for world in (1, 2, 3, 4):
            bounds = []
            for r in range(world):
                with mock.patch.multiple(distributed, active=lambda: True, dist=mock.Mock(
                        get_rank=lambda r=r: r, get_world_size=lambda w=world: w)):
                    bounds.append(distributed.share(10, 10 + size))
            assert bounds[0][0] == 10 and bounds[-1][1] == 10 + size
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_single_process_is_untouched():
    """Without a process group every hook is the identity: the batch is whole and ``.grad`` is left as it is."""
    assert not distributed.active() and distributed.is_main() and distributed.share(3, 8) == (3, 8)
    p = nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    distributed.average_gradients([p], 7)
    assert torch.equal(p.grad, torch.full((2,), 3.0))


def test_sync_batchnorm_refuses_the_cpu():
    """PyTorch's SyncBatchNorm runs on GPUs only: the CPU gets a clear error, not a failure mid-training."""
    with pytest.raises(ValueError, match="GPUs only"):
        distributed.sync_batchnorm(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
