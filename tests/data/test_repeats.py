"""Defaults that follow the data: ``exclude_history: ~`` decided from how often users repeat items.

The data with repeats is real: the ml-100k copy inside the RecBole wheel (no user rates a movie twice) with the
last seven items of 300 users' histories repeated in order at later times, as re-purchases or replays would be
(their validation and test targets are then items of their own history).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import recbole

from recbole_pmmrec.quick_start import load_config, run_recbole_pmmrec
from recbole_pmmrec.utils import create_dataset, data_preparation

ML100K = Path(recbole.__file__).parent / "dataset_example" / "ml-100k"


def _ml100k_copy(root: Path, name: str, repeat_users: int) -> Path:
    """ml-100k as ``name``; the first ``repeat_users`` users get their last seven items again, a day apart."""
    folder = root / name
    folder.mkdir(parents=True)
    shutil.copy(ML100K / "ml-100k.item", folder / f"{name}.item")
    lines = (ML100K / "ml-100k.inter").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], [line.split("\t") for line in lines[1:]]
    by_user: dict[str, list] = {}
    for row in rows:
        by_user.setdefault(row[0], []).append(row)
    extra = []
    for user in sorted(by_user, key=int)[:repeat_users]:
        history = sorted(by_user[user], key=lambda r: float(r[3]))
        last = float(history[-1][3])
        for k, row in enumerate(history[-7:]):
            extra.append([row[0], row[1], row[2], str(int(last) + 86400 * (k + 1))])
    (folder / f"{name}.inter").write_text("\n".join([header] + ["\t".join(r) for r in rows + extra]) + "\n",
                                          encoding="utf-8")
    return root


@pytest.fixture
def ml100k_config(tmp_path, tiny_bert_dir, quick_config):
    def make(name: str, repeat_users: int, **overrides) -> dict:
        root = _ml100k_copy(tmp_path / "data", name, repeat_users)
        config = dict(data_path=str(root), epochs=0, show_progress=False, use_gpu=False, state="INFO",
                      eval_batch_size=512, checkpoint_dir=str(tmp_path / "saved"), log_dir=str(tmp_path / "logs"),
                      tensorboard_dir=str(tmp_path / "tb"), cache_dir=str(tmp_path / "cache"),
                      text_encoder=str(tiny_bert_dir), text_max_length=12, text_fields=["movie_title", "class"],
                      load_col={"inter": ["user_id", "item_id", "rating", "timestamp"],
                                "item": ["item_id", "movie_title", "release_year", "class"]},
                      MAX_ITEM_LIST_LENGTH=20)
        config.update(overrides)
        return config

    return make


def _decided(model: str, name: str, config: dict, caplog) -> tuple[bool, float]:
    with caplog.at_level(logging.INFO, logger="recbole_pmmrec.config"):
        cfg = load_config(model, name, config_dict=config)
        dataset = create_dataset(cfg)
        data_preparation(cfg, dataset)
    return cfg["exclude_history"], dataset.repeat_share()


def test_exclude_history_follows_the_data_and_says_so(ml100k_config, caplog):
    keep, share = _decided("ContentKNN", "plain", ml100k_config("plain", 0), caplog)
    assert share == 0.0 and keep is True  # nobody repeats: history items leave the ranking
    caplog.clear()
    keep, share = _decided("ContentKNN", "repeats", ml100k_config("repeats", 300), caplog)
    assert 0.01 <= share < 0.05 and keep is False, share  # 300 users repeat: every item stays rankable
    said = [r.getMessage() for r in caplog.records if "exclude_history=False" in r.getMessage()]
    assert said and "repeat an item the user already had" in said[0] and "override" in said[0]
    keep, _ = _decided("ContentKNN", "repeats2", ml100k_config("repeats2", 300, exclude_history=True), caplog)
    assert keep is True  # an explicit value wins


def test_removing_history_items_costs_the_repeated_targets(ml100k_config):
    """The effect: on the data with repeats, the test target of each repeating user is an item of their history.
    With exclude_history True it cannot be ranked; decided from the data, it is, and the metrics say so."""
    forced = run_recbole_pmmrec("ContentKNN", "rep", config_dict=ml100k_config("rep", 300, exclude_history=True))
    decided = run_recbole_pmmrec("ContentKNN", "rep2", config_dict=ml100k_config("rep2", 300))
    assert decided["config"]["exclude_history"] is False
    assert decided["test_result"]["recall@10"] > forced["test_result"]["recall@10"]
    assert decided["test_result"]["ndcg@10"] > forced["test_result"]["ndcg@10"]
