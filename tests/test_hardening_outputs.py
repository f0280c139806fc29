"""Output paths fail early and clearly: every output folder is probed before any work, and a write that fails
(a full disk) removes its temporary file and names the file, with advice."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from recbole_pmmrec import preflight, quick_start
from recbole_pmmrec.cli import main
from recbole_pmmrec.errors import PMMRecCheckpointError, PMMRecConfigError
from recbole_pmmrec.quick_start import run_recbole_pmmrec
from recbole_pmmrec.trainer import atomic_save


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the run reads its data set: the pre-flight check must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("the run started working before its output folders were checked")

    monkeypatch.setattr(quick_start, "check_atomic_files", refuse)
    monkeypatch.setattr(quick_start, "create_dataset", refuse)


@pytest.mark.parametrize("key", ["checkpoint_dir", "log_dir", "tensorboard_dir"])
def test_an_output_folder_that_is_a_file_fails_before_any_work_on_the_command_line(key, synth, tmp_path, no_work,
                                                                                    capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    folders = {"checkpoint_dir": tmp_path / "saved", "log_dir": tmp_path / "logs", "tensorboard_dir": tmp_path / "tb",
               key: blocker / "sub"}
    argv = ["--model=SASRec", f"--dataset={synth.name}", f"--data_path={synth.root}", "--use_gpu=False",
            "--state=WARNING", *(f"--{k}={v}" for k, v in folders.items())]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"{key}: '{blocker / 'sub'}' cannot be a folder because '{blocker}' is a file" in err
    assert f"give {key} a folder path" in err


def test_cache_dir_and_save_pretrained_are_checked_too(synth, pmmrec_config, tmp_path, no_work):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(PMMRecConfigError, match=r"^cache_dir: '.*a_file' cannot be a folder"):
        run_recbole_pmmrec("PMMRec", synth.name, config_dict=pmmrec_config(synth, cache_dir=str(blocker)))
    with pytest.raises(PMMRecConfigError, match=r"^save_pretrained: '.*a_file/out' cannot be a folder"):
        run_recbole_pmmrec("PMMRec", synth.name, config_dict=pmmrec_config(synth, save_pretrained=str(blocker / "out")))


def test_a_folder_that_cannot_be_created_or_written_is_named_with_advice(tmp_path, monkeypatch):
    def refuse_mkdir(path, mode=0o777):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(os, "mkdir", refuse_mkdir)
    with pytest.raises(PMMRecConfigError, match=r"log_dir: cannot create the folder '.*new/logs' \(Permission denied\); "
                                                r"give log_dir a folder you can write to"):
        preflight.check_output_dir("log_dir", tmp_path / "new" / "logs")
    monkeypatch.undo()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(preflight.os, "fsync", full_disk)
    with pytest.raises(PMMRecConfigError, match=r"checkpoint_dir: cannot write into '.*saved' \(the disk is full "
                                                r"\(.* MiB free\): free space on it or point checkpoint_dir at another"):
        preflight.check_output_dir("checkpoint_dir", tmp_path / "saved")
    assert os.listdir(tmp_path / "saved") == []  # the probe file is gone


def test_a_full_disk_while_saving_a_checkpoint_leaves_no_temporary_file(synth, quick_config, tmp_path, monkeypatch,
                                                                        capsys):
    """Before: torch's "basic_ios::clear" after an epoch, and a 3 MB NAME.pth.tmp-PID left behind."""
    real_save = torch.save

    def save_until_the_disk_is_full(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:  # what torch wrote before the disk filled up
            fh.write(b"\0" * (3 << 20))
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 3145728 vs 3145600; "
                           "basic_ios::clear: iostream error")

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    saved = tmp_path / "saved"
    with pytest.raises(PMMRecCheckpointError, match=r"cannot write the checkpoint '.*saved/SASRec-.*\.pth': the disk "
                                                    r"is full \(.* free in '.*saved'\); free space there"):
        run_recbole_pmmrec("SASRec", synth.name, config_dict=quick_config(synth, checkpoint_dir=str(saved)))
    assert not [name for name in os.listdir(saved) if ".tmp-" in name]
    assert not [name for name in os.listdir(saved) if name.endswith(".pth")]  # nor a half-written checkpoint

    def save_enospc(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_enospc)
    with pytest.raises(PMMRecCheckpointError, match=r"x\.latest\.pth': the disk is full"):
        atomic_save({"a": 1}, str(saved / "x.latest.pth"))
    monkeypatch.setattr(torch, "save", real_save)
    assert os.listdir(saved) == []  # the lock file went with the failed run


def test_a_full_disk_while_writing_the_run_provenance_names_the_file(tmp_path, monkeypatch):
    from pathlib import Path

    from recbole_pmmrec.errors import PMMRecError
    from recbole_pmmrec.provenance import log_provenance

    real_write_text = Path.write_text

    def write_then_fail(self, data, *args, **kwargs):
        real_write_text(self, data[:10], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", write_then_fail)
    with pytest.raises(PMMRecError, match=r"cannot write the run provenance '.*run\.provenance\.json': the disk is full"):
        log_provenance({"a": 1}, str(tmp_path / "run.log"))
    assert list(tmp_path.iterdir()) == []
