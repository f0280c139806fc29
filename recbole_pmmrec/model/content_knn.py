"""ContentKNN: a training-free floor. Items are their frozen-encoder content vectors; a user is the
recency-weighted mean of their last items' vectors; the score is the cosine between the two.

```
item i:  text states (cache) --masked mean--> t_i / |t_i|     image states (cache) --mean--> v_i / |v_i|
         c_i = concat(t_i, v_i) / sqrt(#modalities the model uses)           (a unit vector, or 0 without content)
user u:  history i_1 .. i_n -> q_u = sum_j decay^(n-j) c_{i_j} over the last knn_history items
score(u, i) = c_i . q_u / |q_u|                                              (the cosine: c_i is a unit vector)
```

``knn_whiten: zca`` [ours] first decorrelates t_i and v_i with the statistics of the catalogue's items (the shrunk
ZCA of PMMRec's ``whiten``, each modality on its own) and sets each to length 1 again; ``raw`` (the default) is the
floor as above.

The vectors and weights are :mod:`recbole_pmmrec.model.similarity`'s (PMMRec's ``content_skip`` uses them too).
It reads the same :class:`~recbole_pmmrec.data.features.ItemFeatures` and encoder-state cache as PMMRec
(``properties/content.yaml``), has no trainable weight and needs no epoch (``epochs: 0`` in its yaml: the
runner evaluates it as built). It is the anchor for zero-shot and cold start: any model that learns from the
interactions should beat it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import Tensor, nn

from recbole_pmmrec.data.dataset import resolve_exclude_history
from recbole_pmmrec.model.similarity import content_vectors, recency_weights
from recbole_pmmrec.settings import settings_of


class ContentKNN(SequentialRecommender):
    """Cosine between frozen content vectors and the recency-weighted recent history (see the module docstring)."""

    input_type = InputType.POINTWISE
    uses_item_content = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        s = settings_of(config)
        self.decay, self.history = s.knn_decay, s.knn_history
        self.exclude_history = resolve_exclude_history(config, dataset)
        # (n_items, D): unit rows (0 for no content and the padding row); knn_whiten [ours]: each modality whitened
        # with the statistics of the catalogue's items that have it
        vectors = content_vectors(dataset.item_features, s.knn_whiten, padding=True)
        self.register_buffer("item_vecs", vectors, persistent=False)
        # RecBole's trainer builds an optimiser: one weight that nothing reads
        self.unused = nn.Parameter(torch.zeros(1))

    def user_vectors(self, item_seq: Tensor, item_seq_len: Tensor) -> Tensor:
        """(B, L) left-aligned histories -> (B, D) recency-weighted sums of their last ``knn_history`` items."""
        weights = recency_weights(item_seq, item_seq_len, self.decay, self.history).to(self.item_vecs.dtype)
        return (weights[..., None] * self.item_vecs[item_seq]).sum(dim=1)

    def forward(self, item_seq: Tensor, item_seq_len: Tensor) -> Tensor:
        return F.normalize(self.user_vectors(item_seq, item_seq_len), dim=-1)

    def calculate_loss(self, interaction):
        return self.unused.sum() * 0.0  # nothing to learn

    def predict(self, interaction):
        item_seq, items = interaction[self.ITEM_SEQ], interaction[self.ITEM_ID]
        scores = (self.forward(item_seq, interaction[self.ITEM_SEQ_LEN]) * self.item_vecs[items]).sum(dim=-1)
        if self.exclude_history:
            seen = ((item_seq == items[:, None]) & (item_seq > 0)).any(dim=1)
            scores = scores.masked_fill(seen, float("-inf"))
        return scores

    def full_sort_predict(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        scores = self.forward(item_seq, interaction[self.ITEM_SEQ_LEN]) @ self.item_vecs.t()
        if self.exclude_history:
            scores = scores.scatter(1, item_seq, float("-inf"))
        return scores
