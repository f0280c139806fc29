"""Run processes that stop with the bench command that started them.

Every model run of the suite and the studies is a child process. Ctrl-C reaches the whole process group, but a
``kill`` (``pkill``, a scheduler's time limit) reaches only the command: before this module its children went on
training, writing into the same work directory as the next command. ``stop_children_on_sigterm`` makes SIGTERM
stop every child started through ``start`` and then exit the command with status 143; ``start`` refuses to begin a
new child once that has happened (a ``--jobs`` lane that was about to start its next run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

_LIVE: set[subprocess.Popen] = set()
_LOCK = threading.RLock()  # re-entrant: the handler may run while the main thread is inside ``start``
_STOPPING = threading.Event()


class Stopped(SystemExit):
    """The command was asked to stop (SIGTERM): no new run starts and no record is written for a killed one."""

    def __init__(self) -> None:
        super().__init__(143)


def stopping() -> bool:
    return _STOPPING.is_set()


def start(cmd: list[str], **popen_kwargs) -> subprocess.Popen:
    """``subprocess.Popen(cmd, ...)``, remembered until ``forget``; raises ``Stopped`` once SIGTERM has arrived."""
    with _LOCK:
        if _STOPPING.is_set():
            raise Stopped()
        proc = subprocess.Popen(cmd, **popen_kwargs)
        _LIVE.add(proc)
    if _STOPPING.is_set():  # SIGTERM arrived while it started
        kill_all()
        raise Stopped()
    return proc


def forget(proc: subprocess.Popen) -> None:
    """The child has ended (or was reaped elsewhere)."""
    with _LOCK:
        _LIVE.discard(proc)


def run(cmd: list[str], timeout: float | None = None, **popen_kwargs) -> int:
    """``start`` and wait: the exit status. Past ``timeout`` seconds the child is killed and
    ``subprocess.TimeoutExpired`` raised (as ``subprocess.run`` does); raises ``Stopped`` if SIGTERM stopped it."""
    proc = start(cmd, **popen_kwargs)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        if not _STOPPING.is_set():
            raise
    finally:
        forget(proc)
    if _STOPPING.is_set():
        raise Stopped()
    return rc


def kill_all() -> int:
    """Kill every live child and wait (up to 30 s each) until it has exited; how many there were.

    The wait does not reap: the SIGTERM handler runs on the main thread while it may be inside ``run``'s
    ``proc.wait()``, which holds that Popen's lock, so ``proc.wait`` here would block for its whole timeout.
    ``os.waitid(..., WNOWAIT)`` sees the exit without taking the lock; whoever holds it reaps the child."""
    with _LOCK:
        live = list(_LIVE)
        _LIVE.clear()
    for proc in live:
        if proc.poll() is None:
            proc.kill()
    for proc in live:
        deadline = time.monotonic() + 30
        while proc.returncode is None and not _exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.poll()  # reaps it unless another frame of this thread is waiting on it
    return len(live)


def _exited(pid: int) -> bool:
    """Whether child ``pid`` has exited (a zombie, or already reaped), without reaping it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True


def stop_children_on_sigterm() -> None:
    """Install the SIGTERM handler: stop new starts, kill live children, exit with 143. Only the main thread may
    install a handler; called from another thread (a test running a command in a thread) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        _STOPPING.set()
        n = kill_all()
        print(f"[bench] stopped by signal {signum}: {n} run(s) killed, no record written for them", flush=True)
        raise Stopped()

    signal.signal(signal.SIGTERM, handler)
