"""Collectives of a multi-process run (``torch.distributed``): joining the group, gathering across ranks.

``recbole_pmmrec.launch`` starts the ``N`` worker processes of ``--nproc=N``; each is one rank, and:

* :func:`init_process_group` (called by ``Config._init_device`` when ``local_rank`` is set) joins the
  group: ``nccl`` on GPUs (one per rank, RecBole's rule), ``gloo`` on CPU, which RecBole 1.2.1 lacks;
* RecBole's dataloaders shard every split with a ``DistributedSampler`` (``train_batch_size`` and
  ``eval_batch_size`` stay *global*: each rank takes ``batch / N``), its trainer wraps the model in
  ``DistributedDataParallel`` (gradients averaged over ranks) and averages the evaluation metrics;
* PMMRec's NIP loss gathers every rank's window slots (:func:`gather_rows`, with gradient), so its
  in-batch softmax runs over the slots of the whole global batch, as in a single process;
* rank 0 writes checkpoints and logs at INFO; rank 0's result comes back to the caller.

See ``docs/DISTRIBUTED.md``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from recbole_pmmrec.errors import PMMRecConfigError

logger = logging.getLogger(__name__)

def is_distributed() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def init_process_group(config: dict) -> None:
    """Join the process group described by RecBole's keys and set ``device`` / ``single_spec``.

    ``config`` is a final config dict with ``local_rank``, ``world_size``, ``offset``, ``ip``, ``port``
    (and ``nproc``, ``gpu_id``, ``use_gpu``). GPU: ``nccl``, device ``cuda:local_rank`` (``gpu_id`` must
    list at least ``nproc`` GPUs). CPU: ``gloo``. Ranks other than 0 log errors only, without progress bars.
    """
    local_rank = int(config["local_rank"])
    world_size = int(config.get("world_size") or config.get("nproc") or 1)
    global_rank = local_rank + int(config.get("offset") or 0)
    gpu_id = str(config.get("gpu_id") or "")
    use_gpu = bool(config.get("use_gpu")) and torch.cuda.is_available() and gpu_id != ""
    if use_gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
        nproc = int(config.get("nproc") or world_size)
        if len(gpu_id.split(",")) < nproc:
            raise PMMRecConfigError(f"nproc={nproc} GPU processes need as many GPUs in gpu_id, got gpu_id='{gpu_id}'")
    backend, device = ("nccl", torch.device("cuda", local_rank)) if use_gpu else ("gloo", torch.device("cpu"))
    if not 0 <= global_rank < world_size:
        raise PMMRecConfigError(f"rank {global_rank} (local_rank {local_rank} + offset) is outside world_size "
                                f"{world_size}; check nproc, world_size and offset")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=global_rank, world_size=world_size,
                                init_method=f"tcp://{config.get('ip') or 'localhost'}:{config.get('port') or 5678}")
    if use_gpu:
        torch.cuda.set_device(local_rank)
    elif "OMP_NUM_THREADS" not in os.environ:  # N processes x all cores each would spin against each other
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(config.get("nproc") or world_size)))
    config.update(device=device, single_spec=False, world_size=world_size)
    if local_rank != 0:
        config.update(state="error", show_progress=False, verbose=False)


def gather_rows(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Concatenate each tensor over all ranks along dim 0: (B_r, ...) -> (world_size * B_max, ...).

    Ranks with fewer rows are zero-padded to ``B_max`` first (for PMMRec's windows a zero row is
    padding: no query, no candidate). Tensors that require grad are gathered with
    ``torch.distributed.nn.functional.all_gather``, whose backward sums every rank's gradient into
    the local rows: when every rank computes the same loss on the gathered tensors, the local
    gradient is ``world_size * dL/dx`` and DDP's average makes it exactly ``dL/dx``.
    """
    from torch.distributed.nn.functional import all_gather as all_gather_with_grad

    world = dist.get_world_size()
    rows = torch.tensor([tensors[0].shape[0]], device=tensors[0].device)
    all_rows = [torch.zeros_like(rows) for _ in range(world)]
    dist.all_gather(all_rows, rows)
    b_max = int(torch.stack(all_rows).max())
    out = []
    for t in tensors:
        if t.shape[0] < b_max:
            t = torch.cat([t, t.new_zeros((b_max - t.shape[0],) + tuple(t.shape[1:]))])
        if t.requires_grad:
            parts = all_gather_with_grad(t.contiguous())
        else:
            parts = [torch.empty_like(t) for _ in range(world)]
            dist.all_gather(parts, t.contiguous())
        out.append(torch.cat(list(parts)))
    return tuple(out)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (identity outside a group)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` outside a group)."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


__all__ = ["is_distributed", "rank", "init_process_group", "gather_rows", "broadcast_object", "all_gather_object",
           "barrier"]
