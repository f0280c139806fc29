"""Defaults that follow the data: ``train_batch_size: ~`` gives a batch about BATCH_POSITIONS supervised targets.

The data is real: the ml-100k copy inside the RecBole wheel (long histories: 20 interactions and more per user),
and the same file cut to each user's first eight interactions (short histories, as on the Amazon sets).
"""

from __future__ import annotations

import logging

import pytest

from recbole_pmmrec.data.dataset import BATCH_POSITIONS
from recbole_pmmrec.errors import PMMRecConfigError
from recbole_pmmrec.quick_start import load_config
from recbole_pmmrec.utils import create_dataset, data_preparation


@pytest.fixture
def build(ml100k_config):
    """(config, train loader) of an ml-100k copy whose users keep their first ``keep`` items (None: all)."""
    def make(model: str, name: str, keep: int | None, **overrides):
        edit = None if keep is None else (lambda k, history: history[:keep])
        cfg = load_config(model, name, config_dict=ml100k_config(name, edit, modalities=["text"], **overrides))
        train, _, _ = data_preparation(cfg, create_dataset(cfg))
        return cfg, train

    return make


def _targets_per_window(train) -> float:
    return float(train.dataset.inter_feat[train.dataset.item_list_length_field].float().mean())


def test_batch_size_follows_the_history_length_and_says_so(build, caplog):
    with caplog.at_level(logging.INFO, logger="recbole_pmmrec.config"):
        long_cfg, long_train = build("PMMRec", "long", None)
        short_cfg, short_train = build("PMMRec", "short", 8)
    long_rows, short_rows = long_cfg["train_batch_size"], short_cfg["train_batch_size"]
    assert _targets_per_window(long_train) > 3 * _targets_per_window(short_train)
    assert (long_rows, short_rows) == (64, 256)  # full windows of 20 targets; windows of ~5
    for rows, train in ((long_rows, long_train), (short_rows, short_train)):
        # the loader uses it, and a batch holds within a factor sqrt(2) of the targets aimed at
        assert train.batch_size == rows and rows & (rows - 1) == 0
        assert BATCH_POSITIONS / 2 ** 0.5 <= rows * _targets_per_window(train) <= BATCH_POSITIONS * 2 ** 0.5
    said = [r.getMessage() for r in caplog.records if "train_batch_size=" in r.getMessage()]
    assert len(said) == 2 and all("targets" in s and "override" in s for s in said), said


def test_an_explicit_batch_size_wins_and_other_models_need_one(build):
    cfg, train = build("PMMRec", "given", 8, train_batch_size=32)
    assert cfg["train_batch_size"] == 32 and train.batch_size == 32
    with pytest.raises(PMMRecConfigError, match="train_batch_size.*SASRec.*integer"):
        build("SASRec", "sas", 8, train_batch_size=None)
