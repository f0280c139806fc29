"""bench/studies/popularity_prior.py: NDCG@10 of full-sort scores plus a weighted popularity prior."""

import math

import pytest
import torch

from bench.studies import popularity_prior as pp


class _Fixed:
    """A stand-in model whose full-sort scores are given rows (item 0 is padding)."""

    def __init__(self, scores):
        self.scores = torch.tensor(scores)

    def full_sort_predict(self, interaction):
        return self.scores[interaction].clone()


def test_the_prior_moves_a_target_into_the_top_10_only_when_weighted_enough():
    """Two users over 11 items (0 is padding): user 0's target ranks first by content whatever the weight; user 1's
    target is below ten others until the prior, which favours it alone, lifts it past them."""
    content = [[0.0, 1.0] + [0.5] * 9 + [0.0],  # user 0: target item 1 on top
               [0.0] + [0.9] * 10 + [0.1]]  # user 1: target item 11 below ten items at 0.9
    prior = torch.zeros(12)
    prior[11] = 1.0
    loader = [(torch.tensor([0, 1]), None, torch.tensor([0, 1]), torch.tensor([1, 11]))]
    got = pp.ndcg_at_10(_Fixed(content), loader, prior, (0.0, 0.5, 0.85))
    assert got[0.0] == pytest.approx(0.5)  # user 0 at rank 1 (gain 1), user 1 at rank 11 (outside the top 10)
    assert got[0.5] == pytest.approx(0.5)  # user 1's target at 0.6: still below ten items
    assert got[0.85] == pytest.approx(1.0)  # 0.95: first; user 0's item 11 rises to 0.85, still below its target


def test_a_target_at_the_tenth_place_counts_and_the_padding_never_does():
    """Rank 10 (nine items above) gives 1 / log2(11); a padding column scored high is ignored."""
    content = [[9.0] + [0.9] * 9 + [0.5] + [0.1]]
    loader = [(torch.tensor([0]), None, torch.tensor([0]), torch.tensor([10]))]
    got = pp.ndcg_at_10(_Fixed(content), loader, torch.zeros(12), (0.0,))
    assert got[0.0] == pytest.approx(round(1.0 / math.log2(11), 4))
