"""Resume after a crash: a training process killed with SIGKILL continues from its ``*.latest.pth`` to the
same result as an uninterrupted run (same seed). Dropout, NID's corruption and the shuffled data order
all draw random numbers, so the equality holds only if every random state is restored."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from recbole_pmmrec.cli import main
from recbole_pmmrec.compat import load_own_checkpoint
from recbole_pmmrec.errors import PMMRecCheckpointError
from recbole_pmmrec.quick_start import run_recbole_pmmrec
from recbole_pmmrec.trainer import latest_file_of


ROOT = Path(__file__).resolve().parent.parent


def _weights(path, folder) -> dict:
    return load_own_checkpoint(path, folder)["state_dict"]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def _kill_after_first_latest(argv: list[str], checkpoint_dir: Path, cwd: Path, timeout: float = 240.0) -> Path:
    """Start the CLI in a subprocess, SIGKILL it as soon as a latest checkpoint exists; return that file."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "recbole_pmmrec.cli", *argv], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            found = glob.glob(str(checkpoint_dir / "*.latest.pth"))
            if found:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read().decode(errors="replace")[-3000:]
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-training (rc {proc.returncode}): {stderr}"
    return Path(found[0])


def test_sigkilled_run_resumes_to_the_same_result_as_an_uninterrupted_run(synth, pmmrec_config, tmp_path):
    config = pmmrec_config(synth, epochs=4, stopping_step=10, hidden_dropout_prob=0.2, fusion_dropout=0.2,
                           w_nid=0.5, w_rcl=0.5)
    reference = run_recbole_pmmrec("PMMRec", synth.name, config_dict=dict(config, checkpoint_dir=str(tmp_path / "ref")))

    killed_dir = tmp_path / "killed"
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(dict(config, checkpoint_dir=str(killed_dir))))
    argv = ["--model=PMMRec", f"--dataset={synth.name}", f"--config_files={config_file}"]
    latest = _kill_after_first_latest(argv, killed_dir, tmp_path)
    saved = torch.load(latest, weights_only=False)
    assert saved["kind"] == "latest" and not saved["finished"] and saved["epoch"] < 3

    resumed = main([*argv, f"--resume={latest}"])
    assert resumed["test_result"] == reference["test_result"]
    assert resumed["best_valid_result"] == reference["best_valid_result"]
    assert resumed["checkpoint"] == str(killed_dir / saved["best_model_file"])  # the best file stays the run's own
    _assert_same_weights(_weights(resumed["checkpoint"], killed_dir), _weights(reference["checkpoint"], tmp_path / "ref"))
    final = torch.load(latest, weights_only=False)  # the continued run went on writing the same latest file
    assert final["finished"] and final["epoch"] == 3
    ref_final = torch.load(glob.glob(str(tmp_path / "ref" / "*.latest.pth"))[0], weights_only=False)
    _assert_same_weights(final["state_dict"], ref_final["state_dict"])

    # A run that had finished resumes to its evaluation only: no training step, same test result.
    again = main([*argv, f"--resume={latest}"])
    assert again["test_result"] == reference["test_result"]
    _assert_same_weights(torch.load(latest, weights_only=False)["state_dict"], final["state_dict"])


def test_resume_refuses_files_outside_checkpoint_dir_and_broken_files(synth, quick_config, tmp_path):
    base = quick_config(synth, epochs=2)
    run = run_recbole_pmmrec("SASRec", synth.name, config_dict=base)
    latest = Path(latest_file_of(run["checkpoint"]))
    assert latest.is_file()

    elsewhere = tmp_path / "elsewhere.latest.pth"
    elsewhere.write_bytes(latest.read_bytes())
    truncated = Path(base["checkpoint_dir"]) / "truncated.latest.pth"
    truncated.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    for path, message in ((elsewhere, "not inside checkpoint_dir"), (truncated, "truncated or corrupt"),
                          (tmp_path / "saved" / "missing.pth", "does not exist")):
        with pytest.raises(PMMRecCheckpointError, match=message):
            run_recbole_pmmrec("SASRec", synth.name, config_dict=dict(base, resume_checkpoint=str(path)))
    assert f"--checkpoint_dir={tmp_path}" in _error_of(lambda: run_recbole_pmmrec(
        "SASRec", synth.name, config_dict=dict(base, resume_checkpoint=str(elsewhere))))


def _error_of(call) -> str:
    try:
        call()
    except PMMRecCheckpointError as exc:
        return str(exc)
    raise AssertionError("no PMMRecCheckpointError")
