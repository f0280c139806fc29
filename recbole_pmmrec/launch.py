"""Start the worker processes of a multi-process run (``--nproc=N``), as RecBole's ``run`` does.

``spawn_run`` starts ``N`` processes with ``torch.multiprocessing.spawn``; each one joins the process group
(:mod:`recbole_pmmrec.collectives`) and runs the entry point it is given (:func:`recbole_pmmrec.quick_start.run_recbole_pmmrec`) as
one rank. A worker dies with its launcher: on Linux each asks the kernel for SIGKILL when its parent exits
(``PR_SET_PDEATHSIG``), so a killed launcher never leaves ranks behind that go on writing checkpoints.
See ``docs/DISTRIBUTED.md``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys

import torch.distributed as dist

from recbole_pmmrec import errors
from recbole_pmmrec.errors import PMMRecConfigError, PMMRecError

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port that is free on this machine right now (for a single-machine group)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux); exit now if it already has.

    torch's spawn asks for SIGINT instead, which a worker ignores when the launcher was started with SIGINT
    ignored (``cmd &`` in a script) and which Python code may catch: such workers outlived a killed launcher.
    SIGKILL can be neither ignored nor caught (``tests/test_hardening_workers.py``)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the launcher died before the request was made
        os._exit(1)


def _worker(local_rank: int, parent_pid: int, run, model, dataset, config_file_list, config_dict: dict, saved: bool,
            queue) -> None:
    die_with_parent(parent_pid)
    config_dict = dict(config_dict, local_rank=local_rank)
    try:
        result = run(model, dataset, config_file_list, config_dict, saved=saved)
    except BaseException as exc:
        if isinstance(exc, PMMRecError):  # handed to the parent, which raises it again with the same type
            queue.put({"error": type(exc).__name__, "message": str(exc), "rank": local_rank})
        _leave_group(finished=False)
        raise
    if local_rank == 0 and queue is not None:
        picklable = {k: v for k, v in result.items() if k in _PICKLABLE_RESULT}
        picklable["config"] = result["config"].final_config_dict  # plain dict: no process group in a pickle
        queue.put(picklable)
    _leave_group(finished=True)
    _exit_now(0)


def _leave_group(finished: bool) -> None:
    """Leave the process group: after a barrier when this rank finished its run (no rank tears down its
    connections while another is still in a collective), at once when it failed (the others may never arrive)."""
    if not dist.is_initialized():
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def _exit_now(code: int) -> None:
    """End a finished worker without the interpreter's teardown.

    DistributedDataParallel's reducer keeps the gloo process group alive after ``destroy_process_group``
    (its threads ``pt_gloo_runloop`` / ``gloo_tcp_loop`` are still running: they cannot be released from
    Python), so it is destroyed during interpreter shutdown, where now and then a still-joinable thread ends
    the process with ``terminate called without an active exception`` (SIGABRT): a finished run reported as
    a crashed rank. Everything a run writes is closed by then (checkpoints, TensorBoard); this flushes the
    logs and the standard streams and leaves with ``os._exit``."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


# What rank 0 hands back to the launcher (the trainer, model and data stay in the worker).
_PICKLABLE_RESULT = ("best_valid_score", "valid_score_bigger", "best_valid_result", "test_result", "config",
                     "checkpoint", "log_file", "provenance", "pretrained_folder")


def spawn_run(run, nproc: int, model, dataset, config_file_list=None, config_dict=None, saved: bool = True,
              world_size: int = -1, ip: str = "localhost", port: int | None = None, offset: int = 0) -> dict | None:
    """Train with ``nproc`` processes on this machine (ranks ``offset .. offset+nproc-1`` of ``world_size``).

    ``run`` is the entry point each rank calls (``quick_start.run_recbole_pmmrec``: a module-level function,
    so that it reaches the spawned processes by name).

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
    records = []
    try:
        context = mp.spawn(_worker, args=(os.getpid(), run, model, dataset, config_file_list, config_dict, saved,
                                          queue), nprocs=int(nproc), join=False)
        # read while the ranks run: a record larger than the pipe's buffer would otherwise block its writer
        while not context.join(timeout=0.5):
            records.extend(_drain(queue))
    except ProcessException:
        for record in records + _drain(queue):
            if "error" in record:
                raise getattr(errors, record["error"], PMMRecError)(
                    f"rank {record['rank']}: {record['message']}") from None
        raise
    records.extend(_drain(queue))
    return records[0] if records else None


def _drain(queue) -> list:
    out = []
    while not queue.empty():
        out.append(queue.get())
    return out


__all__ = ["free_port", "die_with_parent", "spawn_run"]
