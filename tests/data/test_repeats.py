"""Defaults that follow the data: ``exclude_history: ~`` decided from how often users repeat items.

The data with repeats is real: the ml-100k copy inside the RecBole wheel (no user rates a movie twice) with the
last seven items of 300 users' histories repeated in order at later times, as re-purchases or replays would be
(their validation and test targets are then items of their own history).
"""

from __future__ import annotations

import logging


from recbole_pmmrec.data.dataset import repeat_shares
from recbole_pmmrec.quick_start import load_config, run_recbole_pmmrec
from recbole_pmmrec.utils import create_dataset, data_preparation


def repeat_last_seven(users: int):
    """An edit (tests/data/conftest.py): the first ``users`` users get their last seven items again, a day apart."""
    def edit(k: int, history: list) -> list:
        if k >= users:
            return history
        last = float(history[-1][3])
        return history + [[r[0], r[1], r[2], str(int(last) + 86400 * (j + 1))] for j, r in enumerate(history[-7:])]

    return edit


def _decided(model: str, name: str, config: dict, caplog) -> tuple[bool, float]:
    with caplog.at_level(logging.INFO, logger="recbole_pmmrec.config"):
        cfg = load_config(model, name, config_dict=config)
        dataset = create_dataset(cfg)
        data_preparation(cfg, dataset)
    return cfg["exclude_history"], dataset.repeat_share()


def test_exclude_history_follows_the_data_and_says_so(ml100k_config, caplog):
    keep, share = _decided("ContentKNN", "plain", ml100k_config("plain"), caplog)
    assert share == 0.0 and keep is True  # nobody repeats: history items leave the ranking
    caplog.clear()
    keep, share = _decided("ContentKNN", "repeats", ml100k_config("repeats", repeat_last_seven(300)), caplog)
    assert 0.01 <= share < 0.05 and keep is False, share  # 300 users repeat: every item stays rankable
    said = [r.getMessage() for r in caplog.records if "exclude_history=False" in r.getMessage()]
    assert said and "repeat an item the user already had" in said[0] and "override" in said[0]
    keep, _ = _decided("ContentKNN", "repeats2", ml100k_config("repeats2", repeat_last_seven(300), exclude_history=True), caplog)
    assert keep is True  # an explicit value wins


def test_removing_history_items_costs_the_repeated_targets(ml100k_config):
    """The effect: on the data with repeats, the test target of each repeating user is an item of their history.
    With exclude_history True it cannot be ranked; decided from the data, it is, and the metrics say so."""
    forced = run_recbole_pmmrec("ContentKNN", "rep", config_dict=ml100k_config("rep", repeat_last_seven(300), exclude_history=True))
    decided = run_recbole_pmmrec("ContentKNN", "rep2", config_dict=ml100k_config("rep2", repeat_last_seven(300)))
    assert decided["config"]["exclude_history"] is False
    assert decided["test_result"]["recall@10"] > forced["test_result"]["recall@10"]
    assert decided["test_result"]["ndcg@10"] > forced["test_result"]["ndcg@10"]


def test_repeat_shares_counts_each_part_by_hand():
    """Rows in time order per user, users interleaved. u1: a b a c b -> targets b a c (train: a repeats), then
    valid c (no), test b (repeats); u2: x x -> only a test target, a repeat; u3: one row, no target."""
    users = ["u1", "u2", "u1", "u1", "u2", "u3", "u1", "u1"]
    items = ["a", "x", "b", "a", "x", "z", "c", "b"]
    shares = repeat_shares(users, items)
    assert shares == {"train": 1 / 2, "valid": 0.0, "test": 1.0}
    assert repeat_shares([], []) == {"train": 0.0, "valid": 0.0, "test": 0.0}
