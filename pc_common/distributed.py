"""Data parallelism over processes (``torchrun``): every process trains the same network on its share of each batch.

Launch any script that calls :func:`init` with PyTorch's own launcher, e.g.
``torchrun --standalone --nproc_per_node=2 classification/compare.py ...``. Then:

* **Sharding.** Every process walks the same seeded order of global batches (the loaders' generators are seeded
  alike); process r of W takes the contiguous share [⌊rB/W⌋, ⌊(r+1)B/W⌋) of a batch of B samples
  (:func:`share`, used by :class:`~pc_common.data.TensorLoader`). Shares are disjoint and cover the batch.
* **Gradients.** Each process fills ``.grad`` with the mean over its share, g_r = (1/n_r) Σ_{b∈r} ∂L_b/∂Θ, by BP or
  by PC inference, then :func:`average_gradients` replaces it by the global-batch mean

      g = Σ_r n_r g_r / Σ_r n_r = (1/B) Σ_b ∂L_b/∂Θ,

  with one all-reduce of one flat buffer. The weighting makes an uneven last batch (and an empty share) exact.
  ``DistributedDataParallel`` is not used: it averages in hooks fired by ``backward()``, and PC inference fills
  ``.grad`` without ``backward()``, so DDP would silently let every process train on its own gradients.
* **Same step everywhere.** All processes start from rank 0's weights (:func:`broadcast`) and apply the same
  optimizer step to the same averaged gradient, so their weights stay equal.
* **Evaluation** is sharded the same way; sums and counts are added over processes (:func:`all_sum`).

In a single process (no process group) every function here is a no-op, so the training loop pays nothing.

BatchNorm normalises each process's share with that share's statistics (a "ghost batch" of about B/W samples), so
training is then not the single-process run on the global batch; :func:`sync_batchnorm` converts the layers to
``SyncBatchNorm`` (statistics over the global batch; PyTorch supports it on GPUs only).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

from .utils import pick_device


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank r (0 without a process group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes W (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """True on the process that prints, shows progress bars and writes files (rank 0)."""
    return rank() == 0


def init(device: str | torch.device | None = None) -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment, and pick this process's device.

    torchrun sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous address; without them (a plain
    ``python script.py``) or with one process, nothing is initialised. The backend is NCCL on CUDA and gloo on the
    CPU; on CUDA each process takes the GPU of its local rank unless ``device`` names one.

    Args:
        device: as for :func:`pc_common.pick_device` (default: ``cuda`` if available).

    Returns:
        the device this process should use.
    """
    device = pick_device(device)
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    # The rendezvous store of torchrun's agent outlives a restart, and so do the addresses the last attempt's
    # processes left in it: a restarted process could read a dead peer's address before its new peer has written
    # its own (connection refused). Keys under a prefix of the attempt cannot be stale.
    store, rank_, world = next(dist.rendezvous("env://"))
    store = dist.PrefixStore(f"attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}", store)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=store, rank=rank_, world_size=world)
    return device


def restarted() -> bool:
    """True in a job that ``torchrun --max-restarts N`` started again after a failure (it should continue from its
    checkpoints rather than start over)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for in a single process)."""
    if active():
        dist.barrier()


def finish() -> None:
    """Leave the process group (if any), so that the processes exit cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share(start: int, stop: int) -> tuple[int, int]:
    """This process's contiguous share of the global batch [start, stop): [start + ⌊rB/W⌋, start + ⌊(r+1)B/W⌋).

    Share sizes differ by at most one; a share is empty only when the batch has fewer than W samples.
    """
    if not active():
        return start, stop
    r, w, size = dist.get_rank(), dist.get_world_size(), stop - start
    return start + r * size // w, start + (r + 1) * size // w


def shard_size(n: int, batch_size: int) -> int:
    """Samples this process sees in one pass over n samples in batches of ``batch_size``."""
    return sum(hi - lo for lo, hi in (share(s, min(s + batch_size, n)) for s in range(0, n, batch_size)))


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflatten_(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(part.view_as(t))


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Σ_r values_r over processes (``values`` itself in a single process)."""
    if active():
        values = values.clone()
        dist.all_reduce(values)
    return values


@torch.no_grad()
def broadcast(tensors: Iterable[torch.Tensor]) -> None:
    """Overwrite ``tensors`` (e.g. ``model.state_dict().values()``) with rank 0's, in one flat broadcast."""
    if not active():
        return
    tensors = [t for t in tensors if t.numel()]
    for dtype in dict.fromkeys(t.dtype for t in tensors):  # the same order on every process
        group = [t for t in tensors if t.dtype == dtype]
        flat = _flat(group)
        dist.broadcast(flat, 0)
        _unflatten_(flat, group)


@torch.no_grad()
def average_gradients(params: Iterable[nn.Parameter], count: int) -> None:
    """Replace every ``.grad`` (the mean over this process's ``count`` samples) by the mean over the global batch.

    g = Σ_r n_r g_r / Σ_r n_r, one all-reduce per dtype of [n_r g_r …, n_r, has-grad flags]. A weight whose
    ``.grad`` is None on every process stays None (as in one process, the optimizer then skips it); a process with
    an empty share contributes zeros. Call it after ``.grad`` is filled and before ``optimizer.step()``.
    """
    if not active():
        return
    params = [p for p in params if p.requires_grad]
    for dtype in dict.fromkeys(p.dtype for p in params):  # the same order on every process
        group = [p for p in params if p.dtype == dtype]
        has = [p.grad is not None for p in group]
        # Half-precision gradients and the counts are summed in float32 at least.
        wide = torch.promote_types(dtype, torch.float32)
        parts = [count * p.grad.to(wide) if h else torch.zeros_like(p, dtype=wide) for p, h in zip(group, has)]
        flat = torch.cat([_flat(parts), parts[0].new_tensor([count, *has])])
        dist.all_reduce(flat)
        # A weight has a gradient if any process has one. Where this process has them all, so does the sum, and
        # the flags need not be read (reading them would stall a GPU at every step).
        flags = [True] * len(group) if all(has) else (flat[-len(group):] > 0).tolist()
        grads = flat[: -len(group) - 1] / flat[-len(group) - 1]
        for p, g, flag in zip(group, grads.split([p.numel() for p in group]), flags):
            p.grad = g.view_as(p).to(dtype) if flag else None


def mean_over_shares(evaluator: Callable[[nn.Module, object], dict[str, float]]):
    """Wrap an evaluator that returns per-sample means over a loader into one that returns them over all shares.

    m = Σ_r n_r m_r / Σ_r n_r, with n_r this process's samples of the loader. Returns ``evaluator`` itself in a
    single process.
    """
    if not active():
        return evaluator

    def combined(model: nn.Module, loader) -> dict[str, float]:
        means = evaluator(model, loader)
        n = shard_size(len(loader.x), loader.batch_size)
        sums = all_sum(torch.tensor([n * v for v in means.values()] + [n], dtype=torch.float64,
                                    device=loader.x.device)).tolist()
        return {k: v / sums[-1] for k, v in zip(means, sums)}

    return combined


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """Convert every BatchNorm layer to ``SyncBatchNorm``: statistics over the global batch, not over each share.

    Exact for equal shares; an uneven last share is not quite the single-process batch, because each process
    scales its gradient by its own 1/n_r before SyncBatchNorm's backward adds the shares. PyTorch runs
    ``SyncBatchNorm`` on GPUs only.

    Raises:
        ValueError: when the model is on the CPU.
    """
    param = next(model.parameters(), None)
    if param is not None and param.device.type == "cpu":
        raise ValueError("SyncBatchNorm runs on GPUs only; on the CPU each process normalises with its own share")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
