"""bench/suite/children.py: a bench command stopped with SIGTERM takes its runs with it and starts no new one."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.suite import children

REPO = Path(__file__).resolve().parents[3]

PARENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from bench.suite import children
    children.stop_children_on_sigterm()
    out = Path(sys.argv[1])
    procs = [children.start([sys.executable, "-c", "import time; time.sleep(120)"]) for _ in range(2)]
    out.write_text(" ".join(str(p.pid) for p in procs))
    try:
        while True:
            time.sleep(0.1)
    finally:
        out.with_suffix(".finally").write_text("ran")
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes: its parent reaped it or is about to
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().split()[2] == "Z")


def _start_parent(script: str, marker: Path) -> subprocess.Popen:
    """Start ``script`` (a bench command) with ``marker`` as its argument; return once it has written the marker."""
    parent = subprocess.Popen([sys.executable, "-c", script, str(marker)], cwd=REPO,
                              env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not marker.is_file() and time.time() < deadline and parent.poll() is None:
        time.sleep(0.05)
    return parent


def test_sigterm_kills_every_child_and_exits_143(tmp_path):
    pids_file = tmp_path / "pids.txt"
    parent = _start_parent(PARENT, pids_file)
    try:
        pids = [int(p) for p in pids_file.read_text().split()]
        assert all(_alive(p) for p in pids)
        parent.send_signal(signal.SIGTERM)
        out, _ = parent.communicate(timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 143
    assert "2 run(s) killed" in out
    assert (tmp_path / "pids.finally").read_text() == "ran"  # cleanup code of the command still ran
    assert not any(_alive(p) for p in pids)


WAITING_PARENT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from bench.suite import children
    children.stop_children_on_sigterm()
    Path(sys.argv[1]).write_text("started")
    children.run([sys.executable, "-c", "import time; time.sleep(120)"])
""")


def test_sigterm_while_the_command_waits_on_its_run_stops_at_once(tmp_path):
    """The handler interrupts ``run``'s own ``proc.wait()`` (which holds that Popen's lock): the child is killed and
    the command exits 143 at once, not after the 30 s that a second ``wait`` on the same Popen would block."""
    parent = _start_parent(WAITING_PARENT, tmp_path / "started")
    try:
        time.sleep(0.5)  # the child has started and the parent waits on it
        parent.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, _ = parent.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 143 and "1 run(s) killed" in out
    assert took < 15, f"the stopped command took {took:.0f} s to exit"


def test_no_run_starts_once_stopping(monkeypatch):
    monkeypatch.setattr(children, "_STOPPING", children.threading.Event())
    children._STOPPING.set()
    with pytest.raises(children.Stopped) as info:
        children.start([sys.executable, "-c", "pass"])
    assert info.value.code == 143


def test_run_returns_the_exit_status_and_forgets_the_child():
    assert children.run([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
    assert not children._LIVE


def test_run_kills_the_child_past_its_timeout():
    with pytest.raises(subprocess.TimeoutExpired):
        children.run([sys.executable, "-c", "import time; time.sleep(120)"], timeout=0.5)
    assert not children._LIVE
