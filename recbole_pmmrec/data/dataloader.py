"""PMMRec's dataloaders: RecBole's, plus the next-item window each training batch is supervised on.

Training batches get ``window`` (B, L+1): the history followed by the target, so every position of the
sequence is supervised (the item tower encodes the window's unique items once per batch). Evaluation
uses full ranking; item vectors for it are computed once per evaluation by the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.data.dataloader import TrainDataLoader


def next_item_window(item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, L) left-aligned history + (B,) target -> (B, L+1) window with the target right after the history."""
    ids = F.pad(item_seq, (0, 1))
    return ids.scatter(1, item_seq_len[:, None], target[:, None])


class PMMRecTrainDataLoader(TrainDataLoader):
    """RecBole's training loader; each batch also carries ``window`` (B, L+1)."""

    def collate_fn(self, index):
        batch = super().collate_fn(index)
        dataset = self._dataset
        window = next_item_window(batch[dataset.item_id_list_field], batch[dataset.item_list_length_field],
                                  batch[dataset.iid_field])
        batch.interaction["window"] = window
        return batch
