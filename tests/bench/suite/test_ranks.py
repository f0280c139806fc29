"""bench/suite/ranks.py: target ranks and metrics against direct references, on scores made up here.

The fake trainers stand in for a trainer's full-ranking scores only (``_full_sort_batch_eval``), so that each rank
is known by hand; the worker itself is tested against the real entry point in test_worker.py."""

import math

import pytest
import torch

from bench.suite import ranks as rk


def test_rank_metrics_and_tie_breaking():
    m = rk.rank_metrics(torch.tensor([0, 1, 9, 10]))
    assert m["recall@10"] == pytest.approx(0.75)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 4)

    class FakeTrainer:
        model = torch.nn.Linear(1, 1)

        def _full_sort_batch_eval(self, batch):
            scores = torch.tensor([[-math.inf, 0.5, 0.5, 0.9, 0.1], [-math.inf, 0.2, 0.2, 0.2, 0.3]])
            return None, scores, torch.tensor([0, 1]), torch.tensor([2, 3])

    ranks, targets, mean_score = rk.target_ranks(FakeTrainer(), [None])
    # row 0: item 3 scores higher, item 1 ties with a lower id -> rank 2; row 1: item 4 higher, items 1, 2 tie
    assert ranks.tolist() == [2, 3] and targets.tolist() == [2, 3]

    class FakeDataset:  # item 2 is cold; popularity (all interactions): items 1..4 have 1, 12, 60, 200
        iid_field = "item_id"
        inter_feat = {"item_id": torch.tensor([1] + [2] * 12 + [3] * 60 + [4] * 200)}

    cold_items = torch.tensor([False, False, True, False, False])
    d = rk.cold_diagnosis(ranks, targets, mean_score, cold_items, FakeDataset())
    assert d["median_rank"] == {"cold": 2.0, "warm": 3.0}
    assert d["target_popularity_median"] == {"cold": 12.0, "warm": 60.0}
    by_lo = {b["lo"]: b for b in d["buckets"]}
    assert by_lo[10]["n_cold"] == 1 and by_lo[10]["score_cold"] == pytest.approx(0.35)  # mean of 0.5, 0.2
    assert by_lo[150]["score_warm"] == pytest.approx(0.2) and by_lo[150]["score_cold"] is None
    assert by_lo[1]["score_warm"] == pytest.approx(0.35)  # item 1 (history-masked nowhere here)


def test_among_new_items_ranks_cold_targets_against_new_items_only():
    """The cold-start diagnostic ``among_new_items``: a cold target's rank among the items without a training
    interaction (trained items are not ranked), over the rows whose target is cold."""
    scores = torch.tensor([[-math.inf, 0.5, 0.5, 0.9, 0.1, 0.7],
                           [-math.inf, 0.2, 0.2, 0.2, 0.3, 0.1],
                           [-math.inf, 0.9, 0.1, 0.8, 0.6, 0.7]])

    class FakeTrainer:
        model = torch.nn.Linear(1, 1)

        def _full_sort_batch_eval(self, batch):
            return None, scores, torch.tensor([0, 1, 2]), torch.tensor([2, 2, 5])

    class FakeDataset:  # items 2, 4, 5 have no training interaction; 2 and 5 are the cold items
        train_item_counts = torch.tensor([0, 3, 0, 5, 0, 0])
        cold_items = torch.tensor([False, False, True, False, False, True])

    new = torch.tensor([False, False, True, False, True, True])
    ranks, targets, _, subset = rk.target_ranks(FakeTrainer(), [None], among=new)
    # row 0: of items 2, 4, 5 only item 5 (0.7) beats item 2 (0.5); row 1: item 4 (0.3) does; row 2: item 5 is
    # first among new items although trained items 1 and 3 score higher
    assert subset.tolist() == [1, 1, 0] and targets.tolist() == [2, 2, 5]
    assert ranks.tolist() == [3, 2, 2]  # the ranks among all items come from the same pass
    d = rk.among_new_items(subset, targets, FakeDataset.cold_items,
                               rk.new_item_mask(FakeDataset.train_item_counts))
    assert d == {"n_new_items": 3, "n_rows": 3, "median_rank": 1.0, "recall@10": 1.0}
    assert FakeDataset.train_item_counts[0] == 0  # the mask is a copy: padding is not changed in the data set


def test_shifted_ranks_equal_ranking_the_shifted_scores():
    """``shifted_ranks`` (sorted once, a binary search per shift) gives ``rank_of_target`` of the shifted scores,
    ties by item id included: integer scores make exact ties within and across the two groups."""
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(-6, 7, (200, 40), generator=g).double()
    rows[:, 0] = -math.inf  # padding
    rows[torch.rand(200, 40, generator=g) < 0.1] = -math.inf  # history items
    pos_i = torch.randint(1, 40, (200,), generator=g)
    new = torch.rand(40, generator=g) < 0.3
    new[0] = False
    shifts = [-3.0, -1.0, 0.0, 0.5, 2.0, 7.0]
    expected = torch.stack([rk.rank_of_target(rows + new.double()[None, :] * d, pos_i) for d in shifts])
    assert torch.equal(rk.shifted_ranks(rows, pos_i, new, shifts), expected)


def test_new_item_offset_is_chosen_on_validation_and_applied_to_test():
    """The cold-start diagnostic ``new_item_offset``: an offset added to the items without a training interaction,
    in units of the score scale (median of the 10th-highest score minus the median score), chosen on the
    validation rows by NDCG@10 and applied to the test rows."""
    scores = torch.cat([torch.tensor([-math.inf]), torch.arange(1, 31, dtype=torch.float)])[None].repeat(2, 1)

    class FakeTrainer:  # items 1..30 score 1..30 in both rows; targets: item 15 (new) and item 30
        model = torch.nn.Linear(1, 1)

        def _full_sort_batch_eval(self, batch):
            return None, scores, torch.tensor([0, 1]), torch.tensor([15, 30])

    new = torch.zeros(31, dtype=torch.bool)
    new[15] = True
    ranks, targets, scale = rk.offset_ranks(FakeTrainer(), [None], new, (0.0, 1.0, 2.5, 2.6))
    assert scale == pytest.approx(21 - 15)  # 10th-highest 21, median 15
    # the new target climbs past 15, then 9 items; at 2.5 it ties with item 30 and, the lower id, goes first
    # (ties by item id, as everywhere in the worker), which also puts it above the other row's target
    assert ranks.tolist() == [[15, 0], [9, 0], [0, 1], [0, 1]] and targets.tolist() == [15, 30]

    class FakeDataset:
        train_item_counts = (~new).long()
        cold_items = new

    d = rk.new_item_offset(FakeTrainer(), [None], [None], FakeDataset())
    # no offset puts both targets first: from 2.5 on item 15 also displaces item 30. The best, second in one row
    # and first in the other, starts at 2.4 (15 + 14.4 passes item 29), the smallest such step
    assert d["step"] == 2.4 and d["offset"] == pytest.approx(14.4) and d["n_new_items"] == 1
    half = (1 + 1 / math.log2(3)) / 2
    assert d["valid_ndcg@10"] == {"zero": pytest.approx(0.5), "chosen": pytest.approx(half)}
    assert d["test"]["cold"]["recall@10"] == 1.0 and d["test"]["cold"]["mrr@10"] == 0.5
    assert d["test"]["warm"]["mrr@10"] == 1.0
