"""One writer per checkpoint: the workers of a killed launcher die with it, and a second run that would write the
same checkpoint name is refused while the first one trains."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from recbole_pmmrec.errors import PMMRecCheckpointError
from recbole_pmmrec.quick_start import run_recbole_pmmrec
from recbole_pmmrec.trainer import CheckpointLock, latest_file_of, lock_file_of

ROOT = Path(__file__).resolve().parent.parent


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            continue
    return alive


def _as_a_background_job() -> None:
    """What a non-interactive shell does to ``cmd &``: SIGINT ignored, and inherited through exec by the workers.
    torch's spawn asks for SIGINT when the parent dies, so such workers survived their launcher."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_killing_the_launcher_kills_its_workers(synth, tmp_path):
    """Before: ``kill -9`` of a ``--nproc=2`` launcher started as a background job (``... &`` in a script) left
    both ranks running, writing NAME.pth / NAME.latest.pth."""
    saved = tmp_path / "saved"
    argv = [sys.executable, str(ROOT / "run_recbole_pmmrec.py"), "--model=SASRec", f"--dataset={synth.name}",
            "--nproc=2", f"--data_path={synth.root}", "--epochs=100000", "--stopping_step=100000", "--use_gpu=False",
            "--state=WARNING", "--show_progress=False", "--train_batch_size=64", "--eval_batch_size=64",
            "--MAX_ITEM_LIST_LENGTH=10", f"--checkpoint_dir={saved}", f"--log_dir={tmp_path / 'logs'}",
            f"--tensorboard_dir={tmp_path / 'tb'}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    with open(tmp_path / "stderr.txt", "wb") as err:
        launcher = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                    preexec_fn=_as_a_background_job)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and launcher.poll() is None and not list(saved.glob("*.latest.pth")):
            time.sleep(0.1)  # NAME.latest.pth: both ranks have trained an epoch (it gathers their random states)
        assert launcher.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
        assert list(saved.glob("*.latest.pth")), "the workers did not start training in time"
        workers = psutil.Process(launcher.pid).children(recursive=True)
        assert len(workers) >= 2 and list(saved.glob("*.lock"))  # two ranks (and multiprocessing's tracker)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=30)
        killed_at = time.monotonic()
        psutil.wait_procs(workers, timeout=10)
        assert not _alive(workers), [(p.pid, p.cmdline()[:3]) for p in _alive(workers)]
        assert time.monotonic() - killed_at < 10
        # nothing writes any more: no file of the checkpoint folder changes
        before = {p.name: p.stat().st_mtime_ns for p in saved.iterdir()}
        time.sleep(1.5)
        assert {p.name: p.stat().st_mtime_ns for p in saved.iterdir()} == before
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for p in _alive(workers):  # only if the test failed: never leave our own processes behind
            p.kill()


def test_a_second_writer_of_one_checkpoint_is_refused_while_the_first_holds_it(synth, quick_config, tmp_path):
    saved = tmp_path / "saved"
    snapshot, held_during_fit = saved / "snapshot.latest.pth", []

    def during_fit(record, trainer, valid_data):
        if record["epoch"] == 1:  # NAME.latest.pth of epoch 0 exists: keep a copy to resume from later
            shutil.copy(latest_file_of(trainer.saved_model_file), snapshot)
            with pytest.raises(PMMRecCheckpointError) as refused:
                CheckpointLock(trainer.saved_model_file).acquire()
            held_during_fit.append(str(refused.value))

    first = run_recbole_pmmrec("SASRec", synth.name, config_dict=quick_config(synth, epochs=3), epoch_callback=during_fit)
    name = first["checkpoint"]
    assert held_during_fit and f"pid {os.getpid()} on " in held_during_fit[0]  # the fit held NAME.lock
    assert not os.path.exists(lock_file_of(name))  # released (and removed) when the fit ended

    latest_mtime = os.stat(latest_file_of(name)).st_mtime_ns
    resume = quick_config(synth, epochs=3, resume_checkpoint=str(snapshot))
    with CheckpointLock(name):  # another run writes NAME.pth right now
        with pytest.raises(PMMRecCheckpointError) as refused:
            run_recbole_pmmrec("SASRec", synth.name, config_dict=resume)
    message = str(refused.value)
    assert f"checkpoint '{name}' is being written by another run (pid {os.getpid()} on " in message
    assert f"lock file '{lock_file_of(name)}'" in message and "--checkpoint_dir" in message
    assert os.stat(latest_file_of(name)).st_mtime_ns == latest_mtime  # the refused run wrote nothing

    resumed = run_recbole_pmmrec("SASRec", synth.name, config_dict=resume)  # the lock is free again
    assert resumed["checkpoint"] == name and os.stat(latest_file_of(name)).st_mtime_ns != latest_mtime
    assert not os.path.exists(lock_file_of(name))


def test_a_stale_lock_file_of_a_dead_run_does_not_block(tmp_path):
    checkpoint = str(tmp_path / "M.pth")
    Path(lock_file_of(checkpoint)).write_text("12345 on elsewhere\n")  # left by a run killed with SIGKILL
    with CheckpointLock(checkpoint):
        assert Path(lock_file_of(checkpoint)).read_text().startswith(f"{os.getpid()} on ")
    assert not os.path.exists(lock_file_of(checkpoint))


def test_a_run_leaves_no_thread_behind(synth, quick_config, tmp_path):
    """RecBole's trainer never closes its TensorBoard writer: its flush thread stayed alive for the life of the
    process and reopened the event file every 2 minutes (one more such thread per run of a loop). Also when a
    resumed run had nothing left to train."""
    before = set(threading.enumerate())
    config = quick_config(synth, checkpoint_dir=str(tmp_path / "saved"))
    for _ in range(2):
        run_recbole_pmmrec("SASRec", synth.name, config_dict=config)
    latest = sorted((tmp_path / "saved").glob("*.latest.pth"))[0]
    run_recbole_pmmrec("SASRec", synth.name, config_dict=dict(config, resume_checkpoint=str(latest)))
    left = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not left, left
