"""Shared fixtures: every test runs in its own temporary working directory, offline, with a clean argv."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import recbole_pmmrec  # noqa: E402,F401  (compatibility fixes before recbole is used)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """RecBole writes ./log, ./saved, ./log_tensorboard and reads sys.argv: keep both away from the repo."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pytest"])
    yield


@pytest.fixture
def synth(tmp_path):
    """A tiny synthetic multi-modal dataset (40 users, 60 items, images)."""
    from recbole_pmmrec.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path / "data", name="synth", n_users=40, n_items=60, seed=0)


@pytest.fixture
def quick_config(tmp_path):
    """``quick_config(data, **overrides)``: a config_dict for fast runs on a synthetic dataset
    (1 epoch, no progress bars, CPU, every output under tmp)."""

    def make(data, **overrides) -> dict:
        config = {
            "data_path": str(data.root),
            "epochs": 1,
            "show_progress": False,
            "use_gpu": False,
            "state": "WARNING",
            "train_batch_size": 64,
            "eval_batch_size": 64,
            "checkpoint_dir": str(tmp_path / "saved"),
            "log_dir": str(tmp_path / "logs"),
            "tensorboard_dir": str(tmp_path / "tb"),
            "MAX_ITEM_LIST_LENGTH": 10,
        }
        config.update(overrides)
        return config

    return make
