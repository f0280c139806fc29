"""PMMRec's dataloaders: RecBole's, plus the next-item window each training batch is supervised on.

Training batches get ``window`` (B, L+1): the history followed by the target, so every position of the
sequence is supervised (the item tower encodes the window's unique items once per batch). Evaluation
uses full ranking; item vectors for it are computed once per evaluation by the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from recbole.data.dataloader import TrainDataLoader

from recbole_pmmrec.data.sources import token_domains
from recbole_pmmrec.errors import PMMRecConfigError
from recbole_pmmrec.settings import settings_of


def next_item_window(item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, L) left-aligned history + (B,) target -> (B, L+1) window with the target right after the history."""
    ids = F.pad(item_seq, (0, 1))
    return ids.scatter(1, item_seq_len[:, None], target[:, None])


def row_domains(dataset) -> np.ndarray:
    """The source domain of each row of a merged data set (``dataset_tools.convert merge``): the index of the
    source its user token belongs to (:func:`~recbole_pmmrec.data.sources.token_domains`)."""
    of_user = token_domains(dataset, dataset.uid_field)
    if of_user is None:
        meta_file = Path(dataset.dataset_path) / f"{dataset.dataset_name}.meta.json"
        raise PMMRecConfigError(f"domain_batches needs a data set merged from several sources (python -m "
                                f"dataset_tools.convert merge ...); {meta_file} does not describe one")
    return of_user[dataset.inter_feat[dataset.uid_field].numpy()]


class PMMRecTrainDataLoader(TrainDataLoader):
    """RecBole's training loader; each batch also carries ``window`` (B, L+1).

    ``domain_batches: True`` (a merged data set): every batch holds rows of one source domain only, so that the
    in-batch negatives of NIP come from the same domain; the batches of all domains are shuffled together.
    """

    def __init__(self, config, dataset, sampler, shuffle=False):
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        self._domain_rows = None  # one array of row indices per source domain
        if settings_of(config).get("domain_batches", False):  # a PMMRec key (ContentKNN has no training batches)
            if not config["single_spec"]:
                raise PMMRecConfigError("domain_batches works in one process only; drop it or use nproc: 1")
            domains = row_domains(dataset)
            self._domain_rows = [np.flatnonzero(domains == d) for d in np.unique(domains)]

    def _domain_plan(self) -> list[np.ndarray]:
        """This epoch's batches: each domain's rows shuffled and cut into batches, the batches shuffled."""
        batches = []
        for rows in self._domain_rows:
            if self.shuffle:
                rows = rows[torch.randperm(len(rows), generator=self.generator).numpy()]
            batches += [rows[i:i + self.step] for i in range(0, len(rows), self.step)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        return batches

    def __iter__(self):
        if self._domain_rows is None:
            return super().__iter__()
        return (self.collate_fn(batch.tolist()) for batch in self._domain_plan())

    def __len__(self):
        if self._domain_rows is None:
            return super().__len__()
        return sum(-(-len(rows) // self.step) for rows in self._domain_rows)

    def collate_fn(self, index):
        batch = super().collate_fn(index)
        dataset = self._dataset
        window = next_item_window(batch[dataset.item_id_list_field], batch[dataset.item_list_length_field],
                                  batch[dataset.iid_field])
        batch.interaction["window"] = window
        return batch
