"""Multi-process training on RecBole's own distributed support (``torch.distributed``).

``run_recbole_pmmrec(..., nproc=N)`` (or ``--nproc=N``) starts ``N`` worker processes with
``torch.multiprocessing.spawn``, as RecBole's ``run`` does; each worker is one rank:

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
import socket
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from recbole_pmmrec import errors
from recbole_pmmrec.errors import PMMRecConfigError, PMMRecError

logger = logging.getLogger(__name__)

# Config keys of a distributed run (RecBole's names).
DIST_KEYS = ("nproc", "world_size", "ip", "port", "offset", "local_rank")


def is_distributed() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def free_port() -> int:
    """A TCP port that is free on this machine right now (for a single-machine group)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_process_group(config: dict) -> None:
    """Join the process group described by RecBole's keys and set ``device`` / ``single_spec``.

    ``config`` is a final config dict with ``local_rank``, ``world_size``, ``offset``, ``ip``, ``port``
    (and ``nproc``, ``gpu_id``, ``use_gpu``). GPU: ``nccl``, device ``cuda:local_rank`` (``gpu_id`` must
    list at least ``nproc`` GPUs). CPU: ``gloo``. Ranks other than 0 log errors only, without progress bars.
    """
    import os

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


# --------------------------------------------------------------------------------------------
# spawning (RecBole's ``run`` with ``nproc > 1``, without importing recbole.quick_start)
# --------------------------------------------------------------------------------------------


def _worker(local_rank: int, model, dataset, config_file_list, config_dict: dict, saved: bool, queue) -> None:
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    config_dict = dict(config_dict, local_rank=local_rank)
    try:
        result = run_recbole_pmmrec(model, dataset, config_file_list, config_dict, saved=saved)
    except PMMRecError as exc:  # handed to the parent, which raises it again with the same type
        queue.put({"error": type(exc).__name__, "message": str(exc), "rank": local_rank})
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if local_rank == 0 and queue is not None:
        result = dict(result)
        result["config"] = result["config"].final_config_dict  # plain dict: no process group in a pickle
        queue.put(result)


def spawn_run(nproc: int, model, dataset, config_file_list=None, config_dict=None, saved: bool = True,
              world_size: int = -1, ip: str = "localhost", port: int | None = None, offset: int = 0) -> dict | None:
    """Train with ``nproc`` processes on this machine (ranks ``offset .. offset+nproc-1`` of ``world_size``).

    Returns rank 0's result dict (``config`` as a plain dict), or None on a machine without rank 0.
    For several machines, start this on each with the same ``world_size``, ``ip`` / ``port`` of the
    machine with rank 0, and ``offset`` = the first rank of the machine.
    """
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    if int(nproc) < 1:
        raise PMMRecConfigError(f"nproc={nproc}: give the number of processes on this machine (>= 1)")
    world_size = int(nproc) if world_size is None or int(world_size) <= 0 else int(world_size)
    if port is None:
        if world_size != int(nproc):
            raise PMMRecConfigError("a group over several machines needs an explicit port (and ip) on every machine")
        port = free_port()
    config_dict = dict(config_dict or {})
    config_dict.update(nproc=int(nproc), world_size=world_size, ip=str(ip), port=int(port), offset=int(offset))
    queue = mp.get_context("spawn").SimpleQueue()
    try:
        mp.spawn(_worker, args=(model, dataset, config_file_list, config_dict, saved, queue), nprocs=int(nproc),
                 join=True)
    except ProcessException:
        while not queue.empty():
            record = queue.get()
            if "error" in record:
                raise getattr(errors, record["error"], PMMRecError)(
                    f"rank {record['rank']}: {record['message']}") from None
        raise
    return None if queue.empty() else queue.get()


__all__ = ["is_distributed", "rank", "free_port", "init_process_group", "gather_rows", "broadcast_object",
           "all_gather_object", "barrier", "spawn_run", "DIST_KEYS"]
