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


class _Features:
    """One modality's pooled states, as ItemFeatures gives them (row 0: padding, no content)."""

    modalities = ["text"]

    def __init__(self, states):
        self.states = states

    def pooled(self, modality):
        return self.states


class _KNN:
    ITEM_SEQ, ITEM_SEQ_LEN = "seq", "len"
    decay, history, exclude_history = 1.0, 1, True


def test_principal_space_scores_the_centred_cosine_to_the_last_item_and_removes_the_history():
    """With every direction kept the principal projection preserves angles, so with one history item the score of
    item i is cos(c_last - mean, c_i - mean) (c: the unit content vectors, mean over the items with content); the
    history's items are not ranked."""
    torch.manual_seed(0)
    states = torch.randn(7, 4, dtype=torch.float64)
    states[0] = 0.0
    model = pp.PrincipalKNN(_KNN(), _Features(states), dim=4)
    seq = torch.tensor([[2, 5, 0]])
    got = model.full_sort_predict({"seq": seq, "len": torch.tensor([2])})[0]
    unit = torch.nn.functional.normalize(states[1:], dim=-1)
    centred = unit - unit.mean(dim=0)
    want = torch.nn.functional.cosine_similarity(centred[4][None], centred, dim=-1)  # item 5 = row 4 of items 1..6
    assert torch.isinf(got[2]) and torch.isinf(got[5]) and got[2] < 0
    keep = [i for i in range(1, 7) if i not in (2, 5)]
    assert torch.allclose(got[keep].double(), want[[i - 1 for i in keep]], atol=1e-5)
    assert torch.isinf(got[0])  # the padding column (0 in the history's padded slot) is never ranked, as in ContentKNN
