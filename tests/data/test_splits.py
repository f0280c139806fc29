"""Training-split variants: windows cover every training interaction once; few-shot; cold-start."""

from collections import Counter

import pytest
import torch

from recbole_pmmrec.data.splits import PluginSequentialDataset
from recbole_pmmrec.errors import PMMRecConfigError
from recbole_pmmrec.quick_start import load_config


def built(data, quick_config, **overrides):
    config = load_config("SASRec", data.name, config_dict=quick_config(data, **overrides))
    dataset = PluginSequentialDataset(config)
    return dataset, dataset.build()


def targets_per_user(feat, windowed):
    """Counter of (user, item) over every supervised target of the rows."""
    out = Counter()
    for user, history, length, target in zip(feat["user_id"].tolist(), feat["item_id_list"].tolist(),
                                             feat["item_length"].tolist(), feat["item_id"].tolist()):
        items = (history[1:length] if windowed else []) + [target]
        out.update((user, i) for i in items)
    return out


def test_windows_supervise_every_training_interaction_exactly_once(tmp_path, quick_config):
    from recbole_pmmrec.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path, "long", n_users=20, n_items=50, min_len=5, max_len=35, seed=4)
    _, (prefix_train, valid, test) = built(data, quick_config, MAX_ITEM_LIST_LENGTH=8)
    _, (window_train, valid_w, test_w) = built(data, quick_config, MAX_ITEM_LIST_LENGTH=8, train_window=True)
    assert targets_per_user(window_train.inter_feat, True) == targets_per_user(prefix_train.inter_feat, False)
    assert len(window_train.inter_feat) < len(prefix_train.inter_feat) / 4
    assert torch.equal(valid.inter_feat["item_id"], valid_w.inter_feat["item_id"])
    assert torch.equal(test.inter_feat["item_id_list"], test_w.inter_feat["item_id_list"])


def best_context(feat):
    """{(user, item): the longest history any window gives that target} (windowed rows)."""
    out = {}
    for user, history, length, target in zip(feat["user_id"].tolist(), feat["item_id_list"].tolist(),
                                             feat["item_length"].tolist(), feat["item_id"].tolist()):
        for context, item in enumerate(history[1:length] + [target], start=1):
            out[(user, item)] = max(out.get((user, item), 0), context)
    return out


def test_overlapping_windows_cover_every_target_with_more_context_and_count_it_once(tmp_path, quick_config):
    from recbole_pmmrec.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path, "long", n_users=20, n_items=50, min_len=5, max_len=35, seed=4)
    prefix, _ = built(data, quick_config, MAX_ITEM_LIST_LENGTH=8)
    base, (chunks, *_) = built(data, quick_config, MAX_ITEM_LIST_LENGTH=8, train_window=True, train_window_stride=8)
    over, (windows, *_) = built(data, quick_config, MAX_ITEM_LIST_LENGTH=8, train_window=True, train_window_stride=3)
    assert set(targets_per_user(windows.inter_feat, True)) == set(targets_per_user(chunks.inter_feat, True))
    assert 2 * len(chunks.inter_feat) < len(windows.inter_feat) <= 3 * len(chunks.inter_feat)
    best, before = best_context(windows.inter_feat), best_context(chunks.inter_feat)
    # chunks give a target 1..L items of context; windows every S targets give it >= L - S + 1 (after a user's
    # first items)
    assert sum(best.values()) / len(best) > sum(before.values()) / len(before) + 1
    assert sum(c >= 6 for c in best.values()) > sum(c >= 6 for c in before.values())
    for windowed in (base, over):  # each training interaction counted once, as from RecBole's prefix rows
        assert torch.equal(windowed.train_item_counts, prefix.train_item_counts)
    with pytest.raises(PMMRecConfigError, match="train_window_stride=0"):
        built(data, quick_config, MAX_ITEM_LIST_LENGTH=8, train_window=True, train_window_stride=0)


def test_a_stride_above_the_history_length_means_windows_that_do_not_overlap(tmp_path, quick_config, caplog):
    """The default stride (5) with a shorter MAX_ITEM_LIST_LENGTH: read as L, logged, not an error."""
    from recbole_pmmrec.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path, "long", n_users=20, n_items=50, min_len=5, max_len=35, seed=4)
    _, (chunks, *_) = built(data, quick_config, MAX_ITEM_LIST_LENGTH=4, train_window=True, train_window_stride=4)
    with caplog.at_level("WARNING"):
        _, (clamped, *_) = built(data, quick_config, MAX_ITEM_LIST_LENGTH=4, train_window=True, train_window_stride=9)
    assert torch.equal(clamped.inter_feat["item_id"], chunks.inter_feat["item_id"])
    assert "train_window_stride=9 is above MAX_ITEM_LIST_LENGTH=4" in caplog.text


def test_few_shot_keeps_a_fraction_of_training_users_and_all_eval_users(synth, quick_config):
    _, (full, valid, test) = built(synth, quick_config)
    _, (few, valid_f, test_f) = built(synth, quick_config, few_shot_ratio=0.25)
    users = set(full.inter_feat["user_id"].tolist())
    kept = set(few.inter_feat["user_id"].tolist())
    assert kept < users and len(kept) == round(0.25 * len(users))
    assert torch.equal(valid.inter_feat["user_id"], valid_f.inter_feat["user_id"])
    assert torch.equal(test.inter_feat["item_id"], test_f.inter_feat["item_id"])
    # every training row of a kept user stays
    assert len(few.inter_feat) == sum(u in kept for u in full.inter_feat["user_id"].tolist())


def test_cold_items_leave_training_but_stay_candidates(synth, quick_config):
    for window in (False, True):
        dataset, (train, valid, test) = built(synth, quick_config, cold_item_ratio=0.2, train_window=window)
        cold = dataset.cold_items
        assert int(cold.sum()) == round(0.2 * (dataset.item_num - 1)) and not cold[0]
        feat = train.inter_feat
        seen = torch.cat([feat["item_id"], feat["item_id_list"][feat["item_id_list"] > 0]])
        assert not cold[seen].any()
        assert train.item_num == dataset.item_num  # still ranking candidates
        assert cold[test.inter_feat["item_id"]].any(), "some test targets are cold"
        assert (train.inter_feat["item_length"] >= 1).all()


def test_split_seed_makes_baselines_and_pmmrec_hold_out_the_same_items(synth, quick_config):
    a, _ = built(synth, quick_config, cold_item_ratio=0.2)
    b, _ = built(synth, quick_config, cold_item_ratio=0.2, train_window=True)
    assert torch.equal(a.cold_items, b.cold_items)
