"""Shared fixtures: every test runs in its own temporary working directory, offline, with a clean argv."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

import recbole_pmmrec  # noqa: E402,F401  (compatibility fixes before recbole is used)

# Tests use tiny models: one thread is faster than two fighting over a busy 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """RecBole writes ./log, ./saved, ./log_tensorboard and reads sys.argv: keep both away from the repo."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pytest"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # child processes (resume, 2-process tests) run single-threaded too
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


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A random-initialised 2-layer BERT (hidden 32) with a WordPiece tokenizer, saved as a local folder."""
    from transformers import AutoTokenizer

    from recbole_pmmrec.synthetic import make_tiny_text_encoder

    folder = make_tiny_text_encoder(tmp_path_factory.mktemp("tiny_bert"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.unk_token_id not in tokenizer("space cooking item")["input_ids"]
    return folder


@pytest.fixture
def pmmrec_config(quick_config, tiny_bert_dir, tmp_path):
    """``pmmrec_config(data, **overrides)``: a fast PMMRec config with tiny random encoders."""

    def make(data, **overrides) -> dict:
        config = quick_config(data, text_encoder=str(tiny_bert_dir), text_max_length=12,
                              image_encoder="timm:efficientnet_lite0", image_size=32, image_grid=2,
                              hidden_size=32, inner_size=64, fusion_heads=2, train_batch_size=16,
                              cache_dir=str(tmp_path / "cache"), text_fields=["title", "description"])
        config.update(overrides)
        return config

    return make
